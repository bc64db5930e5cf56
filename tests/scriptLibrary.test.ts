/**
 * One bash helper library for the node, job and operator scripts: scripts/node/lib.sh is the only
 * file that defines the helpers, and every place a script runs gets that file (the node scripts'
 * directory, the jobs' ConfigMaps, the backup image, etcd-restore.sh's stream to the nodes).
 * The rule "a backup is complete when its .sha256 sidecar exists" is one function of it.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { etcdJobScriptConfigMap, readEtcdJobScripts } from "../components/etcd/cronJob";
import {
  definedFunctions,
  filesUnder,
  libraryFunctions,
  libraryFunctionsUsedBy,
  libraryPath,
  scriptsRoot,
} from "./support/bashLibrary";

const library = fs.readFileSync(libraryPath, "utf8");
const scriptText = (relative: string) => fs.readFileSync(path.join(scriptsRoot, relative), "utf8");

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "script-library-"));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Runs `program` (bash, after sourcing lib.sh) with `args`; PATH has coreutils and no more. */
function withLibrary(program: string, args: string[] = [], env: NodeJS.ProcessEnv = {}) {
  // A file, not `bash -c`: bash -c on node's socket stdin reads ~/.bashrc.
  const file = path.join(tmp, `program-${Math.random().toString(36).slice(2)}.sh`);
  fs.writeFileSync(file, `set -euo pipefail\nSCRIPT_NAME=demo\nsource "$LIB"\n${program}\n`);
  const result = spawnSync("/bin/bash", [file, ...args], {
    env: { PATH: "/usr/bin:/bin", LIB: libraryPath, ...env },
    encoding: "utf8",
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe("one helper library", () => {
  /**
   * Scripts that must stay self-contained, and the helpers they define themselves: cloud-init
   * embeds prepare-kubernetes-node.sh alone, and reserved-ip-failover.sh is installed alone to
   * /usr/local/sbin (lib.sh's header says so).
   */
  const selfContained: Record<string, string[]> = {
    "node/prepare-kubernetes-node.sh": ["die", "log", "usage_error", "write_file"],
    "node/reserved-ip-failover.sh": ["log", "usage_error"],
  };

  test("no other file under scripts/ defines a function of lib.sh: a second copy, drifted or not, fails here", () => {
    const helpers = new Set(libraryFunctions().keys());
    // What the library's own source defines is what bash sees: nothing is defined by eval or source.
    expect(new Set(definedFunctions(library))).toEqual(helpers);
    const copies: Record<string, string[]> = {};
    for (const file of filesUnder(scriptsRoot)) {
      if (file === "node/lib.sh") continue;
      const again = definedFunctions(fs.readFileSync(path.join(scriptsRoot, file), "utf8"))
        .filter((name) => helpers.has(name))
        .sort();
      if (again.length > 0) copies[file] = again;
    }
    expect(copies).toEqual(selfContained);
  });

  test("it is the only library file under scripts/: the job library is gone, and no lib.sh sits beside a job or operator script", () => {
    expect(filesUnder(scriptsRoot).filter((file) => /(^|[/-])lib\.sh$/.test(file))).toEqual(["node/lib.sh"]);
  });

  test("the job and operator scripts source lib.sh beside them, else the repository's scripts/node/lib.sh", () => {
    for (const script of ["jobs/etcd-backup.sh", "jobs/etcd-defrag.sh", "ops/etcd-restore.sh"]) {
      const text = scriptText(script);
      expect([script, text.includes('lib="$(dirname "${BASH_SOURCE[0]}")/lib.sh"\n')]).toEqual([script, true]);
      expect([script, text.includes('lib="$(dirname "${BASH_SOURCE[0]}")/../node/lib.sh"\n')]).toEqual([script, true]);
      expect([script, text.includes('source "$lib"\n')]).toEqual([script, true]);
    }
  });

  test.each(["etcd-backup", "etcd-defrag"])(
    "the %s ConfigMap carries lib.sh as it is in the repository, and its files run from their own directory",
    (name) => {
      const data = etcdJobScriptConfigMap(name, readEtcdJobScripts(name)).data;
      expect(Object.keys(data).sort()).toEqual([`${name}.sh`, "lib.sh"]);
      expect(data["lib.sh"]).toBe(library);
      // The pod's /opt/etcd-job: the ConfigMap's files and nothing else (no ../node/lib.sh).
      const mount = fs.mkdtempSync(path.join(tmp, `${name}-`));
      for (const [file, text] of Object.entries(data)) fs.writeFileSync(path.join(mount, file), text, { mode: 0o555 });
      const run = (args: string[]) =>
        spawnSync("/bin/bash", [path.join(mount, `${name}.sh`), ...args], {
          env: { PATH: "/usr/bin:/bin" },
          encoding: "utf8",
        });
      const help = run(["--help"]);
      expect({ status: help.status, stderr: help.stderr }).toEqual({ status: 0, stderr: "" });
      expect(help.stdout).toContain(`Usage: ${name}.sh`);
      const unconfigured = run([]);
      expect(unconfigured.status).toBe(2);
      expect(unconfigured.stderr).toMatch(
        new RegExp(
          `^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ ${name}: configuration error: ETCD_ENDPOINTS is required`,
        ),
      );
      // Without the library beside it (and no repository around it), the script fails at once.
      fs.rmSync(path.join(mount, "lib.sh"));
      const alone = run(["--help"]);
      expect(alone.status).not.toBe(0);
      expect(alone.stdout).toBe("");
    },
  );

  test("etcd-restore.sh runs on a node from stdin with lib.sh streamed ahead of it, as its on_node sends them", () => {
    const restore = path.join(scriptsRoot, "ops", "etcd-restore.sh");
    expect(scriptText("ops/etcd-restore.sh")).toContain('< <(cat -- "$lib" "$self")');
    const root = path.join(tmp, "node-root");
    fs.mkdirSync(path.join(root, "etc", "kubernetes", "manifests"), { recursive: true });
    // The flags kubeadm writes into etcd.yaml (cmd/kubeadm/app/phases/etcd/local.go getEtcdCommand).
    fs.writeFileSync(
      path.join(root, "etc", "kubernetes", "manifests", "etcd.yaml"),
      [
        "spec:",
        "  containers:",
        "  - command:",
        "    - etcd",
        "    - --advertise-client-urls=https://10.0.1.11:2379",
        "    - --data-dir=/var/lib/etcd",
        "    - --initial-advertise-peer-urls=https://10.0.1.11:2380",
        "    - --name=cp-1",
        "    image: registry.k8s.io/etcd:3.6.5-0",
        "",
      ].join("\n"),
    );
    // The node has neither file: run where no lib.sh is beside anything (cwd tmp, stdin only).
    const onNode = (input: string) =>
      spawnSync("/bin/bash", ["-s", "--", "node", "info"], {
        cwd: tmp,
        input,
        env: { PATH: "/usr/bin:/bin", RESTORE_NODE_ROOT: root },
        encoding: "utf8",
      });
    const streamed = onNode(library + fs.readFileSync(restore, "utf8"));
    expect({ status: streamed.status, stderr: streamed.stderr }).toEqual({ status: 0, stderr: "" });
    expect(streamed.stdout).toBe(
      "cp-1\thttps://10.0.1.11:2380\thttps://10.0.1.11:2379\t/var/lib/etcd\tregistry.k8s.io/etcd:3.6.5-0\t6443\n",
    );
    expect(onNode(fs.readFileSync(restore, "utf8")).status).not.toBe(0);
  });

  test("the defrag job reaches only helpers that need bash and coreutils (its image may have nothing more than etcdctl)", () => {
    const reached = libraryFunctionsUsedBy(scriptText("jobs/etcd-defrag.sh"));
    expect([...reached.keys()]).toEqual(expect.arrayContaining(["log", "die", "config_error", "etcd_client_config"]));
    const offending = [...reached].filter(([, body]) => /\b(jq|python3?|awk|sed|grep|aws|kubectl|crictl)\b/.test(body));
    expect(offending.map(([name]) => name)).toEqual([]);
  });
});

describe("s3_uri_encode", () => {
  // Signature Version 4's UriEncode (AWS, "Create a canonical request"): every byte but
  // A-Z a-z 0-9 - . _ ~ as %XX in upper-case hex; encodeURIComponent leaves ! ' ( ) * as they
  // are, so those are encoded here after it.
  const uriEncode = (value: string, keepSlash: boolean) =>
    value
      .split(keepSlash ? "/" : /(?!)/)
      .map((segment) =>
        encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`),
      )
      .join("/");
  const values = [
    "",
    "bench/etcd/20261204T211517Z-r18.db.zst.age",
    "a//b/",
    "x!*'()y z+&=?#%",
    "2Vv.X_Y~z-0",
    'tab\there "quoted" back\\slash $HOME `cmd` ;|<>',
    "über/ñ/日本/€ÿ",
    "2~aBcD.eF_Gh-IjKlMnOpQrStUvWxYz",
  ];

  test("encodes every byte but A-Z a-z 0-9 - . _ ~, UTF-8 byte by byte, in any locale; --path keeps the slashes", () => {
    for (const lang of ["C", "C.UTF-8"]) {
      for (const value of values) {
        for (const keepSlash of [false, true]) {
          const r = withLibrary(`s3_uri_encode "$VALUE" ${keepSlash ? "--path" : ""}`, [], {
            VALUE: value,
            LC_ALL: lang,
          });
          expect({ lang, value, keepSlash, ...r }).toEqual({
            lang,
            value,
            keepSlash,
            status: 0,
            stdout: `${uriEncode(value, keepSlash)}\n`,
            stderr: "",
          });
        }
      }
    }
  });
});

describe("messages", () => {
  test("node scripts: `NAME: message`; LOG_TIMESTAMPS=utc (job and operator scripts): the UTC time first", () => {
    expect(withLibrary('log "hello"; die "gone"')).toEqual({
      status: 1,
      stdout: "",
      stderr: "demo: hello\ndemo: error: gone\n",
    });
    const stamped = withLibrary('LOG_TIMESTAMPS=utc; log "hello"; config_error "X must be set"');
    expect(stamped.status).toBe(2);
    expect(stamped.stderr).toMatch(
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ demo: hello\n\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ demo: configuration error: X must be set\n\S+ demo: see --help\n$/,
    );
  });

  test("show_log: the last 20 lines, indented, the last one even without a newline", () => {
    const file = path.join(tmp, "tool.log");
    fs.writeFileSync(file, [...Array(25)].map((_, i) => `line ${i + 1}`).join("\n"));
    const result = withLibrary(`show_log ${file}; show_log ${file}.missing`);
    expect(result.stderr).toBe([...Array(20)].map((_, i) => `    line ${i + 6}`).join("\n") + "\n");
  });
});

describe("parse_flags", () => {
  const program = [
    "usage() { echo 'Usage: demo'; }",
    'key="" sudo=false',
    "local_nodes=()",
    'parse_flags $MODE --key=key --node=local_nodes[] --sudo=sudo=true -- "$@"',
    'printf \'%s|%s|%s\\n\' "$key" "$sudo" "${local_nodes[*]}"',
  ].join("\n");
  const parse = (mode: string, ...args: string[]) => withLibrary(program, args, { MODE: mode });

  test("--flag=variable[] appends every value of a repeated flag, in order", () => {
    expect(parse("", "--node", "a=1", "--key", "k", "--node", "b=2,c=3", "--sudo")).toEqual({
      status: 0,
      stdout: "k|true|a=1 b=2,c=3\n",
      stderr: "",
    });
    expect(parse("")).toEqual({ status: 0, stdout: "|false|\n", stderr: "" });
  });

  test("an empty value is a value, unless --non-empty (etcd-restore.sh: an empty --key must not mean the newest)", () => {
    expect(parse("", "--key", "")).toEqual({ status: 0, stdout: "|false|\n", stderr: "" });
    for (const args of [
      ["--key", ""],
      ["--node", ""],
    ]) {
      expect(parse("--non-empty", ...args)).toEqual({
        status: 2,
        stdout: "",
        stderr: `demo: usage error: ${args[0]} needs a value\ndemo: see --help\n`,
      });
    }
    expect(parse("--non-empty", "--key", "k", "--node", "x")).toEqual({ status: 0, stdout: "k|false|x\n", stderr: "" });
  });
});

describe("the complete-backup rule, defined once", () => {
  test("complete_backups: the keys whose sidecar is listed, never a sidecar, newest first, matching PATTERN", () => {
    const keys = [
      "c/etcd/20260101T000000Z-r5.db.zst.age",
      "c/etcd/20260101T000000Z-r5.db.zst.age.sha256",
      "c/etcd/20260102T000000Z-r9.db.zst.age", // uploaded, sidecar never came: incomplete
      "c/etcd/20260103T000000Z-r12.db.zst",
      "c/etcd/20260103T000000Z-r12.db.zst.sha256",
      "c/etcd/20260104T000000Z-r20.db.zst.age.sha256", // a sidecar without its object
      "c/etcd/notes.txt",
      "c/etcd/notes.txt.sha256",
    ].join("\n");
    const complete = (pattern: string) =>
      withLibrary('complete_backups "$KEYS" "$PATTERN"', [], { KEYS: keys, PATTERN: pattern });
    expect(complete("")).toEqual({
      status: 0,
      stdout: "c/etcd/notes.txt\nc/etcd/20260103T000000Z-r12.db.zst\nc/etcd/20260101T000000Z-r5.db.zst.age\n",
      stderr: "",
    });
    expect(complete("\\.db\\.zst(\\.age)?$").stdout).toBe(
      "c/etcd/20260103T000000Z-r12.db.zst\nc/etcd/20260101T000000Z-r5.db.zst.age\n",
    );
    expect(complete("\\.tar\\.zst(\\.age)?$")).toEqual({ status: 0, stdout: "", stderr: "" });
    expect(withLibrary('backup_sidecar "a/b.db.zst"').stdout).toBe("a/b.db.zst.sha256");
  });

  test("sha256_hex: the sha256 of a file or of stdin as sha256sum gives it, nothing on failure", () => {
    const file = path.join(tmp, "-hash me");
    fs.writeFileSync(file, Buffer.from([...Array(70000)].map((_, i) => (i * 31) % 256)));
    const expected = spawnSync("sha256sum", ["--", file], { encoding: "utf8" }).stdout.split(" ")[0];
    expect(expected).toMatch(/^[0-9a-f]{64}$/);
    expect(withLibrary('sha256_hex "$FILE"', [], { FILE: file })).toEqual({
      status: 0,
      stdout: `${expected}\n`,
      stderr: "",
    });
    // A name that starts with a dash is a file, not an option.
    expect(withLibrary('cd "$DIR"; sha256_hex "-hash me"', [], { DIR: tmp }).stdout).toBe(`${expected}\n`);
    expect(withLibrary('sha256_hex <"$FILE"', [], { FILE: file }).stdout).toBe(`${expected}\n`);
    expect(withLibrary('printf "" | sha256_hex').stdout).toBe(
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n",
    );
    const missing = withLibrary('sha256_hex "$FILE" || echo "failed $?"', [], { FILE: path.join(tmp, "absent") });
    expect(missing.stdout).toBe("failed 1\n");
  });

  test("the backup and the restore hash snapshots and archives only with sha256_hex, never sha256sum", () => {
    for (const script of ["jobs/etcd-backup.sh", "ops/etcd-restore.sh"]) {
      const code = scriptText(script)
        .split("\n")
        .filter((line) => !line.trim().startsWith("#"));
      expect([script, code.filter((line) => /\bsha256sum\b/.test(line))]).toEqual([script, []]);
      expect([script, code.some((line) => /\bsha256_hex\b/.test(line))]).toEqual([script, true]);
    }
  });

  test("etcd-backup.sh and etcd-restore.sh name sidecars and pick complete backups only through lib.sh", () => {
    for (const script of ["jobs/etcd-backup.sh", "ops/etcd-restore.sh"]) {
      const text = scriptText(script);
      // The code: no comment lines and no --help text.
      const usageStart = text.indexOf("\nusage() {");
      const code = (text.slice(0, usageStart) + text.slice(text.indexOf("\n}\n", usageStart)))
        .split("\n")
        .filter((line) => !line.trim().startsWith("#"));
      // `.sha256` as code (a key or a pattern: followed by a quote, `$`, `}`...), not in a message.
      expect([script, code.filter((line) => /\.sha256(?![ a-z])/.test(line))]).toEqual([script, []]);
      expect([script, code.some((line) => /\bcomplete_backups\b/.test(line))]).toEqual([script, true]);
      expect([script, code.some((line) => /\bbackup_sidecar\b/.test(line))]).toEqual([script, true]);
    }
  });
});
