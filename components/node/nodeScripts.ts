/**
 * The node-side scripts (`scripts/node/`) as the bootstrap commands call them: where they live
 * on a node, how a command line is quoted, and a hash of their content for triggers.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";

/** Local directory copied to every node. */
export const localScriptsDir = path.join(__dirname, "..", "..", "scripts", "node");

/**
 * Where the copy lands. CopyToRemote puts a directory *into* the remote directory (creating it
 * when missing, pulumi-command 1.2), so the scripts end up in `nodeLibDir/node/`; the bootstrap's
 * lib-dir command makes `nodeLibDir` root-only, whichever of the two runs first.
 */
export const nodeLibDir = "/usr/local/lib/hcloud-control-plane";
const nodeScriptsDir = `${nodeLibDir}/node`;

/** Single-quotes a word for sh, unless it is plainly safe. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'"'"'`)}'`;
}

/** `bash <nodeScriptsDir>/<script> <args...>`, every argument quoted. */
export function nodeCommand(script: string, args: string[] = []): string {
  if (!fs.existsSync(path.join(localScriptsDir, script))) throw new Error(`scripts/node/${script} does not exist`);
  return ["bash", `${nodeScriptsDir}/${script}`, ...args].map(shellQuote).join(" ");
}

/** sha256 over the names and contents of the given files (default: every node script). */
export function scriptsHash(files?: string[]): string {
  const names = files ?? fs.readdirSync(localScriptsDir).sort();
  const hash = crypto.createHash("sha256");
  for (const name of names) {
    hash.update(`${name}\0`);
    hash.update(fs.readFileSync(path.join(localScriptsDir, name)));
    hash.update("\0");
  }
  return hash.digest("hex");
}

/** Where a node records the commands it completed: one root-only file per command, its digest inside. */
export const commandRecordsDir = "/var/lib/kubernetes-node/commands";

/** The digest a record holds: sha256 of what identifies the command's work. */
export function recordDigest(identity: string): string {
  return crypto.createHash("sha256").update(identity).digest("hex");
}

/**
 * The `create` and `update` of a node command that changes the node, so that a changed
 * connection alone (a rotated SSH key, docs/runbooks/ssh-key-rotation.md) or a changed stdin
 * carrying the same secret runs none of its work again. @pulumi/command runs `update` (when set)
 * instead of `create` whenever any input changed (pulumi/pulumi-command v1.2.1
 * provider/pkg/provider/remote/commandController.go Update), and the connection is an input.
 *
 * `create` runs the work and, once it succeeded, writes the digest of `identity` (default: the
 * work's own text) to `commandRecordsDir/<resource>` on the node. `update` runs the work (and
 * records) only when that file holds another digest: new work text (a new manifest, version,
 * stamp) runs; the same text on a node that already did it only says so. The record is per
 * node, so a command that moves to another member runs there. Work that ends in a `# comment`
 * is fine: it stands on its own line.
 */
export function recordedWork(
  resource: string,
  work: string,
  identity: string = work,
): { create: string; update: string } {
  if (!/^[a-z0-9-]+$/.test(resource))
    throw new Error(`recordedWork: resource name ${JSON.stringify(resource)} is not a file name`);
  const digest = recordDigest(identity);
  const file = `${commandRecordsDir}/${resource}`;
  const record = `install -d -m 0700 ${commandRecordsDir} && printf '%s\\n' ${digest} > ${file}`;
  const create = `{\n${work}\n} && ${record}`;
  const update =
    `if [ "$(cat ${file} 2>/dev/null)" = ${digest} ]; then\n` +
    `echo '${resource}: recorded done on this node (${digest.slice(0, 12)}): nothing to run'\n` +
    `else\n${create}\nfi`;
  return { create, update };
}

/** The digest a recorded command's text writes once its work succeeded; undefined when it writes none. */
export function recordedDigestOf(text: string): string | undefined {
  return /\} && install -d -m 0700 \S+ && printf '%s\\n' ([0-9a-f]{64}) > /.exec(text)?.[1];
}

/** The digest an update looks for before it runs anything; undefined when the text does not start by looking. */
export function recordCheckOf(text: string): string | undefined {
  return /^if \[ "\$\(cat \S+ 2>\/dev\/null\)" = ([0-9a-f]{64}) \]; then\n/.exec(text)?.[1];
}

/** {@link recordedWork} for a command text and identity that may be Outputs. */
export function recorded(
  resource: string,
  work: pulumi.Input<string>,
  identity?: pulumi.Input<string>,
): { create: pulumi.Output<string>; update: pulumi.Output<string> } {
  const both = pulumi.all([work, identity ?? work]).apply(([w, id]) => recordedWork(resource, w, id));
  return { create: both.apply((b) => b.create), update: both.apply((b) => b.update) };
}

/** The work inside a recorded command's `create` text; any other text as it is. */
export function workOf(text: string): string {
  return /^\{\n([\s\S]*)\n\} && install -d -m 0700 /.exec(text)?.[1] ?? text;
}
