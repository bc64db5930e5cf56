/**
 * One test per validation rule, each asserting the exact message an operator reads.
 * The base is the real prod stack file with Pulumi.yaml's defaults, as the CLI builds it.
 */
import { ConfigError, configKeys, parseConfig, settings } from "../components/config";
import { loadStackConfig, readProjectFile } from "../tools/offline/stackConfig";

const P = "hcloud-control-plane";

function parse(overrides: Record<string, unknown> = {}, remove: string[] = [], deployedKubernetesVersion?: string) {
  const cfg = loadStackConfig("prod", { overrides });
  const values = { ...cfg.values };
  for (const key of remove) delete values[`${P}:${key}`];
  return parseConfig({ project: cfg.project, stack: cfg.stack, values, deployedKubernetesVersion });
}

function problems(overrides: Record<string, unknown>, remove: string[] = [], deployed?: string): string[] {
  try {
    parse(overrides, remove, deployed);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

describe("the prod stack", () => {
  test("parses into the typed config", () => {
    const cfg = parse();
    expect(cfg.clusterName).toBe("prod-nbg1");
    expect(cfg.nodes).toEqual([
      { name: "cp-1", privateIp: "10.20.1.11" },
      { name: "cp-2", privateIp: "10.20.1.12" },
      { name: "cp-3", privateIp: "10.20.1.13" },
    ]);
    expect(cfg.loadBalancer).toEqual({
      type: "lb11",
      algorithm: "round_robin",
      privateIp: "10.20.1.250",
      publicInterface: true,
      healthCheck: { mode: "readyz", interval: 5, timeout: 3, retries: 3 },
    });
    expect(cfg.backup).toEqual({
      schedule: "*/15 * * * *",
      keepAllHours: 24,
      keepHourlyDays: 7,
      retentionDays: 30,
      keepLast: 4,
      bucket: "prod-nbg1-etcd-backups",
      location: "nbg1",
      objectLock: true,
      objectLockMode: "COMPLIANCE",
      encryption: "age",
      ageRecipients: ["age1jrv6vc5s67v5cacsn0608aj0l0570ympuy64r0nmqtkuu55rlyuq7urp76"],
      image: `ghcr.io/platform/hcloud-control-plane/etcd-backup@sha256:${"0".repeat(64)}`,
      restoreFrom: "",
    });
    expect(cfg.monitoring).toEqual({
      mode: "kube-prometheus-stack",
      namespace: "monitoring",
      ruleName: "control-plane-alerts",
      ruleLabels: { release: "kube-prometheus-stack" },
      etcdJob: "kube-etcd",
      runbookBaseUrl: "https://git.example.com/platform/hcloud-control-plane/-/blob/main/docs/runbooks",
      backupAlertMarginMinutes: 60,
      paging: {
        timezone: "Europe/Berlin",
        businessDays: ["monday:friday"],
        businessHours: ["09:00-17:30"],
        onCallWebhookUrl: "https://alerts.example.com/hooks/platform-on-call",
      },
    });
  });

  test("empty nodeIps and loadBalancerPrivateIp derive addresses from the subnet", () => {
    const cfg = parse({ nodeIps: [], loadBalancerPrivateIp: "", controlPlaneCount: 5 });
    expect(cfg.nodes.map((n) => n.privateIp)).toEqual([
      "10.20.1.11",
      "10.20.1.12",
      "10.20.1.13",
      "10.20.1.14",
      "10.20.1.15",
    ]);
    expect(cfg.loadBalancer.privateIp).toBe("10.20.1.250");
  });

  test("every key the program reads is declared in Pulumi.yaml with the same type, and no other", () => {
    const declared = readProjectFile().config;
    expect(Object.keys(declared).sort()).toEqual(Object.keys(configKeys).sort());
    for (const [key, type] of Object.entries(configKeys)) expect([key, declared[key].type]).toEqual([key, type]);
    for (const [key, decl] of Object.entries(declared)) expect([key, typeof decl.description]).toEqual([key, "string"]);
  });
});

describe("validation rules", () => {
  test.each([0, 2, 4, 9, -1])("controlPlaneCount %p is refused", (n) => {
    expect(problems({ controlPlaneCount: n, nodeIps: [] })).toEqual([
      `${P}:controlPlaneCount = ${n}: must be an odd number from 1 to 7 (1, 3, 5 or 7): etcd needs a majority, and an even count adds no fault tolerance`,
    ]);
  });

  test("controlPlaneCount must be a whole number", () => {
    expect(problems({ controlPlaneCount: "three" })).toEqual([
      `${P}:controlPlaneCount = "three": must be a whole number`,
    ]);
  });

  test("location must be a Hetzner location", () => {
    expect(problems({ location: "nbg2" })).toEqual([
      `${P}:location = "nbg2": must be one of fsn1, nbg1, hel1, ash, hil, sin`,
    ]);
  });

  test("location must lie in the network zone", () => {
    expect(problems({ location: "ash" })).toEqual([
      `${P}:networkZone = "eu-central": does not contain location "ash" (ash is in us-east); set networkZone to us-east or choose one of fsn1, nbg1, hel1`,
    ]);
  });

  test("networkZone must be a Hetzner network zone", () => {
    expect(problems({ networkZone: "eu-west" })).toEqual([
      `${P}:networkZone = "eu-west": must be one of ap-southeast, eu-central, us-east, us-west`,
    ]);
  });

  test("kubernetesVersion must be x.y.z", () => {
    expect(problems({ kubernetesVersion: "v1.34.2" })).toEqual([
      `${P}:kubernetesVersion = "v1.34.2": must be a Kubernetes version "x.y.z" such as "1.34.2" (no "v" prefix)`,
    ]);
    expect(problems({ kubernetesVersion: "1.34" })).toHaveLength(1);
  });

  test("kubernetesVersion must be of a minor the pinned add-ons and node scripts were made for", () => {
    const outside = (v: string) =>
      `${P}:kubernetesVersion = "${v}": must be a 1.31 to 1.35 version (supportedKubernetesMinors in components/versions.ts): the pinned add-ons, the kubeadm v1beta4 configuration and the node scripts were made for those minors`;
    expect(problems({ kubernetesVersion: "1.43.2" })).toEqual([outside("1.43.2")]);
    expect(problems({ kubernetesVersion: "1.36.0" })).toEqual([outside("1.36.0")]);
    expect(problems({ kubernetesVersion: "1.30.14" })).toEqual([outside("1.30.14")]);
    for (const v of ["1.31.0", "1.34.2", "1.35.9"]) expect(parse({ kubernetesVersion: v }).kubernetesVersion).toBe(v);
    // The default in Pulumi.yaml lies inside.
    const projectDefault = String(readProjectFile().config.kubernetesVersion.default);
    expect(parse({ kubernetesVersion: projectDefault }).kubernetesVersion).toBe(projectDefault);
    // Outside the range and skipping minors against the running version: both are reported.
    expect(problems({ kubernetesVersion: "1.43.2" }, [], "1.34.2")).toEqual([
      outside("1.43.2"),
      expect.stringContaining(`${P}:kubernetesVersion = "1.43.2": skips minor versions`),
    ]);
  });

  describe("a version change against the version the stack runs (its kubernetesVersion output)", () => {
    test.each([
      ["1.34.2", "1.34.2"],
      ["1.34.2", "1.34.5"],
      ["1.34.2", "1.35.0"],
      ["1.34.2", "1.35.3"],
      ["1.34.9", "1.35.0"],
    ])("%s -> %s is allowed", (deployed, wanted) => {
      expect(parse({ kubernetesVersion: wanted }, [], deployed).kubernetesVersion).toBe(wanted);
    });

    test("a new stack (nothing deployed) may start at any supported version", () => {
      expect(parse({ kubernetesVersion: "1.31.4" }).kubernetesVersion).toBe("1.31.4");
    });

    // Inside the supported minors, so that the skip is the only refusal.
    test.each([
      ["1.31.2", "1.33.0"],
      ["1.31.2", "1.35.1"],
    ])("%s -> %s skips a minor version and is refused", (deployed, wanted) => {
      expect(problems({ kubernetesVersion: wanted }, [], deployed)).toEqual([
        `${P}:kubernetesVersion = "${wanted}": skips minor versions: this stack runs ${deployed} (its kubernetesVersion output), and kubeadm upgrades one minor version at a time; set 1.32.x first, run pulumi up, then go on (docs/runbooks/upgrade.md)`,
      ]);
    });

    test.each([
      ["1.34.2", "1.34.1"],
      ["1.34.2", "1.33.9"],
    ])("%s -> %s is a downgrade and is refused", (deployed, wanted) => {
      expect(problems({ kubernetesVersion: wanted }, [], deployed)).toEqual([
        `${P}:kubernetesVersion = "${wanted}": is older than ${deployed}, the version this stack runs (its kubernetesVersion output): kubeadm cannot downgrade a cluster; set it back to ${deployed} or higher`,
      ]);
    });
  });

  test("certificateRenewal is empty or a label", () => {
    expect(parse({ certificateRenewal: "2027-05-01" }).maintenance.certificateRenewal).toBe("2027-05-01");
    expect(problems({ certificateRenewal: "next week" })).toEqual([
      `${P}:certificateRenewal = "next week": must be "" (no renewal) or 1-63 letters, digits, '.', '_' or '-' such as 2027-05-01; each new value renews the certificates once`,
    ]);
  });

  test("certificateExpiryWarningDays lies between the critical week and half a year", () => {
    expect(problems({ certificateExpiryWarningDays: 7 })).toEqual([
      `${P}:certificateExpiryWarningDays = 7: must be from 8 to 180 days (the critical alert fires at 7 days; kubeadm certificates last 365)`,
    ]);
  });

  test("etcd defragmentation settings", () => {
    expect(parse().maintenance.defrag).toEqual({ schedule: "17 3 * * *", thresholdPercent: 40, minSizeMiB: 100 });
    expect(
      problems({ etcdDefragSchedule: "daily", etcdDefragThresholdPercent: 100, etcdDefragMinSizeMiB: -1 }),
    ).toEqual([
      expect.stringMatching(new RegExp(`^${P}:etcdDefragSchedule = "daily": is not a valid 5-field cron schedule`)),
      `${P}:etcdDefragThresholdPercent = 100: must be from 1 to 99 (percent of the database file that is free)`,
      `${P}:etcdDefragMinSizeMiB = -1: must be from 0 to 8192 MiB (etcd's largest quota)`,
    ]);
    expect(problems({ etcdDefragSchedule: "0 0 30 2 *" })).toEqual([
      `${P}:etcdDefragSchedule = "0 0 30 2 *": never fires: no month it selects has day 30 (days per month: February 29); with day-of-week * a run needs that day of month`,
    ]);
  });

  test("image must be one the node preparation supports", () => {
    expect(problems({ image: "debian-12" })).toEqual([
      `${P}:image = "debian-12": must be one of ubuntu-24.04, ubuntu-22.04`,
    ]);
  });

  test("clusterName must fit Hetzner names and labels", () => {
    expect(problems({ clusterName: "Prod_1" })).toEqual([
      `${P}:clusterName = "Prod_1": must be 1-30 characters of lower-case letters, digits and '-', starting with a letter and not ending with '-'`,
    ]);
  });

  test("a CIDR must parse", () => {
    expect(problems({ networkCidr: "10.20.0.0/33" })).toContain(
      `${P}:networkCidr = "10.20.0.0/33": has a prefix length above 32`,
    );
    expect(problems({ podCidr: "10.244.0.0" })).toEqual([
      `${P}:podCidr = "10.244.0.0": is not an IPv4 CIDR like 10.0.0.0/16`,
    ]);
  });

  test("a CIDR must not have host bits set", () => {
    expect(problems({ serviceCidr: "10.96.0.1/12" })).toEqual([
      `${P}:serviceCidr = "10.96.0.1/12": has host bits set (the network address is 10.96.0.0/12)`,
    ]);
  });

  test("the network must be private", () => {
    expect(
      problems({ networkCidr: "100.64.0.0/16", subnetCidr: "100.64.1.0/24", nodeIps: [], loadBalancerPrivateIp: "" }),
    ).toEqual([
      `${P}:networkCidr = "100.64.0.0/16": must lie inside a private range (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16)`,
    ]);
  });

  test("the subnet must lie inside the network", () => {
    expect(problems({ subnetCidr: "10.30.1.0/24", nodeIps: [], loadBalancerPrivateIp: "" })).toEqual([
      `${P}:subnetCidr = "10.30.1.0/24": must lie inside networkCidr 10.20.0.0/16`,
    ]);
  });

  test("pod and service networks must not overlap the network or each other", () => {
    expect(problems({ podCidr: "10.20.128.0/17" })).toEqual([
      `${P}:podCidr = "10.20.128.0/17": must not overlap networkCidr 10.20.0.0/16`,
    ]);
    expect(problems({ serviceCidr: "10.244.128.0/24" })).toEqual([
      `${P}:serviceCidr = "10.244.128.0/24": must not overlap podCidr 10.244.0.0/16`,
    ]);
  });

  test("pinned node IPs must lie in the subnet", () => {
    expect(problems({ nodeIps: ["10.20.1.11", "10.20.2.12", "10.20.1.13"] })).toEqual([
      `${P}:nodeIps = ["10.20.1.11","10.20.2.12","10.20.1.13"]: entry 2 (10.20.2.12) must lie inside subnetCidr 10.20.1.0/24`,
    ]);
  });

  test("derived addresses must fit the subnet too", () => {
    expect(
      problems({ subnetCidr: "10.20.1.0/28", nodeIps: [], loadBalancerPrivateIp: "", controlPlaneCount: 7 }),
    ).toEqual([
      `${P}:nodeIps = []: the derived address of cp-5 (10.20.1.15) is the subnet's broadcast address; list the addresses`,
      `${P}:nodeIps = []: the derived address of cp-6 (10.20.1.16) must lie inside subnetCidr 10.20.1.0/28; list the addresses`,
      `${P}:nodeIps = []: the derived address of cp-7 (10.20.1.17) must lie inside subnetCidr 10.20.1.0/28; list the addresses`,
      `${P}:loadBalancerPrivateIp = "": the derived address 10.20.1.250 must lie inside subnetCidr 10.20.1.0/28; set one`,
    ]);
  });

  test("pinned node IPs must be unique", () => {
    expect(problems({ nodeIps: ["10.20.1.11", "10.20.1.12", "10.20.1.11"] })).toEqual([
      `${P}:nodeIps = ["10.20.1.11","10.20.1.12","10.20.1.11"]: entry 3 (10.20.1.11) is already used by cp-1`,
    ]);
  });

  test("pinned node IPs must be one per node", () => {
    expect(problems({ nodeIps: ["10.20.1.11", "10.20.1.12"] })).toEqual([
      `${P}:nodeIps = ["10.20.1.11","10.20.1.12"]: must list exactly controlPlaneCount (3) addresses, one per node in order cp-1..cp-3, or be [] to derive them from subnetCidr`,
    ]);
  });

  test("pinned IPs must not be reserved addresses", () => {
    expect(problems({ nodeIps: ["10.20.1.0", "10.20.1.12", "10.20.1.255"] })).toEqual([
      `${P}:nodeIps = ["10.20.1.0","10.20.1.12","10.20.1.255"]: entry 1 (10.20.1.0) is the subnet's network address`,
      `${P}:nodeIps = ["10.20.1.0","10.20.1.12","10.20.1.255"]: entry 3 (10.20.1.255) is the subnet's broadcast address`,
    ]);
    expect(
      problems({
        subnetCidr: "10.20.0.0/24",
        nodeIps: ["10.20.0.1", "10.20.0.12", "10.20.0.13"],
        loadBalancerPrivateIp: "",
      }),
    ).toEqual([
      `${P}:nodeIps = ["10.20.0.1","10.20.0.12","10.20.0.13"]: entry 1 (10.20.0.1) is the network gateway Hetzner reserves`,
    ]);
  });

  test("the load balancer IP must lie in the subnet and not collide with a node", () => {
    expect(problems({ loadBalancerPrivateIp: "10.20.9.250" })).toEqual([
      `${P}:loadBalancerPrivateIp = "10.20.9.250": must lie inside subnetCidr 10.20.1.0/24`,
    ]);
    expect(problems({ loadBalancerPrivateIp: "10.20.1.12" })).toEqual([
      `${P}:loadBalancerPrivateIp = "10.20.1.12": 10.20.1.12 is already used by cp-2 (nodeIps)`,
    ]);
  });

  test("source CIDRs must be valid IPv4 or IPv6 CIDRs", () => {
    expect(problems({ adminCidrs: ["198.51.100.0/28", "2001:db8::1/32"] })).toEqual([
      `${P}:adminCidrs = ["198.51.100.0/28","2001:db8::1/32"]: entry 2 (2001:db8::1/32) has host bits set`,
    ]);
    expect(problems({ apiCidrs: ["everywhere"] })).toEqual([
      `${P}:apiCidrs = ["everywhere"]: entry 1 (everywhere) is not an IPv4 or IPv6 CIDR like 203.0.113.0/24 or 2001:db8::/32`,
    ]);
  });

  test("adminCidrs may not open SSH to the whole internet without the explicit opt-in", () => {
    const open = (list: string[], entry: number) =>
      `${P}:adminCidrs = ${JSON.stringify(list)}: entry ${entry} (${list[entry - 1]}) opens SSH (port 22) on every node to the whole internet; list the networks operators and the Pulumi runner connect from, or set ${P}:allowSshFromAnywhere to true to accept it`;
    expect(problems({ adminCidrs: ["0.0.0.0/0"] })).toEqual([open(["0.0.0.0/0"], 1)]);
    expect(problems({ adminCidrs: ["198.51.100.0/28", "::/0"] })).toEqual([open(["198.51.100.0/28", "::/0"], 2)]);
    expect(problems({ adminCidrs: ["0.0.0.0/00"] })).toEqual([open(["0.0.0.0/00"], 1)]);
    expect(parse().adminCidrs).toEqual(["198.51.100.0/28", "203.0.113.40/32"]);
    expect(parse({ adminCidrs: ["0.0.0.0/0", "::/0"], allowSshFromAnywhere: true }).adminCidrs).toEqual([
      "0.0.0.0/0",
      "::/0",
    ]);
    expect(readProjectFile().config.allowSshFromAnywhere.default).toBe(false);
    // The API server authenticates every request, and the load balancer's public 6443 cannot be
    // firewalled anyway: apiCidrs needs no opt-in.
    expect(parse({ apiCidrs: ["0.0.0.0/0", "::/0"] }).apiCidrs).toEqual(["0.0.0.0/0", "::/0"]);
  });

  test("adminCidrs may not be empty: the bootstrap needs SSH", () => {
    expect(problems({ adminCidrs: [] })).toEqual([
      `${P}:adminCidrs = []: must list at least one source CIDR (where operators and the Pulumi runner connect from)`,
    ]);
  });

  test("a list setting must be a list of strings", () => {
    expect(problems({ adminCidrs: "198.51.100.0/28" })).toEqual([
      `${P}:adminCidrs = "198.51.100.0/28": must be a list of strings`,
    ]);
  });

  test("backupSchedule must be a valid 5-field cron schedule", () => {
    expect(problems({ backupSchedule: "0 */6 * *" })).toEqual([
      `${P}:backupSchedule = "0 */6 * *": is not a valid 5-field cron schedule: it has 4 fields; a cron schedule has 5 (minute hour day-of-month month day-of-week)`,
    ]);
    expect(problems({ backupSchedule: "0 24 * * *" })).toEqual([
      `${P}:backupSchedule = "0 24 * * *": is not a valid 5-field cron schedule: the hour field "24" is outside 0-23`,
    ]);
    expect(problems({ backupSchedule: "*/0 * * * *" })).toHaveLength(1);
    // A schedule that never fires is refused here, not later by the backup alert's threshold.
    expect(problems({ backupSchedule: "0 0 31 2 *" })).toEqual([
      `${P}:backupSchedule = "0 0 31 2 *": never fires: no month it selects has day 31 (days per month: February 29); with day-of-week * a run needs that day of month`,
    ]);
    expect(problems({ backupSchedule: "0 0 31 4,6,9,11 *" })).toEqual([
      `${P}:backupSchedule = "0 0 31 4,6,9,11 *": never fires: no month it selects has day 31 (days per month: April 30, June 30, September 30, November 30); with day-of-week * a run needs that day of month`,
    ]);
    // Day-of-month and day-of-week both restricted: either matches, so this runs every Monday in February.
    expect(parse({ backupSchedule: "0 0 31 2 1" }).backup.schedule).toBe("0 0 31 2 1");
    expect(parse({ etcdDefragSchedule: "0 0 30 2 mon" }).maintenance.defrag.schedule).toBe("0 0 30 2 mon");
    expect(parse({ backupSchedule: "15 1-23/2 * jan-dec mon,fri" }).backup.schedule).toBe(
      "15 1-23/2 * jan-dec mon,fri",
    );
  });

  test("backup retention must be positive", () => {
    expect(problems({ backupRetentionDays: 0 })).toEqual([
      `${P}:backupRetentionDays = 0: must be a positive number of days`,
    ]);
    expect(problems({ backupKeepLast: 0 })).toEqual([
      `${P}:backupKeepLast = 0: must be at least 1: retention always keeps the newest backups`,
    ]);
  });

  test("restoreFrom is empty, latest or a backup key", () => {
    for (const ok of [
      "",
      "latest",
      "prod-nbg1/etcd/20261203T120000Z-r4711.db.zst.age",
      "a/b/etcd/20261203T120000Z-r1.db.zst",
    ])
      expect(parse({ restoreFrom: ok }).backup.restoreFrom).toBe(ok);
    for (const bad of [
      "newest",
      "20261203T120000Z-r4711.db.zst.age",
      "prod/pki/20261203T120000Z.tar.zst.age",
      "prod/etcd/x; rm -rf /",
    ])
      expect(problems({ restoreFrom: bad })).toEqual([
        `${P}:restoreFrom = ${JSON.stringify(bad)}: must be "" (no restore), latest, or a backup key <prefix>/etcd/<UTC stamp>-r<revision>.db.zst[.age] (the restore runbook lists them)`,
      ]);
  });

  test("health check timing is bounded and the timeout fits the interval", () => {
    expect(problems({ healthCheckTimeoutSeconds: 6 })).toEqual([
      `${P}:healthCheckTimeoutSeconds = 6: must not exceed healthCheckIntervalSeconds (5)`,
    ]);
    expect(problems({ healthCheckIntervalSeconds: 1 })).toEqual([
      `${P}:healthCheckIntervalSeconds = 1: must be from 3 to 60 seconds`,
    ]);
    expect(problems({ healthCheckMode: "https" })).toEqual([
      `${P}:healthCheckMode = "https": must be one of tcp, readyz`,
    ]);
  });

  test("a health check that keeps a dead node in rotation past the failover budget (20 s) is refused, with every other problem", () => {
    const over = (interval: number, retries: number, timeout: number, worst: number) =>
      `${P}:healthCheckIntervalSeconds = ${interval}: with healthCheckRetries ${retries} and healthCheckTimeoutSeconds ${timeout}, a dead node gets new connections for up to ${worst} s (interval × retries + timeout = ${interval} × ${retries} + ${timeout}), over the load balancer's failover budget of 20 s (docs/failover-budget.md); lower the interval, the retries or the timeout`;
    // The prod values (5 × 3 + 3 = 18 s) pass; one more retry does not.
    expect(problems({ healthCheckRetries: 4 })).toEqual([over(5, 4, 3, 23)]);
    // Hetzner's own defaults (15 s interval, 10 s timeout, 3 retries).
    expect(problems({ healthCheckIntervalSeconds: 15, healthCheckTimeoutSeconds: 10 })).toEqual([over(15, 3, 10, 55)]);
    // Exactly the budget passes: 4 × 4 + 4 = 20.
    expect(() =>
      parse({ healthCheckIntervalSeconds: 4, healthCheckRetries: 4, healthCheckTimeoutSeconds: 4 }),
    ).not.toThrow();
    // Reported with the other problems at once.
    expect(problems({ healthCheckRetries: 5, loadBalancerType: "lb41" })).toEqual([
      `${P}:loadBalancerType = "lb41": must be one of lb11, lb21, lb31`,
      over(5, 5, 3, 28),
    ]);
  });

  test("load balancer type and algorithm use the API's spelling", () => {
    expect(problems({ loadBalancerAlgorithm: "roundRobin" })).toEqual([
      `${P}:loadBalancerAlgorithm = "roundRobin": must be one of round_robin, least_connections`,
    ]);
    expect(problems({ loadBalancerType: "lb41" })).toEqual([
      `${P}:loadBalancerType = "lb41": must be one of lb11, lb21, lb31`,
    ]);
  });

  test("a boolean must be true or false", () => {
    expect(problems({ loadBalancerPublicInterface: "yes" })).toEqual([
      `${P}:loadBalancerPublicInterface = "yes": must be true or false`,
    ]);
  });

  test("sshPublicKey must be an OpenSSH public key", () => {
    expect(problems({ sshPublicKey: "-----BEGIN OPENSSH PRIVATE KEY-----" })).toEqual([
      `${P}:sshPublicKey = "-----BEGIN OPENSSH PRIVATE KEY-----": must be one OpenSSH public key line (ssh-ed25519, ssh-rsa or ecdsa-sha2-nistp*)`,
    ]);
  });

  test("apiDnsName must be a DNS name or empty", () => {
    expect(problems({ apiDnsName: "https://api.example.com" })).toEqual([
      `${P}:apiDnsName = "https://api.example.com": must be "" or a lower-case DNS name such as api.prod.example.com`,
    ]);
    expect(parse({ apiDnsName: "" }).apiDnsName).toBeUndefined();
  });

  test("a required key without a value names the stack file", () => {
    expect(problems({}, ["clusterName"])).toEqual([
      `${P}:clusterName is not set: set it in Pulumi.prod.yaml (see the README's configuration reference)`,
    ]);
  });

  test("an unknown key in the project's namespace is refused (typos do not pass silently)", () => {
    expect(problems({ controlPlaneCuont: 5 })).toEqual([
      `${P}:controlPlaneCuont is not a setting of this project; known settings: ${Object.keys(configKeys).join(", ")}`,
    ]);
  });

  test("every problem is reported at once, in one error naming each key", () => {
    let message = "";
    try {
      parse({ controlPlaneCount: 4, location: "nbg2", backupRetentionDays: -3, nodeIps: [] });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message.split("\n")).toEqual([
      "Invalid stack configuration:",
      `  - ${P}:location = "nbg2": must be one of fsn1, nbg1, hel1, ash, hil, sin`,
      `  - ${P}:controlPlaneCount = 4: must be an odd number from 1 to 7 (1, 3, 5 or 7): etcd needs a majority, and an even count adds no fault tolerance`,
      `  - ${P}:backupRetentionDays = -3: must be a positive number of days`,
    ]);
  });
});

describe("backup settings", () => {
  test("the bucket name defaults to <clusterName>-etcd-backups and must be an S3 bucket name", () => {
    expect(parse({ backupBucket: "" }).backup.bucket).toBe("prod-nbg1-etcd-backups");
    expect(parse({ backupBucket: "acme.etcd-backups" }).backup.bucket).toBe("acme.etcd-backups");
    for (const bad of ["ab", "Upper-Case", "-leading", "a..b", "192.168.1.10"]) {
      expect(problems({ backupBucket: bad })).toEqual([
        `${P}:backupBucket = ${JSON.stringify(bad)}: must be "" or an S3 bucket name: 3-63 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit`,
      ]);
    }
  });

  test("the bucket's location is an Object Storage location; \"\" takes the cluster's, where there is one", () => {
    expect(parse({ backupLocation: "" }).backup.location).toBe("nbg1");
    expect(parse({ backupLocation: "hel1" }).backup.location).toBe("hel1");
    expect(problems({ backupLocation: "ash" })).toEqual([
      `${P}:backupLocation = "ash": must be "" or one of fsn1, nbg1, hel1 (the Object Storage locations)`,
    ]);
    expect(problems({ location: "ash", networkZone: "us-east", backupLocation: "" })).toEqual([
      `${P}:backupLocation = "": is "", which means the cluster's location ash, and Object Storage is not offered there: set one of fsn1, nbg1, hel1`,
    ]);
  });

  test("encryption is age or an explicit none, and age needs at least one valid recipient", () => {
    expect(problems({ backupEncryption: "gpg" })).toEqual([`${P}:backupEncryption = "gpg": must be one of age, none`]);
    expect(problems({ backupAgeRecipients: [] })).toEqual([
      `${P}:backupAgeRecipients = []: must list at least one age public key while backupEncryption is age (or set backupEncryption to none, which uploads the cluster's private keys unencrypted)`,
    ]);
    expect(problems({ backupAgeRecipients: ["age1short"] })).toEqual([
      `${P}:backupAgeRecipients = ["age1short"]: entry 1 is not an age public key (age1 followed by 58 bech32 characters)`,
    ]);
    expect(parse({ backupEncryption: "none", backupAgeRecipients: [] }).backup.encryption).toBe("none");
  });

  test("the backup image must be pinned by an @sha256 digest (a tag beside it is fine); a tag alone is refused", () => {
    const digest = `sha256:${"a".repeat(64)}`;
    const allowed =
      "allowed: <registry>/<path>[:<tag>]@sha256:<64 lower-case hex digits>, e.g. ghcr.io/<owner>/<repo>/etcd-backup@sha256:<digest printed by the backup-image workflow>";
    for (const pinned of [
      `registry.example.com/etcd-backup@${digest}`,
      `ghcr.io/platform/hcloud-control-plane/etcd-backup:3.6.5-1@${digest}`,
      `registry.example.com:5000/platform/etcd-backup@${digest}`,
    ])
      expect(parse({ backupImage: pinned }).backup.image).toBe(pinned);
    const unpinned = "is not pinned by digest (a tag can be moved to other content)";
    for (const [value, why] of [
      ["registry.example.com/etcd-backup", unpinned],
      ["registry.example.com/platform/etcd-backup:3.6.5-1", unpinned],
      ["registry.example.com/etcd-backup:latest", unpinned],
      [`registry.example.com/etcd-backup@sha256:${"a".repeat(63)}`, "is not an image reference"],
      [`registry.example.com/etcd-backup@sha256:${"A".repeat(64)}`, "is not an image reference"],
      [`registry.example.com/etcd-backup@sha512:${"a".repeat(64)}`, "is not an image reference"],
      ["not an image", "is not an image reference"],
    ])
      expect(problems({ backupImage: value })).toEqual([
        `${P}:backupImage = ${JSON.stringify(value)}: ${why}; ${allowed}`,
      ]);
  });

  test("Object Storage keys and the PagerDuty routing key must be set", () => {
    expect(problems({}, ["objectStorageAccessKey", "objectStorageSecretKey", "pagerdutyRoutingKey"])).toEqual([
      `${P}:objectStorageAccessKey is not set: set it in Pulumi.prod.yaml (see the README's configuration reference)`,
      `${P}:objectStorageSecretKey is not set: set it in Pulumi.prod.yaml (see the README's configuration reference)`,
      `${P}:pagerdutyRoutingKey is not set: set it in Pulumi.prod.yaml (see the README's configuration reference)`,
    ]);
  });
});

test("the backup signing key must be set, and the message says how to make one", () => {
  expect(problems({}, ["backupSigningKey"])).toEqual([
    `${P}:backupSigningKey is not set: set it in Pulumi.prod.yaml (see the README's configuration reference); it signs every backup: make one with \`ssh-keygen -t ed25519 -N "" -C etcd-backup -f backup-signing\` and set it with \`pulumi config set --secret backupSigningKey < backup-signing\`; keep \`ssh-keygen -y -f backup-signing\` (the public key restores verify with) next to the age identity`,
  ]);
});

describe("monitoring settings", () => {
  test("monitoring is kube-prometheus-stack or existing-operator", () => {
    expect(problems({ monitoring: "victoria-metrics" })).toEqual([
      `${P}:monitoring = "victoria-metrics": must be one of kube-prometheus-stack, existing-operator`,
    ]);
  });

  test("an existing operator needs the labels its ruleSelector matches; the chart's release label is added otherwise", () => {
    expect(problems({ monitoring: "existing-operator" })).toEqual([
      `${P}:prometheusRuleLabels = []: must list the labels your Prometheus' ruleSelector matches (e.g. release=<your release>) while monitoring is existing-operator, or the operator ignores the rules`,
    ]);
    const existing = parse({
      monitoring: "existing-operator",
      prometheusRuleLabels: ["prometheus=platform", "team=infra"],
    });
    expect(existing.monitoring.ruleLabels).toEqual({ prometheus: "platform", team: "infra" });
    const stack = parse({ prometheusRuleLabels: ["team=infra"] });
    expect(stack.monitoring.ruleLabels).toEqual({ team: "infra", release: "kube-prometheus-stack" });
    expect(problems({ prometheusRuleLabels: ["no-equals-sign"] })).toEqual([
      `${P}:prometheusRuleLabels = ["no-equals-sign"]: entry 1 (no-equals-sign) must be key=value with Kubernetes label syntax`,
    ]);
  });

  test("names are Kubernetes names; the etcd job is a plain label value; the runbook base is a URL", () => {
    expect(problems({ prometheusRuleName: "Control_Plane" })).toEqual([
      `${P}:prometheusRuleName = "Control_Plane": must be a Kubernetes name: 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit`,
    ]);
    expect(problems({ etcdJobName: 'etcd"} or vector(1)' })).toHaveLength(1);
    expect(problems({ runbookBaseUrl: "docs/runbooks" })).toEqual([
      `${P}:runbookBaseUrl = "docs/runbooks": must be the http(s) URL of this repository's docs/runbooks directory`,
    ]);
    expect(problems({ runbookBaseUrl: "https://:443/runbooks" })).toEqual([
      `${P}:runbookBaseUrl = "https://:443/runbooks": must be the http(s) URL of this repository's docs/runbooks directory: it has no host`,
    ]);
    expect(parse({ runbookBaseUrl: "https://example.com/runbooks/" }).monitoring.runbookBaseUrl).toBe(
      "https://example.com/runbooks",
    );
  });

  test("the on-call webhook is an http(s) URL with a host, as the WHATWG URL parser reads it", () => {
    for (const url of ["https://:8080/hook", "https://user@/hook", "http:///hook"]) {
      expect(problems({ onCallWebhookUrl: url })).toEqual([
        `${P}:onCallWebhookUrl = "${url}": must be an http(s) URL: it has no host`,
      ]);
    }
    expect(problems({ onCallWebhookUrl: "https://alerts^example.com/hook" })).toEqual([
      `${P}:onCallWebhookUrl = "https://alerts^example.com/hook": must be an http(s) URL: the URL parser refuses it (is the host a valid name or address?)`,
    ]);
    expect(problems({ onCallWebhookUrl: "ftp://alerts.example.com/hook" })).toEqual([
      `${P}:onCallWebhookUrl = "ftp://alerts.example.com/hook": must be an http(s) URL`,
    ]);
    for (const url of [
      "http://10.0.0.5:9093/hook",
      "https://[2001:db8::1]:8443/hook",
      "https://bot@alerts.example.com/h",
    ]) {
      expect(parse({ onCallWebhookUrl: url }).monitoring.paging.onCallWebhookUrl).toBe(url);
    }
  });

  test("the on-call webhook is required while this program deploys the paging configuration", () => {
    expect(problems({ onCallWebhookUrl: "" })).toEqual([
      `${P}:onCallWebhookUrl = "": must be set while monitoring is kube-prometheus-stack: business-hours criticals and all warnings go there`,
    ]);
    expect(
      parse({ onCallWebhookUrl: "", monitoring: "existing-operator", prometheusRuleLabels: ["release=x"] }).monitoring
        .paging.onCallWebhookUrl,
    ).toBe("");
  });

  test("business hours: timezone, days and times are checked and each problem names its setting", () => {
    const found = problems({ alertTimezone: "Mars/Olympus", businessDays: ["funday"], businessHours: ["17:00-09:00"] });
    expect(found).toHaveLength(3);
    expect(found[0]).toMatch(new RegExp(`^${P}:alertTimezone = "Mars/Olympus": `));
    expect(found[1]).toMatch(new RegExp(`^${P}:businessDays = \\["funday"\\]: `));
    expect(found[2]).toMatch(new RegExp(`^${P}:businessHours = \\["17:00-09:00"\\]: `));
  });

  test("the backup alert margin is 10 minutes to a day", () => {
    expect(problems({ backupAlertMarginMinutes: 5 })).toEqual([
      `${P}:backupAlertMarginMinutes = 5: must be from 10 to 1440 minutes`,
    ]);
  });
});

describe("worker join token settings", () => {
  test("the TTL is 1 hour to a year; the rotation is a short label", () => {
    expect(parse().workerJoin).toEqual({ ttlHours: 720, rotation: "1" });
    expect(problems({ workerJoinTokenTtlHours: 0 })).toEqual([
      `${P}:workerJoinTokenTtlHours = 0: must be from 1 to 8760 hours (a year at most)`,
    ]);
    expect(problems({ workerJoinTokenRotation: "next month" })).toEqual([
      `${P}:workerJoinTokenRotation = "next month": must be 1-63 letters, digits, '.', '_' or '-'`,
    ]);
    expect(parse({ workerJoinTokenRotation: "2026-12" }).workerJoin.rotation).toBe("2026-12");
  });
});

describe("what a change does on a running stack", () => {
  test("every setting declares one of nothing, live, rolling, refused, with a one-line reason", () => {
    expect(Object.keys(settings).sort()).toEqual(Object.keys(configKeys).sort());
    for (const [key, { change }] of Object.entries(settings)) {
      expect([key, ["nothing", "live", "rolling", "refused"].includes(change.effect)]).toEqual([key, true]);
      expect([key, /^\S[^\n]{10,200}$/.test(change.why)]).toEqual([key, true]);
    }
  });

  test("settings a running cluster never reads again are refused", () => {
    const creationTime = [
      "clusterName",
      "location",
      "networkZone",
      "networkCidr",
      "subnetCidr",
      "podCidr",
      "serviceCidr",
      "nodeIps",
      "loadBalancerPrivateIp",
      "backupObjectLock",
    ] as const;
    for (const key of creationTime) expect([key, settings[key].change.effect]).toEqual([key, "refused"]);
  });

  test("node-by-node changes are rolling; firewall, load balancer and in-cluster objects are live", () => {
    for (const key of [
      "kubernetesVersion",
      "certificateRenewal",
      "controlPlaneCount",
      "reservedIpFailover",
      "apiDnsName",
      "loadBalancerPublicInterface",
    ] as const) {
      expect([key, settings[key].change.effect]).toEqual([key, "rolling"]);
    }
    for (const key of [
      "adminCidrs",
      "apiCidrs",
      "healthCheckMode",
      "backupSchedule",
      "prometheusRuleLabels",
    ] as const) {
      expect([key, settings[key].change.effect]).toEqual([key, "live"]);
    }
    expect(settings.image.change.effect).toBe("nothing");
  });
});
