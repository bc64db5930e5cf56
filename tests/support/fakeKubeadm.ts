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
 * reset, and each `init phase`/`join phase` by its name), FAKE_KUBEADM_VERSION (kubeadm's own
 * version, default v1.34.2), FAKE_CLUSTER_VERSION (the version a join finds, default v1.34.2).
 */
import { spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { Sandbox } from "./nodeSandbox";
import { requireTool } from "./tools";

/** The body of the fake `kubeadm` (nodeSandbox's prelude is prepended). */
export const fakeKubeadm = fs.readFileSync(path.join(__dirname, "fake-kubeadm.sh"), "utf8");

/** Real tools the fake runs besides bash. */
export const fakeKubeadmTools = ["chmod", "cp", "grep", "ls", "mkdir", "rm", "stat"];

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
