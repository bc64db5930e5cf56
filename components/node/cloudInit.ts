/**
 * Cloud-init user data for a control-plane node (Ubuntu 24.04 on Hetzner Cloud): prerequisite
 * packages, kernel/sysctl settings, the API server audit policy, and the node preparation script
 * that installs containerd's config and kubeadm/kubelet/kubectl pinned to one version.
 *
 * Inputs come from the validated stack configuration (components/config/index.ts owns every rule)
 * and from provider outputs; nothing here re-checks them.
 *
 * Pure: the cloud-config is data, serialized deterministically. The files it embeds live beside
 * this module (`cloud-init/`) and in `scripts/`, read once when the module loads.
 */
import * as fs from "fs";
import * as path from "path";
import { stringify } from "yaml";
import { maxUserDataBytes } from "../hetzner/facts";
import { kubernetesPackageChannel, kubernetesPackageVersion, pauseImage } from "../versions";

export interface CloudInitInput {
  /**
   * Hostname, and so the Kubernetes node name: the Hetzner server name, e.g. "prod-nbg1-cp-1"
   * (Hetzner's cloud controller manager matches nodes to servers by name). Required.
   */
  hostname: string;
  /** Kubernetes version "x.y.z"; kubeadm, kubelet and kubectl are pinned to it. Required. */
  kubernetesVersion: string;
  /** The API server's audit policy; only control-plane nodes need it. Default true. */
  auditPolicy?: boolean;
  /** Files written after the node's own (a worker's join configuration). */
  extraFiles?: { path: string; permissions: string; content: string }[];
  /** Commands run after the node preparation, in list form (a worker's join). */
  extraRuncmd?: string[][];
}

/** Host paths the node preparation creates, for components that must agree with it. */
export const nodePaths = {
  /** API server audit policy; it must exist before `kubeadm init`/`join`. Mode 0600. */
  auditPolicy: "/etc/kubernetes/audit-policy.yaml",
  /** Directory for the API server audit log, created 0700 by the preparation script. */
  auditLogDir: "/var/log/kubernetes/audit",
  /** Node preparation script, run once by cloud-init's runcmd. Mode 0700. */
  prepareScript: "/usr/local/sbin/prepare-kubernetes-node.sh",
  /** Written last by the preparation script, holding the package version (`1.34.2-1.1`). */
  preparedSentinel: "/var/lib/kubernetes-node/prepared",
} as const;

const cloudConfigHeader = "#cloud-config";

function readEmbedded(relativePath: string): string {
  return fs.readFileSync(path.join(__dirname, relativePath), "utf8");
}

const kernelModules = readEmbedded("cloud-init/kubernetes-modules.conf");
const sysctls = readEmbedded("cloud-init/kubernetes-sysctl.conf");
const auditPolicyText = readEmbedded("cloud-init/audit-policy.yaml");
const prepareScript = readEmbedded("../../scripts/node/prepare-kubernetes-node.sh");

const prerequisitePackages = [
  "ca-certificates",
  "curl",
  "gpg",
  "apt-transport-https",
  // Ubuntu archive build; the preparation script configures it and holds the package.
  "containerd",
  "conntrack",
  "socat",
  "jq",
];

/** Renders the `#cloud-config` user data for one node (control-plane unless told otherwise). */
export function renderCloudInit(input: CloudInitInput): string {
  const { hostname, kubernetesVersion, auditPolicy = true, extraFiles = [], extraRuncmd = [] } = input;

  const cloudConfig = {
    hostname,
    preserve_hostname: false,
    package_update: true,
    // A full upgrade at first boot makes nodes differ by boot date and slows bootstrap;
    // security updates come from unattended-upgrades (kube packages and containerd are held).
    package_upgrade: false,
    // A reboot in the middle of first boot would race the kubeadm bootstrap commands.
    package_reboot_if_required: false,
    packages: prerequisitePackages,
    // Permissions are strings: PyYAML (YAML 1.1) would read an unquoted 0600 as octal 384.
    write_files: [
      file("/etc/modules-load.d/kubernetes.conf", "0644", kernelModules),
      file("/etc/sysctl.d/90-kubernetes.conf", "0644", sysctls),
      ...(auditPolicy ? [file(nodePaths.auditPolicy, "0600", auditPolicyText)] : []),
      file(nodePaths.prepareScript, "0700", prepareScript),
      ...extraFiles.map((f) => file(f.path, f.permissions, f.content)),
    ],
    // List form: cloud-init execs it without a shell, so no argument is ever re-parsed.
    runcmd: [
      [
        nodePaths.prepareScript,
        "--kubernetes-version",
        kubernetesVersion,
        "--package-version",
        kubernetesPackageVersion(kubernetesVersion),
        "--channel",
        kubernetesPackageChannel(kubernetesVersion),
        // containerd's sandbox image, so it is the pause image this kubeadm expects.
        "--pause-image",
        pauseImage(kubernetesVersion),
      ],
      ...extraRuncmd,
    ],
    ssh_pwauth: false,
    // The kubeadm bootstrap (@pulumi/command) logs in as root with the stack's SSH key; Ubuntu's
    // cloud-init default (disable_root: true) would lock that out. Passwords stay off above.
    disable_root: false,
  };

  const userData = `${cloudConfigHeader}\n${stringify(cloudConfig, {
    sortMapEntries: true,
    lineWidth: 0,
    // cloud-init parses with PyYAML (YAML 1.1): quote what 1.1 would read as bool/number ("on").
    version: "1.1",
  })}`;
  const size = Buffer.byteLength(userData, "utf8");
  if (size > maxUserDataBytes) {
    throw new Error(`cloudInit: user data for ${hostname} is ${size} bytes, over Hetzner's ${maxUserDataBytes}`);
  }
  return userData;
}

function file(filePath: string, permissions: string, content: string) {
  return { path: filePath, owner: "root:root", permissions, content };
}
