/**
 * `etcd-restore.sh cluster`: the kubeadm restore orchestration, end to end on one machine.
 * Three "nodes" are directories (…/nodes/<ip>/ with etc/kubernetes/manifests and var/lib/etcd).
 * Stand-ins: `ssh` runs the command locally with RESTORE_NODE_ROOT set to that node's
 * directory, `scp` copies into it, `crictl` reports what the simulated kubelet runs, and the
 * node-side etcdutl is a wrapper around etcdctl 3.4 (node 1), one that also advertises and
 * records --bump-revision/--mark-compacted (node 2), or absent, so the script goes through a
 * stand-in `ctr -n k8s.io run` with the etcd image from etcd.yaml (node 3).
 * The simulated kubelet (in this process) starts a REAL etcd member from each node's etcd.yaml
 * (its data dir under the node directory) while the manifest is there and stops it when the
 * manifest goes; kube-apiserver.yaml starts an HTTPS server whose /readyz asks that etcd
 * member for /health. So the restored cluster really comes back, from the restored data dirs.
 *
 * What this cannot prove: real kubelet timing (it polls static pods every 20 s), real crictl,
 * ctr and etcdutl 3.6, TLS between the members; the runbook's drill on a real cluster does.
 */
import { ChildProcess, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as https from "node:https";
import * as os from "node:os";
import * as path from "node:path";
import {
  AgeKey,
  EtcdCluster,
  etcdBinary,
  freePorts,
  makeAgeKey,
  makeSigningKey,
  requireBackupTools,
  runScript,
  ScriptResult,
  jobsDir,
  opsDir,
  waitUntil,
} from "./support/etcdCluster";
import { S3Server, startS3Server } from "./support/s3Server";
import { expectNoSecrets } from "./support/secrets";
import { requireTool } from "./support/tools";

const backupScript = path.join(jobsDir, "etcd-backup.sh");
const restoreScript = path.join(opsDir, "etcd-restore.sh");
const etcdImage = "registry.k8s.io/etcd:3.6.4-0";
const ips = ["10.0.0.1", "10.0.0.2", "10.0.0.3"];

const fakeSsh = `#!/bin/bash
# fake ssh [options] USER@HOST COMMAND: runs COMMAND here, as node HOST.
while [[ $# -gt 0 ]]; do case "$1" in -o | -i | -p | -l) shift 2 ;; -*) shift ;; *) break ;; esac; done
host="\${1#*@}"
shift
command="$*"
root="$FAKE_NODES/$host"
[[ -d "$root" ]] || { echo "ssh: connect to host $host port 22: No route to host" >&2; exit 255; }
op="\${command#*node }"
printf '%s %s %s\\n' "$(date +%s%N)" "$host" "$op" >>"$FAKE_LOG"
if [[ ",\${FAKE_FAIL:-}," == *",$host:\${op%% *},"* ]]; then echo "simulated failure of \${op%% *} on $host" >&2; exit 1; fi
export RESTORE_NODE_ROOT="$root" PATH="$root/bin:$FAKE_BIN:/usr/bin:/bin"
exec bash -c "$command"
`;

const fakeScp = `#!/bin/bash
# fake scp [options] FILE USER@HOST:PATH: copies FILE into node HOST's directory.
while [[ $# -gt 0 ]]; do case "$1" in -o | -i | -P) shift 2 ;; -*) shift ;; *) break ;; esac; done
dest="$2"
host="\${dest%%:*}"
host="\${host#*@}"
printf '%s %s scp %s\\n' "$(date +%s%N)" "$host" "\${dest#*:}" >>"$FAKE_LOG"
cp -- "$1" "$FAKE_NODES/$host\${dest#*:}"
`;

const fakeCrictl = `#!/bin/bash
# fake crictl ps --quiet --state running --name ^NAME$: what the simulated kubelet runs.
[[ "$1" == ps ]] || { echo "fake crictl: unexpected $*" >&2; exit 99; }
name=""
while [[ $# -gt 0 ]]; do if [[ "$1" == --name ]]; then name="$2"; fi; shift; done
name="\${name#^}"
name="\${name%\\$}"
if [[ -f "$RESTORE_NODE_ROOT/run/sim/$name.running" ]]; then echo "sim-$name"; fi
`;

// Node 1: etcdutl is etcdctl 3.4's restore (no bump flags).
const etcdutlPlain = `#!/bin/bash
exec /usr/bin/etcdctl "$@"
`;
// Node 2: an etcdutl that has --bump-revision/--mark-compacted (records them, then restores).
const etcdutlBump = `#!/bin/bash
if [[ "$*" == "snapshot restore --help" ]]; then
  /usr/bin/etcdctl snapshot restore --help 2>&1
  echo "      --bump-revision=0   How much to increase the latest revision after restore"
  echo "      --mark-compacted[=false]   Mark the latest revision after restore as the point of scheduled compaction"
  exit 0
fi
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bump-revision) echo "$2" >"$RESTORE_NODE_ROOT/bump-revision"; shift 2 ;;
    --mark-compacted) touch "$RESTORE_NODE_ROOT/mark-compacted"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
exec /usr/bin/etcdctl "\${args[@]}"
`;
// Node 3: no etcdutl; ctr runs it from the etcd image.
const fakeCtr = `#!/bin/bash
printf '%s\\n' "$*" >>"$RESTORE_NODE_ROOT/ctr.calls"
[[ "$1 $2 $3 $4 $5 $6 $7" == "-n k8s.io run --rm --net-host --mount type=bind,src=/var/lib,dst=/var/lib,options=rbind:rw" ]] ||
  { echo "fake ctr: unexpected $*" >&2; exit 99; }
[[ "$8" == "${etcdImage}" && "\${10}" == etcdutl ]] || { echo "fake ctr: unexpected $*" >&2; exit 99; }
shift 10
exec /usr/bin/etcdctl "$@"
`;

/** A node's kubelet, simulated: static pods for etcd and kube-apiserver from the manifests. */
class SimulatedKubelet {
  etcd?: ChildProcess;
  apiserver?: https.Server;
  constructor(
    readonly root: string,
    private readonly tls: { key: Buffer; cert: Buffer },
  ) {
    fs.mkdirSync(path.join(root, "run", "sim"), { recursive: true });
  }
  private manifest(name: string): string | undefined {
    const file = path.join(this.root, "etc", "kubernetes", "manifests", `${name}.yaml`);
    return fs.existsSync(file) ? fs.readFileSync(file, "utf8") : undefined;
  }
  private running(name: string, on: boolean) {
    const file = path.join(this.root, "run", "sim", `${name}.running`);
    if (on) fs.writeFileSync(file, "");
    else fs.rmSync(file, { force: true });
  }
  tick() {
    const etcd = this.manifest("etcd");
    if (etcd && !this.etcd) {
      const args = [...etcd.matchAll(/^\s*- (--[a-z-]+=.*)$/gm)].map((m) =>
        m[1].startsWith("--data-dir=") ? `--data-dir=${this.root}${m[1].slice("--data-dir=".length)}` : m[1],
      );
      const log = fs.openSync(path.join(this.root, "etcd.log"), "a");
      const child = spawn(etcdBinary, args, { stdio: ["ignore", log, log] });
      fs.closeSync(log);
      this.etcd = child;
      this.running("etcd", true);
      child.on("exit", () => {
        this.running("etcd", false);
        if (this.etcd === child) this.etcd = undefined;
      });
    } else if (!etcd && this.etcd && this.etcd.exitCode === null && !this.etcd.killed) {
      this.etcd.kill("SIGTERM");
    }
    const apiserver = this.manifest("kube-apiserver");
    if (apiserver && !this.apiserver) {
      const port = Number(/--secure-port=(\d+)/.exec(apiserver)![1]);
      const etcdUrl = /--etcd-servers=(\S+)/.exec(apiserver)![1];
      const server = https.createServer(this.tls, (req, res) => {
        fetch(`${etcdUrl}/health`, { signal: AbortSignal.timeout(2000) })
          .then((r) => r.json() as Promise<{ health: string }>)
          .then((h) => {
            res
              .writeHead(h.health === "true" && req.url === "/readyz" ? 200 : 500)
              .end(h.health === "true" ? "ok" : "etcd");
          })
          .catch(() => res.writeHead(500).end("[-]etcd failed"));
      });
      server.listen(port, "127.0.0.1");
      this.apiserver = server;
      this.running("kube-apiserver", true);
    } else if (!apiserver && this.apiserver) {
      const server = this.apiserver;
      this.apiserver = undefined;
      server.closeAllConnections();
      server.close(() => this.running("kube-apiserver", false));
    }
  }
  async stop() {
    const child = this.etcd;
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGKILL");
      await exited;
    }
    this.apiserver?.closeAllConnections();
    this.apiserver?.close();
  }
}

let tmp: string;
let s3: S3Server;
let ageKey: AgeKey;
let cluster: EtcdCluster;
const kubelets: SimulatedKubelet[] = [];
let ticker: NodeJS.Timeout | undefined;
let apiPorts: number[];
let nodesDir: string;
let fakeBin: string;
let fakeLog: string;
let secrets: string[];
let backupKey: string;

const drillEntries: [string, string][] = [...Array(2000)].map((_, i) => [`/registry/restore/k${i}`, `v${i}`]);

function nodeRoot(i: number) {
  return path.join(nodesDir, ips[i]);
}

beforeAll(async () => {
  requireBackupTools();
  const openssl = requireTool("/usr/bin/openssl", "openssl");
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "etcd-restore-test-"));
  ageKey = makeAgeKey(tmp, "operator");
  s3 = await startS3Server();
  secrets = [s3.accessKeyId, s3.secretAccessKey, ageKey.secret];
  const keyFile = path.join(tmp, "tls.key");
  const certFile = path.join(tmp, "tls.crt");
  const tlsGen = spawnSync(openssl, [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    keyFile,
    "-out",
    certFile,
    "-days",
    "1",
    "-subj",
    "/CN=127.0.0.1",
  ]);
  if (tlsGen.status !== 0) throw new Error(`openssl failed: ${tlsGen.stderr}`);
  const tls = { key: fs.readFileSync(keyFile), cert: fs.readFileSync(certFile) };

  fakeBin = path.join(tmp, "bin");
  fs.mkdirSync(fakeBin);
  fs.writeFileSync(path.join(fakeBin, "ssh"), fakeSsh, { mode: 0o755 });
  fs.writeFileSync(path.join(fakeBin, "scp"), fakeScp, { mode: 0o755 });
  fs.writeFileSync(path.join(fakeBin, "crictl"), fakeCrictl, { mode: 0o755 });
  fakeLog = path.join(tmp, "fake.log");

  cluster = await EtcdCluster.create({ baseDir: tmp, token: "kubeadm-original" });
  apiPorts = await freePorts(3);
  nodesDir = path.join(tmp, "nodes");
  cluster.members.forEach((member, i) => {
    const root = nodeRoot(i);
    const manifests = path.join(root, "etc", "kubernetes", "manifests");
    fs.mkdirSync(manifests, { recursive: true });
    fs.mkdirSync(path.join(root, "var", "lib"), { recursive: true });
    fs.mkdirSync(path.join(root, "bin"));
    const flags = cluster.args(member).map((a) => (a.startsWith("--data-dir=") ? "--data-dir=/var/lib/etcd" : a));
    fs.writeFileSync(
      path.join(manifests, "etcd.yaml"),
      `apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n  namespace: kube-system\nspec:\n  containers:\n  - command:\n    - etcd\n${flags.map((f) => `    - ${f}\n`).join("")}    image: ${etcdImage}\n    name: etcd\n`,
    );
    fs.writeFileSync(
      path.join(manifests, "kube-apiserver.yaml"),
      `apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --secure-port=${apiPorts[i]}\n    - --etcd-servers=${member.clientUrl}\n    image: registry.k8s.io/kube-apiserver:v1.34.1\n`,
    );
    for (const c of ["kube-controller-manager", "kube-scheduler"]) {
      fs.writeFileSync(path.join(manifests, `${c}.yaml`), `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${c}\n`);
    }
    if (i === 0) fs.writeFileSync(path.join(root, "bin", "etcdutl"), etcdutlPlain, { mode: 0o755 });
    if (i === 1) fs.writeFileSync(path.join(root, "bin", "etcdutl"), etcdutlBump, { mode: 0o755 });
    if (i === 2) fs.writeFileSync(path.join(root, "bin", "ctr"), fakeCtr, { mode: 0o755 });
    kubelets.push(new SimulatedKubelet(root, tls));
  });
  ticker = setInterval(() => kubelets.forEach((k) => k.tick()), 200);
  await waitUntil("the original cluster", 60_000, async () => {
    return cluster.etcdctl(["--dial-timeout=2s", "endpoint", "health", "--cluster"]).status === 0;
  });

  await cluster.putMany(drillEntries);
  const backup = await runScript(backupScript, [], {
    ...s3.env,
    ETCD_ENDPOINTS: cluster.endpoints.join(","),
    S3_ENDPOINT: s3.endpoint,
    S3_BUCKET: s3.bucket,
    S3_PREFIX: "prod",
    S3_REGION: s3.region,
    BACKUP_AGE_RECIPIENTS: ageKey.recipient,
    BACKUP_SIGNING_KEY_FILE: makeSigningKey(tmp, "backup-signing").file,
    PKI_DIR: path.join(tmp, "no-pki"),
  });
  if (backup.status !== 0) throw new Error(`backup failed: ${backup.stderr}`);
  backupKey = (JSON.parse(backup.stdout) as { key: string }).key;
  // Written after the backup: a restore from the snapshot must not have them.
  await cluster.putMany([...Array(100)].map((_, i) => [`/registry/after/k${i}`, "late"]));
}, 180_000);

afterAll(async () => {
  if (ticker) clearInterval(ticker);
  await Promise.all(kubelets.map((k) => k.stop().catch(() => undefined)));
  await s3?.stop().catch(() => undefined);
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

async function restore(
  logFile: string,
  extraEnv: NodeJS.ProcessEnv = {},
  extraArgs: string[] = [],
): Promise<ScriptResult> {
  fs.writeFileSync(fakeLog, "");
  const result = await runScript(
    restoreScript,
    [
      "cluster",
      "--node",
      `${cluster.members[0].name}=${ips[0]}`,
      "--node",
      `${cluster.members[1].name}=${ips[1]},${cluster.members[2].name}=${ips[2]}`,
      "--log",
      logFile,
      "--timeout",
      "60",
      ...extraArgs,
    ],
    {
      ...s3.env,
      PATH: `${fakeBin}:/usr/bin:/bin`,
      S3_ENDPOINT: s3.endpoint,
      S3_BUCKET: s3.bucket,
      S3_PREFIX: "prod",
      S3_REGION: s3.region,
      BACKUP_AGE_IDENTITY_FILE: ageKey.file,
      RESTORE_SSH: path.join(fakeBin, "ssh"),
      RESTORE_SCP: path.join(fakeBin, "scp"),
      FAKE_NODES: nodesDir,
      FAKE_BIN: fakeBin,
      FAKE_LOG: fakeLog,
      ...extraEnv,
    },
    240_000,
    tmp,
  );
  expectNoSecrets(result, secrets);
  return result;
}

/** The fake ssh's record: [host, operation words (shell quoting undone)] in call order. */
function calls(): [string, string[]][] {
  return fs
    .readFileSync(fakeLog, "utf8")
    .trim()
    .split("\n")
    .map((line) => line.replace(/\\(.)/g, "$1").split(" "))
    .map((words) => [words[1], words.slice(2)]);
}
const indexes = (list: [string, string[]][], match: (op: string[]) => boolean) =>
  list.flatMap(([, op], i) => (match(op) ? [i] : []));

interface Entry {
  time: string;
  step: string;
  node: string;
  status: string;
  detail: string;
}
const readLog = (file: string) =>
  fs
    .readFileSync(file, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Entry);

describe("etcd-restore.sh cluster", () => {
  test("restores every member from one snapshot in the safe order, and the cluster comes back", async () => {
    const logFile = path.join(tmp, "restore.jsonl");
    const result = await restore(logFile);
    if (result.status !== 0) throw new Error(`restore failed:\n${result.stderr}`);
    const summary = JSON.parse(result.stdout) as { key: string; clusterToken: string; stamp: string };
    expect(summary.key).toBe(backupKey);
    expect(summary.clusterToken).not.toBe("kubeadm-original");

    // Order, from the stand-in ssh's own record.
    const list = calls();
    const stops = indexes(list, (op) => op[0] === "stop");
    const restores = indexes(list, (op) => op[0] === "restore");
    const etcdStarts = indexes(list, (op) => op[0] === "start" && op[2] === "etcd");
    const apiStarts = indexes(list, (op) => op[0] === "start" && op[2] === "kube-apiserver");
    const apiStops = indexes(list, (op) => op[0] === "stop" && op[2] === "kube-apiserver");
    expect(stops).toHaveLength(6);
    expect(apiStops).toHaveLength(3);
    expect(restores).toHaveLength(3);
    expect(etcdStarts).toHaveLength(3);
    expect(apiStarts).toHaveLength(3);
    expect(new Set(restores.map((i) => list[i][0]))).toEqual(new Set(ips));
    expect(Math.max(...stops)).toBeLessThan(Math.min(...restores));
    expect(Math.max(...apiStops)).toBeLessThan(
      Math.min(...indexes(list, (op) => op[0] === "stop" && op[2] === "etcd")),
    );
    expect(Math.max(...restores)).toBeLessThan(Math.min(...etcdStarts));
    expect(Math.max(...etcdStarts)).toBeLessThan(Math.min(...apiStarts));
    // Every restore used the same snapshot path, the same membership and the same new token.
    const restoreArgs = restores.map((i) => list[i][1].slice(1));
    // [snapshot, name, data dir, initial cluster, peer URL, token]
    for (const args of restoreArgs) {
      expect(args[0]).toBe(restoreArgs[0][0]);
      expect(args[3]).toBe(cluster.initialCluster);
      expect(args[5]).toBe(restoreArgs[0][5]);
    }
    expect(restoreArgs[0]).toContain(summary.clusterToken);
    // Each copy was checked on its node.
    expect(indexes(list, (op) => op[0] === "verify")).toHaveLength(3);

    // Old data dirs kept; the snapshot copies removed; manifests all back.
    for (let i = 0; i < 3; i++) {
      const lib = fs.readdirSync(path.join(nodeRoot(i), "var", "lib"));
      expect(lib.filter((d) => d.startsWith("etcd.pre-restore-"))).toHaveLength(1);
      expect(fs.readdirSync(path.join(nodeRoot(i), "var", "lib", "etcd-restore"))).toEqual([]);
      expect(fs.readdirSync(path.join(nodeRoot(i), "etc", "kubernetes", "manifests")).sort()).toEqual([
        "etcd.yaml",
        "kube-apiserver.yaml",
        "kube-controller-manager.yaml",
        "kube-scheduler.yaml",
      ]);
    }
    // Node 2's etcdutl offered the bump flags and got them; node 3 went through ctr and the image.
    expect(fs.readFileSync(path.join(nodeRoot(1), "bump-revision"), "utf8").trim()).toBe("1000000000");
    expect(fs.existsSync(path.join(nodeRoot(1), "mark-compacted"))).toBe(true);
    expect(fs.existsSync(path.join(nodeRoot(0), "bump-revision"))).toBe(false);
    expect(fs.readFileSync(path.join(nodeRoot(2), "ctr.calls"), "utf8")).toContain(`${etcdImage} etcd-restore-`);

    // The restored cluster: 3 healthy members, the snapshot's keys, none written after it.
    await waitUntil("restored cluster health", 60_000, async () => {
      return cluster.etcdctl(["--dial-timeout=2s", "endpoint", "health", "--cluster"]).status === 0;
    });
    expect(cluster.memberCount()).toBe(3);
    for (const endpoint of cluster.endpoints) {
      const values = await cluster.getPrefix("/registry/restore/", endpoint);
      expect(values.size).toBe(drillEntries.length);
      for (const [k, v] of drillEntries) expect(values.get(k)).toBe(v);
      expect((await cluster.getPrefix("/registry/after/", endpoint)).size).toBe(0);
    }

    // The change register: every step, every node, timestamps; uploaded next to the backups.
    const entries = readLog(logFile);
    for (const e of entries) expect(e.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    const ok = (step: string) => entries.filter((e) => e.step === step && e.status === "ok").map((e) => e.node);
    for (const step of ["inspect", "copy", "stop-apiserver", "stop-etcd", "wait-stopped", "restore"]) {
      expect(new Set(ok(step))).toEqual(new Set(cluster.members.map((m) => m.name)));
    }
    for (const step of ["start-etcd", "start-apiserver", "readyz"]) {
      expect(new Set(ok(step))).toEqual(new Set(cluster.members.map((m) => m.name)));
    }
    expect(ok("fetch")).toContain("local");
    expect(ok("etcd-healthy")).toHaveLength(1);
    expect(entries[entries.length - 1]).toMatchObject({ step: "done", status: "ok" });
    const stepOrder = entries.filter((e) => e.status === "ok").map((e) => e.step);
    expect(stepOrder.lastIndexOf("restore")).toBeLessThan(stepOrder.indexOf("start-etcd"));
    expect(s3.get(`prod/restore-log/${summary.stamp}.jsonl`).toString()).toBe(fs.readFileSync(logFile, "utf8"));
  });

  test("a failure on one node stops the chain, names the node and step, and the register is still uploaded", async () => {
    const logFile = path.join(tmp, "restore-failed.jsonl");
    const result = await restore(logFile, { FAKE_FAIL: `${ips[1]}:restore` });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`step restore failed on node ${cluster.members[1].name}`);
    const list = calls();
    // Node 1 was restored, node 2 failed, node 3 never restored, nothing was started again.
    expect(indexes(list, (op) => op[0] === "restore").map((i) => list[i][0])).toEqual([ips[0], ips[1]]);
    expect(indexes(list, (op) => op[0] === "start")).toEqual([]);
    const entries = readLog(logFile);
    expect(entries[entries.length - 1]).toMatchObject({
      step: "restore",
      node: cluster.members[1].name,
      status: "failed",
    });
    expect(entries[entries.length - 1].detail).toContain("simulated failure of restore");
    const uploaded = s3.list("prod/restore-log/");
    const contents = uploaded.map((k) => s3.get(k).toString());
    expect(contents).toContain(fs.readFileSync(logFile, "utf8"));

    // The same command again finishes the job: manifests are found where the failed run left them.
    // With --node-etcdutl every node runs that command (node 3 no longer goes through ctr).
    const ctrCalls = fs.readFileSync(path.join(nodeRoot(2), "ctr.calls"), "utf8");
    const rerun = await restore(path.join(tmp, "restore-rerun.jsonl"), {}, ["--node-etcdutl", "/usr/bin/etcdctl"]);
    if (rerun.status !== 0) throw new Error(`rerun failed:\n${rerun.stderr}`);
    expect(cluster.memberCount()).toBe(3);
    expect((await cluster.getPrefix("/registry/restore/", cluster.endpoints[2])).size).toBe(drillEntries.length);
    expect(fs.readFileSync(path.join(nodeRoot(2), "ctr.calls"), "utf8")).toBe(ctrCalls);
    for (let i = 0; i < 3; i++) {
      expect(fs.readdirSync(path.join(nodeRoot(i), "etc", "kubernetes")).sort()).toEqual(["manifests"]);
    }
  });
});
