/**
 * The addresses clients reach the API server by (its serving certificate's SANs), moved on a
 * running cluster: when `apiDnsName` or `loadBalancerPublicInterface` changes, every node's API
 * server certificate gets the new addresses, one node at a time, each behind the /readyz and etcd
 * health gates (scripts/node/apiserver-sans.sh, docs/runbooks/api-endpoint-change.md).
 *
 * Nothing a node uses moves: every kubeconfig kubeadm wrote on the nodes, kubeadm-config's
 * controlPlaneEndpoint and the nodes' /etc/hosts name the endpoint the stack was created with
 * (`apiEndpointHost`, components/config/deployed.ts `carried`). It stays the endpoint (the
 * script's `--endpoint`), new nodes join through it too, and no address the stack ever served is
 * dropped: the wanted SANs are the rendered ones and every recorded one. Only the stack's admin
 * kubeconfig moves to a new address, after the last node (index.ts: ClusterAccess waits for
 * {@link ApiServerSans.complete}).
 *
 * A new cluster registers none: kubeadm init makes each certificate with the configured SANs;
 * nor does a running one whose addresses never changed (`apiServerSansRolled`), so an update
 * that changes nothing runs nothing. Once they changed, the steps stay (a later update with the
 * same addresses finds them the same).
 * The load balancer's public IPs need no step of their own: they live as long as the load
 * balancer, which is protected, so they change only with `loadBalancerPublicInterface`.
 */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { ClusterConfig } from "../config";
import { ControlPlaneNode } from "../hetzner/controlPlane";
import { EndpointSettings } from "../hetzner/loadBalancer";
import { nodeCommand, recorded, scriptsHash } from "../node/nodeScripts";
import { sshConnection } from "../node/ssh";

/** What a running cluster's certificates carry, as the stack records it (`creationSettings`). */
export interface ServedAddresses {
  /** The controlPlaneEndpoint host every node uses (an IPv4 or a DNS name). */
  endpointHost: string;
  /** Every apiDnsName the stack has had. */
  dnsNames: string[];
  /** Whether the load balancer's public addresses are SANs. */
  publicAddresses: boolean;
  /** Whether the addresses ever changed on the running stack: only then are there SAN steps. */
  rolled: boolean;
}

/** {@link ServedAddresses} from the config's `creationSettings` (components/config/deployed.ts `carried`). */
export function servedAddresses(cfg: Pick<ClusterConfig, "creationSettings">): ServedAddresses {
  const { apiEndpointHost, apiServerDnsNames, apiServerPublicAddresses, apiServerSansRolled } = cfg.creationSettings;
  if (typeof apiEndpointHost !== "string" || !Array.isArray(apiServerDnsNames)) {
    throw new Error("creationSettings lack apiEndpointHost or apiServerDnsNames (components/config/deployed.ts)");
  }
  return {
    endpointHost: apiEndpointHost,
    dnsNames: apiServerDnsNames,
    publicAddresses: apiServerPublicAddresses === true,
    rolled: apiServerSansRolled === true,
  };
}

/**
 * The endpoint settings every node's kubeadm files, /etc/hosts and the in-cluster clients use:
 * the recorded endpoint host (a DNS name, or the load balancer's private IP).
 */
export function nodeEndpoint(
  cfg: { loadBalancer: Pick<ClusterConfig["loadBalancer"], "privateIp"> },
  served: ServedAddresses,
): EndpointSettings {
  const dns = served.endpointHost === cfg.loadBalancer.privateIp ? undefined : served.endpointHost;
  return { apiDnsName: dns, loadBalancer: { privateIp: cfg.loadBalancer.privateIp } };
}

/**
 * The wanted SANs, sorted and without duplicates: the load balancer's private IP, the reserved
 * IP, the endpoint host, every recorded DNS name and, while they are served, the load balancer's
 * public IPv4 and IPv6. On a stack that never changed them, exactly what
 * components/node/kubeadm.ts rendered at init (kubeadmInput in bootstrap.ts, plus the endpoint).
 */
export function wantedSans(
  privateIp: string,
  served: ServedAddresses,
  addresses: { reservedIp: string; lbIpv4?: string; lbIpv6?: string },
): string[] {
  const publicIps = served.publicAddresses ? [addresses.lbIpv4, addresses.lbIpv6] : [];
  const all = [privateIp, addresses.reservedIp, served.endpointHost, ...served.dnsNames, ...publicIps];
  return [...new Set(all.filter((s): s is string => typeof s === "string" && s !== ""))].sort();
}

/** One node's command line: apiserver-sans.sh with the endpoint host and every wanted SAN. */
export function apiServerSansCommand(node: ControlPlaneNode, endpointHost: string, sans: string[]): string {
  return nodeCommand("apiserver-sans.sh", [
    "--node-name",
    node.name,
    "--node-ip",
    node.spec.privateIp,
    "--endpoint",
    endpointHost,
    ...sans.flatMap((san) => ["--san", san]),
  ]);
}

export interface ApiServerSansArgs {
  /** Control-plane servers in node order: their certificates change in that order. */
  nodes: ControlPlaneNode[];
  /** The load balancer's pinned private IP: always a SAN. */
  privateIp: string;
  served: ServedAddresses;
  /** The reserved IP and the load balancer's public addresses (Outputs). */
  addresses: pulumi.Input<{ reservedIp: string; lbIpv4?: string; lbIpv6?: string }>;
  /** The end of the other rolling chains (upgrade, certificate renewal): the first step waits for it. */
  after: pulumi.Resource;
  /** Secret: the key matching the servers' SSH key. */
  sshPrivateKey: pulumi.Input<string>;
}

export class ApiServerSans extends pulumi.ComponentResource {
  /** The last node's step: every node serves the wanted SANs. */
  readonly complete: pulumi.Resource;

  constructor(name: string, args: ApiServerSansArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hcloud-control-plane:index:ApiServerSans", name, {}, opts);
    const sans = pulumi.output(args.addresses).apply((a) => wantedSans(args.privateIp, args.served, a));
    // The script and the library it sources: an edited one runs every step again (idempotent).
    const revision = scriptsHash(["apiserver-sans.sh", "lib.sh"]);
    let previous = args.after;
    for (const node of args.nodes) {
      const resource = `${name}-${node.spec.name}-apiserver-sans`;
      previous = new command.remote.Command(
        resource,
        {
          connection: sshConnection(node, args.sshPrivateKey),
          // A changed connection alone (a rotated key) finds the node's record and runs nothing.
          ...recorded(
            resource,
            sans.apply((list) => apiServerSansCommand(node, args.served.endpointHost, list)),
          ),
          // Idempotent: a node that serves the wanted SANs only says so. New SANs, another
          // endpoint, an edited script or a replaced server run it again; there is nothing to
          // undo (no delete): an address once served stays a SAN.
          triggers: [node.server.id, sans.apply((list) => list.join(",")), args.served.endpointHost, revision],
        },
        // One node at a time, after the upgrade and renewal chains: each restarts kube-apiserver.
        { parent: this, dependsOn: [previous] },
      );
    }
    this.complete = previous;
    this.registerOutputs({});
  }
}
