/**
 * What `pulumi up` does over a cluster's life, step by step, on the real program: each step
 * runs index.ts under the lifecycle mocks (tests/support/lifecycle.ts) against the state the
 * previous step left, and the table below says what each step must do. When the program
 * changes, update the table: every line is one resource's operation as the report prints it
 * (`op name [(delete first)] [@node] [runs scripts] [! error]`).
 *
 * The model of the engine and providers, with its sources, is in tests/support/lifecycle.ts;
 * what it cannot prove is listed there too.
 */
import {
  continueFrom,
  describeEvent,
  describeOp,
  functionMocks,
  LifecycleMocks,
  LifecycleStep,
  runLifecycle,
  StackState,
  StepResult,
  unorderedMemberPairs,
} from "./support/lifecycle";

const nodeIps = (n: number) => Array.from({ length: n }, (_, i) => `10.20.1.${11 + i}`);
/** Five nodes: cp-4 and cp-5 at the next derived addresses (components/config.ts: subnet host .11 + i), free of the LB's .250. */
const fiveNodes = { controlPlaneCount: 5, nodeIps: nodeIps(5) };
const threeNodes = { controlPlaneCount: 3, nodeIps: nodeIps(3) };
const server = (node: string) => `::control-plane-${node}`;

/** Events that add or remove an etcd member or its server, by resource name. */
const memberEvent = /^(create|delete) (bootstrap-cp-\d-(init|join)|control-plane-cp-\d)( |$)/;

interface Expect {
  /** Every non-"same" op, in report order (registrations, then the deletes at the end in schedule order). */
  changes?: string[];
  /** The member events in execution order. */
  memberEvents?: string[];
  /** The step's errors, shortened as describeOp prints them. */
  errors?: RegExp[];
  /** Pairs of member-changing ops (by name) that the graph does not order. */
  unordered?: [string, string][];
}

interface Row {
  step: LifecycleStep;
  expect: Expect;
}

const cp2ReplacedChanges = [
  "replace control-plane-cp-2 (delete first)",
  "replace api-lb-target-cp-2 (delete first)",
  "replace bootstrap-cp-2-lib-dir (delete first) @cp-2 runs create",
  "replace bootstrap-cp-2-scripts (delete first) @cp-2 runs copy",
  "replace bootstrap-cp-2-prepared (delete first) @cp-2 runs create",
  "replace bootstrap-cp-2-kubeadm-config (delete first) @cp-2 runs copy",
  "replace bootstrap-cp-2-etcd-patch (delete first) @cp-2 runs copy",
  "replace bootstrap-cp-2-join-credentials (delete first) @cp-1 runs create",
  "replace bootstrap-cp-2-join (delete first) @cp-2 runs delete,create",
  "update bootstrap-cp-3-join-credentials @cp-2 runs create",
  "replace bootstrap-cp-2-kube-vip (delete first) @cp-2 runs copy",
  "update bootstrap-cp-2-kube-vip-install @cp-2 runs create",
  "update bootstrap-cp-2-reserved-ip-failover @cp-2 runs create",
  "update upgrade-cp-2 @cp-2 runs create",
  "update certificates-cp-2-expiry @cp-2 runs create",
];

const newNodeCreates = (nodes: string[], credentialsOn: Record<string, string>) => {
  const per = (suffix: string, runs: string) => nodes.map((n) => `create bootstrap-${n}-${suffix} @${n} runs ${runs}`);
  return [
    ...nodes.map((n) => `create control-plane-${n}`),
    ...nodes.map((n) => `create api-lb-target-${n}`),
    ...per("lib-dir", "create"),
    ...per("scripts", "copy"),
    ...per("prepared", "create"),
    ...nodes.flatMap((n) => [
      `create bootstrap-${n}-kubeadm-config @${n} runs copy`,
      `create bootstrap-${n}-etcd-patch @${n} runs copy`,
    ]),
    ...nodes.flatMap((n) => [
      `create bootstrap-${n}-join-credentials @${credentialsOn[n]} runs create`,
      `create bootstrap-${n}-join @${n} runs create`,
    ]),
    ...per("kube-vip", "copy"),
    ...nodes.flatMap((n) => [
      `create bootstrap-${n}-kube-vip-install @${n} runs create`,
      `create bootstrap-${n}-reserved-ip-failover @${n} runs create`,
    ]),
    ...nodes.map((n) => `create upgrade-${n} @${n} runs create`),
    ...nodes.map((n) => `create certificates-${n}-expiry @${n} runs create`),
  ];
};

/** What the in-cluster objects do when the member count changes (the etcd CronJobs and alerts list the members). */
const memberCountUpdates = [
  "update etcd-defrag-cronjob",
  "update etcd-backup-cronjob",
  "update monitoring-kube-prometheus-stack",
  "update monitoring-rules",
];

/** The deletes at the end of a 5 -> 3 update, in the engine's wave order (one wave's are parallel). */
const scaleDownDeletes = (serverError: boolean) => [
  "delete bootstrap-cp-5-reserved-ip-failover @cp-5 runs delete",
  "delete bootstrap-cp-5-kube-vip-install @cp-5",
  "delete bootstrap-cp-4-reserved-ip-failover @cp-4 runs delete",
  "delete bootstrap-cp-4-kube-vip-install @cp-4",
  "delete bootstrap-cp-4-kube-vip @cp-4",
  "delete bootstrap-cp-5-kube-vip @cp-5",
  "delete bootstrap-cp-5-join @cp-5 runs delete",
  "delete bootstrap-cp-5-join-credentials @cp-4",
  "delete bootstrap-cp-4-join @cp-4 runs delete",
  "delete bootstrap-cp-4-kubeadm-config @cp-4",
  "delete bootstrap-cp-4-etcd-patch @cp-4",
  "delete bootstrap-cp-5-kubeadm-config @cp-5",
  "delete bootstrap-cp-5-etcd-patch @cp-5",
  "delete bootstrap-cp-4-prepared @cp-4",
  "delete bootstrap-cp-5-prepared @cp-5",
  "delete certificates-cp-4-expiry @cp-4",
  "delete certificates-cp-5-expiry @cp-5",
  "delete bootstrap-cp-4-scripts @cp-4",
  "delete bootstrap-cp-5-scripts @cp-5",
  "delete upgrade-cp-5 @cp-5",
  "delete api-lb-target-cp-4",
  "delete api-lb-target-cp-5",
  "delete bootstrap-cp-4-lib-dir @cp-4",
  "delete bootstrap-cp-5-lib-dir @cp-5",
  "delete bootstrap-cp-4-join-credentials @cp-3",
  "delete upgrade-cp-4 @cp-4",
  ...["cp-4", "cp-5"].map(
    (n) =>
      `delete control-plane-${n}${serverError ? ` ! resource control-plane-${n} cannot be deleted because it is protected` : ""}`,
  ),
];

/**
 * Deleting cp-4's and cp-5's servers: both hold (held) an etcd member, and nothing in the graph
 * orders the two (each server's dependents are its own node's), so the engine deletes them in
 * the same wave. Their members left before (the joins' deletes, ordered cp-5 then cp-4), but
 * a member whose join was dropped from the state (the dead-node runbook) would lose two
 * members at once: the checker reports it.
 */
const serversInOneWave: [string, string] = ["control-plane-cp-4", "control-plane-cp-5"];

/** The main life: create, no-op, replace cp-2, grow to five, shrink to three. */
const life: Row[] = [
  {
    step: { title: "fresh create, 3 nodes" },
    expect: {
      // changes: every resource is created, checked in its own test below
      memberEvents: [
        "create control-plane-cp-1",
        "create control-plane-cp-2",
        "create control-plane-cp-3",
        "create bootstrap-cp-1-init @cp-1 runs create",
        "create bootstrap-cp-2-join @cp-2 runs create",
        "create bootstrap-cp-3-join @cp-3 runs create",
      ],
    },
  },
  { step: { title: "no-op re-run" }, expect: { changes: [] } },
  {
    // The server is protected: the engine refuses to replace it and stops the update.
    step: { title: "--replace cp-2's server, still protected", replace: [server("cp-2")] },
    expect: {
      changes: [
        "replace control-plane-cp-2 (delete first) ! unable to replace resource control-plane-cp-2 as it is currently marked for protection",
      ],
      memberEvents: [],
      errors: [/unable to replace resource .*control-plane-cp-2" as it is currently marked for protection/],
    },
  },
  {
    // docs/runbooks/replace-control-plane-node.md: `pulumi state unprotect`, then `pulumi up --replace`.
    step: { title: "--replace cp-2's server after unprotect", replace: [server("cp-2")], unprotect: [server("cp-2")] },
    expect: {
      changes: cp2ReplacedChanges,
      memberEvents: [
        "delete bootstrap-cp-2-join @cp-2 runs delete",
        "delete control-plane-cp-2",
        "create control-plane-cp-2",
        "create bootstrap-cp-2-join @cp-2 runs create",
      ],
    },
  },
  { step: { title: "no-op after the replacement (the server is protected again)" }, expect: { changes: [] } },
  {
    step: { title: "scale 3 -> 5", config: fiveNodes },
    expect: {
      changes: [...newNodeCreates(["cp-4", "cp-5"], { "cp-4": "cp-3", "cp-5": "cp-4" }), ...memberCountUpdates],
      memberEvents: [
        "create control-plane-cp-4",
        "create control-plane-cp-5",
        "create bootstrap-cp-4-join @cp-4 runs create",
        "create bootstrap-cp-5-join @cp-5 runs create",
      ],
    },
  },
  {
    // The servers are protected: their deletes fail, the engine goes on past them
    // (deleteProtectedError), so both members have already left (leave-cluster.sh) when it stops.
    step: { title: "scale 5 -> 3, servers still protected", config: threeNodes },
    expect: {
      changes: [...memberCountUpdates, ...scaleDownDeletes(true)],
      memberEvents: ["delete bootstrap-cp-5-join @cp-5 runs delete", "delete bootstrap-cp-4-join @cp-4 runs delete"],
      errors: [
        /control-plane-cp-4" cannot be deleted because it is protected/,
        /control-plane-cp-5" cannot be deleted/,
      ],
    },
  },
  {
    step: { title: "scale 5 -> 3 finished after unprotect", unprotect: [server("cp-4"), server("cp-5")] },
    expect: {
      changes: ["delete control-plane-cp-4", "delete control-plane-cp-5"],
      memberEvents: ["delete control-plane-cp-4", "delete control-plane-cp-5"],
      unordered: [serversInOneWave],
    },
  },
];

/** From the 3-node cluster after the replacement: a join fails, the next run creates it again. */
const failedJoin: Row[] = [
  {
    step: { title: "scale 3 -> 5, cp-4's join fails", config: fiveNodes, failed: ["::bootstrap-cp-4-join"] },
    expect: {
      changes: [
        ...newNodeCreates(["cp-4", "cp-5"], { "cp-4": "cp-3", "cp-5": "cp-4" }).map((line) => {
          if (line.startsWith("create bootstrap-cp-4-join ")) return `${line} ! create failed`;
          const waits = /(cp-5-join|kube-vip|reserved-ip|upgrade-cp|certificates-cp)/.test(line);
          return waits ? `${line} ! skipped: a resource it depends on failed` : line;
        }),
        ...memberCountUpdates.map((l) =>
          l === "update monitoring-rules" ? `${l} ! skipped: a resource it depends on failed` : l,
        ),
      ],
      memberEvents: ["create control-plane-cp-4", "create control-plane-cp-5"],
      errors: [/bootstrap-cp-4-join: create failed/],
    },
  },
  {
    step: { title: "re-run after the failed join" },
    expect: {
      changes: [
        "create bootstrap-cp-4-join @cp-4 runs create",
        "create bootstrap-cp-5-join-credentials @cp-4 runs create",
        "create bootstrap-cp-5-join @cp-5 runs create",
        ...newNodeCreates(["cp-4", "cp-5"], { "cp-4": "cp-3", "cp-5": "cp-4" }).filter((l) =>
          /(kube-vip|reserved-ip|upgrade-cp|certificates-cp)/.test(l),
        ),
        "update monitoring-rules",
      ],
      memberEvents: ["create bootstrap-cp-4-join @cp-4 runs create", "create bootstrap-cp-5-join @cp-5 runs create"],
    },
  },
];

/** From five nodes: unprotect both servers first, then one `pulumi up` removes the nodes. */
const scaleDownAtOnce: Row[] = [
  {
    step: {
      title: "scale 5 -> 3 with the servers unprotected",
      config: threeNodes,
      unprotect: [server("cp-4"), server("cp-5")],
    },
    expect: {
      changes: [...memberCountUpdates, ...scaleDownDeletes(false)],
      memberEvents: [
        "delete bootstrap-cp-5-join @cp-5 runs delete",
        "delete bootstrap-cp-4-join @cp-4 runs delete",
        "delete control-plane-cp-4",
        "delete control-plane-cp-5",
      ],
      unordered: [serversInOneWave],
    },
  },
];

const nameOf = (urn: string) => urn.slice(urn.lastIndexOf("::") + 2);

function checkRow(row: Row, result: StepResult, before: StackState): void {
  const { expect: want } = row;
  const title = row.step.title;
  if (want.changes) {
    const changes = result.ops.filter((o) => o.op !== "same").map(describeOp);
    expect({ title, changes }).toEqual({ title, changes: want.changes });
  }
  if (want.memberEvents) {
    const events = result.events.map(describeEvent).filter((e) => memberEvent.test(e));
    expect({ title, events }).toEqual({ title, events: want.memberEvents });
  }
  const errors = want.errors ?? [];
  expect({ title, count: result.errors.length }).toEqual({ title, count: errors.length });
  errors.forEach((re, i) => expect(result.errors[i]).toMatch(re));
  expect({ title, unmodelled: result.unmodelledTypes }).toEqual({ title, unmodelled: [] });
  const pairs = unorderedMemberPairs(result, before).map(([a, b]) => [nameOf(a), nameOf(b)]);
  expect({ title, unordered: pairs }).toEqual({ title, unordered: want.unordered ?? [] });
}

describe("the program over a cluster's life (lifecycle harness)", () => {
  let main: StepResult[];
  let failed: StepResult[];
  let atOnce: StepResult[];
  beforeAll(async () => {
    main = await runLifecycle(life.map((r) => r.step));
    // Branches reuse the main sequence's states: after the replacement (3 nodes) and after the scale-up.
    failed = await runLifecycle(
      failedJoin.map((r) => r.step),
      continueFrom(main.slice(0, 5)),
    );
    atOnce = await runLifecycle(
      scaleDownAtOnce.map((r) => r.step),
      continueFrom(main.slice(0, 6)),
    );
  });

  const stateBefore = (results: StepResult[], i: number, base?: () => StackState) =>
    i > 0 ? results[i - 1].state : (base?.() ?? new Map());

  test.each(life.map((row, i) => [row.step.title, i] as const))("%s", (_title, i) => {
    checkRow(life[i], main[i], stateBefore(main, i));
  });
  test.each(failedJoin.map((row, i) => [row.step.title, i] as const))("%s", (_title, i) => {
    checkRow(
      failedJoin[i],
      failed[i],
      stateBefore(failed, i, () => main[4].state),
    );
  });
  test.each(scaleDownAtOnce.map((row, i) => [row.step.title, i] as const))("%s", (_title, i) => {
    checkRow(
      scaleDownAtOnce[i],
      atOnce[i],
      stateBefore(atOnce, i, () => main[5].state),
    );
  });

  test("fresh create: every resource is created, each command on its node, the join credentials on the member before", () => {
    const fresh = main[0];
    expect(fresh.ops.filter((o) => o.op !== "create")).toEqual([]);
    const hosts = Object.fromEntries(fresh.ops.filter((o) => o.host).map((o) => [o.name, o.host]));
    expect(hosts).toMatchObject({
      "bootstrap-cp-1-init": "cp-1",
      "bootstrap-cp-2-join-credentials": "cp-1",
      "bootstrap-cp-2-join": "cp-2",
      "bootstrap-cp-3-join-credentials": "cp-2",
      "bootstrap-cp-3-join": "cp-3",
      "upgrade-preflight": "cp-1",
      "access-admin-kubeconfig": "cp-1",
      "worker-join-token": "cp-1",
    });
    for (const o of fresh.ops.filter((x) => x.type.startsWith("command:remote:"))) {
      expect({ name: o.name, host: o.host }).toEqual({ name: o.name, host: expect.stringMatching(/^cp-[123]$/) });
    }
  });

  test("no-op re-runs: every resource is the same and no command runs", () => {
    for (const i of [1, 4]) {
      expect(main[i].ops.filter((o) => o.op !== "same" || o.runs.length)).toEqual([]);
      expect(main[i].events).toEqual([]);
    }
  });

  test("a replaced server gets a new id, and what keys on it sees the change", () => {
    const before = [...main[2].state.values()].find((e) => e.name === "control-plane-cp-2");
    const after = [...main[3].state.values()].find((e) => e.name === "control-plane-cp-2");
    expect(after?.id).not.toEqual(before?.id);
    expect(after?.generation).toBe(1);
    expect(after?.protect).toBe(true); // the program re-protects it in the same update
    const join = main[3].run?.resources.find((r) => r.name === "bootstrap-cp-2-join");
    expect(join?.revealedInputs.triggers).toEqual([after?.id]);
  });

  test("the refused replacement changes nothing in the state", () => {
    expect([...main[2].state.values()].map((e) => [e.urn, e.id])).toEqual(
      [...main[1].state.values()].map((e) => [e.urn, e.id]),
    );
  });

  test("hcloud getServer answers from the state with the status the scenario sets", () => {
    const state = main[0].state;
    const cp2 = [...state.values()].find((e) => e.name === "control-plane-cp-2");
    const mocks = new LifecycleMocks(
      state,
      { title: "probe", serverStatus: { "cp-2": "off" } },
      new Map(),
      () => undefined,
    );
    const getServer = functionMocks["hcloud:index/getServer:getServer"];
    expect(getServer({ id: cp2?.id }, mocks)).toMatchObject({ status: "off", ipv4Address: cp2?.outputs.ipv4Address });
    const cp1 = [...state.values()].find((e) => e.name === "control-plane-cp-1");
    expect(getServer({ id: cp1?.id }, mocks)).toMatchObject({ status: "running" });
    expect(() => getServer({ id: "1" }, mocks)).toThrow("no server with id 1");
    expect(() => mocks.call({ token: "hcloud:index/getNetwork:getNetwork", inputs: {} })).toThrow(/no mock/);
  });
});
