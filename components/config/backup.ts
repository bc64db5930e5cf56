/** The etcd + PKI backup CronJob and its Object Storage bucket. */
import type { ClusterConfig } from "./index";
import { objectStorageLocations } from "../hetzner/facts";
import { cronSettingError } from "./cron";
import { boolean, complete, integer, isOneOf, list, live, oneOf, Reader, refused, string } from "./schema";

export const backupEncryptionChoices = ["age", "none"] as const;
export type BackupEncryption = (typeof backupEncryptionChoices)[number];
/**
 * S3 Object Lock modes (per object, set by the job on every upload). COMPLIANCE: nobody, not the
 * bucket's owner either, can delete or shorten a locked version before its date. GOVERNANCE: a
 * key allowed s3:BypassGovernanceRetention can.
 */
export const backupObjectLockModes = ["COMPLIANCE", "GOVERNANCE"] as const;
export type BackupObjectLockMode = (typeof backupObjectLockModes)[number];

/** A snapshot key the backup job writes (scripts/jobs/etcd-backup.sh), as restoreFrom names it. */
const restoreKeyPattern = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*\/etcd\/\d{8}T\d{6}Z-r\d+\.db\.zst(\.age)?$/;

const cronJob = live("the backup CronJob or its Secret is updated in place; the next run uses it");
const isObjectStorageLocation = (v: string) => (objectStorageLocations as readonly string[]).includes(v);

export const backupSettings = {
  backupSchedule: string(cronJob, cronSettingError),
  // The retention tiers (scripts/jobs/etcd-backup.sh --help): every backup, then the first of
  // each UTC hour, then the first of each UTC day.
  backupKeepAllHours: integer(cronJob, (v) =>
    v >= 1 ? undefined : "must be at least 1 hour: a backup is kept while its run may still be checked",
  ),
  backupKeepHourlyDays: integer(cronJob, (v) => (v >= 0 ? undefined : "must be 0 or a positive number of days")),
  backupRetentionDays: integer(cronJob, (v) => (v >= 1 ? undefined : "must be a positive number of days")),
  backupKeepLast: integer(cronJob, (v) =>
    v >= 1 ? undefined : "must be at least 1: retention always keeps the newest backups",
  ),
  backupBucket: string(refused("a new name replaces the bucket that holds every existing backup"), (v) =>
    v === "" || (/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(v) && !v.includes("..") && !/^\d+(\.\d+){3}$/.test(v))
      ? undefined
      : "must be \"\" or an S3 bucket name: 3-63 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit",
  ),
  backupLocation: string(
    refused("a bucket's location is fixed: a change replaces the bucket that holds every existing backup"),
    (v) =>
      v === "" || isObjectStorageLocation(v)
        ? undefined
        : `must be "" or one of ${objectStorageLocations.join(", ")} (the Object Storage locations)`,
  ),
  backupObjectLock: boolean(
    refused("S3 Object Lock can only be enabled when a bucket is created: a change replaces the bucket"),
  ),
  // Set per object by the job, never as the bucket's default retention through @pulumi/aws: the
  // Terraform AWS provider's object-lock and lifecycle configuration calls are known to hang
  // against Hetzner (it waits for a header Ceph never sends), and a per-object lock can follow
  // each backup's own tier.
  backupObjectLockMode: string(cronJob, oneOf(backupObjectLockModes)),
  backupEncryption: string(cronJob, oneOf(backupEncryptionChoices)),
  backupAgeRecipients: list(cronJob, (v) => {
    const bad = v.findIndex((k) => !/^age1[02-9ac-hj-np-z]{58}$/.test(k));
    return bad >= 0 ? `entry ${bad + 1} is not an age public key (age1 followed by 58 bech32 characters)` : undefined;
  }),
  backupImage: string(cronJob, imageReferenceError),
  // Read by a node's setup only when no member of the cluster answers (kubeadm-member.sh
  // --restore-from): then it initializes only from a backup seeded onto it, never an empty cluster.
  restoreFrom: string(
    live(
      "adds cp-1's restore seed (bootstrap-cp-1-restore-prepared, -restore-seed), which finds a member answering and restores nothing; a setup reads it only when no member answers",
    ),
    (v) =>
      v === "" || v === "latest" || restoreKeyPattern.test(v)
        ? undefined
        : 'must be "" (no restore), latest, or a backup key <prefix>/etcd/<UTC stamp>-r<revision>.db.zst[.age] (the restore runbook lists them)',
  ),
  // Read only to report them missing; loadSecrets hands them on as Pulumi secrets.
  objectStorageAccessKey: string(live("the bucket provider and the backup job's Secret take the new key in place")),
  objectStorageSecretKey: string(live("the bucket provider and the backup job's Secret take the new key in place")),
  // Read only to report it missing (with how to make one); its content is checked by the job,
  // which refuses to upload without a usable key: a rule here would print the secret.
  backupSigningKey: string(
    live("the backup job's Secret takes the new key in place; the next backup is signed with it"),
  ),
};

/** How an operator makes the backup signing key, in messages and the docs. */
export const backupSigningKeyHint =
  'make one with `ssh-keygen -t ed25519 -N "" -C etcd-backup -f backup-signing` and set it with `pulumi config set --secret backupSigningKey < backup-signing`; keep `ssh-keygen -y -f backup-signing` (the public key restores verify with) next to the age identity';

/**
 * Reads the backup settings: "" for the bucket's location means the cluster's, which must offer
 * Object Storage; age encryption needs a recipient.
 */
export function readBackup(
  reader: Reader,
  cluster: { clusterName?: string; location?: string },
): ClusterConfig["backup"] | undefined {
  const signingKey = reader.fullKey("backupSigningKey");
  const signingKeyMissing = reader.raw.values[signingKey] === undefined;
  const values = reader.read(backupSettings);
  if (signingKeyMissing) {
    // Every backup's sidecar is signed: without the key the job would refuse to run.
    const i = reader.problems.findIndex((p) => p.startsWith(`${signingKey} is not set:`));
    if (i >= 0) reader.problems[i] = `${reader.problems[i]}; it signs every backup: ${backupSigningKeyHint}`;
  }
  const { location } = cluster;
  if (values.backupLocation === "" && location && !isObjectStorageLocation(location)) {
    reader.problem(
      "backupLocation",
      "",
      `is "", which means the cluster's location ${location}, and Object Storage is not offered there: set one of ${objectStorageLocations.join(", ")}`,
    );
    values.backupLocation = undefined;
  }
  if (values.backupEncryption === "age" && values.backupAgeRecipients?.length === 0) {
    reader.problem(
      "backupAgeRecipients",
      [],
      "must list at least one age public key while backupEncryption is age (or set backupEncryption to none, which uploads the cluster's private keys unencrypted)",
    );
    values.backupAgeRecipients = undefined;
  }
  const v = complete(backupSettings, values);
  if (
    !v ||
    !cluster.clusterName ||
    !location ||
    !isOneOf(backupEncryptionChoices, v.backupEncryption) ||
    !isOneOf(backupObjectLockModes, v.backupObjectLockMode)
  )
    return undefined;
  return {
    schedule: v.backupSchedule,
    keepAllHours: v.backupKeepAllHours,
    keepHourlyDays: v.backupKeepHourlyDays,
    retentionDays: v.backupRetentionDays,
    keepLast: v.backupKeepLast,
    bucket: v.backupBucket || `${cluster.clusterName}-etcd-backups`,
    location: v.backupLocation || location,
    objectLock: v.backupObjectLock,
    objectLockMode: v.backupObjectLockMode,
    encryption: v.backupEncryption,
    ageRecipients: v.backupAgeRecipients,
    image: v.backupImage,
    restoreFrom: v.restoreFrom,
  };
}

/**
 * Why `ref` is not an image reference pinned by digest, or undefined:
 * `registry/path[:tag]@sha256:<64 hex>`. A tag alone is refused, `latest` included: a tag can be
 * moved to other content, so the CronJob would run a backup other than the one built and
 * checked, and `IfNotPresent` would keep whichever image a node pulled first. A digest names
 * exactly one image; the backup-image workflow prints it (README, "Backups").
 */
export function imageReferenceError(ref: string): string | undefined {
  const m =
    /^([a-z0-9]+(?:[._-][a-z0-9]+)*(?::\d+)?(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+)(?::([\w][\w.-]{0,127}))?(@sha256:[a-f0-9]{64})?$/.exec(
      ref,
    );
  const allowed =
    "allowed: <registry>/<path>[:<tag>]@sha256:<64 lower-case hex digits>, e.g. ghcr.io/<owner>/<repo>/etcd-backup@sha256:<digest printed by the backup-image workflow>";
  if (!m) return `is not an image reference; ${allowed}`;
  if (!m[3]) return `is not pinned by digest (a tag can be moved to other content); ${allowed}`;
  return undefined;
}
