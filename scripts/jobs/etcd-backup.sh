#!/usr/bin/env bash
# Takes one etcd snapshot, verifies it, compresses and encrypts it, uploads it (and the
# kubeadm PKI) to S3-compatible object storage (Hetzner Object Storage), then applies
# retention. Run by the etcd backup CronJob; configured only through environment variables
# (see --help). Never prints a secret: no xtrace, credentials reach aws only via its
# environment, and etcdctl, age and aws output is kept in the scratch dir and shown only on
# failure (none of them echo keys).
set -euo pipefail
umask 077
export LC_ALL=C

readonly SCRIPT_NAME="etcd-backup"
readonly LOG_TIMESTAMPS=utc
# The project's helper library: beside this script (the job's ConfigMap, the image), else in the
# repository (scripts/node/lib.sh).
lib="$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ -f "$lib" ]] || lib="$(dirname "${BASH_SOURCE[0]}")/../node/lib.sh"
# shellcheck source-path=SCRIPTDIR source=../node/lib.sh
source "$lib"

usage() {
  cat <<'EOF'
Usage: etcd-backup.sh [--help]

Snapshots etcd, verifies the snapshot (snapshot status + a trial restore into scratch),
compresses it with zstd, encrypts it with age, uploads it with a .sha256 sidecar (uploaded
last: the completion marker), backs up the PKI directory the same way, then deletes backups
older than the retention. Configured only through environment variables:

etcd
  ETCD_ENDPOINTS          Required. Comma-separated client URLs, tried in order: the first one
                          that passes `endpoint health` (ETCD_HEALTH_TIMEOUT) is snapshotted; if
                          its snapshot fails the next one is tried.
  ETCD_CACERT             CA bundle of the etcd server certificates. Empty: no --cacert.
  ETCD_CERT               Client certificate (kubeadm: /etc/kubernetes/pki/etcd/healthcheck-client.crt).
  ETCD_KEY                Client key. ETCD_CERT and ETCD_KEY are both set or both empty; all
                          three empty means plain-HTTP etcd.
  ETCD_DIAL_TIMEOUT       etcdctl --dial-timeout (default 3s).
  ETCD_HEALTH_TIMEOUT     Seconds one endpoint health check may take (default 10).
  ETCD_SNAPSHOT_TIMEOUT   Seconds one `snapshot save` may take (default 1800).

Object storage (aws-cli, path-style addressing, --endpoint-url "$S3_ENDPOINT")
  S3_ENDPOINT             Required. e.g. https://fsn1.your-objectstorage.com
  S3_BUCKET               Required. Bucket name.
  S3_PREFIX               Required. Key prefix, e.g. the cluster name; slashes at either end are
                          dropped. Keys written:
                            <prefix>/etcd/<UTC YYYYMMDDTHHMMSSZ>-r<revision>.db.zst.age  (.db.zst unencrypted)
                            <prefix>/etcd/<same>.sha256   "<sha256 hex>  <basename>", uploaded LAST
                            <prefix>/pki/<same stamp>.tar.zst.age and its .sha256
  S3_REGION               Required. e.g. fsn1 (exported as AWS_DEFAULT_REGION).
  AWS_ACCESS_KEY_ID       Required. Never printed.
  AWS_SECRET_ACCESS_KEY   Required. Never printed.
  AWS_CONFIG_FILE         Optional. When unset a scratch config with `s3 = addressing_style = path`
                          is used. Set for aws: AWS_REQUEST_CHECKSUM_CALCULATION=when_required,
                          AWS_RESPONSE_CHECKSUM_VALIDATION=when_required (Hetzner rejects the
                          default CRC checksums), AWS_EC2_METADATA_DISABLED=true.
  S3_UPLOAD_ATTEMPTS      Attempts per upload (default 3).
  S3_RETRY_SECONDS        Pause between attempts, doubled each time (default 5).
  S3_TIMEOUT              Seconds one aws call may take (default 1800).

Encryption
  BACKUP_ENCRYPTION       age (default) or none. none is the explicit opt-out: the snapshot is
                          uploaded as .db.zst in the clear.
  BACKUP_AGE_RECIPIENTS   Required with age: one or more age public keys (age1...), separated by
                          spaces, commas or newlines. Only public keys live in the cluster; the
                          identity (private key) stays with the operators.
  BACKUP_PKI_UNENCRYPTED  What to do with PKI_DIR when BACKUP_ENCRYPTION=none: skip (default;
                          logs a WARNING, the backup has no PKI) or upload (private CA keys in
                          the clear; logs a WARNING).

Retention (runs only after a successful upload; age is the UTC stamp in the key name)
  BACKUP_RETENTION_DAYS   Delete backups (snapshot, sidecar, matching PKI) whose stamp is older
                          than this many days (default 14; 0 = keep only BACKUP_KEEP_LAST).
  BACKUP_KEEP_LAST        Always keep the newest N complete backups, whatever their age
                          (default 4, at least 1). Objects without a sidecar older than the
                          retention are leftovers of failed runs and are deleted too.
  A deleted object goes with every version and delete marker of its key (on a versioned bucket
  a plain delete would only hide it); objects an Object Lock still protects stay, with a WARNING.

Other
  PKI_DIR                 Directory archived next to the snapshot (default /etc/kubernetes/pki);
                          skipped with a WARNING when it does not exist.
  BACKUP_WORK_DIR         Scratch parent directory (default: $TMPDIR or /tmp). A fresh
                          directory is made inside it and removed on exit. Needs about 2.5x the
                          database size.
  BACKUP_ZSTD_LEVEL       zstd level (default 3).

Tools: etcdctl (snapshot save, endpoint health); etcdutl when on PATH for snapshot
status/restore (etcd 3.6 removed them from etcdctl), else etcdctl; zstd, age, aws, jq.

Output: log lines with UTC timestamps on stderr; on success one JSON line on stdout:
  {"key","revision","hash","totalKeys","snapshotBytes","size","sha256","endpoint",
   "encryption","pkiKey","deleted","seconds"}
Exit status: 0 success; 1 any failure (objects uploaded by this run are deleted again, so
nothing looks like a complete backup); 2 configuration error.
EOF
}

no_arguments "$@"

# ---------------------------------------------------------------------------------------------
# Configuration.

require_var ETCD_ENDPOINTS
s3_check_config

ETCD_HEALTH_TIMEOUT="${ETCD_HEALTH_TIMEOUT:-10}"
ETCD_SNAPSHOT_TIMEOUT="${ETCD_SNAPSHOT_TIMEOUT:-1800}"
S3_UPLOAD_ATTEMPTS="${S3_UPLOAD_ATTEMPTS:-3}"
S3_RETRY_SECONDS="${S3_RETRY_SECONDS:-5}"
BACKUP_ENCRYPTION="${BACKUP_ENCRYPTION:-age}"
BACKUP_AGE_RECIPIENTS="${BACKUP_AGE_RECIPIENTS:-}"
BACKUP_PKI_UNENCRYPTED="${BACKUP_PKI_UNENCRYPTED:-skip}"
BACKUP_RETENTION_DAYS="${BACKUP_RETENTION_DAYS:-14}"
BACKUP_KEEP_LAST="${BACKUP_KEEP_LAST:-4}"
PKI_DIR="${PKI_DIR:-/etc/kubernetes/pki}"
BACKUP_ZSTD_LEVEL="${BACKUP_ZSTD_LEVEL:-3}"

require_int ETCD_HEALTH_TIMEOUT 1
require_int ETCD_SNAPSHOT_TIMEOUT 1
require_int S3_UPLOAD_ATTEMPTS 1
require_int S3_RETRY_SECONDS 0
require_int BACKUP_RETENTION_DAYS 0
require_int BACKUP_KEEP_LAST 1
require_int BACKUP_ZSTD_LEVEL 1
etcd_client_config

recipients=()
case "$BACKUP_ENCRYPTION" in
  age)
    require_var BACKUP_AGE_RECIPIENTS
    read -r -a recipients <<<"$(printf '%s' "$BACKUP_AGE_RECIPIENTS" | tr ',\n\r\t' '    ')"
    ((${#recipients[@]} > 0)) || config_error "BACKUP_AGE_RECIPIENTS holds no key"
    for recipient in "${recipients[@]}"; do
      [[ "$recipient" =~ ^age1[02-9ac-hj-np-z]{58}$ ]] ||
        config_error "BACKUP_AGE_RECIPIENTS: '${recipient}' is not an age public key (age1...)"
    done
    suffix=".zst.age"
    ;;
  none) suffix=".zst" ;;
  *) config_error "BACKUP_ENCRYPTION must be 'age' or 'none', got '${BACKUP_ENCRYPTION}'" ;;
esac
case "$BACKUP_PKI_UNENCRYPTED" in
  skip | upload) ;;
  *) config_error "BACKUP_PKI_UNENCRYPTED must be 'skip' or 'upload', got '${BACKUP_PKI_UNENCRYPTED}'" ;;
esac

require_tools etcdctl zstd aws jq sha256sum timeout
if [[ "$BACKUP_ENCRYPTION" == age ]]; then require_tools age; fi
if command -v etcdutl >/dev/null; then snapshot_tool=etcdutl; else snapshot_tool=etcdctl; fi

# ---------------------------------------------------------------------------------------------
# Scratch space and cleanup.

start_seconds=$SECONDS
work_parent="${BACKUP_WORK_DIR:-${TMPDIR:-/tmp}}"
[[ -d "$work_parent" ]] || config_error "BACKUP_WORK_DIR '${work_parent}' is not a directory"
work="$(mktemp -d "${work_parent%/}/etcd-backup.XXXXXX")"
uploaded=()
success=false

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  local status=$? key i
  local -a targets=()
  local -A seen=()
  trap - EXIT
  if ! "$success" && ((${#uploaded[@]} > 0)); then
    # Newest upload first (a sidecar before the object it vouches for), each key once (a key is
    # recorded once per upload attempt).
    for ((i = ${#uploaded[@]} - 1; i >= 0; i--)); do
      key="${uploaded[i]}"
      [[ -z "${seen[$key]:-}" ]] || continue
      seen["$key"]=1
      targets+=("$key")
    done
    log "removing the ${#targets[@]} object(s) this failed run uploaded"
    for key in "${targets[@]}"; do
      if delete_key_all_versions "$key"; then
        log "removed s3://${S3_BUCKET}/${key}"
      else
        log "WARNING: could not remove s3://${S3_BUCKET}/${key}; it has no sidecar, so no restore uses it"
      fi
    done
  fi
  rm -rf -- "$work"
  exit "$status"
}
cleanup_on_exit cleanup

# ---------------------------------------------------------------------------------------------
# aws.

s3_client_setup "$work"

# delete_key_all_versions KEY: deletes the object KEY for good. The stack's bucket is versioned,
# where a plain delete-object only adds a delete marker (the data stays, is billed and can be
# recovered), so every version and delete marker of exactly KEY is deleted by its version id.
# Without real version ids (an unversioned bucket lists none, or only the id "null") it is a
# plain delete-object. When the versions cannot be listed: a WARNING and the plain delete.
# Fails when a delete fails (Object Lock refuses to delete a version under retention).
delete_key_all_versions() {
  local key="$1" listing ids id more real round=0 failed=0
  # Bounded rounds: a listing returns at most 1000 versions (of KEY and of longer keys sharing it
  # as a prefix, which are matched out: only exactly KEY is deleted).
  while ((round < 5)); do
    round=$((round + 1))
    if ! listing="$(s3 s3api list-object-versions --bucket "$S3_BUCKET" --prefix "$key" --max-items 1000 \
      --output json 2>>"$aws_log")" ||
      ! ids="$(jq -r --arg key "$key" '[(.Versions // [])[], (.DeleteMarkers // [])[]]
          | map(select(.Key == $key) | (.VersionId // "null") | tostring) | unique | .[]' <<<"$listing")" ||
      ! more="$(jq -r 'if (.NextToken // "") == "" then "no" else "yes" end' <<<"$listing")"; then
      ((round == 1)) || break
      log "WARNING: could not list the versions of s3://${S3_BUCKET}/${key}; deleting it without a version id (on a versioned bucket its old versions stay)"
      s3 s3api delete-object --bucket "$S3_BUCKET" --key "$key" >>"$aws_log" 2>&1
      return
    fi
    real=0
    while IFS= read -r id; do
      [[ -n "$id" && "$id" != null ]] || continue
      real=$((real + 1))
      # --version-id=ID: an id never reads as an option.
      s3 s3api delete-object --bucket "$S3_BUCKET" --key "$key" --version-id="$id" >>"$aws_log" 2>&1 ||
        failed=1
    done <<<"$ids"
    if ((real == 0 && round == 1)); then
      # Unversioned bucket (or nothing under this key): the plain delete, as always.
      s3 s3api delete-object --bucket "$S3_BUCKET" --key "$key" >>"$aws_log" 2>&1
      return
    fi
    # A "null" version next to real ones predates versioning; it has to be named too.
    if grep -qx null <<<"$ids"; then
      s3 s3api delete-object --bucket "$S3_BUCKET" --key "$key" --version-id=null >>"$aws_log" 2>&1 ||
        failed=1
    fi
    if ((failed || real == 0)) || [[ "$more" != yes ]]; then break; fi
    if ((round == 5)); then
      log "WARNING: s3://${S3_BUCKET}/${key} still has versions after ${round} rounds of 1000 deletes; they stay"
    fi
  done
  ((failed == 0))
}

# uploaded_size KEY SIZE: the object at KEY has SIZE bytes (catches a silently truncated upload).
uploaded_size() {
  local remote
  remote="$(s3 s3api head-object --bucket "$S3_BUCKET" --key "$1" --query ContentLength \
    --output text 2>>"$aws_log")" && [[ "$remote" == "$2" ]]
}

# upload FILE KEY [check]: puts FILE at KEY (S3_UPLOAD_ATTEMPTS attempts); with "check", then
# compares the stored size (the big objects; a sidecar that arrives is whole or fails).
upload() {
  local file="$1" key="$2" check="${3:-}" attempt=1 pause="$S3_RETRY_SECONDS" size
  size="$(stat -c %s "$file")"
  while true; do
    # Recorded before the call: a call that fails half-way may still leave an object.
    uploaded+=("$key")
    if s3 s3 cp --only-show-errors "$file" "s3://${S3_BUCKET}/${key}" >>"$aws_log" 2>&1 &&
      { [[ "$check" != check ]] || uploaded_size "$key" "$size"; }; then
      log "uploaded s3://${S3_BUCKET}/${key} (${size} bytes)"
      return 0
    fi
    if ((attempt >= S3_UPLOAD_ATTEMPTS)); then
      log "upload of ${key} failed after ${attempt} attempt(s); aws said:"
      show_log "$aws_log"
      return 1
    fi
    log "upload of ${key} failed (attempt ${attempt}/${S3_UPLOAD_ATTEMPTS}); retrying in ${pause}s"
    sleep "$pause"
    attempt=$((attempt + 1))
    pause=$((pause * 2))
  done
}

# ---------------------------------------------------------------------------------------------
# 1. Snapshot from the first healthy endpoint.

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
snapshot="$work/snapshot.db"
used_endpoint=""
for endpoint in "${endpoints[@]}"; do
  if ! timeout --kill-after=5 "$ETCD_HEALTH_TIMEOUT" etcdctl --endpoints "$endpoint" "${etcdctl_tls[@]}" \
    --dial-timeout "$ETCD_DIAL_TIMEOUT" --command-timeout "${ETCD_HEALTH_TIMEOUT}s" \
    endpoint health >"$work/health.log" 2>&1; then
    log "endpoint ${endpoint} is not healthy; trying the next one"
    show_log "$work/health.log"
    continue
  fi
  log "snapshotting ${endpoint}"
  rm -f -- "$snapshot" "$snapshot.part"
  if timeout --kill-after=10 "$ETCD_SNAPSHOT_TIMEOUT" etcdctl --endpoints "$endpoint" "${etcdctl_tls[@]}" \
    --dial-timeout "$ETCD_DIAL_TIMEOUT" snapshot save "$snapshot" >"$work/save.log" 2>&1 && [[ -s "$snapshot" ]]; then
    used_endpoint="$endpoint"
    break
  fi
  log "snapshot from ${endpoint} failed; trying the next endpoint"
  show_log "$work/save.log"
done
[[ -n "$used_endpoint" ]] || die "no endpoint of ETCD_ENDPOINTS gave a snapshot"
snapshot_bytes="$(stat -c %s "$snapshot")"

# ---------------------------------------------------------------------------------------------
# 2. Verify: status, then a trial restore (checks the snapshot's integrity hash).

if ! "$snapshot_tool" snapshot status "$snapshot" -w json >"$work/status.json" 2>"$work/status.log"; then
  show_log "$work/status.log"
  die "${snapshot_tool} snapshot status failed on the snapshot"
fi
revision="$(jq -r '.revision' "$work/status.json")"
hash="$(jq -r '.hash' "$work/status.json")"
total_keys="$(jq -r '.totalKey' "$work/status.json")"
[[ "$revision" =~ ^[0-9]+$ ]] || die "snapshot status gave no revision"
if [[ "$total_keys" == 0 ]]; then log "WARNING: the snapshot holds no key"; fi
if ! "$snapshot_tool" snapshot restore "$snapshot" --data-dir "$work/trial-restore" --name trial \
  --initial-cluster trial=http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster-token trial >"$work/restore.log" 2>&1; then
  show_log "$work/restore.log"
  die "trial restore of the snapshot failed (${snapshot_tool} snapshot restore)"
fi
rm -rf -- "$work/trial-restore"
log "snapshot verified with ${snapshot_tool}: revision ${revision}, hash ${hash}, ${total_keys} keys, ${snapshot_bytes} bytes"

# ---------------------------------------------------------------------------------------------
# 3. Compress and encrypt.

recipients_file="$work/recipients"
if ((${#recipients[@]} > 0)); then printf '%s\n' "${recipients[@]}" >"$recipients_file"; fi

# pack IN OUT: zstd, then age unless BACKUP_ENCRYPTION=none.
pack() {
  if [[ "$BACKUP_ENCRYPTION" == age ]]; then
    zstd -q -T0 "-${BACKUP_ZSTD_LEVEL}" -c -- "$1" | age -R "$recipients_file" -o "$2"
  else
    zstd -q -T0 "-${BACKUP_ZSTD_LEVEL}" -c -- "$1" >"$2"
  fi
}

base="${stamp}-r${revision}.db${suffix}"
key="${S3_PREFIX}/etcd/${base}"
object="$work/${base}"
pack "$snapshot" "$object" 2>"$work/pack.log" || {
  show_log "$work/pack.log"
  die "compressing/encrypting the snapshot failed"
}
rm -f -- "$snapshot"
(cd "$work" && sha256sum -- "$base") >"$(backup_sidecar "$object")"
sha256="$(cut -d' ' -f1 "$(backup_sidecar "$object")")"
size="$(stat -c %s "$object")"

pki_key=""
pki_object=""
if [[ ! -d "$PKI_DIR" ]]; then
  log "WARNING: PKI_DIR ${PKI_DIR} does not exist; this backup has no PKI"
elif [[ "$BACKUP_ENCRYPTION" == none && "$BACKUP_PKI_UNENCRYPTED" == skip ]]; then
  log "WARNING: BACKUP_ENCRYPTION=none: the PKI (private CA keys) is NOT backed up; set BACKUP_PKI_UNENCRYPTED=upload to upload it in the clear"
else
  if [[ "$BACKUP_ENCRYPTION" == none ]]; then
    log "WARNING: uploading the PKI (private CA keys) UNENCRYPTED (BACKUP_PKI_UNENCRYPTED=upload)"
  fi
  pki_base="${stamp}.tar${suffix}"
  pki_key="${S3_PREFIX}/pki/${pki_base}"
  pki_object="$work/${pki_base}"
  tar -C "$PKI_DIR" -cf "$work/pki.tar" . 2>"$work/tar.log" || {
    show_log "$work/tar.log"
    die "archiving ${PKI_DIR} failed"
  }
  pack "$work/pki.tar" "$pki_object" 2>"$work/pack.log" || {
    show_log "$work/pack.log"
    die "compressing/encrypting the PKI failed"
  }
  rm -f -- "$work/pki.tar"
  (cd "$work" && sha256sum -- "$pki_base") >"$(backup_sidecar "$pki_object")"
fi

# ---------------------------------------------------------------------------------------------
# 4. Upload: the snapshot, the PKI and its sidecar, and the snapshot's sidecar last.

upload "$object" "$key" check || die "upload failed"
if [[ -n "$pki_key" ]]; then
  upload "$pki_object" "$pki_key" check || die "upload failed"
  upload "$(backup_sidecar "$pki_object")" "$(backup_sidecar "$pki_key")" || die "upload failed"
fi
upload "$(backup_sidecar "$object")" "$(backup_sidecar "$key")" || die "upload failed"
success=true
log "backup complete: s3://${S3_BUCKET}/${key}"

# ---------------------------------------------------------------------------------------------
# 5. Retention, by the UTC stamp in each key name.

deleted=()
retention() {
  local cutoff keys pki_keys k b stamp_of complete=() kept=0
  cutoff="$(date -u -d "@$(($(date -u +%s) - BACKUP_RETENTION_DAYS * 86400))" +%Y%m%dT%H%M%SZ)"
  keys="$(list_keys "${S3_PREFIX}/etcd/")" || return 1
  pki_keys="$(list_keys "${S3_PREFIX}/pki/")" || return 1
  local -A keep_stamp=() doomed=()
  # Complete backups, newest first.
  while IFS= read -r k; do
    if [[ -n "$k" ]]; then complete+=("$k"); fi
  done < <(complete_backups "$keys")
  for k in "${complete[@]}"; do
    b="${k##*/}"
    stamp_of="${b%%-*}"
    if ((kept < BACKUP_KEEP_LAST)) || [[ ! "$stamp_of" < "$cutoff" ]]; then
      kept=$((kept + 1))
      keep_stamp["$stamp_of"]=1
    fi
  done
  # Everything (complete or not) whose stamp is older than the cutoff and not kept goes.
  while IFS= read -r k; do
    [[ -n "$k" ]] || continue
    b="${k##*/}"
    stamp_of="${b%%[-.]*}"
    [[ "$stamp_of" =~ ^[0-9]{8}T[0-9]{6}Z$ ]] || continue
    if [[ "$stamp_of" < "$cutoff" && -z "${keep_stamp[$stamp_of]:-}" ]]; then doomed["$k"]=1; fi
  done <<<"$keys"$'\n'"$pki_keys"
  # Sidecars first: a backup never looks complete while its snapshot (or PKI) is being deleted.
  # One key a line: keys are never split or globbed.
  local -a sidecars=() objects=()
  for k in "${!doomed[@]}"; do
    if is_backup_sidecar "$k"; then sidecars+=("$k"); else objects+=("$k"); fi
  done
  while IFS= read -r k; do
    [[ -n "$k" ]] || continue
    if delete_key_all_versions "$k"; then
      deleted+=("$k")
    else
      log "WARNING: could not delete s3://${S3_BUCKET}/${k}"
    fi
  done < <(
    printf '%s\n' "${sidecars[@]}" | sort -r
    printf '%s\n' "${objects[@]}" | sort -r
  )
  log "retention: kept ${kept} complete backup(s) (newest ${BACKUP_KEEP_LAST} always, others newer than ${cutoff}); deleted ${#deleted[@]} object(s)"
}
retention_status=0
retention || retention_status=$?
if ((retention_status != 0)); then
  show_log "$aws_log"
  log "error: retention failed (the backup itself is complete)"
fi

jq -cn --arg key "$key" --argjson revision "$revision" --arg hash "$hash" --argjson totalKeys "$total_keys" \
  --argjson snapshotBytes "$snapshot_bytes" --argjson size "$size" --arg sha256 "$sha256" \
  --arg endpoint "$used_endpoint" --arg encryption "$BACKUP_ENCRYPTION" --arg pkiKey "$pki_key" \
  --argjson deleted "$(printf '%s\n' "${deleted[@]}" | jq -R 'select(length > 0)' | jq -s .)" \
  --argjson seconds "$((SECONDS - start_seconds))" \
  '{key: $key, revision: $revision, hash: $hash, totalKeys: $totalKeys, snapshotBytes: $snapshotBytes,
    size: $size, sha256: $sha256, endpoint: $endpoint, encryption: $encryption,
    pkiKey: (if $pkiKey == "" then null else $pkiKey end), deleted: $deleted, seconds: $seconds}'
exit "$retention_status"
