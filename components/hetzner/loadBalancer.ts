/**
 * The Hetzner load balancer in front of the API servers: attached to the private network
 * at a pinned IP (the controlPlaneEndpoint survives a load balancer replacement), one TCP
 * service 6443 -> 6443 with a health check, and one private-IP target per server.
 */
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import { ClusterConfig } from "../config";
import { ControlPlaneNode } from "./controlPlane";
import { clusterLabels } from "../labels";

/** The API server port, on the load balancer and on every node. */
export const apiServerPort = 6443;

/** The settings that name the API endpoint: the DNS name, else the load balancer's pinned private IP. */
export type EndpointSettings = Pick<ClusterConfig, "apiDnsName"> & {
  loadBalancer: Pick<ClusterConfig["loadBalancer"], "privateIp">;
};

/**
 * The host of kubeadm's controlPlaneEndpoint, as nodes and in-cluster clients reach the API:
 * the DNS name when configured, else the load balancer's pinned private IP.
 */
export function controlPlaneHost(cfg: EndpointSettings): string {
  return cfg.apiDnsName ?? cfg.loadBalancer.privateIp;
}

export interface ApiLoadBalancerArgs {
  /** Cluster name; prefixes the Hetzner resource name. */
  clusterName: string;
  /** Hetzner location, e.g. `nbg1`. */
  location: string;
  /** Type, algorithm, pinned private IP, public interface and health check. */
  settings: ClusterConfig["loadBalancer"];
  /** Subnet the pinned private IP belongs to. */
  subnetId: pulumi.Input<string>;
  /** Targets, one per control-plane node. */
  nodes: ControlPlaneNode[];
}

export type HealthCheck = hcloud.types.input.LoadBalancerServiceHealthCheck;

/**
 * The service's health check. `tcp` passes once 6443 accepts connections; `readyz` asks the
 * API server itself. Hetzner's API accepts only `tcp` and `http` as protocols, so HTTPS is
 * `http` with `tls: true` (kubeadm's public-info-viewer binding lets it read /readyz).
 */
export function healthCheck(settings: ClusterConfig["loadBalancer"]["healthCheck"]): HealthCheck {
  const timing = {
    port: apiServerPort,
    interval: settings.interval,
    timeout: settings.timeout,
    retries: settings.retries,
  };
  if (settings.mode === "tcp") return { protocol: "tcp", ...timing };
  return { protocol: "http", ...timing, http: { path: "/readyz", tls: true, statusCodes: ["200"] } };
}

export class ApiLoadBalancer extends pulumi.ComponentResource {
  readonly loadBalancer: hcloud.LoadBalancer;
  readonly attachment: hcloud.LoadBalancerNetwork;
  readonly service: hcloud.LoadBalancerService;
  readonly targets: hcloud.LoadBalancerTarget[];

  constructor(name: string, args: ApiLoadBalancerArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hcloud-control-plane:index:ApiLoadBalancer", name, {}, opts);
    const parent = { parent: this };
    const s = args.settings;

    this.loadBalancer = new hcloud.LoadBalancer(
      `${name}-lb`,
      {
        name: `${args.clusterName}-api`,
        loadBalancerType: s.type,
        location: args.location,
        algorithm: { type: s.algorithm },
        deleteProtection: true,
        labels: clusterLabels(args.clusterName, "api"),
      },
      // protect: its public IPs live exactly as long as it does; a new one means new addresses.
      { ...parent, protect: true },
    );
    const lbId = this.loadBalancer.id.apply(Number);

    this.attachment = new hcloud.LoadBalancerNetwork(
      `${name}-lb-network`,
      { loadBalancerId: lbId, subnetId: args.subnetId, ip: s.privateIp, enablePublicInterface: s.publicInterface },
      parent,
    );
    this.service = new hcloud.LoadBalancerService(
      `${name}-lb-service`,
      {
        loadBalancerId: this.loadBalancer.id,
        protocol: "tcp",
        listenPort: apiServerPort,
        destinationPort: apiServerPort,
        proxyprotocol: false,
        healthCheck: healthCheck(s.healthCheck),
      },
      parent,
    );
    this.targets = args.nodes.map(
      (node) =>
        new hcloud.LoadBalancerTarget(
          `${name}-lb-target-${node.spec.name}`,
          { loadBalancerId: lbId, type: "server", serverId: node.server.id.apply(Number), usePrivateIp: true },
          // dependsOn the attachment: a private-IP target needs the load balancer in the network.
          { ...parent, dependsOn: [this.attachment] },
        ),
    );

    this.registerOutputs({ id: this.loadBalancer.id, ipv4: this.loadBalancer.ipv4, ipv6: this.loadBalancer.ipv6 });
  }
}
