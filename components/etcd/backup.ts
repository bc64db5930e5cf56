/**
 * etcd backups: the bucket in Hetzner Object Storage (through `@pulumi/aws`) and the
 * `etcd-backup` CronJob that runs scripts/jobs/etcd-backup.sh on a control-plane node (through the
 * cluster's Kubernetes provider).
 *
 * The job snapshots etcd, checks it (snapshot status and etcd's own sha256 of the snapshot),
 * streams it compressed and encrypted for the configured age recipients into an upload (one
 * put-object, or a multipart upload), uploads a signed sha256 sidecar (the signature first, the
 * sidecar last: the completion marker) and an encrypted archive of /etc/kubernetes/pki the same
 * way, each object under its own S3 Object Lock until the end of its longest retention tier,
 * then applies the tiered retention. Retention and the lock are the job's work on purpose: a
 * BucketLifecycleConfiguration, and the bucket's default retention
 * (aws.s3.BucketObjectLockConfiguration), hang against Hetzner with the Terraform AWS provider
 * (it waits for a header Ceph never sends).
 */
import * as aws from "@pulumi/aws";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { ClusterConfig } from "../config";
import {
  etcdClientEnvironment,
  etcdCronJobManifest,
  etcdJobMetadata,
  etcdJobNamespace,
  etcdJobScriptConfigMap,
  EtcdJobScripts,
  etcdJobScriptPath,
  kubeadmPkiDir,
  readEtcdJobScripts,
} from "./cronJob";
import { objectStorageEndpoint } from "../hetzner/facts";

/** The CronJob the freshness alerts watch (components/addons/monitoring/rules.ts). */
export const backupCronJob = { namespace: etcdJobNamespace, name: "etcd-backup" } as const;

/** The script the job runs, delivered through a ConfigMap (with scripts/node/lib.sh, the shared helper library). */
export const backupScriptPath = etcdJobScriptPath(backupCronJob.name);

const names = {
  secret: "etcd-backup-object-storage",
  signingSecret: "etcd-backup-signing-key",
  signingDir: "/etc/etcd-backup/signing",
  signingFile: "key",
  workDir: "/var/tmp/etcd-backup",
};

/**
 * The settings the backup uses: the nodes (etcd endpoints), the cluster name (the objects'
 * prefix) and every backup setting (bucket, location, schedule, retention, encryption, image).
 */
export type BackupSettings = Pick<ClusterConfig, "clusterName" | "nodes" | "backup">;

const metadata = (name: string) => etcdJobMetadata(name, backupCronJob.name);

/** The ConfigMap holding the script and its library (plain object, rendered to the plan and schema-checked). */
export function backupScriptConfigMap(scripts: EtcdJobScripts) {
  return etcdJobScriptConfigMap(backupCronJob.name, scripts);
}

/**
 * Every variable the script reads (scripts/jobs/etcd-backup.sh --help), except the two credentials,
 * which come from the Secret. The local member is tried first; the others follow, so a backup
 * still succeeds while the local member is down.
 */
export function backupEnvironment(cfg: BackupSettings): { name: string; value: string }[] {
  const endpoints = ["127.0.0.1", ...cfg.nodes.map((n) => n.privateIp)].map((ip) => `https://${ip}:2379`);
  return [
    ...etcdClientEnvironment(endpoints),
    { name: "S3_ENDPOINT", value: objectStorageEndpoint(cfg.backup.location) },
    { name: "S3_BUCKET", value: cfg.backup.bucket },
    { name: "S3_PREFIX", value: cfg.clusterName },
    { name: "S3_REGION", value: cfg.backup.location },
    { name: "BACKUP_ENCRYPTION", value: cfg.backup.encryption },
    { name: "BACKUP_AGE_RECIPIENTS", value: cfg.backup.ageRecipients.join(" ") },
    { name: "BACKUP_KEEP_ALL_HOURS", value: String(cfg.backup.keepAllHours) },
    { name: "BACKUP_KEEP_HOURLY_DAYS", value: String(cfg.backup.keepHourlyDays) },
    { name: "BACKUP_RETENTION_DAYS", value: String(cfg.backup.retentionDays) },
    { name: "BACKUP_KEEP_LAST", value: String(cfg.backup.keepLast) },
    // A bucket without Object Lock refuses lock headers.
    { name: "BACKUP_OBJECT_LOCK_MODE", value: cfg.backup.objectLock ? cfg.backup.objectLockMode : "none" },
    { name: "PKI_DIR", value: kubeadmPkiDir },
    { name: "BACKUP_WORK_DIR", value: names.workDir },
    { name: "BACKUP_SIGNING_KEY_FILE", value: `${names.signingDir}/${names.signingFile}` },
  ];
}

/**
 * The CronJob (plain object, rendered to the plan and schema-checked). `scripts` are
 * scripts/jobs/etcd-backup.sh and scripts/node/lib.sh, the shared helper library.
 */
export function backupCronJobManifest(cfg: BackupSettings, scripts: EtcdJobScripts) {
  return etcdCronJobManifest({
    name: backupCronJob.name,
    // The directory it archives (CA keys included: that is the backup's job), which holds the
    // etcd client certificate and key too; nothing else of the node.
    hostFiles: [{ name: "pki", path: kubeadmPkiDir, type: "Directory" }],
    schedule: cfg.backup.schedule,
    image: cfg.backup.image,
    scripts,
    env: backupEnvironment(cfg),
    envFromSecrets: [names.secret],
    resources: { requests: { cpu: "100m", memory: "256Mi" }, limits: { memory: "2Gi" } },
    // Minutes per GB of etcd: snapshot, status, the compressed stream and its upload of a large
    // database take long; a hung upload must still end so the next run can start.
    activeDeadlineSeconds: 3600,
    // The snapshot plus S3_UPLOAD_CONCURRENCY + 1 upload parts (4 + 1 of S3_PART_SIZE_MIB, 128 MiB,
    // by default).
    scratch: [
      { name: "work", mountPath: names.workDir, volume: { emptyDir: {} } },
      // The signing key as a file (never an environment variable): its own Secret, since the
      // credentials Secret is exported whole as environment. Secret volumes are read-only
      // whatever the mount says; the script copies the key to a 0600 file for ssh-keygen.
      {
        name: "signing-key",
        mountPath: names.signingDir,
        volume: {
          secret: {
            secretName: names.signingSecret,
            defaultMode: 0o400,
            items: [{ key: names.signingFile, path: names.signingFile }],
          },
        },
      },
    ],
  });
}

export interface EtcdBackupArgs extends BackupSettings {
  /** The cluster's Kubernetes provider. */
  provider: k8s.Provider;
  /** Secrets: Object Storage keys, for Pulumi (the bucket) and the job (a Secret). */
  accessKey: pulumi.Output<string>;
  secretKey: pulumi.Output<string>;
  /** Secret: the OpenSSH ed25519 private key the job signs every backup's sidecar with. */
  signingKey: pulumi.Output<string>;
}

export class EtcdBackup extends pulumi.ComponentResource {
  readonly bucket: aws.s3.Bucket;
  readonly endpoint: string;
  readonly cronJob: k8s.batch.v1.CronJob;

  constructor(name: string, args: EtcdBackupArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hcloud-control-plane:index:EtcdBackup", name, {}, opts);
    const { backup } = args;
    this.endpoint = objectStorageEndpoint(backup.location);

    const storage = new aws.Provider(
      `${name}-object-storage`,
      {
        region: backup.location,
        accessKey: args.accessKey,
        secretKey: args.secretKey,
        endpoints: [{ s3: this.endpoint }],
        s3UsePathStyle: true,
        // Hetzner has no STS, IAM or EC2 metadata; without these the provider calls them and fails.
        skipCredentialsValidation: true,
        skipRequestingAccountId: true,
        skipMetadataApiCheck: true,
        skipRegionValidation: true,
      },
      { parent: this },
    );

    this.bucket = new aws.s3.Bucket(
      `${name}-bucket`,
      {
        bucket: backup.bucket,
        // Only possible when the bucket is created; a later change replaces the bucket, which
        // protect refuses.
        objectLockEnabled: backup.objectLock,
        forceDestroy: false,
      },
      { parent: this, provider: storage, protect: true },
    );
    const versioning = new aws.s3.BucketVersioning(
      `${name}-versioning`,
      { bucket: this.bucket.bucket, versioningConfiguration: { status: "Enabled" } },
      { parent: this, provider: storage },
    );

    const scripts = readEtcdJobScripts(backupCronJob.name);
    const k8sOpts = { parent: this, provider: args.provider };
    const configMap = new k8s.core.v1.ConfigMap(`${name}-script`, backupScriptConfigMap(scripts), k8sOpts);
    const credentials = new k8s.core.v1.Secret(
      `${name}-credentials`,
      {
        metadata: metadata(names.secret),
        type: "Opaque",
        stringData: { AWS_ACCESS_KEY_ID: args.accessKey, AWS_SECRET_ACCESS_KEY: args.secretKey },
      },
      k8sOpts,
    );
    const signingKey = new k8s.core.v1.Secret(
      `${name}-signing-key`,
      {
        metadata: metadata(names.signingSecret),
        type: "Opaque",
        stringData: { [names.signingFile]: args.signingKey },
      },
      k8sOpts,
    );
    this.cronJob = new k8s.batch.v1.CronJob(`${name}-cronjob`, backupCronJobManifest(args, scripts), {
      ...k8sOpts,
      // The bucket versioned, and the script, credentials and signing key present before a run.
      dependsOn: [versioning, configMap, credentials, signingKey],
    });
    this.registerOutputs({});
  }
}
