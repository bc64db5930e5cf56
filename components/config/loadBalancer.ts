/** The Hetzner load balancer in front of the API servers, and its health check. */
import type { ClusterConfig } from "./index";
import { loadBalancerAlgorithms, loadBalancerTypes } from "../hetzner/facts";
import { Addressing, derivedAddress, pinnedAddressError } from "./network";
import { hostAt } from "./cidr";
import { failoverBudgetSeconds, loadBalancerWorstCase } from "./failoverBudget";
import { boolean, complete, inRange, integer, isOneOf, live, oneOf, Reader, refused, rolling, string } from "./schema";

export const healthCheckModes = ["tcp", "readyz"] as const;
export type HealthCheckMode = (typeof healthCheckModes)[number];

export const loadBalancerSettings = {
  loadBalancerType: string(live("Hetzner changes a load balancer's type in place"), oneOf(loadBalancerTypes)),
  loadBalancerAlgorithm: string(
    live("the load balancer's algorithm is updated in place"),
    oneOf(loadBalancerAlgorithms),
  ),
  loadBalancerPrivateIp: string(
    refused(
      "the controlPlaneEndpoint and a certificate SAN kubeadm init wrote into every kubeconfig and the API server certificates",
    ),
  ),
  loadBalancerPublicInterface: boolean(
    rolling(
      "on: the public IPs become SANs node by node behind the gates (apiserver-sans.sh), the kubeconfig moves last; off: they stay SANs, but every kubeconfig that names them stops working",
    ),
  ),
  healthCheckMode: string(
    live("the load balancer service's health check is updated in place"),
    oneOf(healthCheckModes),
  ),
  healthCheckIntervalSeconds: integer(live("the health check is updated in place"), inRange(3, 60, " seconds")),
  healthCheckTimeoutSeconds: integer(live("the health check is updated in place"), inRange(1, 60, " seconds")),
  healthCheckRetries: integer(live("the health check is updated in place"), inRange(1, 10)),
};

/**
 * Reads the load balancer settings: the health check's timeout fits its interval, a dead node
 * leaves the rotation within the load-balancer path's failover budget (docs/failover-budget.md),
 * and the private IP ("" derives one) lies in the subnet, is not reserved and no node has it.
 */
export function readLoadBalancer(reader: Reader, at: Addressing): ClusterConfig["loadBalancer"] | undefined {
  const values = reader.read(loadBalancerSettings);
  const { healthCheckTimeoutSeconds: timeout, healthCheckIntervalSeconds: interval } = values;
  if (timeout !== undefined && interval !== undefined && timeout > interval) {
    reader.problem("healthCheckTimeoutSeconds", timeout, `must not exceed healthCheckIntervalSeconds (${interval})`);
    values.healthCheckTimeoutSeconds = undefined;
  }
  healthCheckWithinBudget(
    reader,
    values.healthCheckIntervalSeconds,
    values.healthCheckTimeoutSeconds,
    values.healthCheckRetries,
  );
  const privateIp =
    values.loadBalancerPrivateIp !== undefined ? address(reader, values.loadBalancerPrivateIp, at) : undefined;
  const v = complete(loadBalancerSettings, values);
  if (!v || privateIp === undefined || !isOneOf(healthCheckModes, v.healthCheckMode)) return undefined;
  return {
    type: v.loadBalancerType,
    algorithm: v.loadBalancerAlgorithm,
    privateIp,
    publicInterface: v.loadBalancerPublicInterface,
    healthCheck: {
      mode: v.healthCheckMode,
      interval: v.healthCheckIntervalSeconds,
      timeout: v.healthCheckTimeoutSeconds,
      retries: v.healthCheckRetries,
    },
  };
}

/** Refuses a health check that keeps a dead node in rotation longer than the budget allows. */
function healthCheckWithinBudget(reader: Reader, interval?: number, timeout?: number, retries?: number): void {
  if (interval === undefined || timeout === undefined || retries === undefined) return;
  const worst = loadBalancerWorstCase({ interval, timeout, retries });
  const budget = failoverBudgetSeconds.loadBalancer;
  if (worst <= budget) return;
  reader.problem(
    "healthCheckIntervalSeconds",
    interval,
    `with healthCheckRetries ${retries} and healthCheckTimeoutSeconds ${timeout}, a dead node gets new connections for up to ${worst} s (interval × retries + timeout = ${interval} × ${retries} + ${timeout}), over the load balancer's failover budget of ${budget} s (docs/failover-budget.md); lower the interval, the retries or the timeout`,
  );
}

function address(reader: Reader, raw: string, at: Addressing): string | undefined {
  if (!at.subnet) return undefined;
  const derived = raw === "";
  const ip = derived ? hostAt(at.subnet, derivedAddress.loadBalancerOffset) : raw;
  const err = pinnedAddressError(ip, { subnet: at.subnet, network: at.network });
  if (err && derived) reader.problem("loadBalancerPrivateIp", raw, `the derived address ${ip} ${err}; set one`);
  else if (err) reader.problem("loadBalancerPrivateIp", raw, err);
  const node = at.nodeIps?.indexOf(ip) ?? -1;
  if (!err && node >= 0) {
    reader.problem("loadBalancerPrivateIp", raw, `${ip} is already used by cp-${node + 1} (nodeIps)`);
  }
  return err || node >= 0 ? undefined : ip;
}
