/**
 * The control-plane alerting rules: structure and contract as data, then the real promtool
 * (`check rules` on the rendered file, `test rules` with the committed files in
 * tests/promtool/), and a coverage check that every (alert, severity) has a firing and a
 * silent promtool case. promtool cannot see a test case that names an alert the rules do not
 * have (it passes as "not firing"), so unknown names fail here.
 *
 * What this cannot prove: that kube-prometheus-stack's real scrape jobs carry these job
 * labels, and that kube-state-metrics' series look like the inputs. The e2e proof is
 * `up{job="kube-etcd"} == 1` (and the other jobs) plus `/api/v1/rules` all `health="ok"` on
 * a live cluster.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse } from "yaml";
import {
  AlertingRule,
  AlertRuleSettings,
  alertNames,
  certificateExpiryMetric,
  prometheusRules,
  RecordingRule,
  renderRuleFile,
  RuleFile,
  workerTokenExpiryMetric,
} from "../components/addons/monitoring/rules";
import { etcdQuotaBackendBytes } from "../components/node/kubeadm";
import { alertCases, coverage, parseTestFile } from "./support/promtool";
import { requireTool } from "./support/tools";

/** The settings the committed promtool files are written against. */
const testSettings: AlertRuleSettings = {
  etcdJob: "kube-etcd",
  apiserverJob: "apiserver",
  controllerManagerJob: "kube-controller-manager",
  schedulerJob: "kube-scheduler",
  kubeStateMetricsJob: "kube-state-metrics",
  controlPlaneCount: 3,
  // The existing-operator set, so the promtool files cover the kubernetes-mixin rules too.
  apiserverMixinRules: true,
  // e.g. `*/30 * * * *` plus a 30m margin. Short on purpose: promtool evaluates every rule once
  // a minute up to a test's last eval_time, and hours of that make the suite slow.
  backup: { namespace: "kube-system", cronJob: "etcd-backup", maxAgeSeconds: 3600 },
  defrag: { namespace: "kube-system", cronJob: "etcd-defrag" },
  runbookBaseUrl: "https://example.com/runbooks",
  // Hours, not the 30 and 7 days of a stack, for the same reason as the backup's maxAgeSeconds.
  certificates: {
    warningSeconds: 7200,
    criticalSeconds: 3600,
    expiry: [
      { node: "prod-nbg1-cp-1", certificate: "admin.conf", expiresSeconds: 10800 },
      { node: "prod-nbg1-cp-2", certificate: "apiserver", expiresSeconds: 36000 },
    ],
  },
  // Hours again, not the 7 days and 1 day of a stack; the token expires 2h after time() = 0.
  workerJoinToken: {
    warningSeconds: 3600,
    criticalSeconds: 1800,
    expiry: [{ tokenId: "abc123", expiresSeconds: 7200 }],
  },
};

const repoRoot = path.join(__dirname, "..");
const promtoolDir = path.join(__dirname, "promtool");
const runbookDir = path.join(repoRoot, "docs", "runbooks");

function alerts(file: RuleFile): AlertingRule[] {
  return file.groups.flatMap((g) => g.rules.filter((r): r is AlertingRule => "alert" in r));
}

function only(file: RuleFile, name: string, severity?: string): AlertingRule {
  const found = alerts(file).filter((a) => a.alert === name && (!severity || a.labels.severity === severity));
  expect(found).toHaveLength(1);
  return found[0];
}

const rules = prometheusRules(testSettings);

describe("rule content", () => {
  test("the alert names are the contract, sorted and unique", () => {
    expect(alertNames(rules)).toEqual(
      [
        "ControlPlaneNodeCountMismatch",
        "EtcdBackupCronJobMissing",
        "EtcdBackupCronJobSuspended",
        "EtcdBackupJobFailed",
        "EtcdBackupTooOld",
        "EtcdDatabaseSizeExceeding",
        "EtcdDefragJobFailed",
        "EtcdHighFsyncDuration",
        "EtcdMemberCountMismatch",
        "EtcdMemberDown",
        "EtcdMemberFlapping",
        "EtcdTargetAbsent",
        "KubeAggregatedAPIDown",
        "KubeAggregatedAPIErrors",
        "KubeAPIDown",
        "KubeAPIErrorBudgetBurn",
        "KubeAPIInstanceUnreachable",
        "KubeAPITerminatedRequests",
        "KubeClientCertificateExpiration",
        "KubeClientErrors",
        "KubeControllerManagerDown",
        "KubeControllerManagerInstanceUnreachable",
        "KubeadmCertificateExpiration",
        "KubeSchedulerDown",
        "KubeSchedulerInstanceUnreachable",
        "KubeStateMetricsDown",
        "KubeVersionMismatch",
        "WorkerJoinTokenExpiring",
        "etcdDatabaseHighFragmentationRatio",
        "etcdDatabaseQuotaLowSpace",
        "etcdExcessiveDatabaseGrowth",
        "etcdHighCommitDurations",
        "etcdHighFsyncDurations",
        "etcdHighNumberOfFailedGRPCRequests",
        "etcdHighNumberOfFailedProposals",
        "etcdHighNumberOfLeaderChanges",
        "etcdInsufficientMembers",
        "etcdMemberCommunicationSlow",
        "etcdMembersDown",
        "etcdNoLeader",
      ].sort(),
    );
    // etcdGRPCRequestsSlow needs etcd's --metrics=extensive, which this cluster does not set.
    expect(alertNames(rules)).not.toContain("etcdGRPCRequestsSlow");
  });

  test("runbook file names do not collide on a case-insensitive file system", () => {
    const names = alertNames(rules);
    expect(new Set(names.map((n) => n.toLowerCase())).size).toBe(names.length);
  });

  test("only same-named alerts that differ in their labels share a name", () => {
    const keys = alerts(rules).map((a) => `${a.alert}/${JSON.stringify(a.labels)}`);
    expect(new Set(keys).size).toBe(keys.length);
    const pairs = alertNames(rules).filter((n) => alerts(rules).filter((a) => a.alert === n).length > 1);
    expect(pairs).toEqual(
      [
        "EtcdBackupTooOld",
        "KubeAPIErrorBudgetBurn",
        "KubeClientCertificateExpiration",
        "KubeadmCertificateExpiration",
        "WorkerJoinTokenExpiring",
        "etcdHighFsyncDurations",
        "etcdHighNumberOfFailedGRPCRequests",
      ].sort(),
    );
  });

  test("every alert has a severity, a summary, a description and its runbook_url", () => {
    for (const a of alerts(rules)) {
      // The burn-rate alerts keep the mixin's window labels, as the chart's copies have them.
      const windowLabels = a.alert === "KubeAPIErrorBudgetBurn" ? ["long", "short"] : [];
      expect([a.alert, Object.keys(a.labels).sort()]).toEqual([a.alert, [...windowLabels, "severity"].sort()]);
      expect([a.alert, ["critical", "warning", "info"].includes(a.labels.severity)]).toEqual([a.alert, true]);
      expect([a.alert, Object.keys(a.annotations).sort()]).toEqual([
        a.alert,
        ["description", "runbook_url", "summary"],
      ]);
      expect(a.annotations.summary.length).toBeGreaterThan(10);
      expect(a.annotations.description.length).toBeGreaterThan(10);
      expect(a.annotations.runbook_url).toBe(`${testSettings.runbookBaseUrl}/${a.alert}.md`);
    }
  });

  test("a trailing slash on the runbook base URL does not double the slash", () => {
    const file = prometheusRules({ ...testSettings, runbookBaseUrl: "https://example.com/runbooks/" });
    expect(only(file, "EtcdMemberDown").annotations.runbook_url).toBe("https://example.com/runbooks/EtcdMemberDown.md");
  });

  test("every alert has a runbook with what it means, how to check and how to fix", () => {
    for (const name of alertNames(rules)) {
      const file = path.join(runbookDir, `${name}.md`);
      expect([name, fs.existsSync(file)]).toEqual([name, true]);
      const text = fs.readFileSync(file, "utf8");
      expect([name, text.startsWith(`# ${name}\n`)]).toEqual([name, true]);
      for (const heading of ["## Meaning", "## How to check", "## How to fix"]) {
        expect([name, heading, text.includes(`\n${heading}\n`)]).toEqual([name, heading, true]);
      }
    }
  });

  test("the runbook's three etcd alerts are exactly as specified", () => {
    const member = only(rules, "EtcdMemberDown");
    expect([member.expr, member.for, member.labels.severity]).toEqual(['up{job="kube-etcd"} == 0', "5m", "critical"]);
    const fsync = only(rules, "EtcdHighFsyncDuration");
    expect([fsync.expr, fsync.for, fsync.labels.severity]).toEqual([
      'histogram_quantile(0.99, rate(etcd_disk_wal_fsync_duration_seconds_bucket{job="kube-etcd"}[5m])) > 0.5',
      "10m",
      "warning",
    ]);
    const size = only(rules, "EtcdDatabaseSizeExceeding");
    expect([size.expr, size.for, size.labels.severity]).toEqual([
      'etcd_mvcc_db_total_size_in_bytes{job="kube-etcd"} > 6e+09',
      "10m",
      "warning",
    ]);
  });

  test("the etcd job setting changes every etcd expression, and no regex job selector remains", () => {
    const other = prometheusRules({ ...testSettings, etcdJob: "etcd-custom" });
    const etcdGroups = rules.groups.filter((g) => g.name === "etcd" || g.name === "etcd-mixin");
    const etcdAlerts = alerts({ groups: etcdGroups });
    expect(etcdAlerts).toHaveLength(20);
    for (const a of etcdAlerts) {
      const changed = alerts(other).find((b) => b.alert === a.alert && b.labels.severity === a.labels.severity)!;
      expect([a.alert, changed.expr]).toEqual([a.alert, a.expr.split('job="kube-etcd"').join('job="etcd-custom"')]);
      expect([a.alert, a.expr.includes('job="kube-etcd"'), changed.expr.includes("kube-etcd")]).toEqual([
        a.alert,
        true,
        false,
      ]);
    }
    for (const a of alerts(rules)) expect([a.alert, /job=~/.test(a.expr)]).toEqual([a.alert, false]);
  });

  test("the other job settings reach their expressions", () => {
    const other = prometheusRules({
      ...testSettings,
      apiserverJob: "kube-apiserver",
      controllerManagerJob: "kcm",
      schedulerJob: "sched",
      kubeStateMetricsJob: "ksm",
    });
    expect(only(other, "KubeAPIDown").expr).toBe('absent(up{job="kube-apiserver"})');
    expect(only(other, "KubeAPIInstanceUnreachable").expr).toBe('up{job="kube-apiserver"} == 0');
    expect(only(other, "KubeControllerManagerDown").expr).toBe('absent(up{job="kcm"})');
    expect(only(other, "KubeSchedulerInstanceUnreachable").expr).toBe('up{job="sched"} == 0');
    expect(only(other, "KubeClientCertificateExpiration", "critical").expr).toContain(
      'apiserver_client_certificate_expiration_seconds_count{job="kube-apiserver"}',
    );
    for (const name of [
      "EtcdBackupTooOld",
      "EtcdBackupJobFailed",
      "EtcdBackupCronJobMissing",
      "KubeStateMetricsDown",
      "ControlPlaneNodeCountMismatch",
    ]) {
      const expr = alerts(other).find((a) => a.alert === name)!.expr;
      expect([name, expr.includes('job="ksm"'), expr.includes("kube-state-metrics")]).toEqual([name, true, false]);
    }
  });

  test("the configured control-plane count is what the count alerts compare with", () => {
    for (const count of [1, 3, 5, 7]) {
      const file = prometheusRules({ ...testSettings, controlPlaneCount: count });
      expect(only(file, "EtcdMemberCountMismatch").expr).toBe(`count by (job) (up{job="kube-etcd"}) != ${count}`);
      expect(only(file, "ControlPlaneNodeCountMismatch").expr).toMatch(new RegExp(`\\) != ${count}$`));
      expect(only(file, "ControlPlaneNodeCountMismatch").expr).toContain('role="control-plane"');
      for (const name of ["EtcdMemberCountMismatch", "ControlPlaneNodeCountMismatch"]) {
        const a = only(file, name);
        expect([a.for, a.labels.severity]).toEqual(["15m", "warning"]);
      }
    }
  });

  test("the backup CronJob setting and maxAgeSeconds reach the backup alerts", () => {
    const file = prometheusRules({
      ...testSettings,
      backup: { namespace: "backups", cronJob: "etcd-snap", maxAgeSeconds: 90000 },
    });
    expect(only(file, "EtcdBackupTooOld", "warning").expr).toMatch(/ > 90000$/);
    expect(only(file, "EtcdBackupTooOld", "critical").expr).toMatch(/ > 180000$/);
    for (const a of alerts(file).filter((x) => x.alert.startsWith("EtcdBackup"))) {
      expect([a.alert, a.expr.includes('namespace="backups"')]).toEqual([a.alert, true]);
      expect([a.alert, a.expr.includes("etcd-backup"), a.expr.includes("kube-system")]).toEqual([
        a.alert,
        false,
        false,
      ]);
    }
    // Only while kube-state-metrics is up: otherwise every CronJob looks missing.
    expect(only(file, "EtcdBackupCronJobMissing").expr).toBe(
      'absent(kube_cronjob_info{job="kube-state-metrics", namespace="backups", cronjob="etcd-snap"})\n' +
        "and on ()\n" +
        'count(up{job="kube-state-metrics"} == 1) > 0',
    );
    expect(only(file, "KubeStateMetricsDown").expr).toBe('absent(up{job="kube-state-metrics"} == 1)');
    // A CronJob that never succeeded counts its age from its creation; a replaced one keeps
    // its predecessor's last success for the critical threshold plus one threshold (3 x 90000s).
    for (const severity of ["warning", "critical"]) {
      const expr = only(file, "EtcdBackupTooOld", severity).expr;
      expect(expr).toContain("kube_cronjob_created");
      expect(expr).toContain(
        'max_over_time(kube_cronjob_status_last_successful_time{job="kube-state-metrics", namespace="backups", cronjob="etcd-snap"}[270000s])',
      );
    }
  });

  test("the kubernetes-mixin API server rules ship only when asked (existing-operator), with their recording rules", () => {
    const without = prometheusRules({ ...testSettings, apiserverMixinRules: false });
    const mixinAlerts = [
      "KubeAPIErrorBudgetBurn",
      "KubeAPITerminatedRequests",
      "KubeAggregatedAPIDown",
      "KubeAggregatedAPIErrors",
      "KubeClientErrors",
      "KubeVersionMismatch",
    ];
    expect(alertNames(rules).filter((n) => mixinAlerts.includes(n))).toEqual([...mixinAlerts].sort());
    expect(alertNames(without).filter((n) => mixinAlerts.includes(n))).toEqual([]);
    expect(without.groups.map((g) => g.name)).not.toContain("kube-apiserver-burnrate.rules");
    const recorded = rules.groups.find((g) => g.name === "kube-apiserver-burnrate.rules")!.rules as RecordingRule[];
    // Every window an alert reads is recorded, for reads and writes.
    const read = alerts(rules)
      .filter((a) => a.alert === "KubeAPIErrorBudgetBurn")
      .flatMap((a) => [...a.expr.matchAll(/apiserver_request:burnrate\w+/g)].map((m) => m[0]));
    expect(new Set(read)).toEqual(new Set(recorded.map((r) => r.record)));
    expect(recorded.map((r) => `${r.record}/${r.labels!.verb}`).sort()).toEqual(
      ["1d", "1h", "2h", "30m", "3d", "5m", "6h"]
        .flatMap((w) => [`apiserver_request:burnrate${w}/read`, `apiserver_request:burnrate${w}/write`])
        .sort(),
    );
    for (const r of recorded) expect([r.record, r.expr.includes('job="apiserver"')]).toEqual([r.record, true]);
    expect(
      alerts(rules)
        .filter((a) => a.alert === "KubeAPIErrorBudgetBurn")
        .map((a) => [a.labels.severity, a.labels.long, a.labels.short, a.for]),
    ).toEqual([
      ["critical", "1h", "5m", "2m"],
      ["critical", "6h", "30m", "15m"],
      ["warning", "1d", "2h", "1h"],
      ["warning", "3d", "6h", "3h"],
    ]);
  });

  test("the etcd quota (8 GiB) leaves room for the 6e9 warning before the critical quota alert", () => {
    const size = Number(/> (\S+)$/.exec(only(rules, "EtcdDatabaseSizeExceeding").expr)![1]);
    expect(size).toBe(6e9);
    // etcdDatabaseQuotaLowSpace: above 95% of etcd_server_quota_backend_bytes.
    expect(only(rules, "etcdDatabaseQuotaLowSpace").expr).toMatch(/etcd_server_quota_backend_bytes.*\* 100 > 95$/);
    expect(size).toBeLessThan(0.95 * etcdQuotaBackendBytes);
    // etcd's 2 GiB default would refuse writes long before 6e9: the warning could never fire.
    expect(size).toBeGreaterThan(2 * 1024 ** 3);
  });

  test("the certificate group records each node's expiry as a constant and alerts on the time left", () => {
    const group = rules.groups.find((g) => g.name === "kubeadm-certificates")!;
    expect(group.rules.filter((r) => "record" in r)).toEqual([
      {
        record: certificateExpiryMetric,
        expr: "vector(10800)",
        labels: { node: "prod-nbg1-cp-1", certificate: "admin.conf" },
      },
      {
        record: certificateExpiryMetric,
        expr: "vector(36000)",
        labels: { node: "prod-nbg1-cp-2", certificate: "apiserver" },
      },
    ]);
    expect(only(rules, "KubeadmCertificateExpiration", "warning").expr).toBe(
      `${certificateExpiryMetric} - time() < 7200`,
    );
    expect(only(rules, "KubeadmCertificateExpiration", "critical").expr).toBe(
      `${certificateExpiryMetric} - time() < 3600`,
    );
    // Before the nodes were read (a first preview) the alerts exist and have nothing to see.
    const unread = prometheusRules({ ...testSettings, certificates: { ...testSettings.certificates, expiry: [] } });
    expect(unread.groups.find((g) => g.name === "kubeadm-certificates")!.rules.map((r) => "alert" in r)).toEqual([
      true,
      true,
    ]);
  });

  test("the worker token group records the token's expiry by its public id and alerts on the time left", () => {
    const group = rules.groups.find((g) => g.name === "worker-join-token")!;
    expect(group.rules.filter((r) => "record" in r)).toEqual([
      { record: workerTokenExpiryMetric, expr: "vector(7200)", labels: { token_id: "abc123" } },
    ]);
    expect(workerTokenExpiryMetric).toBe("worker_join_token_expiration_timestamp_seconds");
    expect(only(rules, "WorkerJoinTokenExpiring", "warning").expr).toBe(`${workerTokenExpiryMetric} - time() < 3600`);
    expect(only(rules, "WorkerJoinTokenExpiring", "critical").expr).toBe(`${workerTokenExpiryMetric} - time() < 1800`);
    // No `for`: an expiry only comes closer, and a pending period would only delay the page.
    expect(only(rules, "WorkerJoinTokenExpiring", "critical").for).toBeUndefined();
    // Before the token command ran (a first preview) the alerts exist and have nothing to see.
    const unread = prometheusRules({
      ...testSettings,
      workerJoinToken: { ...testSettings.workerJoinToken, expiry: [] },
    });
    expect(unread.groups.find((g) => g.name === "worker-join-token")!.rules.map((r) => "alert" in r)).toEqual([
      true,
      true,
    ]);
  });

  test("the defrag CronJob setting reaches EtcdDefragJobFailed", () => {
    const file = prometheusRules({ ...testSettings, defrag: { namespace: "maintenance", cronJob: "defrag-etcd" } });
    const expr = only(file, "EtcdDefragJobFailed").expr;
    expect(expr).toContain('owner_name="defrag-etcd"');
    expect(expr).toContain('cronjob="defrag-etcd"');
    expect(expr).toContain('namespace="maintenance"');
    expect([expr.includes("etcd-defrag"), expr.includes("kube-system")]).toEqual([false, false]);
  });

  test("rendering is deterministic YAML that reads back as the same rules", () => {
    const text = renderRuleFile(rules);
    expect(renderRuleFile(prometheusRules(testSettings))).toBe(text);
    expect(parse(text)).toEqual(JSON.parse(JSON.stringify(rules)));
    expect(text.startsWith("groups:\n")).toBe(true);
  });
});

describe("promtool", () => {
  const promtool = requireTool("/usr/bin/promtool", "prometheus");
  const testFiles = fs
    .readdirSync(promtoolDir)
    .filter((f) => f.endsWith(".yaml"))
    .sort();
  let workDir: string;

  beforeAll(() => {
    // promtool resolves rule_files relative to the test file: the committed files run beside
    // the rendered rules.yaml.
    workDir = fs.mkdtempSync(path.join(os.tmpdir(), "prometheus-rules-"));
    fs.writeFileSync(path.join(workDir, "rules.yaml"), renderRuleFile(rules));
    for (const f of testFiles) fs.copyFileSync(path.join(promtoolDir, f), path.join(workDir, f));
  });

  afterAll(() => fs.rmSync(workDir, { recursive: true, force: true }));

  test("promtool check rules accepts the rendered file", () => {
    const result = spawnSync(promtool, ["check", "rules", "rules.yaml"], { cwd: workDir, encoding: "utf8" });
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    const count = rules.groups.reduce((n, g) => n + g.rules.length, 0);
    expect(result.stdout).toContain(`SUCCESS: ${count} rules found`);
  });

  test("promtool test rules passes every committed test file", () => {
    expect(testFiles.length).toBeGreaterThanOrEqual(4);
    const result = spawnSync(promtool, ["test", "rules", ...testFiles], { cwd: workDir, encoding: "utf8" });
    expect(result.stdout + result.stderr).not.toContain("FAILED");
    expect(result.status).toBe(0);
    expect(result.stdout.match(/SUCCESS/g)).toHaveLength(testFiles.length);
  });

  test("every (alert, severity) has a firing and a silent case, and no case names an unknown alert", () => {
    const cases = testFiles.flatMap((f) => {
      const parsed = parseTestFile(fs.readFileSync(path.join(promtoolDir, f), "utf8"));
      expect([f, parsed.rule_files]).toEqual([f, ["rules.yaml"]]);
      expect([f, parsed.evaluation_interval]).toEqual([f, "1m"]);
      for (const t of parsed.tests) expect([f, t.name, t.interval]).toEqual([f, t.name, "1m"]);
      return alertCases(f, parsed);
    });
    const known = new Set(alertNames(rules));
    expect(cases.filter((c) => !known.has(c.alertname))).toEqual([]);
    const missing = alerts(rules)
      .map((a) => ({ alert: a.alert, severity: a.labels.severity, ...coverage(cases, a.alert, a.labels.severity) }))
      .filter((c) => c.firing === 0 || c.silent === 0);
    expect(missing).toEqual([]);
  });
});
