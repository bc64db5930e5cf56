/** Hetzner labels every resource of a cluster carries, so operators can select them. */
export function clusterLabels(clusterName: string, role: string): Record<string, string> {
  return { cluster: clusterName, role, "managed-by": "pulumi" };
}
