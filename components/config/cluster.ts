/** The cluster's identity, place, size and Kubernetes version. */
import { locationZones, networkZones, supportedImages } from "../hetzner/facts";
import { supportedKubernetesMinors } from "../versions";
import { complete, integer, nothing, oneOf, Reader, refused, rolling, string, Values } from "./schema";

const wellFormedVersion = (v: string) => /^1\.(0|[1-9]\d*)\.(0|[1-9]\d*)$/.test(v);

export const clusterSettings = {
  clusterName: string(
    refused(
      "names every server, the network, the load balancer, the bucket and kubeadm's clusterName, which a running cluster never reads again",
    ),
    (v) =>
      /^[a-z]([a-z0-9-]{0,28}[a-z0-9])?$/.test(v)
        ? undefined
        : "must be 1-30 characters of lower-case letters, digits and '-', starting with a letter and not ending with '-'",
  ),
  location: string(
    refused("a server's, load balancer's and Floating IP's location is fixed at creation: a change replaces them"),
    oneOf(Object.keys(locationZones)),
  ),
  networkZone: string(
    refused("the subnet's network zone is fixed at creation: a change replaces the subnet every node is attached to"),
    oneOf(networkZones),
  ),
  controlPlaneCount: integer(
    rolling(
      "new nodes are brought up one at a time, each node's setup, kube-vip and companion before the next joins (etcd takes one learner at a time); removing a node stops at its protected server",
    ),
    (v) =>
      v >= 1 && v <= 7 && v % 2 === 1
        ? undefined
        : "must be an odd number from 1 to 7 (1, 3, 5 or 7): etcd needs a majority, and an even count adds no fault tolerance",
  ),
  serverType: string(
    rolling(
      "resized one server at a time behind the gates by scripts/ops/resize-control-plane.sh; the program never resizes a server and takes the new type once every server runs it",
    ),
    (v) => (/^[a-z]+\d+[a-z]*$/.test(v) ? undefined : "must be a Hetzner server type name such as ccx23 or cpx31"),
  ),
  image: string(
    nothing(
      "servers ignore image changes (a new image would replace an etcd member); only servers created later use it",
    ),
    oneOf(supportedImages),
  ),
  kubernetesVersion: string(
    rolling("kubeadm upgrades the nodes one at a time behind the upgrade preflight; skips and downgrades are refused"),
    (v) => {
      if (!wellFormedVersion(v)) return 'must be a Kubernetes version "x.y.z" such as "1.34.2" (no "v" prefix)';
      const { major, min, max } = supportedKubernetesMinors;
      const minor = Number(v.split(".")[1]);
      return minor >= min && minor <= max
        ? undefined
        : `must be a ${major}.${min} to ${major}.${max} version (supportedKubernetesMinors in components/versions.ts): the pinned add-ons, the kubeadm v1beta4 configuration and the node scripts were made for those minors`;
    },
  ),
};

export type ClusterValues = Values<typeof clusterSettings>;

/**
 * Reads the cluster settings and applies the rules between them: the location lies in the
 * network zone, and the version moves from the deployed one as kubeadm can upgrade.
 */
export function readCluster(reader: Reader): { values: Partial<ClusterValues>; complete?: ClusterValues } {
  const values = reader.read(clusterSettings);
  const { location, networkZone } = values;
  if (location && networkZone && locationZones[location] !== networkZone) {
    reader.problem(
      "networkZone",
      networkZone,
      `does not contain location "${location}" (${location} is in ${locationZones[location]}); set networkZone to ${locationZones[location]} or choose one of ${Object.keys(
        locationZones,
      )
        .filter((l) => locationZones[l] === networkZone)
        .join(", ")}`,
    );
    values.networkZone = undefined;
  }
  // Checked even outside the supported minors, so that both refusals are reported at once.
  const wanted = reader.raw.values[reader.fullKey("kubernetesVersion")];
  const deployed = reader.raw.deployedKubernetesVersion;
  if (wanted !== undefined && wellFormedVersion(wanted) && deployed) {
    const error = versionChangeError(deployed, wanted);
    if (error) {
      reader.problem("kubernetesVersion", wanted, error);
      values.kubernetesVersion = undefined;
    }
  }
  return { values, complete: complete(clusterSettings, values) };
}

/** A Kubernetes version "x.y.z" as numbers. */
export function parseVersion(version: string): { major: number; minor: number; patch: number } | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(version);
  return m ? { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]) } : undefined;
}

/**
 * Why moving a running cluster from `deployed` to `wanted` is refused, or undefined: kubeadm
 * upgrades one minor version at a time and never downgrades. Patch releases within a minor,
 * and the next minor at any patch, are allowed.
 */
export function versionChangeError(deployed: string, wanted: string): string | undefined {
  const from = parseVersion(deployed);
  const to = parseVersion(wanted);
  if (!from || !to) return undefined;
  const order = (v: { major: number; minor: number; patch: number }) => [v.major, v.minor, v.patch];
  const cmp =
    order(to)
      .map((x, i) => x - order(from)[i])
      .find((d) => d !== 0) ?? 0;
  if (cmp < 0) {
    return `is older than ${deployed}, the version this stack runs (its kubernetesVersion output): kubeadm cannot downgrade a cluster; set it back to ${deployed} or higher`;
  }
  if (to.major !== from.major || to.minor > from.minor + 1) {
    return `skips minor versions: this stack runs ${deployed} (its kubernetesVersion output), and kubeadm upgrades one minor version at a time; set ${from.major}.${from.minor + 1}.x first, run pulumi up, then go on (docs/runbooks/upgrade.md)`;
  }
  return undefined;
}
