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

Snapshots etcd, verifies the snapshot (snapshot status, and the sha256 etcd appends to every
snapshot, checked while it streams), streams it through zstd and age straight into its upload,
signs its .sha256 sidecar. Once every part of the snapshot is stored, the signature and the PKI
directory (archive, signature, sidecar) go up while the snapshot's upload is completed; then the
snapshot's sidecar, last: the completion marker. Then the tiered retention. Every object is
written under its own S3 Object Lock retention (BACKUP_OBJECT_LOCK_MODE) until the end
of the longest retention tier the backup belongs to. Configured only through environment
variables:

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

Object storage (path-style addressing at S3_ENDPOINT; objects, parts and retentions are written
with curl --aws-sigv4, listings and deletes go through aws-cli)
  S3_ENDPOINT             Required. e.g. https://fsn1.your-objectstorage.com
  S3_BUCKET               Required. Bucket name.
  S3_PREFIX               Required. Key prefix, e.g. the cluster name; slashes at either end are
                          dropped. Keys written:
                            <prefix>/etcd/<UTC YYYYMMDDTHHMMSSZ>-r<revision>.db.zst.age  (.db.zst unencrypted)
                            <prefix>/etcd/<same>.sha256.sig  ssh-keygen -Y sign signature of the sidecar
                            <prefix>/etcd/<same>.sha256   "<sha256 hex>  <basename>", uploaded LAST
                            <prefix>/pki/<same stamp>.tar.zst.age and its .sha256.sig and .sha256
  S3_REGION               Required. e.g. fsn1 (exported as AWS_DEFAULT_REGION).
  AWS_ACCESS_KEY_ID       Required. Never printed.
  AWS_SECRET_ACCESS_KEY   Required. Never printed.
  AWS_CONFIG_FILE         Optional. When unset a scratch config with `s3 = addressing_style = path`
                          is used. Set for aws: AWS_REQUEST_CHECKSUM_CALCULATION=when_required,
                          AWS_RESPONSE_CHECKSUM_VALIDATION=when_required (Hetzner rejects the
                          default CRC checksums), AWS_EC2_METADATA_DISABLED=true.
  S3_UPLOAD_ATTEMPTS      Attempts per upload (default 3).
  S3_RETRY_SECONDS        Pause between attempts, doubled each time (default 5).
  S3_TIMEOUT              Seconds one aws or curl call may take (default 1800).
  S3_PART_SIZE_MIB        Multipart part size in MiB (default 128, 5..5120). A body smaller than
                          one part is one put-object; larger ones are a multipart upload whose
                          parts are read off the stream into scratch. The only size setting:
                          S3_PART_MB and S3_MULTIPART_THRESHOLD_MIB are refused.
  S3_UPLOAD_CONCURRENCY   Parts uploading at once while the next one is read (default 4, 1..16),
                          and parts read ahead into scratch while `snapshot status` runs.

Encryption
  BACKUP_ENCRYPTION       age (default) or none. none is the explicit opt-out: the snapshot is
                          uploaded as .db.zst in the clear.
  BACKUP_AGE_RECIPIENTS   Required with age: one or more age public keys (age1...), separated by
                          spaces, commas or newlines. Only public keys live in the cluster; the
                          identity (private key) stays with the operators.
  BACKUP_PKI_UNENCRYPTED  What to do with PKI_DIR when BACKUP_ENCRYPTION=none: skip (default;
                          logs a WARNING, the backup has no PKI) or upload (private CA keys in
                          the clear; logs a WARNING).

Signing
  BACKUP_SIGNING_KEY_FILE Required. An OpenSSH ed25519 private key without passphrase (make one
                          with: ssh-keygen -t ed25519 -N "" -C etcd-backup -f backup-signing).
                          Every sidecar <key>.sha256 is signed with `ssh-keygen -Y sign -n
                          etcd-backup` and the signature uploaded as <key>.sha256.sig before the
                          sidecar. Restores verify it with `ssh-keygen -Y verify -I etcd-backup -n
                          etcd-backup` against the public key (ssh-keygen -y -f backup-signing).
                          The key is copied into scratch (mode 0600) and never printed.

Retention tiers (run only after a successful upload; a backup's age is the UTC stamp in its key
name). A complete backup (snapshot, sidecar, signature, PKI of the same stamp with its sidecar
and signature) is kept while any tier keeps it:
  BACKUP_KEEP_ALL_HOURS   every backup for this many hours (default 24, at least 1)
  BACKUP_KEEP_HOURLY_DAYS the first complete backup of each UTC hour for this many days (default 7)
  BACKUP_RETENTION_DAYS   the first complete backup of each UTC day for this many days (default 30)
  BACKUP_KEEP_LAST        the newest N complete backups, whatever their age (default 4, at least 1)
  The first (not the newest) backup of an hour or day represents it: when it is uploaded it is
  already known to be one, so its Object Lock can last exactly as long as its longest tier.
  Objects without a sidecar older than BACKUP_KEEP_ALL_HOURS are leftovers of failed runs and go
  too. A backup's objects go sidecars first, then signatures, then the snapshot and PKI archive,
  so a backup never looks complete (or unsigned) while its parts are being deleted. A deleted
  object goes with every version and delete marker of its key (on a versioned bucket a plain
  delete would only hide it). A key whose Object Lock retention has not expired yet is left for
  a later run (logged, not an error).

Object Lock (the bucket must have been created with Object Lock enabled)
  BACKUP_OBJECT_LOCK_MODE COMPLIANCE, GOVERNANCE or none (default none: no lock headers, for a
                          bucket without Object Lock). Each object (snapshot, PKI, sidecars,
                          signatures) is uploaded with x-amz-object-lock-mode and
                          x-amz-object-lock-retain-until-date <stamp + the longest tier it belongs
                          to>: BACKUP_KEEP_ALL_HOURS for every backup, BACKUP_KEEP_HOURLY_DAYS for
                          the first of its hour, BACKUP_RETENTION_DAYS for the first of its day. A
                          multipart upload's completed version gets the same retention again with
                          PutObjectRetention (Ceph RGW 16.2 takes the lock headers on
                          CreateMultipartUpload but leaves the object unlocked). Until then no
                          key can delete or overwrite the version (COMPLIANCE: nobody; GOVERNANCE:
                          only a key allowed s3:BypassGovernanceRetention).
  BACKUP_NOW              For tests: the time this run takes for "now" (anything `date -d` reads,
                          e.g. 2026-12-03T12:00:00Z): the backup's stamp and the retention's
                          cutoffs. Object Lock dates derive from the stamp; the lock check before a
                          delete uses the real clock (the storage's). Default: the real time.

Other
  PKI_DIR                 Directory archived next to the snapshot (default /etc/kubernetes/pki);
                          skipped with a WARNING when it does not exist.
  BACKUP_WORK_DIR         Scratch parent directory (default: $TMPDIR or /tmp). A fresh
                          directory is made inside it and removed on exit. Needs the database size
                          (the snapshot) plus S3_UPLOAD_CONCURRENCY + 1 upload parts.
  BACKUP_ZSTD_LEVEL       zstd level (default 3).

Tools: etcdctl (snapshot save, endpoint health); etcdutl when on PATH for snapshot status
(etcd 3.6 removed it from etcdctl), else etcdctl; zstd, age, curl (7.75 or later), aws, jq,
openssl, ssh-keygen.

Output: log lines with UTC timestamps on stderr; on success one JSON line on stdout:
  {"key","revision","hash","totalKeys","snapshotBytes","size","sha256","endpoint",
   "encryption","pkiKey","deleted","locked","seconds","snapshotSeconds"}
  (seconds: the whole run, whole seconds; snapshotSeconds: the `snapshot save` that gave the
  snapshot, to the millisecond: the rest of the run is the script's own cost)
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
PKI_DIR="${PKI_DIR:-/etc/kubernetes/pki}"
BACKUP_ZSTD_LEVEL="${BACKUP_ZSTD_LEVEL:-3}"
S3_PART_SIZE_MIB="${S3_PART_SIZE_MIB:-128}"
S3_UPLOAD_CONCURRENCY="${S3_UPLOAD_CONCURRENCY:-4}"

require_int ETCD_HEALTH_TIMEOUT 1
require_int ETCD_SNAPSHOT_TIMEOUT 1
require_int S3_UPLOAD_ATTEMPTS 1
require_int S3_RETRY_SECONDS 0
require_int BACKUP_KEEP_ALL_HOURS 1
require_int BACKUP_KEEP_HOURLY_DAYS 0
require_int BACKUP_RETENTION_DAYS 0
require_int BACKUP_KEEP_LAST 1
require_int BACKUP_ZSTD_LEVEL 1
# One size setting: the stream goes up as one put-object when it is shorter than one part, so a
# separate threshold would only hold more of it in scratch. A value left under an older name
# would be ignored without a word, so it is refused.
for dropped in S3_PART_MB S3_MULTIPART_THRESHOLD_MIB; do
  [[ -z "${!dropped:-}" ]] || config_error "${dropped} is no longer read; set S3_PART_SIZE_MIB instead"
done
# S3 multipart: parts of 5 MiB to 5 GiB (all but the last), at most 10000 of them.
require_int S3_PART_SIZE_MIB 5 5120
require_int S3_UPLOAD_CONCURRENCY 1 16
part_bytes=$((S3_PART_SIZE_MIB * 1024 * 1024))
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
signing_key_help='make one with: ssh-keygen -t ed25519 -N "" -C etcd-backup -f backup-signing'
require_var BACKUP_SIGNING_KEY_FILE "an OpenSSH ed25519 private key; ${signing_key_help}"
[[ -f "$BACKUP_SIGNING_KEY_FILE" && -r "$BACKUP_SIGNING_KEY_FILE" ]] ||
  config_error "BACKUP_SIGNING_KEY_FILE '${BACKUP_SIGNING_KEY_FILE}' is not a readable file (${signing_key_help})"
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

require_tools etcdctl zstd curl aws jq openssl base64 timeout ssh-keygen od mkfifo truncate dd
if [[ "$BACKUP_ENCRYPTION" == age ]]; then require_tools age; fi
if command -v etcdutl >/dev/null; then snapshot_tool=etcdutl; else snapshot_tool=etcdctl; fi

# ---------------------------------------------------------------------------------------------
# Scratch space and cleanup.

start_seconds=$SECONDS
work_parent="${BACKUP_WORK_DIR:-${TMPDIR:-/tmp}}"
[[ -d "$work_parent" ]] || config_error "BACKUP_WORK_DIR '${work_parent}' is not a directory"
work="$(mktemp -d "${work_parent%/}/etcd-backup.XXXXXX")"
# Every key this run uploaded to or tried to, one a line, in order (record_upload): a failed run
# deletes them again. A file, so that background jobs (the PKI's upload, the snapshot's
# signature) record theirs too.
uploads_file="$work/uploads"
: >"$uploads_file"
success=false
# KEY and UPLOAD_ID of the multipart upload in progress, aborted when the run ends early.
open_multipart=()
# The PID of the job reading the stream's first parts (read_ahead, step 3) while the snapshot is
# checked, and the descriptor on which it announces each part it completed.
read_ahead_job=""
read_ahead_fd=""
# The PIDs of uploads running in the background (the cleanup waits for them).
upload_jobs=()
stream_producer=""
stream_bytes=0

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  local status=$? key i
  local -a targets=() uploaded=()
  local -A seen=()
  trap - EXIT
  # Background uploads (the PKI's, a signature) are waited for: killed, their request could
  # still create the object after the deletes below. Each is small and bounded by S3_TIMEOUT.
  # Then our other background jobs (the stream's producer and the parts read ahead, the
  # listing) end with the run.
  for key in "${upload_jobs[@]}"; do wait "$key" 2>/dev/null || true; done
  local -a pids
  mapfile -t pids < <(jobs -p)
  if ((${#pids[@]} > 0)); then kill -- "${pids[@]}" 2>/dev/null || true; fi
  if ((${#open_multipart[@]} == 2)); then abort_multipart "${open_multipart[@]}"; fi
  if ! "$success"; then mapfile -t uploaded <"$uploads_file"; fi
  if ((${#uploaded[@]} > 0)); then
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

# The run's listing: every version and delete marker under the cluster's prefix, one
# list-object-versions call started (start_listing) in the background while the snapshot is
# taken (each aws call costs the CLI's start, about 0.7 s). lock_args and retention both read
# it: nothing but this run writes under the prefix while it runs (the CronJob forbids concurrent
# runs), and retention adds this run's own uploads to it.
listing_file="$work/listing.json"
listing_status=""
listing_pid=""

# keys_under PREFIX: the lines of stdin (keys) that start with PREFIX, sorted, each once.
keys_under() {
  local line
  while IFS= read -r line; do
    if [[ "$line" == "$1"* ]]; then printf '%s\n' "$line"; fi
  done | sort -u
}

# start_listing: starts the run's listing, once every setting has been checked.
start_listing() {
  s3 s3api list-object-versions --bucket "$S3_BUCKET" --prefix "${S3_PREFIX}/" --output json \
    >"$listing_file" 2>>"$aws_log" &
  listing_pid=$!
}

# listing_ready: waits for the run's listing (once); fails when it failed.
listing_ready() {
  if [[ -z "$listing_status" ]]; then
    listing_status=0
    wait "$listing_pid" || listing_status=$?
  fi
  return "$listing_status"
}

# listed_keys PREFIX current|all: the keys under PREFIX in the run's listing, sorted, each once.
# current: the keys whose latest entry is a version (what list-objects-v2 lists); all: every key
# with a version or a delete marker.
listed_keys() {
  local filter='(.Versions // [])[] | select(.IsLatest) | .Key'
  if [[ "$2" == all ]]; then filter='(.Versions // [])[], (.DeleteMarkers // [])[] | .Key'; fi
  jq -r --arg p "$1" "${filter} | select(startswith(\$p))" "$listing_file" | sort -u
}

# delete_key_all_versions KEY: deletes the object KEY for good. The stack's bucket is versioned,
# where a plain delete-object only adds a delete marker (the data stays, is billed and can be
# recovered), so every version and delete marker of exactly KEY is deleted by its version id.
# Without real version ids (an unversioned bucket lists only the id "null") it is a plain
# delete-object; a listing without KEY means there is nothing to delete (a plain delete there
# would leave a new delete marker on a versioned bucket). When the versions cannot be listed: a
# WARNING and the plain delete.
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

# What every object of a run is created with (upload_stream's ARGS): the Object Lock headers
# (x-amz-object-lock-mode, x-amz-object-lock-retain-until-date) as curl arguments, and the mode
# and date themselves (relock), set by lock_args before the first upload.
object_lock_args=()
lock_mode=""
lock_until=""

# lock_args: sets object_lock_args, the Object Lock options of every upload of this run (one
# backup: all its objects share the stamp, so they share the lock). Nothing with
# BACKUP_OBJECT_LOCK_MODE=none. The retain-until date is the stamp plus the longest tier this
# backup belongs to: every backup is in the BACKUP_KEEP_ALL_HOURS tier; it is the first complete
# backup of its UTC hour (day) when no complete backup with an earlier stamp of the same hour
# (day) is listed, and then in the hourly (daily) tier too, as retention will count it. When the
# listing fails the lock is the longest tier's: a lock too long costs storage, one too short lets
# a leaked key delete.
lock_args() {
  object_lock_args=()
  [[ "$BACKUP_OBJECT_LOCK_MODE" != none ]] || return 0
  local keys k b other first_hour=true first_day=true seconds=$all_seconds until
  if listing_ready && keys="$(listed_keys "${S3_PREFIX}/etcd/" current)"; then
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
  lock_mode="$BACKUP_OBJECT_LOCK_MODE"
  lock_until="$until"
  object_lock_args=(-H "x-amz-object-lock-mode: ${lock_mode}" -H "x-amz-object-lock-retain-until-date: ${lock_until}")
  log "objects of this backup are locked (${BACKUP_OBJECT_LOCK_MODE}) until ${until}"
}

# record_upload KEY: notes that this run uploads to KEY (before the call: a call that fails half
# way may still leave an object).
record_upload() { printf '%s\n' "$1" >>"$uploads_file"; }

# put_file FILE KEY [ARGS...]: puts FILE (a small body: a sidecar, a signature, the PKI archive,
# a snapshot stream shorter than one part) at KEY with one PutObject, S3_UPLOAD_ATTEMPTS
# attempts; ARGS go to curl (the Object Lock headers).
put_file() {
  local file="$1" key="$2" attempt=1 pause="$S3_RETRY_SECONDS" size out="$work/s3-${BASHPID}"
  shift 2
  size="$(stat -c %s "$file")"
  while true; do
    record_upload "$key"
    if s3_put "$key" "" "$out" "$file" "$@"; then
      log "uploaded s3://${S3_BUCKET}/${key} (${size} bytes)"
      return 0
    fi
    if ((attempt >= S3_UPLOAD_ATTEMPTS)); then
      log "upload of ${key} failed after ${attempt} attempt(s):"
      show_log "$aws_log"
      return 1
    fi
    log "upload of ${key} failed (attempt ${attempt}/${S3_UPLOAD_ATTEMPTS}); retrying in ${pause}s"
    sleep "$pause"
    attempt=$((attempt + 1))
    pause=$((pause * 2))
  done
}

# upload_part KEY UPLOAD_ID NUMBER FILE: uploads FILE as part NUMBER (S3_UPLOAD_ATTEMPTS
# attempts: the part is a file, so a retry resends the same bytes) and prints its ETag.
upload_part() {
  local key="$1" id="$2" number="$3" file="$4" attempt=1 pause="$S3_RETRY_SECONDS" etag out="$work/s3-part-$3"
  while true; do
    if s3_put "$key" "partNumber=${number}&uploadId=$(s3_uri_encode "$id")" "$out" "$file" &&
      etag="$(s3_header "$out" ETag)" && [[ -n "$etag" ]]; then
      printf '%s\n' "$etag"
      return 0
    fi
    if ((attempt >= S3_UPLOAD_ATTEMPTS)); then
      log "part ${number} of ${key} failed after ${attempt} attempt(s)"
      return 1
    fi
    log "part ${number} of ${key} failed (attempt ${attempt}/${S3_UPLOAD_ATTEMPTS}); retrying in ${pause}s"
    sleep "$pause"
    attempt=$((attempt + 1))
    pause=$((pause * 2))
  done
}

# abort_multipart KEY UPLOAD_ID: aborts an unfinished multipart upload; its parts go and no
# object appears (AbortMultipartUpload). A failed abort leaves only parts, never an object; the
# WARNING says so.
abort_multipart() {
  if s3_request DELETE "$1" "uploadId=$(s3_uri_encode "$2")" "$work/s3-${BASHPID}"; then
    log "aborted the multipart upload of ${1}; no object was created"
  else
    log "WARNING: could not abort the multipart upload ${2} of ${1} (its parts stay until aborted; there is no object)"
  fi
  open_multipart=()
}

# relock KEY VERSION: when this run locks (lock_mode, lock_until), puts that retention on version
# VERSION of KEY (its latest version when VERSION is empty) with PutObjectRetention,
# S3_UPLOAD_ATTEMPTS attempts. For a completed multipart upload: Ceph RGW 16.2 (what Hetzner
# Object Storage runs) accepts the lock headers on CreateMultipartUpload but leaves the completed
# object unlocked (tests/etcdBackup.test.ts shows it against a real RGW). Where the headers did
# take, this repeats the same mode and date, which Object Lock allows (it refuses only a shorter
# COMPLIANCE date).
relock() {
  local key="$1" version="$2" query="retention=" body="$work/retention.xml" attempt=1 pause="$S3_RETRY_SECONDS"
  [[ -n "$lock_mode" && -n "$lock_until" ]] || return 0
  if [[ -n "$version" && "$version" != null ]]; then query+="&versionId=$(s3_uri_encode "$version")"; fi
  printf '<Retention xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Mode>%s</Mode><RetainUntilDate>%s</RetainUntilDate></Retention>' \
    "$lock_mode" "$lock_until" >"$body"
  while ! s3_put "$key" "$query" "$work/s3-${BASHPID}" "$body"; do
    if ((attempt >= S3_UPLOAD_ATTEMPTS)); then
      log "setting the Object Lock retention of ${key} failed after ${attempt} attempt(s)"
      return 1
    fi
    log "setting the Object Lock retention of ${key} failed (attempt ${attempt}/${S3_UPLOAD_ATTEMPTS}); retrying in ${pause}s"
    sleep "$pause"
    attempt=$((attempt + 1))
    pause=$((pause * 2))
  done
  log "locked s3://${S3_BUCKET}/${key} (${lock_mode}) until ${lock_until} on its completed version"
}

# create_multipart KEY [ARGS...]: starts a multipart upload of KEY (ARGS: upload_stream's) and
# prints its upload id.
create_multipart() {
  local key="$1" id out="$work/s3-create"
  shift
  s3_request POST "$key" "uploads=" "$out" -H "Content-Length: 0" "$@" || return 1
  id="$(sed -n 's:.*<UploadId>\([^<]*\)</UploadId>.*:\1:p' -- "$out.body" | head -n 1)"
  [[ -n "$id" ]] || return 1
  printf '%s\n' "$id"
}

# read_part: copies one part (S3_PART_SIZE_MIB MiB, less at the end of the stream) from stdin
# to stdout, reading nothing past it. dd with iflag=fullblock fills each 1 MiB block with as
# many reads as it takes and reads no more than a block (coreutils src/dd.c, iread_fullblock),
# and stops after count blocks. It moves a MiB a call where `head -c` moved BUFSIZ (8 KiB;
# src/head.c, head_bytes): measured on 7 parts of 128 MiB off a pipe here, 0.47 s of system CPU
# against 0.68 s.
read_part() { dd bs=1M count="$S3_PART_SIZE_MIB" iflag=fullblock status=none; }

# read_ahead DIR: reads the stream's first parts into DIR/1, DIR/2, ... while `snapshot status`
# runs (step 2; the key name, and with it the upload, waits for its revision): up to
# S3_UPLOAD_CONCURRENCY of them, as many as upload_stream would keep in scratch anyway, ending
# after a part shorter than S3_PART_SIZE_MIB (the last). Prints each part's number once its
# file is complete: upload_stream (take_part) uploads a part as soon as it is there, while the
# next ones are read. With one part read ahead, the stream stopped once that part and the pipes
# were full and waited for the status (at 1 GB here it answered 1.0 to 1.5 s after the save);
# with the uploads waiting for all of them, the store stood idle 2 to 3 s after the status.
read_ahead() {
  local n
  for ((n = 1; n <= S3_UPLOAD_CONCURRENCY; n++)); do
    read_part >"$1/${n}" || return 1
    printf '%d\n' "$n"
    (($(stat -c %s "$1/${n}") == part_bytes)) || return 0
  done
}

# take_part NUMBER FILE: part NUMBER of the stream, complete in FILE. While the read-ahead job
# runs, the parts it announces (read_ahead_fd), in order; once it has ended, read here from where
# it stopped (after its short last part that reads an empty FILE: the end of the stream).
take_part() {
  local n job="$read_ahead_job"
  if [[ -n "$job" ]]; then
    if read -r -u "$read_ahead_fd" n; then
      [[ "$n" == "$1" && -f "$2" ]] || die "the read-ahead announced part ${n}, not $1"
      return 0
    fi
    exec {read_ahead_fd}<&-
    read_ahead_job=""
    wait "$job" || return 1
  fi
  read_part >"$2"
}

# upload_stream KEY [ARGS...]: uploads stdin (the snapshot's stream) to KEY. ARGS go to curl in
# the request that creates the object, PutObject or CreateMultipartUpload (both take the Object
# Lock headers, object_lock_args). A body shorter than one part (S3_PART_SIZE_MIB) is one
# PutObject; a longer one a multipart upload: parts are read off the stream into scratch, up to
# S3_UPLOAD_CONCURRENCY of them uploading while the next is read, then completed, and the
# completed version gets the run's retention again (relock). When stream_producer holds a
# PID (the process writing the body), it must exit 0 before the object is created, so a producer
# that fails half way never leaves a truncated object: on any failure the multipart upload is
# aborted (no object) and upload_stream fails. Once every byte is stored (after the one
# PutObject; before CompleteMultipartUpload, every part uploaded and the producer done),
# snapshot_stored runs (what it starts in the background runs alongside the completion). A
# completed object whose retention cannot be set fails the upload too (it is one of the run's
# uploads, removed again when the run fails).
upload_stream() {
  local key="$1" dir="$work/parts" part=1 chunk next failed=0 id etag i version producer="${stream_producer:-}"
  local -a pids=() chunks=()
  shift
  mkdir -p -- "$dir"
  chunk="$dir/1"
  # read_part reads no further than one part, so the next call reads on from exactly there. The
  # first parts come from read_ahead_job, into the same files (take_part; the loop below removes
  # each file once its part is up).
  take_part 1 "$chunk" || return 1
  stream_bytes="$(stat -c %s "$chunk")"
  if ((stream_bytes < part_bytes)); then
    # Shorter than one part: one PutObject.
    if [[ -n "$producer" ]] && ! wait "$producer"; then
      rm -f -- "$chunk"
      return 1
    fi
    put_file "$chunk" "$key" "$@" || return 1
    rm -f -- "$chunk"
    snapshot_stored
    return 0
  fi
  record_upload "$key"
  if id="$(create_multipart "$key" "$@")"; then open_multipart=("$key" "$id"); fi
  if ((${#open_multipart[@]} != 2)); then
    log "could not start the multipart upload of ${key}:"
    show_log "$aws_log"
    return 1
  fi
  id="${open_multipart[1]}"
  # Up to S3_UPLOAD_CONCURRENCY parts upload in the background while the next part is read off
  # the stream; at that many, the oldest is waited for (and its chunk removed) before reading on.
  # At the end, or after a failure, every one still running is waited for.
  while true; do
    upload_part "$key" "$id" "$part" "$chunk" >"$dir/${part}.etag" &
    pids+=("$!")
    chunks+=("$chunk")
    next="$dir/$((part + 1))"
    if take_part "$((part + 1))" "$next"; then
      stream_bytes=$((stream_bytes + $(stat -c %s "$next")))
    else
      failed=1
    fi
    while ((${#pids[@]} > 0)) && { ((${#pids[@]} >= S3_UPLOAD_CONCURRENCY || failed)) || [[ ! -s "$next" ]]; }; do
      wait "${pids[0]}" || failed=1
      rm -f -- "${chunks[0]}"
      pids=("${pids[@]:1}")
      chunks=("${chunks[@]:1}")
    done
    if ((failed)); then break; fi
    if [[ ! -s "$next" ]]; then
      rm -f -- "$next"
      break
    fi
    part=$((part + 1))
    chunk="$next"
  done
  if ((failed == 0)) && [[ -n "$producer" ]] && ! wait "$producer"; then failed=1; fi
  if ((failed == 0)); then
    snapshot_stored
    # The ETags are the store's (quoted hex), written into the XML as they came.
    {
      printf '<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
      for ((i = 1; i <= part; i++)); do
        printf '<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>' "$i" "$(<"$dir/${i}.etag")"
      done
      printf '</CompleteMultipartUpload>'
    } >"$dir/parts.xml"
    if s3_request POST "$key" "uploadId=$(s3_uri_encode "$id")" "$dir/complete" \
      --data-binary "@$dir/parts.xml" -H "Content-Type: application/xml"; then
      open_multipart=()
      version="$(s3_header "$dir/complete" x-amz-version-id)"
      rm -f -- "$dir"/*.etag "$dir/parts.xml"
      log "uploaded s3://${S3_BUCKET}/${key} (${part} part(s))"
      if ! relock "$key" "$version"; then
        show_log "$aws_log"
        return 1
      fi
      return 0
    fi
    log "completing the multipart upload of ${key} failed:"
  else
    log "the upload of ${key} failed:"
  fi
  show_log "$aws_log"
  abort_multipart "$key" "$id"
  rm -f -- "$dir"/*
  return 1
}

# ---------------------------------------------------------------------------------------------
# The signing key: ssh-keygen refuses a private key readable by others ("UNPROTECTED PRIVATE
# KEY FILE", sshkey_perm_ok in OpenSSH authfile.c), and a Secret volume's files are 0644 unless
# defaultMode says otherwise, so the key is copied into scratch (umask 077: 0600) first. Checked
# before anything is uploaded: an ed25519 private key without passphrase.

signing_key="$work/signing-key"
cp -- "$BACKUP_SIGNING_KEY_FILE" "$signing_key"
chmod 600 -- "$signing_key"
if ! signing_public="$(ssh-keygen -y -P "" -f "$signing_key" </dev/null 2>"$work/keygen.log")" ||
  [[ "$signing_public" != "ssh-ed25519 "* ]]; then
  config_error "BACKUP_SIGNING_KEY_FILE is not an OpenSSH ed25519 private key without passphrase (${signing_key_help})"
fi

# sign_sidecar SIDECAR: writes SIDECAR.sig, `ssh-keygen -Y sign -n etcd-backup` over the exact
# bytes of SIDECAR (the format `ssh-keygen -Y verify -I etcd-backup -n etcd-backup` checks).
sign_sidecar() {
  rm -f -- "$1.sig"
  if ! ssh-keygen -Y sign -f "$signing_key" -n etcd-backup "$1" </dev/null >"$1.log" 2>&1; then
    show_log "$1.log"
    return 1
  fi
}

# sidecar_file KEY: where KEY's sidecar is written in scratch.
sidecar_file() { printf '%s/%s' "$work" "$(basename -- "$(backup_sidecar "$1")")"; }

# publish_signature SUM_FILE KEY: writes KEY's sidecar "<sha256 hex>  <basename>" (sha256sum's
# format) from SUM_FILE (the hash of the uploaded bytes, computed in the stream), signs it and
# uploads the signature. Exits (die) on failure: it also runs as a background job.
publish_signature() {
  local sum_file="$1" key="$2" hex sidecar
  hex="$(cut -d' ' -f1 "$sum_file")"
  [[ "$hex" =~ ^[0-9a-f]{64}$ ]] || die "no sha256 for ${key}"
  sidecar="$(sidecar_file "$key")"
  printf '%s  %s\n' "$hex" "${key##*/}" >"$sidecar" || die "cannot write the sidecar of ${key}"
  sign_sidecar "$sidecar" || die "signing the sidecar of ${key} failed"
  put_file "$sidecar.sig" "$(backup_signature "$key")" "${object_lock_args[@]}" || die "upload failed"
}

# publish_sidecar KEY: uploads KEY's sidecar (publish_signature wrote it), after its signature
# and its object: the sidecar stays the last word on KEY.
publish_sidecar() {
  put_file "$(sidecar_file "$1")" "$(backup_sidecar "$1")" "${object_lock_args[@]}" || die "upload failed"
}

# ---------------------------------------------------------------------------------------------
# 1. Snapshot from the first healthy endpoint.

start_listing
stamp="$(epoch_stamp "$now_epoch")"
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
  save_started="${EPOCHREALTIME//[!0-9]/}"
  if timeout --kill-after=10 "$ETCD_SNAPSHOT_TIMEOUT" etcdctl --endpoints "$endpoint" "${etcdctl_tls[@]}" \
    --dial-timeout "$ETCD_DIAL_TIMEOUT" snapshot save "$snapshot" >"$work/save.log" 2>&1 && [[ -s "$snapshot" ]]; then
    used_endpoint="$endpoint"
    save_micros=$((${EPOCHREALTIME//[!0-9]/} - save_started))
    break
  fi
  log "snapshot from ${endpoint} failed; trying the next endpoint"
  show_log "$work/save.log"
done
[[ -n "$used_endpoint" ]] || die "no endpoint of ETCD_ENDPOINTS gave a snapshot"
snapshot_bytes="$(stat -c %s "$snapshot")"

# ---------------------------------------------------------------------------------------------
# 2. Verify. A restore checks two things about a snapshot file before it rebuilds a member from
# it (etcd v3.4 clientv3/snapshot/v3_snapshot.go, v3Manager.saveDB; etcdutl's snapshot package
# since 3.5): the sha256 that the server appends to every snapshot stream (etcdserver/api/v3rpc/
# maintenance.go, Snapshot: "send sha", and `snapshot save` writes the stream as is) matches the
# content before it, and the file opens as a bbolt database. The backup checks both without the
# full trial restore it used to run (a second copy of the database written and fsynced, then
# rewritten, the bulk of the run's time): `snapshot status` opens the file with bbolt, runs
# bbolt's consistency check over every page (tx.Check: "snapshot file integrity check failed")
# and walks every key (it gives the revision for the key name; it runs while the stream's first
# part is read, step 3, and the upload starts only once it passed); the trailing sha256 is
# recomputed from the same file while the compressed stream is uploaded, and a mismatch aborts
# the upload before the object exists. What a trial restore would add is
# exercising the restore tool itself, which the restore drills do.

# The sha256 that `snapshot save` appended is moved into a file of its own (restore's test: a
# size of 32 past a 512-byte boundary carries the hash), and the snapshot file truncated by
# those 32 bytes: openssl then hashes the database in one read of the file, not through a pipe
# (for a 1.1 GB file here `head -c | openssl` took 1.2 s of CPU, `openssl dgst FILE` 0.9 s),
# and the stream packs the two files one after the other. zstd writes a frame per file, and the
# decompressed content of concatenated frames is their concatenation (zstd's format,
# doc/zstd_compression_format.md, "Frames"; RFC 8878 section 3.1), so the object still unpacks
# to exactly the file `snapshot save` wrote, the hash at its end.
if ((snapshot_bytes % 512 != 32)); then
  die "the snapshot has no integrity hash (${snapshot_bytes} bytes is not 32 past a 512-byte boundary)"
fi
snapshot_hash_file="$work/snapshot.hash"
if ! tail -c 32 -- "$snapshot" >"$snapshot_hash_file" || ! truncate -s -32 -- "$snapshot"; then
  die "cannot move the snapshot's sha256 out of ${snapshot}"
fi

# snapshot_hash_ok: the snapshot file (its last 32 bytes moved out) hashes to the bytes in
# snapshot_hash_file.
snapshot_hash_ok() {
  local expected actual
  expected="$(od -An -v -tx1 -- "$snapshot_hash_file" | tr -d ' \n')"
  actual="$(sha256_hex "$snapshot")" || actual="(none)"
  if [[ "$expected" != "$actual" ]]; then
    log "the snapshot's integrity hash does not match its content (appended ${expected}, computed ${actual})"
    return 1
  fi
}

# ---------------------------------------------------------------------------------------------
# 3. Stream: zstd, age (unless BACKUP_ENCRYPTION=none), sha256 of the bytes uploaded, upload. No
# intermediate file but the upload parts. The stream starts as soon as the snapshot is saved: its
# first parts are read into scratch while `snapshot status` runs (the key name needs the revision
# only when the upload begins, after those parts).

recipients_file="$work/recipients"
if ((${#recipients[@]} > 0)); then printf '%s\n' "${recipients[@]}" >"$recipients_file"; fi

# pack SUM_FILE [FILE...]: the FILEs one after the other (stdin without one) through zstd, then
# age unless BACKUP_ENCRYPTION=none, to stdout, and the sha256 of what it writes into SUM_FILE
# (sha256_hex reads a copy off a FIFO: tee). zstd runs on one thread (--single-thread: no
# worker threads, no copies of its input into jobs for them): on a 1.1 GB file here 2.5 s of CPU
# where -T0 took 3.1 s on 2 cores, for the same output; the stream is paced by its upload, and
# the job leaves etcd and the API server on the node their other cores.
pack() {
  local sum_file="$1" fifo="$1.fifo" sum_pid status=0
  shift
  rm -f -- "$fifo"
  mkfifo -- "$fifo"
  sha256_hex <"$fifo" >"$sum_file" &
  sum_pid=$!
  if [[ "$BACKUP_ENCRYPTION" == age ]]; then
    zstd -q --single-thread "-${BACKUP_ZSTD_LEVEL}" -c "$@" | age -R "$recipients_file" | tee -- "$fifo" || status=1
  else
    zstd -q --single-thread "-${BACKUP_ZSTD_LEVEL}" -c "$@" | tee -- "$fifo" || status=1
  fi
  wait "$sum_pid" || status=1
  rm -f -- "$fifo"
  return "$status"
}

mkfifo -- "$work/stream.fifo"
# The producer: the stream, and next to it the check of the snapshot's own hash; both must
# succeed before upload_stream creates the object.
(
  snapshot_hash_ok &
  check_pid=$!
  status=0
  pack "$work/object.sum" "$snapshot" "$snapshot_hash_file" </dev/null || status=1
  wait "$check_pid" || status=1
  exit "$status"
) >"$work/stream.fifo" 2>"$work/pack.log" &
stream_producer=$!
# The first parts, read off the stream alongside the status (upload_stream takes them over).
exec {stream_fd}<"$work/stream.fifo"
mkdir -p -- "$work/parts"
mkfifo -- "$work/read-ahead.fifo"
read_ahead "$work/parts" <&"$stream_fd" >"$work/read-ahead.fifo" &
read_ahead_job=$!
exec {read_ahead_fd}<"$work/read-ahead.fifo"

# Step 2's `snapshot status`, meanwhile. When it fails, the run ends before anything is uploaded.
if ! "$snapshot_tool" snapshot status "$snapshot" -w json >"$work/status.json" 2>"$work/status.log"; then
  show_log "$work/status.log"
  die "${snapshot_tool} snapshot status failed on the snapshot"
fi
revision="$(jq -r '.revision' "$work/status.json")"
hash="$(jq -r '.hash' "$work/status.json")"
total_keys="$(jq -r '.totalKey' "$work/status.json")"
[[ "$revision" =~ ^[0-9]+$ ]] || die "snapshot status gave no revision"
if [[ "$total_keys" == 0 ]]; then log "WARNING: the snapshot holds no key"; fi
log "snapshot status with ${snapshot_tool}: revision ${revision}, hash ${hash}, ${total_keys} keys, ${snapshot_bytes} bytes"

base="${stamp}-r${revision}.db${suffix}"
key="${S3_PREFIX}/etcd/${base}"
lock_args

# The PKI (a few KB) and the signatures go up once every byte of the snapshot is stored, while
# its multipart upload is completed and relocked (not earlier: every object is locked, so what a
# run uploads before it fails may have to stay until its lock ends).
pki_key=""
if [[ ! -d "$PKI_DIR" ]]; then
  log "WARNING: PKI_DIR ${PKI_DIR} does not exist; this backup has no PKI"
elif [[ "$BACKUP_ENCRYPTION" == none && "$BACKUP_PKI_UNENCRYPTED" == skip ]]; then
  log "WARNING: BACKUP_ENCRYPTION=none: the PKI (private CA keys) is NOT backed up; set BACKUP_PKI_UNENCRYPTED=upload to upload it in the clear"
else
  if [[ "$BACKUP_ENCRYPTION" == none ]]; then
    log "WARNING: uploading the PKI (private CA keys) UNENCRYPTED (BACKUP_PKI_UNENCRYPTED=upload)"
  fi
  pki_key="${S3_PREFIX}/pki/${stamp}.tar${suffix}"
fi
pki_job=""
signature_job=""

# snapshot_stored: run by upload_stream once every byte of the snapshot is stored: starts, in the
# background, the PKI's upload (packed into scratch, put, signed, its sidecar put) and the
# snapshot's signature.
snapshot_stored() {
  # The snapshot file has been read whole (the producer is done): it goes now, alongside the
  # completion (unlinking a 1.1 GB file took 0.23 s here, on ext4).
  rm -f -- "$snapshot" &
  if [[ -n "$pki_key" ]]; then
    (
      tar -C "$PKI_DIR" -cf - . 2>"$work/pki-tar.log" | pack "$work/pki.sum" >"$work/pki.body" 2>"$work/pki-pack.log" || {
        show_log "$work/pki-tar.log"
        show_log "$work/pki-pack.log"
        die "packing ${PKI_DIR} failed"
      }
      put_file "$work/pki.body" "$pki_key" "${object_lock_args[@]}" ||
        die "upload failed: ${PKI_DIR} to s3://${S3_BUCKET}/${pki_key}"
      publish_signature "$work/pki.sum" "$pki_key"
      publish_sidecar "$pki_key"
    ) &
    pki_job=$!
    upload_jobs+=("$pki_job")
  fi
  publish_signature "$work/object.sum" "$key" &
  signature_job=$!
  upload_jobs+=("$signature_job")
}

upload_stream "$key" "${object_lock_args[@]}" <&"$stream_fd" || {
  show_log "$work/pack.log"
  die "upload failed: the snapshot's stream to s3://${S3_BUCKET}/${key}"
}
stream_producer=""
exec {stream_fd}<&-
size="$stream_bytes"
sha256="$(cut -d' ' -f1 "$work/object.sum")"
log "snapshot verified (status and its sha256) and uploaded: ${size} bytes, sha256 ${sha256}"

# ---------------------------------------------------------------------------------------------
# 4. The snapshot's sidecar, last (the completion marker): after its signature and after the
# PKI's object, signature and sidecar. Every object is under the backup's Object Lock. The
# objects are exactly what was sent: CompleteMultipartUpload assembles the parts named by their
# ETags, and put-object bodies go with their Content-Length.

if [[ -z "$signature_job" ]] || ! wait "$signature_job"; then
  die "the signature of s3://${S3_BUCKET}/${key} was not uploaded"
fi
if [[ -n "$pki_job" ]] && ! wait "$pki_job"; then
  die "the PKI backup failed: ${PKI_DIR} to s3://${S3_BUCKET}/${pki_key}"
fi
publish_sidecar "$key"
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

# retention: keeps the union of the tiers (see --help) over the complete backups, deletes every
# other backup (its sidecar, signature and snapshot, and the PKI of its stamp with its sidecar
# and signature), and leftovers without a sidecar older than the BACKUP_KEEP_ALL_HOURS tier. The
# first complete backup of an hour (day) represents it, as lock_args assumed when it was
# uploaded.
retention() {
  local keys all_keys pki_keys k b stamp_of until complete=() kept=0 newest=0
  local cut_all cut_hourly cut_daily
  cut_all="$(epoch_stamp $((now_epoch - all_seconds)))"
  cut_hourly="$(epoch_stamp $((now_epoch - hourly_seconds)))"
  cut_daily="$(epoch_stamp $((now_epoch - daily_seconds)))"
  # The run's listing (taken before the upload) and this run's own uploads serve all three
  # questions below: the current keys under etcd/ and every key with any version or delete
  # marker under etcd/ and pki/. Where it failed, one plain listing per prefix now.
  local own
  own="$(<"$uploads_file")"
  if listing_ready; then
    keys="$(listed_keys "${S3_PREFIX}/etcd/" current)" || return 1
    all_keys="$(listed_keys "${S3_PREFIX}/etcd/" all)" || return 1
    pki_keys="$(listed_keys "${S3_PREFIX}/pki/" all)" || return 1
  else
    keys="$(list_keys "${S3_PREFIX}/etcd/")" || return 1
    all_keys="$keys"
    pki_keys="$(list_keys "${S3_PREFIX}/pki/")" || return 1
  fi
  keys="$(keys_under "${S3_PREFIX}/etcd/" <<<"$keys"$'\n'"$own")"
  all_keys="$(keys_under "${S3_PREFIX}/etcd/" <<<"$all_keys"$'\n'"$own")"
  pki_keys="$(keys_under "${S3_PREFIX}/pki/" <<<"$pki_keys"$'\n'"$own")"
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
  while IFS= read -r k; do
    [[ -n "$k" ]] || continue
    b="${k##*/}"
    stamp_of="${b%%[-.]*}"
    [[ "$stamp_of" =~ ^[0-9]{8}T[0-9]{6}Z$ ]] || continue
    if [[ ! "$stamp_of" > "$cut_all" && -z "${keep_stamp[$stamp_of]:-}" ]]; then doomed["$k"]=1; fi
  done <<<"$all_keys"$'\n'"$pki_keys"
  # Sidecars first: a backup never looks complete while its snapshot (or PKI) is being deleted;
  # then signatures (a sidecar never stands without its signature); then the objects. One key a
  # line: keys are never split or globbed.
  local -a sidecars=() signatures=() objects=()
  for k in "${!doomed[@]}"; do
    if is_backup_sidecar "$k"; then
      sidecars+=("$k")
    elif is_backup_signature "$k"; then
      signatures+=("$k")
    else
      objects+=("$k")
    fi
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
    printf '%s\n' "${signatures[@]}" | sort -r
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
  --argjson seconds "$((SECONDS - start_seconds))" --argjson saveMillis "$((save_micros / 1000))" \
  '{key: $key, revision: $revision, hash: $hash, totalKeys: $totalKeys, snapshotBytes: $snapshotBytes,
    size: $size, sha256: $sha256, endpoint: $endpoint, encryption: $encryption,
    pkiKey: (if $pkiKey == "" then null else $pkiKey end), deleted: $deleted, locked: $locked,
    seconds: $seconds, snapshotSeconds: ($saveMillis / 1000)}'
exit "$retention_status"
