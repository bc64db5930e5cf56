/** The README stays true: its commands exist, its config reference is Pulumi.yaml's, its links resolve. */
import * as fs from "node:fs";
import * as path from "node:path";
import { configReference, settingsTable } from "../tools/config-reference";
import { projectRoot } from "../tools/offline/stackConfig";

const readme = fs.readFileSync(path.join(projectRoot, "README.md"), "utf8");
const pkg = JSON.parse(fs.readFileSync(path.join(projectRoot, "package.json"), "utf8")) as {
  scripts: Record<string, string>;
};

test("the configuration reference is generated from Pulumi.yaml (run `npm run docs` after editing it)", () => {
  expect(readme).toContain(configReference());
});

test("the two README commands are the package's scripts, and .ci/run calls the test command", () => {
  expect(readme).toContain("npm run plan");
  expect(readme).toContain("npm test");
  expect(pkg.scripts.plan).toBe("bash tools/plan.sh");
  expect(pkg.scripts.test).toBe("bash tools/test.sh");
  expect(fs.readFileSync(path.join(projectRoot, ".ci", "run"), "utf8")).toMatch(/^npm test$/m);
});

test("docs/settings.md is generated from the settings' declarations (run `npm run docs` after editing them)", () => {
  expect(fs.readFileSync(path.join(projectRoot, "docs", "settings.md"), "utf8")).toBe(settingsTable());
});

/** Markdown files whose relative links must resolve: the README and everything under docs/. */
function markdownFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const file = path.join(dir, e.name);
    if (e.isDirectory()) return markdownFiles(file);
    return e.name.endsWith(".md") ? [file] : [];
  });
}

test("every relative link in the README and in docs/ points at a file that exists", () => {
  const files = [path.join(projectRoot, "README.md"), ...markdownFiles(path.join(projectRoot, "docs"))];
  expect(files.length).toBeGreaterThan(30);
  for (const file of files) {
    const links = [...fs.readFileSync(file, "utf8").matchAll(/\]\((?!https?:|#)([^)#\s]+)/g)].map((m) => m[1]);
    for (const link of links) {
      const exists = fs.existsSync(path.resolve(path.dirname(file), link));
      expect([path.relative(projectRoot, file), link, exists]).toEqual([path.relative(projectRoot, file), link, true]);
    }
  }
});

test("the README links every runbook", () => {
  for (const file of fs.readdirSync(path.join(projectRoot, "docs", "runbooks"))) {
    expect([file, readme.includes(`(docs/runbooks/${file})`)]).toEqual([file, true]);
  }
});
