/**
 * The failover budget: the worst case, in seconds, that the Kubernetes API stays unreachable
 * after a control-plane node dies, per path, computed from the timings that govern each path.
 * Pure: the timings come in as data (the stack's settings, the rendered kube-vip manifest and
 * kubeadm configuration, the companion script's defaults); tools/failover-budget.ts gathers
 * them and writes docs/failover-budget.md, and the load balancer's settings are refused when
 * they break the budget (components/config/loadBalancer.ts).
 *
 * Every term says where its number comes from. "Assumed" terms are not documented anywhere we
 * could find; they are named constants here so that the table shows them as assumptions.
 */

/** The most seconds each path may leave the API unreachable after a node dies. */
export const failoverBudgetSeconds = { loadBalancer: 20, reservedIp: 30 } as const;

/**
 * client-go tools/leaderelection/leaderelection.go: `JitterFactor = 1.2`; a candidate retries
 * with `wait.JitterUntil(..., RetryPeriod, JitterFactor, ...)`, and `wait.Jitter(d, f)` waits
 * `d + rand × f × d`, so one retry waits up to `RetryPeriod × 2.2`.
 */
export const leaderElectionJitterFactor = 1.2;

/**
 * Assumptions for the Hetzner API, which documents no latency and no duration for an action:
 * one request's round trip from a server in the same location, and how long an assign action
 * runs before it reports `success`. The companion bounds each request by its --timeout (5 s)
 * and retries; the budget counts the case where every request is answered at the first try.
 */
export const hetznerApiAssumptions = { requestSeconds: 0.5, assignActionSeconds: 3 } as const;

/** One addend of a path's worst case. */
export interface Term {
  what: string;
  seconds: number;
  /** How the seconds are computed, with the values put in. */
  formula: string;
  /** Where the values and the behaviour come from. */
  source: string;
}

export interface FailoverPath {
  name: string;
  terms: Term[];
  /** The sum of the terms, rounded to 0.1 s. */
  total: number;
  /** The path's budget, when it has one. */
  budget?: number;
}

/** The load balancer's health check, as the settings hold it (seconds, seconds, count). */
export interface HealthCheckTimings {
  interval: number;
  timeout: number;
  retries: number;
}

/** A client-go leader election's timings, in seconds. */
export interface LeaseTimings {
  leaseDuration: number;
  renewDeadline: number;
  retryPeriod: number;
}

/** The reserved-IP companion's timings (scripts/node/reserved-ip-failover.sh), in seconds. */
export interface CompanionTimings {
  /** --interval: pause between two checks. */
  checkInterval: number;
  /** --action-poll-interval: pause between two reads of the running assign action. */
  actionPollInterval: number;
}

const round = (seconds: number) => Math.round(seconds * 10) / 10;
const sum = (terms: Term[]) => round(terms.reduce((total, t) => total + t.seconds, 0));

const hetznerHealthCheckSource =
  "Hetzner Cloud API reference, Load Balancers > Add Service: `health_check.interval` (seconds between checks), `timeout` (seconds before an attempt is a timeout), `retries` (unsuccessful retries until a target is considered unhealthy)";

/**
 * The worst case until the load balancer stops sending new connections to a dead node: it died
 * just after a passing check, so `retries` failing checks follow, one every `interval`, and a
 * dead host answers nothing, so the last one fails only at its `timeout`.
 */
export function loadBalancerWorstCase(hc: HealthCheckTimings): number {
  return round(hc.interval * hc.retries + hc.timeout);
}

export function loadBalancerPath(hc: HealthCheckTimings): FailoverPath {
  const terms: Term[] = [
    {
      what: "failing health checks until the dead target is out of rotation (a node that dies just after a passing check)",
      seconds: round(hc.interval * hc.retries),
      formula: `healthCheckIntervalSeconds × healthCheckRetries = ${hc.interval} × ${hc.retries}`,
      source: hetznerHealthCheckSource,
    },
    {
      what: "the last check runs to its timeout (a dead host sends no reset)",
      seconds: hc.timeout,
      formula: `healthCheckTimeoutSeconds = ${hc.timeout}`,
      source: hetznerHealthCheckSource,
    },
  ];
  return {
    name: "Load balancer (new connections)",
    terms,
    total: sum(terms),
    budget: failoverBudgetSeconds.loadBalancer,
  };
}

/** The longest one retry of a leader election candidate waits: RetryPeriod × (1 + JitterFactor). */
export const maxRetryWait = (lease: LeaseTimings): number =>
  round(lease.retryPeriod * (1 + leaderElectionJitterFactor));

/**
 * A client-go Lease held by a dead node, until a survivor holds it. The expiry is measured from
 * the candidate's own clock when it first saw the last renewal (observedTime), not from the
 * renewTime written in the Lease, so the candidate's polling lag counts twice: once to see the
 * last renewal, once to see the expiry. `settings` names the keys, `source` where they are set.
 */
export function leaseTakeoverTerms(
  lease: LeaseTimings,
  settings: { leaseDuration: string; retryPeriod: string },
  source: string,
): Term[] {
  const retry = maxRetryWait(lease);
  const clientGo = "client-go tools/leaderelection/leaderelection.go";
  return [
    {
      what: "a candidate reads the dead leader's last renewal (its next poll)",
      seconds: retry,
      formula: `${settings.retryPeriod} × (1 + JitterFactor) = ${lease.retryPeriod} × 2.2`,
      source: `${clientGo}: acquire() polls with wait.JitterUntil(RetryPeriod, JitterFactor 1.2); tryAcquireOrRenew() sets observedTime when the record changed; ${source}`,
    },
    {
      what: "the Lease expires, counted from that read",
      seconds: lease.leaseDuration,
      formula: `${settings.leaseDuration} = ${lease.leaseDuration}`,
      source: `${clientGo}: isLeaseValid(): observedTime + LeaseDurationSeconds; ${source}`,
    },
    {
      what: "the candidate's next poll takes the expired Lease",
      seconds: retry,
      formula: `${settings.retryPeriod} × (1 + JitterFactor) = ${lease.retryPeriod} × 2.2`,
      source: `${clientGo}: acquire(); ${source}`,
    },
  ];
}

/**
 * The companion's share of the reserved-IP path: from the address appearing on the new
 * leader's interface to the Floating IP being routed there (its assign action succeeded).
 */
export function companionTerms(c: CompanionTimings): Term[] {
  const { requestSeconds, assignActionSeconds } = hetznerApiAssumptions;
  const script = "scripts/node/reserved-ip-failover.sh";
  return [
    {
      what: "the companion's next check sees the address on the interface",
      seconds: c.checkInterval,
      formula: `--interval = ${c.checkInterval}`,
      source: `${script} default (reserved-ip-failover.service passes no --interval)`,
    },
    {
      what: "three requests: this server's id (metadata, once), GET the Floating IP, POST assign",
      seconds: round(3 * requestSeconds),
      formula: `3 × ${requestSeconds} (assumed round trip)`,
      source: `${script} check(); the round trip is an assumption (the Hetzner API documents none)`,
    },
    {
      what: "the assign action runs",
      seconds: assignActionSeconds,
      formula: `${assignActionSeconds} (assumed)`,
      source:
        "assumption: the Hetzner API reference (Floating IP Actions > Assign) documents no duration; measure it on a real project",
    },
    {
      what: "the companion's next read of the action sees `success`",
      seconds: round(c.actionPollInterval + requestSeconds),
      formula: `--action-poll-interval + one round trip = ${c.actionPollInterval} + ${requestSeconds}`,
      source: `${script} wait_for_action() (GET /actions?id=, as hcloud-go's WaitFor polls)`,
    },
  ];
}

/** The sum of the companion's terms: what tests/failoverBudget.test.ts holds a measurement to. */
export const companionWorstCase = (c: CompanionTimings): number => sum(companionTerms(c));

export function reservedIpPath(kubeVip: LeaseTimings, companion: CompanionTimings): FailoverPath {
  const terms: Term[] = [
    ...leaseTakeoverTerms(
      kubeVip,
      { leaseDuration: "vip_leaseduration", retryPeriod: "vip_retryperiod" },
      "kube-vip pkg/cluster/clusterLeaderElection.go runs client-go's leaderelection.RunOrDie with them; rendered in components/node/kubeVip.ts",
    ).map((t) => ({ ...t, what: `kube-vip: ${t.what}` })),
    ...companionTerms(companion),
  ];
  return { name: "Reserved IP (Floating IP)", terms, total: sum(terms), budget: failoverBudgetSeconds.reservedIp };
}

/** controller-manager and scheduler: their Leases, when the dead node held one (no budget). */
export function controlLoopPath(name: string, lease: LeaseTimings): FailoverPath {
  const terms = leaseTakeoverTerms(
    lease,
    { leaseDuration: "--leader-elect-lease-duration", retryPeriod: "--leader-elect-retry-period" },
    "rendered in components/node/kubeadm.ts (ClusterConfiguration extraArgs)",
  );
  return { name, terms, total: sum(terms) };
}

/** Whether a path stays within its budget (a path without one always does). */
export const withinBudget = (p: FailoverPath): boolean => p.budget === undefined || p.total <= p.budget;
