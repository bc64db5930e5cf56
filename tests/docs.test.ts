/** The README stays true: its commands exist, its config reference is Pulumi.yaml's, its links resolve. */
import * as fs from "node:fs";
import * as path from "node:path";
import { configReference } from "../scripts/config-reference";
import { projectRoot } from "../scripts/offline/stackConfig";

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
  expect(pkg.scripts.plan).toBe("bash scripts/plan.sh");
  expect(pkg.scripts.test).toBe("bash scripts/test.sh");
  expect(fs.readFileSync(path.join(projectRoot, ".ci", "run"), "utf8")).toMatch(/^npm test$/m);
});

test("every relative link in the README points at a file that exists", () => {
  const links = [...readme.matchAll(/\]\((?!https?:|#)([^)#\s]+)/g)].map((m) => m[1]);
  expect(links.length).toBeGreaterThan(0);
  for (const link of links) expect([link, fs.existsSync(path.join(projectRoot, link))]).toEqual([link, true]);
});

test("the README links every runbook", () => {
  for (const file of fs.readdirSync(path.join(projectRoot, "docs", "runbooks"))) {
    expect([file, readme.includes(`(docs/runbooks/${file})`)]).toEqual([file, true]);
  }
});
