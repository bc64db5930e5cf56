/**
 * The offline plan: runs the real program under Pulumi's mock runtime with a stack's config
 * file and writes what `pulumi up` would create to out/<stack>/.
 *
 *   npm run plan [-- --stack <name>] [--config-file <path>] [--out <dir>] [--preview] [--quiet]
 *                    [--deployed <file>] [--deployed-version x.y.z]
 *
 * --deployed stands for the outputs of the stack's last update, which the real program reads
 * from the backend (its own StackReference): the plan.json of an earlier plan (its `outputs`) or
 * what `pulumi stack output --json --show-secrets` prints. With it, the plan checks an edit as
 * `pulumi up` on that stack would (the Kubernetes version step, the recorded cluster CA that
 * keeps a new node from initializing). Masked values ("[secret]", "[unknown]") count as absent.
 * --deployed-version sets (or overrides) only its kubernetesVersion.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Graphviz } from "@hpcc-js/wasm-graphviz";
import { parseConfig } from "../components/config";
import { renderAlertmanagerConfig } from "../components/addons/monitoring/alertmanager";
import { pagingSettings } from "../components/addons/monitoring/monitoring";
import { runProgram } from "./offline/harness";
import { artifacts, countsByType, toDot, toPlan, toTree } from "./offline/render";
import { loadStackConfig, missingSecretsWarning, PlanInputError, projectRoot } from "./offline/stackConfig";

interface Args {
  stack: string;
  configFile?: string;
  out: string;
  preview: boolean;
  quiet: boolean;
  stats?: string;
  deployedVersion?: string;
  deployedFile?: string;
}

const usage =
  "usage: npm run plan -- [--stack <name>] [--config-file <path>] [--out <dir>] [--preview] [--quiet] [--deployed <file>] [--deployed-version x.y.z] [--stats <file>]";

function parseArgs(argv: string[]): Args {
  const args: Args = { stack: "prod", out: path.join(projectRoot, "out"), preview: false, quiet: false };
  for (let i = 0; i < argv.length; i++) {
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith("--")) throw new PlanInputError(`${argv[i - 1]} needs a value\n${usage}`);
      return v;
    };
    switch (argv[i]) {
      case "--stack":
        args.stack = value();
        break;
      case "--config-file":
        args.configFile = path.resolve(value());
        break;
      case "--out":
        args.out = path.resolve(value());
        break;
      case "--stats":
        args.stats = path.resolve(value());
        break;
      case "--preview":
        args.preview = true;
        break;
      case "--deployed-version":
        args.deployedVersion = value();
        break;
      case "--deployed":
        args.deployedFile = path.resolve(value());
        break;
      case "--quiet":
        args.quiet = true;
        break;
      case "--help":
      case "-h":
        console.log(usage);
        process.exit(0);
        break;
      default:
        throw new PlanInputError(`unknown argument ${argv[i]}\n${usage}`);
    }
  }
  if (!/^[A-Za-z0-9._-]+$/.test(args.stack)) throw new PlanInputError(`--stack "${args.stack}" is not a stack name`);
  return args;
}

/**
 * The deployed stack's outputs from `file`: a plan.json (its `outputs`) or the object `pulumi
 * stack output --json --show-secrets` prints. Values the plan masked are left out.
 */
function readDeployed(file: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new PlanInputError(`--deployed ${file}: not a readable JSON file (${(e as Error).message})`);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    throw new PlanInputError(`--deployed ${file}: expected a plan.json or the JSON object of pulumi stack output`);
  }
  const record = doc as Record<string, unknown>;
  const outputs =
    Array.isArray(record.resources) && record.outputs !== null && typeof record.outputs === "object"
      ? (record.outputs as Record<string, unknown>)
      : record;
  return Object.fromEntries(Object.entries(outputs).filter(([, v]) => v !== "[secret]" && v !== "[unknown]"));
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const started = process.hrtime.bigint();
  const dir = path.join(args.out, args.stack);
  // A failed plan leaves nothing behind that could be mistaken for a current one.
  fs.rmSync(dir, { recursive: true, force: true });

  const config = loadStackConfig(args.stack, { configFile: args.configFile });
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- the program's entry point, loaded after config is in place
  const program = require(path.join(projectRoot, "index")) as () => Promise<unknown>;
  const deployed = {
    ...(args.deployedFile ? readDeployed(args.deployedFile) : {}),
    ...(args.deployedVersion ? { kubernetesVersion: args.deployedVersion } : {}),
  };
  const run = await runProgram(program, config, { preview: args.preview, deployed });
  const plan = toPlan(run);

  const written: string[] = [];
  const write = (rel: string, content: string) => {
    const file = path.join(dir, rel);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, content);
    written.push(path.relative(process.cwd(), file));
  };
  write("plan.json", JSON.stringify(plan, null, 2) + "\n");
  for (const artifact of artifacts(plan)) write(artifact.path, artifact.content);
  // The Kubernetes provider marks all Secret data secret, so the plan shows the Secret masked;
  // the Alertmanager configuration it holds has no secret in it (the routing key is a file),
  // so it is rendered here from the same function for review.
  const deployedVersion = typeof deployed.kubernetesVersion === "string" ? deployed.kubernetesVersion : undefined;
  const cfg = parseConfig({ ...config, deployedKubernetesVersion: deployedVersion });
  if (cfg.monitoring.mode === "kube-prometheus-stack") {
    write("manifests/alertmanager.yaml", renderAlertmanagerConfig(pagingSettings(cfg)));
  }
  const graphviz = await Graphviz.load();
  write("graph.svg", graphviz.dot(toDot(plan)));

  // On stderr and even with --quiet: the plan succeeded, but pulumi up with this file would not.
  const stackFile = path.relative(
    process.cwd(),
    args.configFile ?? path.join(projectRoot, `Pulumi.${args.stack}.yaml`),
  );
  const warning = missingSecretsWarning(config, stackFile);
  if (warning) console.error(warning);

  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (args.stats) {
    const stats = { resources: plan.resources.length, seconds, maxRssBytes: process.resourceUsage().maxRSS * 1024 };
    fs.writeFileSync(args.stats, JSON.stringify(stats) + "\n");
  }
  if (args.quiet) return;
  console.log(
    `Offline plan of stack "${args.stack}" (${run.preview ? "preview" : "update"} under Pulumi's mock runtime; nothing was contacted)\n`,
  );
  if (config.placeholders.length > 0) {
    console.log(`Secrets shown as placeholders (not decryptable offline): ${config.placeholders.join(", ")}\n`);
  }
  console.log(toTree(plan));
  console.log(`\nResources by type (${plan.resources.length} in all):`);
  for (const [type, count] of countsByType(plan)) console.log(`  ${String(count).padStart(3)}  ${type}`);
  console.log(`\nWritten in ${seconds.toFixed(1)} s:`);
  for (const file of written) console.log(`  ${file}`);
}

main().catch((err: unknown) => {
  const error = err as Error;
  // Config and input errors are for people: the message alone. Anything else keeps its stack.
  const forPeople = error.name === "ConfigError" || error instanceof PlanInputError;
  console.error(`plan failed: ${forPeople ? error.message : (error.stack ?? String(err))}`);
  process.exit(1);
});
