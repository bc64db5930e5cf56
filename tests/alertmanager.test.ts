/**
 * The paging policy (components/addons/monitoring/alertmanager.ts), checked by Alertmanager itself:
 * `amtool check-config` loads the rendered file with Alertmanager 0.25's own config code,
 * `amtool config routes test` resolves receivers for representative alerts, and a real
 * Alertmanager on 127.0.0.1 delivers alerts to a capture server standing in for the on-call
 * webhook and for PagerDuty's Events API, with business hours placed around "now" (or away
 * from it) in a zone far from UTC, so only a correct `location` gives the expected receiver.
 *
 * What this cannot prove: that kube-prometheus-stack's Alertmanager (another version, in its
 * image) loads the Secret the same way and finds the zone database and the mounted key file;
 * that PagerDuty accepts the event (its shape is Alertmanager's, only the URL is ours).
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  alertmanagerConfig,
  businessHoursErrors,
  businessHoursInterval,
  PagingSettings,
  receivers,
  renderAlertmanagerConfig,
} from "../components/addons/monitoring/alertmanager";
import {
  alertmanagerBinary,
  AlertmanagerProcess,
  amtoolBinary,
  Captured,
  CaptureServer,
  hhmm,
  sleep,
  waitUntil,
  wallClock,
} from "./support/alertmanager";
import { pyyamlLoadAll, requireTool } from "./support/tools";

const controlPlaneAlerts = ["EtcdMembersDown", "EtcdNoLeader", "KubeAPIDown"];

const base: PagingSettings = {
  clusterName: "prod",
  timezone: "Europe/Berlin",
  businessDays: ["monday:friday"],
  businessHours: ["09:00-12:00", "13:00-17:00"],
  onCallWebhookUrl: "https://hooks.example.com/on-call",
  pagerdutyRoutingKeyFile: "/etc/alertmanager/secrets/pagerduty/routing-key",
  controlPlaneAlerts,
};

const noErrors = { timezone: [], businessDays: [], businessHours: [] };

describe("businessHoursErrors", () => {
  it("accepts IANA zones, Alertmanager's weekday ranges and HH:MM-HH:MM ranges up to 24:00", () => {
    for (const timezone of ["Europe/Berlin", "UTC", "America/Argentina/Buenos_Aires", "Etc/GMT+1", "Asia/Kolkata"]) {
      expect(businessHoursErrors({ ...base, timezone })).toEqual(noErrors);
    }
    const good = {
      timezone: "Europe/Berlin",
      businessDays: ["monday:friday", "saturday", "sunday:saturday", "Monday:Wednesday", "friday:friday"],
      businessHours: ["00:00-24:00", "09:00-17:00", "22:00-24:00", "08:30-08:31"],
    };
    expect(businessHoursErrors(good)).toEqual(noErrors);
  });

  it("rejects unknown or non-Go zones, saying what is allowed", () => {
    const errors = (timezone: string) => businessHoursErrors({ ...base, timezone }).timezone;
    expect(errors("Europe/Atlantis")).toEqual([
      'must be an IANA time zone name such as "Europe/Berlin" or "UTC"; this one is unknown',
    ]);
    expect(errors("Local")[0]).toMatch(/"Local" would be the Alertmanager pod's zone/);
    expect(errors("")[0]).toMatch(/must be an IANA time zone name/);
    expect(errors("+01:00")[0]).toMatch(/must be an IANA time zone name/);
    // Intl takes any case, Go's time.LoadLocation does not (amtool: "unknown time zone europe/berlin").
    expect(errors("europe/berlin")).toEqual([
      'must be an IANA time zone name such as "Europe/Berlin" or "UTC"; names are case-sensitive, write "Europe/Berlin"',
    ]);
  });

  it("rejects weekday ranges Alertmanager rejects, naming each bad entry", () => {
    const errors = (businessDays: string[]) => businessHoursErrors({ ...base, businessDays }).businessDays;
    expect(errors(["monday:friday", "mon"])).toEqual([
      'entry "mon": "mon" is not a day: day names are sunday, monday, tuesday, wednesday, thursday, friday, saturday',
    ]);
    // Alertmanager's weeks start on sunday (0): "monday:sunday" is "start day cannot be before end day".
    expect(errors(["monday:sunday"])[0]).toMatch(
      /^entry "monday:sunday": first day is after the last: Alertmanager's weeks run sunday to saturday/,
    );
    expect(errors(["monday:tuesday:friday"])[0]).toMatch(/must be one day or a "first:last" range/);
    expect(errors([])).toEqual(['must list at least one entry, e.g. ["monday:friday"]']);
    expect(errors(["monday", 5 as unknown as string])).toEqual(["entry 5 must be a string"]);
  });

  it("rejects time ranges Alertmanager rejects, naming each bad entry", () => {
    const errors = (businessHours: string[]) => businessHoursErrors({ ...base, businessHours }).businessHours;
    const format = 'must be "HH:MM-HH:MM" (24-hour, 00:00 to 24:00), e.g. "09:00-17:00"';
    expect(errors(["9:00-17:00"])).toEqual([`entry "9:00-17:00": ${format}`]);
    expect(errors(["09:00-24:01", "09:60-10:00", "25:00-26:00", "0900-1700", "09:00"])).toHaveLength(5);
    expect(errors(["17:00-09:00"])).toEqual([
      'entry "17:00-09:00": start must be before end; ranges cannot cross midnight, split them, e.g. "22:00-24:00" and "00:00-06:00"',
    ]);
    expect(errors(["09:00-09:00"])[0]).toMatch(/start must be before end/);
    expect(errors(["24:00-24:00"])[0]).toMatch(/start must be before end/);
    expect(errors([])).toEqual(['must list at least one entry, e.g. ["09:00-17:00"]']);
  });

  it("agrees with Alertmanager: what it accepts loads, what it rejects fails check-config", () => {
    requireTool(amtoolBinary, "prometheus-alertmanager");
    const check = (settings: Partial<PagingSettings>) => {
      const text = renderAlertmanagerConfig({ ...base, ...settings });
      return amtool(["check-config"], text).status;
    };
    expect(check({ businessDays: ["sunday:saturday"], businessHours: ["00:00-24:00"], timezone: "Etc/GMT+1" })).toBe(0);
    // The renderer does not re-validate (components/config/index.ts does); Alertmanager agrees these are wrong.
    expect(check({ businessDays: ["monday:sunday"] })).not.toBe(0);
    expect(check({ timezone: "europe/berlin" })).not.toBe(0);
  });
});

describe("alertmanagerConfig", () => {
  it("routes control-plane criticals to both paging routes, split by the business-hours interval", () => {
    const config = alertmanagerConfig(base);
    const paging = config.route.routes![2];
    expect(paging.matchers).toEqual(['severity="critical"', 'alertname=~"EtcdMembersDown|EtcdNoLeader|KubeAPIDown"']);
    expect(paging.routes).toEqual([
      { receiver: receivers.onCall, active_time_intervals: [businessHoursInterval], continue: true },
      { receiver: receivers.pagerduty, mute_time_intervals: [businessHoursInterval] },
    ]);
    expect(config.time_intervals).toEqual([
      {
        name: businessHoursInterval,
        time_intervals: [
          {
            weekdays: ["monday:friday"],
            times: [
              { start_time: "09:00", end_time: "12:00" },
              { start_time: "13:00", end_time: "17:00" },
            ],
            location: "Europe/Berlin",
          },
        ],
      },
    ]);
  });

  it("refuses an empty or malformed controlPlaneAlerts list (nothing would page)", () => {
    expect(() => alertmanagerConfig({ ...base, controlPlaneAlerts: [] })).toThrow(/no alert would ever page/);
    expect(() => alertmanagerConfig({ ...base, controlPlaneAlerts: ["Kube.*"] })).toThrow(/not an alert name/);
  });

  it("renders deterministically, YAML 1.1-safe (PyYAML reads the same object), with the key file and never a key", () => {
    const text = renderAlertmanagerConfig(base);
    expect(renderAlertmanagerConfig({ ...base, controlPlaneAlerts: [...controlPlaneAlerts].reverse() })).toBe(text);
    expect(pyyamlLoadAll(text)).toEqual([JSON.parse(JSON.stringify(alertmanagerConfig(base)))]);
    expect(text).toContain(`routing_key_file: ${base.pagerdutyRoutingKeyFile}`);
    expect(text).not.toMatch(/routing_key:|service_key/);
    expect(text).toContain("url: https://events.pagerduty.com/v2/enqueue");
  });
});

// ---------------------------------------------------------------------------------------------
// amtool: Alertmanager's own config loader and router.

function amtool(args: string[], configText: string) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "amtool-"));
  try {
    const file = path.join(dir, "alertmanager.yaml");
    fs.writeFileSync(file, configText);
    const result = spawnSync(
      amtoolBinary,
      args[0] === "check-config" ? [...args, file] : [...args, `--config.file=${file}`],
      {
        encoding: "utf8",
        timeout: 20_000,
      },
    );
    return { status: result.status, stdout: result.stdout, output: `${result.stdout}${result.stderr}` };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe("amtool", () => {
  beforeAll(() => requireTool(amtoolBinary, "prometheus-alertmanager"));

  it("check-config accepts the rendered config (the key file need not exist)", () => {
    const result = amtool(["check-config"], renderAlertmanagerConfig(base));
    expect(result.output).toContain("SUCCESS");
    expect(result.output).toContain("1 inhibit rules");
    expect(result.status).toBe(0);
  });

  // Routing ignores time intervals (they only silence sending), so a paging alert resolves to both.
  it.each([
    [
      "a control-plane critical",
      `${receivers.onCall},${receivers.pagerduty}`,
      { alertname: "EtcdNoLeader", severity: "critical" },
    ],
    ["a control-plane warning", receivers.onCall, { alertname: "EtcdNoLeader", severity: "warning" }],
    [
      "a critical outside the control plane",
      receivers.onCall,
      { alertname: "KubePodCrashLooping", severity: "critical" },
    ],
    ["an alert without severity", receivers.onCall, { alertname: "Unlabelled" }],
    ["Watchdog", receivers.none, { alertname: "Watchdog", severity: "none" }],
    ["InfoInhibitor", receivers.none, { alertname: "InfoInhibitor", severity: "none" }],
    ["an info alert", receivers.none, { alertname: "KubeQuotaAlmostFull", severity: "info" }],
  ])("routes %s to %s", (_what, expected, labels: Record<string, string>) => {
    const result = amtool(
      [
        "config",
        "routes",
        "test",
        `--verify.receivers=${expected}`,
        ...Object.entries(labels).map(([k, v]) => `${k}=${v}`),
      ],
      renderAlertmanagerConfig(base),
    );
    expect(result.stdout.trim()).toBe(expected);
    expect(result.status).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// A real Alertmanager, real clock: which receiver gets the page now.

/**
 * Far from UTC so a config read in UTC would get the opposite answer; a second zone for the
 * ten minutes before local midnight, when a window around "now" would wrap during the test.
 */
function chooseZone(now: Date): string {
  for (const zone of ["Asia/Tokyo", "Asia/Kolkata"]) {
    if (wallClock(zone, now).minute < 1430) return zone;
  }
  throw new Error("unreachable: Tokyo and Kolkata are 3.5 hours apart");
}

/** An hour either side of `minute`, clipped to the day (never wraps; always contains it). */
function around(minute: number): string {
  return `${hhmm(Math.max(0, minute - 60))}-${hhmm(Math.min(1440, minute + 60))}`;
}

const weekdayNames = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"];

/** Weekday ranges covering every day but `weekday` (sunday = 0), in Alertmanager's order. */
function everyDayBut(weekday: number): string[] {
  const ranges: string[] = [];
  if (weekday > 0) ranges.push(`sunday:${weekdayNames[weekday - 1]}`);
  if (weekday < 6) ranges.push(`${weekdayNames[weekday + 1]}:saturday`);
  return ranges;
}

// Started on first use, not in beforeAll: concurrent tests may start before hooks finish.
let captureStarted: Promise<CaptureServer> | undefined;
const captureServer = () => (captureStarted ??= CaptureServer.start());

interface Delivery {
  onCall: Captured[];
  pagerduty: Captured[];
  routingKey: string;
}

const groupWaitMs = 500;
const critical = { alertname: "EtcdNoLeader", severity: "critical", instance: "10.20.1.11:2381" };
const warning = { alertname: "EtcdHighCommitDurations", severity: "warning", instance: "10.20.1.11:2381" };
/** Same alert name and instance as `critical`: the inhibit rule must drop it. */
const inhibitedWarning = { ...critical, severity: "warning" };

/**
 * Starts Alertmanager with `businessDays`/`businessHours` in `timezone`, posts the critical
 * control-plane alert, an unrelated warning and the critical's own warning, waits until
 * `expectPagerduty` decides who must hear about the critical, then a while longer to catch
 * a notification that must not come.
 */
async function deliver(
  name: string,
  paging: Pick<PagingSettings, "timezone" | "businessDays" | "businessHours">,
  expectPagerduty: boolean,
): Promise<Delivery> {
  requireTool(alertmanagerBinary, "prometheus-alertmanager");
  expect(businessHoursErrors(paging)).toEqual(noErrors);
  const capture = await captureServer();
  const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), "pagerduty-key-"));
  const routingKey = `R${Math.random().toString(36).slice(2).padEnd(31, "0")}`;
  const keyFile = path.join(keyDir, "routing-key");
  fs.writeFileSync(keyFile, routingKey, { mode: 0o600 });
  const settings: PagingSettings = {
    ...base,
    ...paging,
    onCallWebhookUrl: `${capture.url}/${name}/on-call`,
    pagerdutyUrl: `${capture.url}/${name}/pagerduty`,
    pagerdutyRoutingKeyFile: keyFile,
    timing: { groupWait: `${groupWaitMs}ms`, groupInterval: "1s", repeatInterval: "1h" },
  };
  const text = renderAlertmanagerConfig(settings);
  expect(text).not.toContain(routingKey);
  const am = await AlertmanagerProcess.start(text);
  try {
    await am.postAlerts([
      { labels: critical, annotations: { summary: "etcd cluster has no leader." } },
      { labels: warning },
      { labels: inhibitedWarning },
    ]);
    const onCall = () => capture.received(`/${name}/on-call`);
    const pagerduty = () => capture.received(`/${name}/pagerduty`);
    const expected = expectPagerduty
      ? () => pagerduty().length >= 1 && onCall().length >= 1
      : () => onCall().length >= 2;
    await waitUntil(`${name}: notifications`, 20_000, expected).catch((error: Error) => {
      throw new Error(`${error.message}\ncaptured: ${JSON.stringify(capture.requests)}\n${am.log()}`);
    });
    // Both paging routes flush together; anything else would have arrived by now.
    await sleep(3 * groupWaitMs + 1000);
    return { onCall: onCall(), pagerduty: pagerduty(), routingKey };
  } finally {
    await am.stop();
    fs.rmSync(keyDir, { recursive: true, force: true });
  }
}

type WebhookBody = { receiver: string; status: string; alerts: { labels: Record<string, string> }[] };

/** The alerts (alertname/severity) each webhook notification carried, sorted. */
function webhookAlerts(captured: Captured[]): string[] {
  return captured
    .flatMap((c) => (c.body as WebhookBody).alerts.map((a) => `${a.labels.alertname}/${a.labels.severity}`))
    .sort();
}

describe("a real Alertmanager on 127.0.0.1", () => {
  const now = new Date();
  const timezone = chooseZone(now);
  const local = wallClock(timezone, now);
  const utc = wallClock("UTC", now);
  afterAll(async () => (await captureStarted)?.close());

  it.concurrent(
    "inside business hours (all days): the control-plane critical goes to on-call, not PagerDuty",
    async () => {
      const d = await deliver(
        "inside",
        { timezone, businessDays: ["sunday:saturday"], businessHours: [around(local.minute)] },
        false,
      );
      expect(d.pagerduty).toEqual([]);
      // The warning with the critical's name and instance is inhibited; the unrelated warning is not.
      expect(webhookAlerts(d.onCall)).toEqual(["EtcdHighCommitDurations/warning", "EtcdNoLeader/critical"]);
      expect(d.onCall.map((c) => (c.body as WebhookBody).receiver).sort()).toEqual([
        receivers.onCall,
        receivers.onCall,
      ]);
    },
  );

  it.concurrent("outside business hours (the same hours read in UTC would be inside): PagerDuty is paged", async () => {
    // Business hours around the current UTC time of day, but in a zone 5.5-9 hours away from UTC.
    const d = await deliver(
      "outside",
      { timezone, businessDays: ["sunday:saturday"], businessHours: [around(utc.minute)] },
      true,
    );
    expect(d.pagerduty).toHaveLength(1);
    const event = d.pagerduty[0].body as {
      routing_key: string;
      event_action: string;
      dedup_key: string;
      client: string;
      payload: { summary: string; severity: string; source: string; component: string; group: string; class: string };
    };
    // The key comes from the mounted file, read by Alertmanager when it sends.
    expect(event.routing_key).toBe(d.routingKey);
    expect(event.event_action).toBe("trigger");
    expect(event.client).toBe("Alertmanager (prod)");
    expect(event.payload).toMatchObject({
      summary: "[prod] EtcdNoLeader: etcd cluster has no leader. (1 firing)",
      severity: "critical",
      component: "control-plane",
      group: "prod",
      class: "EtcdNoLeader",
    });
    // On-call hears only the warning.
    expect(webhookAlerts(d.onCall)).toEqual(["EtcdHighCommitDurations/warning"]);
  });

  it.concurrent("on a day outside businessDays, at a business-hours time: PagerDuty is paged", async () => {
    const d = await deliver(
      "other-days",
      { timezone, businessDays: everyDayBut(local.weekday), businessHours: [around(local.minute)] },
      true,
    );
    expect(d.pagerduty).toHaveLength(1);
    expect((d.pagerduty[0].body as { routing_key: string }).routing_key).toBe(d.routingKey);
    expect(webhookAlerts(d.onCall)).toEqual(["EtcdHighCommitDurations/warning"]);
  });

  it.concurrent("on today's weekday by name (as the zone counts days), at a business-hours time: on-call", async () => {
    const d = await deliver(
      "today",
      { timezone, businessDays: [weekdayNames[local.weekday]], businessHours: [around(local.minute)] },
      false,
    );
    expect(d.pagerduty).toEqual([]);
    expect(webhookAlerts(d.onCall)).toEqual(["EtcdHighCommitDurations/warning", "EtcdNoLeader/critical"]);
  });
});
