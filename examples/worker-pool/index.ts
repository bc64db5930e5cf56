/**
 * worker-pool: worker servers that join a control plane built by this repository's program.
 *
 * It reads the control-plane stack's outputs through a StackReference (the contract is
 * components/outputs.ts), refuses an outputsVersion it was not written for, and creates
 * `workerCount` servers in the stack's location, attached to its private network (and its
 * firewall), each joining the cluster at first boot with cloud-init (workerCloudInit.ts).
 *
 * The join material (`workerJoin`) is a secret output: it is read with getOutput and only ever
 * flows through Outputs, so the servers' userData stays a secret in this stack's state.
 */
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import { supportedImages } from "../../components/hetzner/facts";
import { clusterLabels } from "../../components/labels";
import { checkOutputsVersion, consecutiveIps, parseWorkerJoin } from "./contract";
import { renderWorkerCloudInit } from "./workerCloudInit";

const namePattern = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

export = async () => {
  // Defaults live in Pulumi.yaml; the CLI applies them.
  const config = new pulumi.Config();
  const controlPlaneStack = config.require("controlPlaneStack");
  const workerCount = config.requireNumber("workerCount");
  const poolName = config.require("poolName");
  const serverType = config.require("serverType");
  const image = config.require("image");
  const firstPrivateIp = config.require("firstPrivateIp");
  const publicIpv4 = config.requireBoolean("publicIpv4");
  const publicIpv6 = config.requireBoolean("publicIpv6");
  const attachFirewall = config.requireBoolean("attachFirewall");
  const sshKeys = config.requireObject<string[]>("sshKeys");

  if (!Number.isInteger(workerCount) || workerCount < 1 || workerCount > 50) {
    throw new Error(`worker-pool: workerCount must be a whole number from 1 to 50, got ${workerCount}`);
  }
  if (!namePattern.test(poolName) || poolName.length > 20) {
    throw new Error(`worker-pool: poolName must be 1-20 lower-case letters, digits and '-', got '${poolName}'`);
  }
  if (!(supportedImages as readonly string[]).includes(image)) {
    throw new Error(`worker-pool: image must be one of ${supportedImages.join(", ")}, got '${image}'`);
  }
  if (!Array.isArray(sshKeys) || !sshKeys.every((k) => typeof k === "string" && k !== "")) {
    throw new Error("worker-pool: sshKeys must be a list of Hetzner SSH key names or ids");
  }
  const privateIps = consecutiveIps(firstPrivateIp, workerCount);

  const stackRef = new pulumi.StackReference("control-plane", { name: controlPlaneStack });

  // The contract version first: nothing else is read, let alone created, from a stack this
  // example does not understand. Plain values are fine for non-secret outputs.
  checkOutputsVersion(await stackRef.getOutputValue("outputsVersion"), controlPlaneStack);
  // getOutputValue, not requireOutputValue: a missing output gets this program's message.
  const names = ["clusterName", "location", "networkZone", "kubernetesVersion", "controlPlaneEndpoint", "networkId"];
  const values = await Promise.all([...names, "firewallId"].map((name) => stackRef.getOutputValue(name)));
  const [clusterName, location, networkZone, kubernetesVersion, controlPlaneEndpoint, networkId, firewallId] =
    values.map((value: unknown, i) => {
      if (typeof value === "string" && value !== "") return value;
      const problem = value === undefined ? "has no output" : "has a non-string or empty output";
      throw new Error(`worker-pool: stack ${controlPlaneStack} ${problem} ${[...names, "firewallId"][i]}`);
    });
  if (!/^[0-9]+\.[0-9]+\.[0-9]+$/.test(kubernetesVersion)) {
    throw new Error(
      `worker-pool: output kubernetesVersion of stack ${controlPlaneStack} is not x.y.z: '${kubernetesVersion}'`,
    );
  }
  const network = Number(networkId);
  const firewall = Number(firewallId);
  if (!Number.isSafeInteger(network) || !Number.isSafeInteger(firewall)) {
    throw new Error(`worker-pool: outputs networkId and firewallId of stack ${controlPlaneStack} must be Hetzner ids`);
  }

  // The join material is checked before any server is created (a malformed value thrown inside
  // an apply would only fail the servers' registration, one by one). getOutputDetails hands a
  // secret output back as `secretValue`; this plain copy is only checked, never used.
  const details = await stackRef.getOutputDetails("workerJoin");
  if (details.value !== undefined) {
    pulumi.log.warn(
      `worker-pool: stack ${controlPlaneStack} exports workerJoin without the secret bit; it is kept secret here`,
    );
  }
  const checked = parseWorkerJoin(details.secretValue ?? details.value, controlPlaneStack);
  if (checked.controlPlaneEndpoint !== controlPlaneEndpoint) {
    throw new Error(
      `worker-pool: workerJoin.controlPlaneEndpoint of stack ${controlPlaneStack} differs from its controlPlaneEndpoint output (${controlPlaneEndpoint})`,
    );
  }
  if (Date.parse(checked.expires) <= Date.now()) {
    pulumi.log.warn(
      `worker-pool: the workerJoin token of ${controlPlaneStack} expired at ${checked.expires}; ` +
        "a new worker cannot join until the control-plane stack publishes a fresh one (pulumi up there)",
    );
  }
  // What the servers get: read with getOutput, so it is a secret Output; every value derived
  // from it (the user data) stays one. Never getOutputValue/requireOutputValue for it.
  const workerJoin = stackRef
    .getOutput("workerJoin")
    .apply((value: unknown) => parseWorkerJoin(value, controlPlaneStack));

  const workers = privateIps.map((privateIp, i) => {
    const node = `${poolName}-${i + 1}`;
    const serverName = `${clusterName}-${node}`;
    // pulumi.secret: explicit, should a producer ever export workerJoin without the secret bit.
    const userData = pulumi.secret(
      workerJoin.apply((join) =>
        renderWorkerCloudInit({
          hostname: serverName,
          kubernetesVersion,
          privateIp,
          join,
        }),
      ),
    );
    const server = new hcloud.Server(
      serverName,
      {
        name: serverName,
        serverType,
        image,
        location,
        sshKeys,
        firewallIds: attachFirewall ? [firewall] : [],
        networks: [{ networkId: network, ip: privateIp, aliasIps: [] }],
        publicNets: [{ ipv4Enabled: publicIpv4, ipv6Enabled: publicIpv6 }],
        userData,
        labels: { ...clusterLabels(clusterName, "worker"), pool: poolName, node },
      },
      {
        // The join token rotates on the control-plane stack, and Hetzner replaces a server whose
        // userData, image or SSH keys change: none of that may silently replace running workers.
        // Replace a worker deliberately: `pulumi up --replace <urn>`, one at a time.
        ignoreChanges: ["userData", "image", "sshKeys"],
      },
    );
    return { name: serverName, privateIp, id: server.id, ipv4Address: server.ipv4Address };
  });

  return {
    controlPlaneStack,
    clusterName,
    controlPlaneEndpoint,
    location,
    networkZone,
    kubernetesVersion,
    // When new workers stop being able to join (not sensitive).
    joinTokenExpires: checked.expires,
    workers,
  };
};
