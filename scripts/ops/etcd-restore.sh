#!/usr/bin/env bash
# Restores etcd from the backups etcd-backup.sh writes: fetch and verify a snapshot (or the PKI
# archive), restore one member, or orchestrate the restore of a whole kubeadm control plane over
# SSH. Never prints a secret: no xtrace, the age identity is only passed to age as a file,
# credentials reach aws only through its environment. See --help.
set -euo pipefail
umask 077
export LC_ALL=C

readonly SCRIPT_NAME="etcd-restore"
readonly LOG_TIMESTAMPS=utc
readonly BUMP_REVISION=1000000000
# The project's helper library: lib.sh beside this script (a copy for operators), else in the
# repository (scripts/node/lib.sh). On a node (`node`, see on_node) this script runs from stdin
# with the library streamed ahead of it, so it is defined already.
if ! declare -F complete_backups >/dev/null; then
  lib="$(dirname "${BASH_SOURCE[0]}")/lib.sh"
  [[ -f "$lib" ]] || lib="$(dirname "${BASH_SOURCE[0]}")/../node/lib.sh"
  # shellcheck source-path=SCRIPTDIR source=../node/lib.sh
  source "$lib"
fi

usage() {
  cat <<'EOF'
Usage:
  etcd-restore.sh fetch     [--key KEY] --out FILE [--signing-public-key FILE] [--allow-unsigned]
  etcd-restore.sh fetch-pki [--key KEY] --out DIR [--signing-public-key FILE] [--allow-unsigned]
  etcd-restore.sh member    --snapshot FILE --name NAME --data-dir DIR --initial-cluster N1=URL,N2=URL,...
                            --peer-url URL --cluster-token TOKEN [--move-aside]
  etcd-restore.sh cluster   --node NAME=IP [--node NAME=IP ...] [--key KEY | --snapshot FILE]
                            [--log FILE] [--ssh-user USER] [--ssh-key FILE] [--sudo]
                            [--remote-dir DIR] [--timeout SECONDS] [--cluster-token TOKEN]
                            [--node-etcdutl COMMAND] [--members-gone NAME,...]
                            [--signing-public-key FILE] [--allow-unsigned]
  etcd-restore.sh seed      --node NAME=IP --peer-url URL --endpoint-url URL [--peer IP ...]
                            [--key KEY|latest] [--init-config PATH | --etcd-image IMAGE | --node-etcdutl C]
                            [--ssh-user USER] [--ssh-key FILE | --ssh-key-stdin] [--sudo]
                            [--remote-dir DIR] [--data-dir DIR] [--log FILE] [--timeout SECONDS]
                            [--signing-public-key FILE] [--allow-unsigned]
  etcd-restore.sh --help

Every backup object KEY is checked before anything else: the signature KEY.sha256.sig over the
sidecar KEY.sha256 (OpenSSH `ssh-keygen -Y verify`, identity and namespace etcd-backup) with the
signer's public key (--signing-public-key FILE, else BACKUP_SIGNING_PUBLIC_KEY holding the
"ssh-ed25519 AAAA..." line), then the object's sha256 against the sidecar. A backup without a
signature is refused unless --allow-unsigned (backups made before signing; a WARNING); a
signature that does not verify is always refused.

fetch      Downloads the newest COMPLETE backup (one whose .sha256 sidecar exists) under
           <S3_PREFIX>/etcd/, or KEY (a full key, or a basename under <S3_PREFIX>/etcd/); checks
           the sidecar's signature, then in one pass downloads the object, hashes it, decrypts
           it (.age; BACKUP_AGE_IDENTITY_FILE) and decompresses it into scratch; a sha256 other
           than the sidecar's is refused and leaves no output, else an object not encrypted to
           that identity or that does not decrypt (corrupt) is refused saying which; runs
           `snapshot status` and checks that the revision matches the key's -r<revision>. FILE
           must not exist. Prints one JSON line: key, revision, hash, totalKeys, sha256 (of the
           object), snapshotSha256 (of FILE), out.
fetch-pki  The same for the PKI archive: KEY is a key under <S3_PREFIX>/pki/ or a snapshot key
           (its PKI has the same stamp); default the PKI of the newest complete snapshot (the
           backup fetch picks), not merely the newest archive with a sidecar. DIR must be
           missing or empty; it is created 0700 and the archive is extracted into it.
member     Restores one member's data dir from FILE. A non-empty DIR is refused unless
           --move-aside, which keeps it as DIR.pre-restore-<UTC stamp>. Uses etcdutl when on
           PATH, else etcdctl, and adds --bump-revision 1000000000 --mark-compacted when that
           tool's `snapshot restore --help` lists them (it logs which).
cluster    Restores every control-plane node of a kubeadm cluster from ONE snapshot, over SSH,
           as root on each node. --node NAME=IP is repeated or comma-separated: NAME is the
           node's etcd member name (kubeadm: the node name), IP its SSH address. Steps (each
           appended as a JSON line {"time","step","node","status","detail"} to --log FILE,
           default ./etcd-restore-<stamp>.jsonl; stops at the first failure, naming the node and
           step; the log is uploaded to <S3_PREFIX>/restore-log/<stamp>.jsonl at the end, also
           after a failure, best effort):
             fetch          fetch + verify once, locally (or --snapshot FILE, checked with status)
             inspect        per node: read --name, --data-dir, --initial-advertise-peer-urls and
                            --advertise-client-urls from /etc/kubernetes/manifests/etcd.yaml
                            (the restored membership matches what kubeadm starts)
             membership     the snapshot's members (read from its "members" bucket by
                            etcd-snapshot-members.py beside this script; python3) and the
                            running cluster's (`member list` through the first node whose etcd
                            answers) must all be --node names, except members named gone for
                            good with --members-gone NAME,... (a member left out would keep
                            running the old cluster); refused before any node is changed
             copy           per node: scp the snapshot to --remote-dir, check its sha256 there
             stop-apiserver per node: move kube-apiserver.yaml (and kube-controller-manager.yaml,
                            kube-scheduler.yaml) to /etc/kubernetes/manifests.pre-restore-<stamp>/
             stop-etcd      per node: move etcd.yaml there too
             wait-stopped   per node: wait until crictl lists no running kube-apiserver or etcd
             restore        per node, after ALL are stopped: `member --move-aside` with the same
                            snapshot, a new cluster token and the full membership; the old data
                            dir stays as <data-dir>.pre-restore-<stamp>
             start-etcd     per node, after ALL are restored: etcd.yaml back
             etcd-healthy   wait until `etcdctl endpoint health --cluster` passes
             start-apiserver per node: the API server (then controller-manager, scheduler) back
             readyz         per node: wait until https://127.0.0.1:<secure-port>/readyz is ok
           The node side runs this same script (piped to `bash -s`). etcdutl there: the
           command in RESTORE_NODE_ETCDUTL if set, else etcdutl on the node's PATH, else the
           node's etcd image (image: in etcd.yaml) through
             ctr -n k8s.io run --rm --net-host --mount type=bind,src=/var/lib,dst=/var/lib,options=rbind:rw IMAGE ID etcdutl ...
           (so --remote-dir and the data dir must be under /var/lib). etcdctl there: etcdctl on
           PATH, else `crictl exec` into the running etcd container.
seed       Restore into new servers (docs/runbooks/etcd-restore.md): makes the ONE new node
           --node NAME=IP ready for kubeadm-init.sh to start the cluster from a backup, when no
           member of the cluster answers. Steps (register as for cluster): probe (on the node,
           lib.sh member_answers: each --peer's /readyz and etcd port, --endpoint-url; if one
           answers, nothing is done and it prints {"restored": false, ...}); state (a node with
           the member marker or a static pod manifest is refused; one seeded already with this
           key is done: {"restored": true, "already": true}); fetch and fetch-pki (as above,
           KEY's prefix for the PKI); copy the snapshot and an archive of the shared PKI files
           (ca, sa, front-proxy-ca, etcd/ca; sha256 checked on the node); install-pki into
           /etc/kubernetes/pki (refused when a ca.crt of another cluster is there); etcd-image
           (the etcd image of `kubeadm config images list --config PATH`, or --etcd-image,
           pulled when missing, for etcdutl through ctr; nothing with --node-etcdutl or etcdutl
           on the node's PATH); restore (--data-dir, default /var/lib/etcd: this member alone,
           --peer-url, a new token); record /var/lib/kubernetes-node/restored (key, sha256,
           snapshotSha256, revision, completed), last.
  --ssh-key-stdin    seed: read the SSH private key from stdin (kept in a 0600 file of a scratch
                     directory, removed on exit; new host keys accepted into a scratch known_hosts)
  --ssh-user USER    default root; with another user add --sudo (runs `sudo -n bash -s`)
  --ssh-key FILE     passed to ssh and scp as -i FILE
  --remote-dir DIR   where the snapshot goes on each node (default /var/lib/etcd-restore)
  --timeout SECONDS  limit of each wait (default 600; RESTORE_TIMEOUT)
  --cluster-token T  the new cluster token (default etcd-restore-<stamp>-<random>)
  --node-etcdutl C   run etcdutl on the nodes as command C (sets RESTORE_NODE_ETCDUTL there),
                     e.g. /opt/etcd/etcdutl
  --members-gone N,...  members of the snapshot or the running cluster that are gone for good
                     and are left out of the restored cluster (see membership)

Environment:
  S3_ENDPOINT, S3_BUCKET, S3_PREFIX, S3_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
                     as for etcd-backup.sh; required by fetch, fetch-pki and cluster (cluster
                     with --snapshot uses them only to upload the log).
  AWS_CONFIG_FILE    optional; default a scratch config with path-style addressing.
  S3_TIMEOUT         seconds one aws call may take (default 1800).
  BACKUP_AGE_IDENTITY_FILE  age identity (private key) file; required to fetch .age objects.
  BACKUP_SIGNING_PUBLIC_KEY the backup signer's OpenSSH public key line (or --signing-public-key).
  RESTORE_SSH        ssh command (default "ssh -o BatchMode=yes"), split on spaces.
  RESTORE_SCP        scp command (default "scp -o BatchMode=yes -q"), split on spaces.
  RESTORE_TIMEOUT    default of --timeout.
  RESTORE_WORK_DIR   local scratch parent (default $TMPDIR or /tmp; fetch uses FILE's directory).
  RESTORE_NODE_ETCDUTL  node side: etcdutl command to use instead of the detection above
                     (set through --node-etcdutl; ssh does not forward the environment).

Exit status: 0 done; 1 refused or a step failed; 2 usage or configuration error.
EOF
}

cleanup_paths=()
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  local status=$? p
  local -a pids
  trap - EXIT
  # Our own background jobs (downloads) end with the run.
  mapfile -t pids < <(jobs -p)
  if ((${#pids[@]} > 0)); then kill -- "${pids[@]}" 2>/dev/null || true; fi
  if declare -F on_exit >/dev/null; then on_exit "$status" || true; fi
  for p in "${cleanup_paths[@]}"; do rm -rf -- "$p"; done
  exit "$status"
}
cleanup_on_exit cleanup

snapshot_tool() { if command -v etcdutl >/dev/null; then echo etcdutl; else echo etcdctl; fi; }

# ---------------------------------------------------------------------------------------------
# S3: the client and the complete-backup rule are lib.sh's, shared with etcd-backup.sh.

# s3_setup: checks the object storage variables and sets aws up, in a scratch directory.
s3_setup() {
  local dir
  s3_check_config
  require_tools aws openssl
  dir="$(mktemp -d "${TMPDIR:-/tmp}/etcd-restore-aws.XXXXXX")"
  cleanup_paths+=("$dir")
  s3_client_setup "$dir"
}

# newest_complete PREFIX PATTERN: the newest complete backup (lib.sh: complete_backups) under
# PREFIX whose key matches the extended regex PATTERN.
newest_complete() {
  local keys complete
  keys="$(list_keys "$1")" || {
    show_log "$aws_log"
    die "cannot list s3://${S3_BUCKET}/$1"
  }
  complete="$(complete_backups "$keys" "$2")"
  [[ -n "$complete" ]] || return 1
  printf '%s\n' "${complete%%$'\n'*}"
}

# Signatures: the backup job signs every sidecar KEY.sha256 with `ssh-keygen -Y sign -n
# etcd-backup`, the signature at KEY.sha256.sig. signing_key is the signer's public key line
# (--signing-public-key FILE or BACKUP_SIGNING_PUBLIC_KEY); allow_unsigned (--allow-unsigned)
# accepts a backup without a signature (made before signing existed) with a WARNING. A signature
# that is there but does not verify is refused in every case.
signing_key=""
allow_unsigned=false
readonly SIGNATURE_NAMESPACE="etcd-backup"
readonly SIGNER_IDENTITY="etcd-backup"

# signing_setup FILE: reads the signer's public key (FILE, else BACKUP_SIGNING_PUBLIC_KEY).
signing_setup() {
  local file="$1"
  if [[ -n "$file" ]]; then
    [[ -r "$file" ]] || usage_error "--signing-public-key ${file} is not a readable file"
    signing_key="$(grep -m 1 -v '^[[:space:]]*\(#\|$\)' -- "$file" || true)"
  else
    signing_key="${BACKUP_SIGNING_PUBLIC_KEY:-}"
  fi
  if [[ -z "$signing_key" ]]; then
    "$allow_unsigned" ||
      usage_error "the backup signer's public key is required: --signing-public-key FILE or BACKUP_SIGNING_PUBLIC_KEY (or --allow-unsigned for backups made before signing)"
    log "WARNING: no signing public key and --allow-unsigned: backup signatures are NOT checked"
    return 0
  fi
  [[ "$signing_key" =~ ^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521))\ [A-Za-z0-9+/=]+(\ .*)?$ ]] ||
    usage_error "the signing public key is not an OpenSSH public key line (ssh-ed25519 AAAA...)"
  require_tools ssh-keygen
}

# fetch_signature SIDECAR_KEY DIR: downloads SIDECAR_KEY.sig to DIR/sidecar.sig, or, when the
# bucket lists no such key, writes DIR/unsigned. Listed first: only a signature that is not there
# makes a backup unsigned; one that is listed but does not download is an error (a failed download
# must not pass for "unsigned"). Exits (die) on failure: it runs as a background job.
fetch_signature() {
  local sidecar="$1" dir="$2" listed
  listed="$(list_keys "${sidecar}.sig")" || {
    show_log "$aws_log"
    die "cannot list s3://${S3_BUCKET}/${sidecar}.sig"
  }
  if ! grep -qxF -- "${sidecar}.sig" <<<"$listed"; then
    : >"$dir/unsigned"
    return 0
  fi
  s3 s3 cp --only-show-errors "s3://${S3_BUCKET}/${sidecar}.sig" "$dir/sidecar.sig" >>"$aws_log" 2>&1 || {
    show_log "$aws_log"
    die "cannot download s3://${S3_BUCKET}/${sidecar}.sig"
  }
}

# verify_signature SIDECAR_KEY DIR: checks DIR/sidecar.sig (fetch_signature's) over DIR/sidecar
# with the signer's key (ssh-keygen -Y verify, namespace etcd-backup); dies unless it verifies,
# except for a backup with no signature at all under --allow-unsigned (a WARNING).
verify_signature() {
  local sidecar="$1" dir="$2"
  [[ -n "$signing_key" ]] || {
    log "WARNING: the signature of ${sidecar} is not checked (--allow-unsigned, no signing key)"
    return 0
  }
  printf '%s namespaces="%s" %s\n' "$SIGNER_IDENTITY" "$SIGNATURE_NAMESPACE" "$signing_key" >"$dir/allowed_signers"
  if [[ -e "$dir/unsigned" ]]; then
    if "$allow_unsigned"; then
      log "WARNING: ${sidecar} has no signature (${sidecar}.sig); accepted because of --allow-unsigned"
      return 0
    fi
    die "${sidecar} has no signature (${sidecar}.sig): refusing an unsigned backup (--allow-unsigned accepts backups made before signing)"
  fi
  ssh-keygen -Y verify -f "$dir/allowed_signers" -I "$SIGNER_IDENTITY" -n "$SIGNATURE_NAMESPACE" \
    -s "$dir/sidecar.sig" <"$dir/sidecar" >"$dir/verify.log" 2>&1 || {
    show_log "$dir/verify.log"
    die "the signature of ${sidecar} does not verify with the signing public key: refusing (tampered, or signed by another key)"
  }
  log "signature of ${sidecar} verified (signer ${SIGNER_IDENTITY})"
}

# fetch_verified KEY DIR OUT: KEY's sidecar and its signature into DIR, checked (the signature
# with verify_signature, the sidecar's name); then KEY itself in one pass: downloaded, hashed
# (sha256_hex) and unpacked (age -d for .age, zstd -d) into OUT, no copy of the object on disk.
# OUT counts only once the whole object's sha256 is the sidecar's: otherwise (and on any
# failure) OUT is removed and the run dies, the checksum named before what age or zstd said.
# Sets object_sha256.
fetch_verified() {
  local key="$1" dir="$2" out="$3" base expected name sidecar signature_job="" fifo sum_pid
  local -a status
  base="${key##*/}"
  sidecar="$(backup_sidecar "$key")"
  if [[ "$key" == *.age ]]; then
    [[ -n "${BACKUP_AGE_IDENTITY_FILE:-}" ]] ||
      usage_error "BACKUP_AGE_IDENTITY_FILE is required to decrypt ${base}"
    [[ -r "$BACKUP_AGE_IDENTITY_FILE" ]] || die "BACKUP_AGE_IDENTITY_FILE is not a readable file"
    command -v age >/dev/null || die "age not found on PATH"
  fi
  # The sidecar and its signature download at once (each aws call costs the CLI's start).
  if [[ -n "$signing_key" ]]; then
    fetch_signature "$sidecar" "$dir" &
    signature_job=$!
  fi
  s3 s3 cp --only-show-errors "s3://${S3_BUCKET}/${sidecar}" "$dir/sidecar" >>"$aws_log" 2>&1 || {
    show_log "$aws_log"
    die "cannot download s3://${S3_BUCKET}/${sidecar}: no sidecar means no complete backup"
  }
  if [[ -n "$signature_job" ]] && ! wait "$signature_job"; then
    die "cannot fetch the signature of ${sidecar}"
  fi
  verify_signature "$sidecar" "$dir"
  read -r expected name <"$dir/sidecar" || true
  [[ "$expected" =~ ^[0-9a-f]{64}$ ]] || die "the sidecar ${sidecar} holds no sha256"
  [[ "${name#\*}" == "$base" ]] || die "the sidecar ${sidecar} names '${name}', not '${base}'"
  # One pass: tee -p (GNU: a closed pipe is not an error) keeps the download and its hash going
  # to the end even when age or zstd stop early, so a damaged object is always named by its
  # checksum.
  fifo="$dir/object.fifo"
  mkfifo -- "$fifo"
  sha256_hex <"$fifo" >"$dir/object.sum" &
  sum_pid=$!
  s3 s3 cp --only-show-errors "s3://${S3_BUCKET}/${key}" - 2>"$dir/object.log" |
    tee -p -- "$fifo" | unpack_stream "$key" "$out" "$dir" && status=(0 0 0) || status=("${PIPESTATUS[@]}")
  wait "$sum_pid" || true
  if ((status[0] != 0)); then
    rm -f -- "$out"
    show_log "$dir/object.log"
    die "cannot download s3://${S3_BUCKET}/${key}"
  fi
  object_sha256="$(<"$dir/object.sum")"
  if [[ "$object_sha256" != "$expected" ]]; then
    rm -f -- "$out"
    die "checksum mismatch for ${key}: the sidecar says ${expected}, the object has ${object_sha256:-(none)}; refusing (corrupt or tampered object)"
  fi
  log "sha256 of ${key} matches its sidecar"
  if ((status[1] != 0 || status[2] != 0)); then
    rm -f -- "$out"
    unpack_failure "$key" "$dir"
  fi
}

# unpack_stream KEY OUT DIR: stdin (KEY's bytes) through age -d (for .age) and zstd -d into OUT.
# Writes the exit statuses of age (0 without age) and zstd to DIR/unpack.status, their messages
# to DIR/age.log and DIR/zstd.log; fails when either failed. What failed is told by
# unpack_failure, once the object's checksum is known to be right.
unpack_stream() {
  local key="$1" out="$2" dir="$3"
  local -a status
  if [[ "$key" == *.age ]]; then
    age -d -i "$BACKUP_AGE_IDENTITY_FILE" 2>"$dir/age.log" | zstd -q -d -o "$out" 2>"$dir/zstd.log" &&
      status=(0 0) || status=("${PIPESTATUS[@]}")
  else
    : >"$dir/age.log"
    zstd -q -d -o "$out" 2>"$dir/zstd.log" && status=(0 0) || status=(0 "$?")
  fi
  printf '%s %s\n' "${status[@]}" >"$dir/unpack.status"
  ((status[0] == 0 && status[1] == 0))
}

# unpack_failure KEY DIR: dies with what made unpack_stream fail.
unpack_failure() {
  local base="${1##*/}" dir="$2" age_status=1
  read -r age_status _ <"$dir/unpack.status" || true
  if [[ "$age_status" != 0 ]]; then
    show_log "$dir/age.log"
    # age exits 1 for every failure; the message tells them apart (age v1.1.1, age.go: Decrypt
    # returns NoIdentityMatchError "no identity matched any of the recipients" when no identity
    # unwraps a recipient stanza; "bad header MAC", "failed to read header: ...", malformed
    # stanzas and internal/stream/stream.go's "failed to decrypt and authenticate payload
    # chunk" mean the file itself is damaged).
    if grep -q 'no identity matched any of the recipients' -- "$dir/age.log"; then
      die "cannot decrypt ${base}: no identity in BACKUP_AGE_IDENTITY_FILE matches its recipients (wrong identity?: use the identity of one of the backup's age recipients); refusing"
    fi
    die "cannot decrypt ${base}: the object is corrupt or tampered (age: $(tail -n 1 "$dir/age.log" | cut -c1-200)); its sidecar matched, so it was damaged before the sidecar was made or both were altered; refusing"
  fi
  show_log "$dir/zstd.log"
  die "cannot decompress ${base}"
}

# snapshot_status FILE: `snapshot status -w json` of FILE, or dies.
snapshot_status() {
  local tool
  tool="$(snapshot_tool)"
  "$tool" snapshot status "$1" -w json 2>"$1.status.log" || {
    show_log "$1.status.log"
    die "${tool} snapshot status failed on ${1}: not a valid snapshot"
  }
  rm -f -- "$1.status.log"
}

# ---------------------------------------------------------------------------------------------
# fetch

# fetch_snapshot KEY OUT: sets fetched_key, fetched_json.
fetch_snapshot() {
  local key="$1" out="$2" dir status revision
  [[ ! -e "$out" ]] || die "--out ${out} exists; refusing to overwrite it"
  [[ -d "$(dirname -- "$out")" ]] || die "the directory of --out ${out} does not exist"
  if [[ -z "$key" ]]; then
    key="$(newest_complete "${S3_PREFIX}/etcd/" '\.db\.zst(\.age)?$')" ||
      die "no complete backup (snapshot with a .sha256 sidecar) under s3://${S3_BUCKET}/${S3_PREFIX}/etcd/"
    log "newest complete backup: ${key}"
  elif [[ "$key" != */* ]]; then
    key="${S3_PREFIX}/etcd/${key}"
  fi
  [[ "$key" =~ -r([0-9]+)\.db\.zst(\.age)?$ ]] || die "${key} is not a snapshot key (<stamp>-r<revision>.db.zst[.age])"
  local want_revision="${BASH_REMATCH[1]}"
  dir="$(mktemp -d "$(dirname -- "$out")/.etcd-fetch.XXXXXX")"
  cleanup_paths+=("$dir")
  fetch_verified "$key" "$dir" "$dir/snapshot.db"
  status="$(snapshot_status "$dir/snapshot.db")"
  revision="$(jq -r .revision <<<"$status")"
  [[ "$revision" == "$want_revision" ]] ||
    die "the snapshot's revision ${revision} is not the key's r${want_revision}; refusing"
  local snapshot_sha256
  snapshot_sha256="$(sha256_hex "$dir/snapshot.db")" || die "cannot hash the snapshot"
  mv -- "$dir/snapshot.db" "$out"
  rm -rf -- "$dir"
  log "fetched ${key} to ${out}: revision ${revision}, $(jq -r .totalKey <<<"$status") keys"
  fetched_key="$key"
  fetched_json="$(jq -c --arg key "$key" --arg sha256 "$object_sha256" --arg snapshotSha256 "$snapshot_sha256" \
    --arg out "$out" '{key: $key, revision, hash: (.hash | tostring), totalKeys: .totalKey, sha256: $sha256,
      snapshotSha256: $snapshotSha256, out: $out}' <<<"$status")"
}

fetch_print() {
  fetch_snapshot "$@"
  printf '%s\n' "$fetched_json"
}

cmd_fetch() {
  local key="" out="" signing_file=""
  parse_flags --non-empty --key=key --out=out --signing-public-key=signing_file \
    --allow-unsigned=allow_unsigned=true -- "$@"
  [[ -n "$out" ]] || usage_error "fetch needs --out FILE"
  signing_setup "$signing_file"
  s3_setup
  fetch_snapshot "$key" "$out"
  printf '%s\n' "$fetched_json"
}

cmd_fetch_pki() {
  local key="" out="" signing_file=""
  parse_flags --non-empty --key=key --out=out --signing-public-key=signing_file \
    --allow-unsigned=allow_unsigned=true -- "$@"
  [[ -n "$out" ]] || usage_error "fetch-pki needs --out DIR"
  signing_setup "$signing_file"
  if [[ -e "$out" ]]; then
    [[ -d "$out" && -z "$(ls -A -- "$out")" ]] || die "--out ${out} exists and is not an empty directory"
  fi
  s3_setup
  fetch_pki "$key" "$out"
}

# fetch_pki KEY OUT: the PKI archive of KEY (see --help, fetch-pki) extracted into the missing or
# empty directory OUT; prints one JSON line (key, sha256, out).
fetch_pki() {
  local key="$1" out="$2" dir base stamp
  if [[ -z "$key" ]]; then
    # The PKI of the newest complete BACKUP (the snapshot fetch picks), not the newest PKI
    # archive: the job uploads the PKI and its sidecar before the snapshot's sidecar, so a run
    # that failed there (and could not delete its uploads) leaves a PKI archive with a sidecar
    # whose snapshot is incomplete.
    local snapshot_key
    snapshot_key="$(newest_complete "${S3_PREFIX}/etcd/" '\.db\.zst(\.age)?$')" ||
      die "no complete backup (snapshot with a .sha256 sidecar) under s3://${S3_BUCKET}/${S3_PREFIX}/etcd/"
    base="${snapshot_key##*/}"
    stamp="${base%%[-.]*}"
    key="$(newest_complete "${S3_PREFIX}/pki/${stamp}" '\.tar\.zst(\.age)?$')" ||
      die "the newest complete backup ${snapshot_key} has no complete PKI archive (${S3_PREFIX}/pki/${stamp}.tar.zst[.age] with its sidecar); pass --key"
    log "newest complete backup: ${snapshot_key}"
  else
    base="${key##*/}"
    stamp="${base%%[-.]*}"
    [[ "$stamp" =~ ^[0-9]{8}T[0-9]{6}Z$ ]] || die "cannot find a UTC stamp in ${key}"
    if [[ "$key" == */etcd/* || "$key" != */* ]]; then
      key="$(newest_complete "${S3_PREFIX}/pki/${stamp}" '\.tar\.zst(\.age)?$')" ||
        die "no complete PKI archive with stamp ${stamp}"
    fi
  fi
  log "PKI archive: ${key}"
  mkdir -p -- "$out"
  chmod 0700 "$out"
  dir="$(mktemp -d "${RESTORE_WORK_DIR:-${TMPDIR:-/tmp}}/etcd-fetch-pki.XXXXXX")"
  cleanup_paths+=("$dir")
  fetch_verified "$key" "$dir" "$dir/pki.tar"
  tar -C "$out" -xf "$dir/pki.tar" || die "cannot extract the PKI archive into ${out}"
  # The archive's "." carries the source directory's mode; private keys stay in a 0700 one.
  chmod 0700 "$out"
  jq -cn --arg key "$key" --arg sha256 "$object_sha256" --arg out "$out" '{key: $key, sha256: $sha256, out: $out}'
}

# ---------------------------------------------------------------------------------------------
# member

# etcdutl_cmd: the command that runs etcdutl here (RESTORE_NODE_ETCDUTL on a node, see node_*).
etcdutl_cmd=()
restore_tool() {
  if ((${#etcdutl_cmd[@]} > 0)); then
    "${etcdutl_cmd[@]}" "$@"
  else
    "$(snapshot_tool)" "$@"
  fi
}

# restore_member SNAPSHOT NAME DATA_DIR INITIAL_CLUSTER PEER_URL TOKEN MOVE_ASIDE(true|false)
restore_member() {
  local snapshot="$1" name="$2" data_dir="${3%/}" initial_cluster="$4" peer_url="$5" token="$6" move_aside="$7"
  local stamp staging tool_name restore_help extra=()
  stamp="$(date -u +%Y%m%dT%H%M%SZ)"
  [[ -f "$snapshot" ]] || die "snapshot ${snapshot} is not a file"
  [[ ",${initial_cluster}," == *",${name}=${peer_url},"* ]] ||
    die "--initial-cluster does not contain ${name}=${peer_url}"
  if [[ -e "$data_dir" && -n "$(ls -A -- "$data_dir" 2>/dev/null)" ]]; then
    "$move_aside" || die "data dir ${data_dir} exists and is not empty; refusing (pass --move-aside to keep it as ${data_dir}.pre-restore-<stamp>)"
    mv -- "$data_dir" "${data_dir}.pre-restore-${stamp}"
    log "moved the old data dir aside: ${data_dir}.pre-restore-${stamp}"
  elif [[ -d "$data_dir" ]]; then
    rmdir -- "$data_dir"
  fi
  if ((${#etcdutl_cmd[@]} > 0)); then tool_name="${etcdutl_cmd[*]}"; else tool_name="$(snapshot_tool)"; fi
  # Captured first: `grep -q` in a pipe exits at the first match, and under pipefail the
  # writer's SIGPIPE would make a tool that has the flags look as if it had not.
  restore_help="$(restore_tool snapshot restore --help 2>&1 || true)"
  if [[ "$restore_help" == *--bump-revision* && "$restore_help" == *--mark-compacted* ]]; then
    extra=(--bump-revision "$BUMP_REVISION" --mark-compacted)
    log "restoring member ${name} with ${tool_name} --bump-revision ${BUMP_REVISION} --mark-compacted"
  else
    log "restoring member ${name} with ${tool_name} (it has no --bump-revision/--mark-compacted; watches are not invalidated)"
  fi
  staging="${data_dir}.restoring-${stamp}"
  rm -rf -- "$staging"
  if ! restore_tool snapshot restore "$snapshot" --name "$name" --data-dir "$staging" \
    --initial-cluster "$initial_cluster" --initial-cluster-token "$token" \
    --initial-advertise-peer-urls "$peer_url" "${extra[@]}" >"${staging}.log" 2>&1; then
    show_log "${staging}.log"
    rm -rf -- "$staging" "${staging}.log"
    die "snapshot restore of member ${name} failed"
  fi
  rm -f -- "${staging}.log"
  mv -- "$staging" "$data_dir"
  chmod 0700 "$data_dir"
  log "member ${name} restored into ${data_dir}"
}

cmd_member() {
  local snapshot="" name="" data_dir="" initial_cluster="" peer_url="" token="" move_aside=false
  parse_flags --non-empty --snapshot=snapshot --name=name --data-dir=data_dir --initial-cluster=initial_cluster \
    --peer-url=peer_url --cluster-token=token --move-aside=move_aside=true -- "$@"
  local flag
  for flag in snapshot name data_dir initial_cluster peer_url token; do
    [[ -n "${!flag}" ]] || usage_error "member needs --${flag//_/-}"
  done
  restore_member "$snapshot" "$name" "$data_dir" "$initial_cluster" "$peer_url" "$token" "$move_aside"
  jq -cn --arg name "$name" --arg dataDir "$data_dir" '{name: $name, dataDir: $dataDir}'
}

# ---------------------------------------------------------------------------------------------
# node: the node side of `cluster`, run as root on a control-plane node through `bash -s`.
# RESTORE_NODE_ROOT prefixes every path (for tests; empty on a real node).

node_root="${RESTORE_NODE_ROOT:-}"
manifests="${node_root}/etc/kubernetes/manifests"
# The files every control-plane node of a kubeadm cluster shares, the ones kubeadm's docs copy by
# hand ("Manual certificate distribution", kubernetes.io/docs/setup/production-environment/tools/
# kubeadm/high-availability): with them kubeadm init signs this node's own certificates, and every
# kubeconfig and service-account token of the old cluster stays valid.
readonly -a SHARED_PKI=(ca.crt ca.key sa.key sa.pub front-proxy-ca.crt front-proxy-ca.key etcd/ca.crt etcd/ca.key)

# manifest_flag FILE FLAG: the value of "- --FLAG=VALUE" in a static pod manifest.
manifest_flag() {
  sed -n "s/^[[:space:]]*-[[:space:]]*--$2=\\(.*\\)\$/\\1/p" "$1" | head -n 1 | tr -d "\"'"
}
manifest_image() {
  sed -n 's/^[[:space:]]*image:[[:space:]]*\(.*\)$/\1/p' "$1" | head -n 1 | tr -d "\"'"
}

# The etcd manifest: in manifests/, or already moved aside.
etcd_manifest() {
  local f
  for f in "${manifests}/etcd.yaml" "${node_root}"/etc/kubernetes/manifests.pre-restore-*/etcd.yaml; do
    if [[ -f "$f" ]]; then
      echo "$f"
      return 0
    fi
  done
  die "no etcd.yaml in ${manifests} (nor moved aside): not a kubeadm control-plane node?"
}

node_crictl() {
  if [[ -z "${CONTAINER_RUNTIME_ENDPOINT:-}" && ! -f /etc/crictl.yaml ]]; then
    export CONTAINER_RUNTIME_ENDPOINT=unix:///run/containerd/containerd.sock
  fi
  timeout 30 crictl "$@"
}

# node_etcdutl_cmd [IMAGE]: etcdutl on this node (see --help: RESTORE_NODE_ETCDUTL, PATH, ctr with
# the image of etcd.yaml, else IMAGE).
node_etcdutl_cmd() {
  local image="${1:-}"
  if [[ -n "${RESTORE_NODE_ETCDUTL:-}" ]]; then
    read -r -a etcdutl_cmd <<<"$RESTORE_NODE_ETCDUTL"
  elif command -v etcdutl >/dev/null; then
    etcdutl_cmd=(etcdutl)
  else
    if [[ -z "$image" ]]; then
      image="$(manifest_image "$(etcd_manifest)")"
      [[ -n "$image" ]] || die "no image: in etcd.yaml"
    fi
    command -v ctr >/dev/null || die "neither etcdutl nor ctr on this node"
    etcdutl_cmd=(ctr -n k8s.io run --rm --net-host
      --mount "type=bind,src=/var/lib,dst=/var/lib,options=rbind:rw" "$image" "etcd-restore-$$-${RANDOM}" etcdutl)
  fi
}

# node_etcdctl ARGS...: etcdctl on PATH, else inside the running etcd container.
node_etcdctl() {
  local id
  if command -v etcdctl >/dev/null; then
    timeout 30 etcdctl "$@"
  else
    id="$(node_crictl ps --quiet --state running --name '^etcd$' | head -n 1)"
    [[ -n "$id" ]] || return 1
    node_crictl exec "$id" etcdctl "$@"
  fi
}

node_running() { [[ -n "$(node_crictl ps --quiet --state running --name "^$1\$")" ]]; }

node_op() {
  local op="${1:-}" stamp component f stash
  shift || true
  case "$op" in
    info)
      # name, peer URL, client URL, data dir, image, API server port: tab-separated.
      f="$(etcd_manifest)"
      local apiserver port=6443
      for apiserver in "${manifests}/kube-apiserver.yaml" \
        "${node_root}"/etc/kubernetes/manifests.pre-restore-*/kube-apiserver.yaml; do
        if [[ -f "$apiserver" ]]; then
          port="$(manifest_flag "$apiserver" secure-port)"
          break
        fi
      done
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(manifest_flag "$f" name)" \
        "$(manifest_flag "$f" initial-advertise-peer-urls)" "$(manifest_flag "$f" advertise-client-urls)" \
        "$(manifest_flag "$f" data-dir)" "$(manifest_image "$f")" "${port:-6443}"
      ;;
    prepare)
      # prepare DIR: the directory the snapshot is copied to
      mkdir -p -- "${node_root}$1"
      chmod 0700 "${node_root}$1"
      ;;
    verify)
      # verify FILE SHA256
      [[ -f "${node_root}$1" ]] || die "no snapshot at $1"
      [[ "$(sha256_hex "${node_root}$1")" == "$2" ]] || die "sha256 of $1 on this node does not match"
      ;;
    stop)
      # stop STAMP COMPONENT...: manifests to manifests.pre-restore-STAMP/
      stamp="$1"
      shift
      stash="${node_root}/etc/kubernetes/manifests.pre-restore-${stamp}"
      mkdir -p -- "$stash"
      chmod 0700 "$stash"
      for component in "$@"; do
        if [[ -f "${manifests}/${component}.yaml" ]]; then
          mv -- "${manifests}/${component}.yaml" "${stash}/${component}.yaml"
          log "moved ${component}.yaml to ${stash}"
        elif [[ -f "${stash}/${component}.yaml" ]]; then
          log "${component}.yaml is already in ${stash}"
        elif f="$(find "${node_root}/etc/kubernetes" -mindepth 2 -maxdepth 2 -path '*/manifests.pre-restore-*' \
          -name "${component}.yaml" | sort | tail -n 1)" && [[ -n "$f" ]]; then
          # A rerun after a failed restore: the manifest is still in that run's directory.
          mv -- "$f" "${stash}/${component}.yaml"
          rmdir -- "$(dirname -- "$f")" 2>/dev/null || true
          log "moved ${component}.yaml from ${f%/*} (an earlier run) to ${stash}"
        elif [[ "$component" == kube-apiserver || "$component" == etcd ]]; then
          die "no ${component}.yaml in ${manifests}"
        fi
      done
      ;;
    start)
      stamp="$1"
      shift
      stash="${node_root}/etc/kubernetes/manifests.pre-restore-${stamp}"
      for component in "$@"; do
        if [[ -f "${stash}/${component}.yaml" ]]; then
          mv -- "${stash}/${component}.yaml" "${manifests}/${component}.yaml"
          log "moved ${component}.yaml back to ${manifests}"
        fi
      done
      rmdir -- "$stash" 2>/dev/null || true
      ;;
    running)
      # running COMPONENT...: exit 0 when any is still running
      for component in "$@"; do
        if node_running "$component"; then
          echo "$component"
          return 0
        fi
      done
      return 1
      ;;
    restore)
      # restore SNAPSHOT NAME DATA_DIR INITIAL_CLUSTER PEER_URL TOKEN [IMAGE]
      node_etcdutl_cmd "${7:-}"
      local data_dir="${node_root}$3"
      # Paths for the tool as this node sees them.
      restore_member "${node_root}$1" "$2" "$data_dir" "$4" "$5" "$6" true
      rm -f -- "${node_root}$1"
      ;;
    etcd-healthy)
      # etcd-healthy CLIENT_URL
      local tls=()
      if [[ "$1" == https://* ]]; then
        tls=(--cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/etcd/healthcheck-client.crt
          --key /etc/kubernetes/pki/etcd/healthcheck-client.key)
      fi
      node_etcdctl --endpoints "$1" "${tls[@]}" --dial-timeout 3s --command-timeout 10s endpoint health --cluster
      ;;
    members)
      # members CLIENT_URL: the running cluster's `member list -w json`, as this node's etcd sees it
      local tls=()
      if [[ "$1" == https://* ]]; then
        tls=(--cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/etcd/healthcheck-client.crt
          --key /etc/kubernetes/pki/etcd/healthcheck-client.key)
      fi
      node_etcdctl --endpoints "$1" "${tls[@]}" --dial-timeout 3s --command-timeout 10s member list -w json
      ;;
    readyz)
      # readyz PORT
      [[ "$(curl -ksS --max-time 10 "https://127.0.0.1:$1/readyz")" == ok ]]
      ;;
    probe)
      # probe ENDPOINT_URL [PEER...]: "answer: WHAT" when a member of a cluster answers (lib.sh
      # member_answers), else "none: " and what was probed
      if member_answers "$@"; then
        printf 'answer: %s\n' "$answer_from"
      else
        printf 'none: %s\n' "$(printf '%s; ' "${probed[@]}")"
      fi
      ;;
    seed-state)
      # seed-state DATA_DIR: "member" (the member marker), "kubeadm" (a static pod manifest:
      # kubeadm ran here), "seeded KEY" (an earlier seed finished: its record and DATA_DIR/member),
      # else "fresh"
      if [[ -f "${node_root}${MEMBER_MARKER}" ]]; then
        echo member
        return 0
      fi
      for component in etcd kube-apiserver kube-controller-manager kube-scheduler; do
        if [[ -f "${manifests}/${component}.yaml" ]]; then
          echo kubeadm
          return 0
        fi
      done
      # A record without the restored data (a reset removed it) is no seed: seed again.
      if [[ -f "${node_root}${SEED_RECORD}" && -d "${node_root}${1:-/var/lib/etcd}/member" ]]; then
        printf 'seeded %s\n' "$(ROOT="$node_root" seed_record_value key || true)"
      else
        echo fresh
      fi
      ;;
    etcd-image)
      # etcd-image CONFIG [IMAGE]: the etcd image kubeadm will run (IMAGE, else the etcd image
      # `kubeadm config images list --config CONFIG` prints), pulled into containerd's k8s.io
      # namespace when missing; prints it, or nothing when etcdutl is on PATH
      if [[ -n "${RESTORE_NODE_ETCDUTL:-}" ]] || command -v etcdutl >/dev/null; then return 0; fi
      local image="${2:-}" images
      if [[ -z "$image" ]]; then
        # Captured first: under pipefail, `grep -m 1` leaving a pipe early can fail the writer.
        images="$(timeout 60 kubeadm config images list --config "${node_root}$1" 2>/dev/null)" ||
          die "kubeadm config images list --config $1 failed"
        image="$(grep -m 1 -E '/etcd:' <<<"$images")" ||
          die "kubeadm config images list --config $1 names no etcd image"
      fi
      if [[ -z "$(timeout 30 ctr -n k8s.io images ls -q "name==${image}" 2>/dev/null)" ]]; then
        log "pulling ${image}"
        if [[ -z "${CONTAINER_RUNTIME_ENDPOINT:-}" && ! -f /etc/crictl.yaml ]]; then
          export CONTAINER_RUNTIME_ENDPOINT=unix:///run/containerd/containerd.sock
        fi
        timeout 600 crictl pull "$image" >&2 || die "cannot pull ${image}"
      fi
      printf '%s\n' "$image"
      ;;
    install-pki)
      # install-pki ARCHIVE SHA256: the cluster-wide CA and key files (SHARED_PKI) from ARCHIVE
      # into /etc/kubernetes/pki; kubeadm init makes this node's own certificates from them
      local archive="${node_root}$1" pki="${node_root}/etc/kubernetes/pki" unpacked file mode
      [[ "$(sha256_hex "$archive")" == "$2" ]] || die "sha256 of $1 on this node does not match"
      unpacked="$(mktemp -d "${archive}.XXXXXX")"
      tar -C "$unpacked" -xf "$archive" || die "cannot extract $1"
      for file in "${SHARED_PKI[@]}"; do
        [[ -f "${unpacked}/${file}" ]] || die "the PKI archive has no ${file}"
      done
      if [[ -f "${pki}/ca.crt" ]] && ! cmp -s -- "${pki}/ca.crt" "${unpacked}/ca.crt"; then
        die "/etc/kubernetes/pki/ca.crt on this node is another cluster's CA than the backup's: reset the node (kubeadm reset -f; rm -rf /etc/kubernetes/pki) or replace its server"
      fi
      install -d -m 0755 "$pki" "${pki}/etcd"
      for file in "${SHARED_PKI[@]}"; do
        mode=0644
        if [[ "$file" == *.key ]]; then mode=0600; fi
        install -m "$mode" -- "${unpacked}/${file}" "${pki}/${file}"
      done
      rm -rf -- "$unpacked" "$archive"
      log "installed ${SHARED_PKI[*]} into /etc/kubernetes/pki"
      ;;
    seed-record)
      # seed-record KEY SHA256 SNAPSHOT_SHA256 REVISION: the seed finished (read by kubeadm-init.sh)
      local record="${node_root}${SEED_RECORD}"
      install -d -m 0755 "${record%/*}"
      printf 'key=%s\nsha256=%s\nsnapshotSha256=%s\nrevision=%s\ncompleted=%s\n' "$1" "$2" "$3" "$4" \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"${record}.tmp"
      chmod 0644 "${record}.tmp"
      mv -- "${record}.tmp" "$record"
      ;;
    *) usage_error "node: unknown operation '${op}'" ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# The change register and the nodes over SSH, shared by cluster and seed.

names=()
ips=()
node_specs=()
ssh_cmd=()
scp_cmd=()
remote_bash=""
self="${BASH_SOURCE[0]:-}"
cluster_stamp=""
cluster_log=""
step_output=""

# parse_nodes: node_specs (NAME=IP, from --node) into names and ips.
parse_nodes() {
  local item
  for item in "${node_specs[@]}"; do
    [[ "$item" =~ ^([A-Za-z0-9._-]+)=([A-Za-z0-9.:_-]+)$ ]] || usage_error "--node '${item}' is not NAME=IP"
    names+=("${BASH_REMATCH[1]}")
    ips+=("${BASH_REMATCH[2]}")
  done
}

# register_setup LOG_FILE: the change register (LOG_FILE, default ./etcd-restore-<stamp>.jsonl),
# uploaded to <S3_PREFIX>/restore-log/<stamp>.jsonl when the script exits, also after a failure.
register_setup() {
  cluster_stamp="$(date -u +%Y%m%dT%H%M%SZ)"
  cluster_log="${1:-./etcd-restore-${cluster_stamp}.jsonl}"
  : >>"$cluster_log"
  on_exit() {
    if [[ "$1" != 0 ]]; then log "restore FAILED; the change register is ${cluster_log}"; fi
    if s3 s3 cp --only-show-errors "$cluster_log" "s3://${S3_BUCKET}/${S3_PREFIX}/restore-log/${cluster_stamp}.jsonl" \
      >>"$aws_log" 2>&1; then
      log "uploaded the change register to s3://${S3_BUCKET}/${S3_PREFIX}/restore-log/${cluster_stamp}.jsonl"
    else
      log "WARNING: could not upload the change register ${cluster_log}"
    fi
  }
}

# ssh_setup USER KEY_FILE SUDO NODE_ETCDUTL: the ssh and scp commands and the node's shell.
ssh_setup() {
  ssh_user="$1"
  read -r -a ssh_cmd <<<"${RESTORE_SSH:-ssh -o BatchMode=yes}"
  read -r -a scp_cmd <<<"${RESTORE_SCP:-scp -o BatchMode=yes -q}"
  if [[ -n "$2" ]]; then
    ssh_cmd+=(-i "$2")
    scp_cmd+=(-i "$2")
  fi
  remote_bash="bash -s --"
  if [[ -n "$4" ]]; then remote_bash="env RESTORE_NODE_ETCDUTL=$(printf '%q' "$4") ${remote_bash}"; fi
  if "$3"; then remote_bash="sudo -n ${remote_bash}"; fi
}

record() {
  jq -cn --arg time "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg step "$1" --arg node "$2" --arg status "$3" \
    --arg detail "${4:-}" '{time: $time, step: $step, node: $node, status: $status, detail: $detail}' >>"$cluster_log"
}
# step NAME NODE DETAIL COMMAND...: records started, runs COMMAND, records ok or failed (and stops).
step() {
  local name="$1" node="$2" detail="$3" out
  shift 3
  record "$name" "$node" started "$detail"
  log "[${node}] ${name}: ${detail}"
  out="$(mktemp "${TMPDIR:-/tmp}/etcd-restore-step.XXXXXX")"
  cleanup_paths+=("$out" "$out.err")
  # A subshell: a die in the command fails the step instead of ending the script unrecorded.
  if ("$@") >"$out" 2>"$out.err"; then
    record "$name" "$node" ok "$detail"
    step_output="$(cat "$out")"
    return 0
  fi
  show_log "$out.err"
  record "$name" "$node" failed "$(tail -n 3 "$out.err" | tr '\n' ' ' | cut -c1-500)"
  die "step ${name} failed on node ${node}; stopping (register: ${cluster_log})"
}
# on_node I OP ARGS...: this script's node OP on node I, through ssh, bounded. The node has
# neither this script nor lib.sh: both go to `bash -s` on stdin, the library first.
on_node() {
  local i="$1" command
  shift
  command="${remote_bash} node$(printf ' %q' "$@")"
  timeout --kill-after=10 "$timeout_seconds" "${ssh_cmd[@]}" "${ssh_user}@${ips[$i]}" "$command" \
    < <(cat -- "$lib" "$self")
}
# wait_on_node I OP ARGS...: repeats OP until it succeeds, for at most the timeout (wait_for).
wait_on_node() { wait_for on_node "$@"; }
# node_stopped I: kube-apiserver and etcd no longer run on node I.
node_stopped() { ! on_node "$1" running kube-apiserver etcd; }
# wait_gone I: until node_stopped, for at most the timeout (wait_for).
wait_gone() { wait_for node_stopped "$1"; }

# ---------------------------------------------------------------------------------------------
# cluster

cmd_cluster() {
  local key="" snapshot="" log_file="" ssh_user="root" ssh_key="" sudo=false
  local remote_dir="/var/lib/etcd-restore" token="" node_etcdutl="" signing_file="" members_gone=""
  local timeout_seconds="${RESTORE_TIMEOUT:-600}" POLL_SECONDS=2 item
  local -a node_flags=()
  parse_flags --non-empty --node=node_flags[] --key=key --snapshot=snapshot --log=log_file --ssh-user=ssh_user \
    --ssh-key=ssh_key --sudo=sudo=true --remote-dir=remote_dir --timeout=timeout_seconds \
    --cluster-token=token --node-etcdutl=node_etcdutl --signing-public-key=signing_file \
    --allow-unsigned=allow_unsigned=true --members-gone=members_gone -- "$@"
  for item in "${node_flags[@]}"; do
    IFS=',' read -r -a item <<<"$item"
    node_specs+=("${item[@]}")
  done
  remote_dir="${remote_dir%/}"
  ((${#node_specs[@]} > 0)) || usage_error "cluster needs --node NAME=IP (repeated or comma-separated)"
  [[ -z "$key" || -z "$snapshot" ]] || usage_error "--key and --snapshot exclude each other"
  check_timeout
  # Reads a snapshot's membership (snapshot status does not show it); beside this script.
  local members_reader
  members_reader="$(dirname "${BASH_SOURCE[0]}")/etcd-snapshot-members.py"
  require_tools python3
  [[ -f "$members_reader" ]] || die "${members_reader} is missing (it reads the snapshot's membership); copy it beside this script"
  if [[ -z "$snapshot" ]]; then signing_setup "$signing_file"; fi
  parse_nodes

  register_setup "$log_file"
  if [[ -z "$token" ]]; then token="etcd-restore-${cluster_stamp}-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"; fi
  s3_setup
  ssh_setup "$ssh_user" "$ssh_key" "$sudo" "$node_etcdutl"

  local n=${#names[@]} i fetched_key=""
  local -a peer_urls=() client_urls=() data_dirs=() ports=()
  local local_snapshot sha
  log "restoring ${n} node(s): ${names[*]}; change register ${cluster_log}"
  record begin "" ok "nodes ${names[*]}; token ${token}"

  # fetch
  local work
  work="$(mktemp -d "${RESTORE_WORK_DIR:-${TMPDIR:-/tmp}}/etcd-restore-cluster.XXXXXX")"
  cleanup_paths+=("$work")
  if [[ -n "$snapshot" ]]; then
    step fetch local "given snapshot ${snapshot}" snapshot_status "$snapshot"
    local_snapshot="$snapshot"
  else
    local_snapshot="$work/snapshot.db"
    step fetch local "${key:-newest complete backup}" fetch_print "$key" "$local_snapshot"
    fetched_key="$(jq -r .key <<<"$step_output")"
  fi
  sha="$(sha256_hex "$local_snapshot")" || die "cannot hash ${local_snapshot}"
  record fetch local ok "snapshot sha256 ${sha}"

  # inspect
  local name peer client dir image port initial_cluster=""
  for ((i = 0; i < n; i++)); do
    step inspect "${names[$i]}" "read etcd.yaml" on_node "$i" info
    IFS=$'\t' read -r name peer client dir image port <<<"$step_output"
    if [[ "$name" != "${names[$i]}" || -z "$peer" || -z "$client" || -z "$dir" ]]; then
      record inspect "${names[$i]}" failed "etcd.yaml names member '${name}' (peer '${peer}', data dir '${dir}')"
      die "node ${names[$i]}: its etcd.yaml names member '${name}', peer URL '${peer}', data dir '${dir}'; stopping"
    fi
    peer_urls+=("$peer")
    client_urls+=("${client%%,*}")
    data_dirs+=("$dir")
    ports+=("$port")
    initial_cluster+="${initial_cluster:+,}${name}=${peer}"
    record inspect "${names[$i]}" ok "peer ${peer}, data dir ${dir}, image ${image}"
  done

  # membership: every member of the snapshot and of the running cluster is restored, or named
  # gone for good; a member left out would go on running the old cluster beside the new one.
  step membership local "the snapshot's members and the running cluster's" \
    check_membership "$local_snapshot" "$members_gone"
  record membership local ok "$step_output"

  # copy
  local remote_snapshot="${remote_dir}/snapshot-${cluster_stamp}.db"
  for ((i = 0; i < n; i++)); do
    step copy "${names[$i]}" "${remote_snapshot}" copy_to "$i"
  done

  # stop everything, then wait
  for ((i = 0; i < n; i++)); do
    step stop-apiserver "${names[$i]}" "kube-apiserver, kube-controller-manager, kube-scheduler manifests aside" \
      on_node "$i" stop "$cluster_stamp" kube-apiserver kube-controller-manager kube-scheduler
  done
  for ((i = 0; i < n; i++)); do
    step stop-etcd "${names[$i]}" "etcd manifest aside" on_node "$i" stop "$cluster_stamp" etcd
  done
  for ((i = 0; i < n; i++)); do
    step wait-stopped "${names[$i]}" "kube-apiserver and etcd gone" wait_gone "$i"
  done

  # restore every member before starting any
  for ((i = 0; i < n; i++)); do
    step restore "${names[$i]}" "member ${names[$i]} into ${data_dirs[$i]} (old one kept as .pre-restore-*)" \
      on_node "$i" restore "$remote_snapshot" "${names[$i]}" "${data_dirs[$i]}" "$initial_cluster" "${peer_urls[$i]}" "$token"
  done

  for ((i = 0; i < n; i++)); do
    step start-etcd "${names[$i]}" "etcd manifest back" on_node "$i" start "$cluster_stamp" etcd
  done
  step etcd-healthy "${names[0]}" "endpoint health --cluster via ${client_urls[0]}" \
    wait_on_node 0 etcd-healthy "${client_urls[0]}"
  for ((i = 0; i < n; i++)); do
    step start-apiserver "${names[$i]}" "kube-apiserver, kube-controller-manager, kube-scheduler manifests back" \
      on_node "$i" start "$cluster_stamp" kube-apiserver kube-controller-manager kube-scheduler
  done
  for ((i = 0; i < n; i++)); do
    step readyz "${names[$i]}" "https://127.0.0.1:${ports[$i]}/readyz" wait_on_node "$i" readyz "${ports[$i]}"
  done
  record "done" "" ok "restored ${fetched_key:-$snapshot} on ${names[*]}"
  log "restore complete; restart the kubelet on every node and check workloads (see docs/runbooks/etcd-restore.md)"
  jq -cn --arg log "$cluster_log" --arg token "$token" --arg stamp "$cluster_stamp" --arg sha256 "$sha" \
    --arg key "${fetched_key:-}" '{stamp: $stamp, key: $key, snapshotSha256: $sha256, clusterToken: $token, log: $log}'
}

# ---------------------------------------------------------------------------------------------
# seed

cmd_seed() {
  local key="" log_file="" ssh_user="root" ssh_key="" ssh_key_stdin=false sudo=false peer_url="" endpoint_url=""
  local remote_dir="/var/lib/etcd-restore" data_dir="/var/lib/etcd" node_etcdutl="" etcd_image="" init_config=""
  local signing_file="" timeout_seconds="${RESTORE_TIMEOUT:-600}" POLL_SECONDS=2 state
  local -a node_flags=() peers=()
  parse_flags --non-empty --node=node_flags[] --peer=peers[] --peer-url=peer_url --endpoint-url=endpoint_url \
    --key=key --log=log_file --ssh-user=ssh_user --ssh-key=ssh_key --ssh-key-stdin=ssh_key_stdin=true \
    --sudo=sudo=true --remote-dir=remote_dir --data-dir=data_dir --timeout=timeout_seconds \
    --node-etcdutl=node_etcdutl --etcd-image=etcd_image --init-config=init_config \
    --signing-public-key=signing_file --allow-unsigned=allow_unsigned=true -- "$@"
  node_specs=("${node_flags[@]}")
  ((${#node_specs[@]} == 1)) || usage_error "seed takes exactly one --node NAME=IP: the node that initializes the restored cluster"
  parse_nodes
  local name="${names[0]}"
  # Plain http only where nothing crosses a network (the loopback drill of the tests).
  [[ "$peer_url" =~ ^https://[^/[:space:]]+:[0-9]+$ || "$peer_url" =~ ^http://(127\.[0-9.]+|\[::1\]|localhost):[0-9]+$ ]] ||
    usage_error "--peer-url must be https://<private IP>:2380 (http:// only on a loopback address), got '${peer_url}'"
  [[ "$endpoint_url" =~ ^https://[^[:space:]]+$ ]] || usage_error "--endpoint-url must be an https:// URL, got '${endpoint_url}'"
  [[ -n "$etcd_image$node_etcdutl" || "$init_config" == /* ]] ||
    usage_error "seed needs --init-config PATH (the node's kubeadm InitConfiguration: its etcd image), --etcd-image or --node-etcdutl"
  check_timeout
  # Everything fetch and the copy use, before anything reaches the node.
  require_tools aws age zstd jq ssh scp openssl od tar
  command -v etcdutl >/dev/null || command -v etcdctl >/dev/null ||
    die "neither etcdutl nor etcdctl is on PATH (snapshot status checks the fetched snapshot)"
  remote_dir="${remote_dir%/}"
  if [[ "$key" == latest ]]; then key=""; fi
  # A full key names its cluster's prefix: the PKI archive is looked up beside it.
  if [[ "$key" == */etcd/* ]]; then S3_PREFIX="${key%/etcd/*}"; fi
  signing_setup "$signing_file"
  local work
  work="$(mktemp -d "${RESTORE_WORK_DIR:-${TMPDIR:-/tmp}}/etcd-restore-seed.XXXXXX")"
  cleanup_paths+=("$work")
  if "$ssh_key_stdin"; then
    [[ -z "$ssh_key" ]] || usage_error "--ssh-key and --ssh-key-stdin exclude each other"
    read_ssh_private_key "$work/id"
    ssh_key="$work/id"
  fi

  register_setup "$log_file"
  local token
  token="etcd-restore-${cluster_stamp}-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
  s3_setup
  ssh_setup "$ssh_user" "$ssh_key" "$sudo" "$node_etcdutl"
  if "$ssh_key_stdin"; then
    local -a opts=(-o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new -o "UserKnownHostsFile=$work/known_hosts"
      -o ConnectTimeout=10)
    ssh_cmd+=("${opts[@]}")
    scp_cmd+=("${opts[@]}")
  fi
  record begin "" ok "seed ${name}; token ${token}"

  # Only where no cluster is: a member that answers means there is nothing to restore.
  step probe "$name" "does a member answer (${endpoint_url}${peers[*]:+, ${peers[*]}})" \
    on_node 0 probe "$endpoint_url" "${peers[@]}"
  if [[ "$step_output" == answer:* ]]; then
    record skip "$name" ok "${step_output#answer: }"
    log "a member answers (${step_output#answer: }): the cluster exists; nothing to restore"
    jq -cn --arg node "$name" --arg reason "a member answers: ${step_output#answer: }" \
      '{restored: false, node: $node, reason: $reason}'
    return 0
  fi
  step state "$name" "is the node untouched by kubeadm" on_node 0 seed-state "$data_dir"
  state="$step_output"
  case "$state" in
    member | kubeadm)
      die "node ${name} is no fresh node (${state}: $([[ "$state" == member ]] && echo "it has the member marker" || echo "kubeadm wrote static pod manifests")) although no member answers; refusing to seed it. Reset it (docs/runbooks/member-setup-failed.md) or replace its server, then run again" ;;
    "seeded "*)
      if [[ -z "$key" || "${state#seeded }" == "$key" || "${state#seeded }" == */"$key" ]]; then
        record skip "$name" ok "already seeded with ${state#seeded }"
        log "node ${name} is already seeded with ${state#seeded }"
        jq -cn --arg node "$name" --arg key "${state#seeded }" '{restored: true, node: $node, key: $key, already: true}'
        return 0
      fi
      log "node ${name} was seeded with ${state#seeded }; seeding it again with ${key}" ;;
  esac

  local local_snapshot="$work/snapshot.db" fetched sha revision
  step fetch local "${key:-newest complete backup}" fetch_print "$key" "$local_snapshot"
  fetched="$step_output"
  fetched_key="$(jq -r .key <<<"$fetched")"
  revision="$(jq -r .revision <<<"$fetched")"
  sha="$(jq -r .snapshotSha256 <<<"$fetched")"
  RESTORE_WORK_DIR="$work" step fetch-pki local "the PKI of ${fetched_key}" fetch_pki "$fetched_key" "$work/pki"
  step pki-select local "the shared CA and key files" pki_select "$work/pki" "$work/pki.tar"
  local pki_sha
  pki_sha="$(sha256_hex "$work/pki.tar")" || die "cannot hash the PKI archive"

  local remote_snapshot="${remote_dir}/snapshot-${cluster_stamp}.db" remote_pki="${remote_dir}/pki-${cluster_stamp}.tar"
  step copy "$name" "$remote_snapshot" copy_to 0
  step copy-pki "$name" "$remote_pki" copy_file "$work/pki.tar" "$remote_pki"
  step install-pki "$name" "${SHARED_PKI[*]} into /etc/kubernetes/pki" on_node 0 install-pki "$remote_pki" "$pki_sha"
  local image=""
  if [[ -z "$node_etcdutl" ]]; then
    step etcd-image "$name" "the etcd image for etcdutl" on_node 0 etcd-image "$init_config" "$etcd_image"
    image="$step_output"
  fi
  step restore "$name" "member ${name} alone into ${data_dir} (${peer_url})" \
    on_node 0 restore "$remote_snapshot" "$name" "$data_dir" "${name}=${peer_url}" "$peer_url" "$token" "$image"
  step record "$name" "$SEED_RECORD" on_node 0 seed-record "$fetched_key" "$(jq -r .sha256 <<<"$fetched")" "$sha" "$revision"
  record "done" "" ok "seeded ${name} with ${fetched_key}"
  log "seeded ${name} with ${fetched_key} (revision ${revision}); kubeadm-init.sh initializes the cluster from it"
  jq -cn --arg node "$name" --arg key "$fetched_key" --arg revision "$revision" --arg sha256 "$sha" \
    --arg token "$token" --arg log "$cluster_log" \
    '{restored: true, node: $node, key: $key, revision: ($revision | tonumber), snapshotSha256: $sha256, clusterToken: $token, log: $log}'
}

# pki_select DIR TAR: the SHARED_PKI files of the extracted archive DIR into TAR; dies naming a
# missing one.
pki_select() {
  local file
  for file in "${SHARED_PKI[@]}"; do
    [[ -f "$1/$file" ]] || die "the backup's PKI archive has no ${file}: it cannot start a cluster"
  done
  tar -C "$1" -cf "$2" -- "${SHARED_PKI[@]}"
}

# copy_file LOCAL REMOTE: LOCAL to node 0's REMOTE (in --remote-dir, which copy_to prepared).
copy_file() {
  timeout --kill-after=10 "$timeout_seconds" "${scp_cmd[@]}" "$1" "${ssh_user}@${ips[0]}:$2"
}

# check_membership SNAPSHOT GONE: the members of SNAPSHOT (etcd-snapshot-members.py) and of the
# running cluster (`member list` through the first node whose etcd answers) against the --node
# names (cmd_cluster's names); every member missing from them must be in GONE (comma-separated,
# --members-gone) and every name in GONE must be such a missing member. Prints a summary.
check_membership() {
  local snapshot="$1" gone_list="$2" member running="" i source
  local -A given=() gone=() missing=()
  local -a snapshot_members=() running_members=()
  for member in "${names[@]}"; do given["$member"]=1; done
  if [[ -n "$gone_list" ]]; then
    IFS=',' read -r -a source <<<"$gone_list"
    for member in "${source[@]}"; do
      [[ -n "$member" ]] || continue
      [[ -z "${given[$member]:-}" ]] || die "--members-gone names ${member}, which is also a --node"
      gone["$member"]=1
    done
  fi
  local listed
  listed="$(python3 "$members_reader" "$snapshot")" || die "cannot read the members of the snapshot ${snapshot}"
  mapfile -t snapshot_members < <(jq -r 'if (.name // "") != "" then .name else (.peerURLs | join(",")) end' <<<"$listed")
  ((${#snapshot_members[@]} > 0)) || die "the snapshot ${snapshot} lists no members"
  for ((i = 0; i < ${#names[@]}; i++)); do
    if running="$(on_node "$i" members "${client_urls[$i]}" 2>/dev/null)" &&
      mapfile -t running_members < <(jq -r '.members[] | if (.name // "") != "" then .name else (.peerURLs | join(",")) end' <<<"$running"); then
      ((${#running_members[@]} > 0)) && break
    fi
    running_members=()
  done
  for member in "${snapshot_members[@]}" "${running_members[@]}"; do
    if [[ -z "${given[$member]:-}" && -z "${gone[$member]:-}" ]]; then missing["$member"]=1; fi
  done
  if ((${#missing[@]} > 0)); then
    die "etcd member(s) $(printf '%s\n' "${!missing[@]}" | sort | paste -sd, -) are in the snapshot's membership (${snapshot_members[*]}) or the running cluster's (${running_members[*]:-no member answered}) but not among the --node list: a member left out would keep running the old cluster. Restore every member, or name the ones gone for good (server deleted, never coming back) with --members-gone"
  fi
  for member in "${!gone[@]}"; do
    [[ " ${snapshot_members[*]} ${running_members[*]} " == *" ${member} "* ]] ||
      die "--members-gone names ${member}, which is in neither the snapshot's membership (${snapshot_members[*]}) nor the running cluster's (${running_members[*]:-no member answered})"
    log "WARNING: member ${member} is declared gone for good (--members-gone); it must never start again with its old data"
  done
  printf 'snapshot members %s; running members %s; gone %s\n' "${snapshot_members[*]}" \
    "${running_members[*]:-none answered}" "${gone_list:-none}"
}

# copy_to I: the snapshot to node I, then its sha256 checked there (uses cmd_cluster's locals).
copy_to() {
  local i="$1"
  on_node "$i" prepare "$remote_dir"
  timeout --kill-after=10 "$timeout_seconds" "${scp_cmd[@]}" "$local_snapshot" "${ssh_user}@${ips[$i]}:${remote_snapshot}"
  on_node "$i" verify "$remote_snapshot" "$sha"
}

# ---------------------------------------------------------------------------------------------

case "${1:-}" in
  -h | --help | help)
    usage
    exit 0
    ;;
  fetch) shift; cmd_fetch "$@" ;;
  fetch-pki) shift; cmd_fetch_pki "$@" ;;
  member) shift; cmd_member "$@" ;;
  cluster) shift; cmd_cluster "$@" ;;
  seed) shift; cmd_seed "$@" ;;
  node) shift; node_op "$@" ;;
  "") usage_error "a subcommand is required: fetch, fetch-pki, member, cluster or seed" ;;
  *) usage_error "unknown subcommand '$1'" ;;
esac
