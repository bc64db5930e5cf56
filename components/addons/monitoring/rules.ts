/**
 * Prometheus alerting rules for the control plane: etcd, API server, controller-manager,
 * scheduler, the etcd backup CronJob, and the configured cluster size.
 *
 * Pure: rules are data built from {@link AlertRuleSettings}; {@link renderRuleFile} writes the
 * plain Prometheus rule file (`groups:`) that `promtool` reads and that becomes the
 * PrometheusRule's `spec`. Job names are settings because kube-prometheus-stack's job labels
 * differ from the upstream mixins' defaults (`apiserver`, not `kube-apiserver`; `kube-etcd`,
 * not the mixin's `.*etcd.*` regex), and a selector that matches nothing never fires.
 *
 * Sources: the etcd mixin (etcd-io/etcd `contrib/mixin`) and kubernetes-mixin as
 * kube-prometheus-stack renders them. Deviations are marked where they are made.
 */
import { stringify } from "yaml";

export interface AlertRuleSettings {
  /** The `job` label of the etcd scrape job (kube-prometheus-stack on kubeadm: "kube-etcd"). One setting. */
  etcdJob: string;
  /**
   * kube-prometheus-stack's job names: "apiserver", "kube-controller-manager", "kube-scheduler",
   * "kube-state-metrics". With `monitoring: existing-operator` the operator's jobs must carry the
   * same names (as kube-prometheus does): the backup alerts read kube-state-metrics under its job.
   */
  apiserverJob: string;
  controllerManagerJob: string;
  schedulerJob: string;
  kubeStateMetricsJob: string;
  /** The configured number of control-plane nodes (= etcd members): 1, 3, 5 or 7. */
  controlPlaneCount: number;
  /**
   * Ship kubernetes-mixin's API server SLO and system alerts (KubeAPIErrorBudgetBurn with its
   * `apiserver_request:burnrate*` recording rules, KubeAPITerminatedRequests, KubeAggregatedAPI*,
   * KubeClientErrors, KubeVersionMismatch). True with `monitoring: existing-operator`, where
   * nothing else provides them; false with kube-prometheus-stack, whose chart ships the same
   * rules under the same names (its groups kube-apiserver-burnrate.rules, kube-apiserver-slos,
   * kubernetes-system-apiserver and kubernetes-system), so two copies would fire twice.
   */
  apiserverMixinRules: boolean;
  /** The etcd backup CronJob: namespace "kube-system", name "etcd-backup"; maxAgeSeconds = schedule's longest gap + margin. */
  backup: { namespace: string; cronJob: string; maxAgeSeconds: number };
  /** The etcd defragmentation CronJob: namespace "kube-system", name "etcd-defrag". */
  defrag: { namespace: string; cronJob: string };
  /** Base URL of docs/runbooks in the repository; runbook_url = `${runbookBaseUrl}/${alertname}.md`. */
  runbookBaseUrl: string;
  /**
   * kubeadm certificate expiry as the stack read it from the nodes (components/lifecycle/certificates.ts):
   * one series per node, and the thresholds of the warning and the critical alert.
   */
  certificates: {
    warningSeconds: number;
    criticalSeconds: number;
    /** Empty until the nodes were read (a first preview); the alerts then have nothing to see. */
    expiry: CertificateExpirySeries[];
  };
  /**
   * The worker join token's expiry as its command reported it (components/lifecycle/workerJoin.ts), and
   * the thresholds of the warning and the critical alert.
   */
  workerJoinToken: {
    warningSeconds: number;
    criticalSeconds: number;
    /** Empty until the token command ran (a first preview); the alerts then have nothing to see. */
    expiry: WorkerTokenExpirySeries[];
  };
}

/** The worker join token's expiry. */
export interface WorkerTokenExpirySeries {
  /** The bootstrap token's public id (never its secret half). */
  tokenId: string;
  /** Unix time of its expiry. */
  expiresSeconds: number;
}

/** The series the worker token recording rule writes; WorkerJoinTokenExpiring reads it. */
export const workerTokenExpiryMetric = "worker_join_token_expiration_timestamp_seconds";

/** One node's earliest kubeadm certificate expiry. */
export interface CertificateExpirySeries {
  /** The Kubernetes node name. */
  node: string;
  /** The certificate that expires first on it, e.g. admin.conf. */
  certificate: string;
  /** Unix time of its expiry. */
  expiresSeconds: number;
}

/** The series the certificate recording rules write; the certificate alerts read it. */
export const certificateExpiryMetric = "kubeadm_certificate_expiration_timestamp_seconds";

export interface AlertingRule {
  alert: string;
  expr: string;
  for?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

export interface RecordingRule {
  record: string;
  expr: string;
  labels?: Record<string, string>;
}

export interface RuleGroup {
  name: string;
  interval?: string;
  rules: (AlertingRule | RecordingRule)[];
}

export interface RuleFile {
  groups: RuleGroup[];
}

export type Severity = "critical" | "warning" | "info";

/**
 * The etcd mixin's failure-rate window is 4 scrape intervals; kube-prometheus-stack scrapes
 * every 30s. Re-derive it if the scrape interval changes.
 */
const etcdPeerFailureWindow = "120s";

/** The etcd mixin's `etcd_instance_labels` as kube-prometheus-stack sets them. */
const etcdInstanceLabels = "instance, pod";

/** The alerting rules, in groups, for `settings`. */
export function prometheusRules(settings: AlertRuleSettings): RuleFile {
  const alert = alertBuilder(settings.runbookBaseUrl);
  return {
    groups: [
      { name: "etcd", rules: etcdRules(settings, alert) },
      { name: "etcd-mixin", rules: etcdMixinRules(settings, alert) },
      { name: "kubernetes-control-plane", rules: controlPlaneRules(settings, alert) },
      ...(settings.apiserverMixinRules ? apiserverMixinGroups(settings, alert) : []),
      { name: "etcd-backup", rules: backupRules(settings, alert) },
      { name: "etcd-defrag", rules: defragRules(settings, alert) },
      { name: "kubeadm-certificates", rules: certificateRules(settings, alert) },
      { name: "worker-join-token", rules: workerTokenRules(settings, alert) },
    ],
  };
}

/** Every alert name in the file, sorted, unique. */
export function alertNames(file: RuleFile): string[] {
  const names = file.groups.flatMap((g) => g.rules.flatMap((r) => ("alert" in r ? [r.alert] : [])));
  return [...new Set(names)].sort();
}

/**
 * The plain Prometheus rule file (`groups:`) as YAML text: what `promtool check rules` reads
 * and what the PrometheusRule's `spec` holds. Sorted keys, no line folding, so the same
 * settings always give the same bytes.
 */
export function renderRuleFile(file: RuleFile): string {
  return stringify(file, { sortMapEntries: true, lineWidth: 0, aliasDuplicateObjects: false });
}

interface AlertSpec {
  alert: string;
  expr: string;
  for?: string;
  severity: Severity;
  summary: string;
  description: string;
  /** Labels besides severity that tell same-named alerts apart (the burn-rate windows). */
  labels?: Record<string, string>;
}

type Alert = (spec: AlertSpec) => AlertingRule;

function alertBuilder(runbookBaseUrl: string): Alert {
  const base = runbookBaseUrl.replace(/\/+$/, "");
  return ({ alert, expr, for: pending, severity, summary, description, labels }) => ({
    alert,
    expr,
    ...(pending ? { for: pending } : {}),
    labels: { ...labels, severity },
    annotations: { summary, description, runbook_url: `${base}/${alert}.md` },
  });
}

/** `{job="<job>"}`-style selector text from label pairs, values quoted for PromQL. */
function sel(labels: Record<string, string>): string {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}=${JSON.stringify(v)}`);
  return `{${pairs.join(", ")}}`;
}

/** The runbook's three etcd alerts (names and expressions are a contract), plus target presence and member count. */
function etcdRules(s: AlertRuleSettings, alert: Alert): AlertingRule[] {
  const etcd = sel({ job: s.etcdJob });
  return [
    alert({
      alert: "EtcdMemberDown",
      expr: `up${etcd} == 0`,
      for: "5m",
      severity: "critical",
      summary: "An etcd member is down.",
      description: "Prometheus cannot scrape etcd member {{ $labels.instance }} for 5 minutes.",
    }),
    // Not in the runbook or the etcd mixin: a member that is down 4 minutes of every 5 never
    // has 5 minutes of `up == 0` in a row, so EtcdMemberDown (and etcdMembersDown's 20m) never
    // fire. `changes()` counts transitions of `up` in 15 minutes: one restart is 2 (down, up),
    // two restarts are 4 (a node upgrade and a certificate renewal in one window), a continuous
    // outage is 1 (EtcdMemberDown's case). More than 4 means at least a third outage within
    // 15 minutes: a member that keeps failing. It is critical like EtcdMemberDown: the member
    // is as good as lost for quorum, and every return costs the leader a catch-up.
    alert({
      alert: "EtcdMemberFlapping",
      expr: `changes(up${etcd}[15m]) > 4`,
      for: "5m",
      severity: "critical",
      summary: "An etcd member keeps going down and coming back.",
      description:
        "The scrape of etcd member {{ $labels.instance }} changed between up and down {{ $value }} times in 15 minutes: it fails again and again, so it is missing from quorum most of the time.",
    }),
    alert({
      alert: "EtcdHighFsyncDuration",
      expr: `histogram_quantile(0.99, rate(etcd_disk_wal_fsync_duration_seconds_bucket${etcd}[5m])) > 0.5`,
      for: "10m",
      severity: "warning",
      summary: "etcd WAL fsync is slow.",
      description:
        "The 99th percentile of WAL fsync durations on etcd member {{ $labels.instance }} is {{ $value | humanize }}s (above 0.5s).",
    }),
    alert({
      alert: "EtcdDatabaseSizeExceeding",
      expr: `etcd_mvcc_db_total_size_in_bytes${etcd} > 6e+09`,
      for: "10m",
      severity: "warning",
      summary: "The etcd database is larger than 6 GB.",
      description: "The etcd database of member {{ $labels.instance }} is {{ $value | humanize }}B (above 6 GB).",
    }),
    // Not in the etcd mixin: its alerts select on `up{job=...}` and go silent when the target
    // disappears (a broken ServiceMonitor, metrics listener on loopback only).
    alert({
      alert: "EtcdTargetAbsent",
      expr: `absent(up${etcd})`,
      for: "15m",
      severity: "critical",
      summary: "etcd has disappeared from Prometheus target discovery.",
      description: `No scrape target with job="${s.etcdJob}" exists: every etcd alert is blind.`,
    }),
    // Not in the etcd mixin: the number of scrape targets should equal the configured member
    // count. An absent count is EtcdTargetAbsent's case.
    alert({
      alert: "EtcdMemberCountMismatch",
      expr: `count by (job) (up${etcd}) != ${s.controlPlaneCount}`,
      for: "15m",
      severity: "warning",
      summary: "The number of etcd scrape targets differs from the configured control-plane count.",
      description: `Prometheus has {{ $value }} etcd targets; the stack configures ${s.controlPlaneCount} control-plane nodes (etcd members).`,
    }),
  ];
}

/**
 * The etcd mixin's alerts with our selector and kube-prometheus-stack's instance labels.
 *
 * Dropped: `etcdGRPCRequestsSlow`. Its histogram `grpc_server_handling_seconds_bucket` exists
 * only with etcd's `--metrics=extensive`, which this cluster does not set (kubeadm's default
 * is `basic`), so the rule could never fire.
 */
function etcdMixinRules(s: AlertRuleSettings, alert: Alert): AlertingRule[] {
  const etcd = sel({ job: s.etcdJob });
  const failedCodes = "Unknown|FailedPrecondition|ResourceExhausted|Internal|Unavailable|DataLoss|DeadlineExceeded";
  const grpcFailureRatio =
    `100 * sum without (grpc_type, grpc_code) (rate(grpc_server_handled_total{job=${JSON.stringify(s.etcdJob)}, grpc_code=~"${failedCodes}"}[5m]))\n` +
    `/\nsum without (grpc_type, grpc_code) (rate(grpc_server_handled_total${etcd}[5m]))`;
  const fsync = `histogram_quantile(0.99, rate(etcd_disk_wal_fsync_duration_seconds_bucket${etcd}[5m]))`;
  return [
    alert({
      alert: "etcdMembersDown",
      // Deviation: the mixin filters with `> 0` only after the `or`. Both sides of its `or` carry
      // the same labels once instance and pod are summed away, so the left side (0 while every
      // target is up) always wins and peer send failures could never fire the alert. Filtering
      // the left side first lets the peer-failure side count when no member is down.
      expr: [
        "max without (endpoint) (",
        `  sum without (${etcdInstanceLabels}) (up${etcd} == bool 0) > 0`,
        "or",
        "  count without (To) (",
        `    sum without (${etcdInstanceLabels}) (rate(etcd_network_peer_sent_failures_total${etcd}[${etcdPeerFailureWindow}])) > 0.01`,
        "  )",
        ")",
      ].join("\n"),
      for: "20m",
      severity: "warning",
      summary: "etcd cluster members are down.",
      description:
        'etcd cluster "{{ $labels.job }}": members are down ({{ $value }}), or peers fail to reach each other.',
    }),
    alert({
      alert: "etcdInsufficientMembers",
      expr: `sum without (${etcdInstanceLabels}) (up${etcd} == bool 1) < ((count without (${etcdInstanceLabels}) (up${etcd}) + 1) / 2)`,
      for: "3m",
      severity: "critical",
      summary: "etcd cluster has insufficient number of members.",
      description: 'etcd cluster "{{ $labels.job }}": insufficient members ({{ $value }}); quorum is lost.',
    }),
    alert({
      alert: "etcdNoLeader",
      expr: `etcd_server_has_leader${etcd} == 0`,
      for: "1m",
      severity: "critical",
      summary: "etcd cluster has no leader.",
      description: "etcd member {{ $labels.instance }} has no leader.",
    }),
    alert({
      alert: "etcdHighNumberOfLeaderChanges",
      expr:
        `increase((max without (${etcdInstanceLabels}) (etcd_server_leader_changes_seen_total${etcd})` +
        ` or 0 * absent(etcd_server_leader_changes_seen_total${etcd}))[15m:1m]) >= 4`,
      for: "5m",
      severity: "warning",
      summary: "etcd cluster has high number of leader changes.",
      description:
        'etcd cluster "{{ $labels.job }}": {{ $value }} leader changes within the last 15 minutes. Frequent elections may be a sign of insufficient resources, high network latency, or disruptions by other components.',
    }),
    alert({
      alert: "etcdHighNumberOfFailedGRPCRequests",
      expr: `${grpcFailureRatio}\n> 1`,
      for: "10m",
      severity: "warning",
      summary: "etcd cluster has high number of failed grpc requests.",
      description:
        "{{ $value | humanize }}% of {{ $labels.grpc_method }} requests failed on etcd member {{ $labels.instance }}.",
    }),
    alert({
      alert: "etcdHighNumberOfFailedGRPCRequests",
      expr: `${grpcFailureRatio}\n> 5`,
      for: "5m",
      severity: "critical",
      summary: "etcd cluster has high number of failed grpc requests.",
      description:
        "{{ $value | humanize }}% of {{ $labels.grpc_method }} requests failed on etcd member {{ $labels.instance }}.",
    }),
    alert({
      alert: "etcdMemberCommunicationSlow",
      expr: `histogram_quantile(0.99, rate(etcd_network_peer_round_trip_time_seconds_bucket${etcd}[5m])) > 0.15`,
      for: "10m",
      severity: "warning",
      summary: "etcd cluster member communication is slow.",
      description:
        "Peer round trips from etcd member {{ $labels.instance }} to {{ $labels.To }} take {{ $value | humanize }}s at the 99th percentile.",
    }),
    alert({
      alert: "etcdHighNumberOfFailedProposals",
      expr: `rate(etcd_server_proposals_failed_total${etcd}[15m]) > 5`,
      for: "15m",
      severity: "warning",
      summary: "etcd cluster has high number of proposal failures.",
      description:
        "etcd member {{ $labels.instance }} had {{ $value | humanize }} proposal failures per second over 15 minutes.",
    }),
    alert({
      alert: "etcdHighFsyncDurations",
      expr: `${fsync} > 0.5`,
      for: "10m",
      severity: "warning",
      summary: "etcd cluster 99th percentile fsync durations are too high.",
      description:
        "99th percentile WAL fsync duration is {{ $value | humanize }}s on etcd member {{ $labels.instance }}.",
    }),
    alert({
      alert: "etcdHighFsyncDurations",
      expr: `${fsync} > 1`,
      for: "10m",
      severity: "critical",
      summary: "etcd cluster 99th percentile fsync durations are too high.",
      description:
        "99th percentile WAL fsync duration is {{ $value | humanize }}s on etcd member {{ $labels.instance }}.",
    }),
    alert({
      alert: "etcdHighCommitDurations",
      expr: `histogram_quantile(0.99, rate(etcd_disk_backend_commit_duration_seconds_bucket${etcd}[5m])) > 0.25`,
      for: "10m",
      severity: "warning",
      summary: "etcd cluster 99th percentile commit durations are too high.",
      description:
        "99th percentile backend commit duration is {{ $value | humanize }}s on etcd member {{ $labels.instance }}.",
    }),
    alert({
      alert: "etcdDatabaseQuotaLowSpace",
      expr:
        `(last_over_time(etcd_mvcc_db_total_size_in_bytes${etcd}[5m])` +
        ` / last_over_time(etcd_server_quota_backend_bytes${etcd}[5m])) * 100 > 95`,
      for: "10m",
      severity: "critical",
      summary: "etcd cluster database is running full.",
      description: "The database of etcd member {{ $labels.instance }} uses {{ $value | humanize }}% of its quota.",
    }),
    alert({
      alert: "etcdExcessiveDatabaseGrowth",
      expr: `predict_linear(etcd_mvcc_db_total_size_in_bytes${etcd}[4h], 4 * 60 * 60) > etcd_server_quota_backend_bytes${etcd}`,
      for: "10m",
      severity: "warning",
      summary: "etcd cluster database growing very fast.",
      description:
        "At the growth rate of the last 4 hours, the database of etcd member {{ $labels.instance }} exceeds its quota within 4 hours.",
    }),
    alert({
      alert: "etcdDatabaseHighFragmentationRatio",
      expr:
        `(last_over_time(etcd_mvcc_db_total_size_in_use_in_bytes${etcd}[5m])` +
        ` / last_over_time(etcd_mvcc_db_total_size_in_bytes${etcd}[5m])) < 0.5` +
        ` and etcd_mvcc_db_total_size_in_use_in_bytes${etcd} > 104857600`,
      for: "10m",
      severity: "warning",
      summary: "etcd database size in use is less than 50% of the actual allocated storage.",
      description:
        "etcd member {{ $labels.instance }} uses {{ $value | humanizePercentage }} of its database file; defragment it to reclaim the rest.",
    }),
  ];
}

/**
 * kubernetes-mixin's control-plane availability and client-certificate alerts with
 * kube-prometheus-stack's job names, plus the configured control-plane node count.
 * The mixin's `cluster` label is left out of `on(...)`: one Prometheus watches one cluster.
 */
function controlPlaneRules(s: AlertRuleSettings, alert: Alert): AlertingRule[] {
  const components = [
    { name: "KubeAPI", job: s.apiserverJob, what: "The Kubernetes API server" },
    { name: "KubeControllerManager", job: s.controllerManagerJob, what: "kube-controller-manager" },
    { name: "KubeScheduler", job: s.schedulerJob, what: "kube-scheduler" },
  ];
  const availability = components.flatMap(({ name, job, what }) => [
    alert({
      alert: `${name}Down`,
      expr: `absent(up${sel({ job })})`,
      for: "15m",
      severity: "critical",
      summary: "Target disappeared from Prometheus target discovery.",
      description: `${what} (job="${job}") has disappeared from Prometheus target discovery.`,
    }),
    alert({
      alert: `${name}InstanceUnreachable`,
      expr: `up${sel({ job })} == 0`,
      for: "15m",
      severity: "warning",
      summary: "A control-plane component instance is unreachable.",
      description: `${what} instance {{ $labels.instance }} has been unreachable for 15 minutes.`,
    }),
  ]);
  const apiserver = sel({ job: s.apiserverJob });
  const certificate = (severity: Severity, seconds: number, within: string) =>
    alert({
      alert: "KubeClientCertificateExpiration",
      expr:
        `histogram_quantile(0.01, sum without (namespace, service, endpoint) (rate(apiserver_client_certificate_expiration_seconds_bucket${apiserver}[5m]))) < ${seconds}\n` +
        `and on (job, instance) apiserver_client_certificate_expiration_seconds_count${apiserver} > 0`,
      for: "5m",
      severity,
      summary: "Client certificate is about to expire.",
      description: `A client certificate used to authenticate to the API server at {{ $labels.instance }} expires in less than ${within}.`,
    });
  const ksm = s.kubeStateMetricsJob;
  return [
    ...availability,
    certificate("warning", 604800, "7 days"),
    certificate("critical", 86400, "24 hours"),
    // Counts distinct nodes, so two kube-state-metrics replicas do not double the count. With
    // no node labelled control-plane the count is absent; `or 0 * count(up ...)` turns that
    // into 0 while kube-state-metrics is up, so the alert fires; while it is down, it stays
    // silent (kube-prometheus-stack's TargetDown reports that).
    alert({
      alert: "ControlPlaneNodeCountMismatch",
      expr:
        `(\n  count(count by (node) (kube_node_role${sel({ job: ksm, role: "control-plane" })}))\n` +
        `or\n  0 * count(up${sel({ job: ksm })} == 1)\n) != ${s.controlPlaneCount}`,
      for: "15m",
      severity: "warning",
      summary: "The number of control-plane nodes differs from the configured count.",
      description: `The cluster has {{ $value }} nodes with role control-plane; the stack configures ${s.controlPlaneCount}.`,
    }),
  ];
}

/**
 * kubernetes-mixin's multi-window burn rates of a 99% API server availability SLO over 30 days
 * (kubernetes-monitoring/kubernetes-mixin @ aa38e2bfa7ea6ec6870420b483046afe790a6411,
 * config.libsonnet `SLOs.apiserver`).
 */
const apiserverSlo = {
  target: 0.99,
  windows: [
    { severity: "critical", for: "2m", long: "1h", short: "5m", factor: 14.4 },
    { severity: "critical", for: "15m", long: "6h", short: "30m", factor: 6 },
    { severity: "warning", for: "1h", long: "1d", short: "2h", factor: 3 },
    { severity: "warning", for: "3h", long: "3d", short: "6h", factor: 1 },
  ],
} as const;

/**
 * kubernetes-mixin's API server SLO and system rules, for `monitoring: existing-operator`
 * (see {@link AlertRuleSettings.apiserverMixinRules}). Taken from
 * kubernetes-monitoring/kubernetes-mixin @ aa38e2bfa7ea6ec6870420b483046afe790a6411:
 * rules/kube_apiserver-burnrate.libsonnet and rules/kube_apiserver-config.libsonnet (the
 * recording rules and their selectors), alerts/kube_apiserver.libsonnet (KubeAPIErrorBudgetBurn,
 * KubeAggregatedAPIErrors, KubeAggregatedAPIDown, KubeAPITerminatedRequests) and
 * alerts/system_alerts.libsonnet (KubeVersionMismatch, KubeClientErrors). Group names, alert
 * names and labels (`long`, `short` on the burn alerts) are the mixin's, as
 * kube-prometheus-stack renders them. Deviations: the API server job is a setting (the mixin's
 * default is `kube-apiserver`), runbooks and descriptions are this repository's. The mixin's
 * `cluster` label stays in `by`/`on`: absent in a one-cluster Prometheus, it groups nothing.
 *
 * Recording rules: all 14 `apiserver_request:burnrate<window>` series (read and write, the 7
 * distinct windows of the 4 alerts). No subset: every window is read by one alert, and a
 * missing one makes that alert silent. If the operator's Prometheus already records these
 * names (another kube-prometheus installation), both write the same series; turn one off.
 */
function apiserverMixinGroups(s: AlertRuleSettings, alert: Alert): RuleGroup[] {
  const job = `job=${JSON.stringify(s.apiserverJob)}`;
  const read = 'verb=~"LIST|GET"';
  const write = 'verb=~"POST|PUT|PATCH|DELETE"';
  const nonStreaming = 'subresource!~"proxy|attach|log|exec|portforward"';
  // Buckets of apiserver_request_sli_duration_seconds the SIG Scalability SLO uses.
  const le = (seconds: number) => `le=~"${seconds}(\\\\.0)?"`;
  const budget = (1 - apiserverSlo.target).toFixed(5);
  const windows = [...new Set(apiserverSlo.windows.flatMap((w) => [w.short, w.long]))].sort();
  const readBurnrate = (w: string): RecordingRule => ({
    record: `apiserver_request:burnrate${w}`,
    expr: [
      "(",
      "  (",
      "    # too slow",
      `    sum by (cluster) (rate(apiserver_request_sli_duration_seconds_count{${job},${read},${nonStreaming}}[${w}]))`,
      "    -",
      "    (",
      "      (",
      `        sum by (cluster) (rate(apiserver_request_sli_duration_seconds_bucket{${job},${read},${nonStreaming},scope=~"resource|",${le(1)}}[${w}]))`,
      "        or",
      "        vector(0)",
      "      )",
      "      +",
      `      sum by (cluster) (rate(apiserver_request_sli_duration_seconds_bucket{${job},${read},${nonStreaming},scope="namespace",${le(5)}}[${w}]))`,
      "      +",
      `      sum by (cluster) (rate(apiserver_request_sli_duration_seconds_bucket{${job},${read},${nonStreaming},scope="cluster",${le(30)}}[${w}]))`,
      "    )",
      "  )",
      "  +",
      "  # errors",
      `  sum by (cluster) (rate(apiserver_request_total{${job},${read},code=~"5.."}[${w}]))`,
      ")",
      "/",
      `sum by (cluster) (rate(apiserver_request_total{${job},${read}}[${w}]))`,
    ].join("\n"),
    labels: { verb: "read" },
  });
  const writeBurnrate = (w: string): RecordingRule => ({
    record: `apiserver_request:burnrate${w}`,
    expr: [
      "(",
      "  (",
      "    # too slow",
      `    sum by (cluster) (rate(apiserver_request_sli_duration_seconds_count{${job},${write},${nonStreaming}}[${w}]))`,
      "    -",
      `    sum by (cluster) (rate(apiserver_request_sli_duration_seconds_bucket{${job},${write},${nonStreaming},${le(1)}}[${w}]))`,
      "  )",
      "  +",
      `  sum by (cluster) (rate(apiserver_request_total{${job},${write},code=~"5.."}[${w}]))`,
      ")",
      "/",
      `sum by (cluster) (rate(apiserver_request_total{${job},${write}}[${w}]))`,
    ].join("\n"),
    labels: { verb: "write" },
  });
  const burn = apiserverSlo.windows.map((w) =>
    alert({
      alert: "KubeAPIErrorBudgetBurn",
      expr: [
        `sum by (cluster) (apiserver_request:burnrate${w.long}) > (${w.factor.toFixed(2)} * ${budget})`,
        "and on (cluster)",
        `sum by (cluster) (apiserver_request:burnrate${w.short}) > (${w.factor.toFixed(2)} * ${budget})`,
      ].join("\n"),
      for: w.for,
      severity: w.severity,
      labels: { long: w.long, short: w.short },
      summary: "The Kube API server is burning too much error budget.",
      description: `Over the last ${w.long} and the last ${w.short}, API server requests failed or were too slow ${w.factor} times as often as a ${apiserverSlo.target * 100}% availability target over 30 days allows.`,
    }),
  );
  const apiserver = sel({ job: s.apiserverJob });
  return [
    { name: "kube-apiserver-burnrate.rules", rules: [...windows.map(readBurnrate), ...windows.map(writeBurnrate)] },
    { name: "kube-apiserver-slos", rules: burn },
    {
      name: "kubernetes-system-apiserver",
      rules: [
        alert({
          alert: "KubeAggregatedAPIErrors",
          expr: `sum by (cluster, instance, name, reason) (increase(aggregator_unavailable_apiservice_total${apiserver}[1m])) > 0`,
          for: "10m",
          severity: "warning",
          summary: "Kubernetes aggregated API has reported errors.",
          description:
            "The API server {{ $labels.instance }} has reported {{ $labels.reason }} errors of the aggregated API {{ $labels.name }} every minute for 10 minutes.",
        }),
        alert({
          alert: "KubeAggregatedAPIDown",
          expr: `(1 - max by (name, namespace, cluster) (avg_over_time(aggregator_unavailable_apiservice${apiserver}[10m]))) * 100 < 85`,
          for: "5m",
          severity: "warning",
          summary: "Kubernetes aggregated API is down.",
          description:
            "The aggregated API {{ $labels.name }} ({{ $labels.namespace }}) has been only {{ $value | humanize }}% available over the last 10 minutes.",
        }),
        alert({
          alert: "KubeAPITerminatedRequests",
          expr:
            `sum by (cluster) (rate(apiserver_request_terminations_total${apiserver}[10m]))\n/\n` +
            `(sum by (cluster) (rate(apiserver_request_total${apiserver}[10m])) + sum by (cluster) (rate(apiserver_request_terminations_total${apiserver}[10m])))\n> 0.20`,
          for: "5m",
          severity: "warning",
          summary:
            "The kubernetes apiserver has terminated {{ $value | humanizePercentage }} of its incoming requests.",
          description:
            "The API servers have terminated {{ $value | humanizePercentage }} of their incoming requests over 10 minutes (API Priority and Fairness rejections, timeouts).",
        }),
      ],
    },
    {
      name: "kubernetes-system",
      rules: [
        alert({
          alert: "KubeVersionMismatch",
          expr: 'count by (cluster) (count by (git_version, cluster) (label_replace(kubernetes_build_info{job!~"kube-dns|coredns"}, "git_version", "$1", "git_version", "(v[0-9]*.[0-9]*).*"))) > 1',
          for: "15m",
          severity: "warning",
          summary: "Different semantic versions of Kubernetes components running.",
          description:
            "There are {{ $value }} different minor versions of Kubernetes components running (kubernetes_build_info).",
        }),
        alert({
          alert: "KubeClientErrors",
          expr:
            `(sum by (cluster, instance, job, namespace) (rate(rest_client_requests_total{${job},code=~"5.."}[5m]))\n/\n` +
            `sum by (cluster, instance, job, namespace) (rate(rest_client_requests_total{${job}}[5m])))\n> 0.01`,
          for: "15m",
          severity: "warning",
          summary: "Kubernetes API server client is experiencing errors.",
          description:
            "Kubernetes API server client '{{ $labels.job }}/{{ $labels.instance }}' is experiencing {{ $value | humanizePercentage }} errors.",
        }),
      ],
    },
  ];
}

/**
 * The newest Job of a CronJob failed. A failed Job stays in the CronJob's history after later
 * runs succeed, so a failed Job counts only when it was created after the last successful
 * completion (or when no run has succeeded yet). `kube_job_failed{condition="true"}` is the
 * Job's terminal Failed condition (backoffLimit or activeDeadlineSeconds reached), not a single
 * failed pod that a retry recovered.
 */
function newestJobFailed(ksm: string, namespace: string, cronJob: string): string {
  const jobs = sel({ job: ksm, namespace });
  const cron = sel({ job: ksm, namespace, cronjob: cronJob });
  return [
    `(`,
    `  max by (namespace, job_name) (kube_job_created${jobs})`,
    `  and on (namespace, job_name) kube_job_owner${sel({ job: ksm, namespace, owner_kind: "CronJob", owner_name: cronJob })}`,
    `  and on (namespace, job_name) (kube_job_failed${sel({ job: ksm, namespace, condition: "true" })} == 1)`,
    `)`,
    `> on (namespace) group_left ()`,
    `(`,
    `  max by (namespace) (kube_cronjob_status_last_successful_time${cron})`,
    `  or`,
    `  max by (namespace) (0 * kube_cronjob_created${cron})`,
    `)`,
  ].join("\n");
}

/**
 * The etcd backup CronJob, through kube-state-metrics (KSM). KSM labels its CronJob series
 * `namespace` and `cronjob` only (kubernetes/kube-state-metrics internal/store/cronjob.go,
 * `wrapCronJobFunc`): a replaced CronJob continues the same series, with no uid to tell them
 * apart.
 *
 * Freshness, the time since the last successful run:
 * - `kube_cronjob_status_last_successful_time` exists only once a run of this CronJob object
 *   has succeeded. A CronJob deleted and created again (a replace, a manual re-create) starts
 *   without it, so the last success is read with `max_over_time` over a window: the old
 *   object's last success stays visible for that window after the new object appeared.
 * - Only with no success in the window does the age count from `kube_cronjob_created`: a new
 *   CronJob fires once it has existed longer than the threshold without a success, not before
 *   (gardener/gardener#2892 fired on every new cluster by reading a missing timestamp as 0).
 * - The window is 3 x maxAgeSeconds: the critical threshold (2 x) plus one threshold of slack.
 *   Say KSM last reported the old object's last success L at time s, and the object was
 *   replaced at r >= s. Until s + window the age reads t - L, the truth. After that it reads
 *   t - r >= s + window - r, which stays above the critical threshold as long as
 *   r - s <= maxAgeSeconds (KSM reported the old object within one threshold of the
 *   replacement; a longer KSM outage is KubeStateMetricsDown's to report). So both severities
 *   keep firing and a replacement does not hide an overdue backup. A success of the new
 *   object (later than L) is the maximum at once and resolves it.
 * No `for`: the age only grows, and a `for` would restart after every KSM restart.
 *
 * Presence: with KSM down every KSM series disappears, so `absent(kube_cronjob_info)` alone
 * cannot tell "the CronJob is gone" from "nobody reports on CronJobs". The missing alert
 * therefore requires a KSM target that is up, and KubeStateMetricsDown reports the other case.
 */
function backupRules(s: AlertRuleSettings, alert: Alert): AlertingRule[] {
  const { namespace, cronJob, maxAgeSeconds } = s.backup;
  const ksm = s.kubeStateMetricsJob;
  const cron = sel({ job: ksm, namespace, cronjob: cronJob });
  const window = `${3 * maxAgeSeconds}s`;
  const lastSuccessOrCreation = [
    "(",
    `  max by (namespace, cronjob) (max_over_time(kube_cronjob_status_last_successful_time${cron}[${window}]))`,
    "  or",
    `  max by (namespace, cronjob) (kube_cronjob_created${cron})`,
    ")",
  ].join("\n");
  const ksmUp = `count(up${sel({ job: ksm })} == 1) > 0`;
  const tooOld = (severity: Severity, seconds: number) =>
    alert({
      alert: "EtcdBackupTooOld",
      expr: `time() - ${lastSuccessOrCreation} > ${seconds}`,
      severity,
      summary: "The last successful etcd backup is too old.",
      description: `No run of CronJob ${namespace}/${cronJob} has succeeded for {{ $value | humanizeDuration }} (threshold ${seconds}s).`,
    });
  return [
    tooOld("warning", maxAgeSeconds),
    // Escalates when a second period passes without a backup.
    tooOld("critical", 2 * maxAgeSeconds),
    alert({
      alert: "EtcdBackupJobFailed",
      expr: newestJobFailed(ksm, namespace, cronJob),
      severity: "warning",
      summary: "The most recent etcd backup Job failed.",
      description: `Job {{ $labels.job_name }} of CronJob ${namespace}/${cronJob} failed, and no run has succeeded since.`,
    }),
    alert({
      alert: "EtcdBackupCronJobMissing",
      expr: `absent(kube_cronjob_info${cron})\nand on ()\n${ksmUp}`,
      for: "15m",
      severity: "critical",
      summary: "The etcd backup CronJob does not exist.",
      description: `kube-state-metrics is up and reports no CronJob ${namespace}/${cronJob}: no etcd backups are being taken.`,
    }),
    // The chart's TargetDown covers a KSM target that is down, not one that is gone, and with
    // existing-operator nothing may cover either. Warning: nothing is known to be broken, but
    // the backup alerts and ControlPlaneNodeCountMismatch see nothing until KSM is back.
    alert({
      alert: "KubeStateMetricsDown",
      expr: `absent(up${sel({ job: ksm })} == 1)`,
      for: "15m",
      severity: "warning",
      summary: "kube-state-metrics is down: the etcd backup alerts are blind.",
      description: `No scrape target with job="${ksm}" is up. The etcd backup alerts and ControlPlaneNodeCountMismatch read kube-state-metrics: until it is back they see no new backup run, no failed Job and no missing or suspended CronJob.`,
    }),
    alert({
      alert: "EtcdBackupCronJobSuspended",
      expr: `kube_cronjob_spec_suspend${cron} == 1`,
      for: "15m",
      severity: "warning",
      summary: "The etcd backup CronJob is suspended.",
      description: `CronJob ${namespace}/${cronJob} is suspended: no new etcd backups are taken until it is resumed.`,
    }),
  ];
}

/**
 * The defragmentation job refuses while any member is unhealthy and stops at the first failed
 * member, so a failed run means the database was not compacted on disk: the fragmentation
 * alert follows in time, this one says why first.
 */
function defragRules(s: AlertRuleSettings, alert: Alert): AlertingRule[] {
  const { namespace, cronJob } = s.defrag;
  return [
    alert({
      alert: "EtcdDefragJobFailed",
      expr: newestJobFailed(s.kubeStateMetricsJob, namespace, cronJob),
      severity: "warning",
      summary: "The most recent etcd defragmentation Job failed.",
      description: `Job {{ $labels.job_name }} of CronJob ${namespace}/${cronJob} failed, and no run has succeeded since: etcd members were not defragmented.`,
    }),
  ];
}

/**
 * kubeadm's certificates live in files on the nodes, where no exporter reads them. The stack
 * reads their expiry over SSH (`kubeadm certs check-expiration`) after every upgrade and
 * renewal, and writes each node's earliest expiry into this group as a constant recording
 * rule; the alerts compare it with time(). An expiry is a fixed date, so the series stays true
 * until the next upgrade or renewal replaces it. No `for`: the time left only shrinks.
 */
function certificateRules(s: AlertRuleSettings, alert: Alert): (AlertingRule | RecordingRule)[] {
  const { warningSeconds, criticalSeconds, expiry } = s.certificates;
  const recorded: RecordingRule[] = expiry.map((e) => ({
    record: certificateExpiryMetric,
    expr: `vector(${Math.floor(e.expiresSeconds)})`,
    labels: { node: e.node, certificate: e.certificate },
  }));
  const expiring = (severity: Severity, seconds: number) =>
    alert({
      alert: "KubeadmCertificateExpiration",
      expr: `${certificateExpiryMetric} - time() < ${seconds}`,
      severity,
      summary: "A kubeadm certificate of a control-plane node is about to expire.",
      description: `Certificate {{ $labels.certificate }} on {{ $labels.node }} expires in {{ $value | humanizeDuration }} (threshold ${seconds}s). Renew it (certificateRenewal) or upgrade Kubernetes.`,
    });
  return [...recorded, expiring("warning", warningSeconds), expiring("critical", criticalSeconds)];
}

/**
 * The bootstrap token worker nodes join with lives `workerJoinTokenTtlHours` and nothing renews
 * it: a new `workerJoinTokenRotation` value does. Like the certificates (above), its expiry is a
 * fixed date the stack knows (worker-join-token.sh reports it), written here as a constant
 * recording rule labelled with the token's public id. The critical alert stays on after the
 * expiry: from then on every new worker fails to join. No `for`: the time left only shrinks.
 */
function workerTokenRules(s: AlertRuleSettings, alert: Alert): (AlertingRule | RecordingRule)[] {
  const { warningSeconds, criticalSeconds, expiry } = s.workerJoinToken;
  const recorded: RecordingRule[] = expiry.map((e) => ({
    record: workerTokenExpiryMetric,
    expr: `vector(${Math.floor(e.expiresSeconds)})`,
    labels: { token_id: e.tokenId },
  }));
  const expiring = (severity: Severity, seconds: number) =>
    alert({
      alert: "WorkerJoinTokenExpiring",
      expr: `${workerTokenExpiryMetric} - time() < ${seconds}`,
      severity,
      summary: "The bootstrap token worker nodes join with is about to expire.",
      description:
        `Worker join token {{ $labels.token_id }} {{ if lt $value 0.0 }}has expired, so new worker nodes cannot join{{ else }}expires in {{ $value | humanizeDuration }}{{ end }} (threshold ${seconds}s). ` +
        "Set a new workerJoinTokenRotation, run pulumi up, and have consumers re-read the workerJoin output.",
    });
  return [...recorded, expiring("warning", warningSeconds), expiring("critical", criticalSeconds)];
}
