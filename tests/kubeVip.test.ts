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
 * the address moves on Hetzner (it does not without the companion; see components/kubeVip.ts).
 * A kubelet on a real node is the proof of that.
 */
import * as fs from "fs";
import * as path from "path";
import { Pod } from "kubernetes-models/v1/Pod";
import { parse } from "yaml";
import { kubeadmPaths } from "../components/kubeadm";
import {
  kubeVipImage,
  kubeVipLeaseName,
  kubeVipManifestPath,
  kubeVipMetricsPort,
  renderKubeVipManifest,
} from "../components/kubeVip";
import { versions } from "../components/versions";
import { pyyamlLoadAll } from "./support/tools";
import { renderedElsewhen } from "./support/determinism";

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

  test("environment: ARP control-plane VIP /32 on eth0, Lease election 15/10/2 s, no services", () => {
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
      { name: "vip_retryperiod", value: "2" },
      { name: "address", value: vip },
      { name: "prometheus_server", value: ":2112" },
    ]);
    expect(kubeVipLeaseName).toBe("plndr-cp-lock");
    expect(kubeVipMetricsPort).toBe(2112);
    // Env values are strings in the API; unquoted `true` or `6443` would not decode.
    for (const value of ["true", "false", "6443", "15", "10", "2"]) {
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
