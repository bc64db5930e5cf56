#!/usr/bin/env bash
# Renews THIS control-plane node's kubeadm certificates (`kubeadm certs renew all`) and restarts
# its static pods one at a time so they load them (kube-vip too: it holds admin.conf in memory),
# gated on the API server's /readyz and etcd's cluster health before the renewal and after every
# restart. Pulumi runs it on one node at a time
# when the setting certificateRenewal changes; the stamp makes a re-run with the same value a
# no-op.
set -euo pipefail
umask 077
# Bash's regular expressions follow the locale; C makes [a-z] mean exactly a to z.
export LC_ALL=C

readonly SCRIPT_NAME="renew-certificates"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly SENTINEL=/var/lib/kubernetes-node/certificates-renewed
readonly COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler etcd)
readonly STAMP_PATTERN='^[A-Za-z0-9._-]{1,63}$'

usage() {
  cat <<'EOF'
Usage: renew-certificates.sh --node-name NAME --stamp STAMP [--timeout SECONDS] [--root DIR]

Renews the kubeadm certificates of this control-plane node and restarts its static pods so they
use them. Run as root on the node, on one control-plane node at a time.

Options:
  --node-name NAME   Kubernetes node name of this node: its etcd pod is etcd-NAME. Required.
  --stamp STAMP      Label of this renewal, chosen by the operator (e.g. the date 2027-05-01):
                     1 to 63 of A-Z a-z 0-9 . _ -. Required. When the sentinel
                     /var/lib/kubernetes-node/certificates-renewed already holds STAMP, the
                     node was renewed with it: nothing is done (exit 0).
  --timeout SECONDS  Longest wait for each gate, each container to stop or start, and for
                     kubeadm certs renew all (default 300).
  --root DIR         Prefix for every file this script reads or writes (default: $ROOT, else
                     empty, meaning /). For tests; commands still act on this host.
  -h, --help         Show this help and exit.

Environment:
  ROOT          Same as --root; the flag wins.
  POLL_SECONDS  Pause between checks (default 5; may be fractional, e.g. 0.1).

Gate: `kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /readyz` answers ok, then
`etcdctl endpoint health --cluster` passes in etcd-NAME (through kubectl exec), each waited for.
Steps:
  1. a manifest that an interrupted run left in /etc/kubernetes/manifests-parked/ is put back;
  2. gate;
  3. kubeadm certs renew all (output to the log): renews every certificate kubeadm manages on
     this node, and the ones embedded in admin.conf, super-admin.conf, controller-manager.conf
     and scheduler.conf (not the CAs, not the kubelet's own client certificate, which the
     kubelet rotates itself). admin.conf is renewed in place and left there;
  4. for kube-apiserver, kube-controller-manager, kube-scheduler, then etcd:
     move /etc/kubernetes/manifests/<name>.yaml to /etc/kubernetes/manifests-parked/, wait until
     `crictl ps --name ^<name>$ -q` lists no container, move the manifest back, wait until it
     lists one, then gate;
  5. kube-vip, the same way, then gate, then wait until some kube-vip renewed the Lease named
     in its manifest (vip_leasename) after the restart: it reads admin.conf only when it starts, and with the
     old client certificate it could not renew its Lease once that expires. Skipped when this
     node has no /etc/kubernetes/manifests/kube-vip.yaml, or when the sentinel
     /var/lib/kubernetes-node/kube-vip-admin-conf shows kube-vip was restarted with this
     admin.conf's client certificate already (it does not, after a renewal); its fingerprint is
     written there after the gate. Nothing else on the node holds a renewed credential: the
     kubelet's kubelet.conf points at the client certificate the kubelet rotates itself, which
     kubeadm does not renew;
  6. write STAMP to the sentinel (atomically).
On any failure the script exits 1 naming the node and the step; a manifest it moved out is put
back first, whatever happens (also on SIGHUP, SIGINT, SIGTERM). The sentinel is not written, so
a re-run with the same STAMP renews and restarts again. kubeadm, kubectl and crictl output goes
to /var/log/hcloud-control-plane/renew-certificates.log (0600).

Exit status: 0 renewed (or already renewed with STAMP), 1 a step failed or timed out, 2 usage
error.
EOF
}

node_name=""
stamp=""
admin_conf=""
timeout_seconds="300"
ROOT="${ROOT:-}"
POLL_SECONDS="${POLL_SECONDS:-5}"

parse_args() {
  parse_flags --node-name=node_name --stamp=stamp --timeout=timeout_seconds --root=ROOT -- "$@"

  is_dns_name "$node_name" || usage_error "--node-name must be a node name (lowercase DNS name), got '${node_name}'"
  [[ "$stamp" =~ $STAMP_PATTERN ]] ||
    usage_error "--stamp must be 1 to 63 of A-Z a-z 0-9 . _ -, got '${stamp}'"
  check_timeout
  check_poll_seconds
  check_root_dir
}

# A manifest restart_static_pod (lib.sh) parked is put back on every exit, signals included.
cleanup_on_exit cleanup_static_pods

# gate STEP: /readyz, then etcd's cluster health (lib.sh); exits 1 naming the node and STEP.
gate() { wait_for_control_plane "$admin_conf" "$node_name" node_failed "$1"; }

# restart NAME: restarts the static pod (restart_static_pod in lib.sh), then gates.
restart() {
  restart_static_pod "$1" node_failed
  gate "after restarting $1"
}

main() {
  parse_args "$@"
  require_root
  local sentinel="${ROOT}${SENTINEL}"
  if [[ -f "$sentinel" && "$(<"$sentinel")" == "$stamp" ]]; then
    log "${node_name}: certificates already renewed with stamp ${stamp}; nothing to do"
    exit 0
  fi
  admin_conf="${ROOT}/etc/kubernetes/admin.conf"
  [[ -f "$admin_conf" ]] || die "${node_name}: ${admin_conf} not found: run this on a control-plane node"
  open_log --node-name "$node_name" --stamp "$stamp"

  local name
  # kube-vip too: an interrupted run may have left its manifest parked.
  for name in "${COMPONENTS[@]}" kube-vip; do unpark_static_pod "$name"; done
  for name in "${COMPONENTS[@]}"; do
    [[ -f "$(static_pod_manifest "$name")" ]] ||
      die "${node_name}: $(static_pod_manifest "$name") not found: not a kubeadm control-plane node with a local etcd"
  done

  log "${node_name}: checking the API server and etcd before renewing"
  gate "before renewing"

  log "${node_name}: running kubeadm certs renew all (output in ${log_file})"
  bounded kubeadm certs renew all >>"$log_file" 2>&1 ||
    die "${node_name}: kubeadm certs renew all failed (no static pod was restarted); see ${log_file}"

  for name in "${COMPONENTS[@]}"; do restart "$name"; done
  restart_kube_vip_if_stale node_failed gate "after restarting kube-vip"

  install -d -m 0755 "${ROOT}/var/lib/kubernetes-node"
  write_file 0644 "$sentinel" <<<"$stamp"
  log "${node_name}: certificates renewed (stamp ${stamp}); every static pod restarted with them"
}

main "$@"
