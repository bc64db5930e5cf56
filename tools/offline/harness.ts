/**
 * Runs the real program under Pulumi's mock runtime and records what it registers, as the
 * engine would receive it: type, name, parent, provider, every dependency the SDK computed
 * (explicit dependsOn and every resource whose outputs flow into the inputs), resource
 * options, and the inputs with secrets masked.
 */
import * as pulumi from "@pulumi/pulumi";
import { ProviderMocks } from "./mocks";
import { sigs, specialSig, unknownValue } from "./wire";
import { StackConfig } from "./stackConfig";

export const secretMask = "[secret]";
export const unknownMask = "[unknown]";

export interface RecordedResource {
  urn: string;
  type: string;
  name: string;
  parent: string | null;
  provider: string | null;
  custom: boolean;
  dependsOn: string[];
  protect: boolean;
  deleteBeforeReplace: boolean;
  ignoreChanges: string[];
  additionalSecretOutputs: string[];
  /** The names (or URNs) this resource was known by before (the `aliases` option). */
  aliases: string[];
  inputs: Record<string, unknown>;
  /** The inputs with secrets in clear: for tests only, never written anywhere. */
  revealedInputs: Record<string, unknown>;
}

export interface ProgramRun {
  project: string;
  stack: string;
  preview: boolean;
  resources: RecordedResource[];
  outputs: Record<string, unknown>;
  /** The outputs with secrets in clear: for tests only, never written anywhere. */
  revealedOutputs: Record<string, unknown>;
}

/**
 * Replaces wire-format secrets, unknowns and references by plain JSON. Secrets become
 * "[secret]" unless `reveal` is set (tests that check where a secret goes).
 */
export function unwire(value: unknown, reveal = false): unknown {
  if (value === unknownValue) return unknownMask;
  if (Array.isArray(value)) return value.map((v) => unwire(v, reveal));
  if (value === null || typeof value !== "object") return value;
  const obj = value as Record<string, unknown>;
  switch (obj[specialSig]) {
    case sigs.secret:
      return reveal ? unwire(obj.value, reveal) : secretMask;
    case sigs.resourceReference:
      return engineUrn(String(obj.urn));
    case sigs.output:
      if (obj.secret && !reveal) return secretMask;
      return "value" in obj ? unwire(obj.value, reveal) : unknownMask;
    case sigs.asset:
      return { asset: obj.text !== undefined ? { text: obj.text } : { path: obj.path, uri: obj.uri } };
    case sigs.archive:
      return { archive: { path: obj.path, uri: obj.uri } };
  }
  return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, unwire(v, reveal)]));
}

/**
 * The URN the engine gives. The mock monitor puts the root stack's type into the type chain
 * of its children (`::pulumi:pulumi:Stack$hcloud:...`); the engine leaves the stack out.
 */
export function engineUrn(urn: string): string {
  return urn.replace("::pulumi:pulumi:Stack$", "::");
}

/** Provider references are `<urn>::<id>`; the plan shows the provider's URN. */
function providerUrn(ref: string): string | null {
  if (!ref) return null;
  const i = ref.lastIndexOf("::");
  return engineUrn(i > 0 ? ref.slice(0, i) : ref);
}

interface RegisterRequest {
  getType(): string;
  getName(): string;
  getParent(): string;
  getCustom(): boolean;
  getProvider(): string;
  getDependenciesList(): string[];
  getProtect(): boolean | undefined;
  getDeletebeforereplace(): boolean;
  getIgnorechangesList(): string[];
  getAdditionalsecretoutputsList(): string[];
  getAliasesList(): { getUrn(): string; getSpec(): { getName(): string } | undefined }[];
  getObject(): { toJavaScript(): Record<string, unknown> } | undefined;
}
type Callback = (err: unknown, response?: { getUrn(): string }) => void;
interface Monitor {
  registerResource(req: RegisterRequest, cb: Callback): Promise<void>;
  registerResourceOutputs(
    req: { getUrn(): string; getOutputs(): { toJavaScript(): object } | undefined },
    cb: Callback,
  ): void;
}

/** The organization a self-managed backend reports (`pulumi.getOrganization()`). */
export const offlineOrganization = "organization";

/**
 * Runs `program` (the module export of index.ts) as the stack's root, with `config` as its
 * configuration. Rejects with the program's own error, e.g. a ConfigError.
 */
export async function runProgram(
  program: () => Promise<unknown>,
  config: StackConfig,
  options: {
    preview?: boolean;
    /** Receives each registration as it happens, so a failed run can still be inspected. */
    sink?: RecordedResource[];
    /** Mocks that answer more than the providers (e.g. a StackReference); default ProviderMocks. */
    mocks?: ProviderMocks;
    /**
     * With the default mocks: the outputs of the stack's last update, which the program reads
     * through a StackReference to itself (e.g. the Kubernetes version it runs). Default: none,
     * a stack that was never deployed.
     */
    deployed?: Record<string, unknown>;
    /** With the default mocks: server statuses by resource name; default every one running. */
    serverStatus?: Record<string, string>;
  } = {},
): Promise<ProgramRun> {
  const preview = options.preview ?? false;
  pulumi.runtime.setAllConfig(config.values, config.secretKeys);
  const self = `${offlineOrganization}/${config.project}/${config.stack}`;
  const deployed = { outputs: options.deployed ?? {}, secretOutputNames: [] };
  const mocks =
    options.mocks ??
    new ProviderMocks(preview, (stack) => (stack === self ? deployed : undefined), options.serverStatus);
  await pulumi.runtime.setMocks(mocks, config.project, config.stack, preview, offlineOrganization);

  const resources: RecordedResource[] = options.sink ?? [];
  let outputs: Record<string, unknown> = {};
  let revealedOutputs: Record<string, unknown> = {};
  const monitor = pulumi.runtime.getMonitor() as unknown as Monitor;
  const register = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req, cb) => {
    // The mock monitor calls newResource before its first await, so this reaches that call.
    mocks.secretOutputs = req.getAdditionalsecretoutputsList();
    return register(req, (err, response) => {
      // The engine refuses a second resource with one URN (pulumi/pulumi
      // pkg/resource/deploy/step_generator.go: "Duplicate resource URN"); the mock monitor does not.
      if (!err && response && resources.some((r) => r.urn === engineUrn(response.getUrn()))) {
        const duplicate = new Error(
          `Duplicate resource URN '${engineUrn(response.getUrn())}'; try giving it a unique name`,
        );
        cb(duplicate as unknown as Parameters<typeof cb>[0], response);
        return;
      }
      if (!err && response) {
        resources.push({
          urn: engineUrn(response.getUrn()),
          type: req.getType(),
          name: req.getName(),
          parent: req.getParent() ? engineUrn(req.getParent()) : null,
          provider: providerUrn(req.getProvider()),
          custom: req.getCustom(),
          dependsOn: [...new Set(req.getDependenciesList().map(engineUrn))].sort(),
          protect: req.getProtect() ?? false,
          deleteBeforeReplace: req.getDeletebeforereplace(),
          ignoreChanges: req.getIgnorechangesList(),
          additionalSecretOutputs: req.getAdditionalsecretoutputsList(),
          aliases: req.getAliasesList().map((a) => a.getSpec()?.getName() || a.getUrn()),
          inputs: unwire(req.getObject()?.toJavaScript() ?? {}) as Record<string, unknown>,
          revealedInputs: unwire(req.getObject()?.toJavaScript() ?? {}, true) as Record<string, unknown>,
        });
      }
      cb(err, response);
    });
  };
  const registerOutputs = monitor.registerResourceOutputs.bind(monitor);
  monitor.registerResourceOutputs = (req, cb) => {
    if (req.getUrn().includes("::pulumi:pulumi:Stack::")) {
      const wire = req.getOutputs()?.toJavaScript() ?? {};
      outputs = unwire(wire) as Record<string, unknown>;
      revealedOutputs = unwire(wire, true) as Record<string, unknown>;
    }
    registerOutputs(req, cb);
  };

  // The stack resource, as the language host creates it. A failing program rejects the
  // stack's outputs; the Output's derived promises would then go unhandled, so they are
  // observed here and the program's error is reported once, through `promise()`.
  const stack = new pulumi.runtime.Stack(async () => (await program()) as pulumi.Inputs);
  // Output<Inputs> lifts every property of Inputs, so its own members are reached untyped.
  const stackOutputs = stack.outputs as unknown as {
    isKnown: Promise<unknown>;
    isSecret: Promise<unknown>;
    promise(): Promise<unknown>;
  };
  stackOutputs.isKnown.catch(() => undefined);
  stackOutputs.isSecret.catch(() => undefined);
  try {
    await stackOutputs.promise();
  } finally {
    // Resources created inside apply callbacks register after the program returns; after a
    // failure, this lets every registration that did start reach the record.
    await (pulumi.runtime as unknown as { waitForRPCs(): Promise<void> }).waitForRPCs();
  }
  return { project: config.project, stack: config.stack, preview, resources, outputs, revealedOutputs };
}
