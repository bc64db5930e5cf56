/**
 * The private network between control-plane node sandboxes (tests/support/nodeSandbox.ts): a
 * fake `curl` (fake-peer-curl.sh) and a fake `ssh` (fake-peer-ssh.sh) that answer from one
 * directory, $FAKE_NET, shared by the sandboxes of a test. Each fake's header cites the curl(1)
 * and ssh(1) behaviour it models.
 *
 * Usage:
 *
 *   import { fakePeerCurl, fakePeerSsh, makeNetwork, serve, addHost } from "./support/peerNetwork";
 *
 *   const net = makeNetwork(tmp(), "join");                // the directory; FAKE_NET in each sandbox's env
 *   const sandbox = makeSandbox(tmp(), "cp-1", { fakes: { curl: fakePeerCurl, ssh: fakePeerSsh, ... },
 *     realTools: [...peerNetworkTools], env: { FAKE_NET: net } });
 *   addHost(net, "10.20.1.11", sandbox, keyText);           // ssh root@10.20.1.11 runs in that sandbox
 *   serve(net, "10.20.1.11", 6443, "200");                  // its /readyz answers 200 "ok"
 *
 * The directory:
 *   <ip>:<port>                what answers there: for 6443 an HTTP status (200 answers "ok",
 *                              others the failing /readyz body), or several separated by spaces,
 *                              one per call, the last one staying ("000 200": nothing, then
 *                              ready); for 2379 "open" (etcd accepts the TCP connection).
 *                              No file: nothing answers (connection refused).
 *   hosts/<ip>/env             the environment of the sandbox at <ip> (NAME='value' lines); the
 *                              node scripts are found under its ROOT
 *   hosts/<ip>/authorized_key  the private key root@<ip> accepts
 *   down/<ip>                  the host is unreachable (no TCP connection at all)
 *   ssh-commands               "<ip> <command>" of every remote command that ran
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { at, nodeScriptsDir, Sandbox } from "./nodeSandbox";

/** The body of the fake `curl` (nodeSandbox's prelude is prepended). */
export const fakePeerCurl = fs.readFileSync(path.join(__dirname, "fake-peer-curl.sh"), "utf8");
/** The body of the fake `ssh` (nodeSandbox's prelude is prepended). */
export const fakePeerSsh = fs.readFileSync(path.join(__dirname, "fake-peer-ssh.sh"), "utf8");
/** Real tools the two fakes run besides bash. */
export const peerNetworkTools = ["cmp", "grep", "stat"];

/** Where the bootstrap copies scripts/node/ on every node (components/node/nodeScripts.ts). */
export const scriptsOnNode = "/usr/local/lib/hcloud-control-plane/node";

/** A new, empty network directory under `tmpDir`. */
export function makeNetwork(tmpDir: string, name: string): string {
  const net = fs.mkdtempSync(path.join(tmpDir, `net-${name}-`));
  fs.mkdirSync(path.join(net, "hosts"));
  fs.mkdirSync(path.join(net, "down"));
  return net;
}

/** Makes `what` answer at `ip:port` (see the directory above). */
export function serve(net: string, ip: string, port: number, what: string): void {
  fs.writeFileSync(path.join(net, `${ip}:${port}`), `${what}\n`);
}

/** Stops anything answering at `ip:port`. */
export function unserve(net: string, ip: string, port: number): void {
  fs.rmSync(path.join(net, `${ip}:${port}`), { force: true });
}

const shellQuote = (value: string): string => `'${value.split("'").join(`'\\''`)}'`;

/**
 * Makes `sandbox` the host at `ip`: ssh root@ip runs commands in its environment, accepting the
 * private key `authorizedKey`; the node scripts are linked at scriptsOnNode under its root.
 */
export function addHost(net: string, ip: string, sandbox: Sandbox, authorizedKey: string): void {
  fs.mkdirSync(path.dirname(at(sandbox, scriptsOnNode)), { recursive: true });
  fs.symlinkSync(nodeScriptsDir, at(sandbox, scriptsOnNode));
  const host = path.join(net, "hosts", ip);
  fs.mkdirSync(host, { recursive: true });
  const env = Object.entries(sandbox.env).map(([name, value]) => `${name}=${shellQuote(value)}\n`);
  fs.writeFileSync(path.join(host, "env"), env.join(""));
  fs.writeFileSync(path.join(host, "authorized_key"), authorizedKey);
}

/** Adds NAME=value to the environment of the host at `ip` (e.g. a FAKE_FAIL there). */
export function addHostEnv(net: string, ip: string, name: string, value: string): void {
  fs.appendFileSync(path.join(net, "hosts", ip, "env"), `${name}=${shellQuote(value)}\n`);
}

/** The remote commands that ran, as "<ip> <command>". */
export function sshCommands(net: string): string[] {
  const file = path.join(net, "ssh-commands");
  return fs.existsSync(file) ? fs.readFileSync(file, "utf8").split("\n").filter(Boolean) : [];
}
