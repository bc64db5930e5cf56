/**
 * scripts/ops/resize-control-plane.sh against the fake Hetzner API (tests/support/fakeHetzner.ts:
 * servers, their actions and status changes, locks, rate limits), a stand-in kubectl
 * (tests/support/fake-resize-kubectl.sh) and a real 3-member etcd cluster on loopback
 * (tests/support/etcdCluster.ts) whose member of a node stops while the node's server is not
 * running and starts again when it runs: the health gates meet real etcdctl answers.
 *
 * What this cannot prove: the real API's timing and its status code for server_not_stopped, and
 * a real kubelet, drain and API server; the fakes cite what they model.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { EtcdCluster, opsDir, runScript, ScriptResult, waitUntil } from "./support/etcdCluster";
import { FakeHetzner, FakeServer } from "./support/fakeHetzner";
import { requireTool } from "./support/tools";

const token = "resize-test-token-0123456789abcdef";
const script = path.join(opsDir, "resize-control-plane.sh");
const cluster = "prod-nbg1";
const labels = (node: string, clusterName = cluster) => ({
  cluster: clusterName,
  role: "control-plane",
  "managed-by": "pulumi",
  node,
});
const nodes = ["cp-1", "cp-2", "cp-3"];
const nodeName = (n: string) => `${cluster}-${n}`;
const member = (n: string) => `etcd-${n.slice(3)}`;
const serverId = (n: string) => 100 + Number(n.slice(3));

let tmp: string;
let kube: string;
let bin: string;
let kubeconfig: string;
let etcd: EtcdCluster;
const fake = new FakeHetzner({ token, floatingIpId: 7, address: "192.0.2.7", ownServerId: 101 });

beforeAll(async () => {
  requireTool("/usr/bin/jq", "jq");
  requireTool("/usr/bin/curl", "curl");
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "resize-"));
  kube = path.join(tmp, "kube");
  bin = path.join(tmp, "bin");
  fs.mkdirSync(bin);
  fs.writeFileSync(
    path.join(bin, "kubectl"),
    `#!/bin/bash\nexec /bin/bash ${path.join(__dirname, "support", "fake-resize-kubectl.sh")} "$@"\n`,
    { mode: 0o755 },
  );
  kubeconfig = path.join(tmp, "admin.conf");
  fs.writeFileSync(kubeconfig, "apiVersion: v1\nkind: Config\n", { mode: 0o600 });
  etcd = await EtcdCluster.create({ baseDir: tmp });
  await etcd.startAll();
  await fake.listen();
}, 120_000);

afterAll(async () => {
  await fake.close();
  await etcd?.cleanup();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/**
 * A fresh 3-node cluster on cx22, all running and healthy; a server of another cluster beside
 * it. The fake moves each node's etcd member and kubelet with its server's status.
 */
async function freshCluster(): Promise<void> {
  fake.reset(null);
  fs.rmSync(kube, { recursive: true, force: true });
  for (const dir of ["down", "cordoned", "etcd"]) fs.mkdirSync(path.join(kube, dir), { recursive: true });
  for (const n of nodes) {
    fake.addServer({ id: serverId(n), name: nodeName(n), status: "running", serverType: "cx22", labels: labels(n) });
    fs.writeFileSync(path.join(kube, "etcd", nodeName(n)), etcd.member(member(n)).clientUrl);
  }
  fake.addServer({
    id: 201,
    name: "other-cp-1",
    status: "running",
    serverType: "cx22",
    labels: labels("cp-1", "other"),
  });
  fake.onStatus = (server: FakeServer) => {
    const n = server.labels.node;
    if (!nodes.includes(n) || server.labels.cluster !== cluster) return;
    const down = path.join(kube, "down", server.name);
    if (server.status === "running") {
      fs.rmSync(down, { force: true });
      etcd.start(member(n));
    } else {
      fs.writeFileSync(down, server.status);
      void etcd.kill(member(n));
    }
  };
  for (const n of nodes) etcd.start(member(n));
  await etcd.waitHealthy();
}

async function resize(extra: string[] = []): Promise<ScriptResult> {
  return runScript(
    script,
    [
      "--cluster",
      cluster,
      "--server-type",
      "cx32",
      "--kubeconfig",
      kubeconfig,
      "--timeout",
      "60",
      "--shutdown-timeout",
      "3",
      "--action-timeout",
      "30",
      "--log",
      path.join(tmp, "resize.log"),
      ...extra,
    ],
    {
      PATH: `${bin}:/usr/bin:/bin`,
      HCLOUD_TOKEN: token,
      HCLOUD_ENDPOINT: `${fake.url}/v1`,
      POLL_SECONDS: "0.2",
      FAKE_KUBE: kube,
    },
    240_000,
  );
}

const kubectlCalls = () =>
  fs.existsSync(path.join(kube, "calls")) ? fs.readFileSync(path.join(kube, "calls"), "utf8").split("\n") : [];
const posts = () => fake.requests.filter((r) => r.method === "POST").map((r) => `${r.path} ${r.status}`);
const types = () => nodes.map((n) => fake.serverState(serverId(n))?.serverType);

test("resizes every control-plane server, one at a time in node order, behind the gates", async () => {
  await freshCluster();
  const result = await resize();
  expect(result.stderr).toContain("done: every control-plane server of prod-nbg1 runs cx32");
  expect(result.status).toBe(0);
  expect(types()).toEqual(["cx32", "cx32", "cx32"]);
  // Never two servers down at once, and one node's changes all before the next node's.
  expect(fake.maxNotRunning).toBe(1);
  const order = fake.statusLog.map((s) => s.server);
  expect(order.map((s, i) => (i === 0 || s !== order[i - 1] ? s : "")).filter((s) => s !== "")).toEqual(
    nodes.map(nodeName),
  );
  expect(fake.statusLog.filter((s) => s.server === nodeName("cp-1")).map((s) => s.status)).toEqual([
    "stopping",
    "off",
    "migrating",
    "off",
    "starting",
    "running",
  ]);
  // The actions per server, in order; change_type keeps the disk.
  expect(posts().filter((p) => p.startsWith("/v1/servers/101/"))).toEqual([
    "/v1/servers/101/actions/shutdown 201",
    "/v1/servers/101/actions/change_type 201",
    "/v1/servers/101/actions/poweron 201",
  ]);
  const changeType = fake.requests.find((r) => r.path === "/v1/servers/102/actions/change_type");
  expect(JSON.parse(changeType?.body ?? "{}")).toEqual({ server_type: "cx32", upgrade_disk: false });
  // The other cluster's server was never touched.
  expect(fake.requests.filter((r) => r.path.includes("/201"))).toEqual([]);
  expect(fake.serverState(201)?.serverType).toBe("cx22");
  // Per node: the etcd gate before the drain, the node's own gates after power on, then uncordon.
  const calls = kubectlCalls();
  for (const n of nodes) {
    const name = nodeName(n);
    const at = (re: RegExp) => calls.findIndex((c) => re.test(c));
    const healthBefore = at(new RegExp(`exec etcd-${name} -- etcdctl .* endpoint health --cluster`));
    const drain = at(new RegExp(`drain ${name} --ignore-daemonsets --delete-emptydir-data --timeout=300s`));
    const ready = at(new RegExp(`get node ${name} -o jsonpath=\\{\\.status\\.conditions`));
    const uncordon = at(new RegExp(`uncordon ${name}$`));
    expect({
      n,
      healthBefore: healthBefore >= 0,
      ordered: healthBefore < drain && drain < ready && ready < uncordon,
    }).toEqual({
      n,
      healthBefore: true,
      ordered: true,
    });
  }
  expect(fs.readdirSync(path.join(kube, "cordoned"))).toEqual([]);
  // The token is never printed, and every request carried it.
  expect(result.stdout + result.stderr).not.toContain(token);
  expect(fake.requests.every((r) => r.authorization === `Bearer ${token}`)).toBe(true);

  // Run again: converged, nothing to do.
  fake.requests = [];
  const again = await resize();
  expect(again.status).toBe(0);
  expect(again.stderr).toContain(`${nodeName("cp-2")}: runs cx32 already: skipped`);
  expect(posts()).toEqual([]);
}, 300_000);

test("an unhealthy etcd member refuses before any action", async () => {
  await freshCluster();
  await etcd.stop(member("cp-3"));
  const result = await resize();
  expect(result.status).toBe(1);
  expect(result.stderr).toContain(
    `${nodeName("cp-1")}: refused before any change: etcdctl endpoint health --cluster (in etcd-${nodeName("cp-1")}) does not report every member healthy`,
  );
  expect(result.stderr).toContain(`resume with: HCLOUD_TOKEN=... ${script} --cluster prod-nbg1 --server-type cx32`);
  expect(posts()).toEqual([]);
  expect(kubectlCalls().filter((c) => / drain /.test(c))).toEqual([]);
  expect(types()).toEqual(["cx22", "cx22", "cx22"]);
  etcd.start(member("cp-3"));
  await etcd.waitHealthy();
}, 300_000);

test("a failed change_type powers the server on with its old type and stops with the command to resume; the re-run skips the done nodes", async () => {
  await freshCluster();
  fake.changeTypeFails.set(serverId("cp-2"), {
    code: "resource_unavailable",
    message: "server type cx32 is not available in this location right now",
  });
  const first = await resize();
  expect(first.status).toBe(1);
  expect(first.stderr).toContain(`${nodeName("cp-2")}: change type to cx32 failed: action`);
  expect(first.stderr).toContain("resource_unavailable: server type cx32 is not available");
  expect(first.stderr).toContain(`the node runs cx22 again and is uncordoned`);
  expect(first.stderr).toMatch(
    new RegExp(
      `resume with: HCLOUD_TOKEN=\\.\\.\\. ${script.replace(/[.]/g, "\\.")} --cluster prod-nbg1 --server-type cx32 --kubeconfig `,
    ),
  );
  expect(types()).toEqual(["cx32", "cx22", "cx22"]);
  expect(nodes.map((n) => fake.serverState(serverId(n))?.status)).toEqual(["running", "running", "running"]);
  expect(fake.maxNotRunning).toBe(1);
  // The failed change_type was the only one on cp-2, and cp-3 was never touched.
  expect(posts().filter((p) => p.startsWith("/v1/servers/102/"))).toEqual([
    "/v1/servers/102/actions/shutdown 201",
    "/v1/servers/102/actions/change_type 201",
    "/v1/servers/102/actions/poweron 201",
  ]);
  expect(fake.statusLog.filter((s) => s.server === nodeName("cp-2")).map((s) => `${s.status} ${s.serverType}`)).toEqual(
    ["stopping cx22", "off cx22", "migrating cx22", "off cx22", "starting cx22", "running cx22"],
  );
  expect(posts().filter((p) => p.startsWith("/v1/servers/103/"))).toEqual([]);

  fake.requests = [];
  await etcd.waitHealthy();
  const second = await resize();
  expect(second.status).toBe(0);
  expect(second.stderr).toContain(`${nodeName("cp-1")}: runs cx32 already: skipped`);
  expect(posts().filter((p) => p.startsWith("/v1/servers/101/"))).toEqual([]);
  expect(types()).toEqual(["cx32", "cx32", "cx32"]);
  expect(fake.maxNotRunning).toBe(1);
}, 400_000);

test("423 locked and 409 conflict are retried, 429 waits for RateLimit-Reset, an ignored ACPI shutdown ends in poweroff", async () => {
  await freshCluster();
  // The first request finds the budget used up: 429 with RateLimit-Reset a UNIX time.
  fake.budgetUsedUpNext = true;
  fake.fault = { count: 2, status: 423, match: "POST /v1/servers/101/actions/shutdown" };
  fake.ignoresAcpi.add(serverId("cp-3"));
  // Once cp-2 is off, its change_type meets a conflict first.
  const moveNode = fake.onStatus;
  fake.onStatus = (server) => {
    if (server.id === serverId("cp-2") && server.status === "off" && server.serverType === "cx22") {
      fake.fault = { count: 1, status: 409, match: "POST /v1/servers/102/actions/change_type" };
    }
    moveNode?.(server);
  };
  const result = await resize();
  expect(result.status).toBe(0);
  expect(types()).toEqual(["cx32", "cx32", "cx32"]);
  const first = fake.requests[0];
  expect(first.status).toBe(429);
  expect(Number(first.headers["RateLimit-Reset"])).toBeGreaterThan(Date.now() / 1000);
  // The retry came after one request's worth of refill (3600 an hour: 1 s), not at once.
  expect(fake.requests[1].at - first.at).toBeGreaterThanOrEqual(900);
  expect(result.stderr).toContain("waiting 1s for the rate limit, RateLimit-Reset");
  // The budget refills at one request a second and the script polls faster: more 429s come
  // during the run, each waited out; the other answers, in order:
  const answered = posts().filter((p) => !p.endsWith(" 429"));
  expect(answered.filter((p) => p.startsWith("/v1/servers/101/actions/shutdown"))).toEqual([
    "/v1/servers/101/actions/shutdown 423",
    "/v1/servers/101/actions/shutdown 423",
    "/v1/servers/101/actions/shutdown 201",
  ]);
  expect(result.stderr).toContain("HTTP 423 locked");
  // cp-3 ignored the ACPI request: powered off after --shutdown-timeout, and said so.
  expect(result.stderr).toContain(`${nodeName("cp-3")}: still running 3s after the ACPI shutdown: powering it off`);
  expect(answered.filter((p) => p.startsWith("/v1/servers/102/actions/change_type"))).toEqual([
    "/v1/servers/102/actions/change_type 409",
    "/v1/servers/102/actions/change_type 201",
  ]);
  expect(result.stderr).toContain("HTTP 409 conflict");
  expect(answered.filter((p) => p.startsWith("/v1/servers/103/"))).toEqual([
    "/v1/servers/103/actions/shutdown 201",
    "/v1/servers/103/actions/poweroff 201",
    "/v1/servers/103/actions/change_type 201",
    "/v1/servers/103/actions/poweron 201",
  ]);
  expect(fake.maxNotRunning).toBe(1);
  // Never a change_type on a server that was not off.
  expect(fake.requests.filter((r) => r.status === 412)).toEqual([]);
  await waitUntil("etcd healthy", 30_000, async () => etcd.etcdctl(["endpoint", "health", "--cluster"]).status === 0);
}, 300_000);

test("a run stopped half way is finished by the next: a server left off first, then a resized node left cordoned", async () => {
  await freshCluster();
  // What a stopped run leaves: cp-1 resized but still cordoned, cp-2 drained and off with its old type.
  const moveNode = fake.onStatus;
  fake.reset(null);
  fake.addServer({ id: 101, name: nodeName("cp-1"), status: "running", serverType: "cx32", labels: labels("cp-1") });
  fake.addServer({ id: 102, name: nodeName("cp-2"), status: "off", serverType: "cx22", labels: labels("cp-2") });
  fake.addServer({ id: 103, name: nodeName("cp-3"), status: "running", serverType: "cx22", labels: labels("cp-3") });
  fake.onStatus = moveNode;
  fs.writeFileSync(path.join(kube, "cordoned", nodeName("cp-1")), "");
  fs.writeFileSync(path.join(kube, "cordoned", nodeName("cp-2")), "");
  fs.writeFileSync(path.join(kube, "down", nodeName("cp-2")), "off");
  await etcd.stop(member("cp-2"));

  const result = await resize();
  expect(result.stderr).toContain(`${nodeName("cp-2")}: found off (a stopped run): going on from there`);
  expect(result.stderr).toContain(`${nodeName("cp-1")}: runs cx32 but is cordoned (a stopped run): finishing it`);
  expect(result.status).toBe(0);
  expect(types()).toEqual(["cx32", "cx32", "cx32"]);
  expect(fake.maxNotRunning).toBe(1);
  // cp-2 (off) first, with no second shutdown; cp-1 only uncordoned after its gates; then cp-3.
  expect(posts().filter((p) => !p.endsWith(" 429"))).toEqual([
    "/v1/servers/102/actions/change_type 201",
    "/v1/servers/102/actions/poweron 201",
    "/v1/servers/103/actions/shutdown 201",
    "/v1/servers/103/actions/change_type 201",
    "/v1/servers/103/actions/poweron 201",
  ]);
  const uncordons = kubectlCalls().filter((c) => / uncordon /.test(c) || /uncordon \S+$/.test(c));
  expect(uncordons.map((c) => c.split(" ").pop())).toEqual([nodeName("cp-2"), nodeName("cp-1"), nodeName("cp-3")]);
  expect(fs.readdirSync(path.join(kube, "cordoned"))).toEqual([]);
}, 300_000);
