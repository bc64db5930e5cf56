#!/usr/bin/env bash
# Gives THIS control-plane node's API server a serving certificate with the wanted subject
# alternative names (SANs): the cluster's kubeadm ClusterConfiguration (ConfigMap
# kube-system/kubeadm-config) is updated to name them, kubeadm generates the new certificate, the
# old pair is backed up, kube-apiserver is restarted and must serve the new certificate, all
# behind the API server and etcd health gates; when the node does not come back healthy, the old
# pair is put back and kube-apiserver restarted again. Pulumi runs it on one node at a time when
# the addresses clients reach the API by change (apiDnsName, loadBalancerPublicInterface). A
# node whose certificate, served certificate and ClusterConfiguration already match only says
# so.
set -euo pipefail
umask 077
# Bash's regular expressions follow the locale; C makes [a-z] mean exactly a to z.
export LC_ALL=C

readonly SCRIPT_NAME="apiserver-sans"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'EOF'
Usage: apiserver-sans.sh --node-name NAME --node-ip IP --endpoint HOST [--san NAME|IP]...
                         [--local-port PORT] [--timeout SECONDS] [--root DIR]

Makes this control-plane node's API server certificate carry the wanted SANs, one node at a
time. Run as root on the node, on one control-plane node after the other.

Options:
  --node-name NAME   Kubernetes node name of this node (kubeadm's nodeRegistration.name: a SAN
                     of its certificate; its etcd pod is etcd-NAME). Required.
  --node-ip IP       This node's advertise address (its private IPv4): a SAN of its
                     certificate, and where this script reaches its own API server. Required.
  --endpoint HOST    Host of the cluster's controlPlaneEndpoint (IPv4 or lowercase DNS name;
                     the port stays as the cluster has it, 6443). Required.
  --san NAME|IP      An address clients reach the API server by (IPv4, IPv6 or lowercase DNS
                     name); repeat it for each. The cluster's apiServer.certSANs become these
                     and HOST, deduplicated and sorted, as components/node/kubeadm.ts renders
                     them. None: certSANs is HOST alone.
  --local-port PORT  The port kube-apiserver serves on at IP (default 6443).
  --timeout SECONDS  Longest wait for each gate, each container to stop or start, and each
                     kubeadm or kubectl call (default 300).
  --root DIR         Prefix for every file this script reads or writes (default: $ROOT, else
                     empty, meaning /). For tests; commands still act on this host.
  -h, --help         Show this help and exit.

Environment:
  ROOT          Same as --root; the flag wins.
  POLL_SECONDS  Pause between checks (default 5; may be fractional, e.g. 0.1).

The certificate kubeadm makes (kubeadm init phase certs apiserver; GetAPIServerAltNames in
cmd/kubeadm/app/util/pkiutil/pki_helpers.go, kubernetes/kubernetes) has the DNS names NAME,
kubernetes, kubernetes.default, kubernetes.default.svc, kubernetes.default.svc.<dnsDomain>, the
IPs <first IP of the service subnet> and IP, the controlPlaneEndpoint host, and every certSANs
entry. kubeadm keeps an existing apiserver.crt that is signed by the CA and valid for at least
those names (a removed SAN would stay), and refuses one that lacks any
(writeCertificateFilesIfNotExist and validateCertificateWithConfig in
cmd/kubeadm/app/phases/certs/certs.go), so the new pair is always made in an empty directory.

Gate: `kubectl --kubeconfig /etc/kubernetes/admin.conf --server https://IP:PORT get --raw
/readyz` answers ok (this node's own API server), then `etcdctl endpoint health --cluster`
passes in etcd-NAME (through kubectl exec), each waited for.
Steps (each safe to repeat; a re-run resumes):
  1. a kube-apiserver manifest an interrupted run left in /etc/kubernetes/manifests-parked/ is
     put back;
  2. the ClusterConfiguration is read from ConfigMap kube-system/kubeadm-config and the wanted
     one derived from it: controlPlaneEndpoint HOST:<its port>, apiServer.certSANs as above,
     everything else as the cluster has it (kubernetesVersion included: upgrades are not this
     script's business);
  3. kubeadm init phase certs apiserver --config <that ClusterConfiguration with this node's
     InitConfiguration> makes a candidate pair in the empty staging directory
     /var/lib/kubernetes-node/apiserver-sans/staging (the CA linked in, never copied); it must
     carry HOST and every --san;
  4. already done? The SANs of /etc/kubernetes/pki/apiserver.crt (openssl x509 -ext
     subjectAltName) equal the candidate's, the certificate served at IP:PORT (openssl
     s_client) is that file's, and the ConfigMap names HOST and the certSANs: exit 0, nothing
     changed;
  5. gate; a red gate refuses with nothing changed;
  6. the ConfigMap's ClusterConfiguration is replaced by the wanted one (kubectl patch, a JSON
     merge patch of data.ClusterConfiguration alone), unless it names them already; any
     control-plane node may do this and writes the same content; kubeadm reads certSANs from
     there for later joins, upgrades and renewals;
  7. unless a backup of an unfinished run is pending, apiserver.crt and apiserver.key are copied
     to /etc/kubernetes/tmp/apiserver-sans-<UTC time>/ (directory 0700, files 0600) and the
     pending file /var/lib/kubernetes-node/apiserver-sans/pending names it; the candidate pair
     replaces the pair in /etc/kubernetes/pki (each file atomically), unless it is in place;
  8. kube-apiserver is restarted: its manifest moved to /etc/kubernetes/manifests-parked/, its
     container awaited gone (crictl), the manifest put back, its container awaited running
     (a certificate change does not change the manifest, so the kubelet would not restart it;
     kubeadm's "Manual certificate renewal" says the static pods must be restarted);
  9. gate again, and the certificate served at IP:PORT must be the new apiserver.crt;
  10. the pending file and the staging directory are removed (the backup stays).
A failure in 7 to 9 puts the backed-up pair back, restarts kube-apiserver and gates again, then
exits 1 naming the step; when even that fails, the message gives the commands that restore the
pair by hand. The ConfigMap keeps the wanted certSANs: a re-run of the same command converges.
kube-vip and the other static pods are not restarted: a SAN change renews no client
certificate (admin.conf, controller-manager.conf, scheduler.conf and the kubelet's keep theirs)
and not the CA they verify the API server with.
kubeadm, kubectl, openssl and crictl output goes to the root-only log
/var/log/hcloud-control-plane/apiserver-sans.log (0600).

Exit status: 0 the node serves a certificate with the wanted SANs (or already did), 1 a step or
a gate failed or timed out (a refusal changes nothing), 2 usage error.
EOF
}

readonly ADMIN_CONF="/etc/kubernetes/admin.conf"
readonly PKI="/etc/kubernetes/pki"
readonly WORK="/var/lib/kubernetes-node/apiserver-sans"
readonly BACKUPS="/etc/kubernetes/tmp"
readonly KUBEADM_CONFIG="ConfigMap kube-system/kubeadm-config"

node_name=""
node_ip=""
endpoint=""
sans=()
local_port="6443"
timeout_seconds="300"
ROOT="${ROOT:-}"
POLL_SECONDS="${POLL_SECONDS:-5}"

# is_ipv6 ADDRESS: hex groups and colons, at most one "::", no zone, no embedded IPv4.
is_ipv6() {
  [[ "$1" =~ ^[0-9a-f:]+$ && "$1" == *:*:* && "$1" != *:::* ]] || return 1
  local rest="${1/::/}"
  [[ "$rest" != *::* ]] || return 1
  local -a groups
  local group
  IFS=: read -r -a groups <<<"$1"
  ((${#groups[@]} <= 8)) || return 1
  for group in "${groups[@]}"; do [[ ${#group} -le 4 ]] || return 1; done
}

parse_args() {
  parse_flags --node-name=node_name --node-ip=node_ip --endpoint=endpoint --san=sans[] \
    --local-port=local_port --timeout=timeout_seconds --root=ROOT -- "$@"

  is_dns_name "$node_name" || usage_error "--node-name must be a lowercase DNS name, got '${node_name}'"
  is_ipv4 "$node_ip" || usage_error "--node-ip must be an IPv4 address, got '${node_ip}'"
  is_ipv4 "$endpoint" || is_dns_name "$endpoint" ||
    usage_error "--endpoint must be an IPv4 address or a lowercase DNS name, got '${endpoint}'"
  local san
  for san in "${sans[@]}"; do
    is_ipv4 "$san" || is_ipv6 "$san" || is_dns_name "$san" ||
      usage_error "--san must be an IPv4 or IPv6 address or a lowercase DNS name, got '${san}'"
  done
  if [[ ! "$local_port" =~ ^[1-9][0-9]{0,4}$ ]] || ((local_port > 65535)); then
    usage_error "--local-port must be a port number, got '${local_port}'"
  fi
  check_timeout
  check_poll_seconds
  check_root_dir
}

# ---------------------------------------------------------------------------------------------
# Failures name the node and the step. From the moment the new pair may be in place (step 7)
# until the gates after the restart passed, a failure rolls back first (rollback below).

step=""
swapped=false
fail() {
  if "$swapped"; then rollback "$*"; fi
  node_failed "${step}: $*"
}

# A manifest restart_static_pod (lib.sh) parked is put back and a staged file removed on every
# exit, signals included; so is the staging directory (it holds a private key nothing uses).
on_exit() {
  restore_parked_static_pod
  remove_staged
  if [[ -n "${staging:-}" ]]; then rm -rf -- "$staging"; fi
}
cleanup_on_exit on_exit

# ---------------------------------------------------------------------------------------------
# Certificates, read with openssl.

# san_list FILE: the certificate's SANs, one a line, sorted, as openssl prints them
# ("DNS:kubernetes", "IP Address:10.96.0.1"); status 1 when FILE is no certificate.
san_list() {
  local text
  text="$(openssl x509 -in "$1" -noout -ext subjectAltName 2>>"$log_file")" || return 1
  sed -n '2,$p' <<<"$text" | tr ',' '\n' | sed 's/^[[:space:]]*//; /^$/d' | sort -u
}

# fingerprint FILE: the SHA-256 fingerprint of the certificate in FILE (PEM).
fingerprint() { openssl x509 -in "$1" -noout -fingerprint -sha256 2>>"$log_file"; }

# served_fingerprint: the fingerprint of the certificate served at IP:PORT (one bounded attempt).
served_fingerprint() {
  local pem
  pem="$(bounded openssl s_client -connect "${node_ip}:${local_port}" </dev/null 2>>"$log_file")" || return 1
  openssl x509 -noout -fingerprint -sha256 <<<"$pem" 2>>"$log_file"
}

# serves_current_certificate: this node's API server serves /etc/kubernetes/pki/apiserver.crt.
serves_current_certificate() {
  local served
  served="$(served_fingerprint)" || return 1
  [[ "$served" == "$(fingerprint "${ROOT}${PKI}/apiserver.crt")" ]]
}

# openssl_san SAN: SAN as openssl prints it: "DNS:name", "IP Address:1.2.3.4", and IPv6 as eight
# groups of uppercase hex without leading zeros ("IP Address:2A01:4F8:0:0:0:0:0:1",
# crypto/x509/v3_utl.c ossl_ipaddr_to_asc in openssl/openssl).
openssl_san() {
  if is_ipv4 "$1"; then
    printf 'IP Address:%s' "$1"
  elif is_ipv6 "$1"; then
    local head="${1%%::*}" tail="" out=() group missing i
    local -a first=() last=()
    if [[ "$1" == *::* ]]; then tail="${1#*::}"; else head="$1"; fi
    if [[ -n "$head" ]]; then IFS=: read -r -a first <<<"$head"; fi
    if [[ -n "$tail" ]]; then IFS=: read -r -a last <<<"$tail"; fi
    missing=$((8 - ${#first[@]} - ${#last[@]}))
    for group in "${first[@]}"; do out+=("$group"); done
    for ((i = 0; i < missing; i++)); do out+=(0); done
    for group in "${last[@]}"; do out+=("$group"); done
    local joined=""
    for group in "${out[@]}"; do printf -v group '%X' "$((16#$group))"; joined+="${joined:+:}${group}"; done
    printf 'IP Address:%s' "$joined"
  else
    printf 'DNS:%s' "$1"
  fi
}

# ---------------------------------------------------------------------------------------------
# The ClusterConfiguration. kubeadm's upload-config phase writes it under the key
# ClusterConfiguration of ConfigMap kube-system/kubeadm-config (UploadConfiguration in
# cmd/kubeadm/app/phases/uploadconfig/uploadconfig.go), as YAML by sigs.k8s.io/yaml: keys sorted,
# two-space indentation, the items of a list at the indentation of its key. The edit below relies
# on that layout only for the two keys it sets, and step 3 proves it worked: kubeadm itself
# reads the result, and the certificate it makes must carry HOST and every --san.

cluster_configuration=""
# read_cluster_configuration: one bounded attempt for wait_for; kubectl's errors go to the log.
read_cluster_configuration() {
  cluster_configuration="$(bounded kubectl --kubeconfig "$kubeconfig" -n kube-system get configmap \
    kubeadm-config -o 'jsonpath={.data.ClusterConfiguration}' 2>>"$log_file")" &&
    grep -qx 'kind: ClusterConfiguration' <<<"$cluster_configuration"
}

# wanted_sans: HOST and every --san, deduplicated and sorted (components/node/kubeadm.ts).
wanted_sans() { printf '%s\n' "$endpoint" "${sans[@]}" | sort -u; }

# configured_endpoint_port: the port of the cluster's controlPlaneEndpoint (default 6443).
configured_endpoint_port() {
  local line port=6443
  line="$(grep -m 1 -E '^controlPlaneEndpoint:' <<<"$cluster_configuration" || true)"
  if [[ "$line" =~ :([0-9]+)[\"\']?[[:space:]]*$ ]]; then port="${BASH_REMATCH[1]}"; fi
  printf '%s' "$port"
}

# edit_cluster_configuration ENDPOINT CERT_DIR SAN...: prints the ClusterConfiguration (stdin)
# with controlPlaneEndpoint ENDPOINT, apiServer.certSANs the SANs (in order) and, when CERT_DIR
# is not empty, certificatesDir CERT_DIR; every other line as it was.
edit_cluster_configuration() {
  local endpoint_value="$1" cert_dir="$2"
  shift 2
  awk -v endpoint="$endpoint_value" -v certdir="$cert_dir" -v sans="$*" '
    function emit_sans(   n, i, list) {
      print "  certSANs:"
      n = split(sans, list, " ")
      for (i = 1; i <= n; i++) print "  - " list[i]
    }
    BEGIN { in_api = 0; skipping = 0; seen_endpoint = 0; seen_dir = 0; seen_api = 0 }
    /^[^ ]/ { in_api = 0; skipping = 0 }
    in_api && /^  certSANs:/ { skipping = 1; next }
    skipping && /^  - / { next }
    skipping && /^    / { next }
    skipping { skipping = 0 }
    /^controlPlaneEndpoint:/ { print "controlPlaneEndpoint: " endpoint; seen_endpoint = 1; next }
    /^certificatesDir:/ && certdir != "" { print "certificatesDir: " certdir; seen_dir = 1; next }
    /^apiServer: *\{\} *$/ { print "apiServer:"; emit_sans(); seen_api = 1; next }
    /^apiServer: *$/ { print; emit_sans(); in_api = 1; seen_api = 1; next }
    { print }
    END {
      if (!seen_api) { print "apiServer:"; emit_sans() }
      if (!seen_endpoint) print "controlPlaneEndpoint: " endpoint
      if (!seen_dir && certdir != "") print "certificatesDir: " certdir
    }'
}

# configured_sans: the apiServer.certSANs of cluster_configuration, one a line, sorted, quotes
# dropped; configured_endpoint_host: the host of its controlPlaneEndpoint.
configured_sans() {
  awk '/^[^ ]/ { in_api = ($0 ~ /^apiServer:/); listing = 0 }
    in_api && /^  certSANs:/ { listing = 1; next }
    listing && /^  - / { v = substr($0, 5); gsub(/^["\047]|["\047]$/, "", v); print v; next }
    listing { listing = 0 }' <<<"$cluster_configuration" | sort -u
}
configured_endpoint_host() {
  local line value
  line="$(grep -m 1 -E '^controlPlaneEndpoint:' <<<"$cluster_configuration" || true)"
  value="${line#controlPlaneEndpoint:}"
  value="${value//[[:space:]\"\']/}"
  printf '%s' "${value%:*}"
}

configmap_current() {
  [[ "$(configured_endpoint_host)" == "$endpoint" && "$(configured_sans)" == "$(wanted_sans)" ]]
}

# json_string: stdin as one JSON string (RFC 8259: backslash, quote and control characters
# escaped). kubeadm's YAML has no control characters but newlines; any other is refused.
json_string() {
  local text
  text="$(cat)"
  if [[ "$text" =~ [[:cntrl:]] && "${text//$'\n'/}" =~ [[:cntrl:]] ]]; then return 1; fi
  text="${text//\\/\\\\}"
  text="${text//\"/\\\"}"
  text="${text//$'\n'/\\n}"
  printf '"%s\\n"' "$text"
}

# ---------------------------------------------------------------------------------------------
# Gates.

local_apiserver_ready() {
  local output
  output="$(bounded kubectl --kubeconfig "$kubeconfig" --server "https://${node_ip}:${local_port}" \
    get --raw /readyz 2>>"$log_file")" || return 1
  [[ "$output" == "ok" ]]
}

# gates FAIL: this node's /readyz, then etcd's cluster health (lib.sh), each waited for.
gates() {
  local on_failure="$1"
  wait_for local_apiserver_ready ||
    "$on_failure" "this node's API server did not report ready within ${timeout_seconds}s (kubectl get --raw /readyz at https://${node_ip}:${local_port}); see ${log_file}"
  wait_for etcd_cluster_healthy "$kubeconfig" "$node_name" ||
    "$on_failure" "etcd endpoint health --cluster did not pass within ${timeout_seconds}s; see ${log_file}"
}

refuse() {
  local unfinished=""
  if [[ -n "$(pending_backup)" ]]; then
    unfinished="; an unfinished earlier run left the previous certificate in $(pending_backup) (docs/runbooks/api-endpoint-change.md)"
  fi
  node_failed "refusing to change the API server certificate: $*; nothing was changed${unfinished}"
}

# ---------------------------------------------------------------------------------------------
# The backup and the way back.

pending_file() { printf '%s%s/pending' "$ROOT" "$WORK"; }

# pending_backup: the backup directory (without ROOT) of an unfinished run, or nothing.
pending_backup() {
  if [[ -f "$(pending_file)" ]]; then printf '%s' "$(<"$(pending_file)")"; fi
}

recovery_commands() {
  local dir="$1"
  printf '%s' "install -m 0600 ${dir}/apiserver.key ${PKI}/apiserver.key && install -m 0644 ${dir}/apiserver.crt ${PKI}/apiserver.crt && mv /etc/kubernetes/manifests/kube-apiserver.yaml /etc/kubernetes/ && sleep 20 && mv /etc/kubernetes/kube-apiserver.yaml /etc/kubernetes/manifests/"
}

rolling_back=false
rollback_failed() {
  local dir
  dir="$(pending_backup)"
  node_failed "${step}: rolling back failed: $*; the previous certificate is in ${dir}: restore it by hand with: $(recovery_commands "$dir"), then check this node (kubectl get --raw /readyz)"
}

# rollback REASON: the backed-up pair back in place, kube-apiserver restarted with it, the
# gates; then exits 1 with REASON.
rollback() {
  "$rolling_back" && return 0
  rolling_back=true
  swapped=false
  local reason="$1" dir
  dir="$(pending_backup)"
  [[ -n "$dir" && -f "${ROOT}${dir}/apiserver.crt" && -f "${ROOT}${dir}/apiserver.key" ]] ||
    rollback_failed "no backup to restore"
  log "${node_name}: ${step} failed: ${reason}; putting the previous certificate back from ${dir}"
  restore_parked_static_pod
  parked_pod=""
  write_file 0600 "${ROOT}${PKI}/apiserver.key" <"${ROOT}${dir}/apiserver.key"
  write_file 0644 "${ROOT}${PKI}/apiserver.crt" <"${ROOT}${dir}/apiserver.crt"
  restart_static_pod kube-apiserver rollback_failed
  gates rollback_failed
  rm -f -- "$(pending_file)"
  node_failed "${step}: ${reason}; the previous certificate is back (kept in ${dir}) and kube-apiserver runs with it; the ClusterConfiguration keeps the new certSANs; fix the cause and run the same command again"
}

# ---------------------------------------------------------------------------------------------
# Steps.

kubeconfig=""
staging=""
backup_dir=""

# make_candidate: step 3.
make_candidate() {
  step="candidate certificate"
  local port config
  port="$(configured_endpoint_port)"
  rm -rf -- "$staging"
  install -d -m 0700 "$staging"
  ln -s "${ROOT}${PKI}/ca.crt" "${staging}/ca.crt"
  ln -s "${ROOT}${PKI}/ca.key" "${staging}/ca.key"
  config="${ROOT}${WORK}/kubeadm.yaml"
  # This node's InitConfiguration: without it kubeadm would take the address of the default
  # route (the public interface on Hetzner) and the host name.
  {
    printf '%s\n' "apiVersion: kubeadm.k8s.io/v1beta4" "kind: InitConfiguration" "localAPIEndpoint:" \
      "  advertiseAddress: ${node_ip}" "  bindPort: ${local_port}" "nodeRegistration:" "  name: ${node_name}" "---"
    # shellcheck disable=SC2046 # one word per SAN
    edit_cluster_configuration "${endpoint}:${port}" "$staging" $(wanted_sans) <<<"$cluster_configuration"
  } | write_file 0600 "$config"
  bounded kubeadm init phase certs apiserver --config "$config" >>"$log_file" 2>&1 ||
    fail "kubeadm init phase certs apiserver failed; nothing was changed; see ${log_file}"
  local have want missing=()
  have="$(san_list "${staging}/apiserver.crt")" || fail "kubeadm wrote no readable ${staging}/apiserver.crt"
  while IFS= read -r want; do
    grep -qxF "$(openssl_san "$want")" <<<"$have" || missing+=("$want")
  done < <(wanted_sans)
  ((${#missing[@]} == 0)) ||
    fail "the certificate kubeadm made lacks ${missing[*]}: the ClusterConfiguration of ${KUBEADM_CONFIG} could not be edited; nothing was changed"
}

already_done() {
  local current differs=()
  current="$(san_list "${ROOT}${PKI}/apiserver.crt")" || current=""
  if [[ "$current" != "$(san_list "${staging}/apiserver.crt")" ]]; then differs+=("the SANs of apiserver.crt"); fi
  if ! configmap_current; then differs+=("the certSANs or controlPlaneEndpoint of ${KUBEADM_CONFIG}"); fi
  if ! serves_current_certificate; then differs+=("the certificate served at ${node_ip}:${local_port}"); fi
  if [[ -n "$(pending_backup)" ]]; then differs+=("an unfinished run (backup $(pending_backup))"); fi
  if ((${#differs[@]} == 0)); then return 0; fi
  local joined
  printf -v joined '%s, ' "${differs[@]}"
  log "${node_name}: to change: ${joined%, }"
  return 1
}

update_configmap() {
  step="ClusterConfiguration"
  if configmap_current; then
    log "${KUBEADM_CONFIG} names ${endpoint} and the certSANs already"
    return 0
  fi
  local port patch value
  port="$(configured_endpoint_port)"
  # shellcheck disable=SC2046 # one word per SAN
  value="$(edit_cluster_configuration "${endpoint}:${port}" "" $(wanted_sans) <<<"$cluster_configuration" | json_string)" ||
    fail "the ClusterConfiguration of ${KUBEADM_CONFIG} holds control characters; nothing was changed"
  patch="${ROOT}${WORK}/configmap-patch.json"
  write_file 0600 "$patch" <<<"{\"data\":{\"ClusterConfiguration\":${value}}}"
  log "${node_name}: updating ${KUBEADM_CONFIG}: controlPlaneEndpoint ${endpoint}:${port}, certSANs $(wanted_sans | paste -sd ' ')"
  bounded kubectl --kubeconfig "$kubeconfig" -n kube-system patch configmap kubeadm-config --type merge \
    --patch-file "$patch" >>"$log_file" 2>&1 ||
    fail "kubectl patch configmap kubeadm-config failed; the certificate was not touched; see ${log_file}"
  rm -f -- "$patch"
  if ! wait_for read_cluster_configuration || ! configmap_current; then
    fail "${KUBEADM_CONFIG} does not name the new certSANs after the patch; the certificate was not touched; see ${log_file}"
  fi
}

install_pair() {
  step="backup"
  local dir stamp
  dir="$(pending_backup)"
  if [[ -n "$dir" ]]; then
    log "${node_name}: the backup ${dir} of an unfinished run is kept as the previous certificate"
  else
    # The UTC time, to the second; a later run never overwrites an earlier backup.
    stamp="$(date -u +%Y%m%dT%H%M%SZ)"
    dir="${BACKUPS}/apiserver-sans-${stamp}"
    if [[ -e "${ROOT}${dir}" ]]; then dir+="-$$"; fi
    install -d -m 0700 "${ROOT}${BACKUPS}" "${ROOT}${dir}"
    install -m 0600 "${ROOT}${PKI}/apiserver.crt" "${ROOT}${dir}/apiserver.crt"
    install -m 0600 "${ROOT}${PKI}/apiserver.key" "${ROOT}${dir}/apiserver.key"
    write_file 0600 "$(pending_file)" <<<"$dir"
    log "${node_name}: the previous certificate is backed up in ${dir}"
  fi
  backup_dir="$dir"
  step="new certificate"
  # From here a failure puts the backed-up pair back (fail, rollback).
  swapped=true
  if [[ "$(san_list "${ROOT}${PKI}/apiserver.crt")" == "$(san_list "${staging}/apiserver.crt")" ]]; then
    # An unfinished run put a pair with these SANs in place already; it stays.
    log "${node_name}: ${PKI}/apiserver.crt has the wanted SANs already (an unfinished run)"
    return 0
  fi
  write_file 0600 "${ROOT}${PKI}/apiserver.key" <"${staging}/apiserver.key"
  write_file 0644 "${ROOT}${PKI}/apiserver.crt" <"${staging}/apiserver.crt"
  log "${node_name}: the new certificate is in ${PKI}/apiserver.crt"
}

main() {
  parse_args "$@"
  require_root
  kubeconfig="${ROOT}${ADMIN_CONF}"
  staging="${ROOT}${WORK}/staging"
  [[ -f "$kubeconfig" ]] || die "${node_name}: ${ADMIN_CONF} not found: run this on a control-plane node"
  [[ -f "${ROOT}${PKI}/apiserver.crt" && -f "${ROOT}${PKI}/ca.key" ]] ||
    die "${node_name}: ${PKI}/apiserver.crt or ca.key not found: not a kubeadm control-plane node"
  open_log --node-name "$node_name" --endpoint "$endpoint" "${sans[@]/#/--san }"
  install -d -m 0700 "${ROOT}${WORK}"
  unpark_static_pod kube-apiserver

  step="reading ${KUBEADM_CONFIG}"
  wait_for read_cluster_configuration ||
    fail "cannot read a ClusterConfiguration from ${KUBEADM_CONFIG} within ${timeout_seconds}s (kubectl -n kube-system get configmap kubeadm-config); nothing was changed; see ${log_file}"
  make_candidate

  if already_done; then
    rm -rf -- "$staging"
    log "${node_name}: the API server certificate already has the wanted SANs and is served; nothing to do"
    exit 0
  fi

  step="gate before"
  gates refuse
  update_configmap
  install_pair
  step="kube-apiserver restart"
  restart_static_pod kube-apiserver fail
  step="gate after"
  gates fail
  wait_for serves_current_certificate ||
    fail "this node's API server does not serve the new certificate at ${node_ip}:${local_port} within ${timeout_seconds}s (openssl s_client); see ${log_file}"
  swapped=false
  rm -f -- "$(pending_file)"
  rm -rf -- "$staging"
  step=""
  log "${node_name}: the API server serves a certificate for $(wanted_sans | paste -sd ' '); the previous one is kept in ${backup_dir}"
}

main "$@"
