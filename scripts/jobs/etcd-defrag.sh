#!/usr/bin/env bash
# Defragments the members of an etcd cluster one at a time: only the members whose free pages
# exceed a threshold, followers first and the member that is leader at that moment last, with
# the whole cluster healthy before and after each member. Run by the etcd-defrag CronJob on a
# control-plane node; configured only through environment variables (see --help).
#
# Needs only bash, coreutils (timeout, date, sleep, tail) and etcdctl: the JSON of `etcdctl -w
# json` is read with bash regexes, not jq (member ids are 64-bit and jq would round them).
# Never prints a secret: no xtrace, and etcdctl output (which holds no key material) is shown
# only on failure.
set -euo pipefail
umask 077
export LC_ALL=C

readonly SCRIPT_NAME="etcd-defrag"
readonly LOG_TIMESTAMPS=utc
# The project's helper library: beside this script (the job's ConfigMap, the image), else in the
# repository (scripts/node/lib.sh).
lib="$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ -f "$lib" ]] || lib="$(dirname "${BASH_SOURCE[0]}")/../node/lib.sh"
# shellcheck source-path=SCRIPTDIR source=../node/lib.sh
source "$lib"

usage() {
  cat <<'EOF'
Usage: etcd-defrag.sh [--help]

Defragments etcd members one at a time, never all at once (`defrag --cluster` blocks every
member together and stalls the API):
  1. every endpoint must pass `endpoint health`, and every member of `member list` must be in
     ETCD_ENDPOINTS; otherwise nothing is done (exit 1): a member blocked by its defrag while
     another one is down could cost quorum;
  2. reads each member's status (`endpoint status -w json` against that one endpoint) and
     prints one line per member: size, size in use, fragmentation, leader or not, action;
  3. defragments the selected members (fragmentation >= DEFRAG_THRESHOLD_PERCENT and size >=
     DEFRAG_MIN_DB_SIZE_BYTES) one by one: followers first in ETCD_ENDPOINTS order, and the
     member that is leader at that moment last (the leader is read again before every member,
     as it may move);
  4. before each member, all endpoints must be healthy (else it stops, exit 1); after it,
     waits until that member and the whole cluster are healthy again, and prints the size
     before and after. A failed defrag stops the run; the remaining members are not touched.

Configured only through environment variables:

  ETCD_ENDPOINTS              Required. Comma-separated client URLs of ALL members, e.g.
                              https://10.0.1.11:2379,https://10.0.1.12:2379,https://10.0.1.13:2379
  ETCD_CACERT                 CA bundle of the etcd server certificates. Empty: no --cacert.
  ETCD_CERT                   Client certificate (kubeadm: /etc/kubernetes/pki/etcd/healthcheck-client.crt).
  ETCD_KEY                    Client key. ETCD_CERT and ETCD_KEY are both set or both empty; all
                              three empty means plain-HTTP etcd.
  ETCD_DIAL_TIMEOUT           etcdctl --dial-timeout (default 3s).
  ETCD_COMMAND_TIMEOUT        Seconds one status, health or member list call may take (default 10).
  DEFRAG_TIMEOUT              Seconds one `etcdctl defrag` of one member may take (default 600;
                              also its --command-timeout). A defrag that times out on the client
                              may still be running on the member: the run stops there.
  DEFRAG_THRESHOLD_PERCENT    Whole number 1..99 (default 40). A member is defragmented when
                              (dbSize - dbSizeInUse) * 100 / dbSize >= this.
  DEFRAG_MIN_DB_SIZE_BYTES    Members whose dbSize is below this are skipped whatever their
                              fragmentation (default 104857600, 100 MiB; 0 = no floor).
  DEFRAG_HEALTH_WAIT_SECONDS  How long to wait, after a member's defrag, for that member and the
                              whole cluster to be healthy again before giving up (default 120).
  DEFRAG_PAUSE_SECONDS        Pause between two members (default 10).
  DEFRAG_DRY_RUN              true or false (default false). true: checks health, prints what it
                              would do and in which order, changes nothing.

Tools: bash, coreutils (timeout, date, sleep, tail), etcdctl (3.4 or later).

Output: progress on stderr, one line per step with a UTC timestamp; the member lines read
  member <url> id <hex>: size <bytes>, in use <bytes>, fragmented <n>%, leader|follower: defragment|skip (why)
and each defrag is announced as `defragmenting <url> ...` and ends with `defragmented <url>:
<before> -> <after> bytes`. On success one summary line on stdout:
  etcd-defrag: defragmented <n> of <members> members, freed <bytes> bytes
Exit status: 0 done or nothing to do; 1 refused (a member unhealthy, unreachable or missing
from ETCD_ENDPOINTS) or a step failed; 2 configuration error (names the variable).
EOF
}

no_arguments "$@"

# ---------------------------------------------------------------------------------------------
# Configuration.

ETCD_COMMAND_TIMEOUT="${ETCD_COMMAND_TIMEOUT:-10}"
DEFRAG_TIMEOUT="${DEFRAG_TIMEOUT:-600}"
DEFRAG_THRESHOLD_PERCENT="${DEFRAG_THRESHOLD_PERCENT:-40}"
DEFRAG_MIN_DB_SIZE_BYTES="${DEFRAG_MIN_DB_SIZE_BYTES:-104857600}"
DEFRAG_HEALTH_WAIT_SECONDS="${DEFRAG_HEALTH_WAIT_SECONDS:-120}"
DEFRAG_PAUSE_SECONDS="${DEFRAG_PAUSE_SECONDS:-10}"
DEFRAG_DRY_RUN="${DEFRAG_DRY_RUN:-false}"

require_var ETCD_ENDPOINTS "comma-separated client URLs of all members"
require_int ETCD_COMMAND_TIMEOUT 1
require_int DEFRAG_TIMEOUT 1
require_int DEFRAG_THRESHOLD_PERCENT 1 99
require_int DEFRAG_MIN_DB_SIZE_BYTES 0
require_int DEFRAG_HEALTH_WAIT_SECONDS 1
require_int DEFRAG_PAUSE_SECONDS 0
etcd_client_config
case "$DEFRAG_DRY_RUN" in
  true | false) ;;
  *) config_error "DEFRAG_DRY_RUN must be 'true' or 'false', got '${DEFRAG_DRY_RUN}'" ;;
esac

((${#endpoints[@]} > 0)) || config_error "ETCD_ENDPOINTS holds no URL, got '${ETCD_ENDPOINTS}'"
declare -A listed=()
for endpoint in "${endpoints[@]}"; do
  [[ -z "${listed[$endpoint]:-}" ]] || config_error "ETCD_ENDPOINTS lists ${endpoint} twice"
  listed["$endpoint"]=1
done
readonly member_count=${#endpoints[@]}

require_tools etcdctl timeout tail date sleep

trap 'log "interrupted (SIGHUP); a defrag already sent keeps running on its member"; exit 129' HUP
trap 'log "interrupted (SIGINT); a defrag already sent keeps running on its member"; exit 130' INT
trap 'log "interrupted (SIGTERM); a defrag already sent keeps running on its member"; exit 143' TERM

# ---------------------------------------------------------------------------------------------
# etcdctl, bounded.

# ctl SECONDS ENDPOINTS ARGS...: etcdctl ARGS against ENDPOINTS (comma-separated), with
# --command-timeout SECONDS, killed a little later if it hangs anyway.
ctl() {
  local seconds="$1" targets="$2"
  shift 2
  timeout --kill-after=5 "$((seconds + 10))" etcdctl --endpoints "$targets" "${etcdctl_tls[@]}" \
    --dial-timeout "$ETCD_DIAL_TIMEOUT" --command-timeout "${seconds}s" "$@"
}

# last_line TEXT: the last non-empty line of TEXT (an etcdctl error), for a one-line message.
last_line() {
  local text="$1" line last=""
  while IFS= read -r line; do
    if [[ -n "$line" ]]; then last="$line"; fi
  done <<<"$text"
  printf '%s' "$last"
}

# healthy ENDPOINT: `endpoint health` (a quorum read through that member) passes. On failure
# health_error holds etcdctl's last line.
health_error=""
unhealthy_pattern="is unhealthy: ([^"$'\n'"]*)"
healthy() {
  local out
  if out="$(ctl "$ETCD_COMMAND_TIMEOUT" "$1" endpoint health 2>&1)"; then
    return 0
  fi
  health_error="$(last_line "$out")"
  [[ -n "$health_error" ]] || health_error="no answer"
  # 3.4 ends with "Error: unhealthy cluster"; the line before says why.
  if [[ "$health_error" == "Error: unhealthy cluster" && "$out" =~ $unhealthy_pattern ]]; then
    health_error="${BASH_REMATCH[1]}"
  fi
  return 1
}

# all_healthy: every endpoint passes `endpoint health`; the others are in unhealthy_list.
unhealthy_list=""
all_healthy() {
  local endpoint
  unhealthy_list=""
  for endpoint in "${endpoints[@]}"; do
    if ! healthy "$endpoint"; then
      unhealthy_list+="${unhealthy_list:+; }${endpoint} (${health_error})"
    fi
  done
  [[ -z "$unhealthy_list" ]]
}

# read_status ENDPOINT: `endpoint status -w json` of that one member into st_id, st_leader,
# st_size, st_in_use (decimal strings; ids are compared as text, never as numbers).
st_id="" st_leader="" st_size="" st_in_use="" status_error=""
read_status() {
  local out
  st_id="" st_leader="" st_size="" st_in_use="" status_error=""
  if ! out="$(ctl "$ETCD_COMMAND_TIMEOUT" "$1" endpoint status -w json 2>&1)"; then
    status_error="$(last_line "$out")"
    return 1
  fi
  if [[ "$out" =~ \"member_id\":([0-9]+) ]]; then st_id="${BASH_REMATCH[1]}"; fi
  if [[ "$out" =~ \"leader\":([0-9]+) ]]; then st_leader="${BASH_REMATCH[1]}"; fi
  if [[ "$out" =~ \"dbSize\":([0-9]+) ]]; then st_size="${BASH_REMATCH[1]}"; fi
  if [[ "$out" =~ \"dbSizeInUse\":([0-9]+) ]]; then st_in_use="${BASH_REMATCH[1]}"; fi
  if [[ -z "$st_id" || -z "$st_size" || -z "$st_in_use" ]]; then
    status_error="no member_id, dbSize or dbSizeInUse in its status (etcd older than 3.4?)"
    return 1
  fi
  # A member that knows no leader omits the field (0).
  st_leader="${st_leader:-0}"
}

hex() { printf '%x' "$1"; }

# percent SIZE IN_USE: the share of the file that is free pages, rounded down.
percent() {
  if (($1 <= 0 || $2 >= $1)); then printf '0'; else printf '%d' "$((($1 - $2) * 100 / $1))"; fi
}

# ---------------------------------------------------------------------------------------------
# Who is who.

declare -A id_of=() endpoint_of=()
leader_id=""
leader_endpoint=""

# read_all: the status of every endpoint (sizes into size_of/in_use_of), and the leader they
# all agree on into leader_id/leader_endpoint. Retries while an election is under way (they
# disagree or know no leader), at most 5 times.
declare -A size_of=() in_use_of=()
read_all() {
  local attempt endpoint leaders
  for attempt in 1 2 3 4 5; do
    leaders=""
    for endpoint in "${endpoints[@]}"; do
      read_status "$endpoint" || die "cannot read the status of ${endpoint}: ${status_error}"
      if [[ -n "${id_of[$endpoint]:-}" && "${id_of[$endpoint]}" != "$st_id" ]]; then
        die "${endpoint} is now member $(hex "$st_id"), was $(hex "${id_of[$endpoint]}"); was a member replaced? stopping"
      fi
      if [[ -n "${endpoint_of[$st_id]:-}" && "${endpoint_of[$st_id]}" != "$endpoint" ]]; then
        die "${endpoint_of[$st_id]} and ${endpoint} are the same member ($(hex "$st_id")); list each member once in ETCD_ENDPOINTS"
      fi
      id_of["$endpoint"]="$st_id"
      endpoint_of["$st_id"]="$endpoint"
      size_of["$endpoint"]="$st_size"
      in_use_of["$endpoint"]="$st_in_use"
      if [[ " $leaders " != *" $st_leader "* ]]; then leaders+="${leaders:+ }${st_leader}"; fi
    done
    if [[ "$leaders" =~ ^[0-9]+$ && "$leaders" != 0 ]]; then
      leader_id="$leaders"
      # Empty when the leader is not one of ETCD_ENDPOINTS (check_member_list refuses that).
      leader_endpoint="${endpoint_of[$leader_id]:-}"
      return 0
    fi
    log "the members do not agree on a leader yet (attempt ${attempt}/5); reading again in 2s"
    sleep 2
  done
  die "the members did not agree on a leader after 5 attempts; stopping"
}

# check_member_list: every member that `member list` knows is one of ETCD_ENDPOINTS (a member
# left out would not be health-checked, and its failure during a defrag could cost quorum).
check_member_list() {
  local out rest id name all
  all="$(
    IFS=,
    printf '%s' "${endpoints[*]}"
  )"
  out="$(ctl "$ETCD_COMMAND_TIMEOUT" "$all" member list -w json 2>&1)" ||
    die "etcdctl member list failed: $(last_line "$out")"
  rest="$out"
  local seen=0
  # One "ID" per member, at most one per character of the text: bounded.
  while [[ "$rest" =~ \"ID\":([0-9]+)(,\"name\":\"([^\"]*)\")? ]] && ((seen < ${#out})); do
    id="${BASH_REMATCH[1]}"
    name="${BASH_REMATCH[3]:-}"
    rest="${rest#*"${BASH_REMATCH[0]}"}"
    seen=$((seen + 1))
    [[ -n "${endpoint_of[$id]:-}" ]] ||
      die "refusing: member $(hex "$id")${name:+ (${name})} is in the cluster but not in ETCD_ENDPOINTS; list every member; nothing was defragmented"
  done
  ((seen > 0)) || die "etcdctl member list listed no member"
  ((seen == member_count)) ||
    die "refusing: the cluster has ${seen} members, ETCD_ENDPOINTS names ${member_count}; nothing was defragmented"
}

# ---------------------------------------------------------------------------------------------
# 1. Health gate: every member, before anything.

log "checking ${member_count} member(s): threshold ${DEFRAG_THRESHOLD_PERCENT}%, minimum size ${DEFRAG_MIN_DB_SIZE_BYTES} bytes, dry run ${DEFRAG_DRY_RUN}"
if ! all_healthy; then
  die "refusing: not every member is healthy: ${unhealthy_list}; nothing was defragmented"
fi

# ---------------------------------------------------------------------------------------------
# 2. Status, selection.

read_all
check_member_list
[[ -n "$leader_endpoint" ]] || die "refusing: the leader, member $(hex "$leader_id"), is not one of ETCD_ENDPOINTS; nothing was defragmented"

selected=()
reclaimable=0
for endpoint in "${endpoints[@]}"; do
  size="${size_of[$endpoint]}"
  in_use="${in_use_of[$endpoint]}"
  fragmented="$(percent "$size" "$in_use")"
  role=follower
  if [[ "$endpoint" == "$leader_endpoint" ]]; then role=leader; fi
  if ((size < DEFRAG_MIN_DB_SIZE_BYTES)); then
    action="skip (smaller than DEFRAG_MIN_DB_SIZE_BYTES ${DEFRAG_MIN_DB_SIZE_BYTES})"
  elif ((fragmented < DEFRAG_THRESHOLD_PERCENT)); then
    action="skip (below DEFRAG_THRESHOLD_PERCENT ${DEFRAG_THRESHOLD_PERCENT}%)"
  else
    action=defragment
    selected+=("$endpoint")
    reclaimable=$((reclaimable + size - in_use))
  fi
  log "member ${endpoint} id $(hex "${id_of[$endpoint]}"): size ${size}, in use ${in_use}, fragmented ${fragmented}%, ${role}: ${action}"
done

if ((${#selected[@]} == 0)); then
  log "no member is above the threshold and the size floor; nothing to do"
  printf '%s: defragmented 0 of %d members, freed 0 bytes (nothing to do)\n' "$SCRIPT_NAME" "$member_count"
  exit 0
fi

if [[ "$DEFRAG_DRY_RUN" == true ]]; then
  order=()
  for endpoint in "${selected[@]}"; do
    if [[ "$endpoint" != "$leader_endpoint" ]]; then order+=("$endpoint"); fi
  done
  for endpoint in "${selected[@]}"; do
    if [[ "$endpoint" == "$leader_endpoint" ]]; then order+=("$endpoint (leader, last)"); fi
  done
  log "dry run: would defragment, in this order: ${order[*]}"
  printf '%s: dry run: would defragment %d of %d members, about %d bytes reclaimable; nothing was changed\n' \
    "$SCRIPT_NAME" "${#selected[@]}" "$member_count" "$reclaimable"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# 3.-4. One member at a time, the current leader last.

done_count=0
freed=0
remaining=("${selected[@]}")
last_leader="$leader_endpoint"

# member_and_cluster_healthy ENDPOINT: that member, then every member, is healthy; else the
# unhealthy ones are in unhealthy_list.
member_and_cluster_healthy() {
  if ! healthy "$1"; then
    unhealthy_list="$1 (${health_error})"
    return 1
  fi
  all_healthy
}

# wait_healthy ENDPOINT: that member, then every member, healthy again within
# DEFRAG_HEALTH_WAIT_SECONDS (checked every 2 s).
wait_healthy() {
  local timeout_seconds="$DEFRAG_HEALTH_WAIT_SECONDS" POLL_SECONDS=2
  wait_for member_and_cluster_healthy "$1"
}

for ((step = 1; step <= ${#selected[@]}; step++)); do
  if ((step > 1 && DEFRAG_PAUSE_SECONDS > 0)); then
    log "pausing ${DEFRAG_PAUSE_SECONDS}s before the next member"
    sleep "$DEFRAG_PAUSE_SECONDS"
  fi
  if ! all_healthy; then
    die "stopping before the next member (left: ${remaining[*]}): not every member is healthy: ${unhealthy_list}; defragmented ${done_count} of ${member_count} members, freed ${freed} bytes"
  fi
  # The next member: the first remaining one that is not the leader now; the leader only when
  # it is the last one left.
  read_all
  [[ -n "$leader_endpoint" ]] ||
    die "stopping: the leader, member $(hex "$leader_id"), is not one of ETCD_ENDPOINTS (was a member added?); defragmented ${done_count} of ${member_count} members, freed ${freed} bytes"
  if [[ "$leader_endpoint" != "$last_leader" ]]; then
    log "the leader moved from ${last_leader} to ${leader_endpoint}"
    last_leader="$leader_endpoint"
  fi
  target=""
  for endpoint in "${remaining[@]}"; do
    if [[ "$endpoint" != "$leader_endpoint" ]]; then
      target="$endpoint"
      break
    fi
  done
  target="${target:-${remaining[0]}}"
  role=follower
  if [[ "$target" == "$leader_endpoint" ]]; then role=leader; fi


  before="${size_of[$target]}"
  log "defragmenting ${target} (${role}, member $(hex "${id_of[$target]}"), ${step} of ${#selected[@]}), size ${before}"
  started=$SECONDS
  if ! out="$(ctl "$DEFRAG_TIMEOUT" "$target" defrag 2>&1)"; then
    die "defrag of ${target} failed: $(last_line "$out"); stopping, the remaining members were not touched (it may still be defragmenting: check it before running again); defragmented ${done_count} of ${member_count} members, freed ${freed} bytes"
  fi
  if ! wait_healthy "$target"; then
    die "after the defrag of ${target} the cluster was not healthy within ${DEFRAG_HEALTH_WAIT_SECONDS}s: ${unhealthy_list}; stopping; defragmented $((done_count + 1)) of ${member_count} members"
  fi
  read_status "$target" || die "cannot read the status of ${target} after its defrag: ${status_error}"
  after="$st_size"
  size_of["$target"]="$after"
  if ((before > after)); then freed=$((freed + before - after)); fi
  done_count=$((done_count + 1))
  log "defragmented ${target}: ${before} -> ${after} bytes (in use ${st_in_use}) in $((SECONDS - started))s; cluster healthy"

  next=()
  for endpoint in "${remaining[@]}"; do
    if [[ "$endpoint" != "$target" ]]; then next+=("$endpoint"); fi
  done
  remaining=("${next[@]}")
done

log "done: defragmented ${done_count} of ${member_count} members, freed ${freed} bytes"
printf '%s: defragmented %d of %d members, freed %d bytes\n' "$SCRIPT_NAME" "$done_count" "$member_count" "$freed"
