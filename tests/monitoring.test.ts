/**
 * The monitoring part of the real program's graph under recording mocks: the release, the
 * PrometheusRule and the paging Secrets go through the cluster's Kubernetes provider, in the
 * right order, and the objects validate against the Prometheus Operator's schemas.
 *
 * What this cannot prove: that the chart's templates turn these values into the scrape jobs
 * named here (the job names follow the chart's values.yaml and templates as read, not a
 * rendered chart), and that Prometheus actually scrapes the targets on a live cluster.
 */
import { Alertmanager } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/Alertmanager";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { Namespace } from "kubernetes-models/v1/Namespace";
import { Secret } from "kubernetes-models/v1/Secret";
import { CertificateExpiry, expirySeries } from "../components/lifecycle/certificates";
import { parseConfig } from "../components/config";
import { etcdMetricsPort } from "../components/node/kubeadm";
import {
  alertmanagerConfigSecretManifest,
  kubePrometheusStackValues,
  pagerdutyRoutingKeyFile,
  pagingSettings,
  prometheusRuleManifest,
  ruleFile,
} from "../components/addons/monitoring/monitoring";
import { renderAlertmanagerConfig } from "../components/addons/monitoring/alertmanager";
import { alertNames, RuleFile, workerTokenExpiryMetric } from "../components/addons/monitoring/rules";
import { WorkerJoinExpiry, workerTokenId, workerTokenSeries } from "../components/lifecycle/workerJoin";
import { WorkerJoin } from "../components/outputs";
import { ProgramRun, RecordedResource } from "../tools/offline/harness";
import { artifacts, toDot, toPlan, toTree } from "../tools/offline/render";
import { loadStackConfig } from "../tools/offline/stackConfig";
import { byType, one, runStack } from "./support/program";
import { expectNoSecrets } from "./support/secrets";

const P = "hcloud-control-plane";
const K = {
  provider: "pulumi:providers:kubernetes",
  release: "kubernetes:helm.sh/v3:Release",
  rule: "kubernetes:monitoring.coreos.com/v1:PrometheusRule",
  secret: "kubernetes:core/v1:Secret",
  namespace: "kubernetes:core/v1:Namespace",
};

const prodConfig = (overrides: Record<string, unknown> = {}) => parseConfig(loadStackConfig("prod", { overrides }));
const children = (run: ProgramRun, component: string): RecordedResource[] =>
  run.resources.filter((r) => r.parent === one(run, component).urn).sort((a, b) => a.name.localeCompare(b.name));

describe("with kube-prometheus-stack (the default)", () => {
  let run: ProgramRun;
  beforeAll(async () => {
    run = await runStack();
  });

  test("the Monitoring component holds the namespace, both Secrets, the release and the rule", () => {
    expect(one(run, "monitoring").type).toBe(`${P}:index:Monitoring`);
    expect(children(run, "monitoring").map((r) => `${r.type} ${r.name}`)).toEqual([
      `${K.secret} monitoring-alertmanager-config`,
      `${K.release} monitoring-kube-prometheus-stack`,
      `${K.namespace} monitoring-namespace`,
      `${K.secret} monitoring-pagerduty`,
      `${K.rule} monitoring-rules`,
    ]);
  });

  test("everything goes through the cluster's provider, built from the fetched kubeconfig", () => {
    const provider = one(run, "access-provider");
    expect(provider.type).toBe(K.provider);
    for (const r of children(run, "monitoring")) expect([r.name, r.provider]).toEqual([r.name, provider.urn]);
  });

  test("the rule depends on the release; the release on the namespace and the pod network, the Secrets beside it", () => {
    const urn = (name: string) => one(run, name).urn;
    expect(one(run, "monitoring-rules").dependsOn).toContain(urn("monitoring-kube-prometheus-stack"));
    const release = one(run, "monitoring-kube-prometheus-stack");
    expect(release.dependsOn).toEqual(expect.arrayContaining([urn("monitoring-namespace"), urn("cni-cilium")]));
    // The operator reads the configuration Secret whenever it appears (monitoring.ts says where).
    for (const secret of ["monitoring-pagerduty", "monitoring-alertmanager-config"]) {
      expect([secret, release.dependsOn.includes(urn(secret))]).toEqual([secret, false]);
      expect(one(run, secret).dependsOn).toContain(urn("monitoring-namespace"));
    }
    // Not on the cloud controller: the release's atomic wait (900 s) outlasts the controller's own
    // (600 s), which lifts the uninitialized taint (monitoring.ts says why).
    expect(release.dependsOn).not.toContain(urn("cloud-controller-hcloud-cloud-controller-manager"));
    expect(one(run, "cloud-controller-hcloud-cloud-controller-manager").dependsOn).toContain(urn("cni-cilium"));
  });

  test("the release is the pinned chart from its repository, atomic, in the monitoring namespace", () => {
    expect(one(run, "monitoring-kube-prometheus-stack").inputs).toMatchObject({
      name: "kube-prometheus-stack",
      chart: "kube-prometheus-stack",
      version: "88.5.3",
      repositoryOpts: { repo: "https://prometheus-community.github.io/helm-charts" },
      namespace: "monitoring",
      createNamespace: false,
      atomic: true,
    });
  });

  test("the rule is named by the setting, labelled for the chart's rule selector, and holds the rule file", () => {
    const rule = one(run, "monitoring-rules");
    const cfg = prodConfig();
    expect(rule.inputs).toMatchObject({
      apiVersion: "monitoring.coreos.com/v1",
      kind: "PrometheusRule",
      metadata: { name: "control-plane-alerts", namespace: "monitoring", labels: { release: "kube-prometheus-stack" } },
    });
    // Plus the certificate expiry the stack read from the nodes (dayTwo.test.ts) and the worker
    // token's expiry its command reported (below).
    const expiry = expirySeries(run.outputs.certificateExpiry as CertificateExpiry);
    expect(expiry.map((e) => e.node)).toEqual(["prod-nbg1-cp-1", "prod-nbg1-cp-2", "prod-nbg1-cp-3"]);
    const token = workerTokenSeries(run.outputs.workerJoinExpiry as WorkerJoinExpiry);
    expect(rule.inputs.spec).toEqual(JSON.parse(JSON.stringify(ruleFile(cfg, expiry, token))));
  });

  test("the Alertmanager config Secret holds exactly the rendered configuration (the plan's manifests/alertmanager.yaml)", () => {
    const secret = one(run, "monitoring-alertmanager-config");
    expect(secret.revealedInputs.stringData).toEqual({
      "alertmanager.yaml": renderAlertmanagerConfig(pagingSettings(prodConfig())),
    });
  });

  test("the PagerDuty routing key is a secret, in its own Secret, and reaches nothing else", () => {
    const pagerduty = one(run, "monitoring-pagerduty");
    expect(pagerduty.inputs.stringData).toBe("[secret]");
    const placeholder = pagerduty.revealedInputs.stringData as Record<string, string>;
    for (const r of run.resources.filter((x) => x.name !== "monitoring-pagerduty")) {
      expect([r.name, JSON.stringify(r.revealedInputs).includes(placeholder.routingKey)]).toEqual([r.name, false]);
    }
  });
});

/**
 * The worker join token's expiry (components/lifecycle/workerJoin.ts) in the PrometheusRule. The mocked
 * token command prints the script's two lines, its expiry being a fixed clock plus --ttl-hours
 * (tools/offline/mocks.ts); scripts/node/worker-join-token.sh itself is run in outputs.test.ts.
 */
describe("the worker join token's expiry in the PrometheusRule", () => {
  let run: ProgramRun;
  beforeAll(async () => {
    run = await runStack();
  });
  const group = (r: ProgramRun) =>
    (one(r, "monitoring-rules").inputs.spec as RuleFile).groups.find((g) => g.name === "worker-join-token")!;
  const recorded = (r: ProgramRun) => group(r).rules.filter((x) => "record" in x);

  test("the rule records the expiry the token command reported, labelled with the token's public id", () => {
    const reported = run.revealedOutputs.workerJoin as WorkerJoin;
    expect(reported.expires).toBe("2026-12-21T00:00:00Z");
    const id = workerTokenId("prod-nbg1", "1", 720);
    expect(recorded(run)).toEqual([
      {
        record: workerTokenExpiryMetric,
        expr: `vector(${Date.parse(reported.expires) / 1000})`,
        labels: { token_id: id },
      },
    ]);
    expect(
      group(run)
        .rules.filter((x) => "alert" in x)
        .map((x) => ("alert" in x ? [x.alert, x.expr] : [])),
    ).toEqual([
      ["WorkerJoinTokenExpiring", `${workerTokenExpiryMetric} - time() < ${7 * 86400}`],
      ["WorkerJoinTokenExpiring", `${workerTokenExpiryMetric} - time() < 86400`],
    ]);
    // The same date, exported plain beside the secret workerJoin.
    expect(run.outputs.workerJoinExpiry).toEqual({ tokenId: id, expires: reported.expires });
    // The rule's spec comes from the token command's output, so it waits for that command.
    expect(one(run, "monitoring-rules").dependsOn).toContain(one(run, "worker-join-token").urn);
  });

  test("a new TTL is a new token: the rule follows its id and the date its command reports", async () => {
    const short = await runStack({ workerJoinTokenTtlHours: 24 });
    const reported = short.revealedOutputs.workerJoin as WorkerJoin;
    expect(reported.expires).toBe("2026-11-22T00:00:00Z");
    expect(recorded(short)).toEqual([
      {
        record: workerTokenExpiryMetric,
        expr: `vector(${Date.parse("2026-11-22T00:00:00Z") / 1000})`,
        labels: { token_id: workerTokenId("prod-nbg1", "1", 24) },
      },
    ]);
  });

  test("no part of the token's secret reaches the rule, the plain outputs or anything the plan writes", () => {
    const { token } = run.revealedOutputs.workerJoin as WorkerJoin;
    const secretHalf = token.slice(token.indexOf(".") + 1);
    expect(secretHalf).toMatch(/^[a-z0-9]{16}$/);
    const rule = one(run, "monitoring-rules");
    // The rule is plain (not masked as a secret), and holds neither the token nor its secret half.
    expect(rule.inputs.spec).not.toBe("[secret]");
    const plan = toPlan(run);
    const planFiles = artifacts(plan).map((a) => a.content);
    expectNoSecrets(
      {
        stdout: [JSON.stringify(rule.revealedInputs), JSON.stringify(run.outputs), JSON.stringify(plan)].join("\n"),
        stderr: [...planFiles, toDot(plan), toTree(plan)].join("\n"),
      },
      [token, secretHalf],
    );
    // The search sees the rendered rule: the plan's prometheus-rules.yaml carries the series.
    expect(planFiles.some((f) => f.includes(workerTokenExpiryMetric) && f.includes(token.slice(0, 6)))).toBe(true);
  });

  test("preview: the token's expiry is unknown, and the rule still registers with its spec unknown", async () => {
    const preview = await runStack({}, { preview: true });
    expect(preview.outputs.workerJoinExpiry).toBe("[unknown]");
    const rule = one(preview, "monitoring-rules");
    expect(rule.type).toBe(K.rule);
    expect(rule.inputs.spec).toBe("[unknown]");
  });
});

describe("the chart's values for kubeadm", () => {
  const cfg = prodConfig();
  const values = kubePrometheusStackValues(cfg) as Record<string, Record<string, unknown>>;
  const ips = ["10.20.1.11", "10.20.1.12", "10.20.1.13"];

  test("etcd is scraped over HTTP on 2381 at the control-plane private IPs", () => {
    expect(etcdMetricsPort).toBe(2381);
    expect(values.kubeEtcd).toMatchObject({
      enabled: true,
      endpoints: ips,
      service: { port: 2381, targetPort: 2381 },
      serviceMonitor: { scheme: "http" },
    });
  });

  test("controller-manager 10257 and scheduler 10259 over HTTPS at the same IPs; kube-state-metrics on", () => {
    expect(values.kubeControllerManager).toMatchObject({
      endpoints: ips,
      service: { port: 10257, targetPort: 10257 },
      serviceMonitor: { https: true, insecureSkipVerify: true },
    });
    expect(values.kubeScheduler).toMatchObject({
      endpoints: ips,
      service: { port: 10259, targetPort: 10259 },
      serviceMonitor: { https: true, insecureSkipVerify: true },
    });
    expect(values.kubeStateMetrics).toEqual({ enabled: true });
    expect(values.kubeProxy).toEqual({ enabled: false });
  });

  test("the chart's own etcd and control-plane alerts give way to this program's", () => {
    expect(values.defaultRules.rules).toMatchObject({ etcd: false, kubeControllerManager: false });
    const disabled = values.defaultRules.disabled as Record<string, boolean>;
    expect(Object.keys(disabled).sort()).toEqual(alertNames(ruleFile(cfg)));
  });

  test("the chart keeps its kubernetes-mixin API server rules; this program does not ship a second copy", () => {
    const disabled = Object.keys(values.defaultRules.disabled as Record<string, boolean>);
    const groups = ruleFile(cfg).groups.map((g) => g.name);
    for (const name of apiserverMixinAlerts) {
      expect([name, disabled.includes(name), alertNames(ruleFile(cfg)).includes(name)]).toEqual([name, false, false]);
    }
    expect(groups).not.toContain("kube-apiserver-burnrate.rules");
    // The chart's switches for those groups stay at their defaults (on).
    for (const key of ["kubeApiserverBurnrate", "kubeApiserverSlos", "kubernetesSystem"]) {
      expect([key, (values.defaultRules.rules as Record<string, boolean>)[key]]).toEqual([key, undefined]);
    }
  });

  test("Alertmanager loads this program's config Secret and mounts the routing key it names", () => {
    const spec = (values.alertmanager as { alertmanagerSpec: Record<string, unknown> }).alertmanagerSpec;
    expect(spec).toMatchObject({ useExistingSecret: true, configSecret: "alertmanager-paging-config" });
    expect(spec.secrets).toEqual(["alertmanager-pagerduty"]);
    // The business-hours location needs a tz database inside the pod: the node's, read-only.
    expect(spec.volumeMounts).toEqual([{ name: "zoneinfo", mountPath: "/usr/share/zoneinfo", readOnly: true }]);
    expect(pagerdutyRoutingKeyFile).toBe("/etc/alertmanager/secrets/alertmanager-pagerduty/routingKey");
    const config = alertmanagerConfigSecretManifest(cfg).stringData["alertmanager.yaml"];
    expect(config).toContain(`routing_key_file: ${pagerdutyRoutingKeyFile}`);
    expect(config).toContain("location: Europe/Berlin");
  });
});

describe("schemas (@kubernetes-models)", () => {
  const cfg = prodConfig();

  test("the PrometheusRule validates, and a broken one does not", () => {
    const manifest = prometheusRuleManifest(cfg, ruleFile(cfg));
    expect(() => new PrometheusRule(manifest as never).validate()).not.toThrow();
    const broken = { ...manifest, spec: { groups: [{ name: "x", rules: [{ alert: "A" }] }] } };
    expect(() => new PrometheusRule(broken as never).validate()).toThrow();
  });

  test("the Alertmanager spec the values give validates as an Alertmanager object", () => {
    const values = kubePrometheusStackValues(cfg) as { alertmanager: { alertmanagerSpec: Record<string, unknown> } };
    const { useExistingSecret, ...spec } = values.alertmanager.alertmanagerSpec;
    expect(useExistingSecret).toBe(true);
    const object = { metadata: { name: "kube-prometheus-stack-alertmanager", namespace: "monitoring" }, spec };
    expect(() => new Alertmanager(object as never).validate()).not.toThrow();
    const broken = { ...object, spec: { ...spec, secrets: "alertmanager-pagerduty" } };
    expect(() => new Alertmanager(broken as never).validate()).toThrow();
  });

  test("the namespace and the config Secret validate", () => {
    expect(() => new Secret(alertmanagerConfigSecretManifest(cfg) as never).validate()).not.toThrow();
    expect(() => new Namespace({ metadata: { name: cfg.monitoring.namespace } }).validate()).not.toThrow();
  });
});

/** kubernetes-mixin alerts the chart ships and an existing operator may lack (rules.ts apiserverMixinGroups). */
const apiserverMixinAlerts = [
  "KubeAPIErrorBudgetBurn",
  "KubeAPITerminatedRequests",
  "KubeAggregatedAPIDown",
  "KubeAggregatedAPIErrors",
  "KubeClientErrors",
  "KubeVersionMismatch",
];

describe("with an existing Prometheus Operator", () => {
  let run: ProgramRun;
  beforeAll(async () => {
    run = await runStack({ monitoring: "existing-operator", prometheusRuleLabels: ["prometheus=platform"] });
  });

  test("no release, namespace or paging Secret is created; only the rule, with the selector's label", () => {
    expect(byType(run, K.release).map((r) => r.name)).toEqual([
      "cloud-controller-hcloud-cloud-controller-manager",
      "cni-cilium",
      "csi-hcloud-csi",
    ]);
    expect(children(run, "monitoring").map((r) => r.name)).toEqual(["monitoring-rules"]);
    const rule = one(run, "monitoring-rules");
    expect(rule.inputs.metadata).toEqual({
      name: "control-plane-alerts",
      namespace: "monitoring",
      labels: { prometheus: "platform", "app.kubernetes.io/managed-by": "pulumi" },
    });
    expect(rule.dependsOn.filter((u) => u.includes("Release"))).toEqual([]);
    expect(rule.provider).toBe(one(run, "access-provider").urn);
  });

  test("the rule also carries the kubernetes-mixin API server alerts and their burn-rate recording rules", () => {
    const spec = one(run, "monitoring-rules").inputs.spec as RuleFile;
    const names = alertNames(spec);
    for (const name of apiserverMixinAlerts) expect([name, names.includes(name)]).toEqual([name, true]);
    const recorded = spec.groups
      .find((g) => g.name === "kube-apiserver-burnrate.rules")!
      .rules.map((r) => ("record" in r ? r.record : ""));
    expect(new Set(recorded)).toEqual(
      new Set(["5m", "30m", "1h", "2h", "6h", "1d", "3d"].map((w) => `apiserver_request:burnrate${w}`)),
    );
  });
});
