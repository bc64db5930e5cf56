# shellcheck shell=bash disable=SC2154 # the variables read below are set by the sourcing script
# The one helper library of the project's bash scripts: the node scripts in this directory, the
# etcd CronJob scripts (scripts/jobs/) and the operators' etcd-restore.sh (scripts/ops/). Sourcing
# it only defines functions. It is written once, here, and shipped beside each script where it runs:
#   - on a node, /usr/local/lib/hcloud-control-plane/node/lib.sh: the bootstrap copies this whole
#     directory (components/node/nodeScripts.ts); a node script sources it relative to itself:
#       # shellcheck source-path=SCRIPTDIR source=lib.sh
#       source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   - in an etcd CronJob's pod, /opt/etcd-job/lib.sh: the job's ConfigMap carries it beside the
#     script (components/etcd/cronJob.ts); in the backup image, /usr/local/bin/lib.sh;
#   - for operators, lib.sh beside etcd-restore.sh, or this file in the repository; on the nodes
#     of a restore, streamed ahead of etcd-restore.sh into `bash -s`.
#   A job or operator script looks beside itself first, then here in the repository:
#       lib="$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#       [[ -f "$lib" ]] || lib="$(dirname "${BASH_SOURCE[0]}")/../node/lib.sh"
#       # shellcheck source-path=SCRIPTDIR source=../node/lib.sh
#       source "$lib"
# Two node scripts must not source it and stay self-contained: prepare-kubernetes-node.sh
# (cloud-init embeds it alone) and reserved-ip-failover.sh (installed alone to /usr/local/sbin).
# The first part (messages, arguments, variables, bounded waits) needs bash and coreutils only,
# so the defrag job, which has nothing more than etcdctl besides, can use it; the parts after it
# name what else they need.
#
# Read from the sourcing script:
#   SCRIPT_NAME      prefix of every message; open_log's log file is SCRIPT_NAME.log
#   LOG_TIMESTAMPS   utc: every message starts with the UTC time (the job and operator scripts);
#                    unset or empty: no time (the node scripts)
#   usage            the function that prints --help
#   ROOT             prefix of every file path (--root; check_root_dir normalizes it)
#   timeout_seconds  the limit of wait_for, and of bounded outside a wait_for (--timeout)
#   POLL_SECONDS     the pause between wait_for's checks
#   node_name        the node a script acts on (node_failed)
# Set for the sourcing script: log_file (open_log), staged (stage_file, write_file), parked_pod
# (restart_static_pod), aws_log (s3_client_setup), endpoints and etcdctl_tls (etcd_client_config).

# ---------------------------------------------------------------------------------------------
# Messages, on stderr, prefixed with the script's name (and the UTC time, see LOG_TIMESTAMPS).

log() {
  if [[ "${LOG_TIMESTAMPS:-}" == utc ]]; then
    printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$SCRIPT_NAME" "$*" >&2
  else
    printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2
  fi
}
die() {
  log "error: $*"
  exit 1
}
# usage_error MESSAGE: a bad argument; exits 2. config_error MESSAGE: a bad environment variable
# (the scripts configured through the environment); exits 2.
usage_error() {
  log "usage error: $*"
  log "see --help"
  exit 2
}
config_error() {
  log "configuration error: $*"
  log "see --help"
  exit 2
}

# show_log FILE: the last 20 lines of a tool's output, indented, after a failure.
show_log() {
  local line
  if [[ -s "$1" ]]; then
    tail -n 20 -- "$1" | while IFS= read -r line || [[ -n "$line" ]]; do printf '    %s\n' "$line"; done >&2
  fi
}

# cleanup_on_exit FUNCTION: runs FUNCTION when the script exits; HUP, INT and TERM become exits
# (129, 130, 143), so FUNCTION runs on those signals too.
cleanup_on_exit() {
  # shellcheck disable=SC2064 # the function's name is meant to be expanded now
  trap "$1" EXIT
  trap 'exit 129' HUP
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# ---------------------------------------------------------------------------------------------
# Arguments: parse_flags reads the flags, the check_* functions exit 2 (usage error) on a bad
# value.

# parse_flags [--non-empty] SPEC... -- ARGS...: sets the sourcing script's variables from ARGS,
# its flags. Each SPEC is --flag=variable (the flag takes a value, stored in variable),
# --flag=variable[] (the flag takes a value and may be repeated: each value is appended to the
# array variable) or --flag=variable=VALUE (a switch: it sets variable to VALUE). -h or --help
# prints usage and exits 0; a flag without its value, or any other argument, is a usage error;
# with --non-empty, so is an empty value (where an empty value would silently mean the default,
# such as etcd-restore.sh's --key or --snapshot). The tests read the flags of each node script
# from its parse_flags call (tests/support/nodeSandbox.ts), so write the specs literally.
parse_flags() {
  # Prefixed names: printf -v must reach the script's variables, not these locals.
  local -A _pf_variable=() _pf_value=()
  local _pf_flag _pf_rest _pf_non_empty=false
  if [[ "${1:-}" == --non-empty ]]; then
    _pf_non_empty=true
    shift
  fi
  while [[ $# -gt 0 && "$1" != -- ]]; do
    [[ "$1" =~ ^--[a-z0-9-]+=[A-Za-z_][A-Za-z0-9_]*(\[\]$|=|$) ]] || die "parse_flags: bad spec '$1'"
    _pf_flag="${1%%=*}" _pf_rest="${1#*=}"
    _pf_variable[$_pf_flag]="${_pf_rest%%=*}"
    if [[ "$_pf_rest" == *=* ]]; then _pf_value[$_pf_flag]="${_pf_rest#*=}"; fi
    shift
  done
  [[ $# -gt 0 ]] || die "parse_flags: no -- after the specs"
  shift
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h | --help)
        usage
        exit 0
        ;;
    esac
    [[ -n "$1" && -n "${_pf_variable[$1]+set}" ]] || usage_error "unknown argument '$1'"
    if [[ -n "${_pf_value[$1]+set}" ]]; then
      printf -v "${_pf_variable[$1]}" '%s' "${_pf_value[$1]}"
      shift
    else
      if [[ $# -lt 2 ]] || { "$_pf_non_empty" && [[ -z "$2" ]]; }; then usage_error "$1 needs a value"; fi
      if [[ "${_pf_variable[$1]}" == *"[]" ]]; then
        local -n _pf_list="${_pf_variable[$1]%"[]"}"
        _pf_list+=("$2")
        unset -n _pf_list
      else
        printf -v "${_pf_variable[$1]}" '%s' "$2"
      fi
      shift 2
    fi
  done
}

# no_arguments ARGS...: for the scripts configured only through environment variables: -h or
# --help prints usage and exits 0; any other argument is a configuration error.
no_arguments() {
  case "${1:-}" in
    -h | --help)
      usage
      exit 0
      ;;
    "") ;;
    *) config_error "unexpected argument '$1' (configuration is through environment variables only)" ;;
  esac
}

# check_timeout: timeout_seconds (--timeout) is a positive whole number of seconds.
check_timeout() {
  [[ "$timeout_seconds" =~ ^[1-9][0-9]*$ ]] ||
    usage_error "--timeout must be a positive whole number of seconds, got '${timeout_seconds}'"
}

# check_poll_seconds: POLL_SECONDS is a number of seconds, maybe fractional.
check_poll_seconds() {
  [[ "$POLL_SECONDS" =~ ^[0-9]+(\.[0-9]+)?$ ]] ||
    usage_error "POLL_SECONDS must be a number of seconds, got '${POLL_SECONDS}'"
}

# require_tools TOOL...: each TOOL is on PATH (else exit 1).
require_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || die "${tool} not found on PATH"
  done
}

# ---------------------------------------------------------------------------------------------
# Environment variables: each check exits 2 (configuration error) naming the variable.

# require_var NAME [WHAT]: NAME is set and not empty; WHAT, in parentheses, says what it holds.
require_var() {
  local name="$1" what="${2:-}"
  [[ -n "${!name:-}" ]] || config_error "${name} is required and empty or unset${what:+ (${what})}"
}

# require_int NAME MIN [MAX]: NAME holds a whole number in MIN..MAX (no MAX: no upper bound);
# leading zeros are dropped so that bash arithmetic never reads it as octal.
require_int() {
  local name="$1" min="$2" max="${3:-}" value="${!1:-}" allowed
  if [[ -n "$max" ]]; then allowed="a whole number from ${min} to ${max}"; else allowed="a whole number >= ${min}"; fi
  if [[ ! "$value" =~ ^[0-9]{1,15}$ ]] || ((10#$value < min)) || { [[ -n "$max" ]] && ((10#$value > max)); }; then
    config_error "${name} must be ${allowed}, got '${value}'"
  fi
  printf -v "$name" '%d' "$((10#$value))"
}

# ---------------------------------------------------------------------------------------------
# Bounded waits.

# wait_for CHECK [ARGS...]: runs CHECK ARGS until it succeeds, for at most timeout_seconds,
# POLL_SECONDS apart; returns 1 when the time is up. CHECK runs its commands through `bounded`,
# so no single call outlives the deadline.
wait_for() {
  local deadline=$((SECONDS + timeout_seconds))
  # Seen by `bounded` in CHECK (bash's locals are visible to the functions a function calls).
  local attempt_seconds
  while true; do
    attempt_seconds=$((deadline - SECONDS))
    if ((attempt_seconds < 1)); then attempt_seconds=1; fi
    if ((attempt_seconds > 60)); then attempt_seconds=60; fi
    if "$@"; then return 0; fi
    if ((SECONDS >= deadline)); then return 1; fi
    sleep "$POLL_SECONDS"
  done
}

# bounded COMMAND...: runs COMMAND for at most the seconds left for this attempt (at most 60) in a
# wait_for check, else for at most timeout_seconds; KILL follows TERM after 5 seconds.
bounded() { timeout --kill-after=5 "${attempt_seconds:-$timeout_seconds}" "$@"; }

# ---------------------------------------------------------------------------------------------
# Object storage (etcd-backup.sh, etcd-restore.sh): the aws client set up for Hetzner Object
# Storage, and the rule that says which backups are complete. Needs aws, jq and sort.

# s3_check_config: the object storage variables: S3_ENDPOINT, S3_BUCKET, S3_PREFIX, S3_REGION,
# AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are required; S3_PREFIX loses the slashes at either
# end and must not be empty then; S3_TIMEOUT (default 1800) is a whole number of seconds >= 1.
s3_check_config() {
  local var
  for var in S3_ENDPOINT S3_BUCKET S3_PREFIX S3_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY; do
    require_var "$var"
  done
  S3_PREFIX="${S3_PREFIX#/}"
  S3_PREFIX="${S3_PREFIX%/}"
  [[ -n "$S3_PREFIX" ]] || config_error "S3_PREFIX is required and empty after removing slashes"
  S3_TIMEOUT="${S3_TIMEOUT:-1800}"
  require_int S3_TIMEOUT 1
}

# s3_client_setup DIR: sets aws up for `s3`: checksums only when required (new AWS SDKs send
# CRC checksums that Hetzner refuses: XAmzContentSHA256Mismatch), no instance metadata, the
# region, no pager; without AWS_CONFIG_FILE, a config in DIR with path-style addressing. Sets
# aws_log, the file in DIR that the messages of aws and of s3_request's curl go to (shown with
# show_log after a failure).
s3_client_setup() {
  export AWS_REQUEST_CHECKSUM_CALCULATION=when_required
  export AWS_RESPONSE_CHECKSUM_VALIDATION=when_required
  export AWS_EC2_METADATA_DISABLED=true
  export AWS_DEFAULT_REGION="$S3_REGION"
  export AWS_PAGER=""
  if [[ -z "${AWS_CONFIG_FILE:-}" ]]; then
    export AWS_CONFIG_FILE="$1/aws-config"
    printf '[default]\ns3 =\n  addressing_style = path\n' >"$AWS_CONFIG_FILE"
  fi
  aws_log="$1/aws.log"
}

# s3 ARGS...: aws ARGS against S3_ENDPOINT, bounded by S3_TIMEOUT.
s3() {
  timeout --kill-after=10 "$S3_TIMEOUT" aws --endpoint-url "$S3_ENDPOINT" \
    --cli-connect-timeout 20 --cli-read-timeout 120 "$@"
}

# S3 writes with curl. etcd-backup.sh puts its objects, parts and retentions with curl, which
# signs each request with AWS Signature Version 4 itself (--aws-sigv4; curl 7.75 and later,
# bookworm ships 7.88). Every aws-cli call starts Python and loads botocore's S3 model first:
# measured here against Ceph RGW, 0.46 s of CPU for a put of 3 bytes, 0.8 s for a 128 MiB part,
# where curl takes 0.05 s; a backup makes about 15 such calls every 15 minutes, on a
# control-plane node next to etcd. Listings, deletes and
# head-object (XML listings with paging and version ids, off the backup's critical path) stay
# with aws-cli. The requests are the ones aws-cli 2.9 sends: path-style addressing, the payload
# unsigned (x-amz-content-sha256: UNSIGNED-PAYLOAD, as botocore signs S3 over HTTPS) and a
# Content-MD5 on every body (botocore's conditionally_calculate_md5 for PutObject and
# UploadPart; S3 requires it with Object Lock headers and on PutObjectRetention), so the store
# refuses a body that changed on the way (BadDigest).

# s3_uri_encode VALUE [--path]: VALUE percent-encoded as Signature Version 4's UriEncode wants
# it (every byte but A-Z a-z 0-9 - . _ ~ as %XX, hex in upper case), for a query string; with
# --path, each segment of a key so, the slashes kept. Byte by byte in the C locale (a UTF-8
# character is its bytes, each encoded), in bash: every signed request encodes its key, and a
# jq process for it took 19 ms of CPU here. (jq's @uri would also leave ! * ' ( ) as they are,
# which the store encodes when it computes the signature: SignatureDoesNotMatch.)
s3_uri_encode() {
  local LC_ALL=C value="$1" out="" c i
  for ((i = 0; i < ${#value}; i++)); do
    c="${value:i:1}"
    case "$c" in
      [A-Za-z0-9._~-]) out+="$c" ;;
      /) if [[ "${2:-}" == --path ]]; then out+="/"; else out+="%2F"; fi ;;
      *)
        printf -v c '%%%02X' "'${c}"
        out+="$c"
        ;;
    esac
  done
  printf '%s\n' "$out"
}

# s3_request METHOD KEY QUERY OUT [CURL_ARGS...]: one signed request for KEY in S3_BUCKET at
# S3_ENDPOINT, bounded by S3_TIMEOUT; QUERY is canonical already (parameters sorted by name,
# each with its "=", values encoded: curl 7.88 signs the query as it is given). The response's
# headers go to OUT.headers, its body to OUT.body. Succeeds on a 2xx status whose body is no
# <Error> (CompleteMultipartUpload can fail with 200); otherwise appends the method, key, status
# and the error's <Code> to aws_log and fails. The key pair reaches curl as a config on stdin,
# never on its command line.
s3_request() {
  local method="$1" key="$2" query="$3" out="$4" path status="" rc=0 code id secret
  shift 4
  path="$(s3_uri_encode "$key" --path)" || return 1
  id="${AWS_ACCESS_KEY_ID//\\/\\\\}"
  id="${id//\"/\\\"}"
  secret="${AWS_SECRET_ACCESS_KEY//\\/\\\\}"
  secret="${secret//\"/\\\"}"
  : >"$out.headers"
  : >"$out.body"
  status="$(printf 'user = "%s:%s"\n' "$id" "$secret" |
    timeout --kill-after=10 "$S3_TIMEOUT" curl --config - --silent --show-error --path-as-is \
      --aws-sigv4 "aws:amz:${S3_REGION}:s3" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
      --connect-timeout 20 --speed-limit 1 --speed-time 120 -X "$method" "$@" \
      --dump-header "$out.headers" --output "$out.body" --write-out '%{http_code}' \
      "${S3_ENDPOINT%/}/${S3_BUCKET}/${path}${query:+?${query}}" 2>>"$aws_log")" || rc=$?
  # A response cut short after its status (curl exits non-zero) counts as failed: a completion's
  # late <Error> could be in what was lost.
  if ((rc == 0)) && [[ "$status" =~ ^2[0-9][0-9]$ ]] && ! grep -q '<Error>' -- "$out.body"; then return 0; fi
  code="$(sed -n 's:.*<Code>\([^<]*\)</Code>.*:\1:p' -- "$out.body" | head -n 1)"
  printf '%s %s%s: HTTP %s %s (curl exit %s)\n' "$method" "$key" "${query:+?${query}}" "${status:-000}" \
    "${code:-(no error code)}" "$rc" >>"$aws_log"
  return 1
}

# s3_put KEY QUERY OUT FILE [CURL_ARGS...]: s3_request PUT with FILE as the body and its
# Content-MD5 (base64 of the binary MD5). curl asks for 100 Continue before any PUT body and
# waits up to a second for it; RGW answers a PutObjectRetention only after that second. As
# botocore does, only a body over 1 MiB waits for it. (Not `-H "Expect:"`: curl 7.88 signs that
# empty header without sending it, and the store answers SignatureDoesNotMatch.)
s3_put() {
  local key="$1" query="$2" out="$3" file="$4" md5
  local -a expect=()
  shift 4
  md5="$(openssl dgst -md5 -binary -- "$file" | base64 -w0)" || md5=""
  if ((${#md5} != 24)); then
    printf 'PUT %s: cannot hash %s\n' "$key" "$file" >>"$aws_log"
    return 1
  fi
  if (($(stat -c %s -- "$file") <= 1048576)); then expect=(--expect100-timeout 0.001); fi
  s3_request PUT "$key" "$query" "$out" --upload-file "$file" -H "Content-MD5: ${md5}" "${expect[@]}" "$@"
}

# s3_header OUT NAME: the value of response header NAME (any case) of s3_request's OUT, from the
# final response (after a 100 Continue); empty when there is none.
s3_header() {
  sed -n "s/^${2}:[[:space:]]*//Ip" -- "$1.headers" | tr -d '\r' | tail -n 1
}

# list_keys PREFIX: every key under PREFIX in S3_BUCKET, one a line.
list_keys() {
  s3 s3api list-objects-v2 --bucket "$S3_BUCKET" --prefix "$1" --output json 2>>"$aws_log" |
    jq -r '(.Contents // [])[].Key'
}

# A backup (a snapshot, or its PKI archive) is complete when its sidecar KEY.sha256 exists:
# "<sha256 hex>  <basename>" (sha256sum's format). etcd-backup.sh uploads it last, after the
# object, and deletes it first; etcd-restore.sh takes only complete backups and checks the
# object against it; retention counts only complete backups.

# sha256_hex [FILE]: the sha256 of FILE (stdin without one) as 64 hex digits and a newline, from
# OpenSSL's implementation (`openssl dgst -sha256 -r`, "<hex> *<name>"). The backup and restore
# hash every snapshot byte with it: OpenSSL uses the CPU's SHA extensions where coreutils 9.1's
# sha256sum (bookworm) has only its portable C, 4x slower here (567 MB: 0.35 s against 1.49 s).
# Fails, printing nothing, when openssl fails or prints no hash.
sha256_hex() {
  local out
  out="$(openssl dgst -sha256 -r ${1:+-- "$1"})" || return 1
  out="${out%% *}"
  [[ "$out" =~ ^[0-9a-f]{64}$ ]] || return 1
  printf '%s\n' "$out"
}

# backup_sidecar KEY: the key of KEY's sidecar.
backup_sidecar() { printf '%s.sha256' "$1"; }

# is_backup_sidecar KEY: KEY is a sidecar.
is_backup_sidecar() { [[ "$1" == *.sha256 ]]; }
# backup_signature KEY: the key of KEY's sidecar's signature (ssh-keygen -Y sign over the sidecar).
backup_signature() { printf '%s.sig' "$(backup_sidecar "$1")"; }
# is_backup_signature KEY: KEY is a sidecar's signature.
is_backup_signature() { [[ "$1" == *.sha256.sig ]]; }

# complete_backups KEYS [PATTERN]: of KEYS (a listing, one key a line), every key that is not a
# sidecar, matches the extended regex PATTERN (default: any) and whose sidecar is in KEYS; one a
# line, newest first (backup names start with their UTC stamp, so that is reverse name order).
complete_backups() {
  local key
  local -A listed=()
  while IFS= read -r key; do
    if [[ -n "$key" ]]; then listed["$key"]=1; fi
  done <<<"$1"
  while IFS= read -r key; do
    if [[ -n "$key" ]] && ! is_backup_sidecar "$key" && [[ -z "${2:-}" || "$key" =~ ${2:-} ]] &&
      [[ -n "${listed[$(backup_sidecar "$key")]:-}" ]]; then
      printf '%s\n' "$key"
    fi
  done < <(sort -r <<<"$1")
}

# ---------------------------------------------------------------------------------------------
# The etcd client of the CronJob scripts (etcd-backup.sh, etcd-defrag.sh). bash only.

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

# =============================================================================================
# The node scripts: addresses and the node's files, kubectl and etcdctl through the API server,
# static pods and kube-vip (kubectl, crictl, awk, grep, sha256sum).

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

# check_endpoint HOST IP: --endpoint-host HOST is empty, an IPv4 address or a lowercase DNS name;
# a DNS name needs --endpoint-ip IP, an IPv4 address; IP needs HOST.
check_endpoint() {
  local host="$1" ip="$2"
  if [[ -n "$host" ]] && ! is_ipv4 "$host"; then
    is_dns_name "$host" ||
      usage_error "--endpoint-host must be an IPv4 address or a lowercase DNS name, got '${host}'"
    is_ipv4 "$ip" ||
      usage_error "--endpoint-ip must be an IPv4 address when --endpoint-host is a DNS name, got '${ip}'"
  elif [[ -n "$ip" ]]; then
    [[ -n "$host" ]] || usage_error "--endpoint-ip needs --endpoint-host"
    is_ipv4 "$ip" || usage_error "--endpoint-ip must be an IPv4 address, got '${ip}'"
  fi
}

# check_root_dir: ROOT (--root) loses a trailing slash, and is empty (meaning /) or a directory.
check_root_dir() {
  ROOT="${ROOT%/}"
  [[ -z "$ROOT" || -d "$ROOT" ]] || usage_error "--root '${ROOT}' is not a directory"
}

# require_root: exits 1 unless run as root; a run under --root (a test) may be anyone.
require_root() {
  [[ -n "$ROOT" || "$EUID" -eq 0 ]] || die "must run as root"
}

# ---------------------------------------------------------------------------------------------
# Files.

# open_log [WORDS...]: sets log_file to the root-only log
# /var/log/hcloud-control-plane/SCRIPT_NAME.log (directory 0700, file 0600) and appends the line
# "=== <time> SCRIPT_NAME WORDS" to it. kubeadm's output carries bootstrap tokens and kubectl's
# may carry more: it goes there, never to the terminal.
open_log() {
  local dir="${ROOT}/var/log/hcloud-control-plane"
  install -d -m 0700 "$dir"
  log_file="${dir}/${SCRIPT_NAME}.log"
  : >>"$log_file"
  chmod 0600 "$log_file"
  printf '=== %(%Y-%m-%dT%H:%M:%S%z)T %s\n' -1 "${SCRIPT_NAME}${*:+ $*}" >>"$log_file"
}

# Atomic writes: a half-written file never replaces a good one. The content is staged in a new
# file beside the target (the same directory, so the rename is atomic), whose path is in `staged`
# until it is renamed or removed. remove_staged, in the script's EXIT trap, removes a staged file
# that a failure or a signal left behind.

# stage_file MODE FILE: writes stdin to a new file beside FILE, with MODE; sets staged to its path.
stage_file() {
  staged="$(mktemp "${2}.XXXXXX")"
  chmod "$1" "$staged"
  cat >"$staged"
}

# commit_staged FILE: renames the staged file to FILE.
commit_staged() {
  mv -f -- "$staged" "$1"
  staged=""
}

# remove_staged: removes the staged file, if there is one.
remove_staged() {
  if [[ -n "${staged:-}" ]]; then rm -f -- "$staged"; fi
  staged=""
}

# write_file MODE FILE: writes stdin to FILE with MODE, atomically.
write_file() {
  stage_file "$1" "$2"
  commit_staged "$2"
}

# ensure_hosts_entry NAME IP: makes /etc/hosts map NAME to IP with exactly one line "<IP> <NAME>":
# drops NAME from any other line (a line left with no name goes), keeps everything else as it is.
ensure_hosts_entry() {
  local host="$1" ip="$2"
  local hosts="${ROOT}/etc/hosts" wanted="${ip} ${host}"
  local line name found=false changed=false
  local -a lines=() fields names
  if [[ -f "$hosts" ]]; then
    while IFS= read -r line || [[ -n "$line" ]]; do
      read -r -a fields <<<"${line%%#*}"
      if [[ ${#fields[@]} -lt 2 || " ${fields[*]:1} " != *" ${host} "* ]]; then
        lines+=("$line")
      elif [[ "$line" == "$wanted" ]] && ! "$found"; then
        found=true
        lines+=("$line")
      else
        changed=true
        names=()
        for name in "${fields[@]:1}"; do
          if [[ "$name" != "$host" ]]; then names+=("$name"); fi
        done
        if [[ ${#names[@]} -gt 0 ]]; then lines+=("${fields[0]} ${names[*]}"); fi
      fi
    done <"$hosts"
  fi
  if "$found" && ! "$changed"; then
    log "/etc/hosts already maps ${host} to ${ip}"
    return 0
  fi
  if ! "$found"; then lines+=("$wanted"); fi
  write_file 0644 "$hosts" < <(printf '%s\n' "${lines[@]}")
  log "/etc/hosts now maps ${host} to ${ip}"
}

# ---------------------------------------------------------------------------------------------
# SSH.

# read_ssh_private_key FILE: one SSH private key from stdin (bounded by timeout_seconds) into
# FILE, 0600 (kubeadm-member.sh, etcd-restore.sh seed --ssh-key-stdin). Messages never show the
# key or any part of it.
readonly MAX_SSH_KEY_BYTES=65536
read_ssh_private_key() {
  [[ ! -t 0 ]] || die "the SSH private key is read from stdin; stdin is a terminal"
  local key status=0 first last
  # One byte more than allowed, to tell a key of the largest size from a longer input (an RSA
  # 16384-bit key in PEM is about 12 KiB).
  key="$(timeout "$timeout_seconds" head -c "$((MAX_SSH_KEY_BYTES + 1))")" || status=$?
  if ((status == 124)); then die "no SSH private key on stdin within ${timeout_seconds}s"; fi
  ((status == 0)) || die "cannot read the SSH private key from stdin"
  [[ -n "${key//[[:space:]]/}" ]] || die "stdin is empty; expected the SSH private key"
  ((${#key} <= MAX_SSH_KEY_BYTES)) || die "stdin is larger than ${MAX_SSH_KEY_BYTES} bytes; expected one SSH private key"
  key="${key//$'\r'/}"
  first="${key%%$'\n'*}"
  last="${key##*$'\n'}"
  # ssh-keygen writes "-----BEGIN OPENSSH PRIVATE KEY-----" (PROTOCOL.key in openssh-portable);
  # -m PEM writes the PEM types of the key's algorithm (RFC 7468; PKCS#8 "PRIVATE KEY").
  [[ "$first" =~ ^-----BEGIN\ ((OPENSSH|RSA|EC|DSA)\ )?PRIVATE\ KEY-----$ && "$last" == "${first/BEGIN/END}" ]] ||
    die "stdin is not an SSH private key in OpenSSH or PEM format (expected one -----BEGIN ... PRIVATE KEY----- block)"
  # printf is a shell builtin: the key reaches no command line.
  (umask 077 && printf '%s\n' "$key" >"$1")
  chmod 0600 "$1"
}

# ---------------------------------------------------------------------------------------------
# Control-plane members.

# The member marker, written last by the membership scripts (member.sh says what it holds).
# shellcheck disable=SC2034 # read by member.sh, kubeadm-member.sh and etcd-restore.sh
readonly MEMBER_MARKER="/var/lib/kubernetes-node/member"
# The record of a finished restore seed (etcd-restore.sh seed): /var/lib/etcd and the shared
# PKI in /etc/kubernetes/pki are a backup's, for kubeadm-init.sh to initialize the cluster from.
# One KEY=value a line: key, sha256 (of the backup object), snapshotSha256, revision, completed.
readonly SEED_RECORD="/var/lib/kubernetes-node/restored"

# seed_record_value FIELD: the value of FIELD in ${ROOT}${SEED_RECORD}; status 1 without one.
seed_record_value() {
  local line
  [[ -r "${ROOT:-}${SEED_RECORD}" ]] || return 1
  while IFS= read -r line || [[ -n "$line" ]]; do
    if [[ "$line" == "$1="?* ]]; then
      printf '%s' "${line#*=}"
      return 0
    fi
  done <"${ROOT:-}${SEED_RECORD}"
  return 1
}

# ---------------------------------------------------------------------------------------------
# Probes of a control-plane member. curl, bounded by --max-time, its diagnostics dropped: curl's
# man page (--write-out): http_code is the status of the last response, 000 when there was none;
# time_connect is the time until the TCP connection was made, 0 when none was.

# Each probe (one curl call) waits at most this long.
readonly PROBE_SECONDS=5
probe_code="000"
probe_body=""
# probe_readyz URL: sets probe_code (three digits, 000 for no answer) and probe_body. /readyz
# answers anonymous requests on a kubeadm cluster (ClusterRole system:public-info-viewer);
# healthy, its body is exactly "ok".
# shellcheck disable=SC2034 # probe_body is read by the sourcing script (kubeadm-member.sh)
probe_readyz() {
  local output
  output="$(curl --silent --insecure --max-time "$PROBE_SECONDS" --write-out '\n%{http_code}' "$1" 2>/dev/null)" || true
  probe_code="${output##*$'\n'}"
  probe_body=""
  if [[ "$output" == *$'\n'* ]]; then probe_body="${output%$'\n'*}"; fi
  [[ "$probe_code" =~ ^[0-9]{3}$ ]] || probe_code="000"
}

# etcd_port_open PEER: TCP port 2379 on PEER accepts a connection. etcd requires a client
# certificate there (kubeadm's --client-cert-auth), so curl's TLS handshake or request fails
# after the connection was made; time_connect tells that the connection was.
etcd_port_open() {
  local seconds
  seconds="$(curl --silent --insecure --max-time "$PROBE_SECONDS" --output /dev/null \
    --write-out '%{time_connect}' "https://${1}:2379/health" 2>/dev/null)" || true
  [[ "$seconds" =~ ^[0-9]+([.,][0-9]+)?$ && ! "$seconds" =~ ^0+([.,]0+)?$ ]]
}

# member_answers ENDPOINT_URL [PEER...]: a member of the cluster answers (kubeadm-member.sh step 4,
# etcd-restore.sh seed): a peer's /readyz gives any HTTP status (a degraded API server answers
# 500), a peer's etcd port accepts TCP connections, or ENDPOINT_URL gives any HTTP status. Sets
# answer_from to what answered; each probe that found nothing goes into `probed`.
answer_from=""
declare -a probed=()
# shellcheck disable=SC2034 # answer_from is read by the sourcing scripts
member_answers() {
  local endpoint_url="$1" peer
  shift
  probed=()
  for peer in "$@"; do
    probe_readyz "https://${peer}:6443/readyz"
    if [[ "$probe_code" != 000 ]]; then
      answer_from="https://${peer}:6443/readyz (HTTP ${probe_code})"
      return 0
    fi
    probed+=("https://${peer}:6443/readyz: no HTTP answer")
    if etcd_port_open "$peer"; then
      answer_from="${peer}:2379 (etcd accepts TCP connections)"
      return 0
    fi
    probed+=("${peer}:2379: no TCP connection")
  done
  probe_readyz "$endpoint_url"
  if [[ "$probe_code" != 000 ]]; then
    answer_from="${endpoint_url} (HTTP ${probe_code})"
    return 0
  fi
  probed+=("${endpoint_url}: no HTTP answer")
  return 1
}

# apiserver_ready KUBECONFIG: the API server's /readyz answers ok. kubectl's errors go to the log.
apiserver_ready() {
  local output
  output="$(bounded kubectl --kubeconfig "$1" get --raw /readyz 2>>"$log_file")" || return 1
  [[ "$output" == "ok" ]]
}

# etcdctl_in_pod KUBECONFIG NODE ENDPOINTS ARGS...: etcdctl ARGS against ENDPOINTS
# (comma-separated), bounded, inside the etcd static pod etcd-NODE through kubectl exec, with the
# certificate paths as mounted there.
etcdctl_in_pod() {
  local kubeconfig="$1" node="$2" targets="$3"
  shift 3
  bounded kubectl --kubeconfig "$kubeconfig" -n kube-system exec "etcd-${node}" -- etcdctl \
    --endpoints "$targets" \
    --cacert /etc/kubernetes/pki/etcd/ca.crt \
    --cert /etc/kubernetes/pki/etcd/healthcheck-client.crt \
    --key /etc/kubernetes/pki/etcd/healthcheck-client.key \
    "$@"
}

# wait_for_control_plane KUBECONFIG NODE FAIL [STEP]: the gate before and after every change to a
# control-plane node: the API server's /readyz answers ok (apiserver_ready), then `etcdctl
# endpoint health --cluster` passes in etcd-NODE (etcd_cluster_healthy), each waited for. When
# one does not pass in time, calls FAIL with "[STEP: ]<what did not pass>".
wait_for_control_plane() {
  # Prefixed names: bash's locals are visible to FAIL, which may read the caller's own (a step).
  local _wcp_kubeconfig="$1" _wcp_node="$2" _wcp_fail="$3" _wcp_prefix="${4:+$4: }"
  wait_for apiserver_ready "$_wcp_kubeconfig" ||
    "$_wcp_fail" "${_wcp_prefix}the API server did not report ready within ${timeout_seconds}s (kubectl get --raw /readyz); see ${log_file}"
  wait_for etcd_cluster_healthy "$_wcp_kubeconfig" "$_wcp_node" ||
    "$_wcp_fail" "${_wcp_prefix}etcd endpoint health --cluster did not pass within ${timeout_seconds}s; see ${log_file}"
}

# etcd_cluster_healthy KUBECONFIG NODE: `etcdctl endpoint health --cluster` passes in etcd-NODE,
# so every member is healthy. The output goes to the log.
etcd_cluster_healthy() {
  etcdctl_in_pod "$1" "$2" https://127.0.0.1:2379 endpoint health --cluster >>"$log_file" 2>&1
}

# ---------------------------------------------------------------------------------------------
# Static pods: restarting one so that it reads its files again (renewed certificates, a renewed
# admin.conf). The kubelet stops a static pod whose manifest leaves /etc/kubernetes/manifests and
# starts it again when the manifest is back; crictl shows its container go and come back.
# parked_pod names the static pod whose manifest is out right now (set for the sourcing script);
# the script's EXIT trap calls restore_parked_static_pod, so a failure or a signal puts it back.

# static_pod_manifest NAME / parked_static_pod NAME: where NAME's manifest is, and where it waits
# while parked: outside the directory the kubelet watches, on the same file system (a rename).
static_pod_manifest() { printf '%s/etc/kubernetes/manifests/%s.yaml' "$ROOT" "$1"; }
parked_static_pod() { printf '%s/etc/kubernetes/manifests-parked/%s.yaml' "$ROOT" "$1"; }

# unpark_static_pod NAME: puts NAME's parked manifest back, unless one is in place already.
unpark_static_pod() {
  local parked manifest
  parked="$(parked_static_pod "$1")"
  manifest="$(static_pod_manifest "$1")"
  [[ -f "$parked" && ! -e "$manifest" ]] || return 0
  mv -f -- "$parked" "$manifest" || return 1
  log "put the manifest of $1 back in /etc/kubernetes/manifests"
}

# restore_parked_static_pod: for the EXIT trap; puts back the manifest of parked_pod, if any.
restore_parked_static_pod() {
  if [[ -n "${parked_pod:-}" ]]; then
    unpark_static_pod "$parked_pod" ||
      log "error: could not put $(parked_static_pod "$parked_pod") back in /etc/kubernetes/manifests: do it by hand"
  fi
}

# crictl_ps NAME: the ids of the running containers named exactly NAME, through containerd's CRI
# socket (components/node/kubeadm.ts criSocket), so crictl needs no /etc/crictl.yaml. The crictl call
# fails or times out: no output and status 1.
crictl_ps() {
  bounded crictl --runtime-endpoint unix:///run/containerd/containerd.sock ps --name "^${1}\$" -q 2>>"$log_file"
}
container_gone() {
  local ids
  ids="$(crictl_ps "$1")" || return 1
  [[ -z "$ids" ]]
}
container_running() {
  local ids
  ids="$(crictl_ps "$1")" || return 1
  [[ -n "$ids" ]]
}

# node_failed MESSAGE: exits 1 with MESSAGE after the node's name (node_name, set by the sourcing
# script): the FAIL of restart_static_pod, replace_static_pod and wait_for_control_plane in the
# scripts that act on one named node.
node_failed() { die "${node_name}: $*"; }

# cleanup_static_pods: the EXIT trap of a script that parks manifests and writes files: puts a
# parked manifest back (restore_parked_static_pod) and removes a staged file (remove_staged).
# cleanup_on_exit turns HUP, INT and TERM into exits, so it runs on those signals too.
cleanup_static_pods() {
  restore_parked_static_pod
  remove_staged
}

# restart_static_pod NAME FAIL: moves NAME's manifest out, waits until its container is gone,
# moves the manifest back, waits until its container runs. FAIL MESSAGE reports a failure and
# exits (the EXIT trap puts a parked manifest back); MESSAGE starts with "stopping NAME" or
# "starting NAME".
restart_static_pod() {
  local name="$1" fail="$2" parked_dir
  parked_dir="$(dirname "$(parked_static_pod "$name")")"
  log "restarting ${name}"
  install -d -m 0700 "$parked_dir"
  parked_pod="$name"
  mv -f -- "$(static_pod_manifest "$name")" "$(parked_static_pod "$name")"
  wait_for container_gone "$name" ||
    "$fail" "stopping ${name}: its container still runs ${timeout_seconds}s after its manifest was moved out (it is put back); see ${log_file}"
  unpark_static_pod "$name"
  parked_pod=""
  rmdir -- "$parked_dir" 2>/dev/null || true
  wait_for container_running "$name" ||
    "$fail" "starting ${name}: no container ran within ${timeout_seconds}s of its manifest being put back; check the kubelet (journalctl -u kubelet); see ${log_file}"
}

# replace_static_pod NAME NEW FAIL: installs the manifest file NEW as NAME's static pod. A running
# NAME is stopped first (its manifest parked, its container awaited gone), then NEW is written
# into /etc/kubernetes/manifests atomically and its container awaited running. The kubelet then
# never runs the old and the new pod together. When the new container never runs, the previous
# manifest is put back (or NEW removed, if there was none) before FAIL; when the old one never
# stops, the EXIT trap puts it back. FAIL as for restart_static_pod.
replace_static_pod() {
  local name="$1" new="$2" fail="$3" manifest parked
  manifest="$(static_pod_manifest "$name")"
  parked="$(parked_static_pod "$name")"
  if [[ -f "$manifest" ]]; then
    log "stopping ${name} to replace its manifest"
    install -d -m 0700 "${parked%/*}"
    parked_pod="$name"
    mv -f -- "$manifest" "$parked"
    wait_for container_gone "$name" ||
      "$fail" "stopping ${name}: its container still runs ${timeout_seconds}s after its manifest was moved out (it is put back); see ${log_file}"
  fi
  install -d -m 0700 "${manifest%/*}"
  write_file 0600 "$manifest" <"$new"
  # From here a failure must not put the old manifest back over the new one behind our back.
  parked_pod=""
  if ! wait_for container_running "$name"; then
    rm -f -- "$manifest"
    if [[ -f "$parked" ]]; then
      mv -f -- "$parked" "$manifest"
      "$fail" "starting ${name}: no container ran within ${timeout_seconds}s of its new manifest; the previous manifest is back in /etc/kubernetes/manifests; check the kubelet (journalctl -u kubelet) and the image; see ${log_file}"
    fi
    "$fail" "starting ${name}: no container ran within ${timeout_seconds}s of its manifest; it is removed again; check the kubelet (journalctl -u kubelet) and the image; see ${log_file}"
  fi
  rm -f -- "$parked"
  rmdir -- "${parked%/*}" 2>/dev/null || true
  log "${name} runs with its new manifest"
}

# kube-vip (components/node/kubeVip.ts) is a static pod that reads /etc/kubernetes/admin.conf once,
# when it starts. `kubeadm certs renew all` and `kubeadm upgrade apply/node` renew the client
# certificate in admin.conf in place, and kubeadm restarts only the static pods it manages
# (kube-apiserver, kube-controller-manager, kube-scheduler, etcd: cmd/kubeadm/app/phases/upgrade/
# staticpods.go in kubernetes/kubernetes). Left alone, kube-vip keeps the old certificate until
# it expires, then cannot renew its Lease and the reserved IP goes nowhere. The sentinel holds
# the fingerprint of the admin.conf client certificate kube-vip was last restarted with.

# kube_vip_sentinel: where the fingerprint of the admin.conf kube-vip last started with is kept.
kube_vip_sentinel() { printf '%s/var/lib/kubernetes-node/kube-vip-admin-conf' "$ROOT"; }

# admin_conf_fingerprint FILE: prints sha256:<hex> of the client certificate embedded in the
# kubeconfig FILE (its client-certificate-data, which kubeadm writes and every renewal replaces),
# or of the whole file when it embeds none. Not logged: without a certificate it covers a key.
admin_conf_fingerprint() {
  local line="" digest
  [[ -r "$1" ]] || return 1
  line="$(grep -m 1 -E '^[[:space:]]*client-certificate-data:' "$1")" || true
  if [[ -n "$line" ]]; then
    digest="$(printf '%s' "${line#*:}" | sha256sum)" || return 1
  else
    digest="$(sha256sum <"$1")" || return 1
  fi
  printf 'sha256:%s' "${digest%% *}"
}

# restart_kube_vip_if_stale FAIL GATE...: on a node with the kube-vip manifest, when the sentinel
# /var/lib/kubernetes-node/kube-vip-admin-conf does not hold admin.conf's fingerprint, restarts
# kube-vip (restart_static_pod NAME FAIL), runs GATE... (the same gates as after every other
# static pod), waits until some kube-vip renewed its Lease (kube_vip_lease_renewed_since, the
# Lease named in the manifest), then writes the fingerprint. A node without the manifest (kube-vip comes after
# the bootstrap chain, components/lifecycle/bootstrap.ts) has no kube-vip to restart: a log line, status 0.
restart_kube_vip_if_stale() {
  local fail="$1"
  shift
  local sentinel fingerprint lease started
  sentinel="$(kube_vip_sentinel)"
  unpark_static_pod kube-vip || "$fail" "kube-vip: could not put its parked manifest back"
  if [[ ! -f "$(static_pod_manifest kube-vip)" ]]; then
    log "no kube-vip manifest on this node: no kube-vip to restart"
    return 0
  fi
  fingerprint="$(admin_conf_fingerprint "${ROOT}/etc/kubernetes/admin.conf")" ||
    "$fail" "kube-vip: cannot read /etc/kubernetes/admin.conf"
  if [[ -f "$sentinel" && "$(<"$sentinel")" == "$fingerprint" ]]; then
    log "kube-vip was restarted with the current admin.conf already; not restarted again"
    return 0
  fi
  lease="$(kube_vip_lease_name)" || "$fail" "kube-vip: its manifest names no vip_leasename"
  restart_static_pod kube-vip "$fail"
  printf -v started '%(%s)T' -1
  "$@"
  # The same proof install-kube-vip.sh waits for: some kube-vip leads again after the restart.
  wait_for kube_vip_lease_renewed_since "${ROOT}/etc/kubernetes/admin.conf" "$lease" "$started" ||
    "$fail" "kube-vip: no kube-vip renewed the Lease kube-system/${lease} within ${timeout_seconds}s of the restart (kubectl -n kube-system get lease ${lease}); see ${log_file}"
  record_kube_vip_admin_conf "$fingerprint"
}

# kube_vip_lease_name: the vip_leasename of the installed kube-vip manifest, as
# components/node/kubeVip.ts renders it (`- name: vip_leasename`, then `value: <name>`); status 1
# when it names none.
kube_vip_lease_name() {
  awk '$1 == "-" && $2 == "name:" && $3 == "vip_leasename" { want = 1; next }
    want && $1 == "value:" { print $2; found = 1; exit }
    { want = 0 }
    END { exit found ? 0 : 1 }' "$(static_pod_manifest kube-vip)"
}

# record_kube_vip_admin_conf FINGERPRINT: kube-vip now runs with the admin.conf of FINGERPRINT
# (admin_conf_fingerprint); restart_kube_vip_if_stale restarts it only when that changes.
record_kube_vip_admin_conf() {
  local sentinel
  sentinel="$(kube_vip_sentinel)"
  install -d -m 0755 "${sentinel%/*}"
  write_file 0644 "$sentinel" <<<"$1"
}

# kube_vip_lease_renewed_since KUBECONFIG LEASE EPOCH: the Lease kube-system/LEASE that elects
# the kube-vip leader (components/node/kubeVip.ts kubeVipLeaseName) has a holder and was renewed at or
# after EPOCH (seconds). The leader renews it every vip_retryperiod seconds (client-go's
# tools/leaderelection tryAcquireOrRenew writes spec.renewTime on every renewal; kube-vip elects
# with it), so this passes once some node's kube-vip leads, and so holds the reserved IP, after
# EPOCH. kubectl's errors go to the log.
kube_vip_lease_renewed_since() {
  local output holder renew_time renewed
  output="$(bounded kubectl --kubeconfig "$1" -n kube-system get lease "$2" \
    -o 'jsonpath={.spec.holderIdentity} {.spec.renewTime}' 2>>"$log_file")" || return 1
  read -r holder renew_time <<<"$output" || true
  [[ -n "$holder" && -n "$renew_time" ]] || return 1
  renewed="$(date -d "$renew_time" +%s 2>>"$log_file")" || return 1
  ((renewed >= $3))
}
