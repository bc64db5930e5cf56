/**
 * The kubeadm bootstrap over SSH: `kubeadm init` on the first node, then joins strictly one
 * at a time, each with join credentials minted at join time on the node that joined before
 * it; kube-vip and the reserved-IP companion once the chain is complete.
 *
 * Every command is idempotent, because Pulumi re-runs `create` whenever an input changes. The
 * init and join scripts write their own completion marker (/var/lib/kubernetes-node/member) as
 * their last step; kubeadm's files without it mean a half-finished setup, which a re-run
 * finishes or refuses with the reset commands (scripts/node/member.sh). Replacing a join
 * runs its `delete` (drain, `kubeadm reset`, delete the Node) first: that is how one etcd
 * member leaves, and the chain lets no two members change in one update.
 */
import * as crypto from "node:crypto";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { ClusterConfig, NodeSpec } from "./config";
import { ControlPlaneNode, nodeName } from "./controlPlane";
import {
  KubeadmInput,
  kubeadmPaths,
  renderEtcdPatch,
  renderInitConfiguration,
  renderJoinConfiguration,
} from "./kubeadm";
import { kubeVipLeaseName, kubeVipStagedPath, renderKubeVipManifest } from "./kubeVip";
import { ApiLoadBalancer, apiServerPort, controlPlaneHost } from "./loadBalancer";
import { nodeCommand, nodeLibDir, scriptsHash, shellQuote } from "./nodeScripts";
import { ReservedIp } from "./reservedIp";
import { kubernetesPackageVersion } from "./versions";

export interface BootstrapArgs {
  cfg: ClusterConfig;
  /** Control-plane servers in node order; the first one runs `kubeadm init`. */
  nodes: ControlPlaneNode[];
  /** Init waits for its service and targets: the endpoint must route before kubeadm uses it. */
  api: ApiLoadBalancer;
  reservedIp: ReservedIp;
  /** Secret: the key matching the servers' SSH key. */
  sshPrivateKey: pulumi.Input<string>;
  /** Secret: Hetzner token for the reserved-IP companion; unset when failover is off. */
  hcloudToken?: pulumi.Input<string>;
}

/** Where the rendered kubeadm files go on a node. */
export const kubeadmFiles = {
  init: "/etc/kubernetes/kubeadm/init.yaml",
  joinTemplate: "/etc/kubernetes/kubeadm/join.yaml",
  etcdPatch: `${kubeadmPaths.patchesDirectory}/${kubeadmPaths.etcdPatchFile}`,
} as const;

/** SSH as root to the server's public IPv4 with the stack's key. */
export function sshConnection(
  node: ControlPlaneNode,
  privateKey: pulumi.Input<string>,
): command.types.input.remote.ConnectionArgs {
  return {
    host: node.server.ipv4Address,
    user: "root",
    privateKey,
    // A new server answers SSH a minute or two after it is created.
    dialErrorLimit: 40,
    perDialTimeout: 15,
  };
}

/** The kubeadm input for one node; addresses that exist only once the load balancer does are Outputs. */
export function kubeadmInput(
  cfg: ClusterConfig,
  spec: NodeSpec,
  addresses: { lbIpv4?: string; lbIpv6?: string; reservedIp: string },
): KubeadmInput {
  const sans = [cfg.loadBalancer.privateIp, addresses.reservedIp, addresses.lbIpv4, addresses.lbIpv6, cfg.apiDnsName];
  return {
    clusterName: cfg.clusterName,
    kubernetesVersion: cfg.kubernetesVersion,
    node: spec,
    nodeHostname: nodeName(cfg.clusterName, spec),
    controlPlaneEndpoint: controlPlaneHost(cfg),
    certSans: sans.filter((s): s is string => typeof s === "string" && s !== ""),
    podCidr: cfg.podCidr,
    serviceCidr: cfg.serviceCidr,
  };
}

/** With a DNS endpoint, nodes resolve it to the load balancer's private IP through /etc/hosts. */
function endpointArgs(cfg: ClusterConfig): string[] {
  return cfg.apiDnsName ? ["--endpoint-host", cfg.apiDnsName, "--endpoint-ip", cfg.loadBalancer.privateIp] : [];
}

export class ClusterBootstrap extends pulumi.ComponentResource {
  /** The init command; the admin kubeconfig is read after it. */
  readonly init: command.remote.Command;
  /** The last member of the join chain: everything that needs the whole control plane waits for it. */
  readonly complete: command.remote.Command;
  /**
   * Per node, what makes the reserved IP work there: the companion when failover is on, else
   * the kube-vip manifest. Whatever reaches the API through the reserved IP waits for them.
   */
  readonly reservedIpHolders: pulumi.Resource[];
  /**
   * The last node's kube-vip (and companion): the end of the kube-vip chain. The upgrade and
   * certificate chains restart kube-vip too (it holds admin.conf), so they wait for it: two
   * chains moving the same manifest on one node at once would fight over it.
   */
  readonly kubeVipComplete: pulumi.Resource;

  constructor(name: string, args: BootstrapArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hcloud-control-plane:index:ClusterBootstrap", name, {}, opts);
    const { cfg } = args;
    const lb = args.api.loadBalancer;
    const addresses = pulumi
      .all([lb.ipv4, lb.ipv6, args.reservedIp.address])
      .apply(([lbIpv4, lbIpv6, reservedIp]) =>
        cfg.loadBalancer.publicInterface ? { lbIpv4, lbIpv6, reservedIp } : { reservedIp },
      );
    const scriptsRevision = scriptsHash();

    const prepared = args.nodes.map((node) => this.prepare(name, args, node, addresses, scriptsRevision));
    let init: command.remote.Command | undefined;
    let previous: command.remote.Command | undefined;
    let previousNode: ControlPlaneNode | undefined;
    args.nodes.forEach((node, i) => {
      const connection = sshConnection(node, args.sshPrivateKey);
      const ready = prepared[i];
      if (!previous || !previousNode) {
        init = new command.remote.Command(
          `${name}-${node.spec.name}-init`,
          {
            connection,
            create: nodeCommand("kubeadm-init.sh", [
              "--config",
              kubeadmFiles.init,
              ...endpointArgs(cfg),
              // A replaced first node must never start a second cluster beside the running one.
              "--refuse-if-serving",
              `https://${cfg.loadBalancer.privateIp}:${apiServerPort}/readyz`,
            ]),
            triggers: [node.server.id],
          },
          {
            parent: this,
            // The endpoint is the load balancer: it must forward 6443 before kubeadm uses it.
            dependsOn: [...ready, args.api.service, ...args.api.targets],
            // Replacing the first member must tear the old one down before the new one starts.
            deleteBeforeReplace: true,
          },
        );
        previous = init;
      } else {
        // Minted on the member that joined last, when this join runs: kubeadm's upload-certs
        // key lives 2 h and tokens 24 h, so nothing from init may be reused months later.
        const credentials = new command.remote.Command(
          `${name}-${node.spec.name}-join-credentials`,
          {
            connection: sshConnection(previousNode, args.sshPrivateKey),
            create: nodeCommand("mint-join-credentials.sh", ["--ttl", "1h"]),
            // A new server (or a replaced one) gets new credentials.
            triggers: [node.server.id],
            logging: "none",
          },
          { parent: this, dependsOn: [previous], additionalSecretOutputs: ["stdout", "stderr"] },
        );
        const join = new command.remote.Command(
          `${name}-${node.spec.name}-join`,
          {
            connection,
            create: nodeCommand("kubeadm-join.sh", [
              "--config-template",
              kubeadmFiles.joinTemplate,
              "--node-name",
              node.name,
              ...endpointArgs(cfg),
            ]),
            // The credentials travel on stdin: never on a command line, never in the environment.
            stdin: pulumi.secret(credentials.stdout),
            delete: nodeCommand("leave-cluster.sh", ["--node-name", node.name]),
            triggers: [node.server.id],
            logging: "none",
          },
          {
            parent: this,
            // Joins are serialized: etcd accepts one learner at a time, and the join gates on
            // /readyz and etcd cluster health before the next one starts.
            dependsOn: [...ready, previous],
            additionalSecretOutputs: ["stdout", "stderr"],
            // The old member leaves (kubeadm reset) before a replacement joins.
            deleteBeforeReplace: true,
          },
        );
        previous = join;
      }
      previousNode = node;
    });
    if (!init || !previous) throw new Error("the bootstrap needs at least one node");
    this.init = init;
    this.complete = previous;

    // kube-vip comes after the whole chain: the load balancer is the endpoint, so kube-vip is not
    // needed to bootstrap, and with admin.conf in place it avoids kubeadm's super-admin.conf trap.
    // Its manifest is staged outside the kubelet's manifest directory and installed by
    // install-kube-vip.sh one node after another, each behind the health gates and a renewed
    // kube-vip Lease, so a changed manifest never restarts kube-vip on every node at once.
    const manifest = args.reservedIp.address.apply((address) => renderKubeVipManifest({ address }));
    let previousHolder: pulumi.Resource = this.complete;
    this.reservedIpHolders = args.nodes.map((node) => {
      const connection = sshConnection(node, args.sshPrivateKey);
      const staged = copyFile(
        `${name}-${node.spec.name}-kube-vip`,
        connection,
        manifest,
        kubeVipStagedPath,
        node,
        // Outside /etc/kubernetes/manifests, so copying it changes nothing that runs.
        { parent: this, dependsOn: [this.complete] },
      );
      const kubeVip = new command.remote.Command(
        `${name}-${node.spec.name}-kube-vip-install`,
        {
          connection,
          // The manifest's hash makes a changed manifest re-run the (idempotent) install as an
          // update. No scripts revision: with the same manifest the script changes nothing.
          create: manifest.apply(
            (text) =>
              `${nodeCommand("install-kube-vip.sh", ["--manifest", kubeVipStagedPath, "--node-name", node.name, "--lease", kubeVipLeaseName])} # manifest ${sha256(text).slice(0, 16)}`,
          ),
        },
        // One node at a time: the previous node's kube-vip (and companion) first.
        { parent: this, dependsOn: [staged, previousHolder] },
      );
      previousHolder = cfg.reservedIpFailover
        ? this.failover(name, args, node, connection, kubeVip, scriptsRevision)
        : kubeVip;
      return previousHolder;
    });
    this.kubeVipComplete = previousHolder;
    this.registerOutputs({});
  }

  /** The reserved-IP companion on one node, installed once kube-vip runs there. */
  private failover(
    name: string,
    args: BootstrapArgs,
    node: ControlPlaneNode,
    connection: command.types.input.remote.ConnectionArgs,
    kubeVip: pulumi.Resource,
    scriptsRevision: string,
  ): command.remote.Command {
    if (!args.hcloudToken) throw new Error("reservedIpFailover is on but no Hetzner token was given");
    return new command.remote.Command(
      `${name}-${node.spec.name}-reserved-ip-failover`,
      {
        connection,
        create: pulumi
          .all([args.reservedIp.floatingIp.id, args.reservedIp.address])
          .apply(
            ([id, address]) =>
              `${nodeCommand("install-reserved-ip-failover.sh", ["--floating-ip-id", id, "--address", address])} ${revisionComment(scriptsRevision)}`,
          ),
        // The token reaches the node on stdin and is written to a root-only file there.
        stdin: pulumi.secret(pulumi.output(args.hcloudToken).apply((token) => `${token}\n`)),
        delete: nodeCommand("install-reserved-ip-failover.sh", ["--disable"]),
        logging: "none",
      },
      { parent: this, dependsOn: [kubeVip], additionalSecretOutputs: ["stdout", "stderr"] },
    );
  }

  /**
   * Per node: the scripts directory, the scripts, the wait for cloud-init's node preparation,
   * and the rendered kubeadm files. Returns what init or join must wait for.
   */
  private prepare(
    name: string,
    args: BootstrapArgs,
    node: ControlPlaneNode,
    addresses: pulumi.Output<{ lbIpv4?: string; lbIpv6?: string; reservedIp: string }>,
    scriptsRevision: string,
  ): pulumi.Resource[] {
    const { cfg } = args;
    const connection = sshConnection(node, args.sshPrivateKey);
    const parent = { parent: this };
    const prefix = `${name}-${node.spec.name}`;
    const libDir = new command.remote.Command(
      `${prefix}-lib-dir`,
      { connection, create: `install -d -m 0700 ${shellQuote(nodeLibDir)}`, triggers: [node.server.id] },
      parent,
    );
    const scripts = new command.remote.CopyToRemote(
      `${prefix}-scripts`,
      {
        connection,
        // Relative to the project directory, where Pulumi runs the program.
        source: new pulumi.asset.FileArchive("./scripts/node"),
        remotePath: nodeLibDir,
        // An edited script is copied again; the commands that run it are idempotent.
        triggers: [node.server.id, scriptsRevision],
      },
      { ...parent, dependsOn: [libDir] },
    );
    const nodePrepared = new command.remote.Command(
      `${prefix}-prepared`,
      {
        connection,
        create: nodeCommand("wait-node-prepared.sh", [
          "--package-version",
          kubernetesPackageVersion(cfg.kubernetesVersion),
        ]),
        triggers: [node.server.id],
      },
      { ...parent, dependsOn: [scripts] },
    );
    const input = addresses.apply((a) => kubeadmInput(cfg, node.spec, a));
    const first = node === args.nodes[0];
    const kubeadmConfig = copyFile(
      `${prefix}-kubeadm-config`,
      connection,
      input.apply((i) => (first ? renderInitConfiguration(i) : renderJoinConfiguration(i))),
      first ? kubeadmFiles.init : kubeadmFiles.joinTemplate,
      node,
      { ...parent, dependsOn: [nodePrepared] },
    );
    const etcdPatch = copyFile(
      `${prefix}-etcd-patch`,
      connection,
      input.apply(renderEtcdPatch),
      kubeadmFiles.etcdPatch,
      node,
      { ...parent, dependsOn: [nodePrepared] },
    );
    return [nodePrepared, kubeadmConfig, etcdPatch];
  }
}

/**
 * A rendered file copied to a node. Its sha256 is a trigger, so a changed file is copied
 * again as a replacement (a copy has nothing to undo); so is a new server.
 */
function copyFile(
  name: string,
  connection: command.types.input.remote.ConnectionArgs,
  text: pulumi.Output<string>,
  remotePath: string,
  node: ControlPlaneNode,
  opts: pulumi.CustomResourceOptions,
): command.remote.CopyToRemote {
  return new command.remote.CopyToRemote(
    name,
    {
      connection,
      source: text.apply((t) => new pulumi.asset.StringAsset(t)),
      remotePath,
      triggers: [node.server.id, text.apply(sha256)],
    },
    opts,
  );
}

/** The hex sha256 of a rendered file. */
function sha256(text: string): string {
  return crypto.createHash("sha256").update(text).digest("hex");
}

/**
 * A shell comment that changes with the node scripts: an edited script then re-runs the
 * (idempotent) command as an update, where a trigger would replace it and run its delete.
 */
function revisionComment(revision: string): string {
  return `# scripts ${revision.slice(0, 16)}`;
}
