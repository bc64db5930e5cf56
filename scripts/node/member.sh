# shellcheck shell=bash disable=SC2154 # ROOT, log_file and staged are set by the sourcing script and lib.sh
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
#   version=<vX.Y.Z>    the kube-apiserver image tag kubeadm wrote into its manifest
#   completed=<time>    when the script finished, ISO 8601 with the UTC offset

readonly MEMBER_MARKER="/var/lib/kubernetes-node/member"
readonly MEMBER_RUNBOOK="docs/runbooks/member-setup-failed.md"
# Where Pulumi puts these scripts on a node (components/nodeScripts.ts nodeScriptsDir).
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
# block style components/kubeadm.ts renders (two spaces per level, one key per line); list
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
    log "  bash ${MEMBER_SCRIPTS_DIR}/remove-etcd-member.sh --member ${node}"
    log "    (it does nothing when the member list no longer shows ${node})"
  fi
  log "See ${MEMBER_RUNBOOK} (kubeadm output: ${log_file})."
  exit 1
}
