/**
 * scripts/jobs/etcd-backup.sh and scripts/ops/etcd-restore.sh (fetch, fetch-pki, member) for real: a
 * 3-member etcd (Debian's etcd 3.4) on 127.0.0.1, s3rver as the object store reached through
 * Debian's aws-cli v2, age keys made by age-keygen. Nothing is faked except aws wrappers that
 * fail a chosen upload, record delete-object calls, or answer list-object-versions the way a
 * versioned bucket does (s3rver 3.7 has no object versioning).
 *
 * What this cannot prove: etcd 3.6's etcdutl (--bump-revision/--mark-compacted) and Hetzner's
 * own S3 dialect. Both scripts pick etcdutl and the bump flags only when present, so here they
 * run their etcdctl 3.4 fallback; the cluster test (etcdRestore.test.ts) covers the flag path
 * with a stand-in.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  AgeKey,
  EtcdCluster,
  freePorts,
  makeAgeKey,
  makeSigningKey,
  requireBackupTools,
  runScript,
  ScriptResult,
  jobsDir,
  opsDir,
} from "./support/etcdCluster";
import { awsBinary, S3Server, startS3Server } from "./support/s3Server";

const backupScript = path.join(jobsDir, "etcd-backup.sh");
const restoreScript = path.join(opsDir, "etcd-restore.sh");

const keyCount = 3000;
const entries: [string, string][] = [...Array(keyCount)].map((_, i) => [
  `/registry/drill/key-${String(i).padStart(5, "0")}`,
  `value-${i}-${"x".repeat(i % 50)}`,
]);
const pkiSecret = `-----BEGIN PRIVATE KEY-----\nfake-ca-key-${Math.random().toString(36).slice(2)}\n`;

let tmp: string;
let s3: S3Server;
let cluster: EtcdCluster;
let ageKey: AgeKey;
let wrongKey: AgeKey;
let colleagueKey: AgeKey;
let pkiDir: string;
let secrets: string[];
let signingKeyFile: string;

beforeAll(async () => {
  requireBackupTools();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "etcd-backup-test-"));
  pkiDir = path.join(tmp, "pki");
  fs.mkdirSync(path.join(pkiDir, "etcd"), { recursive: true });
  fs.writeFileSync(path.join(pkiDir, "ca.key"), pkiSecret);
  fs.writeFileSync(path.join(pkiDir, "etcd", "ca.crt"), "-----BEGIN CERTIFICATE-----\nfake\n");
  ageKey = makeAgeKey(tmp, "operator");
  wrongKey = makeAgeKey(tmp, "stranger");
  colleagueKey = makeAgeKey(tmp, "colleague");
  const signingKey = makeSigningKey(tmp, "backup-signing");
  signingKeyFile = signingKey.file;
  s3 = await startS3Server();
  cluster = await EtcdCluster.create({ baseDir: tmp });
  await cluster.startAll();
  await cluster.putMany(entries);
  secrets = [
    s3.accessKeyId,
    s3.secretAccessKey,
    ageKey.secret,
    wrongKey.secret,
    colleagueKey.secret,
    pkiSecret.trim(),
    ...signingKey.secretLines,
  ];
}, 120_000);

afterAll(async () => {
  await cluster?.cleanup().catch(() => undefined);
  await s3?.stop().catch(() => undefined);
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

function backupEnv(prefix: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    ...s3.env,
    ETCD_ENDPOINTS: cluster.endpoints.join(","),
    S3_ENDPOINT: s3.endpoint,
    S3_BUCKET: s3.bucket,
    S3_PREFIX: prefix,
    S3_REGION: s3.region,
    BACKUP_AGE_RECIPIENTS: ageKey.recipient,
    BACKUP_SIGNING_KEY_FILE: signingKeyFile,
    PKI_DIR: pkiDir,
    S3_RETRY_SECONDS: "0",
    ...extra,
  };
}

function restoreEnv(prefix: string, identity: AgeKey | null = ageKey): NodeJS.ProcessEnv {
  return {
    ...s3.env,
    S3_ENDPOINT: s3.endpoint,
    S3_BUCKET: s3.bucket,
    S3_PREFIX: prefix,
    S3_REGION: s3.region,
    ...(identity ? { BACKUP_AGE_IDENTITY_FILE: identity.file } : {}),
  };
}

/** Runs a script; asserts no secret reached its stdout or stderr. */
async function run(script: string, args: string[], env: NodeJS.ProcessEnv): Promise<ScriptResult> {
  // The scripts' own PATH: /usr/bin first (Debian's aws-cli v2, not a pyenv shim).
  const result = await runScript(script, args, env);
  for (const secret of secrets) {
    expect(result.stdout).not.toContain(secret);
    expect(result.stderr).not.toContain(secret);
  }
  return result;
}

interface Summary {
  key: string;
  revision: number;
  size: number;
  sha256: string;
  endpoint: string;
  pkiKey: string | null;
  totalKeys: number;
  deleted: string[];
}

async function backup(prefix: string, extra: NodeJS.ProcessEnv = {}): Promise<Summary> {
  const result = await run(backupScript, [], backupEnv(prefix, extra));
  if (result.status !== 0) throw new Error(`etcd-backup.sh failed (${result.status}):\n${result.stderr}`);
  return JSON.parse(result.stdout.trim()) as Summary;
}

/**
 * A stand-in `aws` first on PATH: runs `body` (bash; it may answer and exit), records every
 * `s3api delete-object` call (one tab-separated line of arguments) and passes the call on to the
 * real aws, a `--version-id=ID` dropped (s3rver keeps one version per key). Returns the PATH and
 * a reader of the recorded delete calls, in order.
 */
function awsStandIn(name: string, body = ""): { PATH: string; deletes: () => DeleteCall[] } {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir, { recursive: true });
  const calls = path.join(dir, "delete-calls");
  fs.writeFileSync(
    path.join(dir, "aws"),
    `#!/bin/bash
${body}
if [[ " $* " == *" s3api delete-object "* ]]; then
  (IFS=$'\t'; printf '%s\n' "$*") >>'${calls}'
  args=()
  for a in "$@"; do [[ "$a" == --version-id=* ]] || args+=("$a"); done
  exec ${awsBinary} "\${args[@]}"
fi
exec ${awsBinary} "$@"
`,
    { mode: 0o755 },
  );
  const deletes = (): DeleteCall[] =>
    fs.existsSync(calls)
      ? fs
          .readFileSync(calls, "utf8")
          .split("\n")
          .filter((line) => line !== "")
          .map((line) => {
            const args = line.split("\t");
            const value = (flag: string): string | null => {
              const i = args.indexOf(flag);
              if (i >= 0) return args[i + 1];
              const joined = args.find((a) => a.startsWith(`${flag}=`));
              return joined ? joined.slice(flag.length + 1) : null;
            };
            return { key: value("--key")!, versionId: value("--version-id") };
          })
      : [];
  return { PATH: `${dir}:/usr/bin:/bin`, deletes };
}

interface DeleteCall {
  key: string;
  versionId: string | null;
}

/** What a complete backup of each of `keys` leaves in the bucket: the object, its sidecar and the sidecar's signature. */
function withSignatures(keys: string[]): string[] {
  return keys.flatMap((k) => [k, `${k}.sha256`, `${k}.sha256.sig`]).sort();
}

const keyPattern = /^drill\/etcd\/\d{8}T\d{6}Z-r\d+\.db\.zst\.age$/;

describe("configuration", () => {
  test("--help of both scripts documents every variable of the contract", async () => {
    const backupHelp = await run(backupScript, ["--help"], {});
    expect(backupHelp.status).toBe(0);
    for (const variable of [
      "ETCD_ENDPOINTS",
      "ETCD_CACERT",
      "ETCD_CERT",
      "ETCD_KEY",
      "ETCD_DIAL_TIMEOUT",
      "ETCD_HEALTH_TIMEOUT",
      "ETCD_SNAPSHOT_TIMEOUT",
      "S3_ENDPOINT",
      "S3_BUCKET",
      "S3_PREFIX",
      "S3_REGION",
      "AWS_ACCESS_KEY_ID",
      "AWS_SECRET_ACCESS_KEY",
      "AWS_CONFIG_FILE",
      "BACKUP_ENCRYPTION",
      "BACKUP_AGE_RECIPIENTS",
      "BACKUP_RETENTION_DAYS",
      "BACKUP_KEEP_LAST",
      "PKI_DIR",
      "BACKUP_WORK_DIR",
      "S3_UPLOAD_ATTEMPTS",
      "S3_TIMEOUT",
    ]) {
      expect(backupHelp.stdout).toContain(variable);
    }
    const restoreHelp = await run(restoreScript, ["--help"], {});
    expect(restoreHelp.status).toBe(0);
    for (const word of [
      "fetch",
      "fetch-pki",
      "member",
      "cluster",
      "--move-aside",
      "--initial-cluster",
      "--peer-url",
      "--cluster-token",
      "--node",
      "--log",
      "S3_ENDPOINT",
      "S3_BUCKET",
      "S3_PREFIX",
      "S3_REGION",
      "AWS_ACCESS_KEY_ID",
      "AWS_SECRET_ACCESS_KEY",
      "BACKUP_AGE_IDENTITY_FILE",
      "RESTORE_SSH",
      "RESTORE_NODE_ETCDUTL",
    ]) {
      expect(restoreHelp.stdout).toContain(word);
    }
  });

  test("an invalid BACKUP_ENCRYPTION is refused, naming the allowed values", async () => {
    const result = await run(backupScript, [], backupEnv("invalid", { BACKUP_ENCRYPTION: "aes" }));
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("BACKUP_ENCRYPTION must be 'age' or 'none', got 'aes'");
    expect(s3.list("invalid/")).toEqual([]);
  });

  test("each missing required variable is refused with a message naming it", async () => {
    for (const variable of [
      "ETCD_ENDPOINTS",
      "S3_ENDPOINT",
      "S3_BUCKET",
      "S3_PREFIX",
      "S3_REGION",
      "AWS_ACCESS_KEY_ID",
      "AWS_SECRET_ACCESS_KEY",
      "BACKUP_AGE_RECIPIENTS",
    ]) {
      const env = backupEnv("missing");
      delete env[variable];
      const result = await run(backupScript, [], env);
      expect(result.status).toBe(2);
      expect(result.stderr).toContain(`${variable} is required`);
    }
    const badRecipient = await run(backupScript, [], backupEnv("missing", { BACKUP_AGE_RECIPIENTS: "age1nope" }));
    expect(badRecipient.status).toBe(2);
    expect(badRecipient.stderr).toContain("not an age public key");
    expect(s3.list("missing/")).toEqual([]);
  });
});

describe("drill and faults", () => {
  let drill: Summary;

  test("drill: encrypted backup, wipe the cluster, fetch, restore all 3 members, every key is back", async () => {
    // Two recipients, comma and newline separated: either operator can decrypt.
    drill = await backup("drill", { BACKUP_AGE_RECIPIENTS: `${ageKey.recipient},\n${colleagueKey.recipient}\n` });
    expect(drill.key).toMatch(keyPattern);
    expect(drill.key).toContain(`-r${drill.revision}.`);
    expect(drill.totalKeys).toBeGreaterThanOrEqual(keyCount);
    expect(drill.pkiKey).toMatch(/^drill\/pki\/\d{8}T\d{6}Z\.tar\.zst\.age$/);
    expect(s3.list("drill/")).toEqual(withSignatures([drill.key, drill.pkiKey!]));
    // The sidecar is what sha256sum prints; the object is age-encrypted (no plaintext key in it).
    expect(s3.get(`${drill.key}.sha256`).toString()).toBe(`${drill.sha256}  ${path.basename(drill.key)}\n`);
    const object = s3.get(drill.key);
    expect(object.subarray(0, 21).toString()).toBe("age-encryption.org/v1");
    expect(object.includes(Buffer.from("/registry/drill/key-"))).toBe(false);
    expect(s3.get(drill.pkiKey!).includes(Buffer.from("fake-ca-key"))).toBe(false);

    await cluster.wipe();

    const snapshot = path.join(tmp, "drill.db");
    const fetched = await run(restoreScript, ["fetch", "--out", snapshot], restoreEnv("drill", colleagueKey));
    expect(fetched.status).toBe(0);
    const fetchSummary = JSON.parse(fetched.stdout) as { key: string; revision: number };
    expect(fetchSummary.key).toBe(drill.key);
    expect(fetchSummary.revision).toBe(drill.revision);

    const token = "drill-restore-token";
    for (const member of cluster.members) {
      const restored = await run(
        restoreScript,
        [
          "member",
          "--snapshot",
          snapshot,
          "--name",
          member.name,
          "--data-dir",
          member.dataDir,
          "--initial-cluster",
          cluster.initialCluster,
          "--peer-url",
          member.peerUrl,
          "--cluster-token",
          token,
        ],
        { PATH: "/usr/bin:/bin" },
      );
      expect(restored.status).toBe(0);
      expect(restored.stderr).toContain("with etcdctl");
    }
    await cluster.startAll();
    expect(cluster.memberCount()).toBe(3);
    for (const endpoint of cluster.endpoints) {
      const values = await cluster.getPrefix("/registry/drill/", endpoint);
      expect(values.size).toBe(keyCount);
      for (const [k, v] of entries) expect(values.get(k)).toBe(v);
    }
    const health = cluster.etcdctl(["endpoint", "health", "--cluster"]);
    expect(health.status).toBe(0);
    expect((health.stdout + health.stderr).match(/is healthy/g)).toHaveLength(3);

    // The PKI of the same backup comes back byte for byte.
    const pkiOut = path.join(tmp, "pki-restored");
    const pki = await run(restoreScript, ["fetch-pki", "--key", drill.key, "--out", pkiOut], restoreEnv("drill"));
    expect(pki.status).toBe(0);
    expect(fs.readFileSync(path.join(pkiOut, "ca.key"), "utf8")).toBe(pkiSecret);
    expect(fs.statSync(pkiOut).mode & 0o777).toBe(0o700);
  });

  test("member refuses a non-empty data dir, and --move-aside keeps the old one", async () => {
    const snapshot = path.join(tmp, "drill.db");
    const dataDir = path.join(tmp, "member-data");
    fs.mkdirSync(dataDir);
    fs.writeFileSync(path.join(dataDir, "old-data"), "keep me");
    const args = [
      "member",
      "--snapshot",
      snapshot,
      "--name",
      "etcd-1",
      "--data-dir",
      dataDir,
      "--initial-cluster",
      cluster.initialCluster,
      "--peer-url",
      cluster.members[0].peerUrl,
      "--cluster-token",
      "t",
    ];
    const refused = await run(restoreScript, args, { PATH: "/usr/bin:/bin" });
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain("exists and is not empty; refusing");
    expect(fs.readdirSync(dataDir)).toEqual(["old-data"]);
    const moved = await run(restoreScript, [...args, "--move-aside"], { PATH: "/usr/bin:/bin" });
    expect(moved.status).toBe(0);
    const aside = fs.readdirSync(tmp).filter((f) => f.startsWith("member-data.pre-restore-"));
    expect(aside).toHaveLength(1);
    expect(fs.readFileSync(path.join(tmp, aside[0], "old-data"), "utf8")).toBe("keep me");
    expect(fs.existsSync(path.join(dataDir, "member", "snap", "db"))).toBe(true);
  });

  test("the leader is killed just before the backup: the snapshot comes from another member", async () => {
    const leader = cluster.leader();
    await cluster.kill(leader);
    try {
      // The dead leader first in ETCD_ENDPOINTS, so the script has to move on.
      const endpoints = [leader, ...cluster.endpoints.filter((e) => e !== leader)].join(",");
      const summary = await backup("leader", { ETCD_ENDPOINTS: endpoints, ETCD_HEALTH_TIMEOUT: "3" });
      expect(summary.endpoint).not.toBe(leader);
      expect(cluster.endpoints).toContain(summary.endpoint);
      expect(s3.list("leader/etcd/")).toEqual(withSignatures([summary.key]));
    } finally {
      cluster.start(leader);
      await cluster.waitHealthy();
    }
  });

  test("S3 unreachable: non-zero exit and no object that looks like a backup", async () => {
    const [closedPort] = await freePorts(1);
    const result = await run(
      backupScript,
      [],
      backupEnv("unreachable", {
        S3_ENDPOINT: `http://127.0.0.1:${closedPort}`,
        S3_UPLOAD_ATTEMPTS: "2",
        // aws-cli's own retries would only add minutes of backoff here.
        AWS_MAX_ATTEMPTS: "1",
      }),
    );
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("upload failed");
    expect(result.stdout).toBe("");
    expect(s3.list("unreachable/")).toEqual([]);
  });

  test("an upload failing half-way removes everything this run uploaded (no sidecar, no partial objects)", async () => {
    // aws fails every upload of a .sha256 sidecar: the snapshot and the PKI archive went up first.
    const aws = awsStandIn(
      "failing-aws",
      'if [[ "$*" == *" s3api put-object "*"--key "*".sha256 --body"* ]]; then echo "simulated: connection reset" >&2; exit 1; fi',
    );
    const result = await run(backupScript, [], backupEnv("halfway", { PATH: aws.PATH }));
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/uploaded s3:\/\/[^ ]+\/halfway\/etcd\/.*\.db\.zst\.age/);
    expect(result.stderr).toContain("removing the");
    expect(s3.list("halfway/")).toEqual([]);
  });

  test("the cleanup of a failed run deletes newest upload first (sidecar before its object), each key once", async () => {
    // Only the snapshot's sidecar (the last upload) fails, twice: its key is recorded per attempt.
    const aws = awsStandIn(
      "failing-sidecar-aws",
      'if [[ "$*" == *" s3api put-object "*"--key "*"/etcd/"*".sha256 --body"* ]]; then echo "simulated: connection reset" >&2; exit 1; fi',
    );
    const result = await run(backupScript, [], backupEnv("newest-first", { PATH: aws.PATH, S3_UPLOAD_ATTEMPTS: "2" }));
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("removing the 6 object(s) this failed run uploaded");
    const snapshot = /uploaded s3:\/\/[^ /]+\/(newest-first\/etcd\/[^ ]+\.db\.zst\.age) /.exec(result.stderr)![1];
    const pki = /uploaded s3:\/\/[^ /]+\/(newest-first\/pki\/[^ ]+\.tar\.zst\.age) /.exec(result.stderr)![1];
    // s3rver lists no versions: each key goes with one plain delete-object, in reverse upload order.
    expect(aws.deletes()).toEqual(
      [`${snapshot}.sha256`, `${snapshot}.sha256.sig`, `${pki}.sha256`, `${pki}.sha256.sig`, pki, snapshot].map(
        (key) => ({ key, versionId: null }),
      ),
    );
    expect(s3.list("newest-first/")).toEqual([]);
  });

  test("retention deletes every version and delete marker of exactly the doomed key on a versioned bucket", async () => {
    const stamp = new Date(Date.now() - 30 * 86_400_000)
      .toISOString()
      .replace(/[-:]/g, "")
      .replace(/\.\d+Z$/, "Z");
    const doomed = `versioned/etcd/${stamp}-r42.db.zst.age`;
    s3.putAll({
      [doomed]: "old",
      [`${doomed}.sha256`]: "x",
      [`versioned/pki/${stamp}.tar.zst.age`]: "old",
      [`versioned/pki/${stamp}.tar.zst.age.sha256`]: "x",
    });
    // What a versioned bucket answers for the prefix `doomed`: two versions and a delete marker of
    // it, and a version of the sidecar, a longer key sharing the prefix.
    const listing = {
      Versions: [
        { Key: doomed, VersionId: "v-snapshot-2", IsLatest: true },
        { Key: doomed, VersionId: "v-snapshot-1", IsLatest: false },
        { Key: `${doomed}.sha256`, VersionId: "v-longer-key", IsLatest: true },
      ],
      DeleteMarkers: [{ Key: doomed, VersionId: "dm-snapshot-3", IsLatest: false }],
    };
    const listingFile = path.join(tmp, "versioned-listing.json");
    fs.writeFileSync(listingFile, JSON.stringify(listing));
    const aws = awsStandIn(
      "versioned-aws",
      `if [[ "$*" == *" s3api list-object-versions "*" --prefix ${doomed} "* ]]; then cat '${listingFile}'; exit 0; fi`,
    );
    const result = await run(
      backupScript,
      [],
      backupEnv("versioned", { PATH: aws.PATH, BACKUP_RETENTION_DAYS: "14", BACKUP_KEEP_LAST: "1" }),
    );
    expect(result.status).toBe(0);
    const summary = JSON.parse(result.stdout) as Summary;
    expect(summary.deleted).toHaveLength(4);
    expect(summary.deleted).toContain(doomed);
    const deletes = aws.deletes();
    // Each version and the delete marker of exactly `doomed`, by id; never a plain delete of it (on a
    // versioned bucket that only adds a delete marker), never the longer key's version.
    const ofDoomed = deletes.filter((d) => d.key === doomed);
    expect(ofDoomed.map((d) => d.versionId).sort()).toEqual(["dm-snapshot-3", "v-snapshot-1", "v-snapshot-2"]);
    expect(deletes.map((d) => d.versionId)).not.toContain("v-longer-key");
    // The other keys list no versions here (s3rver): the fallback, a WARNING and a plain delete each.
    expect(result.stderr).toContain(`WARNING: could not list the versions of s3://${s3.bucket}/${doomed}.sha256`);
    const others = deletes.filter((d) => d.key !== doomed);
    expect(others).toEqual(
      [`versioned/pki/${stamp}.tar.zst.age.sha256`, `${doomed}.sha256`, `versioned/pki/${stamp}.tar.zst.age`].map(
        (key) => ({ key, versionId: null }),
      ),
    );
    // Sidecars first: the snapshot's sidecar is gone before any version of the snapshot.
    expect(deletes.findIndex((d) => d.key === `${doomed}.sha256`)).toBeLessThan(
      deletes.findIndex((d) => d.key === doomed),
    );
    expect(s3.list("versioned/")).toEqual(withSignatures([summary.key, summary.pkiKey!]));
  });

  test("a corrupted object: fetch refuses on the checksum and leaves no output file", async () => {
    const summary = await backup("corrupt");
    const object = s3.get(summary.key);
    object[object.length - 100] ^= 0xff;
    s3.put(summary.key, object);
    const out = path.join(tmp, "corrupt-out", "snapshot.db");
    fs.mkdirSync(path.dirname(out));
    const result = await run(restoreScript, ["fetch", "--out", out], restoreEnv("corrupt"));
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`checksum mismatch for ${summary.key}`);
    expect(fs.readdirSync(path.dirname(out))).toEqual([]);
  });

  test("the wrong age identity: fetch refuses and leaves no output file", async () => {
    const out = path.join(tmp, "wrong-identity", "snapshot.db");
    fs.mkdirSync(path.dirname(out));
    const result = await run(restoreScript, ["fetch", "--key", drill.key, "--out", out], restoreEnv("drill", wrongKey));
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("wrong identity?");
    expect(fs.readdirSync(path.dirname(out))).toEqual([]);
    const noIdentity = await run(restoreScript, ["fetch", "--out", out], restoreEnv("drill", null));
    expect(noIdentity.status).toBe(2);
    expect(noIdentity.stderr).toContain("BACKUP_AGE_IDENTITY_FILE is required");
  });

  test("retention (by the UTC stamp in the key) deletes old backups but keeps the newest BACKUP_KEEP_LAST", async () => {
    const stamp = (daysAgo: number) =>
      new Date(Date.now() - daysAgo * 86_400_000)
        .toISOString()
        .replace(/[-:]/g, "")
        .replace(/\.\d+Z$/, "Z");
    const objects: Record<string, string> = {};
    const seed = (prefix: string, daysAgo: number, complete: boolean) => {
      const s = stamp(daysAgo);
      const snapshot = `${prefix}/etcd/${s}-r${1000 + daysAgo}.db.zst.age`;
      objects[snapshot] = "old";
      objects[`${prefix}/pki/${s}.tar.zst.age`] = "old";
      if (complete) {
        objects[`${snapshot}.sha256`] = "x";
        objects[`${prefix}/pki/${s}.tar.zst.age.sha256`] = "x";
      }
      return snapshot;
    };
    const old = [30, 25, 20].map((d) => seed("retention", d, true));
    const oldOrphan = seed("retention", 40, false); // a failed run long ago
    const recentOrphan = seed("retention", 1, false); // maybe a run in progress: kept
    const recent = seed("retention", 2, true);
    s3.putAll(objects);
    const summary = await backup("retention", { BACKUP_RETENTION_DAYS: "14", BACKUP_KEEP_LAST: "3" });
    const left = s3.list("retention/");
    // Kept: the new backup, the 2-day-old one (young), the newest old one (KEEP_LAST 3) with their PKI.
    const kept = [summary.key, recent, old[2]];
    for (const k of kept) {
      expect(left).toContain(k);
      expect(left).toContain(`${k}.sha256`);
    }
    expect(left).toContain(recentOrphan);
    for (const k of [old[0], old[1], oldOrphan]) {
      expect(left).not.toContain(k);
      expect(left).not.toContain(`${k}.sha256`);
      const s = path.basename(k).split("-")[0];
      expect(left).not.toContain(`retention/pki/${s}.tar.zst.age`);
    }
    expect(left.filter((k) => k.startsWith("retention/pki/") && !/\.sha256(\.sig)?$/.test(k))).toHaveLength(4);
    // Two old complete backups (snapshot, sidecar, PKI, PKI sidecar) and the old orphan (2 objects).
    expect(summary.deleted).toHaveLength(10);
  });

  test("BACKUP_ENCRYPTION=none uploads .db.zst, skips the PKI with a warning, and fetches without an identity", async () => {
    const result = await run(backupScript, [], backupEnv("plain", { BACKUP_ENCRYPTION: "none" }));
    expect(result.status).toBe(0);
    const summary = JSON.parse(result.stdout) as Summary;
    expect(summary.key).toMatch(/^plain\/etcd\/\d{8}T\d{6}Z-r\d+\.db\.zst$/);
    expect(summary.pkiKey).toBeNull();
    expect(result.stderr).toContain("WARNING: BACKUP_ENCRYPTION=none: the PKI (private CA keys) is NOT backed up");
    expect(s3.list("plain/")).toEqual(withSignatures([summary.key]));
    const out = path.join(tmp, "plain.db");
    const fetched = await run(restoreScript, ["fetch", "--out", out], restoreEnv("plain", null));
    expect(fetched.status).toBe(0);
    expect(fs.statSync(out).size).toBeGreaterThan(0);
  });
});

describe("TLS", () => {
  test("an etcd that requires client certificates is backed up with ETCD_CACERT/ETCD_CERT/ETCD_KEY, and not without", async () => {
    const tlsCluster = await EtcdCluster.create({ baseDir: tmp, size: 1, tls: true });
    try {
      await tlsCluster.startAll();
      expect(tlsCluster.etcdctl(["put", "/registry/tls", "over-tls"]).status).toBe(0);
      const clientKey = fs.readFileSync(tlsCluster.tls!.clientKey, "utf8").split("\n")[1];
      secrets.push(clientKey);
      const endpoints = { ETCD_ENDPOINTS: tlsCluster.endpoints.join(","), ETCD_HEALTH_TIMEOUT: "3" };
      const noCerts = await run(backupScript, [], backupEnv("tls", endpoints));
      expect(noCerts.status).toBe(1);
      expect(noCerts.stderr).toContain("no endpoint of ETCD_ENDPOINTS gave a snapshot");
      const summary = await backup("tls", {
        ...endpoints,
        ETCD_CACERT: tlsCluster.tls!.caCert,
        ETCD_CERT: tlsCluster.tls!.clientCert,
        ETCD_KEY: tlsCluster.tls!.clientKey,
      });
      expect(summary.endpoint).toBe(tlsCluster.endpoints[0]);
      expect(summary.endpoint).toMatch(/^https:/);
      expect(s3.list("tls/etcd/")).toEqual(withSignatures([summary.key]));
      const halfConfigured = await run(backupScript, [], backupEnv("tls", { ...endpoints, ETCD_CERT: "/x.crt" }));
      expect(halfConfigured.status).toBe(2);
      expect(halfConfigured.stderr).toContain("ETCD_CERT and ETCD_KEY must both be set or both be empty");
    } finally {
      await tlsCluster.cleanup();
    }
  });
});
