/**
 * The hcloud cloud controller manager (HCCM), installed through the cluster's Kubernetes
 * provider. What it does here (docs/explanation/controllers.md in its repository):
 * - node initialization: every kubelet runs with `cloud-provider: external`
 *   (components/node/kubeadm.ts), so a new node carries node.cloudprovider.kubernetes.io/uninitialized
 *   until HCCM sets `spec.providerID: hcloud://<server id>`, the zone and instance-type labels and
 *   the node addresses (its private IP on the cluster network), and lifts the taint;
 * - load balancers: a Service of type LoadBalancer gets a Hetzner load balancer in the cluster's
 *   location, attached to the cluster network, with private-IP targets;
 * - routes: OFF. Both pod networks here run VXLAN overlays (components/addons/cni.ts), so pod
 *   traffic never needs routes in the Hetzner network (HCLOUD_NETWORK_ROUTES_ENABLED=false,
 *   docs/explanation/private-networks.md).
 *
 * It runs as a DaemonSet on the control-plane nodes with host networking (the chart's
 * `networking.enabled`), leader-elected, so it needs no pod network and survives any one node.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { versions } from "../versions";

/** The Secret and keys the chart's values read (chart/values.yaml: env.HCLOUD_TOKEN, networking.network). */
export const hccmSecret = { name: "hcloud", tokenKey: "token", networkKey: "network" } as const;
export const hccmNamespace = "kube-system";

export interface CloudControllerSettings {
  /** Hetzner location (nbg1, ...): where load balancers for Services are created. */
  location: string;
  /** The pod network (kubeadm's podSubnet); the chart passes it as --cluster-cidr. */
  podCidr: string;
}

/** The chart's values: pure, so tests check them against the chart's templates. */
export function cloudControllerValues(cfg: CloudControllerSettings): Record<string, unknown> {
  return {
    kind: "DaemonSet",
    nodeSelector: { "node-role.kubernetes.io/control-plane": "" },
    networking: {
      enabled: true,
      clusterCIDR: cfg.podCidr,
      network: { valueFrom: { secretKeyRef: { name: hccmSecret.name, key: hccmSecret.networkKey } } },
    },
    env: {
      HCLOUD_TOKEN: { valueFrom: { secretKeyRef: { name: hccmSecret.name, key: hccmSecret.tokenKey } } },
      HCLOUD_NETWORK_ROUTES_ENABLED: { value: "false" },
      HCLOUD_LOAD_BALANCERS_LOCATION: { value: cfg.location },
      HCLOUD_LOAD_BALANCERS_USE_PRIVATE_IP: { value: "true" },
    },
  };
}

export interface CloudControllerArgs extends CloudControllerSettings {
  provider: k8s.Provider;
  /** Secret: the Hetzner API token (hcloudCloudToken, or hcloud:token). */
  token: pulumi.Input<string>;
  /** The cluster's private network id. */
  networkId: pulumi.Input<string>;
  /** The pod network's release. */
  podNetwork: pulumi.Resource;
}

export class CloudController extends pulumi.ComponentResource {
  readonly release: k8s.helm.v3.Release;

  constructor(name: string, args: CloudControllerArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hcloud-control-plane:index:CloudController", name, {}, opts);
    const k8sOpts = { parent: this, provider: args.provider };
    const secret = new k8s.core.v1.Secret(
      `${name}-token`,
      {
        metadata: { name: hccmSecret.name, namespace: hccmNamespace },
        stringData: {
          [hccmSecret.tokenKey]: pulumi.secret(args.token),
          [hccmSecret.networkKey]: pulumi.output(args.networkId),
        },
      },
      k8sOpts,
    );
    this.release = new k8s.helm.v3.Release(
      `${name}-hcloud-cloud-controller-manager`,
      {
        name: "hcloud-cloud-controller-manager",
        chart: "hcloud-cloud-controller-manager",
        version: versions.hcloudCloudControllerManagerChart,
        repositoryOpts: { repo: "https://charts.hetzner.cloud" },
        namespace: hccmNamespace,
        values: cloudControllerValues(args),
        atomic: true,
        timeout: 600,
      },
      // The pods read the Secret at start. After the pod network: whatever waits for this
      // release (monitoring, the CSI driver) then finds nodes initialized and networked.
      { ...k8sOpts, dependsOn: [secret, args.podNetwork] },
    );
    this.registerOutputs({});
  }
}
