/**
 * Blast-radius guard: fails when a `pulumi preview --json` would replace or delete a resource
 * that holds the cluster's state or identity, or update one in place in a way that takes
 * control-plane members down (a server type change, a re-run of kubeadm), unless the change
 * names that resource.
 *
 *   npx ts-node --transpile-only tools/preview-guard.ts --preview preview.json \
 *     [--allow name1,name2] [--allow-update name1,name2] [--labels-json '<labels as JSON>']
 *
 * Allowances (any of them, combined), each a resource name (the URN's last `::` part, e.g.
 * `control-plane-cp-2`) or a full URN:
 *   - replacements and deletions: `--allow`, PREVIEW_GUARD_ALLOW (comma-separated), labels
 *     `allow-replace:<name>`;
 *   - disruptive in-place updates: `--allow-update`, PREVIEW_GUARD_ALLOW_UPDATE, labels
 *     `allow-update:<name>`.
 * One kind never allows the other. `--labels-json` takes a JSON list of labels (objects with a
 * `name`, as GitHub's API and `toJSON(github.event.pull_request.labels)` give them).
 *
 * Exit status: 0 nothing guarded is refused (or all of it is allowed), 1 refused,
 * 2 bad input (unreadable or malformed preview JSON, no `steps`, bad labels JSON, bad flags).
 * Unreadable input is never "fine".
 *
 * The format read is Pulumi's PreviewDigest (pkg/display/json.go in pulumi/pulumi, filled by
 * ShowPreviewDigest in pkg/backend/display/json.go): `{config, steps: [{op, urn, provider,
 * oldState, newState, diffReasons, replaceReasons, detailedDiff}], diagnostics, duration,
 * changeSummary}`. A step has no type of its own: the type is the URN's (and `oldState.type` /
 * `newState.type`). Without `--show-sames` only the root stack's `same` step is listed, and
 * without `--show-replacement-steps` a replacement is its logical `replace` step alone
 * (shouldShow in pkg/backend/display/display.go); the guard reads either form.
 */
import * as fs from "fs";

/** What a rule refuses besides replacements (and, unless `deletes` is false, deletions). */
export interface UpdateCheck {
  /**
   * Whether an in-place `update` step of the resource is refused: returns what makes it
   * dangerous (printed), or undefined when this update is harmless.
   */
  refuses(step: PreviewStep): string | undefined;
  /** Why such an update hurts a running cluster (printed when refused). */
  why: string;
}

/** One kind of resource the guard protects. */
export interface GuardRule {
  /** The Pulumi type token, as in the URN. */
  type: string;
  /**
   * When set, only resources whose parent in the URN is this type (a component of this program,
   * e.g. `hcloud-control-plane:index:ClusterBootstrap`).
   */
  parent?: string;
  /** When set, only resources of `type` whose name matches. */
  name?: RegExp;
  /** Why replacing or deleting it is dangerous (printed when refused). */
  why: string;
  /** False when deleting it (without a replacement) does nothing to the cluster; default true. */
  deletes?: boolean;
  /** When set, some in-place updates are refused too. */
  update?: UpdateCheck;
}

/** The component types of this program that own the guarded commands and releases. */
export const components = {
  bootstrap: "hcloud-control-plane:index:ClusterBootstrap",
  upgrade: "hcloud-control-plane:index:ControlPlaneUpgrade",
  certificates: "hcloud-control-plane:index:KubeadmCertificates",
  access: "hcloud-control-plane:index:ClusterAccess",
  workerJoin: "hcloud-control-plane:index:WorkerJoinToken",
  cni: "hcloud-control-plane:index:Cni",
  monitoring: "hcloud-control-plane:index:Monitoring",
} as const;

/** The top-level property a detailedDiff path starts with (`networks[0].ip` -> `networks`). */
export const topLevelProperty = (path: string) => /^[^.[]*/.exec(path)![0];

/**
 * The top-level properties an update step changes, from what `pulumi preview --json` reports:
 * `detailedDiff` keys (property paths), `diffReasons` (top-level keys), and, as a last resort,
 * the inputs of `oldState` and `newState` that differ. Undefined when the step says nothing.
 *
 * The shape (pkg/backend/display/json.go getPreviewMetadataStep in pulumi/pulumi):
 * `diffReasons` is the step's Diffs(), `detailedDiff` maps a property path to
 * `{kind, inputDiff}` (kind from plugin.DiffKind.String(): add, add-replace, delete,
 * delete-replace, update, update-replace) or is null when the provider gave none, and
 * `oldState`/`newState` are apitype.ResourceV3 with `inputs` and `outputs` (secrets as "[secret]").
 */
export function changedProperties(step: PreviewStep): string[] | undefined {
  const found = new Set<string>();
  for (const path of Object.keys(step.detailedDiff ?? {})) found.add(topLevelProperty(path));
  for (const key of step.diffReasons ?? []) found.add(key);
  const before = step.oldState?.inputs;
  const after = step.newState?.inputs;
  if (found.size === 0 && before && after) {
    for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
      if (JSON.stringify(before[key]) !== JSON.stringify(after[key])) found.add(key);
    }
  }
  return found.size === 0 && !(before && after) ? undefined : [...found].sort();
}

/**
 * A control-plane server's update is refused when it changes `serverType`. The hcloud provider
 * (internal/server/resource.go in hetznercloud/terraform-provider-hcloud, the update of
 * `server_type`) powers a running server off, changes its type and waits; nothing orders the
 * servers against each other, so every etcd member can be down at the same moment. An update
 * whose changes cannot be read is refused too (fail closed).
 */
const serverTypeChange: UpdateCheck = {
  why:
    "changing a control-plane server's type powers it off; Pulumi updates the servers in parallel, " +
    "so every etcd member can go down together (change one server per deployment instead)",
  refuses(step) {
    const changed = changedProperties(step);
    if (changed === undefined) return "the preview does not say which properties change";
    return changed.includes("serverType") ? "serverType changes" : undefined;
  },
};

/** Any update of a remote Command re-runs it (see {@link remoteCommands}). */
const anyUpdate = (why: string): UpdateCheck => ({
  why,
  refuses: (step) =>
    `the command re-runs (changes: ${(changedProperties(step) ?? ["unknown"]).join(", ") || "none listed"})`,
});

/** A `command:remote:Command` of this program, and what re-running it does to a live cluster. */
export interface RemoteCommandClass {
  parent: string;
  name: RegExp;
  /** True: an update or replacement re-runs kubeadm on a live member and is refused. */
  guarded: boolean;
  /**
   * False: an update only re-runs a read-only check and is let through; only a replacement or
   * deletion of it is refused. Default true.
   */
  updates?: boolean;
  /** False when its deletion does nothing to the cluster (no `delete` script). */
  deletes: boolean;
  why: string;
}

/**
 * Every `command:remote:Command` the program registers (components/lifecycle/bootstrap.ts, upgrade.ts,
 * certificates.ts, clusterAccess.ts, workerJoin.ts), classified. With @pulumi/command, any input
 * change is an `update`, and an update runs the `update` script or, when there is none, the
 * `create` script again (Command.Update in provider/pkg/provider/remote/commandController.go of
 * pulumi/pulumi-command); `triggers` make it a replacement, which runs `delete` (if any) and
 * `create`. The node-changing commands are recorded (components/node/nodeScripts.ts
 * recordedWork): their `update` runs the work only when its text changed, so an update of an
 * upgrade or renewal step with a new version or stamp runs it. So a command is guarded when
 * running its work again on a live member is disruptive. tests/previewGuard.test.ts checks
 * that each command of the program matches exactly one entry.
 */
export const remoteCommands: readonly RemoteCommandClass[] = [
  {
    parent: components.bootstrap,
    name: /^bootstrap-.+-member$/,
    guarded: true,
    // Its `update` only looks for the node's record of this server's setup, or its member marker
    // (components/lifecycle/bootstrap.ts, recordedWork): it never runs kubeadm.
    updates: false,
    deletes: false,
    why:
      "a node's setup (kubeadm-member.sh: kubeadm init or join): it runs once per server; a replacement " +
      "means a new member, so it needs the node's allow-replace label",
  },
  {
    parent: components.bootstrap,
    name: /^bootstrap-.+-membership$/,
    guarded: true,
    deletes: true,
    // An update re-runs the read-only check, on another member when the one it ran on stopped.
    updates: false,
    why:
      "a node's membership record: deleting or replacing it drains the node and removes its etcd " +
      "member (membership.sh remove, run on another member)",
  },
  {
    parent: components.bootstrap,
    name: /^bootstrap-.+-(lib-dir|prepared)$/,
    guarded: false,
    deletes: false,
    why:
      "creates the scripts directory / (stacks created before the wait moved into the setup command) " +
      "waits for cloud-init's node preparation: idempotent, no kubeadm",
  },
  {
    parent: components.bootstrap,
    name: /^bootstrap-.+-kube-vip-install$/,
    guarded: false,
    deletes: false,
    why:
      "the kube-vip install chain: designed to roll a changed manifest one node after another, each " +
      "behind /readyz, etcd health and a renewed kube-vip Lease (install-kube-vip.sh)",
  },
  {
    parent: components.bootstrap,
    name: /^bootstrap-.+-reserved-ip-failover$/,
    guarded: false,
    deletes: false,
    why:
      "the reserved-IP companion installer: idempotent, chained node after node behind that node's " +
      "kube-vip; it touches no kubeadm state",
  },
  {
    parent: components.upgrade,
    name: /^upgrade-preflight$/,
    guarded: false,
    deletes: false,
    why: "read-only version-skew and health checks (upgrade-preflight.sh)",
  },
  {
    parent: components.upgrade,
    name: /^upgrade-(?!preflight$).+$/,
    guarded: true,
    deletes: false,
    why:
      "an upgrade step: kubeadm upgrade apply/node, drain, kubelet restart on a live member; " +
      "a Kubernetes upgrade is a deliberate act (its deletion runs nothing)",
  },
  {
    parent: components.certificates,
    name: /^certificates-.+-renew$/,
    guarded: true,
    deletes: false,
    why:
      "certificate renewal: kubeadm certs renew all and a restart of every static pod of the member " +
      "(its deletion runs nothing)",
  },
  {
    parent: components.certificates,
    name: /^certificates-.+-expiry$/,
    guarded: false,
    deletes: false,
    why: "reads certificate expiry (kubeadm certs check-expiration): read-only",
  },
  {
    parent: components.access,
    name: /^access-admin-kubeconfig$/,
    guarded: false,
    deletes: false,
    why: "reads admin.conf: read-only",
  },
  {
    parent: components.workerJoin,
    name: /^worker-join-token$/,
    guarded: false,
    deletes: true,
    why: "a bootstrap token for workers; replacing it only rotates the token, no member is touched",
  },
];

/** What the guard refuses without an allowance. */
export const guardedResources: readonly GuardRule[] = [
  {
    // Every server of this program is a control-plane node holding an etcd member; replacing
    // one removes a member and its data (and with it quorum if two go at once). Matched by type
    // alone, so a renamed node is still caught; servers that are not control-plane nodes, if
    // this program ever makes any, would need a name pattern here.
    type: "hcloud:index/server:Server",
    why: "a control-plane node and etcd member: replacing it drops the member and its data",
    update: serverTypeChange,
  },
  // The commands that run kubeadm on a live member (see remoteCommands for every command).
  ...remoteCommands
    .filter((c) => c.guarded)
    .map((c): GuardRule => ({
      type: "command:remote:Command",
      parent: c.parent,
      name: c.name,
      why: c.why,
      deletes: c.deletes,
      update: c.updates === false ? undefined : anyUpdate(c.why),
    })),
  {
    // The API endpoint every kubeconfig and node reaches; a new one has new public IPs.
    type: "hcloud:index/loadBalancer:LoadBalancer",
    why: "the API load balancer: a new one has new public addresses, breaking every client",
  },
  {
    // The reserved public IPv4 clients and DNS point at; a released IP cannot be had back.
    type: "hcloud:index/floatingIp:FloatingIp",
    why: "the reserved IP: a released Floating IP is gone, and DNS and clients point at it",
  },
  {
    // Holds every etcd backup (versioned, object lock); deleting it loses the only restore path.
    type: "aws:s3/bucket:Bucket",
    why: "the etcd backup bucket: deleting or replacing it loses every backup",
  },
  {
    // cni-cilium or cni-tigera-operator (calico): the pod network of every node.
    type: "kubernetes:helm.sh/v3:Release",
    parent: components.cni,
    why: "the CNI: uninstalling it cuts the pod network of every running pod (and makes the nodes NotReady)",
  },
  {
    // kube-prometheus-stack: the alerts on etcd, the control plane and backups.
    type: "kubernetes:helm.sh/v3:Release",
    parent: components.monitoring,
    why: "the monitoring release: uninstalling it silences every alert (Prometheus and Alertmanager go with it)",
  },
];

/**
 * Every step op Pulumi emits (StepOp in pkg/resource/deploy/step.go) and whether it replaces or
 * deletes the resource. An op not listed counts as destructive (fail closed).
 */
export const stepOps: Readonly<Record<string, { destructive: boolean; why: string }>> = {
  same: { destructive: false, why: "no change" },
  create: { destructive: false, why: "a new resource" },
  update: { destructive: false, why: "an in-place update" },
  read: { destructive: false, why: "reads an existing resource" },
  refresh: { destructive: false, why: "refreshes state from the cloud" },
  import: { destructive: false, why: "adopts an existing resource" },
  diff: { destructive: false, why: "a diff only (newer CLIs)" },
  discard: { destructive: false, why: "forgets a read resource; the cloud resource stays" },
  delete: { destructive: true, why: "deletes the resource" },
  replace: { destructive: true, why: "the logical replacement of the resource" },
  "create-replacement": { destructive: true, why: "creates the replacement of the resource" },
  "delete-replaced": { destructive: true, why: "deletes the replaced resource" },
  "read-replacement": { destructive: true, why: "a managed resource replaced by a read one" },
  "import-replacement": { destructive: true, why: "replaces the resource with an imported one" },
  "discard-replaced": { destructive: true, why: "part of a replacement" },
  "remove-pending-replace": { destructive: true, why: "removes a resource pending replacement" },
};

/** The entry of `stepOps` for an op, or undefined (never an Object.prototype member). */
const opInfo = (op: string) => (Object.hasOwn(stepOps, op) ? stepOps[op] : undefined);

/**
 * The two kinds of refusal, each with its own pull-request label, flag and environment variable,
 * so that allowing a replacement never allows a disruptive update, nor the other way round.
 */
export const allowanceKinds = {
  replace: { label: "allow-replace:", flag: "--allow", env: "PREVIEW_GUARD_ALLOW", what: "replaces or deletes" },
  update: {
    label: "allow-update:",
    flag: "--allow-update",
    env: "PREVIEW_GUARD_ALLOW_UPDATE",
    what: "updates in place, disruptively,",
  },
} as const;
export type RefusalKind = keyof typeof allowanceKinds;
export const labelPrefix = allowanceKinds.replace.label;

/** A resource's state in a step (apitype.ResourceV3 in pulumi/pulumi): only what the guard reads. */
export interface StepState {
  type?: string;
  inputs?: Record<string, unknown>;
  outputs?: Record<string, unknown>;
}

export interface PreviewStep {
  op: string;
  urn: string;
  oldState?: StepState;
  newState?: StepState;
  diffReasons?: string[];
  replaceReasons?: string[];
  detailedDiff?: Record<string, unknown> | null;
}

export interface Refusal {
  kind: RefusalKind;
  urn: string;
  type: string;
  name: string;
  ops: string[];
  replaceReasons: string[];
  diffReasons: string[];
  why: string;
  /** For an update: what in it is refused. */
  detail?: string;
}

export class InputError extends Error {}

/**
 * Type, parent type (undefined at the top) and name of a URN
 * `urn:pulumi:<stack>::<project>::<parent type$...$type>::<name>`.
 */
export function parseUrn(urn: string): { type: string; parent?: string; name: string } {
  const parts = urn.split("::");
  if (!urn.startsWith("urn:pulumi:") || parts.length < 4) throw new InputError(`not a Pulumi URN: ${urn}`);
  const types = parts[2].split("$");
  return {
    type: types[types.length - 1],
    parent: types.length > 1 ? types[types.length - 2] : undefined,
    name: parts.slice(3).join("::"),
  };
}

const stringList = (value: unknown, what: string): string[] => {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || value.some((v) => typeof v !== "string")) throw new InputError(`${what} is not a list`);
  return value as string[];
};

/** The steps of a preview document; throws InputError when it is not one. */
export function parsePreview(text: string): { steps: PreviewStep[]; changeSummary?: Record<string, number> } {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new InputError(`the preview is not JSON: ${(e as Error).message}`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc))
    throw new InputError("the preview is not an object");
  const { steps, changeSummary } = doc as { steps?: unknown; changeSummary?: unknown };
  if (!Array.isArray(steps)) {
    throw new InputError("the preview has no `steps` list (did `pulumi preview --json` fail? see its diagnostics)");
  }
  steps.forEach((step: unknown, i) => {
    const s = step as PreviewStep | null;
    if (typeof s !== "object" || s === null || typeof s.op !== "string" || typeof s.urn !== "string") {
      throw new InputError(`step ${i} has no string \`op\` and \`urn\``);
    }
    parseUrn(s.urn);
    stringList(s.replaceReasons, `step ${i} replaceReasons`);
    stringList(s.diffReasons, `step ${i} diffReasons`);
    const dd: unknown = s.detailedDiff;
    if (dd !== undefined && dd !== null && (typeof dd !== "object" || Array.isArray(dd))) {
      throw new InputError(`step ${i} detailedDiff is not an object`);
    }
    for (const state of ["oldState", "newState"] as const) {
      const inputs: unknown = (s[state] as { inputs?: unknown } | undefined)?.inputs;
      if (inputs !== undefined && inputs !== null && (typeof inputs !== "object" || Array.isArray(inputs))) {
        throw new InputError(`step ${i} ${state}.inputs is not an object`);
      }
    }
  });
  const summary =
    typeof changeSummary === "object" && changeSummary !== null ? (changeSummary as Record<string, number>) : undefined;
  return { steps: steps as PreviewStep[], changeSummary: summary };
}

/**
 * Allowed names/URNs per kind from `allow-replace:<name>` and `allow-update:<name>` labels in a
 * JSON array of labels (`pull_request.labels`, or the labels of the pull requests the GitHub API
 * lists for a commit: objects with a `name`, or plain strings).
 */
export function allowancesFromLabels(json: string | undefined): Record<RefusalKind, string[]> {
  const found: Record<RefusalKind, string[]> = { replace: [], update: [] };
  if (json === undefined || json.trim() === "" || json.trim() === "null") return found;
  let labels: unknown;
  try {
    labels = JSON.parse(json);
  } catch (e) {
    throw new InputError(`--labels-json is not JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(labels)) throw new InputError("--labels-json is not a list of labels");
  for (const label of labels as unknown[]) {
    const name = typeof label === "string" ? label : (label as { name?: unknown } | null)?.name;
    if (typeof name !== "string") throw new InputError("--labels-json: a label has no name");
    for (const kind of Object.keys(allowanceKinds) as RefusalKind[]) {
      const prefix = allowanceKinds[kind].label;
      if (name.startsWith(prefix)) found[kind].push(name.slice(prefix.length).trim());
    }
  }
  return found;
}

export const splitList = (value: string | undefined): string[] =>
  (value ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

/** The rule that guards the resource of a URN, if any. */
export function ruleFor(urn: string): GuardRule | undefined {
  const { type, parent, name } = parseUrn(urn);
  return guardedResources.find(
    (r) => r.type === type && (!r.parent || r.parent === parent) && (!r.name || r.name.test(name)),
  );
}

/**
 * What the guard refuses in the steps, one entry per resource and kind: replacements and
 * deletions of guarded resources (kind `replace`), and the updates their rules refuse (kind
 * `update`).
 */
export function findRefusals(steps: PreviewStep[]): Refusal[] {
  const byKey = new Map<string, Refusal>();
  for (const step of steps) {
    const op = opInfo(step.op);
    const rule = ruleFor(step.urn);
    if (!rule) continue;
    let kind: RefusalKind;
    let detail: string | undefined;
    let why = rule.why;
    if (step.op === "update") {
      detail = rule.update?.refuses(step);
      if (detail === undefined) continue;
      kind = "update";
      why = rule.update!.why;
    } else if (op && !op.destructive) {
      continue;
    } else if (step.op === "delete" && rule.deletes === false) {
      continue;
    } else {
      kind = "replace";
    }
    const { type, name } = parseUrn(step.urn);
    const key = `${kind} ${step.urn}`;
    const refusal = byKey.get(key) ?? {
      kind,
      urn: step.urn,
      type,
      name,
      ops: [],
      replaceReasons: [],
      diffReasons: [],
      why,
      detail,
    };
    const add = (list: string[], values: string[] | undefined) =>
      (values ?? []).forEach((v) => list.includes(v) || list.push(v));
    add(refusal.ops, [op ? step.op : `${step.op} (unknown op, treated as destructive)`]);
    add(refusal.replaceReasons, step.replaceReasons);
    add(refusal.diffReasons, step.diffReasons);
    byKey.set(key, refusal);
  }
  return [...byKey.values()];
}

export const isAllowed = (refusal: Refusal, allowances: Record<RefusalKind, string[]>) =>
  allowances[refusal.kind].includes(refusal.name) || allowances[refusal.kind].includes(refusal.urn);

interface Args {
  preview?: string;
  allow: string[];
  allowUpdate: string[];
  labelsJson?: string;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { allow: [], allowUpdate: [] };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new InputError(`${flag} needs a value`);
      return argv[++i];
    };
    if (flag === "--preview") args.preview = value();
    else if (flag === "--allow") args.allow.push(...splitList(value()));
    else if (flag === "--allow-update") args.allowUpdate.push(...splitList(value()));
    else if (flag === "--labels-json") args.labelsJson = value();
    else throw new InputError(`unknown argument '${flag}'`);
  }
  if (!args.preview) throw new InputError("--preview <file> is required");
  return args;
}

const list = (values: string[]) => (values.length ? values.join(", ") : "none");

export function main(argv: string[], env: NodeJS.ProcessEnv): number {
  let args: Args;
  let preview: ReturnType<typeof parsePreview>;
  let allowances: Record<RefusalKind, string[]>;
  try {
    args = parseArgs(argv);
    let text: string;
    try {
      text = fs.readFileSync(args.preview!, "utf8");
    } catch (e) {
      throw new InputError(`cannot read ${args.preview}: ${(e as Error).message}`);
    }
    preview = parsePreview(text);
    const labels = allowancesFromLabels(args.labelsJson);
    allowances = {
      replace: [...args.allow, ...splitList(env[allowanceKinds.replace.env]), ...labels.replace],
      update: [...args.allowUpdate, ...splitList(env[allowanceKinds.update.env]), ...labels.update],
    };
  } catch (e) {
    if (!(e instanceof InputError)) throw e;
    console.error(`preview-guard: ${e.message}`);
    console.error(
      "usage: preview-guard.ts --preview preview.json [--allow name1,name2] [--allow-update name1,name2] " +
        "[--labels-json '<PR labels JSON>']",
    );
    return 2;
  }

  const counts: Record<string, number> = {};
  for (const step of preview.steps) counts[step.op] = (counts[step.op] ?? 0) + 1;
  const summary = Object.entries(preview.changeSummary ?? counts)
    .map(([op, n]) => `${op} ${n}`)
    .join(", ");
  for (const step of preview.steps) {
    if (!opInfo(step.op)) console.error(`preview-guard: warning: unknown op '${step.op}' on ${step.urn}`);
  }

  const found = findRefusals(preview.steps);
  const allowed = found.filter((r) => isAllowed(r, allowances));
  const refused = found.filter((r) => !isAllowed(r, allowances));
  for (const r of allowed) {
    console.log(`preview-guard: allowed: ${r.type} ${r.name} (${r.ops.join(", ")}) by ${allowanceKinds[r.kind].label}`);
  }
  for (const kind of Object.keys(allowanceKinds) as RefusalKind[]) {
    const used = new Set(allowed.filter((r) => r.kind === kind).flatMap((r) => [r.name, r.urn]));
    const what = kind === "replace" ? "replace or delete" : "disruptive update";
    for (const a of allowances[kind]) {
      if (!used.has(a)) console.error(`preview-guard: warning: allowance '${a}' matches no guarded ${what}`);
    }
  }

  if (refused.length === 0) {
    console.log(
      `preview-guard: OK: ${preview.steps.length} steps (${summary || "none"}); ` +
        "no guarded resource replaced or deleted, none updated disruptively" +
        (allowed.length ? ` except ${allowed.length} allowed` : ""),
    );
    return 0;
  }
  for (const kind of Object.keys(allowanceKinds) as RefusalKind[]) {
    const these = refused.filter((r) => r.kind === kind);
    if (these.length === 0) continue;
    const { label, flag, env: envName, what } = allowanceKinds[kind];
    console.error(`preview-guard: REFUSED: this preview ${what} ${these.length} guarded resource(s):`);
    for (const r of these) {
      console.error(`
  ${r.type} ${r.name}
    urn:            ${r.urn}
    ops:            ${r.ops.join(", ")}${r.detail ? `\n    refused:        ${r.detail}` : ""}
    replaceReasons: ${list(r.replaceReasons)}
    diffReasons:    ${list(r.diffReasons)}
    why guarded:    ${r.why}
    to allow it:    add the label '${label}${r.name}' to the pull request,
                    or run with ${flag} ${r.name} (or ${envName}=${r.name})`);
    }
  }
  console.error(`\n(${preview.steps.length} steps: ${summary || "none"})`);
  return 1;
}

if (require.main === module) {
  try {
    process.exitCode = main(process.argv.slice(2), process.env);
  } catch (e) {
    // An unexpected failure is bad input or a bug, never "refused" or "fine".
    console.error(`preview-guard: ${(e as Error).stack ?? String(e)}`);
    process.exitCode = 2;
  }
}
