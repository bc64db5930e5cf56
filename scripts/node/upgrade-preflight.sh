#!/usr/bin/env bash
# Checks, before anything changes, that the cluster may be upgraded to a Kubernetes version:
# the version-skew policy and kubeadm's one-minor-at-a-time rule against the running
# kube-apiservers and kubelets, and a healthy cluster. Read-only. Pulumi runs it on any healthy
# control-plane member before upgrade-node.sh runs anywhere: it reads the whole cluster through
# admin.conf and checks etcd through this node's own member, so no node is special.
set -euo pipefail
umask 077
# Bash's regular expressions follow the locale; C makes [a-z] mean exactly a to z.
export LC_ALL=C

readonly SCRIPT_NAME="upgrade-preflight"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'EOF'
Usage: upgrade-preflight.sh --version X.Y.Z [--node-name NAME] [--timeout SECONDS] [--root DIR]

Checks that the cluster may be upgraded to Kubernetes X.Y.Z, changing nothing. Run as root on a
control-plane node; kubectl uses /etc/kubernetes/admin.conf.

Options:
  --version X.Y.Z    Target Kubernetes version, e.g. 1.35.0. Required.
  --node-name NAME   Kubernetes node name of this node, for the etcd pod etcd-NAME (default: the
                     output of `hostname`).
  --timeout SECONDS  Longest wait for each of: the API server's /readyz, reading the versions,
                     and etcd cluster health (default 300).
  --root DIR         Prefix for every file this script reads or writes (default: $ROOT, else
                     empty, meaning /). For tests; commands still act on this host.
  -h, --help         Show this help and exit.

Environment:
  ROOT          Same as --root; the flag wins.
  POLL_SECONDS  Pause between retries (default 5; may be fractional, e.g. 0.1).

Checks (every violation is listed, with the node and its version):
  1. the API server answers /readyz (without it nothing else can be read: exit 1 at once);
  2. the kube-apiserver versions: the image tags of the kube-apiserver static pods
     (kubectl -n kube-system get pods -l component=kube-apiserver);
     - no downgrade: no kube-apiserver is newer than X.Y.Z;
     - one minor at a time: every kube-apiserver is at minor X.Y or one below (kubeadm
       upgrades one minor at a time), and at major X;
  3. the kubelet versions of every Node (kubectl get nodes):
     - none newer than X.Y.Z (a kubelet must not be newer than kube-apiserver);
     - none more than three minors older than X.Y;
  4. etcd: `etcdctl endpoint health --cluster` in the etcd-NAME static pod passes.
A patch step (1.34.2 -> 1.34.3) and the running version itself (nothing to do) pass.
kubectl output and errors go to /var/log/hcloud-control-plane/upgrade-preflight.log (0600).
On success one line goes to stdout, e.g.
  upgrade-preflight: target 1.35.0: 3 API servers at 1.34.2, 5 kubelets between 1.33.4 and 1.34.2: ok

Exit status: 0 the upgrade may go ahead, 1 a check failed (each violation on stderr) or timed
out, 2 usage error.
EOF
}

# The versions as the script reads them: one "<node> <value>" line per object. The image is the
# kube-apiserver container's (registry.k8s.io/kube-apiserver:v1.34.2).
# shellcheck disable=SC2016 # jsonpath, not shell
readonly APISERVER_JSONPATH='{range .items[*]}{.spec.nodeName}{" "}{.spec.containers[?(@.name=="kube-apiserver")].image}{"\n"}{end}'
readonly KUBELET_JSONPATH='{range .items[*]}{.metadata.name}{" "}{.status.nodeInfo.kubeletVersion}{"\n"}{end}'

target=""
node_name=""
timeout_seconds="300"
ROOT="${ROOT:-}"
POLL_SECONDS="${POLL_SECONDS:-5}"

parse_args() {
  parse_flags --version=target --node-name=node_name --timeout=timeout_seconds --root=ROOT -- "$@"

  [[ "$target" =~ ^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$ ]] ||
    usage_error "--version must look like 1.35.0 (no v prefix), got '${target}'"
  check_timeout
  check_poll_seconds
  check_root_dir
  if [[ -z "$node_name" ]]; then node_name="$(hostname)"; fi
  is_dns_name "$node_name" || usage_error "--node-name must be a lowercase DNS name, got '${node_name}'"
}

# ---------------------------------------------------------------------------------------------
# Versions.

# parse_version TEXT: sets major, minor, patch from "vX.Y.Z" or "X.Y.Z", with anything after Z
# (a build suffix such as +k3s1) ignored; returns 1 when TEXT is not a version.
major=0
minor=0
patch=0
parse_version() {
  [[ "$1" =~ ^v?([0-9]+)\.([0-9]+)\.([0-9]+)([-+].*)?$ ]] || return 1
  major=$((10#${BASH_REMATCH[1]}))
  minor=$((10#${BASH_REMATCH[2]}))
  patch=$((10#${BASH_REMATCH[3]}))
}

# image_tag IMAGE: prints the tag of an image reference (registry:5000/x:v1.34.2@sha256:... ->
# v1.34.2), or nothing when it has none.
image_tag() {
  local reference="${1%%@*}" last
  last="${reference##*/}"
  if [[ "$last" == *:* ]]; then printf '%s' "${last##*:}"; fi
}

# Comparable number of a parsed version (minor and patch below 10000).
version_key() { echo $(((major * 10000 + minor) * 10000 + patch)); }

# The smallest and largest version seen, for the summary.
declare -A lowest=() highest=() lowest_key=() highest_key=() counts=()
note_version() {
  local kind="$1" text="$2" key
  key="$(version_key)"
  counts[$kind]=$((${counts[$kind]:-0} + 1))
  if [[ -z "${lowest_key[$kind]:-}" ]] || ((key < ${lowest_key[$kind]})); then
    lowest_key[$kind]="$key"
    lowest[$kind]="$text"
  fi
  if [[ -z "${highest_key[$kind]:-}" ]] || ((key > ${highest_key[$kind]})); then
    highest_key[$kind]="$key"
    highest[$kind]="$text"
  fi
}

# describe KIND NOUN: "3 API servers at 1.34.2" or "5 kubelets between 1.33.4 and 1.34.2".
describe() {
  local kind="$1" noun="$2"
  if ((${counts[$kind]} != 1)); then noun+="s"; fi
  if [[ "${lowest[$kind]}" == "${highest[$kind]}" ]]; then
    printf '%s %s at %s' "${counts[$kind]}" "$noun" "${lowest[$kind]}"
  else
    printf '%s %s between %s and %s' "${counts[$kind]}" "$noun" "${lowest[$kind]}" "${highest[$kind]}"
  fi
}

violations=()
violation() { violations+=("$*"); }

# ---------------------------------------------------------------------------------------------
# Reading the cluster.

kubeconfig=""
apiserver_lines=""
kubelet_lines=""
read_versions() {
  apiserver_lines="$(bounded kubectl --kubeconfig "$kubeconfig" -n kube-system get pods \
    -l component=kube-apiserver -o "jsonpath=${APISERVER_JSONPATH}" 2>>"$log_file")" || return 1
  kubelet_lines="$(bounded kubectl --kubeconfig "$kubeconfig" get nodes \
    -o "jsonpath=${KUBELET_JSONPATH}" 2>>"$log_file")" || return 1
}

check_apiservers() {
  local node image tag text target_key key found=false
  parse_version "$target"
  local target_major="$major" target_minor="$minor"
  target_key="$(version_key)"
  while read -r node image; do
    [[ -n "$node" ]] || continue
    found=true
    tag="$(image_tag "${image:-}")"
    if ! parse_version "$tag"; then
      violation "node ${node}: cannot read the kube-apiserver version from its image '${image:-}'"
      continue
    fi
    text="${major}.${minor}.${patch}"
    note_version apiserver "$text"
    key="$(version_key)"
    if ((key > target_key)); then
      violation "node ${node}: kube-apiserver is at ${text}, newer than the target ${target}; downgrades are not supported"
    elif ((major != target_major)); then
      violation "node ${node}: kube-apiserver is at ${text}, another major version than the target ${target}"
    elif ((minor < target_minor - 1)); then
      violation "node ${node}: kube-apiserver is at ${text}, more than one minor below the target ${target}; kubeadm upgrades one minor at a time: upgrade to ${target_major}.$((target_minor - 1)) first"
    fi
  done <<<"$apiserver_lines"
  "$found" || violation "no kube-apiserver pod found in kube-system (label component=kube-apiserver)"
}

check_kubelets() {
  local node version text target_key key found=false
  parse_version "$target"
  local target_major="$major" target_minor="$minor"
  target_key="$(version_key)"
  while read -r node version; do
    [[ -n "$node" ]] || continue
    found=true
    if ! parse_version "${version:-}"; then
      violation "node ${node}: cannot read its kubelet version '${version:-}'"
      continue
    fi
    text="${major}.${minor}.${patch}"
    note_version kubelet "$text"
    key="$(version_key)"
    if ((key > target_key)); then
      violation "node ${node}: kubelet is at ${text}, newer than the target ${target}; a kubelet must not be newer than kube-apiserver"
    elif ((major != target_major)); then
      violation "node ${node}: kubelet is at ${text}, another major version than the target ${target}"
    elif ((minor < target_minor - 3)); then
      violation "node ${node}: kubelet is at ${text}, more than three minors older than the target ${target}; upgrade it to at least ${target_major}.$((target_minor - 3)) first"
    fi
  done <<<"$kubelet_lines"
  "$found" || violation "no Node found (kubectl get nodes)"
}

main() {
  parse_args "$@"
  require_root
  kubeconfig="${ROOT}/etc/kubernetes/admin.conf"
  [[ -f "$kubeconfig" ]] || die "${kubeconfig} not found: is this a control-plane node?"
  open_log "--version ${target}"

  log "waiting up to ${timeout_seconds}s for the API server to report ready"
  wait_for apiserver_ready "$kubeconfig" ||
    die "the API server did not report ready within ${timeout_seconds}s (kubectl get --raw /readyz); see ${log_file}"
  wait_for read_versions ||
    die "could not read the kube-apiserver pods and the nodes within ${timeout_seconds}s; see ${log_file}"

  check_apiservers
  check_kubelets

  log "waiting up to ${timeout_seconds}s for a healthy etcd cluster (etcd-${node_name})"
  wait_for etcd_cluster_healthy "$kubeconfig" "$node_name" ||
    violation "etcd: endpoint health --cluster in etcd-${node_name} did not pass within ${timeout_seconds}s (see ${log_file})"

  if ((${#violations[@]} > 0)); then
    local item
    for item in "${violations[@]}"; do log "violation: ${item}"; done
    die "target ${target}: ${#violations[@]} check(s) failed; nothing was changed"
  fi
  printf '%s: target %s: %s, %s: ok\n' "$SCRIPT_NAME" "$target" \
    "$(describe apiserver "API server")" "$(describe kubelet kubelet)"
}

main "$@"
