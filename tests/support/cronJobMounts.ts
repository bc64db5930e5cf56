/**
 * What of the node an etcd CronJob (components/etcd/cronJob.ts) mounts, read from the CronJob the
 * real program registers under the recording mocks: its hostPath volumes joined with the
 * container's mounts of them, and every other volume by kind. Used by the backup and the defrag
 * tests, which each state the files their script reads.
 */
import { CronJob } from "kubernetes-models/batch/v1/CronJob";
import { ProgramRun } from "../../tools/offline/harness";
import { one } from "./program";

interface Volume {
  name: string;
  hostPath?: { path: string; type?: string };
  configMap?: unknown;
  emptyDir?: unknown;
  [source: string]: unknown;
}
interface VolumeMount {
  name: string;
  mountPath: string;
  readOnly?: boolean;
  subPath?: string;
}
interface PodSpec {
  volumes: Volume[];
  containers: {
    name: string;
    image: string;
    imagePullPolicy?: string;
    env?: { name: string; value?: string }[];
    volumeMounts: VolumeMount[];
  }[];
}
interface RenderedCronJob {
  apiVersion: string;
  kind: string;
  spec: { jobTemplate: { spec: { template: { spec: PodSpec } } } };
}

/** One node path the pod sees: the hostPath volume and where (and how) the container mounts it. */
export interface HostMountSeen {
  volume: string;
  hostPath: string;
  type: string | undefined;
  mountPath: string | undefined;
  readOnly: boolean | undefined;
  subPath: string | undefined;
}

export interface CronJobMounts {
  /** Every hostPath volume, in volume order, with the container's mount of it. */
  host: HostMountSeen[];
  /** Every other volume as `<name>: <source kind>`, e.g. `script: configMap`. */
  other: string[];
  /** The container's environment, by name. */
  env: Record<string, string | undefined>;
  /** The container's image and pull policy. */
  image: { reference: string; pullPolicy: string | undefined };
}

/**
 * The CronJob resource `resourceName` of the run, checked against the Kubernetes schema
 * (kubernetes-models, as the other manifest tests do), and what of the node it mounts.
 */
export function cronJobMounts(run: ProgramRun, resourceName: string): CronJobMounts {
  const inputs = one(run, resourceName).revealedInputs as unknown as RenderedCronJob;
  expect(inputs.kind).toBe("CronJob");
  expect(() => new CronJob(inputs as never).validate()).not.toThrow();
  const pod = inputs.spec.jobTemplate.spec.template.spec;
  expect(pod.containers).toHaveLength(1);
  const [container] = pod.containers;
  const host = pod.volumes
    .filter((v) => v.hostPath !== undefined)
    .map((v) => {
      const mounts = container.volumeMounts.filter((m) => m.name === v.name);
      expect([v.name, mounts.length]).toEqual([v.name, 1]);
      return {
        volume: v.name,
        hostPath: v.hostPath!.path,
        type: v.hostPath!.type,
        mountPath: mounts[0].mountPath,
        readOnly: mounts[0].readOnly,
        subPath: mounts[0].subPath,
      };
    });
  const other = pod.volumes
    .filter((v) => v.hostPath === undefined)
    .map(
      (v) =>
        `${v.name}: ${Object.keys(v)
          .filter((k) => k !== "name")
          .join(",")}`,
    );
  const env = Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value]));
  return { host, other, env, image: { reference: container.image, pullPolicy: container.imagePullPolicy } };
}
