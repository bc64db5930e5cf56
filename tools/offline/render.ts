/**
 * Turns a recorded program run into what the offline plan shows: plan.json, the rendered
 * artifacts each resource received, the dependency graph in DOT, and a terminal tree.
 */
import YAML from "yaml";
import { renderRuleFile, RuleFile } from "../../components/addons/monitoring/rules";
import { ProgramRun, RecordedResource } from "./harness";

export interface PlanResource {
  urn: string;
  type: string;
  name: string;
  parent: string | null;
  provider: string | null;
  dependsOn: string[];
  protect: boolean;
  deleteBeforeReplace: boolean;
  ignoreChanges: string[];
  inputs: Record<string, unknown>;
}

export interface Plan {
  stack: string;
  project: string;
  resources: PlanResource[];
  outputs: Record<string, unknown>;
}

/**
 * Creation order: a resource after its parent and everything it depends on; ties broken by
 * URN so the file is the same on every run.
 */
export function creationOrder(resources: RecordedResource[]): RecordedResource[] {
  const byUrn = new Map(resources.map((r) => [r.urn, r]));
  const waitsFor = (r: RecordedResource) =>
    [...r.dependsOn, ...(r.parent ? [r.parent] : [])].filter((u) => byUrn.has(u));
  const placed = new Set<string>();
  const ordered: RecordedResource[] = [];
  const pending = [...resources].sort((a, b) => a.urn.localeCompare(b.urn));
  while (pending.length > 0) {
    const i = pending.findIndex((r) => waitsFor(r).every((u) => placed.has(u)));
    if (i < 0) throw new Error(`dependency cycle among ${pending.map((r) => r.urn).join(", ")}`);
    const [next] = pending.splice(i, 1);
    placed.add(next.urn);
    ordered.push(next);
  }
  return ordered;
}

export function toPlan(run: ProgramRun): Plan {
  return {
    stack: run.stack,
    project: run.project,
    resources: creationOrder(run.resources).map((r) => ({
      urn: r.urn,
      type: r.type,
      name: r.name,
      parent: r.parent,
      provider: r.provider,
      dependsOn: r.dependsOn,
      protect: r.protect,
      deleteBeforeReplace: r.deleteBeforeReplace,
      ignoreChanges: r.ignoreChanges,
      inputs: r.inputs,
    })),
    outputs: run.outputs,
  };
}

export interface Artifact {
  /** Path below out/<stack>/. */
  path: string;
  content: string;
}

/** Where a file copied to a node goes in the plan, by the copy's role (its name's suffix). */
const copiedFiles: Record<string, (node: string) => string> = {
  "kubeadm-init": (node) => `kubeadm/${node}-init.yaml`,
  "kubeadm-join": (node) => `kubeadm/${node}-join.yaml`,
  "etcd-patch": (node) => `kubeadm/${node}-etcd-patch.yaml`,
  "kube-vip": (node) => `kube-vip/${node}.yaml`,
};

const yamlText = (doc: unknown) => YAML.stringify(doc, { lineWidth: 0, sortMapEntries: false });

/**
 * Kubernetes objects and Helm values the program applies through the cluster's provider, as
 * `manifests/<resource name>.yaml` (secret values masked), plus the Prometheus rule file.
 */
function kubernetesArtifacts(r: PlanResource): Artifact[] {
  if (!r.type.startsWith("kubernetes:")) return [];
  if (r.type === "kubernetes:helm.sh/v3:Release") {
    const { name, chart, version, repositoryOpts, namespace, values } = r.inputs;
    const release = { name, chart, version, repository: (repositoryOpts as { repo?: string })?.repo, namespace };
    return [{ path: `manifests/${r.name}-values.yaml`, content: `# ${JSON.stringify(release)}\n${yamlText(values)}` }];
  }
  const files = [{ path: `manifests/${r.name}.yaml`, content: yamlText(r.inputs) }];
  if (r.inputs.kind === "PrometheusRule") {
    files.push({ path: "prometheus-rules.yaml", content: renderRuleFile(r.inputs.spec as RuleFile) });
  }
  return files;
}

/** Files a resource received as input, written beside plan.json for review and tests. */
export function artifacts(plan: Plan): Artifact[] {
  const files: Artifact[] = [];
  for (const r of plan.resources) {
    files.push(...kubernetesArtifacts(r));
    if (r.type === "hcloud:index/server:Server" && typeof r.inputs.userData === "string") {
      const node = (r.inputs.labels as Record<string, string> | undefined)?.node ?? r.name;
      files.push({ path: `cloud-init/${node}.yaml`, content: r.inputs.userData });
    }
    const copy = /-(cp-\d+)-([a-z-]+)$/.exec(r.name);
    const text = (r.inputs.source as { asset?: { text?: unknown } } | undefined)?.asset?.text;
    if (r.type === "command:remote:CopyToRemote" && copy && copiedFiles[copy[2]] && typeof text === "string") {
      files.push({ path: copiedFiles[copy[2]](copy[1]), content: text });
    }
  }
  return files;
}

/** `hcloud:index/loadBalancerTarget:LoadBalancerTarget` -> `hcloud:LoadBalancerTarget`. */
export function shortType(type: string): string {
  const parts = type.split(":");
  return parts.length === 3 ? `${parts[0]}:${parts[2]}` : type;
}

const quote = (s: string) => `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;

/** The dependency graph: components as clusters, an edge from each dependency to its dependent. */
export function toDot(plan: Plan): string {
  const children = new Map<string | null, PlanResource[]>();
  for (const r of plan.resources) {
    const list = children.get(r.parent) ?? [];
    list.push(r);
    children.set(r.parent, list);
  }
  const isGroup = (r: PlanResource) => (children.get(r.urn)?.length ?? 0) > 0 || r.type === "pulumi:pulumi:Stack";
  const lines = [
    "digraph plan {",
    "  rankdir=LR;",
    `  label=${quote(`${plan.project} / ${plan.stack}  (red: protected)`)}; labelloc=t; fontname="Helvetica";`,
    '  node [shape=box, style="rounded,filled", fillcolor="#f5f7fa", fontname="Helvetica", fontsize=10];',
    '  edge [color="#7a869a"];',
  ];
  const emit = (parent: string | null, indent: string) => {
    for (const r of children.get(parent) ?? []) {
      if (r.type === "pulumi:pulumi:Stack") {
        emit(r.urn, indent);
      } else if (isGroup(r)) {
        lines.push(`${indent}subgraph ${quote(`cluster_${r.urn}`)} {`);
        lines.push(`${indent}  label=${quote(`${r.name} (${shortType(r.type)})`)}; style="rounded"; color="#4a6fa5";`);
        emit(r.urn, `${indent}  `);
        lines.push(`${indent}}`);
      } else {
        const fill = r.protect ? ', fillcolor="#fde2e1"' : "";
        lines.push(`${indent}${quote(r.urn)} [label=${quote(`${r.name}\n${shortType(r.type)}`)}${fill}];`);
      }
    }
  };
  emit(null, "  ");
  const drawn = new Set(plan.resources.filter((r) => !isGroup(r)).map((r) => r.urn));
  for (const r of plan.resources) {
    if (!drawn.has(r.urn)) continue;
    for (const d of r.dependsOn) if (drawn.has(d)) lines.push(`  ${quote(d)} -> ${quote(r.urn)};`);
  }
  lines.push("}");
  return lines.join("\n") + "\n";
}

/** The component -> children tree, with protected resources marked. */
export function toTree(plan: Plan): string {
  const children = new Map<string | null, PlanResource[]>();
  for (const r of plan.resources) children.set(r.parent, [...(children.get(r.parent) ?? []), r]);
  const lines: string[] = [];
  const walk = (parent: string | null, prefix: string) => {
    const list = children.get(parent) ?? [];
    list.forEach((r, i) => {
      const last = i === list.length - 1;
      const flags = [r.protect ? "protected" : "", r.dependsOn.length ? `waits for ${r.dependsOn.length}` : ""]
        .filter(Boolean)
        .join(", ");
      const branch = parent === null ? "" : last ? "└─ " : "├─ ";
      lines.push(`${prefix}${branch}${r.name}  ${shortType(r.type)}${flags ? `  (${flags})` : ""}`);
      walk(r.urn, parent === null ? prefix : `${prefix}${last ? "   " : "│  "}`);
    });
  };
  walk(null, "");
  return lines.join("\n");
}

/** Components and the stack are grouping only: the engine runs no step for them. */
const isStep = (r: PlanResource) => r.type !== "pulumi:pulumi:Stack" && !r.type.startsWith(`${projectTypePrefix}:`);
const projectTypePrefix = "hcloud-control-plane";

/**
 * The longest chain of steps the engine must run one after another on a first `pulumi up`: the
 * longest path through dependsOn and provider links, counting resources (not components). Its
 * length bounds the bring-up time from below whatever the parallelism. Names in order, first
 * to last.
 */
export function longestChain(plan: Plan): string[] {
  const byUrn = new Map(plan.resources.map((r) => [r.urn, r]));
  const memo = new Map<string, string[]>();
  const chainTo = (urn: string): string[] => {
    const known = memo.get(urn);
    if (known) return known;
    const r = byUrn.get(urn);
    if (!r) return [];
    const before = [...r.dependsOn, ...(r.provider ? [r.provider] : [])]
      .map(chainTo)
      .reduce((a, b) => (b.length > a.length ? b : a), [] as string[]);
    const chain = isStep(r) ? [...before, r.name] : before;
    memo.set(urn, chain);
    return chain;
  };
  return plan.resources.map((r) => chainTo(r.urn)).reduce((a, b) => (b.length > a.length ? b : a), [] as string[]);
}

export function countsByType(plan: Plan): [string, number][] {
  const counts = new Map<string, number>();
  for (const r of plan.resources) counts.set(r.type, (counts.get(r.type) ?? 0) + 1);
  return [...counts.entries()].sort((a, b) => a[0].localeCompare(b[0]));
}
