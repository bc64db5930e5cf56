/**
 * The kube-vip static pod that holds the reserved IP (a Hetzner Floating IP) on the current
 * leader among the control-plane nodes. The same manifest goes to every node, as
 * `kubeVipManifestPath`.
 *
 * What `kube-vip manifest pod --interface eth0 --address <VIP> --controlplane --arp
 * --leaderElection` prints, as data, with these differences: services mode off, the image pinned
 * and pulled only when missing, capabilities reduced to the two it needs, admin.conf mounted
 * read-only, a priority class and small requests.
 *
 * Two facts shape it (see the design notes):
 * - Hetzner networks are layer 3. ARP mode only puts the address on the leader's interface;
 *   the Floating IP is routed to that server only after the companion asks the Hetzner API.
 * - kube-vip is deployed after `kubeadm init` and every join, and the load balancer, not this
 *   address, is the controlPlaneEndpoint. So admin.conf already works (its RBAC binding exists)
 *   and the 1.29+ super-admin.conf swap is not needed.
 */
import type * as k8s from "@pulumi/kubernetes";
import { stringify } from "yaml";
import { kubeadmPaths } from "./kubeadm";
import { apiServerPort } from "../hetzner/loadBalancer";
import { versions } from "../versions";

export interface KubeVipInput {
  /** The reserved IPv4 (Floating IP) kube-vip announces on the leader, as a /32. Required. */
  address: string;
  /** The public interface the address is added to. Default "eth0" (Hetzner's public NIC). */
  interface?: string;
}

/** The image every node runs; the tag lives in versions.ts. */
export const kubeVipImage = `ghcr.io/kube-vip/kube-vip:${versions.kubeVip}`;

/** Where kubelet picks the static pod up. */
export const kubeVipManifestPath = "/etc/kubernetes/manifests/kube-vip.yaml";

/**
 * Where the bootstrap stages the rendered manifest: beside the rendered kubeadm files, outside the
 * directory the kubelet watches. scripts/node/install-kube-vip.sh puts it in place, one node at a
 * time.
 */
export const kubeVipStagedPath = "/etc/kubernetes/kubeadm/kube-vip.yaml";

/** The Lease in kube-system that elects the leader (kube-vip's default name). */
export const kubeVipLeaseName = "plndr-cp-lock";

/** kube-vip's Prometheus listener. Not opened by the Hetzner firewall (no rule), so private only. */
export const kubeVipMetricsPort = 2112;

const defaultInterface = "eth0";

/** Renders the static pod manifest (a v1 Pod), identical on every control-plane node. */
export function renderKubeVipManifest(input: KubeVipInput): string {
  const volumeName = "kubeconfig";
  // Typed against the Kubernetes API types so a misspelt field fails to compile.
  const pod: k8s.types.input.core.v1.Pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: "kube-vip",
      namespace: "kube-system",
      labels: { "app.kubernetes.io/name": "kube-vip", "app.kubernetes.io/version": versions.kubeVip },
    },
    spec: {
      containers: [
        {
          name: "kube-vip",
          image: kubeVipImage,
          // A pinned tag never changes; a static pod must restart even when the registry is down.
          imagePullPolicy: "IfNotPresent",
          args: ["manager"],
          env: environment(input.address, input.interface ?? defaultInterface),
          // Requests only: a memory limit could OOM-kill the process that holds the address.
          resources: { requests: { cpu: "25m", memory: "64Mi" } },
          securityContext: {
            // Address changes need NET_ADMIN, gratuitous ARP needs NET_RAW; nothing else.
            capabilities: { add: ["NET_ADMIN", "NET_RAW"], drop: ["ALL"] },
          },
          volumeMounts: [{ name: volumeName, mountPath: kubeadmPaths.adminKubeconfig, readOnly: true }],
        },
      ],
      // kube-vip's control-plane mode talks to https://kubernetes:<port>: the local API server.
      hostAliases: [{ ip: "127.0.0.1", hostnames: ["kubernetes"] }],
      hostNetwork: true,
      priorityClassName: "system-node-critical",
      volumes: [{ name: volumeName, hostPath: { path: kubeadmPaths.adminKubeconfig, type: "File" } }],
    },
  };
  // kubelet decodes with sigs.k8s.io/yaml (YAML 1.1 rules): "true" and "6443" stay quoted.
  return stringify(pod, { sortMapEntries: true, lineWidth: 0, version: "1.1" });
}

function environment(address: string, iface: string): k8s.types.input.core.v1.EnvVar[] {
  const plain = (name: string, value: string) => ({ name, value });
  return [
    plain("vip_arp", "true"),
    plain("port", String(apiServerPort)),
    // The Lease holder identity: the Kubernetes node name (the Hetzner server name).
    { name: "vip_nodename", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
    plain("vip_interface", iface),
    // No vip_subnet: kube-vip derives /32 for an IPv4 `address` (GenerateCidrRange in
    // cmd/kube-vip.go), which is what a Floating IP is. kube-vip v0.9.0 dropped vip_cidr.
    plain("cp_enable", "true"),
    plain("cp_namespace", "kube-system"),
    // No LoadBalancer Services: here kube-vip only holds the control-plane address.
    plain("svc_enable", "false"),
    plain("vip_leaderelection", "true"),
    plain("vip_leasename", kubeVipLeaseName),
    // Seconds. Lease and renew deadline as controller-manager and scheduler; the retry period is
    // 1 s, not their 2 s, for the reserved-IP failover budget (docs/failover-budget.md): a
    // survivor takes a dead leader's Lease within 15 + 2 × retry × 2.2 s (client-go's jitter),
    // 19.4 s instead of 23.8 s, which leaves the companion and the Hetzner API room within 30 s.
    // client-go requires renew deadline > 1.2 × retry period (10 > 1.2).
    plain("vip_leaseduration", "15"),
    plain("vip_renewdeadline", "10"),
    plain("vip_retryperiod", "1"),
    plain("address", address),
    // kube-vip's default, written out so the port is visible to whoever writes firewall rules.
    plain("prometheus_server", `:${kubeVipMetricsPort}`),
  ];
}
