/**
 * Mocks for Pulumi's mock runtime that answer like the providers would: numeric ids as
 * strings where Hetzner uses numbers, subnet ids as `<network>-<cidr>`, private IPs from the
 * configured ranges, public IPs from the documentation ranges (RFC 5737 / RFC 3849).
 * Values derive from resource names, so a plan is the same on every run.
 *
 * In preview mode a mock returns only the inputs: every computed output is then unknown,
 * as it is in `pulumi preview` before the first `pulumi up`.
 */
import * as crypto from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import { wireSecret } from "./wire";

type State = Record<string, unknown>;

function hash(text: string): number {
  return crypto.createHash("sha256").update(text).digest().readUInt32BE(0);
}

/** A stable 7-8 digit id, as Hetzner issues them. */
function numericId(name: string): string {
  return String(1_000_000 + (hash(name) % 90_000_000));
}

function host(prefix: string, name: string): string {
  return `${prefix}.${10 + (hash(name) % 240)}`;
}

function ipv6(name: string): string {
  return `2001:db8:${(hash(name) % 0xffff).toString(16)}::1`;
}

/** Outputs each provider computes, by resource type. Types not listed echo their inputs. */
const computed: Record<string, (name: string, inputs: State) => State> = {
  "hcloud:index/server:Server": (name) => ({
    ipv4Address: host("203.0.113", name),
    ipv6Address: ipv6(name),
    ipv6Network: `${ipv6(name).replace(/::1$/, "::")}/64`,
    status: "running",
  }),
  "hcloud:index/loadBalancer:LoadBalancer": (name) => ({
    ipv4: host("198.51.100", name),
    ipv6: ipv6(name),
  }),
  "hcloud:index/floatingIp:FloatingIp": (name) => ({
    ipAddress: host("192.0.2", name),
    ipNetwork: `${host("192.0.2", name)}/32`,
  }),
  "command:remote:Command": (name, inputs) => ({
    stdout: commandStdout(name, String(inputs.create ?? "")),
    stderr: "",
  }),
  "hcloud:index/sshKey:SshKey": (_name, inputs) => ({
    fingerprint: crypto
      .createHash("md5")
      .update(Buffer.from(String(inputs.publicKey).split(" ")[1] ?? "", "base64"))
      .digest("hex")
      .replace(/(..)(?!$)/g, "$1:"),
  }),
};

/**
 * A real self-signed CA certificate (EC P-256, CN=kubernetes; its key was discarded), so code
 * that parses admin.conf's CA gets a certificate. kubeadm's discovery hash of it is
 * sha256:a7538f5f86f38efa81525568d219d0a4f6206559d128cf72a57303c900d98b8a (openssl computed).
 */
export const mockCaCertificate = [
  "-----BEGIN CERTIFICATE-----",
  "MIIBgTCCASegAwIBAgIURmk98jHCywxZSSZ0ubJ9K5d0a+UwCgYIKoZIzj0EAwIw",
  "FTETMBEGA1UEAwwKa3ViZXJuZXRlczAgFw0yNjExMjExMjQwMTNaGA8yMTI2MTAy",
  "ODEyNDAxM1owFTETMBEGA1UEAwwKa3ViZXJuZXRlczBZMBMGByqGSM49AgEGCCqG",
  "SM49AwEHA0IABIU4twi1ySMEBfPnoB/Xwou5a10/YYc8/ltxedGvXBRvka+Dn9NO",
  "8JvFwwdHfpte7eIZqnIL2xdlizr/j0U58SSjUzBRMB0GA1UdDgQWBBS0xzzDrGmh",
  "Lb+fzKQ88NEfdRPLDzAfBgNVHSMEGDAWgBS0xzzDrGmhLb+fzKQ88NEfdRPLDzAP",
  "BgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIDhNosDx169ZvUCbO9lP",
  "+vgPRPmnwm88sucRi51OHj6AAiEAm5jZVKNeHVFjIN51KFuJrowrrB4hv1XOzqrF",
  "Sd468/s=",
  "-----END CERTIFICATE-----",
  "",
].join("\n");

/** What a remote command prints, for the commands whose output the program reads. */
function commandStdout(name: string, create: string): string {
  if (create.includes("cat /etc/kubernetes/admin.conf")) {
    // kubeadm's admin.conf shape; the server is whatever controlPlaneEndpoint the node has.
    const data = Buffer.from(`mock-${name}`).toString("base64");
    const ca = Buffer.from(mockCaCertificate).toString("base64");
    return [
      "apiVersion: v1",
      "kind: Config",
      "clusters:",
      "- cluster:",
      `    certificate-authority-data: ${ca}`,
      "    server: https://control-plane-endpoint.invalid:6443",
      "  name: kubernetes",
      "contexts:",
      "- context:",
      "    cluster: kubernetes",
      "    user: kubernetes-admin",
      "  name: kubernetes-admin@kubernetes",
      "current-context: kubernetes-admin@kubernetes",
      "users:",
      "- name: kubernetes-admin",
      "  user:",
      `    client-certificate-data: ${data}`,
      `    client-key-data: ${data}`,
      "",
    ].join("\n");
  }
  if (create.includes("mint-join-credentials.sh")) {
    const hex = crypto.createHash("sha256").update(name).digest("hex");
    return `JOIN_TOKEN=${hex.slice(0, 6)}.${hex.slice(6, 22)}\nJOIN_CA_CERT_HASH=sha256:${hex}\nJOIN_CERTIFICATE_KEY=${hex}\n`;
  }
  if (create.includes("cert-expiry.sh")) {
    // cert-expiry.sh's report. Node N's first certificate to expire is a different one on each
    // node, and node 2's comes first, so code that took the first node or one name shows.
    const node = /--node-name (\S+)/.exec(create)?.[1] ?? name;
    const n = Number(/-cp-(\d+)$/.exec(node)?.[1] ?? "1");
    const day = (offset: number) => new Date(Date.UTC(2027, 10, 21 + offset, 9, 30)).toISOString().replace(".000", "");
    const names = ["admin.conf", "apiserver", "etcd-server", "front-proxy-client"];
    const first = names[(n - 1) % names.length];
    const earliest = day(n === 2 ? 0 : 10 + n);
    const certificates = names.map((c, i) => ({
      name: c,
      expires: c === first ? earliest : day(30 + i),
      externallyManaged: false,
    }));
    const authorities = ["ca", "etcd-ca", "front-proxy-ca"].map((c) => ({
      name: c,
      expires: "2036-11-19T09:30:00Z",
      externallyManaged: false,
    }));
    return `${JSON.stringify({ node, earliest, earliestName: first, certificates, authorities })}\n`;
  }
  if (create.includes("worker-join-token.sh create")) {
    // The script's two lines; its expiry is its clock plus --ttl-hours (`date -u -d "+N hours"`),
    // here from a fixed clock (2026-11-21T00:00:00Z) so a plan is the same on every run.
    const hex = crypto.createHash("sha256").update(name).digest("hex");
    const id = /--id ([a-z0-9]{6})/.exec(create)?.[1] ?? "000000";
    const ttlHours = Number(/--ttl-hours (\d+)/.exec(create)?.[1] ?? "24");
    const expires = new Date(Date.UTC(2026, 10, 21) + ttlHours * 3_600_000).toISOString().replace(".000", "");
    return `WORKER_JOIN_TOKEN=${id}.${hex.slice(0, 16)}\nWORKER_JOIN_EXPIRES=${expires}\n`;
  }
  return "";
}

const idFor: Record<string, (name: string, inputs: State) => string> = {
  "hcloud:index/networkSubnet:NetworkSubnet": (_name, inputs) => `${inputs.networkId}-${inputs.ipRange}`,
};

/** The type of a StackReference read. */
export const stackReferenceType = "pulumi:pulumi:StackReference";

/** What a StackReference read returns: a stack's outputs, and which of them are secret. */
export interface ReferencedStack {
  outputs: Record<string, unknown>;
  secretOutputNames: string[];
}

export class ProviderMocks implements pulumi.runtime.Mocks {
  /**
   * The engine marks a resource's `additionalSecretOutputs` secret; the mock monitor does not.
   * The recording harness sets this just before each registration so the mocks can.
   */
  secretOutputs: string[] = [];
  /** Every StackReference read: its resource name and the stack it names. */
  readonly stackReferences: { name: string; stack: unknown }[] = [];

  /**
   * `stacks` answers StackReference reads by stack name (`org/project/stack`); a stack it does
   * not know has no outputs, like one that was never deployed. The program reads its own stack
   * to learn the version it runs.
   */
  constructor(
    private readonly preview: boolean,
    private readonly stacks: (stack: string) => ReferencedStack | undefined = () => undefined,
    /** Server statuses by resource name (e.g. `control-plane-cp-1`: "off"); default running. */
    private readonly serverStatus: Record<string, string> = {},
    /**
     * Servers Hetzner lists before this run registers any (a deployed stack's, as `hcloud.getServers`
     * answers them), by resource name; a server this run registers replaces its entry.
     */
    private readonly existingServers: Record<string, ListedServer> = {},
  ) {}

  /** The servers this run registered, by resource name, as `hcloud.getServers` lists them. */
  private readonly registeredServers = new Map<string, ListedServer>();

  newResource(args: pulumi.runtime.MockResourceArgs): pulumi.runtime.MockResourceResult {
    if (args.type === stackReferenceType) return this.readStack(args);
    const inputs = args.inputs as State;
    const secretOutputs = this.secretOutputs;
    this.secretOutputs = [];
    if (this.preview) return { id: undefined, state: inputs };
    const id = (idFor[args.type] ?? ((name: string) => numericId(name)))(args.name, inputs);
    if (args.type === "hcloud:index/server:Server") {
      this.registeredServers.set(args.name, {
        id: Number(id),
        name: String(inputs.name ?? args.name),
        serverType: String(inputs.serverType ?? ""),
        labels: (inputs.labels ?? {}) as Record<string, string>,
      });
    }
    const state: State = { ...inputs, ...(computed[args.type]?.(args.name, inputs) ?? {}) };
    for (const key of secretOutputs) if (key in state) state[key] = wireSecret(state[key]);
    return { id, state };
  }

  /**
   * A StackReference is a resource *read* (id = the stack name): the mock monitor's
   * readResource asks newResource for its state, and the SDK reads `outputs` (every output) and
   * `secretOutputNames`. The engine sends secret outputs as secrets inside `outputs`; so does
   * this mock, so a program sees what it would see from a real stack. Reads resolve in preview
   * too, as the engine's do.
   */
  private readStack(args: pulumi.runtime.MockResourceArgs): pulumi.runtime.MockResourceResult {
    const stack = String(args.inputs.name);
    // The engine refuses a second resource with the same URN, reads included
    // (pulumi/pulumi pkg/resource/deploy/step_generator.go GenerateReadSteps: "Duplicate
    // resource URN"); the mock monitor does not check, so this does.
    if (this.stackReferences.some((r) => r.name === args.name)) {
      throw new Error(
        `Duplicate resource URN: a second StackReference named ${args.name}; try giving it a unique name`,
      );
    }
    this.stackReferences.push({ name: args.name, stack });
    const { outputs, secretOutputNames } = this.stacks(stack) ?? { outputs: {}, secretOutputNames: [] };
    const wired = Object.fromEntries(
      Object.entries(outputs).map(([k, v]) => [k, secretOutputNames.includes(k) ? pulumi.secret(v) : v]),
    );
    return { id: args.id ?? stack, state: { name: stack, outputs: wired, secretOutputNames } };
  }

  /**
   * Provider function calls the program makes, answered as the provider would; any other one
   * must be mocked on purpose. `hcloud.getServers` lists the servers whose labels match every
   * `key=value` of `withSelector` (the API's label selector, Hetzner Cloud API reference,
   * Overview > Label Selector; only equality terms are modelled): the existing ones the
   * constructor was given and those this run registered, with what the program reads: id, name,
   * serverType, labels and status, `running` unless the constructor was told otherwise; a server
   * told "absent" is not listed (gone at Hetzner).
   */
  call(args: pulumi.runtime.MockCallArgs): pulumi.runtime.MockCallResult {
    if (args.token === "hcloud:index/getServers:getServers") {
      const selector = String(args.inputs.withSelector ?? "")
        .split(",")
        .filter((term) => term !== "")
        .map((term) => term.split("="));
      for (const term of selector) {
        if (term.length !== 2)
          throw new Error(`mock getServers models only key=value selectors, not ${term.join("=")}`);
      }
      const all = new Map([...Object.entries(this.existingServers), ...this.registeredServers.entries()]);
      const servers = [...all.entries()]
        .map(([resource, s]) => ({ ...s, status: this.serverStatus[resource] ?? "running" }))
        .filter((s) => s.status !== "absent")
        .filter((s) => selector.every(([key, value]) => s.labels[key] === value));
      return { id: "servers", withSelector: args.inputs.withSelector, servers };
    }
    throw new Error(`no mock for provider function ${args.token}; add one in tools/offline/mocks.ts`);
  }
}

/** A server as the mocked `hcloud.getServers` lists it (the fields the program reads). */
export interface ListedServer {
  id: number;
  name: string;
  serverType: string;
  labels: Record<string, string>;
}
