/**
 * One reserved-IP failover on two simulated control-plane nodes, measured: the companion
 * (scripts/node/reserved-ip-failover.sh) runs in loop mode with its production defaults (the
 * systemd unit passes no timing flag) on node A and node B, each in its own sandbox
 * (nodeSandbox.ts) with a fake `ip` and its own metadata service, against one fake Hetzner API
 * (fakeHetzner.ts). A holds the address and the Floating IP is routed to A. At T0 the address
 * moves from A's interface to B's, as kube-vip does when B's kube-vip takes the Lease. The
 * measurement ends when the fake API reports the Floating IP assigned to B, which happens when
 * B's assign action reports `success` to a read.
 *
 * The fake's actions advance per read, not per second (see fakeHetzner.ts). To make one run
 * for about `actionSeconds` of wall time, the action shows `running` to as many reads as the
 * companion makes in that time at its --action-poll-interval.
 *
 * Used by tests/failoverBudget.test.ts and tools/bench-failover.ts.
 */
import { ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { FakeHetzner } from "./fakeHetzner";
import { makeSandbox, nodeScriptsDir, type Sandbox } from "./nodeSandbox";

const failoverScript = path.join(nodeScriptsDir, "reserved-ip-failover.sh");
// A token shaped like Hetzner's (64 letters and digits); it never leaves 127.0.0.1.
const token = "Tk9fe2VNLXJlYWwtdG9rZW4tZm9yLXRlc3RzLW9ubHktNjQtY2hhcnMtbG9uZzEy";
const floatingIpId = 321;
const address = "203.0.113.10";
export const serverA = 4711;
export const serverB = 4712;

/** The system's directories after the fakes: the companion uses real bash, curl, jq, awk. */
const systemPath = ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"];

/** What `ip -o -4 addr show dev eth0` prints (iproute2's one-line form), with or without the VIP. */
function eth0(withVip: boolean): string {
  const lines = [
    "2: eth0    inet 198.51.100.7/32 metric 100 scope global dynamic eth0\\       valid_lft 85384sec preferred_lft 85384sec",
  ];
  if (withVip)
    lines.push(`2: eth0    inet ${address}/32 scope global eth0\\       valid_lft forever preferred_lft forever`);
  return `${lines.join("\n")}\n`;
}

interface Node {
  name: string;
  serverId: number;
  sandbox: Sandbox;
  ipOutput: string;
  metadata: http.Server;
  child?: ChildProcess;
  stderr: string;
}

/**
 * The metadata service a server reaches at 169.254.169.254/hetzner/v1/metadata: `instance-id`
 * answers the server's own id as plain text (Hetzner Cloud docs, Servers > Metadata; the same
 * shape fakeHetzner.ts serves for one server). One per node, since each asks for its own id.
 */
async function metadataService(serverId: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.method === "GET" && req.url === "/instance-id") {
      res.writeHead(200, { "Content-Type": "text/plain" });
      res.end(String(serverId));
      return;
    }
    res.writeHead(404, { "Content-Type": "text/plain" });
    res.end("not found");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return server;
}

const urlOf = (server: http.Server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

/** Replaces the fake `ip`'s output at once (rename), so a read never sees half a file. */
function setInterface(node: Node, withVip: boolean): void {
  const next = `${node.ipOutput}.next`;
  fs.writeFileSync(next, eth0(withVip));
  fs.renameSync(next, node.ipOutput);
}

async function makeNode(tmpDir: string, name: string, serverId: number, withVip: boolean): Promise<Node> {
  const sandbox = makeSandbox(tmpDir, name, {
    fakes: { ip: 'exec cat "$FAKE_IP_OUTPUT"' },
    realTools: [],
    pathAfter: systemPath,
  });
  const ipOutput = path.join(sandbox.capture, "ip-output");
  fs.mkdirSync(path.join(sandbox.capture, "tmp"));
  fs.writeFileSync(path.join(sandbox.capture, "failover-token"), `${token}\n`, { mode: 0o600 });
  Object.assign(sandbox.env, { FAKE_IP_OUTPUT: ipOutput, TMPDIR: path.join(sandbox.capture, "tmp") });
  const node: Node = { name, serverId, sandbox, ipOutput, metadata: await metadataService(serverId), stderr: "" };
  setInterface(node, withVip);
  return node;
}

/** Starts the companion in loop mode in its own process group, with its default timings. */
function start(node: Node, apiUrl: string): void {
  const args = [
    ...["--floating-ip-id", String(floatingIpId), "--address", address, "--interface", "eth0"],
    ...["--token-file", path.join(node.sandbox.capture, "failover-token")],
    ...["--api-url", apiUrl, "--metadata-url", urlOf(node.metadata)],
  ];
  const child = spawn("/bin/bash", [failoverScript, ...args], {
    env: node.sandbox.env,
    stdio: ["ignore", "ignore", "pipe"],
    detached: true,
  });
  child.stderr?.on("data", (d: Buffer) => (node.stderr += d.toString()));
  node.child = child;
}

const exited = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null;

/** Stops the companion by its process group id (its own PID): TERM, then KILL after 3 s. */
async function stop(node: Node): Promise<void> {
  const child = node.child;
  if (!child?.pid || exited(child)) return;
  const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  process.kill(-child.pid, "SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 3000)));
  const done = await Promise.race([gone.then(() => true), timeout]);
  clearTimeout(timer);
  if (!done && !exited(child)) {
    process.kill(-child.pid, "SIGKILL");
    await gone;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `ready` every 10 ms, at most `ms`; throws naming `what` when it never holds. */
async function waitFor(ready: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

export interface FailoverRun {
  /** Seconds from the address moving (T0) to the Floating IP being assigned to B. */
  seconds: number;
  /** Every API request after T0, "METHOD path body". */
  requestsAfterT0: string[];
  /** The companions' logs. */
  logA: string;
  logB: string;
}

export interface FailoverRunOptions {
  /** Scratch directory; each run makes its sandboxes inside. */
  tmpDir: string;
  /** How long the assign action runs, in seconds of wall time (modelled by reads). */
  actionSeconds: number;
  /** The companion's --action-poll-interval default, which turns seconds into reads. */
  actionPollInterval: number;
  /** Seconds to wait after both companions are settled before T0 (samples the check phase). */
  delayBeforeT0?: number;
  /** Give up on the Floating IP reaching B after this many seconds. */
  boundSeconds: number;
}

/** Runs one failover from A to B and measures it; every process and server is stopped after. */
export async function measureReservedIpFailover(options: FailoverRunOptions): Promise<FailoverRun> {
  const fake = new FakeHetzner({ token, floatingIpId, address, ownServerId: serverA });
  await fake.listen();
  const nodes: Node[] = [];
  try {
    fake.reset(serverA);
    fake.actionReads = Math.max(0, Math.round(options.actionSeconds / options.actionPollInterval) - 1);
    const a = await makeNode(options.tmpDir, "node-a", serverA, true);
    nodes.push(a);
    const b = await makeNode(options.tmpDir, "node-b", serverB, false);
    nodes.push(b);
    start(a, `${fake.url}/v1`);
    start(b, `${fake.url}/v1`);
    // Settled: A has asked the API (and found the Floating IP routed to it), B has read eth0.
    const floatingIpGet = `/v1/floating_ips/${floatingIpId}`;
    await waitFor(
      () =>
        fake.requests.some((r) => r.method === "GET" && r.path === floatingIpGet && r.status === 200) &&
        fs.readFileSync(b.sandbox.log, "utf8").includes("ip "),
      10_000,
      "node A to confirm the Floating IP and node B to read its interface",
    );
    await sleep((options.delayBeforeT0 ?? 0) * 1000);
    const seen = fake.requests.length;
    const t0 = performance.now();
    setInterface(b, true);
    setInterface(a, false);
    await waitFor(
      () => fake.assignedServer === serverB,
      options.boundSeconds * 1000,
      "the fake API to report the Floating IP assigned to node B",
    ).catch((err: Error) => {
      throw new Error(`${err.message}\nnode A:\n${a.stderr}\nnode B:\n${b.stderr}`);
    });
    const seconds = (performance.now() - t0) / 1000;
    // The companion logs the move after the read that saw `success`; let it finish the check.
    await waitFor(() => b.stderr.includes("moved floating IP"), 5000, "node B to log the move");
    return {
      seconds,
      requestsAfterT0: fake.requests.slice(seen).map((r) => `${r.method} ${r.path}${r.body ? ` ${r.body}` : ""}`),
      logA: a.stderr,
      logB: b.stderr,
    };
  } finally {
    for (const node of nodes) await stop(node);
    for (const node of nodes) await new Promise<void>((resolve) => node.metadata.close(() => resolve()));
    await fake.close();
  }
}
