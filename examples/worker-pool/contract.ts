/**
 * What this example expects from the control-plane stack's outputs (components/outputs.ts),
 * checked before anything is created. Pure: no Pulumi resources, no I/O.
 */
import { isIPv4 } from "node:net";
import { intToIpv4, ipv4ToInt } from "../../components/config/cidr";
import { joinCredentialPatterns } from "../../components/node/kubeadm";
import type { WorkerJoin } from "../../components/outputs";

/**
 * The `outputsVersion` this example was written against. The control-plane stack bumps its
 * version whenever an output is removed or changes meaning; an example that read a contract it
 * does not know would build workers from misread values, so any other version is refused.
 * Deliberately a literal, not an import of the producer's constant: a consumer states what it
 * supports (tests/workerPool.test.ts fails when the two drift apart in this repo).
 */
export const supportedOutputsVersion = 2;

/** Throws unless the referenced stack publishes the contract version this example supports. */
export function checkOutputsVersion(version: unknown, stack: string): void {
  if (version === supportedOutputsVersion) return;
  const found = version === undefined ? "no outputsVersion output" : `outputsVersion ${JSON.stringify(version)}`;
  throw new Error(
    `worker-pool: stack ${stack} has ${found}, but this example supports outputsVersion ` +
      `${supportedOutputsVersion} only (components/outputs.ts). Update the example to the new ` +
      `contract, or point controlPlaneStack at a stack that publishes version ${supportedOutputsVersion}.`,
  );
}

const hostPort = /^[A-Za-z0-9.-]+:[0-9]{1,5}$/;

/**
 * Checks the secret `workerJoin` output's shape. Error messages name the field and the rule,
 * never the value: the token must not reach a log.
 */
export function parseWorkerJoin(value: unknown, stack: string): WorkerJoin {
  if (value === undefined || value === null) {
    throw new Error(
      `worker-pool: stack ${stack} has no workerJoin output (the control plane exports it from outputsVersion 2)`,
    );
  }
  const join = value as Partial<Record<keyof WorkerJoin, unknown>>;
  const fail = (field: keyof WorkerJoin, rule: string): never => {
    throw new Error(`worker-pool: workerJoin.${field} of stack ${stack} is not ${rule}`);
  };
  const text = (field: keyof WorkerJoin): string => {
    const v = join[field];
    return typeof v === "string" ? v : fail(field, "a string");
  };
  const endpoint = text("controlPlaneEndpoint");
  if (!hostPort.test(endpoint)) fail("controlPlaneEndpoint", "host:port");
  const token = text("token");
  if (!joinCredentialPatterns.token.test(token)) fail("token", "a kubeadm bootstrap token ([a-z0-9]{6}.[a-z0-9]{16})");
  const hash = text("caCertHash");
  if (!joinCredentialPatterns.caCertHash.test(hash)) fail("caCertHash", "sha256:<64 hex digits>");
  const expires = text("expires");
  if (Number.isNaN(Date.parse(expires))) fail("expires", "an ISO 8601 time");
  return { controlPlaneEndpoint: endpoint, token, caCertHash: hash, expires };
}

/**
 * `count` consecutive IPv4 addresses from `first` (`10.20.1.101`, `10.20.1.102`, ...). Whether
 * they lie in the stack's subnet and are free is Hetzner's to check at `pulumi up`.
 */
export function consecutiveIps(first: string, count: number): string[] {
  if (!isIPv4(first)) throw new Error(`worker-pool: firstPrivateIp must be an IPv4 address, got '${first}'`);
  const start = ipv4ToInt(first);
  if (start + count - 1 > 0xffffffff) throw new Error(`worker-pool: ${count} addresses from ${first} overflow IPv4`);
  return Array.from({ length: count }, (_, i) => intToIpv4(start + i));
}
