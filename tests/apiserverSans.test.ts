/**
 * scripts/node/apiserver-sans.sh: the API server certificate's SANs changed on one control-plane
 * node, run for real with bash under a temporary root (tests/support/nodeSandbox.ts).
 *
 * What is real: the certificates (the fake kubeadm's `init phase certs apiserver` makes them with
 * openssl from a real CA, with kubeadm's SAN list, and keeps or refuses an existing pair as kubeadm
 * does: tests/support/fake-kubeadm.sh), the API server's TLS (an `openssl s_server` serving the
 * pair on disk, started and stopped as the kubelet runs the static pod:
 * tests/support/localApiserver.ts; the script's `openssl s_client` reads what it serves), and etcd
 * (a 3-member TLS cluster on loopback, tests/support/etcdCluster.ts, reached through the fake
 * `kubectl exec etcd-NODE -- etcdctl`: tests/support/etcdPodKubectl.ts). Faked: kubectl's
 * ConfigMap read and merge patch (a state file), crictl (tests/support/staticPods.ts).
 *
 * What this cannot prove: that a real kube-apiserver comes up with the new pair, that a real
 * kubeadm 1.34 reads the edited ClusterConfiguration as the fake does (its layout is the one
 * sigs.k8s.io/yaml writes; the fake reads only the fields that make the SANs), and that the
 * kubectl patch is accepted by a real API server. The proof of those is a SAN change on a real
 * cluster.
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { EtcdCluster, freePorts } from "./support/etcdCluster";
import { addEtcdPod, etcdPodEnv, etcdPodExecArm } from "./support/etcdPodKubectl";
import { fakeKubeadm, fakeKubeadmCertTools, fakeKubeadmTools, makeClusterCa } from "./support/fakeKubeadm";
import {
  apiserverKubelet,
  apiserverStarts,
  localApiserverTools,
  localReadyzArm,
  startApiserver,
  stopApiserver,
} from "./support/localApiserver";
import {
  at,
  calls,
  etcdHealthCall,
  expectScriptContract,
  expectShellcheckClean,
  expectStatus,
  makeSandbox,
  mode,
  nodeScriptsDir,
  readyzCall,
  resetCalls,
  runNodeScript,
  type Run,
  type Sandbox,
  useTempDir,
} from "./support/nodeSandbox";
import { crictlCall, crictlFake, kubeVipManifest } from "./support/staticPods";
import { requireTool } from "./support/tools";

const tmp = useTempDir("apiserver-sans-test-");
const script = "apiserver-sans.sh";

const node = "prod-nbg1-cp-2";
const nodeIp = "127.0.0.1";
const adminConf = "/etc/kubernetes/admin.conf";
const pki = "/etc/kubernetes/pki";
const manifests = "/etc/kubernetes/manifests";
const work = "/var/lib/kubernetes-node/apiserver-sans";
const backups = "/etc/kubernetes/tmp";
const kubeconfig = `$ROOT${adminConf}`;

/**
 * The cluster's ClusterConfiguration as kubeadm's upload-config phase writes it into ConfigMap
 * kube-system/kubeadm-config (UploadConfiguration in cmd/kubeadm/app/phases/uploadconfig/
 * uploadconfig.go; sigs.k8s.io/yaml: sorted keys, list items at their key's indentation), with
 * what components/node/kubeadm.ts renders: certSANs (the endpoint among them), audit extraArgs.
 */
const clusterConfiguration = (endpoint: string, certSans: string[]): string =>
  [
    "apiServer:",
    ...(certSans.length ? ["  certSANs:", ...certSans.map((s) => `  - ${s}`)] : []),
    "  extraArgs:",
    "  - name: audit-log-maxage",
    '    value: "30"',
    "apiVersion: kubeadm.k8s.io/v1beta4",
    "caCertificateValidityPeriod: 87600h0m0s",
    "certificateValidityPeriod: 8760h0m0s",
    "certificatesDir: /etc/kubernetes/pki",
    "clusterName: prod",
    `controlPlaneEndpoint: ${endpoint}:6443`,
    "controllerManager: {}",
    "dns: {}",
    "encryptionAlgorithm: RSA-2048",
    "etcd:",
    "  local:",
    "    dataDir: /var/lib/etcd",
    "imageRepository: registry.k8s.io",
    "kind: ClusterConfiguration",
    "kubernetesVersion: v1.34.2",
    "networking:",
    "  dnsDomain: cluster.local",
    "  podSubnet: 10.244.0.0/16",
    "  serviceSubnet: 10.96.0.0/12",
    "proxy: {}",
    "scheduler: {}",
    "",
  ].join("\n");

const lbPrivate = "10.20.1.5";
const lbPublic = "203.0.113.50";
const lbPublicV6 = "2a01:4f8:c012:abcd::1";
const dnsName = "api.prod.example.com";
/** Before: the load balancer's private and public IPs. */
const oldSans = [lbPrivate, lbPublic, lbPublicV6];
const oldConfig = clusterConfiguration(lbPrivate, oldSans);

// ---------------------------------------------------------------------------------------------
// Fakes (after nodeSandbox's prelude).

/**
 * kubectl: the ConfigMap (state file $FAKE_CAPTURE/kubeadm-config, the ClusterConfiguration key),
 * this node's /readyz over real TLS, etcd through the real cluster.
 * - `get configmap kubeadm-config -o jsonpath={.data.ClusterConfiguration}`: jsonpath prints the
 *   string verbatim (k8s.io/client-go/util/jsonpath); FAKE_FAIL=configmap-read: the connection is
 *   refused (k8s.io/kubectl pkg/cmd/util/helpers.go).
 * - `patch configmap kubeadm-config --type merge --patch-file F`: a JSON merge patch (RFC 7386):
 *   data.ClusterConfiguration replaced, every other field kept; an unparsable file is refused;
 *   prints `configmap/kubeadm-config patched`, or `... patched (no change)` when nothing changes
 *   (k8s.io/kubectl pkg/cmd/patch/patch.go). FAKE_FAIL=configmap-patch: the API server refuses it.
 */
const kubectlFake = `
${apiserverKubelet}
case "$*" in
${localReadyzArm}
${etcdPodExecArm}
  *" -n kube-system get configmap kubeadm-config -o jsonpath={.data.ClusterConfiguration}")
    if fails configmap-read; then
      echo "The connection to the server 10.20.1.5:6443 was refused - did you specify the right host or port?" >&2; exit 1
    fi
    cat "$FAKE_CAPTURE/kubeadm-config"
    ;;
  *" -n kube-system patch configmap kubeadm-config --type merge --patch-file "*)
    if fails configmap-patch; then
      echo 'Error from server (InternalError): Internal error occurred: resource quota evaluation timed out' >&2; exit 1
    fi
    file="\${*: -1}"
    jq -je '.data.ClusterConfiguration' "$file" >"$FAKE_CAPTURE/kubeadm-config.new" 2>/dev/null ||
      { echo "error: unable to parse \\"$file\\"" >&2; exit 1; }
    if cmp -s "$FAKE_CAPTURE/kubeadm-config.new" "$FAKE_CAPTURE/kubeadm-config"; then
      echo "configmap/kubeadm-config patched (no change)"
    else
      mv "$FAKE_CAPTURE/kubeadm-config.new" "$FAKE_CAPTURE/kubeadm-config"
      echo "configmap/kubeadm-config patched"
    fi
    ;;
  *) echo "fake kubectl: unexpected $*" >&2; exit 99 ;;
esac`;

/** crictl: the kubelet acts first (the local API server follows its manifest), then staticPods' crictl. */
const crictlWithKubelet = `
${apiserverKubelet}
kubelet_sync_apiserver
${crictlFake}`;

const realTools = [
  ...new Set([
    ...["bash", "cat", "dirname", "install", "ln", "mktemp", "mv", "rm", "rmdir", "sleep", "timeout"], // the script
    ...["awk", "date", "grep", "openssl", "paste", "sed", "sort", "tr"], // the script
    ...fakeKubeadmTools,
    ...fakeKubeadmCertTools,
    ...localApiserverTools,
    ...["cmp", "jq"], // the fake kubectl
  ]),
];

// ---------------------------------------------------------------------------------------------
// The node.

let cluster: EtcdCluster;
let caDir: string;

beforeAll(async () => {
  requireTool("/usr/bin/openssl", "openssl");
  requireTool("/usr/bin/jq", "jq");
  caDir = makeClusterCa(tmp(), "cluster-ca").dir;
  cluster = await EtcdCluster.create({ baseDir: tmp(), tls: true });
  await cluster.startAll();
}, 90_000);

afterAll(async () => {
  // Every etcd process started here is stopped by its PID (EtcdCluster.stop), the dir removed.
  if (cluster) await cluster.cleanup();
});

const sandboxes: Sandbox[] = [];
afterEach(() => {
  for (const sandbox of sandboxes.splice(0)) stopApiserver(sandbox);
});

/**
 * A control-plane node whose apiserver.crt kubeadm made from `config` (the fake kubeadm, as init
 * did), running its API server with it, kube-vip beside it; the cluster's ConfigMap holds `config`.
 */
async function makeNode(name: string, config = oldConfig): Promise<Sandbox> {
  const [port] = await freePorts(1);
  const files: Record<string, string> = {
    [adminConf]: "apiVersion: v1\nkind: Config\n",
    [`${manifests}/kube-vip.yaml`]: kubeVipManifest,
  };
  for (const c of ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"]) {
    files[`${manifests}/${c}.yaml`] = `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${c}\n  namespace: kube-system\n`;
  }
  const sandbox = makeSandbox(tmp(), name, {
    fakes: { kubeadm: fakeKubeadm, kubectl: kubectlFake, crictl: crictlWithKubelet },
    realTools,
    files,
    env: {
      ...etcdPodEnv(cluster),
      FAKE_APISERVER_PORT: String(port),
      FAKE_TOKEN: "abcdef.0123456789abcdef",
      FAKE_CA_CERT_HASH: "sha256:0",
      FAKE_CERT_KEY: "0",
    },
  });
  sandbox.env.FAKE_MANIFESTS = at(sandbox, manifests);
  sandboxes.push(sandbox);
  fs.mkdirSync(at(sandbox, pki), { recursive: true });
  fs.copyFileSync(path.join(caDir, "ca.crt"), at(sandbox, `${pki}/ca.crt`));
  fs.copyFileSync(path.join(caDir, "ca.key"), at(sandbox, `${pki}/ca.key`));
  fs.writeFileSync(path.join(sandbox.capture, "kubeadm-config"), config);
  addEtcdPod(sandbox, node, cluster.member("etcd-1").clientUrl);
  // The certificate kubeadm init made on this node.
  const init = path.join(sandbox.capture, "init.yaml");
  fs.writeFileSync(
    init,
    [
      "apiVersion: kubeadm.k8s.io/v1beta4",
      "kind: InitConfiguration",
      "localAPIEndpoint:",
      `  advertiseAddress: ${nodeIp}`,
      `  bindPort: ${port}`,
      "nodeRegistration:",
      `  name: ${node}`,
      "---",
      config.replace("certificatesDir: /etc/kubernetes/pki", `certificatesDir: ${at(sandbox, pki)}`),
    ].join("\n"),
  );
  const made = spawnSync(
    "/bin/bash",
    [path.join(sandbox.fakeBin, "kubeadm"), "init", "phase", "certs", "apiserver", "--config", init],
    { env: sandbox.env, encoding: "utf8" },
  );
  if (made.status !== 0) throw new Error(`the fake kubeadm made no certificate: ${made.stderr}`);
  startApiserver(sandbox);
  resetCalls(sandbox);
  return sandbox;
}

const portOf = (sandbox: Sandbox) => sandbox.env.FAKE_APISERVER_PORT;
const args = (sandbox: Sandbox, endpoint: string, sans: string[], extra: string[] = []) => [
  "--node-name",
  node,
  "--node-ip",
  nodeIp,
  "--endpoint",
  endpoint,
  ...sans.flatMap((s) => ["--san", s]),
  "--local-port",
  portOf(sandbox),
  ...extra,
];
const run = (sandbox: Sandbox, argv: string[], env: Record<string, string> = {}): Run =>
  runNodeScript(sandbox, script, argv, { env, timeoutMs: 60_000 });

/** The SANs of a certificate as openssl prints them, sorted, duplicates dropped. */
function sansOf(file: string): string[] {
  const out = spawnSync("/usr/bin/openssl", ["x509", "-in", file, "-noout", "-ext", "subjectAltName"], {
    encoding: "utf8",
  });
  if (out.status !== 0) throw new Error(out.stderr);
  return [
    ...new Set(
      out.stdout
        .split("\n")
        .slice(1)
        .join(",")
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean),
    ),
  ].sort();
}
function fingerprint(file: string): string {
  const out = spawnSync("/usr/bin/openssl", ["x509", "-in", file, "-noout", "-fingerprint", "-sha256"], {
    encoding: "utf8",
  });
  return out.stdout.trim();
}
/** The certificate the local API server serves right now (a real TLS handshake). */
function servedFingerprint(sandbox: Sandbox): string {
  const served = spawnSync("/usr/bin/openssl", ["s_client", "-connect", `127.0.0.1:${portOf(sandbox)}`], {
    input: "",
    encoding: "utf8",
    timeout: 10_000,
  });
  const fp = spawnSync("/usr/bin/openssl", ["x509", "-noout", "-fingerprint", "-sha256"], {
    input: served.stdout,
    encoding: "utf8",
  });
  return fp.stdout.trim();
}

const crt = (sandbox: Sandbox) => at(sandbox, `${pki}/apiserver.crt`);
const key = (sandbox: Sandbox) => at(sandbox, `${pki}/apiserver.key`);
const configMap = (sandbox: Sandbox) => fs.readFileSync(path.join(sandbox.capture, "kubeadm-config"), "utf8");
const backupDirs = (sandbox: Sandbox) =>
  fs.existsSync(at(sandbox, backups)) ? fs.readdirSync(at(sandbox, backups)).sort() : [];
const pending = (sandbox: Sandbox) => fs.existsSync(at(sandbox, `${work}/pending`));

/** kubeadm's defaults for this node (GetAPIServerAltNames), as openssl prints them. */
const defaults = [
  `DNS:${node}`,
  "DNS:kubernetes",
  "DNS:kubernetes.default",
  "DNS:kubernetes.default.svc",
  "DNS:kubernetes.default.svc.cluster.local",
  "IP Address:10.96.0.1",
  `IP Address:${nodeIp}`,
];
const v6 = "IP Address:2A01:4F8:C012:ABCD:0:0:0:1";
const expectedSans = (extra: string[]) => [...new Set([...defaults, ...extra])].sort();

const readyz = (sandbox: Sandbox) => readyzCall(kubeconfig, ["--server", `https://${nodeIp}:${portOf(sandbox)}`]);
const gateCalls = (sandbox: Sandbox) => [readyz(sandbox), etcdHealthCall(kubeconfig, node)];
const configMapGet = `kubectl --kubeconfig ${kubeconfig} -n kube-system get configmap kubeadm-config -o jsonpath={.data.ClusterConfiguration}`;
const certsCall = `kubeadm init phase certs apiserver --config $ROOT${work}/kubeadm.yaml`;
const patchCall = `kubectl --kubeconfig ${kubeconfig} -n kube-system patch configmap kubeadm-config --type merge --patch-file $ROOT${work}/configmap-patch.json`;

// ---------------------------------------------------------------------------------------------

describe("apiserver-sans.sh", () => {
  test("shellcheck passes; bash strict mode, --help documents every flag", async () => {
    expectShellcheckClean([script]);
    expectScriptContract(await makeNode("help"), script, [
      "--node-name",
      "--node-ip",
      "--endpoint",
      "--san",
      "--local-port",
      "--timeout",
      "--root",
      "ROOT",
      "POLL_SECONDS",
      "/etc/kubernetes/tmp/apiserver-sans-",
      "kube-vip",
    ]);
  });

  test("no change: nothing is done, the certificate stays, no gate, no restart", async () => {
    const sandbox = await makeNode("unchanged");
    const before = fingerprint(crt(sandbox));
    const result = run(sandbox, args(sandbox, lbPrivate, [lbPublicV6, lbPublic]));
    expectStatus(result, 0);
    expect(result.stderr).toContain("already has the wanted SANs and is served; nothing to do");
    expect(calls(sandbox)).toEqual([configMapGet, certsCall]);
    expect(fingerprint(crt(sandbox))).toBe(before);
    expect(configMap(sandbox)).toBe(oldConfig);
    expect(backupDirs(sandbox)).toEqual([]);
    expect(fs.existsSync(at(sandbox, `${work}/staging`))).toBe(false);
    expect(apiserverStarts(sandbox)).toEqual([before]);
  });

  test("a new DNS name: ConfigMap updated, certificate regenerated and served, old pair backed up, gates before and after; a re-run does nothing", async () => {
    const sandbox = await makeNode("change");
    const oldFingerprint = fingerprint(crt(sandbox));
    const oldKey = fs.readFileSync(key(sandbox), "utf8");
    expect(sansOf(crt(sandbox))).toEqual(expectedSans([`IP Address:${lbPrivate}`, `IP Address:${lbPublic}`, v6]));

    const wanted = [lbPublic, lbPublicV6, dnsName, lbPrivate];
    const result = run(sandbox, args(sandbox, lbPrivate, wanted));
    expectStatus(result, 0);

    // The certificate: kubeadm's defaults, the endpoint, every --san; served by the restarted API server.
    const newFingerprint = fingerprint(crt(sandbox));
    expect(newFingerprint).not.toBe(oldFingerprint);
    expect(sansOf(crt(sandbox))).toEqual(
      expectedSans([`DNS:${dnsName}`, `IP Address:${lbPrivate}`, `IP Address:${lbPublic}`, v6]),
    );
    expect(servedFingerprint(sandbox)).toBe(newFingerprint);
    expect(apiserverStarts(sandbox)).toEqual([oldFingerprint, newFingerprint]);
    expect(mode(crt(sandbox))).toBe("644");
    expect(mode(key(sandbox))).toBe("600");

    // The ConfigMap: certSANs sorted with the endpoint, everything else as it was.
    expect(configMap(sandbox)).toBe(clusterConfiguration(lbPrivate, [...wanted].sort()));

    // The backup: the old pair, 0600 in a 0700 directory named by the UTC time.
    const dirs = backupDirs(sandbox);
    expect(dirs).toHaveLength(1);
    expect(dirs[0]).toMatch(/^apiserver-sans-\d{8}T\d{6}Z$/);
    const backup = at(sandbox, `${backups}/${dirs[0]}`);
    expect(mode(backup)).toBe("700");
    expect(mode(path.join(backup, "apiserver.crt"))).toBe("600");
    expect(mode(path.join(backup, "apiserver.key"))).toBe("600");
    expect(fingerprint(path.join(backup, "apiserver.crt"))).toBe(oldFingerprint);
    expect(fs.readFileSync(path.join(backup, "apiserver.key"), "utf8")).toBe(oldKey);
    expect(pending(sandbox)).toBe(false);
    expect(fs.existsSync(at(sandbox, `${work}/staging`))).toBe(false);

    // Gates before anything changed and after the restart; only kube-apiserver restarted.
    const log = calls(sandbox);
    expect(log).toEqual([
      configMapGet,
      certsCall,
      ...gateCalls(sandbox),
      patchCall,
      configMapGet,
      ...log.slice(6, log.indexOf(readyz(sandbox), 6)),
      ...gateCalls(sandbox),
    ]);
    const restart = log.slice(6, log.indexOf(readyz(sandbox), 6));
    expect(new Set(restart)).toEqual(new Set([crictlCall("kube-apiserver")]));
    expect(restart.length).toBeGreaterThanOrEqual(2);
    expect(log.some((c) => c.includes("kube-vip"))).toBe(false);
    expect(fs.readdirSync(at(sandbox, manifests)).sort()).toContain("kube-vip.yaml");
    expect(result.stderr).toContain(`the previous one is kept in ${backups}/${dirs[0]}`);

    // The same command again: nothing to do.
    resetCalls(sandbox);
    const again = run(sandbox, args(sandbox, lbPrivate, wanted));
    expectStatus(again, 0);
    expect(again.stderr).toContain("nothing to do");
    expect(calls(sandbox)).toEqual([configMapGet, certsCall]);
    expect(fingerprint(crt(sandbox))).toBe(newFingerprint);
  });

  test("a SAN removed (the public interface off): the new certificate lacks it, though kubeadm would have kept the old pair", async () => {
    const sandbox = await makeNode("remove");
    const result = run(sandbox, args(sandbox, lbPrivate, []));
    expectStatus(result, 0);
    expect(sansOf(crt(sandbox))).toEqual(expectedSans([`IP Address:${lbPrivate}`]));
    expect(servedFingerprint(sandbox)).toBe(fingerprint(crt(sandbox)));
    expect(configMap(sandbox)).toBe(clusterConfiguration(lbPrivate, [lbPrivate]));
  });

  test("a new endpoint: controlPlaneEndpoint and certSANs change, the port stays", async () => {
    const sandbox = await makeNode("endpoint");
    const result = run(sandbox, args(sandbox, dnsName, [lbPrivate]));
    expectStatus(result, 0);
    expect(configMap(sandbox)).toBe(clusterConfiguration(dnsName, [dnsName, lbPrivate].sort()));
    expect(sansOf(crt(sandbox))).toEqual(expectedSans([`DNS:${dnsName}`, `IP Address:${lbPrivate}`]));
  });

  describe("gates red before: refused, nothing changed", () => {
    test("an etcd member down: endpoint health --cluster fails (real etcd); back up, the re-run converges", async () => {
      const sandbox = await makeNode("etcd-down");
      const before = fingerprint(crt(sandbox));
      await cluster.stop("etcd-3");
      let result: Run;
      try {
        result = run(sandbox, args(sandbox, lbPrivate, [dnsName], ["--timeout", "8"]));
      } finally {
        cluster.start("etcd-3");
      }
      expect(result.status).toBe(1);
      expect(result.stderr).toContain(
        `${node}: refusing to change the API server certificate: etcd endpoint health --cluster did not pass within 8s`,
      );
      expect(result.stderr).toContain("nothing was changed");
      expect(fingerprint(crt(sandbox))).toBe(before);
      expect(configMap(sandbox)).toBe(oldConfig);
      expect(backupDirs(sandbox)).toEqual([]);
      expect(calls(sandbox).some((c) => c.startsWith("crictl") || c.includes(" patch "))).toBe(false);
      const log = fs.readFileSync(at(sandbox, "/var/log/hcloud-control-plane/apiserver-sans.log"), "utf8");
      // etcdctl's own words, through the real cluster.
      expect(log).toMatch(/is unhealthy/);

      await cluster.waitHealthy();
      const again = run(sandbox, args(sandbox, lbPrivate, [dnsName]));
      expectStatus(again, 0);
      expect(sansOf(crt(sandbox))).toContain(`DNS:${dnsName}`);
    }, 60_000);

    test("this node's API server not ready: refused", async () => {
      const sandbox = await makeNode("not-ready");
      const before = fingerprint(crt(sandbox));
      const result = run(sandbox, args(sandbox, lbPrivate, [dnsName], ["--timeout", "3"]), { FAKE_FAIL: "readyz" });
      expect(result.status).toBe(1);
      expect(result.stderr).toContain(
        `${node}: refusing to change the API server certificate: this node's API server did not report ready within 3s`,
      );
      expect(fingerprint(crt(sandbox))).toBe(before);
      expect(configMap(sandbox)).toBe(oldConfig);
      expect(backupDirs(sandbox)).toEqual([]);
    });
  });

  test("the API server does not come up with the new certificate: the old pair is put back and served, exit 1; fixed, the re-run converges", async () => {
    const sandbox = await makeNode("rollback");
    const oldFingerprint = fingerprint(crt(sandbox));
    const result = run(sandbox, args(sandbox, lbPrivate, [...oldSans, dnsName], ["--timeout", "4"]), {
      FAKE_READYZ_FAILS_WITH: dnsName,
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(
      `${node}: gate after: this node's API server did not report ready within 4s (kubectl get --raw /readyz at https://${nodeIp}:${portOf(sandbox)})`,
    );
    expect(result.stderr).toContain("the previous certificate is back");
    expect(result.stderr).toContain("fix the cause and run the same command again");
    expect(fingerprint(crt(sandbox))).toBe(oldFingerprint);
    expect(servedFingerprint(sandbox)).toBe(oldFingerprint);
    const starts = apiserverStarts(sandbox);
    expect(starts[0]).toBe(oldFingerprint);
    expect(starts[1]).not.toBe(oldFingerprint);
    expect(starts[2]).toBe(oldFingerprint);
    expect(pending(sandbox)).toBe(false);
    expect(backupDirs(sandbox)).toHaveLength(1);
    // The ConfigMap keeps the wanted certSANs.
    expect(configMap(sandbox)).toBe(clusterConfiguration(lbPrivate, [...oldSans, dnsName].sort()));

    const again = run(sandbox, args(sandbox, lbPrivate, [...oldSans, dnsName]));
    expectStatus(again, 0);
    expect(sansOf(crt(sandbox))).toContain(`DNS:${dnsName}`);
    expect(servedFingerprint(sandbox)).toBe(fingerprint(crt(sandbox)));
  });

  describe("a re-run after a failure at each step converges", () => {
    const wanted = [lbPrivate, dnsName];
    const converges = (sandbox: Sandbox) => {
      resetCalls(sandbox);
      const again = run(sandbox, args(sandbox, lbPrivate, wanted));
      expectStatus(again, 0);
      expect(sansOf(crt(sandbox))).toEqual(expectedSans([`DNS:${dnsName}`, `IP Address:${lbPrivate}`]));
      expect(servedFingerprint(sandbox)).toBe(fingerprint(crt(sandbox)));
      expect(configMap(sandbox)).toBe(clusterConfiguration(lbPrivate, wanted.sort()));
      expect(pending(sandbox)).toBe(false);
      resetCalls(sandbox);
      expectStatus(run(sandbox, args(sandbox, lbPrivate, wanted)), 0);
      expect(calls(sandbox)).toEqual([configMapGet, certsCall]);
    };

    test.each([
      ["the ConfigMap cannot be read", { FAKE_FAIL: "configmap-read" }, "cannot read a ClusterConfiguration"],
      [
        "kubeadm fails",
        { FAKE_FAIL: "certs-apiserver" },
        "kubeadm init phase certs apiserver failed; nothing was changed",
      ],
      [
        "the ConfigMap patch is refused",
        { FAKE_FAIL: "configmap-patch" },
        "kubectl patch configmap kubeadm-config failed",
      ],
    ])("%s: exit 1, the certificate untouched", async (_label, env, message) => {
      const sandbox = await makeNode("fails-early");
      const before = fingerprint(crt(sandbox));
      // kubeadm's key generation runs under the same bound: 3 s, not 1, on a busy machine.
      const result = run(sandbox, args(sandbox, lbPrivate, wanted, ["--timeout", "3"]), env);
      expect(result.status).toBe(1);
      expect(result.stderr).toContain(message);
      expect(fingerprint(crt(sandbox))).toBe(before);
      expect(backupDirs(sandbox)).toEqual([]);
      // The candidate pair (a private key nothing uses) does not outlive the run.
      expect(fs.existsSync(at(sandbox, `${work}/staging`))).toBe(false);
      converges(sandbox);
    });

    test("kube-apiserver never stops: the rollback cannot restart it either; the message gives the commands by hand; the manifest is back", async () => {
      const sandbox = await makeNode("never-gone");
      const oldFingerprint = fingerprint(crt(sandbox));
      const result = run(sandbox, args(sandbox, lbPrivate, wanted, ["--timeout", "3"]), {
        FAKE_NEVER_GONE: "kube-apiserver",
      });
      expect(result.status).toBe(1);
      const dir = `${backups}/${backupDirs(sandbox)[0]}`;
      expect(result.stderr).toContain(`${node}: kube-apiserver restart: rolling back failed: stopping kube-apiserver`);
      expect(result.stderr).toContain(
        `restore it by hand with: install -m 0600 ${dir}/apiserver.key ${pki}/apiserver.key && install -m 0644 ${dir}/apiserver.crt ${pki}/apiserver.crt`,
      );
      // The old pair is on disk again; the manifest is in place; the backup stays pending.
      expect(fingerprint(crt(sandbox))).toBe(oldFingerprint);
      expect(fs.existsSync(at(sandbox, `${manifests}/kube-apiserver.yaml`))).toBe(true);
      expect(pending(sandbox)).toBe(true);
      // A refusal now says an earlier run is unfinished and where the previous pair is.
      const refused = run(sandbox, args(sandbox, lbPrivate, wanted, ["--timeout", "3"]), { FAKE_FAIL: "readyz" });
      expect(refused.status).toBe(1);
      expect(refused.stderr).toContain(`an unfinished earlier run left the previous certificate in ${dir}`);
      converges(sandbox);
      // The backup of the first run stayed the previous certificate: no second backup.
      expect(backupDirs(sandbox)).toHaveLength(1);
      expect(fingerprint(at(sandbox, `${dir}/apiserver.crt`))).toBe(oldFingerprint);
    });

    test("killed (SIGKILL) after the new pair is in place, while kube-apiserver is stopped: the re-run puts the manifest back, restarts and converges", async () => {
      const sandbox = await makeNode("killed");
      const oldFingerprint = fingerprint(crt(sandbox));
      const child = spawn("/bin/bash", [path.join(nodeScriptsDir, script), ...args(sandbox, lbPrivate, wanted)], {
        env: { ...sandbox.env, FAKE_NEVER_GONE: "kube-apiserver" },
        stdio: "ignore",
        detached: true,
      });
      const closed = new Promise<void>((resolve) => child.on("close", () => resolve()));
      const parked = at(sandbox, "/etc/kubernetes/manifests-parked/kube-apiserver.yaml");
      for (let i = 0; i < 200 && !fs.existsSync(parked); i++) await new Promise((r) => setTimeout(r, 50));
      expect(fs.existsSync(parked)).toBe(true);
      // The whole process group: the script, its timeout and the fakes it waits for.
      if (child.pid) process.kill(-child.pid, "SIGKILL");
      await closed;
      expect(fingerprint(crt(sandbox))).not.toBe(oldFingerprint);
      expect(pending(sandbox)).toBe(true);
      // The old API server still runs (never gone); the re-run restarts it with the new pair.
      converges(sandbox);
      expect(calls(sandbox)).toEqual([configMapGet, certsCall]);
      expect(backupDirs(sandbox)).toHaveLength(1);
    });
  });

  test("usage errors", async () => {
    const sandbox = await makeNode("usage");
    const bad: [string[], string][] = [
      [["--node-ip", nodeIp, "--endpoint", lbPrivate], "--node-name must be a lowercase DNS name"],
      [["--node-name", node, "--endpoint", lbPrivate], "--node-ip must be an IPv4 address"],
      [["--node-name", node, "--node-ip", nodeIp], "--endpoint must be an IPv4 address or a lowercase DNS name"],
      [[...args(sandbox, lbPrivate, ["API.example.com"])], "--san must be an IPv4 or IPv6 address"],
      [[...args(sandbox, lbPrivate, ["2a01::4f8::1"])], "--san must be an IPv4 or IPv6 address"],
      [[...args(sandbox, lbPrivate, ["a b"])], "--san must be an IPv4 or IPv6 address"],
      [[...args(sandbox, lbPrivate, [], ["--local-port", "70000"])], "--local-port must be a port number"],
      [[...args(sandbox, lbPrivate, [], ["--timeout", "soon"])], "--timeout must be a positive whole number"],
    ];
    for (const [argv, message] of bad) {
      const result = run(sandbox, argv);
      expect({ argv, status: result.status }).toEqual({ argv, status: 2 });
      expect(result.stderr).toContain(message);
    }
    expect(calls(sandbox)).toEqual([]);
  });
});
