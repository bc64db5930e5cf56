#!/usr/bin/env bash
# Installs kube-vip's static pod manifest on THIS control-plane node, or replaces it with a new
# one, behind the control plane's health gates. Pulumi stages the rendered manifest outside the
# kubelet's manifest directory and runs this on one node at a time, so a changed manifest (a
# kube-vip upgrade, a changed setting) restarts kube-vip node after node, never on every node
# at once, and the next node waits until some kube-vip leads again.
set -euo pipefail

readonly SCRIPT_NAME="install-kube-vip"
# The sha256 of the manifest whose install passed every check, written last.
readonly VERIFIED=/var/lib/kubernetes-node/kube-vip-manifest
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'EOF'
Usage: install-kube-vip.sh --manifest PATH --node-name NAME --lease NAME
                           [--timeout SECONDS] [--root DIR]

Makes PATH this node's kube-vip static pod (/etc/kubernetes/manifests/kube-vip.yaml). Run as
root on the node, on one control-plane node at a time.

Options:
  --manifest PATH    Absolute path of the rendered kube-vip manifest on this node, outside
                     /etc/kubernetes/manifests (the kubelet would run it at once). Required.
  --node-name NAME   Kubernetes node name of this node: its etcd pod is etcd-NAME. Required.
  --lease NAME       The Lease in kube-system that elects the kube-vip leader (kube-vip's
                     vip_leasename). Required.
  --timeout SECONDS  Longest wait for each gate and for the container to stop or start
                     (default 300).
  --root DIR         Prefix for every file this script reads or writes (default: $ROOT, else
                     empty, meaning /). For tests; commands still act on this host.
  -h, --help         Show this help and exit.

Environment:
  ROOT          Same as --root; the flag wins.
  POLL_SECONDS  Pause between checks (default 5; may be fractional, e.g. 0.1).

Gate: `kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /readyz` answers ok, then
`etcdctl endpoint health --cluster` passes in etcd-NAME (through kubectl exec), each waited for.
Steps:
  1. a kube-vip manifest that an interrupted run left in /etc/kubernetes/manifests-parked/ is
     put back;
  2. gate (nothing changes on a node while the control plane is unhealthy);
  3. when the installed manifest is PATH byte for byte and /var/lib/kubernetes-node/kube-vip-manifest
     holds its sha256 (written last, once every check below passed): nothing to change, exit 0;
     when it is PATH but not verified (an earlier run failed at step 6): go to step 6;
  4. when a kube-vip manifest is installed: move it to /etc/kubernetes/manifests-parked/ and
     wait until `crictl ps --name ^kube-vip$ -q` lists no container, so the old and the new
     kube-vip never run together;
  5. write PATH to /etc/kubernetes/manifests/kube-vip.yaml (0600, atomically) and wait until
     crictl lists a kube-vip container. If none runs, the previous manifest is put back (or the
     new one removed) and the script fails;
  6. gate, then wait until the Lease kube-system/LEASE has a holder renewed after step 5:
     some node's kube-vip leads, so the reserved IP has a holder again (a restarted leader
     lets its lease lapse, vip_leaseduration seconds, before another node takes over);
  7. record the fingerprint of admin.conf's client certificate in
     /var/lib/kubernetes-node/kube-vip-admin-conf: kube-vip started with it, so a later
     certificate renewal or upgrade restarts it only when admin.conf changes again; then the
     manifest's sha256 in /var/lib/kubernetes-node/kube-vip-manifest.
On any failure the script exits 1 naming the node and the step, and the manifest it parked is
put back (also on SIGHUP, SIGINT, SIGTERM). Re-running it is safe, and it never passes before
step 6 has: a failed Lease check fails every re-run until some kube-vip leads again, so the
next node is not touched. kubectl and crictl output
goes to /var/log/hcloud-control-plane/install-kube-vip.log (0600).

Exit status: 0 installed (or already installed), 1 a step failed or timed out, 2 usage error.
EOF
}

manifest_source=""
node_name=""
lease_name=""
admin_conf=""
timeout_seconds="300"
ROOT="${ROOT:-}"
POLL_SECONDS="${POLL_SECONDS:-5}"

parse_args() {
  parse_flags --manifest=manifest_source --node-name=node_name --lease=lease_name \
    --timeout=timeout_seconds --root=ROOT -- "$@"

  [[ "$manifest_source" == /* ]] || usage_error "--manifest must be an absolute path, got '${manifest_source}'"
  [[ "$manifest_source" != /etc/kubernetes/manifests/* ]] ||
    usage_error "--manifest must be outside /etc/kubernetes/manifests, where the kubelet runs it at once"
  is_dns_name "$node_name" || usage_error "--node-name must be a node name (lowercase DNS name), got '${node_name}'"
  is_dns_name "$lease_name" || usage_error "--lease must be a Lease name (lowercase DNS name), got '${lease_name}'"
  check_timeout
  check_poll_seconds
  check_root_dir
}

cleanup_on_exit cleanup_static_pods

# gate STEP: /readyz, then etcd's cluster health (lib.sh); exits 1 naming the node and STEP.
gate() { wait_for_control_plane "$admin_conf" "$node_name" node_failed "$1"; }

main() {
  parse_args "$@"
  require_root
  local source="${ROOT}${manifest_source}" installed started fingerprint digest
  local verified="${ROOT}${VERIFIED}"
  installed="$(static_pod_manifest kube-vip)"
  admin_conf="${ROOT}/etc/kubernetes/admin.conf"
  [[ -f "$source" ]] || die "${node_name}: ${source} not found: the manifest is staged there before this runs"
  [[ -f "$admin_conf" ]] || die "${node_name}: ${admin_conf} not found: run this on a control-plane node that has joined"
  open_log --node-name "$node_name" --manifest "$manifest_source"

  unpark_static_pod kube-vip || node_failed "could not put kube-vip's parked manifest back"
  gate "before installing kube-vip"
  digest="$(sha256sum <"$source")"
  digest="sha256:${digest%% *}"
  fingerprint="$(admin_conf_fingerprint "$admin_conf")" || node_failed "cannot read ${admin_conf}"
  if [[ -f "$installed" ]] && cmp -s -- "$source" "$installed"; then
    if [[ -f "$verified" && "$(<"$verified")" == "$digest" ]]; then
      log "${node_name}: kube-vip already runs this manifest; nothing to change"
      exit 0
    fi
    # In place but never verified: an earlier run failed after the install (the Lease step).
    # Its checks run again, so that a kube-vip that cannot lead never passes on a re-run.
    log "${node_name}: kube-vip runs this manifest, but an earlier run did not verify it; checking it again"
    printf -v started '%(%s)T' -1
  else
    replace_static_pod kube-vip "$source" node_failed
    printf -v started '%(%s)T' -1
  fi
  gate "after installing kube-vip"
  wait_for kube_vip_lease_renewed_since "$admin_conf" "$lease_name" "$started" ||
    node_failed "after installing kube-vip: no kube-vip renewed the Lease kube-system/${lease_name} within ${timeout_seconds}s (kubectl -n kube-system get lease ${lease_name}); see ${log_file}. The new manifest stays in place and a re-run checks it again"
  record_kube_vip_admin_conf "$fingerprint"
  install -d -m 0755 "${verified%/*}"
  write_file 0644 "$verified" <<<"$digest"
  log "${node_name}: kube-vip installed; the Lease ${lease_name} has a leader"
}

main "$@"
