/**
 * The kubeadm bootstrap over SSH: members, not roles. Every control-plane node runs the same
 * setup (scripts/node/kubeadm-member.sh), strictly one node after another: a node initializes
 * the cluster only when no member answers and the stack has never recorded a cluster; otherwise
 * it joins, with join credentials it mints for this attempt on a healthy member over the private
 * network. kube-vip and the reserved-IP companion follow once every member is set up, to the side:
 * the cluster answers through the load balancer as soon as one API server is healthy, so nothing
 * that only reads the cluster waits for them (see {@link NodeChains}).
 *
 * The setup writes its own completion marker (/var/lib/kubernetes-node/member) as its last
 * step; kubeadm's files without it mean a half-finished setup, which a re-run finishes or refuses
 * with the reset commands (scripts/node/member.sh). It runs once per server: replacing a server
 * runs it again on the new one. A node leaves through its membership record, which runs on
 * another running member (scripts/node/membership.sh): replacing or removing a node removes its
 * etcd member there first, one node at a time, even when the node itself is dead.
 */
import * as crypto from "node:crypto";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { ClusterConfig, NodeSpec } from "../config";
import { ControlPlaneNode, nodeName } from "../hetzner/controlPlane";
import {
  KubeadmInput,
  kubeadmPaths,
  renderEtcdPatch,
  renderInitConfiguration,
  renderJoinConfiguration,
} from "../node/kubeadm";
import { kubeVipLeaseName, kubeVipStagedPath, renderKubeVipManifest } from "../node/kubeVip";
import { ApiLoadBalancer, apiServerPort, controlPlaneHost, EndpointSettings } from "../hetzner/loadBalancer";
import { nodeCommand, nodeLibDir, recordDigest, recorded, scriptsHash, shellQuote } from "../node/nodeScripts";
import { ReservedIp } from "../hetzner/reservedIp";
import { anyMemberConnection, sshConnection } from "../node/ssh";
import { kubernetesPackageVersion } from "../versions";

/** The settings the kubeadm files of a node are rendered from. */
export type KubeadmSettings = EndpointSettings &
  Pick<ClusterConfig, "clusterName" | "kubernetesVersion" | "podCidr" | "serviceCidr">;

/**
 * The settings the bootstrap uses: the kubeadm files' settings, whether the load balancer's
 * public addresses go into the certificates, and whether the reserved-IP companion runs.
 */
export type BootstrapSettings = KubeadmSettings &
  Pick<ClusterConfig, "reservedIpFailover"> & {
    loadBalancer: Pick<ClusterConfig["loadBalancer"], "privateIp" | "publicInterface">;
    /** restoreFrom ("" none): kubeadm-member.sh --restore-from. */
    restoreFrom: string;
  };

export interface BootstrapArgs extends BootstrapSettings {
  /**
   * Control-plane servers in node order. None has a fixed role: the first to find no cluster
   * initializes it (on a new stack, cp-1, since the setups run in node order); the rest join.
   */
  nodes: ControlPlaneNode[];
  /**
   * The cluster CA hash (`sha256:<hex>`) the stack exported last (its `caCertHash` output);
   * undefined for a stack that never completed an update. With it, no node may initialize: the
   * cluster exists, and a node that finds no member answering refuses instead of starting a
   * second, empty one; a join checks the cluster's CA against it.
   */
  deployedCaCertHash?: string;
  /** Setups wait for its service and targets: the endpoint must route before kubeadm uses it. */
  api: ApiLoadBalancer;
  reservedIp: ReservedIp;
  /** Secret: the key matching the servers' SSH key. */
  sshPrivateKey: pulumi.Input<string>;
  /** Secret: Hetzner token for the reserved-IP companion; unset when failover is off. */
  hcloudToken?: pulumi.Input<string>;
  /** With restoreFrom set: where the backups are, for the restore seed of the first node. */
  restore?: RestoreSource;
}

/**
 * The backups a restore seed reads (scripts/ops/etcd-restore.sh seed, run where `pulumi up` runs):
 * the bucket and prefix the backup job writes, its credentials, and the job's signing key, whose
 * public half verifies every backup before anything reaches a node. The age identity is never
 * here: the seed reads BACKUP_AGE_IDENTITY_FILE from the environment of `pulumi up`.
 */
export interface RestoreSource {
  endpoint: string;
  bucket: string;
  prefix: string;
  region: string;
  /** Secrets. */
  accessKey: pulumi.Input<string>;
  secretKey: pulumi.Input<string>;
  signingKey: pulumi.Input<string>;
}

/** Where etcd-restore.sh is, relative to the project directory `pulumi up` runs in. */
export const restoreScript = "scripts/ops/etcd-restore.sh";

/**
 * The OpenSSH public key line of an unencrypted OpenSSH private key (PROTOCOL.key in
 * openssh-portable: "openssh-key-v1\0", ciphername, kdfname, kdfoptions, uint32 N, then N public
 * key blobs, each a string whose first field is the key type), as `ssh-keygen -y` prints it
 * without the comment; undefined when `privateKey` is not one.
 */
export function openSshPublicKey(privateKey: string): string | undefined {
  const begin = "-----BEGIN OPENSSH PRIVATE KEY-----";
  const end = "-----END OPENSSH PRIVATE KEY-----";
  const text = privateKey.trim();
  if (!text.startsWith(begin) || !text.endsWith(end)) return undefined;
  const data = Buffer.from(text.slice(begin.length, -end.length).replace(/\s+/g, ""), "base64");
  const magic = Buffer.from("openssh-key-v1\0", "latin1");
  if (!data.subarray(0, magic.length).equals(magic)) return undefined;
  let at = magic.length;
  const field = (): Buffer | undefined => {
    if (at + 4 > data.length) return undefined;
    const n = data.readUInt32BE(at);
    if (at + 4 + n > data.length) return undefined;
    at += 4 + n;
    return data.subarray(at - n, at);
  };
  // ciphername, kdfname, kdfoptions, then the number of keys.
  if (!field() || !field() || !field() || at + 4 > data.length || data.readUInt32BE(at) < 1) return undefined;
  at += 4;
  const blob = field();
  if (!blob || blob.length < 4) return undefined;
  const typeLength = blob.readUInt32BE(0);
  if (4 + typeLength > blob.length) return undefined;
  return `${blob.subarray(4, 4 + typeLength).toString("latin1")} ${blob.toString("base64")}`;
}

/**
 * How the rolling chains of node steps (kube-vip, upgrade, certificate renewal) order themselves,
 * and what waits for them. Each chain restarts static pods or kube-vip node after node. On a
 * running cluster a chain starts after the previous one's end (`rolling`): two never run on the
 * nodes at once. On a new cluster (`perNode` set) a later chain's step on a node waits for the
 * earlier chains' steps on that same node instead, so the chains follow each other node by node
 * and never touch one node at once. What only needs every node to be a member at the configured
 * version with final certificates (the admin kubeconfig, the certificate expiry, the worker
 * token) waits for `settled`.
 */
export interface NodeChains {
  /** Every node is a member running the configured version, its certificates final. */
  settled: pulumi.Resource;
  /** The end of the rolling chains so far: on a running cluster the next chain starts after it. */
  rolling: pulumi.Resource;
  /**
   * Only on a new cluster (the stack never exported a `caCertHash`): per node, in node order,
   * that node's last rolling step so far. Every node was set up by this update at the configured
   * version (cloud-init's pinned packages, checked by wait-node-prepared.sh before the setup), so
   * an upgrade has nothing to move there and its steps only check the gates.
   */
  perNode?: pulumi.Resource[];
}

/** Where the rendered kubeadm files go on a node. */
const kubeadmFiles = {
  init: "/etc/kubernetes/kubeadm/init.yaml",
  joinTemplate: "/etc/kubernetes/kubeadm/join.yaml",
  etcdPatch: `${kubeadmPaths.patchesDirectory}/${kubeadmPaths.etcdPatchFile}`,
} as const;

/** The kubeadm input for one node; addresses that exist only once the load balancer does are Outputs. */
export function kubeadmInput(
  cfg: KubeadmSettings,
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
function endpointArgs(cfg: EndpointSettings): string[] {
  return cfg.apiDnsName ? ["--endpoint-host", cfg.apiDnsName, "--endpoint-ip", cfg.loadBalancer.privateIp] : [];
}

/** The marker a setup writes as its last step (scripts/node/lib.sh MEMBER_MARKER). */
export const memberMarker = "/var/lib/kubernetes-node/member";

/** A member's update when the node has no record of its setup: the marker says it is one. */
function memberMarkerCheck(node: ControlPlaneNode): string {
  const missing = `${node.name}: no ${memberMarker}, so this node is no member: replace its server (docs/runbooks/member-setup-failed.md)`;
  return `test -s ${memberMarker} || { echo ${shellQuote(missing)} >&2; exit 1; }`;
}

/** etcd's peer port: a member's identity in `etcdctl member list` is https://<private IP>:2380. */
const etcdPeerPort = 2380;

/**
 * The setup command of one node: wait-node-prepared.sh first (cloud-init's node preparation done,
 * the packages at the configured version; SSH answers long before cloud-init is done), then
 * kubeadm-member.sh with both kubeadm files, the other nodes' private IPs to probe and mint join
 * credentials on, and the endpoint's /readyz. The wait reads nothing from stdin (</dev/null), so
 * the key on stdin reaches kubeadm-member.sh whole.
 */
function memberCommand(
  cfg: BootstrapSettings,
  node: ControlPlaneNode,
  nodes: ControlPlaneNode[],
  deployedCaCertHash: string | undefined,
): string {
  const peers = nodes.filter((n) => n !== node).map((n) => n.spec.privateIp);
  const prepared = nodeCommand("wait-node-prepared.sh", [
    "--package-version",
    kubernetesPackageVersion(cfg.kubernetesVersion),
  ]);
  const member = nodeCommand("kubeadm-member.sh", [
    "--node-name",
    node.name,
    "--init-config",
    kubeadmFiles.init,
    "--join-config-template",
    kubeadmFiles.joinTemplate,
    // Empty for a cluster of one node: the script requires the flag, so a lost list cannot pass.
    "--peers",
    peers.join(","),
    ...(deployedCaCertHash ? ["--cluster-ca", deployedCaCertHash] : []),
    ...(cfg.restoreFrom ? ["--restore-from", cfg.restoreFrom] : []),
    ...endpointArgs(cfg),
    "--endpoint-url",
    `https://${cfg.loadBalancer.privateIp}:${apiServerPort}/readyz`,
  ]);
  return `${prepared} </dev/null && ${member}`;
}

export class ClusterBootstrap extends pulumi.ComponentResource {
  /** Per node, in node order: the command that makes it a member (kubeadm-member.sh). */
  readonly members: command.remote.Command[];
  /** The last membership record (with one node, its setup): every member is checked after it. */
  readonly complete: pulumi.Resource;
  /**
   * Per node, what makes the reserved IP work there: the companion when failover is on, else
   * the kube-vip manifest. Whatever reaches the API through the reserved IP waits for them.
   */
  readonly reservedIpHolders: pulumi.Resource[];
  /**
   * The node chains after the bootstrap: `rolling` is the last node's kube-vip (and companion),
   * the end of the kube-vip chain. The upgrade and certificate chains restart kube-vip too (it
   * holds admin.conf), so they start after it: two chains moving the same manifest on one node at
   * once would fight over it. `settled` is the last node's setup: every node is a member.
   */
  readonly kubeVipComplete: NodeChains;

  constructor(name: string, args: BootstrapArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hcloud-control-plane:index:ClusterBootstrap", name, {}, opts);
    const lb = args.api.loadBalancer;
    const addresses = pulumi
      .all([lb.ipv4, lb.ipv6, args.reservedIp.address])
      .apply(([lbIpv4, lbIpv6, reservedIp]) =>
        args.loadBalancer.publicInterface ? { lbIpv4, lbIpv6, reservedIp } : { reservedIp },
      );
    const scriptsRevision = scriptsHash();

    const delivered = args.nodes.map((node) => this.deliver(name, args, node, addresses, scriptsRevision));

    // Members: one setup command per node, strictly one after another. Each decides at run time
    // whether it initializes the cluster or joins it (kubeadm-member.sh).
    //
    // Membership records run on another running member, so a node that is dead can still be
    // removed. The create checks that the node is a voting etcd member; the delete (the node is
    // replaced or removed from the stack) drains it and removes its etcd member, refusing when
    // another member is unhealthy. Chained, so two members never leave at once.
    //
    // kube-vip comes after the setups: the load balancer is the endpoint, so kube-vip is not
    // needed to bootstrap, and with admin.conf in place it avoids kubeadm's super-admin.conf trap.
    // Its manifest is staged outside the kubelet's manifest directory and installed by
    // install-kube-vip.sh one node after another, each behind the health gates and a renewed
    // kube-vip Lease, so a changed manifest never restarts kube-vip on every node at once.
    //
    // On a running cluster every node's whole chain comes before the next node's: setup,
    // kube-vip, companion. Nodes added together (3 -> 5) are brought up one after another, each
    // complete before the next one joins, and deletes (run in reverse) take one node's chain down
    // before the previous node's. On a new cluster, where nothing reaches the API through the
    // reserved IP before every holder is in place (index.ts), the setups run first, then kube-vip
    // after the last setup; the next node's kube-vip does not wait for this node's companion, and
    // companions still follow each other. Either way the records come after the last setup: each
    // runs on another member, which must be set up (a replaced cp-2 holds cp-1's record), and
    // they only check, so they may run beside kube-vip.
    const newCluster = args.deployedCaCertHash === undefined;
    const manifest = args.reservedIp.address.apply((address) => renderKubeVipManifest({ address }));
    const members: command.remote.Command[] = [];
    const holders: pulumi.Resource[] = [];
    let previousHolder: pulumi.Resource | undefined;
    for (const [i, node] of args.nodes.entries()) {
      // Restore into new servers: the first node is seeded from the backup before its setup,
      // which then initializes the cluster from it when no member answers (and the seed does
      // nothing when one does).
      const seed = i === 0 && args.restore ? [this.seed(name, args, args.restore, node, delivered[i])] : [];
      const member = this.member(name, args, node, [
        ...delivered[i],
        ...seed,
        ...(newCluster ? members.slice(-1) : previousHolder ? [previousHolder] : []),
      ]);
      members.push(member);
      if (newCluster) continue;
      const after = previousHolder ? [previousHolder] : [];
      previousHolder = this.holder(name, args, node, manifest, scriptsRevision, {
        kubeVipAfter: [member, ...after],
        companionAfter: after,
      }).holder;
      holders.push(previousHolder);
    }
    const lastMember = members[members.length - 1];
    if (!lastMember) throw new Error("the bootstrap needs at least one node");
    let previousRecord: pulumi.Resource = lastMember;
    if (args.nodes.length > 1) {
      // One record after another: two members never leave at once.
      for (const node of args.nodes) previousRecord = this.membershipRecord(name, args, node, [previousRecord]);
    }
    if (newCluster) {
      let previousKubeVip: pulumi.Resource = lastMember;
      for (const node of args.nodes) {
        const { kubeVip, holder } = this.holder(name, args, node, manifest, scriptsRevision, {
          kubeVipAfter: [lastMember, previousKubeVip],
          companionAfter: [previousHolder ?? lastMember],
        });
        previousKubeVip = kubeVip;
        previousHolder = holder;
        holders.push(holder);
      }
    }
    this.members = members;
    this.complete = previousRecord;
    this.reservedIpHolders = holders;
    if (!previousHolder) throw new Error("the bootstrap needs at least one node");
    this.kubeVipComplete = {
      // Every node is a member once the last setup is done: each setup ends with the /readyz and
      // etcd health gates. The membership records and kube-vip only check or add to that.
      settled: lastMember,
      rolling: previousHolder,
      perNode: newCluster ? this.reservedIpHolders : undefined,
    };
    this.registerOutputs({});
  }

  /** The setup of one node (kubeadm-member.sh), after `after`, its own files and the load balancer. */
  private member(
    name: string,
    args: BootstrapArgs,
    node: ControlPlaneNode,
    after: pulumi.Resource[],
  ): command.remote.Command {
    const memberName = `${name}-${node.spec.name}-member`;
    // Recorded per server. An update (a rotated key, more peers) finds the record and runs
    // nothing; on a node set up before records existed it finds the member marker instead and
    // records it. Its text names no peers, so more peers change nothing in it.
    const identity = pulumi.interpolate`member of server ${node.server.id}`;
    return new command.remote.Command(
      memberName,
      {
        connection: sshConnection(node, args.sshPrivateKey),
        create: recorded(memberName, memberCommand(args, node, args.nodes, args.deployedCaCertHash), identity).create,
        update: recorded(memberName, memberMarkerCheck(node), identity).update,
        // The stack's key, for this node to reach a member over the private network and mint
        // join credentials there for this attempt only: on stdin, never an argument.
        stdin: pulumi.secret(pulumi.output(args.sshPrivateKey).apply((key) => `${key.trimEnd()}\n`)),
        // Runs once per server: a new or replaced server (or a create that failed) runs it.
        triggers: [node.server.id],
        logging: "none",
      },
      {
        parent: this,
        // Before this project decided init or join at run time, the first node's command was
        // `<node>-init` and the others' `<node>-join`: the same resources, kept as they are.
        aliases: [{ name: `${name}-${node.spec.name}-init` }, { name: `${name}-${node.spec.name}-join` }],
        // The endpoint is the load balancer: it must forward 6443 before kubeadm uses it. Members
        // are serialized (`after` holds the previous node's setup, or on a running cluster its
        // whole chain): two setups never run at once, so no two nodes can both find nobody
        // answering and initialize (the second one probes the first), and etcd accepts one
        // learner at a time; each setup gates on /readyz and etcd health before the next starts.
        // Its own files (scripts, kubeadm files) are in `after` too.
        dependsOn: [...after, args.api.service, ...args.api.targets],
        additionalSecretOutputs: ["stdout", "stderr"],
        // A member is set up once per server: later edits of its arguments (more peers, the
        // recorded CA, the key on stdin) must not change the command a running member has. A new
        // or replaced server, or a failed create, runs the current command; any update (a
        // changed connection after a key rotation, more peers) runs `update`, which finds the
        // node's record of this server's setup and runs nothing.
        ignoreChanges: ["create", "stdin"],
        deleteBeforeReplace: true,
      },
    );
  }

  /**
   * The restore seed of the first node (scripts/ops/etcd-restore.sh seed), run where `pulumi up`
   * runs, after the node's preparation and its files: it probes on the node whether a member
   * answers (then it does nothing), else fetches and verifies the backup, and restores the
   * node's etcd data and shared PKI. Once per server, like the setup.
   */
  private seed(
    name: string,
    args: BootstrapArgs,
    source: RestoreSource,
    node: ControlPlaneNode,
    after: pulumi.Resource[],
  ): command.local.Command {
    const connection = sshConnection(node, args.sshPrivateKey);
    // The seed pulls the etcd image and runs etcdutl through containerd: cloud-init must be done.
    const prepared = new command.remote.Command(
      `${name}-${node.spec.name}-restore-prepared`,
      {
        connection,
        create: nodeCommand("wait-node-prepared.sh", [
          "--package-version",
          kubernetesPackageVersion(args.kubernetesVersion),
        ]),
        triggers: [node.server.id],
      },
      { parent: this, dependsOn: after, ignoreChanges: ["create"], deleteBeforeReplace: true },
    );
    const peers = args.nodes.filter((n) => n !== node).flatMap((n) => ["--peer", n.spec.privateIp]);
    const fixed = [
      "--peer-url",
      `https://${node.spec.privateIp}:${etcdPeerPort}`,
      "--endpoint-url",
      `https://${args.loadBalancer.privateIp}:${apiServerPort}/readyz`,
      ...peers,
      "--init-config",
      kubeadmFiles.init,
      ...(args.restoreFrom === "latest" ? [] : ["--key", args.restoreFrom]),
      "--ssh-key-stdin",
    ];
    const create = pulumi
      .output(node.server.ipv4Address)
      .apply((ip) =>
        ["bash", restoreScript, "seed", "--node", `${node.name}=${ip}`, ...fixed].map(shellQuote).join(" "),
      );
    return new command.local.Command(
      `${name}-${node.spec.name}-restore-seed`,
      {
        create,
        stdin: pulumi.secret(pulumi.output(args.sshPrivateKey).apply((key) => `${key.trimEnd()}\n`)),
        environment: {
          S3_ENDPOINT: source.endpoint,
          S3_BUCKET: source.bucket,
          S3_PREFIX: source.prefix,
          S3_REGION: source.region,
          AWS_ACCESS_KEY_ID: pulumi.secret(source.accessKey),
          AWS_SECRET_ACCESS_KEY: pulumi.secret(source.secretKey),
          // A key that is not one reaches the script as text it refuses, naming the setting.
          BACKUP_SIGNING_PUBLIC_KEY: pulumi
            .output(source.signingKey)
            .apply((key) => openSshPublicKey(key) ?? "(backupSigningKey is not an OpenSSH private key)"),
        },
        // Once per server: a new or replaced first server (or a failed create) seeds again.
        triggers: [node.server.id],
      },
      {
        parent: this,
        dependsOn: [prepared],
        // Later edits (another key, rotated credentials) do not run it again on a member.
        ignoreChanges: ["create", "environment", "stdin"],
        deleteBeforeReplace: true,
      },
    );
  }

  /** One node's membership record, run on another member, after `after`. */
  private membershipRecord(
    name: string,
    args: BootstrapArgs,
    node: ControlPlaneNode,
    after: pulumi.Resource[],
  ): command.remote.Command {
    const peer = anyMemberConnection(args.nodes, args.sshPrivateKey, node);
    const membership = (action: "check" | "remove") =>
      peer.name.apply((peerNode) =>
        nodeCommand("membership.sh", [
          action,
          "--node-name",
          node.name,
          "--peer-url",
          `https://${node.spec.privateIp}:${etcdPeerPort}`,
          "--this-node",
          peerNode,
        ]),
      );
    return new command.remote.Command(
      `${name}-${node.spec.name}-membership`,
      {
        connection: peer.connection,
        create: membership("check"),
        delete: membership("remove"),
        // A replaced server is a new member: the old one is removed first (deleteBeforeReplace).
        triggers: [node.server.id],
      },
      { parent: this, dependsOn: after, deleteBeforeReplace: true },
    );
  }

  /**
   * One node's kube-vip (staged manifest, then install-kube-vip.sh after `kubeVipAfter`) and, with
   * failover on, its companion after the kube-vip and `companionAfter`: the reserved IP's holder.
   */
  private holder(
    name: string,
    args: BootstrapArgs,
    node: ControlPlaneNode,
    manifest: pulumi.Output<string>,
    scriptsRevision: string,
    order: { kubeVipAfter: pulumi.Resource[]; companionAfter: pulumi.Resource[] },
  ): { kubeVip: command.remote.Command; holder: command.remote.Command } {
    const connection = sshConnection(node, args.sshPrivateKey);
    // Outside /etc/kubernetes/manifests, so copying it changes nothing that runs: it waits for
    // nothing but its server.
    const staged = copyFile(`${name}-${node.spec.name}-kube-vip`, connection, manifest, kubeVipStagedPath, node, {
      parent: this,
    });
    const kubeVipName = `${name}-${node.spec.name}-kube-vip-install`;
    const kubeVip = new command.remote.Command(
      kubeVipName,
      {
        connection,
        // The manifest's hash makes a changed manifest re-run the (idempotent) install as an
        // update. No scripts revision: with the same manifest the script changes nothing. A
        // changed connection alone finds the node's record and runs nothing.
        ...recorded(
          kubeVipName,
          manifest.apply(
            (text) =>
              `${nodeCommand("install-kube-vip.sh", ["--manifest", kubeVipStagedPath, "--node-name", node.name, "--lease", kubeVipLeaseName])} # manifest ${sha256(text).slice(0, 16)}`,
          ),
        ),
      },
      { parent: this, dependsOn: [staged, ...order.kubeVipAfter] },
    );
    const holder = args.reservedIpFailover
      ? this.failover(name, args, node, connection, [kubeVip, ...order.companionAfter], scriptsRevision)
      : kubeVip;
    return { kubeVip, holder };
  }

  /** The reserved-IP companion on one node, installed once kube-vip runs there (`after`). */
  private failover(
    name: string,
    args: BootstrapArgs,
    node: ControlPlaneNode,
    connection: command.types.input.remote.ConnectionArgs,
    after: pulumi.Resource[],
    scriptsRevision: string,
  ): command.remote.Command {
    if (!args.hcloudToken) throw new Error("reservedIpFailover is on but no Hetzner token was given");
    const resource = `${name}-${node.spec.name}-reserved-ip-failover`;
    const work = pulumi
      .all([args.reservedIp.floatingIp.id, args.reservedIp.address])
      .apply(
        ([id, address]) =>
          `${nodeCommand("install-reserved-ip-failover.sh", ["--floating-ip-id", id, "--address", address])} ${revisionComment(scriptsRevision)}`,
      );
    // The token is part of what the node must hold: a new token runs the install again, a changed
    // connection alone does not. The command holds one digest over the text and the token's
    // sha256, never the token, so it stays plain.
    const identity = pulumi.unsecret(
      pulumi.all([work, args.hcloudToken]).apply(([w, token]) => `${w}\0token ${recordDigest(token)}`),
    );
    return new command.remote.Command(
      resource,
      {
        connection,
        ...recorded(resource, work, identity),
        // The token reaches the node on stdin and is written to a root-only file there.
        stdin: pulumi.secret(pulumi.output(args.hcloudToken).apply((token) => `${token}\n`)),
        delete: nodeCommand("install-reserved-ip-failover.sh", ["--disable"]),
        logging: "none",
      },
      // After this node's kube-vip, and the previous node's companion: one node at a time.
      { parent: this, dependsOn: after, additionalSecretOutputs: ["stdout", "stderr"] },
    );
  }

  /**
   * Per node: the scripts directory, the scripts and the rendered kubeadm files, all at once
   * (each waits only for the server): the setup waits for them all. CopyToRemote creates the
   * directories it writes into (pulumi-command 1.2: sftp MkdirAll of the destination's parents,
   * provider/pkg/provider/remote/copyController.go), so no copy waits for another step; the
   * wait for cloud-init's preparation is the first part of the setup command ({@link memberCommand}).
   */
  private deliver(
    name: string,
    args: BootstrapArgs,
    node: ControlPlaneNode,
    addresses: pulumi.Output<{ lbIpv4?: string; lbIpv6?: string; reservedIp: string }>,
    scriptsRevision: string,
  ): pulumi.Resource[] {
    const connection = sshConnection(node, args.sshPrivateKey);
    const parent = { parent: this };
    const prefix = `${name}-${node.spec.name}`;
    // Root-only, whichever of this and the scripts' copy creates the directory first: install -d
    // sets the mode of an existing directory too, and the copy's MkdirAll accepts an existing one.
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
      parent,
    );
    const input = addresses.apply((a) => kubeadmInput(args, node.spec, a));
    // Both files on every node: which one kubeadm reads is decided on the node at run time.
    const initConfig = copyFile(
      `${prefix}-kubeadm-init`,
      connection,
      input.apply(renderInitConfiguration),
      kubeadmFiles.init,
      node,
      parent,
    );
    const joinTemplate = copyFile(
      `${prefix}-kubeadm-join`,
      connection,
      input.apply(renderJoinConfiguration),
      kubeadmFiles.joinTemplate,
      node,
      parent,
    );
    const etcdPatch = copyFile(
      `${prefix}-etcd-patch`,
      connection,
      input.apply(renderEtcdPatch),
      kubeadmFiles.etcdPatch,
      node,
      parent,
    );
    return [libDir, scripts, initConfig, joinTemplate, etcdPatch];
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
