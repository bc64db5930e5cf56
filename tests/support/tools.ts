/** Real tools the tests run, found or failed for loudly (never skipped). */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";

/** Returns `binary`, or throws naming the Debian package that provides it. */
export function requireTool(binary: string, debianPackage: string): string {
  if (!fs.existsSync(binary)) {
    throw new Error(
      `${binary} not found: install the Debian package \`${debianPackage}\` (apt-get install ${debianPackage})`,
    );
  }
  return binary;
}

/**
 * Every YAML document in `text` as PyYAML reads it (YAML 1.1, the rules cloud-init and
 * Go's sigs.k8s.io/yaml follow), so a value one parser reads differently fails a test.
 */
export function pyyamlLoadAll(text: string): unknown[] {
  const python = requireTool("/usr/bin/python3", "python3-yaml");
  const result = spawnSync(
    python,
    ["-c", "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(sys.stdin))))"],
    { input: text, encoding: "utf8" },
  );
  if (result.status !== 0) throw new Error(`PyYAML could not read the document: ${result.stderr}`);
  return JSON.parse(result.stdout) as unknown[];
}
