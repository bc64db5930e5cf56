/**
 * The control-plane servers cp-1..cp-N. Each is an etcd member, so nothing here may
 * replace one as a side effect of an edit: replacing a member is a deliberate
 * `pulumi up --replace <urn>` after its etcd member was removed (see docs/runbooks).
 */
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import { renderCloudInit } from "./cloudInit";
import { NodeSpec } from "./config";
import { clusterLabels } from "./labels";

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
}

export class ControlPlane extends pulumi.ComponentResource {
  /** In node order cp-1..cp-N. */
  readonly nodes: ControlPlaneNode[];

  constructor(name: string, args: ControlPlaneArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hcloud-control-plane:index:ControlPlane", name, {}, opts);
    this.nodes = args.nodes.map((spec) => ({
      spec,
      name: nodeName(args.clusterName, spec),
      server: this.server(name, args, spec),
    }));
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
        ignoreChanges: ["userData", "image", "sshKeys"],
      },
    );
  }
}
