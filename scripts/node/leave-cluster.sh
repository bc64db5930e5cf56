#!/usr/bin/env bash
# Removes THIS control-plane node from the cluster cleanly: drain, `kubeadm reset -f` (which
# removes the node's own etcd member), delete the Node object: an operator's tool for a node that
# is to be reused. Pulumi removes members through their membership record on another member
# (membership.sh remove), which works for a dead node too; only a join command recorded before
# that, not yet updated, still has this script as its `delete`. A node that has not joined has
# nothing to do.
set -euo pipefail
umask 077
# Bash's regular expressions follow the locale; C makes [a-z] mean exactly a to z.
export LC_ALL=C

readonly SCRIPT_NAME="leave-cluster"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'EOF'
Usage: leave-cluster.sh [--node-name NAME] [--timeout SECONDS] [--skip-etcd-check] [--root DIR]

Takes this control-plane node out of the cluster. Run as root on the node that leaves.
A node without /etc/kubernetes/kubelet.conf has not joined (or has left): exit 0 at once.

Options:
  --node-name NAME   Kubernetes node name of this node (default: the output of `hostname`).
  --timeout SECONDS  Longest wait for each of: the etcd health check, the drain, and the
                     deletion of the Node object (default 300).
  --skip-etcd-check  Leave even when the etcd cluster is not healthy. Only for a node whose own
                     etcd is broken, after checking that the other members keep quorum.
  --root DIR         Prefix for every file this script reads or writes (default: $ROOT, else
                     empty, meaning /). For tests; commands still act on this host.
  -h, --help         Show this help and exit.

Environment:
  ROOT          Same as --root; the flag wins.
  POLL_SECONDS  Pause between retries (default 5; may be fractional, e.g. 0.1).

Steps:
  1. copy /etc/kubernetes/admin.conf to a root-only file in /run/hcloud-control-plane/
     (kubeadm reset deletes the original; the copy is removed on exit, whatever happens);
  2. refuse to go on unless `etcdctl endpoint health --cluster` passes in this node's etcd pod:
     removing a healthy member while another member is down can cost the cluster its quorum
     (remove dead members first, with membership.sh remove on a survivor);
  3. kubectl drain NAME --ignore-daemonsets --delete-emptydir-data --timeout=<timeout>s;
     when it fails the node stays cordoned and nothing else changes;
  4. remove the member marker /var/lib/kubernetes-node/member (kubeadm-init.sh and
     kubeadm-join.sh write it last), then kubeadm reset -f: stops the static pods and removes
     this node's etcd member. Without the marker, a re-run of the init or join script after a
     failed reset checks the cluster again: a node still complete there is adopted, one the
     reset took apart is half-finished;
  5. rm -rf /etc/cni/net.d, as kubeadm reset advises (iptables/IPVS rules are left alone);
  6. kubectl delete node NAME --ignore-not-found, retried until the timeout: the load balancer
     may still send a request to this node's stopped API server for a few seconds.
kubeadm and kubectl output goes to /var/log/hcloud-control-plane/leave-cluster.log (0600).
If step 6 fails, the node has already left etcd and a re-run has nothing to do: delete the
Node object by hand (kubectl delete node NAME).

Exit status: 0 left (or had not joined), 1 a step failed or timed out, 2 usage error.
EOF
}

node_name=""
timeout_seconds="300"
skip_etcd_check=false
ROOT="${ROOT:-}"
POLL_SECONDS="${POLL_SECONDS:-5}"

parse_args() {
  parse_flags --node-name=node_name --timeout=timeout_seconds --root=ROOT \
    --skip-etcd-check=skip_etcd_check=true -- "$@"

  check_timeout
  check_poll_seconds
  check_root_dir
  [[ -z "$node_name" ]] || is_dns_name "$node_name" ||
    usage_error "--node-name must be a lowercase DNS name, got '${node_name}'"
}

# The admin kubeconfig copy is a cluster-admin credential: removed on every exit. The signal
# traps of cleanup_on_exit turn a signal into an exit, so cleanup runs then too.
kubeconfig=""
cleanup() { if [[ -n "$kubeconfig" ]]; then rm -f -- "$kubeconfig"; fi; }
cleanup_on_exit cleanup

node_deleted() {
  bounded kubectl --kubeconfig "$kubeconfig" delete node "$node_name" --ignore-not-found >>"$log_file" 2>&1
}

main() {
  parse_args "$@"
  require_root
  local kubelet_conf="${ROOT}/etc/kubernetes/kubelet.conf"
  local admin_conf="${ROOT}/etc/kubernetes/admin.conf"
  if [[ ! -f "$kubelet_conf" ]]; then
    log "not in a cluster (${kubelet_conf} does not exist); nothing to do"
    exit 0
  fi
  if [[ -z "$node_name" ]]; then node_name="$(hostname)"; fi
  is_dns_name "$node_name" || die "hostname '${node_name}' is not a lowercase DNS name; pass --node-name"
  [[ -f "$admin_conf" ]] ||
    die "${admin_conf} not found: this is not a control-plane node, or it was reset by hand"
  open_log

  local run_dir="${ROOT}/run/hcloud-control-plane"
  install -d -m 0700 "$run_dir"
  kubeconfig="$(mktemp --suffix .conf "${run_dir}/admin.XXXXXX")"
  chmod 0600 "$kubeconfig"
  cat -- "$admin_conf" >"$kubeconfig"

  if "$skip_etcd_check"; then
    log "warning: --skip-etcd-check: not checking etcd health before leaving"
  else
    log "checking that every etcd member is healthy before ${node_name} leaves"
    wait_for etcd_cluster_healthy "$kubeconfig" "$node_name" ||
      die "etcd endpoint health --cluster did not pass within ${timeout_seconds}s; refusing to remove a member from an unhealthy cluster (see ${log_file})"
  fi

  log "draining ${node_name}"
  timeout --kill-after=5 $((timeout_seconds + 30)) \
    kubectl --kubeconfig "$kubeconfig" drain "$node_name" --ignore-daemonsets --delete-emptydir-data \
    --timeout="${timeout_seconds}s" >>"$log_file" 2>&1 ||
    die "kubectl drain ${node_name} failed; the node stays cordoned (kubectl uncordon to undo); see ${log_file}"

  rm -f -- "${ROOT}/var/lib/kubernetes-node/member"
  log "running kubeadm reset -f (output in ${log_file})"
  kubeadm reset -f >>"$log_file" 2>&1 || die "kubeadm reset -f failed; see ${log_file}"
  rm -rf -- "${ROOT}/etc/cni/net.d"

  log "deleting node ${node_name}"
  wait_for node_deleted ||
    die "could not delete node ${node_name} within ${timeout_seconds}s; it has left etcd: run 'kubectl delete node ${node_name}' by hand (see ${log_file})"
  log "${node_name} has left the cluster"
}

main "$@"
