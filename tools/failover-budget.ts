/**
 * docs/failover-budget.md, generated from what the program really sets: the load balancer's
 * health check from Pulumi.yaml's defaults and from each stack file, the Lease timings from the
 * rendered kube-vip manifest and kubeadm ClusterConfiguration, and the companion's timings from
 * the defaults in scripts/node/reserved-ip-failover.sh (its systemd unit passes none). The
 * arithmetic is components/config/failoverBudget.ts.
 *
 * `npm run docs` writes it (tools/config-reference.ts); tests/failoverBudget.test.ts fails when
 * the file is stale.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import YAML from "yaml";
import {
  CompanionTimings,
  controlLoopPath,
  FailoverPath,
  failoverBudgetSeconds,
  HealthCheckTimings,
  hetznerApiAssumptions,
  leaderElectionJitterFactor,
  LeaseTimings,
  loadBalancerPath,
  reservedIpPath,
  withinBudget,
} from "../components/config/failoverBudget";
import { renderInitConfiguration } from "../components/node/kubeadm";
import { renderKubeVipManifest } from "../components/node/kubeVip";
import { loadStackConfig, projectRoot, readProjectFile } from "./offline/stackConfig";

const scriptsDir = path.join(projectRoot, "scripts", "node");

/** The stacks whose files the table covers: every Pulumi.<stack>.yaml in the repository. */
export function stackNames(root = projectRoot): string[] {
  return fs
    .readdirSync(root)
    .map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1])
    .filter((s): s is string => s !== undefined)
    .sort();
}

const healthCheckKeys = {
  interval: "healthCheckIntervalSeconds",
  timeout: "healthCheckTimeoutSeconds",
  retries: "healthCheckRetries",
} as const;

/** The health check as Pulumi.yaml's defaults set it. */
export function defaultHealthCheck(): HealthCheckTimings {
  const { config } = readProjectFile();
  const value = (key: string) => Number(config[key]?.default);
  return {
    interval: value(healthCheckKeys.interval),
    timeout: value(healthCheckKeys.timeout),
    retries: value(healthCheckKeys.retries),
  };
}

/** The health check a stack runs: its file over Pulumi.yaml's defaults, as the CLI builds it. */
export function stackHealthCheck(stack: string): HealthCheckTimings {
  const cfg = loadStackConfig(stack);
  const value = (key: string) => Number(cfg.values[`${cfg.project}:${key}`]);
  return {
    interval: value(healthCheckKeys.interval),
    timeout: value(healthCheckKeys.timeout),
    retries: value(healthCheckKeys.retries),
  };
}

function seconds(text: string, what: string): number {
  const match = /^(\d+(?:\.\d+)?)s?$/.exec(text);
  if (!match) throw new Error(`${what}: "${text}" is not a number of seconds`);
  return Number(match[1]);
}

/** vip_leaseduration, vip_renewdeadline and vip_retryperiod from the rendered manifest. */
export function kubeVipLease(): LeaseTimings {
  const pod = YAML.parse(renderKubeVipManifest({ address: "203.0.113.10" })) as {
    spec: { containers: { env: { name: string; value?: string }[] }[] };
  };
  const env = new Map(pod.spec.containers[0].env.map((e) => [e.name, e.value ?? ""]));
  const get = (name: string) => seconds(env.get(name) ?? "", `kube-vip ${name}`);
  return {
    leaseDuration: get("vip_leaseduration"),
    renewDeadline: get("vip_renewdeadline"),
    retryPeriod: get("vip_retryperiod"),
  };
}

/** The leader-elect flags of controller-manager and scheduler from the rendered kubeadm config. */
export function controlLoopLeases(): { controllerManager: LeaseTimings; scheduler: LeaseTimings } {
  const text = renderInitConfiguration({
    clusterName: "budget",
    kubernetesVersion: "1.34.2",
    node: { name: "cp-1", privateIp: "10.0.1.11" },
    nodeHostname: "budget-cp-1",
    controlPlaneEndpoint: "10.0.1.250",
    certSans: [],
    podCidr: "10.244.0.0/16",
    serviceCidr: "10.96.0.0/12",
  });
  type Args = { extraArgs: { name: string; value: string }[] };
  const cluster = YAML.parseAllDocuments(text)
    .map((d) => d.toJS() as { kind?: string; controllerManager?: Args; scheduler?: Args })
    .find((d) => d.kind === "ClusterConfiguration");
  const lease = (component: "controllerManager" | "scheduler"): LeaseTimings => {
    const args = new Map((cluster?.[component]?.extraArgs ?? []).map((a) => [a.name, a.value]));
    const get = (flag: string) => seconds(args.get(flag) ?? "", `${component} --${flag}`);
    return {
      leaseDuration: get("leader-elect-lease-duration"),
      renewDeadline: get("leader-elect-renew-deadline"),
      retryPeriod: get("leader-elect-retry-period"),
    };
  };
  return { controllerManager: lease("controllerManager"), scheduler: lease("scheduler") };
}

/** The companion's defaults, read from the script; refused if its unit overrides them. */
export function companionDefaults(): CompanionTimings {
  const script = fs.readFileSync(path.join(scriptsDir, "reserved-ip-failover.sh"), "utf8");
  const unit = fs.readFileSync(path.join(scriptsDir, "reserved-ip-failover.service"), "utf8");
  const fallback = (variable: string, env: string, flag: string) => {
    const match = new RegExp(`^${variable}="\\$\\{${env}:-([0-9.]+)\\}"$`, "m").exec(script);
    if (!match) throw new Error(`reserved-ip-failover.sh: no default for ${variable} (${env})`);
    if (unit.includes(flag)) throw new Error(`reserved-ip-failover.service sets ${flag}: the budget reads defaults`);
    return Number(match[1]);
  };
  return {
    checkInterval: fallback("interval", "CHECK_INTERVAL", "--interval "),
    actionPollInterval: fallback("action_poll_interval", "ACTION_POLL_INTERVAL", "--action-poll-interval"),
  };
}

const cell = (text: string) => text.replace(/\|/g, "\\|").replace(/\n/g, " ");
const s = (n: number) => `${n} s`;

function pathTable(p: FailoverPath): string[] {
  const verdict =
    p.budget === undefined ? "no budget" : `budget ${s(p.budget)}: ${withinBudget(p) ? "within" : "**OVER**"}`;
  return [
    `### ${p.name}: ${s(p.total)} (${verdict})`,
    "",
    "| Term | Seconds | Computed as | Source |",
    "| --- | --- | --- | --- |",
    ...p.terms.map((t) => `| ${cell(t.what)} | ${t.seconds} | ${cell(t.formula)} | ${cell(t.source)} |`),
    `| **worst case** | **${p.total}** | sum | |`,
    "",
  ];
}

export function failoverBudgetDoc(): string {
  const kubeVip = kubeVipLease();
  const companion = companionDefaults();
  const loops = controlLoopLeases();
  const slowerKubeVip = reservedIpPath({ ...kubeVip, retryPeriod: loops.controllerManager.retryPeriod }, companion);
  const lbSources: [string, HealthCheckTimings][] = [
    ["Pulumi.yaml defaults", defaultHealthCheck()],
    ...stackNames().map((stack): [string, HealthCheckTimings] => [`stack ${stack}`, stackHealthCheck(stack)]),
  ];
  const summary = [
    ...lbSources.map(([from, hc]) => ["Load balancer, new connections", from, loadBalancerPath(hc)] as const),
    ["Reserved IP (Floating IP)", "every stack", reservedIpPath(kubeVip, companion)] as const,
    [
      "kube-controller-manager Lease",
      "every stack",
      controlLoopPath("controller-manager", loops.controllerManager),
    ] as const,
    ["kube-scheduler Lease", "every stack", controlLoopPath("scheduler", loops.scheduler)] as const,
  ].map(([what, from, p]) => {
    const budget = p.budget === undefined ? "none" : s(p.budget);
    const ok = p.budget === undefined ? "" : withinBudget(p) ? "within" : "**OVER**";
    return `| ${what} | ${from} | ${s(p.total)} | ${budget} | ${ok} |`;
  });
  const lbDetails = lbSources.flatMap(([from, hc]) =>
    pathTable({ ...loadBalancerPath(hc), name: `Load balancer, new connections (${from})` }),
  );
  return [
    "# Failover budget: how long the API can be unreachable after a control-plane node dies",
    "",
    "Generated by `npm run docs` (tools/failover-budget.ts) from Pulumi.yaml, the stack files, the rendered",
    "kube-vip manifest and kubeadm configuration, and the defaults of scripts/node/reserved-ip-failover.sh;",
    "the arithmetic is components/config/failoverBudget.ts. Do not edit by hand.",
    "",
    `Budgets: the load-balancer path at most ${s(failoverBudgetSeconds.loadBalancer)}, the reserved-IP path at most ${s(failoverBudgetSeconds.reservedIp)}.`,
    "The program refuses health-check settings over the load-balancer budget (components/config/loadBalancer.ts).",
    "Every figure is a worst case from the moment the node dies (power loss, kernel panic: it answers nothing).",
    "",
    "| Path | Settings from | Worst case | Budget | |",
    "| --- | --- | --- | --- | --- |",
    ...summary,
    "",
    "## Load balancer",
    "",
    "New connections: Hetzner takes a target out of rotation after `retries` unsuccessful checks. Until then",
    "the load balancer keeps handing it a share of new connections (one in N with round robin), which fail.",
    "",
    ...lbDetails,
    "Connections already open through the dead node are not in this figure. Hetzner documents no draining and",
    "no reset of an unhealthy target's connections (Cloud docs, Load Balancers: Overview and FAQ; API reference,",
    "Load Balancers); we assume it keeps them open, and the dead node sends no FIN or RST. A client notices on",
    "its own: every client-go client (kubectl, controllers, kubelets of other teams' workers) runs the HTTP/2",
    "health check, a ping after 30 s without a frame that fails after 15 s more, so such a connection is",
    "abandoned up to **45 s** after the node died (k8s.io/apimachinery pkg/util/net/http.go: readIdleTimeoutSeconds",
    "30, pingTimeoutSeconds 15; `HTTP2_READ_IDLE_TIMEOUT_SECONDS`, `HTTP2_PING_TIMEOUT_SECONDS`). Watches then",
    "reconnect through a healthy target. None of our settings shorten this.",
    "",
    "## Reserved IP",
    "",
    "The Floating IP follows the kube-vip leader. A survivor's kube-vip takes the dead leader's Lease and adds",
    "the address to its interface at once (OnStartedLeading); the companion on that node sees it and asks the",
    "Hetzner API to assign the Floating IP there, then waits for the assign action.",
    "",
    ...pathTable(reservedIpPath(kubeVip, companion)),
    "The Lease takes longer than `lease duration + retry period`: client-go measures expiry from the moment the",
    "candidate *saw* the last renewal, on its own clock, and each of its polls waits up to",
    `retry period × (1 + ${leaderElectionJitterFactor}). So kube-vip's \`vip_retryperiod\` is ${kubeVip.retryPeriod} s, not the control loops' ${loops.controllerManager.retryPeriod} s`,
    `(components/node/kubeVip.ts): with ${loops.controllerManager.retryPeriod} s this path would take up to ${s(slowerKubeVip.total)}.`,
    "",
    "If the dead node led etcd, etcd elects a new leader within about two election timeouts (1 s by default,",
    "randomized up to 2 s); Lease writes fail meanwhile. That lies inside the Lease's 15 s and adds nothing.",
    "",
    "Assumptions (the Hetzner API documents neither): one API round trip",
    `${s(hetznerApiAssumptions.requestSeconds)}, an assign action ${s(hetznerApiAssumptions.assignActionSeconds)}. Retries are not budgeted: a request that fails`,
    "waits for the companion's backoff (1 s doubling, 5 attempts, 5 s each at most), and a 429 or 423 can take",
    "longer; the budget is the case where Hetzner answers at the first try.",
    "",
    "Measured: `npm run bench:failover` runs the companion on two simulated nodes against the fake Hetzner API",
    "(tests/support/fakeHetzner.ts), with the action running for the assumed time, and prints the seconds",
    "from the address moving to the Floating IP being assigned; tests/failoverBudget.test.ts holds one such",
    "measurement to the companion's terms above. It cannot measure the real API's latency or action time.",
    "",
    "## Controller-manager and scheduler",
    "",
    "When the dead node held the controller-manager's or the scheduler's Lease, no controller runs (no",
    "ReplicaSet scales, no Endpoints change) or no pod is scheduled until a survivor takes it. The API itself",
    "stays reachable. Timings are kubeadm's defaults, written out in the ClusterConfiguration.",
    "",
    ...pathTable(controlLoopPath("controller-manager", loops.controllerManager)),
    ...pathTable(controlLoopPath("scheduler", loops.scheduler)),
  ].join("\n");
}

if (require.main === module) {
  process.stdout.write(failoverBudgetDoc());
}
