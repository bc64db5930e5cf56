/**
 * The backup part of the real program's graph under recording mocks: the Object Storage
 * provider and bucket (through @pulumi/aws), and the CronJob with its script and credentials
 * (through the cluster's Kubernetes provider), validated against the Kubernetes schemas.
 *
 * The script itself runs for real against etcd and an S3 server in etcdBackup.test.ts. What
 * this cannot prove: that Hetzner accepts the bucket calls (DESIGN.md lists the flags its S3
 * needs) and that the image named by backupImage carries the tools the script uses
 * (scripts/jobs/images/etcd-backup.Dockerfile, checked against the scripts in tests/workflows.test.ts).
 */
import { spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { CronJob } from "kubernetes-models/batch/v1/CronJob";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import {
  backupCronJobManifest,
  backupEnvironment,
  backupScriptConfigMap,
  backupScriptPath,
} from "../components/etcd/backup";
import { parseConfig } from "../components/config";
import { scriptHashAnnotation } from "../components/etcd/cronJob";
import { ProgramRun } from "../tools/offline/harness";
import { loadStackConfig } from "../tools/offline/stackConfig";
import { byType, one, runStack } from "./support/program";
import { cronJobMounts } from "./support/cronJobMounts";
import { RuleFile } from "../components/addons/monitoring/rules";

const P = "hcloud-control-plane";
const prodConfig = (overrides: Record<string, unknown> = {}) => parseConfig(loadStackConfig("prod", { overrides }));
const script = fs.readFileSync(backupScriptPath, "utf8");
/** The project's one helper library, which the job scripts source (tests/scriptLibrary.test.ts). */
const library = fs.readFileSync(path.join(__dirname, "..", "scripts", "node", "lib.sh"), "utf8");
const scripts = { script, library };

describe("the prod stack's backup resources", () => {
  let run: ProgramRun;
  beforeAll(async () => {
    run = await runStack();
  });

  test("the EtcdBackup component holds the storage provider, bucket, versioning and the job's objects", () => {
    const component = one(run, "etcd-backup");
    expect(component.type).toBe(`${P}:index:EtcdBackup`);
    expect(
      run.resources
        .filter((r) => r.parent === component.urn)
        .map((r) => `${r.type} ${r.name}`)
        .sort(),
    ).toEqual([
      "aws:s3/bucket:Bucket etcd-backup-bucket",
      "aws:s3/bucketVersioning:BucketVersioning etcd-backup-versioning",
      "kubernetes:batch/v1:CronJob etcd-backup-cronjob",
      "kubernetes:core/v1:ConfigMap etcd-backup-script",
      "kubernetes:core/v1:Secret etcd-backup-credentials",
      "kubernetes:core/v1:Secret etcd-backup-signing-key",
      "pulumi:providers:aws etcd-backup-object-storage",
    ]);
  });

  test("the aws provider points at Hetzner Object Storage with path-style and the skip flags", () => {
    const provider = one(run, "etcd-backup-object-storage");
    expect(provider.inputs).toMatchObject({
      region: "nbg1",
      accessKey: "[secret]",
      secretKey: "[secret]",
      s3UsePathStyle: "true",
      skipCredentialsValidation: "true",
      skipRequestingAccountId: "true",
      skipMetadataApiCheck: "true",
      skipRegionValidation: "true",
    });
    expect(JSON.parse(provider.inputs.endpoints as string)).toEqual([{ s3: "https://nbg1.your-objectstorage.com" }]);
  });

  test("the bucket is protected, never force-destroyed, object lock at creation, versioning on; no lifecycle", () => {
    const provider = one(run, "etcd-backup-object-storage");
    const bucket = one(run, "etcd-backup-bucket");
    expect(bucket.protect).toBe(true);
    expect(bucket.provider).toBe(provider.urn);
    expect(bucket.inputs).toMatchObject({
      bucket: "prod-nbg1-etcd-backups",
      objectLockEnabled: true,
      forceDestroy: false,
    });
    expect(one(run, "etcd-backup-versioning").inputs).toMatchObject({
      bucket: "prod-nbg1-etcd-backups",
      versioningConfiguration: { status: "Enabled" },
    });
    // Retention is the job's: a lifecycle configuration hangs against Hetzner.
    expect(run.resources.filter((r) => r.type.includes("Lifecycle"))).toEqual([]);
  });

  test("the Kubernetes objects use the cluster's provider; the CronJob waits for the bucket's versioning", () => {
    const provider = one(run, "access-provider").urn;
    for (const name of ["etcd-backup-cronjob", "etcd-backup-script", "etcd-backup-credentials"]) {
      expect([name, one(run, name).provider]).toEqual([name, provider]);
    }
    expect(one(run, "etcd-backup-cronjob").dependsOn).toEqual(
      expect.arrayContaining([
        one(run, "etcd-backup-versioning").urn,
        one(run, "etcd-backup-script").urn,
        one(run, "etcd-backup-credentials").urn,
      ]),
    );
  });

  test("the Object Storage keys reach the job only through a Secret, as Pulumi secrets", () => {
    const credentials = one(run, "etcd-backup-credentials");
    expect(credentials.inputs.stringData).toBe("[secret]");
    expect(Object.keys(credentials.revealedInputs.stringData as object).sort()).toEqual([
      "AWS_ACCESS_KEY_ID",
      "AWS_SECRET_ACCESS_KEY",
    ]);
    const cronJob = JSON.stringify(one(run, "etcd-backup-cronjob").revealedInputs);
    expect(cronJob).not.toContain("placeholder for");
  });

  test("the freshness alert follows the 15-minute schedule: warning past 15 + 60 minutes, critical past twice that", () => {
    const spec = byType(run, "kubernetes:monitoring.coreos.com/v1:PrometheusRule")[0].inputs.spec as RuleFile;
    const rules = spec.groups.flatMap((g) => g.rules).filter((r) => "alert" in r && r.alert === "EtcdBackupTooOld");
    expect(rules.map((r) => [r.labels?.severity, /> (\d+)$/.exec(r.expr)?.[1]])).toEqual([
      ["warning", String(75 * 60)],
      ["critical", String(150 * 60)],
    ]);
  });

  test("the ConfigMap carries scripts/jobs/etcd-backup.sh and the library it sources as they are in the repository", () => {
    expect(one(run, "etcd-backup-script").inputs.data).toEqual({
      "etcd-backup.sh": script,
      "lib.sh": library,
    });
  });
});

describe("the CronJob", () => {
  const cfg = prodConfig();
  const manifest = backupCronJobManifest(cfg, scripts);
  const pod = manifest.spec.jobTemplate.spec.template.spec;
  const container = pod.containers[0];

  test("validates against the Kubernetes schema (and a broken one does not)", () => {
    expect(() => new CronJob(manifest as never).validate()).not.toThrow();
    expect(() => new ConfigMap(backupScriptConfigMap(scripts) as never).validate()).not.toThrow();
    const broken = { ...manifest, spec: { ...manifest.spec, concurrencyPolicy: 3 } };
    expect(() => new CronJob(broken as never).validate()).toThrow();
  });

  test("etcd-backup in kube-system on the configured schedule, never two at once, bounded in time", () => {
    expect(manifest.metadata).toMatchObject({ name: "etcd-backup", namespace: "kube-system" });
    expect(manifest.spec).toMatchObject({
      schedule: "*/15 * * * *",
      timeZone: "Etc/UTC",
      concurrencyPolicy: "Forbid",
      successfulJobsHistoryLimit: 3,
      failedJobsHistoryLimit: 3,
    });
    expect(manifest.spec.jobTemplate.spec.activeDeadlineSeconds).toBeGreaterThan(0);
    expect(prodConfig({ backupSchedule: "30 2 * * *" }).backup.schedule).toBe("30 2 * * *");
    expect(backupCronJobManifest(prodConfig({ backupSchedule: "30 2 * * *" }), scripts).spec.schedule).toBe(
      "30 2 * * *",
    );
  });

  test("runs on a control-plane node with host networking and the etcd certificates read-only", () => {
    expect(pod).toMatchObject({
      hostNetwork: true,
      restartPolicy: "Never",
      nodeSelector: { "node-role.kubernetes.io/control-plane": "" },
      tolerations: [{ key: "node-role.kubernetes.io/control-plane", operator: "Exists", effect: "NoSchedule" }],
    });
    expect(pod.volumes).toContainEqual({ name: "pki", hostPath: { path: "/etc/kubernetes/pki", type: "Directory" } });
    expect(container.volumeMounts).toContainEqual({ name: "pki", mountPath: "/etc/kubernetes/pki", readOnly: true });
    // The ConfigMap (script and library) is one directory: the script sources the library beside it.
    expect(pod.volumes).toContainEqual({
      name: "script",
      configMap: { name: "etcd-backup-script", defaultMode: 0o555 },
    });
    expect(container.volumeMounts).toContainEqual({ name: "script", mountPath: "/opt/etcd-job", readOnly: true });
    expect(container.command).toEqual(["/bin/bash", "/opt/etcd-job/etcd-backup.sh"]);
    expect(container.resources.requests).toEqual({ cpu: "100m", memory: "256Mi" });
    expect(container.image).toBe(`ghcr.io/platform/hcloud-control-plane/etcd-backup@sha256:${"0".repeat(64)}`);
  });

  test("the signing key is a file from its own Secret (owner-only), never an environment variable", () => {
    expect(pod.volumes).toContainEqual({
      name: "signing-key",
      secret: { secretName: "etcd-backup-signing-key", defaultMode: 0o400, items: [{ key: "key", path: "key" }] },
    });
    expect(container.volumeMounts).toContainEqual({ name: "signing-key", mountPath: "/etc/etcd-backup/signing" });
    expect(JSON.stringify(container.env)).not.toContain("etcd-backup-signing-key");
    expect(JSON.stringify(container.envFrom)).not.toContain("etcd-backup-signing-key");
  });

  test("a change to the script or to its library changes the pod template, so the next run uses it", () => {
    const hash = (text: string) => crypto.createHash("sha256").update(text).digest("hex");
    const annotation = (m: typeof manifest) =>
      m.spec.jobTemplate.spec.template.metadata.annotations[scriptHashAnnotation];
    // `sha256sum etcd-backup.sh lib.sh | sha256sum` in the pod's /opt/etcd-job.
    expect(annotation(manifest)).toBe(hash(`${hash(script)}  etcd-backup.sh\n${hash(library)}  lib.sh\n`));
    const changedScript = backupCronJobManifest(cfg, { script: `${script}\n# changed\n`, library });
    const changedLibrary = backupCronJobManifest(cfg, { script, library: `${library}\n# changed\n` });
    expect(new Set([manifest, changedScript, changedLibrary].map(annotation)).size).toBe(3);
  });

  test("the environment gives the script every endpoint (local member first) and the settings", () => {
    const env = Object.fromEntries(backupEnvironment(cfg).map((e) => [e.name, e.value]));
    expect(env).toEqual({
      ETCD_ENDPOINTS: "https://127.0.0.1:2379,https://10.20.1.11:2379,https://10.20.1.12:2379,https://10.20.1.13:2379",
      ETCD_CACERT: "/etc/kubernetes/pki/etcd/ca.crt",
      ETCD_CERT: "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
      ETCD_KEY: "/etc/kubernetes/pki/etcd/healthcheck-client.key",
      S3_ENDPOINT: "https://nbg1.your-objectstorage.com",
      S3_BUCKET: "prod-nbg1-etcd-backups",
      S3_PREFIX: "prod-nbg1",
      S3_REGION: "nbg1",
      BACKUP_ENCRYPTION: "age",
      BACKUP_AGE_RECIPIENTS: "age1jrv6vc5s67v5cacsn0608aj0l0570ympuy64r0nmqtkuu55rlyuq7urp76",
      BACKUP_KEEP_ALL_HOURS: "24",
      BACKUP_KEEP_HOURLY_DAYS: "7",
      BACKUP_RETENTION_DAYS: "30",
      BACKUP_KEEP_LAST: "4",
      BACKUP_OBJECT_LOCK_MODE: "COMPLIANCE",
      PKI_DIR: "/etc/kubernetes/pki",
      BACKUP_WORK_DIR: "/var/tmp/etcd-backup",
      BACKUP_SIGNING_KEY_FILE: "/etc/etcd-backup/signing/key",
    });
    expect(container.envFrom).toEqual([{ secretRef: { name: "etcd-backup-object-storage" } }]);
  });

  test("the tiers and the lock mode reach the job; a bucket without Object Lock gets no lock headers", () => {
    const envOf = (overrides: Record<string, unknown>) =>
      Object.fromEntries(backupEnvironment(prodConfig(overrides)).map((e) => [e.name, e.value]));
    expect(
      envOf({
        backupKeepAllHours: 48,
        backupKeepHourlyDays: 3,
        backupRetentionDays: 90,
        backupObjectLockMode: "GOVERNANCE",
      }),
    ).toMatchObject({
      BACKUP_KEEP_ALL_HOURS: "48",
      BACKUP_KEEP_HOURLY_DAYS: "3",
      BACKUP_RETENTION_DAYS: "90",
      BACKUP_OBJECT_LOCK_MODE: "GOVERNANCE",
    });
    // The script's "none" sends no --object-lock-* (a bucket without Object Lock refuses them).
    expect(envOf({ backupObjectLock: false }).BACKUP_OBJECT_LOCK_MODE).toBe("none");
    expect(() => prodConfig({ backupObjectLockMode: "governance" })).toThrow(
      /backupObjectLockMode = "governance": must be one of COMPLIANCE, GOVERNANCE/,
    );
  });

  test("every variable the job sets is one the script documents in --help", () => {
    const result = spawnSync("bash", [backupScriptPath, "--help"], {
      encoding: "utf8",
      env: { PATH: "/usr/bin:/bin" },
    });
    expect(result.status).toBe(0);
    const help = result.stdout;
    for (const e of container.env)
      if (e.name !== "HOME") expect([e.name, help.includes(e.name)]).toEqual([e.name, true]);
    for (const name of ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]) expect(help).toContain(name);
  });
});

describe("the etcd-backup CronJob's mounts of the node", () => {
  test("in the real program's graph: only the PKI directory it archives, read-only, which holds the etcd client files", async () => {
    const run = await runStack();
    const mounts = cronJobMounts(run, "etcd-backup-cronjob");
    expect(mounts.host).toEqual([
      {
        volume: "pki",
        hostPath: "/etc/kubernetes/pki",
        type: "Directory",
        mountPath: "/etc/kubernetes/pki",
        readOnly: true,
        subPath: undefined,
      },
    ]);
    // Besides it the script's ConfigMap, the signing key's Secret, the scratch directory and the
    // in-memory /tmp.
    expect(mounts.other).toEqual(["script: configMap", "work: emptyDir", "signing-key: secret", "tmp: emptyDir"]);
    // What the script reads of the node (scripts/jobs/etcd-backup.sh --help): the PKI_DIR it
    // archives and the etcd client files, all inside that one read-only mount.
    expect(mounts.env.PKI_DIR).toBe("/etc/kubernetes/pki");
    for (const file of [mounts.env.ETCD_CACERT, mounts.env.ETCD_CERT, mounts.env.ETCD_KEY])
      expect(file).toMatch(/^\/etc\/kubernetes\/pki\/etcd\/[a-z-]+\.(crt|key)$/);
    // A digest names one image for good: a node that has it need not pull it again.
    expect(mounts.image).toEqual({
      reference: expect.stringMatching(/@sha256:[a-f0-9]{64}$/),
      pullPolicy: "IfNotPresent",
    });
  }, 60_000);
});
