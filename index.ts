/**
 * Composition root: configuration in, components wired, outputs out. Each component is one
 * concern; the order of statements here is not the deployment order, the data flow is.
 */
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import { EtcdBackup } from "./components/etcd/backup";
import { ApiServerSans, nodeEndpoint, servedAddresses } from "./components/lifecycle/apiServerSans";
import { ClusterBootstrap } from "./components/lifecycle/bootstrap";
import { KubeadmCertificates } from "./components/lifecycle/certificates";
import { apiServerViaReservedIp, ClusterAccess, publicApiServer } from "./components/lifecycle/clusterAccess";
import { CloudController } from "./components/addons/cloudController";
import { Cni } from "./components/addons/cni";
import { KubeletCsrApprover } from "./components/addons/csrApprover";
import { CsiDriver } from "./components/addons/csi";
import { LiveState, loadConfig, loadSecrets, readDeployedOutputs } from "./components/config";
import { ControlPlane } from "./components/hetzner/controlPlane";
import { EtcdDefrag } from "./components/etcd/defrag";
import { objectStorageEndpoint } from "./components/hetzner/facts";
import { ApiLoadBalancer } from "./components/hetzner/loadBalancer";
import { Monitoring } from "./components/addons/monitoring/monitoring";
import { ClusterNetwork } from "./components/hetzner/network";
import { stackOutputs, StackOutputs } from "./components/outputs";
import { ReservedIp } from "./components/hetzner/reservedIp";
import { ControlPlaneUpgrade } from "./components/lifecycle/upgrade";
import { clusterLabels } from "./components/labels";
import { WorkerJoinToken } from "./components/lifecycle/workerJoin";

export = async (): Promise<StackOutputs> => {
  // Validation throws before any resource is registered. What the stack last exported: the
  // version an upgrade starts from (one minor at a time, never down); the cluster CA, after
  // which no node may initialize another cluster; the settings a running cluster cannot take.
  const deployed = await readDeployedOutputs(["kubernetesVersion", "caCertHash", "creationSettings"]);
  const deployedVersion = deployed.kubernetesVersion;
  const deployedCaCertHash = deployed.caCertHash;
  const deployedSettings =
    deployed.creationSettings !== null && typeof deployed.creationSettings === "object"
      ? (deployed.creationSettings as Record<string, unknown>)
      : undefined;
  const cfg = loadConfig(
    typeof deployedVersion === "string" ? deployedVersion : undefined,
    deployedSettings,
    await readLiveServers(deployedSettings),
  );
  const secrets = loadSecrets(cfg);

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

  // The endpoint every node uses: the one the stack was created with, whatever apiDnsName says
  // now (components/lifecycle/apiServerSans.ts). New nodes join through it as well.
  const served = servedAddresses(cfg);
  const endpoint = nodeEndpoint(cfg, served);
  const runningCluster = typeof deployedCaCertHash === "string";

  const bootstrap = new ClusterBootstrap("bootstrap", {
    clusterName: cfg.clusterName,
    kubernetesVersion: cfg.kubernetesVersion,
    podCidr: cfg.podCidr,
    serviceCidr: cfg.serviceCidr,
    apiDnsName: endpoint.apiDnsName,
    loadBalancer: { privateIp: cfg.loadBalancer.privateIp, publicInterface: cfg.loadBalancer.publicInterface },
    reservedIpFailover: cfg.reservedIpFailover,
    restoreFrom: cfg.backup.restoreFrom,
    nodes: controlPlane.nodes,
    deployedCaCertHash: runningCluster ? deployedCaCertHash : undefined,
    api,
    reservedIp,
    sshPrivateKey: secrets.sshPrivateKey,
    hcloudToken: secrets.hcloudToken,
    restore: cfg.backup.restoreFrom
      ? {
          endpoint: objectStorageEndpoint(cfg.backup.location),
          bucket: cfg.backup.bucket,
          prefix: cfg.clusterName,
          region: cfg.backup.location,
          accessKey: secrets.objectStorage.accessKey,
          secretKey: secrets.objectStorage.secretKey,
          signingKey: secrets.backupSigningKey,
        }
      : undefined,
  });

  // Day 2: upgrades to the configured version, then certificate renewal, one node at a time,
  // after the kube-vip chain (which comes after the last join): all three restart kube-vip.
  const upgrade = new ControlPlaneUpgrade("upgrade", {
    kubernetesVersion: cfg.kubernetesVersion,
    nodes: controlPlane.nodes,
    after: bootstrap.kubeVipComplete,
    sshPrivateKey: secrets.sshPrivateKey,
  });
  const certificates = new KubeadmCertificates("certificates", {
    kubernetesVersion: cfg.kubernetesVersion,
    maintenance: { certificateRenewal: cfg.maintenance.certificateRenewal },
    nodes: controlPlane.nodes,
    after: upgrade.complete,
    sshPrivateKey: secrets.sshPrivateKey,
  });

  // A running cluster's API server certificates get the addresses clients reach it by, node by
  // node, after the other rolling chains, once they changed. A new cluster's certificates have
  // them from init.
  const sans =
    runningCluster && served.rolled
      ? new ApiServerSans("apiserver-sans", {
          nodes: controlPlane.nodes,
          privateIp: cfg.loadBalancer.privateIp,
          served,
          addresses: pulumi
            .all([api.loadBalancer.ipv4, api.loadBalancer.ipv6, reservedIp.address])
            .apply(([lbIpv4, lbIpv6, address]) => ({ lbIpv4, lbIpv6, reservedIp: address })),
          after: certificates.complete,
          sshPrivateKey: secrets.sshPrivateKey,
        })
      : undefined;

  const access = new ClusterAccess("access", {
    clusterName: cfg.clusterName,
    nodes: controlPlane.nodes,
    // Through the reserved IP, the API answers only once a node holds it. At a new address only
    // once every node serves it: the last node's SAN step.
    after: [
      sans?.complete ?? certificates.complete,
      ...(apiServerViaReservedIp(cfg) ? bootstrap.reservedIpHolders : []),
    ],
    revision: certificates.revision,
    sshPrivateKey: secrets.sshPrivateKey,
    server: pulumi
      .all([api.loadBalancer.ipv4, reservedIp.address])
      .apply(([lbIpv4, address]) => publicApiServer(cfg, lbIpv4, address)),
  });

  const workerToken = new WorkerJoinToken("worker-join", {
    clusterName: cfg.clusterName,
    rotation: cfg.workerJoin.rotation,
    ttlHours: cfg.workerJoin.ttlHours,
    nodes: controlPlane.nodes,
    after: upgrade.complete,
    sshPrivateKey: secrets.sshPrivateKey,
  });

  const cni = new Cni("cni", {
    cni: cfg.cni,
    podCidr: cfg.podCidr,
    nodes: cfg.nodes,
    // In-cluster clients on the nodes' host network reach the API at the nodes' endpoint (each
    // node's /etc/hosts resolves it), not at a newer apiDnsName.
    apiDnsName: endpoint.apiDnsName,
    loadBalancer: { privateIp: cfg.loadBalancer.privateIp },
    provider: access.provider,
  });

  // Approves each kubelet's serving-certificate CSR for its own Node (serverTLSBootstrap), in the job image.
  new KubeletCsrApprover("kubelet-csr-approver", {
    backup: { image: cfg.backup.image },
    provider: access.provider,
    podNetwork: cni.release,
  });
  // Nodes carry the uninitialized taint until the cloud controller runs: what schedules pods
  // waits for it (cloudControllerManager false: for the team's own controller).
  const cloudController =
    cfg.cloud.controllerManager && secrets.cloudToken
      ? new CloudController("cloud-controller", {
          location: cfg.location,
          podCidr: cfg.podCidr,
          provider: access.provider,
          token: secrets.cloudToken,
          networkId: network.network.id,
          podNetwork: cni.release,
        })
      : undefined;
  const podsSchedulable = cloudController?.release ?? cni.release;
  if (cfg.cloud.csiDriver && secrets.cloudToken) {
    new CsiDriver("csi", {
      location: cfg.location,
      cloud: { storageClass: cfg.cloud.storageClass },
      provider: access.provider,
      token: secrets.cloudToken,
      after: [podsSchedulable],
    });
  }

  new Monitoring("monitoring", {
    clusterName: cfg.clusterName,
    nodes: cfg.nodes,
    monitoring: cfg.monitoring,
    backup: { schedule: cfg.backup.schedule },
    maintenance: { certificateExpiryWarningDays: cfg.maintenance.certificateExpiryWarningDays },
    provider: access.provider,
    pagerdutyRoutingKey: secrets.pagerdutyRoutingKey,
    // The pod network only, not the cloud controller: the release's atomic wait (900 s) outlasts
    // the controller's own (600 s), which lifts the uninitialized taint; waiting for it as well
    // would add a step to the bring-up's critical path (tests/criticalPath.test.ts).
    podNetwork: cni.release,
    certificateExpiry: certificates.expiry,
    workerJoinExpiry: workerToken.expiry,
  });

  const backup = new EtcdBackup("etcd-backup", {
    clusterName: cfg.clusterName,
    nodes: cfg.nodes,
    backup: cfg.backup,
    provider: access.provider,
    accessKey: secrets.objectStorage.accessKey,
    secretKey: secrets.objectStorage.secretKey,
    signingKey: secrets.backupSigningKey,
  });

  new EtcdDefrag("etcd-defrag", {
    nodes: cfg.nodes,
    maintenance: { defrag: cfg.maintenance.defrag },
    backup: { image: cfg.backup.image },
    provider: access.provider,
  });

  return stackOutputs({
    cfg,
    endpoint,
    network,
    reservedIp,
    controlPlane,
    api,
    access,
    backup,
    workerToken,
    certificates,
    upgrade,
  });
};

/**
 * The control-plane servers as Hetzner lists them now, read only when the configured serverType
 * differs from the deployed one: a new type is accepted once every server runs it
 * (scripts/ops/resize-control-plane.sh). The selector is the one components/hetzner/controlPlane.ts
 * lists the servers with; read before the config is checked, so only a well-formed clusterName
 * goes into it (a bad one is reported by the config check).
 */
async function readLiveServers(deployedSettings: Record<string, unknown> | undefined): Promise<LiveState> {
  const config = new pulumi.Config();
  const clusterName = config.get("clusterName");
  const wanted = config.get("serverType");
  const runs = deployedSettings?.serverType;
  if (typeof runs !== "string" || wanted === undefined || wanted === runs) return {};
  if (!clusterName || !/^[a-z]([a-z0-9-]{0,28}[a-z0-9])?$/.test(clusterName)) return {};
  const withSelector = Object.entries(clusterLabels(clusterName, "control-plane"))
    .map(([key, value]) => `${key}=${value}`)
    .join(",");
  const listed = await hcloud.getServers({ withSelector });
  return {
    controlPlaneServers: listed.servers
      .map((s) => ({ name: s.name, serverType: s.serverType }))
      .sort((a, b) => a.name.localeCompare(b.name)),
  };
}
