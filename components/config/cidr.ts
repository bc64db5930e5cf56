/**
 * Small, dependency-free IP and CIDR arithmetic used by config validation and by the
 * builders that derive addresses (node IPs, the load balancer IP) from the subnet.
 */
import { isIPv4, isIPv6 } from "node:net";

/** A parsed IPv4 CIDR block. `base` and `size` are unsigned 32-bit integers. */
export interface Ipv4Cidr {
  text: string;
  base: number;
  prefix: number;
  size: number;
}

export function ipv4ToInt(ip: string): number {
  return ip.split(".").reduce((acc, octet) => acc * 256 + Number(octet), 0);
}

export function intToIpv4(n: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join(".");
}

/**
 * Parses `a.b.c.d/n`. Returns an error text (not an exception) so callers can name the
 * config key in their own message. Host bits must be zero: `10.0.1.5/24` is refused,
 * because Hetzner's API refuses it too.
 */
export function parseIpv4Cidr(text: string): Ipv4Cidr | string {
  const match = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(text);
  if (!match || !isIPv4(match[1])) return "is not an IPv4 CIDR like 10.0.0.0/16";
  const prefix = Number(match[2]);
  if (prefix > 32) return "has a prefix length above 32";
  const size = 2 ** (32 - prefix);
  const base = ipv4ToInt(match[1]);
  if (base % size !== 0) {
    return `has host bits set (the network address is ${intToIpv4(base - (base % size))}/${prefix})`;
  }
  return { text, base, prefix, size };
}

/** Validates an IPv4 or IPv6 CIDR (source ranges for firewall rules). */
export function cidrError(text: string): string | undefined {
  if (text.includes(".")) {
    const parsed = parseIpv4Cidr(text);
    return typeof parsed === "string" ? parsed : undefined;
  }
  const match = /^([0-9a-fA-F:]+)\/(\d{1,3})$/.exec(text);
  if (!match || !isIPv6(match[1])) return "is not an IPv4 or IPv6 CIDR like 203.0.113.0/24 or 2001:db8::/32";
  const prefix = Number(match[2]);
  if (prefix > 128) return "has a prefix length above 128";
  const bits = ipv6ToBigInt(match[1]);
  const hostMask = (1n << BigInt(128 - prefix)) - 1n;
  if ((bits & hostMask) !== 0n) return "has host bits set";
  return undefined;
}

function ipv6ToBigInt(ip: string): bigint {
  const [head, tail] = ip.includes("::") ? ip.split("::") : [ip, undefined];
  const headParts = head ? head.split(":") : [];
  const tailParts = tail ? tail.split(":") : [];
  const missing = 8 - headParts.length - tailParts.length;
  const parts = tail === undefined ? headParts : [...headParts, ...Array(missing).fill("0"), ...tailParts];
  return parts.reduce((acc, part) => (acc << 16n) + BigInt(parseInt(part || "0", 16)), 0n);
}

export function cidrContains(outer: Ipv4Cidr, inner: Ipv4Cidr): boolean {
  return inner.base >= outer.base && inner.base + inner.size <= outer.base + outer.size;
}

export function cidrsOverlap(a: Ipv4Cidr, b: Ipv4Cidr): boolean {
  return a.base < b.base + b.size && b.base < a.base + a.size;
}

export function cidrContainsIp(cidr: Ipv4Cidr, ip: string): boolean {
  const n = ipv4ToInt(ip);
  return n >= cidr.base && n < cidr.base + cidr.size;
}

/** The `offset`-th address of a block: `hostAt(10.0.1.0/24, 11)` is `10.0.1.11`. */
export function hostAt(cidr: Ipv4Cidr, offset: number): string {
  return intToIpv4(cidr.base + offset);
}
