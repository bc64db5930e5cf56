/**
 * The settings a running cluster cannot take (declared with the effect `refused`), held to the
 * values the stack had when it last completed an update. The stack exports them as the plain
 * output `creationSettings`; the next update reads them back (readDeployedOutputs) and refuses,
 * before anything is registered, every such setting whose value differs. A stack that never
 * exported them (a new stack, or one last updated before this output existed) accepts any valid
 * value, and records it. Beside them it records the {@link creationFacts}: what every node is
 * created with and no setting chooses; a stack whose `creationSettings` lack one runs its
 * `before` value. A stack without any `creationSettings` is not compared at all, facts included:
 * nothing tells a stack last updated before that output from a stack's first preview.
 *
 * A setting changed outside the program, node by node (`serverType`: declared `rolling`,
 * changed by scripts/ops/resize-control-plane.sh), is exported and compared the same way, but a
 * change is accepted once the servers as Hetzner lists them show it done ({@link doneLive}).
 *
 * The addresses clients reach the API by (`apiDnsName`, `loadBalancerPublicInterface`: declared
 * `rolling`) are recorded too, never compared ({@link recordedKeys}): the next update keeps the
 * deployed ones in the API server certificates (components/lifecycle/apiServerSans.ts). Beside
 * them it records what the certificates carry and the endpoint the nodes use ({@link carried}),
 * from update to update.
 */
import type { ClusterConfig } from "./index";
import type { Settings } from "./schema";
import { kubeletCloudProvider } from "../node/kubeadm";

/** A refused setting's value as exported: what the config says, in the form the program uses. */
export type CreationValue = string | boolean | string[];
export type CreationSettings = Record<string, CreationValue>;

/**
 * Where each refused setting's value lives in the parsed config. nodeIps is the effective list
 * (derived addresses included).
 */
const extractors: Record<string, (cfg: Omit<ClusterConfig, "creationSettings">) => CreationValue> = {
  clusterName: (c) => c.clusterName,
  location: (c) => c.location,
  networkZone: (c) => c.networkZone,
  networkCidr: (c) => c.networkCidr,
  subnetCidr: (c) => c.subnetCidr,
  podCidr: (c) => c.podCidr,
  serviceCidr: (c) => c.serviceCidr,
  nodeIps: (c) => c.nodes.map((n) => n.privateIp),
  apiDnsName: (c) => c.apiDnsName ?? "",
  loadBalancerPrivateIp: (c) => c.loadBalancer.privateIp,
  loadBalancerPublicInterface: (c) => c.loadBalancer.publicInterface,
  serverType: (c) => c.serverType,
  cni: (c) => c.cni,
  csiReclaimPolicy: (c) => c.cloud.storageClass.reclaimPolicy,
  backupBucket: (c) => c.backup.bucket,
  backupLocation: (c) => c.backup.location,
  backupObjectLock: (c) => c.backup.objectLock,
};

/**
 * What every node is created with that no setting chooses, recorded beside the refused settings:
 * `value` is what this program creates, `before` what a stack whose `creationSettings` lack the
 * key runs (it was created before the fact was recorded), `why` the refusal's reason.
 */
export const creationFacts: Readonly<Record<string, { value: CreationValue; before: CreationValue; why: string }>> = {
  kubeletCloudProvider: {
    value: kubeletCloudProvider,
    before: "none",
    why: "a kubelet takes --cloud-provider when its node joins and keeps it; this program creates every node with cloud-provider external, which a cluster of kubelets without it cannot take node by node through pulumi up. Migrate it node by node (docs/runbooks/external-cloud-provider.md), then set hcloud-control-plane:kubeletCloudProviderMigrated true",
  },
};

/** The keys of the settings whose declared effect is `refused`. */
export function refusedKeys(settings: Settings): string[] {
  return Object.entries(settings)
    .filter(([, s]) => s.change.effect === "refused")
    .map(([key]) => key);
}

/** A control-plane server as `hcloud.getServers` lists it when the program starts. */
export interface ListedServer {
  name: string;
  serverType: string;
}

/**
 * What the program read from Hetzner before the config is checked: the cluster's control-plane
 * servers (by the label selector components/hetzner/controlPlane.ts uses), or undefined when it
 * did not need to read them (nothing to confirm).
 */
export interface LiveState {
  controlPlaneServers?: ListedServer[];
}

/**
 * Settings changed outside the program, one node at a time, and when the change is done: a new
 * server type once Hetzner lists at least one control-plane server and every one of them has it
 * (scripts/ops/resize-control-plane.sh resized them; a server created later gets the configured
 * type anyway).
 */
const doneLive: Record<string, (wanted: CreationValue, live: LiveState) => boolean> = {
  serverType: (wanted, live) => {
    const servers = live.controlPlaneServers ?? [];
    return servers.length > 0 && servers.every((s) => s.serverType === wanted);
  },
};

/** How to bring each {@link doneLive} setting to its new value before `pulumi up` takes it. */
const doneHow: Record<string, string> = {
  serverType:
    "resize the servers one at a time first with scripts/ops/resize-control-plane.sh (docs/runbooks/resize-control-plane.md), then run pulumi up again",
};

/**
 * Settings recorded in `creationSettings` and never compared: a change rolls out node by node,
 * and the next update needs the deployed value (the API server certificates keep the deployed
 * addresses, components/lifecycle/apiServerSans.ts).
 */
export const recordedKeys: readonly string[] = ["apiDnsName", "loadBalancerPublicInterface"];

/**
 * What the API server certificates of a running cluster carry, recorded and carried from update
 * to update (computed from this config and the deployed `creationSettings`, never compared):
 * - `apiEndpointHost`: the controlPlaneEndpoint host every node uses. kubeadm wrote it into each
 *   node's kubeconfigs (kubelet.conf, admin.conf, controller-manager.conf, scheduler.conf),
 *   kubeadm-config's controlPlaneEndpoint and (a DNS name) each node's /etc/hosts; it is what the
 *   stack was created with and never moves (a later apiDnsName is one more address served).
 * - `apiServerDnsNames`: every apiDnsName the stack has had, sorted: each stays a SAN, since a
 *   client may still use it.
 * - `apiServerPublicAddresses`: whether the load balancer's public addresses were ever SANs:
 *   they stay SANs once they are.
 * - `apiServerSansRolled`: whether the addresses ever changed on the running stack (apiDnsName or
 *   loadBalancerPublicInterface differs from the recorded value): from then on the stack keeps
 *   its per-node SAN steps; a stack whose addresses never changed has none (init made them).
 * A stack that recorded apiDnsName and loadBalancerPublicInterface but not these yet ran its
 * recorded values; a new stack (or one without the output) runs this config's.
 */
export const carried: Readonly<
  Record<
    string,
    (cfg: Pick<ClusterConfig, "apiDnsName" | "loadBalancer">, deployed?: Record<string, unknown>) => CreationValue
  >
> = {
  apiEndpointHost: (cfg, deployed) => {
    const recorded = deployed?.apiEndpointHost;
    if (typeof recorded === "string" && recorded !== "") return recorded;
    const dns = deployed?.apiDnsName;
    // The load balancer's private IP is refused, so a recorded "" meant this config's.
    if (typeof dns === "string") return dns || cfg.loadBalancer.privateIp;
    // components/hetzner/loadBalancer.ts controlPlaneHost, without importing the cloud resources.
    return cfg.apiDnsName ?? cfg.loadBalancer.privateIp;
  },
  apiServerDnsNames: (cfg, deployed) => {
    const recorded = Array.isArray(deployed?.apiServerDnsNames) ? deployed.apiServerDnsNames : [];
    const names = [...recorded, deployed?.apiDnsName, cfg.apiDnsName];
    return [...new Set(names.filter((n): n is string => typeof n === "string" && n !== ""))].sort();
  },
  apiServerSansRolled: (cfg, deployed) =>
    deployed?.apiServerSansRolled === true ||
    (typeof deployed?.apiDnsName === "string" && deployed.apiDnsName !== (cfg.apiDnsName ?? "")) ||
    (typeof deployed?.loadBalancerPublicInterface === "boolean" &&
      deployed.loadBalancerPublicInterface !== cfg.loadBalancer.publicInterface),
  apiServerPublicAddresses: (cfg, deployed) =>
    deployed?.apiServerPublicAddresses === true ||
    deployed?.loadBalancerPublicInterface === true ||
    cfg.loadBalancer.publicInterface,
};

/** The keys exported in `creationSettings` (besides the facts and {@link carried}): refused, confirmed live, recorded. */
export function comparedKeys(settings: Settings): string[] {
  return [
    ...refusedKeys(settings),
    ...Object.keys(doneLive).filter((key) => key in settings),
    ...recordedKeys.filter((key) => key in settings && settings[key].change.effect !== "refused"),
  ];
}

/**
 * The exported settings' values of this config, to export and to compare with the deployed ones,
 * the facts, and the {@link carried} values (from `deployed`, the stack's `creationSettings` output).
 */
export function creationSettings(
  settings: Settings,
  cfg: Omit<ClusterConfig, "creationSettings">,
  deployed?: Record<string, unknown>,
): CreationSettings {
  const compared = comparedKeys(settings).map((key) => {
    const extract = extractors[key];
    if (!extract) throw new Error(`components/config/deployed.ts has no value for the compared setting ${key}`);
    return [key, extract(cfg)] as const;
  });
  const facts = Object.entries(creationFacts).map(([key, fact]) => [key, fact.value] as const);
  const kept = Object.entries(carried).map(([key, value]) => [key, value(cfg, deployed)] as const);
  return Object.fromEntries([...compared, ...facts, ...kept]);
}

/**
 * Whether the running stack can take `wanted` where it runs `deployed`. Only nodeIps may change:
 * nodes are added or removed at the end of the list (a scale-up or -down), an existing node's
 * address never changes.
 */
function acceptable(key: string, deployed: unknown, wanted: CreationValue): boolean {
  if (key === "nodeIps" && Array.isArray(deployed) && Array.isArray(wanted)) {
    const shorter = Math.min(deployed.length, wanted.length);
    return deployed.slice(0, shorter).every((ip, i) => ip === wanted[i]);
  }
  return JSON.stringify(deployed) === JSON.stringify(wanted);
}

/**
 * One problem per compared setting whose value differs from the deployed stack's, naming the
 * key, both values, why, and where the table of settings is. `deployed` is the stack's
 * `creationSettings` output; keys it lacks are not compared, except the {@link creationFacts},
 * which are compared with what a stack created before them runs, unless `migrated` names the fact
 * (the operator states the running nodes were migrated to it). A setting confirmed live is
 * accepted once `live` shows the change done; until then its problem lists the servers and says
 * how to do it.
 */
export function creationChangeProblems(
  project: string,
  settings: Settings,
  wanted: CreationSettings,
  deployed: Record<string, unknown> | undefined,
  live: LiveState = {},
  migrated: readonly string[] = [],
): string[] {
  if (!deployed) return [];
  return Object.entries(wanted).flatMap(([key, value]) => {
    // Recorded for the next update, never compared.
    if (recordedKeys.includes(key) || key in carried) return [];
    const recorded = key in deployed;
    const fact = creationFacts[key];
    if (!recorded && (!fact || migrated.includes(key))) return [];
    const deployedValue = recorded ? deployed[key] : fact.before;
    if (acceptable(key, deployedValue, value)) return [];
    const source = recorded
      ? "its creationSettings output"
      : "its creationSettings output lacks the key: the stack was created before it was recorded";
    const runs = `it runs ${JSON.stringify(deployedValue)} (${source})`;
    const confirm = doneLive[key];
    if (confirm) {
      if (confirm(value, live)) return [];
      const listed = (live.controlPlaneServers ?? []).map((s) => `${s.name}: ${s.serverType}`).join(", ");
      const seen = listed ? `Hetzner lists ${listed}` : "Hetzner lists no control-plane server of this cluster";
      return [
        `${project}:${key} = ${JSON.stringify(value)}: not yet run by every control-plane server: ${runs}, and ${seen}; ${doneHow[key]}. See docs/settings.md`,
      ];
    }
    const why = settings[key]?.change.why ?? fact?.why ?? "";
    const rule =
      key === "nodeIps"
        ? "nodes are added or removed at the end of the list, and a running node's address never changes"
        : why;
    const subject = fact ? `${key} (no setting; every new node gets it)` : `${project}:${key}`;
    const what = `${subject} = ${JSON.stringify(value)}: refused on a running stack: ${runs}`;
    return [fact ? `${what}; ${rule}` : `${what}; ${rule}. Set it back, or see docs/settings.md`];
  });
}
