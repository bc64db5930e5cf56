/**
 * Blast-radius guard: fails when a `pulumi preview --json` would replace or delete a resource
 * that holds the cluster's state or identity, unless the change names that resource.
 *
 *   npx ts-node --transpile-only scripts/preview-guard.ts --preview preview.json \
 *     [--allow name1,name2] [--labels-json '<github.event.pull_request.labels as JSON>']
 *
 * Allowances (any of them, combined): `--allow` and the environment variable
 * PREVIEW_GUARD_ALLOW, each a comma-separated list of resource names (the URN's last `::` part,
 * e.g. `control-plane-cp-2`) or full URNs; and pull-request labels `allow-replace:<name>`.
 *
 * Exit status: 0 nothing guarded is replaced or deleted (or all of it is allowed), 1 refused,
 * 2 bad input (unreadable or malformed preview JSON, no `steps`, bad labels JSON, bad flags).
 * Unreadable input is never "fine".
 *
 * The format read is Pulumi's PreviewDigest (sdk/pkg/display/json.go in pulumi/pulumi):
 * `{config, steps: [{op, urn, provider, oldState, newState, diffReasons, replaceReasons,
 * detailedDiff}], diagnostics, duration, changeSummary}`. A step has no type of its own: the
 * type is the URN's (and `oldState.type` / `newState.type`).
 */
import * as fs from "fs";

/** One kind of resource the guard protects. */
export interface GuardRule {
  /** The Pulumi type token, as in the URN. */
  type: string;
  /** When set, only resources of `type` whose name matches. */
  name?: RegExp;
  /** Why replacing or deleting it is dangerous (printed when refused). */
  why: string;
}

/** What the guard refuses to replace or delete without an allowance. */
export const guardedResources: readonly GuardRule[] = [
  {
    // Every server of this program is a control-plane node holding an etcd member; replacing
    // one removes a member and its data (and with it quorum if two go at once). Matched by type
    // alone, so a renamed node is still caught; servers that are not control-plane nodes, if
    // this program ever makes any, would need a name pattern here.
    type: "hcloud:index/server:Server",
    why: "a control-plane node and etcd member: replacing it drops the member and its data",
  },
  {
    // kubeadm init (bootstrap-cp-1-init) and each join (bootstrap-cp-N-join): a replacement
    // re-runs kubeadm on a node that is already a member, and the delete runs the leave script.
    type: "command:remote:Command",
    name: /-(join|init)$/,
    why: "a kubeadm init/join: replacing it re-runs kubeadm (or leave-cluster) on a live member",
  },
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

export const labelPrefix = "allow-replace:";

export interface PreviewStep {
  op: string;
  urn: string;
  oldState?: { type?: string };
  newState?: { type?: string };
  diffReasons?: string[];
  replaceReasons?: string[];
  detailedDiff?: Record<string, unknown> | null;
}

export interface Refusal {
  urn: string;
  type: string;
  name: string;
  ops: string[];
  replaceReasons: string[];
  diffReasons: string[];
  why: string;
}

export class InputError extends Error {}

/** Type and name of a URN `urn:pulumi:<stack>::<project>::<parent$...$type>::<name>`. */
export function parseUrn(urn: string): { type: string; name: string } {
  const parts = urn.split("::");
  if (!urn.startsWith("urn:pulumi:") || parts.length < 4) throw new InputError(`not a Pulumi URN: ${urn}`);
  const qualifiedType = parts[2];
  return { type: qualifiedType.slice(qualifiedType.lastIndexOf("$") + 1), name: parts.slice(3).join("::") };
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
  });
  const summary =
    typeof changeSummary === "object" && changeSummary !== null ? (changeSummary as Record<string, number>) : undefined;
  return { steps: steps as PreviewStep[], changeSummary: summary };
}

/** Allowed names/URNs from `allow-replace:<name>` labels in a `pull_request.labels` JSON array. */
export function allowancesFromLabels(json: string | undefined): string[] {
  if (json === undefined || json.trim() === "" || json.trim() === "null") return [];
  let labels: unknown;
  try {
    labels = JSON.parse(json);
  } catch (e) {
    throw new InputError(`--labels-json is not JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(labels)) throw new InputError("--labels-json is not a list of labels");
  return labels.flatMap((label: unknown) => {
    const name = typeof label === "string" ? label : (label as { name?: unknown } | null)?.name;
    if (typeof name !== "string") throw new InputError("--labels-json: a label has no name");
    return name.startsWith(labelPrefix) ? [name.slice(labelPrefix.length).trim()] : [];
  });
}

export const splitList = (value: string | undefined): string[] =>
  (value ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

/** The guarded resources the steps replace or delete, one entry per resource. */
export function findRefusals(steps: PreviewStep[]): Refusal[] {
  const byUrn = new Map<string, Refusal>();
  for (const step of steps) {
    const op = opInfo(step.op);
    if (op && !op.destructive) continue;
    const { type, name } = parseUrn(step.urn);
    const rule = guardedResources.find((r) => r.type === type && (!r.name || r.name.test(name)));
    if (!rule) continue;
    const refusal = byUrn.get(step.urn) ?? {
      urn: step.urn,
      type,
      name,
      ops: [],
      replaceReasons: [],
      diffReasons: [],
      why: rule.why,
    };
    const add = (list: string[], values: string[] | undefined) =>
      (values ?? []).forEach((v) => list.includes(v) || list.push(v));
    add(refusal.ops, [op ? step.op : `${step.op} (unknown op, treated as destructive)`]);
    add(refusal.replaceReasons, step.replaceReasons);
    add(refusal.diffReasons, step.diffReasons);
    byUrn.set(step.urn, refusal);
  }
  return [...byUrn.values()];
}

export const isAllowed = (refusal: Refusal, allowances: string[]) =>
  allowances.includes(refusal.name) || allowances.includes(refusal.urn);

interface Args {
  preview?: string;
  allow: string[];
  labelsJson?: string;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { allow: [] };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new InputError(`${flag} needs a value`);
      return argv[++i];
    };
    if (flag === "--preview") args.preview = value();
    else if (flag === "--allow") args.allow.push(...splitList(value()));
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
  let allowances: string[];
  try {
    args = parseArgs(argv);
    let text: string;
    try {
      text = fs.readFileSync(args.preview!, "utf8");
    } catch (e) {
      throw new InputError(`cannot read ${args.preview}: ${(e as Error).message}`);
    }
    preview = parsePreview(text);
    allowances = [...args.allow, ...splitList(env.PREVIEW_GUARD_ALLOW), ...allowancesFromLabels(args.labelsJson)];
  } catch (e) {
    if (!(e instanceof InputError)) throw e;
    console.error(`preview-guard: ${e.message}`);
    console.error(
      "usage: preview-guard.ts --preview preview.json [--allow name1,name2] [--labels-json '<PR labels JSON>']",
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
  for (const r of allowed) console.log(`preview-guard: allowed: ${r.type} ${r.name} (${r.ops.join(", ")})`);
  const used = new Set(allowed.flatMap((r) => [r.name, r.urn]));
  for (const a of allowances) {
    if (!used.has(a)) console.error(`preview-guard: warning: allowance '${a}' matches no guarded replace or delete`);
  }

  if (refused.length === 0) {
    console.log(
      `preview-guard: OK: ${preview.steps.length} steps (${summary || "none"}); ` +
        `no guarded resource replaced or deleted${allowed.length ? ` except ${allowed.length} allowed` : ""}`,
    );
    return 0;
  }
  console.error(`preview-guard: REFUSED: this preview replaces or deletes ${refused.length} guarded resource(s):`);
  for (const r of refused) {
    console.error(`
  ${r.type} ${r.name}
    urn:            ${r.urn}
    ops:            ${r.ops.join(", ")}
    replaceReasons: ${list(r.replaceReasons)}
    diffReasons:    ${list(r.diffReasons)}
    why guarded:    ${r.why}
    to allow it:    add the label 'allow-replace:${r.name}' to the pull request,
                    or run with --allow ${r.name} (or PREVIEW_GUARD_ALLOW=${r.name})`);
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
