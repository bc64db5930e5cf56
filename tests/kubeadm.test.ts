/**
 * kubeadm configuration renderers: InitConfiguration + ClusterConfiguration +
 * KubeletConfiguration, JoinConfiguration with join-time placeholders, and the per-node etcd
 * patch.
 *
 * No published schema exists for `kubeadm.k8s.io/v1beta4`: kubeadm checks its files with its
 * own Go types (`kubeadm config validate`). So these tests parse the output back, with this
 * project's parser and with PyYAML (YAML 1.1, the rules Go's sigs.k8s.io/yaml follows), and
 * assert the structure and every value exactly.
 *
 * What this cannot prove: that kubeadm 1.34 accepts the files without warnings, that it applies
 * the strategic merge patch to etcd's manifest, and that etcd takes the last of two
 * `--listen-metrics-urls` flags. The proof of those is `kubeadm config validate --config` and
 * a first `kubeadm init` on a node (then `curl http://<private-ip>:2381/metrics`).
 */
import { spawnSync } from "child_process";
import { parseAllDocuments } from "yaml";
import { nodePaths } from "../components/node/cloudInit";
import {
  etcdMetricsPort,
  etcdQuotaBackendBytes,
  joinCredentialPatterns,
  joinEnvsubstFormat,
  joinPlaceholders,
  joinVariables,
  KubeadmInput,
  kubeadmPaths,
  renderEtcdPatch,
  renderInitConfiguration,
  renderJoinConfiguration,
} from "../components/node/kubeadm";
import { apiServerPort } from "../components/hetzner/loadBalancer";
import { EtcdCluster } from "./support/etcdCluster";
import { pyyamlLoadAll, requireTool } from "./support/tools";
import { renderedElsewhen } from "./support/determinism";

const envsubstBinary = "/usr/bin/envsubst";

const base: KubeadmInput = {
  clusterName: "prod",
  kubernetesVersion: "1.34.2",
  node: { name: "cp-1", privateIp: "10.20.1.11" },
  nodeHostname: "prod-nbg1-cp-1",
  controlPlaneEndpoint: "10.20.1.250",
  // Unsorted, with a duplicate and the endpoint itself: the renderer dedupes and sorts.
  certSans: ["api.prod.example.com", "203.0.113.10", "2001:db8:1::1", "10.20.1.250", "198.51.100.7", "203.0.113.10"],
  podCidr: "10.244.0.0/16",
  serviceCidr: "10.96.0.0/12",
};

function forNode(name: string, privateIp: string): KubeadmInput {
  return { ...base, node: { name, privateIp }, nodeHostname: `prod-nbg1-${name}` };
}

type Doc = Record<string, unknown>;

/** Parses a multi-document stream under YAML 1.1 rules; any parse error fails the test. */
function parseDocs(text: string): Doc[] {
  return parseAllDocuments(text, { version: "1.1" }).map((doc) => {
    expect(doc.errors).toEqual([]);
    return doc.toJS() as Doc;
  });
}

/** The raw text of each document, as kubeadm splits the stream. */
function rawDocs(text: string): string[] {
  return text.split(/^---\n/m);
}

function rawDocOfKind(text: string, kind: string): string {
  const found = rawDocs(text).filter((doc) => new RegExp(`^kind: ${kind}$`, "m").test(doc));
  expect(found).toHaveLength(1);
  return found[0];
}

function docOfKind(text: string, kind: string): Doc {
  const found = parseDocs(text).filter((doc) => doc.kind === kind);
  expect(found).toHaveLength(1);
  return found[0];
}

const expectedNodeRegistration = {
  name: "prod-nbg1-cp-1",
  criSocket: "unix:///run/containerd/containerd.sock",
  // v1beta4 lists {name, value}; the kubelet registers the node for the cloud controller.
  kubeletExtraArgs: [
    { name: "node-ip", value: "10.20.1.11" },
    { name: "cloud-provider", value: "external" },
  ],
  taints: [{ key: "node-role.kubernetes.io/control-plane", effect: "NoSchedule" }],
};

const expectedControlLoopArgs = [
  { name: "bind-address", value: "0.0.0.0" },
  { name: "leader-elect", value: "true" },
  { name: "leader-elect-lease-duration", value: "15s" },
  { name: "leader-elect-renew-deadline", value: "10s" },
  { name: "leader-elect-retry-period", value: "2s" },
];

describe("renderInitConfiguration", () => {
  const text = renderInitConfiguration(base);
  const docs = parseDocs(text);

  test("three documents separated by ---: Init, Cluster (kubeadm v1beta4), Kubelet", () => {
    expect(rawDocs(text)).toHaveLength(3);
    expect(docs.map((d) => [d.apiVersion, d.kind])).toEqual([
      ["kubeadm.k8s.io/v1beta4", "InitConfiguration"],
      ["kubeadm.k8s.io/v1beta4", "ClusterConfiguration"],
      ["kubelet.config.k8s.io/v1beta1", "KubeletConfiguration"],
    ]);
  });

  test("InitConfiguration: this node's address, name, kubelet node-ip, CRI socket, taint, patches", () => {
    expect(docOfKind(text, "InitConfiguration")).toEqual({
      apiVersion: "kubeadm.k8s.io/v1beta4",
      kind: "InitConfiguration",
      localAPIEndpoint: { advertiseAddress: "10.20.1.11", bindPort: 6443 },
      nodeRegistration: expectedNodeRegistration,
      patches: { directory: "/etc/kubernetes/kubeadm-patches" },
    });
    expect(apiServerPort).toBe(6443);
  });

  test("ClusterConfiguration: every field, exactly", () => {
    expect(docOfKind(text, "ClusterConfiguration")).toEqual({
      apiVersion: "kubeadm.k8s.io/v1beta4",
      kind: "ClusterConfiguration",
      clusterName: "prod",
      kubernetesVersion: "v1.34.2",
      controlPlaneEndpoint: "10.20.1.250:6443",
      networking: { podSubnet: "10.244.0.0/16", serviceSubnet: "10.96.0.0/12" },
      apiServer: {
        certSANs: ["10.20.1.250", "198.51.100.7", "2001:db8:1::1", "203.0.113.10", "api.prod.example.com"],
        extraArgs: [
          { name: "audit-policy-file", value: "/etc/kubernetes/audit-policy.yaml" },
          { name: "audit-log-path", value: "/var/log/kubernetes/audit/audit.log" },
          { name: "audit-log-maxage", value: "30" },
          { name: "audit-log-maxbackup", value: "10" },
          { name: "audit-log-maxsize", value: "100" },
        ],
        extraVolumes: [
          {
            name: "audit-policy",
            hostPath: "/etc/kubernetes/audit-policy.yaml",
            mountPath: "/etc/kubernetes/audit-policy.yaml",
            readOnly: true,
            pathType: "File",
          },
          {
            name: "audit-logs",
            hostPath: "/var/log/kubernetes/audit",
            mountPath: "/var/log/kubernetes/audit",
            readOnly: false,
            pathType: "DirectoryOrCreate",
          },
        ],
      },
      controllerManager: { extraArgs: expectedControlLoopArgs },
      scheduler: { extraArgs: expectedControlLoopArgs },
      etcd: {
        local: { dataDir: "/var/lib/etcd", extraArgs: [{ name: "quota-backend-bytes", value: "8589934592" }] },
      },
    });
  });

  test("etcd's backend quota is 8 GiB, the limit the etcd size alerts are built around", () => {
    expect(etcdQuotaBackendBytes).toBe(8589934592);
    expect(rawDocOfKind(text, "ClusterConfiguration")).toContain(
      'etcd:\n  local:\n    dataDir: /var/lib/etcd\n    extraArgs:\n      - name: quota-backend-bytes\n        value: "8589934592"\n',
    );
  });

  test("a real etcd started with that flag reports it as etcd_server_quota_backend_bytes", async () => {
    const cluster = docOfKind(text, "ClusterConfiguration") as {
      etcd: { local: { extraArgs: { name: string; value: string }[] } };
    };
    const quota = cluster.etcd.local.extraArgs.find((a) => a.name === "quota-backend-bytes")!.value;
    // The loopback etcd of tests/support/etcdCluster.ts passes --quota-backend-bytes=<quota>;
    // etcd serves /metrics on its client URL, and etcdDatabaseQuotaLowSpace divides by this series.
    const etcd = await EtcdCluster.create({ size: 1, quotaBackendBytes: Number(quota) });
    try {
      await etcd.startAll(30_000);
      const metrics = await (await fetch(`${etcd.members[0].clientUrl}/metrics`)).text();
      const line = metrics.split("\n").find((l) => l.startsWith("etcd_server_quota_backend_bytes "));
      expect(Number(line?.split(" ")[1])).toBe(8589934592);
    } finally {
      await etcd.cleanup();
    }
  }, 60_000);

  test("audit paths are the ones the node preparation creates (nodePaths)", () => {
    const cluster = docOfKind(text, "ClusterConfiguration") as {
      apiServer: { extraArgs: { name: string; value: string }[]; extraVolumes: { hostPath: string }[] };
    };
    const arg = (name: string) => cluster.apiServer.extraArgs.find((a) => a.name === name)?.value;
    expect(arg("audit-policy-file")).toBe(nodePaths.auditPolicy);
    expect(arg("audit-log-path")).toBe(`${nodePaths.auditLogDir}/audit.log`);
    expect(cluster.apiServer.extraVolumes.map((v) => v.hostPath)).toEqual([
      nodePaths.auditPolicy,
      nodePaths.auditLogDir,
    ]);
  });

  test("every extraArgs value is a YAML string (v1beta4 Arg.value is a string; 30 would not decode)", () => {
    const raw = rawDocOfKind(text, "ClusterConfiguration") + rawDocOfKind(text, "InitConfiguration");
    for (const value of ["30", "10", "100", "true"]) {
      expect(raw).toContain(`value: "${value}"`);
    }
    const values = JSON.stringify(docs).match(/"value":[^,}]*/g) ?? [];
    expect(values.length).toBeGreaterThan(0);
    for (const v of values) expect(v).toMatch(/^"value":"/);
  });

  test("the shared ClusterConfiguration names no node: no node IP, no hostname, no etcd metrics URL", () => {
    const raw = rawDocOfKind(text, "ClusterConfiguration");
    expect(raw).not.toContain("10.20.1.11");
    expect(raw).not.toContain("prod-nbg1-cp-1");
    expect(raw).not.toContain("listen-metrics-urls");
  });

  test("KubeletConfiguration: systemd cgroups, client certificate rotation, serving certificate through a CSR", () => {
    expect(docOfKind(text, "KubeletConfiguration")).toEqual({
      apiVersion: "kubelet.config.k8s.io/v1beta1",
      kind: "KubeletConfiguration",
      cgroupDriver: "systemd",
      rotateCertificates: true,
      serverTLSBootstrap: true,
    });
    // A boolean, as the kubelet decodes it (PyYAML reads YAML 1.1 like sigs.k8s.io/yaml).
    expect(rawDocOfKind(text, "KubeletConfiguration")).toMatch(/^serverTLSBootstrap: true$/m);
  });

  test("certSANs: deduplicated, sorted, and the endpoint host is always among them", () => {
    const cluster = (t: string) =>
      (docOfKind(t, "ClusterConfiguration") as { apiServer: { certSANs: string[] } }).apiServer.certSANs;
    const dns = renderInitConfiguration({ ...base, controlPlaneEndpoint: "api.prod.example.com", certSans: [] });
    expect(cluster(dns)).toEqual(["api.prod.example.com"]);
    expect(docOfKind(dns, "ClusterConfiguration").controlPlaneEndpoint).toBe("api.prod.example.com:6443");
    const reversed = renderInitConfiguration({ ...base, certSans: [...base.certSans].reverse() });
    expect(reversed).toBe(text);
  });
});

describe("shared versus per-node output", () => {
  const nodes = [forNode("cp-1", "10.20.1.11"), forNode("cp-2", "10.20.1.12"), forNode("cp-3", "10.20.1.13")];
  const inits = nodes.map(renderInitConfiguration);

  test("ClusterConfiguration and KubeletConfiguration are byte-identical for every node", () => {
    const cluster = inits.map((t) => rawDocOfKind(t, "ClusterConfiguration"));
    const kubelet = inits.map((t) => rawDocOfKind(t, "KubeletConfiguration"));
    expect(new Set(cluster).size).toBe(1);
    expect(new Set(kubelet).size).toBe(1);
  });

  test("InitConfiguration, JoinConfiguration and the etcd patch differ per node", () => {
    const init = inits.map((t) => rawDocOfKind(t, "InitConfiguration"));
    expect(new Set(init).size).toBe(3);
    expect(new Set(nodes.map(renderJoinConfiguration)).size).toBe(3);
    expect(new Set(nodes.map(renderEtcdPatch)).size).toBe(3);
    const join2 = docOfKind(renderJoinConfiguration(nodes[1]), "JoinConfiguration") as {
      controlPlane: { localAPIEndpoint: { advertiseAddress: string } };
      nodeRegistration: { name: string; kubeletExtraArgs: { value: string }[] };
    };
    expect(join2.controlPlane.localAPIEndpoint.advertiseAddress).toBe("10.20.1.12");
    expect(join2.nodeRegistration.name).toBe("prod-nbg1-cp-2");
    expect(join2.nodeRegistration.kubeletExtraArgs).toEqual([
      { name: "node-ip", value: "10.20.1.12" },
      { name: "cloud-provider", value: "external" },
    ]);
  });

  test("rendering is deterministic", () => {
    for (const node of nodes) {
      expect(renderedElsewhen(() => renderInitConfiguration(node))).toBe(renderInitConfiguration(node));
      expect(renderedElsewhen(() => renderJoinConfiguration(node))).toBe(renderJoinConfiguration(node));
      expect(renderedElsewhen(() => renderEtcdPatch(node))).toBe(renderEtcdPatch(node));
    }
  });
});

describe("renderJoinConfiguration", () => {
  const text = renderJoinConfiguration(base);

  test("one JoinConfiguration: control plane endpoint, discovery placeholders, node, patches", () => {
    expect(parseDocs(text)).toEqual([
      {
        apiVersion: "kubeadm.k8s.io/v1beta4",
        kind: "JoinConfiguration",
        controlPlane: {
          localAPIEndpoint: { advertiseAddress: "10.20.1.11", bindPort: 6443 },
          certificateKey: "${JOIN_CERTIFICATE_KEY}",
        },
        discovery: {
          bootstrapToken: {
            apiServerEndpoint: "10.20.1.250:6443",
            token: "${JOIN_TOKEN}",
            caCertHashes: ["${JOIN_CA_CERT_HASH}"],
          },
        },
        nodeRegistration: expectedNodeRegistration,
        patches: { directory: "/etc/kubernetes/kubeadm-patches" },
      },
    ]);
  });

  test("the placeholder contract the join script shares", () => {
    expect(joinVariables).toEqual({
      token: "JOIN_TOKEN",
      caCertHash: "JOIN_CA_CERT_HASH",
      certificateKey: "JOIN_CERTIFICATE_KEY",
    });
    expect(joinPlaceholders).toEqual({
      token: "${JOIN_TOKEN}",
      caCertHash: "${JOIN_CA_CERT_HASH}",
      certificateKey: "${JOIN_CERTIFICATE_KEY}",
    });
    expect(joinEnvsubstFormat).toBe("${JOIN_TOKEN} ${JOIN_CA_CERT_HASH} ${JOIN_CERTIFICATE_KEY}");
    // Each placeholder appears once, inside double quotes; no other `$` is in the file.
    for (const p of Object.values(joinPlaceholders)) {
      expect(text.split(`"${p}"`)).toHaveLength(2);
    }
    expect(text.match(/\$/g)).toHaveLength(3);
  });

  test("envsubst fills the placeholders and the values stay strings, even an all-digit key", () => {
    const binary = requireTool(envsubstBinary, "gettext-base");
    const values = {
      JOIN_TOKEN: "abcdef.0123456789abcdef",
      JOIN_CA_CERT_HASH: `sha256:${"0123456789abcdef".repeat(4)}`,
      // Possible for a random hex key, and YAML would read it unquoted as a number.
      JOIN_CERTIFICATE_KEY: "1".repeat(64),
    };
    expect(joinCredentialPatterns.token.test(values.JOIN_TOKEN)).toBe(true);
    expect(joinCredentialPatterns.caCertHash.test(values.JOIN_CA_CERT_HASH)).toBe(true);
    expect(joinCredentialPatterns.certificateKey.test(values.JOIN_CERTIFICATE_KEY)).toBe(true);
    const result = spawnSync(binary, [joinEnvsubstFormat], {
      input: text.replace("/etc/kubernetes/kubeadm-patches", "$HOME/kubeadm-patches"),
      env: { ...values, HOME: "/root", PATH: "/usr/bin:/bin" },
      encoding: "utf8",
    });
    expect({ status: result.status, stderr: result.stderr }).toEqual({ status: 0, stderr: "" });
    // Only the three named variables are replaced; any other `$` is left as it was.
    expect(result.stdout).toContain("directory: $HOME/kubeadm-patches");
    const [join] = parseDocs(result.stdout) as {
      controlPlane: { certificateKey: unknown };
      discovery: { bootstrapToken: { token: unknown; caCertHashes: unknown[] } };
    }[];
    expect(join.controlPlane.certificateKey).toBe(values.JOIN_CERTIFICATE_KEY);
    expect(join.discovery.bootstrapToken.token).toBe(values.JOIN_TOKEN);
    expect(join.discovery.bootstrapToken.caCertHashes).toEqual([values.JOIN_CA_CERT_HASH]);
  });

  test("credential patterns refuse malformed values", () => {
    expect(joinCredentialPatterns.token.test("ABCDEF.0123456789abcdef")).toBe(false);
    expect(joinCredentialPatterns.token.test("abcdef.0123456789abcdef\n")).toBe(false);
    expect(joinCredentialPatterns.caCertHash.test("0123456789abcdef".repeat(4))).toBe(false);
    expect(joinCredentialPatterns.certificateKey.test("0".repeat(63))).toBe(false);
    expect(joinCredentialPatterns.certificateKey.test('"; rm -rf /')).toBe(false);
  });
});

describe("renderEtcdPatch", () => {
  test("a strategic merge patch on the etcd container: loopback and the private address", () => {
    expect(kubeadmPaths.patchesDirectory).toBe("/etc/kubernetes/kubeadm-patches");
    // kubeadm's file name rule: <target>[suffix][+<patchtype>].(yaml|json).
    expect(kubeadmPaths.etcdPatchFile).toBe("etcd+strategic.yaml");
    expect(kubeadmPaths.etcdPatchFile).toMatch(/^etcd[^+]*\+strategic\.yaml$/);
    expect(etcdMetricsPort).toBe(2381);
    expect(parseDocs(renderEtcdPatch(base))).toEqual([
      {
        spec: {
          containers: [{ name: "etcd", args: ["--listen-metrics-urls=http://127.0.0.1:2381,http://10.20.1.11:2381"] }],
        },
      },
    ]);
  });
});

describe("PyYAML (YAML 1.1, like Go's decoders) reads what this parser reads", () => {
  test.each([
    ["init", renderInitConfiguration(base)],
    ["join", renderJoinConfiguration(base)],
    ["etcd patch", renderEtcdPatch(base)],
  ])("%s", (_label, text) => {
    expect(pyyamlLoadAll(text)).toEqual(parseDocs(text));
  });
});
