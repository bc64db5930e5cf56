/**
 * The bootstrap token worker nodes join with, managed on a running control-plane node and
 * exported (secret) as the stack output `workerJoin` with the endpoint and the CA hash.
 *
 * The token's public id is derived from the cluster name, the rotation setting and the TTL, so
 * changing either setting is a new id: the old resource's delete removes the old token, then the
 * new one is created (delete first, see below). The secret half is generated on the node by kubeadm.
 *
 * The token's expiry (a date, and the public id it belongs to) leaves the secret as its own
 * plain Output: the stack exports it as `workerJoinExpiry` and the monitoring alerts on it
 * (WorkerJoinTokenExpiring), since nothing renews the token before a rotation does.
 */
import * as crypto from "node:crypto";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { anyMemberConnection } from "../node/ssh";
import { ControlPlaneNode } from "../hetzner/controlPlane";
import { joinCredentialPatterns } from "../node/kubeadm";
import type { WorkerTokenExpirySeries } from "../addons/monitoring/rules";
import { nodeCommand } from "../node/nodeScripts";
import type { NodeChains } from "./bootstrap";

/** The 6-character public id of the worker token for these settings. */
export function workerTokenId(clusterName: string, rotation: string, ttlHours: number): string {
  const digest = crypto.createHash("sha256").update(`${clusterName}\0worker-join\0${rotation}\0${ttlHours}`).digest();
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  return Array.from(digest.subarray(0, 6), (b) => alphabet[b % alphabet.length]).join("");
}

/** Reads scripts/node/worker-join-token.sh's two lines; throws (naming no value) when malformed. */
export function parseWorkerTokenOutput(stdout: string): { token: string; expires: string } {
  const values = Object.fromEntries(
    stdout
      .split("\n")
      .filter((l) => l.includes("="))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
  const token = values.WORKER_JOIN_TOKEN ?? "";
  const expires = values.WORKER_JOIN_EXPIRES ?? "";
  if (!joinCredentialPatterns.token.test(token)) throw new Error("worker-join-token.sh printed no valid token");
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(expires)) throw new Error("worker-join-token.sh printed no expiry");
  return { token, expires };
}

/**
 * The stack output `workerJoinExpiry`: plain. The id is the token's public half: Kubernetes
 * transmits it in the clear and names the token's Secret `bootstrap-token-<id>` after it
 * (k8s.io/cluster-bootstrap token/api/types.go, BootstrapTokenIDKey); the secret half is not here.
 */
export interface WorkerJoinExpiry {
  /** The token's public id, [a-z0-9]{6}. */
  tokenId: string;
  /** When the token stops working (ISO 8601, UTC), as worker-join-token.sh reported it. */
  expires: string;
}

/** The recording-rule series of WorkerJoinTokenExpiring (components/addons/monitoring/rules.ts). */
export function workerTokenSeries(expiry: WorkerJoinExpiry): WorkerTokenExpirySeries[] {
  return [{ tokenId: expiry.tokenId, expiresSeconds: Math.floor(Date.parse(expiry.expires) / 1000) }];
}

export interface WorkerJoinTokenArgs {
  clusterName: string;
  rotation: string;
  ttlHours: number;
  /** The control-plane nodes: the token is managed on the first running one. */
  nodes: ControlPlaneNode[];
  /**
   * The upgrade's chains: the token waits for `settled`, the cluster up and no node in the middle
   * of an upgrade (on a new cluster the upgrade steps only check gates).
   */
  after: NodeChains;
  sshPrivateKey: pulumi.Input<string>;
}

export class WorkerJoinToken extends pulumi.ComponentResource {
  /** Secret. */
  readonly token: pulumi.Output<{ token: string; expires: string }>;
  /** Plain: the public id and the expiry only; unknown until the command ran (a first preview). */
  readonly expiry: pulumi.Output<WorkerJoinExpiry>;

  constructor(name: string, args: WorkerJoinTokenArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hcloud-control-plane:index:WorkerJoinToken", name, {}, opts);
    const id = workerTokenId(args.clusterName, args.rotation, args.ttlHours);
    const cmd = new command.remote.Command(
      `${name}-token`,
      {
        // Any member can manage the token (it is a Secret in the cluster): the first running one.
        // When that changes (a stopped node), the update re-runs create there, which keeps the
        // token while it has more than an hour left (worker-join-token.sh): no rotation.
        connection: anyMemberConnection(args.nodes, args.sshPrivateKey).connection,
        create: nodeCommand("worker-join-token.sh", ["create", "--id", id, "--ttl-hours", String(args.ttlHours)]),
        delete: nodeCommand("worker-join-token.sh", ["delete", "--id", id]),
        // A new id (rotation, TTL) mints a new token.
        triggers: [id],
        logging: "none",
      },
      {
        parent: this,
        dependsOn: [args.after.settled],
        additionalSecretOutputs: ["stdout", "stderr"],
        // The old token goes first: a replacement with the same id (the trigger's shape changed
        // when the token stopped belonging to cp-1) would otherwise delete the token just made.
        deleteBeforeReplace: true,
      },
    );
    this.token = pulumi.secret(cmd.stdout.apply(parseWorkerTokenOutput));
    // The command's stdout is secret as a whole because it holds the token. This apply parses
    // it and returns only the date beside the id this program chose, so nothing of the token
    // is in the value; unsecret marks exactly that value plain, so the PrometheusRule and the
    // `workerJoinExpiry` output that carry it are not masked as secret (and never hold the token).
    this.expiry = pulumi.unsecret(
      cmd.stdout.apply((stdout): WorkerJoinExpiry => ({
        tokenId: id,
        expires: parseWorkerTokenOutput(stdout).expires,
      })),
    );
    this.registerOutputs({});
  }
}
