/**
 * The node-side scripts (`scripts/node/`) as the bootstrap commands call them: where they live
 * on a node, how a command line is quoted, and a hash of their content for triggers.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

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
