/**
 * Settings a running cluster cannot take (declared `refused` in components/config/) are held to
 * the values the stack exported at its last update (`creationSettings`): a change of any of them
 * is refused before anything is registered, naming the key, both values and the settings table;
 * a brand-new stack takes any valid value; nodes may be added or removed at the end of nodeIps.
 * serverType (declared `rolling`: scripts/ops/resize-control-plane.sh resizes the servers one at a
 * time) is exported and compared the same way, and accepted once every control-plane server
 * Hetzner lists runs the new type. apiDnsName and loadBalancerPublicInterface (declared `rolling`:
 * the API server certificates get the new addresses node by node) are recorded and never refused,
 * beside what the certificates carry and the endpoint the nodes use (deployed.ts `carried`).
 */
import { settings } from "../components/config";
import { carried, comparedKeys, creationFacts, recordedKeys, refusedKeys } from "../components/config/deployed";
import { offlineOrganization, runProgram } from "../tools/offline/harness";
import { ListedServer, ProviderMocks } from "../tools/offline/mocks";
import { loadStackConfig } from "../tools/offline/stackConfig";
import { runStack, T } from "./support/program";

const P = "hcloud-control-plane";
const nodeIps = (n: number) => Array.from({ length: n }, (_, i) => `10.20.1.${11 + i}`);

/** For every refused setting, an edit that is valid on its own (related settings moved along). */
const edits: Record<string, { overrides: Record<string, unknown>; shows: string }> = {
  clusterName: {
    overrides: { clusterName: "prod-nbg2" },
    shows: '"prod-nbg2": refused on a running stack: it runs "prod-nbg1"',
  },
  location: {
    overrides: { location: "fsn1", backupLocation: "nbg1" },
    shows: '"fsn1": refused on a running stack: it runs "nbg1"',
  },
  networkZone: {
    overrides: { networkZone: "us-east", location: "ash" },
    shows: '"us-east": refused on a running stack: it runs "eu-central"',
  },
  networkCidr: {
    overrides: { networkCidr: "10.20.0.0/15" },
    shows: '"10.20.0.0/15": refused on a running stack: it runs "10.20.0.0/16"',
  },
  subnetCidr: {
    overrides: { subnetCidr: "10.20.0.0/23" },
    shows: '"10.20.0.0/23": refused on a running stack: it runs "10.20.1.0/24"',
  },
  podCidr: {
    overrides: { podCidr: "10.245.0.0/16" },
    shows: '"10.245.0.0/16": refused on a running stack: it runs "10.244.0.0/16"',
  },
  serviceCidr: {
    overrides: { serviceCidr: "10.112.0.0/12" },
    shows: '"10.112.0.0/12": refused on a running stack: it runs "10.96.0.0/12"',
  },
  nodeIps: {
    overrides: { nodeIps: ["10.20.1.11", "10.20.1.22", "10.20.1.13"] },
    shows: "nodes are added or removed at the end of the list, and a running node's address never changes",
  },
  loadBalancerPrivateIp: {
    overrides: { loadBalancerPrivateIp: "10.20.1.251" },
    shows: '"10.20.1.251": refused on a running stack: it runs "10.20.1.250"',
  },
  cni: { overrides: { cni: "calico" }, shows: '"calico": refused on a running stack: it runs "cilium"' },
  backupBucket: {
    overrides: { backupBucket: "prod-nbg1-etcd-backups-2" },
    shows: '"prod-nbg1-etcd-backups-2": refused on a running stack: it runs "prod-nbg1-etcd-backups"',
  },
  backupLocation: {
    overrides: { backupLocation: "fsn1" },
    shows: '"fsn1": refused on a running stack: it runs "nbg1"',
  },
  backupObjectLock: {
    overrides: { backupObjectLock: false },
    shows: "false: refused on a running stack: it runs true",
  },
  csiReclaimPolicy: {
    overrides: { csiReclaimPolicy: "Delete" },
    shows: '"Delete": refused on a running stack: it runs "Retain"',
  },
};

describe("settings a running cluster cannot take", () => {
  let deployed: Record<string, unknown>;
  beforeAll(async () => {
    const first = await runStack();
    deployed = { kubernetesVersion: "1.34.2", creationSettings: first.revealedOutputs.creationSettings };
  });

  test("every refused setting has an edit here, and the stack exports each one's value", () => {
    expect(Object.keys(edits).sort()).toEqual(refusedKeys(settings).sort());
    expect(Object.keys(deployed.creationSettings as object).sort()).toEqual(
      [...comparedKeys(settings), ...Object.keys(creationFacts), ...Object.keys(carried)].sort(),
    );
    expect(comparedKeys(settings).sort()).toEqual([...refusedKeys(settings), "serverType", ...recordedKeys].sort());
    expect(deployed.creationSettings).toMatchObject({ kubeletCloudProvider: "external" });
    // No secret is among them.
    expect(Object.keys(deployed.creationSettings as object)).not.toContain("sshPrivateKey");
  });

  test.each(Object.keys(edits))("%s: refused against the deployed stack, accepted by a new one", async (key) => {
    const { overrides, shows } = edits[key];
    const refused = runStack(overrides, { deployed });
    await expect(refused).rejects.toThrow(`${P}:${key} = `);
    await expect(refused).rejects.toThrow(shows);
    await expect(refused).rejects.toThrow("creationSettings output");
    await expect(refused).rejects.toThrow("see docs/settings.md");
    await expect(runStack(overrides)).resolves.toBeDefined();
  });

  test("nodes are added and removed at the end of nodeIps; unrelated edits and stacks without the output pass", async () => {
    await expect(runStack({ controlPlaneCount: 5, nodeIps: nodeIps(5) }, { deployed })).resolves.toBeDefined();
    const five = await runStack({ controlPlaneCount: 5, nodeIps: nodeIps(5) });
    const fromFive = { kubernetesVersion: "1.34.2", creationSettings: five.revealedOutputs.creationSettings };
    await expect(runStack({}, { deployed: fromFive })).resolves.toBeDefined();
    await expect(runStack({ backupSchedule: "0 */4 * * *" }, { deployed })).resolves.toBeDefined();
    // Last updated before the output existed: nothing to compare with, so the values are recorded.
    await expect(
      runStack({ podCidr: "10.245.0.0/16" }, { deployed: { kubernetesVersion: "1.34.2" } }),
    ).resolves.toBeDefined();
  });

  test("a stack whose creationSettings lack kubeletCloudProvider runs kubelets without it: refused, with the runbook", async () => {
    const withoutKey = Object.fromEntries(
      Object.entries(deployed.creationSettings as object).filter(([k]) => k !== "kubeletCloudProvider"),
    );
    const run = runStack({}, { deployed: { kubernetesVersion: "1.34.2", creationSettings: withoutKey } });
    await expect(run).rejects.toThrow(
      'kubeletCloudProvider (no setting; every new node gets it) = "external": refused on a running stack: it runs "none" (its creationSettings output lacks the key: the stack was created before it was recorded)',
    );
    await expect(run).rejects.toThrow("docs/runbooks/external-cloud-provider.md");
    // Recorded "external" (on a stack created with it): accepted.
    await expect(runStack({}, { deployed })).resolves.toBeDefined();
    // The runbook's migration done and stated: accepted, and the update records the fact.
    const migrated = await runStack(
      { kubeletCloudProviderMigrated: true },
      { deployed: { kubernetesVersion: "1.34.2", creationSettings: withoutKey } },
    );
    expect(migrated.outputs.creationSettings).toMatchObject({ kubeletCloudProvider: "external" });
  });

  describe("serverType: accepted once every control-plane server runs it (scripts/ops/resize-control-plane.sh)", () => {
    let servers: Record<string, ListedServer>;
    beforeAll(async () => {
      const first = await runStack();
      // The servers the deployed stack made, as Hetzner lists them (their real names and labels).
      servers = Object.fromEntries(
        first.resources
          .filter((r) => r.type === T.server)
          .map((r, i) => [
            r.name,
            {
              id: 101 + i,
              name: String(r.inputs.name),
              serverType: String(r.inputs.serverType),
              labels: r.inputs.labels as Record<string, string>,
            },
          ]),
      );
    });
    const resized = (types: Record<string, string>) =>
      Object.fromEntries(Object.entries(servers).map(([k, s]) => [k, { ...s, serverType: types[k] ?? s.serverType }]));

    test("refused before the resize, naming the key, both values, the servers, the runbook and the script", async () => {
      expect(Object.keys(servers).sort()).toEqual(["control-plane-cp-1", "control-plane-cp-2", "control-plane-cp-3"]);
      const before = runStack({ serverType: "ccx33" }, { deployed, existingServers: servers });
      await expect(before).rejects.toThrow(`${P}:serverType = "ccx33": not yet run by every control-plane server`);
      await expect(before).rejects.toThrow('it runs "ccx23" (its creationSettings output)');
      await expect(before).rejects.toThrow(
        "Hetzner lists prod-nbg1-cp-1: ccx23, prod-nbg1-cp-2: ccx23, prod-nbg1-cp-3: ccx23",
      );
      await expect(before).rejects.toThrow("scripts/ops/resize-control-plane.sh");
      await expect(before).rejects.toThrow("docs/runbooks/resize-control-plane.md");
      // Half way (the script stopped after cp-2): still refused, naming the server left.
      const half = runStack(
        { serverType: "ccx33" },
        { deployed, existingServers: resized({ "control-plane-cp-1": "ccx33", "control-plane-cp-2": "ccx33" }) },
      );
      await expect(half).rejects.toThrow("prod-nbg1-cp-2: ccx33, prod-nbg1-cp-3: ccx23");
      // No server listed (a wrong selector would look like this): nothing shows the change done.
      await expect(runStack({ serverType: "ccx33" }, { deployed, existingServers: {} })).rejects.toThrow(
        "Hetzner lists no control-plane server of this cluster",
      );
      // Servers of another cluster (other labels) do not count.
      const other = Object.fromEntries(
        Object.entries(servers).map(([k, s]) => [
          `other-${k}`,
          { ...s, name: `other-${s.name}`, serverType: "ccx33", labels: { ...s.labels, cluster: "other" } },
        ]),
      );
      await expect(runStack({ serverType: "ccx33" }, { deployed, existingServers: other })).rejects.toThrow(
        "Hetzner lists no control-plane server of this cluster",
      );
    });

    test("accepted after the resize: the servers keep their type in the program (ignoreChanges) and the output records the new one", async () => {
      const all = resized({
        "control-plane-cp-1": "ccx33",
        "control-plane-cp-2": "ccx33",
        "control-plane-cp-3": "ccx33",
      });
      const run = await runStack({ serverType: "ccx33" }, { deployed, existingServers: all });
      expect((run.revealedOutputs.creationSettings as Record<string, unknown>).serverType).toBe("ccx33");
      for (const server of run.resources.filter((r) => r.type === T.server)) {
        expect(server.ignoreChanges).toContain("serverType");
        // A server created now (scale-up, replacement) gets the configured type.
        expect(server.inputs.serverType).toBe("ccx33");
      }
      // The next update compares with the new value: the same config passes without a list.
      const next = { kubernetesVersion: "1.34.2", creationSettings: run.revealedOutputs.creationSettings };
      await expect(runStack({ serverType: "ccx33" }, { deployed: next })).resolves.toBeDefined();
      // A new stack takes any valid type without reading the servers.
      await expect(runStack({ serverType: "ccx33" })).resolves.toBeDefined();
    });
  });

  describe("apiDnsName and loadBalancerPublicInterface: recorded, never refused; the nodes' endpoint and every served address carried", () => {
    const settingsOf = (run: { revealedOutputs: Record<string, unknown> }) =>
      run.revealedOutputs.creationSettings as Record<string, unknown>;

    test("a new stack records this config's values", () => {
      expect(deployed.creationSettings).toMatchObject({
        apiDnsName: "api.prod-nbg1.k8s.example.com",
        loadBalancerPublicInterface: true,
        apiEndpointHost: "api.prod-nbg1.k8s.example.com",
        apiServerDnsNames: ["api.prod-nbg1.k8s.example.com"],
        apiServerPublicAddresses: true,
        apiServerSansRolled: false,
      });
    });

    test("accepted on the deployed stack; the next update still keeps the first name as the nodes' endpoint and a SAN", async () => {
      const moved = await runStack(
        { apiDnsName: "api2.prod-nbg1.k8s.example.com", loadBalancerPublicInterface: false },
        { deployed },
      );
      expect(settingsOf(moved)).toMatchObject({
        apiDnsName: "api2.prod-nbg1.k8s.example.com",
        loadBalancerPublicInterface: false,
        apiEndpointHost: "api.prod-nbg1.k8s.example.com",
        apiServerDnsNames: ["api.prod-nbg1.k8s.example.com", "api2.prod-nbg1.k8s.example.com"],
        apiServerPublicAddresses: true,
        apiServerSansRolled: true,
      });
      const next = { kubernetesVersion: "1.34.2", creationSettings: settingsOf(moved) };
      const again = await runStack({ apiDnsName: "api3.prod-nbg1.k8s.example.com" }, { deployed: next });
      expect(settingsOf(again)).toMatchObject({
        apiEndpointHost: "api.prod-nbg1.k8s.example.com",
        apiServerDnsNames: [
          "api.prod-nbg1.k8s.example.com",
          "api2.prod-nbg1.k8s.example.com",
          "api3.prod-nbg1.k8s.example.com",
        ],
        apiServerPublicAddresses: true,
        apiServerSansRolled: true,
      });
    });

    test("a stack that recorded apiDnsName but nothing carried yet: its recorded name (or the private IP) is the endpoint", async () => {
      const older = Object.fromEntries(
        Object.entries(deployed.creationSettings as object).filter(([k]) => !(k in carried)),
      );
      const run = await runStack(
        { apiDnsName: "api2.prod-nbg1.k8s.example.com" },
        { deployed: { kubernetesVersion: "1.34.2", creationSettings: older } },
      );
      expect(settingsOf(run).apiEndpointHost).toBe("api.prod-nbg1.k8s.example.com");
      const noName = { ...older, apiDnsName: "" };
      const fromIp = await runStack({}, { deployed: { kubernetesVersion: "1.34.2", creationSettings: noName } });
      expect(settingsOf(fromIp).apiEndpointHost).toBe("10.20.1.250");
    });
  });

  test("every problem at once", async () => {
    const both = runStack({ podCidr: "10.245.0.0/16", serverType: "ccx33" }, { deployed });
    await expect(both).rejects.toThrow(`${P}:serverType = "ccx33"`);
    await expect(both).rejects.toThrow(`${P}:podCidr = "10.245.0.0/16"`);
  });
});

test("the program reads its own stack through one StackReference (two resources with one URN are an error)", async () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- index.ts is `export =`, the Pulumi entry point
  const program = require("../index") as () => Promise<unknown>;
  const config = loadStackConfig("prod");
  const self = `${offlineOrganization}/${config.project}/${config.stack}`;
  const mocks = new ProviderMocks(false, (stack) =>
    stack === self ? { outputs: { kubernetesVersion: "1.34.2" }, secretOutputNames: [] } : undefined,
  );
  await runProgram(program, config, { mocks });
  expect(mocks.stackReferences).toEqual([{ name: "deployed-stack", stack: self }]);
});
