/**
 * A real Ceph RADOS Gateway for tests: one monitor, one memstore OSD and radosgw (Debian's Ceph
 * 16.2, the software Hetzner Object Storage is built on), all on 127.0.0.1 in a private temp
 * directory with its own ceph.conf (`-c` on every command; nothing in /etc/ceph or /var/lib/ceph).
 * It offers the S3Server interface of s3Server.ts (whose aws-cli helpers it uses),
 * plus what Object Lock needs: the bucket is created with `--object-lock-enabled-for-bucket`
 * (which turns versioning on), listVersions(), and stopGateway()/startGateway() to take the S3
 * endpoint away mid-run. One gateway per test file: start in beforeAll, stop() in afterAll.
 *
 * Bring-up as /work/shared/reference/ceph-rgw.md records it: cephx keyrings, `monmaptool
 * --create`, `ceph-mon --mkfs`, `ceph osd new <uuid>`, `ceph-osd --mkfs --mkkey --no-mon-config
 * --osd-uuid <uuid>` (the OSD boots only with the uuid the monitor registered: without it the OSD
 * stays "booting" forever), pool size 1, no mgr, paxos intervals lowered (cold start ~5 s).
 * RGW answers errors with EMPTY messages (aws-cli then prints "argument of type 'NoneType' is not
 * iterable"): tests assert on exit codes and on the bucket's state, never on aws-cli's text.
 */
import { spawn, spawnSync, ChildProcess } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { freePorts, sleep, waitUntil } from "./etcdCluster";
import { awsBinary, awsCli, bucketObjects, S3Server } from "./s3Server";
import { requireTool } from "./tools";

/** The Debian packages (tools/ensure-tools.sh installs them with --no-install-recommends). */
const binaries = {
  mon: requireTool.bind(null, "/usr/bin/ceph-mon", "ceph-mon"),
  osd: requireTool.bind(null, "/usr/bin/ceph-osd", "ceph-osd"),
  rgw: requireTool.bind(null, "/usr/bin/radosgw", "radosgw"),
  ceph: requireTool.bind(null, "/usr/bin/ceph", "ceph-common"),
  admin: requireTool.bind(null, "/usr/bin/radosgw-admin", "radosgw"),
  monmaptool: requireTool.bind(null, "/usr/bin/monmaptool", "ceph-common"),
  authtool: requireTool.bind(null, "/usr/bin/ceph-authtool", "ceph-common"),
};

export interface ObjectVersion {
  key: string;
  versionId: string;
  isLatest: boolean;
  /** A delete marker, not data. */
  deleteMarker: boolean;
  size?: number;
}

export interface RgwServer extends S3Server {
  /** Every version and delete marker under `prefix`, sorted by key, newest first per key. */
  listVersions(prefix?: string): ObjectVersion[];
  /** Runs aws-cli against the gateway with the test's keys; never throws. */
  aws(args: string[], input?: Buffer): { status: number | null; stdout: string; stderr: string };
  /** PID of the running radosgw (undefined while stopped). */
  gatewayPid(): number | undefined;
  /** PIDs of every running daemon of the store: the monitor, the OSD and radosgw. */
  daemonPids(): number[];
  /** Stops radosgw (SIGKILL when `kill`), keeping the cluster and its data. */
  stopGateway(kill?: boolean): Promise<void>;
  /** Starts radosgw again on the same port and waits until it answers. */
  startGateway(): Promise<void>;
}

const deadline = 60_000;

/** Process state from /proc/PID/stat ("Z" zombie, undefined gone): kill -0 still sees a zombie. */
function procState(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
  } catch {
    return undefined;
  }
}

async function stopProcess(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  const pid = child.pid;
  if (pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const gone = () => child.exitCode !== null || child.signalCode !== null || [undefined, "Z"].includes(procState(pid));
  child.kill(signal);
  const started = Date.now();
  while (!gone()) {
    if (Date.now() - started > 15_000) {
      child.kill("SIGKILL");
      await waitUntil(`PID ${pid} to exit after SIGKILL`, 10_000, async () => gone());
      return;
    }
    await sleep(100);
  }
}

/**
 * Starts mon + OSD + radosgw with one bucket (Object Lock on); always call stop(), in afterAll.
 * The OSD keeps every byte in memory, up to `memstoreBytes` (2 GiB by default): objects
 * deleted stay there until the gateway's garbage collection (rgw_gc_obj_min_wait: two hours).
 */
export async function startRgw(
  bucket = "etcd-backups",
  { memstoreBytes = 2 * 1024 ** 3 }: { memstoreBytes?: number } = {},
): Promise<RgwServer> {
  for (const find of Object.values(binaries)) find();
  requireTool(awsBinary, "awscli");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rgw-"));
  const conf = path.join(dir, "ceph.conf");
  const keyring = path.join(dir, "keyring");
  const [monPort, rgwPort] = await freePorts(2);
  const fsid = crypto.randomUUID();
  const children: ChildProcess[] = [];
  let gateway: ChildProcess | undefined;
  const killAllOnExit = () => {
    for (const child of [...children, gateway]) child?.kill("SIGKILL");
  };
  process.on("exit", killAllOnExit);

  const run = (binary: string, args: string[], what: string, timeoutMs = 30_000): string => {
    const result = spawnSync(binary, args, { encoding: "utf8", timeout: timeoutMs, cwd: dir });
    if (result.status !== 0) {
      throw new Error(`${what} failed (${result.status ?? result.signal}): ${result.stderr}${result.error ?? ""}`);
    }
    return result.stdout;
  };
  const daemon = (binary: string, args: string[]): ChildProcess => {
    // -f: stay in the foreground, so the PID is ours to stop and the exit is ours to see.
    const child = spawn(binary, ["-f", "-c", conf, ...args], { cwd: dir, stdio: "ignore" });
    return child;
  };

  const endpoint = `http://127.0.0.1:${rgwPort}`;
  const answers = async (): Promise<boolean> => {
    try {
      const response = await fetch(endpoint, { signal: AbortSignal.timeout(2_000) });
      return response.status === 200;
    } catch {
      return false;
    }
  };
  const startGateway = async () => {
    gateway = daemon(binaries.rgw(), ["-n", "client.rgw.a"]);
    await waitUntil(`radosgw to answer on ${endpoint} (log: ${dir}/client.rgw.a.log)`, deadline, answers);
  };

  const accessKeyId = `AKIA${crypto.randomBytes(8).toString("hex").toUpperCase()}`;
  const secretAccessKey = crypto.randomBytes(20).toString("hex");
  const configDir = path.join(dir, "aws");
  try {
    for (const sub of ["mon", "osd", "run", "rgw", "aws"]) fs.mkdirSync(path.join(dir, sub));
    fs.writeFileSync(
      conf,
      [
        "[global]",
        `fsid = ${fsid}`,
        `mon host = v2:127.0.0.1:${monPort}`,
        "mon initial members = a",
        "public addr = 127.0.0.1",
        "ms bind ipv6 = false",
        "ms bind port min = 6800",
        "ms bind port max = 7300",
        "auth cluster required = cephx",
        "auth service required = cephx",
        "auth client required = cephx",
        `keyring = ${keyring}`,
        `run dir = ${dir}/run`,
        `admin socket = ${dir}/run/$cluster-$name.asok`,
        `log file = ${dir}/$name.log`,
        "log to stderr = false",
        "err to stderr = false",
        `pid file = ${dir}/run/$name.pid`,
        "osd pool default size = 1",
        "osd pool default min size = 1",
        "osd pool default pg num = 8",
        "osd pool default pgp num = 8",
        "mon allow pool size one = true",
        "mon warn on pool no redundancy = false",
        // A fresh cluster answers in 2-3 s instead of ~13 s (the gateway creates its pools at start).
        "paxos propose interval = 0.05",
        "paxos min wait = 0.01",
        "osd objectstore = memstore",
        `memstore device bytes = ${memstoreBytes}`,
        `osd data = ${dir}/osd`,
        "osd crush chooseleaf type = 0",
        `mon data = ${dir}/mon`,
        // The disk the tests run on may be fuller than Ceph's defaults like; this is not production.
        "mon data avail crit = 1",
        "",
        "[client.rgw.a]",
        `rgw frontends = beast endpoint=127.0.0.1:${rgwPort}`,
        `rgw data = ${dir}/rgw`,
        "",
      ].join("\n"),
    );
    const authtool = binaries.authtool();
    run(authtool, ["--create-keyring", keyring, "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"], "mon key");
    run(
      authtool,
      [keyring, "--gen-key", "-n", "client.admin", "--cap", "mon", "allow *", "--cap", "osd", "allow *"],
      "admin key",
    );
    run(
      binaries.monmaptool(),
      ["--create", "--addv", "a", `[v2:127.0.0.1:${monPort}]`, "--fsid", fsid, `${dir}/monmap`],
      "monmaptool",
    );
    run(
      binaries.mon(),
      ["-c", conf, "--mkfs", "-i", "a", "--monmap", `${dir}/monmap`, "--keyring", keyring],
      "mon mkfs",
    );
    children.push(daemon(binaries.mon(), ["-i", "a"]));
    const ceph = (args: string[], what: string) => run(binaries.ceph(), ["-c", conf, ...args], what).trim();
    const osdUuid = crypto.randomUUID();
    const osdId = ceph(["osd", "new", osdUuid], "ceph osd new");
    const osdKeyring = path.join(dir, "osd", "keyring");
    run(
      binaries.osd(),
      ["-c", conf, "-i", osdId, "--mkfs", "--mkkey", "--no-mon-config", "--osd-uuid", osdUuid, "--keyring", osdKeyring],
      "osd mkfs",
    );
    ceph(["auth", "add", `osd.${osdId}`, "osd", "allow *", "mon", "allow profile osd", "-i", osdKeyring], "osd key");
    children.push(daemon(binaries.osd(), ["-i", osdId, "--keyring", osdKeyring]));
    fs.appendFileSync(
      keyring,
      ceph(["auth", "get-or-create", "client.rgw.a", "mon", "allow rw", "osd", "allow rwx"], "rgw key") + "\n",
    );
    await startGateway();
    run(
      binaries.admin(),
      [
        "-c",
        conf,
        "user",
        "create",
        "--uid=tests",
        "--display-name=tests",
        `--access-key=${accessKeyId}`,
        `--secret-key=${secretAccessKey}`,
      ],
      "radosgw-admin user create",
    );
  } catch (error) {
    process.off("exit", killAllOnExit);
    if (gateway) await stopProcess(gateway, "SIGKILL");
    for (const child of [...children].reverse()) await stopProcess(child, "SIGKILL");
    fs.rmSync(dir, { recursive: true, force: true });
    throw error;
  }

  const cli = awsCli(
    endpoint,
    configDir,
    { accessKeyId, secretAccessKey },
    {
      // RGW 16.2 answers new botocore's aws-chunked checksum trailers with 411 (reference notes).
      AWS_REQUEST_CHECKSUM_CALCULATION: "when_required",
      AWS_RESPONSE_CHECKSUM_VALIDATION: "when_required",
    },
  );
  const env = cli.env;
  const aws = (args: string[], input?: Buffer) => {
    const result = cli.run(args, input);
    return { ...result, stdout: result.stdout.toString() };
  };
  // RGW's error bodies are empty: the exit code is what there is to report.
  const must = (args: string[], input?: Buffer): string => cli.must(args, input).toString();
  must(["s3api", "create-bucket", "--bucket", bucket, "--object-lock-enabled-for-bucket"]);

  const server: RgwServer = {
    endpoint,
    bucket,
    region: "us-east-1",
    accessKeyId,
    secretAccessKey,
    env,
    ...bucketObjects(bucket, cli.must, dir),
    listVersions(prefix = "") {
      const out = must(["s3api", "list-object-versions", "--bucket", bucket, "--prefix", prefix, "--output", "json"]);
      type Entry = { Key: string; VersionId: string; IsLatest: boolean; Size?: number; LastModified: string };
      const parsed = (out.trim() ? JSON.parse(out) : {}) as { Versions?: Entry[]; DeleteMarkers?: Entry[] };
      const all = [
        ...(parsed.Versions ?? []).map((v) => ({ ...v, deleteMarker: false })),
        ...(parsed.DeleteMarkers ?? []).map((v) => ({ ...v, deleteMarker: true })),
      ];
      all.sort((a, b) => a.Key.localeCompare(b.Key) || b.LastModified.localeCompare(a.LastModified));
      return all.map((v) => ({
        key: v.Key,
        versionId: v.VersionId,
        isLatest: v.IsLatest,
        deleteMarker: v.deleteMarker,
        ...(v.deleteMarker ? {} : { size: v.Size }),
      }));
    },
    aws,
    gatewayPid: () => (gateway && gateway.exitCode === null && gateway.signalCode === null ? gateway.pid : undefined),
    daemonPids: () =>
      [...children, gateway]
        .filter((c) => c && c.exitCode === null && c.signalCode === null && c.pid !== undefined)
        .map((c) => c!.pid!),
    async stopGateway(kill = false) {
      if (gateway) await stopProcess(gateway, kill ? "SIGKILL" : "SIGTERM");
      gateway = undefined;
    },
    startGateway,
    async stop() {
      process.off("exit", killAllOnExit);
      try {
        // The gateway, then the OSD, then the monitor: each by its PID.
        if (gateway) await stopProcess(gateway);
        for (const child of [...children].reverse()) await stopProcess(child);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  };
  return server;
}
