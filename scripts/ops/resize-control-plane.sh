#!/usr/bin/env bash
# Changes the Hetzner server type of a cluster's control-plane servers ONE AT A TIME, each behind
# the /readyz and etcd health gates, so that etcd never loses more than one member. Run from an
# operator's machine before setting the new serverType in the stack config; the program accepts
# the new type once every control-plane server runs it (docs/runbooks/resize-control-plane.md).
# Never prints the API token: no xtrace, and curl reads the Authorization header from its stdin.
set -euo pipefail
umask 077
export LC_ALL=C

readonly SCRIPT_NAME="resize-control-plane"
readonly LOG_TIMESTAMPS=utc
# The project's helper library: lib.sh beside this script (a copy for operators), else in the
# repository (scripts/node/lib.sh).
lib="$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ -f "$lib" ]] || lib="$(dirname "${BASH_SOURCE[0]}")/../node/lib.sh"
# shellcheck source-path=SCRIPTDIR source=../node/lib.sh
source "$lib"

usage() {
  cat <<'EOF'
Usage:
  HCLOUD_TOKEN=... resize-control-plane.sh --cluster NAME --server-type TYPE --kubeconfig FILE
      [--timeout SECONDS] [--drain-timeout SECONDS] [--shutdown-timeout SECONDS]
      [--action-timeout SECONDS] [--log FILE]

For each control-plane server of cluster NAME (the servers labelled cluster=NAME,
role=control-plane, managed-by=pulumi, as the program labels them), in node order (cp-1, cp-2,
...), one at a time; a server that already has TYPE is skipped:
  1. gate before: the API server's /readyz through the kubeconfig's endpoint answers ok, and
     `etcdctl endpoint health --cluster` (kubectl exec in the etcd pod of the node) reports every
     member healthy; otherwise the script stops before touching anything;
  2. kubectl drain the node (daemonsets stay; bounded by --drain-timeout);
  3. Hetzner API: shutdown (ACPI), wait until the server is off (--shutdown-timeout), else
     poweroff (said so in the output); change_type to TYPE with upgrade_disk false (the disk keeps
     its size, so the type can go back down later: a larger disk cannot shrink); poweron;
  4. gate after: the node's kubelet reports Ready, its kube-apiserver pod is Ready (the kubelet
     probes that API server's /readyz), /readyz through the endpoint answers ok, and etcd health
     --cluster reports every member healthy (in the node's etcd pod); then uncordon.
On any failure the script stops and prints the command that resumes: running it again
converges (resized servers are skipped; a server left off or cordoned by a stopped run is
finished first). If change_type fails, the server is powered on again with its old type and
the node uncordoned once the gates pass, before the script stops.

Options:
  --cluster NAME          the stack's clusterName
  --server-type TYPE      the wanted Hetzner server type, e.g. ccx33
  --kubeconfig FILE       an admin kubeconfig whose server is the cluster's endpoint
  --timeout SECONDS       limit of each gate and each wait for a server status (default 600)
  --drain-timeout SECONDS kubectl drain --timeout (default 300)
  --shutdown-timeout SECONDS  how long to wait for an ACPI shutdown before poweroff (default 120)
  --action-timeout SECONDS    limit of each Hetzner action (default 600)
  --log FILE              kubectl's and etcdctl's output (default ./resize-control-plane.log)

Environment:
  HCLOUD_TOKEN     Hetzner Cloud API token of the project (required; never printed)
  HCLOUD_ENDPOINT  API base URL (default https://api.hetzner.cloud/v1)
  POLL_SECONDS     pause between checks of a wait (default 5)
  API_MAX_ATTEMPTS attempts per API request for locked, conflict, rate limit and 5xx (default 8)

Exit status: 0 every server runs TYPE; 1 stopped (the output says why and how to resume);
2 bad arguments or environment.
EOF
}

cluster="" server_type="" kubeconfig="" log_file="./resize-control-plane.log"
timeout_seconds=600 drain_timeout=300 shutdown_timeout=120 action_timeout=600
original_args=("$@")
parse_flags --non-empty --cluster=cluster --server-type=server_type --kubeconfig=kubeconfig \
  --timeout=timeout_seconds --drain-timeout=drain_timeout --shutdown-timeout=shutdown_timeout \
  --action-timeout=action_timeout --log=log_file -- "$@"
[[ -n "$cluster" ]] || usage_error "--cluster is required"
[[ -n "$server_type" ]] || usage_error "--server-type is required"
[[ -n "$kubeconfig" ]] || usage_error "--kubeconfig is required"
[[ "$cluster" =~ ^[a-z]([a-z0-9-]{0,28}[a-z0-9])?$ ]] || usage_error "--cluster '${cluster}' is not a cluster name"
[[ "$server_type" =~ ^[a-z]+[0-9]+[a-z]*$ ]] || usage_error "--server-type '${server_type}' is not a server type name"
[[ -r "$kubeconfig" ]] || usage_error "cannot read the kubeconfig ${kubeconfig}"
check_timeout
for value in "$drain_timeout" "$shutdown_timeout" "$action_timeout"; do
  [[ "$value" =~ ^[1-9][0-9]*$ ]] || usage_error "timeouts are positive whole numbers of seconds, got '${value}'"
done
POLL_SECONDS="${POLL_SECONDS:-5}"
check_poll_seconds
API_MAX_ATTEMPTS="${API_MAX_ATTEMPTS:-8}"
require_int API_MAX_ATTEMPTS 1 100
require_var HCLOUD_TOKEN "the Hetzner Cloud API token"
[[ "$HCLOUD_TOKEN" =~ ^[A-Za-z0-9._~+/=-]+$ ]] || config_error "HCLOUD_TOKEN holds characters an API token does not have"
api_url="${HCLOUD_ENDPOINT:-https://api.hetzner.cloud/v1}"
api_url="${api_url%/}"
require_tools curl jq kubectl timeout

: >>"$log_file"
printf '=== %(%Y-%m-%dT%H:%M:%S%z)T %s\n' -1 "${SCRIPT_NAME} --cluster ${cluster} --server-type ${server_type}" >>"$log_file"
workdir="$(mktemp -d)"
cleanup() { rm -rf -- "$workdir"; }
cleanup_on_exit cleanup

# The command that resumes: this one again (HCLOUD_TOKEN from the environment, never shown).
resume_command() {
  local quoted
  printf -v quoted ' %q' "${original_args[@]}"
  printf 'HCLOUD_TOKEN=... %q%s' "$0" "$quoted"
}
# stop MESSAGE: exits 1 with MESSAGE and the command that resumes.
stop() {
  log "error: $*"
  log "resume with: $(resume_command)"
  log "(a run skips the servers that have ${server_type} already; kubectl's output is in ${log_file})"
  exit 1
}

# ---------------------------------------------------------------------------------------------
# The Hetzner Cloud API (reference: docs.hetzner.cloud, and hcloud-go hcloud/server.go, whose
# ServerClient.Shutdown, Poweroff, Poweron and ChangeType POST the same paths).

# backoff SECONDS for retry N: 1, 2, 4, ... at most 30 (hcloud-go's default shape,
# hcloud/client.go: exponential from 1 s, without the jitter one caller does not need).
backoff() {
  local n="$1" d=1
  while ((n > 1 && d < 30)); do
    d=$((d * 2))
    n=$((n - 1))
  done
  ((d > 30)) && d=30
  printf '%d' "$d"
}

# rate_limit_wait: whole seconds until one request is available again, from the last answer's
# headers (Overview > Rate Limiting: RateLimit-Limit per hour, RateLimit-Remaining, and
# RateLimit-Reset, the UNIX time when the budget is full again; it refills gradually, so one
# request is back after (Reset - now) / (Limit - Remaining) seconds). The API sends no
# Retry-After. Prints nothing when a header is missing.
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
      if (remaining + 0 >= 1 || limit + 0 <= remaining + 0) { print 1; exit }
      wait = left / (limit - remaining); w = int(wait); if (w < wait) w++; if (w < 1) w = 1; if (w > 60) w = 60
      print w
    }' "${workdir}/headers"
}

# error_text: "code: message" of the last error answer (Overview > Errors).
error_text() {
  jq -r '"\(.error.code // "?"): \(.error.message // "?")"' "${workdir}/body" 2>/dev/null || printf 'no error body'
}

# api METHOD PATH [JSON]: the answer's body in ${workdir}/body on a 2xx. Retried with backoff:
# 423 locked (an action runs on the resource: hcloud-go leaves it to callers, terraform-provider-
# hcloud retries it), 409 conflict ("please retry"), 429 rate_limit_exceeded (waiting for the
# budget), 5xx and transport errors; each request bounded by curl --max-time. Any other error
# answer returns 1 with api_error set to "HTTP STATUS code: message".
api_error=""
api() {
  local method="$1" path="$2" body="${3:-}" attempt status curl_exit delay reason
  local -a args=(--silent --show-error --request "$method" --max-time 30 --connect-timeout 10
    --dump-header "${workdir}/headers" --output "${workdir}/body" --write-out '%{http_code}')
  [[ -z "$body" ]] || args+=(--header 'Content-Type: application/json' --data "$body")
  api_error=""
  for ((attempt = 1; ; attempt++)); do
    : >"${workdir}/headers"
    : >"${workdir}/body"
    curl_exit=0
    status="$(printf 'header = "Authorization: Bearer %s"\n' "$HCLOUD_TOKEN" |
      curl --config - "${args[@]}" "${api_url}${path}" 2>"${workdir}/curl-error")" || curl_exit=$?
    delay=""
    if ((curl_exit != 0)); then
      reason="curl exit ${curl_exit}: $(head -n 1 "${workdir}/curl-error")"
    elif [[ "$status" =~ ^2[0-9][0-9]$ ]]; then
      return 0
    elif [[ "$status" == 423 || "$status" == 409 || "$status" =~ ^5[0-9][0-9]$ ]]; then
      reason="HTTP ${status} $(error_text)"
    elif [[ "$status" == 429 ]]; then
      reason="HTTP ${status} $(error_text)"
      delay="$(rate_limit_wait)"
      [[ -z "$delay" ]] || reason+=" (waiting ${delay}s for the rate limit, RateLimit-Reset)"
    else
      api_error="HTTP ${status} $(error_text)"
      log "${method} ${path}: ${api_error}"
      return 1
    fi
    if ((attempt >= API_MAX_ATTEMPTS)); then
      api_error="${reason}; gave up after ${attempt} attempts"
      log "${method} ${path}: ${api_error}"
      return 1
    fi
    [[ -n "$delay" ]] || delay="$(backoff "$attempt")"
    log "${method} ${path}: ${reason}; retry ${attempt}/${API_MAX_ATTEMPTS} in ${delay}s"
    sleep "$delay"
  done
}

# read_server ID: sets status and current_type (Servers > Get a Server: .server.status,
# .server.server_type.name).
read_server() {
  api GET "/servers/$1" || stop "cannot read server $1: ${api_error}"
  status="$(jq -r '.server.status' "${workdir}/body")"
  current_type="$(jq -r '.server.server_type.name' "${workdir}/body")"
}

# server_is ID STATUS: the server's status is STATUS now (for wait_for).
server_is() {
  read_server "$1"
  [[ "$status" == "$2" ]]
}

# action NAME ID PATH [JSON]: POSTs a server action (answer 201 {"action": ...}) and polls
# GET /actions/{id} (Actions > Get an Action) until its status is success or error, at most
# --action-timeout. Returns 1 with action_error set when it ends in error or does not finish.
action_error=""
action() {
  local what="$1" id="$2" path="$3" body="${4:-}" action_id deadline action_status
  action_error=""
  api POST "/servers/${id}/actions/${path}" "$body" || {
    action_error="POST /servers/${id}/actions/${path}: ${api_error}"
    return 1
  }
  action_id="$(jq -r '.action.id // empty' "${workdir}/body")"
  [[ "$action_id" =~ ^[0-9]+$ ]] || {
    action_error="POST /servers/${id}/actions/${path}: no action id in the answer"
    return 1
  }
  log "${what}: action ${action_id} ($(jq -r '.action.command' "${workdir}/body")) started"
  deadline=$((SECONDS + action_timeout))
  while true; do
    action_status="$(jq -r '.action.status' "${workdir}/body")"
    case "$action_status" in
      success)
        log "${what}: action ${action_id} succeeded"
        return 0
        ;;
      error)
        action_error="action ${action_id} ($(jq -r '.action.command' "${workdir}/body")) failed: $(jq -r '"\(.action.error.code): \(.action.error.message)"' "${workdir}/body")"
        return 1
        ;;
      running) ;;
      *)
        action_error="action ${action_id} has status '${action_status}'"
        return 1
        ;;
    esac
    if ((SECONDS >= deadline)); then
      action_error="action ${action_id} still running after ${action_timeout}s"
      return 1
    fi
    sleep "$POLL_SECONDS"
    api GET "/actions/${action_id}" || {
      action_error="GET /actions/${action_id}: ${api_error}"
      return 1
    }
  done
}

# ---------------------------------------------------------------------------------------------
# The cluster, through kubectl with the operator's kubeconfig (lib.sh: apiserver_ready,
# etcd_cluster_healthy, as scripts/ops/check-control-plane.sh checks them).

kube() { bounded kubectl --kubeconfig "$kubeconfig" --request-timeout=30s "$@"; }

# node_ready NODE: the kubelet's Ready condition is True.
node_ready() {
  [[ "$(kube get node "$1" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>>"$log_file")" == True ]]
}
# apiserver_pod_ready NODE: the node's kube-apiserver static pod is Ready: the kubelet probes that
# API server's /readyz (kubeadm's manifest: readinessProbe httpGet /readyz on 6443,
# cmd/kubeadm/app/phases/controlplane/manifests.go).
apiserver_pod_ready() {
  [[ "$(kube -n kube-system get pod "kube-apiserver-$1" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>>"$log_file")" == True ]]
}
# node_cordoned NODE: spec.unschedulable is true (drain and cordon set it; uncordon clears it).
node_cordoned() {
  [[ "$(kube get node "$1" -o 'jsonpath={.spec.unschedulable}' 2>>"$log_file")" == true ]]
}

gate_failed() { stop "$gate_node: $*"; }

# gate_before NODE: the cluster is whole before NODE is touched; one look, no waiting: a cluster
# that is not healthy now is the operator's to look at, not this script's to wait out.
gate_before() {
  local node="$1"
  apiserver_ready "$kubeconfig" ||
    stop "${node}: refused before any change: the API server's /readyz is not ok (kubectl get --raw /readyz; see ${log_file})"
  etcd_cluster_healthy "$kubeconfig" "$node" ||
    stop "${node}: refused before any change: etcdctl endpoint health --cluster (in etcd-${node}) does not report every member healthy; see ${log_file}"
  log "${node}: gate before passed: /readyz ok, every etcd member healthy"
}

# gate_after NODE: waits (bounded) for the node to be back: kubelet Ready, its API server ready,
# /readyz through the endpoint, every etcd member healthy (in the node's own etcd pod).
gate_after() {
  gate_node="$1"
  wait_for node_ready "$1" || gate_failed "the kubelet did not report Ready within ${timeout_seconds}s"
  wait_for apiserver_pod_ready "$1" ||
    gate_failed "kube-apiserver-$1 did not become Ready (its /readyz probe) within ${timeout_seconds}s"
  wait_for_control_plane "$kubeconfig" "$1" gate_failed "gate after"
  log "$1: gate after passed: node Ready, its API server ready, /readyz ok, every etcd member healthy"
}

uncordon() {
  kube uncordon "$1" >>"$log_file" 2>&1 || stop "$1: kubectl uncordon failed; see ${log_file}"
  log "$1: uncordoned"
}

# ---------------------------------------------------------------------------------------------
# One server.

# power_on ID NODE: poweron (Server Actions > Power on a Server) and wait until running.
power_on() {
  action "$2: power on" "$1" poweron || stop "$2: ${action_error}; the server is off"
  wait_for server_is "$1" running || stop "$2: not running ${timeout_seconds}s after power on (status ${status})"
}

# resize ID NODE
resize() {
  local id="$1" node="$2"
  read_server "$id"
  if [[ "$current_type" == "$server_type" && "$status" == running ]]; then
    if node_cordoned "$node"; then
      log "${node}: runs ${server_type} but is cordoned (a stopped run): finishing it"
      gate_after "$node"
      uncordon "$node"
    else
      log "${node}: runs ${server_type} already: skipped"
    fi
    return 0
  fi
  case "$status" in
    running)
      gate_before "$node"
      log "${node}: draining (kubectl drain --ignore-daemonsets --delete-emptydir-data --timeout=${drain_timeout}s)"
      bounded kubectl --kubeconfig "$kubeconfig" drain "$node" --ignore-daemonsets --delete-emptydir-data \
        --timeout="${drain_timeout}s" >>"$log_file" 2>&1 ||
        stop "${node}: kubectl drain did not finish within ${drain_timeout}s; the node is cordoned, nothing else changed; see ${log_file}"
      # Server Actions > Shut down a Server: an ACPI request the OS may ignore; the action can
      # succeed before the server is off, so the server's status is what shows it off.
      action "${node}: shutdown" "$id" shutdown || stop "${node}: ${action_error}"
      local saved="$timeout_seconds"
      timeout_seconds="$shutdown_timeout"
      if ! wait_for server_is "$id" off; then
        timeout_seconds="$saved"
        log "${node}: still ${status} ${shutdown_timeout}s after the ACPI shutdown: powering it off (Server Actions > Power off a Server: like cutting the power)"
        action "${node}: power off" "$id" poweroff || stop "${node}: ${action_error}"
        wait_for server_is "$id" off || stop "${node}: not off ${timeout_seconds}s after power off (status ${status})"
      fi
      timeout_seconds="$saved"
      log "${node}: off"
      ;;
    off) log "${node}: found off (a stopped run): going on from there" ;;
    *) stop "${node}: the server is ${status}; wait until it is running or off" ;;
  esac
  if [[ "$current_type" != "$server_type" ]]; then
    # Server Actions > Change the Type of a Server: only on a stopped server (error
    # server_not_stopped otherwise). upgrade_disk false keeps the disk size, so the server can go
    # back to a smaller type (a disk never shrinks).
    if ! action "${node}: change type ${current_type} -> ${server_type}" "$id" change_type \
      "{\"server_type\":\"${server_type}\",\"upgrade_disk\":false}"; then
      local failure="$action_error"
      log "${node}: change type failed (${failure}); powering it on again with ${current_type}"
      power_on "$id" "$node"
      gate_after "$node"
      uncordon "$node"
      stop "${node}: change type to ${server_type} failed: ${failure}; the node runs ${current_type} again and is uncordoned"
    fi
  fi
  power_on "$id" "$node"
  gate_after "$node"
  uncordon "$node"
  log "${node}: runs ${server_type}"
}

# ---------------------------------------------------------------------------------------------

# The cluster's control-plane servers (Servers > Get all Servers, label_selector; the labels
# components/labels.ts clusterLabels gives them), as "ID NODE-ORDER NAME STATUS" lines in node
# order (the `node` label cp-N; the server name is the Kubernetes node name).
selector="cluster=${cluster},role=control-plane,managed-by=pulumi"
query="${selector//,/%2C}"
api GET "/servers?label_selector=${query//=/%3D}&per_page=50" || stop "cannot list the servers: ${api_error}"
[[ "$(jq -r '.meta.pagination.next_page // empty' "${workdir}/body")" == "" ]] ||
  stop "more than 50 control-plane servers listed for ${selector}; this script reads one page"
mapfile -t servers < <(jq -r '.servers[] | "\(.id) \(.labels.node // "" | ltrimstr("cp-")) \(.name) \(.status)"' \
  "${workdir}/body" | sort -k2,2n)
((${#servers[@]} > 0)) || stop "no server is labelled ${selector}"
not_running=()
for line in "${servers[@]}"; do
  read -r id order name status <<<"$line"
  [[ "$order" =~ ^[0-9]+$ ]] || stop "server ${name} (${id}) has no node label cp-N"
  [[ "$status" == running ]] || not_running+=("${name} (${status})")
done
# One member down is what a stopped run leaves (it is finished first); two would be a lost quorum
# for three members, and not this script's doing.
((${#not_running[@]} <= 1)) || stop "more than one control-plane server is not running: ${not_running[*]}"
log "${#servers[@]} control-plane servers of ${cluster}; wanted type ${server_type}"
ordered=()
for line in "${servers[@]}"; do
  read -r id order name status <<<"$line"
  if [[ "$status" != running ]]; then ordered=("$id $name" "${ordered[@]}"); else ordered+=("$id $name"); fi
done
for line in "${ordered[@]}"; do
  read -r id name <<<"$line"
  resize "$id" "$name"
done
log "done: every control-plane server of ${cluster} runs ${server_type}; set serverType: ${server_type} in the stack config and run pulumi up"
