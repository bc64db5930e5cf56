/**
 * The kube-vip static pod manifest: validated against the Kubernetes OpenAPI schema of a v1 Pod
 * (the `kubernetes-models` package), read back by this project's parser and by PyYAML (YAML 1.1,
 * the rules kubelet's sigs.k8s.io/yaml follows), and asserted field by field.
 *
 * Every environment variable the manifest sets must be one the pinned kube-vip reads: the list
 * is data taken from kube-vip's source at that tag (tests/fixtures/kube-vip/<tag>-environment.txt,
 * its header names the files and the commit), so a variable kube-vip dropped fails here.
 *
 * What this cannot prove: that kube-vip interprets each value the way its source says, or that
 * the address moves on Hetzner (it does not without the companion; see components/node/kubeVip.ts).
 * A kubelet on a real node is the proof of that.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { Pod } from "kubernetes-models/v1/Pod";
import { parse } from "yaml";
import { kubeadmPaths } from "../components/node/kubeadm";
import {
  kubeVipImage,
  kubeVipLeaseName,
  kubeVipManifestPath,
  kubeVipMetricsPort,
  kubeVipStagedPath,
  renderKubeVipManifest,
} from "../components/node/kubeVip";
import { versions } from "../components/versions";
import { renderedElsewhen } from "./support/determinism";
import {
  at,
  calls,
  etcdHealthCall,
  expectScriptContract,
  expectShellcheckClean,
  expectStatus,
  kubectlGateArms,
  makeSandbox,
  mode,
  readyzCall,
  resetCalls,
  runNodeScript,
  type Sandbox,
  useTempDir,
} from "./support/nodeSandbox";
import {
  adminKubeconfig,
  crictlCall,
  crictlFake,
  crictlSeen,
  kubeVipLeaseArm,
  kubeVipLeaseCall,
  kubeVipSentinel,
} from "./support/staticPods";
import { pyyamlLoadAll } from "./support/tools";

interface Container {
  name: string;
  image: string;
  imagePullPolicy: string;
  args: string[];
  env: { name: string; value?: string; valueFrom?: unknown }[];
  resources: { requests: Record<string, string>; limits?: unknown };
  securityContext: { capabilities: { add: string[]; drop: string[] }; privileged?: boolean };
  volumeMounts: { name: string; mountPath: string; readOnly: boolean }[];
}
interface PodManifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; labels: Record<string, string> };
  spec: {
    containers: Container[];
    hostAliases: { ip: string; hostnames: string[] }[];
    hostNetwork: boolean;
    priorityClassName: string;
    volumes: { name: string; hostPath: { path: string; type: string } }[];
  };
}

const vip = "198.51.100.7";
const text = renderKubeVipManifest({ address: vip });
const manifest = parse(text, { version: "1.1" }) as PodManifest;
const container = manifest.spec.containers[0];

type PodData = ConstructorParameters<typeof Pod>[0];

/** The environment variables kube-vip `version` reads, from the list checked in for that tag. */
function variablesKubeVipReads(version: string): string[] {
  const file = path.join(__dirname, "fixtures", "kube-vip", `${version}-environment.txt`);
  if (!fs.existsSync(file)) {
    throw new Error(
      `${file} is missing: list the variables kube-vip ${version} reads, from its source, ` +
        "as the header of the list for the previous tag describes",
    );
  }
  return fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((line) => line !== "" && !line.startsWith("#"));
}

describe("renderKubeVipManifest", () => {
  test("is a valid v1 Pod under the Kubernetes schema", () => {
    expect(() => new Pod(manifest as unknown as PodData).validate()).not.toThrow();
  });

  test("the schema check is not a no-op: a wrongly typed field fails it", () => {
    const broken = structuredClone(manifest) as unknown as { spec: { hostNetwork: unknown } };
    broken.spec.hostNetwork = "yes";
    expect(() => new Pod(broken as unknown as PodData).validate()).toThrow();
  });

  test("one static pod kube-system/kube-vip on the host network, node-critical", () => {
    expect(manifest.apiVersion).toBe("v1");
    expect(manifest.kind).toBe("Pod");
    expect(manifest.metadata).toEqual({
      name: "kube-vip",
      namespace: "kube-system",
      labels: { "app.kubernetes.io/name": "kube-vip", "app.kubernetes.io/version": "v1.2.3" },
    });
    expect(manifest.spec.hostNetwork).toBe(true);
    expect(manifest.spec.priorityClassName).toBe("system-node-critical");
    expect(manifest.spec.containers).toHaveLength(1);
    expect(kubeVipManifestPath).toBe("/etc/kubernetes/manifests/kube-vip.yaml");
  });

  test("pinned image from versions.ts, run as `manager`", () => {
    expect(versions.kubeVip).toBe("v1.2.3");
    expect(kubeVipImage).toBe("ghcr.io/kube-vip/kube-vip:v1.2.3");
    expect(container.name).toBe("kube-vip");
    expect(container.image).toBe("ghcr.io/kube-vip/kube-vip:v1.2.3");
    expect(container.imagePullPolicy).toBe("IfNotPresent");
    expect(container.args).toEqual(["manager"]);
  });

  test("environment: ARP control-plane VIP /32 on eth0, Lease election 15/10/1 s, no services", () => {
    expect(container.env).toEqual([
      { name: "vip_arp", value: "true" },
      { name: "port", value: "6443" },
      { name: "vip_nodename", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
      { name: "vip_interface", value: "eth0" },
      { name: "cp_enable", value: "true" },
      { name: "cp_namespace", value: "kube-system" },
      { name: "svc_enable", value: "false" },
      { name: "vip_leaderelection", value: "true" },
      { name: "vip_leasename", value: "plndr-cp-lock" },
      { name: "vip_leaseduration", value: "15" },
      { name: "vip_renewdeadline", value: "10" },
      { name: "vip_retryperiod", value: "1" },
      { name: "address", value: vip },
      { name: "prometheus_server", value: ":2112" },
    ]);
    expect(kubeVipLeaseName).toBe("plndr-cp-lock");
    expect(kubeVipMetricsPort).toBe(2112);
    // Env values are strings in the API; unquoted `true` or `6443` would not decode.
    for (const value of ["true", "false", "6443", "15", "10", "1"]) {
      expect(text).toContain(`value: "${value}"`);
    }
  });

  test("every variable it sets is one the pinned kube-vip reads", () => {
    const read = new Set(variablesKubeVipReads(versions.kubeVip));
    const set = container.env.map((e) => e.name);
    expect(set.filter((name) => !read.has(name))).toEqual([]);
    // No mask variable: kube-vip derives /32 for an IPv4 address; vip_cidr is gone since v0.9.0.
    expect(read.has("vip_cidr")).toBe(false);
    expect(read.has("vip_subnet")).toBe(true);
    expect(set).not.toContain("vip_subnet");
  });

  test("the list of variables kube-vip reads is the one for the pinned tag, and looks like kube-vip's", () => {
    const file = path.join(__dirname, "fixtures", "kube-vip", `${versions.kubeVip}-environment.txt`);
    const text = fs.readFileSync(file, "utf8");
    expect(text).toContain(`tag ${versions.kubeVip}, commit `);
    const names = variablesKubeVipReads(versions.kubeVip);
    expect(names).toEqual([...new Set(names)].sort());
    for (const name of ["address", "vip_arp", "vip_interface", "vip_leaderelection", "cp_enable", "svc_enable"]) {
      expect(names).toContain(name);
    }
    expect(() => variablesKubeVipReads("v0.0.0")).toThrow("v0.0.0-environment.txt is missing");
  });

  test("capabilities: NET_ADMIN and NET_RAW only, everything else dropped, not privileged", () => {
    expect(container.securityContext).toEqual({
      capabilities: { add: ["NET_ADMIN", "NET_RAW"], drop: ["ALL"] },
    });
  });

  test("admin.conf (not super-admin.conf) mounted read-only; kubernetes resolves to 127.0.0.1", () => {
    expect(kubeadmPaths.adminKubeconfig).toBe("/etc/kubernetes/admin.conf");
    expect(container.volumeMounts).toEqual([
      { name: "kubeconfig", mountPath: "/etc/kubernetes/admin.conf", readOnly: true },
    ]);
    expect(manifest.spec.volumes).toEqual([
      { name: "kubeconfig", hostPath: { path: "/etc/kubernetes/admin.conf", type: "File" } },
    ]);
    expect(text).not.toContain("super-admin.conf");
    expect(manifest.spec.hostAliases).toEqual([{ ip: "127.0.0.1", hostnames: ["kubernetes"] }]);
  });

  test("small requests, no limits", () => {
    expect(container.resources).toEqual({ requests: { cpu: "25m", memory: "64Mi" } });
  });

  test("another interface and address change only their variables", () => {
    const other = parse(renderKubeVipManifest({ address: "203.0.113.5", interface: "enp1s0" }), {
      version: "1.1",
    }) as PodManifest;
    const env = other.spec.containers[0].env;
    expect(env.find((e) => e.name === "vip_interface")?.value).toBe("enp1s0");
    expect(env.find((e) => e.name === "address")?.value).toBe("203.0.113.5");
    const strip = (m: PodManifest) =>
      m.spec.containers[0].env.filter((e) => e.name !== "vip_interface" && e.name !== "address");
    expect(strip(other)).toEqual(strip(manifest));
  });

  test("deterministic, and identical for every node (nothing node-specific in it)", () => {
    expect(renderedElsewhen(() => renderKubeVipManifest({ address: vip }))).toBe(text);
    expect(renderKubeVipManifest({ address: vip, interface: "eth0" })).toBe(text);
  });

  test("PyYAML (YAML 1.1, like kubelet's decoder) reads what this parser reads", () => {
    expect(pyyamlLoadAll(text)).toEqual([manifest]);
  });
});

// ---------------------------------------------------------------------------------------------
// scripts/node/install-kube-vip.sh, run for real under a temporary root (tests/support/
// nodeSandbox.ts) with fake kubectl and crictl (tests/support/staticPods.ts). What this cannot
// prove: that a real kubelet stops and starts kube-vip as its manifest moves, or that a real
// kube-vip renews the Lease; a node is the proof of that.

const installScript = "install-kube-vip.sh";
const tmp = useTempDir("install-kube-vip-test-");
const node = "prod-nbg1-cp-2";
const adminConf = "/etc/kubernetes/admin.conf";
const staged = kubeVipStagedPath;
const installed = kubeVipManifestPath;
const parked = "/etc/kubernetes/manifests-parked/kube-vip.yaml";
const verifiedSentinel = "/var/lib/kubernetes-node/kube-vip-manifest";

const installFakes: Record<string, string> = {
  kubectl: `
case "$*" in
${kubectlGateArms()}
${kubeVipLeaseArm(kubeVipLeaseName)}
  *) echo "fake kubectl: unexpected $*" >&2; exit 99 ;;
esac`,
  crictl: crictlFake,
};

const installTools = [
  ...["bash", "cat", "chmod", "cmp", "date", "dirname", "install", "mktemp", "mv", "rm", "rmdir", "sleep", "timeout"],
  ...["grep", "sha256sum"], // lib.sh's admin.conf fingerprint
];

/** A control-plane node with `running` installed as kube-vip's manifest (or none), and the new one staged. */
function makeInstallSandbox(name: string, running: string | undefined, next = text): Sandbox {
  const files: Record<string, string> = { [adminConf]: adminKubeconfig("1"), [staged]: next };
  if (running !== undefined) files[installed] = running;
  const sandbox = makeSandbox(tmp(), name, { fakes: installFakes, realTools: installTools, files });
  // kubeadm's static pod directory exists on every control-plane node.
  fs.mkdirSync(at(sandbox, "/etc/kubernetes/manifests"), { recursive: true });
  sandbox.env.FAKE_MANIFESTS = at(sandbox, "/etc/kubernetes/manifests");
  return sandbox;
}

const installArgs = ["--manifest", staged, "--node-name", node, "--lease", kubeVipLeaseName];
const install = (sandbox: Sandbox, env: Record<string, string> = {}, more: string[] = []) =>
  runNodeScript(sandbox, installScript, [...installArgs, ...more], { env });

const kubeconfig = `$ROOT${adminConf}`;
const gates = [readyzCall(kubeconfig), etcdHealthCall(kubeconfig, node)];
const leaseCall = kubeVipLeaseCall(kubeconfig, kubeVipLeaseName);
const fileAt = (sandbox: Sandbox, p: string) =>
  fs.existsSync(at(sandbox, p)) ? fs.readFileSync(at(sandbox, p), "utf8") : undefined;
const oldManifest = text.replace("vip_leaseduration", "vip_leaseduration_old");

describe("install-kube-vip.sh", () => {
  test("documents its flags and steps; shellcheck passes", () => {
    expectScriptContract(makeInstallSandbox("help", undefined), installScript, [
      "--manifest",
      "--node-name",
      "--lease",
      "--timeout",
      "--root",
      "ROOT",
      "POLL_SECONDS",
      "manifests-parked",
      "kube-vip-admin-conf",
    ]);
    expectShellcheckClean([installScript]);
  });

  test("a node without kube-vip: gate, install (0600), wait for it to run, gate, wait for a renewed Lease, record admin.conf", () => {
    const sandbox = makeInstallSandbox("fresh", undefined);
    const result = install(sandbox);
    expectStatus(result, 0);
    expect(calls(sandbox)).toEqual([...gates, crictlCall("kube-vip"), ...gates, leaseCall]);
    expect(crictlSeen(sandbox)).toEqual(["kube-vip present"]);
    expect(fileAt(sandbox, installed)).toBe(text);
    expect(mode(at(sandbox, installed))).toBe("600");
    expect(fileAt(sandbox, kubeVipSentinel)).toMatch(/^sha256:[0-9a-f]{64}\n$/);
    expect(fs.existsSync(at(sandbox, "/etc/kubernetes/manifests-parked"))).toBe(false);
    expect(result.stderr).toContain(`${node}: kube-vip installed; the Lease ${kubeVipLeaseName} has a leader`);
  });

  test("the same manifest again, once verified: only the gate, no restart", () => {
    const sandbox = makeInstallSandbox("same", undefined);
    expectStatus(install(sandbox), 0);
    expect(fileAt(sandbox, verifiedSentinel)).toBe(
      `sha256:${crypto.createHash("sha256").update(text).digest("hex")}\n`,
    );
    resetCalls(sandbox);
    const again = install(sandbox);
    expectStatus(again, 0);
    expect(calls(sandbox)).toEqual(gates);
    expect(again.stderr).toContain("kube-vip already runs this manifest; nothing to change");
  });

  test("a failed Lease check fails every re-run until some kube-vip leads; only then is it verified", () => {
    const sandbox = makeInstallSandbox("lease-retry", oldManifest);
    const first = install(sandbox, { FAKE_LEASE_RENEWED_FROM: "1000" }, ["--timeout", "1"]);
    expect(first.status).toBe(1);
    expect(fileAt(sandbox, installed)).toBe(text);
    // The same manifest is in place, but unverified: the re-run checks the Lease again, and
    // fails again, so the chain never moves on to the next node.
    resetCalls(sandbox);
    const again = install(sandbox, { FAKE_LEASE_RENEWED_FROM: "1000" }, ["--timeout", "1"]);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain("an earlier run did not verify it; checking it again");
    expect(calls(sandbox).filter((c) => c.startsWith("crictl"))).toEqual([]);
    expect(fileAt(sandbox, verifiedSentinel)).toBeUndefined();
    // Once a kube-vip leads, the re-run passes without restarting anything.
    resetCalls(sandbox);
    const fixed = install(sandbox);
    expectStatus(fixed, 0);
    expect(calls(sandbox)).toEqual([...gates, ...gates, leaseCall]);
    expect(fileAt(sandbox, verifiedSentinel)).toMatch(/^sha256:[0-9a-f]{64}\n$/);
  });

  test("a changed manifest: the old kube-vip stops before the new one starts; the next node waits for a renewed Lease", () => {
    const sandbox = makeInstallSandbox("changed", oldManifest);
    // This node's kube-vip led: its Lease is renewed again only on the third read.
    const result = install(sandbox, { FAKE_LEASE_RENEWED_FROM: "3" });
    expectStatus(result, 0);
    expect(calls(sandbox)).toEqual([
      ...gates,
      crictlCall("kube-vip"),
      crictlCall("kube-vip"),
      ...gates,
      leaseCall,
      leaseCall,
      leaseCall,
    ]);
    // Stopped with its manifest out (never two kube-vips), started with the new one in.
    expect(crictlSeen(sandbox)).toEqual(["kube-vip absent", "kube-vip present"]);
    expect(fileAt(sandbox, installed)).toBe(text);
    expect(fs.existsSync(at(sandbox, parked))).toBe(false);
  });

  test("the new kube-vip never runs: the previous manifest is back, exit 1 naming the node", () => {
    const sandbox = makeInstallSandbox("never-back", oldManifest);
    const result = install(sandbox, { FAKE_NEVER_BACK: "kube-vip" }, ["--timeout", "1"]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(
      `${node}: starting kube-vip: no container ran within 1s of its new manifest; the previous manifest is back`,
    );
    expect(fileAt(sandbox, installed)).toBe(oldManifest);
    expect(fs.existsSync(at(sandbox, parked))).toBe(false);
    expect(fileAt(sandbox, kubeVipSentinel)).toBeUndefined();
    expect(calls(sandbox)).not.toContain(leaseCall);
  });

  test("a first kube-vip that never runs is removed again", () => {
    const sandbox = makeInstallSandbox("never-runs", undefined);
    const result = install(sandbox, { FAKE_NEVER_BACK: "kube-vip" }, ["--timeout", "1"]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(
      `${node}: starting kube-vip: no container ran within 1s of its manifest; it is removed again`,
    );
    expect(fileAt(sandbox, installed)).toBeUndefined();
  });

  test("the old kube-vip never stops: its manifest is put back, the new one not installed", () => {
    const sandbox = makeInstallSandbox("never-gone", oldManifest);
    const result = install(sandbox, { FAKE_NEVER_GONE: "kube-vip" }, ["--timeout", "1"]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`${node}: stopping kube-vip: its container still runs 1s after`);
    expect(fileAt(sandbox, installed)).toBe(oldManifest);
    expect(fs.existsSync(at(sandbox, parked))).toBe(false);
  });

  test.each([
    ["no such Lease", { FAKE_LEASE: "missing" }],
    ["no holder", { FAKE_LEASE: "unheld" }],
    ["a Lease nobody renews", { FAKE_LEASE_RENEWED_FROM: "1000" }],
  ])("%s after the install: exit 1 naming the Lease; the new kube-vip stays", (_label, env) => {
    const sandbox = makeInstallSandbox("lease", oldManifest);
    const result = install(sandbox, env, ["--timeout", "1"]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(
      `${node}: after installing kube-vip: no kube-vip renewed the Lease kube-system/${kubeVipLeaseName} within 1s`,
    );
    expect(fileAt(sandbox, installed)).toBe(text);
    expect(fileAt(sandbox, kubeVipSentinel)).toBeUndefined();
  });

  test("an unhealthy control plane: nothing is touched", () => {
    const sandbox = makeInstallSandbox("unhealthy", oldManifest);
    const result = install(sandbox, { FAKE_FAIL: "etcd" }, ["--timeout", "1"]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`${node}: before installing kube-vip: etcd endpoint health --cluster did not pass`);
    expect(calls(sandbox).filter((c) => c.startsWith("crictl"))).toEqual([]);
    expect(fileAt(sandbox, installed)).toBe(oldManifest);
  });

  test("a manifest an interrupted run left parked is put back before anything else", () => {
    const sandbox = makeInstallSandbox("parked", undefined);
    fs.mkdirSync(path.dirname(at(sandbox, parked)), { recursive: true });
    fs.writeFileSync(at(sandbox, parked), oldManifest);
    const result = install(sandbox);
    expectStatus(result, 0);
    expect(result.stderr).toContain("put the manifest of kube-vip back");
    expect(crictlSeen(sandbox)).toEqual(["kube-vip absent", "kube-vip present"]);
    expect(fileAt(sandbox, installed)).toBe(text);
  });

  test("a staged path inside the kubelet's manifest directory is a usage error", () => {
    const sandbox = makeInstallSandbox("usage", undefined);
    const result = runNodeScript(sandbox, installScript, [
      "--manifest",
      installed,
      "--node-name",
      node,
      "--lease",
      kubeVipLeaseName,
    ]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("--manifest must be outside /etc/kubernetes/manifests");
    expect(calls(sandbox)).toEqual([]);
  });
});
