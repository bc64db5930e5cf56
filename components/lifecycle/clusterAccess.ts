/**
 * The admin kubeconfig, fetched from a running member once every member has joined and the upgrade
 * and certificate renewal chains are done (and again after each upgrade or renewal, which renew
 * its client certificate), and the
 * Kubernetes provider built from it. The kubeconfig is a secret from the command's stdout
 * onwards and is never printed.
 */
import * as crypto from "node:crypto";
import * as command from "@pulumi/command";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import YAML from "yaml";
import { anyMemberConnection } from "../node/ssh";
import { ClusterConfig } from "../config";
import { ControlPlaneNode } from "../hetzner/controlPlane";
import { kubeadmPaths } from "../node/kubeadm";
import { apiServerPort } from "../hetzner/loadBalancer";
import { shellQuote } from "../node/nodeScripts";

export interface ClusterAccessArgs {
  /** The provider's `clusterIdentifier`: only a change of it replaces the provider. */
  clusterName: string;
  /** The control-plane nodes: admin.conf is read on the first running one ({@link anyMemberConnection}). */
  nodes: ControlPlaneNode[];
  /**
   * What the kubeconfig is read after: admin.conf is final after init and any upgrade or
   * certificate renewal (both renew its client certificate), and the API answers at `server`
   * once the reserved IP (when `server` is the reserved IP) is held.
   */
  after: pulumi.Input<pulumi.Resource>[];
  /** Changes whenever admin.conf is renewed, so the kubeconfig is read again (a shell comment). */
  revision: string;
  /** Secret: the key matching the servers' SSH key. */
  sshPrivateKey: pulumi.Input<string>;
  /** The API URL Pulumi (outside the private network) reaches the cluster at. */
  server: pulumi.Input<string>;
}

interface Kubeconfig {
  clusters?: { name: string; cluster: { server?: string; "certificate-authority-data"?: string } }[];
}

/** The cluster CA (PEM) admin.conf carries as `certificate-authority-data`. */
export function kubeconfigCaCertificate(kubeconfig: string): string {
  const doc = YAML.parse(kubeconfig) as Kubeconfig | null;
  const data = doc?.clusters?.[0]?.cluster["certificate-authority-data"];
  if (!data) throw new Error("the admin kubeconfig has no certificate-authority-data");
  const pem = Buffer.from(data, "base64").toString("utf8");
  new crypto.X509Certificate(pem); // throws unless it is a certificate
  return pem;
}

/**
 * `sha256:<hex>` over the CA's DER SubjectPublicKeyInfo: the value
 * `kubeadm join --discovery-token-ca-cert-hash` checks the cluster against.
 */
export function caCertHash(pem: string): string {
  const spki = new crypto.X509Certificate(pem).publicKey.export({ type: "spki", format: "der" });
  return `sha256:${crypto.createHash("sha256").update(spki).digest("hex")}`;
}

/**
 * kubeadm's admin.conf names the controlPlaneEndpoint, which may be private; Pulumi and
 * operators reach the API at `server` instead. Every cluster entry is rewritten.
 */
export function rewriteKubeconfigServer(kubeconfig: string, server: string): string {
  const doc = YAML.parse(kubeconfig) as Kubeconfig | null;
  if (!doc?.clusters?.length) throw new Error("the admin kubeconfig has no clusters");
  for (const entry of doc.clusters) entry.cluster.server = server;
  return YAML.stringify(doc, { lineWidth: 0 });
}

/** The settings that decide where Pulumi reaches the API. */
export type PublicApiSettings = Pick<ClusterConfig, "apiDnsName"> & {
  loadBalancer: Pick<ClusterConfig["loadBalancer"], "publicInterface">;
};

/** Pulumi reaches the API at the reserved IP: no DNS name and no public load balancer interface. */
export function apiServerViaReservedIp(cfg: PublicApiSettings): boolean {
  return !cfg.apiDnsName && !cfg.loadBalancer.publicInterface;
}

/** Where Pulumi reaches the API: the DNS name, else the load balancer's public IPv4, else the reserved IP. */
export function publicApiServer(cfg: PublicApiSettings, lbIpv4: string, reservedIp: string): string {
  if (apiServerViaReservedIp(cfg)) return `https://${reservedIp}:${apiServerPort}`;
  return `https://${cfg.apiDnsName ?? lbIpv4}:${apiServerPort}`;
}

export class ClusterAccess extends pulumi.ComponentResource {
  /** Secret: the admin kubeconfig with the public server address. */
  readonly kubeconfig: pulumi.Output<string>;
  /** The cluster CA certificate (PEM), public: read from the kubeconfig, then unmarked secret. */
  readonly caCertificate: pulumi.Output<string>;
  readonly provider: k8s.Provider;

  constructor(name: string, args: ClusterAccessArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hcloud-control-plane:index:ClusterAccess", name, {}, opts);
    const fetch = new command.remote.Command(
      `${name}-admin-kubeconfig`,
      {
        // Any member's admin.conf will do (each control-plane node has one, signed by the cluster
        // CA): the first running node's, so a stopped node never blocks the read. Another node
        // (a stopped cp-1, a replaced one) is an update that reads it there again.
        connection: anyMemberConnection(args.nodes, args.sshPrivateKey).connection,
        create: `cat ${shellQuote(kubeadmPaths.adminKubeconfig)} ${args.revision}`,
        logging: "none",
      },
      { parent: this, dependsOn: args.after, additionalSecretOutputs: ["stdout", "stderr"] },
    );
    this.kubeconfig = pulumi.secret(
      pulumi.all([fetch.stdout, args.server]).apply(([text, server]) => rewriteKubeconfigServer(text, server)),
    );
    // A CA certificate is public (every kubeconfig and node has it); only the rest is secret.
    this.caCertificate = pulumi.unsecret(fetch.stdout.apply(kubeconfigCaCertificate));
    this.provider = new k8s.Provider(
      `${name}-provider`,
      {
        kubeconfig: this.kubeconfig,
        // Only a change of this replaces the provider (and every object it manages): a rotated
        // kubeconfig or a new address is an update.
        clusterIdentifier: args.clusterName,
      },
      { parent: this },
    );
    this.registerOutputs({});
  }
}
