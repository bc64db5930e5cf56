/**
 * A real etcd cluster on loopback for tests and the backup benchmark: Debian's /usr/bin/etcd
 * (3.4) by default, or etcd 3.5 from tools/ensure-etcd35.sh (`version: "3.5"`, etcdBinaries),
 * plain HTTP on 127.0.0.1 with free ports, temporary data dirs, bounded waits.
 * Data goes in and out through etcd's v3 HTTP/JSON gateway (`/v3/kv/txn`, `/v3/kv/range`), so
 * thousands of keys take a few batched requests instead of thousands of etcdctl runs.
 */
import { ChildProcess, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { requireTool } from "./tools";

export const etcdBinary = "/usr/bin/etcd";
export const etcdctlBinary = "/usr/bin/etcdctl";

/** The etcd generations the tests run: Debian bookworm's 3.4, and 3.5 (with etcdutl). */
export type EtcdVersion = "3.4" | "3.5";

/** The binaries of one etcd generation; `etcdutl` only from 3.5 on (3.4 restores with etcdctl). */
export interface EtcdBinaries {
  version: EtcdVersion;
  etcd: string;
  etcdctl: string;
  etcdutl?: string;
  /** The directory holding them, to put first on a script's PATH. */
  binDir: string;
}

/**
 * Where tools/ensure-etcd35.sh unpacks Debian trixie's etcd-server and etcd-client (3.5, never
 * installed system-wide); ETCD35_PREFIX moves it, as for that script.
 */
export const etcd35Prefix = process.env.ETCD35_PREFIX ?? "/opt/etcd-3.5";

/** The binaries of `version`, or a loud failure naming how to get them (never a skip). */
export function etcdBinaries(version: EtcdVersion = "3.4"): EtcdBinaries {
  if (version === "3.4") {
    return {
      version,
      etcd: requireTool(etcdBinary, "etcd-server"),
      etcdctl: requireTool(etcdctlBinary, "etcd-client"),
      binDir: "/usr/bin",
    };
  }
  const binDir = path.join(etcd35Prefix, "usr", "bin");
  const need = (name: string) => {
    const file = path.join(binDir, name);
    if (!fs.existsSync(file)) throw new Error(`${file} not found: run tools/ensure-etcd35.sh (as root)`);
    return file;
  };
  const etcd = need("etcd");
  const reported = spawnSync(etcd, ["--version"], { encoding: "utf8" }).stdout;
  if (!/^etcd Version: 3\.5\./m.test(reported)) throw new Error(`${etcd} is not etcd 3.5: ${reported}`);
  return { version, etcd, etcdctl: need("etcdctl"), etcdutl: need("etcdutl"), binDir };
}

export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  logFile: string;
  process?: ChildProcess;
  /**
   * Set for a member that joins the running cluster: the ETCD_INITIAL_CLUSTER that `etcdctl
   * member add` printed. It then starts with `--initial-cluster-state existing`.
   */
  initialCluster?: string;
}

/** Ports nobody listens on right now: each is bound (port 0) at the same time, then released. */
export async function freePorts(count: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = net.createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, "127.0.0.1", () => resolve());
      });
    }
    return servers.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns true, for at most `timeoutMs`; throws naming `what`. */
export async function waitUntil(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(200);
  }
}

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

const b64 = (s: string | Buffer) => Buffer.from(s).toString("base64");

export interface EtcdClusterOptions {
  size?: number;
  /** Parent of the cluster's directory (default the OS temp dir). */
  baseDir?: string;
  quotaBackendBytes?: number;
  token?: string;
  /** Client URLs over HTTPS with client-certificate auth (a throwaway CA made by openssl). */
  tls?: boolean;
  /** The etcd generation to run (default 3.4, Debian's; see etcdBinaries). */
  version?: EtcdVersion;
}

/** PEM files of a TLS cluster: the CA, and a client certificate it signed. */
export interface EtcdTls {
  caCert: string;
  clientCert: string;
  clientKey: string;
  serverCert: string;
  serverKey: string;
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, in DIR (openssl, EC P-256). */
function makeTls(dir: string): EtcdTls {
  const openssl = requireTool("/usr/bin/openssl", "openssl");
  fs.mkdirSync(dir, { recursive: true });
  const f = (name: string) => path.join(dir, name);
  const ssl = (args: string[]) => {
    const r = spawnSync(openssl, args, { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  ssl(["req", "-x509", ...ec, "-keyout", f("ca.key"), "-out", f("ca.crt"), "-days", "1", "-subj", "/CN=test-etcd-ca"]);
  for (const [name, usage] of [
    ["server", "serverAuth,clientAuth"],
    ["client", "clientAuth"],
  ]) {
    ssl(["req", ...ec, "-keyout", f(`${name}.key`), "-out", f(`${name}.csr`), "-subj", `/CN=etcd-${name}`]);
    fs.writeFileSync(f(`${name}.ext`), `subjectAltName=IP:127.0.0.1\nextendedKeyUsage=${usage}\n`);
    ssl([
      "x509",
      "-req",
      "-in",
      f(`${name}.csr`),
      "-CA",
      f("ca.crt"),
      "-CAkey",
      f("ca.key"),
      "-CAcreateserial",
      "-days",
      "1",
      "-extfile",
      f(`${name}.ext`),
      "-out",
      f(`${name}.crt`),
    ]);
  }
  return {
    caCert: f("ca.crt"),
    clientCert: f("client.crt"),
    clientKey: f("client.key"),
    serverCert: f("server.crt"),
    serverKey: f("server.key"),
  };
}

export class EtcdCluster {
  readonly members: EtcdMember[];
  readonly dir: string;
  readonly token: string;
  readonly tls?: EtcdTls;
  private readonly quotaBackendBytes: number;

  private constructor(
    dir: string,
    members: EtcdMember[],
    token: string,
    quota: number,
    tls: EtcdTls | undefined,
    readonly binaries: EtcdBinaries,
  ) {
    this.dir = dir;
    this.members = members;
    this.token = token;
    this.quotaBackendBytes = quota;
    this.tls = tls;
  }

  /** Allocates ports and directories; nothing runs until start()/startAll(). */
  static async create(options: EtcdClusterOptions = {}): Promise<EtcdCluster> {
    const binaries = etcdBinaries(options.version);
    const size = options.size ?? 3;
    const dir = fs.mkdtempSync(path.join(options.baseDir ?? os.tmpdir(), "etcd-cluster-"));
    const ports = await freePorts(size * 2);
    const tls = options.tls ? makeTls(path.join(dir, "pki")) : undefined;
    const members = [...Array(size)].map((_, i) => ({
      name: `etcd-${i + 1}`,
      clientUrl: `${tls ? "https" : "http"}://127.0.0.1:${ports[2 * i]}`,
      peerUrl: `http://127.0.0.1:${ports[2 * i + 1]}`,
      dataDir: path.join(dir, `etcd-${i + 1}.data`),
      logFile: path.join(dir, `etcd-${i + 1}.log`),
    }));
    const token = options.token ?? `test-${path.basename(dir)}`;
    return new EtcdCluster(dir, members, token, options.quotaBackendBytes ?? 2 * 1024 ** 3, tls, binaries);
  }

  get initialCluster(): string {
    return this.members.map((m) => `${m.name}=${m.peerUrl}`).join(",");
  }

  get endpoints(): string[] {
    return this.members.map((m) => m.clientUrl);
  }

  member(name: string): EtcdMember {
    const member = this.members.find((m) => m.name === name || m.clientUrl === name);
    if (!member) throw new Error(`no etcd member ${name}`);
    return member;
  }

  /** The etcd command line of a member (its flags are ignored by etcd once the data dir exists). */
  args(member: EtcdMember): string[] {
    return [
      `--name=${member.name}`,
      `--data-dir=${member.dataDir}`,
      `--listen-client-urls=${member.clientUrl}`,
      `--advertise-client-urls=${member.clientUrl}`,
      `--listen-peer-urls=${member.peerUrl}`,
      `--initial-advertise-peer-urls=${member.peerUrl}`,
      `--initial-cluster=${member.initialCluster ?? this.initialCluster}`,
      `--initial-cluster-token=${this.token}`,
      `--initial-cluster-state=${member.initialCluster ? "existing" : "new"}`,
      `--quota-backend-bytes=${this.quotaBackendBytes}`,
      "--max-request-bytes=10485760",
      "--logger=zap",
      "--log-outputs=stderr",
      ...(this.tls
        ? [
            `--cert-file=${this.tls.serverCert}`,
            `--key-file=${this.tls.serverKey}`,
            `--trusted-ca-file=${this.tls.caCert}`,
            "--client-cert-auth",
          ]
        : []),
    ];
  }

  /**
   * A new member NAME (free ports, a data dir under the cluster's directory) to join the running
   * cluster: `etcdctl member add` it, set its `initialCluster` from the output, then start() it.
   * stop(), stopAll() and cleanup() cover it like the first members.
   */
  async allocateMember(name: string): Promise<EtcdMember> {
    if (this.members.some((m) => m.name === name)) throw new Error(`etcd member ${name} exists`);
    const [clientPort, peerPort] = await freePorts(2);
    const member: EtcdMember = {
      name,
      clientUrl: `${this.tls ? "https" : "http"}://127.0.0.1:${clientPort}`,
      peerUrl: `http://127.0.0.1:${peerPort}`,
      dataDir: path.join(this.dir, `${name}.data`),
      logFile: path.join(this.dir, `${name}.log`),
    };
    this.members.push(member);
    return member;
  }

  start(name: string): void {
    const member = this.member(name);
    if (member.process && member.process.exitCode === null && member.process.signalCode === null) return;
    const log = fs.openSync(member.logFile, "a");
    const child = spawn(this.binaries.etcd, this.args(member), { stdio: ["ignore", log, log] });
    fs.closeSync(log);
    live.add(child);
    child.on("exit", () => live.delete(child));
    member.process = child;
  }

  async startAll(timeoutMs = 60_000): Promise<void> {
    for (const m of this.members) this.start(m.name);
    await this.waitHealthy(timeoutMs);
  }

  /** Stops a member (SIGTERM, then SIGKILL after 10 s) and waits for its exit. */
  async stop(name: string, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const member = this.member(name);
    const child = member.process;
    member.process = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }

  kill(name: string): Promise<void> {
    return this.stop(name, "SIGKILL");
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.members.map((m) => this.stop(m.name)));
  }

  /** Stops every member and removes the data dirs (keeps nothing). */
  async wipe(): Promise<void> {
    await this.stopAll();
    for (const m of this.members) fs.rmSync(m.dataDir, { recursive: true, force: true });
  }

  async cleanup(): Promise<void> {
    await this.stopAll().finally(() => fs.rmSync(this.dir, { recursive: true, force: true }));
  }

  etcdctl(args: string[], endpoints = this.endpoints): { status: number | null; stdout: string; stderr: string } {
    const tls = this.tls
      ? [`--cacert=${this.tls.caCert}`, `--cert=${this.tls.clientCert}`, `--key=${this.tls.clientKey}`]
      : [];
    const result = spawnSync(this.binaries.etcdctl, [`--endpoints=${endpoints.join(",")}`, ...tls, ...args], {
      encoding: "utf8",
      timeout: 30_000,
      env: { PATH: "/usr/bin:/bin", ETCDCTL_API: "3" },
    });
    return { status: result.status, stdout: result.stdout, stderr: result.stderr };
  }

  /** `endpoint health --cluster` passes: every member is healthy. */
  async waitHealthy(timeoutMs = 60_000): Promise<void> {
    const running = this.members.filter((m) => m.process).map((m) => m.clientUrl);
    await waitUntil("etcd cluster health", timeoutMs, async () => {
      const r = this.etcdctl(["--dial-timeout=2s", "--command-timeout=3s", "endpoint", "health", "--cluster"], running);
      return r.status === 0;
    });
  }

  /** The client URL of the current leader (`endpoint status -w json` over the running members). */
  leader(): string {
    const running = this.members.filter((m) => m.process).map((m) => m.clientUrl);
    const r = this.etcdctl(["--dial-timeout=2s", "endpoint", "status", "-w", "json"], running);
    if (r.status !== 0) throw new Error(`endpoint status failed: ${r.stderr}`);
    // Member ids are 64-bit: quoted before parsing, so no two ids can round to the same number.
    const exact = r.stdout.replace(/"(member_id|leader)":(\d+)/g, '"$1":"$2"');
    const statuses = JSON.parse(exact) as {
      Endpoint: string;
      Status: { header: { member_id: string }; leader: string };
    }[];
    const leader = statuses.find((s) => s.Status.leader === s.Status.header.member_id);
    if (!leader) throw new Error(`no leader in ${r.stdout}`);
    return leader.Endpoint;
  }

  memberCount(endpoint = this.endpoints[0]): number {
    const r = this.etcdctl(["member", "list", "-w", "json"], [endpoint]);
    if (r.status !== 0) throw new Error(`member list failed: ${r.stderr}`);
    return (JSON.parse(r.stdout) as { members: unknown[] }).members.length;
  }

  private async post(endpoint: string, api: string, body: unknown): Promise<unknown> {
    const response = await fetch(`${endpoint}/v3/${api}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(60_000),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`POST /v3/${api}: ${response.status} ${text.slice(0, 300)}`);
    return JSON.parse(text);
  }

  /** Writes `entries` in transactions of `batch` puts, `parallel` transactions at a time. */
  async putMany(entries: [string, string | Buffer][], batch = 100, parallel = 4, endpoint = this.endpoints[0]) {
    const batches: [string, string | Buffer][][] = [];
    for (let i = 0; i < entries.length; i += batch) batches.push(entries.slice(i, i + batch));
    let next = 0;
    const worker = async () => {
      while (next < batches.length) {
        const chunk = batches[next++];
        await this.post(endpoint, "kv/txn", {
          success: chunk.map(([k, v]) => ({ request_put: { key: b64(k), value: b64(v) } })),
        });
      }
    };
    await Promise.all([...Array(parallel)].map(worker));
  }

  /** Every key under `prefix` with its value, read linearizably from `endpoint`. */
  async getPrefix(prefix: string, endpoint = this.endpoints[0]): Promise<Map<string, string>> {
    const end = Buffer.from(prefix);
    end[end.length - 1] += 1;
    const result = (await this.post(endpoint, "kv/range", { key: b64(prefix), range_end: end.toString("base64") })) as {
      kvs?: { key: string; value?: string }[];
    };
    return new Map(
      (result.kvs ?? []).map((kv) => [
        Buffer.from(kv.key, "base64").toString(),
        Buffer.from(kv.value ?? "", "base64").toString(),
      ]),
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Running the backup scripts (shared by etcdBackup.test.ts, etcdRestore.test.ts and the benchmark).

/** The CronJob scripts (scripts/jobs) and the operators' scripts (scripts/ops). */
export const jobsDir = path.join(__dirname, "..", "..", "scripts", "jobs");
export const opsDir = path.join(__dirname, "..", "..", "scripts", "ops");

/** Every tool the backup and restore scripts call, or a loud failure naming its Debian package. */
export function requireBackupTools(): void {
  requireTool(etcdBinary, "etcd-server");
  requireTool(etcdctlBinary, "etcd-client");
  requireTool("/usr/bin/age", "age");
  requireTool("/usr/bin/age-keygen", "age");
  requireTool("/usr/bin/zstd", "zstd");
  requireTool("/usr/bin/jq", "jq");
  requireTool("/usr/bin/aws", "awscli");
  requireTool("/usr/bin/curl", "curl");
}

export interface ScriptResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `bash script args` without blocking the event loop (in-process servers keep answering),
 * with PATH=/usr/bin:/bin unless env sets it, killed after `timeoutMs`.
 */
export function runScript(
  script: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 300_000,
  cwd?: string,
): Promise<ScriptResult> {
  return new Promise((resolve, reject) => {
    const child = spawn("/bin/bash", [script, ...args], {
      env: { PATH: "/usr/bin:/bin", LANG: "C.UTF-8", ...env },
      stdio: ["ignore", "pipe", "pipe"],
      cwd,
    });
    live.add(child);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", reject);
    child.on("close", (status) => {
      clearTimeout(timer);
      live.delete(child);
      resolve({ status, stdout, stderr });
    });
  });
}

export interface AgeKey {
  /** The identity file (private key). */
  file: string;
  /** The AGE-SECRET-KEY-... line, to assert it is never printed. */
  secret: string;
  /** The public key, age1... */
  recipient: string;
}

/** A fresh age key pair from age-keygen, its identity written to DIR/NAME.age-key (0600). */
export function makeAgeKey(dir: string, name: string): AgeKey {
  const file = path.join(dir, `${name}.age-key`);
  const result = spawnSync("/usr/bin/age-keygen", ["-o", file], { encoding: "utf8" });
  if (result.status !== 0) throw new Error(`age-keygen failed: ${result.stderr}`);
  const text = fs.readFileSync(file, "utf8");
  const recipient = /public key: (age1[0-9a-z]+)/.exec(text)?.[1];
  const secret = /^(AGE-SECRET-KEY-[0-9A-Z]+)$/m.exec(text)?.[1];
  if (!recipient || !secret) throw new Error("age-keygen wrote no key");
  return { file, secret, recipient };
}

export interface SigningKey {
  /** The OpenSSH ed25519 private key file (BACKUP_SIGNING_KEY_FILE). */
  file: string;
  /** Its public key line, `ssh-ed25519 AAAA... etcd-backup`. */
  publicKey: string;
  /** The base64 lines of the private key file, to assert they are never printed. */
  secretLines: string[];
}

/**
 * A fresh backup signing key made the way the README tells operators to
 * (`ssh-keygen -t ed25519 -N "" -C etcd-backup -f DIR/NAME`), left at mode 0644 as a Kubernetes
 * Secret volume mounts it without defaultMode.
 */
export function makeSigningKey(dir: string, name: string): SigningKey {
  requireTool("/usr/bin/ssh-keygen", "openssh-client");
  const file = path.join(dir, name);
  const result = spawnSync("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "etcd-backup", "-f", file], {
    encoding: "utf8",
  });
  if (result.status !== 0) throw new Error(`ssh-keygen failed: ${result.stderr}`);
  fs.chmodSync(file, 0o644);
  const secretLines = fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l !== "" && !l.startsWith("-----"));
  return { file, publicKey: fs.readFileSync(`${file}.pub`, "utf8").trim(), secretLines };
}
