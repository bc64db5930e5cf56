#!/usr/bin/env bash
# Initializes the first control-plane node with `kubeadm init --config`, once, then waits until
# the API server reports ready. Pulumi runs it over SSH on the first node; a node that already has
# /etc/kubernetes/admin.conf is initialized, and a re-run only repeats the readiness gate.
set -euo pipefail
umask 077
# Bash's regular expressions follow the locale; C makes [a-z] mean exactly a to z.
export LC_ALL=C

readonly SCRIPT_NAME="kubeadm-init"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'EOF'
Usage: kubeadm-init.sh --config PATH [--endpoint-host NAME --endpoint-ip IP]
                       [--refuse-if-serving URL] [--timeout SECONDS] [--root DIR]

Runs `kubeadm init` on the first control-plane node unless it is initialized, then waits for
the API server. Run as root.

Options:
  --config PATH         Absolute path of the kubeadm InitConfiguration file on this node.
                        Required (only read when the node is not initialized yet).
  --endpoint-host NAME  Host part of controlPlaneEndpoint. When it is a DNS name, /etc/hosts
                        gets the line "<IP> <NAME>" (any older mention of NAME is removed), so
                        this node reaches the endpoint before DNS exists. An IPv4 address
                        leaves /etc/hosts alone.
  --endpoint-ip IP      IPv4 address for NAME: the load balancer's private IP. Required when
                        --endpoint-host is a DNS name.
  --refuse-if-serving URL
                        Before kubeadm init, GET URL (the endpoint's /readyz through the load
                        balancer); when an API server answers, a cluster exists without this
                        node, and init would split it in two: refuse. A replaced first node
                        must join instead (docs/runbooks/replace-control-plane-node.md).
  --timeout SECONDS     Longest wait for the API server to report ready (default 600).
  --root DIR            Prefix for every file this script reads or writes (default: $ROOT,
                        else empty, meaning /). For tests; commands still act on this host.
  -h, --help            Show this help and exit.

Environment:
  ROOT          Same as --root; the flag wins.
  POLL_SECONDS  Pause between readiness checks (default 5; may be fractional, e.g. 0.1).

Steps:
  1. with a DNS endpoint: the /etc/hosts line (also on an initialized node, so a changed
     load balancer IP reaches it; unchanged when already right);
  2. unless /etc/kubernetes/admin.conf exists: kubeadm init --config PATH. Its output, which
     contains join commands with a bootstrap token, goes only to the root-only log
     /var/log/hcloud-control-plane/kubeadm-init.log (0600), never to the terminal. kubeadm's
     own timeouts bound it: `timeouts` of the InitConfiguration in PATH (kubeadm.k8s.io/v1beta4;
     ClusterConfiguration has no such field). The configuration this project renders sets none,
     so kubeadm's defaults apply: controlPlaneComponentHealthCheck 4m, kubeletHealthCheck 4m,
     kubernetesAPICall 1m, etcdAPICall 2m. This script does not kill kubeadm half-way, which
     would leave a half-initialized node;
  3. wait until `kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /readyz` prints ok.
If init failed after writing admin.conf, a re-run only waits and then fails: run
`kubeadm reset -f` on the node, then run this script again.

Exit status: 0 initialized and ready, 1 a step failed or timed out, 2 usage error.
EOF
}

config=""
endpoint_host=""
endpoint_ip=""
refuse_url=""
timeout_seconds="600"
ROOT="${ROOT:-}"
POLL_SECONDS="${POLL_SECONDS:-5}"

parse_args() {
  parse_flags --config=config --endpoint-host=endpoint_host --endpoint-ip=endpoint_ip \
    --refuse-if-serving=refuse_url --timeout=timeout_seconds --root=ROOT -- "$@"

  [[ "$config" == /* ]] || usage_error "--config must be an absolute path, got '${config}'"
  check_endpoint "$endpoint_host" "$endpoint_ip"
  check_timeout
  check_poll_seconds
  check_root_dir
}

# A half-written /etc/hosts never replaces the real one: ensure_hosts_entry stages it beside the
# real one, then renames it; the EXIT trap removes a staged file left behind.
cleanup_on_exit remove_staged

main() {
  parse_args "$@"
  require_root
  local admin_conf="${ROOT}/etc/kubernetes/admin.conf"
  # kubeadm's output carries bootstrap tokens: it goes to a root-only file, never the terminal.
  open_log

  if [[ -n "$endpoint_host" ]] && ! is_ipv4 "$endpoint_host"; then
    ensure_hosts_entry "$endpoint_host" "$endpoint_ip"
  fi

  if [[ -f "$admin_conf" ]]; then
    log "already initialized (${admin_conf} exists); checking the API server only"
  else
    [[ -f "${ROOT}${config}" ]] || die "--config ${config}: no such file"
    if [[ -n "$refuse_url" ]] && curl --silent --insecure --max-time 5 "$refuse_url" 2>/dev/null | grep -qx ok; then
      die "an API server already answers at ${refuse_url}: a cluster exists without this node, and kubeadm init would start a second one. Join this node instead; see docs/runbooks/replace-control-plane-node.md"
    fi
    log "running kubeadm init --config ${config} (output in ${log_file})"
    kubeadm init --config "${ROOT}${config}" >>"$log_file" 2>&1 ||
      die "kubeadm init failed; see ${log_file} (then kubeadm reset -f before trying again)"
    [[ -f "$admin_conf" ]] || die "kubeadm init succeeded but wrote no ${admin_conf}"
  fi

  log "waiting up to ${timeout_seconds}s for the API server to report ready"
  wait_for apiserver_ready "$admin_conf" ||
    die "the API server did not report ready within ${timeout_seconds}s (kubectl get --raw /readyz); see ${log_file}"
  log "initialized; the API server is ready"
}

main "$@"
