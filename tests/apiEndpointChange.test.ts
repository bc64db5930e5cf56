/**
 * A running cluster's API addresses change (apiDnsName, loadBalancerPublicInterface) through
 * `pulumi up` (lifecycle harness, tests/support/lifecycle.ts): from a deployed 3-node stack, the
 * API server certificates get the new SANs one node after another (apiserver-sans.sh,
 * components/lifecycle/apiServerSans.ts), each with every address the stack ever served and the
 * endpoint the nodes were created with; the stack's kubeconfig moves last; nothing else runs on a
 * node. What the script does on a node is tests/apiserverSans.test.ts's business.
 */
import { workOf } from "../components/node/nodeScripts";
import {
  continueFrom,
  dependsOnTransitively,
  describeOp,
  OpReport,
  runLifecycle,
  StepResult,
} from "./support/lifecycle";

const privateIp = "10.20.1.250";
const nodes = ["cp-1", "cp-2", "cp-3"];
const sanStep = (node: string) => `apiserver-sans-${node}-apiserver-sans`;

/** The node commands of a step that run something (copies of files excluded: they change nothing that runs). */
const nodeCommands = (result: StepResult): OpReport[] =>
  result.ops.filter((o) => o.type === "command:remote:Command" && o.runs.length > 0);

const urnOf = (result: StepResult, name: string): string => {
  const op = result.ops.find((o) => o.name === name);
  if (!op) throw new Error(`${name} is not in the step`);
  return op.urn;
};

/** The work of a command's create (components/node/nodeScripts.ts recordedWork). */
const createOf = (result: StepResult, name: string): string =>
  workOf(String(result.run?.resources.find((r) => r.name === name)?.revealedInputs.create ?? ""));

/** The `--san` values and the `--endpoint` of one apiserver-sans.sh command line. */
function flags(command: string): { endpoint: string | undefined; sans: string[] } {
  const words = command.split(" ");
  const after = (flag: string) => words.flatMap((w, i) => (w === flag ? [words[i + 1]] : []));
  return { endpoint: after("--endpoint")[0], sans: after("--san") };
}

/** The stack's outputs of a step: the load balancer's public and the reserved address. */
function addresses(result: StepResult): { lbIpv4: string; lbIpv6: string; reservedIp: string } {
  const outputs = result.run?.revealedOutputs ?? {};
  return {
    lbIpv4: String(outputs.loadBalancerIpv4),
    lbIpv6: String(outputs.loadBalancerIpv6),
    reservedIp: String(outputs.reservedIp),
  };
}

describe("apiDnsName on a running cluster: the SANs node by node, the kubeconfig last", () => {
  let fresh: StepResult[];
  let change: StepResult;
  let again: StepResult;
  let scaleUp: StepResult;
  let publicOn: StepResult;
  beforeAll(async () => {
    fresh = await runLifecycle([{ title: "fresh create, 3 nodes, no DNS name", config: { apiDnsName: "" } }]);
    [change, again] = await runLifecycle(
      [
        { title: "apiDnsName api.example.com", config: { apiDnsName: "api.example.com" } },
        { title: "no-op re-run", config: { apiDnsName: "api.example.com" } },
      ],
      continueFrom(fresh),
    );
    [scaleUp] = await runLifecycle(
      [
        {
          title: "apiDnsName and two more nodes at once",
          config: { apiDnsName: "api.example.com", controlPlaneCount: 5, nodeIps: [] },
        },
      ],
      continueFrom(fresh),
    );
    const privateOnly = await runLifecycle([
      {
        title: "fresh create, no DNS name, no public interface",
        config: { apiDnsName: "", loadBalancerPublicInterface: false },
      },
    ]);
    [publicOn] = await runLifecycle(
      [{ title: "loadBalancerPublicInterface on", config: { loadBalancerPublicInterface: true } }],
      continueFrom(privateOnly),
    );
  }, 300_000);

  test("a new cluster registers no SAN step (init makes the certificates)", () => {
    expect(fresh[0].errors).toEqual([]);
    expect(fresh[0].ops.filter((o) => /apiserver-sans/.test(o.name))).toEqual([]);
  });

  test("the change: only the SAN steps run on the nodes, cp-1, cp-2, cp-3, on their own node", () => {
    expect(change.errors).toEqual([]);
    expect(nodeCommands(change).map((o) => `${describeOp(o)} on ${o.host}`)).toEqual(
      nodes.map((n) => `create ${sanStep(n)} @${n} runs create on ${n}`),
    );
  });

  test("each step after the previous node's, the first after the other rolling chains, the kubeconfig after the last", () => {
    const g = change.newGraph;
    const urn = (name: string) => urnOf(change, name);
    expect(dependsOnTransitively(g, urn(sanStep("cp-2")), urn(sanStep("cp-1")))).toBe(true);
    expect(dependsOnTransitively(g, urn(sanStep("cp-3")), urn(sanStep("cp-2")))).toBe(true);
    expect(dependsOnTransitively(g, urn(sanStep("cp-1")), urn("upgrade-cp-3"))).toBe(true);
    expect(dependsOnTransitively(g, urn("access-admin-kubeconfig"), urn(sanStep("cp-3")))).toBe(true);
    // The provider (and everything in the cluster) takes the new kubeconfig after it.
    expect(change.ops.find((o) => o.name === "access-provider")?.op).toBe("update");
    expect(String(change.run?.revealedOutputs.kubeconfig)).toContain("server: https://api.example.com:6443");
  });

  test("each step keeps the deployed endpoint and every old SAN, and adds the new name", () => {
    const a = addresses(fresh[0]);
    const wanted = [privateIp, a.reservedIp, a.lbIpv4, a.lbIpv6, "api.example.com"].sort();
    for (const n of nodes) {
      const command = createOf(change, sanStep(n));
      expect(command).toMatch(/^bash \/usr\/local\/lib\/hcloud-control-plane\/node\/apiserver-sans\.sh /);
      expect(command).toContain(`--node-name prod-nbg1-${n} --node-ip 10.20.1.${10 + Number(n.slice(3))} `);
      expect(flags(command)).toEqual({ endpoint: privateIp, sans: wanted });
    }
  });

  test("the nodes keep their endpoint: kubeadm files, /etc/hosts and the CNI name the load balancer's private IP", () => {
    const kubeadmJoin = change.ops.find((o) => o.name === "bootstrap-cp-1-kubeadm-join");
    expect(kubeadmJoin?.op).toBe("same");
    expect(change.ops.find((o) => o.name === "cni-cilium")?.op).toBe("same");
    expect(change.run?.revealedOutputs.creationSettings).toMatchObject({
      apiDnsName: "api.example.com",
      apiEndpointHost: privateIp,
      apiServerDnsNames: ["api.example.com"],
    });
    // Workers join where the nodes' kubeadm-config and cluster-info point: the endpoint kept.
    expect(change.run?.revealedOutputs.controlPlaneEndpoint).toBe(`${privateIp}:6443`);
    expect(change.run?.revealedOutputs.workerJoin).toMatchObject({ controlPlaneEndpoint: `${privateIp}:6443` });
  });

  test("the next update with the same config runs nothing", () => {
    expect(again.errors).toEqual([]);
    expect(again.ops.filter((o) => o.op !== "same" || o.runs.length)).toEqual([]);
    // The steps stay once the addresses changed: found the same, not deleted.
    expect(again.ops.filter((o) => /apiserver-sans/.test(o.name)).map(describeOp)).toEqual(
      nodes.map((n) => `same ${sanStep(n)} @${n}`),
    );
  });

  test("with a scale-up in the same update, the new nodes join through the deployed endpoint, before the SAN steps, which cover them too", () => {
    expect(scaleUp.errors).toEqual([]);
    const g = scaleUp.newGraph;
    const urn = (name: string) => urnOf(scaleUp, name);
    for (const n of ["cp-4", "cp-5"]) {
      const setup = createOf(scaleUp, `bootstrap-${n}-member`);
      expect(setup).toContain("kubeadm-member.sh");
      expect(setup).not.toContain("api.example.com");
    }
    expect(dependsOnTransitively(g, urn(sanStep("cp-1")), urn("bootstrap-cp-5-member"))).toBe(true);
    expect(dependsOnTransitively(g, urn(sanStep("cp-5")), urn(sanStep("cp-4")))).toBe(true);
    expect(dependsOnTransitively(g, urn("access-admin-kubeconfig"), urn(sanStep("cp-5")))).toBe(true);
    expect(flags(createOf(scaleUp, sanStep("cp-5"))).sans).toContain("api.example.com");
  });

  test("loadBalancerPublicInterface turned on: the public addresses become SANs node by node, the kubeconfig moves last", () => {
    expect(publicOn.errors).toEqual([]);
    expect(nodeCommands(publicOn).map((o) => `${describeOp(o)} on ${o.host}`)).toEqual(
      nodes.map((n) => `create ${sanStep(n)} @${n} runs create on ${n}`),
    );
    const a = addresses(publicOn);
    for (const n of nodes) {
      expect(flags(createOf(publicOn, sanStep(n))).sans).toEqual([privateIp, a.reservedIp, a.lbIpv4, a.lbIpv6].sort());
    }
    const g = publicOn.newGraph;
    const urn = (name: string) => urnOf(publicOn, name);
    expect(dependsOnTransitively(g, urn(sanStep("cp-3")), urn(sanStep("cp-2")))).toBe(true);
    expect(dependsOnTransitively(g, urn(sanStep("cp-2")), urn(sanStep("cp-1")))).toBe(true);
    expect(dependsOnTransitively(g, urn("access-admin-kubeconfig"), urn(sanStep("cp-3")))).toBe(true);
    expect(String(publicOn.run?.revealedOutputs.kubeconfig)).toContain(`server: https://${a.lbIpv4}:6443`);
  });
});
