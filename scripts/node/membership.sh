#!/usr/bin/env bash
# Checks, or removes, the etcd member of a control-plane node N from ANOTHER member S. N itself
# need not answer: a dead node cannot run anything, and its member still counts against quorum.
# The member is found by its peer URL, the one identity it has from `member add` on: etcd lists
# a member that never started (the stale learner of a failed join) with an empty name.
# Pulumi runs `check` as the create and `remove` as the delete of each node's membership record,
# on S, one node at a time; operators run `remove` by hand for a dead node. etcdctl runs inside
# S's etcd static pod through `kubectl exec` (lib.sh etcdctl_in_pod), so nothing beyond kubectl
# and admin.conf is needed on the host.
set -euo pipefail
umask 077
# Bash's regular expressions follow the locale; C makes [a-z] mean exactly a to z.
export LC_ALL=C

readonly SCRIPT_NAME="membership"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'EOF'
Usage: membership.sh check|remove --node-name NAME --peer-url URL --this-node SURVIVOR
                     [--timeout SECONDS] [--root DIR]

Checks or removes the etcd member of the control-plane node NAME. Run as root on ANOTHER
control-plane node, SURVIVOR (it needs /etc/kubernetes/admin.conf); NAME may be down or gone.

Actions:
  check   Read-only. The member with peer URL URL exists, has started (its name is NAME) and
          is not a learner: prints its id (hex) and exits 0. Otherwise exits 1 saying what is
          wrong: no such member, unstarted (empty name), named after another node, a learner.
  remove  Takes NAME out of etcd and out of Kubernetes, refusing when that could cost quorum.

Options:
  --node-name NAME       Kubernetes node name of the node whose member this is, e.g.
                         prod-nbg1-cp-3 (kubeadm names each member after its node). Required.
  --peer-url URL         The member's peer URL, http(s)://<IPv4 or DNS name>:<port>, as kubeadm
                         sets it: https://<node private IP>:2380. Required.
  --this-node SURVIVOR   Node name of this node, whose etcd pod (etcd-SURVIVOR) runs etcdctl.
                         Required; must not be NAME.
  --timeout SECONDS      Longest wait for each of: the API server gate, reading the member list,
                         the drain, the member leaving the list, the Node deletion, the final
                         etcd health gate (default 300).
  --root DIR             Prefix for every file this script reads or writes (default: $ROOT,
                         else empty, meaning /). For tests; commands still act on this host.
  -h, --help             Show this help and exit.

Environment:
  ROOT          Same as --root; the flag wins.
  POLL_SECONDS  Pause between retries (default 5; may be fractional, e.g. 0.1).

Every etcdctl call is
  kubectl --kubeconfig /etc/kubernetes/admin.conf -n kube-system exec etcd-SURVIVOR -- etcdctl
    --endpoints ENDPOINTS --cacert /etc/kubernetes/pki/etcd/ca.crt
    --cert /etc/kubernetes/pki/etcd/healthcheck-client.crt
    --key /etc/kubernetes/pki/etcd/healthcheck-client.key ...
with ENDPOINTS https://127.0.0.1:2379 (SURVIVOR's own member) unless said otherwise.

Steps of remove:
  1. refuse when SURVIVOR is NAME: the removal must run on a member that stays;
  2. gate: /readyz answers ok (kubectl get --raw /readyz);
  3. member list -w simple; the member whose peer URLs include URL, learners and unstarted
     members included. None: the member is gone (a re-run); delete the Node NAME if it still
     exists (unless another member is named NAME: then that Node belongs to it), exit 0;
  4. refuse, changing nothing, when the member has started under another name than NAME, when
     it is the only member, or when any OTHER member fails `endpoint health` on its own client
     URLs (one bounded attempt each; an unstarted member has none): after the removal quorum
     would depend on that member;
  5. the Node NAME: Ready: kubectl drain NAME --ignore-daemonsets --delete-emptydir-data
     --timeout=<timeout>s, and a failed drain stops here (NAME stays cordoned, the member is
     not removed); NotReady: the same drain, best effort (a failure is a warning); no Node:
     a warning, nothing to drain;
  6. member remove <id>; wait until the member list no longer shows it;
  7. kubectl delete node NAME --ignore-not-found, retried until the timeout;
  8. gate: endpoint health --cluster passes in etcd-SURVIVOR (the remaining members).
What was done is printed on stdout. The load balancer target of NAME's server goes with the
server (Pulumi); an operator removing a dead node takes it out by hand.
kubectl and etcdctl output goes to /var/log/hcloud-control-plane/membership.log (0600).

Exit status: 0 checked / removed or already gone, 1 check failed, refused or a step failed,
2 usage error.
EOF
}

action=""
node_name=""
peer_url=""
this_node=""
timeout_seconds="300"
ROOT="${ROOT:-}"
POLL_SECONDS="${POLL_SECONDS:-5}"

parse_args() {
  case "${1:-}" in
    check | remove)
      action="$1"
      shift
      ;;
  esac
  parse_flags --node-name=node_name --peer-url=peer_url --this-node=this_node --timeout=timeout_seconds \
    --root=ROOT -- "$@"

  [[ -n "$action" ]] || usage_error "the first argument must be the action: check or remove"
  is_dns_name "$node_name" || usage_error "--node-name must be a lowercase DNS name, got '${node_name}'"
  is_dns_name "$this_node" || usage_error "--this-node must be a lowercase DNS name, got '${this_node}'"
  local host=""
  if [[ "$peer_url" =~ ^https?://([^/:]+):([0-9]{1,5})$ ]]; then host="${BASH_REMATCH[1]}"; fi
  # An empty host is neither.
  is_ipv4 "$host" || is_dns_name "$host" ||
    usage_error "--peer-url must be http(s)://<IPv4 address or DNS name>:<port>, got '${peer_url}'"
  check_timeout
  check_poll_seconds
  check_root_dir
}

admin_conf=""
local_endpoint="https://127.0.0.1:2379"

# ---------------------------------------------------------------------------------------------
# The member list, `etcdctl member list -w simple`: one member a line, "ID, STATUS, NAME, PEER
# ADDRS, CLIENT ADDRS, IS LEARNER", the fields joined by ", ", the URLs within a field by ","
# (etcd-io/etcd etcdctl/ctlv3/command/printer.go makeMemberListTable, printer_simple.go
# MemberList). ID is hex; STATUS is "unstarted" exactly when NAME is empty (a member added but
# never started: it has no name and no client URLs yet); IS LEARNER is true or false.

member_list=""
declare -a m_id=() m_status=() m_name=() m_peers=() m_clients=() m_learner=()

# read_member_list: member_list from etcd-SURVIVOR (a wait_for check; errors to the log).
read_member_list() {
  member_list="$(etcdctl_in_pod "$admin_conf" "$this_node" "$local_endpoint" member list -w simple 2>>"$log_file")"
}

# parse_member_list: fills the m_* arrays from member_list; exits 1 on a line it does not know,
# so nothing is ever removed on a list this script misread.
parse_member_list() {
  local line
  local -a fields
  m_id=() m_status=() m_name=() m_peers=() m_clients=() m_learner=()
  while IFS= read -r line; do
    [[ -n "$line" ]] || continue
    IFS=$'\x1f' read -r -a fields <<<"${line//, /$'\x1f'}"
    [[ ${#fields[@]} -eq 6 && "${fields[0]}" =~ ^[0-9a-f]+$ && "${fields[1]}" =~ ^(started|unstarted)$ &&
      "${fields[5]}" =~ ^(true|false)$ ]] ||
      die "unexpected line in the output of etcdctl member list: ${line}"
    m_id+=("${fields[0]}") m_status+=("${fields[1]}") m_name+=("${fields[2]}")
    m_peers+=("${fields[3]}") m_clients+=("${fields[4]}") m_learner+=("${fields[5]}")
  done <<<"$member_list"
}

# fetch_members: reads (retried until the timeout) and parses the member list.
fetch_members() {
  wait_for read_member_list ||
    die "could not read the etcd member list in etcd-${this_node} within ${timeout_seconds}s; see ${log_file}"
  printf '%s\n' "$member_list" >>"$log_file"
  parse_member_list
}

# with_peer_url: prints the indexes of the members whose peer URLs include peer_url.
with_peer_url() {
  local i
  for i in "${!m_id[@]}"; do
    if [[ ",${m_peers[i]}," == *",${peer_url},"* ]]; then printf '%s\n' "$i"; fi
  done
}

# describe_member I: "<name or (unstarted)> (id <id>, peer URLs <urls>[, learner])".
describe_member() {
  local i="$1" learner=""
  if [[ "${m_learner[i]}" == true ]]; then learner=", learner"; fi
  printf '%s (id %s, peer URLs %s%s)' "${m_name[i]:-(unstarted)}" "${m_id[i]}" "${m_peers[i]}" "$learner"
}

# all_members: every member, described, comma-separated ("none" for an empty list).
all_members() {
  local i separator=""
  if ((${#m_id[@]} == 0)); then
    printf 'none'
    return
  fi
  for i in "${!m_id[@]}"; do
    printf '%s%s' "$separator" "$(describe_member "$i")"
    separator=", "
  done
}

# find_target: sets target to the index of the member with peer_url, or "" when there is none;
# exits 1 when etcd lists more than one (etcd refuses to add a peer URL in use: etcd-io/etcd
# server/etcdserver/api/membership/cluster.go ValidateConfigurationChange, ErrPeerURLexists).
target=""
find_target() {
  local -a found
  mapfile -t found < <(with_peer_url)
  target=""
  ((${#found[@]} <= 1)) ||
    die "${#found[@]} etcd members have the peer URL ${peer_url}: $(all_members); resolve by hand"
  if ((${#found[@]} == 1)); then target="${found[0]}"; fi
}

# ---------------------------------------------------------------------------------------------
# check

run_check() {
  fetch_members
  find_target
  [[ -n "$target" ]] ||
    die "${node_name}: no etcd member has the peer URL ${peer_url} (members: $(all_members))"
  local id="${m_id[target]}"
  [[ -n "${m_name[target]}" ]] ||
    die "${node_name}: the etcd member ${id} with peer URL ${peer_url} has not started (its name is empty: added, but its etcd never joined); remove it with: membership.sh remove --node-name ${node_name} --peer-url ${peer_url} --this-node ${this_node}"
  [[ "${m_name[target]}" == "$node_name" ]] ||
    die "${node_name}: the etcd member ${id} with peer URL ${peer_url} is named ${m_name[target]}, not ${node_name}"
  [[ "${m_learner[target]}" == false ]] ||
    die "${node_name}: the etcd member ${id} is a learner, not a voting member (a join that stopped before its promotion)"
  log "${node_name} is a started, voting etcd member (id ${id}, peer URL ${peer_url})"
  printf '%s\n' "$id"
}

# ---------------------------------------------------------------------------------------------
# remove

# member_healthy CLIENT_URLS: one `endpoint health` attempt against one member's client URLs
# (comma-separated). etcdctl's own dial (2 s) and command (5 s) timeouts bound the check; the
# 30 s limit only guards against a kubectl exec that hangs.
member_healthy() {
  local attempt_seconds=30
  if ((timeout_seconds < attempt_seconds)); then attempt_seconds="$timeout_seconds"; fi
  etcdctl_in_pod "$admin_conf" "$this_node" "$1" endpoint health >>"$log_file" 2>&1
}

# node_state: prints the Node NAME as "<name> <Ready status>" (True, False, Unknown, or nothing
# without a Ready condition), or nothing when there is no such Node (--ignore-not-found: kubectl
# get prints nothing and exits 0, k8s.io/kubectl pkg/cmd/get/get.go). A wait_for check.
node_line=""
read_node_state() {
  node_line="$(bounded kubectl --kubeconfig "$admin_conf" get node "$node_name" --ignore-not-found \
    -o 'jsonpath={.metadata.name} {.status.conditions[?(@.type=="Ready")].status}' 2>>"$log_file")"
}

node_deleted() {
  bounded kubectl --kubeconfig "$admin_conf" delete node "$node_name" --ignore-not-found >>"$log_file" 2>&1
}

# member_gone ID: the member list no longer shows ID nor a member with peer_url.
member_gone() {
  read_member_list || return 1
  parse_member_list
  find_target
  [[ -z "$target" && " ${m_id[*]} " != *" $1 "* ]]
}

# drain_node: step 5 of remove. Sets drained to what was done, for the summary.
drained=""
drain_node() {
  wait_for read_node_state ||
    die "could not read the Node ${node_name} within ${timeout_seconds}s; nothing was changed; see ${log_file}"
  local name ready
  read -r name ready <<<"$node_line" || true
  if [[ -z "$name" ]]; then
    log "warning: there is no Node ${node_name}: nothing to drain"
    drained="no Node ${node_name} to drain"
    return
  fi
  local -a drain=(timeout --kill-after=5 $((timeout_seconds + 30)) kubectl --kubeconfig "$admin_conf" drain
    "$node_name" --ignore-daemonsets --delete-emptydir-data --timeout="${timeout_seconds}s")
  if [[ "$ready" == True ]]; then
    log "draining ${node_name}"
    "${drain[@]}" >>"$log_file" 2>&1 ||
      die "kubectl drain ${node_name} failed; its etcd member is not removed and the node stays cordoned (kubectl uncordon ${node_name} to undo); see ${log_file}"
    drained="drained ${node_name}"
    return
  fi
  log "warning: the Node ${node_name} is not Ready (Ready=${ready:-none}): draining it, best effort"
  if "${drain[@]}" >>"$log_file" 2>&1; then
    drained="drained ${node_name} (it was not Ready)"
  else
    log "warning: kubectl drain ${node_name} failed (it is not Ready); going on; see ${log_file}"
    drained="could not drain ${node_name} (it was not Ready)"
  fi
}

run_remove() {
  [[ "$this_node" != "$node_name" ]] ||
    die "refusing to remove ${node_name} through its own etcd pod: run this on another member (--this-node)"

  log "checking that the API server is ready"
  wait_for apiserver_ready "$admin_conf" ||
    die "the API server did not report ready within ${timeout_seconds}s (kubectl get --raw /readyz); nothing was changed; see ${log_file}"
  fetch_members
  find_target

  if [[ -z "$target" ]]; then
    log "no etcd member has the peer URL ${peer_url} (members: $(all_members))"
    local i
    for i in "${!m_id[@]}"; do
      if [[ "${m_name[i]}" == "$node_name" ]]; then
        log "warning: the etcd member $(describe_member "$i") is named ${node_name}: the Node ${node_name} belongs to it and is left alone"
        printf 'no etcd member with peer URL %s; the Node %s belongs to the member %s and is left alone\n' \
          "$peer_url" "$node_name" "${m_id[i]}"
        return 0
      fi
    done
    wait_for node_deleted ||
      die "could not delete the Node ${node_name} within ${timeout_seconds}s; see ${log_file}"
    printf 'no etcd member with peer URL %s (already removed); the Node %s is gone\n' "$peer_url" "$node_name"
    return 0
  fi

  local id="${m_id[target]}" name="${m_name[target]}"
  [[ -z "$name" || "$name" == "$node_name" ]] ||
    die "refusing to remove the etcd member ${id} with peer URL ${peer_url}: it is named ${name}, not ${node_name}; nothing was changed"
  ((${#m_id[@]} > 1)) ||
    die "refusing to remove ${node_name}: it is the only etcd member ($(describe_member "$target")); nothing was changed"

  local i remaining=$((${#m_id[@]} - 1)) unhealthy=""
  for i in "${!m_id[@]}"; do
    [[ "$i" != "$target" ]] || continue
    if [[ -z "${m_clients[i]}" ]]; then
      unhealthy+="${unhealthy:+; }$(describe_member "$i") has not started (no client URL)"
    elif ! member_healthy "${m_clients[i]}"; then
      unhealthy+="${unhealthy:+; }$(describe_member "$i") failed endpoint health on ${m_clients[i]}"
    fi
  done
  [[ -z "$unhealthy" ]] ||
    die "refusing to remove ${node_name}: the etcd member ${unhealthy}; quorum after the removal would depend on it. Nothing was changed: bring it back, or remove it first; see ${log_file}"
  log "the ${remaining} other etcd members are healthy"

  drain_node

  log "removing the etcd member $(describe_member "$target")"
  etcdctl_in_pod "$admin_conf" "$this_node" "$local_endpoint" member remove "$id" >>"$log_file" 2>&1 ||
    die "etcdctl member remove ${id} failed; a re-run checks the member list again; see ${log_file}"
  wait_for member_gone "$id" ||
    die "the etcd member list still shows ${id} ${timeout_seconds}s after member remove; see ${log_file}"

  log "deleting the Node ${node_name}"
  wait_for node_deleted ||
    die "the etcd member ${id} is removed, but the Node ${node_name} could not be deleted within ${timeout_seconds}s: run 'kubectl delete node ${node_name}' by hand; see ${log_file}"

  wait_for etcd_cluster_healthy "$admin_conf" "$this_node" ||
    die "the etcd member ${id} is removed and the Node ${node_name} deleted, but endpoint health --cluster did not pass within ${timeout_seconds}s; see ${log_file}"
  printf 'removed the etcd member %s (%s, peer URL %s); %s; deleted the Node %s; etcd endpoint health --cluster passes on the %s remaining members\n' \
    "$id" "${name:-unstarted}" "$peer_url" "$drained" "$node_name" "$remaining"
}

main() {
  parse_args "$@"
  require_root
  admin_conf="${ROOT}/etc/kubernetes/admin.conf"
  [[ -f "$admin_conf" ]] || die "${admin_conf} not found: run this on a control-plane node"
  open_log "$action" --node-name "$node_name" --peer-url "$peer_url" --this-node "$this_node"
  case "$action" in
    check) run_check ;;
    remove) run_remove ;;
  esac
}

main "$@"
