# shellcheck shell=bash disable=SC2317 # phase functions are called by name
# A stand-in for kubeadm 1.34 in the node-script sandboxes (tests/support/nodeSandbox.ts prepends
# its prelude: the call log and the fails/hangs/count helpers). tests/support/fakeKubeadm.ts
# loads it and explains the environment. It writes kubeadm's files under $ROOT in kubeadm's own
# phase order, so a test can stop it after any phase, and it refuses what kubeadm refuses.
#
# Phase order, from kubernetes/kubernetes (release 1.34):
#   kubeadm init  (cmd/kubeadm/app/cmd/init.go, initRunner.AppendPhase): preflight, certs,
#     kubeconfig, etcd, control-plane, kubelet-start, wait-control-plane, upload-config,
#     upload-certs, mark-control-plane, bootstrap-token, kubelet-finalize, addon,
#     show-join-command;
#   kubeadm join  (cmd/kubeadm/app/cmd/join.go, joinRunner.AppendPhase): preflight,
#     control-plane-prepare, check-etcd, kubelet-start, etcd-join, kubelet-wait-bootstrap,
#     control-plane-join, wait-control-plane. check-etcd, etcd-join and kubelet-wait-bootstrap
#     are hidden phases; etcd-join and kubelet-wait-bootstrap run when the feature gate
#     ControlPlaneKubeletLocalMode is on (beta, on by default since 1.33:
#     cmd/kubeadm/app/features/features.go), and then control-plane-join's etcd subphase is
#     skipped (cmd/kubeadm/app/cmd/phases/join/controlplanejoin.go). This stand-in models that
#     default.
# What each phase writes (paths under $ROOT):
#   init certs: /etc/kubernetes/pki (an existing CA is reused, as kubeadm does: "Using existing
#     ca certificate authority"); init kubeconfig: admin.conf, super-admin.conf, kubelet.conf,
#     controller-manager.conf, scheduler.conf (existing files are reused); init etcd:
#     /var/lib/etcd (empty, 0700) and manifests/etcd.yaml; control-plane: the three other
#     manifests, with image registry.k8s.io/kube-apiserver:<kubernetesVersion>; kubelet-start:
#     /var/lib/kubelet/config.yaml and kubeadm-flags.env, and the kubelet starts the static pods
#     (etcd writes /var/lib/etcd/member). The later phases change the cluster only.
#   join control-plane-prepare: the cluster CA from the kubeadm-certs Secret (download-certs),
#     the other certificates, admin.conf, controller-manager.conf, scheduler.conf and the three
#     control-plane manifests; kubelet-start: bootstrap-kubelet.conf and the kubelet's files;
#     etcd-join: adds the etcd member (cluster side), then /var/lib/etcd and etcd.yaml;
#     kubelet-wait-bootstrap: kubelet.conf (the kubelet's TLS bootstrap) and bootstrap-kubelet.conf
#     removed (cmd/kubeadm/app/cmd/phases/join/kubelet.go); control-plane-join:
#     mark-control-plane (cluster side).
# Preflight refuses what kubeadm's checks refuse (cmd/kubeadm/app/preflight/checks.go,
# FileAvailableCheck and DirAvailableCheck): any of the four manifests, a non-empty /var/lib/etcd,
# and for join also kubelet.conf, bootstrap-kubelet.conf and pki/ca.crt.
# A failing phase prints "error execution phase <phase>: ..." and exits 1, as kubeadm's workflow
# runner does (cmd/kubeadm/app/cmd/phases/workflow/runner.go).
#
# Every phase that ran is appended to $FAKE_CAPTURE/phases as "<init|join>:<phase>", whether it
# ran inside `kubeadm init/join` or as `kubeadm init/join phase <phase>`.
#
# What each phase changes in the cluster goes to the fake cluster $FAKE_CAPTURE/cluster, which the
# fake kubectl reads (tests/support/fakeKubeadm.ts fakeClusterKubectlArms explains the layout):
#   init kubelet-start: the kubelet starts the static pods, so the etcd member NODE runs (a new
#     cluster of one voting member, named after the node: --name in the etcd manifest,
#     cmd/kubeadm/app/phases/etcd/local.go getEtcdCommand), and registers its Node; it writes
#     its rotating client certificate /var/lib/kubelet/pki/kubelet-client-current.pem;
#   init upload-config: ConfigMaps kube-system/kubeadm-config and kubelet-config
#     (cmd/kubeadm/app/cmd/phases/init/uploadconfig.go);
#   init mark-control-plane, join control-plane-join: the Node's labels
#     node-role.kubernetes.io/control-plane and node.kubernetes.io/exclude-from-external-load-balancers,
#     both "" (cmd/kubeadm/app/phases/markcontrolplane/markcontrolplane.go; it patches an
#     existing Node and fails without one);
#   init bootstrap-token: ConfigMap kube-public/cluster-info (cmd/kubeadm/app/cmd/phases/init/
#     bootstraptoken.go, CreateBootstrapConfigMapIfNotExists);
#   init kubelet-finalize: kubelet.conf's client-certificate and client-key become
#     /var/lib/kubelet/pki/kubelet-client-current.pem when that file exists; nothing otherwise
#     (cmd/kubeadm/app/cmd/phases/init/kubeletfinalize.go);
#   init addon: Deployment and ConfigMap kube-system/coredns, Service kube-system/kube-dns,
#     ConfigMap and DaemonSet kube-system/kube-proxy (cmd/kubeadm/app/phases/addons/dns and proxy);
#   join (before its first phase): the cluster it finds, set up by the first node's init, unless
#     the fake cluster exists already;
#   join etcd-join: the member is added as a learner, its manifest written, and once it runs it
#     is promoted (cmd/kubeadm/app/phases/etcd/local.go CreateStackedEtcdStaticPodManifestFile:
#     AddMemberAsLearner, MemberPromote): a started voting member when the phase ends;
#   join kubelet-wait-bootstrap: the kubelet's TLS bootstrap writes kubelet.conf pointing at
#     kubelet-client-current.pem (k8s.io/kubernetes pkg/kubelet/certificate/bootstrap) and
#     registers the Node;
#   reset: its remove-etcd-member phase removes this node's member before cleanup-node removes
#     the files (cmd/kubeadm/app/cmd/phases/reset); FAKE_FAIL=reset fails after the removal.

K="$ROOT/etc/kubernetes"
phases_log="$FAKE_CAPTURE/phases"
join_command="kubeadm join 10.20.1.250:6443 --token $FAKE_TOKEN --discovery-token-ca-cert-hash $FAKE_CA_CERT_HASH --control-plane --certificate-key $FAKE_CERT_KEY"
init_phases=(preflight certs kubeconfig etcd control-plane kubelet-start wait-control-plane upload-config
  upload-certs mark-control-plane bootstrap-token kubelet-finalize addon show-join-command)
join_phases=(preflight control-plane-prepare check-etcd kubelet-start etcd-join kubelet-wait-bootstrap
  control-plane-join wait-control-plane)
config=""
version=""
node_name=""
advertise_ip="10.20.1.11"
C="$FAKE_CAPTURE/cluster"
pem="/var/lib/kubelet/pki/kubelet-client-current.pem"

phase_error() {
  echo "error execution phase $1: $2" >&2
  echo "To see the stack trace of this error execute with --v=5 or higher" >&2
  exit 1
}

# kubeadm loads the configuration before any phase (cmd/kubeadm/app/util/config).
load_config() {
  [[ -r "$config" ]] || { echo "unable to read config from \"$config\"" >&2; exit 1; }
  local line block=""
  version="${FAKE_KUBEADM_VERSION:-v1.34.2}"
  while IFS= read -r line; do
    if [[ "$line" =~ ^([A-Za-z]+): ]]; then block="${BASH_REMATCH[1]}"; fi
    if [[ "$line" =~ ^kubernetesVersion:[[:space:]]+(.+)$ ]]; then version="${BASH_REMATCH[1]}"; fi
    if [[ "$block" == nodeRegistration && "$line" =~ ^\ \ name:[[:space:]]+(.+)$ ]]; then node_name="${BASH_REMATCH[1]}"; fi
    if [[ "$line" =~ ^[[:space:]]+advertiseAddress:[[:space:]]+([0-9.]+)$ ]]; then advertise_ip="${BASH_REMATCH[1]}"; fi
  done <"$config"
  # This host's node, for reset (kubeadm finds its own member by its peer URL).
  if [[ -n "$node_name" ]]; then printf '%s %s\n' "$node_name" "$advertise_ip" >"$FAKE_CAPTURE/host-node"; fi
}

# The fake cluster (see the header): objects, Nodes with their labels, etcd members.
create_object() { mkdir -p "$C/objects/$1/$2" && : >"$C/objects/$1/$2/$3"; }
register_node() {
  mkdir -p "$C/nodes"
  if [[ ! -f "$C/nodes/$1" ]]; then printf 'kubernetes.io/hostname=%s\nkubernetes.io/os=linux\n' "$1" >"$C/nodes/$1"; fi
}
# mark_control_plane PHASE NODE: apiclient.PatchNode needs the Node.
mark_control_plane() {
  [[ -f "$C/nodes/$2" ]] || phase_error "$1" "unable to patch node \"$2\": nodes \"$2\" not found"
  local label
  for label in node-role.kubernetes.io/control-plane node.kubernetes.io/exclude-from-external-load-balancers; do
    grep -q "^$label=" "$C/nodes/$2" || echo "$label=" >>"$C/nodes/$2"
  done
}
# member_id NAME: a stable 16-digit hex id, as etcd prints member ids (%x of a uint64).
member_id() {
  local i h=1469598103934665603
  for ((i = 0; i < ${#1}; i++)); do h=$(((h ^ $(printf '%d' "'${1:i:1}")) * 1099511628211 & 0x7fffffffffffffff)); done
  printf '%016x' "$h"
}
# set_member NAME STATUS LEARNER IP: the member's line in `etcdctl member list -w simple` format
# (etcd-io/etcd etcdctl/ctlv3/command/printer.go makeMemberListTable: ID, status, name, peer
# URLs, client URLs, is-learner, joined by ", ").
set_member() {
  local id lines=""
  id="$(member_id "$1")"
  mkdir -p "$C"
  if [[ -f "$C/etcd-members" ]]; then lines="$(grep -v "^$id, " "$C/etcd-members" || true)"; fi
  { if [[ -n "$lines" ]]; then printf '%s\n' "$lines"; fi
    printf '%s, %s, %s, https://%s:2380, https://%s:2379, %s\n' "$id" "$2" "$1" "$4" "$4" "$3"
  } >"$C/etcd-members.new"
  mv "$C/etcd-members.new" "$C/etcd-members"
}
remove_member() {
  local id rest
  id="$(member_id "$1")"
  [[ -f "$C/etcd-members" ]] || return 0
  rest="$(grep -v "^$id, " "$C/etcd-members" || true)"
  if [[ -n "$rest" ]]; then printf '%s\n' "$rest" >"$C/etcd-members"; else : >"$C/etcd-members"; fi
}
# The kubelet's kubeconfig: certificate and key embedded (init's kubeconfig phase) or from the
# rotating PEM file (kubelet-finalize; the kubelet's TLS bootstrap), as clientcmd.WriteToFile
# writes it.
kubelet_conf() {
  local user
  if [[ "$1" == embedded ]]; then
    user="    client-certificate-data: ZmFrZSBjZXJ0aWZpY2F0ZQ==\n    client-key-data: ZmFrZSBrZXk="
  else
    user="    client-certificate: $pem\n    client-key: $pem"
  fi
  printf 'apiVersion: v1\nclusters:\n- cluster:\n    server: https://api.prod.example.com:6443\n  name: prod\nkind: Config\nusers:\n- name: system:node:%s\n  user:\n%b\n' \
    "$node_name" "$user" >"$K/kubelet.conf"
}
kubelet_client_pem() { mkdir -p "$ROOT/var/lib/kubelet/pki" && echo "fake certificate and key" >"$ROOT$pem"; }
# existing_cluster: what a join finds, unless the fake cluster exists: the first node's init done.
existing_cluster() {
  [[ ! -d "$C" ]] || return 0
  register_node prod-nbg1-cp-1
  mark_control_plane preflight prod-nbg1-cp-1
  set_member prod-nbg1-cp-1 started false 10.20.1.11
  create_object kube-system configmaps kubeadm-config
  create_object kube-system configmaps kubelet-config
  create_object kube-public configmaps cluster-info
  create_object kube-system deployments.apps coredns
  create_object kube-system configmaps kube-proxy
  create_object kube-system daemonsets.apps kube-proxy
}

# A phase that talks to the API server needs admin.conf (initData.Client / joinData.Client).
needs_client() {
  [[ -f "$K/admin.conf" ]] || phase_error "$1" "failed to load admin kubeconfig: open /etc/kubernetes/admin.conf: no such file or directory"
}

manifest() {
  mkdir -p "$K/manifests"
  # The layout of kubeadm's manifests (cmd/kubeadm/app/util/staticpod/utils.go, sigs.k8s.io/yaml).
  printf 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  namespace: kube-system\nspec:\n  containers:\n  - command:\n    - %s\n    image: registry.k8s.io/%s:%s\n    name: %s\n' \
    "$1" "$1" "$1" "$2" "$1" >"$K/manifests/$1.yaml"
}

kubeconfig_file() { if [[ ! -f "$K/$1" ]]; then echo "fake kubeconfig $1" >"$K/$1"; fi; }

# --ignore-preflight-errors=NAME,...: those checks warn instead ("[WARNING NAME]: ...",
# cmd/kubeadm/app/preflight/checks.go RunChecks with ignorePreflightErrors).
ignored_preflight=""
preflight_checks() {
  local errors=() f
  for f in etcd kube-apiserver kube-controller-manager kube-scheduler; do
    if [[ -e "$K/manifests/$f.yaml" ]]; then
      errors+=("[ERROR FileAvailable--etc-kubernetes-manifests-$f.yaml]: /etc/kubernetes/manifests/$f.yaml already exists")
    fi
  done
  if [[ "$1" == join ]]; then
    for f in kubelet.conf bootstrap-kubelet.conf pki/ca.crt; do
      if [[ -e "$K/$f" ]]; then
        errors+=("[ERROR FileAvailable--etc-kubernetes-${f//\//-}]: /etc/kubernetes/$f already exists")
      fi
    done
  fi
  if [[ -d "$ROOT/var/lib/etcd" && -n "$(ls -A "$ROOT/var/lib/etcd")" ]]; then
    if [[ ",$ignored_preflight," == *,DirAvailable--var-lib-etcd,* ]]; then
      echo "[WARNING DirAvailable--var-lib-etcd]: /var/lib/etcd is not empty" >&2
    else
      errors+=("[ERROR DirAvailable--var-lib-etcd]: /var/lib/etcd is not empty")
    fi
  fi
  if ((${#errors[@]} > 0)); then
    echo "[preflight] Some fatal errors occurred:" >&2
    printf '\t%s\n' "${errors[@]}" >&2
    phase_error preflight "preflight checks failed"
  fi
}

kubelet_files() {
  mkdir -p "$ROOT/var/lib/kubelet"
  echo "kind: KubeletConfiguration" >"$ROOT/var/lib/kubelet/config.yaml"
  echo "KUBELET_KUBEADM_ARGS=\"--node-ip=10.20.1.11\"" >"$ROOT/var/lib/kubelet/kubeadm-flags.env"
}

cluster_ca() {
  mkdir -p "$K/pki/etcd"
  if [[ ! -f "$K/pki/ca.crt" ]]; then cp "$FAKE_CLUSTER_CA/ca.crt" "$FAKE_CLUSTER_CA/ca.key" "$K/pki/"; fi
}

init_preflight() { preflight_checks init; }
init_certs() {
  cluster_ca
  # kubeadm keeps a certificate or key that exists ("Using existing ..."; cmd/kubeadm/app/phases/
  # certs/certs.go), so a node seeded from a backup keeps its CAs and sa.key.
  for f in apiserver.crt apiserver-kubelet-client.crt front-proxy-ca.crt sa.key etcd/ca.crt etcd/server.crt; do
    if [[ ! -f "$K/pki/$f" ]]; then echo "fake $f" >"$K/pki/$f"; fi
  done
}
init_kubeconfig() {
  for f in admin.conf super-admin.conf controller-manager.conf scheduler.conf; do kubeconfig_file "$f"; done
  if [[ ! -f "$K/kubelet.conf" ]]; then kubelet_conf embedded; fi
}
init_etcd() {
  mkdir -p "$ROOT/var/lib/etcd" && chmod 0700 "$ROOT/var/lib/etcd"
  manifest etcd 3.6.4-0
}
init_control_plane() {
  for f in kube-apiserver kube-controller-manager kube-scheduler; do manifest "$f" "$version"; done
}
init_kubelet_start() {
  kubelet_files
  mkdir -p "$ROOT/var/lib/etcd/member"
  kubelet_client_pem
  set_member "$node_name" started false "$advertise_ip"
  register_node "$node_name"
}
init_wait_control_plane() { :; }
init_upload_config() {
  needs_client upload-config
  create_object kube-system configmaps kubeadm-config
  create_object kube-system configmaps kubelet-config
}
init_upload_certs() { echo "[upload-certs] Skipping phase. Please see --upload-certs"; }
init_mark_control_plane() {
  needs_client mark-control-plane
  mark_control_plane mark-control-plane "$node_name"
}
init_bootstrap_token() {
  needs_client bootstrap-token
  create_object kube-public configmaps cluster-info
}
init_kubelet_finalize() {
  needs_client kubelet-finalize
  if [[ -f "$ROOT$pem" ]]; then kubelet_conf pem; fi
}
init_addon() {
  needs_client addon
  create_object kube-system deployments.apps coredns
  create_object kube-system configmaps coredns
  create_object kube-system services kube-dns
  create_object kube-system configmaps kube-proxy
  create_object kube-system daemonsets.apps kube-proxy
}
init_show_join_command() {
  echo "You can now join any number of control-plane nodes by running the following command on each as root:"
  echo "  $join_command"
  echo "W1121 warning that quotes $join_command" >&2
}

join_preflight() { preflight_checks join; }
join_control_plane_prepare() {
  cluster_ca
  for f in apiserver.crt front-proxy-ca.crt sa.key etcd/ca.crt etcd/server.crt; do echo "fake $f" >"$K/pki/$f"; done
  for f in admin.conf controller-manager.conf scheduler.conf; do kubeconfig_file "$f"; done
  for f in kube-apiserver kube-controller-manager kube-scheduler; do manifest "$f" "$version"; done
}
join_check_etcd() { :; }
join_kubelet_start() {
  echo "fake bootstrap kubeconfig" >"$K/bootstrap-kubelet.conf"
  kubelet_files
}
join_etcd_join() {
  needs_client etcd-join
  mkdir -p "$ROOT/var/lib/etcd" && chmod 0700 "$ROOT/var/lib/etcd"
  echo "$node_name" >>"$FAKE_CAPTURE/etcd-members-added"
  set_member "$node_name" unstarted true "$advertise_ip"
  manifest etcd 3.6.4-0
  mkdir -p "$ROOT/var/lib/etcd/member"
  set_member "$node_name" started true "$advertise_ip"
  set_member "$node_name" started false "$advertise_ip"
}
join_kubelet_wait_bootstrap() {
  kubelet_client_pem
  kubelet_conf pem
  rm -f "$K/bootstrap-kubelet.conf"
  register_node "$node_name"
}
join_control_plane_join() {
  needs_client control-plane-join
  mark_control_plane control-plane-join "$node_name"
}
join_wait_control_plane() { :; }

# `kubeadm init phase certs apiserver --config F`, as kubernetes/kubernetes (1.34) has it:
# - the configuration: F's InitConfiguration (localAPIEndpoint.advertiseAddress,
#   nodeRegistration.name) and ClusterConfiguration (certificatesDir, controlPlaneEndpoint,
#   networking, apiServer.certSANs), defaulted as v1beta4 does (cmd/kubeadm/app/apis/kubeadm/
#   v1beta4/defaults.go: certificatesDir /etc/kubernetes/pki, serviceSubnet 10.96.0.0/12,
#   dnsDomain cluster.local; without an advertiseAddress, the address of the default route's
#   interface, $FAKE_DEFAULT_ROUTE_IP here; without a name, the host name);
# - the SANs (GetAPIServerAltNames in cmd/kubeadm/app/util/pkiutil/pki_helpers.go): DNS names
#   <node name>, kubernetes, kubernetes.default, kubernetes.default.svc,
#   kubernetes.default.svc.<dnsDomain>; IPs <first IP of the service subnet>, <advertise
#   address>; then the controlPlaneEndpoint host (an IP to the IPs, else a DNS name), then each
#   certSANs entry the same way (appendSANsToAltNames: duplicates are kept, an entry that is
#   neither is skipped with a warning);
# - the CA: ca.crt and ca.key in certificatesDir (LoadCertificateAuthority in
#   cmd/kubeadm/app/phases/certs/certs.go; a missing one fails the phase);
# - an existing apiserver.crt or apiserver.key (writeCertificateFilesIfNotExist, certs.go): the
#   pair is loaded, must be signed by the CA ("certificate apiserver is not signed by
#   corresponding CA") and valid for every SAN above (validateCertificateWithConfig:
#   x509 VerifyHostname, so "certificate apiserver is invalid: x509: certificate is valid for
#   ..., not <name>"); then it is kept, "Using the existing", even when it has SANs the
#   configuration no longer names. Otherwise a new pair: RSA 2048 (the default
#   encryptionAlgorithm), CN kube-apiserver, server auth, signed by the CA for a year
#   (certificateValidityPeriod's default), key written 0600 before the certificate 0644
#   (pkiutil.WriteCertAndKey; keyutil.WriteKey and certutil.WriteCert).
# Real openssl makes the certificate, so the scripts compare real SANs. FAKE_FAIL=certs-apiserver
# fails the phase before it writes anything.
certs_apiserver() {
  local file="$1" dir="/etc/kubernetes/pki" endpoint_host="" subnet="10.96.0.0/12" domain="cluster.local"
  local address="${FAKE_DEFAULT_ROUTE_IP:-203.0.113.10}" name line top="" sub="" san
  local -a cert_sans=() dns=() ips=()
  name="$(uname -n)"
  [[ -r "$file" ]] || { echo "unable to read config from \"$file\"" >&2; exit 1; }
  while IFS= read -r line; do
    if [[ "$line" == --- ]]; then top="" sub=""; continue; fi
    if [[ "$line" =~ ^([A-Za-z]+):[[:space:]]*(.*)$ ]]; then
      top="${BASH_REMATCH[1]}" sub=""
      case "$top" in
        certificatesDir) dir="${BASH_REMATCH[2]}" ;;
        controlPlaneEndpoint) endpoint_host="${BASH_REMATCH[2]%:*}" ;;
      esac
      continue
    fi
    if [[ "$line" =~ ^\ \ ([A-Za-z]+):[[:space:]]*(.*)$ ]]; then
      sub="${BASH_REMATCH[1]}"
      case "$top.$sub" in
        localAPIEndpoint.advertiseAddress) address="${BASH_REMATCH[2]}" ;;
        nodeRegistration.name) name="${BASH_REMATCH[2]}" ;;
        networking.serviceSubnet) subnet="${BASH_REMATCH[2]}" ;;
        networking.dnsDomain) domain="${BASH_REMATCH[2]}" ;;
      esac
      continue
    fi
    if [[ "$top.$sub" == apiServer.certSANs && "$line" =~ ^\ \ (\ \ )?-\ +[\"\']?([^\"\']*)[\"\']?$ ]]; then
      cert_sans+=("${BASH_REMATCH[2]}")
    fi
  done <"$file"
  local ca_crt="$dir/ca.crt" ca_key="$dir/ca.key" crt="$dir/apiserver.crt" key="$dir/apiserver.key"
  if [[ ! -f "$ca_crt" || ! -f "$ca_key" ]]; then
    phase_error certs/apiserver "couldn't load CA certificate ca: couldn't load ca certificate authority from $dir"
  fi
  if fails certs-apiserver; then phase_error certs/apiserver "fake failure"; fi
  # The first IP of the service subnet: its network address plus one.
  local net="${subnet%/*}" bits="${subnet#*/}" a b c d n
  IFS=. read -r a b c d <<<"$net"
  n=$(((a << 24 | b << 16 | c << 8 | d) & (0xffffffff << (32 - bits)) & 0xffffffff))
  n=$((n + 1))
  ips=("$((n >> 24 & 255)).$((n >> 16 & 255)).$((n >> 8 & 255)).$((n & 255))" "$address")
  dns=("$name" kubernetes kubernetes.default kubernetes.default.svc "kubernetes.default.svc.$domain")
  for san in ${endpoint_host:+"$endpoint_host"} "${cert_sans[@]}"; do
    if [[ "$san" =~ ^[0-9.]+$ || "$san" == *:* ]]; then ips+=("$san")
    elif [[ "$san" =~ ^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$ ]]; then dns+=("$san")
    else echo "[certificates] WARNING: '$san' was not added to the 'apiserver' SAN, because it is not a valid IP or RFC-1123 compliant DNS entry" >&2
    fi
  done
  if [[ -f "$crt" || -f "$key" ]]; then
    openssl verify -CAfile "$ca_crt" "$crt" >/dev/null 2>&1 ||
      phase_error certs/apiserver "[certs] certificate apiserver is not signed by corresponding CA"
    local have
    have="$(openssl x509 -in "$crt" -noout -ext subjectAltName | sed -n '2,$p' | tr ',' '\n' | sed 's/^ *//')"
    for san in "${dns[@]}"; do
      grep -qixF "DNS:$san" <<<"$have" ||
        phase_error certs/apiserver "[certs] certificate apiserver is invalid: x509: certificate is valid for $(grep '^DNS:' <<<"$have" | sed 's/^DNS://' | paste -sd, | sed 's/,/, /g'), not $san"
    done
    for san in "${ips[@]}"; do
      openssl x509 -in "$crt" -noout -checkip "$san" | grep -q ' does match ' ||
        phase_error certs/apiserver "[certs] certificate apiserver is invalid: x509: certificate is valid for $(grep '^IP' <<<"$have" | sed 's/^IP Address://' | paste -sd, | sed 's/,/, /g'), not $san"
    done
    echo '[certs] Using the existing "apiserver" certificate and key'
    echo "certs/apiserver" >>"$phases_log"
    return 0
  fi
  echo '[certs] Generating "apiserver" certificate and key'
  local ext="" csr serial
  for san in "${dns[@]}"; do ext+="${ext:+,}DNS:$san"; done
  for san in "${ips[@]}"; do ext+="${ext:+,}IP:$san"; done
  csr="$(mktemp)"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$key" -subj /CN=kube-apiserver -out "$csr" 2>/dev/null
  chmod 0600 "$key"
  serial="0x$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
  openssl x509 -req -in "$csr" -CA "$ca_crt" -CAkey "$ca_key" -set_serial "$serial" -days 365 -out "$crt" \
    -extfile <(printf 'subjectAltName=%s\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n' "$ext") 2>/dev/null
  chmod 0644 "$crt"
  rm -f "$csr"
  echo "[certs] apiserver serving cert is signed for DNS names [${dns[*]}] and IPs [${ips[*]}]"
  echo "certs/apiserver" >>"$phases_log"
}

run_phase() {
  "$1_${2//-/_}"
  echo "$1:$2" >>"$phases_log"
}

# run_workflow init|join PHASE...: every phase in order; FAKE_KUBEADM_FAIL_AFTER=<phase> makes
# the phase after it fail before it writes anything.
run_workflow() {
  local command="$1" phase previous=""
  shift
  if [[ -n "${FAKE_KUBEADM_FAIL_AFTER:-}" && "${*: -1}" == "$FAKE_KUBEADM_FAIL_AFTER" ]]; then
    echo "fake kubeadm: $FAKE_KUBEADM_FAIL_AFTER is the last phase; there is none after it to fail" >&2
    exit 99
  fi
  for phase in "$@"; do
    if [[ -n "$previous" && "$previous" == "${FAKE_KUBEADM_FAIL_AFTER:-}" ]]; then
      phase_error "$phase" "fake failure after $previous"
    fi
    run_phase "$command" "$phase"
    previous="$phase"
  done
}

case "$1 ${2:-}" in
  "init phase")
    # kubeadm init phase upload-certs, as kubeadm's source has it:
    # - cmd/kubeadm/app/cmd/phases/init/uploadcerts.go: the phase inherits only --config,
    #   --upload-certs, --certificate-key and --skip-certificate-key-print from init (no
    #   --kubernetes-version); cobra refuses any other flag;
    # - cmd/kubeadm/app/apis/kubeadm/validation/validation.go, ValidateMixedArguments: next to
    #   --config only a few flags (upload-certs, skip-*, ...) are allowed, not --certificate-key;
    # - cmd/kubeadm/app/util/config/initconfiguration.go: the file needs an InitConfiguration or a
    #   ClusterConfiguration; v1beta4 defaults kubernetesVersion to "stable-1" (defaults.go);
    # - cmd/kubeadm/app/util/version.go, KubernetesReleaseVersion: a label is fetched from
    #   https://dl.k8s.io/release/<label>.txt (10 s timeout); offline, kubeadm warns and falls back
    #   to its own version. The fetch is recorded in $FAKE_CAPTURE/fetched; this sandbox is offline.
    if [[ "$3" == upload-certs ]]; then
      shift 3
      config="" upload="" mixed=""
      while [[ $# -gt 0 ]]; do
        case "$1" in
          --config) config="$2"; shift 2 ;;
          --upload-certs) upload=1; shift ;;
          --certificate-key) mixed="certificate-key"; shift 2 ;;
          --skip-certificate-key-print) shift ;;
          *) echo "unknown flag: $1" >&2; exit 1 ;;
        esac
      done
      if [[ -n "$config" && -n "$mixed" ]]; then echo "can not mix '--config' with arguments [$mixed]" >&2; exit 1; fi
      version="stable-1"
      if [[ -n "$config" ]]; then
        [[ -r "$config" ]] || { echo "unable to read config from \"$config\"" >&2; exit 1; }
        cp "$config" "$FAKE_CAPTURE/upload-certs-config.yaml"
        grep -Eqx 'kind: (InitConfiguration|ClusterConfiguration)' "$config" || {
          echo "no InitConfiguration or ClusterConfiguration kind was found in the configuration file" >&2; exit 1
        }
        while IFS= read -r line; do
          if [[ "$line" =~ ^kubernetesVersion:[[:space:]]+(.+)$ ]]; then version="${BASH_REMATCH[1]}"; fi
        done <"$config"
      fi
      if [[ "$version" =~ ^(stable|latest) ]]; then
        url="https://dl.k8s.io/release/$version.txt"
        echo "$url" >>"$FAKE_CAPTURE/fetched"
        echo "W1121 version.go:109] could not fetch a Kubernetes version from the internet: unable to get URL \"$url\": dial tcp: lookup dl.k8s.io: no such host" >&2
        echo "W1121 version.go:110] falling back to the local client version: ${FAKE_KUBEADM_VERSION:-v1.34.2}" >&2
        version="${FAKE_KUBEADM_VERSION:-v1.34.2}"
      fi
      echo "$version" >"$FAKE_CAPTURE/upload-certs-version"
      if [[ -z "$upload" ]]; then echo "[upload-certs] Skipping phase. Please see --upload-certs"; exit 0; fi
      if fails upload-certs; then echo "error execution phase upload-certs" >&2; exit 1; fi
      echo '[upload-certs] Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace'
      # copycerts.UploadCerts: CreateOrUpdateSecret kube-system/kubeadm-certs.
      create_object kube-system secrets kubeadm-certs
      echo '[upload-certs] Using certificate key:'
      echo "$FAKE_CERT_KEY"
      exit 0
    fi
    if [[ "$3 ${4:-} ${5:-}" == "certs apiserver --config" && $# -eq 6 ]]; then
      certs_apiserver "$6"
      exit 0
    fi
    # The other phases the membership scripts run: `kubeadm init phase <phase> [all] --config F`
    # (a parent phase with subphases takes "all"; cmd/kubeadm/app/cmd/phases/workflow/runner.go).
    phase="$3"
    shift 3
    case "$phase" in
      kubelet-start | mark-control-plane | bootstrap-token) ;;
      upload-config | kubelet-finalize | addon) [[ "${1:-}" == all ]] || { echo "fake kubeadm: unexpected $*" >&2; exit 99; }; shift ;;
      *) echo "fake kubeadm: unexpected phase $phase" >&2; exit 99 ;;
    esac
    [[ "${1:-}" == --config && $# -eq 2 ]] || { echo "fake kubeadm: unexpected $*" >&2; exit 99; }
    config="$2"
    load_config
    if fails "$phase"; then phase_error "$phase" "fake failure"; fi
    run_phase init "$phase"
    ;;
  "init --config")
    config="$3"
    for arg in "${@:4}"; do
      case "$arg" in
        --ignore-preflight-errors=*) ignored_preflight="${arg#*=}" ;;
        *) echo "fake kubeadm: unexpected init argument $arg" >&2; exit 99 ;;
      esac
    done
    load_config
    if fails init; then phase_error preflight "fake failure"; fi
    run_workflow init "${init_phases[@]}"
    ;;
  "token create")
    if fails token; then exit 1; fi
    key=""
    while [[ $# -gt 0 ]]; do if [[ "$1" == --certificate-key ]]; then key="$2"; fi; shift; done
    printf '%s \n' "kubeadm join 10.20.1.250:6443 --token $FAKE_TOKEN --discovery-token-ca-cert-hash $FAKE_CA_CERT_HASH --control-plane --certificate-key ${FAKE_PRINTED_KEY:-$key}"
    # The token's Secret kube-system/bootstrap-token-<id> exists from now on (one id a line).
    echo "${FAKE_TOKEN%%.*}" >>"$FAKE_CAPTURE/tokens"
    ;;
  "token delete")
    # cmd/kubeadm/app/cmd/token.go RunDeleteTokens: an id or a whole token; deletes Secret
    # kube-system/bootstrap-token-<id>, printing `bootstrap token "<id>" deleted`; a Secret that
    # is not there fails the command with the API's NotFound.
    [[ $# -eq 3 && "$3" =~ ^[a-z0-9]{6}(\.[a-z0-9]{16})?$ ]] || { echo "fake kubeadm: unexpected $*" >&2; exit 99; }
    id="${3%%.*}"
    if fails token-delete; then echo "failed to delete bootstrap token \"$id\": the server is currently unable to handle the request" >&2; exit 1; fi
    if ! grep -qx "$id" "$FAKE_CAPTURE/tokens" 2>/dev/null; then
      echo "failed to delete bootstrap token \"$id\": secrets \"bootstrap-token-$id\" not found" >&2; exit 1
    fi
    rest="$(grep -vx "$id" "$FAKE_CAPTURE/tokens" || true)"
    if [[ -n "$rest" ]]; then printf '%s\n' "$rest" >"$FAKE_CAPTURE/tokens"; else : >"$FAKE_CAPTURE/tokens"; fi
    echo "bootstrap token \"$id\" deleted"
    ;;
  "join --config")
    config="$3"
    cp "$config" "$FAKE_CAPTURE/rendered.yaml"
    stat -c %a "$config" >"$FAKE_CAPTURE/rendered.mode"
    echo "[preflight] joining with $join_command"
    load_config
    version="${FAKE_CLUSTER_VERSION:-v1.34.2}"
    existing_cluster
    if fails join; then phase_error preflight "fake failure"; fi
    run_workflow join "${join_phases[@]}"
    ;;
  "join phase")
    # `kubeadm join phase control-plane-join all --config F`: discovery with the token in F, then
    # mark-control-plane through admin.conf.
    [[ "$3 ${4:-} ${5:-}" == "control-plane-join all --config" && $# -eq 6 ]] || {
      echo "fake kubeadm: unexpected $*" >&2; exit 99
    }
    config="$6"
    cp "$config" "$FAKE_CAPTURE/rendered-phase.yaml"
    stat -c %a "$config" >"$FAKE_CAPTURE/rendered-phase.mode"
    load_config
    existing_cluster
    if fails control-plane-join; then phase_error control-plane-join "fake failure"; fi
    run_phase join control-plane-join
    ;;
  "reset -f")
    # cmd/kubeadm/app/cmd/phases/reset: remove-etcd-member, then cleanup-node: the stateful
    # directories, the manifests, pki and the kubeconfig files; not /etc/cni/net.d.
    echo "[reset] removing the etcd member; the old join command was $join_command"
    if [[ -f "$FAKE_CAPTURE/host-node" ]]; then read -r host_node _ <"$FAKE_CAPTURE/host-node"; remove_member "$host_node"; fi
    if fails reset; then exit 1; fi
    rm -rf "$K/manifests" "$K/pki" "$ROOT/var/lib/etcd" "$ROOT/var/lib/kubelet"
    rm -f "$K/admin.conf" "$K/super-admin.conf" "$K/kubelet.conf" "$K/bootstrap-kubelet.conf" \
      "$K/controller-manager.conf" "$K/scheduler.conf"
    ;;
  *) echo "fake kubeadm: unexpected $*" >&2; exit 99 ;;
esac
