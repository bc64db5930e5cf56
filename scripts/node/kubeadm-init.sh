#!/usr/bin/env bash
# Initializes the first control-plane node with `kubeadm init --config`, once, waits until the
# API server reports ready, then writes this project's member marker
# (/var/lib/kubernetes-node/member, member.sh) as its last step. A node with a matching marker
# is initialized, and a re-run only repeats the readiness gate. kubeadm's own files are no proof:
# `kubeadm init` writes admin.conf in its kubeconfig phase, long before it finishes. A node
# initialized before the marker existed is adopted when the cluster proves its init completed
# (member.sh adopt_member). Files of an init that stopped half way are finished with kubeadm's
# later, idempotent phases, or refused with the exact reset commands.
set -euo pipefail
umask 077
# Bash's regular expressions follow the locale; C makes [a-z] mean exactly a to z.
export LC_ALL=C

readonly SCRIPT_NAME="kubeadm-init"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=member.sh
source "$(dirname "${BASH_SOURCE[0]}")/member.sh"

usage() {
  cat <<'EOF'
Usage: kubeadm-init.sh --config PATH [--endpoint-host NAME --endpoint-ip IP]
                       [--refuse-if-serving URL] [--timeout SECONDS] [--root DIR]

Runs `kubeadm init` on the first control-plane node unless it is initialized, waits for the
API server, then writes the member marker /var/lib/kubernetes-node/member. Run as root.

Options:
  --config PATH         Absolute path of the kubeadm InitConfiguration file on this node.
                        Required; every run compares its nodeRegistration.name and
                        controlPlaneEndpoint with the member marker.
  --endpoint-host NAME  Host part of controlPlaneEndpoint. When it is a DNS name, /etc/hosts
                        gets the line "<IP> <NAME>" (any older mention of NAME is removed), so
                        this node reaches the endpoint before DNS exists. An IPv4 address
                        leaves /etc/hosts alone.
  --endpoint-ip IP      IPv4 address for NAME: the load balancer's private IP. Required when
                        --endpoint-host is a DNS name.
  --refuse-if-serving URL
                        Before kubeadm init, GET URL (the endpoint's /readyz through the load
                        balancer); when an API server answers at all (any HTTP status: a
                        degraded cluster answers 500), a cluster exists without this node, and
                        init would split it in two: refuse. A replaced first node
                        must join instead (docs/runbooks/replace-control-plane-node.md).
  --timeout SECONDS     Longest wait for the API server to report ready (default 600).
  --root DIR            Prefix for every file this script reads or writes (default: $ROOT,
                        else empty, meaning /). For tests; commands still act on this host.
  -h, --help            Show this help and exit.

Environment:
  ROOT          Same as --root; the flag wins.
  POLL_SECONDS  Pause between readiness checks (default 5; may be fractional, e.g. 0.1).

Steps:
  1. with a DNS endpoint: the /etc/hosts line (also on an initialized node, so a changed
     load balancer IP reaches it; unchanged when already right);
  2. with the member marker: it must record this node name, this controlPlaneEndpoint and the
     cluster CA in /etc/kubernetes/pki/ca.crt (else refuse, changing nothing); then only 6;
  3. adoption: without the marker, with kubeadm's files of a completed init (pki/ca.crt,
     admin.conf, kubelet.conf, the four static pod manifests, /var/lib/kubelet/config.yaml,
     /var/lib/etcd): a node initialized before this project wrote the marker, or an init that
     stopped half way. The cluster tells which, read-only through admin.conf, each kubectl call
     bounded by --timeout, its output in the log. Proof that this node's init completed, each
     an effect of kubeadm's last phases: kubelet.conf uses
     /var/lib/kubelet/pki/kubelet-client-current.pem (kubelet-finalize); /readyz answers ok;
     the Node NAME has the label node-role.kubernetes.io/control-plane (mark-control-plane);
     `etcdctl member list` in etcd-NAME shows NAME started and not a learner; ConfigMaps
     kube-system/kubeadm-config (upload-config) and kube-public/cluster-info
     (bootstrap-token); Deployment kube-system/coredns and ConfigMap or DaemonSet
     kube-system/kube-proxy (addon); `etcdctl endpoint health --cluster` passes. All hold:
     the marker is written ("adopted" in the output), no kubeadm command runs; then 6. One is
     missing: 4 or 5 as before. /readyz not ok within --timeout, a kubectl call that fails
     other than with NotFound, or an unhealthy etcd: the cluster cannot be checked, refuse
     (exit 1, nothing changed, no marker, no reset advice);
  4. without the marker and the manifests, on a node seeded from a backup (the record
     /var/lib/kubernetes-node/restored of etcd-restore.sh seed; /var/lib/etcd/member and
     /etc/kubernetes/pki/ca.crt must be there): kubeadm init --config PATH
     --ignore-preflight-errors=DirAvailable--var-lib-etcd, after the --refuse-if-serving check.
     kubeadm keeps the restored CAs and service-account key and starts etcd from the restored
     data, so the old cluster's kubeconfigs and tokens stay valid. Without the marker and
     without kubeadm's static pod manifests or /var/lib/etcd data (a
     fresh node, or an init that stopped in preflight, certs or kubeconfig, whose files kubeadm
     reuses): kubeadm init --config PATH. Its output, which
     contains join commands with a bootstrap token, goes only to the root-only log
     /var/log/hcloud-control-plane/kubeadm-init.log (0600), never to the terminal. kubeadm's
     own timeouts bound it: `timeouts` of the InitConfiguration in PATH (kubeadm.k8s.io/v1beta4;
     ClusterConfiguration has no such field). The configuration this project renders sets none,
     so kubeadm's defaults apply: controlPlaneComponentHealthCheck 4m, kubeletHealthCheck 4m,
     kubernetesAPICall 1m, etcdAPICall 2m. This script does not kill kubeadm half-way, which
     would leave a half-initialized node;
  5. without the marker, with all four static pod manifests and admin.conf (an init that
     stopped after its control-plane phase): finish it. kubeadm init phase kubelet-start when
     /var/lib/kubelet/config.yaml is missing; wait for /readyz as in 6 (not ready in time:
     refuse as below); then, once each, the later phases that change the cluster, all of them
     idempotent: kubeadm init phase upload-config all, mark-control-plane, bootstrap-token,
     kubelet-finalize all, addon all (--config PATH each). upload-certs is not run: without
     --upload-certs it does nothing, and mint-join-credentials.sh uploads the certificates for
     every join. Any other half-finished state (only the etcd manifest, etcd data without
     manifests, ...): refuse, printing the exact `kubeadm reset -f` and clean-up commands;
  6. wait until `kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /readyz` prints ok;
  7. unless adopted in 3, write /var/lib/kubernetes-node/member (role, node name, endpoint,
     the CA's public key hash as in --discovery-token-ca-cert-hash, the kube-apiserver
     version, the time): last.
A failed init, a failed gate or a refusal leaves no marker, so a re-run after a failure in any
kubeadm phase finishes or refuses; see docs/runbooks/member-setup-failed.md.

Exit status: 0 initialized, ready and marked, 1 a step failed, timed out or was refused,
2 usage error.
EOF
}

config=""
endpoint_host=""
endpoint_ip=""
refuse_url=""
timeout_seconds="600"
ROOT="${ROOT:-}"
POLL_SECONDS="${POLL_SECONDS:-5}"

parse_args() {
  parse_flags --config=config --endpoint-host=endpoint_host --endpoint-ip=endpoint_ip \
    --refuse-if-serving=refuse_url --timeout=timeout_seconds --root=ROOT -- "$@"

  [[ "$config" == /* ]] || usage_error "--config must be an absolute path, got '${config}'"
  check_endpoint "$endpoint_host" "$endpoint_ip"
  check_timeout
  check_poll_seconds
  check_root_dir
}

# A half-written /etc/hosts never replaces the real one: ensure_hosts_entry stages it beside the
# real one, then renames it; the EXIT trap removes a staged file left behind.
cleanup_on_exit remove_staged

# kubeadm init's phases after wait-control-plane that change the cluster, in kubeadm's order
# (kubernetes/kubernetes cmd/kubeadm/app/cmd/init.go, initRunner.AppendPhase), as `kubeadm init
# phase` arguments. Each is idempotent: upload-config and the cluster-info/RBAC objects of
# bootstrap-token go through apiclient.CreateOrUpdate (cmd/kubeadm/app/util/apiclient/
# idempotency.go); bootstrap-token's token goes through UpdateOrCreateTokens (phases/
# bootstraptoken/node/token.go; our configuration names no token, so each run adds one random
# token that expires after kubeadm's default 24 h, and nothing uses it); mark-control-plane
# patches labels and taints that a second run finds in place; kubelet-finalize rewrites
# kubelet.conf to the same content; addon creates or updates CoreDNS and kube-proxy.
# upload-certs is left out: without --upload-certs it only prints "Skipping phase"
# (cmd/kubeadm/app/cmd/phases/init/uploadcerts.go), and this init never passes it.
readonly -a FINISH_PHASES=("upload-config all" "mark-control-plane" "bootstrap-token" "kubelet-finalize all" "addon all")
readonly -a CONTROL_PLANE_MANIFESTS=(etcd kube-apiserver kube-controller-manager kube-scheduler)

admin_conf=""
state=""

gate_ready() {
  log "waiting up to ${timeout_seconds}s for the API server to report ready"
  wait_for apiserver_ready "$admin_conf"
}

# finish_init CONFIG NODE: completes an init that stopped after its control-plane phase.
finish_init() {
  local config_file="$1" node="$2" phase
  local -a words
  if ! has_state /var/lib/kubelet/config.yaml; then
    log "kubeadm init stopped before kubelet-start; running kubeadm init phase kubelet-start"
    kubeadm init phase kubelet-start --config "$config_file" >>"$log_file" 2>&1 ||
      refuse_half_done init "$node"
  fi
  if ! gate_ready; then
    log "error: the API server of the half-finished init did not report ready within ${timeout_seconds}s"
    refuse_half_done init "$node"
  fi
  for phase in "${FINISH_PHASES[@]}"; do
    read -r -a words <<<"$phase"
    log "finishing kubeadm init: kubeadm init phase ${phase}"
    kubeadm init phase "${words[@]}" --config "$config_file" >>"$log_file" 2>&1 ||
      die "kubeadm init phase ${phase} failed; see ${log_file}. Run this script again: it repeats the phases, each idempotent (${MEMBER_RUNBOOK})"
  done
}

# refuse_if_serving: with --refuse-if-serving URL, exits 1 when an API server answers there.
refuse_if_serving() {
  [[ -n "$refuse_url" ]] || return 0
  # Any HTTP answer means an API server is there, healthy (200) or not (a failing /readyz is
  # 500, anonymous access off is 401/403); only no answer at all (curl's 000) is none.
  local code
  code="$(curl --silent --insecure --max-time 5 --output /dev/null --write-out '%{http_code}' "$refuse_url" 2>/dev/null)" || true
  if [[ -n "$code" && "$code" != 000 ]]; then
    die "an API server already answers at ${refuse_url} (HTTP ${code}): a cluster exists without this node, and kubeadm init would start a second one. Join this node instead; see docs/runbooks/replace-control-plane-node.md"
  fi
}

main() {
  parse_args "$@"
  require_root
  admin_conf="${ROOT}/etc/kubernetes/admin.conf"
  # kubeadm's output carries bootstrap tokens: it goes to a root-only file, never the terminal.
  open_log

  if [[ -n "$endpoint_host" ]] && ! is_ipv4 "$endpoint_host"; then
    ensure_hosts_entry "$endpoint_host" "$endpoint_ip"
  fi

  local config_file="${ROOT}${config}" node endpoint name manifests=0
  [[ -f "$config_file" ]] || die "--config ${config}: no such file"
  node="$(yaml_value "$config_file" nodeRegistration name)" || die "--config ${config} has no nodeRegistration.name"
  endpoint="$(yaml_value "$config_file" controlPlaneEndpoint)" || die "--config ${config} has no controlPlaneEndpoint"

  if [[ -f "$(member_marker_path)" ]]; then
    check_member_marker "$node" "$endpoint"
    log "already a member (${member[role]} completed ${member[completed]}); checking the API server only"
    gate_ready || die "the API server did not report ready within ${timeout_seconds}s (kubectl get --raw /readyz); see ${log_file}"
    log "the API server is ready"
    return 0
  fi

  state="$(kubeadm_state)"
  for name in "${CONTROL_PLANE_MANIFESTS[@]}"; do
    if has_state "/etc/kubernetes/manifests/${name}.yaml"; then manifests=$((manifests + 1)); fi
  done
  # A member set up before the marker existed: adopted when the cluster proves its init completed.
  adopt_member init "$node" "$endpoint"
  if "$adopted"; then
    log "adopted as an initialized member; checking the API server only"
  elif ((manifests == 0)) && [[ -f "${ROOT}${SEED_RECORD}" ]]; then
    # Seeded from a backup (etcd-restore.sh seed): /var/lib/etcd holds this node alone as the
    # restored cluster's member, /etc/kubernetes/pki the backup's CAs and service-account key.
    # kubeadm init keeps both: its certs phase uses an existing CA ("Using existing ca
    # certificate authority") and sa key, and etcd starts from the data dir; only its preflight
    # check DirAvailable--var-lib-etcd must be told that the data is meant to be there.
    local key
    key="$(seed_record_value key)" || key="an unnamed backup"
    [[ -d "${ROOT}/var/lib/etcd/member" && -f "${ROOT}/etc/kubernetes/pki/ca.crt" ]] ||
      die "${SEED_RECORD} records a restore of ${key}, but /var/lib/etcd/member or /etc/kubernetes/pki/ca.crt is missing (a reset removed them?): seed this node again (docs/runbooks/etcd-restore.md, \"Restore into new servers\")"
    refuse_if_serving
    log "running kubeadm init --config ${config} on the data restored from ${key} (output in ${log_file})"
    kubeadm init --config "$config_file" --ignore-preflight-errors=DirAvailable--var-lib-etcd >>"$log_file" 2>&1 ||
      die "kubeadm init failed; see ${log_file}. Run this script again: it finishes what kubeadm left, or prints how to reset (${MEMBER_RUNBOOK})"
    [[ -f "$admin_conf" ]] || die "kubeadm init succeeded but wrote no ${admin_conf}"
  elif ((manifests == 0)) && ! has_state /var/lib/etcd; then
    if [[ -n "$state" ]]; then
      log "files of an earlier kubeadm init (${state}): kubeadm init reuses its certificates and kubeconfig files"
    fi
    refuse_if_serving
    log "running kubeadm init --config ${config} (output in ${log_file})"
    kubeadm init --config "$config_file" >>"$log_file" 2>&1 ||
      die "kubeadm init failed; see ${log_file}. Run this script again: it finishes what kubeadm left, or prints how to reset (${MEMBER_RUNBOOK})"
    [[ -f "$admin_conf" ]] || die "kubeadm init succeeded but wrote no ${admin_conf}"
  elif "$etcd_member_not_voting"; then
    # The cluster showed this node's etcd member as a learner, unstarted or gone (a reset that
    # removed it, then failed): init's later phases cannot bring a member back.
    refuse_half_done init "$node" etcd-member
  elif ((manifests == ${#CONTROL_PLANE_MANIFESTS[@]})) && has_state /etc/kubernetes/admin.conf; then
    log "kubeadm init stopped half way (found: ${state}); finishing it"
    finish_init "$config_file" "$node"
  else
    refuse_half_done init "$node"
  fi

  gate_ready ||
    die "the API server did not report ready within ${timeout_seconds}s (kubectl get --raw /readyz); see ${log_file}. Run this script again once it is (${MEMBER_RUNBOOK})"
  if ! "$adopted"; then write_member_marker init "$node" "$endpoint"; fi
  log "initialized; the API server is ready"
}

main "$@"
