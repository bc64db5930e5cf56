/**
 * Every pinned version the program deploys, in one place. Bump here and nowhere else.
 */
export const versions = {
  /**
   * Debian package revision that pkgs.k8s.io appends to kubeadm, kubelet and kubectl
   * (`1.34.2-1.1`). It has been `1.1` for every release published there so far.
   */
  kubernetesPackageRevision: "1.1",
  /**
   * kube-vip image tag (`ghcr.io/kube-vip/kube-vip`), the static pod on every control-plane
   * node that holds the reserved IP (components/node/kubeVip.ts).
   */
  kubeVip: "v1.2.3",
  /** Cilium Helm chart (https://helm.cilium.io), the default pod network. */
  ciliumChart: "1.18.4",
  /** Calico's tigera-operator Helm chart (https://docs.tigera.io/calico/charts), the alternative. */
  calicoChart: "v3.30.4",
  /**
   * kube-prometheus-stack Helm chart (https://prometheus-community.github.io/helm-charts):
   * Prometheus Operator, Prometheus, Alertmanager, kube-state-metrics and node-exporter.
   */
  kubePrometheusStackChart: "88.5.3",
  /**
   * hcloud-cloud-controller-manager Helm chart (https://charts.hetzner.cloud, chart/ of
   * github.com/hetznercloud/hcloud-cloud-controller-manager at tag v1.35.0); its image tag is the
   * chart version. docs/reference/version-policy.md there supports Kubernetes 1.33-1.36 with the
   * latest release; 1.31 and 1.32 stacks should pin 1.29.2 and 1.30.1 (the last for them).
   * Vendored for the values test: tests/fixtures/charts/hcloud-cloud-controller-manager-1.35.0/.
   */
  hcloudCloudControllerManagerChart: "1.35.0",
  /**
   * hcloud-csi Helm chart (https://charts.hetzner.cloud, chart/ of github.com/hetznercloud/csi-driver
   * at tag v2.22.1); its driver image tag is the chart version. Vendored for the values test:
   * tests/fixtures/charts/hcloud-csi-2.22.1/.
   */
  hcloudCsiChart: "2.22.1",
  /**
   * The etcd image whose etcdctl/etcdutl the backup image carries
   * (scripts/jobs/images/etcd-backup.Dockerfile, build argument ETCD_IMAGE). Keep it at the etcd
   * version kubeadm deploys for the configured Kubernetes minor (`kubeadm config images list`).
   */
  etcdImage: "registry.k8s.io/etcd:3.6.5-0",
} as const;

/**
 * The Kubernetes minors (inclusive) the pinned versions above and the node scripts were made
 * for; config validation refuses a kubernetesVersion outside them. Widen it only together with
 * the pins it depends on:
 * - 1.31 is the first minor whose kubeadm reads `kubeadm.k8s.io/v1beta4` (components/node/kubeadm.ts).
 * - 1.35 is the last minor that supports containerd 1.x, and the nodes install Ubuntu's
 *   containerd 1.7 (scripts/node/prepare-kubernetes-node.sh); 1.36 needs containerd 2.
 * - Cilium 1.18 is e2e-tested on 1.30-1.33 (Documentation/network/kubernetes/compatibility.rst
 *   in cilium/cilium v1.18.x) and Calico 3.30 reported working on 1.35 by its maintainers
 *   (projectcalico discussion #11717); the default 1.34 and the upgrade to 1.35 rely on
 *   Kubernetes' API compatibility, which a bump of these charts should re-check.
 */
export const supportedKubernetesMinors = { major: 1, min: 31, max: 35 } as const;

/** The apt version string of kubeadm/kubelet/kubectl for a Kubernetes version `x.y.z`. */
export function kubernetesPackageVersion(kubernetesVersion: string): string {
  return `${kubernetesVersion}-${versions.kubernetesPackageRevision}`;
}

/** The pkgs.k8s.io repository channel (`v1.34`) that carries a Kubernetes version `x.y.z`. */
export function kubernetesPackageChannel(kubernetesVersion: string): string {
  const [major, minor] = kubernetesVersion.split(".");
  return `v${major}.${minor}`;
}

/**
 * kubeadm's pause image by Kubernetes minor: `PauseVersion` in kubeadm's
 * cmd/kubeadm/app/constants/constants.go, as `kubeadm config images list` prints it for every
 * release of the minor (3.10 from 1.31, 3.10.1 from 1.34, 3.10.2 from 1.36). containerd runs pod
 * sandboxes from this image (scripts/node/prepare-kubernetes-node.sh), so kubeadm's preflight
 * finds the runtime consistent and a node holds one pause image, not containerd's default too.
 */
const pauseVersionByMinor: Readonly<Record<string, string>> = {
  "1.29": "3.9",
  "1.30": "3.9",
  "1.31": "3.10",
  "1.32": "3.10",
  "1.33": "3.10",
  "1.34": "3.10.1",
  "1.35": "3.10.1",
  "1.36": "3.10.2",
};

/** The pause image kubeadm expects for a Kubernetes version `x.y.z`, e.g. registry.k8s.io/pause:3.10.1. */
export function pauseImage(kubernetesVersion: string): string {
  const minor = kubernetesVersion.split(".").slice(0, 2).join(".");
  const pause = pauseVersionByMinor[minor];
  if (!pause) {
    throw new Error(
      `versions: no pause image known for Kubernetes ${minor}; add kubeadm's PauseVersion for it ` +
        "(cmd/kubeadm/app/constants/constants.go) to pauseVersionByMinor in components/versions.ts",
    );
  }
  return `registry.k8s.io/pause:${pause}`;
}
