/**
 * A lifecycle harness: the real program (index.ts) run through a sequence of stack states under
 * Pulumi's mock runtime, each run answered from the previous run's recorded state, and a report
 * per step of what `pulumi up` would do: which resources are created, updated, replaced (delete
 * first or create first) or deleted, which remote commands run and on which node.
 *
 * The engine part is generic over resource types and names: it decides every operation from the
 * MODEL below (each rule cites the code it follows). The scenarios (tests/lifecycle.test.ts)
 * supply the steps and what they expect.
 *
 * What mocks cannot prove: the real provider diffs (the model restates them from the provider
 * sources, cited per rule), timing (the engine runs independent steps in parallel, so only the
 * dependency graph orders anything: the member checker below reasons from the graph only), and
 * what the scripts do on a node (tests/bootstrap.test.ts and the node-script suites cover that).
 */
import * as pulumi from "@pulumi/pulumi";
import { MockMonitor } from "@pulumi/pulumi/runtime/mocks";
import { engineUrn, offlineOrganization, ProgramRun, unwire } from "../../tools/offline/harness";
import { ProviderMocks, ReferencedStack, stackReferenceType } from "../../tools/offline/mocks";
import { loadStackConfig } from "../../tools/offline/stackConfig";
import { recordCheckOf, recordedDigestOf } from "../../components/node/nodeScripts";
import { runStack } from "./program";

type Json = Record<string, unknown>;

// ---------------------------------------------------------------------------------------------
// THE MODEL: which input changes replace a resource.
// ---------------------------------------------------------------------------------------------

/**
 * Input paths whose change forces a new resource, by type. Everything else that changes is an
 * in-place update. The engine adds each resource's own `replaceOnChanges`
 * (pulumi/pulumi pkg/resource/deploy/step_generator.go, `applyReplaceOnChanges`) and drops its
 * `ignoreChanges` (same file, `processIgnoreChanges` before the diff).
 *
 * - hcloud: pulumi-hcloud is generated from hetznercloud/terraform-provider-hcloud (its
 *   provider/go.mod pins v1.66.1; the paths below are the `ForceNew: true` fields, and the
 *   plugin-framework `RequiresReplace()` plan modifier of the SSH key, of that tag):
 *   internal/server/resource.go (image, location, datacenter, user_data, ssh_keys; server_type
 *   and placement_group_id, networks, firewall_ids are updated in place), internal/network/
 *   resource.go (ip_range), internal/network/resource_subnet.go (network_id, type, network_zone,
 *   ip_range, vswitch_id), internal/sshkey/resource.go (public_key), internal/floatingip/
 *   resource.go (type, home_location), internal/loadbalancer/resource.go (location,
 *   network_zone), resource_network.go (load_balancer_id, network_id, subnet_id, ip),
 *   resource_service.go (load_balancer_id, protocol, listen_port), resource_target.go
 *   (load_balancer_id, server_id, label_selector, ip). internal/firewall/resource.go and
 *   internal/placementgroup/resource.go have no ForceNew field (a placement group's `type` is
 *   Required but not ForceNew). The bridge maps snake_case to the SDK's camelCase names.
 * - @pulumi/command 1.2 remote.Command and remote.CopyToRemote: only `triggers` replaces. The
 *   provider tags it `provider:"replaceOnChanges"` (pulumi/pulumi-command v1.2.1
 *   provider/pkg/provider/common/inputs.go `ResourceInputs.Triggers`, remote/copy.go
 *   `CopyToRemoteInputs.Triggers`), and the SDK adds the option itself
 *   (node_modules/@pulumi/command/remote/command.js and copyToRemote.js:
 *   `replaceOnChanges: ["triggers[*]"]`), so the recorded option covers it too.
 * - @pulumi/kubernetes: `.metadata.name` and `.metadata.namespace` of every kind replace
 *   (pulumi/pulumi-kubernetes provider/pkg/provider/forcenew.go, `forceNewProperties` ->
 *   `metadataForceNewProperties`). UNSURE: the per-kind fields of that file (a Deployment's
 *   selector, a StorageClass's provisioner, ...) are not modelled; the program changes none.
 * Types matched by no rule are updated in place on any change and listed in the step's
 * `unmodelledTypes`, so a scenario can see where the model is silent.
 */
const replaceRules: { match: (type: string) => boolean; paths: string[] }[] = [
  {
    match: (t) => t === "hcloud:index/server:Server",
    paths: ["image", "location", "datacenter", "userData", "sshKeys"],
  },
  { match: (t) => t === "hcloud:index/network:Network", paths: ["ipRange"] },
  {
    match: (t) => t === "hcloud:index/networkSubnet:NetworkSubnet",
    paths: ["networkId", "type", "networkZone", "ipRange", "vswitchId"],
  },
  { match: (t) => t === "hcloud:index/sshKey:SshKey", paths: ["publicKey"] },
  { match: (t) => t === "hcloud:index/floatingIp:FloatingIp", paths: ["type", "homeLocation"] },
  { match: (t) => t === "hcloud:index/loadBalancer:LoadBalancer", paths: ["location", "networkZone"] },
  {
    match: (t) => t === "hcloud:index/loadBalancerNetwork:LoadBalancerNetwork",
    paths: ["loadBalancerId", "networkId", "subnetId", "ip"],
  },
  {
    match: (t) => t === "hcloud:index/loadBalancerService:LoadBalancerService",
    paths: ["loadBalancerId", "protocol", "listenPort"],
  },
  {
    match: (t) => t === "hcloud:index/loadBalancerTarget:LoadBalancerTarget",
    paths: ["loadBalancerId", "serverId", "labelSelector", "ip"],
  },
  {
    match: (t) => t === "hcloud:index/firewall:Firewall" || t === "hcloud:index/placementGroup:PlacementGroup",
    paths: [],
  },
  {
    match: (t) =>
      t === "command:remote:Command" || t === "command:remote:CopyToRemote" || t === "command:local:Command",
    paths: ["triggers"],
  },
  {
    match: (t) => t.startsWith("kubernetes:") && t !== "pulumi:providers:kubernetes",
    paths: ["metadata.name", "metadata.namespace"],
  },
];

function replacePathsFor(type: string): string[] | undefined {
  return replaceRules.find((r) => r.match(type))?.paths;
}

/** `triggers[*]` -> `triggers`; `metadata.name` stays. The model compares whole values at these paths. */
function normalizePath(path: string): string {
  return path.replace(/\[[^\]]*\].*$/, "");
}

function valueAt(obj: Json, path: string): unknown {
  let v: unknown = obj;
  for (const key of normalizePath(path).split(".")) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Json)[key];
  }
  return v;
}

/** Stable JSON: object keys sorted, so equal values compare equal. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Json).sort(([a], [b]) => a.localeCompare(b)))
      : v,
  );
}

/** Whether the value at `path` differs between the old and the new inputs. */
function pathChanged(olds: Json, news: Json, path: string): boolean {
  return canonical(valueAt(olds, path)) !== canonical(valueAt(news, path));
}

/**
 * `ignoreChanges`: the engine diffs (and stores) the old value at each ignored path
 * (pulumi/pulumi pkg/resource/deploy/step_generator.go, `processIgnoreChanges`). Top-level and
 * dotted paths are modelled; UNSURE for array-element paths (`a[0].b`), which the program has none of.
 */
function applyIgnoreChanges(olds: Json, news: Json, ignoreChanges: string[]): Json {
  const out = structuredClone(news);
  for (const path of ignoreChanges) {
    const keys = normalizePath(path).split(".");
    let from: unknown = olds;
    let to: Json = out;
    keys.forEach((key, i) => {
      const last = i === keys.length - 1;
      from = from && typeof from === "object" ? (from as Json)[key] : undefined;
      if (last) {
        if (from === undefined) delete to[key];
        else to[key] = structuredClone(from);
      } else {
        if (!to[key] || typeof to[key] !== "object") to[key] = {};
        to = to[key] as Json;
      }
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// State carried from step to step.
// ---------------------------------------------------------------------------------------------

/** One resource as the previous step left it in the stack's state. */
export interface StateEntry {
  urn: string;
  type: string;
  name: string;
  custom: boolean;
  id: string | undefined;
  /** Inputs after ignoreChanges, secrets revealed: what the next diff compares with. */
  inputs: Json;
  /** What the mocks returned (wire form, secrets wrapped): answered again unchanged on "same". */
  state: Json;
  /** `state` as plain JSON, secrets revealed. */
  outputs: Json;
  /** 0 for the first instance of this URN; +1 on every replacement or re-creation. */
  generation: number;
  dependencies: string[];
  propertyDependencies: Record<string, string[]>;
  protect: boolean;
  deleteBeforeReplace: boolean;
  retainOnDelete: boolean;
  ignoreChanges: string[];
  replaceOnChanges: string[];
  /**
   * A recorded command's node records (components/node/nodeScripts.ts recordedWork): per server
   * id, the digest its last successful run there wrote to that server's disk. A replaced server
   * (a new id) has none; records stay on a server when the command moves to another member.
   */
  records?: Record<string, string>;
}

export type StackState = Map<string, StateEntry>;

/** What one `pulumi up` step is asked to do. Patterns are globs (`*`) matched against the end of a URN. */
export interface LifecycleStep {
  /** Shown in reports and failures. */
  title: string;
  /** Stack config overrides (as runStack's), merged onto the previous steps' overrides. */
  config?: Record<string, unknown>;
  /** `pulumi up --replace <urn>`: force these to be replaced. */
  replace?: string[];
  /** `pulumi state unprotect <urn>` before this step. */
  unprotect?: string[];
  /** The create (or replacement) of these fails in this step. */
  failed?: string[];
  /** `status` hcloud getServers lists per node (default "running"; "absent": not listed), e.g. {"cp-2": "off"}. */
  serverStatus?: Record<string, string>;
  /**
   * `serverType` hcloud getServers lists per node (default: the type in the state), e.g. every
   * node's after scripts/ops/resize-control-plane.sh resized it: {"cp-1": "ccx33", ...}.
   */
  serverTypes?: Record<string, string>;
  /** The deployed stack outputs the program reads; default the previous step's outputs. */
  deployed?: Record<string, unknown>;
}

export type Op = "create" | "update" | "replace" | "delete" | "same";

export interface OpReport {
  urn: string;
  name: string;
  type: string;
  op: Op;
  /** For replace: the old one is deleted before the new one is created. */
  deleteBeforeReplace: boolean;
  /** Set when the replacement is the engine's doing: a dependent of this delete-before-replace root. */
  replacedWith?: string;
  /** Command resources: the node the command runs on (a delete: the old host in the state). */
  host?: string;
  /** Command resources: which of its commands run, in order ("delete" first for a delete-first replace). */
  runs: ("create" | "update" | "delete" | "copy")[];
  /** The step that failed, was refused, or was skipped because something it waits for failed. */
  error?: string;
  /** Deletes at the end of the update: the wave (0 first) of pulumi's delete schedule. */
  deleteWave?: number;
}

/** One event in an order the engine may execute them in (a topological order, not a timing). */
export interface LifecycleEvent {
  urn: string;
  name: string;
  action: "create" | "update" | "delete";
  host?: string;
  runs: OpReport["runs"];
}

export interface StepResult {
  step: LifecycleStep;
  run: ProgramRun | undefined;
  /** Every custom resource, in registration order, then the deletes in schedule order. */
  ops: OpReport[];
  events: LifecycleEvent[];
  /** The step's errors as the engine reports them; a refused replacement stops the update. */
  errors: string[];
  unmodelledTypes: string[];
  /** The state after this step (the next step diffs against it). */
  state: StackState;
  /** Dependencies (direct) of every resource in the new and in the old graph. */
  newGraph: Map<string, string[]>;
  oldGraph: Map<string, string[]>;
}

function globMatches(pattern: string, urn: string): boolean {
  const re = new RegExp(`${pattern.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*")}$`);
  return re.test(urn);
}

function matchesAny(patterns: string[] | undefined, urn: string): boolean {
  return (patterns ?? []).some((p) => globMatches(p, urn));
}

// ---------------------------------------------------------------------------------------------
// The mocks: each registration is answered from the previous state, as the engine would.
// ---------------------------------------------------------------------------------------------

/** The parts of the register request the model needs (the mock runtime's own proto object). */
interface RegisterRequest {
  getType(): string;
  getName(): string;
  getParent(): string;
  getCustom(): boolean;
  getProtect(): boolean | undefined;
  getDeletebeforereplace(): boolean;
  getIgnorechangesList(): string[];
  getReplaceonchangesList(): string[];
  getRetainondelete(): boolean | undefined;
  getDependenciesList(): string[];
  getPropertydependenciesMap(): { forEach(cb: (value: { getUrnsList(): string[] }, key: string) => void): void };
  getObject(): { toJavaScript(): Json } | undefined;
}

interface Pending {
  urn: string;
  req: RegisterRequest;
}

/**
 * The mock monitor hands newResource only type, name and inputs; the model needs the URN and
 * the resource options. The monitor calls newResource synchronously at the start of
 * registerResource, so the request is stashed on our mocks just before that call. Only mocks
 * of this harness are touched; jest gives every test file its own copy of the module.
 */
const monitorProto = MockMonitor.prototype as unknown as {
  registerResource(this: MonitorThis, req: RegisterRequest, cb: unknown): Promise<void>;
};
interface MonitorThis {
  mocks: unknown;
  newUrn(parent: string, type: string, name: string): string;
}
const originalRegister = monitorProto.registerResource;
monitorProto.registerResource = function (this: MonitorThis, req: RegisterRequest, cb: unknown) {
  if (this.mocks instanceof LifecycleMocks) {
    this.mocks.pending = { urn: engineUrn(this.newUrn(req.getParent(), req.getType(), req.getName())), req };
  }
  return originalRegister.call(this, req, cb);
};

/** Provider functions the program may call, by token; each answers from the state. */
type FunctionMock = (inputs: Json, mocks: LifecycleMocks) => Json;

/** The node a server is: its `node` label, else its Hetzner name, else the resource name. */
export function serverNode(entry: { name: string; inputs: Json }): string {
  const labels = entry.inputs.labels as Json | undefined;
  return String(labels?.node ?? entry.inputs.name ?? entry.name);
}

const serverType = "hcloud:index/server:Server";

export const functionMocks: Record<string, FunctionMock> = {
  /**
   * hcloud.getServers({withSelector}): the servers as the API lists them now (one created or
   * replaced in this step is already there, a deleted one is gone), each with `serverType` and
   * `status` from the scenario: the type the state holds and "running" unless it says otherwise
   * ("absent" leaves it out of the list, as a server deleted outside Pulumi). Only control-plane
   * servers exist in this program.
   */
  "hcloud:index/getServers:getServers": (inputs, mocks) => {
    const byUrn = new Map([...mocks.prev.values(), ...mocks.current.values()].map((e) => [e.urn, e]));
    const servers = [...byUrn.values()]
      .filter((e) => e.type === serverType)
      .map((e) => ({
        ...e.outputs,
        id: Number(e.id),
        serverType: mocks.step.serverTypes?.[serverNode(e)] ?? e.outputs.serverType,
        status: mocks.step.serverStatus?.[serverNode(e)] ?? "running",
      }))
      .filter((s) => s.status !== "absent");
    return { id: "servers", withSelector: inputs.withSelector, servers };
  },
};

export class LifecycleMocks extends ProviderMocks {
  pending: Pending | undefined;
  /** Registrations of this step, in order. */
  readonly current: StackState = new Map();
  readonly ops = new Map<string, OpReport>();
  readonly events: LifecycleEvent[] = [];
  readonly errors: string[] = [];
  /** Refused replacements (protect): the engine stops the update there. */
  bailed = false;
  /** Dependents of a delete-before-replace root: deleted with it, recreated when they register. */
  private readonly dependentReplacements = new Map<string, string>();
  readonly unmodelled = new Set<string>();

  constructor(
    readonly prev: StackState,
    readonly step: LifecycleStep,
    private readonly generations: Map<string, number>,
    stacks: (stack: string) => ReferencedStack | undefined,
  ) {
    super(false, stacks);
  }

  protectedNow(entry: StateEntry): boolean {
    return entry.protect && !matchesAny(this.step.unprotect, entry.urn);
  }

  newResource(args: pulumi.runtime.MockResourceArgs): pulumi.runtime.MockResourceResult {
    if (args.type === stackReferenceType) return super.newResource(args);
    const pending = this.pending;
    this.pending = undefined;
    if (!pending || pending.req.getName() !== args.name) throw new Error(`lifecycle: no request for ${args.name}`);
    const { urn, req } = pending;
    const prev = this.prev.get(urn);
    const ignoreChanges = req.getIgnorechangesList();
    const rawInputs = unwire(req.getObject()?.toJavaScript() ?? {}, true) as Json;
    const inputs = prev ? applyIgnoreChanges(prev.inputs, rawInputs, ignoreChanges) : rawInputs;
    const propertyDependencies: Record<string, string[]> = {};
    req.getPropertydependenciesMap().forEach((v, k) => {
      propertyDependencies[k] = v.getUrnsList().map(engineUrn);
    });
    const options = {
      protect: req.getProtect() ?? false,
      deleteBeforeReplace: req.getDeletebeforereplace(),
      retainOnDelete: req.getRetainondelete() ?? false,
      ignoreChanges,
      replaceOnChanges: req.getReplaceonchangesList(),
    };

    let op: Op;
    if (!prev) op = "create";
    else if (this.dependentReplacements.has(urn) || matchesAny(this.step.replace, urn)) op = "replace";
    else op = this.diff(args.type, prev, inputs, options.replaceOnChanges, ignoreChanges);

    let generation = prev?.generation ?? 0;
    if (op === "create" && this.generations.has(urn)) generation = (this.generations.get(urn) ?? 0) + 1;
    if (op === "replace") generation += 1;
    const report: OpReport = {
      urn,
      name: args.name,
      type: args.type,
      op,
      deleteBeforeReplace: op === "replace" && (options.deleteBeforeReplace || this.dependentReplacements.has(urn)),
      runs: [],
    };
    if (this.dependentReplacements.has(urn)) report.replacedWith = this.dependentReplacements.get(urn);

    let result: pulumi.runtime.MockResourceResult;
    if (op === "replace" && prev && !this.dependentReplacements.has(urn) && prev.protect && options.protect) {
      // A protected resource is not replaced (old and new both protected): the update stops
      // (pulumi/pulumi pkg/resource/deploy/step_generator.go: "unable to replace resource ...
      // as it is currently marked for protection", BailErrorf in an update). `pulumi state
      // unprotect` (the step's `unprotect`) clears the old flag and lets it through.
      if (this.protectedNow(prev)) {
        report.error = `unable to replace resource "${urn}" as it is currently marked for protection`;
        this.errors.push(report.error);
        this.bailed = true;
      }
    }
    if (report.error) {
      result = this.answer(args, prev, "same", generation);
    } else {
      if (op === "replace" && prev && report.deleteBeforeReplace && !this.dependentReplacements.has(urn)) {
        this.deleteDependentsFirst(prev);
      }
      result = this.answer(args, prev, op, generation);
    }

    const state = result.state as Json;
    const entry: StateEntry = {
      urn,
      type: args.type,
      name: args.name,
      custom: args.custom ?? req.getCustom(),
      id: result.id ?? undefined,
      inputs,
      state,
      outputs: unwire(state, true) as Json,
      generation: report.error ? (prev?.generation ?? 0) : generation,
      dependencies: [...new Set(req.getDependenciesList().map(engineUrn))],
      propertyDependencies,
      ...options,
    };
    this.current.set(urn, entry);
    if (entry.custom) {
      if (
        !replacePathsFor(args.type) &&
        !entry.type.startsWith("pulumi:providers:") &&
        op !== "create" &&
        op !== "same"
      ) {
        this.unmodelled.add(args.type);
      }
      const server = this.serverIdOf(entry);
      report.runs = report.error ? [] : this.runs(op, prev, entry, report.deleteBeforeReplace, server);
      entry.records = this.recordsAfter(prev, entry, report.runs, server);
      this.ops.set(urn, report);
      if (op !== "same" && !report.error) {
        this.events.push({
          urn,
          name: args.name,
          action: op === "update" ? "update" : "create",
          runs: report.runs.filter((r) => r !== "delete"),
        });
      }
    }
    return result;
  }

  /** What the provider returns for this op. */
  private answer(
    args: pulumi.runtime.MockResourceArgs,
    prev: StateEntry | undefined,
    op: Op,
    generation: number,
  ): pulumi.runtime.MockResourceResult {
    if (op === "same" && prev) {
      // Nothing runs; the engine hands back the state's outputs (a command's stdout stays).
      this.secretOutputs = [];
      return { id: prev.id, state: prev.state };
    }
    // The mocks derive ids and outputs from the name: a new generation is a new resource
    // (new id, new addresses, new command output); an update keeps its id and recomputes.
    const name = generation === 0 ? args.name : `${args.name}~${generation}`;
    const fresh = super.newResource({ ...args, name });
    return op === "update" && prev ? { id: prev.id, state: fresh.state } : fresh;
  }

  /**
   * The engine's diff: changed top-level inputs (after ignoreChanges); replace when one of them
   * is a replace path of the type or in `replaceOnChanges`, else update; none: same.
   */
  private diff(type: string, prev: StateEntry, inputs: Json, replaceOnChanges: string[], ignoreChanges: string[]): Op {
    const keys = new Set([...Object.keys(prev.inputs), ...Object.keys(inputs)]);
    const changed = [...keys].filter((k) => canonical(prev.inputs[k]) !== canonical(inputs[k]));
    if (changed.length === 0) return "same";
    const paths = [...(replacePathsFor(type) ?? []), ...replaceOnChanges].filter(
      (p) => !ignoreChanges.map(normalizePath).includes(normalizePath(p)),
    );
    return paths.some((p) => pathChanged(prev.inputs, inputs, p)) ? "replace" : "update";
  }

  /**
   * Which of a command's scripts run. remote.Command (pulumi/pulumi-command v1.2.1
   * provider/pkg/provider/remote/commandController.go): Create runs `create`; Update runs
   * `update`, else `create` again; Delete runs `delete` from the state (old host, old script).
   * CopyToRemote (remote/copyController.go): Create copies; Update copies only when the
   * source's hash or remotePath changed; it has no Delete (nothing is removed on the host).
   */
  /** The id of the server a command's connection reaches now: whose disk holds its records. */
  private serverIdOf(entry: StateEntry): string | undefined {
    if (entry.type !== "command:remote:Command") return undefined;
    const host = (entry.inputs.connection as { host?: unknown } | undefined)?.host;
    if (typeof host !== "string") return undefined;
    return [...this.current.values()].find((e) => e.type === serverType && e.outputs.ipv4Address === host)?.id;
  }

  /** A recorded command's records after this op: a create or update that ran wrote its digest on `server`. */
  private recordsAfter(
    prev: StateEntry | undefined,
    entry: StateEntry,
    runs: OpReport["runs"],
    server: string | undefined,
  ): Record<string, string> | undefined {
    const records = { ...(prev?.records ?? {}) };
    const ran = runs.includes("update")
      ? entry.inputs.update
      : runs.includes("create")
        ? entry.inputs.create
        : undefined;
    const digest = typeof ran === "string" ? recordedDigestOf(ran) : undefined;
    if (digest && server) records[server] = digest;
    return Object.keys(records).length ? records : undefined;
  }

  private runs(
    op: Op,
    prev: StateEntry | undefined,
    entry: StateEntry,
    dbr: boolean,
    server: string | undefined,
  ): OpReport["runs"] {
    if (entry.type === "command:remote:CopyToRemote") {
      if (op === "create" || op === "replace") return ["copy"];
      if (op === "update" && prev) {
        const moved =
          canonical(prev.inputs.source) !== canonical(entry.inputs.source) ||
          prev.inputs.remotePath !== entry.inputs.remotePath;
        return moved ? ["copy"] : [];
      }
      return [];
    }
    // A local command (pulumi-command provider/pkg/provider/local) runs its create, update and
    // delete as a remote one does, only where `pulumi up` runs.
    if (entry.type !== "command:remote:Command" && entry.type !== "command:local:Command") return [];
    const hasCreate = typeof entry.inputs.create === "string";
    const oldDelete = prev && typeof prev.inputs.delete === "string";
    switch (op) {
      case "create":
        return hasCreate ? ["create"] : [];
      case "update": {
        if (typeof entry.inputs.update !== "string") return hasCreate ? ["create"] : [];
        // A recorded command (components/node/nodeScripts.ts recordedWork; its shell is run in
        // tests/recordedWork.test.ts): its update runs no work when the record on the server it
        // reaches holds the digest it looks for.
        const wanted = recordCheckOf(entry.inputs.update);
        if (wanted && server && prev?.records?.[server] === wanted) return [];
        return ["update"];
      }
      case "replace": {
        const create: OpReport["runs"] = hasCreate ? ["create"] : [];
        if (!oldDelete) return create;
        return dbr ? ["delete", ...create] : [...create, "delete"];
      }
      default:
        return [];
    }
  }

  /**
   * Delete-before-replace of `root`: the engine first deletes, in reverse dependency order, every
   * dependent that the root's replacement would replace too, then the root
   * (pulumi/pulumi pkg/resource/deploy/step_generator.go `calculateDependentReplacements`): it
   * walks the root's transitive dependents in the OLD graph; a dependent is replaced when one
   * of its input properties depends (property dependency) on the root or on a dependent already
   * chosen, and the provider's diff with those properties unknown says replace (here: one of
   * them is a replace path of its type or in its replaceOnChanges, and not ignored). A
   * dependsOn-only dependent is NOT replaced ("If none of this resource's properties depend on
   * a resource in the replace set ... this resource does not need to be replaced"), nor is a
   * component. A protected dependent stops the update ("unable to replace resource ... as part
   * of replacing ...").
   */
  private deleteDependentsFirst(root: StateEntry): void {
    const replaceSet = new Set([root.urn]);
    const dependents = new Set([root.urn]);
    const chosen: StateEntry[] = [];
    for (const entry of this.prev.values()) {
      if (!entry.dependencies.some((d) => dependents.has(d))) continue;
      dependents.add(entry.urn);
      if (!entry.custom) continue;
      const unknown = Object.entries(entry.propertyDependencies)
        .filter(([, deps]) => deps.some((d) => replaceSet.has(d)))
        .map(([key]) => key);
      if (unknown.length === 0) continue;
      const ignored = entry.ignoreChanges.map(normalizePath);
      const paths = [...(replacePathsFor(entry.type) ?? []), ...entry.replaceOnChanges]
        .map(normalizePath)
        .filter((p) => !ignored.includes(p));
      if (!paths.some((p) => unknown.includes(p.split(".")[0]))) continue;
      replaceSet.add(entry.urn);
      chosen.push(entry);
    }
    for (const entry of chosen) {
      if (this.protectedNow(entry)) {
        this.errors.push(`unable to replace resource "${entry.urn}" as part of replacing "${root.urn}"`);
        this.bailed = true;
      }
      this.dependentReplacements.set(entry.urn, root.urn);
    }
    for (const entry of [...chosen].reverse().concat(root)) {
      this.events.push({
        urn: entry.urn,
        name: entry.name,
        action: "delete",
        runs: entry.type === "command:remote:Command" && typeof entry.inputs.delete === "string" ? ["delete"] : [],
      });
    }
  }

  /** Provider function calls, answered from the table; an unknown token still throws. */
  call(args: pulumi.runtime.MockCallArgs): pulumi.runtime.MockCallResult {
    const fn = functionMocks[args.token];
    return fn ? fn(args.inputs as Json, this) : super.call(args);
  }
}

// ---------------------------------------------------------------------------------------------
// The runner.
// ---------------------------------------------------------------------------------------------

/** Reachability over `graph` (urn -> direct dependencies). */
export function dependsOnTransitively(graph: Map<string, string[]>, from: string, to: string): boolean {
  const seen = new Set<string>();
  const stack = [from];
  while (stack.length) {
    const urn = stack.pop() as string;
    for (const d of graph.get(urn) ?? []) {
      if (d === to) return true;
      if (!seen.has(d)) {
        seen.add(d);
        stack.push(d);
      }
    }
  }
  return false;
}

/**
 * pulumi/pulumi pkg/resource/deploy/step_generator.go `ScheduleDeletes`: the deletes at the end
 * of an update go in waves; a wave holds every condemned resource none of whose dependencies
 * (old graph) is still condemned, and the waves run in reverse, each wave's steps in parallel
 * (deployment_executor.go: `ExecuteParallel(antichain)` per wave).
 */
function scheduleDeletes(urns: string[], oldGraph: Map<string, string[]>): string[][] {
  const condemned = new Set(urns);
  const waves: string[][] = [];
  while (condemned.size) {
    const wave = [...condemned].filter((u) => !(oldGraph.get(u) ?? []).some((d) => condemned.has(d)));
    if (wave.length === 0) throw new Error("lifecycle: dependency cycle among deletes");
    wave.forEach((u) => condemned.delete(u));
    waves.push(wave);
  }
  return waves.reverse();
}

/** Maps a command's connection host to the node of the server that has that address. */
function hostOf(entry: StateEntry, servers: StateEntry[]): string | undefined {
  const connection = entry.inputs.connection as Json | undefined;
  if (!connection?.host) return undefined;
  const owners = servers.filter((s) => s.outputs.ipv4Address === connection.host);
  if (owners.length > 1) throw new Error(`lifecycle: two servers have ${String(connection.host)}`);
  return owners.length ? serverNode(owners[0]) : String(connection.host);
}

/**
 * Runs the program through `steps`, each against the state the previous one left. Returns
 * one result per step. `initial` (default: an empty stack) lets scenarios continue a sequence.
 */
export async function runLifecycle(
  steps: LifecycleStep[],
  initial: { state: StackState; outputs: Record<string, unknown>; config: Record<string, unknown> } = {
    state: new Map(),
    outputs: {},
    config: {},
  },
): Promise<StepResult[]> {
  const results: StepResult[] = [];
  let state = initial.state;
  let outputs = initial.outputs;
  let config = initial.config;
  const generations = new Map<string, number>();
  for (const entry of state.values()) generations.set(entry.urn, entry.generation);
  for (const step of steps) {
    config = { ...config, ...step.config };
    const result = await runStep(state, step, config, step.deployed ?? outputs, generations);
    results.push(result);
    state = result.state;
    // UNSURE: whether the engine saves the stack's outputs from an update that ended with errors;
    // the model keeps the last error-free step's.
    if (result.run && !result.errors.length) outputs = result.run.revealedOutputs;
    for (const entry of state.values()) {
      generations.set(entry.urn, Math.max(generations.get(entry.urn) ?? 0, entry.generation));
    }
  }
  return results;
}

/** Where a finished sequence stands, to continue it with more steps. */
export function continueFrom(results: StepResult[]): {
  state: StackState;
  outputs: Record<string, unknown>;
  config: Record<string, unknown>;
} {
  const last = results[results.length - 1];
  const config = results.reduce((c, r) => ({ ...c, ...r.step.config }), {});
  const ok = [...results].reverse().find((r) => r.run && !r.errors.length);
  return { state: last.state, outputs: ok?.run?.revealedOutputs ?? {}, config };
}

async function runStep(
  prev: StackState,
  step: LifecycleStep,
  overrides: Record<string, unknown>,
  deployed: Record<string, unknown>,
  generations: Map<string, number>,
): Promise<StepResult> {
  const config = loadStackConfig("prod", { overrides });
  const self = `${offlineOrganization}/${config.project}/${config.stack}`;
  const mocks = new LifecycleMocks(prev, step, generations, (stack) =>
    stack === self ? { outputs: deployed, secretOutputNames: [] } : undefined,
  );
  // runStack hands its options to runProgram, which takes `mocks`.
  const options: Parameters<typeof runStack>[1] & { mocks: ProviderMocks } = { mocks };
  const run = await runStack(overrides, options);
  if (mocks.current.size === 0) throw new Error("lifecycle: the program ran without the lifecycle mocks");

  const oldGraph = new Map([...prev.values()].map((e) => [e.urn, e.dependencies]));
  const newGraph = new Map([...mocks.current.values()].map((e) => [e.urn, e.dependencies]));
  const errors = [...mocks.errors];
  const failed = [...mocks.ops.values()].filter(
    (o) => matchesAny(step.failed, o.urn) && (o.op === "create" || o.op === "replace" || o.op === "update"),
  );
  for (const o of failed) {
    o.error = `${o.op} failed`;
    errors.push(`${o.urn}: ${o.error}`);
  }
  // After a failed step the engine cancels the update (step_executor.go `cancelDueToError` ->
  // `se.cancel()`): what waits for the failed resource never runs, and the deletes at the end
  // (performPostSteps) are not reached. UNSURE: steps independent of the failure that were
  // already running finish; the model lets every independent step finish.
  const skipped = new Set<string>();
  for (const o of mocks.ops.values()) {
    if (o.error || o.op === "same") continue;
    if (failed.some((f) => dependsOnTransitively(newGraph, o.urn, f.urn))) {
      o.error = "skipped: a resource it depends on failed";
      skipped.add(o.urn);
    }
  }

  const next: StackState = new Map();
  if (mocks.bailed) {
    // A refused replacement stops the update before it changes anything the model tracks.
    for (const [urn, entry] of prev) next.set(urn, entry);
  } else {
    for (const [urn, entry] of mocks.current) {
      const report = mocks.ops.get(urn);
      const old = prev.get(urn);
      if (report?.error && report.op !== "same") {
        // A failed or skipped create leaves nothing; a failed delete-first replace leaves
        // nothing either (the old one is gone); anything else keeps the old state.
        const gone = report.op === "create" || (report.op === "replace" && report.deleteBeforeReplace);
        if (!gone && old) next.set(urn, old);
        continue;
      }
      next.set(urn, entry);
    }
  }

  const ops = [...mocks.ops.values()];
  const events = mocks.bailed
    ? []
    : mocks.events.filter((e) => !skipped.has(e.urn) && !failed.some((f) => f.urn === e.urn && e.action !== "delete"));
  const servers = (s: StackState) => [...s.values()].filter((e) => e.type === serverType);
  for (const o of ops) {
    const entry = mocks.current.get(o.urn);
    if (entry) o.host = hostOf(entry, servers(mocks.current));
  }
  for (const e of events) {
    const entry = e.action === "delete" ? prev.get(e.urn) : mocks.current.get(e.urn);
    if (entry) e.host = hostOf(entry, e.action === "delete" ? servers(prev) : servers(mocks.current));
  }

  // Deletes: whatever the state has and the program no longer registers.
  if (!mocks.bailed && failed.length === 0) {
    const gone = [...prev.values()].filter((e) => !mocks.current.has(e.urn));
    const waves = scheduleDeletes(
      gone.map((e) => e.urn),
      oldGraph,
    );
    waves.forEach((wave, i) => {
      for (const urn of wave) {
        const entry = prev.get(urn) as StateEntry;
        if (!entry.custom) continue;
        const report: OpReport = {
          urn,
          name: entry.name,
          type: entry.type,
          op: "delete",
          deleteBeforeReplace: false,
          host: hostOf(entry, servers(prev)),
          runs: [],
          deleteWave: i,
        };
        if (mocks.protectedNow(entry)) {
          // Deleting a protected resource fails; the engine continues past this error to report
          // every one (step.go `DeleteStep.Apply` -> deleteProtectedError; step_executor.go
          // `cancelDueToError` continues on it). The resource stays in the state.
          report.error = `resource "${urn}" cannot be deleted because it is protected`;
          errors.push(report.error);
          next.set(urn, entry);
        } else if (!entry.retainOnDelete) {
          // retainOnDelete: the engine drops it from the state without calling the provider (step.go).
          report.runs =
            entry.type === "command:remote:Command" && typeof entry.inputs.delete === "string" ? ["delete"] : [];
          events.push({ urn, name: entry.name, action: "delete", host: report.host, runs: report.runs });
        }
        ops.push(report);
      }
    });
  } else {
    for (const e of prev.values()) if (!mocks.current.has(e.urn) && !next.has(e.urn)) next.set(e.urn, e);
  }

  return {
    step,
    run,
    ops,
    events,
    errors,
    unmodelledTypes: [...mocks.unmodelled].sort(),
    state: next,
    newGraph,
    oldGraph,
  };
}

// ---------------------------------------------------------------------------------------------
// The member checker.
// ---------------------------------------------------------------------------------------------

/** What makes an op change an etcd member. Defaults fit the program's scripts and labels. */
export interface MemberRules {
  /** A command whose create adds a member (kubeadm init/join, the member script). */
  joins: RegExp;
  /** A command whose delete removes a member. */
  leaves: RegExp;
  /** A server that holds a member. */
  memberServer: (entry: StateEntry) => boolean;
}

export const defaultMemberRules: MemberRules = {
  joins: /\/(kubeadm-init|kubeadm-join|kubeadm-member)\.sh(\s|$)/,
  leaves: /\/(leave-cluster|remove-etcd-member)\.sh(\s|$)|\/membership\.sh\s.*\bremove\b/,
  memberServer: (e) => e.type === serverType && (e.inputs.labels as Json | undefined)?.role === "control-plane",
};

export interface MemberOp {
  urn: string;
  op: Op;
  /** "new": runs while the program registers (new graph); "old": a delete at the end (old graph). */
  graph: "new" | "old";
}

/**
 * The ops of a step that change an etcd member: a create or replacement whose create joins, a
 * replacement or delete whose (old) delete removes a member, and a replacement or delete of a
 * member's server. `prevState` is the state the step started from.
 */
export function memberOps(
  result: StepResult,
  prevState: StackState,
  rules: MemberRules = defaultMemberRules,
): MemberOp[] {
  const out: MemberOp[] = [];
  // A server whose member a leaving command of this step removed before it (the command
  // depends on the server, so the engine deletes it first) no longer holds a member.
  const left = result.ops.flatMap((o) => {
    const old = prevState.get(o.urn);
    const command = String(old?.inputs.delete ?? "");
    if (o.op === "create" || o.op === "same" || o.op === "update" || !rules.leaves.test(command)) return [];
    return [{ urn: o.urn, node: /--node-name (\S+)/.exec(command)?.[1] }];
  });
  const leftBefore = (server: StateEntry) =>
    left.some((l) => l.node === server.inputs.name && dependsOnTransitively(result.oldGraph, l.urn, server.urn));
  // A server whose node had neither a setup nor a membership record when the step started
  // left the cluster in an earlier step (its record's removal): it holds no member any more.
  const nodeOf = (command: unknown) => /--node-name (\S+)/.exec(String(command ?? ""))?.[1];
  const heldMember = (server: StateEntry) =>
    [...prevState.values()].some(
      (e) =>
        (rules.joins.test(String(e.inputs.create ?? "")) && nodeOf(e.inputs.create) === server.inputs.name) ||
        (rules.leaves.test(String(e.inputs.delete ?? "")) && nodeOf(e.inputs.delete) === server.inputs.name),
    );
  for (const o of result.ops) {
    if (o.error || o.op === "same" || o.op === "update") continue;
    const old = prevState.get(o.urn);
    const now = result.run?.resources.find((r) => r.urn === o.urn);
    const nowEntry = now && ({ type: now.type, name: now.name, inputs: now.revealedInputs } as StateEntry);
    const joins = o.op !== "delete" && rules.joins.test(String(nowEntry?.inputs.create ?? ""));
    const leaves = o.op !== "create" && rules.leaves.test(String(old?.inputs.delete ?? ""));
    const server =
      o.op !== "create" && old !== undefined && rules.memberServer(old) && heldMember(old) && !leftBefore(old);
    if (joins || leaves || server) out.push({ urn: o.urn, op: o.op, graph: o.op === "delete" ? "old" : "new" });
  }
  return out;
}

/**
 * "No step touches two etcd members at once": every two member-changing ops of a step must be
 * ordered by the dependency graph, one reachable from the other. The engine runs every step
 * whose dependencies are done in parallel (pulumi/pulumi pkg/resource/deploy/step_executor.go:
 * chains of independent steps go to parallel workers, `DegreeOfParallelism`, and the deletes at
 * the end run wave by wave, `ExecuteParallel(antichain)`), so nothing else orders them.
 * Creates and replacements are ordered in the new graph; the deletes at the end run after all
 * of them (deployment_executor.go `performPostSteps`) and among themselves in the old graph.
 * Returns the unordered pairs.
 */
export function unorderedMemberPairs(
  result: StepResult,
  prevState: StackState,
  rules: MemberRules = defaultMemberRules,
): [string, string][] {
  const ops = memberOps(result, prevState, rules);
  const pairs: [string, string][] = [];
  ops.forEach((a, i) =>
    ops.slice(i + 1).forEach((b) => {
      if (a.graph !== b.graph) return; // the deletes at the end come after every new-graph op
      const g = a.graph === "new" ? result.newGraph : result.oldGraph;
      if (!dependsOnTransitively(g, a.urn, b.urn) && !dependsOnTransitively(g, b.urn, a.urn))
        pairs.push([a.urn, b.urn]);
    }),
  );
  return pairs;
}

/** One line per op, for scenario tables: `replace bootstrap-cp-2-join (delete first) @cp-2 runs delete,create`. */
export function describeOp(o: OpReport): string {
  const parts = [o.op, o.name];
  if (o.op === "replace" && o.deleteBeforeReplace) parts.push("(delete first)");
  if (o.host) parts.push(`@${o.host}`);
  if (o.runs.length) parts.push(`runs ${o.runs.join(",")}`);
  if (o.error) parts.push(`! ${o.error.replace(/"urn:[^"]*::([^":]+)"/g, "$1")}`);
  return parts.join(" ");
}

/** One line per event: `delete bootstrap-cp-2-join @cp-2 runs delete`. */
export function describeEvent(e: LifecycleEvent): string {
  return [
    e.action,
    e.name,
    ...(e.host ? [`@${e.host}`] : []),
    ...(e.runs.length ? [`runs ${e.runs.join(",")}`] : []),
  ].join(" ");
}
