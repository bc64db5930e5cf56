/**
 * Moving code between files must never change a resource's URN: Pulumi would see a new
 * resource and delete the old one (for a member's setup, a server or the backup bucket, a
 * disaster). The URNs of the offline plan, for the prod stack and a variant that registers every
 * optional resource kind, are compared with the lists checked in under tests/fixtures/urns/,
 * which were written from the program before its files moved into folders by concern.
 *
 * A deliberate change of the resource graph (a new resource, a renamed one with an alias)
 * updates the lists: `WRITE_URNS=1 npx jest tests/urns.test.ts`, and the diff is reviewed.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { runStack } from "./support/program";

const fixtures = path.join(__dirname, "fixtures", "urns");

/** Each variant's config overrides: together they register every kind of resource the program has. */
const variants: Record<string, Record<string, unknown>> = {
  prod: {},
  // Five nodes, Calico, an existing monitoring operator, no failover companion.
  "five-nodes-calico-existing-operator": {
    controlPlaneCount: 5,
    nodeIps: [],
    cni: "calico",
    monitoring: "existing-operator",
    prometheusRuleLabels: ["release=platform-prometheus"],
    reservedIpFailover: false,
  },
};

describe("resource URNs are those of the checked-in lists", () => {
  test.each(Object.keys(variants))("%s", async (variant) => {
    const run = await runStack(variants[variant]);
    const urns = run.resources.map((r) => r.urn).sort();
    const file = path.join(fixtures, `${variant}.txt`);
    if (process.env.WRITE_URNS === "1") {
      fs.mkdirSync(fixtures, { recursive: true });
      fs.writeFileSync(file, `${urns.join("\n")}\n`);
    }
    const listed = fs.readFileSync(file, "utf8").trimEnd().split("\n");
    expect(urns).toEqual(listed);
  });
});
