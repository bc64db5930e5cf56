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
  "hcloud:index/sshKey:SshKey": (_name, inputs) => ({
    fingerprint: crypto
      .createHash("md5")
      .update(Buffer.from(String(inputs.publicKey).split(" ")[1] ?? "", "base64"))
      .digest("hex")
      .replace(/(..)(?!$)/g, "$1:"),
  }),
};

const idFor: Record<string, (name: string, inputs: State) => string> = {
  "hcloud:index/networkSubnet:NetworkSubnet": (_name, inputs) => `${inputs.networkId}-${inputs.ipRange}`,
};

export class ProviderMocks implements pulumi.runtime.Mocks {
  constructor(private readonly preview: boolean) {}

  newResource(args: pulumi.runtime.MockResourceArgs): pulumi.runtime.MockResourceResult {
    const inputs = args.inputs as State;
    if (this.preview) return { id: undefined, state: inputs };
    const id = (idFor[args.type] ?? ((name: string) => numericId(name)))(args.name, inputs);
    return { id, state: { ...inputs, ...(computed[args.type]?.(args.name, inputs) ?? {}) } };
  }

  /** The program makes no provider function calls; one that appears must be mocked on purpose. */
  call(args: pulumi.runtime.MockCallArgs): pulumi.runtime.MockCallResult {
    throw new Error(`no mock for provider function ${args.token}; add one in scripts/offline/mocks.ts`);
  }
}
