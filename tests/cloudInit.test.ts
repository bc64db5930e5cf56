/**
 * Control-plane cloud-init: the rendered user data is checked by the real `cloud-init schema`
 * and read back by PyYAML (the parser cloud-init uses); the node preparation script is checked
 * by shellcheck and run for real under a temporary root with fake system commands.
 *
 * The fake `containerd config default` prints what real containerd prints: the files in
 * tests/fixtures/containerd/ (their README says where they come from), one per config layout.
 *
 * What this cannot prove: that Ubuntu's containerd and pkgs.k8s.io behave as the fakes do.
 * The other fakes only record calls; a real first boot (or the kubeadm bootstrap) is the proof.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { parse } from "yaml";
import { nodePaths, renderCloudInit } from "../components/node/cloudInit";
import { maxUserDataBytes } from "../components/hetzner/facts";
import { pauseImage } from "../components/versions";
import { parseCloudConfig, writtenFile } from "./support/cloudConfig";
import { renderedElsewhen } from "./support/determinism";
import {
  calls,
  expectShellcheckClean,
  expectStatus,
  makeSandbox as makeNodeSandbox,
  mode,
  nodeScriptText,
  repoRoot,
  resetCalls,
  type Run,
  runNodeScript,
  type Sandbox,
  useTempDir,
} from "./support/nodeSandbox";
import { pyyamlLoadAll, requireTool } from "./support/tools";

const scriptName = "prepare-kubernetes-node.sh";
const cloudInitBinary = "/usr/bin/cloud-init";

const tmp = useTempDir("cloud-init-test-");

const userData = renderCloudInit({ hostname: "prod-nbg1-cp-1", kubernetesVersion: "1.34.2" });
const cloudConfig = parseCloudConfig(userData);

describe("renderCloudInit", () => {
  test("the real cloud-init schema validator accepts it", () => {
    const binary = requireTool(cloudInitBinary, "cloud-init");
    const file = path.join(tmp(), "user-data.yaml");
    fs.writeFileSync(file, userData);
    const result = spawnSync(binary, ["schema", "--config-file", file], { encoding: "utf8" });
    expect({ status: result.status, stderr: result.stderr }).toEqual({ status: 0, stderr: "" });
    expect(result.stdout).toContain(`Valid cloud-config: ${file}`);
  });

  test("PyYAML, the parser cloud-init uses, reads the same data", () => {
    expect(pyyamlLoadAll(userData)).toEqual([cloudConfig]);
  });

  test("header, determinism and size", () => {
    expect(userData.split("\n")[0]).toBe("#cloud-config");
    expect(renderedElsewhen(() => renderCloudInit({ hostname: "prod-nbg1-cp-1", kubernetesVersion: "1.34.2" }))).toBe(
      userData,
    );
    expect(Buffer.byteLength(userData, "utf8")).toBeLessThan(maxUserDataBytes);
  });

  test("installs prerequisites, keeps password SSH off and root key login on", () => {
    expect(cloudConfig.hostname).toBe("prod-nbg1-cp-1");
    expect(cloudConfig.package_update).toBe(true);
    expect(cloudConfig.packages).toEqual([
      "ca-certificates",
      "curl",
      "gpg",
      "apt-transport-https",
      "containerd",
      "conntrack",
      "socat",
      "jq",
    ]);
    expect(cloudConfig.ssh_pwauth).toBe(false);
    expect(cloudConfig.disable_root).toBe(false);
  });

  test("runcmd runs the preparation script with pinned versions, as an argv list", () => {
    expect(cloudConfig.runcmd).toEqual([
      [
        "/usr/local/sbin/prepare-kubernetes-node.sh",
        "--kubernetes-version",
        "1.34.2",
        "--package-version",
        "1.34.2-1.1",
        "--channel",
        "v1.34",
        "--pause-image",
        "registry.k8s.io/pause:3.10.1",
      ],
    ]);
  });

  test("the pause image follows the Kubernetes minor", () => {
    const runcmd = (kubernetesVersion: string) =>
      parseCloudConfig(renderCloudInit({ hostname: "prod-nbg1-cp-1", kubernetesVersion })).runcmd[0];
    expect(runcmd("1.33.6").slice(-2)).toEqual(["--pause-image", "registry.k8s.io/pause:3.10"]);
    expect(runcmd("1.36.0").slice(-2)).toEqual(["--pause-image", "registry.k8s.io/pause:3.10.2"]);
  });

  test("write_files: paths, owner, permissions, and the contents of the files on disk", () => {
    const onDisk = (relative: string) => fs.readFileSync(path.join(repoRoot, relative), "utf8");
    expect(cloudConfig.write_files.map(({ path: p, owner, permissions }) => [p, owner, permissions])).toEqual([
      ["/etc/modules-load.d/kubernetes.conf", "root:root", "0644"],
      ["/etc/sysctl.d/90-kubernetes.conf", "root:root", "0644"],
      ["/etc/kubernetes/audit-policy.yaml", "root:root", "0600"],
      ["/usr/local/sbin/prepare-kubernetes-node.sh", "root:root", "0700"],
    ]);
    expect(writtenFile(cloudConfig, "/etc/modules-load.d/kubernetes.conf").content).toBe(
      onDisk("components/node/cloud-init/kubernetes-modules.conf"),
    );
    expect(writtenFile(cloudConfig, "/etc/modules-load.d/kubernetes.conf").content).toMatch(
      /^overlay\nbr_netfilter\n$/m,
    );
    const sysctls = writtenFile(cloudConfig, "/etc/sysctl.d/90-kubernetes.conf").content;
    expect(sysctls).toBe(onDisk("components/node/cloud-init/kubernetes-sysctl.conf"));
    for (const key of [
      "net.ipv4.ip_forward",
      "net.bridge.bridge-nf-call-iptables",
      "net.bridge.bridge-nf-call-ip6tables",
    ]) {
      expect(sysctls).toMatch(new RegExp(`^${key.replace(/\./g, "\\.")} = 1$`, "m"));
    }
    expect(writtenFile(cloudConfig, nodePaths.auditPolicy).content).toBe(
      onDisk("components/node/cloud-init/audit-policy.yaml"),
    );
    expect(writtenFile(cloudConfig, nodePaths.prepareScript).content).toBe(
      onDisk("scripts/node/prepare-kubernetes-node.sh"),
    );
  });

  test("nodePaths agree with the preparation script", () => {
    const script = nodeScriptText(scriptName);
    expect(script).toContain(nodePaths.auditLogDir);
    expect(script).toContain(nodePaths.preparedSentinel);
  });
});

// ---------------------------------------------------------------------------------------------
// The audit policy, evaluated with the API server's first-match semantics.

interface AuditRule {
  level: string;
  users?: string[];
  userGroups?: string[];
  verbs?: string[];
  namespaces?: string[];
  resources?: { group?: string; resources?: string[] }[];
  nonResourceURLs?: string[];
}
interface AuditPolicy {
  apiVersion: string;
  kind: string;
  omitStages: string[];
  rules: AuditRule[];
}
interface AuditRequest {
  user: string;
  groups?: string[];
  verb: string;
  namespace?: string;
  group?: string;
  resource?: string;
  url?: string;
}

function ruleResourceMatches(rule: AuditRule, group: string, resource: string): boolean {
  if (!rule.resources) return !rule.nonResourceURLs;
  return rule.resources.some(
    (r) =>
      (r.group ?? "") === group &&
      (!r.resources?.length || r.resources.includes(resource) || r.resources.includes("*")),
  );
}

function ruleMatches(rule: AuditRule, request: AuditRequest): boolean {
  if (rule.users && !rule.users.includes(request.user)) return false;
  if (rule.userGroups && !rule.userGroups.some((g) => request.groups?.includes(g))) return false;
  if (rule.verbs && !rule.verbs.includes(request.verb)) return false;
  const url = request.url;
  if (url !== undefined) {
    if (rule.resources) return false;
    if (!rule.nonResourceURLs) return true;
    return rule.nonResourceURLs.some((u) => (u.endsWith("*") ? url.startsWith(u.slice(0, -1)) : url === u));
  }
  if (rule.namespaces && !rule.namespaces.includes(request.namespace ?? "")) return false;
  return ruleResourceMatches(rule, request.group ?? "", request.resource ?? "");
}

function levelFor(policy: AuditPolicy, request: AuditRequest): string {
  return policy.rules.find((rule) => ruleMatches(rule, request))?.level ?? "None";
}

describe("audit policy", () => {
  const policy = parse(writtenFile(cloudConfig, nodePaths.auditPolicy).content) as AuditPolicy;

  test("is an audit.k8s.io/v1 Policy without the RequestReceived stage", () => {
    expect(policy.apiVersion).toBe("audit.k8s.io/v1");
    expect(policy.kind).toBe("Policy");
    expect(policy.omitStages).toEqual(["RequestReceived"]);
    for (const rule of policy.rules) {
      expect(["None", "Metadata", "Request", "RequestResponse"]).toContain(rule.level);
    }
  });

  const credentials: [string, string][] = [
    ["", "secrets"],
    ["", "configmaps"],
    ["", "serviceaccounts/token"],
    ["authentication.k8s.io", "tokenreviews"],
  ];
  test.each(credentials.map(([g, r]) => [g || "core", r, g]))(
    "%s/%s: every rule that could match logs Metadata only",
    (_label, r, g) => {
      // Conservative: ignores user, verb and namespace restrictions.
      const levels = policy.rules.filter((rule) => ruleResourceMatches(rule, g, r)).map((x) => x.level);
      expect(levels.length).toBeGreaterThan(0);
      expect(new Set(levels)).toEqual(new Set(["Metadata"]));
      for (const verb of ["get", "list", "watch", "create", "update", "patch", "delete"]) {
        expect(levelFor(policy, { user: "jane", verb, namespace: "default", group: g, resource: r })).toBe("Metadata");
      }
    },
  );

  test("RBAC changes are logged with bodies", () => {
    for (const resource of ["clusterrolebindings", "rolebindings", "clusterroles", "roles"]) {
      const request = { user: "jane", group: "rbac.authorization.k8s.io", resource };
      expect(levelFor(policy, { ...request, verb: "create" })).toBe("RequestResponse");
      expect(levelFor(policy, { ...request, verb: "delete" })).toBe("RequestResponse");
      expect(levelFor(policy, { ...request, verb: "get" })).toBe("Metadata");
    }
  });

  test("noisy system traffic and probes are dropped, everything else is Metadata", () => {
    for (const url of ["/healthz", "/healthz/etcd", "/readyz", "/livez", "/version"]) {
      expect(levelFor(policy, { user: "system:anonymous", verb: "get", url })).toBe("None");
    }
    const kubeProxyWatch = { user: "system:kube-proxy", verb: "watch" };
    expect(levelFor(policy, { ...kubeProxyWatch, resource: "endpoints" })).toBe("None");
    expect(
      levelFor(policy, {
        ...kubeProxyWatch,
        group: "discovery.k8s.io",
        resource: "endpointslices",
      }),
    ).toBe("None");
    expect(levelFor(policy, { user: "jane", verb: "create", namespace: "a", resource: "events" })).toBe("None");
    expect(levelFor(policy, { user: "jane", verb: "get", namespace: "a", resource: "pods" })).toBe("Metadata");
    expect(levelFor(policy, { user: "jane", verb: "get", url: "/metrics" })).toBe("Metadata");
    expect(policy.rules[policy.rules.length - 1]).toEqual({ level: "Metadata" });
  });
});

// ---------------------------------------------------------------------------------------------
// The node preparation script, under a temporary root with fakes for every system command.

test("shellcheck passes on the node preparation script", () => {
  expectShellcheckClean([scriptName]);
});

/**
 * `containerd config default` of containerd 1.7 (config version 2, Ubuntu 24.04's series) and of
 * containerd 2.x (config version 3), as the real binaries print it: tests/fixtures/containerd/.
 */
const containerdDefaults = {
  "1.7": path.join(repoRoot, "tests/fixtures/containerd/config-default-1.7.24.toml"),
  "2.x": path.join(repoRoot, "tests/fixtures/containerd/config-default-2.1.9.toml"),
} as const;

/** Bash bodies of the fakes; each first appends its name and argv to $FAKE_LOG (nodeSandbox's prelude). */
function fakeCommands(aptGetExit: number): Record<string, string> {
  return {
    "apt-get": `exit ${aptGetExit}`,
    "apt-mark": "",
    // Prints the default config of the containerd in $FAKE_CONTAINERD_DEFAULT (a file above).
    containerd: 'if [[ "$*" == "config default" ]]; then cat "$FAKE_CONTAINERD_DEFAULT"; else exit 99; fi',
    curl: "printf '%s\\n' '-----BEGIN PGP PUBLIC KEY BLOCK-----' 'dummy' '-----END PGP PUBLIC KEY BLOCK-----'",
    gpg: [
      'out=""',
      'while [[ $# -gt 0 ]]; do if [[ "$1" == --output ]]; then out="$2"; fi; shift; done',
      '{ echo dearmored; cat; } >"$out"',
    ].join("\n"),
    modprobe: "",
    swapoff: "",
    sysctl: 'if [[ "$1" == -n ]]; then echo 1; fi',
    systemctl: "",
  };
}

/** Real tools the script may use besides the fakes; anything else is "command not found". */
const harmlessTools = ["bash", "cat", "chmod", "grep", "install", "mktemp", "mv", "rm", "sed", "seq", "sleep"];

function makeSandbox(name: string, aptGetExit = 0, containerdDefault: string = containerdDefaults["1.7"]): Sandbox {
  return makeNodeSandbox(tmp(), name, {
    fakes: fakeCommands(aptGetExit),
    realTools: harmlessTools,
    files: { "etc/fstab": "UUID=abc / ext4 defaults 0 1\n/swapfile none swap sw 0 0\n# /old none swap sw 0 0\n" },
    env: { RETRY_SLEEP_SECONDS: "0", FAKE_CONTAINERD_DEFAULT: containerdDefault },
  });
}

const runScript = (sandbox: Sandbox, args: string[]): Run =>
  runNodeScript(sandbox, scriptName, args, { timeoutMs: 10_000 });

const pause = "registry.k8s.io/pause:3.10.1";
const pinnedArgs = [
  ...["--kubernetes-version", "1.34.2", "--package-version", "1.34.2-1.1", "--channel", "v1.34"],
  ...["--pause-image", pause],
];

describe("prepare-kubernetes-node.sh", () => {
  test("first run prepares the node; a second run with the same version is a no-op", () => {
    const sandbox = makeSandbox("prepare");
    const first = runScript(sandbox, pinnedArgs);
    expect({ status: first.status, stderr: first.stderr }).toMatchObject({ status: 0 });

    const log = calls(sandbox);
    const pin = "kubeadm=1.34.2-1.1 kubelet=1.34.2-1.1 kubectl=1.34.2-1.1";
    expect(log).toEqual([
      "swapoff -a",
      "modprobe overlay",
      "modprobe br_netfilter",
      "sysctl --system",
      "sysctl -n net.ipv4.ip_forward",
      "sysctl -n net.bridge.bridge-nf-call-iptables",
      "sysctl -n net.bridge.bridge-nf-call-ip6tables",
      "containerd config default",
      "systemctl enable containerd",
      "systemctl restart containerd",
      "curl -fsSL --retry 5 --retry-all-errors --retry-delay 2 --connect-timeout 10 --max-time 60 " +
        "https://pkgs.k8s.io/core:/stable:/v1.34/deb/Release.key",
      expect.stringMatching(/^gpg --batch --yes --dearmor --output \S+$/),
      "apt-get -q -o DPkg::Lock::Timeout=120 update",
      `apt-get -q -o DPkg::Lock::Timeout=120 install -y --no-install-recommends ${pin}`,
      "apt-mark hold kubeadm kubelet kubectl containerd",
      "systemctl enable --now kubelet",
    ]);

    const at = (p: string) => path.join(sandbox.root, p);
    const containerdConfig = fs.readFileSync(at("etc/containerd/config.toml"), "utf8");
    expect(containerdConfig).toMatch(/^\s*SystemdCgroup = true$/m);
    expect(containerdConfig).not.toContain("SystemdCgroup = false");
    expect(fs.readdirSync(at("etc/containerd"))).toEqual(["config.toml"]);
    expect(fs.readFileSync(at("etc/apt/keyrings/kubernetes-apt-keyring.gpg"), "utf8")).toMatch(
      /^dearmored\n-----BEGIN PGP PUBLIC KEY BLOCK-----/,
    );
    expect(fs.readFileSync(at("etc/apt/sources.list.d/kubernetes.list"), "utf8")).toBe(
      "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] " +
        "https://pkgs.k8s.io/core:/stable:/v1.34/deb/ /\n",
    );
    expect(fs.readFileSync(at("etc/fstab"), "utf8")).toBe(
      "UUID=abc / ext4 defaults 0 1\n# disabled for kubelet: /swapfile none swap sw 0 0\n# /old none swap sw 0 0\n",
    );
    expect(mode(at("var/log/kubernetes/audit"))).toBe("700");
    expect(fs.readFileSync(at("var/lib/kubernetes-node/prepared"), "utf8")).toBe("1.34.2-1.1\n");

    resetCalls(sandbox);
    const second = runScript(sandbox, pinnedArgs);
    expect({ status: second.status, stderr: second.stderr }).toEqual({
      status: 0,
      stderr: "prepare-kubernetes-node: already prepared with 1.34.2-1.1; nothing to do\n",
    });
    expect(calls(sandbox)).toEqual([]);

    const other = runScript(sandbox, [
      "--kubernetes-version",
      "1.35.0",
      "--package-version",
      "1.35.0-1.1",
      "--channel",
      "v1.35",
      "--pause-image",
      pause,
    ]);
    expect(other.status).toBe(1);
    expect(other.stderr).toContain("already prepared with '1.34.2-1.1', asked for 1.35.0-1.1");
    expect(calls(sandbox)).toEqual([]);
  });

  test("an apt-get that always fails: bounded retries, then a non-zero exit and no sentinel", () => {
    const sandbox = makeSandbox("apt-fails", 1);
    const result = runScript(sandbox, pinnedArgs);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("giving up after 10 attempts: apt-get");
    const aptCalls = calls(sandbox).filter((line) => line.startsWith("apt-get"));
    expect(aptCalls).toEqual(Array(10).fill("apt-get -q -o DPkg::Lock::Timeout=120 update"));
    expect(calls(sandbox)).not.toContain("apt-mark hold kubeadm kubelet kubectl containerd");
    expect(fs.existsSync(path.join(sandbox.root, "var/lib/kubernetes-node/prepared"))).toBe(false);
  });

  test("--help documents every parameter; inconsistent versions are a usage error", () => {
    const sandbox = makeSandbox("usage");
    const help = runScript(sandbox, ["--help"]);
    expect(help.status).toBe(0);
    for (const word of [
      "--kubernetes-version",
      "--package-version",
      "--channel",
      "--pause-image",
      "--root",
      "ROOT",
      "RETRY_ATTEMPTS",
      "RETRY_SLEEP_SECONDS",
    ]) {
      expect(help.stdout).toContain(word);
    }
    const wrongChannel = runScript(sandbox, [...pinnedArgs.slice(0, 4), "--channel", "v1.33"]);
    expect(wrongChannel.status).toBe(2);
    expect(wrongChannel.stderr).toContain("--channel must be v1.34 for 1.34.2, got 'v1.33'");
    for (const image of ["", "pause:3.10.1", 'registry.k8s.io/pause:3.10.1"', "registry.k8s.io/pause:3.10.1' x"]) {
      const badImage = runScript(sandbox, [...pinnedArgs.slice(0, 6), "--pause-image", image]);
      expect(badImage.status).toBe(2);
      expect(badImage.stderr).toContain("--pause-image must look like registry.k8s.io/pause:3.10.1");
    }
    expect(calls(sandbox)).toEqual([]);
  });
});

describe("prepare-kubernetes-node.sh: containerd's sandbox image is kubeadm's pause image", () => {
  /** [line before, line after] for every line that differs; both texts must have as many lines. */
  function changedLines(before: string, after: string): [string, string][] {
    const a = before.split("\n");
    const b = after.split("\n");
    expect(b).toHaveLength(a.length);
    return a.flatMap((line, i): [string, string][] => (line === b[i] ? [] : [[line, b[i]]]));
  }
  const written = (sandbox: Sandbox) => fs.readFileSync(path.join(sandbox.root, "etc/containerd/config.toml"), "utf8");

  test("the pause image of the default Kubernetes version (Pulumi.yaml) is the one passed here", () => {
    const pulumiYaml = parse(fs.readFileSync(path.join(repoRoot, "Pulumi.yaml"), "utf8")) as {
      config: { kubernetesVersion: { default: string } };
    };
    expect(pulumiYaml.config.kubernetesVersion.default).toBe("1.34.2");
    expect(pauseImage("1.34.2")).toBe(pause);
    expect(() => pauseImage("1.28.15")).toThrow("no pause image known for Kubernetes 1.28");
  });

  test.each([
    ["1.7", '    sandbox_image = "registry.k8s.io/pause:3.8"', `    sandbox_image = "${pause}"`],
    ["2.x", "      sandbox = 'registry.k8s.io/pause:3.10'", `      sandbox = '${pause}'`],
  ] as const)(
    "containerd %s: containerd's own default with two lines changed, the sandbox image and SystemdCgroup",
    (series, before, after) => {
      const sandbox = makeSandbox(`containerd-${series}`, 0, containerdDefaults[series]);
      expectStatus(runScript(sandbox, pinnedArgs), 0);
      const original = fs.readFileSync(containerdDefaults[series], "utf8");
      expect(changedLines(original, written(sandbox))).toEqual([
        [before, after],
        ["            SystemdCgroup = false", "            SystemdCgroup = true"],
      ]);
      expect(calls(sandbox)).toContain("systemctl restart containerd");
    },
  );

  const variant = (name: string, series: keyof typeof containerdDefaults, edit: (text: string) => string) => {
    const file = path.join(tmp(), `${name}.toml`);
    fs.writeFileSync(file, edit(fs.readFileSync(containerdDefaults[series], "utf8")));
    return file;
  };

  test.each([
    [
      "a config version this script does not know",
      (): string => variant("version-4", "2.x", (t) => t.replace(/^version = 3$/m, "version = 4")),
      "containerd config version '4' is neither 2 (containerd 1.7) nor 3 (containerd 2.x)",
    ],
    [
      "version 3 without the pinned sandbox image",
      (): string => variant("no-pinned-sandbox", "2.x", (t) => t.replace(/^ *sandbox = .*\n/m, "")),
      "containerd config version 3 has 0 'sandbox' keys in [plugins.'io.containerd.cri.v1.images'.pinned_images]",
    ],
    [
      "version 2 with sandbox_image outside the CRI plugin's table",
      (): string =>
        variant("moved-sandbox-image", "1.7", (t) =>
          t.replace(/^ *sandbox_image = .*\n/m, "").replace(/^(\[timeouts\]\n)/m, '$1  sandbox_image = "x"\n'),
        ),
      `containerd config version 2 has 0 'sandbox_image' keys in [plugins."io.containerd.grpc.v1.cri"]`,
    ],
  ])("refuses %s: exit 1, no config written, containerd not restarted", (_label, config, message) => {
    const sandbox = makeSandbox("containerd-refused", 0, config());
    const result = runScript(sandbox, pinnedArgs);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(message);
    expect(result.stderr).toContain(`cannot set containerd's sandbox image to ${pause}`);
    expect(fs.existsSync(path.join(sandbox.root, "etc/containerd"))).toBe(false);
    expect(calls(sandbox)).not.toContain("systemctl restart containerd");
    expect(fs.existsSync(path.join(sandbox.root, "var/lib/kubernetes-node/prepared"))).toBe(false);
  });
});
