/**
 * The kubelet serving-certificate approver: scripts/jobs/kubelet-csr-approver.sh run against
 * real certificate requests made by `openssl req` (EC P-256 keys, as the kubelet's own), in a
 * cluster held by a fake kubectl (tests/support/fake-kubectl-csr.sh, which cites the kubectl
 * behaviour it models), and its Kubernetes objects checked against the Kubernetes schemas.
 *
 * What this cannot prove: that kube-controller-manager then signs the approved request, or that
 * the real API server's answers match the fake's to the byte (the fake follows kubectl's source).
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { ClusterRole } from "kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole";
import { ClusterRoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { ServiceAccount } from "kubernetes-models/v1/ServiceAccount";
import {
  csrApproverClusterRole,
  csrApproverClusterRoleBinding,
  csrApproverConfigMap,
  csrApproverDeployment,
  csrApproverServiceAccount,
  readCsrApproverScripts,
} from "../components/addons/csrApprover";
import { ProgramRun } from "../tools/offline/harness";
import { libraryPath, repoRoot } from "./support/bashLibrary";
import { one, runStack } from "./support/program";
import { requireTool } from "./support/tools";

const script = path.join(repoRoot, "scripts", "jobs", "kubelet-csr-approver.sh");
const fakeKubectl = path.join(__dirname, "support", "fake-kubectl-csr.sh");
const openssl = requireTool("/usr/bin/openssl", "openssl");
requireTool("/usr/bin/jq", "jq");

const node = "prod-nbg1-worker-1";
/** The Node as the kubelet and the hcloud cloud controller manager leave it: name, private and public addresses. */
const nodeObject = {
  apiVersion: "v1",
  kind: "Node",
  metadata: { name: node },
  status: {
    addresses: [
      { type: "Hostname", address: node },
      { type: "InternalIP", address: "10.20.1.101" },
      { type: "ExternalIP", address: "203.0.113.7" },
      { type: "ExternalIP", address: "2001:db8:1:2::1" },
    ],
  },
};
const otherNode = {
  apiVersion: "v1",
  kind: "Node",
  metadata: { name: "prod-nbg1-worker-2" },
  status: {
    addresses: [
      { type: "Hostname", address: "prod-nbg1-worker-2" },
      { type: "InternalIP", address: "10.20.1.102" },
    ],
  },
};

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "csr-approver-test-"));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/**
 * A PEM certificate request from `openssl req` with a new EC P-256 key (the kubelet's key type).
 * Each SAN is `TYPE:value` (DNS, IP, email, URI); they go through a config section, where a
 * value is taken whole (on the command line openssl would split it at commas).
 */
function certificateRequest(subject: string, sans: string[]): string {
  const config = path.join(tmp, "req.cnf");
  const counts = new Map<string, number>();
  const names = sans.map((san) => {
    const [type, ...rest] = san.split(":");
    counts.set(type, (counts.get(type) ?? 0) + 1);
    return `${type}.${counts.get(type)} = ${rest.join(":")}`;
  });
  const extensions =
    sans.length > 0 ? ["req_extensions = ext", "[dn]", "[ext]", "subjectAltName = @alt", "[alt]", ...names] : ["[dn]"];
  fs.writeFileSync(config, ["[req]", "distinguished_name = dn", ...extensions, ""].join("\n"));
  const args = ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-config", config];
  args.push("-keyout", path.join(tmp, "key.pem"), "-subj", subject);
  const result = spawnSync(openssl, args, { encoding: "utf8" });
  if (result.status !== 0) throw new Error(`openssl req failed: ${result.stderr}`);
  return result.stdout;
}

interface CsrOptions {
  name?: string;
  subject?: string;
  sans?: string[];
  username?: string;
  groups?: string[];
  usages?: string[];
  signerName?: string;
  conditions?: { type: string; status: string }[];
  request?: string;
}

/** A CertificateSigningRequest as the kubelet creates it (certificates.k8s.io/v1), defaults: a valid one. */
function csr(options: CsrOptions = {}) {
  const pem =
    options.request ??
    certificateRequest(
      options.subject ?? `/O=system:nodes/CN=system:node:${node}`,
      options.sans ?? [`DNS:${node}`, "IP:10.20.1.101", "IP:203.0.113.7", "IP:2001:db8:1:2::1"],
    );
  return {
    apiVersion: "certificates.k8s.io/v1",
    kind: "CertificateSigningRequest",
    metadata: { name: options.name ?? "csr-abcde", uid: "0d4a3c9e-0000-4000-8000-000000000001" },
    spec: {
      request: Buffer.from(pem).toString("base64"),
      signerName: options.signerName ?? "kubernetes.io/kubelet-serving",
      usages: options.usages ?? ["digital signature", "server auth"],
      username: options.username ?? `system:node:${node}`,
      groups: options.groups ?? ["system:nodes", "system:authenticated"],
    },
    status: options.conditions ? { conditions: options.conditions } : {},
  };
}

interface ApproverRun {
  status: number | null;
  stderr: string;
  calls: string[];
  csrs: { metadata: { name: string }; status: { conditions?: { type: string; reason?: string }[] } }[];
}

function runApprover(
  csrs: object[],
  options: { nodes?: object[]; env?: Record<string, string>; scriptPath?: string } = {},
): ApproverRun {
  const state = fs.mkdtempSync(path.join(tmp, "cluster-"));
  const bin = path.join(state, "bin");
  fs.mkdirSync(bin);
  fs.symlinkSync(fakeKubectl, path.join(bin, "kubectl"));
  fs.writeFileSync(path.join(state, "nodes.json"), JSON.stringify(options.nodes ?? [nodeObject, otherNode]));
  fs.writeFileSync(path.join(state, "csrs.json"), JSON.stringify(csrs));
  const result = spawnSync("/bin/bash", [options.scriptPath ?? script], {
    encoding: "utf8",
    timeout: 60_000,
    env: {
      PATH: `${bin}:/usr/bin:/bin`,
      FAKE_KUBE: state,
      APPROVER_PASSES: "1",
      APPROVER_HEARTBEAT_FILE: path.join(state, "heartbeat"),
      TMPDIR: state,
      ...options.env,
    },
  });
  const callsFile = path.join(state, "calls");
  return {
    status: result.status,
    stderr: result.stderr,
    calls: fs.existsSync(callsFile) ? fs.readFileSync(callsFile, "utf8").trim().split("\n") : [],
    csrs: JSON.parse(fs.readFileSync(path.join(state, "csrs.json"), "utf8")) as ApproverRun["csrs"],
  };
}

const approvals = (run: ApproverRun) => run.calls.filter((c) => c.startsWith("certificate approve"));

describe("kubelet-csr-approver.sh against real requests", () => {
  test("approves a kubelet's request for its own names and addresses, once, and says so", () => {
    const run = runApprover([csr()]);
    expect(run.status).toBe(0);
    expect(approvals(run)).toEqual(["certificate approve csr-abcde"]);
    expect(run.csrs[0].status.conditions).toEqual([
      expect.objectContaining({ type: "Approved", reason: "KubectlApprove" }),
    ]);
    expect(run.stderr).toMatch(/kubelet-csr-approver: approved csr-abcde for node prod-nbg1-worker-1\n/);
    // The request itself (its base64) never reaches the log.
    expect(run.stderr).not.toContain(csr().spec.request.slice(0, 40));
  });

  test("approves the RSA-style usages with key encipherment, a subset of the names, and the compressed IPv6 form", () => {
    const run = runApprover([
      csr({ usages: ["server auth", "key encipherment", "digital signature"], sans: ["IP:2001:DB8:1:2:0:0:0:1"] }),
    ]);
    expect(approvals(run)).toEqual(["certificate approve csr-abcde"]);
  });

  const pending: [string, CsrOptions, RegExp][] = [
    [
      "a foreign IP address",
      { sans: [`DNS:${node}`, "IP:10.20.1.101", "IP:10.20.1.250"] },
      /IP address '10\.20\.1\.250'/,
    ],
    ["another node's IP address", { sans: [`DNS:${node}`, "IP:10.20.1.102"] }, /IP address '10\.20\.1\.102'/],
    [
      "a foreign DNS name",
      { sans: [`DNS:${node}`, "DNS:kubernetes.default.svc"] },
      /DNS name 'kubernetes\.default\.svc'/,
    ],
    [
      "a DNS name that hides an allowed IP after ', '",
      { sans: [`DNS:${node}, IP Address:10.20.1.101`] },
      /subjectAltName holds 1 names, 2 read/,
    ],
    ["an e-mail SAN", { sans: [`DNS:${node}`, "email:root@example.com"] }, /neither a DNS name nor an IP address/],
    ["a URI SAN", { sans: [`DNS:${node}`, "URI:spiffe://cluster/ns/default"] }, /neither a DNS name nor an IP address/],
    ["no SAN at all", { sans: [] }, /not exactly one subjectAltName extension/],
    ["a CN of another node", { subject: "/O=system:nodes/CN=system:node:prod-nbg1-worker-2" }, /subject/],
    [
      "a wrong O",
      { subject: `/O=system:masters/CN=system:node:${node}` },
      /subject 'CN=system:node:prod-nbg1-worker-1,O=system:masters'/,
    ],
    ["an extra O", { subject: `/O=system:nodes/O=system:masters/CN=system:node:${node}` }, /subject/],
    ["an extra OU", { subject: `/O=system:nodes/OU=x/CN=system:node:${node}` }, /subject/],
    ["another node as requester", { username: "system:node:prod-nbg1-worker-2" }, /subject/],
    ["a user as requester", { username: "alice" }, /requester 'alice' is not a node/],
    ["a requester not in system:nodes", { groups: ["system:authenticated"] }, /not in the group system:nodes/],
    [
      "a node that does not exist",
      { username: "system:node:ghost", subject: "/O=system:nodes/CN=system:node:ghost", sans: ["DNS:ghost"] },
      /no Node ghost/,
    ],
    ["client auth usage", { usages: ["digital signature", "client auth"] }, /usages 'client auth,digital signature'/],
    ["client and server auth", { usages: ["digital signature", "server auth", "client auth"] }, /usages/],
    ["no usages", { usages: [] }, /usages ''/],
    ["the kube-apiserver-client-kubelet signer", { signerName: "kubernetes.io/kube-apiserver-client-kubelet" }, /^$/],
    ["the legacy-unknown signer", { signerName: "kubernetes.io/legacy-unknown" }, /^$/],
    ["an already approved request", { conditions: [{ type: "Approved", status: "True" }] }, /^$/],
    ["an already denied request", { conditions: [{ type: "Denied", status: "True" }] }, /^$/],
    ["a failed request", { conditions: [{ type: "Failed", status: "True" }] }, /^$/],
    ["a request that is not PEM", { request: "not a certificate request" }, /not a PEM certificate request/],
  ];

  test.each(pending)("leaves pending: %s", (_what, options, reason) => {
    const run = runApprover([csr(options)]);
    expect(run.status).toBe(0);
    expect(approvals(run)).toEqual([]);
    expect(run.csrs[0].status.conditions ?? []).toEqual(options.conditions ?? []);
    const pendingLine = run.stderr.split("\n").find((l) => l.includes("leaving csr-abcde pending")) ?? "";
    expect(pendingLine).toMatch(reason.source === "^$" ? /^$/ : reason);
  });

  test("a self-signature that does not verify is left pending", () => {
    const pem = certificateRequest(`/O=system:nodes/CN=system:node:${node}`, [`DNS:${node}`]);
    const der = Buffer.from(pem.replace(/-----[^-]+-----/g, "").replace(/\s/g, ""), "base64");
    der[der.length - 5] ^= 0xff; // inside the signature
    const broken = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`;
    const run = runApprover([csr({ request: broken })]);
    expect(approvals(run)).toEqual([]);
    expect(run.stderr).toMatch(/valid self-signature/);
  });

  test("approves the good request among bad ones, and reports each bad one once over several passes", () => {
    const run = runApprover(
      [
        csr({ name: "csr-bad", sans: ["IP:192.0.2.1"] }),
        csr({ name: "csr-good" }),
        csr({ name: "csr-client", signerName: "kubernetes.io/kube-apiserver-client-kubelet" }),
      ],
      { env: { APPROVER_PASSES: "3", APPROVER_INTERVAL_SECONDS: "1" } },
    );
    expect(approvals(run)).toEqual(["certificate approve csr-good"]);
    expect(run.stderr.match(/leaving csr-bad pending/g)).toHaveLength(1);
    expect(run.calls.filter((c) => c === "get csr -o json")).toHaveLength(3);
  });

  test("an API server that cannot be reached: reported, nothing approved, the loop goes on", () => {
    const run = runApprover([csr()], { env: { FAKE_KUBECTL_FAIL: "get-csr" } });
    expect(run.status).toBe(0);
    expect(approvals(run)).toEqual([]);
    expect(run.stderr).toMatch(/cannot list CertificateSigningRequests; retrying next pass/);
    expect(run.stderr).toMatch(/was refused/);
  });

  test("a failed approval is reported and retried on the next pass", () => {
    const run = runApprover([csr()], { env: { FAKE_KUBECTL_FAIL: "approve" } });
    expect(run.stderr).toMatch(/approving csr-abcde failed; retrying next pass/);
    expect(run.csrs[0].status.conditions).toBeUndefined();
  });

  test("bad configuration exits 2 naming the variable", () => {
    const run = runApprover([], { env: { APPROVER_INTERVAL_SECONDS: "0" } });
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/APPROVER_INTERVAL_SECONDS must be a whole number from 1 to 3600/);
  });

  test("the tests catch a permissive approver: with the checks short-circuited, a foreign IP is approved", () => {
    // A copy of the script whose check approves everything the signer filter lets through.
    const permissive = path.join(tmp, "permissive", "kubelet-csr-approver.sh");
    fs.mkdirSync(path.dirname(permissive), { recursive: true });
    const text = fs.readFileSync(script, "utf8");
    const mutated = text.replace(
      /^check_request\(\) \{\n/m,
      'check_request() {\n  printf "%s" "${2#system:node:}"; return 0\n',
    );
    expect(mutated).not.toBe(text);
    fs.writeFileSync(permissive, mutated);
    fs.copyFileSync(libraryPath, path.join(path.dirname(permissive), "lib.sh"));
    const run = runApprover([csr({ sans: ["IP:10.20.1.250"] })], { scriptPath: permissive });
    expect(approvals(run)).toEqual(["certificate approve csr-abcde"]);
  });

  test("shellcheck passes on the script and the fake; strict mode, no xtrace", () => {
    const shellcheck = requireTool("/usr/bin/shellcheck", "shellcheck");
    const result = spawnSync(shellcheck, [script, fakeKubectl], { encoding: "utf8" });
    expect(result.stdout + result.stderr).toBe("");
    expect(result.status).toBe(0);
    const text = fs.readFileSync(script, "utf8");
    expect(text).toMatch(/^#!\/usr\/bin\/env bash\n/);
    expect(text).toContain("set -euo pipefail");
    expect(text).not.toMatch(/^\s*set -[a-z]*x|set -o xtrace/m);
  });
});

describe("the approver's Kubernetes objects", () => {
  const scripts = readCsrApproverScripts();
  const deployment = csrApproverDeployment(
    { backup: { image: "registry.example.com/platform/etcd-backup:3.6.5-1" } },
    scripts,
  );

  test("validate against the Kubernetes schemas", () => {
    expect(() => new Deployment(deployment as never).validate()).not.toThrow();
    expect(() => new ServiceAccount(csrApproverServiceAccount() as never).validate()).not.toThrow();
    expect(() => new ClusterRole(csrApproverClusterRole() as never).validate()).not.toThrow();
    expect(() => new ClusterRoleBinding(csrApproverClusterRoleBinding() as never).validate()).not.toThrow();
    expect(() => new ConfigMap(csrApproverConfigMap(scripts) as never).validate()).not.toThrow();
  });

  test("RBAC: read CSRs and Nodes, update approvals, approve for the kubelet-serving signer only", () => {
    expect(csrApproverClusterRole().rules).toEqual([
      {
        apiGroups: ["certificates.k8s.io"],
        resources: ["certificatesigningrequests"],
        verbs: ["get", "list", "watch"],
      },
      { apiGroups: ["certificates.k8s.io"], resources: ["certificatesigningrequests/approval"], verbs: ["update"] },
      {
        apiGroups: ["certificates.k8s.io"],
        resources: ["signers"],
        resourceNames: ["kubernetes.io/kubelet-serving"],
        verbs: ["approve"],
      },
      { apiGroups: [""], resources: ["nodes"], verbs: ["get", "list"] },
    ]);
    expect(csrApproverClusterRoleBinding()).toMatchObject({
      roleRef: { kind: "ClusterRole", name: "kubelet-csr-approver" },
      subjects: [{ kind: "ServiceAccount", name: "kubelet-csr-approver", namespace: "kube-system" }],
    });
  });

  test("the script runs from its ConfigMap's files alone (lib.sh beside it, no repository)", () => {
    const mount = fs.mkdtempSync(path.join(tmp, "configmap-"));
    for (const [file, text] of Object.entries(csrApproverConfigMap(scripts).data)) {
      fs.writeFileSync(path.join(mount, file), text, { mode: 0o555 });
    }
    const help = spawnSync("/bin/bash", [path.join(mount, "kubelet-csr-approver.sh"), "--help"], {
      env: { PATH: "/usr/bin:/bin" },
      encoding: "utf8",
    });
    expect({ status: help.status, stderr: help.stderr }).toEqual({ status: 0, stderr: "" });
    expect(help.stdout).toContain("Usage: kubelet-csr-approver.sh");
    // Every variable the Deployment sets is one the script documents.
    for (const e of deployment.spec.template.spec.containers[0].env) {
      if (e.name !== "HOME") expect([e.name, help.stdout.includes(e.name)]).toEqual([e.name, true]);
    }
  });

  test("one replica on a control-plane node, unprivileged, the script and lib.sh from its ConfigMap", () => {
    const pod = deployment.spec.template.spec;
    expect(deployment.metadata).toMatchObject({ name: "kubelet-csr-approver", namespace: "kube-system" });
    expect(deployment.spec.replicas).toBe(1);
    expect(deployment.spec.strategy).toEqual({ type: "Recreate" });
    expect(pod.serviceAccountName).toBe("kubelet-csr-approver");
    expect(pod.nodeSelector).toEqual({ "node-role.kubernetes.io/control-plane": "" });
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 65534 });
    const container = pod.containers[0];
    expect(container.image).toBe("registry.example.com/platform/etcd-backup:3.6.5-1");
    expect(container.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
    });
    expect(container.command).toEqual(["/bin/bash", "/opt/kubelet-csr-approver/kubelet-csr-approver.sh"]);
    expect(Object.keys(csrApproverConfigMap(scripts).data).sort()).toEqual(["kubelet-csr-approver.sh", "lib.sh"]);
    // A changed script changes the pod template (and so rolls the pod).
    const changed = csrApproverDeployment({ backup: { image: "x:1" } }, { ...scripts, script: `${scripts.script}\n` });
    expect(changed.spec.template.metadata.annotations).not.toEqual(deployment.spec.template.metadata.annotations);
  });

  test("the image carries the tools the script needs: kubectl, jq and openssl", () => {
    const dockerfile = fs.readFileSync(
      path.join(repoRoot, "scripts", "jobs", "images", "etcd-backup.Dockerfile"),
      "utf8",
    );
    expect(dockerfile).toMatch(/apt-get install[^\n]*(\\\n[^\n]*)*\bopenssl\b/);
    expect(dockerfile).toMatch(/\bjq\b/);
    expect(dockerfile).toMatch(/kubectl/);
    expect(dockerfile).toContain("scripts/jobs/kubelet-csr-approver.sh");
  });
});

describe("in the prod stack's graph (mocks)", () => {
  let run: ProgramRun;
  beforeAll(async () => {
    run = await runStack();
  });

  test("five objects under the component, through the cluster's provider, in the backup image", () => {
    const component = one(run, "kubelet-csr-approver");
    const children = run.resources
      .filter((r) => r.parent === component.urn)
      .map((r) => `${r.type} ${r.name}`)
      .sort();
    expect(children).toEqual([
      "kubernetes:apps/v1:Deployment kubelet-csr-approver-deployment",
      "kubernetes:core/v1:ConfigMap kubelet-csr-approver-script",
      "kubernetes:core/v1:ServiceAccount kubelet-csr-approver-sa",
      "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole kubelet-csr-approver-role",
      "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding kubelet-csr-approver-binding",
    ]);
    const provider = one(run, "access-provider").urn;
    for (const r of run.resources.filter((x) => x.parent === component.urn)) {
      expect([r.name, r.provider]).toEqual([r.name, provider]);
    }
    // The same image as the backup CronJob: the job image, which carries kubectl, jq and openssl.
    type PodOwner = { spec: { template: { spec: { containers: { image: string }[] } } } };
    type CronJobInputs = { spec: { jobTemplate: PodOwner } };
    const deployment = one(run, "kubelet-csr-approver-deployment").inputs as unknown as PodOwner;
    const cronJob = one(run, "etcd-backup-cronjob").inputs as unknown as CronJobInputs;
    expect(deployment.spec.template.spec.containers[0].image).toBe(
      cronJob.spec.jobTemplate.spec.template.spec.containers[0].image,
    );
  });

  test("the Deployment waits for its script, its binding and the pod network", () => {
    const urn = (name: string) => one(run, name).urn;
    expect(one(run, "kubelet-csr-approver-deployment").dependsOn).toEqual(
      expect.arrayContaining([
        urn("kubelet-csr-approver-script"),
        urn("kubelet-csr-approver-binding"),
        urn("cni-cilium"),
      ]),
    );
    expect(one(run, "kubelet-csr-approver-binding").dependsOn).toEqual(
      expect.arrayContaining([urn("kubelet-csr-approver-sa"), urn("kubelet-csr-approver-role")]),
    );
  });
});
