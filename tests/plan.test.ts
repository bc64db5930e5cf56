/**
 * The offline plan as a newcomer runs it (`npm run plan`): the file contract, the rendered
 * artifacts checked by the real tools, the picture, the terminal report, secret masking and
 * the refusal of an invalid config.
 */
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import YAML from "yaml";
import { renderCloudInit } from "../components/node/cloudInit";
import { parseConfig } from "../components/config";
import { CertificateExpiry, expirySeries } from "../components/lifecycle/certificates";
import { ruleFile } from "../components/addons/monitoring/monitoring";
import { renderRuleFile } from "../components/addons/monitoring/rules";
import { WorkerJoinExpiry, workerTokenSeries } from "../components/lifecycle/workerJoin";
import { runProgram, secretMask } from "../tools/offline/harness";
import { longestChain, Plan, PlanResource, toPlan } from "../tools/offline/render";
import { loadStackConfig, projectRoot, secretPlaceholder } from "../tools/offline/stackConfig";
import { requireTool } from "./support/tools";

const tsNode = path.join(projectRoot, "node_modules", ".bin", "ts-node");

function plan(args: string[]) {
  return spawnSync(tsNode, ["--transpile-only", "tools/plan.ts", ...args], {
    cwd: projectRoot,
    encoding: "utf8",
    timeout: 120_000,
  });
}

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "plan-test-"));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe("npm run plan --stack prod", () => {
  let out: string;
  let result: ReturnType<typeof plan>;
  let written: Plan;
  beforeAll(() => {
    out = path.join(tmp, "out");
    result = plan(["--stack", "prod", "--out", out]);
    written = JSON.parse(fs.readFileSync(path.join(out, "prod", "plan.json"), "utf8")) as Plan;
  });

  test("exits 0, and warns on stderr about the secrets the committed stack file cannot hold", () => {
    expect(result.stderr).toBe(
      [
        "warning: Pulumi.prod.yaml does not hold these secrets yet; this plan used placeholders, but pulumi up needs each of them (see the README's configuration reference):",
        "  pulumi config set --secret hcloud-control-plane:backupSigningKey --stack prod",
        "  pulumi config set --secret hcloud-control-plane:objectStorageAccessKey --stack prod",
        "  pulumi config set --secret hcloud-control-plane:objectStorageSecretKey --stack prod",
        "  pulumi config set --secret hcloud-control-plane:pagerdutyRoutingKey --stack prod",
        "  pulumi config set --secret hcloud-control-plane:sshPrivateKey --stack prod",
        "  pulumi config set --secret hcloud:token --stack prod",
        "",
      ].join("\n"),
    );
    expect(result.status).toBe(0);
  });

  test("plan.json follows the contract", () => {
    expect(Object.keys(written).sort()).toEqual(["outputs", "project", "resources", "stack"]);
    expect(written.stack).toBe("prod");
    expect(written.project).toBe("hcloud-control-plane");
    const urns = new Set(written.resources.map((r) => r.urn));
    expect(urns.size).toBe(written.resources.length);
    for (const r of written.resources) {
      expect(Object.keys(r).sort()).toEqual(
        [
          "deleteBeforeReplace",
          "dependsOn",
          "ignoreChanges",
          "inputs",
          "name",
          "parent",
          "protect",
          "provider",
          "type",
          "urn",
        ].sort(),
      );
      expect(r.urn).toBe(
        `urn:pulumi:prod::hcloud-control-plane::${r.parent ? parentTypeChain(written, r) : ""}${r.type}::${r.name}`,
      );
      for (const d of r.dependsOn) expect(urns.has(d)).toBe(true);
      if (r.parent !== null) expect(urns.has(r.parent)).toBe(true);
    }
    expect(written.resources.filter((r) => r.parent === null).map((r) => r.type)).toEqual(["pulumi:pulumi:Stack"]);
  });

  test("resources are listed in creation order: each after its parent and its dependencies", () => {
    const seen = new Set<string>();
    for (const r of written.resources) {
      for (const d of [...r.dependsOn, ...(r.parent ? [r.parent] : [])])
        expect([r.name, seen.has(d)]).toEqual([r.name, true]);
      seen.add(r.urn);
    }
  });

  test("writes each node's cloud-init exactly as the server receives it, and the real cloud-init accepts it", () => {
    const dir = path.join(out, "prod", "cloud-init");
    expect(fs.readdirSync(dir).sort()).toEqual(["cp-1.yaml", "cp-2.yaml", "cp-3.yaml"]);
    for (const node of ["cp-1", "cp-2", "cp-3"]) {
      const file = path.join(dir, `${node}.yaml`);
      const text = fs.readFileSync(file, "utf8");
      expect(text).toBe(renderCloudInit({ hostname: `prod-nbg1-${node}`, kubernetesVersion: "1.34.2" }));
      const server = written.resources.find((r) => r.name === `control-plane-${node}`);
      expect(server?.inputs.userData).toBe(text);
      const check = spawnSync("cloud-init", ["schema", "--config-file", file], { encoding: "utf8" });
      if (check.error)
        throw new Error(`cloud-init is not installed (Debian package cloud-init): ${check.error.message}`);
      expect([node, check.status, check.stdout.trim()]).toEqual([node, 0, "Valid cloud-config: " + file]);
    }
  });

  test("writes the kubeadm configuration, etcd patch and kube-vip manifest each node receives", () => {
    const dir = path.join(out, "prod");
    expect(fs.readdirSync(path.join(dir, "kubeadm")).sort()).toEqual([
      "cp-1-etcd-patch.yaml",
      "cp-1-init.yaml",
      "cp-1-join.yaml",
      "cp-2-etcd-patch.yaml",
      "cp-2-init.yaml",
      "cp-2-join.yaml",
      "cp-3-etcd-patch.yaml",
      "cp-3-init.yaml",
      "cp-3-join.yaml",
    ]);
    expect(fs.readdirSync(path.join(dir, "kube-vip")).sort()).toEqual(["cp-1.yaml", "cp-2.yaml", "cp-3.yaml"]);
    for (const [file, resource] of [
      ["kubeadm/cp-1-init.yaml", "bootstrap-cp-1-kubeadm-init"],
      ["kubeadm/cp-2-join.yaml", "bootstrap-cp-2-kubeadm-join"],
      ["kubeadm/cp-2-etcd-patch.yaml", "bootstrap-cp-2-etcd-patch"],
      ["kube-vip/cp-3.yaml", "bootstrap-cp-3-kube-vip"],
    ]) {
      const copy = written.resources.find((r) => r.name === resource);
      expect((copy?.inputs.source as { asset: { text: string } }).asset.text).toBe(
        fs.readFileSync(path.join(dir, file), "utf8"),
      );
    }
    for (const node of ["cp-1", "cp-2", "cp-3"]) {
      expect(fs.readFileSync(path.join(dir, "kubeadm", `${node}-init.yaml`), "utf8")).toContain(
        "kind: InitConfiguration",
      );
      expect(fs.readFileSync(path.join(dir, "kubeadm", `${node}-join.yaml`), "utf8")).toContain(
        "kind: JoinConfiguration",
      );
    }
  });

  test("no secret value reaches any file the plan writes", () => {
    // Mocked join credentials and admin kubeconfig, and the secret config placeholders.
    const leaks = ["JOIN_TOKEN=", "client-key-data", "placeholder for"];
    const grep = spawnSync("grep", ["-rl", ...leaks.flatMap((l) => ["-e", l]), out], { encoding: "utf8" });
    expect([grep.status, grep.stdout]).toEqual([1, ""]);
    // The same search finds them where they are: the mocks do produce such values.
    const probe = path.join(tmp, "probe.txt");
    fs.writeFileSync(probe, leaks.join("\n"));
    expect(spawnSync("grep", ["-c", "-e", leaks[0], probe], { encoding: "utf8" }).stdout.trim()).toBe("1");
  });

  test("writes the Prometheus rule file the PrometheusRule holds, and promtool accepts it", () => {
    const file = path.join(out, "prod", "prometheus-rules.yaml");
    const cfg = parseConfig(loadStackConfig("prod"));
    // The certificate series come from the nodes' expiry reports, the worker token's from its
    // command's report; the plan records both as plain outputs.
    const plan = JSON.parse(fs.readFileSync(path.join(out, "prod", "plan.json"), "utf8")) as {
      outputs: { certificateExpiry: CertificateExpiry; workerJoinExpiry: WorkerJoinExpiry };
    };
    const expiry = expirySeries(plan.outputs.certificateExpiry);
    expect(expiry).toHaveLength(3);
    const token = workerTokenSeries(plan.outputs.workerJoinExpiry);
    expect(fs.readFileSync(file, "utf8")).toBe(renderRuleFile(ruleFile(cfg, expiry, token)));
    const check = spawnSync(requireTool("/usr/bin/promtool", "prometheus"), ["check", "rules", file], {
      encoding: "utf8",
    });
    expect([check.status, check.stderr]).toEqual([0, ""]);
    expect(check.stdout).toMatch(/SUCCESS: \d+ rules found/);
  });

  test("writes every Kubernetes object and the Helm values it applies to manifests/", () => {
    const dir = path.join(out, "prod", "manifests");
    expect(fs.readdirSync(dir).sort()).toEqual([
      "alertmanager.yaml",
      "cloud-controller-hcloud-cloud-controller-manager-values.yaml",
      "cloud-controller-token.yaml",
      "cni-cilium-values.yaml",
      "csi-hcloud-csi-values.yaml",
      "csi-token.yaml",
      "etcd-backup-credentials.yaml",
      "etcd-backup-cronjob.yaml",
      "etcd-backup-script.yaml",
      "etcd-backup-signing-key.yaml",
      "etcd-defrag-cronjob.yaml",
      "etcd-defrag-script.yaml",
      "kubelet-csr-approver-binding.yaml",
      "kubelet-csr-approver-deployment.yaml",
      "kubelet-csr-approver-role.yaml",
      "kubelet-csr-approver-sa.yaml",
      "kubelet-csr-approver-script.yaml",
      "monitoring-alertmanager-config.yaml",
      "monitoring-kube-prometheus-stack-values.yaml",
      "monitoring-namespace.yaml",
      "monitoring-pagerduty.yaml",
      "monitoring-rules.yaml",
    ]);
    const read = (f: string) => YAML.parse(fs.readFileSync(path.join(dir, f), "utf8")) as Record<string, unknown>;
    expect(read("etcd-backup-cronjob.yaml")).toMatchObject({ kind: "CronJob", metadata: { name: "etcd-backup" } });
    expect(read("etcd-backup-credentials.yaml")).toMatchObject({ kind: "Secret", stringData: secretMask });
    expect(read("etcd-backup-signing-key.yaml")).toMatchObject({ kind: "Secret", stringData: secretMask });
    expect(read("monitoring-pagerduty.yaml")).toMatchObject({ kind: "Secret", stringData: secretMask });
    expect(read("cloud-controller-token.yaml")).toMatchObject({ kind: "Secret", stringData: secretMask });
    expect(read("csi-token.yaml")).toMatchObject({ kind: "Secret", stringData: secretMask });
    // The Secret is masked as a whole; the config it holds (no secret in it) is rendered
    // beside it, and monitoring.test.ts checks the two are the same. amtool accepts it.
    expect(read("monitoring-alertmanager-config.yaml")).toMatchObject({ kind: "Secret", stringData: secretMask });
    const amConfig = path.join(dir, "alertmanager.yaml");
    const check = spawnSync(requireTool("/usr/bin/amtool", "prometheus-alertmanager"), ["check-config", amConfig], {
      encoding: "utf8",
    });
    expect([check.status, check.stdout]).toEqual([0, expect.stringContaining("SUCCESS")]);
  });

  test("draws the dependency graph with components as clusters", () => {
    const raw = fs.readFileSync(path.join(out, "prod", "graph.svg"), "utf8");
    expect(raw).toMatch(/^<\?xml[^>]*>\s*<!DOCTYPE svg/);
    expect(raw).toContain("</svg>");
    const svg = raw.replace(/&#45;/g, "-").replace(/&gt;/g, ">");
    for (const component of written.resources.filter((r) => r.type.startsWith("hcloud-control-plane:"))) {
      expect(svg).toContain(`<title>cluster_${component.urn}</title>`);
      expect(svg).toContain(`>${component.name} (hcloud-control-plane:${component.type.split(":")[2]})</text>`);
    }
    // One edge per dependency between drawn resources, e.g. subnet -> server.
    const subnet = written.resources.find((r) => r.name === "cluster-subnet")?.urn;
    const server = written.resources.find((r) => r.name === "control-plane-cp-1")?.urn;
    expect(svg).toContain(`<title>${subnet}->${server}</title>`);
    const edges = (svg.match(/class="edge"/g) ?? []).length;
    // Drawn as boxes: every resource that is neither the stack nor a component.
    const parents = new Set(written.resources.map((r) => r.parent));
    const drawn = new Set(
      written.resources.filter((r) => r.type !== "pulumi:pulumi:Stack" && !parents.has(r.urn)).map((r) => r.urn),
    );
    const expected = written.resources
      .filter((r) => drawn.has(r.urn))
      .reduce((n, r) => n + r.dependsOn.filter((d) => drawn.has(d)).length, 0);
    expect(expected).toBeGreaterThan(100);
    expect(edges).toBe(expected);
  });

  test("the terminal shows the tree, the counts by type and where the files went", () => {
    const lines = result.stdout.split("\n");
    expect(lines).toContain("├─ control-plane  hcloud-control-plane:ControlPlane");
    expect(lines).toContain("│  ├─ control-plane-cp-1  hcloud:Server  (protected, waits for 4)");
    expect(lines).toContain("Resources by type (96 in all):");
    expect(lines).toContain("    3  hcloud:index/server:Server");
    expect(result.stdout).toContain(path.relative(projectRoot, path.join(out, "prod", "plan.json")));
    expect(result.stdout).toContain(path.relative(projectRoot, path.join(out, "prod", "graph.svg")));
  });
});

test("an invalid config exits non-zero, names the problem, and leaves no plan.json behind", () => {
  const out = path.join(tmp, "invalid");
  const configFile = path.join(tmp, "Pulumi.broken.yaml");
  const prod = fs.readFileSync(path.join(projectRoot, "Pulumi.prod.yaml"), "utf8");
  fs.writeFileSync(configFile, prod.replace("controlPlaneCount: 3", "controlPlaneCount: 4"));
  // A plan from an earlier run must not survive a failed one.
  fs.mkdirSync(path.join(out, "broken"), { recursive: true });
  fs.writeFileSync(path.join(out, "broken", "plan.json"), "{}");

  const result = plan(["--stack", "broken", "--config-file", configFile, "--out", out]);
  expect(result.status).toBe(1);
  expect(result.stderr.trim()).toBe(
    [
      "plan failed: Invalid stack configuration:",
      "  - hcloud-control-plane:controlPlaneCount = 4: must be an odd number from 1 to 7 (1, 3, 5 or 7): etcd needs a majority, and an even count adds no fault tolerance",
    ].join("\n"),
  );
  expect(fs.existsSync(path.join(out, "broken", "plan.json"))).toBe(false);
});

test("a backup schedule that never fires is a config problem naming the key, not a stack trace", () => {
  const configFile = path.join(tmp, "Pulumi.feb31.yaml");
  const prod = fs.readFileSync(path.join(projectRoot, "Pulumi.prod.yaml"), "utf8");
  fs.writeFileSync(configFile, prod.replace('backupSchedule: "*/15 * * * *"', 'backupSchedule: "0 0 31 2 *"'));
  const result = plan(["--stack", "feb31", "--config-file", configFile, "--out", path.join(tmp, "feb31"), "--quiet"]);
  expect(result.status).toBe(1);
  expect(result.stderr.trim()).toBe(
    [
      "plan failed: Invalid stack configuration:",
      '  - hcloud-control-plane:backupSchedule = "0 0 31 2 *": never fires: no month it selects has day 31 (days per month: February 29); with day-of-week * a run needs that day of month',
    ].join("\n"),
  );
});

/** The prod stack file with every secret pulumi up needs, as the CLI writes them (encrypted). */
function prodWithSecrets(): string {
  const prod = fs.readFileSync(path.join(projectRoot, "Pulumi.prod.yaml"), "utf8");
  const secrets = loadStackConfig("prod").missingSecrets.map((key) => `  ${key}:\n    secure: v1:AAAA\n`);
  return prod + secrets.join("");
}

test("--deployed-version checks a version change as pulumi up does: one minor up plans, two are refused", () => {
  const configFile = path.join(tmp, "Pulumi.next.yaml");
  fs.writeFileSync(configFile, prodWithSecrets().replace("kubernetesVersion: 1.34.2", "kubernetesVersion: 1.35.0"));
  const out = path.join(tmp, "next");
  const args = ["--stack", "next", "--config-file", configFile, "--out", out, "--quiet"];
  const oneMinor = plan([...args, "--deployed-version", "1.34.2"]);
  expect([oneMinor.status, oneMinor.stderr]).toEqual([0, ""]);
  const planned = JSON.parse(fs.readFileSync(path.join(out, "next", "plan.json"), "utf8")) as Plan;
  const upgrade = planned.resources.find((r) => r.name === "upgrade-cp-1")!;
  expect(String(upgrade.inputs.create)).toContain("--version 1.35.0 --package-version 1.35.0-1.1 --channel v1.35");
  const twoMinors = plan([...args, "--deployed-version", "1.33.4"]);
  expect(twoMinors.status).toBe(1);
  expect(twoMinors.stderr).toContain(
    'hcloud-control-plane:kubernetesVersion = "1.35.0": skips minor versions: this stack runs 1.33.4',
  );
  expect(fs.existsSync(path.join(out, "next", "plan.json"))).toBe(false);
});

test("--deployed takes an earlier plan.json or `pulumi stack output --json`: the deployed CA and version count", () => {
  const configFile = path.join(tmp, "Pulumi.again.yaml");
  fs.writeFileSync(configFile, prodWithSecrets());
  const args = ["--stack", "again", "--config-file", configFile, "--quiet"];
  const first = plan([...args, "--out", path.join(tmp, "again-1")]);
  expect([first.status, first.stderr]).toEqual([0, ""]);
  const earlier = path.join(tmp, "again-1", "again", "plan.json");
  const hash = (JSON.parse(fs.readFileSync(earlier, "utf8")) as Plan).outputs.caCertHash as string;
  expect(hash).toMatch(/^sha256:[0-9a-f]{64}$/);
  // From the earlier plan: the stack now records a cluster, so no node may initialize another.
  const second = plan([...args, "--out", path.join(tmp, "again-2"), "--deployed", earlier]);
  expect([second.status, second.stderr]).toEqual([0, ""]);
  const replanned = JSON.parse(fs.readFileSync(path.join(tmp, "again-2", "again", "plan.json"), "utf8")) as Plan;
  for (const n of [1, 2, 3]) {
    const member = replanned.resources.find((r) => r.name === `bootstrap-cp-${n}-member`);
    expect(String(member?.inputs.create)).toContain(`--cluster-ca ${hash} `);
  }
  // The shape `pulumi stack output --json --show-secrets` prints: a flat object of outputs.
  const outputs = path.join(tmp, "again-outputs.json");
  fs.writeFileSync(
    outputs,
    JSON.stringify({ kubernetesVersion: "1.32.9", caCertHash: hash, kubeconfig: "apiVersion: v1" }),
  );
  const refused = plan([...args, "--out", path.join(tmp, "again-3"), "--deployed", outputs]);
  expect(refused.status).toBe(1);
  expect(refused.stderr).toContain('hcloud-control-plane:kubernetesVersion = "1.34.2": skips minor versions');
  const unreadable = plan([...args, "--out", path.join(tmp, "again-4"), "--deployed", path.join(tmp, "nothing.json")]);
  expect(unreadable.status).toBe(1);
  expect(unreadable.stderr).toContain(`--deployed ${path.join(tmp, "nothing.json")}: not a readable JSON file`);
});

test("an unknown argument or stack is refused with usage", () => {
  const bad = plan(["--stak", "prod"]);
  expect(bad.status).toBe(1);
  expect(bad.stderr).toContain("unknown argument --stak");
  const missing = plan(["--stack", "nowhere", "--out", path.join(tmp, "nowhere")]);
  expect(missing.status).toBe(1);
  // The message alone, no stack trace.
  expect(missing.stderr.trim()).toBe(
    'plan failed: stack config file Pulumi.nowhere.yaml does not exist (stack "nowhere")',
  );
  expect(bad.stderr).not.toContain("    at ");
});

describe("secrets", () => {
  test("a secure value in the stack file becomes a visible placeholder that stays secret", () => {
    const configFile = path.join(tmp, "Pulumi.secret.yaml");
    fs.writeFileSync(
      configFile,
      "config:\n  hcloud:token:\n    secure: v1:AAAABBBB\n  hcloud-control-plane:sshPrivateKey:\n    secure: v1:CCCC\n",
    );
    const config = loadStackConfig("secret", { configFile });
    for (const key of ["hcloud:token", "hcloud-control-plane:sshPrivateKey"]) {
      expect(config.values[key]).toBe(secretPlaceholder(key));
    }
    // Declared secrets the file lacks get placeholders too (the test below).
    expect(config.secretKeys).toEqual(config.placeholders);
    expect(config.placeholders).toContain("hcloud-control-plane:sshPrivateKey");
    expect(config.placeholders).toContain("hcloud:token");
  });

  test("declared secrets and the provider token get placeholders when the stack file lacks them", () => {
    const config = loadStackConfig("prod");
    expect(config.placeholders).toEqual([
      "hcloud-control-plane:backupSigningKey",
      "hcloud-control-plane:objectStorageAccessKey",
      "hcloud-control-plane:objectStorageSecretKey",
      "hcloud-control-plane:pagerdutyRoutingKey",
      "hcloud-control-plane:sshPrivateKey",
      "hcloud:token",
    ]);
    expect(config.secretKeys).toEqual(config.placeholders);
  });

  test("the secrets pulumi up needs come from Pulumi.yaml's declarations and the provider secrets", () => {
    expect(loadStackConfig("prod").missingSecrets).toEqual([
      "hcloud-control-plane:backupSigningKey",
      "hcloud-control-plane:objectStorageAccessKey",
      "hcloud-control-plane:objectStorageSecretKey",
      "hcloud-control-plane:pagerdutyRoutingKey",
      "hcloud-control-plane:sshPrivateKey",
      "hcloud:token",
    ]);
    // A secret the file holds (encrypted, or as a test override) is no longer missing.
    const configFile = path.join(tmp, "Pulumi.partial.yaml");
    fs.writeFileSync(configFile, "config:\n  hcloud:token:\n    secure: v1:AAAA\n");
    expect(loadStackConfig("partial", { configFile, overrides: { sshPrivateKey: "test key" } }).missingSecrets).toEqual(
      [
        "hcloud-control-plane:backupSigningKey",
        "hcloud-control-plane:objectStorageAccessKey",
        "hcloud-control-plane:objectStorageSecretKey",
        "hcloud-control-plane:pagerdutyRoutingKey",
      ],
    );
    // One place: a secret newly declared in Pulumi.yaml is required at once; one with a default is not.
    const root = fs.mkdtempSync(path.join(tmp, "project-"));
    const project = YAML.parse(fs.readFileSync(path.join(projectRoot, "Pulumi.yaml"), "utf8")) as {
      config: Record<string, unknown>;
    };
    project.config.newToken = { type: "string", secret: true, description: "Secret: a new one." };
    project.config.optionalToken = { type: "string", secret: true, default: "", description: "Secret: optional." };
    fs.writeFileSync(path.join(root, "Pulumi.yaml"), YAML.stringify(project));
    fs.copyFileSync(path.join(projectRoot, "Pulumi.prod.yaml"), path.join(root, "Pulumi.prod.yaml"));
    const declared = loadStackConfig("prod", { root }).missingSecrets;
    expect(declared).toContain("hcloud-control-plane:newToken");
    expect(declared).not.toContain("hcloud-control-plane:optionalToken");
  });

  test("a stack file holding every secret plans without the warning", () => {
    const configFile = path.join(tmp, "Pulumi.complete.yaml");
    fs.writeFileSync(configFile, prodWithSecrets());
    const complete = plan(["--stack", "complete", "--config-file", configFile, "--out", path.join(tmp, "complete")]);
    expect([complete.status, complete.stderr]).toEqual([0, ""]);
    expect(complete.stdout).toContain("Secrets shown as placeholders (not decryptable offline)");
  });

  test('every secret value in inputs and outputs is "[secret]", and the value itself appears nowhere', async () => {
    const config = loadStackConfig("prod");
    const value = "s3cr3t-value-that-must-not-leak";
    const run = await runProgram(async () => {
      const holder = new Holder("holder", {
        plain: "visible",
        token: pulumi.secret(value),
        nested: { list: [pulumi.secret(value), "visible"] },
      });
      return { token: pulumi.secret(value), derived: holder.urn.apply(() => pulumi.secret(value)), plain: "visible" };
    }, config);
    const holder = run.resources.find((r) => r.name === "holder");
    expect(holder?.inputs).toEqual({
      plain: "visible",
      token: secretMask,
      nested: { list: [secretMask, "visible"] },
    });
    expect(run.outputs).toEqual({ token: secretMask, derived: secretMask, plain: "visible" });
    // What the plan writes holds no secret; only the test-only revealed inputs do.
    expect(JSON.stringify(toPlan(run))).not.toContain(value);
    expect(holder?.revealedInputs.token).toBe(value);
  });
});

/** A resource of a made-up provider, to send secrets through the recording monitor. */
class Holder extends pulumi.CustomResource {
  constructor(name: string, props: pulumi.Inputs) {
    super("test:index:Holder", name, props);
  }
}

/** `a$b$` for a resource whose ancestors (below the stack) have types a and b. */
function parentTypeChain(p: Plan, r: Plan["resources"][number]): string {
  const chain: string[] = [];
  let parent = p.resources.find((x) => x.urn === r.parent);
  while (parent && parent.type !== "pulumi:pulumi:Stack") {
    chain.unshift(parent.type);
    parent = p.resources.find((x) => x.urn === parent?.parent);
  }
  return chain.map((t) => `${t}$`).join("");
}

test("plan files are the same on every run (reviewable diffs)", () => {
  const a = path.join(tmp, "a");
  const b = path.join(tmp, "b");
  expect(plan(["--out", a, "--quiet"]).status).toBe(0);
  expect(plan(["--out", b, "--quiet"]).status).toBe(0);
  const diff = spawnSync("diff", ["-r", path.join(a, "prod"), path.join(b, "prod")], { encoding: "utf8" });
  expect(diff.stdout).toBe("");
  expect(
    execFileSync("ls", [path.join(a, "prod")], { encoding: "utf8" })
      .split("\n")
      .filter(Boolean),
  ).toEqual(["cloud-init", "graph.svg", "kube-vip", "kubeadm", "manifests", "plan.json", "prometheus-rules.yaml"]);
});

test("longestChain follows dependsOn and provider links, counts resources but not components", () => {
  const r = (name: string, deps: string[], extra: Partial<PlanResource> = {}): PlanResource => ({
    urn: `urn:${name}`,
    type: "command:remote:Command",
    name,
    parent: null,
    provider: null,
    dependsOn: deps.map((d) => `urn:${d}`),
    protect: false,
    deleteBeforeReplace: false,
    ignoreChanges: [],
    inputs: {},
    ...extra,
  });
  const plan = {
    stack: "t",
    resources: [
      r("component", [], { type: "hcloud-control-plane:index:ClusterBootstrap" }),
      r("a", []),
      r("b", ["a", "component"]),
      r("c", ["a"]),
      r("provider", ["b"], { type: "pulumi:providers:kubernetes" }),
      r("release", [], { provider: "urn:provider" }),
      r("side", ["c"]),
    ],
  } as unknown as Plan;
  expect(longestChain(plan)).toEqual(["a", "b", "provider", "release"]);
});
