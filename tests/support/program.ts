/** Runs the real program (index.ts) under the recording mocks with the prod stack's config. */
import { offlineOrganization, ProgramRun, RecordedResource, runProgram } from "../../tools/offline/harness";
import { ListedServer, ProviderMocks } from "../../tools/offline/mocks";
import { loadStackConfig } from "../../tools/offline/stackConfig";

// eslint-disable-next-line @typescript-eslint/no-require-imports -- index.ts is `export =`, the Pulumi entry point
const program = require("../../index") as () => Promise<unknown>;

export async function runStack(
  overrides: Record<string, unknown> = {},
  options: {
    preview?: boolean;
    sink?: RecordedResource[];
    stack?: string;
    /** The outputs of the stack's last update (e.g. the kubernetesVersion it runs). */
    deployed?: Record<string, unknown>;
    /** Server statuses by resource name (`control-plane-cp-1`: "off"); default every one running. */
    serverStatus?: Record<string, string>;
    /** Servers Hetzner lists before the program registers any, by resource name (`control-plane-cp-1`). */
    existingServers?: Record<string, ListedServer>;
  } = {},
): Promise<ProgramRun> {
  const config = loadStackConfig(options.stack ?? "prod", { overrides });
  if (!options.existingServers) return runProgram(program, config, options);
  // The default mocks of runProgram, with the existing servers.
  const self = `${offlineOrganization}/${config.project}/${config.stack}`;
  const deployed = { outputs: options.deployed ?? {}, secretOutputNames: [] };
  const mocks = new ProviderMocks(
    options.preview ?? false,
    (stack) => (stack === self ? deployed : undefined),
    options.serverStatus,
    options.existingServers,
  );
  return runProgram(program, config, { ...options, mocks });
}

export function byType(run: ProgramRun, type: string): RecordedResource[] {
  return run.resources.filter((r) => r.type === type).sort((a, b) => a.name.localeCompare(b.name));
}

export function one(run: ProgramRun, name: string): RecordedResource {
  const found = run.resources.filter((r) => r.name === name);
  if (found.length !== 1) throw new Error(`expected one resource named ${name}, found ${found.length}`);
  return found[0];
}

export const T = {
  stack: "pulumi:pulumi:Stack",
  network: "hcloud:index/network:Network",
  subnet: "hcloud:index/networkSubnet:NetworkSubnet",
  placementGroup: "hcloud:index/placementGroup:PlacementGroup",
  firewall: "hcloud:index/firewall:Firewall",
  sshKey: "hcloud:index/sshKey:SshKey",
  floatingIp: "hcloud:index/floatingIp:FloatingIp",
  server: "hcloud:index/server:Server",
  loadBalancer: "hcloud:index/loadBalancer:LoadBalancer",
  lbNetwork: "hcloud:index/loadBalancerNetwork:LoadBalancerNetwork",
  lbService: "hcloud:index/loadBalancerService:LoadBalancerService",
  lbTarget: "hcloud:index/loadBalancerTarget:LoadBalancerTarget",
} as const;
