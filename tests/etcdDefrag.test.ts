/**
 * scripts/jobs/etcd-defrag.sh for real: a 3-member etcd (Debian's etcd 3.4) on 127.0.0.1 whose
 * database is fragmented for real (large values written, deleted and compacted away), then
 * defragmented by the script while a background poller reads through the cluster.
 *
 * Sizes, the leader and member ids are read here with etcdctl (ids with a regex on the JSON
 * text: they are 64-bit), never taken from the script's output.
 *
 * What this cannot prove: etcd 3.6's etcdctl, which the CronJob image carries. The script reads
 * only header.member_id, leader, dbSize and dbSizeInUse of `endpoint status -w json` and the ID
 * and name of `member list -w json`, which 3.6 is expected (not checked here) to print as 3.4 does.
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { EtcdCluster, etcdctlBinary, runScript, ScriptResult, jobsDir, sleep, waitUntil } from "./support/etcdCluster";
import { libraryFunctionsUsedBy, libraryPath } from "./support/bashLibrary";
import { requireTool } from "./support/tools";
import { cronJobMounts } from "./support/cronJobMounts";
import { runStack } from "./support/program";

const defragScript = path.join(jobsDir, "etcd-defrag.sh");
/** Sourced by the script from its own directory (in the pod, the same ConfigMap), here from the repository. */
const jobLibrary = libraryPath;

/** Small keys that must survive everything. */
const keepCount = 300;
const keep: [string, string][] = [...Array(keepCount)].map((_, i) => [
  `/registry/keep/key-${String(i).padStart(4, "0")}`,
  `value-${i}-${"k".repeat(i % 40)}`,
]);
/** Large values (10-50 KB, about 60 MB in all), written then deleted and compacted away. */
const junkCount = 2000;
const junkValue = (i: number) => "j".repeat(10_000 + ((i * 7919) % 40_000));

let tmp: string;
let cluster: EtcdCluster;

interface MemberStatus {
  endpoint: string;
  id: string;
  leader: string;
  dbSize: number;
  dbSizeInUse: number;
}

/** `endpoint status -w json` of ONE endpoint, ids kept as decimal text. */
function status(endpoint: string, of: EtcdCluster = cluster): MemberStatus {
  const r = of.etcdctl(["--dial-timeout=2s", "--command-timeout=5s", "endpoint", "status", "-w", "json"], [endpoint]);
  if (r.status !== 0) throw new Error(`endpoint status ${endpoint} failed: ${r.stderr}`);
  const field = (name: string) => {
    const m = new RegExp(`"${name}":(\\d+)`).exec(r.stdout);
    if (!m) throw new Error(`no ${name} in ${r.stdout}`);
    return m[1];
  };
  return {
    endpoint,
    id: field("member_id"),
    leader: field("leader"),
    dbSize: Number(field("dbSize")),
    dbSizeInUse: Number(field("dbSizeInUse")),
  };
}

const statuses = () => cluster.endpoints.map((e) => status(e));
const sizes = () => Object.fromEntries(statuses().map((s) => [s.endpoint, s.dbSize]));
const fragmentation = (s: MemberStatus) => Math.floor(((s.dbSize - s.dbSizeInUse) * 100) / s.dbSize);

/** The leader's client URL, as every member reports it (they must agree). */
function leader(): string {
  const all = statuses();
  const ids = new Set(all.map((s) => s.leader));
  if (ids.size !== 1) throw new Error(`members disagree on the leader: ${[...ids].join(", ")}`);
  const found = all.find((s) => s.id === all[0].leader);
  if (!found) throw new Error(`leader ${all[0].leader} is none of the members`);
  return found.endpoint;
}

function defragEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    ETCD_ENDPOINTS: cluster.endpoints.join(","),
    ETCD_DIAL_TIMEOUT: "2s",
    ETCD_COMMAND_TIMEOUT: "5",
    DEFRAG_TIMEOUT: "60",
    DEFRAG_THRESHOLD_PERCENT: "50",
    DEFRAG_MIN_DB_SIZE_BYTES: String(10 * 1024 * 1024),
    DEFRAG_HEALTH_WAIT_SECONDS: "30",
    DEFRAG_PAUSE_SECONDS: "0",
    ...extra,
  };
}

const defrag = (env: NodeJS.ProcessEnv): Promise<ScriptResult> => runScript(defragScript, [], env, 150_000);

/** The endpoints the script announced as `defragmenting <url>`, in order. */
const defragmented = (result: ScriptResult) =>
  [...result.stderr.matchAll(/ etcd-defrag: defragmenting (\S+) \(/g)].map((m) => m[1]);

/** Every kept key is readable, with its value, through each member. */
async function expectDataIntact(): Promise<void> {
  for (const endpoint of cluster.endpoints) {
    const data = await cluster.getPrefix("/registry/keep/", endpoint);
    expect(data.size).toBe(keepCount);
    for (const [k, v] of keep) expect([k, data.get(k)]).toEqual([k, v]);
  }
}

/** Fragments every member's database for real: big values in, deleted, compacted away. */
async function fragment(): Promise<void> {
  const junk: [string, string][] = [...Array(junkCount)].map((_, i) => [
    `/registry/junk/key-${String(i).padStart(5, "0")}`,
    junkValue(i),
  ]);
  await cluster.putMany(junk, 50, 4);
  const del = cluster.etcdctl(["--command-timeout=60s", "del", "--prefix", "/registry/junk/"]);
  expect(del.stdout.trim()).toBe(String(junkCount));
  const rev = /"revision":(\d+)/.exec(cluster.etcdctl(["get", "/registry/keep/key-0000", "-w", "json"]).stdout)?.[1];
  expect(rev).toBeDefined();
  const compact = cluster.etcdctl(["--command-timeout=60s", "compact", "--physical", rev!]);
  expect(compact.status).toBe(0);
  // Compaction runs on every member on its own; wait until each has freed the pages. bbolt
  // counts the pages a commit released as free only after the next write: write a marker.
  let last: MemberStatus[] = [];
  await waitUntil("compaction on every member", 60_000, async () => {
    expect(cluster.etcdctl(["put", "/registry/marker", String(Date.now())]).status).toBe(0);
    last = statuses();
    return last.every((s) => s.dbSize > 40 * 1024 * 1024 && s.dbSizeInUse * 5 < s.dbSize);
  }).catch((e: Error) => {
    throw new Error(`${e.message}; last statuses: ${JSON.stringify(last)}`);
  });
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "etcd-defrag-test-"));
  cluster = await EtcdCluster.create({ baseDir: tmp });
  await cluster.startAll();
  await cluster.putMany(keep);
  await fragment();
}, 120_000);

afterAll(async () => {
  await cluster?.cleanup().catch(() => undefined);
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe("configuration", () => {
  test("shellcheck passes; strict mode, no xtrace, executable", () => {
    const binary = requireTool("/usr/bin/shellcheck", "shellcheck");
    const result = spawnSync(binary, [defragScript, jobLibrary], { encoding: "utf8" });
    expect({ status: result.status, output: result.stdout + result.stderr }).toEqual({ status: 0, output: "" });
    const text = fs.readFileSync(defragScript, "utf8");
    const library = fs.readFileSync(jobLibrary, "utf8");
    expect(text.startsWith("#!/usr/bin/env bash\n")).toBe(true);
    expect(text).toContain("\nset -euo pipefail\n");
    expect(text + library).not.toMatch(/set -[a-z]*x|set -o xtrace/);
    // bash, coreutils and etcdctl only, in the library functions it reaches too: the job needs no
    // jq and no python (the library's other parts serve the node and backup scripts).
    const code = [
      ...text.split("\n").filter((line) => !line.trim().startsWith("#")),
      ...[...libraryFunctionsUsedBy(text).values()].flatMap((body) => body.split("\n")),
    ];
    expect(code.filter((line) => /\b(jq|python3?|awk|sed|grep)\b/.test(line))).toEqual([]);
    expect(fs.statSync(defragScript).mode & 0o111).not.toBe(0);
  });

  test("--help documents every variable", async () => {
    const help = await runScript(defragScript, ["--help"], {});
    expect(help.status).toBe(0);
    for (const variable of [
      "ETCD_ENDPOINTS",
      "ETCD_CACERT",
      "ETCD_CERT",
      "ETCD_KEY",
      "ETCD_DIAL_TIMEOUT",
      "ETCD_COMMAND_TIMEOUT",
      "DEFRAG_TIMEOUT",
      "DEFRAG_THRESHOLD_PERCENT",
      "DEFRAG_MIN_DB_SIZE_BYTES",
      "DEFRAG_HEALTH_WAIT_SECONDS",
      "DEFRAG_PAUSE_SECONDS",
      "DEFRAG_DRY_RUN",
    ]) {
      expect(help.stdout).toContain(variable);
    }
  });

  test("bad settings exit 2 naming the variable and the allowed values; nothing is touched", async () => {
    const before = sizes();
    const cases: [NodeJS.ProcessEnv, string][] = [
      [{ ETCD_ENDPOINTS: undefined }, "ETCD_ENDPOINTS is required"],
      [{ ETCD_ENDPOINTS: " , " }, "ETCD_ENDPOINTS holds no URL"],
      [{ DEFRAG_THRESHOLD_PERCENT: "0" }, "DEFRAG_THRESHOLD_PERCENT must be a whole number from 1 to 99, got '0'"],
      [{ DEFRAG_THRESHOLD_PERCENT: "100" }, "DEFRAG_THRESHOLD_PERCENT must be a whole number from 1 to 99, got '100'"],
      [{ DEFRAG_THRESHOLD_PERCENT: "abc" }, "DEFRAG_THRESHOLD_PERCENT must be a whole number from 1 to 99, got 'abc'"],
      [{ ETCD_CERT: path.join(tmp, "client.crt") }, "ETCD_CERT and ETCD_KEY must both be set or both be empty"],
      [{ ETCD_KEY: path.join(tmp, "client.key") }, "ETCD_CERT and ETCD_KEY must both be set or both be empty"],
      [{ DEFRAG_DRY_RUN: "yes" }, "DEFRAG_DRY_RUN must be 'true' or 'false', got 'yes'"],
      [{ DEFRAG_TIMEOUT: "0" }, "DEFRAG_TIMEOUT must be a whole number >= 1, got '0'"],
      [{ DEFRAG_MIN_DB_SIZE_BYTES: "-1" }, "DEFRAG_MIN_DB_SIZE_BYTES must be a whole number >= 0, got '-1'"],
      [{ DEFRAG_HEALTH_WAIT_SECONDS: "2m" }, "DEFRAG_HEALTH_WAIT_SECONDS must be a whole number >= 1, got '2m'"],
      [{ DEFRAG_PAUSE_SECONDS: "x" }, "DEFRAG_PAUSE_SECONDS must be a whole number >= 0, got 'x'"],
      [{ ETCD_COMMAND_TIMEOUT: "0" }, "ETCD_COMMAND_TIMEOUT must be a whole number >= 1, got '0'"],
      [{ ETCD_DIAL_TIMEOUT: "3" }, "ETCD_DIAL_TIMEOUT must be a duration"],
      [{ ETCD_ENDPOINTS: `${cluster.endpoints[0]},${cluster.endpoints[0]}` }, "lists"],
    ];
    for (const [extra, message] of cases) {
      // A dry run underneath: a setting wrongly accepted still changes nothing.
      const env = defragEnv({ DEFRAG_DRY_RUN: "true" });
      for (const [k, v] of Object.entries(extra)) {
        if (v === undefined) delete env[k];
        else env[k] = v;
      }
      const result = await defrag(env);
      expect([extra, result.status, result.stderr.includes(message)]).toEqual([extra, 2, true]);
      expect(result.stdout).toBe("");
    }
    const arg = await runScript(defragScript, ["--now"], defragEnv({ DEFRAG_DRY_RUN: "true" }));
    expect(arg.status).toBe(2);
    expect(arg.stderr).toContain("unexpected argument '--now'");
    expect(sizes()).toEqual(before);
  }, 60_000);
});

/**
 * Every 200 ms until stopped (at most `maxTicks` ticks): a quorum read through the cluster
 * (etcdctl get, all endpoints) and one through each member (the v3 gateway, 3 s timeout).
 */
class Poller {
  ticks = 0;
  clusterFailures: string[] = [];
  memberFailures = new Map<string, number>();
  /** Ticks in which two or more members failed at once. */
  overlaps = 0;
  private stopped = false;
  private readonly done: Promise<void>;

  constructor(
    private readonly endpoints: string[],
    maxTicks = 1500,
  ) {
    this.done = this.loop(maxTicks);
  }

  private clusterRead(): Promise<string | null> {
    return new Promise((resolve) => {
      const child = spawn(
        etcdctlBinary,
        [
          `--endpoints=${this.endpoints.join(",")}`,
          "--dial-timeout=2s",
          "--command-timeout=5s",
          "get",
          "/registry/keep/key-0001",
        ],
        { env: { PATH: "/usr/bin:/bin" }, stdio: ["ignore", "pipe", "pipe"] },
      );
      let out = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      child.stderr.on("data", (d: Buffer) => (out += d.toString()));
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      child.on("close", (code) => {
        clearTimeout(timer);
        resolve(code === 0 && out.includes(keep[1][1]) ? null : `exit ${code}: ${out.slice(0, 300)}`);
      });
    });
  }

  private async memberRead(endpoint: string): Promise<boolean> {
    try {
      const response = await fetch(`${endpoint}/v3/kv/range`, {
        method: "POST",
        body: JSON.stringify({ key: Buffer.from(keep[1][0]).toString("base64") }),
        signal: AbortSignal.timeout(3_000),
      });
      const body = (await response.json()) as { kvs?: { value: string }[] };
      return response.ok && Buffer.from(body.kvs?.[0]?.value ?? "", "base64").toString() === keep[1][1];
    } catch {
      return false;
    }
  }

  private async loop(maxTicks: number): Promise<void> {
    while (!this.stopped && this.ticks < maxTicks) {
      this.ticks++;
      const [clusterError, ...members] = await Promise.all([
        this.clusterRead(),
        ...this.endpoints.map((e) => this.memberRead(e)),
      ]);
      if (clusterError) this.clusterFailures.push(clusterError);
      const failed = this.endpoints.filter((_, i) => !members[i]);
      for (const e of failed) this.memberFailures.set(e, (this.memberFailures.get(e) ?? 0) + 1);
      if (failed.length >= 2) this.overlaps++;
      await sleep(200);
    }
  }

  /** Ends the loop after the tick in flight (each read is bounded: 3 s, etcdctl 5 s, killed at 10 s). */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

describe("refusals", () => {
  test("one member stopped: exit 1 naming it, no member is defragmented", async () => {
    const before = sizes();
    const stopped = cluster.members[1];
    await cluster.stop(stopped.name);
    try {
      // The poller of the defrag test sees a stopped member, and the cluster still answers.
      const poller = new Poller(cluster.endpoints);
      await sleep(1_500);
      await poller.stop();
      expect(poller.memberFailures.get(stopped.clientUrl)).toBeGreaterThan(0);
      expect(poller.clusterFailures).toEqual([]);
      expect(poller.overlaps).toBe(0);

      const result = await defrag(defragEnv({ DEFRAG_THRESHOLD_PERCENT: "1", DEFRAG_MIN_DB_SIZE_BYTES: "0" }));
      expect(result.status).toBe(1);
      expect(result.stderr).toMatch(
        new RegExp(`error: refusing: not every member is healthy: \\S*${stopped.clientUrl}`),
      );
      expect(result.stderr).toContain("nothing was defragmented");
      expect(defragmented(result)).toEqual([]);
      expect(result.stdout).toBe("");
      for (const m of cluster.members.filter((m) => m !== stopped)) {
        expect([m.clientUrl, status(m.clientUrl).dbSize]).toEqual([m.clientUrl, before[m.clientUrl]]);
      }
    } finally {
      cluster.start(stopped.name);
      await cluster.waitHealthy(60_000);
    }
    expect(status(stopped.clientUrl).dbSize).toBe(before[stopped.clientUrl]);
  }, 90_000);

  test("a member missing from ETCD_ENDPOINTS: exit 1 naming it, nothing is defragmented", async () => {
    const before = sizes();
    // A follower: the script must notice it from `member list`, not only from the leader id.
    const theLeader = leader();
    const left = cluster.members.find((m) => m.clientUrl !== theLeader)!;
    const result = await defrag(
      defragEnv({
        ETCD_ENDPOINTS: cluster.endpoints.filter((e) => e !== left.clientUrl).join(","),
        DEFRAG_THRESHOLD_PERCENT: "1",
        DEFRAG_MIN_DB_SIZE_BYTES: "0",
      }),
    );
    expect(result.status).toBe(1);
    const hexId = BigInt(status(left.clientUrl).id).toString(16);
    expect(result.stderr).toContain(`member ${hexId} (${left.name}) is in the cluster but not in ETCD_ENDPOINTS`);
    expect(defragmented(result)).toEqual([]);
    expect(sizes()).toEqual(before);
  }, 60_000);
});

describe("nothing to do", () => {
  test("DEFRAG_DRY_RUN=true: reports the plan, leader last, and changes nothing", async () => {
    const before = sizes();
    const theLeader = leader();
    const result = await defrag(defragEnv({ DEFRAG_DRY_RUN: "true" }));
    expect(result.status).toBe(0);
    for (const s of statuses()) {
      const role = s.endpoint === theLeader ? "leader" : "follower";
      expect(result.stderr).toMatch(
        new RegExp(
          `member ${s.endpoint} id ${BigInt(s.id).toString(16)}: size ${s.dbSize}, in use ${s.dbSizeInUse}, ` +
            `fragmented ${fragmentation(s)}%, ${role}: defragment\\n`,
        ),
      );
    }
    expect(result.stderr).toMatch(new RegExp(`would defragment, in this order: .*${theLeader} \\(leader, last\\)\\n`));
    expect(result.stdout).toMatch(
      /^etcd-defrag: dry run: would defragment 3 of 3 members, about \d+ bytes reclaimable/,
    );
    expect(defragmented(result)).toEqual([]);
    expect(sizes()).toEqual(before);
  }, 60_000);

  test("every member below DEFRAG_MIN_DB_SIZE_BYTES: nothing is defragmented, exit 0", async () => {
    const before = sizes();
    const floor = Math.max(...Object.values(before)) + 1;
    const result = await defrag(defragEnv({ DEFRAG_MIN_DB_SIZE_BYTES: String(floor), DEFRAG_THRESHOLD_PERCENT: "1" }));
    expect(result.status).toBe(0);
    expect(result.stderr.match(/: skip \(smaller than DEFRAG_MIN_DB_SIZE_BYTES \d+\)/g)).toHaveLength(3);
    expect(result.stdout).toBe("etcd-defrag: defragmented 0 of 3 members, freed 0 bytes (nothing to do)\n");
    expect(defragmented(result)).toEqual([]);
    expect(sizes()).toEqual(before);
  }, 60_000);
});

/**
 * A directory with an `etcdctl` that runs `onDefrag` (bash) for every `defrag` call and the real
 * etcdctl for everything else; put it first on the script's PATH.
 */
function etcdctlWrapper(name: string, onDefrag: string[]): string {
  const bin = path.join(tmp, name);
  fs.mkdirSync(bin, { recursive: true });
  fs.writeFileSync(
    path.join(bin, "etcdctl"),
    [
      "#!/bin/bash",
      'if [[ " $* " == *" defrag "* ]]; then',
      ...onDefrag.map((l) => `  ${l}`),
      "fi",
      `exec ${etcdctlBinary} "$@"`,
      "",
    ].join("\n"),
    { mode: 0o755 },
  );
  return bin;
}

describe("defragmentation", () => {
  test("defragments every fragmented member one at a time, the leader last, the cluster healthy throughout", async () => {
    const before = statuses();
    for (const s of before) {
      expect([s.endpoint, s.dbSize > 40 * 1024 * 1024, fragmentation(s) >= 50]).toEqual([s.endpoint, true, true]);
    }
    // The leader first in ETCD_ENDPOINTS: a script that went in list order would fail here.
    const firstLeader = leader();
    const followers = cluster.endpoints.filter((e) => e !== firstLeader);
    const order = [firstLeader, ...followers];
    const [follower1, follower2] = followers;
    const hexOf = (endpoint: string) => BigInt(before.find((s) => s.endpoint === endpoint)!.id).toString(16);

    // While the script pauses after its first member, the leadership moves to the second
    // follower: the script must read the leader again and keep that one for last.
    let movedTo = "";
    let leaderAfterMove = "";
    const mover = (async () => {
      const initial = before.find((s) => s.endpoint === follower1)!.dbSize;
      await waitUntil(`the defrag of ${follower1}`, 90_000, async () => status(follower1).dbSize < initial / 2);
      const moved = cluster.etcdctl(["--command-timeout=10s", "move-leader", hexOf(follower2)], [firstLeader]);
      if (moved.status !== 0) throw new Error(`move-leader failed: ${moved.stderr}`);
      movedTo = follower2;
      await waitUntil("the new leader", 10_000, async () => leader() === follower2);
      leaderAfterMove = leader();
    })();

    // Every defrag call logs when it starts and ends: the windows must not overlap.
    const windows = path.join(tmp, "defrag-windows.log");
    const timing = etcdctlWrapper("timing-bin", [
      'printf \'start %s %s\\n\' "$(date +%s.%N)" "$*" >>"$DEFRAG_WINDOWS"',
      `${etcdctlBinary} "$@"; status=$?`,
      'printf \'end %s %s\\n\' "$(date +%s.%N)" "$*" >>"$DEFRAG_WINDOWS"',
      'exit "$status"',
    ]);
    const poller = new Poller(cluster.endpoints);
    const started = Date.now();
    let result: ScriptResult;
    try {
      result = await defrag(
        defragEnv({
          ETCD_ENDPOINTS: order.join(","),
          DEFRAG_PAUSE_SECONDS: "4",
          PATH: `${timing}:/usr/bin:/bin`,
          DEFRAG_WINDOWS: windows,
        }),
      );
    } finally {
      await poller.stop();
    }
    await mover;
    const seconds = (Date.now() - started) / 1000;
    if (result.status !== 0) throw new Error(`etcd-defrag.sh failed (${result.status}):\n${result.stderr}`);

    // Order: the first follower, then the old leader (a follower by then), then the member that
    // was leader when its turn came, last.
    expect(movedTo).toBe(follower2);
    expect(leaderAfterMove).toBe(follower2);
    expect(defragmented(result)).toEqual([follower1, firstLeader, follower2]);
    expect(result.stderr).toContain(`the leader moved from ${firstLeader} to ${follower2}`);
    expect(result.stderr).toMatch(new RegExp(`defragmenting ${follower2} \\(leader, `));
    expect(leader()).toBe(follower2);

    // Each member's file really shrank, read here with etcdctl.
    const after = statuses();
    let freed = 0;
    for (const s of after) {
      const old = before.find((b) => b.endpoint === s.endpoint)!;
      expect([s.endpoint, s.dbSize < old.dbSize / 4]).toEqual([s.endpoint, true]);
      expect(result.stderr).toContain(`defragmented ${s.endpoint}: ${old.dbSize} -> ${s.dbSize} bytes`);
      freed += old.dbSize - s.dbSize;
    }
    expect(result.stdout).toBe(`etcd-defrag: defragmented 3 of 3 members, freed ${freed} bytes\n`);

    // One member at a time: each defrag call ended before the next began, one per member.
    const events = fs
      .readFileSync(windows, "utf8")
      .trim()
      .split("\n")
      .map((line) => line.split(" ").slice(0, 2));
    expect(events.map(([kind]) => kind)).toEqual(["start", "end", "start", "end", "start", "end"]);
    const times = events.map(([, t]) => Number(t));
    for (let i = 1; i < times.length; i++) expect(times[i]).toBeGreaterThanOrEqual(times[i - 1]);
    // The cluster answered quorum reads all along. (The poller rarely catches a member busy: a
    // defrag of this size takes well under a second, so the windows above are the proof.)
    expect(poller.ticks).toBeGreaterThan(5);
    expect(poller.clusterFailures).toEqual([]);
    expect(poller.overlaps).toBe(0);
    await expectDataIntact();
    if (process.env.ETCD_DEFRAG_TEST_SHOW) process.stdout.write(result.stderr);
    process.stdout.write(
      `etcd-defrag: ${seconds.toFixed(1)} s for 3 members, ${poller.ticks} poller ticks, member read failures ` +
        `${JSON.stringify(Object.fromEntries(poller.memberFailures))}\n`,
    );
  }, 150_000);

  test("below the threshold after the defrag: nothing is defragmented, exit 0", async () => {
    const before = statuses();
    const threshold = Math.max(...before.map(fragmentation)) + 1;
    expect(threshold).toBeLessThanOrEqual(99);
    const result = await defrag(
      defragEnv({ DEFRAG_THRESHOLD_PERCENT: String(threshold), DEFRAG_MIN_DB_SIZE_BYTES: "0" }),
    );
    expect(result.status).toBe(0);
    expect(
      result.stderr.match(new RegExp(`: skip \\(below DEFRAG_THRESHOLD_PERCENT ${threshold}%\\)`, "g")),
    ).toHaveLength(3);
    expect(result.stdout).toBe("etcd-defrag: defragmented 0 of 3 members, freed 0 bytes (nothing to do)\n");
    expect(defragmented(result)).toEqual([]);
    expect(sizes()).toEqual(Object.fromEntries(before.map((s) => [s.endpoint, s.dbSize])));
    await expectDataIntact();
  }, 60_000);
});

describe("a failed defrag", () => {
  test("stops the run with exit 1 naming the member; the remaining members are not touched", async () => {
    // etcdctl on PATH is a wrapper that logs every call and fails every defrag; the rest is
    // the real etcdctl. After the defrag above each member still has a few free pages, so
    // with a 1% threshold all three are selected.
    const calls = path.join(tmp, "etcdctl-calls.log");
    const bin = etcdctlWrapper("failing-bin", [
      'printf \'%s\\n\' "$*" >>"$FAKE_ETCDCTL_LOG"',
      'echo "Failed to defragment etcd member[${2}] (context deadline exceeded)" >&2',
      "exit 1",
    ]);
    const before = statuses();
    const selected = before.filter((s) => fragmentation(s) >= 1).map((s) => s.endpoint);
    expect(selected).toHaveLength(3);
    const theLeader = leader();
    const first = cluster.endpoints.find((e) => e !== theLeader)!;
    const result = await defrag(
      defragEnv({
        PATH: `${bin}:/usr/bin:/bin`,
        FAKE_ETCDCTL_LOG: calls,
        DEFRAG_THRESHOLD_PERCENT: "1",
        DEFRAG_MIN_DB_SIZE_BYTES: "0",
      }),
    );
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`error: defrag of ${first} failed: Failed to defragment etcd member[${first}]`);
    expect(result.stderr).toContain("the remaining members were not touched");
    expect(result.stdout).toBe("");
    expect(defragmented(result)).toEqual([first]);
    const defrags = fs
      .readFileSync(calls, "utf8")
      .split("\n")
      .filter((line) => / defrag$/.test(line));
    expect(defrags).toEqual([expect.stringContaining(`--endpoints ${first} `)]);
    expect(defrags[0]).toContain(`--command-timeout 60s`);
    expect(sizes()).toEqual(Object.fromEntries(before.map((s) => [s.endpoint, s.dbSize])));
    await expectDataIntact();
  }, 60_000);
});

describe("TLS", () => {
  let tlsCluster: EtcdCluster;

  afterAll(async () => {
    await tlsCluster?.cleanup().catch(() => undefined);
  });

  test("with ETCD_CACERT/ETCD_CERT/ETCD_KEY against a client-certificate cluster, key material never printed", async () => {
    tlsCluster = await EtcdCluster.create({ baseDir: tmp, tls: true });
    await tlsCluster.startAll();
    const tls = tlsCluster.tls!;
    // A little fragmentation (through etcdctl: the gateway would need the client certificate).
    for (let i = 0; i < 20; i++) {
      expect(tlsCluster.etcdctl(["put", `/junk/${i}`, "t".repeat(100_000)]).status).toBe(0);
    }
    expect(tlsCluster.etcdctl(["del", "--prefix", "/junk/"]).stdout.trim()).toBe("20");
    const rev = /"revision":(\d+)/.exec(tlsCluster.etcdctl(["get", "/none", "-w", "json"]).stdout)![1];
    expect(tlsCluster.etcdctl(["compact", "--physical", rev]).status).toBe(0);
    await waitUntil("compaction on every TLS member", 30_000, async () => {
      expect(tlsCluster.etcdctl(["put", "/marker", String(Date.now())]).status).toBe(0);
      return tlsCluster.endpoints.map((e) => status(e, tlsCluster)).every((s) => fragmentation(s) >= 50);
    });
    const before = tlsCluster.endpoints.map((e) => status(e, tlsCluster));
    const env = {
      ETCD_ENDPOINTS: tlsCluster.endpoints.join(","),
      ETCD_CACERT: tls.caCert,
      ETCD_CERT: tls.clientCert,
      ETCD_KEY: tls.clientKey,
      ETCD_DIAL_TIMEOUT: "2s",
      ETCD_COMMAND_TIMEOUT: "5",
      DEFRAG_THRESHOLD_PERCENT: "50",
      DEFRAG_MIN_DB_SIZE_BYTES: "0",
      DEFRAG_PAUSE_SECONDS: "0",
    };
    const result = await runScript(defragScript, [], env, 90_000);
    expect(result.status).toBe(0);
    expect(defragmented(result)).toHaveLength(3);
    for (const s of before) {
      expect([s.endpoint, status(s.endpoint, tlsCluster).dbSize < s.dbSize]).toEqual([s.endpoint, true]);
    }
    expect(result.stdout).toMatch(/^etcd-defrag: defragmented 3 of 3 members, freed \d+ bytes\n$/);
    const keyText = fs.readFileSync(tls.clientKey, "utf8").trim();
    const keyBody = keyText.split("\n").filter((l) => !l.startsWith("-----"));
    for (const line of keyBody) {
      expect(result.stdout + result.stderr).not.toContain(line);
    }
    // Without the client certificate the cluster refuses the script, and it says so.
    const noCert = await runScript(
      defragScript,
      [],
      { ...env, ETCD_CERT: "", ETCD_KEY: "", ETCD_DIAL_TIMEOUT: "1s", ETCD_COMMAND_TIMEOUT: "2" },
      60_000,
    );
    expect(noCert.status).toBe(1);
    expect(noCert.stderr).toContain("refusing: not every member is healthy");
  }, 120_000);
});

describe("the etcd-defrag CronJob mounts only what an etcd client needs", () => {
  // The script reads ETCD_CACERT, ETCD_CERT and ETCD_KEY and nothing else of the node (the TLS
  // test above runs it with exactly those three files); it never needs the cluster's CA keys.
  const clientFiles = {
    "etcd-ca-cert": "/etc/kubernetes/pki/etcd/ca.crt",
    "etcd-client-cert": "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
    "etcd-client-key": "/etc/kubernetes/pki/etcd/healthcheck-client.key",
  };

  test("in the real program's graph: the client certificate, its key and the etcd CA, each a read-only hostPath File", async () => {
    const run = await runStack();
    const mounts = cronJobMounts(run, "etcd-defrag-cronjob");
    expect(mounts.host).toEqual(
      Object.entries(clientFiles).map(([volume, file]) => ({
        volume,
        hostPath: file,
        type: "File",
        mountPath: file,
        readOnly: true,
        subPath: undefined,
      })),
    );
    // No directory of the node at all: not /etc/kubernetes/pki (ca.key, sa.key, front-proxy-ca.key)
    // nor /etc/kubernetes/pki/etcd (the etcd CA's key, the peer and server keys).
    expect(mounts.host.filter((h) => h.type !== "File")).toEqual([]);
    // Besides them only the script's ConfigMap and the in-memory /tmp.
    expect(mounts.other).toEqual(["script: configMap", "tmp: emptyDir"]);
    // The variables the script reads name exactly the mounted files.
    expect([mounts.env.ETCD_CACERT, mounts.env.ETCD_CERT, mounts.env.ETCD_KEY]).toEqual(Object.values(clientFiles));
  }, 60_000);
});
