/**
 * Benchmark of the offline plan: for 1, 3, 5 and 7 control-plane nodes, the resources
 * registered, the wall time of the whole `npm run plan` process (TypeScript start-up
 * included), the time inside the plan, and the peak memory (max RSS). Medians of several runs.
 * Then the longest chain of resources the engine must create one after another (longestChain in
 * tools/offline/render.ts), with its resources.
 *
 *   npm run bench [-- --runs 5]
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import YAML from "yaml";
import { longestChain, Plan } from "./offline/render";
import { projectRoot } from "./offline/stackConfig";
import { countOption, median } from "./options";

const runs = countOption("runs", 5);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "plan-bench-"));
const prod = YAML.parse(fs.readFileSync(path.join(projectRoot, "Pulumi.prod.yaml"), "utf8")) as {
  config: Record<string, unknown>;
};

console.log(`Offline plan benchmark: median of ${runs} runs each, ${os.cpus().length} CPUs, Node ${process.version}\n`);
console.log("nodes  resources  process wall (s)  in plan (s)  peak RSS (MiB)");
const chains: [number, string[]][] = [];
try {
  for (const nodes of [1, 3, 5, 7]) {
    const stack = `bench-${nodes}`;
    const configFile = path.join(tmp, `Pulumi.${stack}.yaml`);
    const config = {
      ...prod.config,
      "hcloud-control-plane:controlPlaneCount": nodes,
      "hcloud-control-plane:nodeIps": [],
    };
    fs.writeFileSync(configFile, YAML.stringify({ config }));
    const wall: number[] = [];
    const inPlan: number[] = [];
    const rss: number[] = [];
    let resources = 0;
    for (let i = 0; i < runs; i++) {
      const statsFile = path.join(tmp, `${stack}-${i}.json`);
      const started = process.hrtime.bigint();
      const result = spawnSync(
        path.join(projectRoot, "node_modules", ".bin", "ts-node"),
        [
          "--transpile-only",
          "tools/plan.ts",
          "--stack",
          stack,
          "--config-file",
          configFile,
          "--out",
          tmp,
          "--quiet",
          "--stats",
          statsFile,
        ],
        { cwd: projectRoot, encoding: "utf8" },
      );
      wall.push(Number(process.hrtime.bigint() - started) / 1e9);
      if (result.status !== 0) throw new Error(`plan failed for ${nodes} nodes:\n${result.stderr}`);
      const stats = JSON.parse(fs.readFileSync(statsFile, "utf8")) as {
        resources: number;
        seconds: number;
        maxRssBytes: number;
      };
      resources = stats.resources;
      inPlan.push(stats.seconds);
      rss.push(stats.maxRssBytes / 2 ** 20);
    }
    const plan = JSON.parse(fs.readFileSync(path.join(tmp, stack, "plan.json"), "utf8")) as Plan;
    chains.push([nodes, longestChain(plan)]);
    console.log(
      `${String(nodes).padStart(5)}  ${String(resources).padStart(9)}  ${median(wall).toFixed(2).padStart(16)}  ${median(
        inPlan,
      )
        .toFixed(2)
        .padStart(11)}  ${median(rss).toFixed(0).padStart(14)}`,
    );
  }
  console.log("\nLongest chain of resources created one after another (first pulumi up):");
  for (const [nodes, chain] of chains) {
    console.log(
      `${String(nodes).padStart(5)} nodes: ${chain.length} (2N + 8 = ${2 * nodes + 8})  ${chain.join(" -> ")}`,
    );
  }
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
