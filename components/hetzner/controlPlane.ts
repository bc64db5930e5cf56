/**
 * The control-plane servers cp-1..cp-N. Each is an etcd member, so nothing here may
 * replace one as a side effect of an edit: replacing a member is a deliberate
 * `pulumi up --replace <urn>`, whose membership record removes the old etcd member on another
 * node first (components/lifecycle/bootstrap.ts; docs/runbooks/replace-control-plane-node.md).
 */
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import { renderCloudInit } from "../node/cloudInit";
import { NodeSpec } from "../config";
import { clusterLabels } from "../labels";

export interface ControlPlaneArgs {
  /** Cluster name; server names are `<clusterName>-<node>`. */
  clusterName: string;
  /** The nodes, keyed by stable name. */
  nodes: NodeSpec[];
  /** Hetzner server type, e.g. `ccx23`. */
  serverType: string;
  /** Server image, e.g. `ubuntu-24.04`. */
  image: string;
  /** Hetzner location, e.g. `nbg1`. */
  location: string;
  /** Kubernetes version `x.y.z` the node packages are pinned to at creation. */
  kubernetesVersion: string;
  /** Subnet the pinned private IPs belong to. */
  subnetId: pulumi.Input<string>;
  placementGroupId: pulumi.Input<number>;
  firewallId: pulumi.Input<number>;
  sshKeyId: pulumi.Input<string>;
}

/** `<clusterName>-<node>`: the server's name, its hostname and its Kubernetes node name. */
export function nodeName(clusterName: string, spec: NodeSpec): string {
  return `${clusterName}-${spec.name}`;
}

export interface ControlPlaneNode {
  spec: NodeSpec;
  /** The server's name, hostname and Kubernetes node name ({@link nodeName}). */
  name: string;
  server: hcloud.Server;
  /**
   * The server's status as Hetzner reports it when the program runs (`running`, `off`, ...,
   * or `absent` when Hetzner no longer lists it): read on every preview and update, so a stopped
   * node is seen without a stored guess.
   */
  status: pulumi.Output<string>;
}

/**
 * The index, in node order, of the first node whose server is running, `except` skipped: where
 * a step that needs any member of the cluster runs (admin kubeconfig, worker token, upgrade
 * preflight, a departing node's removal). Node order keeps the choice stable: with every server
 * running it is cp-1 (or cp-2 when cp-1 is excluded), so nothing moves between runs. A stopped
 * node (`off`) is passed over; with none running the program stops with the statuses.
 *
 * Hetzner's status says a server is up, not that its API server is healthy: every step run there
 * starts with the /readyz and etcd health gates and fails naming the node. A node that hangs while
 * Hetzner says `running` is powered off (`hcloud server poweroff NAME`) to be passed over.
 */
export function firstRunning(nodes: ControlPlaneNode[], except?: ControlPlaneNode): pulumi.Output<number> {
  return pulumi.all(nodes.map((n) => n.status)).apply((statuses) =>
    firstRunningIndex(
      nodes.map((n) => n.name),
      statuses,
      except && nodes.indexOf(except),
    ),
  );
}

/** {@link firstRunning} on plain values: node names and statuses in node order. */
export function firstRunningIndex(names: string[], statuses: string[], except?: number): number {
  const i = statuses.findIndex((s, k) => k !== except && s === "running");
  if (i >= 0) return i;
  const seen = names.flatMap((n, k) => (k === except ? [] : [`${n}: ${statuses[k]}`])).join(", ");
  throw new Error(
    `no control-plane server is running (${seen})${except === undefined ? "" : `, ${names[except]} aside`}: ` +
      "a step that needs a cluster member has nowhere to run; start one (hcloud server poweron NAME)",
  );
}

export class ControlPlane extends pulumi.ComponentResource {
  /** In node order cp-1..cp-N. */
  readonly nodes: ControlPlaneNode[];

  constructor(name: string, args: ControlPlaneArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hcloud-control-plane:index:ControlPlane", name, {}, opts);
    const servers = args.nodes.map((spec) => this.server(name, args, spec));
    // The cluster's control-plane servers as Hetzner lists them, read once every server exists
    // (on every preview and update). A server that is gone (deleted outside Pulumi) is "absent"
    // here, where a read by id finds nothing to return and can stop the program, and with it
    // the `--replace` that mends it.
    const selector = Object.entries(clusterLabels(args.clusterName, "control-plane"))
      .map(([key, value]) => `${key}=${value}`)
      .join(",");
    const listed = pulumi
      .all(servers.map((s) => s.id))
      .apply(() => hcloud.getServers({ withSelector: selector }, { parent: this }));
    this.nodes = args.nodes.map((spec, i) => {
      const server = servers[i];
      const status = pulumi
        .all([listed, server.id])
        .apply(([list, id]) => list.servers.find((s) => String(s.id) === id)?.status ?? "absent");
      return { spec, name: nodeName(args.clusterName, spec), server, status };
    });
    this.registerOutputs({ serverIds: this.nodes.map((n) => n.server.id) });
  }

  private server(name: string, args: ControlPlaneArgs, spec: NodeSpec): hcloud.Server {
    const serverName = nodeName(args.clusterName, spec);
    return new hcloud.Server(
      `${name}-${spec.name}`,
      {
        name: serverName,
        serverType: args.serverType,
        image: args.image,
        location: args.location,
        sshKeys: [args.sshKeyId],
        placementGroupId: args.placementGroupId,
        // Attached at creation, so the server never runs a moment with open ports.
        firewallIds: [args.firewallId],
        // aliasIps: [] stops the provider from detaching and re-attaching on every update.
        networks: [{ subnetId: args.subnetId, ip: spec.privateIp, aliasIps: [] }],
        publicNets: [{ ipv4Enabled: true, ipv6Enabled: true }],
        userData: renderCloudInit({ hostname: serverName, kubernetesVersion: args.kubernetesVersion }),
        labels: { ...clusterLabels(args.clusterName, "control-plane"), node: spec.name },
        deleteProtection: true,
        rebuildProtection: true,
        shutdownBeforeDeletion: true,
      },
      {
        parent: this,
        // protect: the server holds an etcd member; deleting it must be a deliberate act.
        protect: true,
        // deleteBeforeReplace: the name and the pinned private IP cannot exist twice.
        deleteBeforeReplace: true,
        // ignoreChanges: userData, image and sshKeys force replacement at Hetzner; an edited
        // cloud-init or a new image must not silently replace an etcd member.
        // serverType: the provider would power every server off at once; scripts/ops/resize-control-plane.sh resizes them one at a time.
        ignoreChanges: ["userData", "image", "sshKeys", "serverType"],
      },
    );
  }
}
