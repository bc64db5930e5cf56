/**
 * The stack output contract other teams read (components/outputs.ts): exactly these outputs,
 * which of them are secret, the CA hash as kubeadm computes it (checked against openssl), and
 * the worker join token: its command on cp-1 and its script, run with a fake kubeadm.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { caCertHash, kubeconfigCaCertificate } from "../components/lifecycle/clusterAccess";
import { outputsVersion } from "../components/outputs";
import { parseWorkerTokenOutput, workerTokenId, workerTokenSeries } from "../components/lifecycle/workerJoin";
import { ProgramRun } from "../tools/offline/harness";
import { mockCaCertificate } from "../tools/offline/mocks";
import { one, runStack } from "./support/program";
import { requireTool } from "./support/tools";

describe("the prod stack's outputs", () => {
  let run: ProgramRun;
  beforeAll(async () => {
    run = await runStack();
  });

  test("are exactly the contract, with its version", () => {
    expect(Object.keys(run.outputs).sort()).toEqual(
      [
        "apiServerPrivateUrl",
        "apiServerUrl",
        "backupBucket",
        "backupEndpoint",
        "caCertHash",
        "caCertificate",
        "certificateExpiry",
        "clusterName",
        "controlPlaneEndpoint",
        "creationSettings",
        "firewallId",
        "kubeconfig",
        "kubernetesVersion",
        "loadBalancerId",
        "loadBalancerIpv4",
        "loadBalancerIpv6",
        "loadBalancerPrivateIp",
        "location",
        "networkId",
        "networkZone",
        "nodes",
        "outputsVersion",
        "placementGroupId",
        "reservedIp",
        "reservedIpId",
        "subnetId",
        "workerJoin",
        "workerJoinExpiry",
      ].sort(),
    );
    expect(run.outputs.outputsVersion).toBe(outputsVersion);
  });

  test("only the admin kubeconfig and the worker join material are secret", () => {
    const secret = Object.entries(run.outputs)
      .filter(([, v]) => v === "[secret]")
      .map(([k]) => k)
      .sort();
    expect(secret).toEqual(["kubeconfig", "workerJoin"]);
  });

  test("the CA certificate is public, and its hash is kubeadm's (sha256 of the public key, as openssl computes it)", () => {
    expect(run.outputs.caCertificate).toBe(mockCaCertificate);
    const openssl = requireTool("/usr/bin/openssl", "openssl");
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ca-hash-"));
    try {
      const pem = path.join(tmp, "ca.crt");
      fs.writeFileSync(pem, mockCaCertificate);
      const pub = spawnSync(openssl, ["x509", "-in", pem, "-pubkey", "-noout"], { encoding: "utf8" });
      const der = spawnSync(openssl, ["pkey", "-pubin", "-outform", "der"], { input: pub.stdout });
      const sum = spawnSync("sha256sum", [], { input: der.stdout, encoding: "utf8" });
      expect(run.outputs.caCertHash).toBe(`sha256:${sum.stdout.split(" ")[0]}`);
      expect(caCertHash(mockCaCertificate)).toBe(run.outputs.caCertHash);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
    expect(() =>
      kubeconfigCaCertificate("clusters:\n- cluster:\n    certificate-authority-data: bm90IGEgY2VydA==\n"),
    ).toThrow();
  });

  test("backup bucket and endpoint, for restores and audits", () => {
    expect(run.outputs).toMatchObject({
      backupBucket: "prod-nbg1-etcd-backups",
      backupEndpoint: "https://nbg1.your-objectstorage.com",
    });
  });

  test("the worker token is managed on a running member after the upgrade chain, secret, replaced by a new id, removed by its delete", () => {
    const cmd = one(run, "worker-join-token");
    const id = workerTokenId("prod-nbg1", "1", 720);
    expect(cmd.inputs.create).toBe(
      `bash /usr/local/lib/hcloud-control-plane/node/worker-join-token.sh create --id ${id} --ttl-hours 720`,
    );
    expect(cmd.inputs.delete).toBe(
      `bash /usr/local/lib/hcloud-control-plane/node/worker-join-token.sh delete --id ${id}`,
    );
    expect(cmd.inputs.logging).toBe("none");
    expect(cmd.additionalSecretOutputs).toEqual(expect.arrayContaining(["stdout", "stderr"]));
    // A new cluster (this run) has nothing to upgrade: the token waits for the last setup only,
    // off the bring-up's critical path (tests/criticalPath.test.ts); on a running cluster it
    // follows the upgrade chain (components/lifecycle/bootstrap.ts, NodeChains).
    expect(cmd.dependsOn).toContain(one(run, "bootstrap-cp-3-member").urn);
    expect(cmd.dependsOn).not.toContain(one(run, "upgrade-cp-3").urn);
    // Only a new id replaces it, the old token first (a same-id replacement must not delete the new one).
    expect(cmd.inputs.triggers).toEqual([id]);
    expect(cmd.deleteBeforeReplace).toBe(true);
  });

  test("workerJoin holds the endpoint, the token the command printed, the CA hash and the expiry; nothing else", () => {
    const id = workerTokenId("prod-nbg1", "1", 720);
    expect(run.revealedOutputs.workerJoin).toEqual({
      controlPlaneEndpoint: "api.prod-nbg1.k8s.example.com:6443",
      token: expect.stringMatching(new RegExp(`^${id}\\.[a-z0-9]{16}$`)),
      caCertHash: run.outputs.caCertHash,
      expires: "2026-12-21T00:00:00Z",
    });
    // Control-plane join material never reaches Pulumi: each setup mints its own on a member
    // (kubeadm-member.sh); no resource input and no output carries any.
    expect(JSON.stringify(run.resources.map((r) => r.revealedInputs))).not.toMatch(/\bJOIN_(TOKEN|CERTIFICATE_KEY)=/);
  });
});

describe("the worker token's expiry output", () => {
  let run: ProgramRun;
  beforeAll(async () => {
    run = await runStack();
  });

  test("workerJoinExpiry is plain: the token's public id and the date of workerJoin.expires, nothing else", () => {
    const join = run.revealedOutputs.workerJoin as { token: string; expires: string };
    expect(run.outputs.workerJoinExpiry).toEqual({
      tokenId: workerTokenId("prod-nbg1", "1", 720),
      expires: join.expires,
    });
    expect(join.token.startsWith(`${workerTokenId("prod-nbg1", "1", 720)}.`)).toBe(true);
    expect(JSON.stringify(run.outputs.workerJoinExpiry)).not.toContain(join.token.slice(7));
  });

  test("a malformed token line fails the expiry too, without echoing the output", () => {
    expect(() =>
      parseWorkerTokenOutput("WORKER_JOIN_TOKEN=abc123.0123456789abcdef\nWORKER_JOIN_EXPIRES=soon\n"),
    ).toThrow("worker-join-token.sh printed no expiry");
    expect(workerTokenSeries({ tokenId: "abc123", expires: "2026-12-21T00:00:00Z" })).toEqual([
      { tokenId: "abc123", expiresSeconds: 1797811200 },
    ]);
  });
});

describe("worker token ids and output", () => {
  test("the id is 6 characters of [a-z0-9], stable, and new for a new rotation or TTL", () => {
    const id = workerTokenId("prod-nbg1", "1", 720);
    expect(id).toMatch(/^[a-z0-9]{6}$/);
    expect(workerTokenId("prod-nbg1", "1", 720)).toBe(id);
    expect(workerTokenId("prod-nbg1", "2", 720)).not.toBe(id);
    expect(workerTokenId("prod-nbg1", "1", 24)).not.toBe(id);
    expect(workerTokenId("prod-hel1", "1", 720)).not.toBe(id);
  });

  test("the script's two lines are parsed; anything else is refused without echoing it", () => {
    expect(
      parseWorkerTokenOutput("WORKER_JOIN_TOKEN=abc123.0123456789abcdef\nWORKER_JOIN_EXPIRES=2026-12-21T00:00:00Z\n"),
    ).toEqual({ token: "abc123.0123456789abcdef", expires: "2026-12-21T00:00:00Z" });
    expect(() => parseWorkerTokenOutput("WORKER_JOIN_TOKEN=secretvalue\n")).toThrow("printed no valid token");
    try {
      parseWorkerTokenOutput("WORKER_JOIN_TOKEN=secretvalue\n");
    } catch (err) {
      expect((err as Error).message).not.toContain("secretvalue");
    }
  });
});

describe("scripts/node/worker-join-token.sh with a fake kubeadm", () => {
  const script = path.join(__dirname, "..", "scripts", "node", "worker-join-token.sh");
  let tmp: string;
  let root: string;
  let bin: string;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "worker-token-"));
    root = path.join(tmp, "root");
    bin = path.join(tmp, "bin");
    fs.mkdirSync(path.join(root, "etc", "kubernetes"), { recursive: true });
    fs.writeFileSync(path.join(root, "etc", "kubernetes", "admin.conf"), "admin kubeconfig\n");
    fs.mkdirSync(bin);
    // Records argv; `token delete` of an unknown id says "not found" unless FAKE_EXISTS is set.
    fs.writeFileSync(
      path.join(bin, "kubeadm"),
      [
        "#!/usr/bin/env bash",
        'printf \'%s\\n\' "kubeadm $*" >>"$FAKE_LOG"',
        'case "$1 $2" in',
        '  "token delete") if [[ -n "${FAKE_EXISTS:-}" ]]; then echo "bootstrap token \\"$3\\" deleted"; else echo "bootstrap token \\"$3\\" not found" >&2; exit 1; fi ;;',
        '  "token generate") echo "zzzzzz.0123456789abcdef" ;;',
        '  "token create") if [[ -n "${FAKE_FAIL:-}" ]]; then echo "boom" >&2; exit 1; fi; echo "$3" ;;',
        "esac",
      ].join("\n"),
      { mode: 0o755 },
    );
    // kubectl get secret bootstrap-token-<id>: the Secret kubeadm's token create writes
    // (k8s.io/cluster-bootstrap token/api: token-secret, expiration in RFC 3339, base64 in
    // .data); NotFound as kubectl prints it; FAKE_KUBECTL_FAIL for an API server that is down.
    fs.writeFileSync(
      path.join(bin, "kubectl"),
      [
        "#!/usr/bin/env bash",
        'printf \'%s\\n\' "kubectl $*" >>"$FAKE_LOG"',
        'if [[ -n "${FAKE_KUBECTL_FAIL:-}" ]]; then echo "The connection to the server 10.20.1.250:6443 was refused" >&2; exit 1; fi',
        'if [[ -z "${FAKE_SECRET:-}" ]]; then echo "Error from server (NotFound): secrets \"${7}\" not found" >&2; exit 1; fi',
        'printf \'%s %s\' "$(printf \'%s\' "$FAKE_SECRET" | base64 -w0)" "$(printf \'%s\' "$FAKE_EXPIRATION" | base64 -w0)"',
      ].join("\n"),
      { mode: 0o755 },
    );
  });
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const runScript = (args: string[], env: Record<string, string> = {}) =>
    spawnSync("bash", [script, ...args, "--root", root], {
      encoding: "utf8",
      timeout: 30_000,
      env: { PATH: `${bin}:/usr/bin:/bin`, FAKE_LOG: path.join(tmp, "calls"), ...env },
    });
  const calls = () => fs.readFileSync(path.join(tmp, "calls"), "utf8").trim().split("\n");
  const logText = () => fs.readFileSync(path.join(root, "var/log/hcloud-control-plane/worker-join-token.log"), "utf8");

  test("create replaces the id's token and prints exactly the token and its expiry", () => {
    const result = runScript(["create", "--id", "abc123", "--ttl-hours", "720"], { FAKE_EXISTS: "1" });
    expect([result.status, result.stderr]).toEqual([0, expect.stringContaining("created bootstrap token abc123")]);
    const lines = result.stdout.trim().split("\n");
    expect(lines[0]).toBe("WORKER_JOIN_TOKEN=abc123.0123456789abcdef");
    expect(lines[1]).toMatch(/^WORKER_JOIN_EXPIRES=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(lines).toHaveLength(2);
    const expires = Date.parse(lines[1].split("=")[1]);
    expect(Math.abs(expires - (Date.now() + 720 * 3600_000))).toBeLessThan(120_000);
    expect(calls()).toEqual([
      expect.stringMatching(
        /^kubectl --kubeconfig \S+\/etc\/kubernetes\/admin.conf -n kube-system get secret bootstrap-token-abc123 /,
      ),
      "kubeadm token delete abc123",
      "kubeadm token generate",
      expect.stringMatching(
        /^kubeadm token create abc123\.0123456789abcdef --ttl 720h --description worker join \(hcloud-control-plane\), expires \S+ --groups system:bootstrappers:kubeadm:default-node-token --usages signing,authentication$/,
      ),
    ]);
    // The secret half reaches stdout only: not stderr, not the log.
    expect(result.stderr).not.toContain("0123456789abcdef");
    expect(logText()).not.toContain("0123456789abcdef");
  });

  test("create keeps a token of the id with more than an hour left: a re-run elsewhere does not rotate it", () => {
    const expiration = new Date(Date.now() + 100 * 3600_000).toISOString().replace(/\.\d+Z$/, "Z");
    const kept = runScript(["create", "--id", "abc123", "--ttl-hours", "720"], {
      FAKE_SECRET: "keptsecret012345",
      FAKE_EXPIRATION: expiration,
    });
    expect([kept.status, kept.stdout]).toEqual([
      0,
      `WORKER_JOIN_TOKEN=abc123.keptsecret012345\nWORKER_JOIN_EXPIRES=${expiration}\n`,
    ]);
    expect(calls().filter((c) => c.startsWith("kubeadm"))).toEqual([]);
    expect(kept.stderr).not.toContain("keptsecret012345");
    expect(logText()).not.toContain("keptsecret012345");
    // Expiring within the hour, or malformed: a new token replaces it.
    for (const env of [
      { FAKE_SECRET: "keptsecret012345", FAKE_EXPIRATION: new Date(Date.now() + 600_000).toISOString() },
      { FAKE_SECRET: "not a secret", FAKE_EXPIRATION: expiration },
    ]) {
      fs.writeFileSync(path.join(tmp, "calls"), "");
      const renewed = runScript(["create", "--id", "abc123", "--ttl-hours", "720"], { ...env, FAKE_EXISTS: "1" });
      expect(renewed.status).toBe(0);
      expect(renewed.stdout).toContain("WORKER_JOIN_TOKEN=abc123.0123456789abcdef\n");
      expect(calls()).toContain("kubeadm token delete abc123");
    }
    // An API server that does not answer: nothing is minted, nothing printed.
    const down = runScript(["create", "--id", "abc123", "--ttl-hours", "720"], { FAKE_KUBECTL_FAIL: "1" });
    expect([down.status, down.stdout]).toEqual([1, ""]);
    expect(down.stderr).toContain("reading Secret kube-system/bootstrap-token-abc123 failed");
  });

  test("delete removes the token, and a token already gone is fine", () => {
    expect(runScript(["delete", "--id", "abc123"], { FAKE_EXISTS: "1" }).status).toBe(0);
    const gone = runScript(["delete", "--id", "abc123"]);
    expect([gone.status, gone.stdout]).toEqual([0, ""]);
    expect(gone.stderr).toContain("does not exist");
  });

  test("a failing kubeadm fails the script without printing a token; bad arguments are usage errors", () => {
    const failed = runScript(["create", "--id", "abc123", "--ttl-hours", "5"], { FAKE_FAIL: "1" });
    expect([failed.status, failed.stdout]).toEqual([1, ""]);
    expect(failed.stderr).toContain("kubeadm token create abc123 failed");
    expect(runScript(["create", "--id", "ABC!23", "--ttl-hours", "5"]).status).toBe(2);
    expect(runScript(["create", "--id", "abc123", "--ttl-hours", "0"]).status).toBe(2);
    expect(runScript(["rotate", "--id", "abc123"]).status).toBe(2);
  });
});
