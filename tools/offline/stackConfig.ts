/**
 * Builds the configuration a stack's program sees, the way the Pulumi CLI does: project
 * defaults from Pulumi.yaml, overlaid by the stack file's values. Secrets cannot be
 * decrypted offline, so each becomes a visible placeholder (and stays a secret).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import YAML from "yaml";
import { providerSecrets } from "../../components/config";

export interface DeclaredKey {
  type: "string" | "integer" | "boolean" | "array";
  description?: string;
  default?: unknown;
  secret?: boolean;
}

export interface ProjectFile {
  name: string;
  config: Record<string, DeclaredKey>;
}

export interface StackConfig {
  project: string;
  stack: string;
  /** Fully qualified keys (`project:key`, `hcloud:token`) to the strings the runtime holds. */
  values: Record<string, string>;
  /** Keys whose values are secrets. */
  secretKeys: string[];
  /** Keys that got a placeholder instead of a decrypted secret. */
  placeholders: string[];
  /**
   * Secrets `pulumi up` needs that the stack file does not hold yet: every key Pulumi.yaml
   * declares `secret: true` without a default, and the provider secrets (`providerSecrets`;
   * Pulumi.yaml cannot declare keys of other namespaces: the CLI refuses a type or default for
   * them, pulumi/pulumi pkg/workspace/project.go). Offline they are placeholders.
   */
  missingSecrets: string[];
}

/** A mistake in what the user asked for (a missing stack file, a bad flag): reported without a stack trace. */
export class PlanInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PlanInputError";
  }
}

export const projectRoot = path.resolve(__dirname, "..", "..");

export function readProjectFile(root = projectRoot): ProjectFile {
  const doc = YAML.parse(fs.readFileSync(path.join(root, "Pulumi.yaml"), "utf8")) as ProjectFile;
  return { name: doc.name, config: doc.config ?? {} };
}

export function secretPlaceholder(key: string): string {
  return `[secret placeholder for ${key}: not decryptable offline]`;
}

/** Pulumi hands every config value to the program as a string; lists and maps as JSON. */
function asConfigString(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function qualify(project: string, key: string): string {
  return key.includes(":") ? key : `${project}:${key}`;
}

/**
 * Reads `Pulumi.<stack>.yaml` (or `configFile`) and returns the program's configuration.
 * `overrides` (fully qualified or project keys) win over both files; tests use them.
 */
export function loadStackConfig(
  stack: string,
  options: {
    root?: string;
    configFile?: string;
    overrides?: Record<string, unknown>;
    /** Secrets of other namespaces the program reads (`hcloud:token`); placeholders when unset. */
    externalSecrets?: readonly string[];
  } = {},
): StackConfig {
  const root = options.root ?? projectRoot;
  const project = readProjectFile(root);
  const file = options.configFile ?? path.join(root, `Pulumi.${stack}.yaml`);
  if (!fs.existsSync(file)) {
    throw new PlanInputError(
      `stack config file ${path.relative(process.cwd(), file) || file} does not exist (stack "${stack}")`,
    );
  }
  const stackDoc = (YAML.parse(fs.readFileSync(file, "utf8")) ?? {}) as { config?: Record<string, unknown> };

  const values: Record<string, string> = {};
  const secretKeys = new Set<string>();
  const placeholders = new Set<string>();
  const required = new Set<string>();

  for (const [key, decl] of Object.entries(project.config)) {
    const full = qualify(project.name, key);
    if (decl.default !== undefined) values[full] = asConfigString(decl.default);
    if (decl.secret) {
      secretKeys.add(full);
      if (decl.default === undefined) {
        values[full] = secretPlaceholder(full);
        placeholders.add(full);
        required.add(full);
      }
    }
  }
  for (const full of options.externalSecrets ?? providerSecrets) {
    values[full] = secretPlaceholder(full);
    secretKeys.add(full);
    placeholders.add(full);
    required.add(full);
  }
  const stackValues = { ...(stackDoc.config ?? {}), ...(options.overrides ?? {}) };
  for (const [key, value] of Object.entries(stackValues)) {
    const full = qualify(project.name, key);
    if (value !== null && typeof value === "object" && "secure" in (value as object)) {
      values[full] = secretPlaceholder(full);
      secretKeys.add(full);
      placeholders.add(full);
    } else {
      values[full] = asConfigString(value);
      placeholders.delete(full);
    }
    required.delete(full);
  }
  return {
    project: project.name,
    stack,
    values,
    secretKeys: [...secretKeys].sort(),
    placeholders: [...placeholders].sort(),
    missingSecrets: [...required].sort(),
  };
}

/**
 * The warning the offline plan prints when the stack file lacks secrets: the plan itself works
 * with placeholders, but `pulumi up` would stop at the first one it reads. Undefined when none is missing.
 */
export function missingSecretsWarning(config: StackConfig, file: string): string | undefined {
  if (config.missingSecrets.length === 0) return undefined;
  return [
    `warning: ${file} does not hold these secrets yet; this plan used placeholders, but pulumi up needs each of them (see the README's configuration reference):`,
    ...config.missingSecrets.map((key) => `  pulumi config set --secret ${key} --stack ${config.stack}`),
  ].join("\n");
}
