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
 * also runs once on a new cluster and resumes where it stopped after a failure. On a new cluster
 * every node was just set up at the configured version, so nothing waits for that run: it goes
 * to the side, after the kube-vip chain, while the admin kubeconfig and what follows it proceed. Each step
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
import type { NodeChains } from "./bootstrap";
import { kubeadmPaths } from "../node/kubeadm";
import { nodeCommand, recordedWork } from "../node/nodeScripts";
import { kubernetesPackageChannel, kubernetesPackageVersion } from "../versions";

export interface ControlPlaneUpgradeArgs {
  /** The configured Kubernetes version "x.y.z": every node is moved to it, one at a time. */
  kubernetesVersion: string;
  /**
   * Control-plane servers in node order, upgraded in that order; the first one whose cluster is
   * below the version runs `kubeadm upgrade apply` (upgrade-node.sh --role auto), whichever it is.
   */
  nodes: ControlPlaneNode[];
  /**
   * The bootstrap's chains: the preflight starts after the kube-vip chain (`rolling`), which
   * starts after every member's setup; on a new cluster after every setup (`settled`), and each
   * node's step after that node's kube-vip (`perNode`).
   */
  after: NodeChains;
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
  /**
   * `rolling`: the last step, where the next rolling chain starts (`perNode`: each node's step,
   * on a new cluster). `settled`, what must see every node at the configured version waits for:
   * the last step, but on a new cluster the bootstrap's `settled` (every node was set up at that
   * version; the steps only check the gates).
   */
  readonly complete: NodeChains;
  /**
   * The version every node runs, known only once the last step succeeded: each step ends by
   * checking its node runs it (upgrade-node.sh), so a chain that stopped never reports it.
   */
  readonly runningVersion: pulumi.Output<string>;

  constructor(name: string, args: ControlPlaneUpgradeArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hcloud-control-plane:index:ControlPlaneUpgrade", name, {}, opts);
    const { kubernetesVersion } = args;
    const perNode = args.after.perNode;
    const preflight = new command.remote.Command(
      `${name}-preflight`,
      {
        // Reads the whole cluster through the API and each node's versions: any running member.
        // Recorded, so a changed connection alone (a rotated key) checks nothing again.
        connection: anyMemberConnection(args.nodes, args.sshPrivateKey).connection,
        ...recordedWork(`${name}-preflight`, nodeCommand("upgrade-preflight.sh", ["--version", kubernetesVersion])),
      },
      // After every member's setup; on a running cluster after the kube-vip chain too, since
      // the steps restart kube-vip (on a new cluster each step waits for its node's kube-vip).
      { parent: this, dependsOn: [perNode ? args.after.settled : args.after.rolling] },
    );
    let previous = preflight;
    const steps = args.nodes.map((node, i) => {
      previous = new command.remote.Command(
        `${name}-${node.spec.name}`,
        {
          connection: sshConnection(node, args.sshPrivateKey),
          // A new version runs the step; a changed connection alone finds the node's record.
          ...recordedWork(`${name}-${node.spec.name}`, upgradeNodeCommand(kubernetesVersion, node)),
        },
        // One node at a time: each step waits for the previous one to finish, gates included;
        // on a new cluster also for this node's kube-vip (both restart it, never at once).
        { parent: this, dependsOn: [previous, ...(perNode ? [perNode[i]] : [])] },
      );
      return previous;
    });
    this.complete = perNode
      ? { settled: args.after.settled, rolling: previous, perNode: steps }
      : { settled: previous, rolling: previous };
    const target = args.kubernetesVersion;
    this.runningVersion = previous.stdout.apply(() => target);
    this.registerOutputs({});
  }
}
