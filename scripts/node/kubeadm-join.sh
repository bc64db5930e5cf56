#!/usr/bin/env bash
# Joins this node to the cluster as a control-plane node with `kubeadm join --config`, once, then
# gates on the API server and on etcd health, then writes this project's member marker
# (/var/lib/kubernetes-node/member, member.sh) as its last step. kubeadm's own files are no
# proof: kubelet.conf appears before control-plane-join. A node joined before the marker existed
# is adopted when the cluster proves its join completed (member.sh adopt_member). The join
# credentials arrive on stdin (the output of mint-join-credentials.sh, run on a node already in
# the cluster); they are never arguments, environment of other commands, or files other than the
# short-lived rendered configuration.
set -euo pipefail
umask 077
# Bash's regular expressions follow the locale; C makes [a-z] mean exactly a to z.
export LC_ALL=C

readonly SCRIPT_NAME="kubeadm-join"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=member.sh
source "$(dirname "${BASH_SOURCE[0]}")/member.sh"

usage() {
  cat <<'EOF'
Usage: kubeadm-join.sh --config-template PATH [--node-name NAME]
                       [--endpoint-host NAME --endpoint-ip IP] [--timeout SECONDS] [--root DIR]
                       <credentials

Joins this node as a control-plane node unless it has joined, waits until the API server is
ready and the etcd cluster is healthy, then writes the member marker
/var/lib/kubernetes-node/member. Run as root.

Options:
  --config-template PATH  Absolute path of the JoinConfiguration template on this node, with
                          the literal placeholders "${JOIN_TOKEN}", "${JOIN_CA_CERT_HASH}" and
                          "${JOIN_CERTIFICATE_KEY}". Required; every run compares its
                          discovery.bootstrapToken.apiServerEndpoint with the member marker.
  --node-name NAME        Kubernetes node name, for the etcd pod etcd-NAME (default: the
                          output of `hostname`).
  --endpoint-host NAME    Host part of controlPlaneEndpoint. When it is a DNS name, /etc/hosts
                          gets the line "<IP> <NAME>" (any older mention of NAME is removed).
                          An IPv4 address leaves /etc/hosts alone.
  --endpoint-ip IP        IPv4 address for NAME: the load balancer's private IP. Required when
                          --endpoint-host is a DNS name.
  --timeout SECONDS       Longest wait for stdin, and for each gate (default 600).
  --root DIR              Prefix for every file this script reads or writes (default: $ROOT,
                          else empty, meaning /). For tests; commands still act on this host.
  -h, --help              Show this help and exit.

Standard input (only read when kubeadm is to run): exactly these three lines, in any
order, as mint-join-credentials.sh prints them (blank lines are ignored, anything else is
refused and nothing runs):
  JOIN_TOKEN=<[a-z0-9]{6}.[a-z0-9]{16}>
  JOIN_CA_CERT_HASH=sha256:<64 hex>
  JOIN_CERTIFICATE_KEY=<64 hex>
Error messages never show a value.

Environment:
  ROOT          Same as --root; the flag wins.
  POLL_SECONDS  Pause between gate checks (default 5; may be fractional, e.g. 0.1).

Steps:
  1. with a DNS endpoint: the /etc/hosts line (also on a joined node; unchanged when right);
  2. with the member marker: it must record this node name, this endpoint and the cluster CA in
     /etc/kubernetes/pki/ca.crt (else refuse, changing nothing); stdin is not read, go to 6;
  3. adoption: without the marker, with kubeadm's files of a completed join (pki/ca.crt,
     admin.conf, kubelet.conf, the four static pod manifests, /var/lib/kubelet/config.yaml,
     /var/lib/etcd): a node joined before this project wrote the marker, or a join that
     stopped half way. The cluster tells which, read-only through admin.conf, each kubectl
     call bounded by --timeout, its output in the log. Proof that this node's join completed,
     each an effect of kubeadm's last phases: /readyz answers ok; the Node NAME has the label
     node-role.kubernetes.io/control-plane (mark-control-plane, the last step of
     control-plane-join); `etcdctl member list` in etcd-NAME shows NAME started and not a
     learner (etcd-join promotes the learner); `etcdctl endpoint health --cluster` passes.
     All hold: the marker is written ("adopted" in the output), stdin is not read, no kubeadm
     command runs; then 6. One is missing: as below. /readyz not ok within --timeout, a
     kubectl call that fails other than with NotFound, or an unhealthy etcd: the cluster
     cannot be checked, refuse (exit 1, nothing changed, no marker, no reset advice);
     otherwise, without the marker, kubeadm files from an attempt that stopped half way
     (kubernetes/kubernetes cmd/kubeadm/app/cmd/join.go, 1.34: preflight, control-plane-prepare,
     check-etcd, kubelet-start, etcd-join, kubelet-wait-bootstrap, control-plane-join,
     wait-control-plane): with kubelet.conf, the etcd manifest and admin.conf (stopped after
     the kubelet's TLS bootstrap) it is finished with steps 4 and 5 running
     `kubeadm join phase control-plane-join all` (mark-control-plane, idempotent) instead of
     the whole join; anything else is refused, printing the exact `kubeadm reset -f` and
     clean-up commands, and the etcd member removal when the member may have been added;
  4. read and check the credentials, render the template with
     envsubst '${JOIN_TOKEN} ${JOIN_CA_CERT_HASH} ${JOIN_CERTIFICATE_KEY}' (no other `$` is
     touched) into a new 0600 file in /etc/kubernetes/kubeadm/ (0700);
  5. kubeadm join --config <rendered file>, output to the root-only log
     /var/log/hcloud-control-plane/kubeadm-join.log (0600); the rendered file is deleted
     afterwards, also when the join fails or the script is interrupted. kubeadm's own
     timeouts bound the join; this script does not kill it half-way;
  6. gate: `kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /readyz` prints ok;
  7. gate: `etcdctl endpoint health --cluster` in the etcd-NAME static pod (through
     kubectl -n kube-system exec) exits 0, so the next join finds a healthy etcd;
  8. unless adopted in 3, write /var/lib/kubernetes-node/member (role, node name, endpoint,
     the CA's public key hash as in --discovery-token-ca-cert-hash, the kube-apiserver
     version, the time): last.
A failed join, a failed gate or a refusal leaves no marker, so a re-run after a failure in any
kubeadm phase finishes or refuses; see docs/runbooks/member-setup-failed.md.

Exit status: 0 joined, both gates passed and marked, 1 a step failed, a gate timed out, stdin
was refused or the node was refused, 2 usage error.
EOF
}

# The same patterns as joinCredentialPatterns and the same SHELL-FORMAT as joinEnvsubstFormat in
# components/node/kubeadm.ts (a test compares them).
readonly TOKEN_PATTERN='^[a-z0-9]{6}\.[a-z0-9]{16}$'
readonly CA_CERT_HASH_PATTERN='^sha256:[0-9a-f]{64}$'
readonly CERTIFICATE_KEY_PATTERN='^[0-9a-f]{64}$'
# shellcheck disable=SC2016 # envsubst, not the shell, expands these names
readonly ENVSUBST_FORMAT='${JOIN_TOKEN} ${JOIN_CA_CERT_HASH} ${JOIN_CERTIFICATE_KEY}'
readonly MAX_STDIN_LINES=10

config_template=""
node_name=""
endpoint_host=""
endpoint_ip=""
timeout_seconds="600"
ROOT="${ROOT:-}"
POLL_SECONDS="${POLL_SECONDS:-5}"

parse_args() {
  parse_flags --config-template=config_template --node-name=node_name --endpoint-host=endpoint_host \
    --endpoint-ip=endpoint_ip --timeout=timeout_seconds --root=ROOT -- "$@"

  [[ "$config_template" == /* ]] ||
    usage_error "--config-template must be an absolute path, got '${config_template}'"
  check_endpoint "$endpoint_host" "$endpoint_ip"
  check_timeout
  check_poll_seconds
  check_root_dir
  if [[ -z "$node_name" ]]; then node_name="$(hostname)"; fi
  is_dns_name "$node_name" || usage_error "--node-name must be a lowercase DNS name, got '${node_name}'"
}

# Files that must not outlive the script: the rendered configuration (it holds the credentials)
# and a staged /etc/hosts (ensure_hosts_entry). cleanup_on_exit runs cleanup on signals too.
rendered=""
cleanup() {
  if [[ -n "$rendered" ]]; then rm -f -- "$rendered"; fi
  remove_staged
}
cleanup_on_exit cleanup

# Reads the three credentials from stdin into these variables, or exits without running anything.
join_token=""
join_ca_cert_hash=""
join_certificate_key=""
read_credentials() {
  [[ ! -t 0 ]] || die "the join credentials are read from stdin (pipe in mint-join-credentials.sh's output); stdin is a terminal"
  local line name value status number=0 seen=" "
  while true; do
    status=0
    IFS= read -r -t "$timeout_seconds" line || status=$?
    if ((status > 128)); then die "no join credentials on stdin within ${timeout_seconds}s"; fi
    if ((status != 0)) && [[ -z "$line" ]]; then break; fi
    number=$((number + 1))
    ((number <= MAX_STDIN_LINES)) || die "stdin has more than ${MAX_STDIN_LINES} lines; expected three"
    line="${line%$'\r'}"
    if [[ -z "${line//[[:space:]]/}" ]]; then continue; fi
    [[ "$line" == *=* ]] || die "stdin line ${number} is not NAME=value"
    name="${line%%=*}"
    value="${line#*=}"
    case "$name" in
      JOIN_TOKEN | JOIN_CA_CERT_HASH | JOIN_CERTIFICATE_KEY) ;;
      *) die "stdin line ${number} has an unexpected name; only JOIN_TOKEN, JOIN_CA_CERT_HASH and JOIN_CERTIFICATE_KEY are accepted" ;;
    esac
    [[ "$seen" != *" ${name} "* ]] || die "stdin has ${name} more than once"
    seen+="${name} "
    case "$name" in
      JOIN_TOKEN)
        [[ "$value" =~ $TOKEN_PATTERN ]] || die "JOIN_TOKEN on stdin does not match [a-z0-9]{6}.[a-z0-9]{16}"
        join_token="$value"
        ;;
      JOIN_CA_CERT_HASH)
        [[ "$value" =~ $CA_CERT_HASH_PATTERN ]] || die "JOIN_CA_CERT_HASH on stdin does not match sha256:<64 hex>"
        join_ca_cert_hash="$value"
        ;;
      JOIN_CERTIFICATE_KEY)
        [[ "$value" =~ $CERTIFICATE_KEY_PATTERN ]] || die "JOIN_CERTIFICATE_KEY on stdin is not 64 hex characters"
        join_certificate_key="$value"
        ;;
    esac
  done
  for name in JOIN_TOKEN JOIN_CA_CERT_HASH JOIN_CERTIFICATE_KEY; do
    [[ "$seen" == *" ${name} "* ]] || die "stdin has no ${name} line"
  done
}

# Set in main, under ROOT.
admin_conf=""
kubelet_conf=""
state=""

# render_join_config: checks the template, reads the credentials from stdin and renders them
# into `rendered` (0600, deleted by cleanup at the latest).
render_join_config() {
  local template="${ROOT}${config_template}" placeholder text
  local -a placeholders
  text="$(<"$template")"
  read -r -a placeholders <<<"$ENVSUBST_FORMAT"
  for placeholder in "${placeholders[@]}"; do
    [[ "$text" == *"$placeholder"* ]] || die "--config-template ${config_template} has no ${placeholder}"
  done
  read_credentials

  local dir="${ROOT}/etc/kubernetes/kubeadm"
  install -d -m 0700 "$dir"
  rendered="$(mktemp --suffix .yaml "${dir}/join.XXXXXX")"
  chmod 0600 "$rendered"
  # The values reach envsubst alone, through its environment; nothing else sees them.
  JOIN_TOKEN="$join_token" JOIN_CA_CERT_HASH="$join_ca_cert_hash" JOIN_CERTIFICATE_KEY="$join_certificate_key" \
    envsubst "$ENVSUBST_FORMAT" <"$template" >"$rendered" ||
    die "envsubst could not render ${config_template}"
}

remove_rendered() {
  rm -f -- "$rendered"
  rendered=""
}

join_cluster() {
  render_join_config
  log "running kubeadm join (output in ${log_file})"
  kubeadm join --config "$rendered" >>"$log_file" 2>&1 ||
    die "kubeadm join failed; see ${log_file}. Run this script again: it finishes what kubeadm left, or prints how to reset. Credentials older than an hour no longer work: mint new ones (${MEMBER_RUNBOOK}, \"Re-run\")"
  remove_rendered
  [[ -f "$kubelet_conf" ]] || die "kubeadm join succeeded but wrote no ${kubelet_conf}"
}

# finish_join: the join stopped after the kubelet's TLS bootstrap (kubelet-wait-bootstrap), so
# the etcd member is in and the node is registered; what kubeadm join does after that is
# control-plane-join, whose only step with ControlPlaneKubeletLocalMode (beta, on by default
# since 1.33) is mark-control-plane: a patch of the Node's labels and taints that a second run
# finds in place (cmd/kubeadm/app/cmd/phases/join/controlplanejoin.go). wait-control-plane only
# waits; the gates below stand for it.
finish_join() {
  log "kubeadm join stopped after the kubelet's TLS bootstrap (found: ${state}); finishing it"
  render_join_config
  log "finishing kubeadm join: kubeadm join phase control-plane-join all"
  kubeadm join phase control-plane-join all --config "$rendered" >>"$log_file" 2>&1 ||
    die "kubeadm join phase control-plane-join all failed; see ${log_file}. Run this script again: it repeats the phase, which is idempotent (${MEMBER_RUNBOOK})"
  remove_rendered
}

main() {
  parse_args "$@"
  require_root
  admin_conf="${ROOT}/etc/kubernetes/admin.conf"
  kubelet_conf="${ROOT}/etc/kubernetes/kubelet.conf"
  # kubeadm's output carries bootstrap tokens: it goes to a root-only file, never the terminal.
  open_log

  if [[ -n "$endpoint_host" ]] && ! is_ipv4 "$endpoint_host"; then
    ensure_hosts_entry "$endpoint_host" "$endpoint_ip"
  fi

  local template="${ROOT}${config_template}" endpoint
  [[ -f "$template" ]] || die "--config-template ${config_template}: no such file"
  endpoint="$(yaml_value "$template" discovery bootstrapToken apiServerEndpoint)" ||
    die "--config-template ${config_template} has no discovery.bootstrapToken.apiServerEndpoint"

  if [[ -f "$(member_marker_path)" ]]; then
    check_member_marker "$node_name" "$endpoint"
    log "already a member (${member[role]} completed ${member[completed]}); stdin not read, checking the gates only"
  else
    state="$(kubeadm_state)"
    # A member set up before the marker existed: adopted when the cluster proves its join
    # completed; stdin is not read.
    adopt_member join "$node_name" "$endpoint"
    if "$adopted"; then
      log "adopted as a joined member; stdin not read, checking the gates only"
    elif [[ -z "$state" ]]; then
      join_cluster
    elif "$etcd_member_not_voting"; then
      # The member is a learner, unstarted or gone: control-plane-join cannot fix that.
      refuse_half_done join "$node_name" etcd-member
    elif has_state /etc/kubernetes/kubelet.conf && has_state /etc/kubernetes/manifests/etcd.yaml &&
      has_state /etc/kubernetes/admin.conf; then
      finish_join
    elif [[ -e "${ROOT}/var/lib/etcd" ]] || has_state /etc/kubernetes/manifests/etcd.yaml; then
      # etcd-join creates the data directory, adds the member, then writes the manifest.
      refuse_half_done join "$node_name" etcd-member
    else
      refuse_half_done join "$node_name"
    fi
  fi

  [[ -f "$admin_conf" ]] || die "${admin_conf} not found: is this a control-plane node?"
  log "waiting up to ${timeout_seconds}s for the API server to report ready"
  wait_for apiserver_ready "$admin_conf" ||
    die "the API server did not report ready within ${timeout_seconds}s (kubectl get --raw /readyz); see ${log_file}"
  log "waiting up to ${timeout_seconds}s for a healthy etcd cluster (etcd-${node_name})"
  wait_for etcd_cluster_healthy "$admin_conf" "$node_name" ||
    die "etcd endpoint health --cluster did not pass within ${timeout_seconds}s; see ${log_file}"
  if [[ ! -f "$(member_marker_path)" ]]; then write_member_marker join "$node_name" "$endpoint"; fi
  log "joined ${node_name}; the API server is ready and every etcd member is healthy"
}

main "$@"
