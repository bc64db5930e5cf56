#!/usr/bin/env bash
# Initializes the first control-plane node with `kubeadm init --config`, once, then waits until
# the API server reports ready. Pulumi runs it over SSH on the first node; a node that already has
# /etc/kubernetes/admin.conf is initialized, and a re-run only repeats the readiness gate.
set -euo pipefail
umask 077
# Bash's regular expressions follow the locale; C makes [a-z] mean exactly a to z.
export LC_ALL=C

readonly SCRIPT_NAME="kubeadm-init"

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
     own timeouts bound it (ClusterConfiguration `timeouts`); this script does not kill it
     half-way, which would leave a half-initialized node;
  3. wait until `kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /readyz` prints ok.
If init failed after writing admin.conf, a re-run only waits and then fails: run
`kubeadm reset -f` on the node, then run this script again.

Exit status: 0 initialized and ready, 1 a step failed or timed out, 2 usage error.
EOF
}

log() { printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
usage_error() {
  log "usage error: $*"
  log "see --help"
  exit 2
}

config=""
endpoint_host=""
endpoint_ip=""
refuse_url=""
timeout_seconds="600"
ROOT="${ROOT:-}"
POLL_SECONDS="${POLL_SECONDS:-5}"

is_ipv4() {
  local IFS=. octet
  local -a octets
  [[ "$1" =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || return 1
  read -r -a octets <<<"$1"
  for octet in "${octets[@]}"; do
    ((10#$octet <= 255)) || return 1
  done
}

is_dns_name() {
  local label='[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?'
  [[ ${#1} -le 253 && "$1" =~ ^${label}(\.${label})*$ && ! "$1" =~ ^[0-9.]+$ ]]
}

parse_args() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --config | --endpoint-host | --endpoint-ip | --refuse-if-serving | --timeout | --root)
        [[ $# -ge 2 ]] || usage_error "$1 needs a value"
        case "$1" in
          --refuse-if-serving) refuse_url="$2" ;;
          --config) config="$2" ;;
          --endpoint-host) endpoint_host="$2" ;;
          --endpoint-ip) endpoint_ip="$2" ;;
          --timeout) timeout_seconds="$2" ;;
          --root) ROOT="$2" ;;
        esac
        shift 2
        ;;
      -h | --help)
        usage
        exit 0
        ;;
      *) usage_error "unknown argument '$1'" ;;
    esac
  done

  [[ "$config" == /* ]] || usage_error "--config must be an absolute path, got '${config}'"
  if [[ -n "$endpoint_host" ]] && ! is_ipv4 "$endpoint_host"; then
    is_dns_name "$endpoint_host" ||
      usage_error "--endpoint-host must be an IPv4 address or a lowercase DNS name, got '${endpoint_host}'"
    is_ipv4 "$endpoint_ip" ||
      usage_error "--endpoint-ip must be an IPv4 address when --endpoint-host is a DNS name, got '${endpoint_ip}'"
  elif [[ -n "$endpoint_ip" ]]; then
    [[ -n "$endpoint_host" ]] || usage_error "--endpoint-ip needs --endpoint-host"
    is_ipv4 "$endpoint_ip" || usage_error "--endpoint-ip must be an IPv4 address, got '${endpoint_ip}'"
  fi
  [[ "$timeout_seconds" =~ ^[1-9][0-9]*$ ]] ||
    usage_error "--timeout must be a positive whole number of seconds, got '${timeout_seconds}'"
  [[ "$POLL_SECONDS" =~ ^[0-9]+(\.[0-9]+)?$ ]] ||
    usage_error "POLL_SECONDS must be a number of seconds, got '${POLL_SECONDS}'"
  ROOT="${ROOT%/}"
  [[ -z "$ROOT" || -d "$ROOT" ]] || usage_error "--root '${ROOT}' is not a directory"
}

# kubeadm's output carries bootstrap tokens: it goes to a root-only file, never the terminal.
log_file=""
open_log() {
  local dir="${ROOT}/var/log/hcloud-control-plane"
  install -d -m 0700 "$dir"
  log_file="${dir}/kubeadm-init.log"
  : >>"$log_file"
  chmod 0600 "$log_file"
  printf '=== %(%Y-%m-%dT%H:%M:%S%z)T %s\n' -1 "$SCRIPT_NAME" >>"$log_file"
}

# A half-written /etc/hosts never replaces the real one: stage beside it, then rename.
staged=""
cleanup() { if [[ -n "$staged" ]]; then rm -f -- "$staged"; fi; }
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# Makes /etc/hosts map endpoint_host to endpoint_ip with exactly one line "<IP> <NAME>": drops
# NAME from any other line (a line left with no name goes), keeps everything else as it is.
ensure_hosts_entry() {
  local hosts="${ROOT}/etc/hosts" wanted="${endpoint_ip} ${endpoint_host}"
  local line name found=false changed=false
  local -a lines=() fields names
  if [[ -f "$hosts" ]]; then
    while IFS= read -r line || [[ -n "$line" ]]; do
      read -r -a fields <<<"${line%%#*}"
      if [[ ${#fields[@]} -lt 2 || " ${fields[*]:1} " != *" ${endpoint_host} "* ]]; then
        lines+=("$line")
      elif [[ "$line" == "$wanted" ]] && ! "$found"; then
        found=true
        lines+=("$line")
      else
        changed=true
        names=()
        for name in "${fields[@]:1}"; do
          if [[ "$name" != "$endpoint_host" ]]; then names+=("$name"); fi
        done
        if [[ ${#names[@]} -gt 0 ]]; then lines+=("${fields[0]} ${names[*]}"); fi
      fi
    done <"$hosts"
  fi
  if "$found" && ! "$changed"; then
    log "/etc/hosts already maps ${endpoint_host} to ${endpoint_ip}"
    return 0
  fi
  if ! "$found"; then lines+=("$wanted"); fi
  staged="$(mktemp "${hosts}.XXXXXX")"
  printf '%s\n' "${lines[@]}" >"$staged"
  chmod 0644 "$staged"
  mv -f -- "$staged" "$hosts"
  staged=""
  log "/etc/hosts now maps ${endpoint_host} to ${endpoint_ip}"
}

# Calls the function CHECK until it succeeds, for at most timeout_seconds, POLL_SECONDS apart.
# CHECK runs its commands through `bounded`, so no single call outlives the deadline.
attempt_seconds=1
wait_for() {
  local check="$1" deadline=$((SECONDS + timeout_seconds))
  while true; do
    attempt_seconds=$((deadline - SECONDS))
    if ((attempt_seconds < 1)); then attempt_seconds=1; fi
    if ((attempt_seconds > 60)); then attempt_seconds=60; fi
    if "$check"; then return 0; fi
    if ((SECONDS >= deadline)); then return 1; fi
    sleep "$POLL_SECONDS"
  done
}
bounded() { timeout --kill-after=5 "$attempt_seconds" "$@"; }

admin_conf=""
apiserver_ready() {
  local output
  output="$(bounded kubectl --kubeconfig "$admin_conf" get --raw /readyz 2>>"$log_file")" || return 1
  [[ "$output" == "ok" ]]
}

main() {
  parse_args "$@"
  [[ -n "$ROOT" || "$EUID" -eq 0 ]] || die "must run as root"
  admin_conf="${ROOT}/etc/kubernetes/admin.conf"
  open_log

  if [[ -n "$endpoint_host" ]] && ! is_ipv4 "$endpoint_host"; then
    ensure_hosts_entry
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
  wait_for apiserver_ready ||
    die "the API server did not report ready within ${timeout_seconds}s (kubectl get --raw /readyz); see ${log_file}"
  log "initialized; the API server is ready"
}

main "$@"
