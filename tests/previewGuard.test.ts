/**
 * tools/preview-guard.ts, run for real as a child process against recorded `pulumi preview
 * --json` documents (tests/fixtures/preview/). The fixtures are Pulumi's PreviewDigest format
 * (steps with op, urn, provider, oldState/newState, diffReasons, replaceReasons, detailedDiff,
 * plus changeSummary) with this program's real URNs; a test checks each URN against the program.
 *
 * What this cannot prove: that a given code change makes Pulumi emit these steps. That is the
 * preview job in .github/workflows/pull-request.yml, which runs this guard on the real preview.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as ts from "typescript";
import {
  findRefusals,
  guardedResources,
  parsePreview,
  parseUrn,
  PreviewStep,
  remoteCommands,
  stepOps,
} from "../tools/preview-guard";
import { runStack } from "./support/program";

const repoRoot = path.join(__dirname, "..");
const fixtures = path.join(__dirname, "fixtures", "preview");
const fixture = (name: string) => path.join(fixtures, name);
const tsNode = path.join(repoRoot, "node_modules", ".bin", "ts-node");
const guardScript = path.join(repoRoot, "tools", "preview-guard.ts");

const urnOf = (type: string, name: string, parent: string) =>
  `urn:pulumi:prod::hcloud-control-plane::hcloud-control-plane:index:${parent}$${type}::${name}`;
const cp2 = urnOf("hcloud:index/server:Server", "control-plane-cp-2", "ControlPlane");

/** GitHub's `pull_request.labels`, as `toJSON(github.event.pull_request.labels)` renders it. */
const labels = (...names: string[]) =>
  JSON.stringify(
    names.map((name, i) => ({
      id: 7000000000 + i,
      node_id: `LA_kwDOLabel${i}`,
      url: `https://api.github.com/repos/platform/hcloud-control-plane/labels/${encodeURIComponent(name)}`,
      name,
      color: "d93f0b",
      default: false,
      description: null,
    })),
  );

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * The workflows run `ts-node --transpile-only tools/preview-guard.ts`; one test runs exactly that
 * (`via: "ts-node"`). The others run the same transpilation (TypeScript's transpileModule with
 * the project's tsconfig, which is what ts-node --transpile-only does), made once per suite, with
 * node: starting ts-node costs about half a second of CPU per run.
 */
let compiledGuard: string | undefined;
function compileGuard(): string {
  if (compiledGuard) return compiledGuard;
  const configFile = path.join(repoRoot, "tsconfig.json");
  const { config } = ts.readConfigFile(configFile, (f) => ts.sys.readFile(f));
  const { options } = ts.parseJsonConfigFileContent(config, ts.sys, repoRoot, undefined, configFile);
  const { outputText } = ts.transpileModule(fs.readFileSync(guardScript, "utf8"), {
    compilerOptions: { ...options, noEmit: false },
    fileName: guardScript,
  });
  compiledGuard = path.join(tmp, "preview-guard.js");
  fs.writeFileSync(compiledGuard, outputText);
  return compiledGuard;
}

function guard(args: string[], env: Record<string, string> = {}, via: "ts-node" | "node" = "node"): Run {
  const inherited = { ...process.env };
  delete inherited.PREVIEW_GUARD_ALLOW; // only what a test sets
  const [command, ...first] =
    via === "ts-node" ? [tsNode, "--transpile-only", guardScript] : [process.execPath, compileGuard()];
  const result = spawnSync(command, [...first, ...args], {
    cwd: repoRoot,
    env: { ...inherited, ...env },
    encoding: "utf8",
    timeout: 30_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}
const preview = (name: string, ...rest: string[]) => guard(["--preview", fixture(name), ...rest]);

function expectStatus(run: Run, status: number): void {
  if (run.status !== status) {
    throw new Error(`exit status ${run.status}, expected ${status}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`);
  }
}

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "preview-guard-test-"));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});
const tmpFile = (name: string, text: string) => {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, text);
  return file;
};

describe("passes", () => {
  test("no changes: exit 0 with a one-line summary", () => {
    const run = preview("no-changes.json");
    expectStatus(run, 0);
    expect(run.stdout.trim().split("\n")).toHaveLength(1);
    expect(run.stdout).toMatch(
      /^preview-guard: OK: 62 steps \(same 62\); no guarded resource replaced or deleted, none updated disruptively\n$/,
    );
    expect(run.stderr).toBe("");
    // The workflows' own command says the same.
    expect(guard(["--preview", fixture("no-changes.json")], {}, "ts-node")).toEqual(run);
  });

  test("updates only (PrometheusRule spec, LB service health check): exit 0", () => {
    const run = preview("updates-only.json");
    expectStatus(run, 0);
    expect(run.stdout).toContain("update 2");
  });

  test("a resource outside the rules replaced (ConfigMap etcd-backup-script): exit 0", () => {
    expectStatus(preview("configmap-replaced.json"), 0);
  });
});

describe("refuses", () => {
  test("a control-plane server replaced (delete-replaced, replace, create-replacement; location)", () => {
    const run = preview("server-replaced.json");
    expectStatus(run, 1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toContain("REFUSED: this preview replaces or deletes 1 guarded resource(s)");
    expect(run.stderr).toContain("hcloud:index/server:Server control-plane-cp-2");
    expect(run.stderr).toContain(cp2);
    expect(run.stderr).toContain("ops:            delete-replaced, replace, create-replacement");
    expect(run.stderr).toContain("replaceReasons: location");
    expect(run.stderr).toContain("add the label 'allow-replace:control-plane-cp-2'");
    expect(run.stderr).toContain("--allow control-plane-cp-2");
    expect(run.stderr).toContain("PREVIEW_GUARD_ALLOW=control-plane-cp-2");
    // The load balancer target replaced with it is not guarded.
    expect(run.stderr).not.toContain("api-lb-target-cp-2\n");
  });

  test.each([
    ["join-replaced.json", "command:remote:Command bootstrap-cp-2-member", "replaceReasons: triggers"],
    ["bucket-deleted.json", "aws:s3/bucket:Bucket etcd-backup-bucket", "ops:            delete"],
    ["reserved-ip-replaced.json", "hcloud:index/floatingIp:FloatingIp reserved-ip-fip", "replaceReasons: homeLocation"],
    ["lb-deleted.json", "hcloud:index/loadBalancer:LoadBalancer api-lb", "ops:            delete"],
  ])("%s: exit 1 naming %s", (file, resource, detail) => {
    const run = preview(file);
    expectStatus(run, 1);
    expect(run.stderr).toContain("1 guarded resource(s)");
    expect(run.stderr).toContain(`${resource}\n`);
    expect(run.stderr).toContain(detail);
    const name = resource.split(" ")[1];
    expect(run.stderr).toContain(`'allow-replace:${name}'`);
  });
});

/** The names a refusal section of the guard's stderr lists, per kind. */
const refusedNames = (stderr: string) =>
  [...stderr.matchAll(/^ {2}\S+ (\S+)\n {4}urn:/gm)].map((m) => m[1]).sort((a, b) => a.localeCompare(b));
const cps = ["cp-1", "cp-2", "cp-3"];

describe("disruptive updates and release deletions (the real default `pulumi preview --json` shape)", () => {
  test.each<[string, string, string[], string]>([
    [
      "server-type-changed.json",
      "serverType ccx23 -> ccx33 on every server",
      cps.map((n) => `control-plane-cp-${n.slice(3)}`),
      "allow-update:",
    ],
    [
      "kubernetes-upgrade.json",
      "kubernetesVersion 1.34.2 -> 1.35.0 re-runs the upgrade steps",
      ["upgrade-cp-1", "upgrade-cp-2", "upgrade-cp-3"],
      "allow-update:",
    ],
    [
      "certificate-renewal.json",
      "a new certificateRenewal stamp re-runs the renewals",
      cps.map((n) => `certificates-${n}-renew`),
      "allow-update:",
    ],
    ["cni-changed.json", "cni cilium -> calico deletes the cilium release", ["cni-cilium"], "allow-replace:"],
    [
      "monitoring-removed.json",
      "monitoring existing-operator deletes kube-prometheus-stack",
      ["monitoring-kube-prometheus-stack"],
      "allow-replace:",
    ],
  ])("%s (%s): refused, naming exactly %j; allowed by their %s labels", (file, _what, names, label) => {
    const run = preview(file);
    expectStatus(run, 1);
    expect(refusedNames(run.stderr)).toEqual([...names].sort((a, b) => a.localeCompare(b)));
    for (const name of names) expect(run.stderr).toContain(`add the label '${label}${name}'`);
    const kindHeader =
      label === "allow-update:"
        ? `REFUSED: this preview updates in place, disruptively, ${names.length} guarded resource(s)`
        : `REFUSED: this preview replaces or deletes ${names.length} guarded resource(s)`;
    expect(run.stderr).toContain(kindHeader);

    const allowed = preview(file, "--labels-json", labels("infra", ...names.map((n) => `${label}${n}`)));
    expectStatus(allowed, 0);
    expect(allowed.stdout).toContain(`except ${names.length} allowed`);
    // All but one label: still refused, naming the one left.
    const partly = preview(file, "--labels-json", labels(...names.slice(1).map((n) => `${label}${n}`)));
    expectStatus(partly, 1);
    expect(refusedNames(partly.stderr)).toEqual([names[0]]);
  });

  test("the server type change says what is refused and why", () => {
    const run = preview("server-type-changed.json");
    expect(run.stderr).toContain("refused:        serverType changes");
    expect(run.stderr).toContain("diffReasons:    serverType");
    expect(run.stderr).toContain("every etcd member can go down together");
    expect(run.stderr).toContain(
      "--allow-update control-plane-cp-2 (or PREVIEW_GUARD_ALLOW_UPDATE=control-plane-cp-2)",
    );
  });

  test("one kind never allows the other: allow-replace does not allow a disruptive update, nor the reverse", () => {
    const names = cps.map((n) => `control-plane-${n}`);
    const wrong = preview(
      "server-type-changed.json",
      "--labels-json",
      labels(...names.map((n) => `allow-replace:${n}`)),
    );
    expectStatus(wrong, 1);
    expect(wrong.stderr).toContain("allowance 'control-plane-cp-1' matches no guarded replace or delete");
    const wrongReplace = preview("server-replaced.json", "--labels-json", labels("allow-update:control-plane-cp-2"));
    expectStatus(wrongReplace, 1);
    expect(wrongReplace.stderr).toContain("allowance 'control-plane-cp-2' matches no guarded disruptive update");
    expectStatus(preview("server-type-changed.json", "--allow-update", names.join(",")), 0);
    expectStatus(
      guard(["--preview", fixture("server-type-changed.json")], { PREVIEW_GUARD_ALLOW_UPDATE: names.join(",") }),
      0,
    );
    expectStatus(
      guard(["--preview", fixture("server-type-changed.json")], { PREVIEW_GUARD_ALLOW: names.join(",") }),
      1,
    );
  });

  test.each([
    ["server-labels-updated.json", "a server update that leaves serverType alone (labels)", "update 3"],
    [
      "kube-vip-updated.json",
      "a new kube-vip manifest: the install chain updates, its copies are replaced",
      "update 3",
    ],
    [
      "kubeadm-endpoint-changed.json",
      "an update of every node's setup command: it only finds its record, never runs kubeadm",
      "update 4",
    ],
  ])("harmless: %s (%s): exit 0", (file, _what, summary) => {
    const run = preview(file);
    expectStatus(run, 0);
    expect(run.stdout).toContain(summary);
    expect(run.stderr).toBe("");
  });

  test("the upgrade and renewal fixtures also update commands that are not refused", () => {
    const upgrade = parsePreview(fs.readFileSync(fixture("kubernetes-upgrade.json"), "utf8"));
    const updated = upgrade.steps.filter((s) => s.op === "update").map((s) => parseUrn(s.urn).name);
    expect(updated).toEqual(
      expect.arrayContaining(["upgrade-preflight", "access-admin-kubeconfig", "certificates-cp-1-expiry"]),
    );
    expect(findRefusals(upgrade.steps).map((r) => r.name)).toEqual(["upgrade-cp-1", "upgrade-cp-2", "upgrade-cp-3"]);
  });
});

describe("allowances", () => {
  test.each<[string, string[], Record<string, string>]>([
    ["--allow name", ["--allow", "control-plane-cp-2"], {}],
    ["--allow with other names", ["--allow", "api-lb, control-plane-cp-2"], {}],
    ["--allow full URN", ["--allow", cp2], {}],
    ["PREVIEW_GUARD_ALLOW", [], { PREVIEW_GUARD_ALLOW: "reserved-ip-fip,control-plane-cp-2" }],
    ["label allow-replace:<name>", ["--labels-json", labels("infra", "allow-replace:control-plane-cp-2")], {}],
  ])("the server replacement allowed by %s: exit 0", (_label, args, env) => {
    const run = guard(["--preview", fixture("server-replaced.json"), ...args], env);
    expectStatus(run, 0);
    expect(run.stdout).toContain(
      "allowed: hcloud:index/server:Server control-plane-cp-2 (delete-replaced, replace, create-replacement)",
    );
    expect(run.stdout).toContain("except 1 allowed");
  });

  test.each<[string, string[], Record<string, string>]>([
    ["--allow another server", ["--allow", "control-plane-cp-3"], {}],
    ["--allow a prefix of the name", ["--allow", "control-plane-cp"], {}],
    ["--allow another URN", ["--allow", cp2.replace("cp-2", "cp-3")], {}],
    ["PREVIEW_GUARD_ALLOW another resource", [], { PREVIEW_GUARD_ALLOW: "api-lb" }],
    ["a label for another resource", ["--labels-json", labels("allow-replace:control-plane-cp-3")], {}],
    ["the name as a label without the prefix", ["--labels-json", labels("control-plane-cp-2")], {}],
    ["no labels (push event: null)", ["--labels-json", "null"], {}],
  ])("an allowance that does not name it (%s): still refused", (_label, args, env) => {
    const run = guard(["--preview", fixture("server-replaced.json"), ...args], env);
    expectStatus(run, 1);
    expect(run.stderr).toContain("hcloud:index/server:Server control-plane-cp-2");
  });

  test("an allowance that matches nothing is reported, and allows only what it names", () => {
    const run = preview("bucket-deleted.json", "--allow", "control-plane-cp-2");
    expectStatus(run, 1);
    expect(run.stderr).toContain("allowance 'control-plane-cp-2' matches no guarded replace or delete");
    expect(run.stderr).toContain("etcd-backup-bucket");
  });
});

describe("bad input: exit 2, never fine", () => {
  test.each([
    ["malformed JSON", '{"steps": [{"op": "same",', "the preview is not JSON"],
    ["an empty file", "", "the preview is not JSON"],
    ["JSON null", "null", "the preview is not an object"],
    ["no steps", '{"changeSummary": {"same": 3}}', "no `steps` list"],
    ["steps not a list", '{"steps": {}}', "no `steps` list"],
    ["a step without op", '{"steps": [{"urn": "urn:pulumi:prod::p::t::n"}]}', "step 0 has no string `op` and `urn`"],
    ["a step with a bad URN", '{"steps": [{"op": "delete", "urn": "control-plane-cp-2"}]}', "not a Pulumi URN"],
  ])("%s", (name, text, message) => {
    const run = guard(["--preview", tmpFile(`${name.replace(/\W+/g, "-")}.json`, text)]);
    expectStatus(run, 2);
    expect(run.stderr).toContain(message);
    expect(run.stdout).toBe("");
  });

  test("a failed preview (diagnostics, no steps) from the fixtures", () => {
    const run = preview("preview-failed.json");
    expectStatus(run, 2);
    expect(run.stderr).toContain("no `steps` list");
  });

  test("a missing file, a missing --preview, an unknown flag, bad labels JSON", () => {
    expectStatus(guard(["--preview", path.join(tmp, "does-not-exist.json")]), 2);
    expect(guard(["--preview", path.join(tmp, "does-not-exist.json")]).stderr).toContain("cannot read");
    expect(guard([]).stderr).toContain("--preview <file> is required");
    expectStatus(guard([]), 2);
    expectStatus(preview("no-changes.json", "--force"), 2);
    expectStatus(preview("no-changes.json", "--allow"), 2);
    for (const bad of ["{not json", '{"name": "allow-replace:x"}', "[{}]"]) {
      expectStatus(preview("server-replaced.json", "--labels-json", bad), 2);
    }
  });
});

describe("rules and ops", () => {
  const step = (op: string, urn: string): PreviewStep => ({ op, urn });

  test("every rule has a reason; the rules select exactly the program's state-holding resources", async () => {
    for (const rule of guardedResources) expect(rule.why.length).toBeGreaterThan(20);
    const run = await runStack();
    // The resources only other settings make: calico, a certificate renewal, no monitoring release.
    const other = await runStack({
      cni: "calico",
      certificateRenewal: "2027-05-01",
      monitoring: "existing-operator",
      prometheusRuleLabels: ["release=platform-prometheus"],
    });
    const all = [...run.resources, ...other.resources.filter((r) => !run.resources.some((o) => o.urn === r.urn))];
    const names = (op: string) =>
      all
        .filter((r) => findRefusals([step(op, r.urn)]).length > 0)
        .map((r) => r.name)
        .sort();
    expect(names("replace")).toEqual([
      "api-lb",
      "bootstrap-cp-1-member",
      "bootstrap-cp-1-membership",
      "bootstrap-cp-2-member",
      "bootstrap-cp-2-membership",
      "bootstrap-cp-3-member",
      "bootstrap-cp-3-membership",
      "certificates-cp-1-renew",
      "certificates-cp-2-renew",
      "certificates-cp-3-renew",
      "cni-cilium",
      "cni-tigera-operator",
      "control-plane-cp-1",
      "control-plane-cp-2",
      "control-plane-cp-3",
      "etcd-backup-bucket",
      "monitoring-kube-prometheus-stack",
      "reserved-ip-fip",
      "upgrade-cp-1",
      "upgrade-cp-2",
      "upgrade-cp-3",
    ]);
    // Deleting a setup, an upgrade or a renewal step runs nothing (no `delete` script); the rest is refused.
    expect(names("delete")).toEqual(names("replace").filter((n) => !/^(upgrade-cp|certificates-cp)|-member$/.test(n)));
    // Every update of an upgrade or renewal step is refused (it runs the step when its version or
    // stamp changed); a step with no diff information of a server is refused too (fail closed).
    // A membership record's update only re-runs its read-only check; a setup's only finds its record.
    expect(names("update")).toEqual([
      "certificates-cp-1-renew",
      "certificates-cp-2-renew",
      "certificates-cp-3-renew",
      "control-plane-cp-1",
      "control-plane-cp-2",
      "control-plane-cp-3",
      "upgrade-cp-1",
      "upgrade-cp-2",
      "upgrade-cp-3",
    ]);
    // Every remote command the program registers is classified exactly once.
    for (const r of all.filter((x) => x.type === "command:remote:Command")) {
      const { parent, name } = parseUrn(r.urn);
      const classes = remoteCommands.filter((c) => c.parent === parent && c.name.test(name));
      expect({ name, classes: classes.length }).toEqual({ name, classes: 1 });
    }
    for (const c of remoteCommands) expect(c.why.length).toBeGreaterThan(20);
    // Every URN and type in the fixtures is one the program really forms.
    const types = new Map(all.map((r) => [r.urn, r.type]));
    for (const file of fs.readdirSync(fixtures)) {
      const doc = JSON.parse(fs.readFileSync(fixture(file), "utf8")) as { steps?: PreviewStep[] };
      for (const s of doc.steps ?? []) {
        expect({ file, urn: s.urn, known: types.has(s.urn) }).toEqual({ file, urn: s.urn, known: true });
        for (const state of [s.oldState, s.newState]) if (state) expect(state.type).toBe(types.get(s.urn));
        expect(parseUrn(s.urn).type).toBe(types.get(s.urn));
      }
    }
  });

  test("each op: replace/delete ops refused, others pass, an unknown op fails closed", () => {
    const destructive = Object.keys(stepOps).filter((op) => stepOps[op].destructive);
    expect(destructive.sort()).toEqual(
      [
        "create-replacement",
        "delete",
        "delete-replaced",
        "discard-replaced",
        "import-replacement",
        "read-replacement",
        "remove-pending-replace",
        "replace",
      ].sort(),
    );
    for (const op of Object.keys(stepOps)) {
      expect({ op, refused: findRefusals([step(op, cp2)]).length }).toEqual({
        op,
        // A server update that says nothing about what changes is refused (fail closed).
        refused: destructive.includes(op) || op === "update" ? 1 : 0,
      });
    }
    expect(findRefusals([step("frobnicate", cp2)])[0].ops).toEqual(["frobnicate (unknown op, treated as destructive)"]);
    expect(findRefusals([step("toString", cp2)])).toHaveLength(1);
  });

  test("commands: only the kubeadm init/join, upgrade and renewal commands are guarded, by component", () => {
    const command = (name: string, parent = "ClusterBootstrap") => urnOf("command:remote:Command", name, parent);
    for (const op of ["replace", "update"]) {
      expect(findRefusals([step(op, command("bootstrap-cp-1-member"))])).toHaveLength(op === "replace" ? 1 : 0);
      expect(findRefusals([step(op, command("bootstrap-cp-3-member"))])).toHaveLength(op === "replace" ? 1 : 0);
      expect(findRefusals([step(op, command("bootstrap-cp-3-membership"))])).toHaveLength(op === "replace" ? 1 : 0);
      expect(findRefusals([step(op, command("upgrade-cp-2", "ControlPlaneUpgrade"))])).toHaveLength(1);
      expect(findRefusals([step(op, command("certificates-cp-2-renew", "KubeadmCertificates"))])).toHaveLength(1);
      for (const [name, parent] of [
        ["bootstrap-cp-2-kubeadm-join", "ClusterBootstrap"],
        // Earlier versions' own step, gone from the program: stacks created by them see it go.
        ["bootstrap-cp-1-prepared", "ClusterBootstrap"],
        ["bootstrap-cp-2-kube-vip-install", "ClusterBootstrap"],
        ["bootstrap-cp-2-reserved-ip-failover", "ClusterBootstrap"],
        ["upgrade-preflight", "ControlPlaneUpgrade"],
        ["certificates-cp-1-expiry", "KubeadmCertificates"],
        ["access-admin-kubeconfig", "ClusterAccess"],
        // A name like a guarded one under another component is another command.
        ["upgrade-cp-1", "ClusterBootstrap"],
      ]) {
        expect({ name, op, refused: findRefusals([step(op, command(name, parent))]) }).toEqual({
          name,
          op,
          refused: [],
        });
      }
    }
    // The first preview of a stack created before the wait moved into the setup command deletes
    // its prepared steps: no kubeadm state, nothing refused.
    expect(findRefusals([step("delete", command("bootstrap-cp-2-prepared"))])).toEqual([]);
    // A CopyToRemote named like a join is another type.
    expect(findRefusals([step("delete", urnOf("command:remote:CopyToRemote", "x-join", "ClusterBootstrap"))])).toEqual(
      [],
    );
  });

  test("a server update is read from detailedDiff, diffReasons or the inputs; one without any is refused", () => {
    const update = (fields: Partial<PreviewStep>): PreviewStep => ({ op: "update", urn: cp2, ...fields });
    const refused = (s: PreviewStep) => findRefusals([s]).map((r) => r.detail);
    expect(refused(update({ detailedDiff: { serverType: { kind: "update", inputDiff: false } } }))).toEqual([
      "serverType changes",
    ]);
    expect(refused(update({ detailedDiff: null, diffReasons: ["serverType"] }))).toEqual(["serverType changes"]);
    const inputs = (serverType: string) => ({ type: "hcloud:index/server:Server", inputs: { serverType, name: "x" } });
    expect(refused(update({ oldState: inputs("ccx23"), newState: inputs("ccx33") }))).toEqual(["serverType changes"]);
    expect(refused(update({ oldState: inputs("ccx23"), newState: inputs("ccx23") }))).toEqual([]);
    expect(refused(update({ diffReasons: ["labels"], detailedDiff: { "labels.team": { kind: "add" } } }))).toEqual([]);
    expect(refused(update({}))).toEqual(["the preview does not say which properties change"]);
  });

  test("parsePreview keeps changeSummary; one refusal per resource across its steps", () => {
    const doc = parsePreview(fs.readFileSync(fixture("server-replaced.json"), "utf8"));
    expect(doc.changeSummary).toEqual({ replace: 2, same: 60 });
    expect(findRefusals(doc.steps)).toEqual([
      expect.objectContaining({ name: "control-plane-cp-2", replaceReasons: ["location"], diffReasons: ["location"] }),
    ]);
  });
});
