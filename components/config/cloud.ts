/**
 * The Hetzner cloud integration: the hcloud cloud controller manager
 * (components/addons/cloudController.ts), the hcloud CSI driver (components/addons/csi.ts) and
 * the token both use. The kubelets' external cloud provider is no
 * setting: every kubelet this program creates runs with it (components/node/kubeadm.ts), and the
 * stack records it as a creation fact (components/config/deployed.ts).
 */
import type { ClusterConfig } from "./index";
import { boolean, complete, isOneOf, live, nothing, oneOf, Reader, refused, string } from "./schema";

export const reclaimPolicyChoices = ["Retain", "Delete"] as const;
export type ReclaimPolicy = (typeof reclaimPolicyChoices)[number];

/** A Kubernetes object name (DNS subdomain, RFC 1123), as a StorageClass's name must be. */
const subdomain = (v: string) =>
  v.length <= 253 && /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(v)
    ? undefined
    : "must be a Kubernetes object name: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters";

export const cloudSettings = {
  cloudControllerManager: boolean(
    live(
      "installs or removes the hcloud-cloud-controller-manager Helm release and its Secret; initialized nodes keep their provider ids and labels",
    ),
  ),
  csiDriver: boolean(
    live(
      "installs or removes the hcloud CSI driver Helm release, its Secret and StorageClass; Hetzner volumes stay, but cannot be attached while it is off",
    ),
  ),
  csiStorageClassName: string(
    live("the StorageClass is recreated under the new name; bound volumes keep working, new claims name the new class"),
    subdomain,
  ),
  csiStorageClassDefault: boolean(live("the StorageClass's is-default-class annotation is updated in place")),
  csiReclaimPolicy: string(
    refused(
      "Kubernetes forbids updating a StorageClass's reclaimPolicy, so the CSI chart's upgrade would fail and roll back",
    ),
    oneOf(reclaimPolicyChoices),
  ),
  kubeletCloudProviderMigrated: boolean(
    nothing(
      "read only while the recorded creationSettings lack kubeletCloudProvider: true states every kubelet runs with --cloud-provider=external (docs/runbooks/external-cloud-provider.md)",
    ),
  ),
  hcloudCloudToken: string(
    live(
      "the controllers' Secrets are updated in place; running pods read the token at start, so restart them (docs/architecture.md)",
    ),
    // No rule: a rule's message quotes the value, and this one is a secret.
  ),
};

/** Reads the cloud settings; the controllers need a token, their own or hcloud:token. */
export function readCloud(reader: Reader): Pick<ClusterConfig, "cloud"> | undefined {
  const values = reader.read(cloudSettings);
  const v = complete(cloudSettings, values);
  if (!v || !isOneOf(reclaimPolicyChoices, v.csiReclaimPolicy)) return undefined;
  if ((v.cloudControllerManager || v.csiDriver) && v.hcloudCloudToken === "" && !reader.raw.values["hcloud:token"]) {
    reader.problems.push(
      'hcloud:token is not set, and hcloudCloudToken is "": the cloud controller and the CSI driver need a Hetzner token: `pulumi config set --secret hcloud-control-plane:hcloudCloudToken`, or switch them off',
    );
    return undefined;
  }
  return {
    cloud: {
      controllerManager: v.cloudControllerManager,
      csiDriver: v.csiDriver,
      storageClass: {
        name: v.csiStorageClassName,
        isDefault: v.csiStorageClassDefault,
        reclaimPolicy: v.csiReclaimPolicy,
      },
      dedicatedToken: v.hcloudCloudToken !== "",
      kubeletCloudProviderMigrated: v.kubeletCloudProviderMigrated,
    },
  };
}
