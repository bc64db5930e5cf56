/**
 * Alertmanager configuration (`alertmanager.yaml`) for kube-prometheus-stack's Alertmanager:
 * the paging policy for the control plane.
 *
 * Policy: a critical alert from this program's control-plane rules pages PagerDuty outside
 * business hours and goes to the on-call webhook during them; every other critical or warning
 * alert goes to the on-call webhook; kube-prometheus-stack's always-on alerts and `info`
 * alerts go nowhere. Business hours are one Alertmanager time interval with a `location`, so
 * Alertmanager itself decides, at notification time, which of the two receivers is live.
 *
 * Pure: a plain object serialized deterministically. The PagerDuty routing key is never in
 * it: the program mounts it from its own Secret and the config names only the file
 * (`routing_key_file`), so the rendered text can be logged, diffed and stored in state.
 *
 * Inputs come from the validated stack configuration: components/config/index.ts reports
 * {@link businessHoursErrors} under each setting's name before anything is rendered.
 */
import { stringify } from "yaml";

export interface PagingSettings {
  clusterName: string;
  /** IANA timezone of the business hours, e.g. "Europe/Berlin". */
  timezone: string;
  /** Alertmanager weekday ranges, e.g. ["monday:friday"]. */
  businessDays: string[];
  /** "HH:MM-HH:MM" ranges in `timezone`, e.g. ["09:00-17:00"]. */
  businessHours: string[];
  /** The on-call team's webhook receiver (business hours, and all warnings). */
  onCallWebhookUrl: string;
  /** Path of the PagerDuty Events v2 routing key inside the Alertmanager pod. */
  pagerdutyRoutingKeyFile: string;
  /** Alert names this program ships for the control plane (the only ones that page). */
  controlPlaneAlerts: string[];
  /** Optional overrides, for tests only: group_wait, group_interval, repeat_interval, and the PagerDuty events URL. */
  timing?: { groupWait?: string; groupInterval?: string; repeatInterval?: string };
  pagerdutyUrl?: string;
}

/** A routing-tree node (Alertmanager `route`); unset fields inherit from the parent. */
export interface AlertmanagerRoute {
  receiver?: string;
  group_by?: string[];
  group_wait?: string;
  group_interval?: string;
  repeat_interval?: string;
  matchers?: string[];
  continue?: boolean;
  active_time_intervals?: string[];
  mute_time_intervals?: string[];
  routes?: AlertmanagerRoute[];
}

export interface WebhookConfig {
  url: string;
  send_resolved: boolean;
}

export interface PagerdutyConfig {
  routing_key_file: string;
  url: string;
  send_resolved: boolean;
  /** Go templates, expanded by Alertmanager per notification. */
  severity: string;
  description: string;
  client: string;
  component: string;
  group: string;
  class: string;
  details: Record<string, string>;
}

export interface AlertmanagerReceiver {
  name: string;
  webhook_configs?: WebhookConfig[];
  pagerduty_configs?: PagerdutyConfig[];
}

export interface InhibitRule {
  source_matchers: string[];
  target_matchers: string[];
  equal: string[];
}

export interface TimeIntervalSpec {
  weekdays: string[];
  times: { start_time: string; end_time: string }[];
  /** IANA name; Alertmanager loads it with Go's `time.LoadLocation`. */
  location: string;
}

export interface AlertmanagerConfig {
  route: AlertmanagerRoute;
  inhibit_rules: InhibitRule[];
  receivers: AlertmanagerReceiver[];
  time_intervals: { name: string; time_intervals: TimeIntervalSpec[] }[];
}

/** Receiver names, exported so tests and docs use the same words. */
export const receivers = {
  /** The on-call team's webhook. */
  onCall: "on-call",
  /** PagerDuty Events API v2. */
  pagerduty: "pagerduty",
  /** No integrations: alerts routed here are dropped on purpose. */
  none: "none",
} as const;

/** Name of the time interval that both paging routes refer to. */
export const businessHoursInterval = "business-hours";

/** kube-prometheus-stack's always-firing alerts (dead man's switch, info inhibitor). */
const alwaysOnAlerts = ["InfoInhibitor", "Watchdog"] as const;

/** PagerDuty's Events API v2 endpoint (Alertmanager's default, written out for clarity). */
const pagerdutyEventsUrl = "https://events.pagerduty.com/v2/enqueue";

/** Alertmanager's own defaults, except repeat_interval (4h, as kube-prometheus-stack). */
const defaultTiming = { groupWait: "30s", groupInterval: "5m", repeatInterval: "4h" } as const;

/**
 * One notification per alert name and namespace. Alerts carry no `cluster` label (one
 * Alertmanager serves one cluster, whose name the PagerDuty event carries), and grouping by
 * `instance` would turn one outage of three control-plane nodes into three pages.
 */
const groupBy = ["alertname", "namespace"] as const;

/** Weekday numbers as Alertmanager counts them: its weeks run sunday (0) to saturday (6). */
const weekdays = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"] as const;

/** Alertmanager's own pattern for a time of day (timeinterval.go); 24:00 only as an end. */
const timeOfDay = /^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$/;

/** Prometheus alert names; anything else would need escaping inside a matcher regex. */
const alertName = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The routing tree. A critical that is still firing when business hours end is sent to
 * PagerDuty at the next group_interval: the interval is checked on every flush, not once.
 */
export function alertmanagerConfig(settings: PagingSettings): AlertmanagerConfig {
  const pageable = [...new Set(settings.controlPlaneAlerts)].sort();
  if (pageable.length === 0) throw new Error("controlPlaneAlerts is empty: no alert would ever page");
  const badName = pageable.find((name) => !alertName.test(name));
  if (badName !== undefined) throw new Error(`controlPlaneAlerts: ${JSON.stringify(badName)} is not an alert name`);
  const timing = { ...defaultTiming, ...settings.timing };

  return {
    route: {
      // Anything no child route claims (critical, warning, or no severity at all) reaches a
      // person rather than being dropped silently.
      receiver: receivers.onCall,
      group_by: [...groupBy],
      group_wait: timing.groupWait,
      group_interval: timing.groupInterval,
      repeat_interval: timing.repeatInterval,
      routes: [
        { receiver: receivers.none, matchers: [`alertname=~"${alwaysOnAlerts.join("|")}"`] },
        { receiver: receivers.none, matchers: ['severity="info"'] },
        {
          matchers: ['severity="critical"', `alertname=~"${pageable.join("|")}"`],
          // Time intervals do not take part in matching, only in sending: both children must
          // match (hence `continue` on the first), and the interval silences one of them.
          routes: [
            { receiver: receivers.onCall, active_time_intervals: [businessHoursInterval], continue: true },
            { receiver: receivers.pagerduty, mute_time_intervals: [businessHoursInterval] },
          ],
        },
      ],
    },
    inhibit_rules: [
      // kube-prometheus style: while the critical variant fires, its warning adds nothing.
      // Labels missing on both sides count as equal, so alerts without namespace still pair.
      {
        source_matchers: ['severity="critical"'],
        target_matchers: ['severity="warning"'],
        equal: ["alertname", "namespace", "instance"],
      },
    ],
    receivers: [
      { name: receivers.onCall, webhook_configs: [{ url: settings.onCallWebhookUrl, send_resolved: true }] },
      { name: receivers.pagerduty, pagerduty_configs: [pagerduty(settings)] },
      { name: receivers.none },
    ],
    time_intervals: [
      {
        name: businessHoursInterval,
        time_intervals: [
          {
            weekdays: [...settings.businessDays],
            times: settings.businessHours.map((range) => {
              const parsed = parseTimeRange(range);
              if (typeof parsed === "string") throw new Error(`businessHours ${JSON.stringify(range)}: ${parsed}`);
              return { start_time: parsed.start, end_time: parsed.end };
            }),
            location: settings.timezone,
          },
        ],
      },
    ],
  };
}

/** The event PagerDuty shows: cluster and alert name up front, the rule's summary after. */
function pagerduty(settings: PagingSettings): PagerdutyConfig {
  const cluster = settings.clusterName;
  return {
    routing_key_file: settings.pagerdutyRoutingKeyFile,
    url: settings.pagerdutyUrl ?? pagerdutyEventsUrl,
    // A resolved alert resolves the incident (same dedup key), so nobody is woken twice.
    send_resolved: true,
    // PagerDuty knows critical, error, warning and info; anything unexpected pages as critical.
    severity:
      '{{ if eq .CommonLabels.severity "warning" }}warning{{ else if eq .CommonLabels.severity "info" }}info' +
      "{{ else }}critical{{ end }}",
    description:
      `[${cluster}] {{ .CommonLabels.alertname }}{{ with .CommonAnnotations.summary }}: {{ . }}{{ end }}` +
      " ({{ .Alerts.Firing | len }} firing)",
    client: `Alertmanager (${cluster})`,
    component: "control-plane",
    group: cluster,
    class: "{{ .CommonLabels.alertname }}",
    details: { cluster },
  };
}

/** `alertmanager.yaml` text. YAML 1.1 quoting, because Alertmanager reads it with yaml.v2. */
export function renderAlertmanagerConfig(settings: PagingSettings): string {
  return stringify(alertmanagerConfig(settings), {
    sortMapEntries: true,
    lineWidth: 0,
    version: "1.1",
    aliasDuplicateObjects: false,
  });
}

/** Parses and checks business-hours settings; returns problems as strings (empty when valid) so config validation can report them with the setting's name. */
export function businessHoursErrors(settings: Pick<PagingSettings, "timezone" | "businessDays" | "businessHours">): {
  timezone: string[];
  businessDays: string[];
  businessHours: string[];
} {
  return {
    timezone: timezoneErrors(settings.timezone),
    businessDays: listErrors(settings.businessDays, weekdayRangeError, '["monday:friday"]'),
    businessHours: listErrors(settings.businessHours, (v) => {
      const parsed = parseTimeRange(v);
      return typeof parsed === "string" ? parsed : undefined;
    }),
  };
}

function listErrors(values: unknown, check: (v: string) => string | undefined, example = '["09:00-17:00"]'): string[] {
  if (!Array.isArray(values)) return [`must be a list of strings, e.g. ${example}`];
  if (values.length === 0) return [`must list at least one entry, e.g. ${example}`];
  return values.flatMap((v) => {
    if (typeof v !== "string") return [`entry ${JSON.stringify(v)} must be a string`];
    const error = check(v);
    return error === undefined ? [] : [`entry ${JSON.stringify(v)}: ${error}`];
  });
}

/**
 * Alertmanager loads `location` with Go's `time.LoadLocation`: IANA names, case-sensitive.
 * "Local" is refused because it would mean the pod's zone (UTC in the image), not an office.
 */
function timezoneErrors(timezone: unknown): string[] {
  const allowed = 'must be an IANA time zone name such as "Europe/Berlin" or "UTC"';
  if (typeof timezone !== "string" || timezone === "") return [allowed];
  if (timezone === "Local") return [`${allowed}; "Local" would be the Alertmanager pod's zone, not a chosen one`];
  // Intl also takes offsets such as "+01:00", which Go does not; IANA names start with a letter.
  if (!/^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+)*$/.test(timezone)) return [allowed];
  let resolved: string;
  try {
    resolved = new Intl.DateTimeFormat(undefined, { timeZone: timezone }).resolvedOptions().timeZone;
  } catch {
    return [`${allowed}; this one is unknown`];
  }
  // Intl ignores case, Go does not: "europe/berlin" fails to load in Alertmanager.
  if (resolved !== timezone && resolved.toLowerCase() === timezone.toLowerCase()) {
    return [`${allowed}; names are case-sensitive, write ${JSON.stringify(resolved)}`];
  }
  return [];
}

/** Alertmanager's rules: a day or `first:last` by name, first not after last in a sunday-first week. */
function weekdayRangeError(range: string): string | undefined {
  const names = `day names are ${weekdays.join(", ")}`;
  const parts = range.toLowerCase().split(":");
  if (parts.length > 2) return `must be one day or a "first:last" range, e.g. "monday:friday"`;
  const days = parts.map((p) => weekdays.indexOf(p as (typeof weekdays)[number]));
  const unknown = parts.find((_, i) => days[i] < 0);
  if (unknown !== undefined) return `${JSON.stringify(unknown)} is not a day: ${names}`;
  if (days.length === 2 && days[0] > days[1]) {
    return (
      "first day is after the last: Alertmanager's weeks run sunday to saturday, so a range over " +
      'the weekend must be split, e.g. "friday:saturday" and "sunday:monday"'
    );
  }
  return undefined;
}

/** "HH:MM-HH:MM" as Alertmanager's start_time/end_time: 00:00 to 24:00, start before end. */
function parseTimeRange(range: string): { start: string; end: string } | string {
  const format = 'must be "HH:MM-HH:MM" (24-hour, 00:00 to 24:00), e.g. "09:00-17:00"';
  const parts = range.split("-");
  if (parts.length !== 2) return format;
  const [start, end] = parts.map((p) => p.trim());
  if (!timeOfDay.test(start) || !timeOfDay.test(end)) return format;
  if (minutes(start) >= minutes(end)) {
    return 'start must be before end; ranges cannot cross midnight, split them, e.g. "22:00-24:00" and "00:00-06:00"';
  }
  return { start, end };
}

function minutes(time: string): number {
  const [h, m] = time.split(":").map(Number);
  return h * 60 + m;
}
