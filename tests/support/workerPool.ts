/**
 * Runs examples/worker-pool under Pulumi's mock runtime with a mocked control-plane stack.
 *
 * A StackReference is a resource *read* (`pulumi:pulumi:StackReference`, id = the stack name):
 * the mock monitor's readResource asks `newResource` for its state, and the SDK reads the
 * properties `outputs` (every output) and `secretOutputNames` (which of them are secret; what
 * `getOutput` uses to decide whether one output is a secret). The engine sends secret outputs
 * as secrets inside `outputs`; the mock does the same with `pulumi.secret`, so the program sees
 * exactly what it would see from a real stack. Every other resource gets the repo's provider
 * mocks (tools/offline/mocks.ts), and every registration is recorded with its inputs (secrets
 * masked) and revealed inputs, like the offline plan's harness.
 */
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import type { NodeOutput, StackOutputs } from "../../components/outputs";
import { RecordedResource, runProgram } from "../../tools/offline/harness";
import { ProviderMocks } from "../../tools/offline/mocks";
import { loadStackConfig } from "../../tools/offline/stackConfig";

// A type import, so that tsc (whose tsconfig does not list examples/) type-checks the example.
import type workerPoolProgram from "../../examples/worker-pool/index";

// eslint-disable-next-line @typescript-eslint/no-require-imports -- the example's index.ts is `export =`, a Pulumi entry point
const program = require("../../examples/worker-pool/index") as typeof workerPoolProgram;

export const exampleRoot = path.join(__dirname, "..", "..", "examples", "worker-pool");
export { stackReferenceType } from "../../tools/offline/mocks";

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
    creationSettings: { clusterName: "prod-nbg1", location: "nbg1", podCidr: "10.244.0.0/16" },
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
    certificateExpiry: {
      earliest: "2027-11-21T09:30:00Z",
      node: "prod-nbg1-cp-1",
      certificate: "admin.conf",
      nodes: [1, 2, 3].map((n) => ({
        name: `cp-${n}`,
        node: `prod-nbg1-cp-${n}`,
        earliest: `2027-11-2${n}T09:30:00Z`,
        certificate: "admin.conf",
      })),
    },
    backupBucket: "prod-nbg1-etcd-backup",
    backupEndpoint: "https://nbg1.your-objectstorage.com",
    kubeconfig: "apiVersion: v1\nkind: Config\n",
    workerJoin: {
      controlPlaneEndpoint: "api.prod-nbg1.k8s.example.com:6443",
      token: "q7x2mf.h8k3v9c1p0w4z6r5",
      caCertHash: `sha256:${"ab".repeat(32)}`,
      expires: "2099-01-01T00:00:00Z",
    },
    workerJoinExpiry: { tokenId: "q7x2mf", expires: "2099-01-01T00:00:00Z" },
  };
}

/** `outputs` without `key`, as a stack that does not export it. */
export function without(outputs: Record<string, unknown>, key: string): Record<string, unknown> {
  return Object.fromEntries(Object.entries(outputs).filter(([k]) => k !== key));
}

/** The outputs the control plane marks secret (components/outputs.ts: kubeconfig, workerJoin). */
export const controlPlaneSecretOutputs = ["kubeconfig", "workerJoin"];

/** A registration as the offline harness records it. */
export type Recorded = RecordedResource;

export interface WorkerPoolRun {
  resources: Recorded[];
  /** Every StackReference read: its resource name and the stack it names. */
  stackReferences: { name: string; stack: unknown }[];
  /** The example's stack outputs, secrets masked. */
  outputs: Record<string, unknown>;
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
  // Whatever stack the example names answers with the control plane's outputs.
  const controlPlane = {
    outputs: options.outputs ?? { ...controlPlaneOutputs() },
    secretOutputNames: options.secretOutputNames ?? controlPlaneSecretOutputs,
  };
  const mocks = new ProviderMocks(false, () => controlPlane);
  const run = await runProgram(program, config, { mocks, sink: options.sink });
  return { resources: run.resources, stackReferences: mocks.stackReferences, outputs: run.outputs };
}
