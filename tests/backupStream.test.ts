/**
 * scripts/jobs/etcd-backup.sh's stream, signatures and Object Lock, for real: a one-member etcd
 * (Debian's etcd 3.4) on 127.0.0.1 holding a few MiB of incompressible values, a real Ceph RADOS
 * Gateway (tests/support/rgw.ts, the software Hetzner Object Storage runs) with a bucket created
 * with Object Lock enabled, curl, aws-cli, age and ssh-keygen as installed. Every run uses
 * BACKUP_OBJECT_LOCK_MODE=COMPLIANCE, as the stack does. The upload part size is the S3 minimum
 * (5 MiB), so the snapshot goes up as a multipart upload of several parts.
 *
 * Stand-ins, each first on PATH and otherwise the real tool:
 * - `aws` and `curl` (tests/support/s3Clients.ts) record every S3 call (operation and key) and
 *   can fail one the way each client reports an error the store returned: curl with the status
 *   and the S3 error document, aws-cli with its message and exit status 254.
 * - `age` encrypts the first MiBs of its input with the real age and then dies the way age
 *   reports any failure: "age: error: ..." on stderr, exit status 1 (filippo.io/age
 *   cmd/age/age.go, errorf).
 * - `etcdctl` runs the real `snapshot save` and then changes one byte inside the file, as a disk
 *   or a broken copy would; etcd's own sha256 at the end of the snapshot
 *   (etcdserver/api/v3rpc/maintenance.go, Snapshot) no longer matches.
 *
 * This suite used to run on s3rver, which implements neither Object Lock nor
 * AbortMultipartUpload (s3rver 3.7 answers DELETE ?uploadId with 405); RGW does both, so an
 * aborted upload is shown to leave no unfinished upload and no version, and every object's lock
 * is read back. Nothing here needs s3rver any more. What this cannot prove: Hetzner's own S3
 * dialect beyond RGW 16.2.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  AgeKey,
  EtcdCluster,
  makeAgeKey,
  makeSigningKey,
  requireBackupTools,
  runScript,
  jobsDir,
  SigningKey,
} from "./support/etcdCluster";
import { startRgw, RgwServer } from "./support/rgw";
import { s3StandIn } from "./support/s3Clients";
import { backupJobEnv } from "./support/s3Server";

const backupScript = path.join(jobsDir, "etcd-backup.sh");
const sshKeygen = "/usr/bin/ssh-keygen";

let tmp: string;
let s3: RgwServer;
let cluster: EtcdCluster;
let ageKey: AgeKey;
let pkiDir: string;
let signingKey: SigningKey;
let secrets: string[];

beforeAll(async () => {
  requireBackupTools();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "backup-stream-test-"));
  pkiDir = path.join(tmp, "pki");
  fs.mkdirSync(pkiDir);
  fs.writeFileSync(path.join(pkiDir, "ca.key"), "-----BEGIN PRIVATE KEY-----\nstream-test\n");
  ageKey = makeAgeKey(tmp, "operator");
  // Mode 0644, as a Secret volume mounts it: the script copies it to a 0600 file for ssh-keygen.
  signingKey = makeSigningKey(tmp, "backup-signing");
  s3 = await startRgw();
  cluster = await EtcdCluster.create({ baseDir: tmp, size: 1 });
  await cluster.startAll();
  // About 12 MiB of random base64 (zstd gains little): the snapshot is three 5 MiB parts.
  const entries: [string, string][] = [...Array(120)].map((_, i) => [
    `/registry/stream/${String(i).padStart(4, "0")}`,
    randomBytes(75 * 1024).toString("base64"),
  ]);
  await cluster.putMany(entries, 20, 2);
  secrets = [s3.secretAccessKey, ageKey.secret, ...signingKey.secretLines];
}, 600_000);

afterAll(async () => {
  await cluster?.cleanup().catch(() => undefined);
  await s3?.stop().catch(() => undefined);
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

function backupEnv(prefix: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const job = {
    etcdEndpoints: cluster.endpoints,
    prefix,
    ageRecipients: ageKey.recipient,
    signingKeyFile: signingKey.file,
    pkiDir,
  };
  return backupJobEnv(s3, job, {
    S3_PART_SIZE_MIB: "5",
    BACKUP_OBJECT_LOCK_MODE: "COMPLIANCE",
    BACKUP_WORK_DIR: tmp,
    ...extra,
  });
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  /** The S3 calls, in the order they started: "operation key"; "end key" when a put-object ended. */
  calls: string[];
}

/**
 * Runs the backup with stand-ins in `name`/ first on PATH: `aws` and `curl` (record each S3
 * call, then run `s3Body`, then the real client: tests/support/s3Clients.ts), and any of
 * `tools` (name to bash body). Asserts that no secret reached the output.
 */
async function runBackup(
  name: string,
  extra: NodeJS.ProcessEnv = {},
  s3Body = "",
  tools: Record<string, string> = {},
): Promise<Run> {
  const dir = path.join(tmp, name);
  const clients = s3StandIn(dir, s3Body);
  for (const [tool, body] of Object.entries(tools)) {
    fs.writeFileSync(path.join(dir, tool), `#!/bin/bash\n${body}\n`, { mode: 0o755 });
  }
  const result = await runScript(backupScript, [], { ...backupEnv(name, extra), PATH: clients.PATH });
  for (const secret of secrets) {
    expect(result.stdout).not.toContain(secret);
    expect(result.stderr).not.toContain(secret);
  }
  // The key pair reaches curl on stdin (--config -), never on a command line others can read.
  for (const call of clients.calls()) {
    for (const secret of secrets) expect(call.args.join(" ")).not.toContain(secret);
  }
  const events: [number, string][] = [];
  for (const call of clients.calls()) {
    events.push([call.startedAt, `${call.op} ${call.key}`]);
    if (call.op === "put-object" && call.endedAt !== undefined) events.push([call.endedAt, `end ${call.key}`]);
  }
  const calls = events.sort((a, b) => a[0] - b[0]).map(([, line]) => line);
  return { ...result, calls };
}

function verify(sidecar: Buffer, signature: Buffer): { status: number | null; out: string } {
  const dir = fs.mkdtempSync(path.join(tmp, "verify-"));
  fs.writeFileSync(path.join(dir, "allowed_signers"), `etcd-backup ${signingKey.publicKey}\n`);
  fs.writeFileSync(path.join(dir, "sidecar.sig"), signature);
  const r = spawnSync(
    sshKeygen,
    [
      "-Y",
      "verify",
      "-f",
      path.join(dir, "allowed_signers"),
      "-I",
      "etcd-backup",
      "-n",
      "etcd-backup",
      "-s",
      path.join(dir, "sidecar.sig"),
    ],
    { input: sidecar },
  );
  return { status: r.status, out: `${r.stdout.toString()}${r.stderr.toString()}` };
}

const sha256 = (b: Buffer) => spawnSync("sha256sum", { input: b }).stdout.toString().split(" ")[0];

/** The Object Lock of a key's latest version as RGW reports it (head-object). */
function lockOf(key: string): { mode?: string; until?: string } {
  const head = s3.aws(["s3api", "head-object", "--bucket", s3.bucket, "--key", key, "--output", "json"]);
  expect(head.status).toBe(0);
  const parsed = JSON.parse(head.stdout) as { ObjectLockMode?: string; ObjectLockRetainUntilDate?: string };
  return {
    mode: parsed.ObjectLockMode,
    until: parsed.ObjectLockRetainUntilDate && new Date(parsed.ObjectLockRetainUntilDate).toISOString(),
  };
}

/** Multipart uploads RGW still holds open under `prefix` (parts stored and billed, no object). */
function openUploads(prefix: string): string[] {
  const r = s3.aws(["s3api", "list-multipart-uploads", "--bucket", s3.bucket, "--prefix", prefix, "--output", "json"]);
  expect(r.status).toBe(0);
  const parsed = (r.stdout.trim() === "" ? {} : JSON.parse(r.stdout)) as { Uploads?: { Key: string }[] };
  return (parsed.Uploads ?? []).map((u) => u.Key);
}

describe("the streamed backup", () => {
  let run: Run;
  let summary: { key: string; pkiKey: string; size: number; sha256: string; snapshotBytes: number };
  beforeAll(async () => {
    run = await runBackup("good");
    if (run.status !== 0) throw new Error(`etcd-backup.sh failed (${run.status}):\n${run.stderr}`);
    summary = JSON.parse(run.stdout) as typeof summary;
  }, 600_000);

  test("goes up as a multipart upload of S3_PART_SIZE_MIB parts, relocked once complete, no s3 cp and no file of the whole object", () => {
    const ops = run.calls.filter((c) => c.endsWith(summary.key)).map((c) => c.split(" ")[0]);
    const parts = Math.ceil(summary.size / (5 * 1024 * 1024));
    expect(parts).toBeGreaterThanOrEqual(2);
    expect(ops).toEqual([
      "create-multipart-upload",
      ...Array(parts).fill("upload-part"),
      "complete-multipart-upload",
      "put-object-retention",
    ]);
    expect(run.calls.some((c) => c.startsWith("s3 ") || c.startsWith("cp "))).toBe(false);
  });

  test("the sidecar holds the sha256 of the object as uploaded, in sha256sum's format", () => {
    const object = s3.get(summary.key);
    expect(object.length).toBe(summary.size);
    expect(sha256(object)).toBe(summary.sha256);
    expect(s3.get(`${summary.key}.sha256`).toString()).toBe(`${summary.sha256}  ${path.basename(summary.key)}\n`);
    const pki = s3.get(summary.pkiKey);
    expect(s3.get(`${summary.pkiKey}.sha256`).toString()).toBe(`${sha256(pki)}  ${path.basename(summary.pkiKey)}\n`);
  });

  test("the object decrypts and decompresses to the snapshot, which restores", () => {
    const dir = fs.mkdtempSync(path.join(tmp, "decoded-"));
    const db = path.join(dir, "snapshot.db");
    const age = spawnSync("age", ["-d", "-i", ageKey.file], { input: s3.get(summary.key), maxBuffer: 1 << 30 });
    expect(age.status).toBe(0);
    const zstd = spawnSync("zstd", ["-d", "-q", "-o", db], { input: age.stdout });
    expect(zstd.status).toBe(0);
    expect(fs.statSync(db).size).toBe(summary.snapshotBytes);
    const restore = spawnSync(
      "/usr/bin/etcdctl",
      [
        "snapshot",
        "restore",
        db,
        "--data-dir",
        path.join(dir, "restored"),
        "--name",
        "r",
        "--initial-cluster",
        "r=http://127.0.0.1:2380",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:2380",
      ],
      { env: { PATH: "/usr/bin:/bin", ETCDCTL_API: "3" } },
    );
    expect({ status: restore.status, stderr: restore.stderr.toString() }).toEqual({
      status: 0,
      stderr: expect.anything(),
    });
  });

  test("every sidecar is signed: ssh-keygen -Y verify accepts the signature with the public key", () => {
    for (const key of [summary.key, summary.pkiKey]) {
      const v = verify(s3.get(`${key}.sha256`), s3.get(`${key}.sha256.sig`));
      expect(v.out).toContain('Good "etcd-backup" signature for etcd-backup with ED25519 key');
      expect(v.status).toBe(0);
    }
    // Over the exact bytes: one changed byte fails.
    const sidecar = Buffer.from(s3.get(`${summary.key}.sha256`));
    sidecar[0] = sidecar[0] === 0x30 ? 0x31 : 0x30;
    expect(verify(sidecar, s3.get(`${summary.key}.sha256.sig`)).status).not.toBe(0);
  });

  test("each signature is up before its sidecar starts, and the snapshot's sidecar goes last (the small PKI archive is one put-object)", () => {
    const puts = run.calls.filter((c) => c.startsWith("put-object ")).map((c) => c.split(" ")[1]);
    expect([...puts].sort()).toEqual(
      [
        summary.pkiKey,
        `${summary.pkiKey}.sha256.sig`,
        `${summary.pkiKey}.sha256`,
        `${summary.key}.sha256.sig`,
        `${summary.key}.sha256`,
      ].sort(),
    );
    // Each put started and ended exactly once (an absent one would compare as -1).
    const position = (line: string) => {
      expect([line, run.calls.filter((c) => c === line).length]).toEqual([line, 1]);
      return run.calls.indexOf(line);
    };
    const started = (key: string) => position(`put-object ${key}`);
    const ended = (key: string) => position(`end ${key}`);
    const completed = run.calls.findIndex((c) => c === `complete-multipart-upload ${summary.key}`);
    // The PKI: archive, signature, sidecar, one after the other.
    expect(ended(summary.pkiKey)).toBeLessThan(started(`${summary.pkiKey}.sha256.sig`));
    expect(ended(`${summary.pkiKey}.sha256.sig`)).toBeLessThan(started(`${summary.pkiKey}.sha256`));
    // The snapshot's sidecar: after its signature, its completed object and the whole PKI; last.
    const last = started(`${summary.key}.sha256`);
    expect(ended(`${summary.key}.sha256.sig`)).toBeLessThan(last);
    expect(completed).toBeGreaterThanOrEqual(0);
    expect(completed).toBeLessThan(last);
    expect(ended(`${summary.pkiKey}.sha256`)).toBeLessThan(last);
    expect(puts[puts.length - 1]).toBe(`${summary.key}.sha256`);
  });

  test("every object (snapshot, PKI archive, both sidecars and both signatures) is under the same COMPLIANCE lock", () => {
    // The first backup of its day in this bucket: locked for the daily tier (30 days from its stamp).
    const stamp = path.basename(summary.key).split("-")[0];
    const stampTime = Date.parse(
      `${stamp.slice(0, 4)}-${stamp.slice(4, 6)}-${stamp.slice(6, 8)}T${stamp.slice(9, 11)}:${stamp.slice(11, 13)}:${stamp.slice(13, 15)}Z`,
    );
    const until = new Date(stampTime + 30 * 86_400_000).toISOString();
    const objects = [summary.key, summary.pkiKey].flatMap((k) => [k, `${k}.sha256`, `${k}.sha256.sig`]);
    expect(s3.list("good/").sort()).toEqual([...objects].sort());
    for (const k of objects) expect([k, lockOf(k)]).toEqual([k, { mode: "COMPLIANCE", until }]);
  });

  test("nothing is left in scratch", () => {
    expect(fs.readdirSync(tmp).filter((f) => f.startsWith("etcd-backup."))).toEqual([]);
  });
});

describe("keys as curl signs them", () => {
  test("a prefix with characters outside A-Z a-z 0-9 - . _ ~ (jq's @uri leaves ! * ' ( ) as they are) is encoded for the signature and stored as named", async () => {
    // The store checks the signature against the path it decodes and encodes again (Signature
    // Version 4's UriEncode): a key curl sent unencoded, or encoded differently, fails with 403.
    const prefix = "team a+b/cluster=1,(x)!*'~";
    const r = await runBackup("odd-prefix", { S3_PREFIX: prefix });
    expect(r.status).toBe(0);
    const done = JSON.parse(r.stdout) as { key: string; pkiKey: string };
    expect(done.key.startsWith(`${prefix}/etcd/`)).toBe(true);
    const objects = [done.key, done.pkiKey].flatMap((k) => [k, `${k}.sha256`, `${k}.sha256.sig`]);
    expect(s3.list(`${prefix}/`).sort()).toEqual([...objects].sort());
    for (const k of objects) expect([k, lockOf(k).mode]).toEqual([k, "COMPLIANCE"]);
  });
});

describe("signing key", () => {
  test("a run without BACKUP_SIGNING_KEY_FILE is a configuration error naming how to make one, before any upload", async () => {
    const r = await runBackup("nokey", { BACKUP_SIGNING_KEY_FILE: "" });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("BACKUP_SIGNING_KEY_FILE is required");
    expect(r.stderr).toContain('ssh-keygen -t ed25519 -N "" -C etcd-backup -f backup-signing');
    expect(r.calls).toEqual([]);
    expect(s3.list("nokey/")).toEqual([]);
  });

  test("a missing file, or a file that is not an ed25519 private key, fails before any upload", async () => {
    const missing = await runBackup("missingkey", { BACKUP_SIGNING_KEY_FILE: path.join(tmp, "nope") });
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain("is not a readable file");
    const notKey = path.join(tmp, "not-a-key");
    fs.writeFileSync(notKey, signingKey.publicKey);
    const bad = await runBackup("badkey", { BACKUP_SIGNING_KEY_FILE: notKey });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("is not an OpenSSH ed25519 private key");
    expect([...missing.calls, ...bad.calls]).toEqual([]);
  });
});

describe("part size and upload concurrency", () => {
  test("S3_PART_SIZE_MIB is the one size setting: S3_PART_MB and S3_MULTIPART_THRESHOLD_MIB are refused before any upload", async () => {
    for (const dropped of ["S3_PART_MB", "S3_MULTIPART_THRESHOLD_MIB"]) {
      const r = await runBackup(`dropped-${dropped}`, { [dropped]: "64" });
      expect(r.status).toBe(2);
      expect(r.stderr).toContain(`${dropped} is no longer read; set S3_PART_SIZE_MIB instead`);
      expect(r.calls).toEqual([]);
    }
    const small = await runBackup("small-part", { S3_PART_SIZE_MIB: "4" });
    expect(small.status).toBe(2);
    expect(small.stderr).toContain("S3_PART_SIZE_MIB must be a whole number from 5 to 5120, got '4'");
    expect(small.calls).toEqual([]);
  });

  test("S3_UPLOAD_CONCURRENCY parts upload at once, never more, and the object is whole", async () => {
    // Each upload-part counts itself in flight (under flock), holds a second so the uploads
    // overlap when the script lets them, then uploads for real. The object is two parts.
    const inFlight = async (concurrency: string) => {
      const counter = path.join(tmp, `in-flight-${concurrency}`);
      fs.writeFileSync(counter, "0\n");
      const count = (delta: string) =>
        `( flock 9; n=$(( $(cat '${counter}') ${delta} )); echo "$n" > '${counter}'; echo "$n" >> '${counter}.seen' ) 9>'${counter}.lock'`;
      const body = `if [[ "$op" == upload-part ]]; then ${count("+ 1")}; sleep 1; "$real" "$@"; rc=$?; ${count("- 1")}; exit $rc; fi`;
      const r = await runBackup(`concurrency-${concurrency}`, { S3_UPLOAD_CONCURRENCY: concurrency }, body);
      expect(r.status).toBe(0);
      expect(r.calls.filter((c) => c.startsWith("upload-part ")).length).toBe(2);
      const done = JSON.parse(r.stdout) as { key: string; sha256: string };
      expect(sha256(s3.get(done.key))).toBe(done.sha256);
      return Math.max(...fs.readFileSync(`${counter}.seen`, "utf8").trim().split("\n").map(Number));
    };
    expect(await inFlight("1")).toBe(1);
    expect(await inFlight("2")).toBe(2);
    const bad = await runBackup("concurrency-bad", { S3_UPLOAD_CONCURRENCY: "0" });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("S3_UPLOAD_CONCURRENCY must be a whole number from 1 to 16, got '0'");
  });
});

describe("failures anywhere in the stream leave no object and no sidecar", () => {
  test("age failing half way: the multipart upload is aborted, nothing is completed", async () => {
    const r = await runBackup("agefails", {}, "", {
      age: `head -c 6000000 | /usr/bin/age "$@"\necho "age: error: failed to read from input: unexpected EOF" >&2\nexit 1`,
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("age: error");
    expect(r.calls.some((c) => c.startsWith("abort-multipart-upload agefails/etcd/"))).toBe(true);
    expect(r.calls.some((c) => c.startsWith("complete-multipart-upload"))).toBe(false);
    expect(s3.listVersions("agefails/")).toEqual([]);
    expect(openUploads("agefails/")).toEqual([]);
  });

  test("an upload-part error: aborted, no object", async () => {
    const r = await runBackup(
      "partfails",
      { S3_UPLOAD_ATTEMPTS: "1" },
      `if [[ "$op" == upload-part && "$part" == 2 ]]; then s3_error 500 InternalError; fi`,
    );
    expect(r.status).toBe(1);
    expect(r.calls.some((c) => c.startsWith("abort-multipart-upload partfails/etcd/"))).toBe(true);
    expect(r.calls.some((c) => c.startsWith("complete-multipart-upload"))).toBe(false);
    expect(s3.listVersions("partfails/")).toEqual([]);
    expect(openUploads("partfails/")).toEqual([]);
  });

  test("snapshot status failing while the first part is read: nothing is uploaded, scratch is gone", async () => {
    // etcdctl's answer to a snapshot whose bbolt pages do not check out (etcd v3.4
    // clientv3/snapshot/v3_snapshot.go, Status: "snapshot file integrity check failed"; etcdctl
    // prints "Error: ..." and exits 1), after a walk long enough for the first part to be read.
    const r = await runBackup("statusfails", {}, "", {
      etcdctl: `if [[ " $* " == *" snapshot status "* ]]; then
  sleep 2
  echo "Error: snapshot file integrity check failed. 1 errors found." >&2
  exit 1
fi
exec /usr/bin/etcdctl "$@"`,
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("snapshot status failed on the snapshot");
    expect(r.calls.filter((c) => !c.startsWith("list-object-versions "))).toEqual([]);
    expect(s3.listVersions("statusfails/")).toEqual([]);
    expect(openUploads("statusfails/")).toEqual([]);
    expect(fs.readdirSync(tmp).filter((f) => f.startsWith("etcd-backup."))).toEqual([]);
  });

  test("while snapshot status runs, the stream goes on into scratch: up to S3_UPLOAD_CONCURRENCY parts are read ahead, never more", async () => {
    // A status that takes 3 s (a large database's page walk) and, before it answers, lists the
    // part files in the run's scratch. The stream (a 5 MiB part and a shorter one) is read ahead
    // whole with S3_UPLOAD_CONCURRENCY=4, and only its first part with 1.
    const readAhead = async (concurrency: string) => {
      const name = `readahead-${concurrency}`;
      const seen = path.join(tmp, `${name}.parts`);
      const r = await runBackup(name, { S3_UPLOAD_CONCURRENCY: concurrency }, "", {
        etcdctl: `if [[ " $* " == *" snapshot status "* ]]; then
  sleep 3
  snapshot="\${@: -3:1}"
  parts="$(dirname "$snapshot")/parts"
  for f in "$parts"/*; do [[ -s "$f" ]] && printf '%s %s\n' "$(basename "$f")" "$(stat -c %s "$f")"; done | sort -n >'${seen}'
fi
exec /usr/bin/etcdctl "$@"`,
      });
      expect({ status: r.status, stderr: r.status === 0 ? "" : r.stderr }).toEqual({ status: 0, stderr: "" });
      const done = JSON.parse(r.stdout) as { key: string; sha256: string };
      expect(sha256(s3.get(done.key))).toBe(done.sha256);
      expect(r.calls.filter((c) => c.startsWith("upload-part ")).length).toBe(2);
      return fs
        .readFileSync(seen, "utf8")
        .trim()
        .split("\n")
        .map((line) => line.split(" ").map(Number));
    };
    const mib5 = 5 * 1024 * 1024;
    const all = await readAhead("4");
    expect(all.map(([n]) => n)).toEqual([1, 2]);
    expect(all[0][1]).toBe(mib5);
    expect(all[1][1]).toBeGreaterThan(0);
    expect(all[1][1]).toBeLessThan(mib5);
    expect(await readAhead("1")).toEqual([[1, mib5]]);
  });

  test("a part read ahead goes up as soon as it is complete, while the read-ahead waits on the stream", async () => {
    // The snapshot's age (the first one run; the PKI's comes after the upload) passes exactly
    // 6,000,000 bytes of its input on (more than one 5 MiB part of its output), then holds the
    // rest back until the S3 stand-ins have logged the start of an upload-part (at most 10 s),
    // notes whether one came, and passes the rest. Before take_part, the uploads waited for the
    // whole read-ahead, which waited on this stream: none came.
    const name = "readahead-early";
    const log = path.join(tmp, name, "s3-calls");
    const marker = path.join(tmp, `${name}.marker`);
    const r = await runBackup(name, {}, "", {
      age: `if [[ -e '${marker}' ]]; then exec /usr/bin/age "$@"; fi
{
  dd bs=1000000 count=6 iflag=fullblock status=none
  for ((i = 0; i < 100; i++)); do
    if grep -q "^start	curl	upload-part	" '${log}' 2>/dev/null; then echo seen >'${marker}'; break; fi
    sleep 0.1
  done
  [[ -f '${marker}' ]] || echo none >'${marker}'
  cat
} | /usr/bin/age "$@"`,
    });
    expect({ status: r.status, stderr: r.status === 0 ? "" : r.stderr }).toEqual({ status: 0, stderr: "" });
    expect(fs.readFileSync(marker, "utf8").trim()).toBe("seen");
    const done = JSON.parse(r.stdout) as { key: string; sha256: string };
    expect(sha256(s3.get(done.key))).toBe(done.sha256);
    expect(r.calls.filter((c) => c.startsWith("upload-part ")).length).toBe(2);
  });

  test("a completion whose response is cut short after its 200 counts as failed: no sidecar, nothing left", async () => {
    // CompleteMultipartUpload can answer 200 and report its error in the body that follows (S3
    // API reference, CompleteMultipartUpload); curl exits 18 when the connection closes before
    // the body ends (libcurl-errors.3, CURLE_PARTIAL_FILE). The store did complete here.
    const r = await runBackup(
      "completecut",
      { S3_UPLOAD_ATTEMPTS: "1" },
      `if [[ "$op" == complete-multipart-upload ]]; then
  "$real" "$@"
  echo "curl: (18) transfer closed with outstanding read data remaining" >&2
  exit 18
fi`,
    );
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("completing the multipart upload of completecut/etcd/");
    expect(r.stderr).toContain("(curl exit 18)");
    expect(r.calls.some((c) => c.startsWith("put-object ") && c.endsWith(".db.zst.age.sha256"))).toBe(false);
    // The snapshot's sidecar never went up, and the completed object went again (RGW 16.2 left
    // it unlocked); the small locked objects that went up alongside stay (README, "Backups").
    expect(s3.list("completecut/etcd/").filter((k) => k.endsWith(".sha256"))).toEqual([]);
    expect(s3.listVersions("completecut/etcd/").filter((v) => v.key.endsWith(".db.zst.age"))).toEqual([]);
  });

  test("a snapshot whose content no longer matches etcd's appended sha256 is never completed", async () => {
    const r = await runBackup("corrupt", {}, "", {
      etcdctl: `/usr/bin/etcdctl "$@" || exit
if [[ " $* " == *" snapshot save "* ]]; then
  file="\${*: -1}"
  size=$(stat -c %s "$file")
  offset=$((size / 2 + 100))
  byte=$(od -An -tx1 -j "$offset" -N 1 "$file" | tr -d ' ')
  if [[ "$byte" == 41 ]]; then new='\\x42'; else new='\\x41'; fi
  printf "$new" | dd of="$file" bs=1 seek="$offset" conv=notrunc status=none
fi`,
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("integrity hash does not match its content");
    expect(r.calls.some((c) => c.startsWith("complete-multipart-upload"))).toBe(false);
    expect(s3.listVersions("corrupt/")).toEqual([]);
    expect(openUploads("corrupt/")).toEqual([]);
  });

  test("a snapshot without etcd's appended sha256 is refused before anything is uploaded", async () => {
    // A bbolt file with nothing after it (what a copy of a member's db file is): 512-aligned,
    // so no hash for a restore to check.
    const r = await runBackup("nohash", {}, "", {
      etcdctl: `/usr/bin/etcdctl "$@" || exit
if [[ " $* " == *" snapshot save "* ]]; then truncate -s -32 -- "\${*: -1}"; fi`,
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/the snapshot has no integrity hash \(\d+ bytes is not 32 past a 512-byte boundary\)/);
    expect(r.calls.filter((c) => !c.startsWith("list-object-versions "))).toEqual([]);
    expect(s3.listVersions("nohash/")).toEqual([]);
    expect(fs.readdirSync(tmp).filter((f) => f.startsWith("etcd-backup."))).toEqual([]);
  });
});
