/**
 * The stack outputs, as one interface: what other teams read through StackReference.
 */
import * as pulumi from "@pulumi/pulumi";
import { ClusterAccess } from "./clusterAccess";
import { ClusterConfig } from "./config";
import { ControlPlane } from "./controlPlane";
import { apiServerPort, ApiLoadBalancer } from "./loadBalancer";
import { ClusterNetwork } from "./network";
import { ReservedIp } from "./reservedIp";

export interface NodeOutput {
  name: string;
  id: string;
  privateIp: string;
  publicIpv4: string;
  publicIpv6: string;
}

export interface StackOutputs {
  clusterName: string;
  location: string;
  networkZone: string;
  kubernetesVersion: string;
  /** `host:port` every node and kubeconfig inside the network uses (kubeadm controlPlaneEndpoint). */
  controlPlaneEndpoint: string;
  /** Public API URL through the load balancer; absent when its public interface is off. */
  apiServerUrl?: pulumi.Output<string>;
  /** API URL on the private network. */
  apiServerPrivateUrl: string;
  reservedIp: pulumi.Output<string>;
  reservedIpId: pulumi.Output<string>;
  loadBalancerId: pulumi.Output<string>;
  /** Absent when the load balancer's public interface is off. */
  loadBalancerIpv4?: pulumi.Output<string>;
  /** Absent when the load balancer's public interface is off. */
  loadBalancerIpv6?: pulumi.Output<string>;
  loadBalancerPrivateIp: string;
  networkId: pulumi.Output<string>;
  subnetId: pulumi.Output<string>;
  firewallId: pulumi.Output<string>;
  placementGroupId: pulumi.Output<string>;
  nodes: pulumi.Output<NodeOutput[]>;
  /** Secret: admin kubeconfig pointing at the public API address. */
  kubeconfig: pulumi.Output<string>;
}

export interface OutputSources {
  cfg: ClusterConfig;
  network: ClusterNetwork;
  reservedIp: ReservedIp;
  controlPlane: ControlPlane;
  api: ApiLoadBalancer;
  access: ClusterAccess;
}

export function stackOutputs({ cfg, network, reservedIp, controlPlane, api, access }: OutputSources): StackOutputs {
  const lb = api.loadBalancer;
  const publicLb = cfg.loadBalancer.publicInterface;
  return {
    clusterName: cfg.clusterName,
    location: cfg.location,
    networkZone: cfg.networkZone,
    kubernetesVersion: cfg.kubernetesVersion,
    controlPlaneEndpoint: `${cfg.apiDnsName ?? cfg.loadBalancer.privateIp}:${apiServerPort}`,
    ...(publicLb
      ? {
          apiServerUrl: pulumi.interpolate`https://${lb.ipv4}:${apiServerPort}`,
          loadBalancerIpv4: lb.ipv4,
          loadBalancerIpv6: lb.ipv6,
        }
      : {}),
    apiServerPrivateUrl: `https://${cfg.loadBalancer.privateIp}:${apiServerPort}`,
    reservedIp: reservedIp.address,
    reservedIpId: reservedIp.floatingIp.id,
    loadBalancerId: lb.id,
    loadBalancerPrivateIp: cfg.loadBalancer.privateIp,
    networkId: network.network.id,
    subnetId: network.subnet.id,
    firewallId: network.firewall.id,
    placementGroupId: network.placementGroup.id,
    nodes: pulumi.all(
      controlPlane.nodes.map(({ spec, server }) =>
        pulumi.all([server.id, server.ipv4Address, server.ipv6Address]).apply(([id, publicIpv4, publicIpv6]) => ({
          name: spec.name,
          id,
          privateIp: spec.privateIp,
          publicIpv4,
          publicIpv6,
        })),
      ),
    ),
    kubeconfig: access.kubeconfig,
  };
}
