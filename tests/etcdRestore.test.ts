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
 * The drill runs twice: on Debian's etcd 3.4 (the stand-ins above) and on etcd 3.5 (Debian
 * trixie's, tools/ensure-etcd35.sh), where every node's etcdutl is the real etcdutl 3.5 (two on
 * PATH behind a wrapper that records the arguments, one through the stand-in ctr).
 * The backup job signs its sidecars (BACKUP_SIGNING_KEY_FILE); the planted and altered backups of
 * the refusal tests are built from the real backup's bytes and signed here (signBackup).
 *
 * What this cannot prove: real kubelet timing (it polls static pods every 20 s), real crictl,
 * ctr and etcdutl 3.6, TLS between the members; the runbook's drill on a real cluster does.
 */
import { ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as https from "node:https";
import * as os from "node:os";
import * as path from "node:path";
import {
  AgeKey,
  EtcdCluster,
  EtcdVersion,
  freePorts,
  makeAgeKey,
  makeSigningKey,
  SigningKey,
  requireBackupTools,
  runScript,
  ScriptResult,
  jobsDir,
  opsDir,
  waitUntil,
} from "./support/etcdCluster";
import { startRgw } from "./support/rgw";
import { S3Server } from "./support/s3Server";
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
export RESTORE_NODE_ROOT="$root" PATH="$root/bin:$FAKE_BIN:$FAKE_ETCD_BIN:/usr/bin:/bin"
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

// On 3.4, node 1: etcdutl is etcdctl 3.4's restore (no bump flags).
const etcdutlPlain = (etcdctl: string) => `#!/bin/bash
exec ${etcdctl} "$@"
`;
// On 3.4, node 2: an etcdutl that has --bump-revision/--mark-compacted (records them, then
// restores with etcdctl 3.4). Its help lines are etcd 3.5's (etcdutl/etcdutl/snapshot_command.go).
const etcdutlBump = (etcdctl: string) => `#!/bin/bash
if [[ "$*" == "snapshot restore --help" ]]; then
  ${etcdctl} snapshot restore --help 2>&1
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
exec ${etcdctl} "\${args[@]}"
`;
// On 3.5, nodes 1 and 2: the real etcdutl 3.5, its arguments recorded on the way.
const etcdutlRecording = (etcdutl: string) => `#!/bin/bash
printf '%s\\n' "$*" >>"$RESTORE_NODE_ROOT/etcdutl.calls"
exec ${etcdutl} "$@"
`;
// Node 3: no etcdutl; ctr runs it from the etcd image.
const fakeCtr = (tool: string) => `#!/bin/bash
printf '%s\\n' "$*" >>"$RESTORE_NODE_ROOT/ctr.calls"
# ctr -n k8s.io images ls -q name==IMAGE: the image is there (pulled by the node's preparation).
if [[ "$1 $2 $3 $4 $5" == "-n k8s.io images ls -q" ]]; then echo "\${6#name==}"; exit 0; fi
[[ "$1 $2 $3 $4 $5 $6 $7" == "-n k8s.io run --rm --net-host --mount type=bind,src=/var/lib,dst=/var/lib,options=rbind:rw" ]] ||
  { echo "fake ctr: unexpected $*" >&2; exit 99; }
[[ "$8" == "${etcdImage}" && "\${10}" == etcdutl ]] || { echo "fake ctr: unexpected $*" >&2; exit 99; }
shift 10
printf '%s\\n' "$*" >>"$RESTORE_NODE_ROOT/etcdutl.calls"
exec ${tool} "$@"
`;

/** A node's kubelet, simulated: static pods for etcd and kube-apiserver from the manifests. */
class SimulatedKubelet {
  etcd?: ChildProcess;
  apiserver?: https.Server;
  constructor(
    readonly root: string,
    private readonly tls: { key: Buffer; cert: Buffer },
    private readonly etcdBinary: string,
  ) {
    fs.mkdirSync(path.join(root, "run", "sim"), { recursive: true });
  }
  private manifest(name: string): string | undefined {
    const file = path.join(this.root, "etc", "kubernetes", "manifests", `${name}.yaml`);
    // The script under test may move the manifest away between a check and the read (seen once
    // in a full run: ENOENT on the read after existsSync): a manifest that is gone is no pod.
    try {
      return fs.readFileSync(file, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
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
      const child = spawn(this.etcdBinary, args, { stdio: ["ignore", log, log] });
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

const drillEntries: [string, string][] = [...Array(2000)].map((_, i) => [`/registry/restore/k${i}`, `v${i}`]);

/** The object storage of the drills: a real Ceph RGW (tests/support/rgw.ts), what Hetzner runs. */
function startStorage(): Promise<S3Server> {
  return startRgw();
}

/**
 * Signs the sidecar of KEY as the backup job does (scripts/jobs/etcd-backup.sh:
 * `ssh-keygen -Y sign -f <private key> -n etcd-backup` over the exact bytes of KEY.sha256, the
 * signature at KEY.sha256.sig), for the objects the drills plant or alter themselves.
 */
function signBackup(s3: S3Server, key: string, signer: SigningKey) {
  // ssh-keygen signs only with an owner-only key file; the job copies its mounted key likewise.
  const ownerOnly = `${signer.file}.0600`;
  if (!fs.existsSync(ownerOnly)) {
    fs.copyFileSync(signer.file, ownerOnly);
    fs.chmodSync(ownerOnly, 0o600);
  }
  const r = spawnSync("/usr/bin/ssh-keygen", ["-q", "-Y", "sign", "-f", ownerOnly, "-n", "etcd-backup"], {
    input: s3.get(`${key}.sha256`),
  });
  if (r.status !== 0) throw new Error(`ssh-keygen -Y sign failed: ${r.stderr.toString()}`);
  s3.put(`${key}.sha256.sig`, r.stdout);
}

/** The sha256 sidecar line the backup job writes: "<hex>  <basename>". */
function sidecarFor(key: string, body: Buffer): string {
  return `${createHash("sha256").update(body).digest("hex")}  ${key.slice(key.lastIndexOf("/") + 1)}\n`;
}

function drill(version: EtcdVersion) {
  describe(`etcd ${version}`, () => {
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
    let pkiKey: string;
    let signer: SigningKey;
    let stranger: SigningKey;
    let wrongAge: AgeKey;
    let etcdBin: string;
    let nodeEtcdctlDir: string;
    let revisionAtBackup: number;

    function nodeRoot(i: number) {
      return path.join(nodesDir, ips[i]);
    }

    /**
     * The cluster is the snapshot again: 3 healthy members, every key and value of the backup on
     * each, none under `gone` (written after the backup).
     */
    async function expectRestored(gone: string): Promise<void> {
      await waitUntil("restored cluster health", 60_000, async () => {
        return cluster.etcdctl(["--dial-timeout=2s", "endpoint", "health", "--cluster"]).status === 0;
      });
      expect(cluster.memberCount()).toBe(3);
      for (const endpoint of cluster.endpoints) {
        const values = await cluster.getPrefix("/registry/restore/", endpoint);
        expect(values.size).toBe(drillEntries.length);
        for (const [k, v] of drillEntries) expect(values.get(k)).toBe(v);
        expect((await cluster.getPrefix(gone, endpoint)).size).toBe(0);
      }
    }

    /** One run of the backup job against the drill's cluster and storage, under PREFIX; must succeed. */
    async function backUp(prefix: string, pkiDir: string): Promise<ScriptResult> {
      const backup = await runScript(backupScript, [], {
        ...s3.env,
        PATH: `${etcdBin}:/usr/bin:/bin`,
        ETCD_ENDPOINTS: cluster.endpoints.join(","),
        S3_ENDPOINT: s3.endpoint,
        S3_BUCKET: s3.bucket,
        S3_PREFIX: prefix,
        S3_REGION: s3.region,
        BACKUP_AGE_RECIPIENTS: ageKey.recipient,
        BACKUP_SIGNING_KEY_FILE: signer.file,
        PKI_DIR: pkiDir,
      });
      if (backup.status !== 0) throw new Error(`backup failed: ${backup.stderr}`);
      return backup;
    }

    beforeAll(async () => {
      requireBackupTools();
      const openssl = requireTool("/usr/bin/openssl", "openssl");
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), "etcd-restore-test-"));
      ageKey = makeAgeKey(tmp, "operator");
      wrongAge = makeAgeKey(tmp, "stranger");
      signer = makeSigningKey(tmp, "backup-signer");
      stranger = makeSigningKey(tmp, "stranger");
      s3 = await startStorage();
      secrets = [s3.accessKeyId, s3.secretAccessKey, ageKey.secret, wrongAge.secret];
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

      cluster = await EtcdCluster.create({ baseDir: tmp, token: "kubeadm-original", version });
      etcdBin = cluster.binaries.binDir;
      const { etcdctl, etcdutl } = cluster.binaries;
      // The nodes' PATH gets this generation's etcdctl only: etcdutl on a node is what each node's
      // setup below says (3.5's bin directory also holds etcdutl, which would bypass ctr).
      nodeEtcdctlDir = path.join(tmp, "node-etcdctl");
      fs.mkdirSync(nodeEtcdctlDir);
      fs.symlinkSync(etcdctl, path.join(nodeEtcdctlDir, "etcdctl"));
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
        const nodeEtcdutl = etcdutl
          ? [etcdutlRecording(etcdutl), etcdutlRecording(etcdutl)]
          : [etcdutlPlain(etcdctl), etcdutlBump(etcdctl)];
        if (i < 2) fs.writeFileSync(path.join(root, "bin", "etcdutl"), nodeEtcdutl[i], { mode: 0o755 });
        if (i === 2) fs.writeFileSync(path.join(root, "bin", "ctr"), fakeCtr(etcdutl ?? etcdctl), { mode: 0o755 });
        kubelets.push(new SimulatedKubelet(root, tls, cluster.binaries.etcd));
      });
      ticker = setInterval(() => kubelets.forEach((k) => k.tick()), 200);
      await waitUntil("the original cluster", 60_000, async () => {
        return cluster.etcdctl(["--dial-timeout=2s", "endpoint", "health", "--cluster"]).status === 0;
      });

      await cluster.putMany(drillEntries);
      const pkiDir = path.join(tmp, "pki");
      fs.mkdirSync(path.join(pkiDir, "etcd"), { recursive: true });
      fs.writeFileSync(path.join(pkiDir, "etcd", "ca.crt"), "-----BEGIN CERTIFICATE-----\ndrill\n");
      const backup = await backUp("prod", pkiDir);
      ({ key: backupKey, pkiKey } = JSON.parse(backup.stdout) as { key: string; pkiKey: string });
      revisionAtBackup = Number(/-r(\d+)\.db/.exec(backupKey)![1]);
      // Written after the backup: a restore from the snapshot must not have them.
      await cluster.putMany([...Array(100)].map((_, i) => [`/registry/after/k${i}`, "late"]));
    }, 600_000);

    afterAll(async () => {
      if (ticker) clearInterval(ticker);
      await Promise.all(kubelets.map((k) => k.stop().catch(() => undefined)));
      await s3?.stop().catch(() => undefined);
      if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    });

    /** The restore script's environment: storage, identity, signer, the stand-ins. */
    function restoreEnv(extraEnv: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
      return {
        ...s3.env,
        PATH: `${fakeBin}:${etcdBin}:/usr/bin:/bin`,
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
        FAKE_ETCD_BIN: nodeEtcdctlDir,
        BACKUP_SIGNING_PUBLIC_KEY: signer.publicKey,
        ...extraEnv,
      };
    }

    /** `etcd-restore.sh ARGS` (not cluster), with restoreEnv. */
    async function runRestore(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<ScriptResult> {
      const result = await runScript(restoreScript, args, restoreEnv(extraEnv), 120_000, tmp);
      expectNoSecrets(result, secrets);
      return result;
    }

    let localSnapshot: string | undefined;
    /** The newest complete backup, fetched (and checked) once, for the tests that pass --snapshot. */
    async function fetchedSnapshot(): Promise<string> {
      if (localSnapshot) return localSnapshot;
      const file = path.join(tmp, "fetched.db");
      const fetched = await runRestore(["fetch", "--out", file]);
      if (fetched.status !== 0) throw new Error(`fetch failed: ${fetched.stderr}`);
      localSnapshot = file;
      return file;
    }

    /** The --node arguments of every member (the first alone, then the others comma-separated). */
    const allNodes = () => [
      "--node",
      `${cluster.members[0].name}=${ips[0]}`,
      "--node",
      `${cluster.members[1].name}=${ips[1]},${cluster.members[2].name}=${ips[2]}`,
    ];

    async function restore(
      logFile: string,
      extraEnv: NodeJS.ProcessEnv = {},
      extraArgs: string[] = [],
      nodes: string[] = allNodes(),
    ): Promise<ScriptResult> {
      fs.writeFileSync(fakeLog, "");
      const result = await runScript(
        restoreScript,
        ["cluster", ...nodes, "--log", logFile, "--timeout", "60", ...extraArgs],
        restoreEnv(extraEnv),
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
        .split("\n")
        .filter((line) => line !== "")
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
        // Node 3 went through ctr and the image.
        expect(fs.readFileSync(path.join(nodeRoot(2), "ctr.calls"), "utf8")).toContain(`${etcdImage} etcd-restore-`);
        if (version === "3.4") {
          // Node 2's stand-in etcdutl offered the bump flags and got them; etcdctl 3.4 has none.
          expect(fs.readFileSync(path.join(nodeRoot(1), "bump-revision"), "utf8").trim()).toBe("1000000000");
          expect(fs.existsSync(path.join(nodeRoot(1), "mark-compacted"))).toBe(true);
          expect(fs.existsSync(path.join(nodeRoot(0), "bump-revision"))).toBe(false);
        } else {
          // The real etcdutl 3.5 on every node (two on PATH, one through ctr) restored with
          // --bump-revision 1000000000 --mark-compacted (etcd v3.5.16
          // etcdutl/etcdutl/snapshot_command.go: both flags, --mark-compacted required with a bump).
          for (let i = 0; i < 3; i++) {
            const restoreCalls = fs
              .readFileSync(path.join(nodeRoot(i), "etcdutl.calls"), "utf8")
              .split("\n")
              .filter((l) => l.startsWith("snapshot restore /"));
            expect(restoreCalls).toHaveLength(1);
            expect(restoreCalls[0]).toContain("--bump-revision 1000000000 --mark-compacted");
          }
        }

        // The restored cluster: 3 healthy members, the snapshot's keys, none written after it.
        await expectRestored("/registry/after/");
        // The revision: bumped by 1e9 past the snapshot's on 3.5 (watchers and informers see a
        // compaction instead of a revision going backwards); unchanged on 3.4's etcdctl.
        const status = cluster.etcdctl(["endpoint", "status", "-w", "json"]);
        const revision = Number(/"revision":(\d+)/.exec(status.stdout)![1]);
        if (version === "3.5") expect(revision).toBeGreaterThanOrEqual(revisionAtBackup + 1_000_000_000);
        else expect(revision).toBeLessThan(revisionAtBackup + 1_000_000_000);

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
      }, 600_000);

      test("the same restore run again on the restored cluster restores again: writes since are gone, every member back", async () => {
        await cluster.putMany([["/registry/after-restore/k", "written after the first restore"]]);
        const result = await restore(path.join(tmp, "restore-twice.jsonl"));
        if (result.status !== 0) throw new Error(`second restore failed:\n${result.stderr}`);
        await expectRestored("/registry/after-restore/");
        // Each run kept the data dir it replaced: two per node now.
        for (let i = 0; i < 3; i++) {
          const lib = fs.readdirSync(path.join(nodeRoot(i), "var", "lib"));
          expect(lib.filter((d) => d.startsWith("etcd.pre-restore-"))).toHaveLength(2);
        }
      }, 600_000);

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
      }, 600_000);
    });

    describe("etcd-restore.sh seed (restore into new servers)", () => {
      const seedIp = "10.0.0.9";
      const seedName = "prod-nbg1-cp-1";
      // The files etcd-restore.sh SHARED_PKI installs; the backup also holds a node's own ones.
      const shared = [
        "ca.crt",
        "ca.key",
        "sa.key",
        "sa.pub",
        "front-proxy-ca.crt",
        "front-proxy-ca.key",
        "etcd/ca.crt",
        "etcd/ca.key",
      ];
      let seedKey: string;
      let expected: Map<string, string>;
      let seedRoot: string;
      let closedPort: number;

      /** key -> value of every /registry/ key, through etcdctl at `endpoints`. */
      function contents(endpoints: string[]): Map<string, string> {
        const r = cluster.etcdctl(["get", "/registry/", "--prefix", "-w", "json"], endpoints);
        if (r.status !== 0) throw new Error(`etcdctl get failed: ${r.stderr}`);
        const kvs = (JSON.parse(r.stdout) as { kvs?: { key: string; value: string }[] }).kvs ?? [];
        return new Map(
          kvs.map((kv) => [Buffer.from(kv.key, "base64").toString(), Buffer.from(kv.value, "base64").toString()]),
        );
      }

      function freshNode(ip: string, files: Record<string, string> = {}): string {
        const root = path.join(nodesDir, ip);
        fs.mkdirSync(path.join(root, "var", "lib"), { recursive: true });
        fs.mkdirSync(path.join(root, "bin"), { recursive: true });
        for (const [file, text] of Object.entries(files)) {
          fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
          fs.writeFileSync(path.join(root, file), text);
        }
        const { etcdctl, etcdutl } = cluster.binaries;
        if (etcdutl) {
          // 3.5: the real etcdutl on the node's PATH.
          fs.writeFileSync(path.join(root, "bin", "etcdutl"), etcdutlRecording(etcdutl), { mode: 0o755 });
        } else {
          // 3.4: no etcdutl; ctr runs it from the etcd image kubeadm names. `kubeadm config images
          // list` prints one image a line (cmd/kubeadm/app/cmd/config.go, images list).
          fs.writeFileSync(path.join(root, "bin", "ctr"), fakeCtr(etcdctl), { mode: 0o755 });
          fs.writeFileSync(
            path.join(root, "bin", "kubeadm"),
            `#!/bin/bash\n[[ "$1 $2 $3 $4" == "config images list --config" ]] || exit 99\nprintf '%s\\n' registry.k8s.io/kube-apiserver:v1.34.2 registry.k8s.io/pause:3.10.1 ${etcdImage} registry.k8s.io/coredns/coredns:v1.12.1\n`,
            { mode: 0o755 },
          );
        }
        return root;
      }

      function seedArgs(ip: string, endpointUrl: string, extra: string[] = []): string[] {
        return [
          "seed",
          "--node",
          `${seedName}=${ip}`,
          "--peer-url",
          `http://127.0.0.1:${closedPort}`,
          "--endpoint-url",
          endpointUrl,
          "--init-config",
          "/etc/kubernetes/kubeadm/init.yaml",
          "--timeout",
          "120",
          "--log",
          path.join(tmp, `seed-${ip}.jsonl`),
          ...extra,
        ];
      }

      beforeAll(async () => {
        // A backup whose PKI archive holds a whole kubeadm PKI, under its own prefix.
        const pkiDir = path.join(tmp, "full-pki");
        for (const f of [...shared, "apiserver.crt", "apiserver.key", "etcd/server.crt"]) {
          fs.mkdirSync(path.dirname(path.join(pkiDir, f)), { recursive: true });
          fs.writeFileSync(path.join(pkiDir, f), `backup ${f}\n`);
        }
        const backup = await backUp("seeded", pkiDir);
        seedKey = (JSON.parse(backup.stdout) as { key: string }).key;
        expected = contents(cluster.endpoints);
        await cluster.putMany([...Array(20)].map((_, i) => [`/registry/after-seed-backup/k${i}`, "late"]));
        [closedPort] = await freePorts(1);
      }, 600_000);

      test("a fresh node, no member answering: the backup's data alone in /var/lib/etcd, its shared PKI, the record", async () => {
        seedRoot = freshNode(seedIp);
        fs.writeFileSync(fakeLog, "");
        const result = await runRestore(seedArgs(seedIp, `https://127.0.0.1:${closedPort}/readyz`, ["--key", seedKey]));
        if (result.status !== 0) throw new Error(`seed failed:\n${result.stderr}`);
        const out = JSON.parse(result.stdout) as { restored: boolean; key: string; revision: number };
        expect(out).toMatchObject({ restored: true, key: seedKey, revision: Number(/-r(\d+)\.db/.exec(seedKey)![1]) });
        expect(calls().map(([host, op]) => `${host} ${op[0]}`)).toEqual(
          [
            "probe",
            "seed-state",
            "prepare",
            "scp",
            "verify",
            "scp",
            "install-pki",
            "etcd-image",
            "restore",
            "seed-record",
          ].map((op) => `${seedIp} ${op}`),
        );
        // Only the shared files, the backup's bytes; keys owner-only. The node's own certificates
        // are kubeadm init's to make.
        const pki = path.join(seedRoot, "etc", "kubernetes", "pki");
        for (const f of shared) {
          expect({ f, text: fs.readFileSync(path.join(pki, f), "utf8") }).toEqual({ f, text: `backup ${f}\n` });
          expect({ f, mode: fs.statSync(path.join(pki, f)).mode & 0o777 }).toEqual({
            f,
            mode: f.endsWith(".key") ? 0o600 : 0o644,
          });
        }
        expect(fs.existsSync(path.join(pki, "apiserver.crt"))).toBe(false);
        const record = fs.readFileSync(path.join(seedRoot, "var", "lib", "kubernetes-node", "restored"), "utf8");
        expect(record).toContain(`key=${seedKey}\n`);
        // The snapshot copy is gone from the node once restored.
        expect(fs.readdirSync(path.join(seedRoot, "var", "lib", "etcd-restore"))).toEqual([]);

        // The restored data dir runs as a cluster of this one member, with every key of the backup
        // and none written after it.
        const [client, peer] = await freePorts(2);
        const etcdLog = fs.openSync(path.join(tmp, "seeded-etcd.log"), "a");
        const etcd = spawn(
          cluster.binaries.etcd,
          [
            `--name=${seedName}`,
            `--data-dir=${path.join(seedRoot, "var", "lib", "etcd")}`,
            `--listen-client-urls=http://127.0.0.1:${client}`,
            `--advertise-client-urls=http://127.0.0.1:${client}`,
            `--listen-peer-urls=http://127.0.0.1:${peer}`,
          ],
          { stdio: ["ignore", etcdLog, etcdLog] },
        );
        fs.closeSync(etcdLog);
        try {
          const endpoint = [`http://127.0.0.1:${client}`];
          await waitUntil(
            "the seeded member",
            30_000,
            async () => cluster.etcdctl(["endpoint", "health"], endpoint).status === 0,
          );
          const members = JSON.parse(cluster.etcdctl(["member", "list", "-w", "json"], endpoint).stdout) as {
            members: { name: string; peerURLs: string[] }[];
          };
          expect(members.members.map((m) => [m.name, m.peerURLs])).toEqual([
            [seedName, [`http://127.0.0.1:${closedPort}`]],
          ]);
          expect(contents(endpoint)).toEqual(expected);
        } finally {
          const exited = new Promise((resolve) => etcd.once("exit", resolve));
          etcd.kill("SIGKILL");
          await exited;
        }

        // Run again (a retried pulumi up): the record says it is done; nothing is fetched or copied.
        fs.writeFileSync(fakeLog, "");
        const again = await runRestore(seedArgs(seedIp, `https://127.0.0.1:${closedPort}/readyz`, ["--key", seedKey]));
        if (again.status !== 0) throw new Error(`second seed failed:\n${again.stderr}`);
        expect(JSON.parse(again.stdout)).toMatchObject({ restored: true, already: true, key: seedKey });
        expect(calls().map(([, op]) => op[0])).toEqual(["probe", "seed-state"]);
      }, 300_000);

      test("a member answers: nothing to restore, the node is not touched; a node kubeadm ran on is refused", async () => {
        const [port] = await freePorts(1);
        const server = https.createServer(
          { key: fs.readFileSync(path.join(tmp, "tls.key")), cert: fs.readFileSync(path.join(tmp, "tls.crt")) },
          (_req, res) => res.writeHead(500).end("[-]etcd failed"),
        );
        await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
        try {
          const root = freshNode("10.0.0.10");
          fs.writeFileSync(fakeLog, "");
          const skipped = await runRestore(
            seedArgs("10.0.0.10", `https://127.0.0.1:${port}/readyz`, ["--key", seedKey]),
          );
          if (skipped.status !== 0) throw new Error(skipped.stderr);
          expect(JSON.parse(skipped.stdout)).toMatchObject({ restored: false });
          expect(JSON.parse(skipped.stdout).reason).toContain(`https://127.0.0.1:${port}/readyz (HTTP 500)`);
          expect(calls().map(([, op]) => op[0])).toEqual(["probe"]);
          expect(fs.readdirSync(path.join(root, "var", "lib"))).toEqual([]);
        } finally {
          server.closeAllConnections();
          server.close();
        }
        const marked = freshNode("10.0.0.11", { "var/lib/kubernetes-node/member": "role=init\n" });
        fs.writeFileSync(fakeLog, "");
        const refused = await runRestore(
          seedArgs("10.0.0.11", `https://127.0.0.1:${closedPort}/readyz`, ["--key", seedKey]),
        );
        expect(refused.status).toBe(1);
        expect(refused.stderr).toContain("node prod-nbg1-cp-1 is no fresh node (member: it has the member marker)");
        expect(calls().map(([, op]) => op[0])).toEqual(["probe", "seed-state"]);
        expect(fs.existsSync(path.join(marked, "var", "lib", "etcd"))).toBe(false);
      }, 300_000);
    });

    describe("refusals and faults (nothing on a node changes)", () => {
      const changingOps = ["prepare", "stop", "restore", "start"];
      const changed = () => calls().filter(([, op]) => changingOps.includes(op[0]));

      test("a node list missing a member of the snapshot or the running cluster is refused; --members-gone must name real members", async () => {
        const [first, second, third] = cluster.members.map((m) => m.name);
        const partial = ["--node", `${first}=${ips[0]},${second}=${ips[1]}`];
        // A given snapshot file: the membership check reads it as it reads a fetched one.
        const given = ["--snapshot", await fetchedSnapshot()];
        const refused = await restore(path.join(tmp, "partial.jsonl"), {}, given, partial);
        expect(refused.status).toBe(1);
        expect(refused.stderr).toContain(`etcd member(s) ${third} are in the snapshot's membership`);
        expect(refused.stderr).toContain("--members-gone");
        expect(refused.stderr).not.toContain("restore complete");
        expect(changed()).toEqual([]);
        // The running cluster unreachable (every node's `member list` fails): the snapshot's own
        // membership still refuses it.
        const offline = await restore(
          path.join(tmp, "partial-offline.jsonl"),
          { FAKE_FAIL: ips.map((ip) => `${ip}:members`).join(",") },
          given,
          partial,
        );
        expect(offline.status).toBe(1);
        expect(offline.stderr).toContain(`etcd member(s) ${third} are in the snapshot's membership`);
        expect(offline.stderr).toContain("no member answered");
        expect(changed()).toEqual([]);
        const wrongGone = await restore(
          path.join(tmp, "gone.jsonl"),
          {},
          [...given, "--members-gone", "etcd-9"],
          partial,
        );
        expect(wrongGone.status).toBe(1);
        expect(wrongGone.stderr).toContain(`etcd member(s) ${third}`);
        expect(changed()).toEqual([]);
        const notAMember = await restore(
          path.join(tmp, "gone2.jsonl"),
          {},
          [...given, "--members-gone", `${third},etcd-9`],
          partial,
        );
        expect(notAMember.status).toBe(1);
        expect(notAMember.stderr).toContain("--members-gone names etcd-9, which is in neither");
        expect(changed()).toEqual([]);
        expect(cluster.memberCount()).toBe(3);
      }, 600_000);

      test("member: a data dir that already holds data is refused, kept aside with --move-aside", async () => {
        const snapshot = await fetchedSnapshot();
        const dataDir = path.join(tmp, "member-data");
        fs.mkdirSync(dataDir);
        fs.writeFileSync(path.join(dataDir, "precious"), "old");
        const m = cluster.members[0];
        const args = ["member", "--snapshot", snapshot, "--name", m.name, "--data-dir", dataDir, "--initial-cluster"];
        const rest = [cluster.initialCluster, "--peer-url", m.peerUrl, "--cluster-token", "t"];
        const refused = await runRestore([...args, ...rest]);
        expect(refused.status).toBe(1);
        expect(refused.stderr).toContain("exists and is not empty; refusing");
        expect(fs.readFileSync(path.join(dataDir, "precious"), "utf8")).toBe("old");
        const moved = await runRestore([...args, ...rest, "--move-aside"]);
        if (moved.status !== 0) throw new Error(moved.stderr);
        const aside = fs.readdirSync(tmp).filter((d) => d.startsWith("member-data.pre-restore-"));
        expect(aside).toHaveLength(1);
        expect(fs.readFileSync(path.join(tmp, aside[0], "precious"), "utf8")).toBe("old");
        expect(fs.existsSync(path.join(dataDir, "member", "snap", "db"))).toBe(true);
        if (version === "3.5") expect(moved.stderr).toContain("--bump-revision 1000000000 --mark-compacted");
      }, 600_000);
    });

    // The storage and crypto faults do not depend on the etcd generation (only `snapshot status`
    // does, which every drill runs): they run once, on 3.5, the generation production runs.
    if (version === "3.5") {
      describe("storage faults (nothing on a node changes)", () => {
        const newerStamp = (minutes: number) =>
          new Date(Date.now() + minutes * 60_000).toISOString().replace(/[-:]/g, "").replace(/\.\d+/, "");

        test("a backup without a valid signature is refused before any node is touched", async () => {
          // A planted backup: valid age encryption to the operator's identity, a valid sha256.
          const planted = `planted/etcd/${backupKey.slice(backupKey.lastIndexOf("/") + 1)}`;
          const body = s3.get(backupKey);
          s3.put(planted, body);
          s3.put(`${planted}.sha256`, sidecarFor(planted, body));
          const unsigned = await restore(path.join(tmp, "unsigned.jsonl"), { S3_PREFIX: "planted" });
          expect(unsigned.status).toBe(1);
          expect(unsigned.stderr).toContain(`${planted}.sha256 has no signature`);
          expect(calls()).toEqual([]);
          signBackup(s3, planted, stranger);
          const foreign = await restore(path.join(tmp, "foreign.jsonl"), { S3_PREFIX: "planted" });
          expect(foreign.status).toBe(1);
          expect(foreign.stderr).toContain(`the signature of ${planted}.sha256 does not verify`);
          expect(calls()).toEqual([]);
          // --allow-unsigned does not accept a signature that fails; no signing key at all is a usage error.
          const allowed = await restore(path.join(tmp, "foreign2.jsonl"), { S3_PREFIX: "planted" }, [
            "--allow-unsigned",
          ]);
          expect(allowed.status).toBe(1);
          expect(calls()).toEqual([]);
          const noKey = await restore(path.join(tmp, "nokey.jsonl"), {
            S3_PREFIX: "planted",
            BACKUP_SIGNING_PUBLIC_KEY: "",
          });
          expect(noKey.status).toBe(2);
          expect(noKey.stderr).toContain("--signing-public-key");
          // A backup from before signing: accepted with --allow-unsigned, with a WARNING.
          s3.remove(`${planted}.sha256.sig`);
          const out = path.join(tmp, "unsigned-allowed.db");
          const old = await runRestore(["fetch", "--out", out, "--allow-unsigned"], { S3_PREFIX: "planted" });
          if (old.status !== 0) throw new Error(old.stderr);
          expect(old.stderr).toContain(`WARNING: ${planted}.sha256 has no signature`);
          // The signer's key from a file works as the environment does.
          const keyFile = path.join(tmp, "signer.pub");
          fs.writeFileSync(keyFile, `${signer.publicKey}\n`);
          const fromFile = await runRestore(
            ["fetch", "--out", path.join(tmp, "from-file.db"), "--signing-public-key", keyFile],
            {
              BACKUP_SIGNING_PUBLIC_KEY: "",
            },
          );
          if (fromFile.status !== 0) throw new Error(fromFile.stderr);
          expect(JSON.parse(fromFile.stdout)).toMatchObject({ key: backupKey });
        }, 600_000);

        test("a tampered object with a matching sidecar is reported corrupt, a wrong identity as such", async () => {
          const base = backupKey.slice(backupKey.lastIndexOf("/") + 1);
          const tampered = `tampered/etcd/${base}`;
          const body = Buffer.from(s3.get(backupKey));
          body[body.length - 100] ^= 0xff; // in the last payload chunk: age's stream authentication fails
          s3.put(tampered, body);
          s3.put(`${tampered}.sha256`, sidecarFor(tampered, body));
          signBackup(s3, tampered, signer);
          const dir = path.join(tmp, "tampered-out");
          fs.mkdirSync(dir);
          const corrupt = await runRestore(["fetch", "--out", path.join(dir, "snapshot.db")], {
            S3_PREFIX: "tampered",
          });
          expect(corrupt.status).toBe(1);
          expect(corrupt.stderr).toContain("the object is corrupt or tampered");
          expect(corrupt.stderr).not.toContain("wrong identity");
          expect(fs.readdirSync(dir)).toEqual([]);
          const wrong = await runRestore(["fetch", "--out", path.join(dir, "snapshot.db")], {
            BACKUP_AGE_IDENTITY_FILE: wrongAge.file,
          });
          expect(wrong.status).toBe(1);
          expect(wrong.stderr).toContain(
            "no identity in BACKUP_AGE_IDENTITY_FILE matches its recipients (wrong identity?",
          );
          expect(wrong.stderr).not.toContain("corrupt");
          expect(fs.readdirSync(dir)).toEqual([]);
          // Corrupt without a matching sidecar: the checksum refuses it before age runs.
          s3.put(`${tampered}.sha256`, sidecarFor(tampered, s3.get(backupKey)));
          signBackup(s3, tampered, signer);
          const mismatch = await runRestore(["fetch", "--out", path.join(dir, "snapshot.db")], {
            S3_PREFIX: "tampered",
          });
          expect(mismatch.status).toBe(1);
          expect(mismatch.stderr).toContain(`checksum mismatch for ${tampered}`);
          expect(fs.readdirSync(dir)).toEqual([]);
        }, 600_000);

        test("leftovers of a failed run: fetch and fetch-pki take the newest COMPLETE backup; a sidecar without its object is passed over", async () => {
          // A later run uploaded its snapshot and its PKI with the PKI's sidecar, then failed before the
          // snapshot's sidecar, and its cleanup failed too.
          const stamp = newerStamp(5);
          const leftover = `prod/etcd/${stamp}-r${revisionAtBackup + 7}.db.zst.age`;
          const leftoverPki = `prod/pki/${stamp}.tar.zst.age`;
          s3.put(leftover, s3.get(backupKey));
          s3.put(leftoverPki, s3.get(pkiKey));
          s3.put(`${leftoverPki}.sha256`, sidecarFor(leftoverPki, s3.get(pkiKey)));
          signBackup(s3, leftoverPki, signer);
          try {
            const pkiOut = path.join(tmp, "pki-out");
            const pki = await runRestore(["fetch-pki", "--out", pkiOut]);
            if (pki.status !== 0) throw new Error(pki.stderr);
            expect(JSON.parse(pki.stdout)).toMatchObject({ key: pkiKey });
            expect(fs.readFileSync(path.join(pkiOut, "etcd", "ca.crt"), "utf8")).toContain("drill");
            const snap = await runRestore(["fetch", "--out", path.join(tmp, "newest-complete.db")]);
            if (snap.status !== 0) throw new Error(snap.stderr);
            expect(JSON.parse(snap.stdout)).toMatchObject({ key: backupKey });

            // A sidecar (signed) whose object is gone: not a complete backup (the listing has no
            // object for it), so fetch passes over it to the newest complete one.
            const orphan = `prod/etcd/${newerStamp(10)}-r${revisionAtBackup + 9}.db.zst.age`;
            s3.put(`${orphan}.sha256`, sidecarFor(orphan, s3.get(backupKey)));
            signBackup(s3, orphan, signer);
            try {
              const passed = await runRestore(["fetch", "--out", path.join(tmp, "past-orphan.db")]);
              if (passed.status !== 0) throw new Error(passed.stderr);
              expect(JSON.parse(passed.stdout)).toMatchObject({ key: backupKey });
            } finally {
              s3.remove(`${orphan}.sha256`);
              s3.remove(`${orphan}.sha256.sig`);
            }
          } finally {
            for (const k of [leftover, leftoverPki, `${leftoverPki}.sha256`, `${leftoverPki}.sha256.sig`]) s3.remove(k);
          }
        }, 600_000);
      });
    }
  });
}

drill("3.4");
drill("3.5");
