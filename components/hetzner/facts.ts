/**
 * Facts about Hetzner Cloud that config validation checks against. Each list is what the
 * Hetzner API accepts; a value outside it would fail at `pulumi up` time, half-way through.
 */

/** Cloud locations and the network zone each belongs to. */
export const locationZones: Readonly<Record<string, string>> = {
  fsn1: "eu-central",
  nbg1: "eu-central",
  hel1: "eu-central",
  ash: "us-east",
  hil: "us-west",
  sin: "ap-southeast",
};

export const networkZones = [...new Set(Object.values(locationZones))].sort();

export const loadBalancerTypes = ["lb11", "lb21", "lb31"] as const;

/** `LoadBalancer.algorithm.type` values the API accepts (the SDK docs' camelCase ones are refused). */
export const loadBalancerAlgorithms = ["round_robin", "least_connections"] as const;

/** Images the node preparation script supports (it uses apt and Ubuntu's containerd). */
export const supportedImages = ["ubuntu-24.04", "ubuntu-22.04"] as const;

/** Hetzner refuses a network whose range is not private (RFC 1918). */
export const privateRanges = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"] as const;

/** Largest userData Hetzner accepts, in bytes (32 KiB). */
export const maxUserDataBytes = 32 * 1024;

/** Object Storage locations; each has the S3 endpoint `https://<location>.your-objectstorage.com`. */
export const objectStorageLocations = ["fsn1", "nbg1", "hel1"] as const;

export function objectStorageEndpoint(location: string): string {
  return `https://${location}.your-objectstorage.com`;
}
