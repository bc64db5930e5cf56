/**
 * The bring-up's critical path: the longest chain of resources a first `pulumi up` must create
 * one after another (longestChain in tools/offline/render.ts, the measure `npm run bench`
 * prints), on the prod stack's config with 1, 3, 5 and 7 control-plane nodes, as the benchmark
 * builds it. Every link is a remote command or a cloud API call, so the chain bounds the
 * bring-up time from below whatever the engine's parallelism; it must stay within 2N + 8: the
 * network, the subnet, the server, one delivery step, the N setups, then the admin kubeconfig,
 * the provider and the in-cluster installs. Steps are counted, nothing is timed: the mocks say
 * nothing about how long a step takes.
 */
import { longestChain, toPlan } from "../tools/offline/render";
import { runStack } from "./support/program";

describe.each([1, 3, 5, 7])("%i control-plane nodes", (nodes) => {
  const budget = 2 * nodes + 8;

  test(`the longest chain of a first pulumi up has at most 2N + 8 = ${budget} resources`, async () => {
    // As tools/bench.ts: the prod config with the node count, addresses derived from the subnet.
    const run = await runStack({ controlPlaneCount: nodes, nodeIps: [] });
    const chain = longestChain(toPlan(run));
    // The chain itself is the failure message: which links made it too long.
    const verdict = chain.length <= budget ? "within budget" : `${chain.length} resources: ${chain.join(" -> ")}`;
    expect(verdict).toBe("within budget");
    // It still runs through every node's setup, in node order: the setups stay serialized.
    const setups = chain.filter((name) => /^bootstrap-cp-\d+-member$/.test(name));
    expect(setups).toEqual(Array.from({ length: nodes }, (_, i) => `bootstrap-cp-${i + 1}-member`));
  });
});
