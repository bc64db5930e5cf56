/**
 * Cloud-init user data for a worker node: the control plane's node preparation (the same
 * packages, kernel settings and pinned containerd/kubeadm/kubelet/kubectl, from
 * components/node/cloudInit.ts), then `kubeadm join --config` with a JoinConfiguration that holds
 * the bootstrap token. The kubelet runs with the external cloud provider (the hcloud cloud
 * controller manager) and a CA-signed serving certificate (`serverTLSBootstrap`) from its first
 * start.
 *
 * The token never appears on a command line or in cloud-init's log: it is in a root-only file
 * (0600) written by `write_files`, read by kubeadm through `--config`, and removed after a
 * successful join. It does stay in the server's user data (root-only on the node, and served
 * by Hetzner's metadata service to processes on the server), which is why the token is short-lived.
 *
 * Pure: components/node/cloudInit.ts renders it, with the worker's file and command added.
 */
import { stringify } from "yaml";
import { nodePaths, renderCloudInit } from "../../components/node/cloudInit";
import { kubeadmPaths } from "../../components/node/kubeadm";
import type { WorkerJoin } from "../../components/outputs";

export interface WorkerCloudInitInput {
  /** Server name, hostname and Kubernetes node name, e.g. "prod-nbg1-worker-1". */
  hostname: string;
  /** The control plane's Kubernetes version "x.y.z"; the node's packages are pinned to it. */
  kubernetesVersion: string;
  /** The node's address on the private network; kubelet advertises it (`node-ip`). */
  privateIp: string;
  /** Join material from the control-plane stack's secret `workerJoin` output. */
  join: WorkerJoin;
}

export const workerPaths = {
  /** JoinConfiguration with the bootstrap token: mode 0600, removed after a successful join. */
  joinConfig: "/etc/kubernetes/worker-join.yaml",
  /**
   * kubeadm's patch of the kubelet's configuration, in the JoinConfiguration's patches
   * directory: target `kubeletconfiguration`, type `merge` (an RFC 7386 JSON merge patch).
   * kubeadm applies it when it writes /var/lib/kubelet/config.yaml at join (and at
   * `kubeadm upgrade node --patches`), after taking the rest from the cluster's kubelet-config
   * ConfigMap (kubeadm >= 1.25, kubernetes/kubernetes#110405; file names
   * `target[suffix][+patchtype].extension`, cmd/kubeadm/app/util/patches/patches.go).
   */
  kubeletPatch: `${kubeadmPaths.patchesDirectory}/kubeletconfiguration+merge.yaml`,
} as const;

/**
 * What every worker's kubelet gets whatever the cluster's kubelet-config ConfigMap says (a
 * cluster initialized before the control plane turned it on does not carry it): a serving
 * certificate from the cluster CA through a kubernetes.io/kubelet-serving CSR, which the
 * control plane's kubelet-csr-approver approves for the Node's own names and addresses.
 */
export const workerKubeletPatch = { serverTLSBootstrap: true } as const;

/** The `kubeadm join --config` document (kubeadm.k8s.io/v1beta4) for one worker. */
export function renderWorkerJoinConfiguration(input: WorkerCloudInitInput): string {
  const join = {
    apiVersion: "kubeadm.k8s.io/v1beta4",
    kind: "JoinConfiguration",
    discovery: {
      // tlsBootstrapToken defaults to this token.
      bootstrapToken: {
        apiServerEndpoint: input.join.controlPlaneEndpoint,
        token: input.join.token,
        caCertHashes: [input.join.caCertHash],
      },
    },
    nodeRegistration: {
      name: input.hostname,
      criSocket: kubeadmPaths.criSocket,
      kubeletExtraArgs: [
        // Node addresses, the provider ID and the uninitialized taint's removal come from the
        // hcloud cloud controller manager, which matches the Node to its server by name.
        { name: "cloud-provider", value: "external" },
        // As on the control plane: cluster traffic uses the private network, not the public NIC.
        { name: "node-ip", value: input.privateIp },
      ],
    },
    patches: { directory: kubeadmPaths.patchesDirectory },
  };
  return stringify(join, { sortMapEntries: true, lineWidth: 0, version: "1.1" });
}

/** The kubelet patch file ({@link workerPaths.kubeletPatch}). */
export function renderWorkerKubeletPatch(): string {
  return stringify(workerKubeletPatch, { sortMapEntries: true, lineWidth: 0, version: "1.1" });
}

/**
 * The shell step after node preparation: join only when preparation finished (its sentinel
 * exists), then remove the token file. Arguments are positional, never interpolated.
 */
const joinStep = 'test -s "$1" && kubeadm join --config "$2" && rm -f -- "$2"';

/** Renders the `#cloud-config` user data for one worker node. */
export function renderWorkerCloudInit(input: WorkerCloudInitInput): string {
  return renderCloudInit({
    hostname: input.hostname,
    kubernetesVersion: input.kubernetesVersion,
    // A worker runs no API server: the control plane's audit policy is not needed.
    auditPolicy: false,
    extraFiles: [
      { path: workerPaths.joinConfig, permissions: "0600", content: renderWorkerJoinConfiguration(input) },
      { path: workerPaths.kubeletPatch, permissions: "0644", content: renderWorkerKubeletPatch() },
    ],
    extraRuncmd: [["/bin/sh", "-c", joinStep, "worker-join", nodePaths.preparedSentinel, workerPaths.joinConfig]],
  });
}
