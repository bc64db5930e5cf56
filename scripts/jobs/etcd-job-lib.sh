# shellcheck shell=bash
# Helpers shared by the etcd CronJob scripts, etcd-backup.sh and etcd-defrag.sh: messages, the
# argument check, variable checks and the etcd client settings. Sourcing it only defines
# functions. Each script sources it relative to itself, so it works from the repository, from
# the job's ConfigMap (both files in /opt/etcd-job) and from the backup image:
#   # shellcheck source-path=SCRIPTDIR source=etcd-job-lib.sh
#   source "$(dirname "${BASH_SOURCE[0]}")/etcd-job-lib.sh"
# bash and coreutils only: the defrag runs with nothing more than etcdctl besides.
# etcd-restore.sh does not source it: it streams itself to the nodes and stays self-contained.
#
# Read from the sourcing script: SCRIPT_NAME (prefix of every message) and usage (prints --help).
# Set for the sourcing script by etcd_client_config: endpoints, etcdctl_tls.

# ---------------------------------------------------------------------------------------------
# Messages, on stderr, with a UTC timestamp and the script's name.

log() { printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$SCRIPT_NAME" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
config_error() {
  log "configuration error: $*"
  log "see --help"
  exit 2
}

# check_arguments ARGS...: -h or --help prints usage and exits 0; anything else is a configuration
# error (configuration is through environment variables only).
check_arguments() {
  case "${1:-}" in
    -h | --help)
      usage
      exit 0
      ;;
    "") ;;
    *) config_error "unexpected argument '$1' (configuration is through environment variables only)" ;;
  esac
}

# require_tools TOOL...: each TOOL is on PATH (else exit 1).
require_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || die "${tool} not found on PATH"
  done
}

# ---------------------------------------------------------------------------------------------
# Variables: each check exits 2 (configuration error) naming the variable.

# require_var NAME [WHAT]: NAME is set and not empty; WHAT, in parentheses, says what it holds.
require_var() {
  local name="$1" what="${2:-}"
  [[ -n "${!name:-}" ]] || config_error "${name} is required and empty or unset${what:+ (${what})}"
}

# require_int NAME MIN [MAX]: NAME holds a whole number in MIN..MAX (no MAX: no upper bound);
# leading zeros are dropped so that bash arithmetic never reads it as octal.
require_int() {
  local name="$1" min="$2" max="${3:-}" value="${!1}" allowed
  if [[ -n "$max" ]]; then allowed="a whole number from ${min} to ${max}"; else allowed="a whole number >= ${min}"; fi
  if [[ ! "$value" =~ ^[0-9]{1,15}$ ]] || ((10#$value < min)) || { [[ -n "$max" ]] && ((10#$value > max)); }; then
    config_error "${name} must be ${allowed}, got '${value}'"
  fi
  printf -v "$name" '%d' "$((10#$value))"
}

# ---------------------------------------------------------------------------------------------
# The etcd client.

# etcd_client_config: checks the client variables both jobs read, ETCD_ENDPOINTS (set, checked
# by the caller: the message differs), ETCD_CACERT, ETCD_CERT, ETCD_KEY and ETCD_DIAL_TIMEOUT
# (default 3s). Sets endpoints, the URLs of ETCD_ENDPOINTS in order without blanks and empty
# entries, and etcdctl_tls, etcdctl's TLS flags (none for plain-HTTP etcd).
# shellcheck disable=SC2034 # endpoints and etcdctl_tls are the sourcing script's
etcd_client_config() {
  local endpoint raw=()
  ETCD_CACERT="${ETCD_CACERT:-}"
  ETCD_CERT="${ETCD_CERT:-}"
  ETCD_KEY="${ETCD_KEY:-}"
  ETCD_DIAL_TIMEOUT="${ETCD_DIAL_TIMEOUT:-3s}"
  [[ "$ETCD_DIAL_TIMEOUT" =~ ^[0-9]+(ms|s|m)$ ]] ||
    config_error "ETCD_DIAL_TIMEOUT must be a duration such as 3s, 500ms or 1m, got '${ETCD_DIAL_TIMEOUT}'"
  if [[ -n "$ETCD_CERT" && -z "$ETCD_KEY" ]] || [[ -z "$ETCD_CERT" && -n "$ETCD_KEY" ]]; then
    config_error "ETCD_CERT and ETCD_KEY must both be set or both be empty"
  fi

  etcdctl_tls=()
  if [[ -n "$ETCD_CACERT" ]]; then etcdctl_tls+=(--cacert "$ETCD_CACERT"); fi
  if [[ -n "$ETCD_CERT" ]]; then etcdctl_tls+=(--cert "$ETCD_CERT" --key "$ETCD_KEY"); fi

  endpoints=()
  IFS=',' read -r -a raw <<<"$ETCD_ENDPOINTS"
  for endpoint in "${raw[@]}"; do
    endpoint="${endpoint//[[:space:]]/}"
    if [[ -n "$endpoint" ]]; then endpoints+=("$endpoint"); fi
  done
}
