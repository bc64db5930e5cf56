#!/usr/bin/env bash
# Routes the reserved IP (a Hetzner Floating IP) to this control-plane node while kube-vip holds
# it here. Hetzner networks are layer 3: kube-vip only adds the address to the leader's
# interface, and traffic follows only when the Hetzner API assigns the Floating IP to that
# server. reserved-ip-failover.service runs this in a loop on every control-plane node; only
# the node that holds the address ever calls the API.
set -euo pipefail

readonly SCRIPT_NAME="reserved-ip-failover"

usage() {
  cat <<'EOF'
Usage: reserved-ip-failover.sh --floating-ip-id ID --address IP [--interface IF]
                               [--token-file FILE] [--api-url URL] [--metadata-url URL]
                               [--interval SECONDS] [--recheck-interval SECONDS]
                               [--once | --max-checks N]
                               [--max-attempts N] [--backoff-base SECONDS]
                               [--backoff-max SECONDS] [--timeout SECONDS]
                               [--action-timeout SECONDS] [--action-poll-interval SECONDS]

Each check: if IP is on the interface (`ip -o -4 addr show dev IF`) and the Hetzner API says
Floating IP ID is assigned to another server (or to none), assign it to this server
(POST <api-url>/floating_ips/ID/actions/assign {"server": <this server's id>}) and wait for the
action the API answers with (see below). If IP is not on the interface, the check does nothing
and calls no API. This server's id comes from <metadata-url>/instance-id, once.

Options (environment fallback in brackets; the flag wins):
  --floating-ip-id ID      Hetzner id of the Floating IP. Required. [FLOATING_IP_ID]
  --address IP             The Floating IPv4 address kube-vip adds as a /32. Required.
                           [FLOATING_IP_ADDRESS]
  --interface IF           Interface kube-vip adds the address to (default eth0). [INTERFACE]
  --token-file FILE        File whose first line is the Hetzner API token (default
                           /etc/hcloud-control-plane/failover-token). It must be owned by the
                           user running this script and give group and others no access
                           (chmod 600), else the script refuses to run. It is read again
                           before each API call, so a rotated token needs no restart.
                           The token is never logged and never on a command line: curl reads
                           the Authorization header from its stdin (--config -). [TOKEN_FILE]
  --api-url URL            Hetzner Cloud API (default https://api.hetzner.cloud/v1). [API_URL]
  --metadata-url URL       Hetzner metadata service (default
                           http://169.254.169.254/hetzner/v1/metadata). [METADATA_URL]
  --interval SECONDS       Pause between checks in loop mode (default 2). [CHECK_INTERVAL]
  --recheck-interval SECONDS
                           Once the API has confirmed the Floating IP is routed here, further
                           checks skip the API call while the address stays on the interface,
                           and ask again only after this many seconds (default 30; 0 asks on
                           every check). A check that finds the address newly on the interface
                           always asks at once. This keeps the leader at ~120 API requests an
                           hour instead of 1800 with --interval 2; Hetzner allows 3600 an hour
                           per project, shared with Pulumi and any cloud controller.
                           [RECHECK_INTERVAL]
  --once                   Run one check and exit with its status (same as --max-checks 1).
  --max-checks N           Stop after N checks and exit with the last check's status
                           (default 0: loop forever, as the systemd service does). [MAX_CHECKS]
  --max-attempts N         Attempts per HTTP call before the check fails (default 5).
                           [MAX_ATTEMPTS]
  --backoff-base SECONDS   First retry delay; doubled on each further attempt (default 1).
                           [BACKOFF_BASE]
  --backoff-max SECONDS    Cap on one retry delay, including a wait for the rate limit
                           (default 30). [BACKOFF_MAX]
  --timeout SECONDS        Limit on each HTTP call, curl --max-time (default 5). [HTTP_TIMEOUT]
  --action-timeout SECONDS How long one check waits for the assign action to finish (default
                           60). [ACTION_TIMEOUT]
  --action-poll-interval SECONDS
                           Pause between two reads of the running action (default 0.5, as
                           hcloud-go polls). [ACTION_POLL_INTERVAL]
  -h, --help               Show this help and exit.

The assign starts an action and answers with it (status "running"). The check then reads it,
GET <api-url>/actions?id=<action id> every --action-poll-interval seconds, until its status is
"success" (exit 4, "moved") or "error" (exit 1, naming the action's error code and message), at
most --action-timeout seconds (exit 1: the action is still running). While it runs, the API
answers a second assign with HTTP 423 "locked", so in loop mode a later check that still finds
the Floating IP elsewhere waits for that same action instead of assigning again.

Retried within the check, at most --max-attempts calls per request:
  - connection errors, timeouts and HTTP 5xx: exponential backoff, --backoff-base doubled on
    each attempt, at most --backoff-max;
  - HTTP 409 with error code "conflict" (the resource changed during the request; the API
    says to retry): the same backoff;
  - HTTP 429 "rate_limit_exceeded": Hetzner sends no Retry-After. Every answer carries
    RateLimit-Limit (requests per hour), RateLimit-Remaining and RateLimit-Reset (the Unix time
    when the whole budget is back; it refills gradually, one request every 3600/Limit seconds).
    The retry waits until one request is available again, (Reset - now) / (Limit - Remaining)
    seconds, or the backoff if that is longer, at most --backoff-max;
  - HTTP 423 with error code "locked" on the assign (another action on the Floating IP or the
    server runs): after the backoff the check reads the Floating IP again, and assigns again
    unless it now points here.
Other HTTP errors fail the check at once. So one check is bounded: at most --max-attempts calls
per request, each at most --timeout seconds, at most --backoff-max seconds between them, and at
most --action-timeout seconds (plus one read) waiting for the action.

Logs go to stderr, one line per event, prefixed "reserved-ip-failover:". In loop mode a state
that does not change is logged once, not on every check.

Exit status (of the last check with --once or --max-checks):
  0  nothing to do: the address is not on the interface, or the API already routes it here
  1  the check failed: metadata or API unreachable or erroring after --max-attempts, an
     unexpected answer, the interface cannot be read, or the assign action ended in "error"
     or still runs after --action-timeout
  2  usage error
  3  refused: the token file is missing, empty, malformed, not owned by this user, or
     accessible by group or others
  4  moved: the Floating IP was assigned to this server
In loop mode a failed check is logged and the next one follows; only 2 and 3 end the loop.
EOF
}

log() { printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2; }
usage_error() { log "usage error: $*"; log "see --help"; exit 2; }
refuse() { log "refusing to run: $*"; exit 3; }

floating_ip_id="${FLOATING_IP_ID:-}"
address="${FLOATING_IP_ADDRESS:-}"
interface="${INTERFACE:-eth0}"
token_file="${TOKEN_FILE:-/etc/hcloud-control-plane/failover-token}"
api_url="${API_URL:-https://api.hetzner.cloud/v1}"
metadata_url="${METADATA_URL:-http://169.254.169.254/hetzner/v1/metadata}"
interval="${CHECK_INTERVAL:-2}"
recheck_interval="${RECHECK_INTERVAL:-30}"
max_checks="${MAX_CHECKS:-0}"
max_attempts="${MAX_ATTEMPTS:-5}"
backoff_base="${BACKOFF_BASE:-1}"
backoff_max="${BACKOFF_MAX:-30}"
http_timeout="${HTTP_TIMEOUT:-5}"
action_timeout="${ACTION_TIMEOUT:-60}"
action_poll_interval="${ACTION_POLL_INTERVAL:-0.5}"

readonly ipv4_pattern='^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$'
readonly seconds_pattern='^[0-9]+(\.[0-9]+)?$'

parse_args() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --floating-ip-id | --address | --interface | --token-file | --api-url | --metadata-url | \
        --interval | --recheck-interval | --max-checks | --max-attempts | --backoff-base | \
        --backoff-max | --timeout | --action-timeout | --action-poll-interval)
        [[ $# -ge 2 ]] || usage_error "$1 needs a value"
        case "$1" in
          --floating-ip-id) floating_ip_id="$2" ;;
          --address) address="$2" ;;
          --interface) interface="$2" ;;
          --token-file) token_file="$2" ;;
          --api-url) api_url="$2" ;;
          --metadata-url) metadata_url="$2" ;;
          --interval) interval="$2" ;;
          --recheck-interval) recheck_interval="$2" ;;
          --max-checks) max_checks="$2" ;;
          --max-attempts) max_attempts="$2" ;;
          --backoff-base) backoff_base="$2" ;;
          --backoff-max) backoff_max="$2" ;;
          --timeout) http_timeout="$2" ;;
          --action-timeout) action_timeout="$2" ;;
          --action-poll-interval) action_poll_interval="$2" ;;
        esac
        shift 2
        ;;
      --once) max_checks=1; shift ;;
      -h | --help) usage; exit 0 ;;
      *) usage_error "unknown argument '$1'" ;;
    esac
  done

  [[ "$floating_ip_id" =~ ^[1-9][0-9]*$ ]] ||
    usage_error "--floating-ip-id must be a positive integer, got '${floating_ip_id}'"
  [[ "$address" =~ $ipv4_pattern ]] || usage_error "--address must be an IPv4 address, got '${address}'"
  [[ "$interface" =~ ^[A-Za-z0-9_.-]{1,15}$ ]] ||
    usage_error "--interface must be a Linux interface name, got '${interface}'"
  [[ -n "$token_file" ]] || usage_error "--token-file must not be empty"
  [[ "$api_url" =~ ^https?://[^[:space:]]+$ ]] || usage_error "--api-url must be an http(s) URL, got '${api_url}'"
  [[ "$metadata_url" =~ ^https?://[^[:space:]]+$ ]] ||
    usage_error "--metadata-url must be an http(s) URL, got '${metadata_url}'"
  [[ "$interval" =~ $seconds_pattern ]] || usage_error "--interval must be a number of seconds, got '${interval}'"
  [[ "$recheck_interval" =~ ^[0-9]+$ ]] ||
    usage_error "--recheck-interval must be a whole number of seconds, got '${recheck_interval}'"
  [[ "$max_checks" =~ ^[0-9]+$ ]] || usage_error "--max-checks must be a whole number, got '${max_checks}'"
  [[ "$max_attempts" =~ ^[1-9][0-9]*$ ]] ||
    usage_error "--max-attempts must be a positive integer, got '${max_attempts}'"
  [[ "$backoff_base" =~ $seconds_pattern ]] ||
    usage_error "--backoff-base must be a number of seconds, got '${backoff_base}'"
  [[ "$backoff_max" =~ $seconds_pattern ]] ||
    usage_error "--backoff-max must be a number of seconds, got '${backoff_max}'"
  [[ "$http_timeout" =~ $seconds_pattern && ! "$http_timeout" =~ ^0+(\.0+)?$ ]] ||
    usage_error "--timeout must be a positive number of seconds, got '${http_timeout}'"
  [[ "$action_timeout" =~ $seconds_pattern ]] ||
    usage_error "--action-timeout must be a number of seconds, got '${action_timeout}'"
  [[ "$action_poll_interval" =~ $seconds_pattern ]] ||
    usage_error "--action-poll-interval must be a number of seconds, got '${action_poll_interval}'"
  action_timeout_us="$(awk -v s="$action_timeout" 'BEGIN { printf "%d", s * 1000000 }')"
  api_url="${api_url%/}"
  metadata_url="${metadata_url%/}"
}

# The token file must belong to this user and be closed to group and others. Exits 3 if not.
check_token_file() {
  local owner_and_mode owner mode
  [[ -f "$token_file" ]] || refuse "token file ${token_file} does not exist (install-reserved-ip-failover.sh writes it)"
  owner_and_mode="$(stat -L -c '%u %a' -- "$token_file")"
  owner="${owner_and_mode% *}"
  mode="${owner_and_mode#* }"
  [[ "$owner" == "$EUID" ]] ||
    refuse "token file ${token_file} is owned by uid ${owner}, not by this user (uid ${EUID})"
  (((8#$mode & 8#077) == 0)) ||
    refuse "token file ${token_file} has mode ${mode}; group and others must have no access (chmod 600)"
}

# Sets curl_config to the curl config line carrying the token. The token stays in this
# process: it is written to curl's stdin, never to its argv or environment, and never logged.
curl_config=""
load_token() {
  local token=""
  check_token_file
  IFS= read -r token <"$token_file" || true
  token="${token%$'\r'}"
  # Also keeps the quoted config line intact: no quotes, backslashes or spaces.
  [[ "$token" =~ ^[A-Za-z0-9._~+/=-]+$ ]] ||
    refuse "token file ${token_file}: the first line must be the API token (letters, digits and . _ ~ + / = -)"
  curl_config="header = \"Authorization: Bearer ${token}\""
}

workdir=""
cleanup() { if [[ -n "$workdir" ]]; then rm -rf -- "$workdir"; fi; }
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# Seconds to wait before retry number $1 (1-based): base * 2^(n-1), at most backoff_max. The
# shape of hcloud-go's default (hcloud/client.go, NewClient: ExponentialBackoffWithOpts, base 1 s,
# multiplier 2, cap 60 s; it adds jitter, which one caller per project does not need).
backoff_delay() {
  awk -v base="$backoff_base" -v cap="$backoff_max" -v n="$1" \
    'BEGIN { d = base * 2 ^ (n - 1); if (d > cap) d = cap; printf "%g", d }'
}

# The larger of two delays in seconds, at most backoff_max.
capped_max() {
  awk -v a="$1" -v b="$2" -v cap="$backoff_max" \
    'BEGIN { d = (a > b) ? a : b; if (d > cap) d = cap; printf "%g", d }'
}

# From the last response's rate-limit headers (Hetzner Cloud API reference, Overview > Rate
# Limiting): "LIMIT REMAINING SECONDS_TO_FULL WAIT", where WAIT is the time until one request is
# available again. The budget refills gradually (one request every 3600/LIMIT seconds) and
# RateLimit-Reset is when it is full again, so one request takes (Reset - now) / (Limit -
# Remaining) seconds, rounded up to 1/100 s. Prints nothing when a header is missing or not a
# number.
rate_limit_wait() {
  local now
  printf -v now '%(%s)T' -1
  awk -v now="$now" '
    { line = $0; sub(/\r$/, "", line); i = index(line, ":"); if (i == 0) next
      name = tolower(substr(line, 1, i - 1)); value = substr(line, i + 1); gsub(/[ \t]/, "", value) }
    name == "ratelimit-limit" { limit = value }
    name == "ratelimit-remaining" { remaining = value }
    name == "ratelimit-reset" { reset = value }
    END {
      if (limit !~ /^[0-9]+$/ || remaining !~ /^[0-9]+$/ || reset !~ /^[0-9]+$/) exit
      left = reset - now; if (left < 0) left = 0
      wait = (remaining + 0 >= 1 || limit + 0 <= remaining + 0) ? 0 : left / (limit - remaining)
      wait = int(wait * 100 + 0.999999) / 100 # up to 1/100 s: Reset has whole seconds
      printf "%d %d %d %g\n", limit, remaining, left, wait
    }' "${workdir}/headers"
}

# The status and Hetzner error code of the last answer ("" when there was none).
last_status=""
last_error_code=""

# http_request METHOD URL AUTH [JSON_BODY [EXPECTED_CODE]]: AUTH is "token" to send the API
# token, "none" otherwise. On a 2xx answer returns 0 with the body in ${workdir}/body. An error
# answer whose Hetzner error code is EXPECTED_CODE returns 2 without a log line: the caller
# handles it. Otherwise logs and returns 1, after up to max_attempts attempts for the failures
# --help lists as retried. hcloud-go retries "conflict" and "rate_limit_exceeded" too, by error
# code (hcloud/client_handler_retry.go, retryPolicy), but with its plain backoff: it records the
# RateLimit-* headers (client_handler_rate_limit.go) without waiting for them. It retries only
# 502 and 504 of the 5xx; this script keeps retrying every 5xx, since each request here is a read
# or an assign whose repetition the 423 handling makes safe.
http_request() {
  local method="$1" url="$2" auth="$3" body="${4:-}" expected_code="${5:-}"
  local attempt status curl_exit delay reason config="" rl_limit rl_remaining rl_left rl_wait
  local args=(--silent --show-error --request "$method" --max-time "$http_timeout"
    --connect-timeout "$http_timeout" --dump-header "${workdir}/headers" --output "${workdir}/body"
    --write-out '%{http_code}')
  if [[ -n "$body" ]]; then
    args+=(--header 'Content-Type: application/json' --data "$body")
  fi
  for ((attempt = 1; ; attempt++)); do
    if [[ "$auth" == token ]]; then
      load_token
      config="$curl_config"
    fi
    : >"${workdir}/headers"
    : >"${workdir}/body"
    curl_exit=0
    status="$(printf '%s\n' "$config" | curl --config - "${args[@]}" "$url" 2>"${workdir}/curl-error")" ||
      curl_exit=$?
    config=""
    curl_config=""
    delay=""
    last_status=""
    last_error_code=""
    if [[ "$curl_exit" -ne 0 ]]; then
      reason="curl exit ${curl_exit}: $(head -n 1 "${workdir}/curl-error")"
    else
      last_status="$status"
      last_error_code="$(api_error_code)"
      if [[ "$status" =~ ^2[0-9][0-9]$ ]]; then
        return 0
      elif [[ -n "$expected_code" && "$last_error_code" == "$expected_code" ]]; then
        return 2
      elif [[ "$status" =~ ^5[0-9][0-9]$ ]]; then
        reason="HTTP ${status}"
      elif [[ "$status" == 409 && "$last_error_code" == conflict ]]; then
        reason="HTTP ${status}$(api_error_message)"
      elif [[ "$status" == 429 ]]; then
        reason="HTTP ${status}$(api_error_message)"
        read -r rl_limit rl_remaining rl_left rl_wait <<<"$(rate_limit_wait)" || true
        if [[ -n "${rl_wait:-}" ]]; then
          reason+=" (RateLimit-Remaining ${rl_remaining} of ${rl_limit}, all back in ${rl_left}s)"
          delay="$(capped_max "$rl_wait" "$(backoff_delay "$attempt")")"
        fi
      else
        log "error: ${method} ${url}: HTTP ${status}$(api_error_message)"
        return 1
      fi
    fi
    if [[ "$attempt" -ge "$max_attempts" ]]; then
      log "error: ${method} ${url}: ${reason}; giving up after ${max_attempts} attempts"
      return 1
    fi
    if [[ -z "$delay" ]]; then delay="$(backoff_delay "$attempt")"; fi
    log "${method} ${url}: ${reason}; attempt ${attempt}/${max_attempts}, retrying in ${delay}s"
    sleep "$delay"
  done
}

# The Hetzner error code of the last answer's body (Overview > Errors: {"error": {"code",
# "message", "details"}}), or nothing.
api_error_code() {
  jq -r 'if (.error | type) == "object" then .error.code // empty else empty end' \
    "${workdir}/body" 2>/dev/null | head -n 1 || true
}

# ": <code>: <message>" from a Hetzner error body, or nothing.
api_error_message() {
  local message
  message="$(jq -r 'if (.error | type) == "object" then "\(.error.code): \(.error.message)" else empty end' \
    "${workdir}/body" 2>/dev/null | head -n 1)" || true
  if [[ -n "$message" ]]; then printf ': %s' "$message"; fi
}

server_id=""
# Sets server_id from the metadata service (cached: a server's id never changes).
lookup_server_id() {
  local id
  if [[ -n "$server_id" ]]; then return 0; fi
  http_request GET "${metadata_url}/instance-id" none || return 1
  id="$(head -c 32 "${workdir}/body" | tr -d '[:space:]')"
  if [[ ! "$id" =~ ^[1-9][0-9]*$ ]]; then
    log "error: ${metadata_url}/instance-id answered '${id}', not a server id"
    return 1
  fi
  server_id="$id"
  log "this is server ${server_id}"
}

# Sets assigned to the server the API says the Floating IP is assigned to, or "none".
assigned=""
read_assignment() {
  http_request GET "${api_url}/floating_ips/${floating_ip_id}" token || return 1
  if ! assigned="$(jq -r '.floating_ip.server // "none"' "${workdir}/body" 2>/dev/null)" ||
    [[ ! "$assigned" =~ ^([1-9][0-9]*|none)$ ]]; then
    log "error: GET ${api_url}/floating_ips/${floating_ip_id}: no .floating_ip.server in the answer"
    return 1
  fi
}

# Whether the ip -o -4 addr lines on stdin carry the address (exactly; 10.0.0.1 is not 10.0.0.10).
has_address() {
  awk -v want="$address" '{ for (i = 1; i < NF; i++) if ($i == "inet") { split($(i + 1), a, "/"); if (a[1] == want) found = 1 } }
    END { exit found ? 0 : 1 }'
}

# note_state STATE [MESSAGE]: logs MESSAGE when STATE differs from the last check's, so the
# loop does not repeat itself every few seconds. STATE "" (after an error or a move) logs
# nothing and makes the next state log again. Any state but "routed" drops the API's
# confirmation, so the next check that finds the address asks the API again.
last_state=""
confirmed_at=-1
note_state() {
  if [[ -n "$1" && "$1" != "$last_state" ]]; then log "$2"; fi
  last_state="$1"
  if [[ "$1" != routed ]]; then confirmed_at=-1; fi
}

routed_here() {
  note_state routed "${address} is on ${interface} and floating IP ${floating_ip_id} is routed to this server (${server_id}); nothing to do"
  confirmed_at="$SECONDS"
}

# Microseconds since the epoch (bash 5's EPOCHREALTIME without its decimal separator).
now_us() { printf '%s' "${EPOCHREALTIME//[!0-9]/}"; }

# The assign action this process started and has not seen finish, and the server the Floating
# IP was on before it. A later check waits for it instead of assigning again (which the API
# would answer with 423 locked while it runs).
pending_action=""
pending_from=""

# Waits for pending_action, whose last known state is the JSON object in ${workdir}/action,
# until its status is "success" or "error", at most action_timeout seconds, reading it with
# GET /actions?id=ID as hcloud-go's ActionClient.WaitFor does (hcloud/action_waiter.go:
# WaitForFunc lists the running actions by id every poll interval, 500 ms by default, and fails
# on an action the API does not return). Returns the check's status: 4 moved, 1 otherwise.
wait_for_action() {
  local deadline status command code message
  deadline=$(($(now_us) + action_timeout_us))
  while :; do
    status="$(jq -r '.status // "?"' "${workdir}/action" 2>/dev/null)" || status="?"
    command="$(jq -r '.command // "?"' "${workdir}/action" 2>/dev/null)" || command="?"
    case "$status" in
      success)
        pending_action=""
        log "moved floating IP ${floating_ip_id} (${address}) from server ${pending_from} to server ${server_id} (action ${1} ${command} succeeded)"
        return 4
        ;;
      error)
        pending_action=""
        code="$(jq -r '.error.code // "?"' "${workdir}/action" 2>/dev/null)" || code="?"
        message="$(jq -r '.error.message // "?"' "${workdir}/action" 2>/dev/null)" || message="?"
        log "error: action ${1} (${command}) failed: ${code}: ${message}; floating IP ${floating_ip_id} was not moved to this server (${server_id})"
        return 1
        ;;
      running) ;;
      *)
        pending_action=""
        log "error: action ${1} has status '${status}', not running, success or error"
        return 1
        ;;
    esac
    if [[ "$(now_us)" -ge "$deadline" ]]; then
      log "error: action ${1} (${command}) is still running after ${action_timeout}s; the next check waits for it instead of assigning again"
      return 1
    fi
    sleep "$action_poll_interval"
    read_action "$1" || return 1
  done
}

# read_action ID: writes the action ID, as GET /actions?id=ID answers it, to ${workdir}/action.
read_action() {
  http_request GET "${api_url}/actions?id=${1}" token || return 1
  if ! jq -e --argjson id "$1" '.actions[] | select(.id == $id)' "${workdir}/body" \
    >"${workdir}/action" 2>/dev/null; then
    pending_action=""
    log "error: GET ${api_url}/actions?id=${1}: action ${1} is not in the answer"
    return 1
  fi
}

# Assigns the Floating IP to this server and waits for the action. A 423 "locked" (another
# action on the Floating IP or the server runs: Overview > Errors) is retried within the check
# with the backoff, reading the Floating IP again first: the other action may have routed it
# here. hcloud-go leaves "locked" to its callers (hcloud/client_handler_retry_test.go: "we can
# only retry in specific context"); terraform-provider-hcloud retries it around such calls
# (internal/server/common.go with internal/util/control/retry.go: 5 tries, backoff from 1 s).
assign_here() {
  local attempt rc delay action_id
  for ((attempt = 1; ; attempt++)); do
    rc=0
    http_request POST "${api_url}/floating_ips/${floating_ip_id}/actions/assign" token \
      "{\"server\":${server_id}}" locked || rc=$?
    if [[ "$rc" -eq 0 ]]; then break; fi
    if [[ "$rc" -ne 2 ]]; then return 1; fi
    if [[ "$attempt" -ge "$max_attempts" ]]; then
      log "error: POST ${api_url}/floating_ips/${floating_ip_id}/actions/assign: HTTP ${last_status}$(api_error_message); still locked after ${max_attempts} attempts"
      return 1
    fi
    delay="$(backoff_delay "$attempt")"
    log "POST ${api_url}/floating_ips/${floating_ip_id}/actions/assign: HTTP ${last_status}$(api_error_message); attempt ${attempt}/${max_attempts}, reading floating IP ${floating_ip_id} again in ${delay}s"
    sleep "$delay"
    read_assignment || return 1
    if [[ "$assigned" == "$server_id" ]]; then
      routed_here
      return 0
    fi
  done
  if ! jq -e '.action | objects' "${workdir}/body" >"${workdir}/action" 2>/dev/null ||
    ! action_id="$(jq -r '.id' "${workdir}/action")" || [[ ! "$action_id" =~ ^[1-9][0-9]*$ ]]; then
    log "error: POST ${api_url}/floating_ips/${floating_ip_id}/actions/assign: no .action.id in the answer"
    return 1
  fi
  pending_action="$action_id"
  pending_from="$assigned"
  log "assign action ${action_id} started; waiting for it (at most ${action_timeout}s)"
  wait_for_action "$action_id"
}

# One check. Returns the exit status documented in --help.
check() {
  local addresses rc
  if ! addresses="$(ip -o -4 addr show dev "$interface")"; then
    note_state ""
    log "error: cannot read the addresses of ${interface} (ip -o -4 addr show dev ${interface})"
    return 1
  fi
  if ! has_address <<<"$addresses"; then
    note_state standby "${address} is not on ${interface} (another node holds it); nothing to do"
    return 0
  fi
  # Held here all along and confirmed by the API less than recheck_interval seconds ago.
  if [[ "$confirmed_at" -ge 0 && $((SECONDS - confirmed_at)) -lt "$recheck_interval" ]]; then
    return 0
  fi
  if ! lookup_server_id || ! read_assignment; then
    note_state ""
    return 1
  fi
  if [[ "$assigned" == "$server_id" ]]; then
    pending_action=""
    routed_here
    return 0
  fi
  note_state ""
  rc=0
  if [[ -n "$pending_action" ]]; then
    log "${address} is on ${interface} and floating IP ${floating_ip_id} is still assigned to server ${assigned}; waiting for assign action ${pending_action} instead of assigning again"
    read_action "$pending_action" || return 1
    wait_for_action "$pending_action" || rc=$?
    return "$rc"
  fi
  log "${address} is on ${interface} but floating IP ${floating_ip_id} is assigned to server ${assigned}; assigning it to this server (${server_id})"
  assign_here || rc=$?
  return "$rc"
}

main() {
  local checks=0 status
  parse_args "$@"
  check_token_file
  local command_name
  for command_name in awk curl ip jq stat; do
    command -v "$command_name" >/dev/null || { log "error: '${command_name}' not found on PATH"; exit 1; }
  done
  workdir="$(mktemp -d "${TMPDIR:-/tmp}/${SCRIPT_NAME}.XXXXXX")"
  log "watching ${address} on ${interface} for floating IP ${floating_ip_id} (api ${api_url}, every ${interval}s, recheck ${recheck_interval}s)"
  while :; do
    status=0
    check || status=$?
    checks=$((checks + 1))
    if [[ "$max_checks" -gt 0 && "$checks" -ge "$max_checks" ]]; then
      exit "$status"
    fi
    sleep "$interval"
  done
}

main "$@"
