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
last: the completion marker), backs up the PKI directory the same way, then applies the tiered
retention. Every object is written under its own S3 Object Lock retention (BACKUP_OBJECT_LOCK_MODE)
until the end of the longest retention tier the backup belongs to. Configured only through
environment variables:

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
  S3_MULTIPART_THRESHOLD_MIB  Objects of at least this many MiB go up as a multipart upload
                          (default 1024; one PUT takes at most 5 GiB).
  S3_PART_SIZE_MIB        Part size of a multipart upload (default 128; S3's minimum is 5).

Encryption
  BACKUP_ENCRYPTION       age (default) or none. none is the explicit opt-out: the snapshot is
                          uploaded as .db.zst in the clear.
  BACKUP_AGE_RECIPIENTS   Required with age: one or more age public keys (age1...), separated by
                          spaces, commas or newlines. Only public keys live in the cluster; the
                          identity (private key) stays with the operators.
  BACKUP_PKI_UNENCRYPTED  What to do with PKI_DIR when BACKUP_ENCRYPTION=none: skip (default;
                          logs a WARNING, the backup has no PKI) or upload (private CA keys in
                          the clear; logs a WARNING).

Retention tiers (run only after a successful upload; a backup's age is the UTC stamp in its key
name). A complete backup (snapshot, sidecar, PKI of the same stamp) is kept while any tier keeps it:
  BACKUP_KEEP_ALL_HOURS   every backup for this many hours (default 24, at least 1)
  BACKUP_KEEP_HOURLY_DAYS the first complete backup of each UTC hour for this many days (default 7)
  BACKUP_RETENTION_DAYS   the first complete backup of each UTC day for this many days (default 30)
  BACKUP_KEEP_LAST        the newest N complete backups, whatever their age (default 4, at least 1)
  The first (not the newest) backup of an hour or day represents it: when it is uploaded it is
  already known to be one, so its Object Lock can last exactly as long as its longest tier.
  Objects without a sidecar older than BACKUP_KEEP_ALL_HOURS are leftovers of failed runs and go
  too. A deleted object goes with every version and delete marker of its key (on a versioned
  bucket a plain delete would only hide it). A key whose Object Lock retention has not expired
  yet is left for a later run (logged, not an error).

Object Lock (the bucket must have been created with Object Lock enabled)
  BACKUP_OBJECT_LOCK_MODE COMPLIANCE, GOVERNANCE or none (default none: no lock headers, for a
                          bucket without Object Lock). Each object (snapshot, PKI, sidecars) is
                          uploaded with --object-lock-mode and --object-lock-retain-until-date
                          <stamp + the longest tier it belongs to>: BACKUP_KEEP_ALL_HOURS for every
                          backup, BACKUP_KEEP_HOURLY_DAYS for the first of its hour,
                          BACKUP_RETENTION_DAYS for the first of its day. Until then no key can
                          delete or overwrite the version (COMPLIANCE: nobody; GOVERNANCE: only a
                          key allowed s3:BypassGovernanceRetention).
  BACKUP_NOW              For tests: the time this run takes for "now" (anything `date -d` reads,
                          e.g. 2026-12-03T12:00:00Z): the backup's stamp and the retention's
                          cutoffs. Object Lock dates derive from the stamp; the lock check before a
                          delete uses the real clock (the storage's). Default: the real time.

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
   "encryption","pkiKey","deleted","locked","seconds"}
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
BACKUP_KEEP_ALL_HOURS="${BACKUP_KEEP_ALL_HOURS:-24}"
BACKUP_KEEP_HOURLY_DAYS="${BACKUP_KEEP_HOURLY_DAYS:-7}"
BACKUP_RETENTION_DAYS="${BACKUP_RETENTION_DAYS:-30}"
BACKUP_KEEP_LAST="${BACKUP_KEEP_LAST:-4}"
BACKUP_OBJECT_LOCK_MODE="${BACKUP_OBJECT_LOCK_MODE:-none}"
S3_MULTIPART_THRESHOLD_MIB="${S3_MULTIPART_THRESHOLD_MIB:-1024}"
S3_PART_SIZE_MIB="${S3_PART_SIZE_MIB:-128}"
PKI_DIR="${PKI_DIR:-/etc/kubernetes/pki}"
BACKUP_ZSTD_LEVEL="${BACKUP_ZSTD_LEVEL:-3}"

require_int ETCD_HEALTH_TIMEOUT 1
require_int ETCD_SNAPSHOT_TIMEOUT 1
require_int S3_UPLOAD_ATTEMPTS 1
require_int S3_RETRY_SECONDS 0
require_int BACKUP_KEEP_ALL_HOURS 1
require_int BACKUP_KEEP_HOURLY_DAYS 0
require_int BACKUP_RETENTION_DAYS 0
require_int BACKUP_KEEP_LAST 1
require_int S3_MULTIPART_THRESHOLD_MIB 1
require_int S3_PART_SIZE_MIB 5
case "$BACKUP_OBJECT_LOCK_MODE" in
  COMPLIANCE | GOVERNANCE | none) ;;
  *) config_error "BACKUP_OBJECT_LOCK_MODE must be 'COMPLIANCE', 'GOVERNANCE' or 'none', got '${BACKUP_OBJECT_LOCK_MODE}'" ;;
esac
if [[ -n "${BACKUP_NOW:-}" ]]; then
  now_epoch="$(date -u -d "$BACKUP_NOW" +%s 2>/dev/null)" ||
    config_error "BACKUP_NOW '${BACKUP_NOW}' is not a time date -d reads (e.g. 2026-12-03T12:00:00Z)"
else
  now_epoch="$(date -u +%s)"
fi
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
# Without real version ids (an unversioned bucket lists only the id "null") it is a plain
# delete-object; a listing without KEY means there is nothing to delete (a plain delete there
# would leave a new delete marker on a versioned bucket). When the versions cannot be listed: a WARNING and the plain delete.
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
    if ((round == 1)) && [[ -z "$ids" ]]; then return 0; fi
    real=0
    while IFS= read -r id; do
      [[ -n "$id" && "$id" != null ]] || continue
      real=$((real + 1))
      # --version-id=ID: an id never reads as an option.
      s3 s3api delete-object --bucket "$S3_BUCKET" --key "$key" --version-id="$id" >>"$aws_log" 2>&1 ||
        failed=1
    done <<<"$ids"
    if ((real == 0 && round == 1)); then
      # Unversioned bucket: the plain delete, as always.
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

# stamp_epoch STAMP: seconds since the epoch of a key's UTC stamp (YYYYMMDDTHHMMSSZ).
stamp_epoch() {
  date -u -d "${1:0:4}-${1:4:2}-${1:6:2}T${1:9:2}:${1:11:2}:${1:13:2}Z" +%s
}

# epoch_stamp EPOCH: the UTC stamp (YYYYMMDDTHHMMSSZ) of EPOCH; stamps compare as strings.
epoch_stamp() { date -u -d "@$1" +%Y%m%dT%H%M%SZ; }

# The window of each retention tier, in seconds.
all_seconds=$((BACKUP_KEEP_ALL_HOURS * 3600))
hourly_seconds=$((BACKUP_KEEP_HOURLY_DAYS * 86400))
daily_seconds=$((BACKUP_RETENTION_DAYS * 86400))

# lock_args: sets lock_arguments, the Object Lock arguments of every upload of this run (one
# backup: all its objects share the stamp, so they share the lock), computed on the first call.
# The retain-until date is the stamp plus the longest tier this backup belongs to: every backup
# is in the BACKUP_KEEP_ALL_HOURS tier; it is the first complete backup of its UTC hour (day)
# when no complete backup with an earlier stamp of the same hour (day) is listed, and then in
# the hourly (daily) tier too, as retention will count it. When the listing fails the lock is
# the longest tier's: a lock too long costs storage, one too short lets a leaked key delete.
lock_arguments=()
lock_until=""
lock_computed=false
lock_args() {
  "$lock_computed" && return 0
  lock_computed=true
  [[ "$BACKUP_OBJECT_LOCK_MODE" != none ]] || return 0
  local keys k b other first_hour=true first_day=true seconds=$all_seconds until
  if keys="$(list_keys "${S3_PREFIX}/etcd/")"; then
    while IFS= read -r k; do
      [[ -n "$k" ]] || continue
      b="${k##*/}"
      other="${b%%-*}"
      [[ "$other" < "$stamp" ]] || continue
      if [[ "${other:0:11}" == "${stamp:0:11}" ]]; then first_hour=false; fi
      if [[ "${other:0:8}" == "${stamp:0:8}" ]]; then first_day=false; fi
    done < <(complete_backups "$keys")
  else
    log "WARNING: could not list ${S3_PREFIX}/etcd/; locking this backup for the longest tier"
  fi
  if "$first_hour" && ((hourly_seconds > seconds)); then seconds=$hourly_seconds; fi
  if "$first_day" && ((daily_seconds > seconds)); then seconds=$daily_seconds; fi
  until="$(date -u -d "@$(($(stamp_epoch "$stamp") + seconds))" +%Y-%m-%dT%H:%M:%SZ)"
  lock_until="$until"
  lock_arguments=(--object-lock-mode "$BACKUP_OBJECT_LOCK_MODE" --object-lock-retain-until-date "$until")
  log "objects of this backup are locked (${BACKUP_OBJECT_LOCK_MODE}) until ${until}"
}

# put_object FILE KEY SIZE: one PUT with the lock arguments below S3_MULTIPART_THRESHOLD_MIB,
# else a multipart upload (create-multipart-upload carries the lock arguments), aborted when a
# part or the completion fails, so no part stays billed. The completed version's retention is
# then set once more with put-object-retention: Ceph RGW 16.2 accepts the lock headers on
# create-multipart-upload but leaves the completed object unlocked (seen in tests/etcdBackup.test.ts).
put_object() {
  local file="$1" key="$2" size="$3" upload_id part_bytes parts number=0 offset=0 etag version
  if ((size < S3_MULTIPART_THRESHOLD_MIB * 1048576)); then
    s3 s3api put-object --bucket "$S3_BUCKET" --key "$key" --body "$file" "${lock_arguments[@]}" \
      >>"$aws_log" 2>&1
    return
  fi
  upload_id="$(s3 s3api create-multipart-upload --bucket "$S3_BUCKET" --key "$key" "${lock_arguments[@]}" \
    --query UploadId --output text 2>>"$aws_log")" && [[ -n "$upload_id" && "$upload_id" != None ]] ||
    return 1
  part_bytes=$((S3_PART_SIZE_MIB * 1048576))
  parts="$work/parts.json"
  printf '{"Parts":[]}' >"$parts"
  while ((offset < size)); do
    number=$((number + 1))
    # One part at a time in scratch: at most S3_PART_SIZE_MIB more disk.
    if ! dd if="$file" of="$work/part" bs=1048576 skip="$((offset / 1048576))" count="$S3_PART_SIZE_MIB" \
      status=none 2>>"$aws_log" ||
      ! etag="$(s3 s3api upload-part --bucket "$S3_BUCKET" --key "$key" --upload-id "$upload_id" \
        --part-number "$number" --body "$work/part" --query ETag --output text 2>>"$aws_log")" ||
      ! jq --arg etag "$etag" --argjson n "$number" '.Parts += [{ETag: $etag, PartNumber: $n}]' "$parts" \
        >"$parts.new" || ! mv -f -- "$parts.new" "$parts"; then
      rm -f -- "$work/part"
      s3 s3api abort-multipart-upload --bucket "$S3_BUCKET" --key "$key" --upload-id "$upload_id" \
        >>"$aws_log" 2>&1 || true
      return 1
    fi
    offset=$((offset + part_bytes))
  done
  rm -f -- "$work/part"
  if ! version="$(s3 s3api complete-multipart-upload --bucket "$S3_BUCKET" --key "$key" --upload-id "$upload_id" \
    --multipart-upload "file://${parts}" --query VersionId --output text 2>>"$aws_log")"; then
    s3 s3api abort-multipart-upload --bucket "$S3_BUCKET" --key "$key" --upload-id "$upload_id" \
      >>"$aws_log" 2>&1 || true
    return 1
  fi
  [[ -n "$lock_until" ]] || return 0
  local -a which=()
  if [[ -n "$version" && "$version" != None && "$version" != null ]]; then which=("--version-id=${version}"); fi
  s3 s3api put-object-retention --bucket "$S3_BUCKET" --key "$key" "${which[@]}" \
    --retention "Mode=${BACKUP_OBJECT_LOCK_MODE},RetainUntilDate=${lock_until}" >>"$aws_log" 2>&1
}

# upload FILE KEY [check]: puts FILE at KEY (S3_UPLOAD_ATTEMPTS attempts) under the backup's Object
# Lock (lock_args); with "check", then compares the stored size (the big objects; a sidecar that
# arrives is whole or fails).
upload() {
  local file="$1" key="$2" check="${3:-}" attempt=1 pause="$S3_RETRY_SECONDS" size
  size="$(stat -c %s "$file")"
  lock_args
  while true; do
    # Recorded before the call: a call that fails half-way may still leave an object.
    uploaded+=("$key")
    if put_object "$file" "$key" "$size" &&
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

stamp="$(date -u -d "@${now_epoch}" +%Y%m%dT%H%M%SZ)"
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
locked=()

# lock_unexpired KEY: KEY's latest version is under an Object Lock retention that has not expired
# by the real clock (the storage's, not BACKUP_NOW); prints the retain-until date.
lock_unexpired() {
  local until
  until="$(s3 s3api head-object --bucket "$S3_BUCKET" --key "$1" --query ObjectLockRetainUntilDate \
    --output text 2>>"$aws_log")" || return 1
  [[ -n "$until" && "$until" != None ]] || return 1
  (($(date -u -d "$until" +%s 2>/dev/null || echo 0) > $(date -u +%s))) || return 1
  printf '%s' "$until"
}

# list_all_keys PREFIX: every key under PREFIX that has a version or a delete marker, one a line:
# a key hidden by a delete marker (which anyone with the bucket's key can place) still holds
# billed versions that retention has to remove. Falls back to list_keys where versions cannot
# be listed.
list_all_keys() {
  local listing
  if listing="$(s3 s3api list-object-versions --bucket "$S3_BUCKET" --prefix "$1" --output json 2>>"$aws_log")"; then
    jq -r '[(.Versions // [])[], (.DeleteMarkers // [])[]] | map(.Key) | unique | .[]' <<<"$listing"
  else
    list_keys "$1"
  fi
}

# retention: keeps the union of the tiers (see --help) over the complete backups, deletes every
# other backup (and the PKI of its stamp), and leftovers without a sidecar older than the
# BACKUP_KEEP_ALL_HOURS tier. The first complete backup of an hour (day) represents it, as
# lock_args assumed when it was uploaded.
retention() {
  local keys all_keys pki_keys k b stamp_of until complete=() kept=0 newest=0
  local cut_all cut_hourly cut_daily
  cut_all="$(epoch_stamp $((now_epoch - all_seconds)))"
  cut_hourly="$(epoch_stamp $((now_epoch - hourly_seconds)))"
  cut_daily="$(epoch_stamp $((now_epoch - daily_seconds)))"
  keys="$(list_keys "${S3_PREFIX}/etcd/")" || return 1
  local -A keep_stamp=() first_of_hour=() first_of_day=() doomed=()
  # Complete backups, newest first; the first of each hour and day is the last one seen.
  while IFS= read -r k; do
    if [[ -n "$k" ]]; then complete+=("$k"); fi
  done < <(complete_backups "$keys")
  for k in "${complete[@]}"; do
    b="${k##*/}"
    stamp_of="${b%%-*}"
    first_of_hour["${stamp_of:0:11}"]="$stamp_of"
    first_of_day["${stamp_of:0:8}"]="$stamp_of"
  done
  for k in "${complete[@]}"; do
    b="${k##*/}"
    stamp_of="${b%%-*}"
    newest=$((newest + 1))
    if ((newest <= BACKUP_KEEP_LAST)) || [[ "$stamp_of" > "$cut_all" ]] ||
      { [[ "$stamp_of" > "$cut_hourly" ]] && [[ "${first_of_hour[${stamp_of:0:11}]}" == "$stamp_of" ]]; } ||
      { [[ "$stamp_of" > "$cut_daily" ]] && [[ "${first_of_day[${stamp_of:0:8}]}" == "$stamp_of" ]]; }; then
      kept=$((kept + 1))
      keep_stamp["$stamp_of"]=1
    fi
  done
  # Everything not kept goes: complete backups outside every tier, and leftovers (no sidecar, or
  # hidden by a delete marker) older than the every-backup tier (younger ones may be a run still
  # uploading).
  all_keys="$(list_all_keys "${S3_PREFIX}/etcd/")" || return 1
  pki_keys="$(list_all_keys "${S3_PREFIX}/pki/")" || return 1
  while IFS= read -r k; do
    [[ -n "$k" ]] || continue
    b="${k##*/}"
    stamp_of="${b%%[-.]*}"
    [[ "$stamp_of" =~ ^[0-9]{8}T[0-9]{6}Z$ ]] || continue
    if [[ ! "$stamp_of" > "$cut_all" && -z "${keep_stamp[$stamp_of]:-}" ]]; then doomed["$k"]=1; fi
  done <<<"$all_keys"$'\n'"$pki_keys"
  # Sidecars first: a backup never looks complete while its snapshot (or PKI) is being deleted.
  # One key a line: keys are never split or globbed.
  local -a sidecars=() objects=()
  for k in "${!doomed[@]}"; do
    if is_backup_sidecar "$k"; then sidecars+=("$k"); else objects+=("$k"); fi
  done
  while IFS= read -r k; do
    [[ -n "$k" ]] || continue
    if [[ "$BACKUP_OBJECT_LOCK_MODE" != none ]] && until="$(lock_unexpired "$k")"; then
      # Its lock outlasts its tiers (a tier was shortened): a later run deletes it.
      locked+=("$k")
      log "left s3://${S3_BUCKET}/${k}: under Object Lock until ${until}"
      continue
    fi
    if delete_key_all_versions "$k"; then
      deleted+=("$k")
    else
      log "WARNING: could not delete s3://${S3_BUCKET}/${k}"
    fi
  done < <(
    printf '%s\n' "${sidecars[@]}" | sort -r
    printf '%s\n' "${objects[@]}" | sort -r
  )
  log "retention: kept ${kept} complete backup(s) (every one newer than ${cut_all}, the first of each hour newer than ${cut_hourly}, of each day newer than ${cut_daily}, the newest ${BACKUP_KEEP_LAST}); deleted ${#deleted[@]} object(s), ${#locked[@]} still locked"
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
  --argjson locked "$(printf '%s\n' "${locked[@]}" | jq -R 'select(length > 0)' | jq -s .)" \
  --argjson seconds "$((SECONDS - start_seconds))" \
  '{key: $key, revision: $revision, hash: $hash, totalKeys: $totalKeys, snapshotBytes: $snapshotBytes,
    size: $size, sha256: $sha256, endpoint: $endpoint, encryption: $encryption,
    pkiKey: (if $pkiKey == "" then null else $pkiKey end), deleted: $deleted, locked: $locked,
    seconds: $seconds}'
exit "$retention_status"
