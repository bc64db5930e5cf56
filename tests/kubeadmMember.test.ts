/**
 * scripts/node/kubeadm-member.sh: init or join decided at run time, join credentials minted on a
 * healthy peer for every attempt. Each control-plane node is a sandbox of its own
 * (tests/support/nodeSandbox.ts) with the fake kubeadm of tests/support/fake-kubeadm.sh; the
 * nodes of one cluster share the fake cluster (tests/support/fakeKubeadm.ts fakeClusterDir), so
 * a join through node A finds the cluster A initialized. Between the nodes:
 * - a fake `curl` answers per address and port from a shared "network" directory (a peer's
 *   /readyz: 200 ok, 500, or nothing; its etcd port: open or closed);
 * - a fake `ssh` runs the remote command with bash in the named peer's sandbox (its root, its
 *   fakes, its call log), as OpenSSH does on a real host.
 *
 * What this cannot prove: that real curl, ssh and kubeadm behave as the fakes do (each cites the
 * documentation or source it follows), and that root's key really opens SSH between the nodes
 * over the private network. The proof of those is a real bootstrap on real servers.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { joinVariables, renderInitConfiguration, renderJoinConfiguration } from "../components/node/kubeadm";
import {
  at,
  calls,
  expectScriptContract,
  expectShellcheckClean,
  expectStatus,
  kubectlGateArms,
  makeSandbox as makeNodeSandbox,
  resetCalls,
  Run,
  RunOptions,
  runNodeScript,
  Sandbox,
  useTempDir,
} from "./support/nodeSandbox";
import {
  ClusterCa,
  fakeClusterDir,
  fakeClusterKubectlArms,
  fakeKubeadm,
  fakeKubeadmTools,
  initPhases,
  joinPhases,
  makeClusterCa,
  phasesRun,
  resetPhases,
  kubeadmInputFor,
} from "./support/fakeKubeadm";
import {
  addHost,
  addHostEnv,
  fakePeerCurl,
  fakePeerSsh,
  makeNetwork,
  peerNetworkTools,
  scriptsOnNode,
  serve,
  sshCommands,
  unserve,
} from "./support/peerNetwork";
import { expectNoSecrets } from "./support/secrets";
import { requireTool } from "./support/tools";

const tmp = useTempDir("kubeadm-member-test-");

// Realistic credentials (the fake kubeadm prints them); never on a terminal.
const token = "abcdef.0123456789abcdef";
const certificateKey = "5ca1ab1e".repeat(8);

let cachedCa: ClusterCa | undefined;
const clusterCa = (): ClusterCa => (cachedCa ??= makeClusterCa(tmp(), "cluster-ca"));

// The stack's SSH private key: a real one, made once with ssh-keygen. Its body must never
// appear in a call log, on stdout or stderr, or in any log file.
let cachedKey: { text: string; body: string } | undefined;
function sshKey(): { text: string; body: string } {
  if (cachedKey) return cachedKey;
  const keygen = requireTool("/usr/bin/ssh-keygen", "openssh-client");
  const file = path.join(tmp(), "id_ed25519");
  const made = spawnSync(keygen, ["-q", "-t", "ed25519", "-N", "", "-C", "", "-f", file], { encoding: "utf8" });
  if (made.status !== 0) throw new Error(`ssh-keygen failed: ${made.stderr}`);
  const text = fs.readFileSync(file, "utf8");
  // The base64 lines between the armour.
  const body = text.split("\n").filter((line) => line && !line.startsWith("-----"))[0];
  cachedKey = { text, body };
  return cachedKey;
}
const secrets = (): string[] => [token, certificateKey, sshKey().body];

const initConfigPath = "/etc/kubernetes/kubeadm/init.yaml";
const joinTemplatePath = "/etc/kubernetes/kubeadm/join.yaml";
const attemptPath = "/var/lib/kubernetes-node/member-attempt";
const markerPath = "/var/lib/kubernetes-node/member";
const endpointIp = "10.20.1.250";
const endpointUrl = `https://${endpointIp}:6443/readyz`;

// The ClusterConfiguration `kubeadm init` stores in ConfigMap kube-system/kubeadm-config, which
// mint-join-credentials.sh reads on the peer.
const clusterConfiguration = renderInitConfiguration(kubeadmInputFor("cp-1", "10.20.1.11")).split("---\n")[1];

const fakes: Record<string, string> = {
  kubeadm: fakeKubeadm,
  kubectl: `
case "$*" in
${kubectlGateArms()}
  *" -n kube-system get configmap kubeadm-config -o jsonpath={.data.ClusterConfiguration}")
    printf '%s' "$FAKE_CLUSTER_CONFIGURATION"
    ;;
  *" member list -w simple")
    cat "$FAKE_CAPTURE/cluster/etcd-members" 2>/dev/null || true
    ;;
  *" -n kube-system delete secret kubeadm-certs --ignore-not-found")
    # kubectl delete: '<resource> "<name>" deleted'; nothing for a missing object with
    # --ignore-not-found (k8s.io/kubectl pkg/cmd/delete/delete.go).
    if fails delete-secret; then echo "The connection to the server was refused" >&2; exit 1; fi
    secret="$FAKE_CAPTURE/cluster/objects/kube-system/secrets/kubeadm-certs"
    if [[ -f "$secret" ]]; then rm "$secret"; echo 'secret "kubeadm-certs" deleted'; fi
    ;;
${fakeClusterKubectlArms}
  *) echo "fake kubectl: unexpected $*" >&2; exit 99 ;;
esac`,
  curl: fakePeerCurl,
  ssh: fakePeerSsh,
};

const realTools = [
  ...new Set([
    ...["bash", "cat", "chmod", "dirname", "grep", "head", "install", "ls", "mktemp", "mv", "openssl"],
    ...["rm", "sha256sum", "sleep", "tee", "timeout"], // the scripts
    ...["cp", "mkdir", "stat", ...fakeKubeadmTools, ...peerNetworkTools], // the fakes
  ]),
];

interface Node {
  sandbox: Sandbox;
  name: string;
  ip: string;
}

/**
 * A control-plane node `cp-N` at `ip` on the network `net`, with both kubeadm files rendered for
 * it; `cluster` (another node) shares its fake cluster. Root on it accepts the stack's key
 * unless `acceptsKey` is false.
 */
function makeNode(net: string, n: number, options: { cluster?: Node; acceptsKey?: boolean } = {}): Node {
  const name = `cp-${n}`;
  const ip = `10.20.1.${10 + n}`;
  const sandbox = makeNodeSandbox(tmp(), name, {
    fakes,
    realTools,
    toolPaths: { envsubst: requireTool("/usr/bin/envsubst", "gettext-base") },
    files: {
      "etc/hosts": "127.0.0.1 localhost\n",
      [initConfigPath.slice(1)]: renderInitConfiguration(kubeadmInputFor(name, ip)),
      [joinTemplatePath.slice(1)]: renderJoinConfiguration(kubeadmInputFor(name, ip)),
    },
    env: {
      FAKE_NET: net,
      FAKE_TOKEN: token,
      FAKE_CA_CERT_HASH: clusterCa().hash,
      FAKE_CERT_KEY: certificateKey,
      FAKE_CLUSTER_CA: clusterCa().dir,
      FAKE_CLUSTER_CONFIGURATION: clusterConfiguration,
    },
  });
  if (options.cluster) fs.symlinkSync(fakeClusterDir(options.cluster.sandbox), fakeClusterDir(sandbox));
  addHost(net, ip, sandbox, options.acceptsKey === false ? "another key\n" : sshKey().text);
  return { sandbox, name: `prod-nbg1-${name}`, ip };
}

const memberArgs = (node: Node, peers: Node[] | string[], extra: string[] = []): string[] => [
  "--node-name",
  node.name,
  "--init-config",
  initConfigPath,
  "--join-config-template",
  joinTemplatePath,
  "--peers",
  peers.map((p) => (typeof p === "string" ? p : p.ip)).join(","),
  "--endpoint-url",
  endpointUrl,
  ...extra,
];

/** Runs kubeadm-member.sh on `node` with the stack's key on stdin. */
function runMember(node: Node, peers: Node[] | string[], options: RunOptions & { extra?: string[] } = {}): Run {
  const { extra, ...rest } = options;
  return runNodeScript(node.sandbox, "kubeadm-member.sh", memberArgs(node, peers, extra), {
    input: sshKey().text,
    ...rest,
  });
}

/** A node whose init completed through kubeadm-member.sh; its API server and etcd answer. */
function initializedNode(net: string, n: number): Node {
  const node = makeNode(net, n);
  expectStatus(runMember(node, []), 0);
  serve(net, node.ip, 6443, "200");
  serve(net, node.ip, 2379, "open");
  resetCalls(node.sandbox);
  resetPhases(node.sandbox);
  return node;
}

const fileText = (file: string): string | undefined =>
  fs.existsSync(file) ? fs.readFileSync(file, "utf8") : undefined;
const attempt = (node: Node) => fileText(at(node.sandbox, attemptPath));
const markerRole = (node: Node) => /^role=(\w+)$/m.exec(fileText(at(node.sandbox, markerPath)) ?? "")?.[1];
const kubeadmCalls = (node: Node) => calls(node.sandbox).filter((c) => c.startsWith("kubeadm "));
const mints = (node: Node) => calls(node.sandbox).filter((c) => c.startsWith("kubeadm token create")).length;
const revocations = (node: Node) => calls(node.sandbox).filter((c) => c.startsWith("kubeadm token delete")).length;
const mintCommand = (ip: string) => `${ip} bash ${scriptsOnNode}/mint-join-credentials.sh --ttl 15m`;
const revokeCommand = (ip: string) => `${ip} bash ${scriptsOnNode}/mint-join-credentials.sh --revoke abcdef`;

/** Every file under `dir`, recursively, as paths relative to it. */
function filesUnder(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, encoding: "utf8" }).sort();
}

/**
 * The key stayed secret and its temporary directory is gone: not in the call log, stdout,
 * stderr or any file under the root, and /run is empty.
 */
function expectKeyGone(node: Node, result: Run): void {
  expectNoSecrets(result, secrets());
  for (const line of calls(node.sandbox)) expect(line).not.toContain(sshKey().body);
  expect(fs.readdirSync(at(node.sandbox, "run"))).toEqual([]);
  const root = node.sandbox.root;
  for (const file of filesUnder(root)) {
    const full = path.join(root, file);
    if (fs.lstatSync(full).isFile())
      expect({ file, text: fs.readFileSync(full, "utf8") }).not.toEqual({
        file,
        text: expect.stringContaining(sshKey().body),
      });
  }
}

/** The reset a refusal prints, done as printed (the fake's `kubeadm reset -f`). */
function resetAsPrinted(node: Node, stderr: string): void {
  expect(stderr).toMatch(/:\s+kubeadm reset -f\n/);
  const reset = spawnSync(path.join(node.sandbox.fakeBin, "kubeadm"), ["reset", "-f"], {
    env: node.sandbox.env,
    encoding: "utf8",
  });
  expect(reset.status).toBe(0);
}

// ---------------------------------------------------------------------------------------------

describe("kubeadm-member.sh", () => {
  test("bash strict mode, --help documents every flag, shellcheck passes", () => {
    const net = makeNetwork(tmp(), "help");
    expectScriptContract(makeNode(net, 1).sandbox, "kubeadm-member.sh", [
      "--node-name",
      "--init-config",
      "--join-config-template",
      "--peers",
      "--endpoint-url",
      "--cluster-ca",
      "--endpoint-host",
      "--endpoint-ip",
      "--timeout",
      "--root",
      "ROOT",
      "POLL_SECONDS",
      attemptPath,
      "docs/runbooks/etcd-restore.md",
    ]);
    expectShellcheckClean(["kubeadm-member.sh", "mint-join-credentials.sh"]);
  });

  test("a fresh cluster (no member answers, no --cluster-ca): initializes, then is a member", () => {
    const net = makeNetwork(tmp(), "fresh");
    const node = makeNode(net, 1);
    const result = runMember(node, ["10.20.1.12", "10.20.1.13"]);
    expectStatus(result, 0);
    expect(result.stdout).toBe("prod-nbg1-cp-1: initialized\n");
    const probe = (url: string) => `curl --silent --insecure --max-time 5 --write-out \\n%{http_code} ${url}`;
    const etcdProbe = (ip: string) =>
      `curl --silent --insecure --max-time 5 --output /dev/null --write-out %{time_connect} https://${ip}:2379/health`;
    expect(calls(node.sandbox)).toEqual([
      probe("https://10.20.1.12:6443/readyz"),
      etcdProbe("10.20.1.12"),
      probe("https://10.20.1.13:6443/readyz"),
      etcdProbe("10.20.1.13"),
      probe(endpointUrl),
      // kubeadm-init.sh's own check right before kubeadm init (--refuse-if-serving).
      `curl --silent --insecure --max-time 5 --output /dev/null --write-out %{http_code} ${endpointUrl}`,
      `kubeadm init --config $ROOT${initConfigPath}`,
      "kubectl --kubeconfig $ROOT/etc/kubernetes/admin.conf get --raw /readyz",
    ]);
    expect(markerRole(node)).toBe("init");
    // The attempt record served its purpose once the marker stands.
    expect(attempt(node)).toBeUndefined();
    expectKeyGone(node, result);

    resetCalls(node.sandbox);
    const again = runMember(node, ["10.20.1.12", "10.20.1.13"]);
    expectStatus(again, 0);
    expect(again.stdout).toBe("prod-nbg1-cp-1: already a member (init)\n");
    expect(calls(node.sandbox)).toEqual(["kubectl --kubeconfig $ROOT/etc/kubernetes/admin.conf get --raw /readyz"]);
    expectKeyGone(node, again);
  });

  test("a peer answers: joins through the first healthy peer (no answer, 500 and a refused key are skipped), then revokes", () => {
    const net = makeNetwork(tmp(), "join");
    const a = initializedNode(net, 1); // 10.20.1.11, the first member (not a peer here)
    const healthy = makeNode(net, 3, { cluster: a }); // 10.20.1.13: another member of the same cluster
    serve(net, healthy.ip, 6443, "200");
    const refusing = makeNode(net, 4, { cluster: a, acceptsKey: false }); // 10.20.1.14
    serve(net, refusing.ip, 6443, "200");
    serve(net, "10.20.1.15", 6443, "500");
    // healthy's admin.conf: it is a member too (a copy of a's).
    fs.mkdirSync(at(healthy.sandbox, "etc/kubernetes"), { recursive: true });
    fs.copyFileSync(at(a.sandbox, "etc/kubernetes/admin.conf"), at(healthy.sandbox, "etc/kubernetes/admin.conf"));

    const b = makeNode(net, 2, { cluster: a });
    const peers = ["10.20.1.16", "10.20.1.15", refusing.ip, healthy.ip];
    const result = runMember(b, peers, { extra: ["--cluster-ca", clusterCa().hash] });
    expectStatus(result, 0);
    expect(result.stdout).toBe(`prod-nbg1-cp-2: joined through ${healthy.ip}\n`);
    // The probe stopped at the first answer (10.20.1.15's 500); the mint skipped 10.20.1.16
    // (no answer), 10.20.1.15 (500) and 10.20.1.14 (ssh: Permission denied, 255).
    expect(result.stderr).toContain("a member answers: https://10.20.1.15:6443/readyz (HTTP 500); joining");
    for (const skipped of [
      "10.20.1.16: /readyz gave no HTTP answer",
      "10.20.1.15: /readyz gave HTTP 500, not 200 ok",
      "10.20.1.14: ssh failed (status 255: unreachable, refused or not authorized)",
    ]) {
      expect(result.stderr).toContain(`kubeadm-member: not minting on ${skipped}\n`);
    }
    expect(sshCommands(net)).toEqual([mintCommand(healthy.ip), revokeCommand(healthy.ip)]);
    expect(calls(b.sandbox).filter((c) => c.startsWith("ssh "))).toEqual([
      expect.stringMatching(
        /^ssh -i \$ROOT\/run\/kubeadm-member\.\w+\/id -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=\$ROOT\/run\/kubeadm-member\.\w+\/known_hosts -o ConnectTimeout=10 root@10\.20\.1\.14 bash \/usr\/local\/lib\/hcloud-control-plane\/node\/mint-join-credentials\.sh --ttl 15m$/,
      ),
      expect.stringMatching(/ root@10\.20\.1\.13 bash \S+\/mint-join-credentials\.sh --ttl 15m$/),
      expect.stringMatching(/ root@10\.20\.1\.13 bash \S+\/mint-join-credentials\.sh --revoke abcdef$/),
    ]);
    // Minted and revoked on the healthy peer: the token and the kubeadm-certs Secret are gone.
    expect(mints(healthy)).toBe(1);
    expect(revocations(healthy)).toBe(1);
    expect(fileText(path.join(healthy.sandbox.capture, "tokens"))).toBe("");
    expect(fs.existsSync(path.join(fakeClusterDir(a.sandbox), "objects/kube-system/secrets/kubeadm-certs"))).toBe(
      false,
    );
    expect(mints(refusing)).toBe(0);
    expect(kubeadmCalls(b)).toEqual([expect.stringMatching(/^kubeadm join --config \S+$/)]);
    expect(markerRole(b)).toBe("join");
    expect(attempt(b)).toBeUndefined();
    expectKeyGone(b, result);

    // A member: no probe, no mint, no stdin for the join.
    resetCalls(b.sandbox);
    resetCalls(healthy.sandbox);
    const again = runMember(b, peers);
    expectStatus(again, 0);
    expect(again.stdout).toBe("prod-nbg1-cp-2: already a member (join)\n");
    expect(calls(b.sandbox).filter((c) => !c.startsWith("kubectl "))).toEqual([]);
    expect(mints(healthy)).toBe(0);
    expectKeyGone(b, again);
  });

  test("no healthy peer mints: fails naming each peer tried and why, nothing written", () => {
    const net = makeNetwork(tmp(), "no-mint");
    serve(net, "10.20.1.11", 6443, "500");
    serve(net, "10.20.1.13", 2379, "open");
    const b = makeNode(net, 2);
    const result = runMember(b, ["10.20.1.11", "10.20.1.13"]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("error: no peer minted join credentials for prod-nbg1-cp-2:");
    expect(result.stderr).toContain("  10.20.1.11: /readyz gave HTTP 500, not 200 ok\n");
    expect(result.stderr).toContain("  10.20.1.13: /readyz gave no HTTP answer\n");
    expect(attempt(b)).toBeUndefined();
    expect(kubeadmCalls(b)).toEqual([]);
    expectKeyGone(b, result);
  });

  test("no member answers but the stack records a cluster (--cluster-ca): refuses and changes nothing", () => {
    const net = makeNetwork(tmp(), "refuse");
    const node = makeNode(net, 2);
    const before = filesUnder(path.join(node.sandbox.root, "etc"));
    const result = runMember(node, ["10.20.1.11", "10.20.1.13"], { extra: ["--cluster-ca", clusterCa().hash] });
    expect(result.status).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain(
      `the stack records a cluster (CA hash ${clusterCa().hash}), but no member answers:`,
    );
    for (const probed of [
      "https://10.20.1.11:6443/readyz: no HTTP answer",
      "10.20.1.11:2379: no TCP connection",
      "https://10.20.1.13:6443/readyz: no HTTP answer",
      "10.20.1.13:2379: no TCP connection",
      `${endpointUrl}: no HTTP answer`,
    ]) {
      expect(result.stderr).toContain(`  ${probed}\n`);
    }
    expect(result.stderr).toContain("would start a second, empty cluster");
    expect(result.stderr).toContain("docs/runbooks/etcd-restore.md");
    expect(calls(node.sandbox).every((c) => c.startsWith("curl "))).toBe(true);
    expect(filesUnder(path.join(node.sandbox.root, "etc"))).toEqual(before);
    expect(fs.existsSync(at(node.sandbox, "var/lib/kubernetes-node"))).toBe(false);
    expectKeyGone(node, result);
  });

  describe("restore into new servers (restoreFrom, etcd-restore.sh seed)", () => {
    const seedRecord = "/var/lib/kubernetes-node/restored";
    const backupKey = "prod-nbg1/etcd/20261203T120000Z-r4711.db.zst.age";
    /** What etcd-restore.sh seed leaves on a node (tests/etcdRestore.test.ts runs the seed itself). */
    function seed(node: Node, ca: ClusterCa): void {
      const pki = at(node.sandbox, "etc/kubernetes/pki");
      fs.mkdirSync(path.join(pki, "etcd"), { recursive: true });
      fs.copyFileSync(path.join(ca.dir, "ca.crt"), path.join(pki, "ca.crt"));
      fs.copyFileSync(path.join(ca.dir, "ca.key"), path.join(pki, "ca.key"));
      for (const f of ["sa.key", "sa.pub", "front-proxy-ca.crt", "front-proxy-ca.key", "etcd/ca.crt", "etcd/ca.key"])
        fs.writeFileSync(path.join(pki, f), `restored ${f}\n`);
      fs.mkdirSync(at(node.sandbox, "var/lib/etcd/member/snap"), { recursive: true });
      fs.writeFileSync(at(node.sandbox, "var/lib/etcd/member/snap/db"), "restored data\n");
      fs.writeFileSync(
        at(node.sandbox, seedRecord.slice(1)),
        `key=${backupKey}\nsha256=${"a".repeat(64)}\nsnapshotSha256=${"b".repeat(64)}\nrevision=4711\ncompleted=2026-12-03T12:30:00Z\n`,
      );
    }

    test("seeded and no member answers: initializes from the backup with the stack's CA; kubeadm keeps the restored PKI and data", () => {
      const net = makeNetwork(tmp(), "seeded");
      const node = makeNode(net, 1);
      fs.mkdirSync(at(node.sandbox, "var/lib/kubernetes-node"), { recursive: true });
      seed(node, clusterCa());
      const result = runMember(node, ["10.20.1.12", "10.20.1.13"], {
        extra: ["--cluster-ca", clusterCa().hash, "--restore-from", "latest"],
      });
      expectStatus(result, 0);
      expect(result.stdout).toBe("prod-nbg1-cp-1: initialized\n");
      expect(result.stderr).toContain(`this node was seeded from ${backupKey}: initializing the cluster from it`);
      // Only the one preflight check that the restored data trips is ignored.
      expect(kubeadmCalls(node)).toEqual([
        `kubeadm init --config $ROOT${initConfigPath} --ignore-preflight-errors=DirAvailable--var-lib-etcd`,
      ]);
      expect(phasesRun(node.sandbox)).toEqual(initPhases.map((p) => `init:${p}`));
      expect(fileText(at(node.sandbox, "etc/kubernetes/pki/sa.key"))).toBe("restored sa.key\n");
      expect(fileText(at(node.sandbox, "etc/kubernetes/pki/etcd/ca.crt"))).toBe("restored etcd/ca.crt\n");
      expect(fileText(at(node.sandbox, "var/lib/etcd/member/snap/db"))).toBe("restored data\n");
      expect(fileText(at(node.sandbox, markerPath.slice(1)))).toContain(`ca=${clusterCa().hash}\n`);
      expectKeyGone(node, result);
    });

    test("--restore-from without a seed: refuses rather than start an empty cluster, nothing written", () => {
      const net = makeNetwork(tmp(), "unseeded");
      const node = makeNode(net, 1);
      const result = runMember(node, ["10.20.1.12", "10.20.1.13"], { extra: ["--restore-from", backupKey] });
      expect(result.status).toBe(1);
      expect(result.stdout).toBe("");
      expect(result.stderr).toContain(
        `restoreFrom is ${backupKey} and no member answers, but this node holds no restored data`,
      );
      expect(result.stderr).toContain("pulumi up --replace the URN of its restore-seed command");
      expect(kubeadmCalls(node)).toEqual([]);
      expect(fs.existsSync(at(node.sandbox, "var/lib/kubernetes-node"))).toBe(false);
      expectKeyGone(node, result);
    });

    test("seeded from another cluster's backup (its CA is not --cluster-ca): refused, nothing run", () => {
      const net = makeNetwork(tmp(), "other-backup");
      const node = makeNode(net, 1);
      fs.mkdirSync(at(node.sandbox, "var/lib/kubernetes-node"), { recursive: true });
      const other = makeClusterCa(tmp(), "other-cluster-ca");
      seed(node, other);
      const result = runMember(node, [], { extra: ["--cluster-ca", clusterCa().hash, "--restore-from", "latest"] });
      expect(result.status).toBe(1);
      expect(result.stderr).toContain(
        `this node was seeded from ${backupKey}, whose cluster CA hash is ${other.hash}, but the stack records ${clusterCa().hash}`,
      );
      expect(kubeadmCalls(node)).toEqual([]);
      expect(fs.existsSync(at(node.sandbox, markerPath.slice(1)))).toBe(false);
    });

    test("a seeded node whose restored data a reset removed: kubeadm-init.sh refuses and says to seed again", () => {
      const net = makeNetwork(tmp(), "seed-reset");
      const node = makeNode(net, 1);
      fs.mkdirSync(at(node.sandbox, "var/lib/kubernetes-node"), { recursive: true });
      seed(node, clusterCa());
      fs.rmSync(at(node.sandbox, "var/lib/etcd"), { recursive: true });
      const result = runMember(node, [], { extra: ["--restore-from", "latest"] });
      expect(result.status).toBe(1);
      expect(result.stderr).toContain(
        `${seedRecord} records a restore of ${backupKey}, but /var/lib/etcd/member or /etc/kubernetes/pki/ca.crt is missing`,
      );
      expect(result.stderr).toContain("seed this node again");
      expect(kubeadmCalls(node)).toEqual([]);
    });
  });

  test("a peer that mints credentials of another cluster (CA hash ≠ --cluster-ca): refused, revoked there, nothing written", () => {
    const net = makeNetwork(tmp(), "other-ca");
    const a = initializedNode(net, 1);
    const b = makeNode(net, 2, { cluster: a });
    const recorded = makeClusterCa(tmp(), "recorded-ca").hash;
    const result = runMember(b, [a], { extra: ["--cluster-ca", recorded] });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(
      `${a.ip} serves a cluster whose CA hash is ${clusterCa().hash}, but the stack records ${recorded}`,
    );
    expect(mints(a)).toBe(1);
    expect(revocations(a)).toBe(1);
    expect(kubeadmCalls(b)).toEqual([]);
    expect(attempt(b)).toBeUndefined();
    expectKeyGone(b, result);
  });

  test("a failed revocation is a warning: the join stands", () => {
    const net = makeNetwork(tmp(), "revoke-fails");
    const a = initializedNode(net, 1);
    // The peer's kubeadm cannot delete the token (its API call fails).
    addHostEnv(net, a.ip, "FAKE_FAIL", "token-delete");
    const b = makeNode(net, 2, { cluster: a });
    const result = runMember(b, [a]);
    expectStatus(result, 0);
    expect(result.stdout).toBe(`prod-nbg1-cp-2: joined through ${a.ip}\n`);
    expect(result.stderr).toContain(`warning: could not revoke the join credentials on ${a.ip}`);
    expect(result.stderr).toContain("bootstrap token abcdef expires 15m after it was minted");
    expectKeyGone(b, result);
  });

  describe("two nodes never both init", () => {
    test("node A inits; node B, with A as its peer, joins through A", () => {
      const net = makeNetwork(tmp(), "two");
      const a = makeNode(net, 1);
      const b = makeNode(net, 2, { cluster: a });
      const first = runMember(a, [b]);
      expectStatus(first, 0);
      expect(first.stdout).toBe("prod-nbg1-cp-1: initialized\n");
      // A's API server and etcd now answer on the private network.
      serve(net, a.ip, 6443, "200");
      serve(net, a.ip, 2379, "open");
      const second = runMember(b, [a]);
      expectStatus(second, 0);
      expect(second.stdout).toBe(`prod-nbg1-cp-2: joined through ${a.ip}\n`);
      expect(kubeadmCalls(b).some((c) => c.startsWith("kubeadm init"))).toBe(false);
      expect(phasesRun(b.sandbox)).toEqual(joinPhases.map((p) => `join:${p}`));
      expect(markerRole(b)).toBe("join");
    });

    test("A's etcd port alone answers (its API server is down): B joins, never inits", () => {
      const net = makeNetwork(tmp(), "two-etcd");
      const a = initializedNode(net, 1);
      serve(net, a.ip, 6443, "000");
      const b = makeNode(net, 2, { cluster: a });
      const result = runMember(b, [a]);
      // It decided to join; with no healthy peer, the mint fails: refused, never an init.
      expect(result.status).toBe(1);
      expect(result.stderr).toContain(`a member answers: ${a.ip}:2379 (etcd accepts TCP connections); joining`);
      expect(result.stderr).toContain(`  ${a.ip}: /readyz gave no HTTP answer\n`);
      expect(kubeadmCalls(b)).toEqual([]);
    });

    test("only the endpoint answers, with 500: B joins (through A once A is ready)", () => {
      const net = makeNetwork(tmp(), "two-endpoint");
      const a = initializedNode(net, 1);
      // A does not answer B's first probe, then does; its etcd port is closed; the load balancer
      // endpoint answers 500 (a degraded API server).
      serve(net, a.ip, 6443, "000 200");
      unserve(net, a.ip, 2379);
      serve(net, endpointIp, 6443, "500");
      const b = makeNode(net, 2, { cluster: a });
      const result = runMember(b, [a]);
      expectStatus(result, 0);
      expect(result.stderr).toContain(`a member answers: ${endpointUrl} (HTTP 500); joining`);
      expect(result.stdout).toBe(`prod-nbg1-cp-2: joined through ${a.ip}\n`);
      expect(kubeadmCalls(b).some((c) => c.startsWith("kubeadm init"))).toBe(false);
    });
  });

  describe("retries: a re-run after kubeadm stopped in any phase converges or refuses with the reset commands", () => {
    // kubeadm-join.sh's outcome on the re-run (tests/nodeScripts.test.ts has the same table for
    // kubeadm-join.sh alone): refuse for the phases that leave a state no phase can finish.
    const joinRefuses = new Set(["control-plane-prepare", "check-etcd", "kubelet-start", "etcd-join"]);

    test.each(joinPhases.map((p) => [p]))("kubeadm join stopped after %s", (phase) => {
      const net = makeNetwork(tmp(), "join-retry");
      const a = initializedNode(net, 1);
      const b = makeNode(net, 2, { cluster: a });
      const last = phase === joinPhases[joinPhases.length - 1];
      // The last phase cannot fail after itself: there kubeadm succeeded and the etcd gate fails
      // (within --timeout, which also bounds the SSH call that mints).
      const first = runMember(b, [a], {
        extra: last ? ["--timeout", "3"] : [],
        env: last ? { FAKE_FAIL: "etcd" } : { FAKE_KUBEADM_FAIL_AFTER: phase },
      });
      expect(first.status).toBe(1);
      expect(first.stdout).toBe("");
      expect(attempt(b)).toMatch(/^role=join\nnode=prod-nbg1-cp-2\nstarted=\S+\n$/);
      expect(markerRole(b)).toBeUndefined();
      expect([mints(a), revocations(a)]).toEqual([1, 1]);
      expectKeyGone(b, first);

      // The re-run takes the join up with credentials minted afresh (no probe: the record).
      resetCalls(b.sandbox);
      const second = runMember(b, [a]);
      expect([mints(a), revocations(a)]).toEqual([2, 2]);
      expect(calls(b.sandbox).filter((c) => c.startsWith("curl "))).toEqual([
        `curl --silent --insecure --max-time 5 --write-out \\n%{http_code} https://${a.ip}:6443/readyz`,
      ]);
      expectKeyGone(b, second);
      if (joinRefuses.has(phase)) {
        expect(second.status).toBe(1);
        expect(second.stderr).toContain("kubeadm join stopped half way on this node");
        expect(attempt(b)).toMatch(/^role=join\n/);
        expect(markerRole(b)).toBeUndefined();
        resetAsPrinted(b, second.stderr);
        const third = runMember(b, [a]);
        expectStatus(third, 0);
        expect(third.stdout).toBe(`prod-nbg1-cp-2: joined through ${a.ip}\n`);
        expect(mints(a)).toBe(3);
      } else {
        expectStatus(second, 0);
        expect(second.stdout).toMatch(/^prod-nbg1-cp-2: (joined through 10\.20\.1\.11|adopted \(join\))\n$/);
      }
      expect(markerRole(b)).toBe("join");
      expect(attempt(b)).toBeUndefined();
    });

    // kubeadm-init.sh's outcome on the re-run: refuse only after the etcd phase (its manifest
    // alone); every other stop is finished, re-run or adopted.
    test.each(initPhases.map((p) => [p]))("kubeadm init stopped after %s", (phase) => {
      const net = makeNetwork(tmp(), "init-retry");
      const a = makeNode(net, 1);
      const last = phase === initPhases[initPhases.length - 1];
      const first = runMember(a, ["10.20.1.12"], {
        extra: last ? ["--timeout", "1"] : [],
        env: last ? { FAKE_FAIL: "readyz" } : { FAKE_KUBEADM_FAIL_AFTER: phase },
      });
      expect(first.status).toBe(1);
      expect(attempt(a)).toMatch(/^role=init\nnode=prod-nbg1-cp-1\nstarted=\S+\n$/);
      expect(markerRole(a)).toBeUndefined();
      expectKeyGone(a, first);

      // The re-run stays an init because of the record, even with a peer that answers now.
      serve(net, "10.20.1.12", 6443, "200");
      resetCalls(a.sandbox);
      const second = runMember(a, ["10.20.1.12"]);
      expect(calls(a.sandbox).some((c) => c.startsWith("ssh "))).toBe(false);
      expect(calls(a.sandbox).some((c) => c.includes("10.20.1.12"))).toBe(false);
      expectKeyGone(a, second);
      if (phase === "etcd") {
        expect(second.status).toBe(1);
        expect(second.stderr).toContain("kubeadm init stopped half way on this node");
        expect(attempt(a)).toMatch(/^role=init\n/);
        resetAsPrinted(a, second.stderr);
        const third = runMember(a, ["10.20.1.12"]);
        expectStatus(third, 0);
        expect(third.stdout).toBe("prod-nbg1-cp-1: initialized\n");
      } else {
        expectStatus(second, 0);
        expect(second.stdout).toMatch(/^prod-nbg1-cp-1: (initialized|adopted \(init\))\n$/);
      }
      expect(markerRole(a)).toBe("init");
      expect(attempt(a)).toBeUndefined();
    });
  });

  test("stdin: an empty one or one that is not a private key is refused before anything runs, without echoing it", () => {
    const net = makeNetwork(tmp(), "stdin");
    const node = makeNode(net, 1);
    const empty = runMember(node, [], { input: "" });
    expect(empty.status).toBe(1);
    expect(empty.stderr).toContain("stdin is empty; expected the SSH private key");
    const notKey = "JOIN_TOKEN=abcdef.0123456789abcdef\n";
    const wrong = runMember(node, [], { input: notKey });
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toContain("stdin is not an SSH private key in OpenSSH or PEM format");
    expect(wrong.stderr).not.toContain("0123456789abcdef");
    // A public key is not a private key either.
    const pub = runMember(node, [], { input: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake\n" });
    expect(pub.status).toBe(1);
    expect(calls(node.sandbox)).toEqual([]);
    expect(fs.readdirSync(at(node.sandbox, "run"))).toEqual([]);
  });

  test("usage errors run nothing", () => {
    const net = makeNetwork(tmp(), "usage");
    const node = makeNode(net, 1);
    const cases: [string[], string][] = [
      [memberArgs(node, ["10.20.1.300"]), "--peers must be IPv4 addresses"],
      [memberArgs(node, ["10.20.1.12", ""]), "--peers must be IPv4 addresses"],
      [memberArgs(node, [], ["--cluster-ca", "sha1:abc"]), "--cluster-ca must be sha256:<64 hex>"],
      [memberArgs(node, []).filter((a, i, all) => a !== "--peers" && all[i - 1] !== "--peers"), "--peers is required"],
      [memberArgs(node, []).map((a) => (a === endpointUrl ? "http://x/readyz" : a)), "--endpoint-url must be"],
    ];
    for (const [args, message] of cases) {
      const result = runNodeScript(node.sandbox, "kubeadm-member.sh", args, { input: sshKey().text });
      expect({ status: result.status, message: result.stderr.includes(message) }).toEqual({ status: 2, message: true });
    }
    // The kubeadm files must be this node's.
    const other = runNodeScript(
      node.sandbox,
      "kubeadm-member.sh",
      memberArgs({ ...node, name: "prod-nbg1-cp-9" }, []),
      {
        input: sshKey().text,
      },
    );
    expect(other.status).toBe(1);
    expect(other.stderr).toContain(
      `--init-config ${initConfigPath} is for node prod-nbg1-cp-1, not --node-name prod-nbg1-cp-9`,
    );
    expect(calls(node.sandbox)).toEqual([]);
  });
});

describe("mint-join-credentials.sh --revoke", () => {
  test("deletes the bootstrap token and Secret kube-system/kubeadm-certs; a token that is gone fails", () => {
    const net = makeNetwork(tmp(), "revoke");
    const a = initializedNode(net, 1);
    const minted = runNodeScript(a.sandbox, "mint-join-credentials.sh", ["--ttl", "15m"]);
    expectStatus(minted, 0);
    expect(minted.stdout).toContain(`${joinVariables.token}=${token}\n`);
    const secret = path.join(fakeClusterDir(a.sandbox), "objects/kube-system/secrets/kubeadm-certs");
    expect(fs.existsSync(secret)).toBe(true);

    resetCalls(a.sandbox);
    const revoked = runNodeScript(a.sandbox, "mint-join-credentials.sh", ["--revoke", "abcdef"]);
    expectStatus(revoked, 0);
    expect(revoked.stdout).toBe("");
    expect(calls(a.sandbox)).toEqual([
      "kubeadm token delete abcdef",
      "kubectl --kubeconfig $ROOT/etc/kubernetes/admin.conf -n kube-system delete secret kubeadm-certs --ignore-not-found",
    ]);
    expect(fs.existsSync(secret)).toBe(false);

    const again = runNodeScript(a.sandbox, "mint-join-credentials.sh", ["--revoke", "abcdef"]);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain("kubeadm token delete abcdef failed");
    // Only the public id is accepted: a whole token is a usage error.
    const whole = runNodeScript(a.sandbox, "mint-join-credentials.sh", ["--revoke", token]);
    expect(whole.status).toBe(2);
    expect(whole.stderr).not.toContain(token.split(".")[1]);
  });
});
