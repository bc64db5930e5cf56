/**
 * Composition root: configuration in, components wired, outputs out. Each component is one
 * concern; the order of statements here is not the deployment order, the data flow is.
 */
import { loadConfig } from "./components/config";
import { ControlPlane } from "./components/controlPlane";
import { ApiLoadBalancer } from "./components/loadBalancer";
import { ClusterNetwork } from "./components/network";
import { stackOutputs, StackOutputs } from "./components/outputs";
import { ReservedIp } from "./components/reservedIp";

export = async (): Promise<StackOutputs> => {
  // Validation throws before any resource is registered.
  const cfg = loadConfig();

  const network = new ClusterNetwork("cluster", {
    clusterName: cfg.clusterName,
    networkCidr: cfg.networkCidr,
    subnetCidr: cfg.subnetCidr,
    networkZone: cfg.networkZone,
    adminCidrs: cfg.adminCidrs,
    apiCidrs: cfg.apiCidrs,
    sshPublicKey: cfg.sshPublicKey,
  });

  const reservedIp = new ReservedIp("reserved-ip", { clusterName: cfg.clusterName, location: cfg.location });

  const controlPlane = new ControlPlane("control-plane", {
    clusterName: cfg.clusterName,
    nodes: cfg.nodes,
    serverType: cfg.serverType,
    image: cfg.image,
    location: cfg.location,
    kubernetesVersion: cfg.kubernetesVersion,
    subnetId: network.subnet.id,
    placementGroupId: network.placementGroup.id.apply(Number),
    firewallId: network.firewall.id.apply(Number),
    sshKeyId: network.sshKey.id,
  });

  const api = new ApiLoadBalancer("api", {
    clusterName: cfg.clusterName,
    location: cfg.location,
    settings: cfg.loadBalancer,
    subnetId: network.subnet.id,
    nodes: controlPlane.nodes,
  });

  return stackOutputs({ cfg, network, reservedIp, controlPlane, api });
};
