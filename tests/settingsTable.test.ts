/**
 * Every row of the settings table (docs/settings.md, from the declarations in components/config/)
 * proven on the real program with the lifecycle harness (tests/support/lifecycle.ts): for every
 * setting whose change is declared `nothing`, `live` or `rolling`, one sample edit is applied as
 * one `pulumi up` step to a freshly deployed 3-node stack, and the step must do what the class
 * promises. `refused` rows are proven by tests/creationSettings.test.ts.
 *
 * - nothing: every op is "same" (or one the declaration's reason names);
 * - live: nothing that holds state is replaced or deleted, and no command that runs on a node
 *   runs again (but what the reason names);
 * - rolling: the node commands that change a node run one node after another in the dependency
 *   graph (all of node A's before any of node B's), each behind the /readyz and etcd health gates.
 * Every step: no error, no unmodelled type, no two etcd member changes the graph leaves unordered.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { settings } from "../components/config";
import {
  continueFrom,
  dependsOnTransitively,
  describeOp,
  OpReport,
  runLifecycle,
  StackState,
  StepResult,
  unorderedMemberPairs,
} from "./support/lifecycle";

type Key = keyof typeof settings;

interface Sample {
  /** Config overrides of the step: the setting's new value, and related settings a rule moves along. */
  edit: Record<string, unknown>;
  /** Ops (as describeOp prints them) the declaration's reason names; each needs its why. */
  named?: RegExp[];
  /** The edit alone changes nothing (the reason says so): no op is expected at all. */
  inert?: boolean;
  /** `serverType` getServers lists per node in the step (a change made outside the program first). */
  serverTypes?: Record<string, string>;
  /**
   * A rolling change an operator's script makes node by node before `pulumi up` (the reason
   * names it): the program itself changes no node, and the named test proves the node order.
   */
  rolledBy?: string;
}

const nodeIps = (n: number) => Array.from({ length: n }, (_, i) => `10.20.1.${11 + i}`);
const threeCidrs = ["198.51.100.0/28", "203.0.113.40/32", "192.0.2.0/28"];

/** One sample edit for every setting that is not refused; the prod stack file holds the old values. */
const samples: Record<string, Sample> = {
  // nothing
  image: { edit: { image: "ubuntu-22.04" } },
  // rolling
  // Nodes are added at the end of nodeIps (the refused rule allows that).
  // Each new node's setup, kube-vip and companion before the next node's setup.
  controlPlaneCount: { edit: { controlPlaneCount: 5, nodeIps: nodeIps(5) } },
  kubernetesVersion: { edit: { kubernetesVersion: "1.35.0" } },
  // After scripts/ops/resize-control-plane.sh resized every server: the program accepts the type
  // and changes nothing (the servers ignore serverType; only servers created later use it).
  serverType: {
    edit: { serverType: "ccx33" },
    serverTypes: { "cp-1": "ccx33", "cp-2": "ccx33", "cp-3": "ccx33" },
    inert: true,
    rolledBy: "tests/resize.test.ts",
  },
  // A new key (authorized on every node first, docs/runbooks/ssh-key-rotation.md): every command's
  // connection changes; the recorded ones find their records and run nothing.
  sshPrivateKey: {
    edit: { sshPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nrotated\n-----END OPENSSH PRIVATE KEY-----" },
    named: [
      /^update bootstrap-cp-\d-lib-dir @cp-\d runs create$/,
      /^update bootstrap-cp-\d-membership @cp-\d runs create$/,
      /^update access-admin-kubeconfig @cp-\d runs create$/,
      /^update certificates-cp-\d-expiry @cp-\d runs create$/,
      /^update worker-join-token @cp-\d runs create$/,
    ],
  },
  // The API server certificates get the new addresses node by node (apiserver-sans.sh); the
  // kubeadm files, the members and the CNI keep the endpoint the nodes use.
  apiDnsName: { edit: { apiDnsName: "api2.prod-nbg1.k8s.example.com" } },
  // Off: the public addresses stay SANs (each node's step finds its certificate as wanted); the
  // stack's kubeconfig moves to apiDnsName after the last step (tests/apiEndpointChange.test.ts
  // turns it on).
  loadBalancerPublicInterface: { edit: { loadBalancerPublicInterface: false } },
  reservedIpFailover: { edit: { reservedIpFailover: false } },
  certificateRenewal: { edit: { certificateRenewal: "2027-05-01" } },
  // live
  adminCidrs: { edit: { adminCidrs: threeCidrs } },
  // "only lets adminCidrs hold an all-addresses range": alone it changes nothing.
  allowSshFromAnywhere: { edit: { allowSshFromAnywhere: true }, inert: true },
  apiCidrs: { edit: { apiCidrs: threeCidrs } },
  sshPublicKey: {
    edit: {
      sshPublicKey:
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmLq0JkGz3Q5u4n3o1k9yq8Vv2b0oJtS6dQpYx7nW1e platform-bootstrap-2@prod-nbg1",
    },
  },
  loadBalancerType: { edit: { loadBalancerType: "lb21" } },
  loadBalancerAlgorithm: { edit: { loadBalancerAlgorithm: "least_connections" } },
  healthCheckMode: { edit: { healthCheckMode: "tcp" } },
  // Within the load balancer's failover budget (interval × retries + timeout ≤ 20 s).
  healthCheckIntervalSeconds: { edit: { healthCheckIntervalSeconds: 4 } },
  healthCheckTimeoutSeconds: { edit: { healthCheckTimeoutSeconds: 2 } },
  healthCheckRetries: { edit: { healthCheckRetries: 2 } },
  // "the worker-join-token command mints a new token"
  workerJoinTokenTtlHours: {
    edit: { workerJoinTokenTtlHours: 360 },
    named: [/^replace worker-join-token \(delete first\) @cp-\d runs delete,create$/],
  },
  workerJoinTokenRotation: {
    edit: { workerJoinTokenRotation: "2" },
    named: [/^replace worker-join-token \(delete first\) @cp-\d runs delete,create$/],
  },
  // "installs or removes the ... Helm release"
  cloudControllerManager: {
    edit: { cloudControllerManager: false },
    named: [/^delete cloud-controller-hcloud-cloud-controller-manager$/],
  },
  csiDriver: { edit: { csiDriver: false }, named: [/^delete csi-hcloud-csi$/] },
  kubeletCloudProviderMigrated: { edit: { kubeletCloudProviderMigrated: true }, inert: true },
  csiStorageClassName: { edit: { csiStorageClassName: "hcloud-volumes-2" } },
  csiStorageClassDefault: { edit: { csiStorageClassDefault: false } },
  hcloudCloudToken: { edit: { hcloudCloudToken: "R".repeat(64) } },
  certificateExpiryWarningDays: { edit: { certificateExpiryWarningDays: 45 } },
  etcdDefragSchedule: { edit: { etcdDefragSchedule: "23 4 * * *" } },
  etcdDefragThresholdPercent: { edit: { etcdDefragThresholdPercent: 50 } },
  etcdDefragMinSizeMiB: { edit: { etcdDefragMinSizeMiB: 200 } },
  backupSchedule: { edit: { backupSchedule: "0 */4 * * *" } },
  backupKeepAllHours: { edit: { backupKeepAllHours: 48 } },
  backupKeepHourlyDays: { edit: { backupKeepHourlyDays: 14 } },
  backupRetentionDays: { edit: { backupRetentionDays: 60 } },
  backupObjectLockMode: { edit: { backupObjectLockMode: "GOVERNANCE" } },
  backupKeepLast: { edit: { backupKeepLast: 8 } },
  backupEncryption: { edit: { backupEncryption: "none" } },
  backupAgeRecipients: {
    edit: { backupAgeRecipients: ["age1jrv6vc5s67v5cacsn0608aj0l0570ympuy64r0nmqtkuu55rlyuq7urp7q"] },
  },
  restoreFrom: {
    edit: { restoreFrom: "latest" },
    named: [/^create bootstrap-cp-1-restore-prepared\b/, /^create bootstrap-cp-1-restore-seed\b/],
  },
  backupImage: { edit: { backupImage: `ghcr.io/platform/hcloud-control-plane/etcd-backup@sha256:${"1".repeat(64)}` } },
  objectStorageAccessKey: { edit: { objectStorageAccessKey: "rotated-access-key" } },
  objectStorageSecretKey: { edit: { objectStorageSecretKey: "rotated-secret-key" } },
  backupSigningKey: { edit: { backupSigningKey: "rotated-signing-key" } },
  // existing-operator needs the labels its Prometheus selects (readMonitoring's rule);
  // "installs or removes the kube-prometheus-stack Helm release".
  monitoring: {
    edit: { monitoring: "existing-operator", prometheusRuleLabels: ["release=prometheus"] },
    named: [/^delete monitoring-kube-prometheus-stack$/],
  },
  // "the monitoring resources are recreated in the new namespace"
  monitoringNamespace: {
    edit: { monitoringNamespace: "observability" },
    named: [/^(replace|update) monitoring-kube-prometheus-stack$/],
  },
  prometheusRuleName: { edit: { prometheusRuleName: "cp-alerts" } },
  prometheusRuleLabels: { edit: { prometheusRuleLabels: ["team=platform"] } },
  etcdJobName: { edit: { etcdJobName: "etcd" } },
  runbookBaseUrl: { edit: { runbookBaseUrl: "https://git.example.com/platform/cp/-/blob/main/docs/runbooks" } },
  backupAlertMarginMinutes: { edit: { backupAlertMarginMinutes: 90 } },
  alertTimezone: { edit: { alertTimezone: "Europe/Paris" } },
  businessDays: { edit: { businessDays: ["monday:thursday"] } },
  businessHours: { edit: { businessHours: ["08:00-16:00"] } },
  onCallWebhookUrl: { edit: { onCallWebhookUrl: "https://alerts.example.com/hooks/platform-2" } },
  pagerdutyRoutingKey: { edit: { pagerdutyRoutingKey: "rotated-routing-key" } },
};

const proven = (Object.keys(settings) as Key[]).filter((k) => settings[k].change.effect !== "refused");

// ---------------------------------------------------------------------------------------------
// What an op is.
// ---------------------------------------------------------------------------------------------

/** Resources that hold state or identity: replacing or deleting one loses it. */
const holdsState = (o: OpReport): boolean =>
  [
    "hcloud:index/server:Server",
    "hcloud:index/floatingIp:FloatingIp",
    "hcloud:index/loadBalancer:LoadBalancer",
    "aws:s3/bucket:Bucket",
    "kubernetes:helm.sh/v3:Release",
  ].includes(o.type) || /-member(ship)?$/.test(o.name);

/** An op that runs something on a node (a command's script or a copy). */
const runsOnNode = (o: OpReport): boolean => o.host !== undefined && o.runs.length > 0;

/** The command text an op runs: the old delete for a delete, the update when it runs one, else the create. */
function commandOf(o: OpReport, result: StepResult, before: StackState): string {
  if (o.op === "delete") return String(before.get(o.urn)?.inputs.delete ?? "");
  const now = result.run?.resources.find((r) => r.urn === o.urn);
  return String((o.runs.includes("update") ? now?.revealedInputs.update : now?.revealedInputs.create) ?? "");
}

/** Every node script a command line runs, in order. */
const scriptsOf = (command: string) => [...command.matchAll(/\/([a-z0-9-]+\.sh)\b/g)].map((m) => m[1]);
/** The script that does a command's work: the last one (a setup first runs the read-only wait). */
const scriptOf = (command: string) => scriptsOf(command).at(-1);

/**
 * Node commands that change nothing a running control plane uses, so they may run on every node
 * at once; each cited from the command or the script's own header:
 * - a copy (remote.CopyToRemote) places a file: the scripts, or a rendered file staged where a
 *   later script reads it (components/lifecycle/bootstrap.ts copyFile, the kube-vip manifest
 *   "outside /etc/kubernetes/manifests, so copying it changes nothing that runs");
 * - `install -d` of the scripts directory, `cat` of admin.conf (clusterAccess.ts);
 * - wait-node-prepared.sh ("Read-only: running it again only checks again"), cert-expiry.sh
 *   (reads `kubeadm certs check-expiration`), upgrade-preflight.sh ("Read-only"), and
 *   `membership.sh check` ("Read-only"; its delete, `remove`, is not);
 * - upgrade-node.sh on a node whose setup ran in this same step: the node was prepared at the
 *   configured version (wait-node-prepared.sh checks the pinned packages before the setup), so
 *   the script's step 0 finds the version reached and "only checks the gates" (its header).
 */
function changesNothing(o: OpReport, result: StepResult, before: StackState): boolean {
  if (o.type === "command:remote:CopyToRemote") return true;
  const command = commandOf(o, result, before);
  if (o.runs.includes("delete") && o.type === "command:remote:Command") {
    const old = String(before.get(o.urn)?.inputs.delete ?? "");
    if (old !== "") return false;
  }
  if (/^(install -d|cat) /.test(command)) return true;
  // Every script the command runs must be read-only: a setup's wait is, its kubeadm-member.sh not.
  const readOnly = (script: string): boolean => {
    if (script === "membership.sh") return /membership\.sh' check|membership\.sh check/.test(command);
    if (script === "upgrade-node.sh") {
      return result.ops.some((m) => /-member$/.test(m.name) && m.host === o.host && m.runs.includes("create"));
    }
    return ["wait-node-prepared.sh", "cert-expiry.sh", "upgrade-preflight.sh"].includes(script);
  };
  const scripts = scriptsOf(command);
  return scripts.length > 0 && scripts.every(readOnly);
}

const scriptsDir = path.join(__dirname, "..", "scripts", "node");
/**
 * Whether a node script runs the /readyz and etcd health gates (scripts/node/lib.sh
 * wait_for_control_plane, or its own /readyz check with lib.sh etcd_cluster_healthy:
 * apiserver-sans.sh's local_apiserver_ready asks this node's API server, not the endpoint),
 * itself or through the child it runs (kubeadm-member.sh runs kubeadm-init.sh or kubeadm-join.sh).
 */
function gated(script: string): boolean {
  const text = fs.readFileSync(path.join(scriptsDir, script), "utf8");
  if (/\bwait_for_control_plane\b/.test(text)) return true;
  if (/\b(local_)?apiserver_ready\b/.test(text) && /\betcd_cluster_healthy\b/.test(text)) return true;
  const children = [...text.matchAll(/\b(kubeadm-(?:init|join)\.sh)\b/g)].map((m) => m[1]);
  return children.some((c) => c !== script && gated(c));
}
/**
 * Scripts a rolling change runs without the gates, and why that is right:
 * install-reserved-ip-failover.sh installs or disables the companion's systemd unit only; the
 * API server, etcd and kube-vip keep running (its header).
 */
const ungated: Record<string, string> = {
  "install-reserved-ip-failover.sh": "touches only the companion's own unit and files",
};

/**
 * Whether `a` runs before `b` in this step. Creates, updates and replacements run as the new
 * graph orders them; the deletes at the end run after all of them, in reverse old-graph order
 * (tests/support/lifecycle.ts scheduleDeletes).
 */
function runsBefore(result: StepResult, a: OpReport, b: OpReport): boolean {
  const atEnd = (o: OpReport) => o.op === "delete";
  if (!atEnd(a) && atEnd(b)) return true;
  if (atEnd(a) && !atEnd(b)) return false;
  if (atEnd(a)) return dependsOnTransitively(result.oldGraph, a.urn, b.urn);
  return dependsOnTransitively(result.newGraph, b.urn, a.urn);
}

/** The commands that change a node, of a step: what a rolling change must order. */
function changingCommands(result: StepResult, before: StackState): OpReport[] {
  return result.ops.filter((o) => runsOnNode(o) && !changesNothing(o, result, before));
}

/** Pairs of node-changing commands on different nodes that the graph leaves unordered: two nodes at once. */
function twoNodesAtOnce(result: StepResult, changing: OpReport[]): string[] {
  return changing.flatMap((a, i) =>
    changing
      .slice(i + 1)
      .filter((b) => a.host !== b.host && !runsBefore(result, a, b) && !runsBefore(result, b, a))
      .map((b) => `${describeOp(a)} | ${describeOp(b)}`),
  );
}

/**
 * Node by node: grouped by the node they run on, all of one node's commands run before any of
 * the next node's. Returns, per pair of nodes that alternate, one pair of commands each way.
 */
function notNodeByNode(result: StepResult, changing: OpReport[]): string[] {
  const nodes = [...new Set(changing.map((o) => o.host as string))];
  const on = (n: string) => changing.filter((o) => o.host === n);
  const pairs = (x: string, y: string) => on(x).flatMap((a) => on(y).map((b) => [a, b] as const));
  const allBefore = (x: string, y: string) => pairs(x, y).every(([a, b]) => runsBefore(result, a, b));
  return nodes.flatMap((x, i) =>
    nodes.slice(i + 1).flatMap((y) => {
      if (allBefore(x, y) || allBefore(y, x)) return [];
      const [a, b] = pairs(x, y).find(([p, q]) => !runsBefore(result, p, q)) ?? [];
      const [c, d] = pairs(x, y).find(([p, q]) => !runsBefore(result, q, p)) ?? [];
      const show = (o: OpReport | undefined) => (o ? describeOp(o) : "?");
      return [`${x} and ${y} alternate: ${show(a)} is not before ${show(b)}, ${show(d)} is not before ${show(c)}`];
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// The checks per class.
// ---------------------------------------------------------------------------------------------

function check(key: Key, result: StepResult, before: StackState): { unexpected: string[] } {
  const { named = [] } = samples[key];
  const isNamed = (o: OpReport) => named.some((re) => re.test(describeOp(o)));
  const changed = result.ops.filter((o) => o.op !== "same" || o.runs.length > 0);
  switch (settings[key].change.effect) {
    case "nothing":
      return { unexpected: changed.filter((o) => !isNamed(o)).map(describeOp) };
    case "live":
      return {
        unexpected: changed
          .filter((o) => !isNamed(o))
          .filter((o) => ((o.op === "replace" || o.op === "delete") && holdsState(o)) || runsOnNode(o))
          .map(describeOp),
      };
    case "rolling": {
      const changing = changingCommands(result, before);
      const unexpected = twoNodesAtOnce(result, changing);
      for (const o of changing) {
        const script = scriptOf(commandOf(o, result, before));
        if (!script || (!gated(script) && !ungated[script])) unexpected.push(`ungated: ${describeOp(o)}`);
      }
      // The upgrade preflight gates every step of an upgrade.
      const preflight = changed.find((o) => scriptOf(commandOf(o, result, before)) === "upgrade-preflight.sh");
      if (preflight) {
        for (const o of changing)
          if (!runsBefore(result, preflight, o)) unexpected.push(`before the preflight: ${describeOp(o)}`);
      }
      return { unexpected };
    }
    default:
      throw new Error(`${key}: refused settings are proven in tests/creationSettings.test.ts`);
  }
}

describe("every setting's change does what docs/settings.md says (lifecycle harness)", () => {
  let fresh: StepResult[];
  const steps = new Map<Key, StepResult>();
  beforeAll(async () => {
    fresh = await runLifecycle([{ title: "fresh create, 3 nodes" }]);
    const deployed = continueFrom(fresh);
    for (const key of proven) {
      const sample = samples[key];
      if (!sample) continue;
      const [step] = await runLifecycle(
        [{ title: `change ${key}`, config: sample.edit, serverTypes: sample.serverTypes }],
        deployed,
      );
      steps.set(key, step);
    }
  }, 120_000);

  test("every nothing, live and rolling setting has a sample edit, and only those", () => {
    expect(Object.keys(samples).sort()).toEqual([...proven].sort());
  });

  test("the deployed stack is a clean 3-node create", () => {
    expect(fresh[0].errors).toEqual([]);
    expect(fresh[0].ops.filter((o) => o.op !== "create")).toEqual([]);
    expect(fresh[0].ops.filter((o) => o.name.match(/^control-plane-cp-\d$/)).length).toBe(3);
  });

  const stepOf = (key: Key) => {
    const result = steps.get(key);
    if (!result) throw new Error(`${key} has no sample edit`);
    return result;
  };

  for (const key of proven) {
    const sample = samples[key] ?? { edit: {} };
    const effect = settings[key].change.effect;
    const title = `${key} (${effect}): ${JSON.stringify(sample.edit)}`;
    test(title, () => {
      const result = stepOf(key);
      const before = fresh[0].state;
      const pairs = unorderedMemberPairs(result, before);
      expect({ key, errors: result.errors, unmodelled: result.unmodelledTypes, pairs }).toEqual({
        key,
        errors: [],
        unmodelled: [],
        pairs: [],
      });
      // The edit reached the program: something changed, unless the reason says it does not.
      const changedAny = result.ops.some((o) => o.op !== "same");
      expect({ key, changedAny }).toEqual({ key, changedAny: effect !== "nothing" && !sample.inert });
      expect({ key, effect, ...check(key, result, before) }).toEqual({ key, effect, unexpected: [] });
    });
    if (effect === "rolling" && sample.rolledBy) {
      test(`${key} (rolling): the program changes no node; ${sample.rolledBy} proves the script's node order`, () => {
        expect({ key, changing: changingCommands(stepOf(key), fresh[0].state).map(describeOp) }).toEqual({
          key,
          changing: [],
        });
      });
    } else if (effect === "rolling") {
      test(`${key} (rolling): all of one node's commands before the next node's`, () => {
        const result = stepOf(key);
        const changing = changingCommands(result, fresh[0].state);
        expect(new Set(changing.map((o) => o.host)).size).toBeGreaterThan(1);
        expect({ key, alternating: notNodeByNode(result, changing) }).toEqual({ key, alternating: [] });
      });
    }
  }
});
