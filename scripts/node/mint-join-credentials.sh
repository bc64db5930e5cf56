#!/usr/bin/env bash
# Mints fresh credentials for one control-plane join, on a control-plane node that is already in
# the cluster, and prints them as three KEY=value lines: the input kubeadm-join.sh reads on stdin.
# Printing them is this script's purpose; Pulumi keeps its stdout as a secret (logging "none").
set -euo pipefail
umask 077
# Bash's regular expressions follow the locale; C makes [a-z] mean exactly a to z.
export LC_ALL=C

readonly SCRIPT_NAME="mint-join-credentials"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'EOF'
Usage: mint-join-credentials.sh [--ttl DURATION] [--timeout SECONDS] [--root DIR]
       mint-join-credentials.sh --revoke TOKEN_ID [--timeout SECONDS] [--root DIR]

Prints fresh join credentials for a control-plane node, on stdout, as exactly three lines:
  JOIN_TOKEN=<bootstrap token>
  JOIN_CA_CERT_HASH=sha256:<64 hex>
  JOIN_CERTIFICATE_KEY=<64 hex>
Run as root on a control-plane node that has joined (it needs /etc/kubernetes/admin.conf).

Options:
  --ttl DURATION     Lifetime of the bootstrap token, a Go duration such as 1h or 30m
                     (default 1h; 0 would never expire and is refused).
  --revoke TOKEN_ID  Mint nothing: revoke the credentials of a join that is over. Deletes the
                     bootstrap token TOKEN_ID (its public id, [a-z0-9]{6}: the part of
                     JOIN_TOKEN before the dot) with `kubeadm token delete TOKEN_ID`, then
                     Secret kube-system/kubeadm-certs (the certificates step 2 uploaded; a
                     missing Secret is fine). Prints nothing on stdout.
  --timeout SECONDS  Longest time each kubeadm call may take (default 120).
  --root DIR         Prefix for every file this script reads or writes (default: $ROOT, else
                     empty, meaning /). For tests; commands still act on this host.
  -h, --help         Show this help and exit.

Environment:
  ROOT  Same as --root; the flag wins.

Steps:
  1. the cluster's ClusterConfiguration, from ConfigMap kube-system/kubeadm-config (kubeadm
     init writes it, kubeadm upgrade apply keeps its kubernetesVersion current), into a file
     under /etc/kubernetes/tmp (0600, removed on exit). It must name a kubernetesVersion x.y.z:
     without --config, or with a config that has none, kubeadm defaults kubernetesVersion to
     stable-1 and looks it up at https://dl.k8s.io/release/stable-1.txt (up to 10 s, then its
     own version), which a control-plane node has no business doing. The phase takes no
     --kubernetes-version flag;
  2. kubeadm init phase upload-certs --upload-certs --config FILE: re-encrypts the
     control-plane certificates into Secret kube-system/kubeadm-certs (deleted by kubeadm after
     2 hours) under a new key, printed on its last line;
  3. kubeadm token create --ttl DURATION --print-join-command --certificate-key KEY;
  4. the token, CA certificate hash and certificate key are taken from the printed join
     command and checked (token [a-z0-9]{6}.[a-z0-9]{16}, hash sha256:<64 hex>, key 64 hex,
     the key the same as in step 2). Nothing is printed unless all three pass.
kubeadm's and kubectl's diagnostics go to /var/log/hcloud-control-plane/mint-join-credentials.log (0600);
its stdout, which holds the credentials, is never logged.

Every run mints new credentials (that is its purpose, so it has no "already done" state).
Step 2 replaces the key of any earlier run: do not run it while a join that uses an earlier
key is still in progress. Joins are serialized anyway (etcd adds one learner at a time).

Revocation (--revoke): kubeadm stores the uploaded certificates in Secret
kube-system/kubeadm-certs, owned by a separate bootstrap token that lives 2 hours ("Proxy for
managing TTL for the kubeadm-certs secret"), so that the garbage collector deletes the Secret
when that token expires; the next upload-certs creates it again, and a join without it fails
asking for upload-certs (kubernetes/kubernetes cmd/kubeadm/app/phases/copycerts/copycerts.go:
UploadCerts, createShortLivedBootstrapToken, DownloadCerts). Deleting it when the join is over
only ends its 2 hours early. Do not revoke while another join that uses the same key runs.

Exit status: 0 printed (or revoked), 1 a step failed or its output did not check out, 2 usage
error.
EOF
}

# The same patterns as joinCredentialPatterns in components/node/kubeadm.ts (a test compares them).
readonly TOKEN_PATTERN='^[a-z0-9]{6}\.[a-z0-9]{16}$'
readonly CA_CERT_HASH_PATTERN='^sha256:[0-9a-f]{64}$'
readonly CERTIFICATE_KEY_PATTERN='^[0-9a-f]{64}$'

ttl="1h"
revoke_id=""
timeout_seconds="120"
ROOT="${ROOT:-}"

parse_args() {
  parse_flags --ttl=ttl --revoke=revoke_id --timeout=timeout_seconds --root=ROOT -- "$@"

  [[ "$ttl" =~ ^([0-9]+(h|m|s))+$ && "$ttl" =~ [1-9] ]] ||
    usage_error "--ttl must be a non-zero duration such as 1h, 30m or 1h30m, got '${ttl}'"
  [[ -z "$revoke_id" || "$revoke_id" =~ ^[a-z0-9]{6}$ ]] ||
    usage_error "--revoke must be a bootstrap token id ([a-z0-9]{6}); the value is not shown (it may be a whole token)"
  check_timeout
  check_root_dir
}

# revoke ADMIN_CONF: deletes the bootstrap token revoke_id and Secret kube-system/kubeadm-certs.
# `kubeadm token delete` prints `bootstrap token "<id>" deleted` and fails for a token that
# does not exist (cmd/kubeadm/app/cmd/token.go RunDeleteTokens); the output goes to the log.
revoke() {
  bounded kubeadm token delete "$revoke_id" >>"$log_file" 2>&1 ||
    die "kubeadm token delete ${revoke_id} failed (the token may have expired already); see ${log_file}"
  bounded kubectl --kubeconfig "$1" -n kube-system delete secret kubeadm-certs --ignore-not-found \
    >>"$log_file" 2>&1 ||
    die "could not delete Secret kube-system/kubeadm-certs; see ${log_file}"
  log "revoked bootstrap token ${revoke_id} and deleted Secret kube-system/kubeadm-certs"
}

# The cluster's ClusterConfiguration, for kubeadm's --config; removed when the script exits.
cluster_config=""
remove_cluster_config() {
  if [[ -n "$cluster_config" ]]; then rm -f -- "$cluster_config"; fi
}
cleanup_on_exit remove_cluster_config

# write_cluster_config ADMIN_CONF: sets cluster_config to a new file holding the ClusterConfiguration
# document of ConfigMap kube-system/kubeadm-config, checked to name a kubernetesVersion.
write_cluster_config() {
  local tmp_dir="${ROOT}/etc/kubernetes/tmp"
  # kubeadm's own scratch directory (constants.TempDir), root-only.
  install -d -m 0700 "$tmp_dir"
  cluster_config="$(mktemp "${tmp_dir}/mint-join-credentials-cluster-configuration.XXXXXX")"
  bounded kubectl --kubeconfig "$1" -n kube-system get configmap kubeadm-config \
    -o 'jsonpath={.data.ClusterConfiguration}' >"$cluster_config" 2>>"$log_file" ||
    die "cannot read ConfigMap kube-system/kubeadm-config; see ${log_file}"
  grep -qx 'kind: ClusterConfiguration' "$cluster_config" ||
    die "ConfigMap kube-system/kubeadm-config holds no ClusterConfiguration"
  grep -Eqx 'kubernetesVersion: v?[0-9]+\.[0-9]+\.[0-9]+' "$cluster_config" ||
    die "the ClusterConfiguration in ConfigMap kube-system/kubeadm-config names no kubernetesVersion x.y.z; kubeadm would look one up on the internet"
}

main() {
  parse_args "$@"
  require_root
  local admin_conf="${ROOT}/etc/kubernetes/admin.conf"
  [[ -f "$admin_conf" ]] ||
    die "${admin_conf} not found: run this on a control-plane node that is already in the cluster"
  open_log
  if [[ -n "$revoke_id" ]]; then
    revoke "$admin_conf"
    return 0
  fi
  write_cluster_config "$admin_conf"

  local upload_output certificate_key join_command
  # stdout holds the key: captured, never logged. stderr (klog warnings) goes to the log.
  upload_output="$(bounded kubeadm init phase upload-certs --upload-certs --config "$cluster_config" \
    2>>"$log_file")" ||
    die "kubeadm init phase upload-certs --upload-certs failed; see ${log_file}"
  certificate_key="${upload_output##*$'\n'}"
  [[ "$certificate_key" =~ $CERTIFICATE_KEY_PATTERN ]] ||
    die "the last line of kubeadm init phase upload-certs is not a certificate key (64 hex characters)"

  join_command="$(bounded kubeadm token create --ttl "$ttl" --print-join-command \
    --certificate-key "$certificate_key" 2>>"$log_file")" ||
    die "kubeadm token create failed; see ${log_file}"

  # `kubeadm join <endpoint> --token T --discovery-token-ca-cert-hash H --control-plane
  # --certificate-key K`; each flag must appear exactly once. Messages never show a value.
  local -a words
  local i token="" ca_cert_hash="" printed_key="" seen=" "
  read -r -a words <<<"${join_command//$'\n'/ }"
  [[ "${words[0]:-}" == "kubeadm" && "${words[1]:-}" == "join" ]] ||
    die "kubeadm token create did not print a 'kubeadm join' command"
  for ((i = 2; i < ${#words[@]}; i++)); do
    case "${words[i]}" in
      --token | --discovery-token-ca-cert-hash | --certificate-key)
        [[ "$seen" != *" ${words[i]} "* ]] || die "the join command has ${words[i]} more than once"
        seen+="${words[i]} "
        case "${words[i]}" in
          --token) token="${words[i + 1]:-}" ;;
          --discovery-token-ca-cert-hash) ca_cert_hash="${words[i + 1]:-}" ;;
          --certificate-key) printed_key="${words[i + 1]:-}" ;;
        esac
        i=$((i + 1))
        ;;
    esac
  done
  [[ "$token" =~ $TOKEN_PATTERN ]] ||
    die "the join command has no valid --token (expected [a-z0-9]{6}.[a-z0-9]{16})"
  [[ "$ca_cert_hash" =~ $CA_CERT_HASH_PATTERN ]] ||
    die "the join command has no valid --discovery-token-ca-cert-hash (expected sha256:<64 hex>)"
  [[ "$printed_key" =~ $CERTIFICATE_KEY_PATTERN ]] ||
    die "the join command has no valid --certificate-key (expected 64 hex characters)"
  [[ "$printed_key" == "$certificate_key" ]] ||
    die "the join command's --certificate-key differs from the key upload-certs printed"

  printf '%s=%s\n' \
    JOIN_TOKEN "$token" \
    JOIN_CA_CERT_HASH "$ca_cert_hash" \
    JOIN_CERTIFICATE_KEY "$certificate_key"
  log "minted join credentials (token valid for ${ttl}, certificate key for 2h)"
}

main "$@"
