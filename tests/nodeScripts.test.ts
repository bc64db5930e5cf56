/**
 * The kubeadm bootstrap scripts that Pulumi runs over SSH on control-plane nodes
 * (scripts/node/): each runs for real with bash under a temporary root. Fake `kubeadm`,
 * `kubectl`, `cloud-init` and `hostname` on PATH record their argv and act as needed. The join
 * uses the real `envsubst`, and the template it renders comes from renderJoinConfiguration.
 * PATH holds only the fakes and a few named real tools, so an unexpected command fails.
 *
 * What this cannot prove: that kubeadm, kubectl and etcdctl print and behave as the fakes do
 * (join command format, `member list -w simple` columns, reset removing the etcd member, the
 * jsonpath output and NotFound errors the adoption of a member without a marker reads; the
 * fakes cite the sources they follow).
 * The proof of those is a real bootstrap: init, two joins, one leave, on real servers.
 */
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { parse, parseAllDocuments } from "yaml";
import { nodePaths } from "../components/node/cloudInit";
import {
  joinCredentialPatterns,
  joinEnvsubstFormat,
  joinPlaceholders,
  joinVariables,
  kubeadmPaths,
  renderInitConfiguration,
  renderJoinConfiguration,
} from "../components/node/kubeadm";
import {
  at,
  calls,
  etcdctlCall,
  etcdHealthCall,
  expectScriptContract,
  expectShellcheckClean,
  expectStatus,
  kubectlCall,
  kubectlGateArms,
  makeSandbox as makeNodeSandbox,
  mode,
  nodeScriptsDir,
  nodeScriptText,
  parsedFlags,
  readyzCall,
  resetCalls,
  Run,
  RunOptions,
  runNodeScript,
  Sandbox,
  undocumentedFlags,
  useTempDir,
} from "./support/nodeSandbox";
import {
  changeEtcdMember,
  ClusterCa,
  deleteClusterObject,
  fakeClusterKubectlArms,
  fakeClusterMembers,
  fakeKubeadm,
  fakeKubeadmTools,
  initPhases,
  joinPhases,
  makeClusterCa,
  phasesRun,
  removeNodeLabel,
  resetPhases,
  kubeadmInputFor,
} from "./support/fakeKubeadm";
import { expectNoSecrets } from "./support/secrets";
import { requireTool } from "./support/tools";

const envsubstBinary = "/usr/bin/envsubst";

const scriptNames = [
  "wait-node-prepared.sh",
  "kubeadm-init.sh",
  "mint-join-credentials.sh",
  "kubeadm-join.sh",
  "leave-cluster.sh",
] as const;
type ScriptName = (typeof scriptNames)[number];

// Realistic credentials; every test that runs kubeadm checks they never reach the terminal.
const token = "abcdef.0123456789abcdef";
const caCertHash = `sha256:${"8c2f0e4a".repeat(8)}`;
const certificateKey = "5ca1ab1e".repeat(8);
const secrets = [token, certificateKey];

const adminConf = kubeadmPaths.adminKubeconfig;
const kubeconfig = `$ROOT${adminConf}`;
const readyzGate = readyzCall(kubeconfig);

const tmp = useTempDir("node-scripts-test-");

// The cluster CA the fake kubeadm hands out (made once: RSA key generation takes a moment).
let cachedCa: ClusterCa | undefined;
const clusterCa = (): ClusterCa => (cachedCa ??= makeClusterCa(tmp(), "cluster-ca"));

// ---------------------------------------------------------------------------------------------
// Fakes: each appends "<name> <argv>" to $FAKE_LOG, then acts (the prelude of
// tests/support/nodeSandbox.ts). FAKE_FAIL / FAKE_HANG name the operations (comma-separated)
// that exit 1 / never return.

const fakes: Record<string, string> = {
  // kubeadm 1.34 phase by phase: tests/support/fake-kubeadm.sh.
  kubeadm: fakeKubeadm,
  kubectl: `
if [[ "$1" == --kubeconfig ]]; then
  printf '%s %s\\n' "$2" "$(stat -c %a "$2" 2>/dev/null || echo missing)" >>"$FAKE_CAPTURE/kubeconfigs"
fi
case "$*" in
${kubectlGateArms("", { readyAfter: true })}
  *" -n kube-system get configmap kubeadm-config -o jsonpath={.data.ClusterConfiguration}")
    # jsonpath prints the string as it is, without a newline of its own.
    if fails kubeadm-config; then echo 'Error from server (NotFound): configmaps "kubeadm-config" not found' >&2; exit 1; fi
    printf '%s' "$FAKE_CLUSTER_CONFIGURATION"
    ;;
  *" member list -w simple")
    if hangs member-list; then exec sleep 30; fi
    if fails member-list; then exit 1; fi
    # FAKE_MEMBERS, or else the fake cluster's members (tests/support/fakeKubeadm.ts).
    while IFS= read -r line; do
      [[ -n "$line" ]] || continue
      id="\${line%%,*}"
      if ! grep -qx "$id" "$FAKE_CAPTURE/removed" 2>/dev/null; then printf '%s\\n' "$line"; fi
    done <<<"\${FAKE_MEMBERS-${fakeClusterMembers}}"
    ;;
  *" drain "*)
    if fails drain; then echo "error: cannot evict pod as it would violate the pod's disruption budget" >&2; exit 1; fi
    echo "node/$4 drained"
    ;;
  *" delete node "*)
    if (($(count delete) <= \${FAKE_DELETE_FAILURES:-0})); then echo "connection refused" >&2; exit 1; fi
    echo "node \\"$5\\" deleted"
    ;;
${fakeClusterKubectlArms}
  *) echo "fake kubectl: unexpected $*" >&2; exit 99 ;;
esac`,
  "cloud-init": `
[[ "$*" == "status --wait" ]] || exit 99
if hangs cloud-init; then exec sleep 30; fi
echo "....."
echo "status: \${FAKE_CLOUD_INIT_STATUS:-done}"
exit "\${FAKE_CLOUD_INIT_EXIT:-0}"`,
  hostname: 'echo "${FAKE_HOSTNAME:-prod-nbg1-cp-2}"',
  // An API server that answers /readyz through the load balancer, or none (connection refused).
  // `curl --output /dev/null --write-out '%{http_code}'`: the status of any HTTP answer, and
  // "000" with exit 7 when nothing answers (curl's man page: http_code, exit code 7).
  curl: 'if [[ -n "${FAKE_SERVING:-}" ]]; then printf "%s" "$FAKE_SERVING"; else printf 000; exit 7; fi',
};

/** Real tools the scripts and fakes may use; anything else is "command not found". */
const realTools = [
  ...new Set([
    ...["bash", "cat", "chmod", "install", "ls", "mktemp", "mv", "openssl", "rm", "sha256sum", "sleep", "timeout"], // the scripts
    ...["cp", "dirname", "grep", "mkdir", "stat", ...fakeKubeadmTools], // the fakes
  ]),
];

function makeSandbox(name: string): Sandbox {
  const sandbox = makeNodeSandbox(tmp(), name, {
    fakes,
    realTools,
    toolPaths: { envsubst: requireTool(envsubstBinary, "gettext-base") },
    files: { "etc/hosts": "127.0.0.1 localhost\n::1 localhost ip6-localhost\n" },
    env: {
      FAKE_TOKEN: token,
      FAKE_CA_CERT_HASH: caCertHash,
      FAKE_CERT_KEY: certificateKey,
      FAKE_CLUSTER_CA: clusterCa().dir,
    },
  });
  fs.mkdirSync(at(sandbox, "etc/kubernetes"), { recursive: true });
  return sandbox;
}

const run = (sandbox: Sandbox, script: ScriptName, args: string[], options: RunOptions = {}): Run =>
  runNodeScript(sandbox, script, args, options);

// ---------------------------------------------------------------------------------------------

describe("every node script", () => {
  test("shellcheck passes on every script in scripts/node/", () => {
    const all = fs.readdirSync(nodeScriptsDir).filter((f) => f.endsWith(".sh"));
    expect(all).toEqual(expect.arrayContaining([...scriptNames]));
    expectShellcheckClean(all);
  });

  const documented: Record<ScriptName, string[]> = {
    "wait-node-prepared.sh": ["--package-version", "--timeout", "--root", "ROOT"],
    "kubeadm-init.sh": [
      "--config",
      "--endpoint-host",
      "--endpoint-ip",
      "--refuse-if-serving",
      "--timeout",
      "--root",
      "ROOT",
      "POLL_SECONDS",
    ],
    "mint-join-credentials.sh": ["--ttl", "--timeout", "--root", "ROOT"],
    "kubeadm-join.sh": [
      "--config-template",
      "--node-name",
      "--endpoint-host",
      "--endpoint-ip",
      "--timeout",
      "--root",
      "ROOT",
      "POLL_SECONDS",
    ],
    "leave-cluster.sh": ["--node-name", "--timeout", "--skip-etcd-check", "--root", "ROOT", "POLL_SECONDS"],
  };

  test.each(scriptNames)("%s: bash strict mode, no xtrace, --help documents every flag", (name) => {
    expectScriptContract(makeSandbox("help"), name, documented[name]);
  });

  test("parse_flags (lib.sh): values, switches, --help, and the usage errors of a missing value or an unknown argument", () => {
    const program = [
      "set -euo pipefail",
      "SCRIPT_NAME=demo",
      'source "$LIB"',
      "usage() { echo 'Usage: demo'; }",
      'name="" ROOT="" force=false',
      'parse_flags --node-name=name --root=ROOT --force=force=true -- "$@"',
      'printf \'%s|%s|%s\\n\' "$name" "$ROOT" "$force"',
    ].join("\n");
    // A file, not `bash -c`: bash -c on node's socket stdin reads ~/.bashrc.
    const demo = path.join(tmp(), "parse-flags-demo.sh");
    fs.writeFileSync(demo, `${program}\n`);
    const parse = (...args: string[]) => {
      const result = spawnSync("/bin/bash", [demo, ...args], {
        env: { PATH: "/usr/bin:/bin", LIB: path.join(nodeScriptsDir, "lib.sh") },
        encoding: "utf8",
      });
      return { status: result.status, stdout: result.stdout, stderr: result.stderr };
    };
    const ok = (stdout: string) => ({ status: 0, stdout, stderr: "" });
    const usageError = (message: string) => ({
      status: 2,
      stdout: "",
      stderr: `demo: usage error: ${message}\ndemo: see --help\n`,
    });
    expect(parse()).toEqual(ok("||false\n"));
    // The last value wins; a value may look like a flag; a switch takes no value.
    expect(parse("--node-name", "a", "--force", "--root", "/r", "--node-name", "--root")).toEqual(
      ok("--root|/r|true\n"),
    );
    expect(parse("--node-name", "")).toEqual(ok("||false\n"));
    expect(parse("--node-name", "a", "--help", "--bogus")).toEqual(ok("Usage: demo\n"));
    expect(parse("-h")).toEqual(ok("Usage: demo\n"));
    expect(parse("--node-name")).toEqual(usageError("--node-name needs a value"));
    expect(parse("--root", "/r", "--node-name")).toEqual(usageError("--node-name needs a value"));
    for (const bad of ["--bogus", "--node-name=a", "--force=true", "", "@", "create", "-f"]) {
      expect(parse(bad)).toEqual(usageError(`unknown argument '${bad}'`));
    }
  });

  test("parsedFlags reads the parse_flags specs and `--flag)` patterns: a parsed flag missing from --help is caught", () => {
    const text = [
      "#!/usr/bin/env bash",
      "parse_args() {",
      "  parse_flags --node-name=node_name --timeout=timeout_seconds \\",
      '    --force=force=true --root=ROOT -- "$@"',
      '  case "$1" in',
      "    --legacy) legacy=true ;;",
      "  esac",
      "}",
      "",
    ].join("\n");
    expect(parsedFlags(text)).toEqual(["--node-name", "--timeout", "--force", "--root", "--legacy"]);
    const help = "Options:\n  --node-name NAME\n  --timeout SECONDS\n  --root DIR\n  --legacy\n";
    expect(undocumentedFlags(text, help)).toEqual(["--force"]);
    expect(undocumentedFlags(text, `${help}  --force\n`)).toEqual([]);
    expect(() => parsedFlags(text.replace("--force=force=true", "--force"))).toThrow(/not a parse_flags spec/);
  });

  test("every script that sources lib.sh parses its flags with parse_flags, and its --help names each", () => {
    const sandbox = makeSandbox("parse-flags");
    const sourcing = fs
      .readdirSync(nodeScriptsDir)
      .filter((f) => f.endsWith(".sh") && f !== "lib.sh" && nodeScriptText(f).includes('/lib.sh"\n'));
    expect(sourcing).toEqual(expect.arrayContaining([...scriptNames, "worker-join-token.sh"]));
    for (const script of sourcing) {
      const text = nodeScriptText(script);
      expect({ script, loop: text.includes("while [[ $# -gt 0 ]]") }).toEqual({ script, loop: false });
      expect({ script, calls: text.match(/\n {2}parse_flags --/g)?.length }).toEqual({ script, calls: 1 });
      const help = runNodeScript(sandbox, script, ["--help"]);
      expect({ script, status: help.status }).toEqual({ script, status: 0 });
      expect({ script, undocumented: undocumentedFlags(text, help.stdout) }).toEqual({ script, undocumented: [] });
    }
    expect(calls(sandbox)).toEqual([]);
  });

  test("join credentials: the scripts check the patterns, names and envsubst format of components/node/kubeadm.ts", () => {
    for (const name of ["mint-join-credentials.sh", "kubeadm-join.sh"] as const) {
      const text = nodeScriptText(name);
      for (const pattern of Object.values(joinCredentialPatterns)) expect(text).toContain(`'${pattern.source}'`);
      for (const variable of Object.values(joinVariables)) expect(text).toContain(variable);
    }
    expect(nodeScriptText("kubeadm-join.sh")).toContain(`readonly ENVSUBST_FORMAT='${joinEnvsubstFormat}'`);
    expect(nodeScriptText("wait-node-prepared.sh")).toContain(nodePaths.preparedSentinel);
  });
});

describe("wait-node-prepared.sh", () => {
  const args = ["--package-version", "1.34.2-1.1"];
  const prepared = (sandbox: Sandbox, version: string) => {
    fs.mkdirSync(path.dirname(at(sandbox, nodePaths.preparedSentinel)), { recursive: true });
    fs.writeFileSync(at(sandbox, nodePaths.preparedSentinel), `${version}\n`);
  };

  test("waits for cloud-init, then accepts the sentinel with the version; a second run checks again", () => {
    const sandbox = makeSandbox("prepared");
    prepared(sandbox, "1.34.2-1.1");
    // The first time the root comes from $ROOT, the second time from --root alone.
    const runs: [string[], RunOptions][] = [
      [args, {}],
      [[...args, "--root", sandbox.root], { unset: ["ROOT"] }],
    ];
    for (const [runArgs, options] of runs) {
      const result = run(sandbox, "wait-node-prepared.sh", runArgs, options);
      expectStatus(result, 0);
      expect(result.stdout).toBe("");
      expect(result.stderr).toContain("node prepared with 1.34.2-1.1");
    }
    expect(calls(sandbox)).toEqual(["cloud-init status --wait", "cloud-init status --wait"]);
  });

  test("cloud-init's exit 2 (recoverable errors) is a warning; exit 1 is a failure", () => {
    const sandbox = makeSandbox("cloud-init-status");
    prepared(sandbox, "1.34.2-1.1");
    const degraded = run(sandbox, "wait-node-prepared.sh", args, { env: { FAKE_CLOUD_INIT_EXIT: "2" } });
    expectStatus(degraded, 0);
    expect(degraded.stderr).toContain("recoverable errors (exit 2)");
    const failed = run(sandbox, "wait-node-prepared.sh", args, {
      env: { FAKE_CLOUD_INIT_EXIT: "1", FAKE_CLOUD_INIT_STATUS: "error" },
    });
    expect(failed.status).toBe(1);
    expect(failed.stderr).toContain("cloud-init finished with errors (exit 1: status: error)");
  });

  test("names what is missing: the sentinel, the right version, kubeadm", () => {
    const sandbox = makeSandbox("not-prepared");
    const missing = run(sandbox, "wait-node-prepared.sh", args);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain(`missing: the sentinel ${at(sandbox, nodePaths.preparedSentinel)}`);

    prepared(sandbox, "1.34.1-1.1");
    const wrong = run(sandbox, "wait-node-prepared.sh", args);
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toContain("holding '1.34.2-1.1' (it holds '1.34.1-1.1')");

    prepared(sandbox, "1.34.2-1.1");
    fs.rmSync(path.join(sandbox.fakeBin, "kubeadm"));
    const noKubeadm = run(sandbox, "wait-node-prepared.sh", args);
    expect(noKubeadm.status).toBe(1);
    expect(noKubeadm.stderr).toContain("missing: 'kubeadm' on PATH");
    expect(noKubeadm.stderr).not.toContain("missing: the sentinel");
  });

  test("a cluster member prepared with another version passes: the upgrade chain moves it, not this check", () => {
    // A configured version change re-runs this check on every node before the upgrade chain.
    const sandbox = makeSandbox("member-older");
    prepared(sandbox, "1.34.2-1.1");
    fs.writeFileSync(at(sandbox, "etc/kubernetes/kubelet.conf"), "apiVersion: v1\n");
    const result = run(sandbox, "wait-node-prepared.sh", ["--package-version", "1.35.0-1.1"]);
    expectStatus(result, 0);
    expect(result.stderr).toContain("member node prepared with 1.34.2-1.1; the upgrade moves it to 1.35.0-1.1");
    // A node that is not a member yet must hold exactly the version it is to join with.
    fs.rmSync(at(sandbox, "etc/kubernetes/kubelet.conf"));
    const fresh = run(sandbox, "wait-node-prepared.sh", ["--package-version", "1.35.0-1.1"]);
    expect(fresh.status).toBe(1);
    expect(fresh.stderr).toContain("holding '1.35.0-1.1' (it holds '1.34.2-1.1')");
  });

  test("gives up when cloud-init does not finish within --timeout", () => {
    const sandbox = makeSandbox("cloud-init-hangs");
    prepared(sandbox, "1.34.2-1.1");
    const result = run(sandbox, "wait-node-prepared.sh", [...args, "--timeout", "1"], {
      env: { FAKE_HANG: "cloud-init" },
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("cloud-init did not finish within 1s");
    expect(result.ms).toBeLessThan(12_000);
  });
});

// The rendered kubeadm files of the first and second node, as the bootstrap copies them.
const initConfigPath = "/etc/kubernetes/kubeadm/init.yaml";
function withInitConfig(sandbox: Sandbox, text = renderInitConfiguration(kubeadmInputFor("cp-1", "10.20.1.11"))): void {
  fs.mkdirSync(path.dirname(at(sandbox, initConfigPath)), { recursive: true });
  fs.writeFileSync(at(sandbox, initConfigPath), text);
}

describe("kubeadm-init.sh", () => {
  const config = initConfigPath;
  const endpoint = ["--endpoint-host", "api.prod.example.com", "--endpoint-ip", "10.20.1.250"];
  const initCall = `kubeadm init --config $ROOT${config}`;
  const withConfig = withInitConfig;
  const hosts = (sandbox: Sandbox) => fs.readFileSync(at(sandbox, "etc/hosts"), "utf8");

  test("first run maps the endpoint, initializes and gates on /readyz; the second only gates", () => {
    const sandbox = makeSandbox("init");
    withConfig(sandbox);
    const first = run(sandbox, "kubeadm-init.sh", ["--config", config, ...endpoint]);
    expectStatus(first, 0);
    expect(calls(sandbox)).toEqual([initCall, readyzGate]);
    expectNoSecrets(first, secrets);
    expect(first.stdout).toBe("");
    expect(hosts(sandbox)).toBe("127.0.0.1 localhost\n::1 localhost ip6-localhost\n10.20.1.250 api.prod.example.com\n");
    expect(mode(at(sandbox, "etc/hosts"))).toBe("644");
    // kubeadm's output, with the join command, went to the root-only log.
    const logFile = at(sandbox, "var/log/hcloud-control-plane/kubeadm-init.log");
    expect(mode(path.dirname(logFile))).toBe("700");
    expect(mode(logFile)).toBe("600");
    expect(fs.readFileSync(logFile, "utf8")).toContain(`--token ${token}`);

    resetCalls(sandbox);
    const second = run(sandbox, "kubeadm-init.sh", ["--config", config, ...endpoint]);
    expectStatus(second, 0);
    expect(calls(sandbox)).toEqual([readyzGate]);
    expect(second.stderr).toContain("already a member (init completed ");
    expect(second.stderr).toContain("/etc/hosts already maps api.prod.example.com to 10.20.1.250");
    expect(hosts(sandbox).match(/api\.prod\.example\.com/g)).toHaveLength(1);
  });

  test("/etc/hosts: an older line for the name is replaced, other names on it are kept", () => {
    const sandbox = makeSandbox("init-hosts");
    withConfig(sandbox);
    fs.writeFileSync(
      at(sandbox, "etc/hosts"),
      "127.0.0.1 localhost\n10.20.1.9 api.prod.example.com # old\n10.20.1.8 other.example.com api.prod.example.com\n",
    );
    expectStatus(run(sandbox, "kubeadm-init.sh", ["--config", config, ...endpoint]), 0);
    expect(hosts(sandbox)).toBe("127.0.0.1 localhost\n10.20.1.8 other.example.com\n10.20.1.250 api.prod.example.com\n");
    // A new load balancer IP replaces the line, also on an initialized node.
    const moved = ["--endpoint-host", "api.prod.example.com", "--endpoint-ip", "10.20.1.251"];
    expectStatus(run(sandbox, "kubeadm-init.sh", ["--config", config, ...moved]), 0);
    expect(hosts(sandbox)).toBe("127.0.0.1 localhost\n10.20.1.8 other.example.com\n10.20.1.251 api.prod.example.com\n");
    expect(fs.readdirSync(at(sandbox, "etc"))).toEqual(["hosts", "kubernetes"]);
    expect(calls(sandbox).filter((c) => c.startsWith("kubeadm"))).toEqual([initCall]);
  });

  test("an IP endpoint leaves /etc/hosts alone; the readiness gate polls until ok", () => {
    const sandbox = makeSandbox("init-ip");
    withConfig(sandbox);
    const before = hosts(sandbox);
    const result = run(sandbox, "kubeadm-init.sh", ["--config", config, "--endpoint-host", "10.20.1.250"], {
      env: { FAKE_READY_AFTER: "3" },
    });
    expectStatus(result, 0);
    expect(hosts(sandbox)).toBe(before);
    expect(calls(sandbox)).toEqual([initCall, readyzGate, readyzGate, readyzGate]);
  });

  test("refuses to init when an API server already answers at the endpoint (a replaced first node)", () => {
    const refuse = ["--refuse-if-serving", "https://10.20.1.250:6443/readyz"];
    const serving = makeSandbox("init-serving");
    withConfig(serving);
    const probe =
      "curl --silent --insecure --max-time 5 --output /dev/null --write-out %{http_code} https://10.20.1.250:6443/readyz";
    // Healthy, degraded (/readyz fails with 500) or closed to anonymous requests: all refused.
    for (const status of ["200", "500", "401"]) {
      resetCalls(serving);
      const refused = run(serving, "kubeadm-init.sh", ["--config", config, ...refuse], {
        env: { FAKE_SERVING: status },
      });
      expect(refused.status).toBe(1);
      expect(refused.stderr).toContain(
        `an API server already answers at https://10.20.1.250:6443/readyz (HTTP ${status})`,
      );
      expect(calls(serving)).toEqual([probe]);
    }
    // Nobody answers on a fresh cluster: init goes ahead.
    const fresh = makeSandbox("init-fresh");
    withConfig(fresh);
    expectStatus(run(fresh, "kubeadm-init.sh", ["--config", config, ...refuse]), 0);
    expect(calls(fresh)).toEqual([probe, initCall, readyzGate]);
  });

  test("a failing kubeadm init fails the script, without a gate and without secrets on the terminal", () => {
    const sandbox = makeSandbox("init-fails");
    withConfig(sandbox);
    const result = run(sandbox, "kubeadm-init.sh", ["--config", config], { env: { FAKE_FAIL: "init" } });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("kubeadm init failed; see");
    expectNoSecrets(result, secrets);
    expect(calls(sandbox)).toEqual([initCall]);
  });

  test("the readiness gate gives up after --timeout, also when kubectl hangs", () => {
    const failures: Record<string, string>[] = [{ FAKE_FAIL: "readyz" }, { FAKE_HANG: "readyz" }];
    for (const env of failures) {
      const sandbox = makeSandbox("init-not-ready");
      withConfig(sandbox);
      const result = run(sandbox, "kubeadm-init.sh", ["--config", config, "--timeout", "1"], { env });
      expect(result.status).toBe(1);
      expect(result.stderr).toContain("the API server did not report ready within 1s");
      expect(result.ms).toBeLessThan(12_000);
      expectNoSecrets(result, secrets);
    }
  });

  test("--help puts kubeadm's timeouts where v1beta4 has them, and the rendered configuration sets none", () => {
    const help = run(makeSandbox("init-help"), "kubeadm-init.sh", ["--help"]).stdout;
    // kubeadm.k8s.io/v1beta4 (cmd/kubeadm/app/apis/kubeadm/v1beta4/types.go): `timeouts` is a field
    // of InitConfiguration, JoinConfiguration, ResetConfiguration and UpgradeConfiguration only.
    expect(help).not.toMatch(/ClusterConfiguration\s+`timeouts`/);
    expect(help).toMatch(
      /`timeouts` of the InitConfiguration in PATH \(kubeadm\.k8s\.io\/v1beta4;\s+ClusterConfiguration has no such field\)/,
    );
    expect(help).toContain("The configuration this project renders sets none");
    const input = {
      clusterName: "prod",
      kubernetesVersion: "1.34.2",
      node: { name: "cp-1", privateIp: "10.20.1.11" },
      nodeHostname: "prod-nbg1-cp-1",
      controlPlaneEndpoint: "api.prod.example.com",
      certSans: [],
      podCidr: "10.244.0.0/16",
      serviceCidr: "10.96.0.0/12",
    };
    const documents = [renderInitConfiguration(input), renderJoinConfiguration(input)].flatMap((text) =>
      parseAllDocuments(text).map((doc) => doc.toJS() as Record<string, unknown>),
    );
    expect(documents.map((doc) => doc.kind)).toEqual([
      "InitConfiguration",
      "ClusterConfiguration",
      "KubeletConfiguration",
      "JoinConfiguration",
    ]);
    for (const doc of documents) expect(Object.keys(doc)).not.toContain("timeouts");
  });

  test("usage errors and a missing config file run nothing", () => {
    const sandbox = makeSandbox("init-usage");
    const relative = run(sandbox, "kubeadm-init.sh", ["--config", "init.yaml"]);
    expect(relative.status).toBe(2);
    const noIp = run(sandbox, "kubeadm-init.sh", ["--config", config, "--endpoint-host", "api.prod.example.com"]);
    expect(noIp.status).toBe(2);
    expect(noIp.stderr).toContain("--endpoint-ip must be an IPv4 address when --endpoint-host is a DNS name");
    const missing = run(sandbox, "kubeadm-init.sh", ["--config", config]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain(`--config ${config}: no such file`);
    // The marker is compared with the configuration's node name and endpoint: both must be there.
    withConfig(sandbox, "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n");
    const nameless = run(sandbox, "kubeadm-init.sh", ["--config", config]);
    expect(nameless.status).toBe(1);
    expect(nameless.stderr).toContain(`--config ${config} has no nodeRegistration.name`);
    expect(calls(sandbox)).toEqual([]);
  });
});

describe("mint-join-credentials.sh", () => {
  // The ClusterConfiguration document `kubeadm init` stores in ConfigMap kube-system/kubeadm-config,
  // at a patch release other than the fake kubeadm's own version (v1.34.2).
  const clusterConfiguration = renderInitConfiguration({
    clusterName: "prod",
    kubernetesVersion: "1.34.3",
    node: { name: "cp-1", privateIp: "10.20.1.11" },
    nodeHostname: "prod-nbg1-cp-1",
    controlPlaneEndpoint: "api.prod.example.com",
    certSans: [],
    podCidr: "10.244.0.0/16",
    serviceCidr: "10.96.0.0/12",
  }).split("---\n")[1];
  const configMapCall = kubectlCall(
    kubeconfig,
    "-n kube-system get configmap kubeadm-config -o jsonpath={.data.ClusterConfiguration}",
  );
  const tmpDir = "etc/kubernetes/tmp";
  const uploadCall = expect.stringMatching(
    /^kubeadm init phase upload-certs --upload-certs --config \$ROOT\/etc\/kubernetes\/tmp\/mint-join-credentials-cluster-configuration\.\w{6}$/,
  );
  const tokenCall = (ttl: string) =>
    `kubeadm token create --ttl ${ttl} --print-join-command --certificate-key ${certificateKey}`;
  const captured = (sandbox: Sandbox, file: string) => fs.readFileSync(path.join(sandbox.capture, file), "utf8");
  const joined = () => {
    const sandbox = makeSandbox("mint");
    fs.writeFileSync(at(sandbox, adminConf), "admin kubeconfig\n");
    sandbox.env.FAKE_CLUSTER_CONFIGURATION = clusterConfiguration;
    return sandbox;
  };

  test("the fake kubeadm looks a version up, as kubeadm does, unless its config names one", () => {
    const sandbox = joined();
    const kubeadm = (args: string[]) =>
      spawnSync(path.join(sandbox.fakeBin, "kubeadm"), ["init", "phase", "upload-certs", ...args], {
        env: sandbox.env,
        encoding: "utf8",
      });
    const bare = kubeadm(["--upload-certs"]);
    expect(bare.status).toBe(0);
    expect(captured(sandbox, "fetched")).toBe("https://dl.k8s.io/release/stable-1.txt\n");
    expect(bare.stderr).toContain("falling back to the local client version: v1.34.2");
    expect(kubeadm(["--upload-certs", "--kubernetes-version", "v1.34.3"]).stderr).toBe(
      "unknown flag: --kubernetes-version\n",
    );
    const config = path.join(sandbox.capture, "cluster.yaml");
    fs.writeFileSync(config, clusterConfiguration);
    expect(kubeadm(["--upload-certs", "--config", config, "--certificate-key", certificateKey]).stderr).toBe(
      "can not mix '--config' with arguments [certificate-key]\n",
    );
    fs.rmSync(path.join(sandbox.capture, "fetched"));
    expect(kubeadm(["--upload-certs", "--config", config]).status).toBe(0);
    expect(fs.existsSync(path.join(sandbox.capture, "fetched"))).toBe(false);
    expect(captured(sandbox, "upload-certs-version")).toBe("v1.34.3\n");
  });

  test("upload-certs gets the cluster's ClusterConfiguration, so kubeadm looks nothing up on the internet", () => {
    const sandbox = joined();
    expectStatus(run(sandbox, "mint-join-credentials.sh", []), 0);
    expect(calls(sandbox)).toEqual([configMapCall, uploadCall, tokenCall("1h")]);
    expect(fs.existsSync(path.join(sandbox.capture, "fetched"))).toBe(false);
    expect(captured(sandbox, "upload-certs-config.yaml")).toBe(clusterConfiguration);
    expect(captured(sandbox, "upload-certs-version")).toBe("v1.34.3\n");
    // The file lived in kubeadm's root-only scratch directory and is gone.
    expect(mode(at(sandbox, tmpDir))).toBe("700");
    expect(fs.readdirSync(at(sandbox, tmpDir))).toEqual([]);
  });

  test.each([
    [
      "kubectl cannot read the ConfigMap",
      { FAKE_FAIL: "kubeadm-config" },
      "cannot read ConfigMap kube-system/kubeadm-config",
    ],
    [
      "the ConfigMap holds no ClusterConfiguration",
      { FAKE_CLUSTER_CONFIGURATION: "" },
      "holds no ClusterConfiguration",
    ],
    [
      "the ClusterConfiguration names no kubernetesVersion",
      { FAKE_CLUSTER_CONFIGURATION: clusterConfiguration.replace(/^kubernetesVersion: .*\n/m, "") },
      "names no kubernetesVersion x.y.z; kubeadm would look one up on the internet",
    ],
  ])("%s: exit 1 before kubeadm runs, the file removed", (_label, env, message) => {
    const sandbox = joined();
    const result = run(sandbox, "mint-join-credentials.sh", [], { env });
    expect(result.status).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain(message);
    expect(calls(sandbox)).toEqual([configMapCall]);
    expect(fs.readdirSync(at(sandbox, tmpDir))).toEqual([]);
  });

  test("prints exactly the three credential lines, and the credentials nowhere else", () => {
    const sandbox = joined();
    const result = run(sandbox, "mint-join-credentials.sh", ["--ttl", "30m"]);
    expectStatus(result, 0);
    expect(result.stdout).toBe(
      `${joinVariables.token}=${token}\n` +
        `${joinVariables.caCertHash}=${caCertHash}\n` +
        `${joinVariables.certificateKey}=${certificateKey}\n`,
    );
    const values = Object.fromEntries(
      result.stdout
        .trimEnd()
        .split("\n")
        .map((l) => l.split("=")),
    );
    expect(joinCredentialPatterns.token.test(values[joinVariables.token])).toBe(true);
    expect(joinCredentialPatterns.caCertHash.test(values[joinVariables.caCertHash])).toBe(true);
    expect(joinCredentialPatterns.certificateKey.test(values[joinVariables.certificateKey])).toBe(true);
    expect(result.stderr).not.toContain(token);
    expect(result.stderr).not.toContain(certificateKey);
    expect(calls(sandbox)).toEqual([configMapCall, uploadCall, tokenCall("30m")]);
    const logFile = at(sandbox, "var/log/hcloud-control-plane/mint-join-credentials.log");
    expect(mode(logFile)).toBe("600");
    expect(fs.readFileSync(logFile, "utf8")).not.toContain(token);

    // Every run mints afresh; the default TTL is one hour.
    resetCalls(sandbox);
    expectStatus(run(sandbox, "mint-join-credentials.sh", []), 0);
    expect(calls(sandbox)).toEqual([configMapCall, uploadCall, tokenCall("1h")]);
  });

  test.each([
    ["a malformed token", { FAKE_TOKEN: "ABCDEF.0123456789abcdef" }, "no valid --token"],
    ["a malformed CA hash", { FAKE_CA_CERT_HASH: "sha1:0123" }, "no valid --discovery-token-ca-cert-hash"],
    ["a key that differs from upload-certs", { FAKE_PRINTED_KEY: "a".repeat(64) }, "differs from the key"],
    ["a malformed upload-certs key", { FAKE_CERT_KEY: certificateKey.slice(1) }, "is not a certificate key"],
    ["a failing upload-certs", { FAKE_FAIL: "upload-certs" }, "upload-certs --upload-certs failed"],
    ["a failing token create", { FAKE_FAIL: "token" }, "kubeadm token create failed"],
  ])("%s: exit 1, nothing on stdout, no value on stderr", (_label, env, message) => {
    const sandbox = joined();
    const result = run(sandbox, "mint-join-credentials.sh", [], { env });
    expect(result.status).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain(message);
    expectNoSecrets(result, secrets);
    for (const [variable, value] of Object.entries(env)) {
      if (variable !== "FAKE_FAIL") expect(result.stderr).not.toContain(value);
    }
  });

  test("refuses a node that is not in the cluster, and a TTL of zero", () => {
    const sandbox = makeSandbox("mint-not-joined");
    const result = run(sandbox, "mint-join-credentials.sh", []);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("admin.conf not found");
    expect(run(sandbox, "mint-join-credentials.sh", ["--ttl", "0s"]).status).toBe(2);
    expect(calls(sandbox)).toEqual([]);
  });
});

describe("kubeadm-join.sh", () => {
  const templatePath = "/etc/kubernetes/kubeadm/join-configuration.yaml.tmpl";
  const template = renderJoinConfiguration({
    clusterName: "prod",
    kubernetesVersion: "1.34.2",
    node: { name: "cp-2", privateIp: "10.20.1.12" },
    nodeHostname: "prod-nbg1-cp-2",
    controlPlaneEndpoint: "api.prod.example.com",
    certSans: [],
    podCidr: "10.244.0.0/16",
    serviceCidr: "10.96.0.0/12",
  });
  const endpoint = ["--endpoint-host", "api.prod.example.com", "--endpoint-ip", "10.20.1.250"];
  const args = ["--config-template", templatePath, ...endpoint];
  // Any order; no trailing newline, as Pulumi passes a command's trimmed stdout.
  const credentials = [
    `${joinVariables.certificateKey}=${certificateKey}`,
    `${joinVariables.token}=${token}`,
    `${joinVariables.caCertHash}=${caCertHash}`,
  ].join("\n");
  const gates = [readyzGate, etcdHealthCall(kubeconfig, "prod-nbg1-cp-2")];
  const withTemplate = (name: string) => {
    const sandbox = makeSandbox(name);
    fs.mkdirSync(path.dirname(at(sandbox, templatePath)), { recursive: true });
    fs.writeFileSync(at(sandbox, templatePath), template);
    return sandbox;
  };
  const kubeadmDir = (sandbox: Sandbox) => fs.readdirSync(path.dirname(at(sandbox, templatePath)));

  test("first run renders a 0600 config, joins, deletes it and passes both gates; the second only gates", () => {
    const sandbox = withTemplate("join");
    const first = run(sandbox, "kubeadm-join.sh", args, { input: credentials });
    expectStatus(first, 0);
    expectNoSecrets(first, secrets);
    expect(first.stdout).toBe("");
    const log = calls(sandbox);
    expect(log).toEqual(["hostname", expect.stringMatching(/^kubeadm join --config \S+$/), ...gates]);
    const rendered = log[1].replace("kubeadm join --config ", "");
    expect(rendered).toMatch(/^\$ROOT\/etc\/kubernetes\/kubeadm\/join\.[A-Za-z0-9]{6}\.yaml$/);

    // What kubeadm read: the template with exactly the three values, mode 0600, now gone.
    expect(fs.readFileSync(path.join(sandbox.capture, "rendered.mode"), "utf8")).toBe("600\n");
    const text = fs.readFileSync(path.join(sandbox.capture, "rendered.yaml"), "utf8");
    expect(text).toBe(
      template
        .replace(joinPlaceholders.token, token)
        .replace(joinPlaceholders.caCertHash, caCertHash)
        .replace(joinPlaceholders.certificateKey, certificateKey),
    );
    const join = parse(text, { version: "1.1" }) as {
      controlPlane: { certificateKey: string };
      discovery: { bootstrapToken: { token: string; caCertHashes: string[] } };
    };
    expect(join.controlPlane.certificateKey).toBe(certificateKey);
    expect(join.discovery.bootstrapToken).toMatchObject({ token, caCertHashes: [caCertHash] });
    expect(kubeadmDir(sandbox)).toEqual(["join-configuration.yaml.tmpl"]);
    expect(mode(path.dirname(at(sandbox, templatePath)))).toBe("700");
    expect(fs.readFileSync(at(sandbox, "etc/hosts"), "utf8")).toContain("\n10.20.1.250 api.prod.example.com\n");
    const logFile = at(sandbox, "var/log/hcloud-control-plane/kubeadm-join.log");
    expect(mode(logFile)).toBe("600");
    expect(fs.readFileSync(logFile, "utf8")).toContain(token);

    // Joined: stdin is not read (this input would be refused), only the gates run.
    resetCalls(sandbox);
    const second = run(sandbox, "kubeadm-join.sh", args, { input: "JOIN_TOKEN=garbage\n" });
    expectStatus(second, 0);
    expect(second.stderr).toContain("already a member (join completed ");
    expect(calls(sandbox)).toEqual(["hostname", ...gates]);
    expect(fs.readFileSync(at(sandbox, "etc/hosts"), "utf8").match(/api\.prod\.example\.com/g)).toHaveLength(1);
  });

  const line = (variable: string, value: string) => `${variable}=${value}`;
  const valid = {
    token: line(joinVariables.token, token),
    hash: line(joinVariables.caCertHash, caCertHash),
    key: line(joinVariables.certificateKey, certificateKey),
  };
  test.each([
    ["an uppercase token", [line(joinVariables.token, token.toUpperCase()), valid.hash, valid.key]],
    ["a token with a trailing space", [`${valid.token} `, valid.hash, valid.key]],
    ["a token with shell syntax", [line(joinVariables.token, `${token}$(id)`), valid.hash, valid.key]],
    ["a hash without sha256:", [valid.token, line(joinVariables.caCertHash, caCertHash.slice(7)), valid.key]],
    ["a 63-character key", [valid.token, valid.hash, line(joinVariables.certificateKey, certificateKey.slice(1))]],
    ["an uppercase key", [valid.token, valid.hash, line(joinVariables.certificateKey, certificateKey.toUpperCase())]],
    ["an unknown name", [valid.token, valid.hash, valid.key, `JOIN_EXTRA=${token}`]],
    ["a repeated name", [valid.token, valid.hash, valid.key, valid.token]],
    ["a missing key", [valid.token, valid.hash]],
    ["a line without =", [valid.token, valid.hash, valid.key, token]],
    ["empty stdin", []],
  ])("refuses %s on stdin without running kubeadm or leaving a file", (_label, lines) => {
    const sandbox = withTemplate("join-refused");
    const result = run(sandbox, "kubeadm-join.sh", args, { input: lines.join("\n") });
    expect(result.status).toBe(1);
    expectNoSecrets(result, secrets);
    expect(result.stderr).not.toContain(token.toUpperCase());
    expect(calls(sandbox)).toEqual(["hostname"]);
    expect(kubeadmDir(sandbox)).toEqual(["join-configuration.yaml.tmpl"]);
  });

  test("a failing kubeadm join fails the script and still deletes the rendered file", () => {
    const sandbox = withTemplate("join-fails");
    const result = run(sandbox, "kubeadm-join.sh", args, { input: credentials, env: { FAKE_FAIL: "join" } });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("kubeadm join failed; see");
    expectNoSecrets(result, secrets);
    expect(fs.readFileSync(path.join(sandbox.capture, "rendered.mode"), "utf8")).toBe("600\n");
    expect(kubeadmDir(sandbox)).toEqual(["join-configuration.yaml.tmpl"]);
    expect(calls(sandbox)).toEqual(["hostname", expect.stringMatching(/^kubeadm join --config /)]);
  });

  test("the etcd gate gives up after --timeout; --node-name picks the etcd pod", () => {
    const sandbox = withTemplate("join-etcd");
    const result = run(sandbox, "kubeadm-join.sh", [...args, "--node-name", "prod-nbg1-cp-9", "--timeout", "1"], {
      input: credentials,
      env: { FAKE_HANG: "etcd" },
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("etcd endpoint health --cluster did not pass within 1s");
    expect(result.ms).toBeLessThan(12_000);
    expectNoSecrets(result, secrets);
    expect(calls(sandbox)).toContain(etcdHealthCall(kubeconfig, "prod-nbg1-cp-9"));
    expect(calls(sandbox)).not.toContain("hostname");
  });

  test("stdin that never closes: gives up after --timeout", async () => {
    const sandbox = withTemplate("join-stdin");
    const started = Date.now();
    const child = spawn("/bin/bash", [path.join(nodeScriptsDir, "kubeadm-join.sh"), ...args, "--timeout", "1"], {
      env: sandbox.env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    const status = await new Promise<number | null>((resolve) => child.on("close", resolve));
    clearTimeout(killer);
    child.stdin.destroy();
    expect(status).toBe(1);
    expect(stderr).toContain("no join credentials on stdin within 1s");
    expect(Date.now() - started).toBeLessThan(12_000);
    expect(calls(sandbox)).toEqual(["hostname"]);
  });
});

describe("member markers: a re-run after kubeadm stopped in any phase finishes or refuses, never passes silently", () => {
  const markerPath = "/var/lib/kubernetes-node/member";
  const runbook = "docs/runbooks/member-setup-failed.md";
  const initArgs = ["--config", initConfigPath];
  const initCall = `kubeadm init --config $ROOT${initConfigPath}`;
  const joinTemplatePath = "/etc/kubernetes/kubeadm/join.yaml";
  const joinArgs = ["--config-template", joinTemplatePath, "--node-name", "prod-nbg1-cp-2"];
  const joinCredentials = [
    `${joinVariables.token}=${token}`,
    `${joinVariables.caCertHash}=${caCertHash}`,
    `${joinVariables.certificateKey}=${certificateKey}`,
  ].join("\n");
  const joinGates = [readyzGate, etcdHealthCall(kubeconfig, "prod-nbg1-cp-2")];
  const renderedJoin = /^\$ROOT\/etc\/kubernetes\/kubeadm\/join\.[A-Za-z0-9]{6}\.yaml$/;

  /** The marker's lines as KEY -> value, or undefined when there is none. */
  const marker = (sandbox: Sandbox): Record<string, string> | undefined => {
    const file = at(sandbox, markerPath);
    if (!fs.existsSync(file)) return undefined;
    expect(mode(file)).toBe("644");
    return Object.fromEntries(
      fs
        .readFileSync(file, "utf8")
        .trimEnd()
        .split("\n")
        .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
    );
  };
  const expectMarker = (sandbox: Sandbox, role: "init" | "join", node: string) =>
    expect(marker(sandbox)).toEqual({
      role,
      node,
      endpoint: "api.prod.example.com:6443",
      ca: clusterCa().hash,
      version: "v1.34.2",
      completed: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}$/),
    });
  const kubeadmCalls = (sandbox: Sandbox) => calls(sandbox).filter((c) => c.startsWith("kubeadm "));
  const count = (list: string[], item: string) => list.filter((x) => x === item).length;

  const initNode = (name: string) => {
    const sandbox = makeSandbox(name);
    withInitConfig(sandbox);
    return sandbox;
  };
  const joinNode = (name: string) => {
    const sandbox = makeSandbox(name);
    fs.mkdirSync(path.dirname(at(sandbox, joinTemplatePath)), { recursive: true });
    fs.writeFileSync(at(sandbox, joinTemplatePath), renderJoinConfiguration(kubeadmInputFor("cp-2", "10.20.1.12")));
    return sandbox;
  };

  /** The reset the refusal prints, done as printed: the fake's `kubeadm reset -f` and the CNI directory. */
  const resetAsPrinted = (sandbox: Sandbox, stderr: string) => {
    expect(stderr).toContain(": Reset this node, then run this script again:\n");
    expect(stderr).toMatch(/:\s+kubeadm reset -f\n/);
    expect(stderr).toMatch(/:\s+rm -rf \/etc\/cni\/net\.d\n/);
    const reset = spawnSync(path.join(sandbox.fakeBin, "kubeadm"), ["reset", "-f"], {
      env: sandbox.env,
      encoding: "utf8",
    });
    expect(reset.status).toBe(0);
    fs.rmSync(at(sandbox, "etc/cni/net.d"), { recursive: true, force: true });
  };

  // What a re-run does after `kubeadm init` stopped after each phase. "full": kubeadm init again
  // (no manifest, no etcd data; kubeadm reuses the certificates and kubeconfig files); "finish":
  // the later phases that change the cluster; "refuse": the reset commands, exit 1; "adopt": every
  // phase that changes anything had run, the cluster proves it, and the marker is written without
  // any kubeadm call (as for a member set up before the marker existed).
  const finishInit = [
    "upload-config all",
    "mark-control-plane",
    "bootstrap-token",
    "kubelet-finalize all",
    "addon all",
  ];
  const finishInitCalls = finishInit.map((p) => `kubeadm init phase ${p} --config $ROOT${initConfigPath}`);
  const initRerun: Record<
    (typeof initPhases)[number],
    { outcome: "full" | "finish" | "refuse" | "adopt"; kubeadm: string[] }
  > = {
    preflight: { outcome: "full", kubeadm: [initCall] },
    certs: { outcome: "full", kubeadm: [initCall] },
    kubeconfig: { outcome: "full", kubeadm: [initCall] },
    etcd: { outcome: "refuse", kubeadm: [] },
    "control-plane": {
      outcome: "finish",
      kubeadm: [`kubeadm init phase kubelet-start --config $ROOT${initConfigPath}`, ...finishInitCalls],
    },
    "kubelet-start": { outcome: "finish", kubeadm: finishInitCalls },
    "wait-control-plane": { outcome: "finish", kubeadm: finishInitCalls },
    "upload-config": { outcome: "finish", kubeadm: finishInitCalls },
    "upload-certs": { outcome: "finish", kubeadm: finishInitCalls },
    "mark-control-plane": { outcome: "finish", kubeadm: finishInitCalls },
    "bootstrap-token": { outcome: "finish", kubeadm: finishInitCalls },
    "kubelet-finalize": { outcome: "finish", kubeadm: finishInitCalls },
    addon: { outcome: "adopt", kubeadm: [] },
    "show-join-command": { outcome: "adopt", kubeadm: [] },
  };
  // Phases that change nothing: upload-certs without --upload-certs, the waits, the printout.
  const initNoEffect = new Set(["preflight", "wait-control-plane", "upload-certs", "show-join-command"]);

  test.each(initPhases.map((phase) => [phase, initRerun[phase].outcome] as const))(
    "kubeadm init stopped after %s: the re-run does %s",
    (phase, outcome) => {
      const sandbox = initNode("init-stopped");
      // The last phase cannot fail after itself: there kubeadm succeeded and the gate failed.
      const last = phase === initPhases[initPhases.length - 1];
      const first = run(sandbox, "kubeadm-init.sh", last ? [...initArgs, "--timeout", "1"] : initArgs, {
        env: last ? { FAKE_FAIL: "readyz" } : { FAKE_KUBEADM_FAIL_AFTER: phase },
      });
      expect(first.status).toBe(1);
      expect(first.stderr).toContain(runbook);
      expect(marker(sandbox)).toBeUndefined();
      const ranFirst = phasesRun(sandbox);
      const upTo = initPhases.slice(0, initPhases.indexOf(phase) + 1).map((p) => `init:${p}`);
      expect(ranFirst).toEqual(upTo);

      resetCalls(sandbox);
      resetPhases(sandbox);
      const second = run(sandbox, "kubeadm-init.sh", initArgs);
      expectNoSecrets(second, secrets);
      expect(kubeadmCalls(sandbox)).toEqual(initRerun[phase].kubeadm);
      if (outcome === "refuse") {
        expect(second.status).toBe(1);
        expect(second.stderr).toContain("kubeadm init stopped half way on this node");
        expect(second.stderr).toContain(runbook);
        expect(marker(sandbox)).toBeUndefined();
        // Done as printed, the next run initializes the node.
        resetAsPrinted(sandbox, second.stderr);
        resetCalls(sandbox);
        expectStatus(run(sandbox, "kubeadm-init.sh", initArgs), 0);
        expect(kubeadmCalls(sandbox)).toEqual([initCall]);
        expectMarker(sandbox, "init", "prod-nbg1-cp-1");
        return;
      }
      expectStatus(second, 0);
      expectMarker(sandbox, "init", "prod-nbg1-cp-1");
      expect(second.stderr.includes(": adopted: every proof holds")).toBe(outcome === "adopt");
      // Every phase after the one that stopped that changes anything ran exactly once now.
      const ranSecond = phasesRun(sandbox);
      for (const later of initPhases.slice(initPhases.indexOf(phase) + 1)) {
        if (!initNoEffect.has(later)) expect([later, count(ranSecond, `init:${later}`)]).toEqual([later, 1]);
      }
      // The gate came after the last kubeadm call, and the marker after the gate.
      expect(calls(sandbox)[calls(sandbox).length - 1]).toBe(readyzGate);

      // Marked: a third run runs no kubeadm at all, even one that would fail.
      resetCalls(sandbox);
      expectStatus(run(sandbox, "kubeadm-init.sh", initArgs, { env: { FAKE_FAIL: "init" } }), 0);
      expect(calls(sandbox)).toEqual([readyzGate]);
    },
  );

  test("kubeadm init stopped after kubelet-start and its API server never answers: refused with the reset commands", () => {
    const sandbox = initNode("init-never-ready");
    expect(
      run(sandbox, "kubeadm-init.sh", initArgs, { env: { FAKE_KUBEADM_FAIL_AFTER: "kubelet-start" } }).status,
    ).toBe(1);
    resetCalls(sandbox);
    const second = run(sandbox, "kubeadm-init.sh", [...initArgs, "--timeout", "1"], { env: { FAKE_FAIL: "readyz" } });
    expect(second.status).toBe(1);
    expect(second.stderr).toContain("the API server of the half-finished init did not report ready within 1s");
    expect(second.stderr).toContain("kubeadm reset -f");
    expect(kubeadmCalls(sandbox)).toEqual([]);
    expect(marker(sandbox)).toBeUndefined();
  });

  const joinPhaseCall = expect.stringMatching(
    /^kubeadm join phase control-plane-join all --config \$ROOT\/etc\/kubernetes\/kubeadm\/join\.[A-Za-z0-9]{6}\.yaml$/,
  );
  const joinCall = expect.stringMatching(/^kubeadm join --config \S+$/);
  const joinRerun: Record<
    (typeof joinPhases)[number],
    { outcome: "full" | "finish" | "refuse" | "adopt"; kubeadm: unknown[]; etcdMember?: boolean }
  > = {
    preflight: { outcome: "full", kubeadm: [joinCall] },
    "control-plane-prepare": { outcome: "refuse", kubeadm: [] },
    "check-etcd": { outcome: "refuse", kubeadm: [] },
    "kubelet-start": { outcome: "refuse", kubeadm: [] },
    "etcd-join": { outcome: "refuse", kubeadm: [], etcdMember: true },
    "kubelet-wait-bootstrap": { outcome: "finish", kubeadm: [joinPhaseCall] },
    "control-plane-join": { outcome: "adopt", kubeadm: [] },
    "wait-control-plane": { outcome: "adopt", kubeadm: [] },
  };
  const joinNoEffect = new Set(["preflight", "check-etcd", "wait-control-plane"]);

  test.each(joinPhases.map((phase) => [phase, joinRerun[phase].outcome] as const))(
    "kubeadm join stopped after %s: the re-run does %s",
    (phase, outcome) => {
      const sandbox = joinNode("join-stopped");
      const last = phase === joinPhases[joinPhases.length - 1];
      const first = run(sandbox, "kubeadm-join.sh", last ? [...joinArgs, "--timeout", "1"] : joinArgs, {
        input: joinCredentials,
        env: last ? { FAKE_FAIL: "etcd" } : { FAKE_KUBEADM_FAIL_AFTER: phase },
      });
      expect(first.status).toBe(1);
      expect(marker(sandbox)).toBeUndefined();
      expect(phasesRun(sandbox)).toEqual(joinPhases.slice(0, joinPhases.indexOf(phase) + 1).map((p) => `join:${p}`));

      resetCalls(sandbox);
      resetPhases(sandbox);
      const second = run(sandbox, "kubeadm-join.sh", joinArgs, { input: joinCredentials });
      expectNoSecrets(second, secrets);
      expect(kubeadmCalls(sandbox)).toEqual(joinRerun[phase].kubeadm);
      // No rendered configuration (it holds the credentials) outlives a run.
      expect(fs.readdirSync(path.dirname(at(sandbox, joinTemplatePath)))).toEqual(["join.yaml"]);
      if (outcome === "refuse") {
        expect(second.status).toBe(1);
        expect(second.stderr).toContain("kubeadm join stopped half way on this node");
        expect(second.stderr).toContain(runbook);
        const removal = "bash /usr/local/lib/hcloud-control-plane/node/membership.sh remove --node-name prod-nbg1-cp-2";
        expect(second.stderr.includes(removal)).toBe(joinRerun[phase].etcdMember === true);
        expect(marker(sandbox)).toBeUndefined();
        resetAsPrinted(sandbox, second.stderr);
        resetCalls(sandbox);
        expectStatus(run(sandbox, "kubeadm-join.sh", joinArgs, { input: joinCredentials }), 0);
        expect(kubeadmCalls(sandbox)).toEqual([joinCall]);
        expectMarker(sandbox, "join", "prod-nbg1-cp-2");
        return;
      }
      expectStatus(second, 0);
      expectMarker(sandbox, "join", "prod-nbg1-cp-2");
      expect(second.stderr.includes(": adopted: every proof holds")).toBe(outcome === "adopt");
      const ranSecond = phasesRun(sandbox);
      for (const later of joinPhases.slice(joinPhases.indexOf(phase) + 1)) {
        if (!joinNoEffect.has(later)) expect([later, count(ranSecond, `join:${later}`)]).toEqual([later, 1]);
      }
      expect(calls(sandbox).slice(-2)).toEqual(joinGates);
      if (outcome === "finish") {
        // The phase read the same rendered configuration a join reads, 0600, now deleted.
        expect(fs.readFileSync(path.join(sandbox.capture, "rendered-phase.mode"), "utf8")).toBe("600\n");
        expect(
          calls(sandbox)
            .find((c) => c.startsWith("kubeadm join phase"))
            ?.split(" ")
            .pop(),
        ).toMatch(renderedJoin);
      }

      resetCalls(sandbox);
      const third = run(sandbox, "kubeadm-join.sh", joinArgs, {
        input: "JOIN_TOKEN=garbage\n",
        env: { FAKE_FAIL: "join" },
      });
      expectStatus(third, 0);
      expect(calls(sandbox)).toEqual(joinGates);
    },
  );

  test("a marker of another cluster, endpoint or node name is refused without running kubeadm", () => {
    const sandbox = initNode("marker-mismatch");
    expectStatus(run(sandbox, "kubeadm-init.sh", initArgs), 0);
    const recorded = fs.readFileSync(at(sandbox, markerPath), "utf8");

    // Another controlPlaneEndpoint in the configuration.
    resetCalls(sandbox);
    withInitConfig(
      sandbox,
      renderInitConfiguration({ ...kubeadmInputFor("cp-1", "10.20.1.11"), controlPlaneEndpoint: "10.20.1.250" }),
    );
    const endpoint = run(sandbox, "kubeadm-init.sh", initArgs);
    expect(endpoint.status).toBe(1);
    expect(endpoint.stderr).toContain("records a member of another cluster, endpoint or node name");
    expect(endpoint.stderr).toContain("recorded endpoint api.prod.example.com:6443 (this run: 10.20.1.250:6443)");
    expect(endpoint.stderr).toContain(runbook);
    // Another node name.
    withInitConfig(sandbox, renderInitConfiguration(kubeadmInputFor("cp-9", "10.20.1.11")));
    const node = run(sandbox, "kubeadm-init.sh", initArgs);
    expect(node.status).toBe(1);
    expect(node.stderr).toContain("recorded node prod-nbg1-cp-1 (this run: prod-nbg1-cp-9)");
    // Another cluster: the node's CA is not the one the marker recorded.
    withInitConfig(sandbox);
    const other = makeClusterCa(tmp(), "other-cluster-ca");
    fs.copyFileSync(path.join(other.dir, "ca.crt"), at(sandbox, "etc/kubernetes/pki/ca.crt"));
    const cluster = run(sandbox, "kubeadm-init.sh", initArgs);
    expect(cluster.status).toBe(1);
    expect(cluster.stderr).toContain(
      `recorded cluster CA ${clusterCa().hash} (/etc/kubernetes/pki/ca.crt: ${other.hash})`,
    );
    // No CA at all: the node was reset by hand under the marker.
    fs.rmSync(at(sandbox, "etc/kubernetes/pki"), { recursive: true });
    const gone = run(sandbox, "kubeadm-init.sh", initArgs);
    expect(gone.status).toBe(1);
    expect(gone.stderr).toContain("/etc/kubernetes/pki/ca.crt is missing or unreadable");
    // An unreadable marker.
    fs.writeFileSync(at(sandbox, markerPath), "done\n");
    const garbled = run(sandbox, "kubeadm-init.sh", initArgs);
    expect(garbled.status).toBe(1);
    expect(garbled.stderr).toContain("unreadable line 'done'");

    expect(calls(sandbox)).toEqual([]);
    expect(recorded).toContain(`ca=${clusterCa().hash}\n`);

    // The join compares its --node-name and the template's endpoint the same way.
    const joined = joinNode("marker-mismatch-join");
    expectStatus(run(joined, "kubeadm-join.sh", joinArgs, { input: joinCredentials }), 0);
    resetCalls(joined);
    const renamed = run(joined, "kubeadm-join.sh", [
      "--config-template",
      joinTemplatePath,
      "--node-name",
      "prod-nbg1-cp-5",
    ]);
    expect(renamed.status).toBe(1);
    expect(renamed.stderr).toContain("recorded node prod-nbg1-cp-2 (this run: prod-nbg1-cp-5)");
    expect(calls(joined)).toEqual([]);
  });

  test("leave-cluster.sh removes the marker before kubeadm reset; a re-run of init after a failed reset refuses", () => {
    const sandbox = initNode("marker-leave");
    expectStatus(run(sandbox, "kubeadm-init.sh", initArgs), 0);
    expect(marker(sandbox)).toBeDefined();
    sandbox.env.FAKE_HOSTNAME = "prod-nbg1-cp-1";
    const left = run(sandbox, "leave-cluster.sh", [], { env: { FAKE_FAIL: "reset" } });
    expect(left.status).toBe(1);
    expect(marker(sandbox)).toBeUndefined();
    // kubeadm's files are still there, but the reset removed the etcd member before it failed
    // (its remove-etcd-member phase comes first): not adopted, and no init phase brings a
    // member back, so the re-run refuses with the reset and the member removal.
    resetCalls(sandbox);
    const again = run(sandbox, "kubeadm-init.sh", initArgs);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain("not adopted: the etcd member list has no started, voting member prod-nbg1-cp-1");
    expect(again.stderr).toContain("kubeadm reset -f");
    expect(again.stderr).toContain("membership.sh remove --node-name prod-nbg1-cp-1");
    expect(kubeadmCalls(sandbox)).toEqual([]);
    expect(marker(sandbox)).toBeUndefined();
  });

  describe("adoption: a member set up before the marker existed is adopted, never re-run", () => {
    const initNodeName = "prod-nbg1-cp-1";
    const joinNodeName = "prod-nbg1-cp-2";
    const nodeQuery = (node: string) =>
      kubectlCall(
        kubeconfig,
        `get nodes -l node-role.kubernetes.io/control-plane --field-selector metadata.name=${node} -o jsonpath={.items[*].metadata.name}`,
      );
    const memberList = (node: string) =>
      etcdctlCall(kubeconfig, node, "https://127.0.0.1:2379", "member list -w simple");
    const objectQuery = (namespace: string, kind: string, name: string) =>
      kubectlCall(kubeconfig, `-n ${namespace} get ${kind} ${name} -o jsonpath={.metadata.name}`);
    // The read-only look at the cluster, then the usual gate(s).
    const adoptInitCalls = [
      readyzGate,
      nodeQuery(initNodeName),
      memberList(initNodeName),
      objectQuery("kube-system", "configmap", "kubeadm-config"),
      objectQuery("kube-public", "configmap", "cluster-info"),
      objectQuery("kube-system", "deployment", "coredns"),
      objectQuery("kube-system", "configmap", "kube-proxy"),
      etcdHealthCall(kubeconfig, initNodeName),
      readyzGate,
    ];
    const adoptJoinCalls = [
      readyzGate,
      nodeQuery(joinNodeName),
      memberList(joinNodeName),
      etcdHealthCall(kubeconfig, joinNodeName),
      ...joinGates,
    ];
    const oldInit = "adopted: every proof holds that the init of prod-nbg1-cp-1 completed";
    const oldJoin = "adopted: every proof holds that the join of prod-nbg1-cp-2 completed";

    /** A node set up completely by the stand-in, its marker deleted: as the scripts before the marker left it. */
    const setUpByOldScripts = (role: "init" | "join"): Sandbox => {
      const sandbox = role === "init" ? initNode("adopt-init") : joinNode("adopt-join");
      const setup =
        role === "init"
          ? run(sandbox, "kubeadm-init.sh", initArgs)
          : run(sandbox, "kubeadm-join.sh", joinArgs, { input: joinCredentials });
      expectStatus(setup, 0);
      fs.rmSync(at(sandbox, markerPath));
      resetCalls(sandbox);
      resetPhases(sandbox);
      return sandbox;
    };

    test("init: the re-run makes no kubeadm call, writes the marker, exits 0", () => {
      const sandbox = setUpByOldScripts("init");
      // A kubeadm that would fail anywhere: none may run.
      const result = run(sandbox, "kubeadm-init.sh", initArgs, { env: { FAKE_FAIL: "init" } });
      expectStatus(result, 0);
      expect(result.stderr).toContain(oldInit);
      expect(calls(sandbox)).toEqual(adoptInitCalls);
      expect(phasesRun(sandbox)).toEqual([]);
      expectMarker(sandbox, "init", initNodeName);
      // From now on it is a marked member: only the gate.
      resetCalls(sandbox);
      expectStatus(run(sandbox, "kubeadm-init.sh", initArgs), 0);
      expect(calls(sandbox)).toEqual([readyzGate]);
    });

    test("join: the re-run makes no kubeadm call and reads no stdin, writes the marker, exits 0", () => {
      const sandbox = setUpByOldScripts("join");
      // Credentials minted long ago would be refused here; stdin is not read.
      const result = run(sandbox, "kubeadm-join.sh", joinArgs, {
        input: "JOIN_TOKEN=expired\n",
        env: { FAKE_FAIL: "join,control-plane-join" },
      });
      expectStatus(result, 0);
      expect(result.stderr).toContain(oldJoin);
      expect(calls(sandbox)).toEqual(adoptJoinCalls);
      expect(phasesRun(sandbox)).toEqual([]);
      expectMarker(sandbox, "join", joinNodeName);
      expect(fs.readdirSync(path.dirname(at(sandbox, joinTemplatePath)))).toEqual(["join.yaml"]);
    });

    test("init: kube-proxy's DaemonSet alone is proof enough of the addon phase", () => {
      const sandbox = setUpByOldScripts("init");
      deleteClusterObject(sandbox, "kube-system", "configmaps", "kube-proxy");
      const result = run(sandbox, "kubeadm-init.sh", initArgs);
      expectStatus(result, 0);
      expect(result.stderr).toContain(oldInit);
      expect(kubeadmCalls(sandbox)).toEqual([]);
      expect(calls(sandbox)).toContain(objectQuery("kube-system", "daemonset", "kube-proxy"));
    });

    // One proof missing each: the node is half done as far as anyone can tell, and the re-run
    // does what it does for a half-done node (finish, which ends with the marker).
    type MissingProof = [string, (sandbox: Sandbox) => void, string];
    // The proofs every member has: mark-control-plane's label, a started voting etcd member.
    const memberProofsMissing = (node: string): MissingProof[] => [
      [
        "no control-plane label on the Node",
        (sandbox) => removeNodeLabel(sandbox, node, "node-role.kubernetes.io/control-plane"),
        `no Node ${node} with the label node-role.kubernetes.io/control-plane`,
      ],
      [
        "the etcd member still a learner",
        (sandbox) => changeEtcdMember(sandbox, node, { learner: true }),
        `the etcd member list has no started, voting member ${node}`,
      ],
    ];
    const [initNoLabel, initLearner] = memberProofsMissing(initNodeName);
    const initMissing: MissingProof[] = [
      initNoLabel,
      [
        "no ConfigMap kubeadm-config",
        (sandbox) => deleteClusterObject(sandbox, "kube-system", "configmaps", "kubeadm-config"),
        "no ConfigMap kube-system/kubeadm-config",
      ],
      [
        "no ConfigMap cluster-info",
        (sandbox) => deleteClusterObject(sandbox, "kube-public", "configmaps", "cluster-info"),
        "no ConfigMap kube-public/cluster-info",
      ],
      [
        "no coredns Deployment",
        (sandbox) => deleteClusterObject(sandbox, "kube-system", "deployments.apps", "coredns"),
        "no Deployment kube-system/coredns",
      ],
      [
        "neither kube-proxy ConfigMap nor DaemonSet",
        (sandbox) => {
          deleteClusterObject(sandbox, "kube-system", "configmaps", "kube-proxy");
          deleteClusterObject(sandbox, "kube-system", "daemonsets.apps", "kube-proxy");
        },
        "neither ConfigMap nor DaemonSet kube-system/kube-proxy",
      ],
      [
        "kubelet.conf with the embedded certificate (no kubelet-finalize)",
        (sandbox) => {
          const file = at(sandbox, "etc/kubernetes/kubelet.conf");
          fs.writeFileSync(
            file,
            fs
              .readFileSync(file, "utf8")
              .replace(/client-certificate: .*/, "client-certificate-data: ZmFrZQ==")
              .replace(/client-key: .*/, "client-key-data: ZmFrZQ=="),
          );
        },
        "/etc/kubernetes/kubelet.conf does not use /var/lib/kubelet/pki/kubelet-client-current.pem",
      ],
    ];
    test.each(initMissing)("init with %s: falls through to finishing the init", (_label, breakIt, message) => {
      const sandbox = setUpByOldScripts("init");
      breakIt(sandbox);
      const result = run(sandbox, "kubeadm-init.sh", initArgs);
      expectStatus(result, 0);
      expect(result.stderr).toContain(`not adopted: ${message}`);
      expect(result.stderr).not.toContain(oldInit);
      expect(kubeadmCalls(sandbox)).toEqual(finishInitCalls);
      expectMarker(sandbox, "init", initNodeName);
    });

    const [joinNoLabel, joinLearner] = memberProofsMissing(joinNodeName);
    const joinNoMember: MissingProof = [
      "no etcd member",
      (sandbox) => changeEtcdMember(sandbox, joinNodeName, "remove"),
      "the etcd member list has no started, voting member prod-nbg1-cp-2",
    ];
    test.each([joinNoLabel])("join with %s: falls through to finishing the join", (_label, breakIt, message) => {
      const sandbox = setUpByOldScripts("join");
      breakIt(sandbox);
      const result = run(sandbox, "kubeadm-join.sh", joinArgs, { input: joinCredentials });
      expectStatus(result, 0);
      expectNoSecrets(result, secrets);
      expect(result.stderr).toContain(`not adopted: ${message}`);
      expect(result.stderr).not.toContain(oldJoin);
      expect(kubeadmCalls(sandbox)).toEqual([joinPhaseCall]);
      expectMarker(sandbox, "join", joinNodeName);
    });

    // control-plane-join neither promotes a learner nor adds a member again: no phase of kubeadm
    // join can finish these, so the join refuses with the reset and the member removal.
    const notVoting: ["init" | "join", ...MissingProof][] = [
      ["init", ...initLearner],
      ["join", ...joinLearner],
      ["join", ...joinNoMember],
    ];
    test.each(notVoting)(
      "%s with %s: refused with the reset and the member removal",
      (role, _label, breakIt, message) => {
        const sandbox = setUpByOldScripts(role);
        breakIt(sandbox);
        const node = role === "init" ? initNodeName : joinNodeName;
        const result =
          role === "init"
            ? run(sandbox, "kubeadm-init.sh", initArgs)
            : run(sandbox, "kubeadm-join.sh", joinArgs, { input: joinCredentials });
        expect(result.status).toBe(1);
        expectNoSecrets(result, secrets);
        expect(result.stderr).toContain(`not adopted: ${message}`);
        expect(result.stderr).toContain("kubeadm reset -f");
        expect(result.stderr).toContain(`membership.sh remove --node-name ${node}`);
        expect(kubeadmCalls(sandbox)).toEqual([]);
        expect(marker(sandbox)).toBeUndefined();
      },
    );

    // The cluster cannot be checked: refused, nothing changed, and no advice to reset a node that
    // may be a healthy member.
    const unverifiable: [string, Record<string, string>, string][] = [
      ["the API server down", { FAKE_FAIL: "readyz" }, "the API server did not report ready within 1s"],
      ["the API server hanging", { FAKE_HANG: "readyz" }, "the API server did not report ready within 1s"],
      ["kubectl get refused", { FAKE_FAIL: "cluster-read" }, "kubectl could not read the Node"],
      ["etcdctl member list failing", { FAKE_FAIL: "member-list" }, "kubectl could not read the etcd member list"],
      ["etcd unhealthy", { FAKE_FAIL: "etcd" }, "etcdctl endpoint health --cluster did not pass"],
    ];
    test.each(["init", "join"] as const)(
      "%s: a cluster that cannot be checked is refused, without kubeadm or marker",
      (role) => {
        for (const [label, env, reason] of unverifiable) {
          const sandbox = setUpByOldScripts(role);
          const result =
            role === "init"
              ? run(sandbox, "kubeadm-init.sh", [...initArgs, "--timeout", "1"], { env })
              : run(sandbox, "kubeadm-join.sh", [...joinArgs, "--timeout", "1"], { input: joinCredentials, env });
          expect([label, result.status]).toEqual([label, 1]);
          expect(result.stderr).toContain("The cluster cannot be checked: ");
          expect(result.stderr).toContain(reason);
          expect(result.stderr).toContain("Nothing was changed: no kubeadm call, no marker.");
          expect(result.stderr).not.toContain("kubeadm reset");
          expect(result.ms).toBeLessThan(12_000);
          expectNoSecrets(result, secrets);
          expect([label, kubeadmCalls(sandbox)]).toEqual([label, []]);
          expect(marker(sandbox)).toBeUndefined();
        }
      },
    );
  });
});

describe("leave-cluster.sh", () => {
  const joined = (name: string) => {
    const sandbox = makeSandbox(name);
    fs.writeFileSync(at(sandbox, "etc/kubernetes/kubelet.conf"), "kubelet kubeconfig\n");
    fs.writeFileSync(at(sandbox, adminConf), "admin kubeconfig\n");
    fs.mkdirSync(at(sandbox, "etc/cni/net.d"), { recursive: true });
    fs.writeFileSync(at(sandbox, "etc/cni/net.d/05-cilium.conflist"), "{}\n");
    sandbox.env.FAKE_HOSTNAME = "prod-nbg1-cp-3";
    return sandbox;
  };
  const copyPattern = /^\$ROOT\/run\/hcloud-control-plane\/admin\.[A-Za-z0-9]{6}\.conf$/;
  /** The kubeconfig every kubectl call used: one 0600 copy of admin.conf (its path with $ROOT). */
  function kubeconfigCopy(sandbox: Sandbox): string {
    const used = new Set(fs.readFileSync(path.join(sandbox.capture, "kubeconfigs"), "utf8").trim().split("\n"));
    expect(used.size).toBe(1);
    const [copy, copyMode] = [...used][0].split(" ");
    expect(copyMode).toBe("600");
    expect(copy.split(sandbox.root).join("$ROOT")).toMatch(copyPattern);
    return copy.split(sandbox.root).join("$ROOT");
  }
  const leaveCalls = (copy: string, timeout = "300") => [
    "hostname",
    etcdHealthCall(copy, "prod-nbg1-cp-3"),
    `kubectl --kubeconfig ${copy} drain prod-nbg1-cp-3 --ignore-daemonsets --delete-emptydir-data --timeout=${timeout}s`,
    "kubeadm reset -f",
    `kubectl --kubeconfig ${copy} delete node prod-nbg1-cp-3 --ignore-not-found`,
  ];

  test("first run checks etcd, drains, resets, deletes the node; the second has nothing to do", () => {
    const sandbox = joined("leave");
    const first = run(sandbox, "leave-cluster.sh", []);
    expectStatus(first, 0);
    expectNoSecrets(first, secrets);
    expect(first.stdout).toBe("");
    expect(calls(sandbox)).toEqual(leaveCalls(kubeconfigCopy(sandbox)));
    expect(fs.readdirSync(at(sandbox, "run/hcloud-control-plane"))).toEqual([]);
    expect(fs.existsSync(at(sandbox, "etc/cni/net.d"))).toBe(false);
    expect(fs.existsSync(at(sandbox, "etc/kubernetes/kubelet.conf"))).toBe(false);
    expect(mode(at(sandbox, "var/log/hcloud-control-plane/leave-cluster.log"))).toBe("600");

    resetCalls(sandbox);
    const second = run(sandbox, "leave-cluster.sh", []);
    expectStatus(second, 0);
    expect(second.stderr).toContain("nothing to do");
    expect(calls(sandbox)).toEqual([]);
  });

  test("retries the node deletion while the load balancer still reaches the stopped API server", () => {
    const sandbox = joined("leave-retry");
    const result = run(sandbox, "leave-cluster.sh", ["--node-name", "prod-nbg1-cp-3", "--timeout", "20"], {
      env: { FAKE_DELETE_FAILURES: "2" },
    });
    expectStatus(result, 0);
    const copy = kubeconfigCopy(sandbox);
    const deleteCall = `kubectl --kubeconfig ${copy} delete node prod-nbg1-cp-3 --ignore-not-found`;
    expect(calls(sandbox)).toEqual([...leaveCalls(copy, "20").slice(1), deleteCall, deleteCall]);
  });

  test.each([
    ["etcd unhealthy", { FAKE_FAIL: "etcd" }, "refusing to remove a member from an unhealthy cluster", 2],
    ["drain fails", { FAKE_FAIL: "drain" }, "the node stays cordoned", 3],
    ["reset fails", { FAKE_FAIL: "reset" }, "kubeadm reset -f failed", 4],
    ["the node cannot be deleted", { FAKE_DELETE_FAILURES: "1000" }, "delete node prod-nbg1-cp-3' by hand", 5],
  ])("%s: exit 1, nothing after the failing step, the kubeconfig copy removed", (_label, env, message, steps) => {
    const sandbox = joined("leave-fails");
    const result = run(sandbox, "leave-cluster.sh", ["--timeout", "1"], { env });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(message);
    expect(result.ms).toBeLessThan(12_000);
    expectNoSecrets(result, secrets);
    const copy = kubeconfigCopy(sandbox);
    const log = calls(sandbox);
    const expected = leaveCalls(copy, "1");
    expect(log.slice(0, steps)).toEqual(expected.slice(0, steps));
    // Later calls can only be retries of the failing check.
    for (const later of log.slice(steps)) expect(later).toBe(expected[steps - 1]);
    expect(fs.readdirSync(at(sandbox, "run/hcloud-control-plane"))).toEqual([]);
  });
});
