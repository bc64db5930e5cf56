/**
 * kubeadm configuration for the control-plane nodes (`kubeadm.k8s.io/v1beta4`), and the
 * per-node patch that exposes etcd metrics on the node's private address.
 *
 * Inputs come from the validated stack configuration (components/config/index.ts owns every rule)
 * and from provider outputs; nothing here re-checks them.
 *
 * Pure: every document is a plain object serialized deterministically (sorted keys). The
 * remote commands that copy these files to a node and run `kubeadm init` / `kubeadm join`
 * live elsewhere; this module only decides what the files say.
 *
 * What is shared and what is per node:
 * - ClusterConfiguration and KubeletConfiguration are cluster-wide. `kubeadm init` stores them
 *   in the cluster (ConfigMaps `kubeadm-config`, `kubelet-config`) and every join reads them
 *   from there, so they name no node: the same input renders the same bytes for every node.
 * - InitConfiguration / JoinConfiguration carry the node's own address and name.
 * - The etcd patch (one file per node, in {@link kubeadmPaths.patchesDirectory}) adds the
 *   node's private address to etcd's metrics listener.
 */
import { Scalar, stringify } from "yaml";
import { nodePaths } from "./cloudInit";
import { NodeSpec } from "../config";
import { apiServerPort } from "../hetzner/loadBalancer";

export interface KubeadmInput {
  /** Cluster name, e.g. "prod"; kubeadm writes it into kubeconfigs. Required. */
  clusterName: string;
  /** Kubernetes version "x.y.z" (no "v"), e.g. "1.34.2"; rendered as `v1.34.2`. Required. */
  kubernetesVersion: string;
  /** The node this configuration is for: its stable name and pinned private IPv4. Required. */
  node: NodeSpec;
  /**
   * The Hetzner server name, which is also the Kubernetes node name, e.g. "prod-nbg1-cp-1"
   * (Hetzner's cloud controller manager matches nodes to servers by name). Required.
   */
  nodeHostname: string;
  /**
   * Host only, no scheme and no port: the API DNS name when configured, otherwise the load
   * balancer's pinned private IPv4. The port is always {@link apiServerPort}. Required.
   */
  controlPlaneEndpoint: string;
  /**
   * Every address clients reach the API server by: load balancer public IPv4/IPv6 and private
   * IP, the floating IP, the DNS name. Rendered deduplicated and sorted, with the endpoint
   * host added. May be empty (kubeadm adds the node's own names and addresses itself).
   */
  certSans: string[];
  /** Pod network, IPv4 CIDR, e.g. "10.244.0.0/16". Required. */
  podCidr: string;
  /** Service network, IPv4 CIDR, e.g. "10.96.0.0/12". Required. */
  serviceCidr: string;
}

/** Paths on the node that the kubeadm files name, for the commands that write and use them. */
export const kubeadmPaths = {
  /** `patches.directory` of Init- and JoinConfiguration; must exist before init/join. */
  patchesDirectory: "/etc/kubernetes/kubeadm-patches",
  /**
   * File name of {@link renderEtcdPatch}'s output inside the patches directory. kubeadm reads
   * `<target>[suffix][+<patchtype>].(yaml|json)`: target `etcd`, strategic merge patch.
   */
  etcdPatchFile: "etcd+strategic.yaml",
  /** kubeadm's cluster-admin kubeconfig (group `kubeadm:cluster-admins` since 1.29). */
  adminKubeconfig: "/etc/kubernetes/admin.conf",
  /** containerd's CRI socket: its default, which the node preparation leaves as it is. */
  criSocket: "unix:///run/containerd/containerd.sock",
} as const;

/** etcd's HTTP metrics and health port (kubeadm's default; Prometheus scrapes it). */
export const etcdMetricsPort = 2381;

/**
 * etcd's backend quota (`--quota-backend-bytes`): 8 GiB. etcd's default is 2 GiB, and kubeadm
 * does not change it; "8 GiB is a suggested maximum size for normal environments and etcd
 * warns at startup if the configured value exceeds it" (etcd.io/docs/v3.6/dev-guide/limit,
 * "Storage size limit"). The alerts are built around it: EtcdDatabaseSizeExceeding warns at
 * 6e9 bytes (70% of it), etcdDatabaseQuotaLowSpace is critical at 95% of
 * `etcd_server_quota_backend_bytes`, which reports this value. At the old 2 GiB the 6e9
 * warning could never fire: etcd stops accepting writes (NOSPACE) at the quota. It reaches new
 * clusters only: a running cluster keeps the quota its kubeadm-config ConfigMap and etcd
 * manifests hold (docs/runbooks/etcdDatabaseQuotaLowSpace.md has the manual roll).
 */
export const etcdQuotaBackendBytes = 8 * 1024 ** 3;

/**
 * Shell variables that carry the join credentials. They are minted on an existing
 * control-plane node at join time (`kubeadm init phase upload-certs --upload-certs`,
 * `kubeadm token create --ttl 1h --print-join-command --certificate-key ...`) and reach the
 * joining node on stdin, so they are never known when this file is rendered and never stored
 * in Pulumi state.
 */
export const joinVariables = {
  /** Bootstrap token `[a-z0-9]{6}.[a-z0-9]{16}`. */
  token: "JOIN_TOKEN",
  /** CA public key pin, exactly as kubeadm prints it: `sha256:<64 hex>`. */
  caCertHash: "JOIN_CA_CERT_HASH",
  /** Key of the `kubeadm-certs` Secret, 64 hex characters (32-byte AES key). */
  certificateKey: "JOIN_CERTIFICATE_KEY",
} as const;

export type JoinCredential = keyof typeof joinVariables;

/** The literal text {@link renderJoinConfiguration} puts where each credential goes: `${NAME}`. */
export const joinPlaceholders: Readonly<Record<JoinCredential, string>> = {
  token: placeholder(joinVariables.token),
  caCertHash: placeholder(joinVariables.caCertHash),
  certificateKey: placeholder(joinVariables.certificateKey),
};

/**
 * The SHELL-FORMAT argument for `envsubst`, so that it replaces these three variables and
 * leaves any other `$` alone: `envsubst "${joinEnvsubstFormat}" <join.tmpl >join.yaml`.
 */
export const joinEnvsubstFormat = Object.values(joinPlaceholders).join(" ");

/**
 * What a join script must check each value against before substituting it. The rendered
 * placeholders sit inside double quotes, so a value of this shape always stays a YAML string
 * (a certificate key of only digits would otherwise turn into a number).
 */
export const joinCredentialPatterns: Readonly<Record<JoinCredential, RegExp>> = {
  token: /^[a-z0-9]{6}\.[a-z0-9]{16}$/,
  caCertHash: /^sha256:[0-9a-f]{64}$/,
  certificateKey: /^[0-9a-f]{64}$/,
};

const kubeadmApiVersion = "kubeadm.k8s.io/v1beta4";
const kubeletApiVersion = "kubelet.config.k8s.io/v1beta1";

/** v1beta4 `Arg`: extraArgs are lists of name/value pairs, values always strings. */
interface Arg {
  name: string;
  value: string;
}
interface HostPathMount {
  name: string;
  hostPath: string;
  mountPath: string;
  readOnly: boolean;
  pathType: "File" | "DirectoryOrCreate";
}
interface ApiEndpoint {
  advertiseAddress: string;
  bindPort: number;
}
interface Taint {
  key: string;
  effect: "NoSchedule";
}
interface NodeRegistration {
  name: string;
  criSocket: string;
  kubeletExtraArgs: Arg[];
  taints: Taint[];
}
interface Patches {
  directory: string;
}

/**
 * `kubeadm init --config` for the first control-plane node: InitConfiguration (this node),
 * ClusterConfiguration and KubeletConfiguration (shared), separated by `---`.
 */
export function renderInitConfiguration(input: KubeadmInput): string {
  const init = {
    apiVersion: kubeadmApiVersion,
    kind: "InitConfiguration",
    localAPIEndpoint: localApiEndpoint(input),
    nodeRegistration: nodeRegistration(input),
    patches: patches(),
  };
  return serialize([init, clusterConfiguration(input), kubeletConfiguration()]);
}

/**
 * `kubeadm join --config` for every further control-plane node. The bootstrap token, the CA
 * certificate hash and the certificate key are not known when this renders: they are the
 * double-quoted literals `"${JOIN_TOKEN}"`, `"${JOIN_CA_CERT_HASH}"` and
 * `"${JOIN_CERTIFICATE_KEY}"` ({@link joinPlaceholders}). The join script reads the real
 * values from stdin, checks them against {@link joinCredentialPatterns}, exports them under
 * the {@link joinVariables} names and runs `envsubst "$FORMAT"` with
 * {@link joinEnvsubstFormat}, writing the result to a root-only file it deletes afterwards.
 *
 * Only a JoinConfiguration: a joining node takes the ClusterConfiguration and the
 * KubeletConfiguration from the cluster, never from its own file.
 */
export function renderJoinConfiguration(input: KubeadmInput): string {
  const join = {
    apiVersion: kubeadmApiVersion,
    kind: "JoinConfiguration",
    controlPlane: {
      localAPIEndpoint: localApiEndpoint(input),
      certificateKey: quoted(joinPlaceholders.certificateKey),
    },
    discovery: {
      // tlsBootstrapToken defaults to this token.
      bootstrapToken: {
        apiServerEndpoint: endpoint(input),
        token: quoted(joinPlaceholders.token),
        caCertHashes: [quoted(joinPlaceholders.caCertHash)],
      },
    },
    nodeRegistration: nodeRegistration(input),
    patches: patches(),
  };
  return serialize([join]);
}

/**
 * The node's etcd patch, written to `<patchesDirectory>/<etcdPatchFile>` before init or join:
 * etcd serves metrics and health on loopback (kubeadm's probes use it) and on the node's
 * private address (Prometheus scrapes it; the Hetzner firewall keeps 2381 off the public
 * interface).
 *
 * Why `args` in a strategic merge patch: kubeadm puts every etcd flag in the container's
 * `command`, sorted by name, so a JSON patch would have to replace an element by index, and
 * that index differs between init and join (`--initial-cluster-state` only exists on join)
 * and between Kubernetes releases. `args` is empty in kubeadm's manifest; the container merge
 * key is `name`. The container runs `command` then `args`, so etcd sees
 * `--listen-metrics-urls` twice and, as with every Go flag, the last one wins (etcd's URL-list
 * flag replaces its value on each occurrence).
 *
 * `kubeadm upgrade apply/node` must be given the same patches (`--patches <dir>`), or the
 * regenerated manifest falls back to loopback-only metrics.
 */
export function renderEtcdPatch(input: KubeadmInput): string {
  const urls = ["127.0.0.1", input.node.privateIp].map((host) => `http://${host}:${etcdMetricsPort}`);
  const patch = {
    spec: { containers: [{ name: "etcd", args: [`--listen-metrics-urls=${urls.join(",")}`] }] },
  };
  return serialize([patch]);
}

function clusterConfiguration(input: KubeadmInput) {
  const audit = {
    policy: nodePaths.auditPolicy,
    logDir: nodePaths.auditLogDir,
  };
  const auditVolumes: HostPathMount[] = [
    { name: "audit-policy", hostPath: audit.policy, mountPath: audit.policy, readOnly: true, pathType: "File" },
    {
      name: "audit-logs",
      hostPath: audit.logDir,
      mountPath: audit.logDir,
      readOnly: false,
      pathType: "DirectoryOrCreate",
    },
  ];
  // Retention in days, files and megabytes: 10 x 100 MB at most per node.
  const apiServerArgs: Arg[] = args({
    "audit-policy-file": audit.policy,
    "audit-log-path": `${audit.logDir}/audit.log`,
    "audit-log-maxage": "30",
    "audit-log-maxbackup": "10",
    "audit-log-maxsize": "100",
  });
  // bind-address 0.0.0.0 lets Prometheus reach 10257 (controller-manager) and 10259
  // (scheduler) over the private network. Acceptable only because the Hetzner firewall has no
  // rule for these ports, so it drops them on the public interface (components/hetzner/network.ts).
  // A node address would not do: this configuration is shared by every node.
  // Leader election timings are kube's defaults, written out so they are reviewed, not implied.
  const controlLoopArgs: Arg[] = args({
    "bind-address": "0.0.0.0",
    "leader-elect": "true",
    "leader-elect-lease-duration": "15s",
    "leader-elect-renew-deadline": "10s",
    "leader-elect-retry-period": "2s",
  });
  return {
    apiVersion: kubeadmApiVersion,
    kind: "ClusterConfiguration",
    clusterName: input.clusterName,
    kubernetesVersion: `v${input.kubernetesVersion}`,
    controlPlaneEndpoint: endpoint(input),
    networking: { podSubnet: input.podCidr, serviceSubnet: input.serviceCidr },
    apiServer: {
      certSANs: [...new Set([...input.certSans, input.controlPlaneEndpoint])].sort(),
      extraArgs: apiServerArgs,
      extraVolumes: auditVolumes,
    },
    controllerManager: { extraArgs: controlLoopArgs },
    scheduler: { extraArgs: controlLoopArgs },
    // Stacked etcd. Its metrics listener on the private address is per node: renderEtcdPatch.
    etcd: {
      local: { dataDir: "/var/lib/etcd", extraArgs: args({ "quota-backend-bytes": String(etcdQuotaBackendBytes) }) },
    },
  };
}

function kubeletConfiguration() {
  return {
    apiVersion: kubeletApiVersion,
    kind: "KubeletConfiguration",
    // containerd is configured with SystemdCgroup = true by the node preparation script.
    cgroupDriver: "systemd",
    // Client certificate rotation.
    rotateCertificates: true,
    // Serving certificate from the cluster CA through a `kubernetes.io/kubelet-serving` CSR
    // (renewed the same way), which components/addons/csrApprover.ts approves for the Node's
    // own names and addresses only. Without it the kubelet serves a self-signed certificate,
    // and whatever verifies it (metrics-server, an API server with --kubelet-certificate-authority)
    // cannot reach logs, exec or metrics. Until its CSR is approved a kubelet answers no TLS
    // connection at all. This document reaches the cluster at init only (the kubelet-config
    // ConfigMap, which every join and `kubeadm upgrade node` copies to the node): a cluster
    // initialized before takes it through docs/runbooks/kubelet-serving-certificates.md.
    serverTLSBootstrap: true,
  };
}

function localApiEndpoint(input: KubeadmInput): ApiEndpoint {
  return { advertiseAddress: input.node.privateIp, bindPort: apiServerPort };
}

/** The kubelets' `--cloud-provider`; the stack records it (creationFacts, components/config/deployed.ts). */
export const kubeletCloudProvider = "external";

function nodeRegistration(input: KubeadmInput): NodeRegistration {
  return {
    name: input.nodeHostname,
    criSocket: kubeadmPaths.criSocket,
    // `external` from the kubelet's first start: it registers the node with the
    // node.cloudprovider.kubernetes.io/uninitialized taint and no provider id, and the hcloud
    // cloud controller (components/addons/cloudController.ts) sets `hcloud://<server id>`, the
    // zone labels and the addresses, then lifts the taint. A running kubelet never reads this
    // file again, so it reaches new nodes only (components/config/deployed.ts records it).
    kubeletExtraArgs: args({ "node-ip": input.node.privateIp, "cloud-provider": kubeletCloudProvider }),
    // kubeadm's default for control-plane nodes, written out: an empty list would remove it.
    taints: [{ key: "node-role.kubernetes.io/control-plane", effect: "NoSchedule" }],
  };
}

function patches(): Patches {
  return { directory: kubeadmPaths.patchesDirectory };
}

function endpoint(input: KubeadmInput): string {
  return `${input.controlPlaneEndpoint}:${apiServerPort}`;
}

/** Object order is the flag order kubeadm receives (lists are not sorted on output). */
function args(values: Record<string, string>): Arg[] {
  return Object.entries(values).map(([name, value]) => ({ name, value }));
}

function placeholder(variable: string): string {
  return `\${${variable}}`;
}

/** A double-quoted YAML scalar, whatever its text looks like. */
function quoted(value: string): Scalar<string> {
  const scalar = new Scalar(value);
  scalar.type = Scalar.QUOTE_DOUBLE;
  return scalar;
}

function serialize(documents: object[]): string {
  // kubeadm decodes with sigs.k8s.io/yaml (YAML 1.1 rules): quote what 1.1 reads as non-string.
  // No anchors/aliases for objects used twice (the scheduler shares the controller's args).
  const options = { sortMapEntries: true, lineWidth: 0, version: "1.1", aliasDuplicateObjects: false } as const;
  return documents.map((doc) => stringify(doc, options)).join("---\n");
}
