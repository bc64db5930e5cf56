/**
 * Runs examples/worker-pool under Pulumi's mock runtime with a mocked control-plane stack.
 *
 * A StackReference is a resource *read* (`pulumi:pulumi:StackReference`, id = the stack name):
 * the mock monitor's readResource asks `newResource` for its state, and the SDK reads the
 * properties `outputs` (every output) and `secretOutputNames` (which of them are secret; what
 * `getOutput` uses to decide whether one output is a secret). The engine sends secret outputs
 * as secrets inside `outputs`; the mock does the same with `pulumi.secret`, so the program sees
 * exactly what it would see from a real stack. Every other resource gets the repo's provider
 * mocks (scripts/offline/mocks.ts), and every registration is recorded with its inputs (secrets
 * masked) and revealed inputs, like the offline plan's harness.
 */
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import type { NodeOutput, StackOutputs } from "../../components/outputs";
import { unwire } from "../../scripts/offline/harness";
import { ProviderMocks } from "../../scripts/offline/mocks";
import { loadStackConfig } from "../../scripts/offline/stackConfig";

// A type import, so that tsc (whose tsconfig does not list examples/) type-checks the example.
import type workerPoolProgram from "../../examples/worker-pool/index";

// eslint-disable-next-line @typescript-eslint/no-require-imports -- the example's index.ts is `export =`, a Pulumi entry point
const program = require("../../examples/worker-pool/index") as typeof workerPoolProgram;

export const exampleRoot = path.join(__dirname, "..", "..", "examples", "worker-pool");
export const stackReferenceType = "pulumi:pulumi:StackReference";

/** StackOutputs as a stack reference returns them: every Output resolved to its value. */
export type ResolvedOutputs = {
  [K in keyof StackOutputs]: StackOutputs[K] extends pulumi.Output<infer U> | undefined ? U : StackOutputs[K];
};

/** A prod-like control-plane stack (Pulumi.prod.yaml), typed by the contract so a change to it fails tsc here. */
export function controlPlaneOutputs(): ResolvedOutputs {
  const nodes: NodeOutput[] = [1, 2, 3].map((n) => ({
    name: `cp-${n}`,
    id: String(4_000_000 + n),
    privateIp: `10.20.1.1${n}`,
    publicIpv4: `203.0.113.${10 + n}`,
    publicIpv6: `2001:db8:${n}::1`,
  }));
  return {
    outputsVersion: 2,
    clusterName: "prod-nbg1",
    location: "nbg1",
    networkZone: "eu-central",
    kubernetesVersion: "1.34.2",
    controlPlaneEndpoint: "api.prod-nbg1.k8s.example.com:6443",
    apiServerUrl: "https://198.51.100.20:6443",
    apiServerPrivateUrl: "https://10.20.1.250:6443",
    reservedIp: "192.0.2.44",
    reservedIpId: "5000001",
    loadBalancerId: "6000001",
    loadBalancerIpv4: "198.51.100.20",
    loadBalancerIpv6: "2001:db8:20::1",
    loadBalancerPrivateIp: "10.20.1.250",
    networkId: "7000001",
    subnetId: "7000001-10.20.1.0/24",
    firewallId: "8000001",
    placementGroupId: "9000001",
    nodes,
    caCertificate: "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n",
    caCertHash: `sha256:${"ab".repeat(32)}`,
    backupBucket: "prod-nbg1-etcd-backup",
    backupEndpoint: "https://nbg1.your-objectstorage.com",
    kubeconfig: "apiVersion: v1\nkind: Config\n",
    workerJoin: {
      controlPlaneEndpoint: "api.prod-nbg1.k8s.example.com:6443",
      token: "q7x2mf.h8k3v9c1p0w4z6r5",
      caCertHash: `sha256:${"ab".repeat(32)}`,
      expires: "2099-01-01T00:00:00Z",
    },
  };
}

/** `outputs` without `key`, as a stack that does not export it. */
export function without(outputs: Record<string, unknown>, key: string): Record<string, unknown> {
  return Object.fromEntries(Object.entries(outputs).filter(([k]) => k !== key));
}

/** The outputs the control plane marks secret (components/outputs.ts: kubeconfig, workerJoin). */
export const controlPlaneSecretOutputs = ["kubeconfig", "workerJoin"];

export interface Recorded {
  type: string;
  name: string;
  custom: boolean;
  ignoreChanges: string[];
  /** Inputs as the engine receives them, secrets masked as "[secret]". */
  inputs: Record<string, unknown>;
  /** The same with secrets in clear: for assertions only. */
  revealedInputs: Record<string, unknown>;
}

export interface WorkerPoolRun {
  resources: Recorded[];
  /** Every StackReference read: its resource name and the stack it names. */
  stackReferences: { name: string; stack: unknown }[];
  /** The example's stack outputs, secrets masked. */
  outputs: Record<string, unknown>;
}

interface RegisterRequest {
  getType(): string;
  getName(): string;
  getCustom(): boolean;
  getIgnorechangesList(): string[];
  getObject(): { toJavaScript(): Record<string, unknown> } | undefined;
}
type Callback = (err: unknown, response?: unknown) => void;
interface Monitor {
  registerResource(req: RegisterRequest, cb: Callback): Promise<void>;
  registerResourceOutputs(
    req: { getUrn(): string; getOutputs(): { toJavaScript(): object } | undefined },
    cb: Callback,
  ): void;
}

class WorkerPoolMocks implements pulumi.runtime.Mocks {
  readonly providers = new ProviderMocks(false);
  readonly stackReferences: { name: string; stack: unknown }[] = [];

  constructor(
    private readonly outputs: Record<string, unknown>,
    private readonly secretOutputNames: string[],
  ) {}

  newResource(args: pulumi.runtime.MockResourceArgs): pulumi.runtime.MockResourceResult {
    if (args.type !== stackReferenceType) return this.providers.newResource(args);
    this.stackReferences.push({ name: args.name, stack: args.inputs.name });
    const outputs = Object.fromEntries(
      Object.entries(this.outputs).map(([k, v]) => [k, this.secretOutputNames.includes(k) ? pulumi.secret(v) : v]),
    );
    return {
      id: args.id ?? String(args.inputs.name),
      state: { name: args.inputs.name, outputs, secretOutputNames: this.secretOutputNames },
    };
  }

  call(args: pulumi.runtime.MockCallArgs): pulumi.runtime.MockCallResult {
    return this.providers.call(args);
  }
}

/**
 * Runs the example as stack `dev` with Pulumi.yaml defaults, Pulumi.example.yaml and `config`
 * overrides; the control-plane stack answers with `outputs`. Rejects with the program's error.
 */
export async function runWorkerPool(
  options: {
    config?: Record<string, unknown>;
    outputs?: Record<string, unknown>;
    secretOutputNames?: string[];
    /** Receives each registration as it happens, so a failed run can still be inspected. */
    sink?: Recorded[];
  } = {},
): Promise<WorkerPoolRun> {
  const config = loadStackConfig("dev", {
    root: exampleRoot,
    configFile: path.join(exampleRoot, "Pulumi.example.yaml"),
    overrides: options.config ?? {},
    externalSecrets: ["hcloud:token"],
  });
  pulumi.runtime.setAllConfig(config.values, config.secretKeys);
  const mocks = new WorkerPoolMocks(
    options.outputs ?? { ...controlPlaneOutputs() },
    options.secretOutputNames ?? controlPlaneSecretOutputs,
  );
  await pulumi.runtime.setMocks(mocks, config.project, config.stack, false);

  const resources: Recorded[] = options.sink ?? [];
  const monitor = pulumi.runtime.getMonitor() as unknown as Monitor;
  const register = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req, cb) =>
    register(req, (err, response) => {
      if (!err) {
        const wire = req.getObject()?.toJavaScript() ?? {};
        resources.push({
          type: req.getType(),
          name: req.getName(),
          custom: req.getCustom(),
          ignoreChanges: req.getIgnorechangesList(),
          inputs: unwire(wire) as Record<string, unknown>,
          revealedInputs: unwire(wire, true) as Record<string, unknown>,
        });
      }
      cb(err, response);
    });

  let outputs: Record<string, unknown> = {};
  const registerOutputs = monitor.registerResourceOutputs.bind(monitor);
  monitor.registerResourceOutputs = (req, cb) => {
    if (req.getUrn().includes("::pulumi:pulumi:Stack::")) {
      outputs = unwire(req.getOutputs()?.toJavaScript() ?? {}) as Record<string, unknown>;
    }
    registerOutputs(req, cb);
  };

  const stack = new pulumi.runtime.Stack(async () => (await program()) as pulumi.Inputs);
  // As in scripts/offline/harness.ts: the program's error is reported once, through promise().
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
    await (pulumi.runtime as unknown as { waitForRPCs(): Promise<void> }).waitForRPCs();
  }
  return { resources, stackReferences: mocks.stackReferences, outputs };
}
