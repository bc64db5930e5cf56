/**
 * The private network, subnet, spread placement group, firewall and SSH key that the
 * control-plane servers are created into.
 */
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import { clusterLabels } from "../labels";

export interface NetworkArgs {
  /** Cluster name; prefixes Hetzner resource names. */
  clusterName: string;
  /** Private network range (RFC 1918). */
  networkCidr: string;
  /** Cloud subnet for nodes and the load balancer, inside `networkCidr`. */
  subnetCidr: string;
  /** Hetzner network zone of the subnet, e.g. `eu-central`. */
  networkZone: string;
  /** Source CIDRs allowed to reach SSH (22). */
  adminCidrs: string[];
  /** Source CIDRs allowed to reach the API (6443) on the nodes' public interfaces; may be empty. */
  apiCidrs: string[];
  /** OpenSSH public key for root on every node. */
  sshPublicKey: string;
}

export type FirewallRule = hcloud.types.input.FirewallRule;

const anywhere = ["0.0.0.0/0", "::/0"];

/**
 * Inbound rules for the nodes' public interfaces. A Hetzner firewall drops every inbound
 * packet no rule allows, so etcd (2379-2381), kubelet (10250), controller-manager (10257)
 * and scheduler (10259) are closed by having no rule; the private network is not filtered.
 */
export function firewallRules(adminCidrs: string[], apiCidrs: string[]): FirewallRule[] {
  const rules: FirewallRule[] = [
    { direction: "in", protocol: "tcp", port: "22", sourceIps: adminCidrs, description: "SSH from admin networks" },
  ];
  // Hetzner refuses a rule without sources; no apiCidrs means 6443 stays closed publicly.
  if (apiCidrs.length > 0) {
    rules.push({ direction: "in", protocol: "tcp", port: "6443", sourceIps: apiCidrs, description: "Kubernetes API" });
  }
  rules.push({
    direction: "in",
    protocol: "icmp",
    sourceIps: anywhere,
    description: "ICMP (path MTU discovery, ping)",
  });
  return rules;
}

export class ClusterNetwork extends pulumi.ComponentResource {
  readonly network: hcloud.Network;
  readonly subnet: hcloud.NetworkSubnet;
  readonly placementGroup: hcloud.PlacementGroup;
  readonly firewall: hcloud.Firewall;
  readonly sshKey: hcloud.SshKey;

  constructor(name: string, args: NetworkArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hcloud-control-plane:index:Network", name, {}, opts);
    const labels = clusterLabels(args.clusterName, "control-plane");
    const parent = { parent: this };

    this.network = new hcloud.Network(
      `${name}-network`,
      { name: args.clusterName, ipRange: args.networkCidr, labels },
      parent,
    );
    this.subnet = new hcloud.NetworkSubnet(
      `${name}-subnet`,
      {
        networkId: this.network.id.apply(Number),
        type: "cloud",
        networkZone: args.networkZone,
        ipRange: args.subnetCidr,
      },
      parent,
    );
    this.placementGroup = new hcloud.PlacementGroup(
      `${name}-spread`,
      { name: `${args.clusterName}-control-plane`, type: "spread", labels },
      parent,
    );
    this.firewall = new hcloud.Firewall(
      `${name}-firewall`,
      { name: `${args.clusterName}-control-plane`, labels, rules: firewallRules(args.adminCidrs, args.apiCidrs) },
      parent,
    );
    this.sshKey = new hcloud.SshKey(
      `${name}-ssh-key`,
      { name: `${args.clusterName}-bootstrap`, publicKey: args.sshPublicKey, labels },
      parent,
    );

    this.registerOutputs({
      networkId: this.network.id,
      subnetId: this.subnet.id,
      placementGroupId: this.placementGroup.id,
      firewallId: this.firewall.id,
    });
  }
}
