/**
 * The pod network, installed through the cluster's Kubernetes provider, so nodes become Ready.
 * The provider is built from the admin kubeconfig, which is read after the whole member chain
 * (and the upgrade and certificate steps), so the CNI comes once every control-plane node has
 * joined; nothing before it waits for Ready nodes (the joins gate on `/readyz` and etcd health,
 * the upgrade chain only warns about a node that is not Ready).
 *
 * Both choices run VXLAN overlays: Hetzner's private network routes only addresses its API
 * knows, so pod IPs cannot be routed natively without per-node routes.
 *
 * Default Cilium: an eBPF datapath with network policy and Hubble, and it needs nothing from
 * the private network beyond UDP 8472 between nodes (not filtered there). Calico (through the
 * tigera-operator) is the setting's alternative for teams that standardize on it.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { ClusterConfig } from "../config";
import { apiServerPort, controlPlaneHost, EndpointSettings } from "../hetzner/loadBalancer";
import { versions } from "../versions";

interface CniChart {
  chart: string;
  version: string;
  repo: string;
  namespace: string;
  values: Record<string, unknown>;
}

/**
 * The settings the pod network uses: the choice, the pod CIDR (Calico's pool), the endpoint
 * (Cilium reaches the API directly) and the nodes (Cilium's operator replicas).
 */
export type CniSettings = EndpointSettings & Pick<ClusterConfig, "cni" | "podCidr" | "nodes">;

/** The Helm chart and values for the configured CNI. */
function cniChart(cfg: CniSettings): CniChart {
  if (cfg.cni === "cilium") {
    return {
      chart: "cilium",
      version: versions.ciliumChart,
      repo: "https://helm.cilium.io",
      namespace: "kube-system",
      values: {
        // Pod CIDRs come from kubeadm's podSubnet, allocated per node by the controller-manager.
        ipam: { mode: "kubernetes" },
        routingMode: "tunnel",
        tunnelProtocol: "vxlan",
        // kube-proxy stays (kubeadm installs it); Cilium still reaches the API directly.
        kubeProxyReplacement: false,
        k8sServiceHost: controlPlaneHost(cfg),
        k8sServicePort: apiServerPort,
        operator: { replicas: Math.min(2, cfg.nodes.length) },
        rollOutCiliumPods: true,
      },
    };
  }
  return {
    chart: "tigera-operator",
    version: versions.calicoChart,
    repo: "https://docs.tigera.io/calico/charts",
    namespace: "tigera-operator",
    values: {
      installation: {
        calicoNetwork: {
          bgp: "Disabled",
          ipPools: [{ cidr: cfg.podCidr, encapsulation: "VXLAN", natOutgoing: "Enabled", blockSize: 26 }],
        },
      },
    },
  };
}

export interface CniArgs extends CniSettings {
  provider: k8s.Provider;
}

export class Cni extends pulumi.ComponentResource {
  readonly release: k8s.helm.v3.Release;

  constructor(name: string, args: CniArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hcloud-control-plane:index:Cni", name, {}, opts);
    const chart = cniChart(args);
    this.release = new k8s.helm.v3.Release(
      `${name}-${chart.chart}`,
      {
        name: chart.chart,
        chart: chart.chart,
        version: chart.version,
        repositoryOpts: { repo: chart.repo },
        namespace: chart.namespace,
        createNamespace: chart.namespace !== "kube-system",
        values: chart.values,
        atomic: true,
        timeout: 600,
      },
      { parent: this, provider: args.provider },
    );
    this.registerOutputs({});
  }
}
