/**
 * IP and CIDR checks for config validation and the addresses derived from the subnet, on
 * ipaddr.js (parsing, network addresses, containment). Only the error texts are ours, so that
 * each names what is wrong in the operator's terms.
 */
import * as ipaddr from "ipaddr.js";

/** A parsed IPv4 CIDR block, as written (`text`) and as ipaddr.js's range. */
export interface Ipv4Cidr {
  text: string;
  range: [ipaddr.IPv4, number];
}

/** Dotted quads only: ipaddr.js's own parser also takes `10.1`, hex and octal forms. */
const ipv4Cidr = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/;

/** A dotted quad as an unsigned 32-bit number (examples/worker-pool counts addresses with it). */
export function ipv4ToInt(ip: string): number {
  return ipaddr.IPv4.parse(ip)
    .toByteArray()
    .reduce((acc, octet) => acc * 256 + octet, 0);
}

/** An unsigned 32-bit number as a dotted quad. */
export function intToIpv4(n: number): string {
  return new ipaddr.IPv4([24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256)).toString();
}

/**
 * Parses `a.b.c.d/n`. Returns an error text (not an exception) so callers can name the
 * config key in their own message. Host bits must be zero: `10.0.1.5/24` is refused,
 * because Hetzner's API refuses it too.
 */
export function parseIpv4Cidr(text: string): Ipv4Cidr | string {
  const match = ipv4Cidr.exec(text);
  if (!match || !ipaddr.IPv4.isValidFourPartDecimal(match[1])) return "is not an IPv4 CIDR like 10.0.0.0/16";
  if (Number(match[2]) > 32) return "has a prefix length above 32";
  const range = ipaddr.IPv4.parseCIDR(text);
  const network = ipaddr.IPv4.networkAddressFromCIDR(text);
  if (network.toString() !== range[0].toString()) {
    return `has host bits set (the network address is ${network.toString()}/${range[1]})`;
  }
  return { text, range };
}

/** Validates an IPv4 or IPv6 CIDR (source ranges for firewall rules). */
export function cidrError(text: string): string | undefined {
  if (text.includes(".")) {
    const parsed = parseIpv4Cidr(text);
    return typeof parsed === "string" ? parsed : undefined;
  }
  const match = /^([0-9a-fA-F:]+)\/(\d{1,3})$/.exec(text);
  if (!match || !ipaddr.IPv6.isValid(match[1])) {
    return "is not an IPv4 or IPv6 CIDR like 203.0.113.0/24 or 2001:db8::/32";
  }
  if (Number(match[2]) > 128) return "has a prefix length above 128";
  const [address] = ipaddr.IPv6.parseCIDR(text);
  return ipaddr.IPv6.networkAddressFromCIDR(text).toString() === address.toString() ? undefined : "has host bits set";
}

/** Whether `inner` lies wholly inside `outer`. */
export function cidrContains(outer: Ipv4Cidr, inner: Ipv4Cidr): boolean {
  return inner.range[1] >= outer.range[1] && inner.range[0].match(outer.range);
}

/** Two CIDR blocks overlap exactly when one contains the other. */
export function cidrsOverlap(a: Ipv4Cidr, b: Ipv4Cidr): boolean {
  return cidrContains(a, b) || cidrContains(b, a);
}

/** Whether the dotted-quad `ip` lies inside `cidr`. */
export function cidrContainsIp(cidr: Ipv4Cidr, ip: string): boolean {
  return ipaddr.IPv4.isValidFourPartDecimal(ip) && ipaddr.IPv4.parse(ip).match(cidr.range);
}

/** Addresses in the block: 256 for a /24. */
export function cidrSize(cidr: Ipv4Cidr): number {
  return 2 ** (32 - cidr.range[1]);
}

/** The `offset`-th address of a block: `hostAt(10.0.1.0/24, 11)` is `10.0.1.11`; past the end it leaves the block. */
export function hostAt(cidr: Ipv4Cidr, offset: number): string {
  return intToIpv4(ipv4ToInt(cidr.range[0].toString()) + offset);
}
