/**
 * The kubeadm stand-in of the node-script tests (tests/support/fake-kubeadm.sh, whose header
 * cites kubeadm's phase lists and what each phase writes), and the cluster CAs it hands out.
 *
 * Usage:
 *
 *   import { fakeKubeadm, initPhases, joinPhases, phasesRun, makeClusterCa } from "./support/fakeKubeadm";
 *
 *   const ca = makeClusterCa(tmp(), "cluster-a");      // a real CA (openssl); ca.hash is its
 *                                                       // --discovery-token-ca-cert-hash
 *   const sandbox = makeSandbox(tmp(), "x", { fakes: { kubeadm: fakeKubeadm, ... }, realTools: [...fakeKubeadmTools],
 *     env: { FAKE_CLUSTER_CA: ca.dir, FAKE_TOKEN, FAKE_CA_CERT_HASH, FAKE_CERT_KEY } });
 *   runNodeScript(sandbox, "kubeadm-init.sh", [...], { env: { FAKE_KUBEADM_FAIL_AFTER: "etcd" } });
 *   phasesRun(sandbox);                                 // ["init:preflight", "init:certs", ...]
 *
 * Environment of the fake: ROOT (its files go there), FAKE_CAPTURE, FAKE_CLUSTER_CA (a directory
 * with the cluster's ca.crt and ca.key: what `init certs` creates and what `join
 * control-plane-prepare` downloads from the kubeadm-certs Secret), FAKE_TOKEN, FAKE_CA_CERT_HASH,
 * FAKE_CERT_KEY (the printed join command), FAKE_KUBEADM_FAIL_AFTER=<phase> (the phase after it
 * fails before writing anything), FAKE_FAIL (init, join: fail in preflight; upload-certs, token,
 * reset, and each `init phase`/`join phase` by its name; certs-apiserver for `init phase certs
 * apiserver`), FAKE_KUBEADM_VERSION (kubeadm's own version, default v1.34.2),
 * FAKE_CLUSTER_VERSION (the version a join finds, default v1.34.2), FAKE_DEFAULT_ROUTE_IP (the
 * address kubeadm takes when a configuration names no advertiseAddress, default 203.0.113.10).
 *
 * `kubeadm init phase certs apiserver --config F` makes a REAL certificate with openssl from the
 * CA in F's certificatesDir, with the SANs kubeadm puts in, and keeps or refuses an existing pair
 * as kubeadm does (fake-kubeadm.sh certs_apiserver cites the source); it needs
 * {@link fakeKubeadmCertTools} besides {@link fakeKubeadmTools}.
 */
import { spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { Sandbox } from "./nodeSandbox";
import { requireTool } from "./tools";

/** The body of the fake `kubeadm` (nodeSandbox's prelude is prepended). */
/** A node's kubeadm input in the tests' prod-like cluster (components/node/kubeadm.ts renders it). */
export const kubeadmInputFor = (name: string, ip: string) => ({
  clusterName: "prod",
  kubernetesVersion: "1.34.2",
  node: { name, privateIp: ip },
  nodeHostname: `prod-nbg1-${name}`,
  controlPlaneEndpoint: "api.prod.example.com",
  certSans: [],
  podCidr: "10.244.0.0/16",
  serviceCidr: "10.96.0.0/12",
});

export const fakeKubeadm = fs.readFileSync(path.join(__dirname, "fake-kubeadm.sh"), "utf8");

/** Real tools the fake runs besides bash. */
export const fakeKubeadmTools = ["chmod", "cp", "grep", "ls", "mkdir", "mv", "rm", "stat"];

/** Real tools the fake's `init phase certs apiserver` runs besides {@link fakeKubeadmTools}. */
export const fakeKubeadmCertTools = ["mktemp", "od", "openssl", "paste", "sed", "tr", "uname"];

/**
 * The fake cluster the fake kubeadm changes phase by phase (fake-kubeadm.sh's header says which
 * phase does what) and the fake kubectl reads, under $FAKE_CAPTURE/cluster:
 *   nodes/<name>                          a Node; its labels, one `key=value` a line
 *   objects/<namespace>/<resource>/<name> an object; <resource> as the API names it in errors
 *                                         (configmaps, deployments.apps, daemonsets.apps, services)
 *   etcd-members                          the etcd member list, as `etcdctl member list -w simple`
 *                                         prints it
 */
export const fakeClusterDir = (sandbox: Sandbox): string => path.join(sandbox.capture, "cluster");

/**
 * The arms of a fake kubectl's `case "$*" in` that read the fake cluster
 * (tests/support/fake-cluster-kubectl.arms), answering as kubectl does:
 * - `get nodes -l KEY --field-selector metadata.name=NAME -o jsonpath={.items[*].metadata.name}`:
 *   a bare KEY selects the objects that have the label, whatever its value (k8s.io/apimachinery
 *   pkg/labels/selector.go, the `exists` operator); kubectl prints a selection as a List, and
 *   jsonpath prints nothing for a list without items (k8s.io/kubectl pkg/cmd/get/get.go
 *   printGeneric; k8s.io/client-go/util/jsonpath evalField, missing keys allowed by default).
 * - `[-n NS] get RESOURCE NAME -o jsonpath={.metadata.name}`: the name, without a newline
 *   (jsonpath prints no newline of its own); a missing object: `Error from server (NotFound):
 *   <resource> "<name>" not found` on stderr, exit 1 (k8s.io/apimachinery pkg/api/errors/errors.go
 *   NewNotFound, "%s %q not found" with the group-qualified resource; k8s.io/kubectl
 *   pkg/cmd/util/helpers.go StandardErrorMessage, "Error from server (%s): %s").
 * FAKE_FAIL=cluster-read: the API server refuses connections, as kubectl reports it
 * (`The connection to the server <host>:6443 was refused - did you specify the right host or
 * port?`, exit 1); FAKE_HANG=cluster-read: kubectl never returns.
 */
export const fakeClusterKubectlArms = fs.readFileSync(path.join(__dirname, "fake-cluster-kubectl.arms"), "utf8");

/** The fake cluster's etcd member list (`etcdctl member list -w simple` lines); "" when none. */
export const fakeClusterMembers = '"$(cat "$FAKE_CAPTURE/cluster/etcd-members" 2>/dev/null || true)"';

/** kubeadm init's phases in 1.34 (cmd/kubeadm/app/cmd/init.go), in order. */
export const initPhases = [
  "preflight",
  "certs",
  "kubeconfig",
  "etcd",
  "control-plane",
  "kubelet-start",
  "wait-control-plane",
  "upload-config",
  "upload-certs",
  "mark-control-plane",
  "bootstrap-token",
  "kubelet-finalize",
  "addon",
  "show-join-command",
] as const;

/** kubeadm join's phases in 1.34 (cmd/kubeadm/app/cmd/join.go), in order. */
export const joinPhases = [
  "preflight",
  "control-plane-prepare",
  "check-etcd",
  "kubelet-start",
  "etcd-join",
  "kubelet-wait-bootstrap",
  "control-plane-join",
  "wait-control-plane",
] as const;

/** Every phase the fake ran, in order, as "init:<phase>" or "join:<phase>". */
export function phasesRun(sandbox: Sandbox): string[] {
  const file = path.join(sandbox.capture, "phases");
  return fs.existsSync(file) ? fs.readFileSync(file, "utf8").split("\n").filter(Boolean) : [];
}

/** Empties the record of phases. */
export function resetPhases(sandbox: Sandbox): void {
  fs.rmSync(path.join(sandbox.capture, "phases"), { force: true });
}

export interface ClusterCa {
  /** Directory holding ca.crt and ca.key. */
  dir: string;
  /** sha256:<hex> of the certificate's SubjectPublicKeyInfo (--discovery-token-ca-cert-hash). */
  hash: string;
}

/**
 * A new self-signed CA like kubeadm's (CN kubernetes, RSA 2048: kubeadm's default
 * encryptionAlgorithm), made with openssl in `<tmpDir>/<name>`. The hash is computed here with
 * node's crypto, independently of the scripts' openssl pipeline, the way kubeadm's pubkeypin
 * package does: sha256 over the DER SubjectPublicKeyInfo.
 */
export function makeClusterCa(tmpDir: string, name: string): ClusterCa {
  const openssl = requireTool("/usr/bin/openssl", "openssl");
  const dir = path.join(tmpDir, name);
  fs.mkdirSync(dir, { recursive: true });
  const result = spawnSync(
    openssl,
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kubernetes", "-days", "3650"].concat([
      "-keyout",
      path.join(dir, "ca.key"),
      "-out",
      path.join(dir, "ca.crt"),
    ]),
    { encoding: "utf8" },
  );
  if (result.status !== 0) throw new Error(`openssl req failed: ${result.stderr}`);
  const spki = new crypto.X509Certificate(fs.readFileSync(path.join(dir, "ca.crt"))).publicKey.export({
    type: "spki",
    format: "der",
  });
  return { dir, hash: `sha256:${crypto.createHash("sha256").update(spki).digest("hex")}` };
}

/** Deletes an object from the fake cluster (`resource` as in fakeClusterDir, e.g. deployments.apps). */
export function deleteClusterObject(sandbox: Sandbox, namespace: string, resource: string, name: string): void {
  fs.rmSync(path.join(fakeClusterDir(sandbox), "objects", namespace, resource, name));
}

/** Removes a label from a Node of the fake cluster. */
export function removeNodeLabel(sandbox: Sandbox, node: string, label: string): void {
  const file = path.join(fakeClusterDir(sandbox), "nodes", node);
  const lines = fs.readFileSync(file, "utf8").split("\n");
  fs.writeFileSync(file, lines.filter((line) => !line.startsWith(`${label}=`)).join("\n"));
}

/**
 * Changes the etcd member named `name` in the fake cluster: `learner` sets its IS LEARNER column,
 * `remove` drops it. Throws when there is no such member.
 */
export function changeEtcdMember(sandbox: Sandbox, name: string, change: { learner: boolean } | "remove"): void {
  const file = path.join(fakeClusterDir(sandbox), "etcd-members");
  const lines = fs.readFileSync(file, "utf8").split("\n").filter(Boolean);
  const index = lines.findIndex((line) => line.split(", ")[2] === name);
  if (index < 0) throw new Error(`no etcd member ${name} in ${file}`);
  if (change === "remove") lines.splice(index, 1);
  else lines[index] = [...lines[index].split(", ").slice(0, 5), String(change.learner)].join(", ");
  fs.writeFileSync(file, lines.map((line) => `${line}\n`).join(""));
}
