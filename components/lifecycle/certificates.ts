/**
 * kubeadm certificates: a setting-driven renewal, one node at a time, and the earliest expiry
 * read from every node.
 *
 * kubeadm's certificates (API server, etcd, front proxy, the kubeconfigs of admin, scheduler
 * and controller-manager) last a year; every `kubeadm upgrade` renews them, and so does a new
 * value of `certificateRenewal`: `kubeadm certs renew all` and a restart of the static pods,
 * node after node, each gated on /readyz and etcd health (scripts/node/renew-certificates.sh).
 *
 * The expiry is read after the upgrade and renewal chains, whenever either changes something
 * (scripts/node/cert-expiry.sh reads `kubeadm certs check-expiration -o json`). It is an absolute date,
 * so it stays true between updates; the stack exports it and the monitoring alerts on it.
 */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { sshConnection } from "../node/ssh";
import { ClusterConfig } from "../config";
import { ControlPlaneNode } from "../hetzner/controlPlane";
import type { CertificateExpirySeries } from "../addons/monitoring/rules";
import type { NodeChains } from "./bootstrap";
import { nodeCommand, recordedWork } from "../node/nodeScripts";

/** One node's report, as scripts/node/cert-expiry.sh prints it (one JSON line). */
export interface NodeCertificateReport {
  node: string;
  /** ISO 8601 UTC: the earliest expiry among the node's certificates (CAs excluded). */
  earliest: string;
  /** Which certificate expires first, e.g. `admin.conf`. */
  earliestName: string;
  certificates: { name: string; expires: string; externallyManaged: boolean }[];
  authorities: { name: string; expires: string; externallyManaged: boolean }[];
}

/** The stack output `certificateExpiry`: plain, no secret in it. */
export interface CertificateExpiry {
  /** ISO 8601 UTC: the earliest expiry over every node. */
  earliest: string;
  /** The Kubernetes node name and certificate that expire first. */
  node: string;
  certificate: string;
  /** Per node, in node order. */
  nodes: { name: string; node: string; earliest: string; certificate: string }[];
}

/** Parses and checks one node's report; throws naming the node when it is not one. */
export function parseNodeReport(spec: string, stdout: string): NodeCertificateReport {
  let report: NodeCertificateReport;
  try {
    report = JSON.parse(stdout.trim()) as NodeCertificateReport;
  } catch {
    throw new Error(`cert-expiry.sh on ${spec} printed no JSON report`);
  }
  if (typeof report.earliest !== "string" || Number.isNaN(Date.parse(report.earliest))) {
    throw new Error(`cert-expiry.sh on ${spec} reported no earliest expiry`);
  }
  return report;
}

/** The earliest expiry over all nodes' reports (`specs` name the nodes, in the same order). */
export function earliestExpiry(specs: string[], reports: NodeCertificateReport[]): CertificateExpiry {
  const nodes = reports.map((r, i) => ({
    name: specs[i],
    node: r.node,
    earliest: r.earliest,
    certificate: r.earliestName,
  }));
  const first = nodes.reduce((a, b) => (Date.parse(b.earliest) < Date.parse(a.earliest) ? b : a));
  return { earliest: first.earliest, node: first.node, certificate: first.certificate, nodes };
}

/** The recording-rule series of the certificate alerts (components/addons/monitoring/rules.ts). */
export function expirySeries(expiry: CertificateExpiry): CertificateExpirySeries[] {
  return expiry.nodes.map((n) => ({
    node: n.node,
    certificate: n.certificate,
    expiresSeconds: Math.floor(Date.parse(n.earliest) / 1000),
  }));
}

/**
 * A shell comment naming what the certificates depend on: a new version or renewal changes the
 * command, so it runs again and reads the new dates.
 */
function certificateRevision(cfg: CertificateSettings): string {
  return `# kubernetes ${cfg.kubernetesVersion}, certificate renewal "${cfg.maintenance.certificateRenewal}"`;
}

/** The settings the certificates depend on: the version (an upgrade renews them) and the renewal stamp. */
export type CertificateSettings = Pick<ClusterConfig, "kubernetesVersion"> & {
  maintenance: Pick<ClusterConfig["maintenance"], "certificateRenewal">;
};

export interface KubeadmCertificatesArgs extends CertificateSettings {
  nodes: ControlPlaneNode[];
  /**
   * The upgrade's chains: renewal starts after the upgrade chain (`rolling`), so it never
   * overlaps an upgrade or a kube-vip change; without renewal the certificates are final at
   * `settled`.
   */
  after: NodeChains;
  sshPrivateKey: pulumi.Input<string>;
}

export class KubeadmCertificates extends pulumi.ComponentResource {
  /** The last renewal step, or `after.settled` when there is none: certificates are final after it. */
  readonly complete: pulumi.Resource;
  readonly expiry: pulumi.Output<CertificateExpiry>;
  /** {@link certificateRevision}: what else must read its files again when they change. */
  readonly revision: string;

  constructor(name: string, args: KubeadmCertificatesArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hcloud-control-plane:index:KubeadmCertificates", name, {}, opts);
    const stamp = args.maintenance.certificateRenewal;
    this.revision = certificateRevision(args);

    // Renewal restarts static pods and kube-vip: it starts after the other rolling chains.
    let previous: pulumi.Resource = stamp === "" ? args.after.settled : args.after.rolling;
    if (stamp !== "") {
      for (const node of args.nodes) {
        previous = new command.remote.Command(
          `${name}-${node.spec.name}-renew`,
          {
            connection: sshConnection(node, args.sshPrivateKey),
            // A new stamp renews; a changed connection alone finds the node's record.
            ...recordedWork(
              `${name}-${node.spec.name}-renew`,
              nodeCommand("renew-certificates.sh", ["--node-name", node.name, "--stamp", stamp]),
            ),
          },
          // One node at a time, after any upgrade and kube-vip change.
          { parent: this, dependsOn: [previous] },
        );
      }
    }
    this.complete = previous;

    const reads = args.nodes.map(
      (node) =>
        new command.remote.Command(
          `${name}-${node.spec.name}-expiry`,
          {
            connection: sshConnection(node, args.sshPrivateKey),
            create: `${nodeCommand("cert-expiry.sh", ["--node-name", node.name])} ${this.revision}`,
          },
          { parent: this, dependsOn: [this.complete] },
        ),
    );
    const specs = args.nodes.map((n) => n.spec.name);
    this.expiry = pulumi
      .all(reads.map((read, i) => read.stdout.apply((stdout) => parseNodeReport(specs[i], stdout))))
      .apply((reports) => earliestExpiry(specs, reports));
    this.registerOutputs({});
  }
}
