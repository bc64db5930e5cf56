/**
 * The shape shared by the CronJobs that work on etcd from a control-plane node (the backup and
 * the defragmentation): a bash script from a ConfigMap, run as root with host networking on a
 * control-plane node, with kubeadm's PKI mounted read-only and a read-only root filesystem.
 * Plain objects: the offline plan renders them and the tests check them against the schemas.
 */
import * as crypto from "node:crypto";

/** Everything these jobs create lives in kube-system, beside etcd's static pods. */
export const etcdJobNamespace = "kube-system";

/** kubeadm's etcd client certificate and CA on every control-plane node. */
export const etcdClientTls = {
  caCert: "/etc/kubernetes/pki/etcd/ca.crt",
  cert: "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
  key: "/etc/kubernetes/pki/etcd/healthcheck-client.key",
} as const;

/** Annotation on the pod template carrying the script's sha256: a new script rolls out. */
export const scriptHashAnnotation = "hcloud-control-plane/script-sha256";

const pkiDir = "/etc/kubernetes/pki";
const scriptDir = "/opt/etcd-job";

export interface EtcdCronJobInput {
  /** The CronJob's name, also `app.kubernetes.io/name` and the container's name. */
  name: string;
  schedule: string;
  image: string;
  /** ConfigMap name and key holding the script, and the script's text (for the hash). */
  script: { configMap: string; key: string; text: string };
  env: { name: string; value: string }[];
  /** Secrets whose keys become environment variables. */
  envFromSecrets?: string[];
  resources: { requests: Record<string, string>; limits: Record<string, string> };
  /** Seconds a run may take before Kubernetes stops it. */
  activeDeadlineSeconds: number;
  /** Extra volumes (name, path, volume source) mounted read-write. */
  scratch?: { name: string; mountPath: string; volume: Record<string, unknown> }[];
}

/** Labels and name of every object of the job `app`. */
export function etcdJobMetadata(name: string, app: string) {
  return {
    name,
    namespace: etcdJobNamespace,
    labels: { "app.kubernetes.io/name": app, "app.kubernetes.io/managed-by": "pulumi" },
  };
}

/** The ConfigMap holding a job's script. */
export function etcdJobScriptConfigMap(app: string, script: EtcdCronJobInput["script"]) {
  return {
    apiVersion: "v1" as const,
    kind: "ConfigMap" as const,
    metadata: etcdJobMetadata(script.configMap, app),
    data: { [script.key]: script.text },
  };
}

/** The etcd client variables the scripts share: every URL given, and kubeadm's client certificate. */
export function etcdClientEnvironment(endpoints: string[]): { name: string; value: string }[] {
  return [
    { name: "ETCD_ENDPOINTS", value: endpoints.join(",") },
    { name: "ETCD_CACERT", value: etcdClientTls.caCert },
    { name: "ETCD_CERT", value: etcdClientTls.cert },
    { name: "ETCD_KEY", value: etcdClientTls.key },
  ];
}

export function etcdCronJobManifest(input: EtcdCronJobInput) {
  const scriptHash = crypto.createHash("sha256").update(input.script.text).digest("hex");
  const scratch = input.scratch ?? [];
  return {
    apiVersion: "batch/v1" as const,
    kind: "CronJob" as const,
    metadata: etcdJobMetadata(input.name, input.name),
    spec: {
      schedule: input.schedule,
      // The schedule is documented as UTC; without this the controller uses its own zone.
      timeZone: "Etc/UTC",
      // Two runs at once would double the load on etcd (and race on a backup's retention).
      concurrencyPolicy: "Forbid",
      // A run missed by more than this (controller down) is skipped, not started late in a burst.
      startingDeadlineSeconds: 600,
      successfulJobsHistoryLimit: 3,
      failedJobsHistoryLimit: 3,
      jobTemplate: {
        // The Jobs carry the name too, so `kubectl get jobs -l app.kubernetes.io/name=<name>` lists them.
        metadata: { labels: { "app.kubernetes.io/name": input.name } },
        spec: {
          backoffLimit: 1,
          activeDeadlineSeconds: input.activeDeadlineSeconds,
          template: {
            metadata: {
              labels: { "app.kubernetes.io/name": input.name },
              annotations: { [scriptHashAnnotation]: scriptHash },
            },
            spec: {
              restartPolicy: "Never",
              // etcd listens on the node's addresses; the job reaches it as any local client would.
              hostNetwork: true,
              dnsPolicy: "ClusterFirstWithHostNet",
              nodeSelector: { "node-role.kubernetes.io/control-plane": "" },
              tolerations: [{ key: "node-role.kubernetes.io/control-plane", operator: "Exists", effect: "NoSchedule" }],
              priorityClassName: "system-cluster-critical",
              // The etcd client key and the PKI are root-only files on the host.
              securityContext: { runAsUser: 0, runAsGroup: 0 },
              containers: [
                {
                  name: input.name.replace(/^etcd-/, ""),
                  image: input.image,
                  imagePullPolicy: "IfNotPresent",
                  command: ["/bin/bash", `${scriptDir}/${input.script.key}`],
                  // HOME: tools keep caches there; the root filesystem is read-only.
                  env: [...input.env, { name: "HOME", value: "/tmp" }],
                  ...(input.envFromSecrets?.length
                    ? { envFrom: input.envFromSecrets.map((name) => ({ secretRef: { name } })) }
                    : {}),
                  resources: input.resources,
                  securityContext: {
                    allowPrivilegeEscalation: false,
                    readOnlyRootFilesystem: true,
                    // Root owns the key files it reads, so no capability is needed.
                    capabilities: { drop: ["ALL"] },
                  },
                  volumeMounts: [
                    { name: "script", mountPath: scriptDir, readOnly: true },
                    { name: "pki", mountPath: pkiDir, readOnly: true },
                    ...scratch.map((s) => ({ name: s.name, mountPath: s.mountPath })),
                    { name: "tmp", mountPath: "/tmp" },
                  ],
                },
              ],
              volumes: [
                { name: "script", configMap: { name: input.script.configMap, defaultMode: 0o555 } },
                { name: "pki", hostPath: { path: pkiDir, type: "Directory" } },
                ...scratch.map((s) => ({ name: s.name, ...s.volume })),
                { name: "tmp", emptyDir: { medium: "Memory", sizeLimit: "64Mi" } },
              ],
            },
          },
        },
      },
    },
  };
}
