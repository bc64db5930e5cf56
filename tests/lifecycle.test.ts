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
import { workOf } from "../components/node/nodeScripts";
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
/** Five nodes: cp-4 and cp-5 at the next derived addresses (components/config/index.ts: subnet host .11 + i), free of the LB's .250. */
const fiveNodes = { controlPlaneCount: 5, nodeIps: nodeIps(5) };
const threeNodes = { controlPlaneCount: 3, nodeIps: nodeIps(3) };
const server = (node: string) => `::control-plane-${node}`;

/** Events that add or remove an etcd member, check one, or move its server, by resource name. */
const memberEvent = /^(create|delete|update) (bootstrap-cp-\d-member(ship)?|control-plane-cp-\d)( |$)/;

interface Expect {
  /** Every non-"same" op, in report order (registrations, then the deletes at the end in schedule order). */
  changes?: string[];
  /** The member events in execution order. */
  memberEvents?: string[];
  /** The step's errors, shortened as describeOp prints them. */
  errors?: RegExp[];
  /** Pairs of member-changing ops (by name) that the graph does not order. */
  unordered?: [string, string][];
  /** No op of the step runs a command on this node (it is stopped). */
  untouched?: string;
}

interface Row {
  step: LifecycleStep;
  expect: Expect;
}

/** The first running node other than `node`, where its membership record runs (components/hetzner/controlPlane.ts firstRunning). */
const recordHost = (node: string) => (node === "cp-1" ? "cp-2" : "cp-1");

/**
 * Replacing `node`'s server (after `pulumi state unprotect`): everything keyed on the server id
 * is replaced delete-first; the membership record's delete removes the old member on another
 * node before the new server exists; the new node's setup runs (a join: the others answer);
 * what only connects to the node re-runs there. `moved` lists the cluster-wide steps that ran
 * on the node (its new address is an update that runs them again).
 */
const replacedChanges = (node: string, others: string[], moved: string[]) => [
  `replace control-plane-${node} (delete first)`,
  `replace api-lb-target-${node} (delete first)`,
  `replace bootstrap-${node}-lib-dir (delete first) @${node} runs create`,
  `replace bootstrap-${node}-scripts (delete first) @${node} runs copy`,
  `replace bootstrap-${node}-kubeadm-init (delete first) @${node} runs copy`,
  `replace bootstrap-${node}-kubeadm-join (delete first) @${node} runs copy`,
  `replace bootstrap-${node}-etcd-patch (delete first) @${node} runs copy`,
  `replace bootstrap-${node}-kube-vip (delete first) @${node} runs copy`,
  `replace bootstrap-${node}-member (delete first) @${node} runs create`,
  // Recorded commands run their update: the new server holds no record of them, so each does its work.
  `update bootstrap-${node}-kube-vip-install @${node} runs update`,
  `update bootstrap-${node}-reserved-ip-failover @${node} runs update`,
  ...["cp-1", "cp-2", "cp-3"].flatMap((n) => [
    ...(n === node
      ? [`replace bootstrap-${n}-membership (delete first) @${recordHost(n)} runs delete,create`]
      : others.includes(n)
        ? [`update bootstrap-${n}-membership @${node} runs create`]
        : []),
    // The preflight registers once the member it runs on is chosen, between the records.
    ...(n === "cp-2" && moved.includes("upgrade-preflight") ? [`update upgrade-preflight @${node} runs update`] : []),
  ]),
  `update upgrade-${node} @${node} runs update`,
  `update certificates-${node}-expiry @${node} runs create`,
  ...moved.filter((m) => m !== "upgrade-preflight").map((m) => `update ${m} @${node} runs create`),
];

/** The member events of a replacement: the old member removed elsewhere first, then the new setup. */
const replacedEvents = (node: string, others: string[]) => [
  `delete bootstrap-${node}-membership @${recordHost(node)} runs delete`,
  `delete bootstrap-${node}-member @${node}`,
  `delete control-plane-${node}`,
  `create control-plane-${node}`,
  `create bootstrap-${node}-member @${node} runs create`,
  ...(node === "cp-1"
    ? [
        `create bootstrap-cp-1-membership @cp-2 runs create`,
        ...others.map((n) => `update bootstrap-${n}-membership @cp-1 runs create`),
      ]
    : [
        ...others.map((n) => `update bootstrap-${n}-membership @${node} runs create`),
        `create bootstrap-${node}-membership @cp-1 runs create`,
      ]),
];

const newNodeCreates = (nodes: string[]) => {
  const per = (suffix: string, runs: string) => nodes.map((n) => `create bootstrap-${n}-${suffix} @${n} runs ${runs}`);
  return [
    ...nodes.map((n) => `create control-plane-${n}`),
    ...nodes.map((n) => `create api-lb-target-${n}`),
    ...per("lib-dir", "create"),
    ...per("scripts", "copy"),
    ...nodes.flatMap((n) => [
      `create bootstrap-${n}-kubeadm-init @${n} runs copy`,
      `create bootstrap-${n}-kubeadm-join @${n} runs copy`,
      `create bootstrap-${n}-etcd-patch @${n} runs copy`,
      `create bootstrap-${n}-kube-vip @${n} runs copy`,
    ]),
    // On a running cluster one node's chain after another: setup, kube-vip, companion.
    ...nodes.flatMap((n) => [
      `create bootstrap-${n}-member @${n} runs create`,
      `create bootstrap-${n}-kube-vip-install @${n} runs create`,
      `create bootstrap-${n}-reserved-ip-failover @${n} runs create`,
    ]),
    ...nodes.map((n) => `create bootstrap-${n}-membership @cp-1 runs create`),
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
  "delete bootstrap-cp-5-member @cp-5",
  "delete bootstrap-cp-4-reserved-ip-failover @cp-4 runs delete",
  "delete bootstrap-cp-4-kube-vip-install @cp-4",
  "delete certificates-cp-4-expiry @cp-4",
  "delete certificates-cp-5-expiry @cp-5",
  "delete bootstrap-cp-4-member @cp-4",
  "delete bootstrap-cp-5-membership @cp-1 runs delete",
  "delete upgrade-cp-5 @cp-5",
  "delete api-lb-target-cp-4",
  "delete api-lb-target-cp-5",
  "delete bootstrap-cp-4-lib-dir @cp-4",
  "delete bootstrap-cp-5-lib-dir @cp-5",
  "delete bootstrap-cp-4-scripts @cp-4",
  "delete bootstrap-cp-5-scripts @cp-5",
  "delete bootstrap-cp-4-kubeadm-init @cp-4",
  "delete bootstrap-cp-4-kubeadm-join @cp-4",
  "delete bootstrap-cp-4-etcd-patch @cp-4",
  "delete bootstrap-cp-4-kube-vip @cp-4",
  "delete bootstrap-cp-5-kubeadm-init @cp-5",
  "delete bootstrap-cp-5-kubeadm-join @cp-5",
  "delete bootstrap-cp-5-etcd-patch @cp-5",
  "delete bootstrap-cp-5-kube-vip @cp-5",
  "delete bootstrap-cp-4-membership @cp-1 runs delete",
  "delete upgrade-cp-4 @cp-4",
  ...["cp-4", "cp-5"].map(
    (n) =>
      `delete control-plane-${n}${serverError ? ` ! resource control-plane-${n} cannot be deleted because it is protected` : ""}`,
  ),
];

/** The member events of 5 -> 3: cp-5's member leaves, then cp-4's, each through its record on cp-1. */
const scaleDownEvents = [
  "delete bootstrap-cp-5-member @cp-5",
  "delete bootstrap-cp-4-member @cp-4",
  "delete bootstrap-cp-5-membership @cp-1 runs delete",
  "delete bootstrap-cp-4-membership @cp-1 runs delete",
];

/** An unrelated edit (the backup schedule): in-cluster objects only. */
const unrelated = { backupSchedule: "0 */4 * * *" };

/** The main life: create, no-op, replace cp-1, replace cp-2, a node down, grow to five, shrink to three. */
const life: Row[] = [
  {
    step: { title: "fresh create, 3 nodes" },
    expect: {
      // changes: every resource is created, checked in its own test below
      memberEvents: [
        "create control-plane-cp-1",
        "create control-plane-cp-2",
        "create control-plane-cp-3",
        "create bootstrap-cp-1-member @cp-1 runs create",
        "create bootstrap-cp-2-member @cp-2 runs create",
        "create bootstrap-cp-3-member @cp-3 runs create",
        "create bootstrap-cp-1-membership @cp-2 runs create",
        "create bootstrap-cp-2-membership @cp-1 runs create",
        "create bootstrap-cp-3-membership @cp-1 runs create",
      ],
    },
  },
  { step: { title: "no-op re-run" }, expect: { changes: [] } },
  {
    // The server is protected: the engine refuses to replace it and stops the update.
    step: { title: "--replace cp-1's server, still protected", replace: [server("cp-1")] },
    expect: {
      changes: [
        "replace control-plane-cp-1 (delete first) ! unable to replace resource control-plane-cp-1 as it is currently marked for protection",
      ],
      memberEvents: [],
      errors: [/unable to replace resource .*control-plane-cp-1" as it is currently marked for protection/],
    },
  },
  {
    // docs/runbooks/replace-control-plane-node.md: `pulumi state unprotect`, then `pulumi up --replace`.
    // cp-1 is a node like the others: its member leaves through its record on cp-2, and the new
    // cp-1 joins (kubeadm-member.sh finds the others answering). The cluster-wide steps that ran
    // on cp-1 run on the new cp-1 again (its address changed).
    step: { title: "--replace cp-1's server after unprotect", replace: [server("cp-1")], unprotect: [server("cp-1")] },
    expect: {
      changes: replacedChanges(
        "cp-1",
        ["cp-2", "cp-3"],
        ["upgrade-preflight", "access-admin-kubeconfig", "worker-join-token"],
      ),
      memberEvents: replacedEvents("cp-1", ["cp-2", "cp-3"]),
    },
  },
  {
    step: { title: "--replace cp-2's server after unprotect", replace: [server("cp-2")], unprotect: [server("cp-2")] },
    expect: {
      changes: replacedChanges("cp-2", ["cp-1"], []),
      memberEvents: replacedEvents("cp-2", ["cp-1"]),
    },
  },
  { step: { title: "no-op after the replacements (the servers are protected again)" }, expect: { changes: [] } },
  {
    // cp-1 stopped (Hetzner status off), not replaced, and an unrelated edit: nothing connects to
    // cp-1; the records and the cluster-wide steps that ran there run on the next running node.
    step: { title: "cp-1 stopped during an unrelated update", serverStatus: { "cp-1": "off" }, config: unrelated },
    expect: {
      changes: [
        "update bootstrap-cp-2-membership @cp-3 runs create",
        "update upgrade-preflight @cp-2 runs update",
        "update bootstrap-cp-3-membership @cp-2 runs create",
        "update access-admin-kubeconfig @cp-2 runs create",
        "update worker-join-token @cp-2 runs create",
        "update etcd-backup-cronjob",
        "update monitoring-rules",
      ],
      memberEvents: [
        "update bootstrap-cp-2-membership @cp-3 runs create",
        "update bootstrap-cp-3-membership @cp-2 runs create",
      ],
      untouched: "cp-1",
    },
  },
  {
    step: { title: "cp-1 running again", config: unrelated },
    expect: {
      changes: [
        "update bootstrap-cp-2-membership @cp-1 runs create",
        // cp-1 still holds the preflight's record from before it stopped: nothing runs there.
        "update upgrade-preflight @cp-1",
        "update bootstrap-cp-3-membership @cp-1 runs create",
        "update access-admin-kubeconfig @cp-1 runs create",
        "update worker-join-token @cp-1 runs create",
      ],
    },
  },
  {
    // The existing members are not touched: their setups ignore the longer --peers list.
    step: { title: "scale 3 -> 5", config: { ...fiveNodes, ...unrelated } },
    expect: {
      changes: [...newNodeCreates(["cp-4", "cp-5"]), ...memberCountUpdates],
      memberEvents: [
        "create control-plane-cp-4",
        "create control-plane-cp-5",
        "create bootstrap-cp-4-member @cp-4 runs create",
        "create bootstrap-cp-5-member @cp-5 runs create",
        "create bootstrap-cp-4-membership @cp-1 runs create",
        "create bootstrap-cp-5-membership @cp-1 runs create",
      ],
    },
  },
  {
    // The servers are protected: their deletes fail, the engine goes on past them
    // (deleteProtectedError), so both members have already left (each record's remove, cp-5 then
    // cp-4) when it stops. The preview guard refuses the records' deletes without their
    // allow-replace labels, which is what stops this in CI.
    step: { title: "scale 5 -> 3, servers still protected", config: { ...threeNodes, ...unrelated } },
    expect: {
      changes: [...memberCountUpdates, ...scaleDownDeletes(true)],
      memberEvents: scaleDownEvents,
      errors: [
        /control-plane-cp-4" cannot be deleted because it is protected/,
        /control-plane-cp-5" cannot be deleted/,
      ],
    },
  },
  {
    // The members left in the step before, so the servers' deletes, in one wave, change no member.
    step: { title: "scale 5 -> 3 finished after unprotect", unprotect: [server("cp-4"), server("cp-5")] },
    expect: {
      changes: ["delete control-plane-cp-4", "delete control-plane-cp-5"],
      memberEvents: ["delete control-plane-cp-4", "delete control-plane-cp-5"],
    },
  },
];

/** From the 3-node cluster after the replacements: a setup fails, the next run (hours later) runs it again. */
const failedJoin: Row[] = [
  {
    step: { title: "scale 3 -> 5, cp-4's setup fails", config: fiveNodes, failed: ["::bootstrap-cp-4-member"] },
    expect: {
      changes: [
        ...newNodeCreates(["cp-4", "cp-5"]).map((line) => {
          if (line.startsWith("create bootstrap-cp-4-member ")) return `${line} ! create failed`;
          // The staged kube-vip copy waits for its server only: it is copied anyway.
          const waits = /(cp-5-member|membership|kube-vip-install|reserved-ip|upgrade-cp|certificates-cp)/.test(line);
          return waits ? `${line} ! skipped: a resource it depends on failed` : line;
        }),
        ...memberCountUpdates.map((l) =>
          l === "update monitoring-rules" ? `${l} ! skipped: a resource it depends on failed` : l,
        ),
      ],
      memberEvents: ["create control-plane-cp-4", "create control-plane-cp-5"],
      errors: [/bootstrap-cp-4-member: create failed/],
    },
  },
  {
    // A failed create is not in the state: the setup runs again, and kubeadm-member.sh mints
    // join credentials for this attempt on a member (tests/kubeadmMember.test.ts), however late.
    // No credential is in the state to go stale.
    step: { title: "re-run after the failed setup" },
    expect: {
      changes: newNodeCreates(["cp-4", "cp-5"])
        .filter((l) => /(member|kube-vip-install|reserved-ip|upgrade-cp|certificates-cp)/.test(l))
        .concat(["update monitoring-rules"]),
      memberEvents: [
        "create bootstrap-cp-4-member @cp-4 runs create",
        "create bootstrap-cp-5-member @cp-5 runs create",
        "create bootstrap-cp-4-membership @cp-1 runs create",
        "create bootstrap-cp-5-membership @cp-1 runs create",
      ],
    },
  },
];

/** From five nodes: unprotect both servers first, then one `pulumi up` removes the nodes. */
const scaleDownAtOnce: Row[] = [
  {
    step: {
      title: "scale 5 -> 3 with the servers unprotected",
      config: { ...threeNodes, ...unrelated },
      unprotect: [server("cp-4"), server("cp-5")],
    },
    expect: {
      changes: [...memberCountUpdates, ...scaleDownDeletes(false)],
      // Each server goes after its record removed its member: no two members change at once.
      memberEvents: [...scaleDownEvents, "delete control-plane-cp-4", "delete control-plane-cp-5"],
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
  if (want.untouched) {
    const there = result.ops.filter((o) => o.host === want.untouched && o.runs.length).map(describeOp);
    expect({ title, there }).toEqual({ title, there: [] });
  }
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
      continueFrom(main.slice(0, 6)),
    );
    atOnce = await runLifecycle(
      scaleDownAtOnce.map((r) => r.step),
      continueFrom(main.slice(0, 9)),
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
      stateBefore(failed, i, () => main[5].state),
    );
  });
  test.each(scaleDownAtOnce.map((row, i) => [row.step.title, i] as const))("%s", (_title, i) => {
    checkRow(
      scaleDownAtOnce[i],
      atOnce[i],
      stateBefore(atOnce, i, () => main[8].state),
    );
  });

  test("fresh create: every resource is created, each setup on its node, each record on another, no credentials in the state", () => {
    const fresh = main[0];
    expect(fresh.ops.filter((o) => o.op !== "create")).toEqual([]);
    const hosts = Object.fromEntries(fresh.ops.filter((o) => o.host).map((o) => [o.name, o.host]));
    expect(hosts).toMatchObject({
      "bootstrap-cp-1-member": "cp-1",
      "bootstrap-cp-2-member": "cp-2",
      "bootstrap-cp-3-member": "cp-3",
      "bootstrap-cp-1-membership": "cp-2",
      "bootstrap-cp-2-membership": "cp-1",
      "bootstrap-cp-3-membership": "cp-1",
      "upgrade-preflight": "cp-1",
      "access-admin-kubeconfig": "cp-1",
      "worker-join-token": "cp-1",
    });
    // Every member has the same setup: no node's command differs but for its name and peers.
    const setups = [1, 2, 3].map((n) =>
      workOf(String(fresh.run?.resources.find((r) => r.name === `bootstrap-cp-${n}-member`)?.inputs.create))
        .replace(/cp-\d/g, "cp-N")
        .replace(/--peers \S+/, "--peers P"),
    );
    expect(new Set(setups).size).toBe(1);
    expect(JSON.stringify([...fresh.state.values()].map((e) => e.outputs))).not.toMatch(
      /\bJOIN_(TOKEN|CERTIFICATE_KEY)=/,
    );
    for (const o of fresh.ops.filter((x) => x.type.startsWith("command:remote:"))) {
      expect({ name: o.name, host: o.host }).toEqual({ name: o.name, host: expect.stringMatching(/^cp-[123]$/) });
    }
  });

  test("no-op re-runs: every resource is the same and no command runs", () => {
    for (const i of [1, 5]) {
      expect(main[i].ops.filter((o) => o.op !== "same" || o.runs.length)).toEqual([]);
      expect(main[i].events).toEqual([]);
    }
  });

  test("a replaced server gets a new id, and what keys on it sees the change", () => {
    const before = [...main[3].state.values()].find((e) => e.name === "control-plane-cp-2");
    const after = [...main[4].state.values()].find((e) => e.name === "control-plane-cp-2");
    expect(after?.id).not.toEqual(before?.id);
    expect(after?.generation).toBe(1);
    expect(after?.protect).toBe(true); // the program re-protects it in the same update
    const join = main[4].run?.resources.find((r) => r.name === "bootstrap-cp-2-member");
    expect(join?.revealedInputs.triggers).toEqual([after?.id]);
  });

  test("the refused replacement changes nothing in the state", () => {
    expect([...main[2].state.values()].map((e) => [e.urn, e.id])).toEqual(
      [...main[1].state.values()].map((e) => [e.urn, e.id]),
    );
  });

  test("hcloud getServers lists the servers of the state with the status the scenario sets", () => {
    const state = main[0].state;
    const entry = (name: string) => [...state.values()].find((e) => e.name === name);
    const mocks = new LifecycleMocks(
      state,
      { title: "probe", serverStatus: { "cp-2": "off", "cp-3": "absent" } },
      new Map(),
      () => undefined,
    );
    const listed = functionMocks["hcloud:index/getServers:getServers"]({ withSelector: "role=control-plane" }, mocks);
    const servers = listed.servers as { id: number; status: string; ipv4Address: string }[];
    expect(servers.map((s) => [s.id, s.status])).toEqual([
      [Number(entry("control-plane-cp-1")?.id), "running"],
      [Number(entry("control-plane-cp-2")?.id), "off"],
    ]);
    expect(servers[1].ipv4Address).toBe(entry("control-plane-cp-2")?.outputs.ipv4Address);
    expect(() => mocks.call({ token: "hcloud:index/getNetwork:getNetwork", inputs: {} })).toThrow(/no mock/);
  });
});
