/**
 * The bootstrap token worker nodes join with, managed on the first control-plane node and
 * exported (secret) as the stack output `workerJoin` with the endpoint and the CA hash.
 *
 * The token's public id is derived from the cluster name, the rotation setting and the TTL, so
 * changing either setting is a new id: Pulumi creates the new token, then the old resource's
 * delete removes the old one. The secret half is generated on the node by kubeadm.
 */
import * as crypto from "node:crypto";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { sshConnection } from "./bootstrap";
import { ControlPlaneNode } from "./controlPlane";
import { joinCredentialPatterns } from "./kubeadm";
import { nodeCommand } from "./nodeScripts";

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

export interface WorkerJoinTokenArgs {
  clusterName: string;
  rotation: string;
  ttlHours: number;
  /** The node the token is managed on (cp-1). */
  node: ControlPlaneNode;
  /** What must be done first: the cluster up and cp-1 not in the middle of an upgrade. */
  after: pulumi.Resource;
  sshPrivateKey: pulumi.Input<string>;
}

export class WorkerJoinToken extends pulumi.ComponentResource {
  /** Secret. */
  readonly token: pulumi.Output<{ token: string; expires: string }>;

  constructor(name: string, args: WorkerJoinTokenArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hcloud-control-plane:index:WorkerJoinToken", name, {}, opts);
    const id = workerTokenId(args.clusterName, args.rotation, args.ttlHours);
    const cmd = new command.remote.Command(
      `${name}-token`,
      {
        connection: sshConnection(args.node, args.sshPrivateKey),
        create: nodeCommand("worker-join-token.sh", ["create", "--id", id, "--ttl-hours", String(args.ttlHours)]),
        delete: nodeCommand("worker-join-token.sh", ["delete", "--id", id]),
        // A new id (rotation, TTL) or a new first node mints a new token.
        triggers: [args.node.server.id, id],
        logging: "none",
      },
      { parent: this, dependsOn: [args.after], additionalSecretOutputs: ["stdout", "stderr"] },
    );
    this.token = pulumi.secret(cmd.stdout.apply(parseWorkerTokenOutput));
    this.registerOutputs({});
  }
}
