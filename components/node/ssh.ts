/**
 * How Pulumi reaches the control-plane nodes: SSH as root to a server's public IPv4 with the
 * stack's key (@pulumi/command remote connections), to one node or to whichever member runs.
 */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { ControlPlaneNode, firstRunning } from "../hetzner/controlPlane";

/** SSH as root to the server's public IPv4 with the stack's key. */
export function sshConnection(
  node: ControlPlaneNode,
  privateKey: pulumi.Input<string>,
): command.types.input.remote.ConnectionArgs {
  return connectionTo(node.server.ipv4Address, privateKey);
}

/**
 * SSH to a member chosen when the program runs: the first running node in node order, `except`
 * aside ({@link firstRunning}). `name` is that node's name, for the command line.
 */
export function anyMemberConnection(
  nodes: ControlPlaneNode[],
  privateKey: pulumi.Input<string>,
  except?: ControlPlaneNode,
): { connection: command.types.input.remote.ConnectionArgs; name: pulumi.Output<string> } {
  const chosen = firstRunning(nodes, except);
  return {
    connection: connectionTo(
      chosen.apply((k) => nodes[k].server.ipv4Address),
      privateKey,
    ),
    name: chosen.apply((k) => nodes[k].name),
  };
}

function connectionTo(
  host: pulumi.Input<string>,
  privateKey: pulumi.Input<string>,
): command.types.input.remote.ConnectionArgs {
  return {
    host,
    user: "root",
    privateKey,
    // A new server answers SSH a minute or two after it is created.
    dialErrorLimit: 40,
    perDialTimeout: 15,
  };
}
