/**
 * The GitHub workflows (.github/workflows/) read as data, and scripts/ops/check-control-plane.sh
 * run for real with bash against a fake `kubectl` on PATH (as tests/nodeScripts.test.ts does).
 *
 * What this cannot prove: that GitHub runs the workflows as read here, that pulumi/actions@v6
 * behaves as documented, and that a real kubectl and etcd print what the fake prints. The proof
 * of those is a pull request and a deployment on GitHub.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { parse } from "yaml";
import {
  etcdHealthCall,
  expectShellcheckClean,
  expectStrictBash,
  kubectlCall,
  readyzCall,
  repoRoot,
} from "./support/nodeSandbox";
import { versions } from "../components/versions";

const workflowsDir = path.join(repoRoot, ".github", "workflows");

interface Step {
  id?: string;
  name?: string;
  uses?: string;
  run?: string;
  with?: Record<string, unknown>;
  env?: Record<string, string>;
  if?: string;
}
interface Job {
  name?: string;
  needs?: string | string[];
  if?: string;
  "runs-on"?: unknown;
  container?: unknown;
  permissions?: Record<string, string>;
  strategy?: { "max-parallel"?: number; "fail-fast"?: boolean; matrix?: { stack?: string[] } };
  env?: Record<string, string>;
  steps: Step[];
}
interface Workflow {
  name: string;
  on: Record<string, unknown>;
  permissions?: Record<string, string>;
  concurrency?: { group: string; "cancel-in-progress": boolean };
  jobs: Record<string, Job>;
}

const workflow = (file: string) =>
  parse(fs.readFileSync(path.join(workflowsDir, file), "utf8"), { strict: true, uniqueKeys: true }) as Workflow;
const pullRequest = workflow("pull-request.yml");
const deploy = workflow("deploy.yml");

/** The region stacks: one per Pulumi.<stack>.yaml in the repository root. */
const stackFiles = fs
  .readdirSync(repoRoot)
  .map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1])
  .filter((s): s is string => s !== undefined)
  .sort();

const stepIndex = (job: Job, predicate: (s: Step) => boolean, what: string) => {
  const i = job.steps.findIndex(predicate);
  if (i < 0) throw new Error(`no step ${what} in job ${job.name}`);
  return i;
};
const allSteps = [pullRequest, deploy].flatMap((w) => Object.values(w.jobs).flatMap((j) => j.steps));

describe("both workflows", () => {
  test("the stack list is not empty and prod is in it", () => {
    expect(stackFiles).toContain("prod");
  });

  test("no `run` script inlines a ${{ }} expression (values reach scripts through env)", () => {
    for (const step of allSteps.filter((s) => s.run))
      expect({ run: step.run }).toEqual({ run: expect.not.stringContaining("${{") });
  });

  test("every action is pinned to a major version; Pulumi through pulumi/actions@v6", () => {
    const uses = allSteps.flatMap((s) => (s.uses ? [s.uses] : []));
    for (const u of uses) expect(u).toMatch(/^[\w-]+\/[\w-]+@v\d+$/);
    expect(uses.filter((u) => u.startsWith("pulumi/actions@"))).toEqual(["pulumi/actions@v6", "pulumi/actions@v6"]);
  });

  test("the Pulumi CLI is pinned to the @pulumi/pulumi version of package.json", () => {
    const sdk = (
      JSON.parse(fs.readFileSync(path.join(repoRoot, "package.json"), "utf8")) as {
        dependencies: Record<string, string>;
      }
    ).dependencies["@pulumi/pulumi"];
    const pulumiSteps = allSteps.filter((s) => s.uses?.startsWith("pulumi/actions@"));
    expect(pulumiSteps).toHaveLength(2);
    for (const step of pulumiSteps) expect(step.with?.["pulumi-version"]).toBe(sdk);
  });

  test("least privilege: read-only by default, no xtrace in any script", () => {
    for (const w of [pullRequest, deploy]) expect(w.permissions).toEqual({ contents: "read" });
    for (const step of allSteps.filter((s) => s.run)) expect(step.run).not.toMatch(/set -[a-z]*x|set -o xtrace/);
  });
});

describe("pull-request.yml", () => {
  const { offline, preview } = pullRequest.jobs;

  test("runs on pull requests, again when labels change, and on nothing else", () => {
    expect(Object.keys(pullRequest.on)).toEqual(["pull_request"]);
    expect(pullRequest.on.pull_request).toEqual({
      types: ["opened", "synchronize", "reopened", "labeled", "unlabeled"],
    });
    expect(Object.keys(pullRequest.jobs).sort()).toEqual(["offline", "preview"]);
  });

  test("offline: no secret anywhere, runs for forks, npm test and the plan of every stack, uploads the plans", () => {
    expect(JSON.stringify(offline)).not.toMatch(/secrets\./);
    expect(offline.if).toBeUndefined();
    expect(offline.needs).toBeUndefined();
    const runs = offline.steps.map((s) => s.run ?? "");
    expect(runs).toContain("npm test");
    const plan = offline.steps[stepIndex(offline, (s) => /npm run plan/.test(s.run ?? ""), "npm run plan")];
    expect(plan.run).toContain("for file in Pulumi.*.yaml");
    expect(plan.run).toContain('npm run plan -- --stack "$stack" --out plan-output');
    const upload = offline.steps[stepIndex(offline, (s) => s.uses === "actions/upload-artifact@v4", "upload")];
    expect(upload.with).toMatchObject({ path: "plan-output/", "if-no-files-found": "error" });
    expect(stepIndex(offline, (s) => s === upload, "upload")).toBeGreaterThan(offline.steps.indexOf(plan));
  });

  test("the plan loop plans exactly the Pulumi.<stack>.yaml stacks", () => {
    const plan = offline.steps.find((s) => /npm run plan/.test(s.run ?? ""))!;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "workflow-plan-"));
    try {
      for (const f of ["Pulumi.yaml", ...stackFiles.map((s) => `Pulumi.${s}.yaml`), "Pulumi.other.yml"]) {
        fs.writeFileSync(path.join(dir, f), "");
      }
      // `npm` is a function that prints its arguments.
      const script = `set -euo pipefail\nnpm() { echo "$*"; }\n${plan.run}`;
      const result = spawnSync("/bin/bash", ["-c", script], { cwd: dir, encoding: "utf8" });
      expect(result.status).toBe(0);
      expect(result.stdout.trim().split("\n")).toEqual(
        stackFiles.map((s) => `run plan -- --stack ${s} --out plan-output --quiet`),
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("preview: after offline, only for branches of this repository, over every stack", () => {
    expect(preview.needs).toBe("offline");
    expect(preview.if).toBe("github.event.pull_request.head.repo.full_name == github.repository");
    expect(preview.strategy?.matrix?.stack).toEqual(stackFiles);
    expect(preview.strategy?.["fail-fast"]).toBe(false);
    expect(preview.permissions).toEqual({ contents: "read", "pull-requests": "write" });
    expect(preview.env).toEqual({
      PULUMI_ACCESS_TOKEN: "${{ secrets.PULUMI_ACCESS_TOKEN }}",
      STACK: "${{ matrix.stack }}",
    });
  });

  test("preview: pulumi/actions@v6 preview with diff and a PR comment, then the JSON preview, then the guard", () => {
    const action = stepIndex(preview, (s) => s.uses === "pulumi/actions@v6", "pulumi/actions@v6");
    expect(preview.steps[action].with).toEqual({
      "pulumi-version": expect.any(String),
      command: "preview",
      "stack-name": "${{ matrix.stack }}",
      diff: true,
      "comment-on-pr": true,
      "github-token": "${{ secrets.GITHUB_TOKEN }}",
    });
    const json = stepIndex(preview, (s) => /pulumi preview .*--json/.test(s.run ?? ""), "pulumi preview --json");
    expect(preview.steps[json].run).toBe('pulumi preview --stack "$STACK" --json > preview.json');
    const guard = stepIndex(preview, (s) => /preview-guard\.ts/.test(s.run ?? ""), "the guard");
    expect(action).toBeLessThan(json);
    expect(json).toBeLessThan(guard);
    expect(preview.steps[guard].run).toBe(
      'npx ts-node --transpile-only tools/preview-guard.ts --preview preview.json --labels-json "$PR_LABELS"',
    );
    expect(preview.steps[guard].env).toEqual({ PR_LABELS: "${{ toJSON(github.event.pull_request.labels) }}" });
    expect(preview.steps[guard].if).toBeUndefined();
    expect(fs.existsSync(path.join(repoRoot, "tools", "preview-guard.ts"))).toBe(true);
  });
});

describe("deploy.yml", () => {
  const { deploy: job } = deploy.jobs;

  test("runs on pushes to main only, one deployment at a time, never cancelled midway", () => {
    expect(deploy.on).toEqual({ push: { branches: ["main"] } });
    expect(Object.keys(deploy.jobs)).toEqual(["deploy"]);
    expect(deploy.concurrency).toEqual({ group: "deploy", "cancel-in-progress": false });
  });

  test("region by region: a matrix over every stack, max-parallel 1, fail-fast", () => {
    expect(job.strategy).toEqual({ "max-parallel": 1, "fail-fast": true, matrix: { stack: stackFiles } });
  });

  const step = (what: string, predicate: (s: Step) => boolean) => stepIndex(job, predicate, what);
  const labelsStep = () => step("labels of the merged pull request", (s) => s.id === "labels");
  const previewStep = () => step("pulumi preview --save-plan", (s) => /pulumi preview\b/.test(s.run ?? ""));
  const guardStep = () => step("the guard", (s) => /preview-guard\.ts/.test(s.run ?? ""));
  const upStep = () => step("pulumi up --plan", (s) => /pulumi up\b/.test(s.run ?? ""));
  const checkStep = () => step("the health check", (s) => /check-control-plane\.sh/.test(s.run ?? ""));

  test("the CLI from pulumi/actions@v6 without a command (install only); no `up` through the action", () => {
    const install = step("pulumi/actions@v6", (s) => s.uses === "pulumi/actions@v6");
    // Only the pinned version: no `command`, so the action installs the CLI and runs nothing.
    expect(Object.keys(job.steps[install].with ?? {})).toEqual(["pulumi-version"]);
    expect(install).toBeLessThan(labelsStep());
  });

  test("preview --json --save-plan, then the guard on that preview, then up --plan of that plan, then the health check", () => {
    expect(job.steps[previewStep()].run).toBe(
      'pulumi preview --stack "$STACK" --json --save-plan plan.json > preview.json',
    );
    expect(job.steps[guardStep()].run).toBe(
      'npx ts-node --transpile-only tools/preview-guard.ts --preview preview.json --labels-json "$MERGED_PR_LABELS"',
    );
    expect(job.steps[guardStep()].env).toEqual({ MERGED_PR_LABELS: "${{ steps.labels.outputs.labels }}" });
    expect(job.steps[upStep()].run).toBe('pulumi up --stack "$STACK" --plan plan.json --yes --diff');
    expect([labelsStep(), previewStep(), guardStep(), upStep(), checkStep()]).toEqual([
      labelsStep(),
      labelsStep() + 1,
      labelsStep() + 2,
      labelsStep() + 3,
      labelsStep() + 4,
    ]);
    // Exactly one preview and one up: nothing else applies changes.
    expect(job.steps.filter((s) => /pulumi (up|preview)\b/.test(s.run ?? ""))).toHaveLength(2);
    expect(job.steps.filter((s) => s.with?.command !== undefined)).toEqual([]);
  });

  test("a failing guard stops the region (and, fail-fast with max-parallel 1, the regions after it)", () => {
    // A step runs only when every step before it succeeded, unless an `if:` or
    // `continue-on-error` says otherwise: none of the steps from the labels to the check has one.
    for (const i of [labelsStep(), previewStep(), guardStep(), upStep(), checkStep()]) {
      const s = job.steps[i] as Step & { "continue-on-error"?: unknown };
      expect({ step: s.name, if: s.if, continueOnError: s["continue-on-error"] }).toEqual({
        step: s.name,
        if: undefined,
        continueOnError: undefined,
      });
    }
    expect((job as Job & { "continue-on-error"?: unknown })["continue-on-error"]).toBeUndefined();
    expect(job.strategy).toMatchObject({ "max-parallel": 1, "fail-fast": true });
    // The guard exits 1 on a refusal and 2 on bad input: both fail the step.
    expect(fs.existsSync(path.join(repoRoot, "tools", "preview-guard.ts"))).toBe(true);
  });

  test("the labels step: read-only token for pull requests, the merged pull request's labels as JSON", () => {
    expect(job.permissions).toEqual({ contents: "read", "pull-requests": "read" });
    const labels = job.steps[labelsStep()];
    expect(labels.env).toEqual({
      GH_TOKEN: "${{ github.token }}",
      REPOSITORY: "${{ github.repository }}",
      SHA: "${{ github.sha }}",
    });
    // Run the step's script with `curl` a function answering as GitHub's "List pull requests
    // associated with a commit" does (a JSON array of pull requests, each with merged_at,
    // merge_commit_sha and labels [{id, node_id, url, name, color, default, description}]):
    // the pull request merged as this commit, plus an open one that also contains the commit.
    const sha = "5d1c0e7a9b3f4d2e8c6a1b0f9e8d7c6b5a4f3e2d";
    const label = (name: string) => ({
      id: 1,
      node_id: "LA_x",
      url: `https://api.github.com/repos/platform/hcloud-control-plane/labels/${name}`,
      name,
      color: "d93f0b",
      default: false,
      description: null,
    });
    const response = JSON.stringify([
      {
        number: 41,
        state: "closed",
        merged_at: "2026-05-02T10:00:00Z",
        merge_commit_sha: sha,
        labels: [label("allow-update:upgrade-cp-1"), label("infra")],
      },
      {
        number: 42,
        state: "open",
        merged_at: null,
        merge_commit_sha: "0000000000000000000000000000000000000000",
        labels: [label("allow-replace:api-lb")],
      },
    ]);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "workflow-labels-"));
    try {
      const output = path.join(dir, "github-output");
      fs.writeFileSync(path.join(dir, "response.json"), response);
      const script = `curl() { printf '%s\\n' "$*" >"${dir}/curl-args"; cat "${dir}/response.json"; }\n${labels.run}`;
      const result = spawnSync("/bin/bash", ["-c", script], {
        env: {
          PATH: process.env.PATH,
          HOME: dir,
          GH_TOKEN: "ghs_secret-token",
          REPOSITORY: "platform/hcloud-control-plane",
          SHA: sha,
          GITHUB_OUTPUT: output,
        },
        encoding: "utf8",
        timeout: 10_000,
      });
      expect({ status: result.status, stderr: result.stderr }).toEqual({ status: 0, stderr: "" });
      expect(result.stdout).not.toContain("ghs_secret-token");
      expect(result.stdout).toContain("labels of the merged pull request: allow-update:upgrade-cp-1, infra");
      const written = fs.readFileSync(output, "utf8");
      expect(written).toMatch(/^labels=\[.*\]\n$/);
      const parsed = JSON.parse(written.slice("labels=".length)) as { name: string }[];
      expect(parsed.map((l) => l.name)).toEqual(["allow-update:upgrade-cp-1", "infra"]);
      const curlArgs = fs.readFileSync(path.join(dir, "curl-args"), "utf8");
      expect(curlArgs).toContain(`https://api.github.com/repos/platform/hcloud-control-plane/commits/${sha}/pulls`);
      expect(curlArgs).toMatch(/--max-time \d+/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the health check with the stack's kubeconfig in a private file, never printed", () => {
    const check = checkStep();
    expect(job.steps[check].if).toBeUndefined();
    const lines = job.steps[check].run!.trim().split("\n");
    expect(lines).toEqual([
      "set -euo pipefail",
      "umask 077",
      'kubeconfig="$RUNNER_TEMP/kubeconfig-$STACK"',
      "trap 'rm -f \"$kubeconfig\"' EXIT",
      'pulumi stack output kubeconfig --show-secrets --stack "$STACK" > "$kubeconfig"',
      'expected="$(pulumi stack output nodes --json --stack "$STACK" | jq length)"',
      'bash scripts/ops/check-control-plane.sh --timeout 600 "$kubeconfig" "$expected"',
    ]);
    // Nothing reads the file back to the log.
    expect(job.steps[check].run).not.toMatch(/\b(cat|echo|printf|tee|head|tail|less)\b/);
    expect(job.env).toEqual({
      PULUMI_ACCESS_TOKEN: "${{ secrets.PULUMI_ACCESS_TOKEN }}",
      STACK: "${{ matrix.stack }}",
    });
  });
});

// ---------------------------------------------------------------------------------------------
// backup-image.yml and the image it builds (scripts/jobs/images/etcd-backup.Dockerfile).

const backupImageFile = path.join(workflowsDir, "backup-image.yml");
const backupImage = workflow("backup-image.yml");
const dockerfilePath = path.join(repoRoot, "scripts", "jobs", "images", "etcd-backup.Dockerfile");
const dockerfile = fs.readFileSync(dockerfilePath, "utf8");
/** The Dockerfile's instructions, continuation lines joined. */
const instructions = dockerfile
  .replace(/\\\n/g, " ")
  .split("\n")
  .filter((l) => l.trim() !== "" && !l.startsWith("#"));
/** GitHub's `paths` filter for the patterns used here: `*` is any run of characters but `/`. */
const globMatches = (pattern: string, file: string) =>
  new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*")}$`).test(file);
const dockerArg = (name: string) => {
  const found = instructions.map((l) => new RegExp(`^ARG ${name}=(\\S+)$`).exec(l)?.[1]).filter(Boolean);
  if (found.length !== 1) throw new Error(`expected one ARG ${name}=... in the Dockerfile, found ${found.length}`);
  return found[0]!;
};

describe("backup-image.yml", () => {
  const [jobName, ...otherJobs] = Object.keys(backupImage.jobs);
  const job = backupImage.jobs[jobName];
  const step = (name: string) => {
    const found = job.steps.find((s) => s.name === name || s.uses?.startsWith(`${name}@`));
    if (!found) throw new Error(`no step ${name}`);
    return found;
  };

  test("runs on pushes to main that change the image's inputs, and by hand; on nothing else", () => {
    expect(otherJobs).toEqual([]);
    expect(Object.keys(backupImage.on).sort()).toEqual(["push", "workflow_dispatch"]);
    const push = backupImage.on.push as { branches: string[]; paths: string[] };
    expect(push.branches).toEqual(["main"]);
    // Every file the image copies or is built from is a trigger.
    const copied = instructions
      .filter((l) => l.startsWith("COPY ") && !l.startsWith("COPY --from"))
      .flatMap((l) => l.split(/\s+/).slice(1, -1));
    for (const file of ["scripts/jobs/images/etcd-backup.Dockerfile", ".github/workflows/backup-image.yml", ...copied])
      expect([file, push.paths.some((p) => globMatches(p, file))]).toEqual([file, true]);
  });

  test("least privilege: read-only by default; the job may only read the code and write packages", () => {
    expect(backupImage.permissions).toEqual({ contents: "read" });
    expect(job.permissions).toEqual({ contents: "read", packages: "write" });
    expect(JSON.stringify(backupImage)).not.toMatch(/secrets\.(?!GITHUB_TOKEN\b)/);
    expect(step("docker/login-action").with).toEqual({
      registry: "ghcr.io",
      username: "${{ github.actor }}",
      password: "${{ secrets.GITHUB_TOKEN }}",
    });
    expect(step("actions/checkout").with).toEqual({ "persist-credentials": false });
  });

  test("every action is pinned by a full commit SHA, with the release it is in a comment", () => {
    const uses = job.steps.flatMap((s) => (s.uses ? [s.uses] : []));
    expect(uses.map((u) => u.split("@")[0])).toEqual([
      "actions/checkout",
      "docker/setup-buildx-action",
      "docker/login-action",
      "docker/build-push-action",
    ]);
    for (const u of uses) expect(u).toMatch(/^[\w-]+\/[\w-]+@[0-9a-f]{40}$/);
    // YAML drops comments: read each `uses:` line of the file itself.
    const lines = fs
      .readFileSync(backupImageFile, "utf8")
      .split("\n")
      .filter((l) => /^\s*(-\s+)?uses:/.test(l));
    expect(lines).toHaveLength(uses.length);
    for (const line of lines) expect(line).toMatch(/uses: [\w-]+\/[\w-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$/);
  });

  test("no `run` script inlines a ${{ }} expression or traces itself", () => {
    for (const s of job.steps.filter((x) => x.run)) {
      expect({ run: s.run }).toEqual({ run: expect.not.stringContaining("${{") });
      expect(s.run).not.toMatch(/set -[a-z]*x|set -o xtrace/);
    }
  });

  test("builds the Dockerfile from the repository root and pushes it tagged with the commit", () => {
    const build = step("Build and push");
    expect(build.uses).toMatch(/^docker\/build-push-action@/);
    expect(build.id).toBe("build");
    expect(build.with).toEqual({
      context: ".",
      file: path.relative(repoRoot, dockerfilePath),
      platforms: "linux/amd64",
      push: true,
      tags: "${{ steps.name.outputs.image }}:${{ github.sha }}",
      "no-cache": true,
      pull: true,
    });
    expect(step("Digest and backupImage").env).toEqual({
      IMAGE: "${{ steps.name.outputs.image }}",
      DIGEST: "${{ steps.build.outputs.digest }}",
    });
  });

  /** Runs a step's script with bash, `docker` a fake on PATH; returns status, output and GITHUB_OUTPUT/summary. */
  function runStep(s: Step, env: Record<string, string>, fakeDocker = "") {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "backup-image-step-"));
    try {
      const bin = path.join(dir, "bin");
      fs.mkdirSync(bin);
      if (fakeDocker) fs.writeFileSync(path.join(bin, "docker"), fakeDocker, { mode: 0o755 });
      const output = path.join(dir, "github-output");
      const summary = path.join(dir, "step-summary");
      fs.writeFileSync(output, "");
      fs.writeFileSync(summary, "");
      const result = spawnSync("/bin/bash", ["-c", s.run!], {
        env: {
          PATH: `${bin}:${process.env.PATH}`,
          HOME: dir,
          GITHUB_OUTPUT: output,
          GITHUB_STEP_SUMMARY: summary,
          ...env,
        },
        encoding: "utf8",
        timeout: 10_000,
      });
      return {
        status: result.status,
        stdout: result.stdout,
        stderr: result.stderr,
        output: fs.readFileSync(output, "utf8"),
        summary: fs.readFileSync(summary, "utf8"),
        dockerCalls: fs.existsSync(path.join(dir, "docker-calls"))
          ? fs.readFileSync(path.join(dir, "docker-calls"), "utf8")
          : "",
      };
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  test("the image is ghcr.io/<owner>/<repo>/etcd-backup, lower case as the registry requires", () => {
    const run = runStep(step("Image name"), { REPOSITORY: "Platform/HCloud-Control-Plane" });
    expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 0, stderr: "" });
    expect(run.output).toBe("image=ghcr.io/platform/hcloud-control-plane/etcd-backup\n");
  });

  // A fake `docker buildx imagetools inspect NAME --format '{{json .Manifest.Digest}}'`: buildx
  // renders the Go template over the inspected image, whose .Manifest is the root descriptor of
  // NAME (buildx docs/reference/buildx_imagetools_inspect.md, "--format"); `json` prints the
  // digest as a JSON string. A name by digest resolves to that digest, unless the registry has
  // something else (FAKE_SERVED) or nothing (FAKE_MISSING: buildx exits 1, "not found").
  const fakeDocker = `#!/usr/bin/env bash
printf '%s\\n' "$*" >>"$HOME/docker-calls"
[[ "$1 $2 $3" == "buildx imagetools inspect" ]] || { echo "fake docker: unexpected $*" >&2; exit 99; }
name="$4"
[[ "$5 $6" == "--format {{json .Manifest.Digest}}" ]] || { echo "fake docker: unexpected format $5 $6" >&2; exit 99; }
if [[ -n "\${FAKE_MISSING:-}" ]]; then echo "ERROR: \${name}: not found" >&2; exit 1; fi
printf '"%s"\\n' "\${FAKE_SERVED:-\${name##*@}}"
`;
  const digest = `sha256:${"3f".repeat(32)}`;
  const image = "ghcr.io/platform/hcloud-control-plane/etcd-backup";

  test("prints the digest the registry serves and the backupImage value, in the log and the summary", () => {
    const run = runStep(step("Digest and backupImage"), { IMAGE: image, DIGEST: digest }, fakeDocker);
    expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 0, stderr: "" });
    expect(run.dockerCalls).toBe(`buildx imagetools inspect ${image}@${digest} --format {{json .Manifest.Digest}}\n`);
    expect(run.stdout).toContain(`digest: ${digest}\n`);
    expect(run.stdout).toContain(`backupImage: ${image}@${digest}\n`);
    expect(run.summary).toContain(`pulumi config set backupImage ${image}@${digest}\n`);
  });

  test("fails without a digest, when the registry serves another or nothing, printing no backupImage", () => {
    const pushed: Record<string, string> = { IMAGE: image, DIGEST: digest };
    for (const [env, says] of [
      [{ DIGEST: "" }, "build-push-action printed no image digest"],
      [{ DIGEST: "sha256:abc" }, "build-push-action printed no image digest"],
      [
        { FAKE_SERVED: `sha256:${"0".repeat(64)}` },
        `the registry serves ${image}@${digest} as 'sha256:${"0".repeat(64)}'`,
      ],
      [{ FAKE_MISSING: "1" }, "not found"],
    ] as const) {
      const run = runStep(step("Digest and backupImage"), { ...pushed, ...env }, fakeDocker);
      expect({ env, status: run.status }).toEqual({ env, status: 1 });
      expect(run.stderr).toContain(says);
      expect(run.stdout).not.toContain("backupImage:");
      expect(run.summary).toBe("");
    }
  });
});

describe("scripts/jobs/images/etcd-backup.Dockerfile", () => {
  test("every stage starts from debian:bookworm-slim pinned by digest", () => {
    expect(dockerArg("DEBIAN_IMAGE")).toMatch(/^debian:bookworm-slim@sha256:[0-9a-f]{64}$/);
    const froms = instructions.filter((l) => /^FROM\s/i.test(l));
    expect(froms).toEqual(["FROM ${DEBIAN_IMAGE} AS fetch", "FROM ${DEBIAN_IMAGE}"]);
  });

  test("every Debian package is pinned to a version", () => {
    const installs = instructions.filter((l) => l.includes("apt-get install"));
    expect(installs).toHaveLength(2);
    const packages = installs.flatMap((l) =>
      l
        .split(/apt-get install/)[1]
        .split("&&")[0]
        .trim()
        .split(/\s+/)
        .filter((w) => !w.startsWith("-")),
    );
    expect(packages.length).toBeGreaterThan(0);
    for (const p of packages) expect(p).toMatch(/^[a-z0-9][a-z0-9+.-]+=[0-9][A-Za-z0-9.+~:-]*$/);
  });

  test("etcdctl/etcdutl are the etcd kubeadm deploys, and each download is checked against its sha256 first", () => {
    // registry.k8s.io/etcd:3.6.5-0 -> 3.6.5
    expect(dockerArg("ETCD_VERSION")).toBe(/:(\d+\.\d+\.\d+)-\d+$/.exec(versions.etcdImage)![1]);
    for (const name of ["ETCD_SHA256_AMD64", "ETCD_SHA256_ARM64", "KUBECTL_SHA256_AMD64", "KUBECTL_SHA256_ARM64"])
      expect(dockerArg(name)).toMatch(/^[0-9a-f]{64}$/);
    const fetch = instructions.find((l) => l.includes("etcd.tar.gz"))!;
    const order = [
      "-o etcd.tar.gz",
      `"\${etcd_sha256}  etcd.tar.gz" | sha256sum --strict -c -`,
      "tar -xzf etcd.tar.gz",
      "-o kubectl",
      `"\${kubectl_sha256}  kubectl" | sha256sum --strict -c -`,
      "install -D",
    ];
    const at = order.map((s) => fetch.indexOf(s));
    expect(at.every((i) => i >= 0)).toBe(true);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
    // An architecture without pinned checksums fails instead of downloading unchecked.
    expect(fetch).toContain(`*) echo "no pinned checksums for architecture '$arch'" >&2; exit 1 ;;`);
  });

  test("kubectl is within one minor of the default kubernetesVersion", () => {
    const pulumiYaml = parse(fs.readFileSync(path.join(repoRoot, "Pulumi.yaml"), "utf8")) as {
      config: Record<string, { default?: unknown }>;
    };
    const minor = (v: string) => Number(v.split(".")[1]);
    const kubernetes = String(pulumiYaml.config.kubernetesVersion.default);
    expect(Math.abs(minor(dockerArg("KUBECTL_VERSION")) - minor(kubernetes))).toBeLessThanOrEqual(1);
  });

  test("carries every tool the job scripts require, and the tools the API jobs use", () => {
    // Where each tool comes from: a pinned package, the checked downloads, or the base image
    // (Essential packages of debian:bookworm-slim: bash, coreutils, tar).
    const source: Record<string, RegExp> = {
      etcdctl: /install -D -m 0755 -t \/fetch\/bin etcdctl etcdutl kubectl/,
      etcdutl: /install -D -m 0755 -t \/fetch\/bin etcdctl etcdutl kubectl/,
      kubectl:
        /COPY --from=fetch \/fetch\/bin\/etcdctl \/fetch\/bin\/etcdutl \/fetch\/bin\/kubectl \/usr\/local\/bin\//,
      aws: /\bawscli=/,
      age: /\bage=/,
      zstd: /\bzstd=/,
      jq: /\bjq=/,
      curl: /\bcurl=/,
      openssl: /\bopenssl=/,
      "ssh-keygen": /\bopenssh-client=/,
    };
    // coreutils, tar, grep and mawk (awk): Priority required, so in the Debian slim base image.
    const base = [
      "sha256sum",
      "base64",
      "awk",
      "grep",
      "timeout",
      "tail",
      "date",
      "sleep",
      "tar",
      "od",
      "mkfifo",
      "truncate",
      "dd",
    ];
    const required = fs
      .readdirSync(path.join(repoRoot, "scripts", "jobs"))
      .filter((f) => f.endsWith(".sh"))
      .flatMap((f) =>
        [
          ...fs.readFileSync(path.join(repoRoot, "scripts", "jobs", f), "utf8").matchAll(/require_tools ([\w -]+)/g),
        ].flatMap((m) => m[1].trim().split(/\s+/)),
      );
    expect(required).toContain("etcdctl");
    for (const tool of new Set([...required, "kubectl", "jq", "openssl", "curl", "ssh-keygen"])) {
      if (base.includes(tool)) continue;
      expect([tool, source[tool]?.test(instructions.join("\n")) ?? "no source known"]).toEqual([tool, true]);
    }
    // Each tool is run once in the image as built: a missing library fails the build.
    const check = instructions.find((l) => l.includes("etcdctl version"))!;
    for (const command of [
      "etcdctl version",
      "etcdutl version",
      "kubectl version --client",
      "aws --version",
      "age --version",
      "zstd --version",
      "jq --version",
      "command -v ssh-keygen",
      "openssl version",
      "curl --version",
    ])
      expect(check).toContain(command);
  });

  test("the scripts for manual runs travel with the library they source", () => {
    expect(instructions).toContain(
      "COPY scripts/node/lib.sh scripts/jobs/etcd-backup.sh scripts/jobs/etcd-defrag.sh scripts/jobs/kubelet-csr-approver.sh /usr/local/bin/",
    );
  });
});

// ---------------------------------------------------------------------------------------------
// scripts/ops/check-control-plane.sh against a fake kubectl.

const checkScript = path.join(repoRoot, "scripts", "ops", "check-control-plane.sh");
const kubeconfigSecret = "client-key-data: LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tc2VjcmV0";

const fakeKubectl = `#!/usr/bin/env bash
printf 'kubectl %s\\n' "$*" >>"$FAKE_LOG"
count() { local f="$FAKE_DIR/count.$1" n=0; if [[ -f "$f" ]]; then n="$(<"$f")"; fi; echo $((n + 1)) >"$f"; echo $((n + 1)); }
case "$*" in
  *" get --raw /readyz")
    if [[ "\${FAKE_READYZ:-ok}" == hang ]]; then exec sleep 30; fi
    if [[ "\${FAKE_READYZ:-ok}" != ok ]]; then echo "[-]etcd failed: reason withheld" >&2; echo "readyz check failed" >&2; exit 1; fi
    echo ok
    ;;
  *" get nodes "*)
    if (($(count nodes) < \${FAKE_READY_AFTER:-1})); then printf '%s\\n' "$FAKE_NODES_EARLY"; else printf '%s\\n' "$FAKE_NODES"; fi
    ;;
  *" endpoint health --cluster")
    if [[ -n "\${FAKE_ETCD_FAIL:-}" ]]; then echo "https://10.20.1.13:2379 is unhealthy: failed to commit proposal: context deadline exceeded" >&2; exit 1; fi
    for ip in \${FAKE_ETCD_IPS:-11 12 13}; do echo "https://10.20.1.$ip:2379 is healthy: successfully committed proposal: took = 2.1ms"; done
    ;;
  *) echo "fake kubectl: unexpected $*" >&2; exit 99 ;;
esac
`;

const healthyNodes = ["prod-nbg1-cp-1   True", "prod-nbg1-cp-2   True", "prod-nbg1-cp-3   True"].join("\n");

interface CheckRun {
  status: number | null;
  stdout: string;
  stderr: string;
  ms: number;
  calls: string[];
  kubeconfig: string;
}

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "check-control-plane-test-"));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function check(args: string[] | ((kubeconfig: string) => string[]), env: Record<string, string> = {}): CheckRun {
  const dir = fs.mkdtempSync(path.join(tmp, "run-"));
  const bin = path.join(dir, "bin");
  fs.mkdirSync(bin);
  fs.writeFileSync(path.join(bin, "kubectl"), fakeKubectl, { mode: 0o755 });
  // Only the fake and the few real tools the script and the fake use.
  for (const tool of ["bash", "timeout", "sleep", "grep", "sed"]) {
    const found = ["/usr/bin", "/bin"].map((d) => path.join(d, tool)).find((p) => fs.existsSync(p));
    if (!found) throw new Error(`${tool} not found`);
    fs.symlinkSync(found, path.join(bin, tool));
  }
  const kubeconfig = path.join(dir, "kubeconfig");
  fs.writeFileSync(
    kubeconfig,
    `apiVersion: v1\nkind: Config\nusers:\n- name: admin\n  user:\n    ${kubeconfigSecret}\n`,
    {
      mode: 0o600,
    },
  );
  const log = path.join(dir, "calls.log");
  fs.writeFileSync(log, "");
  const started = Date.now();
  const result = spawnSync("/bin/bash", [checkScript, ...(typeof args === "function" ? args(kubeconfig) : args)], {
    env: { PATH: bin, LC_ALL: "C", FAKE_LOG: log, FAKE_DIR: dir, FAKE_NODES: healthyNodes, ...env },
    encoding: "utf8",
    timeout: 30_000,
  });
  const calls = fs
    .readFileSync(log, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((c) =>
      c
        .split(kubeconfig)
        .join("$KUBECONFIG")
        .replace(/--request-timeout=\d+s/, "--request-timeout=Ns"),
    );
  const output = result.stdout + result.stderr;
  expect(output).not.toContain(kubeconfigSecret);
  expect(output).not.toContain("kind: Config");
  return {
    status: result.status,
    stdout: result.stdout,
    stderr: result.stderr,
    ms: Date.now() - started,
    calls,
    kubeconfig,
  };
}
const fast = (kubeconfig: string, expected = "3") => ["--timeout", "2", "--interval", "0.2", kubeconfig, expected];

// Each call is bounded by the time left (at most 30 s); the tests read it as N.
const requestTimeout = ["--request-timeout=Ns"];
const readyzGate = readyzCall("$KUBECONFIG", requestTimeout);
const nodesCall = kubectlCall(
  "$KUBECONFIG",
  'get nodes -l node-role.kubernetes.io/control-plane --no-headers -o custom-columns=NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].status',
  requestTimeout,
);
const etcdCall = (node: string) => etcdHealthCall("$KUBECONFIG", node, requestTimeout);

describe("scripts/ops/check-control-plane.sh", () => {
  test("shellcheck passes; strict mode, no xtrace", () => {
    expectShellcheckClean([checkScript], repoRoot);
    expectStrictBash(fs.readFileSync(checkScript, "utf8"));
    expect(fs.statSync(checkScript).mode & 0o111).not.toBe(0);
  });

  test("healthy: exit 0 after /readyz, the node list and etcd health through cp-1's etcd pod", () => {
    const run = check((k) => fast(k));
    expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 0, stderr: "" });
    expect(run.stdout).toMatch(/^control plane healthy: .*3\/3 control-plane nodes Ready, etcd 3\/3 members healthy/);
    expect(run.calls).toEqual([readyzGate, nodesCall, etcdCall("prod-nbg1-cp-1")]);
  });

  test("one node NotReady: non-zero within the timeout, naming the node", () => {
    const nodes = healthyNodes.replace("prod-nbg1-cp-2   True", "prod-nbg1-cp-2   False");
    const run = check((k) => fast(k), { FAKE_NODES: nodes });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain("control-plane nodes not Ready: prod-nbg1-cp-2 (False)");
    expect(run.stderr).toContain("not healthy after 2s");
    expect(run.ms).toBeLessThan(6_000);
    expect(run.calls.length).toBeGreaterThan(2); // it retried
    expect(run.calls).not.toContain(etcdCall("prod-nbg1-cp-1"));
  });

  test("a node missing (2 of 3) or etcd reporting fewer members: non-zero", () => {
    const twoNodes = check((k) => fast(k), { FAKE_NODES: healthyNodes.split("\n").slice(0, 2).join("\n") });
    expect(twoNodes.status).toBe(1);
    expect(twoNodes.stderr).toContain("2 control-plane nodes, expected 3");
    const twoMembers = check((k) => fast(k), { FAKE_ETCD_IPS: "11 12" });
    expect(twoMembers.status).toBe(1);
    expect(twoMembers.stderr).toContain("etcd reports 2 healthy members, expected 3");
    const etcdFails = check((k) => fast(k), { FAKE_ETCD_FAIL: "1" });
    expect(etcdFails.status).toBe(1);
    expect(etcdFails.stderr).toContain("https://10.20.1.13:2379 is unhealthy");
  });

  test("/readyz failing: non-zero; a hanging /readyz: non-zero within the timeout", () => {
    const failing = check((k) => fast(k), { FAKE_READYZ: "fail" });
    expect(failing.status).toBe(1);
    expect(failing.stderr).toContain("/readyz is not ok: [-]etcd failed");
    expect(failing.ms).toBeLessThan(6_000);
    expect(new Set(failing.calls)).toEqual(new Set([readyzGate]));
    const hanging = check((k) => fast(k), { FAKE_READYZ: "hang" });
    expect(hanging.status).toBe(1);
    expect(hanging.ms).toBeLessThan(8_000);
  });

  test("retries until healthy: nodes NotReady at first, then Ready", () => {
    const early = healthyNodes.replace("prod-nbg1-cp-1   True", "prod-nbg1-cp-1   Unknown");
    const run = check((k) => ["--timeout", "10", "--interval", "0.1", k, "3"], {
      FAKE_NODES_EARLY: early,
      FAKE_READY_AFTER: "3",
    });
    expect(run.status).toBe(0);
    expect(run.stderr).toContain("attempt 1: control-plane nodes not Ready: prod-nbg1-cp-1 (Unknown)");
    expect(run.stdout).toContain("(attempt 3)");
    // etcd is checked only once every control-plane node is Ready.
    expect(run.calls.filter((c) => c.includes("endpoint health"))).toEqual([etcdCall("prod-nbg1-cp-1")]);
  });

  test("bad arguments: exit 2 without calling kubectl", () => {
    for (const args of [
      (k: string) => [k],
      (k: string) => [k, "three"],
      (k: string) => [k, "0"],
      () => [path.join(tmp, "no-such-kubeconfig"), "3"],
      (k: string) => ["--no-such-flag", k, "3"],
      (k: string) => ["--timeout", "soon", k, "3"],
    ]) {
      const run = check(args);
      expect(run.status).toBe(2);
      expect(run.stderr).toContain("usage: check-control-plane.sh");
      expect(run.calls).toEqual([]);
    }
    const help = check(["--help"]);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain("KUBECONFIG EXPECTED");
  });
});
