/**
 * A real Alertmanager on loopback for tests: Debian's /usr/bin/prometheus-alertmanager, one
 * process per config, free ports, a temporary storage dir, gossip off, bounded waits; and a
 * capture server that stands in for every receiver (webhook and PagerDuty Events API) and
 * records what Alertmanager sends.
 */
import { ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { requireTool } from "./tools";

export const alertmanagerBinary = "/usr/bin/prometheus-alertmanager";
export const amtoolBinary = "/usr/bin/amtool";

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns true, for at most `timeoutMs`; throws naming `what`. */
export async function waitUntil(what: string, timeoutMs: number, check: () => boolean | Promise<boolean>) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (
      await Promise.resolve()
        .then(check)
        .catch(() => false)
    )
      return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** A port nobody listens on right now (bound on port 0, then released). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface Captured {
  path: string;
  body: unknown;
}

/** Answers every POST with 200 and records its path and JSON body. */
export class CaptureServer {
  readonly requests: Captured[] = [];
  private readonly server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // kept as text: a failing assertion shows it
      }
      this.requests.push({ path: req.url ?? "", body });
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
  });
  url = "";

  static async start(): Promise<CaptureServer> {
    const capture = new CaptureServer();
    await new Promise<void>((resolve, reject) => {
      capture.server.once("error", reject);
      capture.server.listen(0, "127.0.0.1", () => resolve());
    });
    capture.url = `http://127.0.0.1:${(capture.server.address() as net.AddressInfo).port}`;
    return capture;
  }

  received(pathPrefix: string): Captured[] {
    return this.requests.filter((r) => r.path.startsWith(pathPrefix));
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

/** One Alertmanager process serving `configText` on 127.0.0.1. */
export class AlertmanagerProcess {
  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
    readonly dir: string,
    readonly logFile: string,
  ) {}

  /** Starts it and waits (at most `timeoutMs`) until `/-/ready` answers 200. */
  static async start(configText: string, timeoutMs = 15_000): Promise<AlertmanagerProcess> {
    requireTool(alertmanagerBinary, "prometheus-alertmanager");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "alertmanager-"));
    const configFile = path.join(dir, "alertmanager.yaml");
    fs.writeFileSync(configFile, configText);
    fs.mkdirSync(path.join(dir, "data"));
    const logFile = path.join(dir, "alertmanager.log");
    const port = await freePort();
    const log = fs.openSync(logFile, "a");
    const child = spawn(
      alertmanagerBinary,
      [
        `--config.file=${configFile}`,
        `--storage.path=${path.join(dir, "data")}`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--cluster.listen-address=",
        "--log.level=debug",
      ],
      // No proxy variables: every receiver in these tests is on 127.0.0.1.
      { stdio: ["ignore", log, log], env: { PATH: "/usr/bin:/bin", TZ: "UTC" } },
    );
    fs.closeSync(log);
    live.add(child);
    child.on("exit", () => live.delete(child));
    const am = new AlertmanagerProcess(child, `http://127.0.0.1:${port}`, dir, logFile);
    try {
      await waitUntil(`Alertmanager ready on port ${port}`, timeoutMs, async () => {
        if (child.exitCode !== null) throw new Error(`Alertmanager exited:\n${am.log()}`);
        return (await fetch(`${am.url}/-/ready`)).status === 200;
      });
    } catch (error) {
      await am.stop();
      throw new Error(`${(error as Error).message}\n${am.log()}`);
    }
    return am;
  }

  log(): string {
    return fs.existsSync(this.logFile) ? fs.readFileSync(this.logFile, "utf8") : "";
  }

  /** POST /api/v2/alerts, as Prometheus does. */
  async postAlerts(alerts: { labels: Record<string, string>; annotations?: Record<string, string> }[]) {
    const response = await fetch(`${this.url}/api/v2/alerts`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(alerts),
    });
    if (response.status !== 200) throw new Error(`POST /api/v2/alerts: ${response.status} ${await response.text()}`);
  }

  /** SIGTERM (SIGKILL after 5 s), waits for the exit, removes the directory. */
  async stop(): Promise<void> {
    const child = this.child;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Time of day (minutes since midnight) and Alertmanager's weekday number (sunday = 0) in `timeZone`. */
export function wallClock(timeZone: string, at: Date): { minute: number; weekday: number } {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone,
    weekday: "long",
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
  }).formatToParts(at);
  const part = (type: string) => parts.find((p) => p.type === type)?.value ?? "";
  const days = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
  return { minute: Number(part("hour")) * 60 + Number(part("minute")), weekday: days.indexOf(part("weekday")) };
}

/** "HH:MM" for a minute of the day, 0..1440. */
export function hhmm(minute: number): string {
  return `${String(Math.floor(minute / 60)).padStart(2, "0")}:${String(minute % 60).padStart(2, "0")}`;
}
