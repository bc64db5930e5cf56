/**
 * The project's one bash helper library, scripts/node/lib.sh, as the tests read it: its path,
 * the functions it defines (as bash itself prints them, comments gone), and which of them a
 * script reaches.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

export const repoRoot = path.join(__dirname, "..", "..");
export const scriptsRoot = path.join(repoRoot, "scripts");
/** The one source file of the library. */
export const libraryPath = path.join(scriptsRoot, "node", "lib.sh");

/** The names of the functions `text` (bash) defines with `name() {` (at any indentation). */
export function definedFunctions(text: string): string[] {
  return [...text.matchAll(/^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(\)\s*\{/gm)].map((m) => m[1]);
}

/** Every function lib.sh defines and its body as `declare -f` prints it (no comments). */
export function libraryFunctions(): Map<string, string> {
  const result = spawnSync("/bin/bash", ["-c", 'source "$1" && declare -f', "bash", libraryPath], {
    encoding: "utf8",
    env: { PATH: "/usr/bin:/bin" },
  });
  if (result.status !== 0) throw new Error(`sourcing lib.sh failed: ${result.stderr}`);
  const functions = new Map<string, string>();
  for (const chunk of result.stdout.split(/^(?=[A-Za-z_][A-Za-z0-9_]* \(\) $)/m)) {
    const name = /^([A-Za-z_][A-Za-z0-9_]*) \(\) $/m.exec(chunk);
    if (name) functions.set(name[1], chunk);
  }
  return functions;
}

/** The code of `text`: its lines without comment lines. */
const code = (text: string): string =>
  text
    .split("\n")
    .filter((line) => !line.trim().startsWith("#"))
    .join("\n");

/**
 * The library functions a script reaches: those its code names, then those their bodies name,
 * and so on. Name → body as `declare -f` prints it.
 */
export function libraryFunctionsUsedBy(scriptText: string): Map<string, string> {
  const library = libraryFunctions();
  const reached = new Map<string, string>();
  const names = (text: string) =>
    [...library.keys()].filter((name) => new RegExp(`(^|[^A-Za-z0-9_])${name}([^A-Za-z0-9_]|$)`, "m").test(text));
  const queue = names(code(scriptText));
  while (queue.length > 0) {
    const name = queue.pop()!;
    if (reached.has(name)) continue;
    const body = library.get(name)!;
    reached.set(name, body);
    queue.push(...names(body.slice(body.indexOf("\n"))));
  }
  return reached;
}

/** Every file under `dir` (recursively), as paths relative to `dir`. */
export function filesUnder(dir: string): string[] {
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)))
    .sort();
}
