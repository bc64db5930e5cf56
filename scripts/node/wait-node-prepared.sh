#!/usr/bin/env bash
# Waits until cloud-init's first boot has finished and the node preparation script
# (prepare-kubernetes-node.sh) has left its sentinel with the expected package version. Pulumi runs
# it over SSH before kubeadm init/join, because SSH answers long before cloud-init is done.
set -euo pipefail
umask 077
# Bash's regular expressions follow the locale; C makes [a-z] mean exactly a to z.
export LC_ALL=C

readonly SCRIPT_NAME="wait-node-prepared"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'EOF'
Usage: wait-node-prepared.sh --package-version X.Y.Z-R [--timeout SECONDS] [--root DIR]

Waits for cloud-init to finish, then checks that the node preparation is complete.
Read-only: running it again only checks again.

Options:
  --package-version X.Y.Z-R  apt version of kubeadm/kubelet/kubectl the node must be prepared
                             with, e.g. 1.34.2-1.1. Required.
  --timeout SECONDS          Longest wait for `cloud-init status --wait` (default 900).
  --root DIR                 Prefix for every file this script reads (default: $ROOT, else
                             empty, meaning /). For tests; commands still act on this host.
  -h, --help                 Show this help and exit.

Environment:
  ROOT  Same as --root; the flag wins.

Checks, in order:
  1. `cloud-init status --wait` ends within the timeout. Exit 0 is done; exit 2 (done with
     recoverable errors, e.g. deprecated keys) is accepted with a warning; anything else fails.
  2. /var/lib/kubernetes-node/prepared exists and holds exactly the package version; on a node
     that already is a cluster member (/etc/kubernetes/kubelet.conf exists) another version is
     accepted: a configured version change reaches members through upgrade-node.sh;
  3. kubeadm and kubectl are on PATH.
A failure names what is missing; /var/log/cloud-init-output.log has the preparation's output.

Exit status: 0 prepared, 1 not prepared or cloud-init failed or timed out, 2 usage error.
EOF
}

package_version=""
timeout_seconds="900"
ROOT="${ROOT:-}"

parse_args() {
  parse_flags --package-version=package_version --timeout=timeout_seconds --root=ROOT -- "$@"

  [[ "$package_version" =~ ^[0-9]+\.[0-9]+\.[0-9]+-[0-9A-Za-z.+~]+$ ]] ||
    usage_error "--package-version must look like 1.34.2-1.1, got '${package_version}'"
  check_timeout
  check_root_dir
}

wait_for_cloud_init() {
  local output status=0
  command -v cloud-init >/dev/null || die "cloud-init not found on PATH"
  log "waiting up to ${timeout_seconds}s for cloud-init to finish"
  # `timeout` bounds the wait; cloud-init's own output (progress dots, status) is not secret.
  output="$(timeout --kill-after=10 "$timeout_seconds" cloud-init status --wait 2>&1)" || status=$?
  case "$status" in
    0) ;;
    2) log "warning: cloud-init finished with recoverable errors (exit 2); see 'cloud-init status --long'" ;;
    124 | 137) die "cloud-init did not finish within ${timeout_seconds}s" ;;
    *) die "cloud-init finished with errors (exit ${status}: ${output##*$'\n'}); see /var/log/cloud-init-output.log" ;;
  esac
}

check_prepared() {
  local sentinel="${ROOT}/var/lib/kubernetes-node/prepared"
  local prepared_version command_name
  local -a missing=()
  if [[ ! -f "$sentinel" ]]; then
    missing+=("the sentinel ${sentinel} (prepare-kubernetes-node.sh did not finish)")
  else
    prepared_version="$(<"$sentinel")"
    if [[ "$prepared_version" != "$package_version" ]]; then
      if [[ -f "${ROOT}/etc/kubernetes/kubelet.conf" ]]; then
        # A member of the cluster: a changed version reaches it through the upgrade chain
        # (upgrade-node.sh), which writes the sentinel last; it was prepared all the same.
        log "member node prepared with ${prepared_version}; the upgrade moves it to ${package_version}"
      else
        missing+=("${sentinel} holding '${package_version}' (it holds '${prepared_version}')")
      fi
    fi
  fi
  for command_name in kubeadm kubectl; do
    command -v "$command_name" >/dev/null || missing+=("'${command_name}' on PATH")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    local item
    for item in "${missing[@]}"; do
      log "missing: ${item}"
    done
    die "node is not prepared for Kubernetes ${package_version}; see /var/log/cloud-init-output.log"
  fi
}

main() {
  parse_args "$@"
  wait_for_cloud_init
  check_prepared
  log "node prepared with ${package_version}"
}

main "$@"
