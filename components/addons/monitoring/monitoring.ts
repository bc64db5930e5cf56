/**
 * Monitoring through the cluster's Kubernetes provider: kube-prometheus-stack configured for
 * kubeadm (or an existing Prometheus Operator), this program's PrometheusRule, and the
 * Alertmanager configuration with business-hours paging.
 *
 * Everything the objects hold is built by pure functions here and in rules.ts/alertmanager.ts,
 * so the offline plan renders exactly what `pulumi up` would apply.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { backupCronJob } from "../../etcd/backup";
import { ClusterConfig } from "../../config";
import { cronMaxIntervalSeconds } from "../../config/cron";
import { defragCronJob } from "../../etcd/defrag";
import { etcdMetricsPort } from "../../node/kubeadm";
import { versions } from "../../versions";
import { PagingSettings, renderAlertmanagerConfig } from "./alertmanager";
import { CertificateExpiry, expirySeries } from "../../lifecycle/certificates";
import { WorkerJoinExpiry, workerTokenSeries } from "../../lifecycle/workerJoin";
import {
  AlertRuleSettings,
  alertNames,
  CertificateExpirySeries,
  prometheusRules,
  RuleFile,
  WorkerTokenExpirySeries,
} from "./rules";

/** The Helm release name; kube-prometheus-stack selects rules labelled `release: <it>`. */
const releaseName = "kube-prometheus-stack";

/** The job labels kube-prometheus-stack gives the control-plane scrape jobs. */
const stackJobs = {
  apiserver: "apiserver",
  controllerManager: "kube-controller-manager",
  scheduler: "kube-scheduler",
  kubeStateMetrics: "kube-state-metrics",
} as const;

/** Ports kubeadm's control-plane components serve metrics on (HTTPS, delegated auth). */
const controllerManagerPort = 10257;
const schedulerPort = 10259;

const names = {
  alertmanagerConfigSecret: "alertmanager-paging-config",
  pagerdutySecret: "alertmanager-pagerduty",
  pagerdutyKey: "routingKey",
};

/** Where the PagerDuty routing key appears inside the Alertmanager pod (`alertmanagerSpec.secrets`). */
export const pagerdutyRoutingKeyFile = `/etc/alertmanager/secrets/${names.pagerdutySecret}/${names.pagerdutyKey}`;

/** kubeadm certificate alerts: critical a week before the earliest expiry. */
const certificateCriticalSeconds = 7 * 86400;

/**
 * Worker join token alerts: a warning a week before the expiry, so a rotation fits into an
 * ordinary working week (a config change, `pulumi up`, consumers re-reading `workerJoin`) and,
 * with the default 720 h lifetime, stays quiet for the token's first 23 days; critical under a
 * day, when new workers are about to fail to join, and on after the expiry. A lifetime of a week
 * or less warns from the start: such a token needs a rotation within the week.
 */
const workerTokenWarningSeconds = 7 * 86400;
const workerTokenCriticalSeconds = 86400;

/**
 * The settings the rules are built from: the etcd job, the monitoring mode (which mixin rules
 * this program adds), the runbooks, the node count, the backup schedule and alert margin, and
 * the certificate warning lead time.
 */
export type RuleSettings = Pick<ClusterConfig, "nodes"> & {
  monitoring: Pick<ClusterConfig["monitoring"], "etcdJob" | "mode" | "runbookBaseUrl" | "backupAlertMarginMinutes">;
  backup: Pick<ClusterConfig["backup"], "schedule">;
  maintenance: Pick<ClusterConfig["maintenance"], "certificateExpiryWarningDays">;
};

/** The settings Alertmanager's paging is built from: the rules' (for their names), the cluster name and the paging hours. */
export type PagingInputSettings = RuleSettings &
  Pick<ClusterConfig, "clusterName"> & {
    monitoring: Pick<ClusterConfig["monitoring"], "paging">;
  };

/**
 * The settings monitoring uses: the rules' and the paging's, and where the objects go (the
 * monitoring namespace, the rule's name and labels).
 */
export type MonitoringSettings = PagingInputSettings & {
  monitoring: Pick<ClusterConfig["monitoring"], "namespace" | "ruleName" | "ruleLabels">;
};

/**
 * `expiry` is what the stack read from the nodes; empty before the first read. `workerToken`
 * is the worker join token's expiry as its command reported it; empty before it ran.
 */
function alertRuleSettings(
  cfg: RuleSettings,
  expiry: CertificateExpirySeries[] = [],
  workerToken: WorkerTokenExpirySeries[] = [],
): AlertRuleSettings {
  return {
    etcdJob: cfg.monitoring.etcdJob,
    apiserverJob: stackJobs.apiserver,
    controllerManagerJob: stackJobs.controllerManager,
    schedulerJob: stackJobs.scheduler,
    kubeStateMetricsJob: stackJobs.kubeStateMetrics,
    controlPlaneCount: cfg.nodes.length,
    // kube-prometheus-stack ships these itself (defaultRules); an existing operator may not.
    apiserverMixinRules: cfg.monitoring.mode === "existing-operator",
    backup: {
      namespace: backupCronJob.namespace,
      cronJob: backupCronJob.name,
      maxAgeSeconds: cronMaxIntervalSeconds(cfg.backup.schedule) + cfg.monitoring.backupAlertMarginMinutes * 60,
    },
    defrag: { namespace: defragCronJob.namespace, cronJob: defragCronJob.name },
    runbookBaseUrl: cfg.monitoring.runbookBaseUrl,
    certificates: {
      warningSeconds: cfg.maintenance.certificateExpiryWarningDays * 86400,
      criticalSeconds: certificateCriticalSeconds,
      expiry,
    },
    workerJoinToken: {
      warningSeconds: workerTokenWarningSeconds,
      criticalSeconds: workerTokenCriticalSeconds,
      expiry: workerToken,
    },
  };
}

/** The rule file: the PrometheusRule's spec and out/<stack>/prometheus-rules.yaml. */
export function ruleFile(
  cfg: RuleSettings,
  expiry: CertificateExpirySeries[] = [],
  workerToken: WorkerTokenExpirySeries[] = [],
): RuleFile {
  return prometheusRules(alertRuleSettings(cfg, expiry, workerToken));
}

export function pagingSettings(cfg: PagingInputSettings): PagingSettings {
  return {
    clusterName: cfg.clusterName,
    timezone: cfg.monitoring.paging.timezone,
    businessDays: cfg.monitoring.paging.businessDays,
    businessHours: cfg.monitoring.paging.businessHours,
    onCallWebhookUrl: cfg.monitoring.paging.onCallWebhookUrl,
    pagerdutyRoutingKeyFile,
    controlPlaneAlerts: alertNames(ruleFile(cfg)),
  };
}

/**
 * The PrometheusRule object (plain; the offline plan renders it and tests check its schema):
 * `spec` is the rule file ({@link ruleFile}), which the component builds with the expiries read.
 */
export function prometheusRuleManifest(
  cfg: { monitoring: Pick<ClusterConfig["monitoring"], "namespace" | "ruleName" | "ruleLabels"> },
  spec: pulumi.Input<RuleFile>,
) {
  return {
    apiVersion: "monitoring.coreos.com/v1",
    kind: "PrometheusRule",
    metadata: {
      name: cfg.monitoring.ruleName,
      namespace: cfg.monitoring.namespace,
      labels: { ...cfg.monitoring.ruleLabels, "app.kubernetes.io/managed-by": "pulumi" },
    },
    spec,
  };
}

/** Lets a monitoring pod run on control-plane nodes: until worker pools join, they are the only nodes. */
const controlPlaneToleration = [
  { key: "node-role.kubernetes.io/control-plane", operator: "Exists", effect: "NoSchedule" },
];

/**
 * kube-prometheus-stack values for a kubeadm control plane. kubeadm runs etcd, the
 * controller-manager and the scheduler as static pods that bind to host addresses, so the
 * chart gets the node IPs as endpoints rather than selecting pods:
 * - etcd: plain-HTTP metrics on 2381 at each private IP (kubeadm.ts adds that listener);
 * - controller-manager 10257 and scheduler 10259: HTTPS with their self-signed serving
 *   certificates (kubeadm binds them to 0.0.0.0; the Hetzner firewall keeps the ports private);
 * - kube-proxy metrics stay on loopback (kubeadm's default), so that job and its alert are off.
 * The chart's own etcd and control-plane alerts are off: this program's rules replace them,
 * with runbooks in this repository.
 */
export function kubePrometheusStackValues(cfg: RuleSettings): Record<string, unknown> {
  const ips = cfg.nodes.map((n) => n.privateIp);
  const disabled = Object.fromEntries(alertNames(ruleFile(cfg)).map((alert) => [alert, true]));
  return {
    defaultRules: {
      rules: { etcd: false, kubeControllerManager: false, kubeSchedulerAlerting: false, kubeProxy: false },
      disabled,
    },
    kubeEtcd: {
      enabled: true,
      endpoints: ips,
      service: { enabled: true, port: etcdMetricsPort, targetPort: etcdMetricsPort },
      serviceMonitor: { enabled: true, scheme: "http", jobLabel: "jobLabel" },
    },
    kubeControllerManager: {
      enabled: true,
      endpoints: ips,
      service: { enabled: true, port: controllerManagerPort, targetPort: controllerManagerPort },
      serviceMonitor: { enabled: true, https: true, insecureSkipVerify: true },
    },
    kubeScheduler: {
      enabled: true,
      endpoints: ips,
      service: { enabled: true, port: schedulerPort, targetPort: schedulerPort },
      serviceMonitor: { enabled: true, https: true, insecureSkipVerify: true },
    },
    kubeProxy: { enabled: false },
    kubeStateMetrics: { enabled: true },
    "kube-state-metrics": { tolerations: controlPlaneToleration },
    prometheusOperator: {
      tolerations: controlPlaneToleration,
      admissionWebhooks: { patch: { tolerations: controlPlaneToleration } },
    },
    prometheus: {
      prometheusSpec: {
        // Rules are selected by `release: <release name>`; PrometheusRules from any namespace.
        ruleSelectorNilUsesHelmValues: true,
        ruleNamespaceSelector: {},
        retention: "15d",
        tolerations: controlPlaneToleration,
        resources: { requests: { cpu: "200m", memory: "1Gi" } },
      },
    },
    alertmanager: {
      alertmanagerSpec: {
        // The configuration is this program's Secret (paging by business hours), not the chart's.
        useExistingSecret: true,
        configSecret: names.alertmanagerConfigSecret,
        secrets: [names.pagerdutySecret],
        // `location` in the business-hours interval needs the tz database; Alertmanager does
        // not embed it and its image may not carry it, so the node's (Ubuntu's tzdata) is used.
        volumes: [{ name: "zoneinfo", hostPath: { path: "/usr/share/zoneinfo", type: "Directory" } }],
        volumeMounts: [{ name: "zoneinfo", mountPath: "/usr/share/zoneinfo", readOnly: true }],
        tolerations: controlPlaneToleration,
      },
    },
    "prometheus-node-exporter": { tolerations: [{ operator: "Exists" }] },
  };
}

/** The Secret holding alertmanager.yaml (no secret in it: the routing key is a file). */
export function alertmanagerConfigSecretManifest(
  cfg: PagingInputSettings & { monitoring: Pick<ClusterConfig["monitoring"], "namespace"> },
) {
  return {
    apiVersion: "v1" as const,
    kind: "Secret" as const,
    metadata: { name: names.alertmanagerConfigSecret, namespace: cfg.monitoring.namespace },
    type: "Opaque",
    stringData: { "alertmanager.yaml": renderAlertmanagerConfig(pagingSettings(cfg)) },
  };
}

export interface MonitoringArgs extends MonitoringSettings {
  /** The cluster's Kubernetes provider. */
  provider: k8s.Provider;
  /** Secret; required with kube-prometheus-stack. */
  pagerdutyRoutingKey?: pulumi.Output<string>;
  /** Pods need the pod network before the release can become ready. */
  podNetwork: pulumi.Resource;
  /** The kubeadm certificate expiry read from the nodes: the certificate alerts watch it. */
  certificateExpiry: pulumi.Output<CertificateExpiry>;
  /** The worker join token's public id and expiry (plain): WorkerJoinTokenExpiring watches it. */
  workerJoinExpiry: pulumi.Output<WorkerJoinExpiry>;
}

export class Monitoring extends pulumi.ComponentResource {
  /** Undefined with `monitoring: existing-operator`. */
  readonly release?: k8s.helm.v3.Release;
  readonly rule: k8s.apiextensions.CustomResource;

  constructor(name: string, args: MonitoringArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hcloud-control-plane:index:Monitoring", name, {}, opts);
    const cfg: MonitoringSettings = args;
    const k8sOpts = { parent: this, provider: args.provider };

    if (cfg.monitoring.mode === "kube-prometheus-stack") {
      if (!args.pagerdutyRoutingKey)
        throw new Error("the PagerDuty routing key is required with kube-prometheus-stack");
      const namespace = new k8s.core.v1.Namespace(
        `${name}-namespace`,
        { metadata: { name: cfg.monitoring.namespace } },
        k8sOpts,
      );
      const inNamespace = { ...k8sOpts, dependsOn: [namespace] };
      new k8s.core.v1.Secret(
        `${name}-pagerduty`,
        {
          metadata: { name: names.pagerdutySecret, namespace: cfg.monitoring.namespace },
          type: "Opaque",
          stringData: { [names.pagerdutyKey]: args.pagerdutyRoutingKey },
        },
        inNamespace,
      );
      new k8s.core.v1.Secret(`${name}-alertmanager-config`, alertmanagerConfigSecretManifest(cfg), inNamespace);
      this.release = new k8s.helm.v3.Release(
        `${name}-kube-prometheus-stack`,
        {
          name: releaseName,
          chart: "kube-prometheus-stack",
          version: versions.kubePrometheusStackChart,
          repositoryOpts: { repo: "https://prometheus-community.github.io/helm-charts" },
          namespace: cfg.monitoring.namespace,
          createNamespace: false,
          values: kubePrometheusStackValues(cfg),
          atomic: true,
          timeout: 900,
        },
        // Not after the two Secrets: they are created beside the release. The operator reads the
        // configuration Secret when it reconciles the Alertmanager, uses a default (no receiver)
        // while it is missing and reconciles again when it appears (prometheus-operator
        // pkg/alertmanager/operator.go, loadConfigurationFromSecret and the Secret informer); the
        // Alertmanager pods it creates (not Helm, so `atomic` does not wait for them) start once
        // the PagerDuty Secret they mount exists.
        { ...k8sOpts, dependsOn: [namespace, args.podNetwork] },
      );
    }

    // A plain CustomResource after the release: its CRD arrives with the chart. Until the
    // expiries are known (a first preview) the spec is unknown and the rule still registers.
    this.rule = new k8s.apiextensions.CustomResource(
      `${name}-rules`,
      prometheusRuleManifest(
        cfg,
        pulumi
          .all([args.certificateExpiry, args.workerJoinExpiry])
          .apply(([certificates, token]) => ruleFile(cfg, expirySeries(certificates), workerTokenSeries(token))),
      ),
      { ...k8sOpts, dependsOn: this.release ? [this.release] : [] },
    );
    this.registerOutputs({});
  }
}
