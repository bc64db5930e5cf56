# shellcheck shell=bash disable=SC2154,SC2034 # ROOT, log_file and staged come from the sourcing script and lib.sh; it reads etcd_member_not_voting
# The completion marker of a control-plane member, shared by kubeadm-init.sh and kubeadm-join.sh
# (sourced after lib.sh, relative to the script, like lib.sh). Sourcing it only defines things.
#
# Why a marker of our own: kubeadm writes its files early and proves nothing by them. `kubeadm
# init` writes admin.conf in its kubeconfig phase, before wait-control-plane, upload-config,
# mark-control-plane, bootstrap-token, kubelet-finalize and addon; `kubeadm join` writes
# admin.conf in control-plane-prepare and the kubelet writes kubelet.conf at its TLS bootstrap,
# before control-plane-join (mark-control-plane). The membership scripts write
# /var/lib/kubernetes-node/member as their very last step, after their gates, and nothing else
# writes it; leave-cluster.sh removes it before `kubeadm reset`.
#
# The file (0644, no secret), one KEY=value a line, written atomically (lib.sh write_file):
#   role=init|join
#   node=<Kubernetes node name>
#   endpoint=<controlPlaneEndpoint host:port>
#   ca=sha256:<hex>     the cluster CA's public key hash, as in --discovery-token-ca-cert-hash
#   version=<vX.Y.Z>    the kube-apiserver image tag kubeadm wrote into its manifest when the
#                       setup completed (upgrades do not rewrite the marker; nothing reads it)
#   completed=<time>    when the script finished, ISO 8601 with the UTC offset

readonly MEMBER_RUNBOOK="docs/runbooks/member-setup-failed.md"
# Where Pulumi puts these scripts on a node (components/node/nodeScripts.ts nodeScriptsDir).
readonly MEMBER_SCRIPTS_DIR="/usr/local/lib/hcloud-control-plane/node"

# The marker's fields, read by read_member_marker.
declare -A member=()

member_marker_path() { printf '%s%s' "$ROOT" "$MEMBER_MARKER"; }

# ca_public_key_hash: prints sha256:<hex> of the SubjectPublicKeyInfo (DER) of
# /etc/kubernetes/pki/ca.crt, the value kubeadm pins with --discovery-token-ca-cert-hash
# (kubernetes/kubernetes cmd/kubeadm/app/util/pubkeypin/pubkeypin.go hashes the certificate's
# RawSubjectPublicKeyInfo). Status 1 when the file is missing or unreadable as a certificate.
ca_public_key_hash() {
  local ca="${ROOT}/etc/kubernetes/pki/ca.crt" digest
  [[ -r "$ca" ]] || return 1
  digest="$(openssl x509 -in "$ca" -noout -pubkey 2>>"$log_file" |
    openssl pkey -pubin -outform der 2>>"$log_file" | sha256sum)" || return 1
  [[ "${digest%% *}" =~ ^[0-9a-f]{64}$ ]] || return 1
  printf 'sha256:%s' "${digest%% *}"
}

# yaml_value FILE KEY...: prints the scalar at the path KEY... (top-level key first) of the first
# YAML document in FILE that has it, quotes removed; status 1 when none has it. Reads only the
# block style components/node/kubeadm.ts renders (two spaces per level, one key per line); list
# items are skipped.
yaml_value() {
  local file="$1" line indent level=0 value
  shift
  local -a keys=("$@")
  [[ -r "$file" ]] || return 1
  while IFS= read -r line || [[ -n "$line" ]]; do
    if [[ "$line" == "---" ]]; then
      level=0
      continue
    fi
    [[ -n "${line//[[:space:]]/}" && ! "$line" =~ ^[[:space:]]*# ]] || continue
    indent="${line%%[! ]*}"
    indent=${#indent}
    # A line less indented than the current level closes the blocks above it.
    if ((indent < 2 * level)); then level=$((indent / 2)); fi
    ((indent == 2 * level)) || continue
    [[ "${line:indent}" =~ ^${keys[level]}:[[:space:]]*(.*)$ ]] || continue
    value="${BASH_REMATCH[1]}"
    if ((level + 1 < ${#keys[@]})); then
      level=$((level + 1))
      continue
    fi
    value="${value%"${value##*[! ]}"}"
    if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then value="${BASH_REMATCH[1]}"; fi
    [[ -n "$value" ]] || return 1
    printf '%s' "$value"
    return 0
  done <"$file"
  return 1
}

# deployed_kubernetes_version: the tag of the kube-apiserver image in the static pod manifest
# kubeadm wrote (cmd/kubeadm/app/phases/controlplane/manifests.go: <repository>/kube-apiserver:<version>).
deployed_kubernetes_version() {
  local manifest="${ROOT}/etc/kubernetes/manifests/kube-apiserver.yaml" line
  [[ -r "$manifest" ]] || return 1
  line="$(grep -m 1 -E '^[[:space:]-]*image:[[:space:]]*[^[:space:]]+/kube-apiserver:v[0-9]' "$manifest")" || return 1
  line="${line##*:}"
  printf '%s' "${line//[[:space:]\"\']/}"
}

# read_member_marker: fills `member` from the marker; exits 1 naming the problem when a line is
# not KEY=value of the known keys or a key is missing.
read_member_marker() {
  local marker line key
  marker="$(member_marker_path)"
  member=()
  while IFS= read -r line || [[ -n "$line" ]]; do
    [[ -n "$line" ]] || continue
    [[ "$line" =~ ^(role|node|endpoint|ca|version|completed)=(.+)$ ]] ||
      die "${marker}: unreadable line '${line}'; see ${MEMBER_RUNBOOK}"
    member[${BASH_REMATCH[1]}]="${BASH_REMATCH[2]}"
  done <"$marker"
  for key in role node endpoint ca version completed; do
    [[ -n "${member[$key]:-}" ]] || die "${marker}: no ${key}= line; see ${MEMBER_RUNBOOK}"
  done
}

# check_member_marker NODE ENDPOINT: the marker records this node, this endpoint and the cluster
# whose CA is in /etc/kubernetes/pki/ca.crt; otherwise exits 1 without touching anything.
check_member_marker() {
  local node="$1" endpoint="$2" marker ca
  marker="$(member_marker_path)"
  read_member_marker
  local -a wrong=()
  [[ "${member[node]}" == "$node" ]] || wrong+=("node ${member[node]} (this run: ${node})")
  [[ "${member[endpoint]}" == "$endpoint" ]] || wrong+=("endpoint ${member[endpoint]} (this run: ${endpoint})")
  if ca="$(ca_public_key_hash)"; then
    [[ "${member[ca]}" == "$ca" ]] || wrong+=("cluster CA ${member[ca]} (/etc/kubernetes/pki/ca.crt: ${ca})")
  else
    wrong+=("cluster CA ${member[ca]} (/etc/kubernetes/pki/ca.crt is missing or unreadable: reset by hand?)")
  fi
  if ((${#wrong[@]} > 0)); then
    local item
    log "error: ${marker} records a member of another cluster, endpoint or node name:"
    for item in "${wrong[@]}"; do log "  recorded ${item}"; done
    log "refusing to touch this node; see ${MEMBER_RUNBOOK}"
    exit 1
  fi
}

# write_member_marker ROLE NODE ENDPOINT: the last step of a membership script.
write_member_marker() {
  local role="$1" node="$2" endpoint="$3" marker ca version
  marker="$(member_marker_path)"
  ca="$(ca_public_key_hash)" || die "cannot hash the cluster CA /etc/kubernetes/pki/ca.crt for ${MEMBER_MARKER}"
  version="$(deployed_kubernetes_version)" ||
    die "no kube-apiserver image in /etc/kubernetes/manifests/kube-apiserver.yaml for ${MEMBER_MARKER}"
  install -d -m 0755 "${marker%/*}"
  write_file 0644 "$marker" < <(
    printf 'role=%s\nnode=%s\nendpoint=%s\nca=%s\nversion=%s\n' "$role" "$node" "$endpoint" "$ca" "$version"
    printf 'completed=%(%Y-%m-%dT%H:%M:%S%z)T\n' -1
  )
  log "wrote ${MEMBER_MARKER} (${role} of ${node}, cluster CA ${ca})"
}

# kubeadm_state: prints the kubeadm files and directories present on this node, space-separated
# ("" on a clean node): what `kubeadm reset` removes (cmd/kubeadm/app/cmd/phases/reset/cleanupnode.go).
kubeadm_state() {
  local -a found=()
  local path
  for path in /etc/kubernetes/pki/ca.crt /etc/kubernetes/admin.conf /etc/kubernetes/super-admin.conf \
    /etc/kubernetes/kubelet.conf /etc/kubernetes/bootstrap-kubelet.conf \
    /etc/kubernetes/manifests/etcd.yaml /etc/kubernetes/manifests/kube-apiserver.yaml \
    /etc/kubernetes/manifests/kube-controller-manager.yaml /etc/kubernetes/manifests/kube-scheduler.yaml \
    /var/lib/kubelet/config.yaml; do
    if [[ -e "${ROOT}${path}" ]]; then found+=("$path"); fi
  done
  if [[ -d "${ROOT}/var/lib/etcd" && -n "$(ls -A -- "${ROOT}/var/lib/etcd")" ]]; then found+=(/var/lib/etcd); fi
  printf '%s' "${found[*]}"
}

# has_state PATH: kubeadm_state found PATH (state in `state`, set by the caller).
has_state() { [[ " ${state} " == *" $1 "* ]]; }

# refuse_half_done KIND NODE [etcd-member]: kubeadm KIND stopped half way and this script cannot
# finish it: prints the reset commands, and with etcd-member the member removal on a healthy
# member, then exits 1. Nothing is changed.
refuse_half_done() {
  local kind="$1" node="$2" etcd_member="${3:-}"
  log "error: kubeadm ${kind} stopped half way on this node (found: ${state}); it cannot be finished safely."
  log "Reset this node, then run this script again:"
  log "  kubeadm reset -f"
  log "    (stops the static pods; removes /etc/kubernetes/manifests, /etc/kubernetes/pki, the kubeconfig"
  log "    files in /etc/kubernetes, /var/lib/etcd and the kubelet's files in /var/lib/kubelet)"
  log "  rm -rf /etc/cni/net.d"
  log "    (kubeadm reset leaves the CNI configuration)"
  if [[ -n "$etcd_member" ]]; then
    log "This node's etcd member may have been added to the cluster. kubeadm reset removes it when it can"
    log "reach etcd; then, on a healthy member, check and remove what is left:"
    log "  bash ${MEMBER_SCRIPTS_DIR}/membership.sh remove --node-name ${node} --peer-url https://<its private IP>:2380 --this-node <that member>"
    log "    (it finds the member by its peer URL, also unstarted; it does nothing when no member has it)"
  fi
  if [[ -f "${ROOT}${SEED_RECORD}" ]]; then
    log "This node was seeded from a backup (${SEED_RECORD}); the reset removes the restored /var/lib/etcd"
    log "and PKI: seed it again before this script runs (docs/runbooks/etcd-restore.md, \"Restore into new servers\")."
  fi
  log "See ${MEMBER_RUNBOOK} (kubeadm output: ${log_file})."
  exit 1
}

# ---------------------------------------------------------------------------------------------
# Adoption: a member set up before the marker existed. Every control-plane node of a stack
# created before these scripts wrote the marker is a complete member without one; the first
# re-run of its init or join command (any input change) must not take it for a half-done setup
# and re-run kubeadm's later phases on a live cluster, run control-plane-join with long-expired
# credentials, or tell the operator to reset a healthy member. So, before the half-done logic,
# a node without the marker whose kubeadm files are those of a completed setup is checked
# against the cluster, read-only, through admin.conf. When every proof that THIS node's setup
# completed holds, the marker is written (adopted) without any kubeadm call. Each proof is an
# effect of kubeadm's last phases that only a completed setup leaves (kubernetes/kubernetes,
# release 1.34):
#   both  the Node carries node-role.kubernetes.io/control-plane: mark-control-plane
#         (cmd/kubeadm/app/phases/markcontrolplane/markcontrolplane.go, labelsToAdd), run by
#         init's mark-control-plane phase (cmd/kubeadm/app/cmd/phases/init/markcontrolplane.go)
#         and as the last step of join's control-plane-join (cmd/kubeadm/app/cmd/phases/join/
#         controlplanejoin.go); its etcd member (named after the node: `--name` in the etcd
#         manifest, cmd/kubeadm/app/phases/etcd/local.go getEtcdCommand) is started and no
#         learner: join's etcd-join adds it as a learner and promotes it once it runs
#         (local.go CreateStackedEtcdStaticPodManifestFile: AddMemberAsLearner, MemberPromote);
#         and `etcdctl endpoint health --cluster` passes, as the gates require;
#   init  ConfigMap kube-system/kubeadm-config (upload-config: cmd/kubeadm/app/cmd/phases/init/
#         uploadconfig.go); ConfigMap kube-public/cluster-info (bootstrap-token:
#         cmd/kubeadm/app/cmd/phases/init/bootstraptoken.go, CreateBootstrapConfigMapIfNotExists);
#         Deployment kube-system/coredns and ConfigMap or DaemonSet kube-system/kube-proxy
#         (addon: cmd/kubeadm/app/cmd/phases/init/addons.go); kubelet.conf pointing at
#         /var/lib/kubelet/pki/kubelet-client-current.pem (kubelet-finalize:
#         cmd/kubeadm/app/cmd/phases/init/kubeletfinalize.go sets client-certificate and
#         client-key to that file).
# A missing proof means "half done": the scripts' half-done logic runs as before. An API server
# that does not answer, or any kubectl failure other than NotFound, or an unhealthy etcd, means
# the cluster cannot be checked: refused (exit 1, nothing changed, no marker), never "finish".

readonly CONTROL_PLANE_LABEL="node-role.kubernetes.io/control-plane"
readonly KUBELET_CLIENT_PEM="/var/lib/kubelet/pki/kubelet-client-current.pem"
# kubeadm's files of a completed setup (init or join), as kubeadm_state names them.
readonly -a COMPLETED_SETUP_FILES=(/etc/kubernetes/pki/ca.crt /etc/kubernetes/admin.conf /etc/kubernetes/kubelet.conf
  /etc/kubernetes/manifests/etcd.yaml /etc/kubernetes/manifests/kube-apiserver.yaml
  /etc/kubernetes/manifests/kube-controller-manager.yaml /etc/kubernetes/manifests/kube-scheduler.yaml
  /var/lib/kubelet/config.yaml /var/lib/etcd)

# completed_setup_files: kubeadm_state (in `state`) has every file of a completed setup.
completed_setup_files() {
  local path
  for path in "${COMPLETED_SETUP_FILES[@]}"; do has_state "$path" || return 1; done
}

# kubelet_conf_finalized: /etc/kubernetes/kubelet.conf takes the kubelet's client certificate
# and key from kubelet-client-current.pem, as kubelet-finalize writes it (clientcmd.WriteToFile:
# "client-certificate: <path>" and "client-key: <path>"), not embedded as init's kubeconfig
# phase writes it.
kubelet_conf_finalized() {
  local conf="${ROOT}/etc/kubernetes/kubelet.conf"
  grep -Eq "^[[:space:]]*client-certificate:[[:space:]]+${KUBELET_CLIENT_PEM}[[:space:]]*\$" "$conf" &&
    grep -Eq "^[[:space:]]*client-key:[[:space:]]+${KUBELET_CLIENT_PEM}[[:space:]]*\$" "$conf"
}

# What the last ask printed (stdout and stderr together).
answer=""

# ask COMMAND...: runs COMMAND, a bounded read-only kubectl call (`bounded kubectl ...` or
# lib.sh's etcdctl_in_pod); its stdout and stderr together in `answer` and in the log. Status 0:
# kubectl exited 0; 1: the object does not exist (kubectl prints `Error from server (NotFound):
# <resource> "<name>" not found` and exits 1: k8s.io/apimachinery/pkg/api/errors/errors.go
# NewNotFound, k8s.io/kubectl/pkg/cmd/util/helpers.go StandardErrorMessage); 2: anything else
# (no answer in time, connection refused, forbidden, a failing etcdctl): the cluster could not
# be asked.
ask() {
  local status=0
  answer="$("$@" 2>&1)" || status=$?
  printf '%s\n' "$answer" >>"$log_file"
  if ((status == 0)); then return 0; fi
  if [[ "$answer" == *"Error from server (NotFound): "* ]]; then return 1; fi
  return 2
}

# answer_has_line TEXT: one line of `answer` is exactly TEXT.
answer_has_line() { [[ $'\n'"${answer}"$'\n' == *$'\n'"$1"$'\n'* ]]; }

# refuse_unverifiable ROLE REASON: the node looks set up but the cluster cannot be checked.
refuse_unverifiable() {
  local role="$1" reason="$2"
  log "error: this node has the files of a completed kubeadm ${role} (found: ${state}) but no ${MEMBER_MARKER}:"
  log "it is either a member set up before the marker existed or a ${role} that stopped half way, and"
  log "only the cluster can tell which. The cluster cannot be checked: ${reason}."
  log "Nothing was changed: no kubeadm call, no marker. Run this script again once the API server"
  log "answers through /etc/kubernetes/admin.conf and etcd is healthy; do not reset a node that may be"
  log "a healthy member. See ${MEMBER_RUNBOOK} (kubectl output: ${log_file})."
  exit 1
}

# found ROLE WHAT COMMAND...: ask COMMAND; status 0 when it answered, 1 when the object is
# NotFound; refuses (refuse_unverifiable) when the cluster could not be asked.
found() {
  local role="$1" what="$2" status=0
  shift 2
  ask "$@" || status=$?
  if ((status == 2)); then refuse_unverifiable "$role" "kubectl could not read ${what}"; fi
  return "$status"
}

# etcd_member_voting NODE: `answer` (etcdctl member list -w simple) has the member named NODE,
# started and not a learner. The simple format, one member a line (etcd-io/etcd etcdctl/ctlv3/
# command/printer.go makeMemberListTable, printer_simple.go MemberList): "ID, STATUS, NAME, PEER
# ADDRS, CLIENT ADDRS, IS LEARNER", STATUS started or unstarted (a member that never ran has no
# name yet), IS LEARNER true or false. Other lines (etcdctl's warnings) are skipped.
etcd_member_voting() {
  local node="$1" line
  local -a fields
  while IFS= read -r line; do
    [[ "$line" =~ ^[0-9a-f]+,\  ]] || continue
    IFS=',' read -r -a fields <<<"${line//, /,}"
    if ((${#fields[@]} == 6)) && [[ "${fields[2]}" == "$node" ]]; then
      [[ "${fields[1]}" == started && "${fields[5]}" == false ]]
      return
    fi
  done <<<"$answer"
  return 1
}

# Set by adopt_member: true when the node was adopted (the marker is written).
adopted=false
# Set by adopt_member: true when the cluster showed this node's etcd member as a learner,
# unstarted or absent. Then no phase of kubeadm join can finish it (control-plane-join neither
# promotes a learner nor adds a member again), so the join refuses with the member removal.
etcd_member_not_voting=false

# not_adopted WHAT: logs the missing proof (the caller goes on as for a half-done node).
not_adopted() {
  log "not adopted: ${1}; treating the node as half done"
  adopted=false
}

# adopt_member ROLE NODE ENDPOINT: for a node without the marker (kubeadm_state in `state`,
# admin.conf in `admin_conf`). Sets `adopted`: false at once when kubeadm's files are not those
# of a completed setup, or when a proof is missing (logged), and the caller's half-done logic
# follows; true when every proof holds and the marker is written, without any kubeadm command.
# Exits 1 (refuse_unverifiable) when the cluster cannot be checked. Call it as a plain command,
# not in a condition, so that `set -e` holds inside.
adopt_member() {
  local role="$1" node="$2" endpoint="$3"
  adopted=false
  etcd_member_not_voting=false
  completed_setup_files || return 0
  log "no ${MEMBER_MARKER}, but kubeadm's files of a completed ${role} (found: ${state}): looking in the cluster for proof that the ${role} of ${node} completed (a member set up before the marker existed is adopted)"
  if [[ "$role" == init ]] && ! kubelet_conf_finalized; then
    not_adopted "/etc/kubernetes/kubelet.conf does not use ${KUBELET_CLIENT_PEM} (kubelet-finalize did not run)"
    return 0
  fi
  log "waiting up to ${timeout_seconds}s for the API server to report ready"
  wait_for apiserver_ready "$admin_conf" ||
    refuse_unverifiable "$role" "the API server did not report ready within ${timeout_seconds}s (kubectl get --raw /readyz)"

  # A label selector that is a bare key selects the objects with that label, whatever its value
  # (kubeadm sets ""); a list that matches nothing prints nothing (k8s.io/client-go/util/jsonpath).
  found "$role" "the Node ${node}" bounded kubectl --kubeconfig "$admin_conf" get nodes -l "$CONTROL_PLANE_LABEL" \
    --field-selector "metadata.name=${node}" -o 'jsonpath={.items[*].metadata.name}' || true
  if ! answer_has_line "$node"; then
    not_adopted "no Node ${node} with the label ${CONTROL_PLANE_LABEL} (mark-control-plane did not run)"
    return 0
  fi

  if ! found "$role" "the etcd member list in etcd-${node}" \
    etcdctl_in_pod "$admin_conf" "$node" https://127.0.0.1:2379 member list -w simple; then
    not_adopted "no etcd pod etcd-${node}"
    return 0
  fi
  if ! etcd_member_voting "$node"; then
    etcd_member_not_voting=true
    not_adopted "the etcd member list has no started, voting member ${node} (a learner, unstarted or absent)"
    return 0
  fi

  if [[ "$role" == init ]]; then
    local -a get=(bounded kubectl --kubeconfig "$admin_conf")
    local name='jsonpath={.metadata.name}'
    if ! found init "ConfigMap kube-system/kubeadm-config" "${get[@]}" -n kube-system get configmap kubeadm-config -o "$name"; then
      not_adopted "no ConfigMap kube-system/kubeadm-config (upload-config did not run)"
      return 0
    fi
    if ! found init "ConfigMap kube-public/cluster-info" "${get[@]}" -n kube-public get configmap cluster-info -o "$name"; then
      not_adopted "no ConfigMap kube-public/cluster-info (bootstrap-token did not run)"
      return 0
    fi
    if ! found init "Deployment kube-system/coredns" "${get[@]}" -n kube-system get deployment coredns -o "$name"; then
      not_adopted "no Deployment kube-system/coredns (addon did not run)"
      return 0
    fi
    if ! found init "ConfigMap kube-system/kube-proxy" "${get[@]}" -n kube-system get configmap kube-proxy -o "$name" &&
      ! found init "DaemonSet kube-system/kube-proxy" "${get[@]}" -n kube-system get daemonset kube-proxy -o "$name"; then
      not_adopted "neither ConfigMap nor DaemonSet kube-system/kube-proxy (addon did not run)"
      return 0
    fi
  fi

  # Through the local member, as lib.sh's gate does: an unhealthy etcd vouches for nothing.
  etcd_cluster_healthy "$admin_conf" "$node" ||
    refuse_unverifiable "$role" "etcdctl endpoint health --cluster did not pass in etcd-${node}"

  log "adopted: every proof holds that the ${role} of ${node} completed (a member set up before ${MEMBER_MARKER} existed); no kubeadm command runs"
  write_member_marker "$role" "$node" "$endpoint"
  # shellcheck disable=SC2034 # read by the sourcing script
  adopted=true
}
