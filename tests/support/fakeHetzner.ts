/**
 * A fake Hetzner Cloud API (under /v1) and metadata service (under /metadata) on 127.0.0.1, one
 * HTTP server in the test process, for the reserved-IP failover companion. It models what the
 * companion meets on the real API, from the Hetzner Cloud API reference (docs.hetzner.cloud):
 *
 * - Overview > Errors: an error answers `{"error": {"code", "message", "details"}}`; the codes
 *   used here are `locked` ("The item you are trying to access is locked (there is already an
 *   Action running)"), `conflict` ("The resource has changed during the request, please retry"),
 *   `rate_limit_exceeded`, `unauthorized`, `not_found`, `invalid_input`, `json_error`, and
 *   `service_error` for the injected 5xx faults (its status is the fault's). The
 *   reference's table lists codes, not statuses: 423, 409 and 429 are the statuses hcloud-go's
 *   tests pair with `locked`, `conflict` and `rate_limit_exceeded`
 *   (hcloud/client_handler_retry_test.go); 401, 404 and 400 for the others are assumed.
 * - Overview > Rate Limiting: every answer carries `RateLimit-Limit` (requests per hour),
 *   `RateLimit-Remaining` and `RateLimit-Reset` ("a UNIX timestamp of the point in time when
 *   your rate limit will have recovered and you will have the full number of requests available
 *   again"); the budget "increases gradually" (3600 an hour: one more every second); a request
 *   over the budget gets `429 Too Many Requests`. No `Retry-After` header is sent.
 * - Actions: an action is `{id, command, status, progress, started, finished, resources, error}`
 *   with status `running`, `success` or `error`; `GET /actions?id=ID` (the `id` filter is
 *   required since 30 January 2025) answers `{"actions": [...]}`, `GET /actions/{id}` answers
 *   `{"action": ...}`.
 * - Floating IP Actions > Assign a Floating IP to a Server: `POST /floating_ips/{id}/actions/assign`
 *   with `{"server": <id>}` answers `201` with `{"action": ...}` (command `assign_floating_ip`,
 *   resources: the server and the Floating IP).
 *
 * - Servers (for scripts/ops/resize-control-plane.sh): `GET /servers?label_selector=...` answers
 *   `{"servers": [...], "meta": {"pagination": {...}}}` (Servers > Get all Servers; the selector's
 *   `key=value` and `key==value` terms, Overview > Label Selector; other forms answer 400 here,
 *   being unmodelled), `GET /servers/{id}` answers `{"server": ...}` with `status` one of
 *   `running`, `initializing`, `starting`, `stopping`, `off`, `deleting`, `migrating`,
 *   `rebuilding`, `unknown` (hcloud-go hcloud/server.go ServerStatus) and `server_type.name`.
 * - Server Actions: `POST /servers/{id}/actions/shutdown` (command `shutdown_server`: an ACPI
 *   request, which the OS may ignore; modelled so that the action succeeds when the request is
 *   sent and the server goes off later by itself, or never), `.../poweroff` (`stop_server`),
 *   `.../poweron` (`start_server`), `.../change_type` with `{"server_type", "upgrade_disk"}`
 *   (`change_server_type`; "If false, do not upgrade the disk (this allows downgrading the Server
 *   type later)", the API's OpenAPI text as the hcloud Rust crate copies it,
 *   src/models/change_type_of_server_request.rs; the server must be off: error
 *   `server_not_stopped`, hcloud-go hcloud/error.go ErrorCodeServerNotStopped "The action requires
 *   a stopped server"), each answering `201 {"action": ...}` (hcloud-go ServerClient.Shutdown,
 *   Poweroff, Poweron, ChangeType POST these paths); an action on a server while another action
 *   on it runs: `423 locked`.
 *
 * Assumptions where the reference is silent, chosen so that a script that does not wait cannot
 * pass: an action advances only when someone looks (each read of the action, or of its
 * Floating IP, is one step; `actionReads` steps show `running`, then it finishes), standing in
 * for wall time, which the real API uses; the Floating IP's `server` changes only when its
 * assign action succeeds; a second assign while an action on the Floating IP runs gets `423
 * locked`; a request answered with 429 does not use the budget; the metadata service sends no
 * rate-limit headers (it is not the API). Servers: the status moves as actions run (poweron:
 * `starting` then `running` on success; poweroff: `off` on success; change_type: `migrating`,
 * then `off` with the new type, or `off` with the old one on error) and, after a shutdown request,
 * `stopping` then `off` after `stopReads` reads of the server; `server_not_stopped` answers 412
 * (the status is not documented: assumed); a server action's error outcome is injected per
 * server (`changeTypeFails`). `maxNotRunning` records the most servers ever not `running` at once.
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";

export interface RecordedRequest {
  method: string;
  path: string;
  authorization?: string;
  body: string;
  /** Milliseconds since the fake was reset. */
  at: number;
  /** The answer's HTTP status (undefined for a request left hanging). */
  status?: number;
  /** The answer's headers. */
  headers: Record<string, string>;
}

/** The next `count` API requests (matching `path`, when given) fail as told. */
export interface Fault {
  count: number;
  /** An HTTP status with its Hetzner error code, or "hang": never answer. */
  status: 500 | 503 | 409 | 423 | "hang";
  /** Only requests whose "METHOD /path" starts with this. */
  match?: string;
}

export interface ActionError {
  code: string;
  message: string;
}

/** An action as the API reference documents it (Actions > Get an Action). */
export interface Action {
  id: number;
  command: string;
  status: "running" | "success" | "error";
  progress: number;
  started: string;
  finished: string | null;
  resources: { id: number; type: string }[];
  error: ActionError | null;
}

interface ActionState {
  action: Action;
  /** Reads left that still show `running`. */
  readsLeft: number;
  /** How it ends: success, or error with this error. */
  outcome: ActionError | "success";
  /** What happens when it ends: with its outcome. */
  finish: (succeeded: boolean) => void;
}

/** A server as `GET /servers/{id}` shows it (the fields a client reads). */
export interface FakeServer {
  id: number;
  name: string;
  status: string;
  serverType: string;
  labels: Record<string, string>;
}

interface ServerState {
  server: FakeServer;
  /** Reads of the server left before a requested ACPI shutdown takes it off (undefined: none pending). */
  stoppingReadsLeft?: number;
}

export interface FakeHetznerOptions {
  token: string;
  floatingIpId: number;
  address: string;
  /** The server id the metadata service reports. */
  ownServerId: number;
}

export class FakeHetzner {
  readonly server: http.Server;
  requests: RecordedRequest[] = [];
  /** The server the Floating IP is assigned to, as GET /floating_ips/:id reports it. */
  assignedServer: number | null = null;
  fault: Fault | undefined;
  /** Reads that show a new assign action `running` before it finishes. */
  actionReads = 0;
  /** How the next assign actions end. */
  actionOutcome: ActionError | "success" = "success";
  /** The rate limit: requests per hour, and what is left now (refilled gradually). */
  rateLimit = { limit: 3600, remaining: 3600 };
  /** The budget is used up (by someone else) just before the next API request arrives. */
  budgetUsedUpNext = false;
  /** Reads a new server action shows `running` before it finishes. */
  serverActionReads = 1;
  /** Reads of a server after an ACPI shutdown before it is off. */
  stopReads = 2;
  /** Servers whose OS ignores the ACPI shutdown (they stay running). */
  ignoresAcpi = new Set<number>();
  /** Servers whose next change_type action ends in this error. */
  changeTypeFails = new Map<number, ActionError>();
  /** The most servers that were not `running` at the same time. */
  maxNotRunning = 0;
  /** Every server status change, in order. */
  statusLog: { server: string; status: string; serverType: string }[] = [];
  /** Called on every server status change (tests stop and start what runs on the server). */
  onStatus: ((server: FakeServer) => void) | undefined;
  private servers = new Map<number, ServerState>();
  private actions = new Map<number, ActionState>();
  private nextActionId = 13;
  private started = Date.now();
  private refilledAt = Date.now();

  constructor(private readonly options: FakeHetznerOptions) {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => this.handle(req, res, Buffer.concat(chunks).toString("utf8")));
    });
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  listen(): Promise<void> {
    return new Promise((resolve) => this.server.listen(0, "127.0.0.1", resolve));
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  reset(assignedServer: number | null): void {
    this.requests = [];
    this.assignedServer = assignedServer;
    this.fault = undefined;
    this.actionReads = 0;
    this.actionOutcome = "success";
    this.rateLimit = { limit: 3600, remaining: 3600 };
    this.budgetUsedUpNext = false;
    this.actions.clear();
    this.servers.clear();
    this.serverActionReads = 1;
    this.stopReads = 2;
    this.ignoresAcpi.clear();
    this.changeTypeFails.clear();
    this.maxNotRunning = 0;
    this.statusLog = [];
    this.onStatus = undefined;
    this.nextActionId = 13;
    this.started = Date.now();
    this.refilledAt = Date.now();
  }

  /**
   * An assign action someone else started (another node, an operator), running for `reads`
   * reads of the Floating IP, then moving it to `target`.
   */
  startForeignAssign(target: number, reads: number): Action {
    return this.startAssign(target, reads, "success");
  }

  /** Adds a server (running unless told otherwise). */
  addServer(server: FakeServer): void {
    this.servers.set(server.id, { server: { ...server, labels: { ...server.labels } } });
  }

  /** A server as the API would show it now (without reading it). */
  serverState(id: number): FakeServer | undefined {
    const state = this.servers.get(id);
    return state && { ...state.server };
  }

  private setStatus(state: ServerState, status: string): void {
    state.server.status = status;
    this.statusLog.push({ server: state.server.name, status, serverType: state.server.serverType });
    const notRunning = [...this.servers.values()].filter((s) => s.server.status !== "running").length;
    this.maxNotRunning = Math.max(this.maxNotRunning, notRunning);
    this.onStatus?.({ ...state.server });
  }

  /** The action with this id, as the API would show it now (without reading it). */
  action(id: number): Action | undefined {
    return this.actions.get(id)?.action;
  }

  private startAssign(target: number, reads: number, outcome: ActionError | "success"): Action {
    return this.startAction(
      "assign_floating_ip",
      [
        { id: target, type: "server" },
        { id: this.options.floatingIpId, type: "floating_ip" },
      ],
      reads,
      outcome,
      (succeeded) => {
        if (succeeded) this.assignedServer = target;
      },
    );
  }

  private startAction(
    command: string,
    resources: { id: number; type: string }[],
    reads: number,
    outcome: ActionError | "success",
    finish: (succeeded: boolean) => void,
  ): Action {
    const action: Action = {
      id: this.nextActionId++,
      command,
      status: "running",
      progress: 0,
      started: new Date().toISOString(),
      finished: null,
      resources,
      error: null,
    };
    this.actions.set(action.id, { action, readsLeft: reads, outcome, finish });
    return action;
  }

  /** One read of a running action: it advances, and finishes when no reads are left. */
  private advance(state: ActionState): void {
    if (state.action.status !== "running") return;
    if (state.readsLeft > 0) {
      state.readsLeft -= 1;
      state.action.progress = Math.min(90, state.action.progress + 30);
      return;
    }
    state.action.finished = new Date().toISOString();
    state.action.progress = 100;
    if (state.outcome === "success") {
      state.action.status = "success";
    } else {
      state.action.status = "error";
      state.action.error = state.outcome;
    }
    state.finish(state.outcome === "success");
  }

  private runningOnFloatingIp(): ActionState[] {
    return [...this.actions.values()].filter(
      (s) => s.action.status === "running" && s.action.resources.some((r) => r.type === "floating_ip"),
    );
  }

  private runningOnServer(id: number): ActionState[] {
    return [...this.actions.values()].filter(
      (s) => s.action.status === "running" && s.action.resources.some((r) => r.type === "server" && r.id === id),
    );
  }

  /** The server as the API shows it: Servers > Get a Server (the fields modelled). */
  private serverJson(server: FakeServer): unknown {
    return {
      id: server.id,
      name: server.name,
      status: server.status,
      server_type: { name: server.serverType },
      labels: server.labels,
    };
  }

  /** One read of a server: a requested ACPI shutdown moves on. */
  private readServer(state: ServerState): void {
    if (state.stoppingReadsLeft === undefined) return;
    if (state.stoppingReadsLeft > 0) {
      state.stoppingReadsLeft -= 1;
      return;
    }
    state.stoppingReadsLeft = undefined;
    if (state.server.status === "stopping") this.setStatus(state, "off");
  }

  /** Server Actions: the documented preconditions, then the action and its status changes. */
  private serverAction(state: ServerState, verb: string, body: string): { status: number; value: unknown } {
    const locked = {
      status: 423,
      value: {
        error: {
          code: "locked",
          message: "The item you are trying to access is locked (there is already an Action running)",
        },
      },
    };
    if (this.runningOnServer(state.server.id).length > 0) return locked;
    const server = state.server;
    const resources = [{ id: server.id, type: "server" }];
    const reads = this.serverActionReads;
    switch (verb) {
      case "shutdown":
        return {
          status: 201,
          value: {
            action: this.startAction("shutdown_server", resources, reads, "success", () => {
              if (server.status !== "running" || this.ignoresAcpi.has(server.id)) return;
              this.setStatus(state, "stopping");
              state.stoppingReadsLeft = this.stopReads;
            }),
          },
        };
      case "poweroff":
        return {
          status: 201,
          value: {
            action: this.startAction("stop_server", resources, reads, "success", () => {
              state.stoppingReadsLeft = undefined;
              if (server.status !== "off") this.setStatus(state, "off");
            }),
          },
        };
      case "poweron": {
        const wasOff = server.status === "off";
        if (wasOff) this.setStatus(state, "starting");
        return {
          status: 201,
          value: {
            action: this.startAction("start_server", resources, reads, "success", () => {
              if (wasOff) this.setStatus(state, "running");
            }),
          },
        };
      }
      case "change_type": {
        let parsed: { server_type?: unknown; upgrade_disk?: unknown };
        try {
          parsed = JSON.parse(body) as typeof parsed;
        } catch {
          return { status: 400, value: { error: { code: "json_error", message: "invalid JSON" } } };
        }
        if (typeof parsed.server_type !== "string" || typeof parsed.upgrade_disk !== "boolean") {
          return {
            status: 400,
            value: {
              error: { code: "invalid_input", message: "server_type (string) and upgrade_disk (boolean) are required" },
            },
          };
        }
        if (server.status !== "off") {
          return {
            status: 412,
            value: { error: { code: "server_not_stopped", message: "The action requires a stopped server" } },
          };
        }
        const to = parsed.server_type;
        const failure = this.changeTypeFails.get(server.id);
        this.changeTypeFails.delete(server.id);
        this.setStatus(state, "migrating");
        return {
          status: 201,
          value: {
            action: this.startAction("change_server_type", resources, reads, failure ?? "success", (succeeded) => {
              if (succeeded) server.serverType = to;
              this.setStatus(state, "off");
            }),
          },
        };
      }
      default:
        return { status: 404, value: { error: { code: "not_found", message: "no such action" } } };
    }
  }

  /** Refills the budget gradually (limit per hour) and returns the rate-limit headers. */
  private rateLimitHeaders(): Record<string, string> {
    const now = Date.now();
    const perSecond = this.rateLimit.limit / 3600;
    this.rateLimit.remaining = Math.min(
      this.rateLimit.limit,
      this.rateLimit.remaining + ((now - this.refilledAt) / 1000) * perSecond,
    );
    this.refilledAt = now;
    const secondsToFull = Math.ceil((this.rateLimit.limit - this.rateLimit.remaining) / perSecond);
    return {
      "RateLimit-Limit": String(this.rateLimit.limit),
      "RateLimit-Remaining": String(Math.floor(this.rateLimit.remaining)),
      "RateLimit-Reset": String(Math.floor(now / 1000) + secondsToFull),
    };
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse, body: string): void {
    const url = req.url ?? "";
    const method = req.method ?? "";
    const record: RecordedRequest = {
      method,
      path: url,
      authorization: req.headers.authorization,
      body,
      at: Date.now() - this.started,
      headers: {},
    };
    this.requests.push(record);
    const send = (status: number, value: unknown, headers: Record<string, string>) => {
      const all = { "Content-Type": "application/json", ...headers };
      record.status = status;
      record.headers = all;
      res.writeHead(status, all);
      res.end(JSON.stringify(value));
    };
    if (url === "/metadata/instance-id" && method === "GET") {
      record.status = 200;
      res.writeHead(200, { "Content-Type": "text/plain" });
      res.end(String(this.options.ownServerId));
      return;
    }
    if (!url.startsWith("/v1/")) {
      send(404, { error: { code: "not_found", message: "no such path" } }, {});
      return;
    }
    const fault = this.fault;
    if (fault && fault.count > 0 && (!fault.match || `${method} ${url}`.startsWith(fault.match))) {
      fault.count -= 1;
      if (fault.status === "hang") return; // curl --max-time gives up; the socket closes with it
      const limitHeaders = this.rateLimitHeaders();
      const error =
        fault.status === 409
          ? { code: "conflict", message: "The resource has changed during the request, please retry" }
          : fault.status === 423
            ? {
                code: "locked",
                message: "The item you are trying to access is locked (there is already an Action running)",
              }
            : { code: "service_error", message: `fake ${fault.status}` };
      send(fault.status, { error }, limitHeaders);
      return;
    }
    if (this.budgetUsedUpNext) {
      this.budgetUsedUpNext = false;
      this.rateLimit.remaining = 0;
      this.refilledAt = Date.now();
    }
    const limitHeaders = this.rateLimitHeaders();
    if (this.rateLimit.remaining < 1) {
      send(
        429,
        { error: { code: "rate_limit_exceeded", message: "limit of requests per hour reached" } },
        limitHeaders,
      );
      return;
    }
    this.rateLimit.remaining -= 1;
    limitHeaders["RateLimit-Remaining"] = String(Math.floor(this.rateLimit.remaining));
    const json = (status: number, value: unknown) => send(status, value, limitHeaders);
    if (req.headers.authorization !== `Bearer ${this.options.token}`) {
      json(401, { error: { code: "unauthorized", message: "unable to authenticate" } });
      return;
    }
    const { floatingIpId, address } = this.options;
    if (url === `/v1/floating_ips/${floatingIpId}` && method === "GET") {
      for (const state of this.runningOnFloatingIp()) this.advance(state);
      json(200, {
        floating_ip: { id: floatingIpId, ip: address, type: "ipv4", server: this.assignedServer, blocked: false },
      });
      return;
    }
    if (url === `/v1/floating_ips/${floatingIpId}/actions/assign` && method === "POST") {
      let parsed: unknown;
      try {
        parsed = JSON.parse(body);
      } catch {
        json(400, { error: { code: "json_error", message: "invalid JSON" } });
        return;
      }
      const server = (parsed as { server?: unknown }).server;
      if (typeof server !== "number" || !Number.isInteger(server)) {
        json(400, { error: { code: "invalid_input", message: "server must be an integer" } });
        return;
      }
      if (this.runningOnFloatingIp().length > 0) {
        json(423, {
          error: {
            code: "locked",
            message: "The item you are trying to access is locked (there is already an Action running)",
          },
        });
        return;
      }
      json(201, { action: this.startAssign(server, this.actionReads, this.actionOutcome) });
      return;
    }
    const serverPath = /^\/v1\/servers\/(\d+)(?:\/actions\/([a-z_]+))?$/.exec(url);
    if (serverPath) {
      const state = this.servers.get(Number(serverPath[1]));
      if (!state) {
        json(404, { error: { code: "not_found", message: "server not found" } });
        return;
      }
      if (!serverPath[2] && method === "GET") {
        this.readServer(state);
        json(200, { server: this.serverJson(state.server) });
        return;
      }
      if (serverPath[2] && method === "POST") {
        const answer = this.serverAction(state, serverPath[2], body);
        json(answer.status, answer.value);
        return;
      }
    }
    if ((url === "/v1/servers" || url.startsWith("/v1/servers?")) && method === "GET") {
      const query = new URL(url, "http://fake").searchParams;
      const terms = (query.get("label_selector") ?? "").split(",").filter((t) => t !== "");
      const parsed = terms.map((t) => /^([a-z0-9./-]+)==?([A-Za-z0-9._-]*)$/i.exec(t));
      if (parsed.some((m) => m === null)) {
        json(400, { error: { code: "invalid_input", message: "label_selector: only key=value terms are modelled" } });
        return;
      }
      const perPage = Number(query.get("per_page") ?? "25");
      const page = Number(query.get("page") ?? "1");
      const all = [...this.servers.values()]
        .map((s) => s.server)
        .filter((server) => parsed.every((m) => m !== null && server.labels[m[1]] === m[2]))
        .sort((a, b) => a.id - b.id);
      const lastPage = Math.max(1, Math.ceil(all.length / perPage));
      json(200, {
        servers: all.slice((page - 1) * perPage, page * perPage).map((server) => this.serverJson(server)),
        meta: {
          pagination: {
            page,
            per_page: perPage,
            previous_page: page > 1 ? page - 1 : null,
            next_page: page < lastPage ? page + 1 : null,
            last_page: lastPage,
            total_entries: all.length,
          },
        },
      });
      return;
    }
    const byId = /^\/v1\/actions\/(\d+)$/.exec(url);
    if (byId && method === "GET") {
      const state = this.actions.get(Number(byId[1]));
      if (!state) {
        json(404, { error: { code: "not_found", message: "action not found" } });
        return;
      }
      this.advance(state);
      json(200, { action: state.action });
      return;
    }
    if (url.startsWith("/v1/actions?") && method === "GET") {
      const ids = new URL(url, "http://fake").searchParams.getAll("id").map(Number);
      if (ids.length === 0) {
        json(400, { error: { code: "invalid_input", message: "the id filter is required" } });
        return;
      }
      const found = ids.map((id) => this.actions.get(id)).filter((s): s is ActionState => s !== undefined);
      for (const state of found) this.advance(state);
      json(200, { actions: found.map((s) => s.action) });
      return;
    }
    json(404, { error: { code: "not_found", message: "no such resource" } });
  }
}
