/**
 * Reads the whole stack configuration once and returns one typed, validated object.
 *
 * Each setting is declared once, in the file of its concern (cluster.ts, network.ts,
 * loadBalancer.ts, addons.ts, maintenance.ts, backup.ts, monitoring.ts): its type, its rule and
 * what a change of it does on a live stack; the rules that relate settings sit beside them.
 * Defaults live in Pulumi.yaml (the project's `config:` block); the Pulumi CLI applies them
 * before the program runs, and so does the offline plan. This module therefore only parses
 * and checks: every rule runs before any resource is registered, and every broken rule is
 * reported at once, each naming the key, the bad value and what is allowed.
 */
import * as pulumi from "@pulumi/pulumi";
import { creationChangeProblems, CreationSettings, creationSettings, LiveState } from "./deployed";
import { addonSettings, CniChoice, readAddons } from "./addons";
import { BackupEncryption, BackupObjectLockMode, backupSettings, readBackup } from "./backup";
import { clusterSettings, readCluster } from "./cluster";
import { cloudSettings, readCloud, ReclaimPolicy } from "./cloud";
import { HealthCheckMode, loadBalancerSettings, readLoadBalancer } from "./loadBalancer";
import { maintenanceSettings, readMaintenance } from "./maintenance";
import { MonitoringChoice, monitoringSettings, readMonitoring } from "./monitoring";
import { networkSettings, readNetwork } from "./network";
import { KeyType, RawConfig, Reader, Setting } from "./schema";

export { cniChoices } from "./addons";
export type { CniChoice } from "./addons";
export { backupEncryptionChoices, imageReferenceError } from "./backup";
export type { BackupEncryption, BackupObjectLockMode } from "./backup";
export { parseVersion, versionChangeError } from "./cluster";
export type { ReclaimPolicy } from "./cloud";
export type { HealthCheckMode } from "./loadBalancer";
export { monitoringChoices } from "./monitoring";
export type { MonitoringChoice } from "./monitoring";
export type { ListedServer, LiveState } from "./deployed";
export { derivedAddress } from "./network";
export type { ChangeEffect, KeyType, LiveChange, RawConfig, Setting } from "./schema";

/** One control-plane node. `name` is stable: resources are keyed by it, never by position. */
export interface NodeSpec {
  /** `cp-1` .. `cp-N`. */
  name: string;
  /** Pinned private IPv4 in the subnet. */
  privateIp: string;
}

/** The validated stack configuration. Field docs are in Pulumi.yaml, next to each default. */
export interface ClusterConfig {
  project: string;
  stack: string;
  /**
   * The values of the settings a running cluster cannot take, exported as the stack output
   * `creationSettings` and compared with at the next update (components/config/deployed.ts).
   */
  creationSettings: CreationSettings;
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
  /** The Hetzner cloud integration (components/addons/cloudController.ts, csi.ts). */
  cloud: {
    /** Install the hcloud cloud controller manager. */
    controllerManager: boolean;
    /** Install the hcloud CSI driver and its StorageClass. */
    csiDriver: boolean;
    storageClass: { name: string; isDefault: boolean; reclaimPolicy: ReclaimPolicy };
    /** hcloudCloudToken is set; otherwise both controllers use hcloud:token. */
    dedicatedToken: boolean;
    /** The operator states every running kubelet runs with --cloud-provider=external. */
    kubeletCloudProviderMigrated: boolean;
  };
  backup: {
    schedule: string;
    /** Retention tiers: every backup for keepAllHours, the first of each UTC hour for keepHourlyDays, of each UTC day for retentionDays. */
    keepAllHours: number;
    keepHourlyDays: number;
    retentionDays: number;
    /** The newest complete backups always kept. */
    keepLast: number;
    /** The bucket name (derived from clusterName when the setting is ""). */
    bucket: string;
    /** Object Storage location of the bucket. */
    location: string;
    objectLock: boolean;
    /** The Object Lock mode the job sets on every object (used only with objectLock). */
    objectLockMode: BackupObjectLockMode;
    encryption: BackupEncryption;
    /** age public keys; non-empty when encryption is age. */
    ageRecipients: string[];
    image: string;
    /**
     * "" no restore; latest or a backup key: a node whose setup finds no member answering
     * initializes only from a backup seeded onto it (scripts/ops/etcd-restore.sh seed).
     */
    restoreFrom: string;
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

/** Every project setting, in the order of its concern: its type, rule and live-change class. */
export const settings = {
  ...clusterSettings,
  ...networkSettings,
  ...loadBalancerSettings,
  ...addonSettings,
  ...cloudSettings,
  ...maintenanceSettings,
  ...backupSettings,
  ...monitoringSettings,
} satisfies Record<string, Setting>;

export type ConfigKey = keyof typeof settings;

/** Every project config key the program reads, with the type Pulumi.yaml declares for it. */
export const configKeys = Object.fromEntries(Object.entries(settings).map(([k, s]) => [k, s.type])) as Record<
  ConfigKey,
  KeyType
>;

/**
 * Secrets the program reads from other namespaces. A stack file holds them encrypted, so the
 * committed one cannot; the offline plan gives each a placeholder. `hcloud:token` is the
 * Hetzner provider's token, which the reserved-IP companion on the nodes uses as well.
 */
export const providerSecrets = ["hcloud:token"] as const;

export class ConfigError extends pulumi.RunError {
  constructor(readonly problems: string[]) {
    super(`Invalid stack configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

/**
 * Reads the running program's configuration and validates it. Throws ConfigError.
 * `deployedKubernetesVersion` is the version the stack last exported ({@link readDeployedOutputs}),
 * `deployedSettings` its `creationSettings` output: a refused setting that differs is an error.
 * `live` is what Hetzner lists now (a new server type is accepted once every server runs it).
 */
export function loadConfig(
  deployedKubernetesVersion?: string,
  deployedSettings?: Record<string, unknown>,
  live: LiveState = {},
): ClusterConfig {
  return parseConfig(
    {
      project: pulumi.getProject(),
      stack: pulumi.getStack(),
      values: pulumi.runtime.allConfig(),
      deployedKubernetesVersion,
      deployedSettings,
    },
    live,
  );
}

/**
 * Outputs of this stack's last successful update, read through one StackReference to the
 * stack itself (the engine answers it from the stack's checkpoint, in preview and update
 * alike; one reference, since two resources with one URN are an error). An output is undefined
 * for a stack that was never deployed or has no such output. After a failed
 * update it may already hold the new value (Pulumi can record a failed update's outputs): the
 * upgrade preflight on the nodes, which reads the versions really running, guards that case.
 * (Reading a stack's own outputs back this way: pulumi/pulumi#3722. The stack must exist, which
 * it does while it is being previewed or updated.)
 */
export async function readDeployedOutputs<K extends string>(names: readonly K[]): Promise<Record<K, unknown>> {
  const self = new pulumi.StackReference("deployed-stack", {
    name: `${pulumi.getOrganization()}/${pulumi.getProject()}/${pulumi.getStack()}`,
  });
  const values = await Promise.all(
    names.map(async (name) => {
      const details = await self.getOutputDetails(name);
      return [name, details.value ?? details.secretValue] as const;
    }),
  );
  return Object.fromEntries(values) as Record<K, unknown>;
}

export interface ClusterSecrets {
  sshPrivateKey: pulumi.Output<string>;
  hcloudToken?: pulumi.Output<string>;
  /**
   * The token of the cloud controller and the CSI driver: hcloudCloudToken, or hcloud:token when
   * that is ""; undefined when both are switched off.
   */
  cloudToken?: pulumi.Output<string>;
  objectStorage: { accessKey: pulumi.Output<string>; secretKey: pulumi.Output<string> };
  /** The OpenSSH ed25519 private key the backup job signs every sidecar with. */
  backupSigningKey: pulumi.Output<string>;
  /** Only read when this program deploys the monitoring stack (and so the paging). */
  pagerdutyRoutingKey?: pulumi.Output<string>;
}

/** The secrets, as Pulumi secrets; call after loadConfig validated that they are set. */
export function loadSecrets(cfg: ClusterConfig): ClusterSecrets {
  const config = new pulumi.Config();
  return {
    sshPrivateKey: config.requireSecret("sshPrivateKey"),
    hcloudToken: cfg.reservedIpFailover ? new pulumi.Config("hcloud").requireSecret("token") : undefined,
    cloudToken:
      cfg.cloud.controllerManager || cfg.cloud.csiDriver
        ? cfg.cloud.dedicatedToken
          ? config.requireSecret("hcloudCloudToken")
          : new pulumi.Config("hcloud").requireSecret("token")
        : undefined,
    objectStorage: {
      accessKey: config.requireSecret("objectStorageAccessKey"),
      secretKey: config.requireSecret("objectStorageSecretKey"),
    },
    backupSigningKey: config.requireSecret("backupSigningKey"),
    pagerdutyRoutingKey:
      cfg.monitoring.mode === "kube-prometheus-stack" ? config.requireSecret("pagerdutyRoutingKey") : undefined,
  };
}

/**
 * Pure: raw config in, validated config out (or ConfigError listing every problem). `live`: the
 * control-plane servers as Hetzner listed them (components/config/deployed.ts LiveState).
 */
export function parseConfig(raw: RawConfig, live: LiveState = {}): ClusterConfig {
  const reader = new Reader(raw);
  reader.rejectUnknownKeys(Object.keys(settings));
  const cluster = readCluster(reader);
  const network = readNetwork(reader, cluster.values.controlPlaneCount);
  const loadBalancer = readLoadBalancer(reader, network);
  const addons = readAddons(reader);
  const cloud = readCloud(reader);
  const maintenance = readMaintenance(reader);
  const backup = readBackup(reader, cluster.values);
  const monitoring = readMonitoring(reader);
  const c = cluster.complete;
  const n = network.complete;
  if (
    reader.problems.length > 0 ||
    !c ||
    !n ||
    !loadBalancer ||
    !addons ||
    !cloud ||
    !maintenance ||
    !backup ||
    !monitoring
  ) {
    throw new ConfigError(reader.problems);
  }
  const parsed = {
    project: raw.project,
    stack: raw.stack,
    clusterName: c.clusterName,
    location: c.location,
    networkZone: c.networkZone,
    serverType: c.serverType,
    image: c.image,
    kubernetesVersion: c.kubernetesVersion,
    nodes: n.nodeIps.map((privateIp, i) => ({ name: `cp-${i + 1}`, privateIp })),
    networkCidr: n.network.text,
    subnetCidr: n.subnet.text,
    podCidr: n.pods.text,
    serviceCidr: n.services.text,
    adminCidrs: n.values.adminCidrs,
    apiCidrs: n.values.apiCidrs,
    sshPublicKey: n.values.sshPublicKey.trim(),
    apiDnsName: n.values.apiDnsName || undefined,
    loadBalancer,
    ...addons,
    ...cloud,
    backup,
    maintenance,
    monitoring,
  };
  const creation = creationSettings(settings, parsed, raw.deployedSettings);
  // The runbook's node-by-node migration, stated done: the fact is taken as what the kubelets run.
  const migrated = parsed.cloud.kubeletCloudProviderMigrated ? ["kubeletCloudProvider"] : [];
  const refusals = creationChangeProblems(raw.project, settings, creation, raw.deployedSettings, live, migrated);
  if (refusals.length > 0) throw new ConfigError(refusals);
  return { ...parsed, creationSettings: creation };
}
