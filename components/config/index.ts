/**
 * Reads the whole stack configuration once and returns one typed, validated object.
 *
 * Defaults live in Pulumi.yaml (the project's `config:` block); the Pulumi CLI applies them
 * before the program runs, and so does the offline plan. This module therefore only parses
 * and checks: every rule runs before any resource is registered, and every broken rule is
 * reported at once, each naming the key, the bad value and what is allowed.
 */
import * as pulumi from "@pulumi/pulumi";
import { cidrContains, cidrContainsIp, cidrError, cidrsOverlap, hostAt, Ipv4Cidr, parseIpv4Cidr } from "./cidr";
import { cronError, cronNeverFiresError } from "./cron";
import {
  loadBalancerAlgorithms,
  loadBalancerTypes,
  locationZones,
  networkZones,
  objectStorageLocations,
  privateRanges,
  supportedImages,
} from "../hetzner/facts";
import { businessHoursErrors } from "../addons/monitoring/alertmanager";
import { supportedKubernetesMinors } from "../versions";

/** One control-plane node. `name` is stable: resources are keyed by it, never by position. */
export interface NodeSpec {
  /** `cp-1` .. `cp-N`. */
  name: string;
  /** Pinned private IPv4 in the subnet. */
  privateIp: string;
}

export type HealthCheckMode = "tcp" | "readyz";
export const cniChoices = ["cilium", "calico"] as const;
export type CniChoice = (typeof cniChoices)[number];
export const monitoringChoices = ["kube-prometheus-stack", "existing-operator"] as const;
export type MonitoringChoice = (typeof monitoringChoices)[number];
export const backupEncryptionChoices = ["age", "none"] as const;
export type BackupEncryption = (typeof backupEncryptionChoices)[number];

/** The validated stack configuration. Field docs are in Pulumi.yaml, next to each default. */
export interface ClusterConfig {
  project: string;
  stack: string;
  clusterName: string;
  location: string;
  networkZone: string;
  serverType: string;
  image: string;
  kubernetesVersion: string;
  nodes: NodeSpec[];
  networkCidr: string;
  subnetCidr: string;
  podCidr: string;
  serviceCidr: string;
  adminCidrs: string[];
  apiCidrs: string[];
  sshPublicKey: string;
  apiDnsName?: string;
  loadBalancer: {
    type: string;
    algorithm: string;
    privateIp: string;
    publicInterface: boolean;
    healthCheck: {
      mode: HealthCheckMode;
      /** Seconds. */
      interval: number;
      /** Seconds. */
      timeout: number;
      retries: number;
    };
  };
  /** Pod network add-on, installed once every control-plane node has joined (components/addons/cni.ts). */
  cni: CniChoice;
  /** Run the companion that moves the reserved IP to the kube-vip leader. */
  reservedIpFailover: boolean;
  workerJoin: { ttlHours: number; rotation: string };
  backup: {
    schedule: string;
    retentionDays: number;
    keepLast: number;
    /** The bucket name (derived from clusterName when the setting is ""). */
    bucket: string;
    /** Object Storage location of the bucket. */
    location: string;
    objectLock: boolean;
    encryption: BackupEncryption;
    /** age public keys; non-empty when encryption is age. */
    ageRecipients: string[];
    image: string;
  };
  /** Day-2 operations: certificate renewal and etcd defragmentation. */
  maintenance: {
    /** Each new value renews every node's kubeadm certificates, one node at a time; "" never. */
    certificateRenewal: string;
    certificateExpiryWarningDays: number;
    defrag: {
      /** 5-field cron schedule (UTC) of the etcd-defrag CronJob. */
      schedule: string;
      /** A member is defragmented when at least this share of its database file is free. */
      thresholdPercent: number;
      /** Members with a smaller database file are left alone. */
      minSizeMiB: number;
    };
  };
  monitoring: {
    mode: MonitoringChoice;
    namespace: string;
    ruleName: string;
    /** Labels on the PrometheusRule (the operator's ruleSelector must match them). */
    ruleLabels: Record<string, string>;
    etcdJob: string;
    /** Without a trailing slash. */
    runbookBaseUrl: string;
    backupAlertMarginMinutes: number;
    paging: {
      timezone: string;
      businessDays: string[];
      businessHours: string[];
      onCallWebhookUrl: string;
    };
  };
}

type KeyType = "string" | "integer" | "boolean" | "array";

/** Every project config key the program reads, with the type Pulumi.yaml declares for it. */
export const configKeys = {
  clusterName: "string",
  location: "string",
  networkZone: "string",
  controlPlaneCount: "integer",
  serverType: "string",
  image: "string",
  kubernetesVersion: "string",
  networkCidr: "string",
  subnetCidr: "string",
  podCidr: "string",
  serviceCidr: "string",
  nodeIps: "array",
  adminCidrs: "array",
  allowSshFromAnywhere: "boolean",
  apiCidrs: "array",
  sshPublicKey: "string",
  apiDnsName: "string",
  loadBalancerType: "string",
  loadBalancerAlgorithm: "string",
  loadBalancerPrivateIp: "string",
  loadBalancerPublicInterface: "boolean",
  healthCheckMode: "string",
  healthCheckIntervalSeconds: "integer",
  healthCheckTimeoutSeconds: "integer",
  healthCheckRetries: "integer",
  certificateRenewal: "string",
  certificateExpiryWarningDays: "integer",
  etcdDefragSchedule: "string",
  etcdDefragThresholdPercent: "integer",
  etcdDefragMinSizeMiB: "integer",
  backupSchedule: "string",
  backupRetentionDays: "integer",
  backupKeepLast: "integer",
  backupBucket: "string",
  backupLocation: "string",
  backupObjectLock: "boolean",
  backupEncryption: "string",
  backupAgeRecipients: "array",
  backupImage: "string",
  objectStorageAccessKey: "string",
  objectStorageSecretKey: "string",
  cni: "string",
  workerJoinTokenTtlHours: "integer",
  workerJoinTokenRotation: "string",
  reservedIpFailover: "boolean",
  sshPrivateKey: "string",
  monitoring: "string",
  monitoringNamespace: "string",
  prometheusRuleName: "string",
  prometheusRuleLabels: "array",
  etcdJobName: "string",
  runbookBaseUrl: "string",
  backupAlertMarginMinutes: "integer",
  alertTimezone: "string",
  businessDays: "array",
  businessHours: "array",
  onCallWebhookUrl: "string",
  pagerdutyRoutingKey: "string",
} as const satisfies Record<string, KeyType>;

export type ConfigKey = keyof typeof configKeys;

/**
 * Secrets the program reads from other namespaces. A stack file holds them encrypted, so the
 * committed one cannot; the offline plan gives each a placeholder. `hcloud:token` is the
 * Hetzner provider's token, which the reserved-IP companion on the nodes uses as well.
 */
export const providerSecrets = ["hcloud:token"] as const;

/** Offsets inside the subnet used when `nodeIps` / `loadBalancerPrivateIp` are left empty. */
export const derivedAddress = { firstNodeOffset: 11, loadBalancerOffset: 250 } as const;

export class ConfigError extends pulumi.RunError {
  constructor(readonly problems: string[]) {
    super(`Invalid stack configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

/** Raw config as the Pulumi runtime holds it: fully qualified keys to string values. */
export interface RawConfig {
  project: string;
  stack: string;
  values: Record<string, string>;
  /** The stack's last exported `kubernetesVersion`; undefined for a stack never deployed. */
  deployedKubernetesVersion?: string;
}

/**
 * Reads the running program's configuration and validates it. Throws ConfigError.
 * `deployedKubernetesVersion` is the version the stack last exported ({@link readDeployedOutput}).
 */
export function loadConfig(deployedKubernetesVersion?: string): ClusterConfig {
  return parseConfig({
    project: pulumi.getProject(),
    stack: pulumi.getStack(),
    values: pulumi.runtime.allConfig(),
    deployedKubernetesVersion,
  });
}

/**
 * One output of this stack's last successful update, read through a StackReference to the
 * stack itself (the engine answers it from the stack's checkpoint, in preview and update
 * alike). Undefined for a stack that was never deployed or has no such output. After a failed
 * update it may already hold the new value (Pulumi can record a failed update's outputs): the
 * upgrade preflight on the nodes, which reads the versions really running, guards that case.
 * (Reading a stack's own outputs back this way: pulumi/pulumi#3722. The stack must exist, which
 * it does while it is being previewed or updated.)
 */
export async function readDeployedOutput(name: string): Promise<unknown> {
  const self = new pulumi.StackReference("deployed-stack", {
    name: `${pulumi.getOrganization()}/${pulumi.getProject()}/${pulumi.getStack()}`,
  });
  const details = await self.getOutputDetails(name);
  return details.value ?? details.secretValue;
}

/** A Kubernetes version "x.y.z" as numbers. */
export function parseVersion(version: string): { major: number; minor: number; patch: number } | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(version);
  return m ? { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]) } : undefined;
}

/**
 * Why moving a running cluster from `deployed` to `wanted` is refused, or undefined: kubeadm
 * upgrades one minor version at a time and never downgrades. Patch releases within a minor,
 * and the next minor at any patch, are allowed.
 */
export function versionChangeError(deployed: string, wanted: string): string | undefined {
  const from = parseVersion(deployed);
  const to = parseVersion(wanted);
  if (!from || !to) return undefined;
  const order = (v: { major: number; minor: number; patch: number }) => [v.major, v.minor, v.patch];
  const cmp =
    order(to)
      .map((x, i) => x - order(from)[i])
      .find((d) => d !== 0) ?? 0;
  if (cmp < 0) {
    return `is older than ${deployed}, the version this stack runs (its kubernetesVersion output): kubeadm cannot downgrade a cluster; set it back to ${deployed} or higher`;
  }
  if (to.major !== from.major || to.minor > from.minor + 1) {
    return `skips minor versions: this stack runs ${deployed} (its kubernetesVersion output), and kubeadm upgrades one minor version at a time; set ${from.major}.${from.minor + 1}.x first, run pulumi up, then go on (docs/runbooks/upgrade.md)`;
  }
  return undefined;
}

export interface ClusterSecrets {
  sshPrivateKey: pulumi.Output<string>;
  hcloudToken?: pulumi.Output<string>;
  objectStorage: { accessKey: pulumi.Output<string>; secretKey: pulumi.Output<string> };
  /** Only read when this program deploys the monitoring stack (and so the paging). */
  pagerdutyRoutingKey?: pulumi.Output<string>;
}

/** The secrets, as Pulumi secrets; call after loadConfig validated that they are set. */
export function loadSecrets(cfg: ClusterConfig): ClusterSecrets {
  const config = new pulumi.Config();
  return {
    sshPrivateKey: config.requireSecret("sshPrivateKey"),
    hcloudToken: cfg.reservedIpFailover ? new pulumi.Config("hcloud").requireSecret("token") : undefined,
    objectStorage: {
      accessKey: config.requireSecret("objectStorageAccessKey"),
      secretKey: config.requireSecret("objectStorageSecretKey"),
    },
    pagerdutyRoutingKey:
      cfg.monitoring.mode === "kube-prometheus-stack" ? config.requireSecret("pagerdutyRoutingKey") : undefined,
  };
}

/**
 * A 5-field cron schedule (backup and defragmentation jobs) that fires: a CronJob whose
 * schedule never fires is accepted by the API server and silently never runs.
 */
const cronRule = (v: string): string | undefined => {
  const err = cronError(v);
  return err ? `is not a valid 5-field cron schedule: ${err}` : cronNeverFiresError(v);
};
/** A value whose every change means "do it again" (token rotation, certificate renewal). */
const revisionLabel = /^[A-Za-z0-9._-]{1,63}$/;
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
/** A valid source CIDR with prefix length 0 (`0.0.0.0/0`, `::/0`, `0.0.0.0/00`) admits every address. */
const anywhere = (cidr: string): boolean => Number(cidr.slice(cidr.lastIndexOf("/") + 1)) === 0;

/** Pure: raw config in, validated config out (or ConfigError listing every problem). */
export function parseConfig(raw: RawConfig): ClusterConfig {
  const problems: string[] = [];
  const reader = new Reader(raw, problems);
  const r = <K extends ConfigKey>(key: K) => reader.read(key);

  reader.rejectUnknownKeys();

  const clusterName = reader.check("clusterName", r("clusterName") as string | undefined, (v) =>
    /^[a-z]([a-z0-9-]{0,28}[a-z0-9])?$/.test(v)
      ? undefined
      : "must be 1-30 characters of lower-case letters, digits and '-', starting with a letter and not ending with '-'",
  );

  const location = reader.oneOf("location", r("location") as string | undefined, Object.keys(locationZones));
  const networkZone = reader.check("networkZone", r("networkZone") as string | undefined, (v) => {
    if (!networkZones.includes(v)) return `must be one of ${networkZones.join(", ")}`;
    if (location && locationZones[location] !== v) {
      return `does not contain location "${location}" (${location} is in ${locationZones[location]}); set networkZone to ${locationZones[location]} or choose one of ${Object.keys(
        locationZones,
      )
        .filter((l) => locationZones[l] === v)
        .join(", ")}`;
    }
    return undefined;
  });

  const count = reader.check("controlPlaneCount", r("controlPlaneCount") as number | undefined, (v) =>
    v >= 1 && v <= 7 && v % 2 === 1
      ? undefined
      : "must be an odd number from 1 to 7 (1, 3, 5 or 7): etcd needs a majority, and an even count adds no fault tolerance",
  );
  const serverType = reader.check("serverType", r("serverType") as string | undefined, (v) =>
    /^[a-z]+\d+[a-z]*$/.test(v) ? undefined : "must be a Hetzner server type name such as ccx23 or cpx31",
  );
  const image = reader.oneOf("image", r("image") as string | undefined, supportedImages);
  const kubernetesVersionRaw = r("kubernetesVersion") as string | undefined;
  const wellFormed = (v: string) => /^1\.(0|[1-9]\d*)\.(0|[1-9]\d*)$/.test(v);
  const kubernetesVersion = reader.check("kubernetesVersion", kubernetesVersionRaw, (v) => {
    if (!wellFormed(v)) return 'must be a Kubernetes version "x.y.z" such as "1.34.2" (no "v" prefix)';
    const { major, min, max } = supportedKubernetesMinors;
    const minor = parseVersion(v)!.minor;
    return minor >= min && minor <= max
      ? undefined
      : `must be a ${major}.${min} to ${major}.${max} version (supportedKubernetesMinors in components/versions.ts): the pinned add-ons, the kubeadm v1beta4 configuration and the node scripts were made for those minors`;
  });
  // Checked even outside the supported minors, so that both refusals are reported at once.
  const deployedVersion = raw.deployedKubernetesVersion;
  if (kubernetesVersionRaw && wellFormed(kubernetesVersionRaw) && deployedVersion) {
    const error = versionChangeError(deployedVersion, kubernetesVersionRaw);
    if (error) reader.problem("kubernetesVersion", kubernetesVersionRaw, error);
  }

  // Networks: each must parse, the network must be private, the subnet inside it, and
  // nothing that routes differently (pods, services) may overlap anything else.
  const network = reader.ipv4Cidr("networkCidr", r("networkCidr") as string | undefined);
  const subnet = reader.ipv4Cidr("subnetCidr", r("subnetCidr") as string | undefined);
  const pods = reader.ipv4Cidr("podCidr", r("podCidr") as string | undefined);
  const services = reader.ipv4Cidr("serviceCidr", r("serviceCidr") as string | undefined);
  if (network) {
    const inPrivate = privateRanges.some((p) => cidrContains(parseIpv4Cidr(p) as Ipv4Cidr, network));
    if (!inPrivate)
      reader.problem("networkCidr", network.text, `must lie inside a private range (${privateRanges.join(", ")})`);
    else if (network.prefix > 24)
      reader.problem("networkCidr", network.text, "must be /24 or larger (Hetzner's limit)");
  }
  if (network && subnet && !cidrContains(network, subnet)) {
    reader.problem("subnetCidr", subnet.text, `must lie inside networkCidr ${network.text}`);
  }
  const named: [ConfigKey, Ipv4Cidr | undefined][] = [
    ["networkCidr", network],
    ["podCidr", pods],
    ["serviceCidr", services],
  ];
  for (let i = 0; i < named.length; i++) {
    for (let j = i + 1; j < named.length; j++) {
      const [ka, a] = named[i];
      const [kb, b] = named[j];
      if (a && b && cidrsOverlap(a, b)) reader.problem(kb, b.text, `must not overlap ${ka} ${a.text}`);
    }
  }

  // Pinned addresses: inside the subnet, not reserved, unique.
  const reserved = new Map<string, string>();
  if (subnet) {
    reserved.set(hostAt(subnet, 0), "the subnet's network address");
    reserved.set(hostAt(subnet, subnet.size - 1), "the subnet's broadcast address");
  }
  if (network) reserved.set(hostAt(network, 1), "the network gateway Hetzner reserves");
  const checkPinned = (ip: string): string | undefined => {
    if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(ip) || ip.split(".").some((o) => Number(o) > 255)) {
      return "must be an IPv4 address";
    }
    if (subnet && !cidrContainsIp(subnet, ip)) return `must lie inside subnetCidr ${subnet.text}`;
    return reserved.has(ip) ? `is ${reserved.get(ip)}` : undefined;
  };

  // [] derives addresses from the subnet; derived ones pass the same checks as listed ones.
  const nodeIpsRaw = r("nodeIps") as string[] | undefined;
  let nodeIps: string[] | undefined;
  if (nodeIpsRaw && count !== undefined && subnet) {
    const derived = nodeIpsRaw.length === 0;
    if (!derived && nodeIpsRaw.length !== count) {
      reader.problem(
        "nodeIps",
        nodeIpsRaw,
        `must list exactly controlPlaneCount (${count}) addresses, one per node in order cp-1..cp-${count}, or be [] to derive them from subnetCidr`,
      );
    } else {
      nodeIps = derived
        ? Array.from({ length: count }, (_, i) => hostAt(subnet, derivedAddress.firstNodeOffset + i))
        : nodeIpsRaw;
      nodeIps.forEach((ip, i) => {
        const err = checkPinned(ip);
        if (err && derived) {
          reader.problem(
            "nodeIps",
            nodeIpsRaw,
            `the derived address of cp-${i + 1} (${ip}) ${err}; list the addresses`,
          );
        } else if (err) {
          reader.problem("nodeIps", nodeIpsRaw, `entry ${i + 1} (${ip}) ${err}`);
        }
      });
    }
  }

  const lbIpRaw = r("loadBalancerPrivateIp") as string | undefined;
  let lbIp: string | undefined;
  if (lbIpRaw !== undefined && subnet) {
    const derived = lbIpRaw === "";
    const ip = derived ? hostAt(subnet, derivedAddress.loadBalancerOffset) : lbIpRaw;
    const err = checkPinned(ip);
    if (err && derived) reader.problem("loadBalancerPrivateIp", lbIpRaw, `the derived address ${ip} ${err}; set one`);
    else if (err) reader.problem("loadBalancerPrivateIp", lbIpRaw, err);
    else lbIp = ip;
  }
  if (nodeIps) {
    const seen = new Map<string, string>();
    nodeIps.forEach((ip, i) => {
      const owner = seen.get(ip);
      if (owner) reader.problem("nodeIps", nodeIpsRaw, `entry ${i + 1} (${ip}) is already used by ${owner}`);
      seen.set(ip, `cp-${i + 1}`);
    });
    if (lbIp && seen.has(lbIp)) {
      reader.problem("loadBalancerPrivateIp", lbIpRaw, `${lbIp} is already used by ${seen.get(lbIp)} (nodeIps)`);
    }
  }

  let adminCidrs = reader.cidrList("adminCidrs", r("adminCidrs") as string[] | undefined, true);
  const sshFromAnywhere = r("allowSshFromAnywhere") as boolean | undefined;
  const openToAll = adminCidrs?.findIndex(anywhere) ?? -1;
  if (adminCidrs && openToAll >= 0 && sshFromAnywhere === false) {
    reader.problem(
      "adminCidrs",
      adminCidrs,
      `entry ${openToAll + 1} (${adminCidrs[openToAll]}) opens SSH (port 22) on every node to the whole internet; list the networks operators and the Pulumi runner connect from, or set ${reader.fullKey("allowSshFromAnywhere")} to true to accept it`,
    );
    adminCidrs = undefined;
  }
  // apiCidrs may hold 0.0.0.0/0 without an opt-in: port 6443 is the API server, which
  // authenticates every request, and the load balancer's public 6443 (which no Hetzner
  // firewall can filter) is open to the internet anyway while loadBalancerPublicInterface is on.
  const apiCidrs = reader.cidrList("apiCidrs", r("apiCidrs") as string[] | undefined, false);
  const sshPublicKey = reader.check("sshPublicKey", r("sshPublicKey") as string | undefined, (v) =>
    /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( \S.*)?$/.test(v.trim())
      ? undefined
      : "must be one OpenSSH public key line (ssh-ed25519, ssh-rsa or ecdsa-sha2-nistp*)",
  );
  const apiDnsNameRaw = r("apiDnsName") as string | undefined;
  const apiDnsName = reader.check("apiDnsName", apiDnsNameRaw, (v) =>
    v === "" || /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/.test(v)
      ? undefined
      : 'must be "" or a lower-case DNS name such as api.prod.example.com',
  );

  const lbType = reader.oneOf("loadBalancerType", r("loadBalancerType") as string | undefined, loadBalancerTypes);
  const lbAlgorithm = reader.oneOf(
    "loadBalancerAlgorithm",
    r("loadBalancerAlgorithm") as string | undefined,
    loadBalancerAlgorithms,
  );
  const lbPublic = r("loadBalancerPublicInterface") as boolean | undefined;
  const mode = reader.oneOf("healthCheckMode", r("healthCheckMode") as string | undefined, ["tcp", "readyz"] as const);
  const inRange = (min: number, max: number, unit: string) => (v: number) =>
    v >= min && v <= max ? undefined : `must be from ${min} to ${max}${unit}`;
  const interval = reader.check(
    "healthCheckIntervalSeconds",
    r("healthCheckIntervalSeconds") as number | undefined,
    inRange(3, 60, " seconds"),
  );
  const timeout = reader.check(
    "healthCheckTimeoutSeconds",
    r("healthCheckTimeoutSeconds") as number | undefined,
    (v) =>
      inRange(1, 60, " seconds")(v) ??
      (interval !== undefined && v > interval ? `must not exceed healthCheckIntervalSeconds (${interval})` : undefined),
  );
  const retries = reader.check("healthCheckRetries", r("healthCheckRetries") as number | undefined, inRange(1, 10, ""));

  const schedule = reader.check("backupSchedule", r("backupSchedule") as string | undefined, cronRule);
  const certificateRenewal = reader.check("certificateRenewal", r("certificateRenewal") as string | undefined, (v) =>
    v === "" || revisionLabel.test(v)
      ? undefined
      : "must be \"\" (no renewal) or 1-63 letters, digits, '.', '_' or '-' such as 2027-05-01; each new value renews the certificates once",
  );
  const certificateExpiryWarningDays = reader.check(
    "certificateExpiryWarningDays",
    r("certificateExpiryWarningDays") as number | undefined,
    (v) =>
      v >= 8 && v <= 180
        ? undefined
        : "must be from 8 to 180 days (the critical alert fires at 7 days; kubeadm certificates last 365)",
  );
  const defragSchedule = reader.check("etcdDefragSchedule", r("etcdDefragSchedule") as string | undefined, cronRule);
  const defragThreshold = reader.check(
    "etcdDefragThresholdPercent",
    r("etcdDefragThresholdPercent") as number | undefined,
    (v) => (v >= 1 && v <= 99 ? undefined : "must be from 1 to 99 (percent of the database file that is free)"),
  );
  const defragMinSize = reader.check("etcdDefragMinSizeMiB", r("etcdDefragMinSizeMiB") as number | undefined, (v) =>
    v >= 0 && v <= 8192 ? undefined : "must be from 0 to 8192 MiB (etcd's largest quota)",
  );
  const retentionDays = reader.check("backupRetentionDays", r("backupRetentionDays") as number | undefined, (v) =>
    v >= 1 ? undefined : "must be a positive number of days",
  );
  const keepLast = reader.check("backupKeepLast", r("backupKeepLast") as number | undefined, (v) =>
    v >= 1 ? undefined : "must be at least 1: retention always keeps the newest backups",
  );

  const bucketRaw = r("backupBucket") as string | undefined;
  const bucket = reader.check("backupBucket", bucketRaw, (v) =>
    v === "" || (/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(v) && !v.includes("..") && !/^\d+(\.\d+){3}$/.test(v))
      ? undefined
      : "must be \"\" or an S3 bucket name: 3-63 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit",
  );
  const backupLocationRaw = r("backupLocation") as string | undefined;
  const backupLocation = reader.check("backupLocation", backupLocationRaw, (v) => {
    if (v !== "") {
      return (objectStorageLocations as readonly string[]).includes(v)
        ? undefined
        : `must be "" or one of ${objectStorageLocations.join(", ")} (the Object Storage locations)`;
    }
    return location && !(objectStorageLocations as readonly string[]).includes(location)
      ? `is "", which means the cluster's location ${location}, and Object Storage is not offered there: set one of ${objectStorageLocations.join(", ")}`
      : undefined;
  });
  const objectLock = r("backupObjectLock") as boolean | undefined;
  const encryption = reader.oneOf(
    "backupEncryption",
    r("backupEncryption") as string | undefined,
    backupEncryptionChoices,
  );
  const recipients = reader.check("backupAgeRecipients", r("backupAgeRecipients") as string[] | undefined, (v) => {
    const bad = v.findIndex((k) => !/^age1[02-9ac-hj-np-z]{58}$/.test(k));
    if (bad >= 0) return `entry ${bad + 1} is not an age public key (age1 followed by 58 bech32 characters)`;
    if (encryption === "age" && v.length === 0) {
      return "must list at least one age public key while backupEncryption is age (or set backupEncryption to none, which uploads the cluster's private keys unencrypted)";
    }
    return undefined;
  });
  const backupImage = reader.check("backupImage", r("backupImage") as string | undefined, imageReferenceError);

  const cni = reader.oneOf("cni", r("cni") as string | undefined, cniChoices);
  const failover = r("reservedIpFailover") as boolean | undefined;
  const tokenTtl = reader.check(
    "workerJoinTokenTtlHours",
    r("workerJoinTokenTtlHours") as number | undefined,
    inRange(1, 8760, " hours (a year at most)"),
  );
  const tokenRotation = reader.check(
    "workerJoinTokenRotation",
    r("workerJoinTokenRotation") as string | undefined,
    (v) => (revisionLabel.test(v) ? undefined : "must be 1-63 letters, digits, '.', '_' or '-'"),
  );
  // Read only to report them missing; loadSecrets hands them on as Pulumi secrets.
  r("sshPrivateKey");
  r("objectStorageAccessKey");
  r("objectStorageSecretKey");
  r("pagerdutyRoutingKey");

  const monitoringMode = reader.oneOf("monitoring", r("monitoring") as string | undefined, monitoringChoices);
  const dnsLabel = (v: string) =>
    /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(v)
      ? undefined
      : "must be a Kubernetes name: 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit";
  const monitoringNamespace = reader.check(
    "monitoringNamespace",
    r("monitoringNamespace") as string | undefined,
    dnsLabel,
  );
  const ruleName = reader.check("prometheusRuleName", r("prometheusRuleName") as string | undefined, dnsLabel);
  const ruleLabelsRaw = r("prometheusRuleLabels") as string[] | undefined;
  let ruleLabels: Record<string, string> | undefined;
  if (ruleLabelsRaw !== undefined) {
    const labels: Record<string, string> = {};
    let ok = true;
    ruleLabelsRaw.forEach((entry, i) => {
      const m =
        /^((?:[a-z0-9]([a-z0-9.-]*[a-z0-9])?\/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)=([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$/.exec(
          entry,
        );
      if (!m) {
        reader.problem(
          "prometheusRuleLabels",
          ruleLabelsRaw,
          `entry ${i + 1} (${entry}) must be key=value with Kubernetes label syntax`,
        );
        ok = false;
      } else labels[m[1]] = m[4] ?? "";
    });
    if (ok && monitoringMode === "existing-operator" && ruleLabelsRaw.length === 0) {
      reader.problem(
        "prometheusRuleLabels",
        ruleLabelsRaw,
        "must list the labels your Prometheus' ruleSelector matches (e.g. release=<your release>) while monitoring is existing-operator, or the operator ignores the rules",
      );
      ok = false;
    }
    if (ok)
      ruleLabels =
        monitoringMode === "kube-prometheus-stack" ? { ...labels, release: "kube-prometheus-stack" } : labels;
  }
  const etcdJob = reader.check("etcdJobName", r("etcdJobName") as string | undefined, (v) =>
    /^[A-Za-z0-9_.:/-]+$/.test(v)
      ? undefined
      : "must be the job label of the etcd scrape job: letters, digits and _ . : / - (kube-prometheus-stack on kubeadm: kube-etcd)",
  );
  const runbookBaseUrl = reader.check(
    "runbookBaseUrl",
    r("runbookBaseUrl") as string | undefined,
    httpUrlRule("must be the http(s) URL of this repository's docs/runbooks directory"),
  );
  const margin = reader.check(
    "backupAlertMarginMinutes",
    r("backupAlertMarginMinutes") as number | undefined,
    inRange(10, 1440, " minutes"),
  );
  const paging = {
    timezone: r("alertTimezone") as string | undefined,
    businessDays: r("businessDays") as string[] | undefined,
    businessHours: r("businessHours") as string[] | undefined,
  };
  if (paging.timezone !== undefined && paging.businessDays !== undefined && paging.businessHours !== undefined) {
    const errors = businessHoursErrors({
      timezone: paging.timezone,
      businessDays: paging.businessDays,
      businessHours: paging.businessHours,
    });
    for (const e of errors.timezone) reader.problem("alertTimezone", paging.timezone, e);
    for (const e of errors.businessDays) reader.problem("businessDays", paging.businessDays, e);
    for (const e of errors.businessHours) reader.problem("businessHours", paging.businessHours, e);
  }
  const onCallWebhookUrl = reader.check("onCallWebhookUrl", r("onCallWebhookUrl") as string | undefined, (v) => {
    if (v === "") {
      return monitoringMode === "kube-prometheus-stack"
        ? "must be set while monitoring is kube-prometheus-stack: business-hours criticals and all warnings go there"
        : undefined;
    }
    return httpUrlRule("must be an http(s) URL")(v);
  });
  if (failover && raw.values["hcloud:token"] === undefined) {
    problems.push(
      "hcloud:token is not set, and reservedIpFailover needs it on the nodes: `pulumi config set --secret hcloud:token`, or set reservedIpFailover to false",
    );
  }

  if (problems.length > 0) throw new ConfigError(problems);
  // Every value below was checked above; a missing one would have been reported.
  return {
    project: raw.project,
    stack: raw.stack,
    clusterName: clusterName!,
    location: location!,
    networkZone: networkZone!,
    serverType: serverType!,
    image: image!,
    kubernetesVersion: kubernetesVersion!,
    nodes: nodeIps!.map((privateIp, i) => ({ name: `cp-${i + 1}`, privateIp })),
    networkCidr: network!.text,
    subnetCidr: subnet!.text,
    podCidr: pods!.text,
    serviceCidr: services!.text,
    adminCidrs: adminCidrs!,
    apiCidrs: apiCidrs!,
    sshPublicKey: sshPublicKey!.trim(),
    apiDnsName: apiDnsName ? apiDnsName : undefined,
    loadBalancer: {
      type: lbType!,
      algorithm: lbAlgorithm!,
      privateIp: lbIp!,
      publicInterface: lbPublic!,
      healthCheck: { mode: mode!, interval: interval!, timeout: timeout!, retries: retries! },
    },
    cni: cni!,
    reservedIpFailover: failover!,
    workerJoin: { ttlHours: tokenTtl!, rotation: tokenRotation! },
    backup: {
      schedule: schedule!,
      retentionDays: retentionDays!,
      keepLast: keepLast!,
      bucket: bucket || `${clusterName}-etcd-backups`,
      location: backupLocation || location!,
      objectLock: objectLock!,
      encryption: encryption!,
      ageRecipients: recipients!,
      image: backupImage!,
    },
    maintenance: {
      certificateRenewal: certificateRenewal!,
      certificateExpiryWarningDays: certificateExpiryWarningDays!,
      defrag: { schedule: defragSchedule!, thresholdPercent: defragThreshold!, minSizeMiB: defragMinSize! },
    },
    monitoring: {
      mode: monitoringMode!,
      namespace: monitoringNamespace!,
      ruleName: ruleName!,
      ruleLabels: ruleLabels!,
      etcdJob: etcdJob!,
      runbookBaseUrl: runbookBaseUrl!.replace(/\/+$/, ""),
      backupAlertMarginMinutes: margin!,
      paging: {
        timezone: paging.timezone!,
        businessDays: paging.businessDays!,
        businessHours: paging.businessHours!,
        onCallWebhookUrl: onCallWebhookUrl!,
      },
    },
  };
}

/**
 * Why `ref` is not a pinned image reference, or undefined: `registry/path:tag` or
 * `...@sha256:<digest>`; `latest` and a missing tag are refused, since a CronJob that pulls a
 * moving tag runs a different backup than the one tested.
 */
export function imageReferenceError(ref: string): string | undefined {
  const m =
    /^([a-z0-9]+(?:[._-][a-z0-9]+)*(?::\d+)?(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+)(?::([\w][\w.-]{0,127}))?(@sha256:[a-f0-9]{64})?$/.exec(
      ref,
    );
  if (!m) return "must be an image reference such as registry.example.com/platform/etcd-backup:3.6.5-1";
  if (!m[2] && !m[3]) return "must be pinned with a tag or an @sha256 digest";
  if (m[2] === "latest" && !m[3]) return "must not use the moving tag latest; pin a version tag or a digest";
  return undefined;
}

/** Collects problems while parsing raw strings into typed values. */
class Reader {
  constructor(
    private readonly raw: RawConfig,
    private readonly problems: string[],
  ) {}

  fullKey(key: string): string {
    return `${this.raw.project}:${key}`;
  }

  problem(key: ConfigKey, value: unknown, text: string): void {
    this.problems.push(`${this.fullKey(key)} = ${JSON.stringify(value)}: ${text}`);
  }

  /** Keys in this project's namespace that the program does not know are typos. */
  rejectUnknownKeys(): void {
    const prefix = `${this.raw.project}:`;
    for (const fullKey of Object.keys(this.raw.values).sort()) {
      if (!fullKey.startsWith(prefix)) continue;
      const key = fullKey.slice(prefix.length);
      if (!(key in configKeys)) {
        this.problems.push(
          `${fullKey} is not a setting of this project; known settings: ${Object.keys(configKeys).join(", ")}`,
        );
      }
    }
  }

  read(key: ConfigKey): string | number | boolean | string[] | undefined {
    const text = this.raw.values[this.fullKey(key)];
    if (text === undefined) {
      this.problems.push(
        `${this.fullKey(key)} is not set: set it in Pulumi.${this.raw.stack}.yaml (see the README's configuration reference)`,
      );
      return undefined;
    }
    switch (configKeys[key] as KeyType) {
      case "string":
        return text;
      case "integer":
        if (/^-?\d+$/.test(text.trim())) return Number(text);
        this.problem(key, text, "must be a whole number");
        return undefined;
      case "boolean":
        if (text === "true" || text === "false") return text === "true";
        this.problem(key, text, "must be true or false");
        return undefined;
      case "array": {
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = undefined;
        }
        if (Array.isArray(parsed) && parsed.every((x) => typeof x === "string")) return parsed as string[];
        this.problem(key, text, "must be a list of strings");
        return undefined;
      }
    }
  }

  check<T>(key: ConfigKey, value: T | undefined, rule: (v: T) => string | undefined): T | undefined {
    if (value === undefined) return undefined;
    const error = rule(value);
    if (error) {
      this.problem(key, value, error);
      return undefined;
    }
    return value;
  }

  oneOf<T extends string>(key: ConfigKey, value: string | undefined, allowed: readonly T[]): T | undefined {
    return this.check(key, value, (v) =>
      allowed.includes(v as T) ? undefined : `must be one of ${allowed.join(", ")}`,
    ) as T | undefined;
  }

  ipv4Cidr(key: ConfigKey, value: string | undefined): Ipv4Cidr | undefined {
    if (value === undefined) return undefined;
    const parsed = parseIpv4Cidr(value);
    if (typeof parsed === "string") {
      this.problem(key, value, parsed);
      return undefined;
    }
    return parsed;
  }

  cidrList(key: ConfigKey, value: string[] | undefined, nonEmpty: boolean): string[] | undefined {
    if (value === undefined) return undefined;
    let ok = true;
    if (nonEmpty && value.length === 0) {
      this.problem(
        key,
        value,
        "must list at least one source CIDR (where operators and the Pulumi runner connect from)",
      );
      ok = false;
    }
    value.forEach((cidr, i) => {
      const err = cidrError(cidr);
      if (err) {
        this.problem(key, value, `entry ${i + 1} (${cidr}) ${err}`);
        ok = false;
      }
    });
    const dupes = value.filter((c, i) => value.indexOf(c) !== i);
    if (dupes.length > 0) {
      this.problem(key, value, `lists ${dupes[0]} more than once`);
      ok = false;
    }
    return ok ? value : undefined;
  }
}
