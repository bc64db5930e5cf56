#!/usr/bin/env bash
# Makes this control-plane node a member of the cluster, deciding at run time whether it
# initializes the cluster or joins it. Every control-plane node runs this one script with the
# same kinds of input; none has a fixed role. It reuses the membership scripts beside it as child
# scripts, never their logic: kubeadm-init.sh and kubeadm-join.sh (each keeps its own member
# marker, half-done handling and gates) and mint-join-credentials.sh (run over SSH on a healthy
# member, for every join attempt, so a retry days later still gets working credentials).
set -euo pipefail
umask 077
# Bash's regular expressions follow the locale; C makes [a-z] mean exactly a to z.
export LC_ALL=C

readonly SCRIPT_NAME="kubeadm-member"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=member.sh
source "$(dirname "${BASH_SOURCE[0]}")/member.sh"

usage() {
  cat <<'EOF'
Usage: kubeadm-member.sh --node-name NAME --init-config PATH --join-config-template PATH
                         --peers IP[,IP...] --endpoint-url URL [--cluster-ca sha256:HEX]
                         [--restore-from KEY]
                         [--endpoint-host NAME --endpoint-ip IP] [--timeout SECONDS]
                         [--root DIR]  <ssh-private-key

Makes this node a control-plane member: initializes the cluster when no member answers, joins
it through a healthy member otherwise, and on a member only repeats the gates. Prints one
outcome line on stdout. Run as root.

Options:
  --node-name NAME        Kubernetes node name of this node; the nodeRegistration.name of
                          both kubeadm files. Required.
  --init-config PATH      Absolute path of the kubeadm InitConfiguration on this node, for
                          kubeadm-init.sh --config. Required.
  --join-config-template PATH
                          Absolute path of the JoinConfiguration template on this node, for
                          kubeadm-join.sh --config-template. Required.
  --peers IP[,IP...]      Private IPv4 addresses of the other control-plane nodes, in node
                          order; "" for a cluster of one node. Required.
  --endpoint-url URL      The API server's /readyz through the load balancer, e.g.
                          https://10.0.1.2:6443/readyz. Required.
  --cluster-ca sha256:HEX The CA public key hash of the cluster the stack recorded (its
                          caCertHash output). With it, this script never initializes a cluster,
                          and refuses credentials minted by a member of another cluster.
  --restore-from KEY      The stack's restoreFrom (latest, or a backup key): when no member
                          answers, this node initializes the cluster only from a backup seeded
                          onto it (etcd-restore.sh seed, its record /var/lib/kubernetes-node/
                          restored); without that record it refuses rather than start an
                          empty cluster.
  --endpoint-host NAME    Host part of controlPlaneEndpoint, passed on to kubeadm-init.sh and
                          kubeadm-join.sh (a DNS name gets an /etc/hosts line).
  --endpoint-ip IP        IPv4 address for NAME: the load balancer's private IP. Required when
                          --endpoint-host is a DNS name.
  --timeout SECONDS       Longest wait for stdin, for each SSH call and for each gate of the
                          child scripts (default 600).
  --root DIR              Prefix for every file this script and its child scripts read or
                          write (default: $ROOT, else empty, meaning /). For tests; commands
                          still act on this host.
  -h, --help              Show this help and exit.

Standard input: the private key (OpenSSH or PEM format) that root on every control-plane node
accepts; read first, before anything else, whatever the outcome. An empty stdin or anything
that is not one private key is refused. It is kept only in a 0600 file in a new 0700
directory under /run (mktemp -d), removed when the script exits, also on failure; it is never
printed or logged.

Environment:
  ROOT          Same as --root; the flag wins.
  POLL_SECONDS  Pause between gate checks of the child scripts (default 5).

Steps:
  1. read and check the key (above);
  2. the member marker /var/lib/kubernetes-node/member (member.sh) exists: run the script of
     the role it records (kubeadm-init.sh --config, or kubeadm-join.sh --config-template, which
     does not read stdin on a member); each checks the marker and repeats its gates. Outcome
     "already a member";
  3. no marker, but the attempt record /var/lib/kubernetes-node/member-attempt (role=init|join,
     node=NAME, started=<time>) of an earlier run that did not finish: the same role again. A
     half-finished init stays an init (kubeadm-init.sh finishes it or refuses with the reset
     commands); a half-finished join stays a join, with credentials minted afresh (4b);
  4. neither: probe. A member answers when, for any peer, https://PEER:6443/readyz gives any
     HTTP status (a degraded API server answers 500) or TCP port 2379 (etcd) on the peer
     accepts a connection, or when --endpoint-url gives any HTTP status; each probe is one
     curl call of at most 5 seconds.
     a. No answer, on a node seeded from a backup (/var/lib/kubernetes-node/restored): initialize
        from it (kubeadm-init.sh takes the restored data); with --cluster-ca the restored CA's
        hash must equal it, else refuse. No answer, with --restore-from and no seed record:
        refuse, exit 1, nothing written. No answer, without --cluster-ca: initialize. The record says init, then
        kubeadm-init.sh --config PATH --refuse-if-serving URL (it checks the endpoint once more
        right before kubeadm init). No answer, with --cluster-ca: refuse, exit 1, nothing
        written: the stack records a cluster, no member answers, and an init would start a
        second, empty one. Bring a member back, or restore the cluster from a backup
        (docs/runbooks/etcd-restore.md).
     b. An answer: join. Join credentials for this attempt are minted on a healthy peer: the
        peers in order, each a candidate when its /readyz gives 200 "ok", through
          ssh -i KEY -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new
            -o UserKnownHostsFile=<temporary directory>/known_hosts -o ConnectTimeout=10
            root@PEER bash /usr/local/lib/hcloud-control-plane/node/mint-join-credentials.sh
            --ttl 15m
        (over the private network; bounded by --timeout). The first success wins; when none
        succeeds, fail naming each peer tried and why. With --cluster-ca the minted
        JOIN_CA_CERT_HASH must equal it, else refuse (that peer serves another cluster). The
        credentials live only in a shell variable and reach kubeadm-join.sh on its stdin.
        Then the record says join, and kubeadm-join.sh runs. Whatever its outcome, the
        credentials are revoked on the same peer afterwards (mint-join-credentials.sh
        --revoke TOKEN_ID: the bootstrap token and Secret kube-system/kubeadm-certs); a failed
        revocation is a warning, the token expires after 15 minutes anyway;
  5. once the child script succeeded, the attempt record is removed (the marker stands for
     the node now), and one line goes to stdout: "NAME: initialized", "NAME: joined through
     PEER", "NAME: already a member (ROLE)" or "NAME: adopted (ROLE)" (a member set up
     before the marker existed, member.sh adopt_member).
A node whose init stopped half way while another node started the cluster stays an init and
is refused by kubeadm-init.sh; to make it join instead, reset it as the refusal says and remove
/var/lib/kubernetes-node/member-attempt. See docs/runbooks/member-setup-failed.md.
This script's own log: /var/log/hcloud-control-plane/kubeadm-member.log (0600); the child
scripts keep their own logs beside it.

Exit status: 0 a member (initialized, joined, adopted or already), 1 a step failed or was
refused (the child script's status when it failed), 2 usage error.
EOF
}

readonly ATTEMPT_RECORD="/var/lib/kubernetes-node/member-attempt"
readonly CLUSTER_CA_PATTERN='^sha256:[0-9a-f]{64}$'
# The same pattern as kubeadm-join.sh and mint-join-credentials.sh (joinCredentialPatterns in
# components/node/kubeadm.ts); here only to take the token's public id for the revocation.
readonly TOKEN_PATTERN='^([a-z0-9]{6})\.[a-z0-9]{16}$'
readonly JOIN_TTL="15m"

node_name=""
init_config=""
join_template=""
peers_list=""
peers_given=false
endpoint_url=""
cluster_ca=""
restore_from=""
endpoint_host=""
endpoint_ip=""
timeout_seconds="600"
ROOT="${ROOT:-}"
POLL_SECONDS="${POLL_SECONDS:-5}"

parse_args() {
  peers_list=$'\n'
  parse_flags --node-name=node_name --init-config=init_config --join-config-template=join_template \
    --peers=peers_list --endpoint-url=endpoint_url --cluster-ca=cluster_ca --restore-from=restore_from \
    --endpoint-host=endpoint_host \
    --endpoint-ip=endpoint_ip --timeout=timeout_seconds --root=ROOT -- "$@"

  is_dns_name "$node_name" || usage_error "--node-name must be a lowercase DNS name, got '${node_name}'"
  [[ "$init_config" == /* ]] || usage_error "--init-config must be an absolute path, got '${init_config}'"
  [[ "$join_template" == /* ]] ||
    usage_error "--join-config-template must be an absolute path, got '${join_template}'"
  # A newline cannot come from a flag value here: it marks --peers as not given.
  if [[ "$peers_list" != $'\n' ]]; then peers_given=true; fi
  "$peers_given" || usage_error "--peers is required (\"\" for a cluster of one node)"
  parse_peers
  [[ "$endpoint_url" =~ ^https://[^[:space:]/]+(/[^[:space:]]*)?$ ]] ||
    usage_error "--endpoint-url must be an https:// URL, got '${endpoint_url}'"
  [[ -z "$cluster_ca" || "$cluster_ca" =~ $CLUSTER_CA_PATTERN ]] ||
    usage_error "--cluster-ca must be sha256:<64 hex>, got '${cluster_ca}'"
  [[ -z "$restore_from" || "$restore_from" == latest || "$restore_from" =~ ^([A-Za-z0-9._-]+/)+etcd/[0-9]{8}T[0-9]{6}Z-r[0-9]+\.db\.zst(\.age)?$ ]] ||
    usage_error "--restore-from must be latest or a backup key (<prefix>/etcd/<UTC stamp>-r<revision>.db.zst[.age], the rule of restoreFrom in components/config/backup.ts), got '${restore_from}'"
  check_endpoint "$endpoint_host" "$endpoint_ip"
  check_timeout
  check_poll_seconds
  check_root_dir
}

# parse_peers: peers_list (comma-separated IPv4 addresses, maybe empty) into the array peers.
declare -a peers=()
parse_peers() {
  local peer
  peers=()
  [[ -n "$peers_list" ]] || return 0
  [[ "$peers_list" != *, && "$peers_list" != ,* && "$peers_list" != *,,* ]] ||
    usage_error "--peers must be IPv4 addresses separated by commas, got '${peers_list}'"
  IFS=, read -r -a peers <<<"$peers_list"
  for peer in "${peers[@]}"; do
    is_ipv4 "$peer" || usage_error "--peers must be IPv4 addresses separated by commas, got '${peer}'"
  done
}

# The temporary directory (the key, known_hosts, the child scripts' output) goes on exit, also
# on failure or a signal (cleanup_on_exit); so does a staged file (lib.sh write_file).
tmp_dir=""
cleanup() {
  if [[ -n "$tmp_dir" ]]; then rm -rf -- "$tmp_dir"; fi
  remove_staged
}
cleanup_on_exit cleanup

script_dir="$(dirname "${BASH_SOURCE[0]}")"
readonly script_dir

# The key from stdin (lib.sh read_ssh_private_key), a 0600 file in tmp_dir.
key_file=""

# ---------------------------------------------------------------------------------------------
# Join credentials, minted and revoked on a peer over SSH.

# ssh_peer PEER COMMAND...: runs COMMAND as root on PEER, bounded by --timeout; ssh's and the
# remote stderr go to the log, stdout to the caller. ssh(1): the status is the remote
# command's, or 255 when ssh itself failed (unreachable, refused, not authorized).
ssh_peer() {
  local peer="$1"
  shift
  bounded ssh -i "$key_file" -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new \
    -o "UserKnownHostsFile=${tmp_dir}/known_hosts" -o ConnectTimeout=10 "root@${peer}" "$@" \
    </dev/null 2>>"$log_file"
}

# ssh_failure STATUS: why an ssh_peer call failed, in words.
ssh_failure() {
  case "$1" in
    124 | 137) printf 'no answer within %ss' "$timeout_seconds" ;;
    255) printf 'ssh failed (status 255: unreachable, refused or not authorized)' ;;
    *) printf 'the remote command failed (status %s)' "$1" ;;
  esac
}

# Set by mint_credentials: the credentials (three KEY=value lines, as mint-join-credentials.sh
# prints them), the peer that minted them, the token's public id and the minted CA hash.
credentials=""
mint_peer=""
token_id=""
minted_ca=""

# parse_credentials: token_id and minted_ca from `credentials`; status 1 when either is missing
# or malformed. kubeadm-join.sh checks all three lines again.
parse_credentials() {
  local line
  token_id="" minted_ca=""
  while IFS= read -r line; do
    case "$line" in
      JOIN_TOKEN=*) if [[ "${line#*=}" =~ $TOKEN_PATTERN ]]; then token_id="${BASH_REMATCH[1]}"; fi ;;
      JOIN_CA_CERT_HASH=*) if [[ "${line#*=}" =~ $CLUSTER_CA_PATTERN ]]; then minted_ca="${line#*=}"; fi ;;
    esac
  done <<<"$credentials"
  [[ -n "$token_id" && -n "$minted_ca" ]]
}

# mint_credentials: fresh credentials for this attempt from the first healthy peer that mints
# them; exits 1 naming every peer tried and why when none does.
mint_credentials() {
  local peer status
  local -a tried=()
  # skip REASON: this peer does not mint; said now, and again in the failure if none does.
  skip() {
    tried+=("${peer}: $1")
    log "not minting on ${peer}: $1"
  }
  for peer in "${peers[@]}"; do
    probe_readyz "https://${peer}:6443/readyz"
    if [[ "$probe_code" == 000 ]]; then
      skip "/readyz gave no HTTP answer"
      continue
    fi
    if [[ "$probe_code" != 200 || "$probe_body" != ok ]]; then
      skip "/readyz gave HTTP ${probe_code}, not 200 ok"
      continue
    fi
    log "minting join credentials on ${peer} (mint-join-credentials.sh --ttl ${JOIN_TTL}, over SSH)"
    status=0
    credentials="$(ssh_peer "$peer" bash "${MEMBER_SCRIPTS_DIR}/mint-join-credentials.sh" --ttl "$JOIN_TTL")" ||
      status=$?
    if ((status != 0)); then
      credentials=""
      skip "$(ssh_failure "$status")"
      continue
    fi
    if ! parse_credentials; then
      credentials=""
      skip "mint-join-credentials.sh printed no valid JOIN_TOKEN and JOIN_CA_CERT_HASH"
      continue
    fi
    mint_peer="$peer"
    return 0
  done
  if ((${#peers[@]} == 0)); then tried+=("(no peers given)"); fi
  log "error: no peer minted join credentials for ${node_name}:"
  local item
  for item in "${tried[@]}"; do log "  ${item}"; done
  log "Bring a healthy control-plane member back (its /readyz gives 200 ok, root reaches it over SSH on"
  log "the private network), then run this script again. See ${MEMBER_RUNBOOK} (ssh output: ${log_file})."
  exit 1
}

# revoke_credentials: deletes this attempt's bootstrap token and Secret kube-system/kubeadm-certs
# on the peer that minted them; a failure is a warning (the token expires after JOIN_TTL).
revoke_credentials() {
  local status=0
  [[ -n "$mint_peer" && -n "$token_id" ]] || return 0
  ssh_peer "$mint_peer" bash "${MEMBER_SCRIPTS_DIR}/mint-join-credentials.sh" --revoke "$token_id" \
    >>"$log_file" || status=$?
  if ((status == 0)); then
    log "revoked the join credentials on ${mint_peer} (bootstrap token ${token_id})"
  else
    log "warning: could not revoke the join credentials on ${mint_peer}: $(ssh_failure "$status"); bootstrap token ${token_id} expires ${JOIN_TTL} after it was minted (see ${log_file})"
  fi
}

# ---------------------------------------------------------------------------------------------
# The attempt record and the child scripts.

attempt_record_path() { printf '%s%s' "$ROOT" "$ATTEMPT_RECORD"; }

# read_attempt_record: sets attempt_role to the role of the attempt record; exits 1 when it is
# unreadable or records another node.
attempt_role=""
read_attempt_record() {
  local record line role="" node=""
  record="$(attempt_record_path)"
  while IFS= read -r line || [[ -n "$line" ]]; do
    case "$line" in
      role=init | role=join) role="${line#role=}" ;;
      node=*) node="${line#node=}" ;;
      started=*) ;;
      *) die "${record}: unreadable line '${line}'; see ${MEMBER_RUNBOOK}" ;;
    esac
  done <"$record"
  [[ -n "$role" ]] || die "${record}: no role=init or role=join line; see ${MEMBER_RUNBOOK}"
  [[ "$node" == "$node_name" ]] ||
    die "${record} records node '${node}', this run is for ${node_name}; see ${MEMBER_RUNBOOK}"
  attempt_role="$role"
}

# write_attempt_record ROLE: this node's attempt at ROLE is under way (written before kubeadm).
write_attempt_record() {
  local record
  record="$(attempt_record_path)"
  install -d -m 0755 "${record%/*}"
  write_file 0644 "$record" < <(
    printf 'role=%s\nnode=%s\n' "$1" "$node_name"
    printf 'started=%(%Y-%m-%dT%H:%M:%S%z)T\n' -1
  )
  log "recorded a ${1} attempt of ${node_name} in ${ATTEMPT_RECORD}"
}

# The arguments every child script gets.
common_args() {
  child_args=(--timeout "$timeout_seconds" --root "$ROOT")
  if [[ -n "$endpoint_host" ]]; then child_args+=(--endpoint-host "$endpoint_host"); fi
  if [[ -n "$endpoint_ip" ]]; then child_args+=(--endpoint-ip "$endpoint_ip"); fi
}
declare -a child_args=()

# run_member_script ROLE: runs kubeadm-init.sh or kubeadm-join.sh (the join with `credentials`
# on stdin; empty on a member, where it does not read stdin). Its stdout and stderr go to this
# script's stderr and to child_output; sets child_status.
child_output=""
child_status=0
run_member_script() {
  local role="$1"
  local -a statuses
  common_args
  child_output="${tmp_dir}/${role}.out"
  : >"$child_output"
  # PIPESTATUS, not pipefail: a join that does not read its stdin may make printf fail with
  # SIGPIPE, which says nothing about the join.
  set +e
  if [[ "$role" == init ]]; then
    bash "${script_dir}/kubeadm-init.sh" --config "$init_config" --refuse-if-serving "$endpoint_url" \
      "${child_args[@]}" </dev/null 2>&1 | tee -a "$child_output" >&2
    statuses=("${PIPESTATUS[@]}")
    child_status="${statuses[0]}"
  else
    # printf is a builtin: the credentials reach kubeadm-join.sh through a pipe only.
    printf '%s\n' "$credentials" |
      bash "${script_dir}/kubeadm-join.sh" --config-template "$join_template" --node-name "$node_name" \
        "${child_args[@]}" 2>&1 | tee -a "$child_output" >&2
    statuses=("${PIPESTATUS[@]}")
    child_status="${statuses[1]}"
  fi
  set -e
}

# config_node FILE FLAG: the nodeRegistration.name of the kubeadm file FILE must be node_name.
check_config_node() {
  local file="${ROOT}$1" flag="$2" name
  [[ -f "$file" ]] || die "${flag} $1: no such file"
  name="$(yaml_value "$file" nodeRegistration name)" || die "${flag} $1 has no nodeRegistration.name"
  [[ "$name" == "$node_name" ]] || die "${flag} $1 is for node ${name}, not --node-name ${node_name}"
}

outcome() { printf '%s: %s\n' "$node_name" "$1"; }

# finish ROLE HOW: after the child script: its failure is this script's; on success the
# attempt record goes and the outcome line is printed.
finish() {
  local role="$1" how="$2"
  if ((child_status != 0)); then
    log "error: kubeadm-${role}.sh failed (status ${child_status}); its messages are above. Run this script again: it takes up the ${role} (${MEMBER_RUNBOOK})"
    exit "$child_status"
  fi
  [[ -f "$(member_marker_path)" ]] || die "kubeadm-${role}.sh succeeded but wrote no ${MEMBER_MARKER}"
  rm -f -- "$(attempt_record_path)"
  if grep -q ": adopted: every proof holds" "$child_output"; then how="adopted (${role})"; fi
  outcome "$how"
}

do_init() {
  write_attempt_record init
  log "initializing the cluster on ${node_name} (kubeadm-init.sh)"
  run_member_script init
  finish init "initialized"
}

do_join() {
  mint_credentials
  if [[ -n "$cluster_ca" && "$minted_ca" != "$cluster_ca" ]]; then
    revoke_credentials
    credentials=""
    die "${mint_peer} serves a cluster whose CA hash is ${minted_ca}, but the stack records ${cluster_ca}: that peer belongs to another cluster; refusing to join it (nothing was changed on this node)"
  fi
  write_attempt_record join
  log "joining ${node_name} through ${mint_peer} (kubeadm-join.sh)"
  run_member_script join
  credentials=""
  revoke_credentials
  finish join "joined through ${mint_peer}"
}

# check_seeded: this node was seeded from a backup (etcd-restore.sh seed) and no member answers:
# it initializes the cluster from it. With --cluster-ca the restored CA must be the one the stack
# records (else the stack's outputs would name another cluster); exits 1 otherwise.
check_seeded() {
  local key ca
  key="$(seed_record_value key)" || key="an unnamed backup"
  if [[ -n "$cluster_ca" ]]; then
    ca="$(ca_public_key_hash)" || die "${SEED_RECORD} records a restore of ${key}, but /etc/kubernetes/pki/ca.crt is missing or unreadable: seed this node again (docs/runbooks/etcd-restore.md)"
    [[ "$ca" == "$cluster_ca" ]] ||
      die "this node was seeded from ${key}, whose cluster CA hash is ${ca}, but the stack records ${cluster_ca}: that backup is another cluster's. Nothing was changed; seed the node from a backup of this cluster (docs/runbooks/etcd-restore.md)"
  fi
  log "no member answers and this node was seeded from ${key}: initializing the cluster from it"
}

main() {
  parse_args "$@"
  require_root
  open_log "$node_name"

  # /run exists on a node (a tmpfs); under --root it may not.
  [[ -d "${ROOT}/run" ]] || install -d -m 0755 "${ROOT}/run"
  tmp_dir="$(mktemp -d "${ROOT}/run/kubeadm-member.XXXXXX")"
  key_file="${tmp_dir}/id"
  read_ssh_private_key "$key_file"

  check_config_node "$init_config" --init-config
  check_config_node "$join_template" --join-config-template

  local role
  if [[ -f "$(member_marker_path)" ]]; then
    read_member_marker
    role="${member[role]}"
    [[ "$role" == init || "$role" == join ]] ||
      die "$(member_marker_path) records role '${role}'; see ${MEMBER_RUNBOOK}"
    log "already a member (${role} completed ${member[completed]}); kubeadm-${role}.sh checks the marker and the gates"
    run_member_script "$role"
    finish "$role" "already a member (${role})"
    return 0
  fi

  if [[ -f "$(attempt_record_path)" ]]; then
    read_attempt_record
    role="$attempt_role"
    log "an earlier ${role} attempt of ${node_name} did not finish (${ATTEMPT_RECORD}): taking it up"
  elif member_answers "$endpoint_url" "${peers[@]}"; then
    log "a member answers: ${answer_from}; joining"
    role="join"
  elif [[ -f "${ROOT}${SEED_RECORD}" ]]; then
    check_seeded
    role="init"
  elif [[ -n "$restore_from" ]]; then
    log "error: restoreFrom is ${restore_from} and no member answers, but this node holds no restored data"
    log "(${SEED_RECORD}): its restore seed did not run here. kubeadm init would start an empty cluster."
    log "Nothing was changed. Run the seed for this node (docs/runbooks/etcd-restore.md, \"Restore into new"
    log "servers\": pulumi up --replace the URN of its restore-seed command), then run this script again."
    exit 1
  elif [[ -n "$cluster_ca" ]]; then
    log "error: the stack records a cluster (CA hash ${cluster_ca}), but no member answers:"
    local item
    for item in "${probed[@]}"; do log "  ${item}"; done
    log "kubeadm init would start a second, empty cluster. Nothing was changed. Bring a member back, or"
    log "restore the cluster from a backup (docs/runbooks/etcd-restore.md), then run this script again."
    exit 1
  else
    log "no member answers (probed the peers' /readyz and etcd port, and ${endpoint_url}); initializing"
    role="init"
  fi

  if [[ "$role" == init ]]; then do_init; else do_join; fi
}

main "$@"
