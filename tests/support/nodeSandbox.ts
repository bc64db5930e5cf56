/**
 * Runs the node scripts of scripts/node/ for real, with bash, under a temporary root, with fake
 * commands on PATH. Used by the tests of scripts/node/ (nodeScripts, certificates, upgrade, cloudInit,
 * reservedIpFailover); workflows.test.ts uses its call and script checks.
 *
 * Usage:
 *
 *   import { makeSandbox, runNodeScript, calls, resetCalls, expectStatus, expectScriptContract,
 *            useTempDir, at } from "./support/nodeSandbox";
 *
 *   const tmp = useTempDir("my-test-");            // registers beforeAll/afterAll; tmp() is the dir
 *   const fakes = {                                 // body of each fake command; `prelude` is added
 *     kubectl: 'case "$*" in *" get --raw /readyz") echo ok ;; *) exit 99 ;; esac',
 *   };
 *   const sandbox = makeSandbox(tmp(), "name", {
 *     fakes,
 *     realTools: ["bash", "cat", "chmod", "install", "mktemp", "mv", "rm", "sleep", "timeout"],
 *     toolPaths: { envsubst: "/usr/bin/envsubst" },  // optional: real tools at a fixed path
 *     pathAfter: ["/usr/bin", "/bin"],                // optional: searched after fakes and real tools
 *     env: { FAKE_X: "1" },                           // optional: added to the environment
 *     files: { "etc/kubernetes/admin.conf": "..." },  // optional: files under the root
 *   });
 *   const result = runNodeScript(sandbox, "my-script.sh", ["--node-name", "cp-1"], { env: { FAKE_FAIL: "x" } });
 *   expectStatus(result, 0);                     // shows stderr when the status differs
 *   expect(calls(sandbox)).toEqual(["kubectl --kubeconfig $ROOT/etc/kubernetes/admin.conf get --raw /readyz"]);
 *   // the same, and lib.sh's etcd gate:  readyzCall(conf), etcdHealthCall(conf, "cp-1")  (conf as logged)
 *   resetCalls(sandbox);
 *
 *   // The contract of every node script: starts with `#!/usr/bin/env bash`, `set -euo pipefail`,
 *   // no xtrace, --help exits 0 with empty stderr and names every word in `documented` and every
 *   // flag parse_args() parses (parsedFlags: its parse_flags specs and `--flag)` case patterns);
 *   // an unknown flag exits 2 naming it; no fake runs.
 *   expectScriptContract(sandbox, "my-script.sh", ["--node-name", "--timeout", "--root", "ROOT"]);
 *   expectStrictBash(text);                      // its first part, for any bash script
 *   expectShellcheckClean(["my-script.sh"]);     // run in scripts/node/; or pass another cwd
 *
 * The sandbox: `root` (the scripts' --root, also $ROOT in the environment), `fakeBin` (the fakes),
 * `capture` (a scratch directory for the fakes: $FAKE_CAPTURE), `log` (the call log: $FAKE_LOG),
 * `env` (the environment of every run; mutable). PATH holds only the fakes and the named real
 * tools (symlinked), then `pathAfter` if given, so without it an unexpected command is "command
 * not found". POLL_SECONDS is 0.05 and LC_ALL is C.
 *
 * Every fake starts with `prelude`: it appends "<command> <argv>" to $FAKE_LOG, and defines
 *   fails OP   true when OP is in $FAKE_FAIL (comma-separated): the fake should exit 1;
 *   hangs OP   true when OP is in $FAKE_HANG (comma-separated): the fake should never return;
 *   count OP   counts the runs of OP (in $FAKE_CAPTURE) and prints the new count.
 * A fake's body is bash inside a TypeScript template literal: escape `${` as `\${` and `\n` as `\\n`,
 * or use a plain string.
 * calls(sandbox) returns the call log with the root written as $ROOT.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { requireTool } from "./tools";

export const repoRoot = path.join(__dirname, "..", "..");
export const nodeScriptsDir = path.join(repoRoot, "scripts", "node");
export const shellcheckBinary = "/usr/bin/shellcheck";

/** The text of a script in scripts/node/. */
export const nodeScriptText = (name: string): string => fs.readFileSync(path.join(nodeScriptsDir, name), "utf8");

/** The first lines of every fake: argv recording to $FAKE_LOG, and the fails/hangs/count helpers. */
export const prelude = [
  "#!/usr/bin/env bash",
  'printf \'%s\\n\' "${0##*/}${*:+ $*}" >>"$FAKE_LOG"',
  'fails() { [[ ",${FAKE_FAIL:-}," == *",$1,"* ]]; }',
  'hangs() { [[ ",${FAKE_HANG:-}," == *",$1,"* ]]; }',
  // How often an operation ran, for fakes that succeed only after some attempts.
  'count() { local f="$FAKE_CAPTURE/count.$1" n=0; if [[ -f "$f" ]]; then n="$(<"$f")"; fi; echo $((n + 1)) >"$f"; echo $((n + 1)); }',
].join("\n");

/**
 * The arms of a fake kubectl's `case "$*" in` for the two gates lib.sh runs: `/readyz`
 * (apiserver_ready) and `etcdctl endpoint health --cluster` in the etcd pod
 * (etcd_cluster_healthy). `FAKE_FAIL`/`FAKE_HANG` naming readyz or etcd make them fail or hang;
 * `beforeReadyz` runs first in the readyz arm (e.g. to record what the gate saw). With
 * `readyAfter`, /readyz also fails until its $FAKE_READY_AFTER-th run (default 1: at once).
 */
export function kubectlGateArms(beforeReadyz = "", options: { readyAfter?: boolean } = {}): string {
  const notReady = options.readyAfter ? " || (($(count readyz) < ${FAKE_READY_AFTER:-1}))" : "";
  return [
    `  *" get --raw /readyz")`,
    ...(beforeReadyz ? [`    ${beforeReadyz}`] : []),
    `    if hangs readyz; then exec sleep 30; fi`,
    `    if fails readyz${notReady}; then`,
    `      echo "Error from server (InternalError): [-]etcd failed: reason withheld" >&2; exit 1`,
    `    fi`,
    `    echo ok`,
    `    ;;`,
    `  *" endpoint health --cluster")`,
    `    if hangs etcd; then exec sleep 30; fi`,
    `    if fails etcd; then echo "https://10.20.1.13:2379 is unhealthy: context deadline exceeded" >&2; exit 1; fi`,
    `    echo "https://127.0.0.1:2379 is healthy: successfully committed proposal: took = 2.1ms"`,
    `    ;;`,
  ].join("\n");
}

/**
 * A kubectl call as a fake's call log shows it: `kubectl --kubeconfig KUBECONFIG [FLAGS] ARGS`.
 * `kubeconfig` as logged (e.g. `$ROOT/etc/kubernetes/admin.conf`); `flags` follow it (e.g.
 * `--request-timeout=Ns`).
 */
export const kubectlCall = (kubeconfig: string, args: string, flags: string[] = []): string =>
  ["kubectl", "--kubeconfig", kubeconfig, ...flags, args].join(" ");

/** The TLS flags lib.sh gives etcdctl in the etcd pod (the healthcheck client certificate). */
export const etcdctlTls =
  "--cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/etcd/healthcheck-client.crt " +
  "--key /etc/kubernetes/pki/etcd/healthcheck-client.key";

/** apiserver_ready's gate call: `kubectl --kubeconfig KUBECONFIG get --raw /readyz`. */
export const readyzCall = (kubeconfig: string, flags: string[] = []): string =>
  kubectlCall(kubeconfig, "get --raw /readyz", flags);

/** `etcdctl --endpoints ENDPOINTS <TLS> COMMAND` run in the etcd pod of `node` through kubectl exec. */
export const etcdctlCall = (
  kubeconfig: string,
  node: string,
  endpoints: string,
  command: string,
  flags: string[] = [],
): string =>
  kubectlCall(
    kubeconfig,
    `-n kube-system exec etcd-${node} -- etcdctl --endpoints ${endpoints} ${etcdctlTls} ${command}`,
    flags,
  );

/** etcd_cluster_healthy's gate call: `endpoint health --cluster` through the local member of `node`. */
export const etcdHealthCall = (kubeconfig: string, node: string, flags: string[] = []): string =>
  etcdctlCall(kubeconfig, node, "https://127.0.0.1:2379", "endpoint health --cluster", flags);

export interface Sandbox {
  /** The scripts' root (--root / $ROOT). */
  root: string;
  /** Scratch directory for the fakes ($FAKE_CAPTURE). */
  capture: string;
  /** The directory of the fake commands; delete one to make a command missing. */
  fakeBin: string;
  /** The fakes' call log ($FAKE_LOG). */
  log: string;
  /** The environment of every run; tests may add to it. */
  env: Record<string, string>;
}

export interface SandboxOptions {
  /** Fake commands: name -> bash body (the prelude is prepended). */
  fakes: Record<string, string>;
  /** Real tools found on the test's PATH and linked into the sandbox's PATH. */
  realTools: string[];
  /** Real tools at a fixed path: name -> absolute path (check it with requireTool first). */
  toolPaths?: Record<string, string>;
  /**
   * Directories searched after the fakes and the real tools (e.g. the system's), for scripts that
   * use too many real tools to name; then an unexpected command is no longer "command not found".
   */
  pathAfter?: string[];
  /** Added to the sandbox environment. */
  env?: Record<string, string>;
  /** Files to create under the root: path relative to the root -> content. */
  files?: Record<string, string>;
}

/** Registers beforeAll/afterAll for a temporary directory; call the result inside a test. */
export function useTempDir(prefix: string): () => string {
  let dir: string | undefined;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  });
  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });
  return () => {
    if (!dir) throw new Error("useTempDir: the directory exists only inside tests");
    return dir;
  };
}

/** A new sandbox in a new directory `<tmpDir>/<name>-XXXXXX`. */
export function makeSandbox(tmpDir: string, name: string, options: SandboxOptions): Sandbox {
  const dir = fs.mkdtempSync(path.join(tmpDir, `${name}-`));
  const root = path.join(dir, "root");
  const fakeBin = path.join(dir, "fake-bin");
  const realBin = path.join(dir, "real-bin");
  const capture = path.join(dir, "capture");
  const log = path.join(dir, "calls.log");
  for (const d of [root, fakeBin, realBin, capture]) fs.mkdirSync(d, { recursive: true });
  fs.writeFileSync(log, "");
  for (const [file, content] of Object.entries(options.files ?? {})) {
    fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    fs.writeFileSync(path.join(root, file), content);
  }
  for (const [command, body] of Object.entries(options.fakes)) {
    fs.writeFileSync(path.join(fakeBin, command), `${prelude}\n${body}\n`, { mode: 0o755 });
  }
  const searchPath = (process.env.PATH ?? "/usr/bin:/bin").split(":");
  for (const tool of options.realTools) {
    const found = searchPath.map((d) => path.join(d, tool)).find((p) => fs.existsSync(p));
    if (!found) throw new Error(`${tool} not found on PATH`);
    fs.symlinkSync(found, path.join(realBin, tool));
  }
  for (const [tool, binary] of Object.entries(options.toolPaths ?? {})) {
    fs.symlinkSync(binary, path.join(realBin, tool));
  }
  const env = {
    PATH: [fakeBin, realBin, ...(options.pathAfter ?? [])].join(":"),
    ROOT: root,
    POLL_SECONDS: "0.05",
    LC_ALL: "C",
    FAKE_LOG: log,
    FAKE_CAPTURE: capture,
    ...options.env,
  };
  return { root, capture, fakeBin, log, env };
}

export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface RunOptions {
  /** Added to (or overriding) the sandbox environment. */
  env?: Record<string, string>;
  /** Sandbox environment variables left out. */
  unset?: string[];
  /** Standard input; empty (closed at once) by default. */
  input?: string;
  /** Killed after this many milliseconds (default 15000). */
  timeoutMs?: number;
}

/** Runs scripts/node/<script> ARGS with bash in the sandbox's environment. */
export function runNodeScript(sandbox: Sandbox, script: string, args: string[], options: RunOptions = {}): Run {
  const env: Record<string, string> = { ...sandbox.env, ...options.env };
  for (const name of options.unset ?? []) delete env[name];
  const started = Date.now();
  const result = spawnSync("/bin/bash", [path.join(nodeScriptsDir, script), ...args], {
    env,
    input: options.input ?? "",
    encoding: "utf8",
    timeout: options.timeoutMs ?? 15_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr, ms: Date.now() - started };
}

/** The fakes' call log, with the sandbox root written as $ROOT. */
export function calls(sandbox: Sandbox): string[] {
  return fs
    .readFileSync(sandbox.log, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => line.split(sandbox.root).join("$ROOT"));
}

/** Empties the call log. */
export function resetCalls(sandbox: Sandbox): void {
  fs.writeFileSync(sandbox.log, "");
}

/** The path of `p` (absolute on the node) under the sandbox root. */
export const at = (sandbox: Sandbox, p: string): string => path.join(sandbox.root, p);

/** A file's permission bits in octal, e.g. "600". */
export const mode = (file: string): string => (fs.statSync(file).mode & 0o777).toString(8);

/** Expects the exit status; on a mismatch the failure shows stderr too. */
export function expectStatus(result: Run, status: number): void {
  expect({ status: result.status, stderr: result.stderr }).toMatchObject({ status });
}

/**
 * The flags the script's parse_args() function parses: the flag of every spec of its
 * `parse_flags [--non-empty] SPEC... -- "$@"` call (lib.sh; continuation lines allowed), then
 * every `--flag)` case pattern (a script that parses by hand). A spec that is not
 * `--flag=variable`, `--flag=variable[]` or `--flag=variable=VALUE` throws, so a flag cannot hide
 * from the check.
 */
export function parsedFlags(text: string): string[] {
  const start = text.indexOf("\nparse_args() {");
  if (start < 0) return [];
  const parser = text.slice(start, text.indexOf("\n}\n", start)).replace(/\\\n\s*/g, " ");
  const fromSpecs = [...parser.matchAll(/^\s*parse_flags\s(.*?)\s--\s/gm)].flatMap((call) =>
    call[1]
      .trim()
      .split(/\s+/)
      .filter((spec, i) => !(i === 0 && spec === "--non-empty"))
      .map((spec) => {
        const flag = /^(--[a-z0-9-]+)=[A-Za-z_]\w*(\[\]|=\S*)?$/.exec(spec);
        if (!flag) throw new Error(`parsedFlags: not a parse_flags spec: '${spec}'`);
        return flag[1];
      }),
  );
  const fromPatterns = [...parser.matchAll(/^\s+(--[a-z-]+)\)/gm)].map((m) => m[1]);
  return [...fromSpecs, ...fromPatterns];
}

/** The flags parse_args() of the script `text` parses that the --help output `help` does not name. */
export function undocumentedFlags(text: string, help: string): string[] {
  return parsedFlags(text).filter((flag) => !help.includes(flag));
}

/** Bash strict mode: `#!/usr/bin/env bash` first, `set -euo pipefail`, and no xtrace. */
export function expectStrictBash(text: string): void {
  expect(text.startsWith("#!/usr/bin/env bash\n")).toBe(true);
  expect(text).toContain("\nset -euo pipefail\n");
  expect(text).not.toMatch(/set -[a-z]*x|set -o xtrace/);
}

/**
 * The common contract of a node script: bash strict mode, no xtrace, --help (exit 0, empty
 * stderr) documents every word of `documented` and every flag parse_args() parses, an unknown
 * flag exits 2 naming it, and neither runs a fake.
 */
export function expectScriptContract(sandbox: Sandbox, script: string, documented: string[]): void {
  const text = nodeScriptText(script);
  expectStrictBash(text);
  const help = runNodeScript(sandbox, script, ["--help"]);
  expect({ status: help.status, stderr: help.stderr }).toEqual({ status: 0, stderr: "" });
  for (const word of documented) expect(help.stdout).toContain(word);
  // Every flag the script parses is documented.
  expect(parsedFlags(text).length).toBeGreaterThan(0);
  expect(undocumentedFlags(text, help.stdout)).toEqual([]);
  const unknown = runNodeScript(sandbox, script, ["--no-such-flag"]);
  expect(unknown.status).toBe(2);
  expect(unknown.stderr).toContain("unknown argument '--no-such-flag'");
  expect(calls(sandbox)).toEqual([]);
}

/**
 * shellcheck passes on `files`, run in `cwd` (default scripts/node/, so `files` may be names
 * there; .shellcheckrc and `source` paths apply whatever the directory).
 */
export function expectShellcheckClean(files: string[], cwd = nodeScriptsDir): void {
  const binary = requireTool(shellcheckBinary, "shellcheck");
  const result = spawnSync(binary, files, { cwd, encoding: "utf8" });
  expect({ status: result.status, output: result.stdout + result.stderr }).toEqual({ status: 0, output: "" });
}
