/** The pod network, the reserved-IP companion and the workers' join token. */
import type { ClusterConfig } from "./index";
import { revisionLabel } from "./maintenance";
import { boolean, complete, inRange, integer, isOneOf, live, oneOf, Reader, refused, rolling, string } from "./schema";

export const cniChoices = ["cilium", "calico"] as const;
export type CniChoice = (typeof cniChoices)[number];

/** A worker join token: a new id (rotation, TTL) mints a new token; old ones expire. */
const newToken = live("a new token id: the worker-join-token command mints a new token; workers that joined stay");

export const addonSettings = {
  cni: string(
    refused("running pods keep the installed CNI's network; the program would install the other next to it"),
    oneOf(cniChoices),
  ),
  workerJoinTokenTtlHours: integer(newToken, inRange(1, 8760, " hours (a year at most)")),
  workerJoinTokenRotation: string(newToken, (v) =>
    revisionLabel.test(v) ? undefined : "must be 1-63 letters, digits, '.', '_' or '-'",
  ),
  reservedIpFailover: boolean(
    rolling("the companion is installed or removed node after node, each after the previous node's kube-vip"),
  ),
};

/** Reads the add-on settings; failover needs the Hetzner token on the nodes. */
export function readAddons(
  reader: Reader,
): Pick<ClusterConfig, "cni" | "reservedIpFailover" | "workerJoin"> | undefined {
  const values = reader.read(addonSettings);
  if (values.reservedIpFailover && reader.raw.values["hcloud:token"] === undefined) {
    reader.problems.push(
      "hcloud:token is not set, and reservedIpFailover needs it on the nodes: `pulumi config set --secret hcloud:token`, or set reservedIpFailover to false",
    );
    return undefined;
  }
  const v = complete(addonSettings, values);
  if (!v || !isOneOf(cniChoices, v.cni)) return undefined;
  return {
    cni: v.cni,
    reservedIpFailover: v.reservedIpFailover,
    workerJoin: { ttlHours: v.workerJoinTokenTtlHours, rotation: v.workerJoinTokenRotation },
  };
}
