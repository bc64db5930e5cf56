/**
 * The stack outputs, as one interface: what other teams read through StackReference.
 */
import * as pulumi from "@pulumi/pulumi";
import { EtcdBackup } from "./etcd/backup";
import { CertificateExpiry, KubeadmCertificates } from "./lifecycle/certificates";
import { caCertHash, ClusterAccess } from "./lifecycle/clusterAccess";
import { ClusterConfig } from "./config";
import type { CreationSettings } from "./config/deployed";
import { ControlPlane } from "./hetzner/controlPlane";
import { apiServerPort, ApiLoadBalancer, controlPlaneHost, EndpointSettings } from "./hetzner/loadBalancer";
import { ClusterNetwork } from "./hetzner/network";
import { ReservedIp } from "./hetzner/reservedIp";
import { ControlPlaneUpgrade } from "./lifecycle/upgrade";
import { WorkerJoinExpiry, WorkerJoinToken } from "./lifecycle/workerJoin";

export interface NodeOutput {
  name: string;
  id: string;
  privateIp: string;
  publicIpv4: string;
  publicIpv6: string;
}

/**
 * Bumped whenever an output is removed or changes meaning; consumers check it
 * (`outputsVersion`) before reading the rest. Adding an output does not bump it.
 */
export const outputsVersion = 2;

/** What a worker node needs to join: `kubeadm join <controlPlaneEndpoint> --token ... --discovery-token-ca-cert-hash ...`. */
export interface WorkerJoin {
  /** `host:port` of the API, reachable from the private network. */
  controlPlaneEndpoint: string;
  /** Bootstrap token `[a-z0-9]{6}.[a-z0-9]{16}` in kubeadm's default-node-token group. */
  token: string;
  /** `sha256:<hex>` of the cluster CA's public key. */
  caCertHash: string;
  /** When the token stops working (ISO 8601, UTC). */
  expires: string;
}

export interface StackOutputs {
  outputsVersion: number;
  clusterName: string;
  location: string;
  networkZone: string;
  /**
   * The Kubernetes version the control-plane nodes run: the configured one once the upgrade chain
   * completed (every node checked). A failed update never reports a version not running.
   */
  kubernetesVersion: pulumi.Output<string>;
  /**
   * Plain: the values of the settings a running cluster cannot take. The next update reads them
   * back and refuses a change (components/config/deployed.ts).
   */
  creationSettings: CreationSettings;
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
  /** PEM of the cluster CA (kubeadm's /etc/kubernetes/pki/ca.crt). */
  caCertificate: pulumi.Output<string>;
  /** `sha256:<hex>` of the CA's public key, as `kubeadm join --discovery-token-ca-cert-hash` takes it. */
  caCertHash: pulumi.Output<string>;
  /**
   * The earliest expiry of the control-plane nodes' kubeadm certificates (ISO 8601 UTC), which
   * node and certificate it is, and each node's earliest; read after every upgrade and renewal.
   */
  certificateExpiry: pulumi.Output<CertificateExpiry>;
  backupBucket: string;
  /** S3 endpoint of the backup bucket (Hetzner Object Storage, path-style). */
  backupEndpoint: string;
  /** Secret: admin kubeconfig pointing at the public API address. */
  kubeconfig: pulumi.Output<string>;
  /** Secret: worker join material. Control-plane join material is never exported. */
  workerJoin: pulumi.Output<WorkerJoin>;
  /**
   * Plain: the worker join token's public id and expiry (ISO 8601 UTC), the same date as
   * `workerJoin.expires`, readable without the secret.
   */
  workerJoinExpiry: pulumi.Output<WorkerJoinExpiry>;
}

/** The settings the outputs name: where the cluster is, its version, endpoint and backup bucket. */
export type OutputSettings = Pick<
  ClusterConfig,
  "clusterName" | "location" | "networkZone" | "kubernetesVersion" | "creationSettings"
> & {
  loadBalancer: Pick<ClusterConfig["loadBalancer"], "privateIp" | "publicInterface">;
  backup: Pick<ClusterConfig["backup"], "bucket">;
};

export interface OutputSources {
  cfg: OutputSettings;
  /**
   * The endpoint the nodes use: the one the stack was created with (apiServerSans.ts nodeEndpoint),
   * which a later apiDnsName does not move.
   */
  endpoint: EndpointSettings;
  network: ClusterNetwork;
  reservedIp: ReservedIp;
  controlPlane: ControlPlane;
  api: ApiLoadBalancer;
  access: ClusterAccess;
  backup: EtcdBackup;
  workerToken: WorkerJoinToken;
  certificates: KubeadmCertificates;
  upgrade: ControlPlaneUpgrade;
}

export function stackOutputs(sources: OutputSources): StackOutputs {
  const { cfg, endpoint, network, reservedIp, controlPlane, api, access, backup, workerToken, certificates, upgrade } =
    sources;
  const lb = api.loadBalancer;
  const publicLb = cfg.loadBalancer.publicInterface;
  const controlPlaneEndpoint = `${controlPlaneHost(endpoint)}:${apiServerPort}`;
  const hash = access.caCertificate.apply(caCertHash);
  return {
    outputsVersion,
    clusterName: cfg.clusterName,
    location: cfg.location,
    networkZone: cfg.networkZone,
    kubernetesVersion: upgrade.runningVersion,
    creationSettings: cfg.creationSettings,
    controlPlaneEndpoint,
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
    caCertificate: access.caCertificate,
    caCertHash: hash,
    certificateExpiry: certificates.expiry,
    backupBucket: cfg.backup.bucket,
    backupEndpoint: backup.endpoint,
    kubeconfig: access.kubeconfig,
    workerJoin: pulumi.secret(
      pulumi
        .all([workerToken.token, hash])
        .apply(([{ token, expires }, caCertHash]) => ({ controlPlaneEndpoint, token, caCertHash, expires })),
    ),
    workerJoinExpiry: workerToken.expiry,
  };
}
