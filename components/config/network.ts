/**
 * Networks, pinned node addresses, who may reach the nodes, and the SSH key pair.
 *
 * Networks: each must parse, the network must be private, the subnet inside it, and nothing
 * that routes differently (pods, services) may overlap anything else. Pinned addresses lie
 * inside the subnet, are not reserved, and are unique.
 */
import { privateRanges } from "../hetzner/facts";
import {
  cidrContains,
  cidrContainsIp,
  cidrError,
  cidrSize,
  cidrsOverlap,
  hostAt,
  Ipv4Cidr,
  parseIpv4Cidr,
} from "./cidr";
import { boolean, complete, list, live, Problems, Reader, refused, rolling, string, Values } from "./schema";

/** Offsets inside the subnet used when `nodeIps` / `loadBalancerPrivateIp` are left empty. */
export const derivedAddress = { firstNodeOffset: 11, loadBalancerOffset: 250 } as const;

const cidrRule = (v: string) => {
  const parsed = parseIpv4Cidr(v);
  return typeof parsed === "string" ? parsed : undefined;
};

/** A list of firewall source CIDRs: each valid, none twice, and (for SSH) at least one. */
const sourceCidrs =
  (nonEmpty: boolean) =>
  (v: string[]): Problems => {
    const problems: string[] = [];
    if (nonEmpty && v.length === 0) {
      problems.push("must list at least one source CIDR (where operators and the Pulumi runner connect from)");
    }
    v.forEach((cidr, i) => {
      const err = cidrError(cidr);
      if (err) problems.push(`entry ${i + 1} (${cidr}) ${err}`);
    });
    const dupes = v.filter((c, i) => v.indexOf(c) !== i);
    if (dupes.length > 0) problems.push(`lists ${dupes[0]} more than once`);
    return problems;
  };

const creationTime = (what: string) =>
  refused(`${what} is fixed when the stack is created; a running cluster never reads it again`);

export const networkSettings = {
  networkCidr: string(
    creationTime("the private network's range (replacing the network detaches every node)"),
    cidrRule,
  ),
  subnetCidr: string(creationTime("the subnet every node and the load balancer is attached to"), cidrRule),
  podCidr: string(
    creationTime("kubeadm's podSubnet (and the CNI's pod address pool, which running pods hold addresses from)"),
    cidrRule,
  ),
  serviceCidr: string(
    creationTime("kubeadm's serviceSubnet (and the API server's service IP in its certificate)"),
    cidrRule,
  ),
  nodeIps: list(
    refused(
      "the private IP of a running node is its etcd peer address and in its certificates; change a node by replacing it",
    ),
  ),
  adminCidrs: list(live("the firewall's SSH rule is updated in place"), sourceCidrs(true)),
  allowSshFromAnywhere: boolean(
    live("only lets adminCidrs hold an all-addresses range; the firewall is updated in place"),
  ),
  // apiCidrs may hold 0.0.0.0/0 without an opt-in: port 6443 is the API server, which
  // authenticates every request, and the load balancer's public 6443 (which no Hetzner
  // firewall can filter) is open to the internet anyway while loadBalancerPublicInterface is on.
  apiCidrs: list(live("the firewall's 6443 rule is updated in place"), sourceCidrs(false)),
  sshPublicKey: string(
    live(
      "the Hetzner SSH key is replaced; running servers keep the key they were created with (ignoreChanges sshKeys)",
    ),
    (v) =>
      /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( \S.*)?$/.test(v.trim())
        ? undefined
        : "must be one OpenSSH public key line (ssh-ed25519, ssh-rsa or ecdsa-sha2-nistp*)",
  ),
  // Read only to report it missing; loadSecrets hands it on as a Pulumi secret.
  sshPrivateKey: string(
    live(
      "commands connect with the new key: node-changing ones find their record on the node and run nothing, read-only ones read again; authorize the key on every node first (docs/runbooks/ssh-key-rotation.md)",
    ),
  ),
  apiDnsName: string(
    rolling(
      "each API server certificate gets the new name as a SAN, node by node behind the gates (apiserver-sans.sh); earlier names stay SANs, the nodes keep their endpoint, the kubeconfig moves last",
    ),
    (v) =>
      v === "" || /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/.test(v)
        ? undefined
        : 'must be "" or a lower-case DNS name such as api.prod.example.com',
  ),
};

export type NetworkValues = Values<typeof networkSettings>;

/** The parsed network section: the blocks, and the nodes with their addresses. */
export interface Network {
  values: NetworkValues;
  network: Ipv4Cidr;
  subnet: Ipv4Cidr;
  pods: Ipv4Cidr;
  services: Ipv4Cidr;
  /** In node order cp-1..cp-N. */
  nodeIps: string[];
}

/** The parts of the network the load balancer's address is checked against. */
export interface Addressing {
  subnet?: Ipv4Cidr;
  network?: Ipv4Cidr;
  nodeIps?: string[];
}

/** Reads the network settings and applies the rules between them and controlPlaneCount. */
export function readNetwork(reader: Reader, count: number | undefined): Addressing & { complete?: Network } {
  const values = reader.read(networkSettings);
  // Each passed its rule (or is undefined), so it parses.
  const cidr = (text: string | undefined) => {
    const parsed = text === undefined ? undefined : parseIpv4Cidr(text);
    return typeof parsed === "string" ? undefined : parsed;
  };
  const [network, subnet, pods, services] = [
    values.networkCidr,
    values.subnetCidr,
    values.podCidr,
    values.serviceCidr,
  ].map(cidr);
  const blocksOk = checkBlocks(reader, { network, subnet, pods, services });
  const nodes =
    values.nodeIps && count !== undefined && subnet
      ? nodeAddresses(reader, values.nodeIps, count, { subnet, network })
      : undefined;
  const nodeIps = nodes?.ips;
  const adminOk = checkSshFromAnywhere(reader, values.adminCidrs, values.allowSshFromAnywhere);
  const all = complete(networkSettings, values);
  const whole =
    all && blocksOk && adminOk && nodes?.ok && nodeIps && network && subnet && pods && services
      ? { values: all, network, subnet, pods, services, nodeIps }
      : undefined;
  return { subnet, network, nodeIps, complete: whole };
}

function checkBlocks(
  reader: Reader,
  b: { network?: Ipv4Cidr; subnet?: Ipv4Cidr; pods?: Ipv4Cidr; services?: Ipv4Cidr },
): boolean {
  const before = reader.problems.length;
  const { network, subnet } = b;
  if (network) {
    const inPrivate = privateRanges.some((p) => cidrContains(parseIpv4Cidr(p) as Ipv4Cidr, network));
    if (!inPrivate) {
      reader.problem("networkCidr", network.text, `must lie inside a private range (${privateRanges.join(", ")})`);
    } else if (network.range[1] > 24)
      reader.problem("networkCidr", network.text, "must be /24 or larger (Hetzner's limit)");
  }
  if (network && subnet && !cidrContains(network, subnet)) {
    reader.problem("subnetCidr", subnet.text, `must lie inside networkCidr ${network.text}`);
  }
  const named: [string, Ipv4Cidr | undefined][] = [
    ["networkCidr", network],
    ["podCidr", b.pods],
    ["serviceCidr", b.services],
  ];
  named.forEach(([ka, a], i) =>
    named.slice(i + 1).forEach(([kb, other]) => {
      if (a && other && cidrsOverlap(a, other)) reader.problem(kb, other.text, `must not overlap ${ka} ${a.text}`);
    }),
  );
  return reader.problems.length === before;
}

/** Why `ip` cannot be a pinned address in `subnet`, or undefined. */
export function pinnedAddressError(ip: string, at: { subnet: Ipv4Cidr; network?: Ipv4Cidr }): string | undefined {
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(ip) || ip.split(".").some((o) => Number(o) > 255)) {
    return "must be an IPv4 address";
  }
  if (!cidrContainsIp(at.subnet, ip)) return `must lie inside subnetCidr ${at.subnet.text}`;
  const reserved = new Map<string, string>([
    [hostAt(at.subnet, 0), "the subnet's network address"],
    [hostAt(at.subnet, cidrSize(at.subnet) - 1), "the subnet's broadcast address"],
  ]);
  if (at.network) reserved.set(hostAt(at.network, 1), "the network gateway Hetzner reserves");
  const why = reserved.get(ip);
  return why ? `is ${why}` : undefined;
}

/**
 * The node addresses: listed one per node, or [] to derive them; derived ones pass the same
 * checks. `ok` is false when one of them was refused (the load balancer's address is still
 * checked against them).
 */
function nodeAddresses(
  reader: Reader,
  listed: string[],
  count: number,
  at: { subnet: Ipv4Cidr; network?: Ipv4Cidr },
): { ips: string[]; ok: boolean } | undefined {
  const derived = listed.length === 0;
  if (!derived && listed.length !== count) {
    reader.problem(
      "nodeIps",
      listed,
      `must list exactly controlPlaneCount (${count}) addresses, one per node in order cp-1..cp-${count}, or be [] to derive them from subnetCidr`,
    );
    return undefined;
  }
  const ips = derived
    ? Array.from({ length: count }, (_, i) => hostAt(at.subnet, derivedAddress.firstNodeOffset + i))
    : listed;
  const before = reader.problems.length;
  ips.forEach((ip, i) => {
    const err = pinnedAddressError(ip, at);
    if (err && derived)
      reader.problem("nodeIps", listed, `the derived address of cp-${i + 1} (${ip}) ${err}; list the addresses`);
    else if (err) reader.problem("nodeIps", listed, `entry ${i + 1} (${ip}) ${err}`);
  });
  const seen = new Map<string, string>();
  ips.forEach((ip, i) => {
    const owner = seen.get(ip);
    if (owner) reader.problem("nodeIps", listed, `entry ${i + 1} (${ip}) is already used by ${owner}`);
    seen.set(ip, `cp-${i + 1}`);
  });
  return { ips, ok: reader.problems.length === before };
}

/** A valid source CIDR with prefix length 0 (`0.0.0.0/0`, `::/0`, `0.0.0.0/00`) admits every address. */
const anywhere = (cidr: string): boolean => Number(cidr.slice(cidr.lastIndexOf("/") + 1)) === 0;

function checkSshFromAnywhere(reader: Reader, adminCidrs: string[] | undefined, optIn: boolean | undefined): boolean {
  const open = adminCidrs?.findIndex(anywhere) ?? -1;
  if (adminCidrs && open >= 0 && optIn === false) {
    reader.problem(
      "adminCidrs",
      adminCidrs,
      `entry ${open + 1} (${adminCidrs[open]}) opens SSH (port 22) on every node to the whole internet; list the networks operators and the Pulumi runner connect from, or set ${reader.fullKey("allowSshFromAnywhere")} to true to accept it`,
    );
    return false;
  }
  return true;
}
