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
import { renderCloudInit } from "../components/cloudInit";
import { runProgram, secretMask } from "../scripts/offline/harness";
import { Plan } from "../scripts/offline/render";
import { loadStackConfig, projectRoot, secretPlaceholder } from "../scripts/offline/stackConfig";

const tsNode = path.join(projectRoot, "node_modules", ".bin", "ts-node");

function plan(args: string[]) {
  return spawnSync(tsNode, ["--transpile-only", "scripts/plan.ts", ...args], {
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

  test("exits 0", () => {
    expect(result.stderr).toBe("");
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
    const expected = written.resources
      .filter((r) => r.type.startsWith("hcloud:"))
      .reduce((n, r) => n + r.dependsOn.filter((d) => d.includes("$hcloud:")).length, 0);
    expect(edges).toBe(expected);
  });

  test("the terminal shows the tree, the counts by type and where the files went", () => {
    const lines = result.stdout.split("\n");
    expect(lines).toContain("├─ control-plane  hcloud-control-plane:ControlPlane");
    expect(lines).toContain("│  ├─ control-plane-cp-1  hcloud:Server  (protected, waits for 4)");
    expect(lines).toContain("Resources by type (20 in all):");
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

test("an unknown argument or stack is refused with usage", () => {
  const bad = plan(["--stak", "prod"]);
  expect(bad.status).toBe(1);
  expect(bad.stderr).toContain("unknown argument --stak");
  const missing = plan(["--stack", "nowhere", "--out", path.join(tmp, "nowhere")]);
  expect(missing.status).toBe(1);
  expect(missing.stderr).toContain('stack config file Pulumi.nowhere.yaml does not exist (stack "nowhere")');
});

describe("secrets", () => {
  test("a secure value in the stack file becomes a visible placeholder that stays secret", () => {
    const configFile = path.join(tmp, "Pulumi.secret.yaml");
    fs.writeFileSync(configFile, "config:\n  hcloud:token:\n    secure: v1:AAAABBBB\n");
    const config = loadStackConfig("secret", { configFile });
    expect(config.values["hcloud:token"]).toBe(secretPlaceholder("hcloud:token"));
    expect(config.secretKeys).toContain("hcloud:token");
    expect(config.placeholders).toEqual(["hcloud:token"]);
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
    expect(JSON.stringify(run)).not.toContain(value);
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
  ).toEqual(["cloud-init", "graph.svg", "plan.json"]);
});
