/**
 * Kubernetes upgrades from `pulumi up`: changing `kubernetesVersion` (one minor at a time;
 * config validation refuses more, and downgrades) re-runs this chain of remote commands:
 *
 *   preflight (a running member: version-skew rules and cluster health, before anything changes)
 *   -> cp-1: kubeadm upgrade plan + apply (the first node whose cluster is below the version,
 *      whichever it is: --role auto), drain, kubelet/kubectl packages, restart, uncordon
 *   -> cp-2: kubeadm upgrade node, the same node steps
 *   -> ... strictly one node after another.
 *
 * Every step is idempotent (a node already at the version only checks the gates), so the chain
 * also runs once on a new cluster and resumes where it stopped after a failure. Each step
 * starts and ends with the gates (API server /readyz, etcd cluster health), and the next step
 * depends on the previous one: a failed step stops the chain, and Pulumi names its resource
 * (`upgrade-<node>`) while the script's message names the node and the step.
 *
 * New servers get the configured version from cloud-init (servers ignore later userData
 * changes, so existing ones are moved only by this chain).
 */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { anyMemberConnection, sshConnection } from "../node/ssh";
import { ControlPlaneNode } from "../hetzner/controlPlane";
import { kubeadmPaths } from "../node/kubeadm";
import { nodeCommand } from "../node/nodeScripts";
import { kubernetesPackageChannel, kubernetesPackageVersion } from "../versions";

export interface ControlPlaneUpgradeArgs {
  /** The configured Kubernetes version "x.y.z": every node is moved to it, one at a time. */
  kubernetesVersion: string;
  /**
   * Control-plane servers in node order, upgraded in that order; the first one whose cluster is
   * below the version runs `kubeadm upgrade apply` (upgrade-node.sh --role auto), whichever it is.
   */
  nodes: ControlPlaneNode[];
  /** The end of the bootstrap chain: every node is a member before any upgrade step runs. */
  after: pulumi.Resource;
  /** Secret: the key matching the servers' SSH key. */
  sshPrivateKey: pulumi.Input<string>;
}

/** The command line of one node's upgrade step. */
function upgradeNodeCommand(kubernetesVersion: string, node: ControlPlaneNode): string {
  return nodeCommand("upgrade-node.sh", [
    "--role",
    "auto",
    "--version",
    kubernetesVersion,
    "--package-version",
    kubernetesPackageVersion(kubernetesVersion),
    "--channel",
    kubernetesPackageChannel(kubernetesVersion),
    "--node-name",
    node.name,
    "--patches",
    kubeadmPaths.patchesDirectory,
  ]);
}

export class ControlPlaneUpgrade extends pulumi.ComponentResource {
  /** The last step: what must see every node at the configured version waits for it. */
  readonly complete: command.remote.Command;
  /**
   * The version every node runs, known only once the last step succeeded: each step ends by
   * checking its node runs it (upgrade-node.sh), so a chain that stopped never reports it.
   */
  readonly runningVersion: pulumi.Output<string>;

  constructor(name: string, args: ControlPlaneUpgradeArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hcloud-control-plane:index:ControlPlaneUpgrade", name, {}, opts);
    const { kubernetesVersion } = args;
    const preflight = new command.remote.Command(
      `${name}-preflight`,
      {
        // Reads the whole cluster through the API and each node's versions: any running member.
        connection: anyMemberConnection(args.nodes, args.sshPrivateKey).connection,
        create: nodeCommand("upgrade-preflight.sh", ["--version", kubernetesVersion]),
      },
      { parent: this, dependsOn: [args.after] },
    );
    let previous = preflight;
    args.nodes.forEach((node) => {
      previous = new command.remote.Command(
        `${name}-${node.spec.name}`,
        {
          connection: sshConnection(node, args.sshPrivateKey),
          create: upgradeNodeCommand(kubernetesVersion, node),
        },
        // One node at a time: each step waits for the previous one to finish, gates included.
        { parent: this, dependsOn: [previous] },
      );
    });
    this.complete = previous;
    const target = args.kubernetesVersion;
    this.runningVersion = previous.stdout.apply(() => target);
    this.registerOutputs({});
  }
}
