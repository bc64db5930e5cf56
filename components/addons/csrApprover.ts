/**
 * The kubelet serving-certificate approver: scripts/jobs/kubelet-csr-approver.sh run by a
 * one-replica Deployment on a control-plane node, with a ServiceAccount that may read Nodes and
 * CSRs and approve requests for the `kubernetes.io/kubelet-serving` signer only.
 *
 * Every kubelet asks for its serving certificate through a CSR (`serverTLSBootstrap: true`,
 * components/node/kubeadm.ts, and the worker example's patch); kube-controller-manager signs
 * such a CSR only once something approves it, and nothing in Kubernetes does for this signer
 * (docs: "Certificate Signing Requests", kubernetes.io/kubelet-serving: "Never auto-approved by
 * kube-controller-manager"). The script's rules are in its --help and tests/csrApprover.test.ts.
 *
 * Plain objects: the tests check them against the Kubernetes schemas (kubernetes-models).
 */
import * as crypto from "node:crypto";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { ClusterConfig } from "../config";
import {
  etcdJobMetadata,
  etcdJobScriptConfigMap,
  EtcdJobScripts,
  lockedDownContainerSecurityContext,
  readEtcdJobScripts,
} from "../etcd/cronJob";

/** The name of every object: ServiceAccount, ClusterRole(Binding), Deployment; the ConfigMap is `<name>-script`. */
export const csrApproverName = "kubelet-csr-approver";

/** The signer whose requests the approver may approve, and no other. */
export const kubeletServingSigner = "kubernetes.io/kubelet-serving";

const scriptDir = "/opt/kubelet-csr-approver";
const heartbeatFile = "/tmp/kubelet-csr-approver.heartbeat";

/** Annotation on the pod template: sha256 of the ConfigMap's files, so a new script rolls out. */
export const csrApproverScriptHashAnnotation = "hcloud-control-plane/script-sha256";

/** The settings the approver uses: the job image (the backup image carries kubectl, jq and openssl). */
export type CsrApproverSettings = { backup: Pick<ClusterConfig["backup"], "image"> };

/** scripts/jobs/kubelet-csr-approver.sh and lib.sh, as they are in the repository. */
export function readCsrApproverScripts(): EtcdJobScripts {
  return readEtcdJobScripts(csrApproverName);
}

/** The ConfigMap `kubelet-csr-approver-script` in kube-system: the script and lib.sh. */
export function csrApproverConfigMap(scripts: EtcdJobScripts) {
  return etcdJobScriptConfigMap(csrApproverName, scripts);
}

export function csrApproverServiceAccount() {
  return {
    apiVersion: "v1" as const,
    kind: "ServiceAccount" as const,
    metadata: etcdJobMetadata(csrApproverName, csrApproverName),
  };
}

/**
 * What the approver may do, and nothing more (docs: "Certificate Signing Requests",
 * Authorization: approving needs `update` on certificatesigningrequests/approval and `approve`
 * on the signer, resourceName `<signerName>`). `kubectl certificate approve` reads the CSR
 * before it updates the approval (kubectl pkg/cmd/certificates/certificates.go), hence `get`.
 */
export function csrApproverClusterRole() {
  const { name, labels } = etcdJobMetadata(csrApproverName, csrApproverName);
  return {
    apiVersion: "rbac.authorization.k8s.io/v1" as const,
    kind: "ClusterRole" as const,
    // Cluster-scoped: no namespace.
    metadata: { name, labels },
    rules: [
      {
        apiGroups: ["certificates.k8s.io"],
        resources: ["certificatesigningrequests"],
        verbs: ["get", "list", "watch"],
      },
      { apiGroups: ["certificates.k8s.io"], resources: ["certificatesigningrequests/approval"], verbs: ["update"] },
      {
        apiGroups: ["certificates.k8s.io"],
        resources: ["signers"],
        resourceNames: [kubeletServingSigner],
        verbs: ["approve"],
      },
      { apiGroups: [""], resources: ["nodes"], verbs: ["get", "list"] },
    ],
  };
}

export function csrApproverClusterRoleBinding() {
  const { name, namespace, labels } = etcdJobMetadata(csrApproverName, csrApproverName);
  return {
    apiVersion: "rbac.authorization.k8s.io/v1" as const,
    kind: "ClusterRoleBinding" as const,
    metadata: { name, labels },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: csrApproverName },
    subjects: [{ kind: "ServiceAccount", name: csrApproverName, namespace }],
  };
}

/** The Deployment: one replica on a control-plane node, unprivileged, read-only root filesystem. */
export function csrApproverDeployment(cfg: CsrApproverSettings, scripts: EtcdJobScripts) {
  const configMap = csrApproverConfigMap(scripts);
  const hash = crypto
    .createHash("sha256")
    .update(JSON.stringify(Object.entries(configMap.data).sort()))
    .digest("hex");
  const labels = { "app.kubernetes.io/name": csrApproverName };
  return {
    apiVersion: "apps/v1" as const,
    kind: "Deployment" as const,
    metadata: etcdJobMetadata(csrApproverName, csrApproverName),
    spec: {
      replicas: 1,
      // Never two approvers at once during a rollout (two would race on the same requests).
      strategy: { type: "Recreate" },
      selector: { matchLabels: labels },
      template: {
        metadata: { labels, annotations: { [csrApproverScriptHashAnnotation]: hash } },
        spec: {
          serviceAccountName: csrApproverName,
          nodeSelector: { "node-role.kubernetes.io/control-plane": "" },
          tolerations: [
            { key: "node-role.kubernetes.io/control-plane", operator: "Exists", effect: "NoSchedule" },
            // Nodes with the external cloud provider carry this taint until the cloud controller
            // manager initializes them; the approver needs nothing from it.
            { key: "node.cloudprovider.kubernetes.io/uninitialized", operator: "Exists", effect: "NoSchedule" },
          ],
          priorityClassName: "system-cluster-critical",
          securityContext: {
            runAsNonRoot: true,
            runAsUser: 65534,
            runAsGroup: 65534,
            seccompProfile: { type: "RuntimeDefault" },
          },
          containers: [
            {
              name: "approver",
              image: cfg.backup.image,
              imagePullPolicy: "IfNotPresent",
              command: ["/bin/bash", `${scriptDir}/${csrApproverName}.sh`],
              env: [
                { name: "APPROVER_INTERVAL_SECONDS", value: "20" },
                { name: "KUBECTL_TIMEOUT", value: "30" },
                { name: "APPROVER_HEARTBEAT_FILE", value: heartbeatFile },
                // kubectl keeps its cache there; the root filesystem is read-only.
                { name: "HOME", value: "/tmp" },
              ],
              // The loop touches the heartbeat after every pass (each kubectl call is bounded),
              // so a stale file means a stuck process.
              livenessProbe: {
                exec: { command: ["/bin/bash", "-c", `find ${heartbeatFile} -mmin -5 | grep -q .`] },
                initialDelaySeconds: 120,
                periodSeconds: 60,
                failureThreshold: 3,
              },
              resources: { requests: { cpu: "10m", memory: "32Mi" }, limits: { memory: "128Mi" } },
              securityContext: lockedDownContainerSecurityContext(),
              volumeMounts: [
                { name: "script", mountPath: scriptDir, readOnly: true },
                { name: "tmp", mountPath: "/tmp" },
              ],
            },
          ],
          volumes: [
            { name: "script", configMap: { name: configMap.metadata.name, defaultMode: 0o555 } },
            { name: "tmp", emptyDir: { medium: "Memory", sizeLimit: "16Mi" } },
          ],
        },
      },
    },
  };
}

export interface KubeletCsrApproverArgs extends CsrApproverSettings {
  provider: k8s.Provider;
  /** The pod network: the approver's pod becomes Ready, and the Deployment's await ends, only with it. */
  podNetwork: pulumi.Resource;
}

export class KubeletCsrApprover extends pulumi.ComponentResource {
  readonly deployment: k8s.apps.v1.Deployment;

  constructor(name: string, args: KubeletCsrApproverArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hcloud-control-plane:index:KubeletCsrApprover", name, {}, opts);
    const scripts = readCsrApproverScripts();
    const k8sOpts = { parent: this, provider: args.provider };
    const account = new k8s.core.v1.ServiceAccount(`${name}-sa`, csrApproverServiceAccount(), k8sOpts);
    const role = new k8s.rbac.v1.ClusterRole(`${name}-role`, csrApproverClusterRole(), k8sOpts);
    const binding = new k8s.rbac.v1.ClusterRoleBinding(`${name}-binding`, csrApproverClusterRoleBinding(), {
      ...k8sOpts,
      // Binds the role and the account by name: both exist first.
      dependsOn: [account, role],
    });
    const configMap = new k8s.core.v1.ConfigMap(`${name}-script`, csrApproverConfigMap(scripts), k8sOpts);
    this.deployment = new k8s.apps.v1.Deployment(`${name}-deployment`, csrApproverDeployment(args, scripts), {
      ...k8sOpts,
      // The pod mounts the script, runs as the bound account, and needs the pod network to
      // become Ready (Pulumi waits for the rollout).
      dependsOn: [configMap, binding, args.podNetwork],
    });
    this.registerOutputs({});
  }
}
