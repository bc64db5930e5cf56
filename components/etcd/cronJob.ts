/**
 * The shape shared by the CronJobs that work on etcd from a control-plane node (the backup and
 * the defragmentation): a bash script from a ConfigMap, run as root with host networking on a
 * control-plane node, with a read-only root filesystem and, read-only, exactly the host files
 * each job reads (`hostFiles`): the defragmentation only the etcd client certificate, its key and
 * the etcd CA certificate; the backup the PKI directory it archives.
 * Plain objects: the offline plan renders them and the tests check them against the schemas.
 *
 * The job `<name>` runs scripts/jobs/<name>.sh, which sources lib.sh beside it: its ConfigMap
 * `<name>-script` carries both files, mounted together in /opt/etcd-job. lib.sh is the project's one
 * helper library, scripts/node/lib.sh (the node scripts' directory, copied whole to every node).
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { localScriptsDir } from "../node/nodeScripts";

/** Everything these jobs create lives in kube-system, beside etcd's static pods. */
export const etcdJobNamespace = "kube-system";

/** kubeadm's PKI on every control-plane node (CA keys included): only the backup mounts it whole. */
export const kubeadmPkiDir = "/etc/kubernetes/pki";

/** kubeadm's etcd client certificate and CA on every control-plane node. */
export const etcdClientTls = {
  caCert: `${kubeadmPkiDir}/etcd/ca.crt`,
  cert: `${kubeadmPkiDir}/etcd/healthcheck-client.crt`,
  key: `${kubeadmPkiDir}/etcd/healthcheck-client.key`,
} as const;

/**
 * A file or directory of the node, mounted read-only at the same path in the container (so the
 * scripts' variables name the node's paths). `File` and `Directory` are hostPath types that make
 * the kubelet refuse to start the pod when the path is missing or of the other kind, instead of
 * creating an empty directory there (`DirectoryOrCreate`, or the unchecked default `""`).
 */
export interface HostMount {
  /** Volume name. */
  name: string;
  path: string;
  type: "File" | "Directory";
}

/**
 * The three files an etcd client needs, and nothing else of the PKI: kubeadm's healthcheck
 * client certificate and key, and the etcd CA certificate (not its key). A single-file hostPath
 * is a bind mount of the file as it is when the pod starts; each run is a new pod, so a renewed
 * certificate is read by the next run.
 */
export const etcdClientTlsMounts: readonly HostMount[] = [
  { name: "etcd-ca-cert", path: etcdClientTls.caCert, type: "File" },
  { name: "etcd-client-cert", path: etcdClientTls.cert, type: "File" },
  { name: "etcd-client-key", path: etcdClientTls.key, type: "File" },
];

/**
 * Annotation on the pod template carrying the sha256 of the ConfigMap's files: a new script or
 * library rolls out. It is `sha256sum <files, by name> | sha256sum` in /opt/etcd-job.
 */
export const scriptHashAnnotation = "hcloud-control-plane/script-sha256";

const scriptDir = "/opt/etcd-job";
const scriptsSourceDir = path.join(__dirname, "..", "..", "scripts", "jobs");

/**
 * The helper library the job scripts source, the second file of each job's ConfigMap: the file
 * the node scripts source too (one source file; a job script finds it beside itself, or in the
 * repository at ../node/lib.sh).
 */
export const etcdJobLibraryFile = "lib.sh";
export const etcdJobLibraryPath = path.join(localScriptsDir, etcdJobLibraryFile);

/** scripts/jobs/<name>.sh, the script of the job `name`. */
export const etcdJobScriptPath = (name: string) => path.join(scriptsSourceDir, `${name}.sh`);

/** The text of a job's script and of the library it sources. */
export interface EtcdJobScripts {
  script: string;
  library: string;
}

/** The job `name`'s script and the library, as they are in the repository. */
export function readEtcdJobScripts(name: string): EtcdJobScripts {
  return {
    script: fs.readFileSync(etcdJobScriptPath(name), "utf8"),
    library: fs.readFileSync(etcdJobLibraryPath, "utf8"),
  };
}

/** The ConfigMap name and the files (by name) of the job `name`. */
function scriptFiles(name: string, scripts: EtcdJobScripts) {
  const scriptFile = `${name}.sh`;
  return {
    configMap: `${name}-script`,
    scriptFile,
    data: { [scriptFile]: scripts.script, [etcdJobLibraryFile]: scripts.library },
  };
}

/** sha256 of `sha256sum` over the files in name order (what the annotation documents). */
function filesHash(data: Record<string, string>): string {
  const sha256 = (text: string) => crypto.createHash("sha256").update(text).digest("hex");
  const listing = Object.keys(data)
    .sort()
    .map((file) => `${sha256(data[file])}  ${file}\n`)
    .join("");
  return sha256(listing);
}

export interface EtcdCronJobInput {
  /** The CronJob's name (`etcd-<x>`), also `app.kubernetes.io/name` and the container's name. */
  name: string;
  schedule: string;
  image: string;
  /** The job's script and the library, carried by its ConfigMap and hashed into the pod template. */
  scripts: EtcdJobScripts;
  env: { name: string; value: string }[];
  /** Secrets whose keys become environment variables. */
  envFromSecrets?: string[];
  resources: { requests: Record<string, string>; limits: Record<string, string> };
  /** Seconds a run may take before Kubernetes stops it. */
  activeDeadlineSeconds: number;
  /** The node's files and directories the job reads, each mounted read-only; nothing else of the node. */
  hostFiles: readonly HostMount[];
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

/** The ConfigMap `<name>-script` of the job `name`: `<name>.sh` and lib.sh. */
export function etcdJobScriptConfigMap(name: string, scripts: EtcdJobScripts) {
  const files = scriptFiles(name, scripts);
  return {
    apiVersion: "v1" as const,
    kind: "ConfigMap" as const,
    metadata: etcdJobMetadata(files.configMap, name),
    data: files.data,
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

/**
 * The container securityContext of the project's job pods: no privilege escalation, a read-only
 * root filesystem, no Linux capability (a fresh object per call).
 */
export function lockedDownContainerSecurityContext() {
  return { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } };
}

export function etcdCronJobManifest(input: EtcdCronJobInput) {
  const files = scriptFiles(input.name, input.scripts);
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
              annotations: { [scriptHashAnnotation]: filesHash(files.data) },
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
                  command: ["/bin/bash", `${scriptDir}/${files.scriptFile}`],
                  // HOME: tools keep caches there; the root filesystem is read-only.
                  env: [...input.env, { name: "HOME", value: "/tmp" }],
                  ...(input.envFromSecrets?.length
                    ? { envFrom: input.envFromSecrets.map((name) => ({ secretRef: { name } })) }
                    : {}),
                  resources: input.resources,
                  // Root owns the key files it reads, so no capability is needed.
                  securityContext: lockedDownContainerSecurityContext(),
                  volumeMounts: [
                    { name: "script", mountPath: scriptDir, readOnly: true },
                    ...input.hostFiles.map((h) => ({ name: h.name, mountPath: h.path, readOnly: true })),
                    ...scratch.map((s) => ({ name: s.name, mountPath: s.mountPath })),
                    { name: "tmp", mountPath: "/tmp" },
                  ],
                },
              ],
              volumes: [
                { name: "script", configMap: { name: files.configMap, defaultMode: 0o555 } },
                ...input.hostFiles.map((h) => ({ name: h.name, hostPath: { path: h.path, type: h.type } })),
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
