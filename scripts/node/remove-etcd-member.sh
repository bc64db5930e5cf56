#!/usr/bin/env bash
# Removes the etcd member of a DEAD control-plane node, from a surviving control-plane node. This
# is the operator's step when a node cannot leave by itself (leave-cluster.sh needs the node).
# etcdctl runs inside the survivor's etcd static pod through `kubectl exec`, so nothing beyond
# kubectl and admin.conf is needed on the host (crictl exec would need the container id and
# would bypass the API server's audit log).
set -euo pipefail
umask 077
# Bash's regular expressions follow the locale; C makes [a-z] mean exactly a to z.
export LC_ALL=C

readonly SCRIPT_NAME="remove-etcd-member"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'EOF'
Usage: remove-etcd-member.sh --member NAME [--node-name SURVIVOR] [--force] [--timeout SECONDS]
                             [--root DIR]

Removes the etcd member NAME of a dead control-plane node. Run as root on a SURVIVING
control-plane node (it needs /etc/kubernetes/admin.conf).

Options:
  --member NAME          etcd member name of the dead node: its Kubernetes node name, e.g.
                         prod-nbg1-cp-3 (kubeadm names each member after its node). Required.
  --node-name SURVIVOR   Node name of the surviving node whose etcd pod (etcd-SURVIVOR) runs
                         etcdctl (default: the output of `hostname`).
  --force                Remove the member even when its endpoint reports healthy.
  --timeout SECONDS      Longest time each etcdctl call may take (default 60).
  --root DIR             Prefix for every file this script reads or writes (default: $ROOT,
                         else empty, meaning /). For tests; commands still act on this host.
  -h, --help             Show this help and exit.

Environment:
  ROOT  Same as --root; the flag wins.

Every etcdctl call is
  kubectl --kubeconfig /etc/kubernetes/admin.conf -n kube-system exec etcd-SURVIVOR -- etcdctl
    --endpoints https://127.0.0.1:2379 --cacert /etc/kubernetes/pki/etcd/ca.crt
    --cert /etc/kubernetes/pki/etcd/healthcheck-client.crt
    --key /etc/kubernetes/pki/etcd/healthcheck-client.key ...
Steps:
  1. refuse when NAME is this host (`hostname`) or SURVIVOR: a node never removes its own member;
  2. member list -w simple; when NAME is not listed, there is nothing to do (exit 0);
  3. unless --force: endpoint health against NAME's client URLs; a healthy member is not dead,
     so refuse (take a live node out with leave-cluster.sh on that node instead);
  4. member remove <id>.
Then delete the Node object (kubectl delete node NAME) and take the server out of the load
balancer before a replacement joins.
etcdctl output goes to /var/log/hcloud-control-plane/remove-etcd-member.log (0600).

Exit status: 0 removed or not a member, 1 refused or a step failed, 2 usage error.
EOF
}

member=""
node_name=""
force=false
timeout_seconds="60"
ROOT="${ROOT:-}"

parse_args() {
  parse_flags --member=member --node-name=node_name --timeout=timeout_seconds --root=ROOT \
    --force=force=true -- "$@"

  is_dns_name "$member" || usage_error "--member must be a node name (lowercase DNS name), got '${member}'"
  [[ -z "$node_name" ]] || is_dns_name "$node_name" ||
    usage_error "--node-name must be a lowercase DNS name, got '${node_name}'"
  check_timeout
  check_root_dir
}

main() {
  parse_args "$@"
  require_root
  local admin_conf="${ROOT}/etc/kubernetes/admin.conf"
  [[ -f "$admin_conf" ]] || die "${admin_conf} not found: run this on a surviving control-plane node"

  local this_host
  this_host="$(hostname)"
  if [[ -z "$node_name" ]]; then node_name="$this_host"; fi
  [[ "$member" != "$this_host" ]] ||
    die "refusing to remove ${member}: it is the member of this node; run this on a surviving node"
  [[ "$member" != "$node_name" ]] ||
    die "refusing to remove ${member}: it is the member of the survivor whose etcd pod would run etcdctl"
  open_log --member "$member"

  # `member list -w simple`: "<id hex>, <status>, <name>, <peer URLs>, <client URLs>, <is learner>",
  # fields separated by ", ", URLs within a field by ",".
  local list line id client_urls=""
  local -a fields ids=() names=()
  list="$(etcdctl_in_pod "$admin_conf" "$node_name" https://127.0.0.1:2379 member list -w simple 2>>"$log_file")" ||
    die "etcdctl member list failed in etcd-${node_name}; see ${log_file}"
  printf '%s\n' "$list" >>"$log_file"
  while IFS= read -r line; do
    [[ -n "$line" ]] || continue
    IFS=$'\x1f' read -r -a fields <<<"${line//, /$'\x1f'}"
    [[ ${#fields[@]} -eq 6 && "${fields[0]}" =~ ^[0-9a-f]+$ ]] ||
      die "unexpected line in etcdctl member list output: ${line}"
    names+=("${fields[2]:-<unstarted>}")
    if [[ "${fields[2]}" == "$member" ]]; then
      ids+=("${fields[0]}")
      client_urls="${fields[4]}"
    fi
  done <<<"$list"

  if [[ ${#ids[@]} -eq 0 ]]; then
    log "${member} is not an etcd member (members: ${names[*]:-none}); nothing to do"
    exit 0
  fi
  [[ ${#ids[@]} -eq 1 ]] || die "${#ids[@]} etcd members are named ${member} (ids ${ids[*]}); remove by id with etcdctl"
  id="${ids[0]}"

  if "$force"; then
    log "warning: --force: not checking whether ${member} is still healthy"
  elif [[ -n "$client_urls" ]] &&
    etcdctl_in_pod "$admin_conf" "$node_name" "$client_urls" endpoint health >>"$log_file" 2>&1; then
    die "refusing to remove ${member}: its endpoint ${client_urls} is healthy, so the node is not dead; run leave-cluster.sh on it (or pass --force)"
  fi

  log "removing etcd member ${member} (id ${id})"
  etcdctl_in_pod "$admin_conf" "$node_name" https://127.0.0.1:2379 member remove "$id" >>"$log_file" 2>&1 ||
    die "etcdctl member remove ${id} failed; see ${log_file}"
  log "removed ${member}; next: kubectl delete node ${member}, and take its server out of the load balancer"
}

main "$@"
