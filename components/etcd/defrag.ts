/**
 * etcd defragmentation: the `etcd-defrag` CronJob that runs scripts/jobs/etcd-defrag.sh on a
 * control-plane node, through the cluster's Kubernetes provider.
 *
 * Compaction frees pages inside etcd's database file but never shrinks the file; a defrag
 * rewrites it, and blocks its member while it runs. The script therefore defragments one
 * member at a time, followers first and the leader last, only members above the threshold,
 * and only while every member is healthy. It runs in the backup image (etcdctl and bash).
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { ClusterConfig } from "../config";
import {
  etcdClientEnvironment,
  etcdClientTlsMounts,
  etcdCronJobManifest,
  etcdJobNamespace,
  etcdJobScriptConfigMap,
  EtcdJobScripts,
  etcdJobScriptPath,
  readEtcdJobScripts,
} from "./cronJob";

export const defragCronJob = { namespace: etcdJobNamespace, name: "etcd-defrag" } as const;

export const defragScriptPath = etcdJobScriptPath(defragCronJob.name);

/**
 * The settings the defragmentation uses: the nodes (etcd endpoints), the job's schedule and
 * thresholds, and the backup image it runs in.
 */
export type DefragSettings = Pick<ClusterConfig, "nodes"> & {
  maintenance: Pick<ClusterConfig["maintenance"], "defrag">;
  backup: Pick<ClusterConfig["backup"], "image">;
};

/**
 * Every variable the job sets (scripts/jobs/etcd-defrag.sh --help). Each member appears once, at its
 * private address: the script reads every member's status and defragments each one by URL.
 */
function defragEnvironment(cfg: DefragSettings): { name: string; value: string }[] {
  const { defrag } = cfg.maintenance;
  return [
    ...etcdClientEnvironment(cfg.nodes.map((n) => `https://${n.privateIp}:2379`)),
    { name: "DEFRAG_THRESHOLD_PERCENT", value: String(defrag.thresholdPercent) },
    { name: "DEFRAG_MIN_DB_SIZE_BYTES", value: String(defrag.minSizeMiB * 1024 * 1024) },
  ];
}

/** The ConfigMap holding scripts/jobs/etcd-defrag.sh and scripts/node/lib.sh, the shared helper library. */
export function defragScriptConfigMap(scripts: EtcdJobScripts) {
  return etcdJobScriptConfigMap(defragCronJob.name, scripts);
}

export function defragCronJobManifest(cfg: DefragSettings, scripts: EtcdJobScripts) {
  return etcdCronJobManifest({
    name: defragCronJob.name,
    schedule: cfg.maintenance.defrag.schedule,
    image: cfg.backup.image,
    scripts,
    env: defragEnvironment(cfg),
    // An etcd client and nothing more: the client certificate, its key and the etcd CA
    // certificate; never the cluster's CA keys or the rest of /etc/kubernetes/pki.
    hostFiles: etcdClientTlsMounts,
    resources: { requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "256Mi" } },
    // A defrag takes seconds per GB; a run over all members, with health waits between them,
    // stays far below this. A hung run must still end before the next one.
    activeDeadlineSeconds: 3600,
  });
}

export interface EtcdDefragArgs extends DefragSettings {
  provider: k8s.Provider;
}

export class EtcdDefrag extends pulumi.ComponentResource {
  readonly cronJob: k8s.batch.v1.CronJob;

  constructor(name: string, args: EtcdDefragArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hcloud-control-plane:index:EtcdDefrag", name, {}, opts);
    const scripts = readEtcdJobScripts(defragCronJob.name);
    const k8sOpts = { parent: this, provider: args.provider };
    const configMap = new k8s.core.v1.ConfigMap(`${name}-script`, defragScriptConfigMap(scripts), k8sOpts);
    this.cronJob = new k8s.batch.v1.CronJob(`${name}-cronjob`, defragCronJobManifest(args, scripts), {
      ...k8sOpts,
      dependsOn: [configMap],
    });
    this.registerOutputs({});
  }
}
