/**
 * The parts of a cloud-config (cloud-init user data) the tests read: the control-plane one
 * (components/node/cloudInit.ts) and the worker one (examples/worker-pool/workerCloudInit.ts).
 */
import { parse } from "yaml";

export interface WriteFile {
  path: string;
  owner: string;
  permissions: string;
  content: string;
}

export interface CloudConfig {
  hostname: string;
  write_files: WriteFile[];
  runcmd: string[][];
  /** The control-plane user data only. */
  package_update?: boolean;
  packages?: string[];
  ssh_pwauth?: boolean;
  disable_root?: boolean;
}

/** The user data parsed as YAML 1.1, as cloud-init (PyYAML) reads it. */
export const parseCloudConfig = (userData: string): CloudConfig => parse(userData, { version: "1.1" }) as CloudConfig;

/** The write_files entry for `filePath`; throws when there is none. */
export function writtenFile(cloudConfig: CloudConfig, filePath: string): WriteFile {
  const found = cloudConfig.write_files.find((f) => f.path === filePath);
  if (!found) throw new Error(`write_files has no ${filePath}`);
  return found;
}
