#!/usr/bin/env bash
# Manages the bootstrap token worker nodes join with (the stack output workerJoin), on a
# control-plane node. `create` replaces the token with the given id and prints it; `delete`
# removes it. Printing the token is this script's purpose; Pulumi keeps its stdout secret.
set -euo pipefail
umask 077
# Bash's regular expressions follow the locale; C makes [a-z] mean exactly a to z.
export LC_ALL=C

readonly SCRIPT_NAME="worker-join-token"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'EOF'
Usage: worker-join-token.sh create --id ID --ttl-hours N [--timeout SECONDS] [--root DIR]
       worker-join-token.sh delete --id ID [--timeout SECONDS] [--root DIR]

create: when token ID exists (its Secret kube-system/bootstrap-token-ID, read through
        admin.conf) and has more than an hour left, keeps it and prints it: a re-run (another
        member, a changed connection) does not rotate the secret. Otherwise deletes the token ID
        if it exists, creates ID.<16 random characters> for worker nodes (groups
        system:bootstrappers:kubeadm:default-node-token, usages signing,authentication,
        lifetime N hours). Prints on stdout exactly two lines:
          WORKER_JOIN_TOKEN=<id>.<secret>
          WORKER_JOIN_EXPIRES=<UTC time, ISO 8601>
delete: deletes the bootstrap token ID; a token that is already gone is fine.

ID is the token's public id, [a-z0-9]{6}; the program derives it from the rotation setting,
so a rotation creates a new id and deletes the old one. Run as root on a control-plane node
(it needs /etc/kubernetes/admin.conf). kubeadm's diagnostics go to
/var/log/hcloud-control-plane/worker-join-token.log (0600); the token is never logged.

Options:
  --timeout SECONDS  Longest time each kubeadm call may take (default 120).
  --root DIR         Prefix for every file this script reads or writes (default: $ROOT, else
                     empty, meaning /). For tests; commands still act on this host.

Exit status: 0 done, 1 a step failed, 2 usage error.
EOF
}

readonly ID_PATTERN='^[a-z0-9]{6}$'
readonly SECRET_PATTERN='^[a-z0-9]{16}$'

mode=""
id=""
ttl_hours=""
timeout_seconds="120"
admin_conf=""
ROOT="${ROOT:-}"

parse_args() {
  [[ $# -ge 1 ]] || usage_error "create or delete is required"
  case "$1" in
    create | delete) mode="$1" ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) usage_error "the first argument must be create or delete, got '$1'" ;;
  esac
  shift
  parse_flags --id=id --ttl-hours=ttl_hours --timeout=timeout_seconds --root=ROOT -- "$@"
  [[ "$id" =~ $ID_PATTERN ]] || usage_error "--id must be 6 characters of [a-z0-9], got '${id}'"
  if [[ "$mode" == create ]]; then
    [[ "$ttl_hours" =~ ^[1-9][0-9]{0,4}$ ]] || usage_error "--ttl-hours must be a whole number of hours from 1, got '${ttl_hours}'"
  fi
  check_timeout
  check_root_dir
}

# delete_token: removes token $id; "not found" counts as done.
delete_token() {
  local output
  if output="$(bounded kubeadm token delete "$id" 2>&1)"; then
    log "deleted bootstrap token ${id}"
    return 0
  fi
  if [[ "$output" == *"not found"* ]]; then
    log "bootstrap token ${id} does not exist"
    return 0
  fi
  printf '%s\n' "$output" >>"$log_file"
  die "kubeadm token delete ${id} failed; see ${log_file}"
}

# existing_token: sets kept_secret and kept_expires to those of token $id when its Secret exists,
# is well formed and has more than an hour left (the Secret's keys are k8s.io/cluster-bootstrap's
# token-secret and expiration, RFC 3339); status 1 when it is missing, expired or malformed. Any
# other kubectl failure stops the script (called outside a subshell, so `die` does). Never logs
# the secret.
kept_secret=""
kept_expires=""
existing_token() {
  local out status=0 secret expiration expires_at
  out="$(bounded kubectl --kubeconfig "$admin_conf" -n kube-system get secret "bootstrap-token-${id}" \
    -o 'jsonpath={.data.token-secret} {.data.expiration}' 2>&1)" || status=$?
  if ((status != 0)); then
    [[ "$out" != *"(NotFound)"* ]] || return 1
    printf '%s\n' "$out" >>"$log_file"
    die "reading Secret kube-system/bootstrap-token-${id} failed; see ${log_file}"
  fi
  local encoded_secret="${out%% *}" encoded_expiration="${out#* }"
  secret="$(printf '%s' "$encoded_secret" | base64 -d 2>/dev/null)" || return 1
  expiration="$(printf '%s' "$encoded_expiration" | base64 -d 2>/dev/null)" || return 1
  [[ "$secret" =~ $SECRET_PATTERN ]] || return 1
  expires_at="$(date -u -d "$expiration" +%s 2>/dev/null)" || return 1
  ((expires_at > $(date -u +%s) + 3600)) || return 1
  kept_secret="$secret"
  kept_expires="$(date -u -d "@${expires_at}" +%Y-%m-%dT%H:%M:%SZ)"
}

main() {
  parse_args "$@"
  require_root
  admin_conf="${ROOT}/etc/kubernetes/admin.conf"
  [[ -f "$admin_conf" ]] ||
    die "${admin_conf} not found: run this on a control-plane node that is already in the cluster"
  open_log

  if [[ "$mode" == create ]] && existing_token; then
    log "bootstrap token ${id} exists until ${kept_expires}: kept"
    printf '%s=%s\n' WORKER_JOIN_TOKEN "${id}.${kept_secret}" WORKER_JOIN_EXPIRES "$kept_expires"
    return 0
  fi
  delete_token
  [[ "$mode" == create ]] || return 0

  # The secret half comes from kubeadm's own generator: [a-z0-9]{6}.[a-z0-9]{16}.
  local generated secret expires
  generated="$(bounded kubeadm token generate 2>>"$log_file")" || die "kubeadm token generate failed; see ${log_file}"
  secret="${generated#*.}"
  [[ "$secret" =~ $SECRET_PATTERN ]] || die "kubeadm token generate did not print a bootstrap token"
  expires="$(date -u -d "+${ttl_hours} hours" +%Y-%m-%dT%H:%M:%SZ)"
  bounded kubeadm token create "${id}.${secret}" --ttl "${ttl_hours}h" \
    --description "worker join (hcloud-control-plane), expires ${expires}" \
    --groups system:bootstrappers:kubeadm:default-node-token --usages signing,authentication \
    >/dev/null 2>>"$log_file" || die "kubeadm token create ${id} failed; see ${log_file}"
  log "created bootstrap token ${id}, valid until ${expires}"
  printf '%s=%s\n' WORKER_JOIN_TOKEN "${id}.${secret}" WORKER_JOIN_EXPIRES "$expires"
}

main "$@"
