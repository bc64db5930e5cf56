/**
 * The hcloud CSI driver: PersistentVolumes as Hetzner volumes, created in the cluster's location
 * (the chart's controller.hcloudVolumeDefaultLocation), with one StorageClass from the settings.
 * Its token Secret is its own (`hcloud-csi`), so either controller can be switched off alone.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { ClusterConfig } from "../config";
import { versions } from "../versions";

export const csiSecret = { name: "hcloud-csi", tokenKey: "token" } as const;
export const csiNamespace = "kube-system";

export type CsiSettings = Pick<ClusterConfig, "location"> & { cloud: Pick<ClusterConfig["cloud"], "storageClass"> };

/** The chart's values: pure, so tests check them against the chart's schema and templates. */
export function csiValues(cfg: CsiSettings): Record<string, unknown> {
  const storageClass = cfg.cloud.storageClass;
  return {
    controller: {
      hcloudToken: { existingSecret: { name: csiSecret.name, key: csiSecret.tokenKey } },
      hcloudVolumeDefaultLocation: cfg.location,
      // On the control-plane nodes, as the other controllers here: it must run before any
      // worker pool exists, or Helm's atomic wait fails.
      nodeSelector: { "node-role.kubernetes.io/control-plane": "" },
      tolerations: [{ key: "node-role.kubernetes.io/control-plane", operator: "Exists", effect: "NoSchedule" }],
    },
    storageClasses: [
      {
        name: storageClass.name,
        defaultStorageClass: storageClass.isDefault,
        reclaimPolicy: storageClass.reclaimPolicy,
      },
    ],
  };
}

export interface CsiArgs extends CsiSettings {
  provider: k8s.Provider;
  /** Secret: the Hetzner API token (hcloudCloudToken, or hcloud:token). */
  token: pulumi.Input<string>;
  /**
   * What the controller's pods need first: the pod network, and the cloud controller when it is
   * installed (nodes carry the uninitialized taint until it runs).
   */
  after: pulumi.Resource[];
}

export class CsiDriver extends pulumi.ComponentResource {
  readonly release: k8s.helm.v3.Release;

  constructor(name: string, args: CsiArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hcloud-control-plane:index:CsiDriver", name, {}, opts);
    const k8sOpts = { parent: this, provider: args.provider };
    const secret = new k8s.core.v1.Secret(
      `${name}-token`,
      {
        metadata: { name: csiSecret.name, namespace: csiNamespace },
        stringData: { [csiSecret.tokenKey]: pulumi.secret(args.token) },
      },
      k8sOpts,
    );
    this.release = new k8s.helm.v3.Release(
      `${name}-hcloud-csi`,
      {
        name: "hcloud-csi",
        chart: "hcloud-csi",
        version: versions.hcloudCsiChart,
        repositoryOpts: { repo: "https://charts.hetzner.cloud" },
        namespace: csiNamespace,
        values: csiValues(args),
        atomic: true,
        timeout: 600,
      },
      // The controller reads its Secret at start; its pods need the pod network and initialized nodes.
      { ...k8sOpts, dependsOn: [secret, ...args.after] },
    );
    this.registerOutputs({});
  }
}
