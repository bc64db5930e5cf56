/** Alerting rules, the monitoring stack and paging. */
import type { ClusterConfig } from "./index";
import { businessHoursErrors } from "../addons/monitoring/alertmanager";
import { complete, inRange, integer, isOneOf, list, live, oneOf, Problems, Reader, string } from "./schema";

export const monitoringChoices = ["kube-prometheus-stack", "existing-operator"] as const;
export type MonitoringChoice = (typeof monitoringChoices)[number];

const httpUrl = /^https?:\/\/[^\s"'<>]+$/;
/**
 * The one rule of every URL setting: `http://` or `https://`, no whitespace, quotes or angle
 * brackets, and a URL the WHATWG URL parser (`new URL`, what Node and browsers use) accepts,
 * which for http(s) means a non-empty host. `must` is the setting's own "must be ..." text.
 */
const httpUrlRule =
  (must: string) =>
  (v: string): string | undefined => {
    if (!httpUrl.test(v)) return must;
    const authority = /^https?:\/\/([^/?#]*)/i.exec(v)?.[1] ?? "";
    const host = authority.slice(authority.lastIndexOf("@") + 1).replace(/:\d*$/, "");
    if (host === "") return `${must}: it has no host`;
    let url: URL;
    try {
      url = new URL(v);
    } catch {
      return `${must}: the URL parser refuses it (is the host a valid name or address?)`;
    }
    return url.protocol === "http:" || url.protocol === "https:" ? undefined : must;
  };

const dnsLabel = (v: string) =>
  /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(v)
    ? undefined
    : "must be a Kubernetes name: 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit";

const label =
  /^((?:[a-z0-9]([a-z0-9.-]*[a-z0-9])?\/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)=([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$/;
const labelEntries = (v: string[]): Problems =>
  v.flatMap((entry, i) =>
    label.test(entry) ? [] : [`entry ${i + 1} (${entry}) must be key=value with Kubernetes label syntax`],
  );

const rules = live("the PrometheusRule is updated in place");
const paging = live("the Alertmanager configuration Secret is updated in place");

export const monitoringSettings = {
  monitoring: string(
    live("installs or removes the kube-prometheus-stack Helm release; the rules follow to the chosen operator"),
    oneOf(monitoringChoices),
  ),
  monitoringNamespace: string(live("the monitoring resources are recreated in the new namespace"), dnsLabel),
  prometheusRuleName: string(live("the PrometheusRule is replaced under the new name"), dnsLabel),
  prometheusRuleLabels: list(rules, labelEntries),
  etcdJobName: string(rules, (v) =>
    /^[A-Za-z0-9_.:/-]+$/.test(v)
      ? undefined
      : "must be the job label of the etcd scrape job: letters, digits and _ . : / - (kube-prometheus-stack on kubeadm: kube-etcd)",
  ),
  runbookBaseUrl: string(rules, httpUrlRule("must be the http(s) URL of this repository's docs/runbooks directory")),
  backupAlertMarginMinutes: integer(rules, inRange(10, 1440, " minutes")),
  alertTimezone: string(paging),
  businessDays: list(paging),
  businessHours: list(paging),
  onCallWebhookUrl: string(paging, (v) => (v === "" ? undefined : httpUrlRule("must be an http(s) URL")(v))),
  // Read only to report it missing; loadSecrets hands it on as a Pulumi secret.
  pagerdutyRoutingKey: string(paging),
};

/**
 * Reads the monitoring settings and the rules between them: an existing operator needs the
 * labels its ruleSelector matches, the chart's release label is added otherwise; business
 * hours are checked together; the on-call webhook is required while paging is deployed.
 */
export function readMonitoring(reader: Reader): ClusterConfig["monitoring"] | undefined {
  const values = reader.read(monitoringSettings);
  const mode = values.monitoring;
  if (mode === "existing-operator" && values.prometheusRuleLabels?.length === 0) {
    reader.problem(
      "prometheusRuleLabels",
      [],
      "must list the labels your Prometheus' ruleSelector matches (e.g. release=<your release>) while monitoring is existing-operator, or the operator ignores the rules",
    );
    values.prometheusRuleLabels = undefined;
  }
  const { alertTimezone: timezone, businessDays, businessHours } = values;
  if (timezone !== undefined && businessDays !== undefined && businessHours !== undefined) {
    const errors = businessHoursErrors({ timezone, businessDays, businessHours });
    for (const e of errors.timezone) reader.problem("alertTimezone", timezone, e);
    for (const e of errors.businessDays) reader.problem("businessDays", businessDays, e);
    for (const e of errors.businessHours) reader.problem("businessHours", businessHours, e);
    if (Object.values(errors).some((e) => e.length > 0)) values.alertTimezone = undefined;
  }
  if (values.onCallWebhookUrl === "" && mode === "kube-prometheus-stack") {
    reader.problem(
      "onCallWebhookUrl",
      "",
      "must be set while monitoring is kube-prometheus-stack: business-hours criticals and all warnings go there",
    );
    values.onCallWebhookUrl = undefined;
  }
  const v = complete(monitoringSettings, values);
  if (!v || !isOneOf(monitoringChoices, v.monitoring)) return undefined;
  return {
    mode: v.monitoring,
    namespace: v.monitoringNamespace,
    ruleName: v.prometheusRuleName,
    ruleLabels: ruleLabels(v.prometheusRuleLabels, v.monitoring),
    etcdJob: v.etcdJobName,
    runbookBaseUrl: v.runbookBaseUrl.replace(/\/+$/, ""),
    backupAlertMarginMinutes: v.backupAlertMarginMinutes,
    paging: {
      timezone: v.alertTimezone,
      businessDays: v.businessDays,
      businessHours: v.businessHours,
      onCallWebhookUrl: v.onCallWebhookUrl,
    },
  };
}

/** `key=value` entries as labels; kube-prometheus-stack selects rules by its release label. */
function ruleLabels(entries: string[], mode: MonitoringChoice): Record<string, string> {
  const labels = Object.fromEntries(
    entries.map((entry) => {
      const m = label.exec(entry);
      return [m?.[1] ?? entry, m?.[4] ?? ""];
    }),
  );
  return mode === "kube-prometheus-stack" ? { ...labels, release: "kube-prometheus-stack" } : labels;
}
