/**
 * The reserved public IPv4: a Hetzner Floating IP that outlives servers and load balancers.
 * Pulumi never assigns it: kube-vip's companion moves it to the current leader, and an
 * assignment here would drag it back to one node on every `pulumi up`.
 */
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import { clusterLabels } from "../labels";

export interface ReservedIpArgs {
  /** Cluster name; prefixes the Hetzner resource name. */
  clusterName: string;
  /** Home location of the Floating IP, the location of the servers. */
  location: string;
}

export class ReservedIp extends pulumi.ComponentResource {
  readonly floatingIp: hcloud.FloatingIp;
  /** The reserved IPv4 address. */
  readonly address: pulumi.Output<string>;

  constructor(name: string, args: ReservedIpArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hcloud-control-plane:index:ReservedIp", name, {}, opts);
    this.floatingIp = new hcloud.FloatingIp(
      `${name}-fip`,
      {
        name: `${args.clusterName}-api`,
        description: `Reserved Kubernetes API address of ${args.clusterName}`,
        type: "ipv4",
        homeLocation: args.location,
        deleteProtection: true,
        labels: clusterLabels(args.clusterName, "api"),
      },
      // protect: clients and DNS records point at this address; losing it cannot be undone.
      // ignoreChanges serverId: the failover companion assigns it, not Pulumi.
      { parent: this, protect: true, ignoreChanges: ["serverId"] },
    );
    this.address = this.floatingIp.ipAddress;
    this.registerOutputs({ id: this.floatingIp.id, address: this.address });
  }
}
