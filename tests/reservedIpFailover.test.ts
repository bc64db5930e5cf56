/**
 * The reserved-IP failover companion (scripts/node/reserved-ip-failover.sh), its systemd unit
 * and its installer, run for real: real bash, curl, jq and awk against a fake Hetzner API and
 * metadata service served by this test process on 127.0.0.1, with a fake `ip` that reports
 * whether the Floating IP is on eth0 and a fake `systemctl` that only records its calls.
 *
 * What this cannot prove: that the real Hetzner API answers exactly like the fake
 * (tests/support/fakeHetzner.ts follows the API reference: answer shapes, error codes,
 * rate-limit headers, actions that run and end in success or error, 423 locked while one runs;
 * the number of reads an action runs for stands in for the real API's wall time);
 * that `ip` on Ubuntu prints what the fake prints (the fake prints real `ip -o -4 addr` lines);
 * and that systemd accepts the unit's hardening (no systemd here: the unit is parsed as INI and
 * its keys asserted; a node boot is the proof).
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { FakeHetzner } from "./support/fakeHetzner";
import {
  calls,
  expectShellcheckClean,
  makeSandbox as makeNodeSandbox,
  mode,
  nodeScriptsDir,
  resetCalls,
  runNodeScript,
  type Sandbox,
} from "./support/nodeSandbox";
import { expectNoSecrets } from "./support/secrets";
import { requireTool } from "./support/tools";

const failoverScript = path.join(nodeScriptsDir, "reserved-ip-failover.sh");
const installerName = "install-reserved-ip-failover.sh";
const installerScript = path.join(nodeScriptsDir, installerName);
const unitFile = path.join(nodeScriptsDir, "reserved-ip-failover.service");

const curlBinary = requireTool("/usr/bin/curl", "curl");
requireTool("/usr/bin/jq", "jq");

// The values one node sees. The token looks like a Hetzner token (64 letters and digits).
const token = "Tk9fe2VNLXJlYWwtdG9rZW4tZm9yLXRlc3RzLW9ubHktNjQtY2hhcnMtbG9uZzEy";
const floatingIpId = 321;
const address = "203.0.113.10";
const ownServerId = 4711;
const otherServerId = 4712;

// The fake Hetzner API (under /v1) and metadata service (under /metadata), one HTTP server.
const fake = new FakeHetzner({ token, floatingIpId, address, ownServerId });
let tmp: string;
let closedPort: number;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "reserved-ip-failover-test-"));
  await fake.listen();
  // A port nothing listens on, for connection errors: bind, note it, close.
  const probe = http.createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  closedPort = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
});

afterAll(async () => {
  await fake.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// A sandbox per run: fake `ip`, a logging wrapper around the real curl, fake `systemctl`.

const eth0Lines = (ip: string) =>
  [
    "2: eth0    inet 198.51.100.7/32 metric 100 scope global dynamic eth0\\       valid_lft 85384sec preferred_lft 85384sec",
    `2: eth0    inet ${ip}/32 scope global eth0\\       valid_lft forever preferred_lft forever`,
    "",
  ].join("\n");

/** A node sandbox (nodeSandbox.ts) with the failover's token file and the fakes' inputs. */
interface FailoverSandbox extends Sandbox {
  tokenFile: string;
  /** What the fake `ip` prints; `<ipOutput>.<n>`, when it exists, wins for the n-th call. */
  ipOutput: string;
  /** The curl wrapper appends curl's environment here. */
  envLog: string;
}

/** Every fake or wrapped command appends its name and argv to the call log (the prelude). */
const fakes: Record<string, string> = {
  // No output file: the interface cannot be read, as when eth0 does not exist.
  ip: [
    'n="$(count ip)"',
    'if [[ -f "$FAKE_IP_OUTPUT.$n" ]]; then exec cat "$FAKE_IP_OUTPUT.$n"; fi',
    'exec cat "$FAKE_IP_OUTPUT" 2>/dev/null',
  ].join("\n"),
  curl: `env >>"$FAKE_ENV_LOG"\nexec ${curlBinary} "$@"`,
  systemctl: "",
};

/** The system's directories, after the fakes: the scripts use real bash, curl, jq, awk and more. */
const systemPath = ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"];

function makeSandbox(name: string, eth0: string | null): FailoverSandbox {
  const sandbox = makeNodeSandbox(tmp, name, { fakes, realTools: [], pathAfter: systemPath });
  const inCapture = (file: string) => path.join(sandbox.capture, file);
  const failover = {
    ...sandbox,
    tokenFile: inCapture("failover-token"),
    ipOutput: inCapture("ip-output"),
    envLog: inCapture("curl-env.log"),
  };
  fs.mkdirSync(inCapture("tmp"));
  fs.writeFileSync(failover.envLog, "");
  fs.writeFileSync(failover.tokenFile, `${token}\n`, { mode: 0o600 });
  if (eth0 !== null) fs.writeFileSync(failover.ipOutput, eth0);
  Object.assign(sandbox.env, {
    FAKE_ENV_LOG: failover.envLog,
    FAKE_IP_OUTPUT: failover.ipOutput,
    TMPDIR: inCapture("tmp"),
  });
  return failover;
}

interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a script without blocking this process (the fake API lives in it), bounded to 15 s. */
function runAsync(script: string, args: string[], env: NodeJS.ProcessEnv): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn("/bin/bash", [script, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    child.on("error", reject);
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

/** Every run: the token is in no output, no logged argv and no environment of curl. */
function expectNoTokenLeak(sandbox: FailoverSandbox, result: RunResult): void {
  expectNoSecrets(result, [token]);
  expect(fs.readFileSync(sandbox.log, "utf8")).not.toContain(token);
  expect(fs.readFileSync(sandbox.envLog, "utf8")).not.toContain(token);
}

const apiArgs = (sandbox: FailoverSandbox, apiUrl = `${fake.url}/v1`) => [
  "--floating-ip-id",
  String(floatingIpId),
  "--address",
  address,
  "--token-file",
  sandbox.tokenFile,
  "--api-url",
  apiUrl,
  "--metadata-url",
  `${fake.url}/metadata`,
  "--max-attempts",
  "3",
  "--backoff-base",
  "0.05",
  "--timeout",
  "2",
  "--action-poll-interval",
  "0.05",
];

async function failover(sandbox: FailoverSandbox, extra: string[] = ["--once"], apiUrl?: string): Promise<RunResult> {
  const result = await runAsync(failoverScript, [...apiArgs(sandbox, apiUrl), ...extra], sandbox.env);
  expectNoTokenLeak(sandbox, result);
  return result;
}

const summary = () => fake.requests.map((r) => `${r.method} ${r.path}`);
const metadataGet = "GET /metadata/instance-id";
const floatingIpGet = `GET /v1/floating_ips/${floatingIpId}`;
const assignPost = `POST /v1/floating_ips/${floatingIpId}/actions/assign`;
/** hcloud-go's ActionClient.WaitFor reads actions this way (hcloud/action_waiter.go). */
const actionGet = (id = 13) => `GET /v1/actions?id=${id}`;

// ---------------------------------------------------------------------------------------------

describe("reserved-ip-failover.sh, one check against the fake API", () => {
  test("(a) address here, API says another server: one assign with this server's id and the token", async () => {
    fake.reset(otherServerId);
    fake.actionReads = 2; // the action runs for two reads, then succeeds
    const sandbox = makeSandbox("move", eth0Lines(address));
    const result = await failover(sandbox);

    expect({ status: result.status, stdout: result.stdout }).toEqual({ status: 4, stdout: "" });
    expect(summary()).toEqual([metadataGet, floatingIpGet, assignPost, actionGet(), actionGet(), actionGet()]);
    const [metadata, get, post] = fake.requests;
    expect(metadata.authorization).toBeUndefined(); // the token goes to the API only
    expect(get.authorization).toBe(`Bearer ${token}`);
    expect(post.authorization).toBe(`Bearer ${token}`);
    expect(JSON.parse(post.body)).toEqual({ server: ownServerId });
    expect(fake.assignedServer).toBe(ownServerId);
    expect(result.stderr.split("\n").filter(Boolean)).toEqual([
      `reserved-ip-failover: watching ${address} on eth0 for floating IP ${floatingIpId} (api ${fake.url}/v1, every 2s, recheck 30s)`,
      `reserved-ip-failover: this is server ${ownServerId}`,
      `reserved-ip-failover: ${address} is on eth0 but floating IP ${floatingIpId} is assigned to server ${otherServerId}; assigning it to this server (${ownServerId})`,
      `reserved-ip-failover: assign action 13 started; waiting for it (at most 60s)`,
      `reserved-ip-failover: moved floating IP ${floatingIpId} (${address}) from server ${otherServerId} to server ${ownServerId} (action 13 assign_floating_ip succeeded)`,
    ]);
    expect(fake.action(13)).toMatchObject({ status: "success", progress: 100 });
    // The interface was read as documented, and curl really ran through the wrapper.
    const log = calls(sandbox);
    expect(log[0]).toBe("ip -o -4 addr show dev eth0");
    expect(log.filter((line) => line.startsWith("curl --config - "))).toHaveLength(6);
  });

  test("(a') an unassigned Floating IP is assigned here too", async () => {
    fake.reset(null);
    const sandbox = makeSandbox("unassigned", eth0Lines(address));
    const result = await failover(sandbox);
    expect(result.status).toBe(4);
    expect(summary()).toEqual([metadataGet, floatingIpGet, assignPost, actionGet()]);
    expect(result.stderr).toContain(`is assigned to server none; assigning it to this server (${ownServerId})`);
  });

  test("(b) address here, API already says this server: no assign; flags from the environment work", async () => {
    fake.reset(ownServerId);
    const sandbox = makeSandbox("routed", eth0Lines(address));
    const env = {
      ...sandbox.env,
      FLOATING_IP_ID: String(floatingIpId),
      FLOATING_IP_ADDRESS: address,
      INTERFACE: "eth0",
      TOKEN_FILE: sandbox.tokenFile,
      API_URL: `${fake.url}/v1`,
      METADATA_URL: `${fake.url}/metadata`,
    };
    const result = await runAsync(failoverScript, ["--once"], env);
    expectNoTokenLeak(sandbox, result);
    expect(result.status).toBe(0);
    expect(summary()).toEqual([metadataGet, floatingIpGet]);
    expect(result.stderr).toContain(
      `${address} is on eth0 and floating IP ${floatingIpId} is routed to this server (${ownServerId}); nothing to do`,
    );
  });

  test.each([
    ["another address only", eth0Lines("198.51.100.8")],
    ["a longer address that starts with it", eth0Lines(`${address}0`)],
    ["no IPv4 address at all", ""],
  ])("(c) address not here (%s): no request at all, exit 0", async (_label, eth0) => {
    fake.reset(otherServerId);
    const sandbox = makeSandbox("standby", eth0);
    const result = await failover(sandbox);
    expect(result.status).toBe(0);
    expect(fake.requests).toEqual([]);
    expect(calls(sandbox)).toEqual(["ip -o -4 addr show dev eth0"]);
    expect(result.stderr).toContain(`${address} is not on eth0 (another node holds it); nothing to do`);
  });

  test("an interface that cannot be read fails the check (exit 1) without calling the API", async () => {
    fake.reset(otherServerId);
    const sandbox = makeSandbox("no-interface", null);
    const result = await failover(sandbox, ["--once", "--interface", "eth9"]);
    expect(result.status).toBe(1);
    expect(fake.requests).toEqual([]);
    expect(result.stderr).toContain("error: cannot read the addresses of eth9 (ip -o -4 addr show dev eth9)");
  });

  test("(d) 5xx twice, then success: retried with exponential backoff, then moved", async () => {
    fake.reset(otherServerId);
    fake.fault = { count: 2, status: 500 };
    const sandbox = makeSandbox("retry-5xx", eth0Lines(address));
    const result = await failover(sandbox, ["--once", "--backoff-base", "0.2"]);

    expect(result.status).toBe(4);
    expect(summary()).toEqual([metadataGet, floatingIpGet, floatingIpGet, floatingIpGet, assignPost, actionGet()]);
    const url = `${fake.url}/v1/floating_ips/${floatingIpId}`;
    expect(result.stderr).toContain(`GET ${url}: HTTP 500; attempt 1/3, retrying in 0.2s`);
    expect(result.stderr).toContain(`GET ${url}: HTTP 500; attempt 2/3, retrying in 0.4s`);
    const at = fake.requests.map((r) => r.at);
    expect(at[2] - at[1]).toBeGreaterThanOrEqual(190);
    expect(at[3] - at[2]).toBeGreaterThanOrEqual(390);
    expect(JSON.parse(fake.requests[4].body)).toEqual({ server: ownServerId });
  });

  test("(d) a call that times out is retried (curl --max-time)", async () => {
    fake.reset(otherServerId);
    fake.fault = { count: 1, status: "hang" };
    const sandbox = makeSandbox("timeout", eth0Lines(address));
    const result = await failover(sandbox, ["--once", "--timeout", "0.3"]);
    expect(result.status).toBe(4);
    expect(summary()).toEqual([metadataGet, floatingIpGet, floatingIpGet, assignPost, actionGet()]);
    expect(result.stderr).toMatch(/curl exit 28: .*; attempt 1\/3, retrying in 0\.05s/);
  });

  test("(e) always 5xx: gives up after --max-attempts, exit 1, no assign", async () => {
    fake.reset(otherServerId);
    fake.fault = { count: 100, status: 503 };
    const sandbox = makeSandbox("always-5xx", eth0Lines(address));
    const result = await failover(sandbox);
    expect(result.status).toBe(1);
    expect(summary()).toEqual([metadataGet, floatingIpGet, floatingIpGet, floatingIpGet]);
    expect(result.stderr).toContain(
      `error: GET ${fake.url}/v1/floating_ips/${floatingIpId}: HTTP 503; giving up after 3 attempts`,
    );
  });

  test("(e) API unreachable: connection errors are retried, then exit 1", async () => {
    fake.reset(otherServerId);
    const sandbox = makeSandbox("unreachable", eth0Lines(address));
    const result = await failover(sandbox, ["--once"], `http://127.0.0.1:${closedPort}/v1`);
    expect(result.status).toBe(1);
    expect(summary()).toEqual([metadataGet]);
    expect(result.stderr.match(/curl exit 7: /g)).toHaveLength(3);
    expect(result.stderr).toContain("giving up after 3 attempts");
  });

  test("a 4xx (a wrong token) is not retried: one GET, exit 1, the API's error in the log", async () => {
    fake.reset(otherServerId);
    const sandbox = makeSandbox("wrong-token", eth0Lines(address));
    fs.writeFileSync(sandbox.tokenFile, "someOtherToken0123456789\n");
    const result = await failover(sandbox);
    expect(result.status).toBe(1);
    expect(summary()).toEqual([metadataGet, floatingIpGet]);
    expect(result.stderr).toContain(
      `error: GET ${fake.url}/v1/floating_ips/${floatingIpId}: HTTP 401: unauthorized: unable to authenticate`,
    );
    expect(result.stderr).not.toContain("someOtherToken");
  });

  test("--max-checks 2: moves on the first check, confirms on the second, assigns once", async () => {
    fake.reset(otherServerId);
    const sandbox = makeSandbox("loop", eth0Lines(address));
    const result = await failover(sandbox, ["--max-checks", "2", "--interval", "0.1"]);
    expect(result.status).toBe(0);
    expect(summary()).toEqual([metadataGet, floatingIpGet, assignPost, actionGet(), floatingIpGet]);
    expect(result.stderr.match(/moved floating IP/g)).toHaveLength(1);
    expect(result.stderr.match(/is routed to this server/g)).toHaveLength(1);
  });

  test("loop: a confirmed routing is asked again only after --recheck-interval (0 asks every check)", async () => {
    fake.reset(ownServerId);
    const sandbox = makeSandbox("recheck", eth0Lines(address));
    const cached = await failover(sandbox, ["--max-checks", "3", "--interval", "0.05"]);
    expect(cached.status).toBe(0);
    expect(summary()).toEqual([metadataGet, floatingIpGet]);
    expect(calls(sandbox).filter((line) => line.startsWith("ip "))).toHaveLength(3);

    fake.reset(ownServerId);
    const always = await failover(sandbox, ["--max-checks", "3", "--interval", "0.05", "--recheck-interval", "0"]);
    expect(always.status).toBe(0);
    expect(summary()).toEqual([metadataGet, floatingIpGet, floatingIpGet, floatingIpGet]);
    // The unchanged state is logged once, not on every check.
    expect(always.stderr.match(/is routed to this server/g)).toHaveLength(1);
  });

  test("loop: an address that left and came back is asked about at once, whatever the recheck interval", async () => {
    fake.reset(ownServerId);
    const sandbox = makeSandbox("came-back", eth0Lines(address));
    fs.writeFileSync(`${sandbox.ipOutput}.2`, eth0Lines("198.51.100.8"));
    // Meanwhile another node took it over, and this one became the leader again.
    const result = await runAsync(
      failoverScript,
      [...apiArgs(sandbox), "--max-checks", "3", "--interval", "0.05", "--recheck-interval", "3600"],
      sandbox.env,
    );
    expectNoTokenLeak(sandbox, result);
    expect(result.status).toBe(0);
    expect(summary()).toEqual([metadataGet, floatingIpGet, floatingIpGet]);
    expect(result.stderr.match(/is routed to this server/g)).toHaveLength(2);
    expect(result.stderr.match(/is not on eth0/g)).toHaveLength(1);
  });
});

describe("reserved-ip-failover.sh, the assign action, locks, conflicts and the rate limit", () => {
  const assignUrl = () => `${fake.url}/v1/floating_ips/${floatingIpId}/actions/assign`;
  const thirdServerId = 4713;

  test("an action that ends in error: exit 1 naming its error code and message, nothing reported as moved", async () => {
    fake.reset(otherServerId);
    fake.actionReads = 1;
    fake.actionOutcome = { code: "action_failed", message: "Action failed" };
    const sandbox = makeSandbox("action-error", eth0Lines(address));
    const result = await failover(sandbox);

    expect(result.status).toBe(1);
    expect(summary()).toEqual([metadataGet, floatingIpGet, assignPost, actionGet(), actionGet()]);
    expect(fake.assignedServer).toBe(otherServerId);
    expect(result.stderr).toContain(
      `error: action 13 (assign_floating_ip) failed: action_failed: Action failed; floating IP ${floatingIpId} was not moved to this server (${ownServerId})`,
    );
    expect(result.stderr).not.toContain("moved floating IP");
  });

  test("an action still running after --action-timeout: exit 1 saying so, within the bound", async () => {
    fake.reset(otherServerId);
    fake.actionReads = 1000;
    const sandbox = makeSandbox("action-running", eth0Lines(address));
    const started = Date.now();
    const result = await failover(sandbox, ["--once", "--action-timeout", "0.3"]);

    expect(result.status).toBe(1);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(summary().slice(0, 4)).toEqual([metadataGet, floatingIpGet, assignPost, actionGet()]);
    // Polled every --action-poll-interval (0.05 s, plus the time a read takes) for 0.3 s; never
    // assigned twice.
    expect(summary().filter((r) => r === actionGet()).length).toBeGreaterThanOrEqual(1);
    expect(summary().filter((r) => r === assignPost)).toHaveLength(1);
    expect(result.stderr).toContain(
      "error: action 13 (assign_floating_ip) is still running after 0.3s; the next check waits for it instead of assigning again",
    );
    expect(result.stderr).not.toContain("moved floating IP");
  });

  test("loop: checks while the action runs wait for it; no second assign, no 423", async () => {
    fake.reset(otherServerId);
    fake.actionReads = 3; // still running after the first two checks (each check reads it once or twice)
    const sandbox = makeSandbox("action-pending", eth0Lines(address));
    const result = await failover(sandbox, ["--max-checks", "3", "--interval", "0.05", "--action-timeout", "0"]);

    expect(result.status).toBe(4);
    expect(summary()).toEqual([
      metadataGet,
      floatingIpGet,
      assignPost,
      floatingIpGet,
      actionGet(),
      floatingIpGet,
      actionGet(),
    ]);
    expect(fake.requests.map((r) => r.status)).not.toContain(423);
    expect(result.stderr.match(/is still running after 0s/g)).toHaveLength(2);
    expect(result.stderr.match(/waiting for assign action 13 instead of assigning again/g)).toHaveLength(2);
    expect(result.stderr).toContain(
      `moved floating IP ${floatingIpId} (${address}) from server ${otherServerId} to server ${ownServerId} (action 13 assign_floating_ip succeeded)`,
    );
    expect(fake.assignedServer).toBe(ownServerId);
  });

  test("423 locked while another assign runs: reads the Floating IP again, assigns when it ends, waits", async () => {
    fake.reset(otherServerId);
    fake.startForeignAssign(thirdServerId, 1); // action 13, e.g. from another node
    const sandbox = makeSandbox("locked", eth0Lines(address));
    const result = await failover(sandbox);

    expect(result.status).toBe(4);
    expect(summary()).toEqual([metadataGet, floatingIpGet, assignPost, floatingIpGet, assignPost, actionGet(14)]);
    expect(fake.requests.map((r) => r.status)).toEqual([200, 200, 423, 200, 201, 200]);
    expect(result.stderr).toContain(
      `POST ${assignUrl()}: HTTP 423: locked: The item you are trying to access is locked (there is already an Action running); attempt 1/3, reading floating IP ${floatingIpId} again in 0.05s`,
    );
    expect(result.stderr).toContain(
      `moved floating IP ${floatingIpId} (${address}) from server ${thirdServerId} to server ${ownServerId} (action 14 assign_floating_ip succeeded)`,
    );
  });

  test("423 locked, and the other action routed the Floating IP here: no assign, exit 0", async () => {
    fake.reset(otherServerId);
    fake.startForeignAssign(ownServerId, 1);
    const sandbox = makeSandbox("locked-here", eth0Lines(address));
    const result = await failover(sandbox);

    expect(result.status).toBe(0);
    expect(summary()).toEqual([metadataGet, floatingIpGet, assignPost, floatingIpGet]);
    expect(result.stderr).toContain(`is routed to this server (${ownServerId}); nothing to do`);
  });

  test("423 locked that does not clear: bounded by --max-attempts, exit 1", async () => {
    fake.reset(otherServerId);
    fake.startForeignAssign(thirdServerId, 1000);
    const sandbox = makeSandbox("locked-long", eth0Lines(address));
    const result = await failover(sandbox);

    expect(result.status).toBe(1);
    expect(summary()).toEqual([
      metadataGet,
      floatingIpGet,
      assignPost,
      floatingIpGet,
      assignPost,
      floatingIpGet,
      assignPost,
    ]);
    expect(result.stderr).toContain(
      `error: POST ${assignUrl()}: HTTP 423: locked: The item you are trying to access is locked (there is already an Action running); still locked after 3 attempts`,
    );
  });

  test("409 conflict on the assign is retried with backoff, then moved", async () => {
    fake.reset(otherServerId);
    fake.fault = { count: 1, status: 409, match: "POST " };
    const sandbox = makeSandbox("conflict", eth0Lines(address));
    const result = await failover(sandbox);

    expect(result.status).toBe(4);
    expect(summary()).toEqual([metadataGet, floatingIpGet, assignPost, assignPost, actionGet()]);
    expect(fake.requests.map((r) => r.status)).toEqual([200, 200, 409, 201, 200]);
    expect(result.stderr).toContain(
      `POST ${assignUrl()}: HTTP 409: conflict: The resource has changed during the request, please retry; attempt 1/3, retrying in 0.05s`,
    );
  });

  test("429 with the budget used up: waits until a request is available again (RateLimit-* headers), then moves", async () => {
    fake.reset(otherServerId);
    // 36000 an hour refills one request every 0.1 s (the reference's example: 3600 -> 1 s).
    fake.rateLimit.limit = 36000;
    fake.budgetUsedUpNext = true;
    const sandbox = makeSandbox("rate-limit", eth0Lines(address));
    const result = await failover(sandbox, ["--once", "--backoff-base", "0.01", "--max-attempts", "5"]);

    expect(result.status).toBe(4);
    const [, limited, retried] = fake.requests;
    expect(`${limited.method} ${limited.path} ${limited.status}`).toBe(`${floatingIpGet} 429`);
    expect(`${retried.method} ${retried.path} ${retried.status}`).toBe(`${floatingIpGet} 200`);
    // Not after the 0.01 s backoff: after the 0.1 s one request takes to come back.
    expect(retried.at - limited.at).toBeGreaterThanOrEqual(90);
    expect(result.stderr).toMatch(
      /GET \S+\/floating_ips\/321: HTTP 429: rate_limit_exceeded: limit of requests per hour reached \(RateLimit-Remaining 0 of 36000, all back in 3[56]\d\ds\); attempt 1\/5, retrying in 0\.1s/,
    );
    expect(fake.assignedServer).toBe(ownServerId);
    // The fake answers as Hetzner does: rate-limit headers on every API answer, no Retry-After.
    for (const request of fake.requests.filter((r) => r.path.startsWith("/v1/"))) {
      expect(Object.keys(request.headers)).toEqual(
        expect.arrayContaining(["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"]),
      );
      expect(Object.keys(request.headers).map((h) => h.toLowerCase())).not.toContain("retry-after");
    }
  });

  test("429 when the next request is far off: the wait is capped by --backoff-max, then the check fails", async () => {
    fake.reset(otherServerId);
    fake.rateLimit.limit = 60; // one request a minute
    fake.budgetUsedUpNext = true;
    const sandbox = makeSandbox("rate-limit-cap", eth0Lines(address));
    const result = await failover(sandbox, ["--once", "--backoff-max", "0.2"]);

    expect(result.status).toBe(1);
    expect(summary()).toEqual([metadataGet, floatingIpGet, floatingIpGet, floatingIpGet]);
    expect(fake.requests.slice(1).map((r) => r.status)).toEqual([429, 429, 429]);
    const at = fake.requests.map((r) => r.at);
    expect(at[2] - at[1]).toBeGreaterThanOrEqual(190);
    expect(at[3] - at[2]).toBeGreaterThanOrEqual(190);
    expect(
      result.stderr.match(/\(RateLimit-Remaining 0 of 60, all back in \d+s\); attempt \d\/3, retrying in 0\.2s/g),
    ).toHaveLength(2);
    expect(result.stderr).toContain("giving up after 3 attempts");
  });
});

describe("reserved-ip-failover.sh, the token", () => {
  test.each([
    ["0640", 0o640, "has mode 640; group and others must have no access (chmod 600)"],
    ["0604", 0o604, "has mode 604; group and others must have no access (chmod 600)"],
    ["0660", 0o660, "has mode 660"],
  ])("(g) a token file with mode %s is refused (exit 3) before anything runs", async (_label, mode, message) => {
    fake.reset(otherServerId);
    const sandbox = makeSandbox("token-mode", eth0Lines(address));
    fs.chmodSync(sandbox.tokenFile, mode);
    const result = await failover(sandbox);
    expect(result.status).toBe(3);
    expect(result.stderr).toContain(`refusing to run: token file ${sandbox.tokenFile} ${message}`);
    expect(fake.requests).toEqual([]);
    expect(calls(sandbox)).toEqual([]);
  });

  test("(g) a missing or malformed token file is refused (exit 3)", async () => {
    fake.reset(otherServerId);
    const sandbox = makeSandbox("token-missing", eth0Lines(address));
    fs.rmSync(sandbox.tokenFile);
    const missing = await failover(sandbox);
    expect(missing.status).toBe(3);
    expect(missing.stderr).toContain(`token file ${sandbox.tokenFile} does not exist`);

    fs.writeFileSync(sandbox.tokenFile, 'bad" token\n', { mode: 0o600 });
    const malformed = await failover(sandbox);
    expect(malformed.status).toBe(3);
    expect(malformed.stderr).toContain("the first line must be the API token");
    expect(malformed.stderr).not.toContain("bad");
    expect(summary()).toEqual([metadataGet]); // read only when a request needs it
  });

  test("(f) the script hands the token to curl on stdin only, never in argv, environment or logs", () => {
    const lines = fs.readFileSync(failoverScript, "utf8").split("\n");
    const usesToken = lines.filter((line) => /\$\{?token\b/.test(line)).map((line) => line.trim());
    expect(usesToken).toEqual([
      "token=\"${token%$'\\r'}\"",
      '[[ "$token" =~ ^[A-Za-z0-9._~+/=-]+$ ]] ||',
      'curl_config="header = \\"Authorization: Bearer ${token}\\""',
    ]);
    // The one place curl runs: its config (the header) on stdin, `--config -`.
    const curlRuns = lines.filter((line) => /(^|[|;&(]\s*)curl\s/.test(line.trim()));
    expect(curlRuns.map((line) => line.trim())).toEqual([
      'status="$(printf \'%s\\n\' "$config" | curl --config - "${args[@]}" "$url" 2>"${workdir}/curl-error")" ||',
    ]);
    expect(lines.filter((line) => /\bexport\b|set -x|set -o xtrace/.test(line))).toEqual([]);

    // The installer: read from stdin, checked, written to the 0600 file through a here-string.
    const installer = fs.readFileSync(installerScript, "utf8").split("\n");
    expect(installer.filter((line) => /\$\{?token\b/.test(line)).map((line) => line.trim())).toEqual([
      'IFS= read -r "${read_flags[@]}" token || [[ -n "$token" ]] ||',
      "token=\"${token%$'\\r'}\"",
      '[[ -n "$token" ]] || usage_error "no API token on stdin (the first line is empty)"',
      '[[ "$token" =~ ^[A-Za-z0-9._~+/=-]+$ ]] ||',
      'if install_content 0600 "${ROOT}${TOKEN_FILE}" <<<"$token"; then',
    ]);
    expect(installer.filter((line) => /\bexport\b|set -x|set -o xtrace/.test(line))).toEqual([]);
  });
});

describe("reserved-ip-failover.sh, usage", () => {
  test("--help documents every flag, its environment fallback and the exit codes", async () => {
    const sandbox = makeSandbox("help", "");
    const help = await runAsync(failoverScript, ["--help"], sandbox.env);
    expect(help.status).toBe(0);
    for (const word of [
      "--floating-ip-id",
      "FLOATING_IP_ID",
      "--address",
      "FLOATING_IP_ADDRESS",
      "--interface",
      "INTERFACE",
      "--token-file",
      "TOKEN_FILE",
      "/etc/hcloud-control-plane/failover-token",
      "--api-url",
      "API_URL",
      "https://api.hetzner.cloud/v1",
      "--metadata-url",
      "METADATA_URL",
      "http://169.254.169.254/hetzner/v1/metadata",
      "--interval",
      "CHECK_INTERVAL",
      "--recheck-interval",
      "RECHECK_INTERVAL",
      "--once",
      "--max-checks",
      "MAX_CHECKS",
      "--max-attempts",
      "MAX_ATTEMPTS",
      "--backoff-base",
      "BACKOFF_BASE",
      "--backoff-max",
      "BACKOFF_MAX",
      "--timeout",
      "HTTP_TIMEOUT",
      "--action-timeout",
      "ACTION_TIMEOUT",
      "--action-poll-interval",
      "ACTION_POLL_INTERVAL",
      "GET <api-url>/actions?id=<action id>",
      "RateLimit-Limit",
      "RateLimit-Remaining",
      "RateLimit-Reset",
      '"conflict"',
      '"locked"',
    ]) {
      expect(help.stdout).toContain(word);
    }
    // Hetzner sends no Retry-After; the help says so and no longer promises to honour it.
    expect(help.stdout).toContain("Hetzner sends no Retry-After");
    expect(help.stdout).not.toMatch(/Retry-After header is honoured|an honoured Retry-After/);
    for (const code of ["0", "1", "2", "3", "4"]) expect(help.stdout).toMatch(new RegExp(`^  ${code}  \\S`, "m"));
  });

  test.each([
    [["--address", address], "--floating-ip-id must be a positive integer, got ''"],
    [["--floating-ip-id", "abc", "--address", address], "--floating-ip-id must be a positive integer, got 'abc'"],
    [["--floating-ip-id", "1", "--address", "203.0.113.256"], "--address must be an IPv4 address"],
    [["--floating-ip-id", "1", "--address", address, "--timeout", "0"], "--timeout must be a positive number"],
    [["--floating-ip-id", "1", "--address", address, "--bogus"], "unknown argument '--bogus'"],
  ])("usage error (exit 2): %j", async (args, message) => {
    const sandbox = makeSandbox("usage", eth0Lines(address));
    const result = await runAsync(failoverScript, ["--token-file", sandbox.tokenFile, ...args], sandbox.env);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(message);
    expect(calls(sandbox)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// The systemd unit, parsed as INI (systemd-analyze verify needs a systemd host).

function parseUnit(text: string): Record<string, Record<string, string[]>> {
  const sections: Record<string, Record<string, string[]>> = {};
  let current: Record<string, string[]> | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[([A-Za-z]+)\]$/.exec(line);
    if (header) {
      current = sections[header[1]] = {};
      continue;
    }
    const entry = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (!entry || !current) throw new Error(`not a unit file line: ${raw}`);
    (current[entry[1]] ??= []).push(entry[2]);
  }
  return sections;
}

describe("reserved-ip-failover.service", () => {
  const unit = parseUnit(fs.readFileSync(unitFile, "utf8"));
  const one = (section: string, key: string) => {
    expect([section, key, unit[section]?.[key]?.length]).toEqual([section, key, 1]);
    return unit[section][key][0];
  };

  test("has the three sections, starts after the network is online, restarts always", () => {
    expect(Object.keys(unit)).toEqual(["Unit", "Service", "Install"]);
    expect(one("Unit", "After")).toBe("network-online.target");
    expect(one("Unit", "Wants")).toBe("network-online.target");
    expect(one("Service", "Type")).toBe("simple");
    expect(one("Service", "Restart")).toBe("always");
    expect(one("Service", "RestartSec")).toBe("5");
    expect(one("Install", "WantedBy")).toBe("multi-user.target");
  });

  test("runs the installed script in loop mode with flags from the environment file, not the token", () => {
    expect(one("Service", "EnvironmentFile")).toBe("/etc/hcloud-control-plane/failover.env");
    expect(one("Service", "ExecStart").split(" ")).toEqual([
      "/usr/local/sbin/reserved-ip-failover.sh",
      "--floating-ip-id",
      "${FLOATING_IP_ID}",
      "--address",
      "${FLOATING_IP_ADDRESS}",
      "--interface",
      "${INTERFACE}",
      "--token-file",
      "/etc/hcloud-control-plane/failover-token",
    ]);
    expect(unit.Service.Environment).toBeUndefined();
    // The installer writes to the paths the unit reads.
    const installer = fs.readFileSync(installerScript, "utf8");
    expect(installer).toContain('readonly CONFIG_DIR="/etc/hcloud-control-plane"');
    expect(installer).toContain('readonly ENV_FILE="${CONFIG_DIR}/failover.env"');
    expect(installer).toContain('readonly TOKEN_FILE="${CONFIG_DIR}/failover-token"');
    expect(installer).toContain('readonly SCRIPT_FILE="/usr/local/sbin/reserved-ip-failover.sh"');
  });

  test("is hardened: no capabilities, read-only system, no privilege gain", () => {
    expect(one("Service", "CapabilityBoundingSet")).toBe("");
    expect(one("Service", "AmbientCapabilities")).toBe("");
    for (const key of [
      "NoNewPrivileges",
      "ProtectHome",
      "PrivateTmp",
      "PrivateDevices",
      "PrivateMounts",
      "ProtectKernelTunables",
      "ProtectKernelModules",
      "ProtectKernelLogs",
      "ProtectControlGroups",
      "ProtectClock",
      "ProtectHostname",
      "RestrictNamespaces",
      "RestrictRealtime",
      "RestrictSUIDSGID",
      "LockPersonality",
      "MemoryDenyWriteExecute",
      "RemoveIPC",
    ]) {
      expect([key, one("Service", key)]).toEqual([key, "yes"]);
    }
    expect(one("Service", "ProtectSystem")).toBe("strict");
    expect(one("Service", "SystemCallFilter")).toBe("@system-service");
    expect(one("Service", "UMask")).toBe("0077");
    expect(one("Service", "ReadOnlyPaths")).toBe("/etc/hcloud-control-plane");
    // ip needs netlink; curl needs IPv4/IPv6 and the resolver's Unix socket.
    expect(one("Service", "RestrictAddressFamilies").split(" ").sort()).toEqual([
      "AF_INET",
      "AF_INET6",
      "AF_NETLINK",
      "AF_UNIX",
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// The installer, under a temporary root with a fake systemctl.

describe("install-reserved-ip-failover.sh", () => {
  const service = "reserved-ip-failover.service";
  const installArgs = ["--floating-ip-id", String(floatingIpId), "--address", address];

  function install(sandbox: FailoverSandbox, root: string, args: string[], input: string): RunResult {
    resetCalls(sandbox);
    const run = runNodeScript(sandbox, installerName, ["--root", root, ...args], { input, timeoutMs: 10_000 });
    expectNoTokenLeak(sandbox, run);
    return run;
  }

  test("(h) installs, is idempotent, restarts only on a change, rotates the token, disables", async () => {
    const sandbox = makeSandbox("installer", eth0Lines(address));
    const root = sandbox.root;
    const at = (p: string) => path.join(root, p);

    const first = install(sandbox, root, installArgs, `${token}\n`);
    expect({ status: first.status, stdout: first.stdout }).toEqual({ status: 0, stdout: "" });
    expect(calls(sandbox)).toEqual(["systemctl daemon-reload", `systemctl enable --now ${service}`]);
    expect(fs.readFileSync(at("etc/systemd/system/reserved-ip-failover.service"), "utf8")).toBe(
      fs.readFileSync(unitFile, "utf8"),
    );
    expect(fs.readFileSync(at("usr/local/sbin/reserved-ip-failover.sh"), "utf8")).toBe(
      fs.readFileSync(failoverScript, "utf8"),
    );
    expect(fs.readFileSync(at("etc/hcloud-control-plane/failover.env"), "utf8")).toBe(
      [
        `# Written by install-reserved-ip-failover.sh; read by ${service}. The token is not here.`,
        `FLOATING_IP_ID=${floatingIpId}`,
        `FLOATING_IP_ADDRESS=${address}`,
        "INTERFACE=eth0",
        "",
      ].join("\n"),
    );
    expect(fs.readFileSync(at("etc/hcloud-control-plane/failover-token"), "utf8")).toBe(`${token}\n`);
    expect({
      dir: mode(at("etc/hcloud-control-plane")),
      token: mode(at("etc/hcloud-control-plane/failover-token")),
      env: mode(at("etc/hcloud-control-plane/failover.env")),
      unit: mode(at("etc/systemd/system/reserved-ip-failover.service")),
      script: mode(at("usr/local/sbin/reserved-ip-failover.sh")),
    }).toEqual({ dir: "700", token: "600", env: "600", unit: "644", script: "755" });
    expect(fs.readdirSync(at("etc/hcloud-control-plane")).sort()).toEqual(["failover-token", "failover.env"]);

    // What was installed runs: the env file's values and the 0600 token file work together.
    const envFile = fs.readFileSync(at("etc/hcloud-control-plane/failover.env"), "utf8");
    const envValues = Object.fromEntries(
      envFile
        .split("\n")
        .filter((line) => /^[A-Z_]+=/.test(line))
        .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
    );
    fake.reset(otherServerId);
    resetCalls(sandbox);
    const installedRun = await runAsync(
      at("usr/local/sbin/reserved-ip-failover.sh"),
      ["--once", "--token-file", at("etc/hcloud-control-plane/failover-token")],
      { ...sandbox.env, ...envValues, API_URL: `${fake.url}/v1`, METADATA_URL: `${fake.url}/metadata` },
    );
    expectNoTokenLeak(sandbox, installedRun);
    expect(installedRun.status).toBe(4);
    expect(summary()).toEqual([metadataGet, floatingIpGet, assignPost, actionGet()]);

    // Same inputs again: nothing written, no daemon-reload, no restart.
    const second = install(sandbox, root, installArgs, `${token}\n`);
    expect(second.status).toBe(0);
    expect(calls(sandbox)).toEqual([`systemctl enable --now ${service}`]);
    expect(second.stderr).toContain("script, unit and environment unchanged");

    // A new token: written 0600, no restart (the service reads the file before each call).
    const newToken = "Rotated0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU";
    const rotated = install(sandbox, root, installArgs, `${newToken}\n`);
    expect(rotated.status).toBe(0);
    expect(rotated.stderr).not.toContain(newToken);
    expect(fs.readFileSync(at("etc/hcloud-control-plane/failover-token"), "utf8")).toBe(`${newToken}\n`);
    expect(mode(at("etc/hcloud-control-plane/failover-token"))).toBe("600");
    expect(calls(sandbox)).toEqual([`systemctl enable --now ${service}`]);

    // A changed address: the environment changes and the running service is restarted.
    const moved = install(sandbox, root, ["--floating-ip-id", "322", "--address", "203.0.113.11"], `${newToken}\n`);
    expect(moved.status).toBe(0);
    expect(calls(sandbox)).toEqual([`systemctl enable --now ${service}`, `systemctl restart ${service}`]);
    expect(fs.readFileSync(at("etc/hcloud-control-plane/failover.env"), "utf8")).toContain(
      "FLOATING_IP_ID=322\nFLOATING_IP_ADDRESS=203.0.113.11\n",
    );

    // --disable: stopped and disabled, the token gone; the secret-free files stay.
    const disabled = install(sandbox, root, ["--disable"], "");
    expect(disabled.status).toBe(0);
    expect(calls(sandbox)).toEqual([`systemctl disable --now ${service}`]);
    expect(fs.existsSync(at("etc/hcloud-control-plane/failover-token"))).toBe(false);
    expect(fs.existsSync(at("etc/systemd/system/reserved-ip-failover.service"))).toBe(true);
  });

  test("no token on stdin: usage error (exit 2) and nothing installed", () => {
    const sandbox = makeSandbox("installer-no-token", "");
    const root = sandbox.root;
    for (const input of ["", "\n"]) {
      const result = install(sandbox, root, installArgs, input);
      expect(result.status).toBe(2);
      expect(result.stderr).toContain("no API token on stdin");
      expect(calls(sandbox)).toEqual([]);
      expect(fs.readdirSync(root)).toEqual([]);
    }
  });

  test("--help documents every option", () => {
    const sandbox = makeSandbox("installer-help", "");
    const help = install(sandbox, tmp, ["--help"], "");
    expect(help.status).toBe(0);
    for (const word of ["--floating-ip-id", "--address", "--interface", "--disable", "--root", "ROOT", "stdin"]) {
      expect(help.stdout).toContain(word);
    }
  });
});

test("shellcheck passes on the failover script and its installer", () => {
  expectShellcheckClean(["reserved-ip-failover.sh", installerName]);
});
