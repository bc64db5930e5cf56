/**
 * The resource graph of the real program under recording mocks: exact types, names and
 * counts, security-relevant inputs, resource options, and the dependencies the SDK computed.
 *
 * What mocks cannot prove: that Hetzner accepts these inputs (covered by the facts in
 * DESIGN.md and the enum/type checks here), URN stability across refactors (names are
 * asserted literally below, so a rename fails here first), and real provider diffs.
 */
import { healthCheck } from "../components/hetzner/loadBalancer";
import { firewallRules } from "../components/hetzner/network";
import { RecordedResource } from "../tools/offline/harness";
import { byType, one, runStack, T } from "./support/program";

const P = "hcloud-control-plane";

function urnOf(run: { resources: RecordedResource[] }, name: string): string {
  return run.resources.filter((r) => r.name === name)[0].urn;
}

describe("the prod stack's graph", () => {
  let run: Awaited<ReturnType<typeof runStack>>;
  beforeAll(async () => {
    run = await runStack();
  });

  test("registers exactly these infrastructure resources (the bootstrap's are in bootstrap.test.ts)", () => {
    const names = run.resources
      .filter((r) => r.type.startsWith("hcloud:") || r.type.startsWith("pulumi:pulumi:") || r.type.startsWith(`${P}:`))
      .map((r) => `${r.type} ${r.name}`)
      .sort();
    expect(names).toEqual(
      [
        `${T.stack} ${P}-prod`,
        `${P}:index:Network cluster`,
        `${P}:index:ReservedIp reserved-ip`,
        `${P}:index:ControlPlane control-plane`,
        `${P}:index:ApiLoadBalancer api`,
        `${P}:index:ClusterBootstrap bootstrap`,
        `${P}:index:ClusterAccess access`,
        `${P}:index:Cni cni`,
        `${P}:index:CloudController cloud-controller`,
        `${P}:index:CsiDriver csi`,
        `${P}:index:Monitoring monitoring`,
        `${P}:index:EtcdBackup etcd-backup`,
        `${P}:index:WorkerJoinToken worker-join`,
        `${P}:index:ControlPlaneUpgrade upgrade`,
        `${P}:index:KubeadmCertificates certificates`,
        `${P}:index:EtcdDefrag etcd-defrag`,
        `${P}:index:KubeletCsrApprover kubelet-csr-approver`,
        `${T.network} cluster-network`,
        `${T.subnet} cluster-subnet`,
        `${T.placementGroup} cluster-spread`,
        `${T.firewall} cluster-firewall`,
        `${T.sshKey} cluster-ssh-key`,
        `${T.floatingIp} reserved-ip-fip`,
        `${T.server} control-plane-cp-1`,
        `${T.server} control-plane-cp-2`,
        `${T.server} control-plane-cp-3`,
        `${T.loadBalancer} api-lb`,
        `${T.lbNetwork} api-lb-network`,
        `${T.lbService} api-lb-service`,
        `${T.lbTarget} api-lb-target-cp-1`,
        `${T.lbTarget} api-lb-target-cp-2`,
        `${T.lbTarget} api-lb-target-cp-3`,
      ].sort(),
    );
  });

  test("every resource is parented: components under the stack, children under their component", () => {
    const stack = byType(run, T.stack)[0];
    const components = run.resources.filter((r) => r.type.startsWith(`${P}:`));
    for (const c of components) expect([c.name, c.parent]).toEqual([c.name, stack.urn]);
    for (const r of run.resources.filter((x) => x.custom)) {
      const parent = run.resources.find((p) => p.urn === r.parent);
      expect([r.name, parent?.type.startsWith(`${P}:`)]).toEqual([r.name, true]);
    }
  });

  test("network: private range, cloud subnet in the configured zone, spread placement", () => {
    expect(one(run, "cluster-network").inputs).toMatchObject({ name: "prod-nbg1", ipRange: "10.20.0.0/16" });
    const subnet = one(run, "cluster-subnet");
    expect(subnet.inputs).toMatchObject({ type: "cloud", networkZone: "eu-central", ipRange: "10.20.1.0/24" });
    expect(subnet.dependsOn).toEqual([urnOf(run, "cluster-network")]);
    expect(one(run, "cluster-spread").inputs).toMatchObject({ type: "spread" });
  });

  test("firewall: 22 and 6443 only from the configured CIDRs, ICMP, nothing else inbound", () => {
    const rules = one(run, "cluster-firewall").inputs.rules as Record<string, unknown>[];
    expect(rules).toEqual([
      {
        direction: "in",
        protocol: "tcp",
        port: "22",
        sourceIps: ["198.51.100.0/28", "203.0.113.40/32"],
        description: "SSH from admin networks",
      },
      {
        direction: "in",
        protocol: "tcp",
        port: "6443",
        sourceIps: ["198.51.100.0/28", "203.0.113.40/32"],
        description: "Kubernetes API",
      },
      {
        direction: "in",
        protocol: "icmp",
        sourceIps: ["0.0.0.0/0", "::/0"],
        description: "ICMP (path MTU discovery, ping)",
      },
    ]);
  });

  test("firewall: etcd, kubelet, controller-manager and scheduler ports are never opened", () => {
    const closed = [2379, 2380, 2381, 10250, 10257, 10259];
    for (const apiCidrs of [[], ["0.0.0.0/0"]]) {
      for (const rule of firewallRules(["0.0.0.0/0"], apiCidrs)) {
        if (rule.protocol !== "tcp" && rule.protocol !== "udp") continue;
        const [low, high = low] = String(rule.port).split("-").map(Number);
        for (const port of closed) expect([port, port >= low && port <= high]).toEqual([port, false]);
      }
    }
    // No API sources: no 6443 rule at all (Hetzner refuses a rule without sources).
    expect(firewallRules(["198.51.100.0/28"], []).map((r) => r.port)).toEqual(["22", undefined]);
  });

  test("reserved IP: protected IPv4 Floating IP in the home location, never assigned by Pulumi", () => {
    const fip = one(run, "reserved-ip-fip");
    expect(fip.inputs).toMatchObject({ type: "ipv4", homeLocation: "nbg1", deleteProtection: true });
    expect(fip.inputs.serverId).toBeUndefined();
    expect(fip.protect).toBe(true);
    expect(fip.ignoreChanges).toEqual(["serverId"]);
    expect(run.resources.some((r) => r.type === "hcloud:index/floatingIpAssignment:FloatingIpAssignment")).toBe(false);
  });

  test("servers: keyed by node name, pinned private IPs, protected against accidental replacement", () => {
    const servers = byType(run, T.server);
    expect(servers.map((s) => [s.name, s.inputs.name])).toEqual([
      ["control-plane-cp-1", "prod-nbg1-cp-1"],
      ["control-plane-cp-2", "prod-nbg1-cp-2"],
      ["control-plane-cp-3", "prod-nbg1-cp-3"],
    ]);
    const subnetId = `${one(run, "cluster-network").urn && run.outputs.networkId}-10.20.1.0/24`;
    servers.forEach((s, i) => {
      expect(s.inputs).toMatchObject({
        serverType: "ccx23",
        image: "ubuntu-24.04",
        location: "nbg1",
        deleteProtection: true,
        rebuildProtection: true,
        networks: [{ subnetId, ip: `10.20.1.1${i + 1}`, aliasIps: [] }],
        publicNets: [{ ipv4Enabled: true, ipv6Enabled: true }],
        labels: { cluster: "prod-nbg1", role: "control-plane", node: `cp-${i + 1}`, "managed-by": "pulumi" },
        firewallIds: [Number(run.outputs.firewallId)],
        placementGroupId: Number(run.outputs.placementGroupId),
      });
      expect(s.protect).toBe(true);
      expect(s.deleteBeforeReplace).toBe(true);
      // serverType: resized one server at a time by scripts/ops/resize-control-plane.sh, never here.
      expect(s.ignoreChanges).toEqual(["userData", "image", "sshKeys", "serverType"]);
      expect(String(s.inputs.userData)).toMatch(/^#cloud-config\n/);
      // Waits for everything whose outputs it uses (Pulumi's own dependency rule).
      expect(s.dependsOn).toEqual(
        ["cluster-firewall", "cluster-spread", "cluster-ssh-key", "cluster-subnet"].map((n) => urnOf(run, n)).sort(),
      );
    });
  });

  test("load balancer: protected, API enum spellings, pinned private IP", () => {
    const lb = one(run, "api-lb");
    expect(lb.inputs).toMatchObject({
      name: "prod-nbg1-api",
      loadBalancerType: "lb11",
      location: "nbg1",
      algorithm: { type: "round_robin" },
      deleteProtection: true,
    });
    expect(lb.protect).toBe(true);
    const attachment = one(run, "api-lb-network");
    expect(attachment.inputs).toMatchObject({
      ip: "10.20.1.250",
      enablePublicInterface: true,
      loadBalancerId: Number(run.outputs.loadBalancerId),
    });
    expect(attachment.dependsOn).toEqual([urnOf(run, "api-lb"), urnOf(run, "cluster-subnet")].sort());
  });

  test("load balancer service: TCP 6443 -> 6443 with the configured readyz health check", () => {
    const service = one(run, "api-lb-service");
    expect(service.inputs).toEqual({
      loadBalancerId: run.outputs.loadBalancerId,
      protocol: "tcp",
      listenPort: 6443,
      destinationPort: 6443,
      proxyprotocol: false,
      healthCheck: {
        protocol: "http",
        port: 6443,
        interval: 5,
        timeout: 3,
        retries: 3,
        http: { path: "/readyz", tls: true, statusCodes: ["200"] },
      },
    });
    // The service's loadBalancerId is a string in the SDK; every other id is a number.
    expect(typeof service.inputs.loadBalancerId).toBe("string");
  });

  test("health check modes use only protocols the Hetzner API accepts", () => {
    const timing = { interval: 5, timeout: 3, retries: 3 };
    expect(healthCheck({ mode: "tcp", ...timing })).toEqual({ protocol: "tcp", port: 6443, ...timing });
    expect(healthCheck({ mode: "readyz", ...timing }).protocol).toBe("http");
  });

  test("targets: one per server over the private network, after the network attachment", () => {
    const targets = byType(run, T.lbTarget);
    expect(targets).toHaveLength(3);
    targets.forEach((t, i) => {
      const server = one(run, `control-plane-cp-${i + 1}`);
      expect(t.inputs).toEqual({
        loadBalancerId: Number(run.outputs.loadBalancerId),
        type: "server",
        serverId: Number((run.outputs.nodes as { id: string }[])[i].id),
        usePrivateIp: true,
      });
      expect(t.dependsOn).toEqual([urnOf(run, "api-lb"), urnOf(run, "api-lb-network"), server.urn].sort());
    });
  });

  test("stack outputs: endpoints, ids and the node list", () => {
    expect(run.outputs).toMatchObject({
      clusterName: "prod-nbg1",
      location: "nbg1",
      networkZone: "eu-central",
      kubernetesVersion: "1.34.2",
      controlPlaneEndpoint: "api.prod-nbg1.k8s.example.com:6443",
      apiServerPrivateUrl: "https://10.20.1.250:6443",
      apiServerUrl: `https://${run.outputs.loadBalancerIpv4}:6443`,
      loadBalancerPrivateIp: "10.20.1.250",
    });
    expect(run.outputs.subnetId).toBe(`${run.outputs.networkId}-10.20.1.0/24`);
    expect((run.outputs.nodes as { name: string; privateIp: string }[]).map((n) => [n.name, n.privateIp])).toEqual([
      ["cp-1", "10.20.1.11"],
      ["cp-2", "10.20.1.12"],
      ["cp-3", "10.20.1.13"],
    ]);
  });
});

describe("variants", () => {
  test.each([1, 3, 5, 7])("%i control-plane nodes give that many servers and targets", async (n) => {
    const run = await runStack({ controlPlaneCount: n, nodeIps: [] });
    expect(byType(run, T.server).map((s) => s.name)).toEqual(
      Array.from({ length: n }, (_, i) => `control-plane-cp-${i + 1}`),
    );
    expect(byType(run, T.lbTarget)).toHaveLength(n);
    // Infrastructure 14 + 2 per node; bootstrap 6 + 10 per node, less the membership record a
    // single node has no other member for (see bootstrap.test.ts); monitoring 6, backup 8 and the
    // worker join token 2 (monitoring, backup, outputs tests); day 2: upgrade 2 + 1 per node,
    // certificates 1 + 1 per node, defrag 3 (dayTwo.test.ts); kubelet CSR approver 6 (csrApprover.test.ts);
    // cloud controller 3 and CSI driver 3 (component, Secret, release: cloudIntegration.test.ts).
    expect(run.resources).toHaveLength(54 + 14 * n - (n === 1 ? 1 : 0));
  });

  test("tcp health check mode", async () => {
    const run = await runStack({
      healthCheckMode: "tcp",
      healthCheckIntervalSeconds: 4,
      healthCheckTimeoutSeconds: 2,
    });
    expect(one(run, "api-lb-service").inputs.healthCheck).toEqual({
      protocol: "tcp",
      port: 6443,
      interval: 4,
      timeout: 2,
      retries: 3,
    });
  });

  test("without a public load balancer interface there is no public API URL", async () => {
    const run = await runStack({ loadBalancerPublicInterface: false });
    expect(one(run, "api-lb-network").inputs.enablePublicInterface).toBe(false);
    expect(run.outputs.apiServerUrl).toBeUndefined();
    expect(run.outputs.loadBalancerIpv4).toBeUndefined();
  });

  test("without a DNS name the control-plane endpoint is the pinned private IP", async () => {
    const run = await runStack({ apiDnsName: "" });
    expect(run.outputs.controlPlaneEndpoint).toBe("10.20.1.250:6443");
  });

  test("an invalid config registers no resource at all", async () => {
    const sink: RecordedResource[] = [];
    await expect(runStack({ controlPlaneCount: 4 }, { sink })).rejects.toThrow(
      `${P}:controlPlaneCount = 4: must be an odd number from 1 to 7`,
    );
    // Only the stack itself, which the runtime registers before the program starts.
    expect(sink.map((r) => r.type)).toEqual([T.stack]);
  });

  test("preview: the whole graph registers with every computed output unknown", async () => {
    const run = await runStack({}, { preview: true });
    expect(run.preview).toBe(true);
    expect(run.resources).toHaveLength(96);
    expect(one(run, "api-lb-target-cp-1").inputs.serverId).toBe("[unknown]");
    expect(run.outputs.apiServerUrl).toBe("[unknown]");
  });
});
