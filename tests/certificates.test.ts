/**
 * The certificate node scripts (scripts/node/cert-expiry.sh, scripts/node/renew-certificates.sh)
 * run for real with bash under a temporary root (tests/support/nodeSandbox.ts), with fake
 * `kubeadm`, `kubectl` and `crictl` on PATH; `date` is the real GNU date.
 *
 * The fake kubeadm prints `kubeadm certs check-expiration -o json` as kubeadm 1.34 does: a
 * CertificateExpirationInfo of output.kubeadm.k8s.io/v1alpha3 (kubernetes/kubernetes
 * cmd/kubeadm/app/apis/output/v1alpha3/types.go), filled by fetchCertificateExpirationInfo in
 * cmd/kubeadm/app/cmd/certs.go (a missing certificate has only its name and missing: true) and
 * written by k8s.io/cli-runtime's JSONPrinter (json.MarshalIndent with four spaces, then a newline;
 * kind and apiVersion first, the fields in the order of the Go struct, metav1.Time as RFC 3339 in
 * UTC, a zero time as null). In JSON mode kubeadm prints nothing else on stdout.
 * The fake crictl (tests/support/staticPods.ts) lists a static pod's container exactly while its
 * manifest is in /etc/kubernetes/manifests, as the kubelet would after a moment; the fake
 * `kubeadm certs renew all` writes admin.conf again with a new client certificate, as kubeadm does.
 *
 * What this cannot prove: that a real kubelet stops and starts the static pods when their
 * manifests move, and that kubeadm keeps this output API in later releases (the script refuses
 * any other kind or version, and any entry it cannot read). The proof of those is a renewal on real servers.
 */
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import {
  at,
  calls,
  etcdHealthCall,
  expectScriptContract,
  expectShellcheckClean,
  expectStatus,
  kubectlGateArms,
  makeSandbox as makeNodeSandbox,
  mode,
  nodeScriptsDir,
  readyzCall,
  resetCalls,
  runNodeScript,
  Sandbox,
  useTempDir,
} from "./support/nodeSandbox";
import {
  adminKubeconfig,
  crictlCall,
  crictlFake,
  crictlSeen,
  kubeVipLeaseArm,
  kubeVipLeaseCall,
  kubeVipManifest,
  kubeVipSentinel,
  renewAdminConf,
} from "./support/staticPods";
import { parseNodeReport } from "../components/lifecycle/certificates";

const tmp = useTempDir("certificates-test-");

// ---------------------------------------------------------------------------------------------
// kubeadm's check-expiration JSON.

interface Cert {
  name: string;
  /** RFC 3339 UTC date, or undefined for a missing certificate. */
  expires?: string;
  ca?: string;
  external?: boolean;
}

/** One entry of CertificateExpirationInfo, its fields in types.go's order (caName only for leaves). */
function certificateEntry(c: Cert, leaf: boolean): Record<string, unknown> {
  if (!c.expires) {
    // fetchCertificateExpirationInfo sets only Name and Missing; the zero metav1.Time is null.
    return { name: c.name, expirationDate: null, residualTime: 0, externallyManaged: false, missing: true };
  }
  return {
    name: c.name,
    expirationDate: c.expires,
    // int64(ResidualTime() / time.Second): negative once expired.
    residualTime: Math.trunc((Date.parse(c.expires) - Date.now()) / 1000),
    externallyManaged: c.external ?? false,
    ...(leaf && c.ca ? { caName: c.ca } : {}),
    missing: false,
  };
}

/** The stdout of `kubeadm certs check-expiration -o json`. */
function expirationInfo(certs: Cert[], cas: Cert[]): string {
  const info = {
    kind: "CertificateExpirationInfo",
    apiVersion: "output.kubeadm.k8s.io/v1alpha3",
    certificates: certs.map((c) => certificateEntry(c, true)),
    certificateAuthorities: cas.map((c) => certificateEntry(c, false)),
  };
  return `${JSON.stringify(info, null, 4)}\n`;
}

/** kubeadm 1.34's certificates and CAs, in its order, on a node with a local etcd. */
const leafNames: [string, string][] = [
  ["admin.conf", "ca"],
  ["apiserver", "ca"],
  ["apiserver-etcd-client", "etcd-ca"],
  ["apiserver-kubelet-client", "ca"],
  ["controller-manager.conf", "ca"],
  ["etcd-healthcheck-client", "etcd-ca"],
  ["etcd-peer", "etcd-ca"],
  ["etcd-server", "etcd-ca"],
  ["front-proxy-client", "front-proxy-ca"],
  ["scheduler.conf", "ca"],
  ["super-admin.conf", "ca"],
];
const caNames = ["ca", "etcd-ca", "front-proxy-ca"];
const caExpiry = "2035-11-19T13:21:14Z";
const allLeaves = (expires: string): Cert[] => leafNames.map(([name, ca]) => ({ name, ca, expires }));
const allCas = (expires = caExpiry): Cert[] => caNames.map((name) => ({ name, expires }));

// ---------------------------------------------------------------------------------------------
// Fakes (after the prelude of tests/support/nodeSandbox.ts). FAKE_FAIL / FAKE_HANG name the
// operations (comma-separated) that exit 1 / never return: check, renew, readyz, etcd, crictl.

const fakes: Record<string, string> = {
  kubeadm: `
${renewAdminConf}
case "$*" in
  "certs check-expiration -o json")
    if hangs check; then exec sleep 30; fi
    echo 'I1121 13:21:00.000000 1234 version.go:261] remote version is much newer' >&2
    if fails check; then echo 'error: open /etc/kubernetes/pki/ca.crt: no such file or directory' >&2; exit 1; fi
    cat "$FAKE_CAPTURE/expiration.json"
    ;;
  "certs renew all")
    if hangs renew; then exec sleep 30; fi
    echo '[renew] Reading configuration from the "kubeadm-config" ConfigMap in namespace "kube-system"...'
    if fails renew; then echo 'error: failed to renew certificate apiserver' >&2; exit 1; fi
    echo "certificate embedded in the kubeconfig file for the admin to use and for kubeadm itself renewed"
    echo "certificate for serving the Kubernetes API renewed"
    echo
    echo "Done renewing certificates. You must restart the kube-apiserver, kube-controller-manager, kube-scheduler and etcd, so that they can use the new certificates."
    cp "$FAKE_CAPTURE/renewed.json" "$FAKE_CAPTURE/expiration.json"
    renew_admin_conf
    ;;
  *) echo "fake kubeadm: unexpected $*" >&2; exit 99 ;;
esac`,
  kubectl: `
case "$*" in
${kubectlGateArms()}
${kubeVipLeaseArm()}
  *) echo "fake kubectl: unexpected $*" >&2; exit 99 ;;
esac`,
  crictl: crictlFake,
};

const realTools = [
  ...["bash", "cat", "chmod", "dirname", "install", "jq", "mktemp", "mv", "rm", "rmdir", "sleep", "timeout"], // the scripts
  ...["grep", "sha256sum"], // lib.sh's admin.conf fingerprint
  ...["awk", "date"], // lib.sh's kube-vip Lease name and renewal time; the fake Lease
  ...["cp"], // the fakes
];

const node = "prod-nbg1-cp-2";
const adminConf = "/etc/kubernetes/admin.conf";
const manifestsDir = "/etc/kubernetes/manifests";
const parkedDir = "/etc/kubernetes/manifests-parked";
const sentinel = "/var/lib/kubernetes-node/certificates-renewed";
const components = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"];
const manifest = (name: string) => `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${name}\n  namespace: kube-system\n`;

const before = expirationInfo(
  [...allLeaves("2026-12-30T23:36:41Z").filter((c) => c.name !== "super-admin.conf"), { name: "super-admin.conf" }],
  allCas(),
);
const renewedAt = "2027-11-21T13:21:14Z";
const renewed = expirationInfo(
  [...allLeaves(renewedAt).filter((c) => c.name !== "super-admin.conf"), { name: "super-admin.conf" }],
  allCas(),
);

/** A control-plane node; with `kubeVip`, it runs kube-vip too (components/node/kubeVip.ts). */
function makeSandbox(name: string, info = before, options: { kubeVip?: boolean } = {}): Sandbox {
  const files: Record<string, string> = { [adminConf]: adminKubeconfig("1") };
  for (const component of components) files[`${manifestsDir}/${component}.yaml`] = manifest(component);
  if (options.kubeVip) files[`${manifestsDir}/kube-vip.yaml`] = kubeVipManifest;
  const sandbox = makeNodeSandbox(tmp(), name, { fakes, realTools, files });
  fs.writeFileSync(path.join(sandbox.capture, "expiration.json"), info);
  fs.writeFileSync(path.join(sandbox.capture, "renewed.json"), renewed);
  Object.assign(sandbox.env, {
    FAKE_ADMIN_CONF: at(sandbox, adminConf),
    FAKE_MANIFESTS: at(sandbox, manifestsDir),
  });
  return sandbox;
}

const kubeconfig = `$ROOT${adminConf}`;
const gateCalls = [readyzCall(kubeconfig), etcdHealthCall(kubeconfig, node)];
const renewCall = "kubeadm certs renew all";
/** Per component: wait until gone, wait until running, gate. */
const restartCalls = (name: string) => [crictlCall(name), crictlCall(name), ...gateCalls];
const renewalCalls = [...gateCalls, renewCall, ...components.flatMap(restartCalls)];
/** kube-vip's restart: as any static pod's, then the wait for a renewed kube-vip Lease. */
const kubeVipRestartCalls = [...restartCalls("kube-vip"), kubeVipLeaseCall(kubeconfig)];

/** The fake kubectl's /readyz answers ok `times` times, then fails (a gate that breaks later). */
function readyzFailsAfter(sandbox: Sandbox, times: number): void {
  const kubectl = path.join(sandbox.fakeBin, "kubectl");
  const text = fs.readFileSync(kubectl, "utf8");
  const changed = text.replace("if fails readyz;", `if fails readyz || (($(count readyz) > ${times}));`);
  if (changed === text) throw new Error("readyzFailsAfter: the fake kubectl has no readyz arm");
  fs.writeFileSync(kubectl, changed);
}

const manifests = (sandbox: Sandbox) => fs.readdirSync(at(sandbox, manifestsDir)).sort();
const allManifests = components.map((c) => `${c}.yaml`).sort();

// ---------------------------------------------------------------------------------------------

describe("the certificate scripts", () => {
  test("shellcheck passes on both", () => {
    expectShellcheckClean(["cert-expiry.sh", "renew-certificates.sh"]);
  });

  test.each([
    ["cert-expiry.sh", ["--node-name", "--timeout", "--root", "ROOT", "externallyManaged", "earliestName"]],
    [
      "renew-certificates.sh",
      ["--node-name", "--stamp", "--timeout", "--root", "ROOT", "POLL_SECONDS", sentinel, parkedDir],
    ],
  ])("%s: bash strict mode, no xtrace, --help documents every flag", (script, documented) => {
    expectScriptContract(makeSandbox("help"), script, documented);
  });
});

describe("cert-expiry.sh", () => {
  const run = (sandbox: Sandbox, args: string[], env: Record<string, string> = {}) =>
    runNodeScript(sandbox, "cert-expiry.sh", args, { env });

  test("reads kubeadm's JSON: an expired, an externally managed and a missing certificate, into one line of JSON", () => {
    const info = expirationInfo(
      [
        { name: "admin.conf", ca: "ca", expires: "2027-11-21T13:21:14Z" },
        { name: "apiserver", ca: "ca", expires: "2027-11-21T13:20:59Z" },
        // Expired: kubeadm still reports its date, with a negative residual time.
        { name: "apiserver-etcd-client", ca: "etcd-ca", expires: "2025-10-02T08:05:07Z" },
        { name: "apiserver-kubelet-client", ca: "ca", expires: "2027-11-21T13:21:14Z" },
        { name: "front-proxy-client", ca: "front-proxy-ca", expires: "2027-02-03T04:05:06Z", external: true },
        { name: "super-admin.conf" },
      ],
      [
        { name: "ca", expires: "2035-11-19T13:21:14Z" },
        // A CA that expires first is not the earliest: only leaf certificates count.
        { name: "etcd-ca", expires: "2024-01-01T00:00:00Z" },
        { name: "front-proxy-ca", expires: "2035-11-19T13:21:14Z", external: true },
      ],
    );
    // The test's rendering is kubeadm's: MarshalIndent's four spaces, kind and apiVersion first,
    // a missing certificate with a null date, caName only on leaves.
    expect(
      info.startsWith(
        '{\n    "kind": "CertificateExpirationInfo",\n    "apiVersion": "output.kubeadm.k8s.io/v1alpha3",\n    "certificates": [\n        {\n            "name": "admin.conf",\n            "expirationDate": "2027-11-21T13:21:14Z",\n            "residualTime": ',
      ),
    ).toBe(true);
    expect(info).toContain('"name": "super-admin.conf",\n            "expirationDate": null,');
    expect(info).toContain('"externallyManaged": true,\n            "missing": false\n        }\n    ]\n}\n');
    expect(info).toMatch(
      /"name": "apiserver-etcd-client",\n {12}"expirationDate": "2025-10-02T08:05:07Z",\n {12}"residualTime": -\d+,/,
    );
    const sandbox = makeSandbox("expiry", info);
    const result = run(sandbox, ["--node-name", node]);
    expectStatus(result, 0);
    expect(result.stdout.endsWith("\n")).toBe(true);
    expect(result.stdout.trimEnd().split("\n")).toHaveLength(1);
    expect(JSON.parse(result.stdout)).toEqual({
      node,
      earliest: "2025-10-02T08:05:07Z",
      earliestName: "apiserver-etcd-client",
      certificates: [
        { name: "admin.conf", expires: "2027-11-21T13:21:14Z", externallyManaged: false },
        { name: "apiserver", expires: "2027-11-21T13:20:59Z", externallyManaged: false },
        { name: "apiserver-etcd-client", expires: "2025-10-02T08:05:07Z", externallyManaged: false },
        { name: "apiserver-kubelet-client", expires: "2027-11-21T13:21:14Z", externallyManaged: false },
        { name: "front-proxy-client", expires: "2027-02-03T04:05:06Z", externallyManaged: true },
      ],
      authorities: [
        { name: "ca", expires: "2035-11-19T13:21:14Z", externallyManaged: false },
        { name: "etcd-ca", expires: "2024-01-01T00:00:00Z", externallyManaged: false },
        { name: "front-proxy-ca", expires: "2035-11-19T13:21:14Z", externallyManaged: true },
      ],
      missing: ["super-admin.conf"],
    });
    // The report is what components/lifecycle/certificates.ts parses.
    expect(parseNodeReport("cp-2", result.stdout)).toMatchObject({ earliest: "2025-10-02T08:05:07Z" });
    expect(calls(sandbox)).toEqual(["kubeadm certs check-expiration -o json"]);
    // kubeadm's stderr and stdout went to the root-only log.
    const logFile = at(sandbox, "var/log/hcloud-control-plane/cert-expiry.log");
    expect(mode(logFile)).toBe("600");
    const log = fs.readFileSync(logFile, "utf8");
    expect(log).toContain("remote version is much newer");
    expect(log).toContain('"kind": "CertificateExpirationInfo"');
    expect(result.stderr).not.toContain("remote version");
  });

  test("earliest: the first leaf expiry; a tie keeps kubeadm's order; nothing missing is []; a missing CA is listed", () => {
    const leaves = allLeaves("2027-11-21T13:21:14Z");
    leaves[3].expires = "2027-06-01T10:00:00Z"; // apiserver-kubelet-client
    leaves[7].expires = "2027-06-01T10:00:00Z"; // etcd-server, the same second
    const sandbox = makeSandbox("expiry-earliest", expirationInfo(leaves, allCas()));
    const result = run(sandbox, ["--node-name", node]);
    expectStatus(result, 0);
    const report = JSON.parse(result.stdout);
    expect(report).toMatchObject({ earliest: "2027-06-01T10:00:00Z", earliestName: "apiserver-kubelet-client" });
    expect(report.certificates.map((c: { name: string }) => c.name)).toEqual(leafNames.map(([n]) => n));
    expect(report.authorities.map((c: { name: string }) => c.name)).toEqual(caNames);
    expect(report.missing).toEqual([]);

    const noEtcdCa = makeSandbox(
      "expiry-missing-ca",
      expirationInfo(leaves, [...allCas().slice(0, 1), { name: "etcd-ca" }, allCas()[2]]),
    );
    const missingCa = run(noEtcdCa, ["--node-name", node]);
    expectStatus(missingCa, 0);
    expect(JSON.parse(missingCa.stdout)).toMatchObject({
      authorities: [{ name: "ca" }, { name: "front-proxy-ca" }],
      missing: ["etcd-ca"],
    });
  });

  test("a failing or hanging kubeadm: exit 1 naming the node, nothing on stdout", () => {
    const failures: Record<string, string>[] = [{ FAKE_FAIL: "check" }, { FAKE_HANG: "check" }];
    for (const env of failures) {
      const sandbox = makeSandbox("expiry-fails");
      const result = run(sandbox, ["--node-name", node, "--timeout", "1"], env);
      expect(result.status).toBe(1);
      expect(result.stdout).toBe("");
      expect(result.stderr).toContain(`kubeadm certs check-expiration failed on ${node}`);
      expect(result.ms).toBeLessThan(12_000);
    }
  });

  /** kubeadm's JSON, as a test may break it. */
  interface Info {
    kind?: string;
    apiVersion?: string;
    certificates?: Record<string, unknown>[] | null;
    certificateAuthorities?: Record<string, unknown>[] | null;
  }
  /** kubeadm's JSON of two good certificates and the CAs, changed by `edit`. */
  const edited = (edit: (info: Info) => void) => {
    const info = JSON.parse(
      expirationInfo(
        [
          { name: "admin.conf", ca: "ca", expires: "2027-11-21T13:21:14Z" },
          { name: "apiserver", ca: "ca", expires: "2027-11-21T13:21:14Z" },
        ],
        allCas(),
      ),
    ) as Info;
    edit(info);
    return `${JSON.stringify(info, null, 4)}\n`;
  };
  const second = (info: Info) => (info.certificates ?? [])[1];
  const firstCa = (info: Info) => (info.certificateAuthorities ?? [])[0];
  const textTable =
    "CERTIFICATE                EXPIRES                  RESIDUAL TIME   CERTIFICATE AUTHORITY   EXTERNALLY MANAGED\n" +
    "admin.conf                 Nov 21, 2027 13:21 UTC   364d            ca                      no      \n";
  test.each([
    ["the text table (a kubeadm without -o json)", textTable, "printed no JSON"],
    ["no output", "", "printed no single JSON document"],
    ["two documents", before + before, "printed no single JSON document"],
    ["a JSON array", "[]\n", "printed no JSON object"],
    [
      "the deprecated output API v1alpha2",
      edited((i) => (i.apiVersion = "output.kubeadm.k8s.io/v1alpha2")),
      'printed kind "CertificateExpirationInfo" of "output.kubeadm.k8s.io/v1alpha2", not CertificateExpirationInfo of output.kubeadm.k8s.io/v1alpha3',
    ],
    ["another kind", edited((i) => (i.kind = "Images")), 'printed kind "Images"'],
    ["no certificates", edited((i) => delete i.certificates), "listed no certificate"],
    ["certificates null (a nil Go slice)", edited((i) => (i.certificates = null)), "listed no certificate"],
    [
      "only missing certificates",
      edited(
        (i) =>
          (i.certificates = [
            { name: "admin.conf", expirationDate: null, residualTime: 0, externallyManaged: false, missing: true },
          ]),
      ),
      "listed no certificate",
    ],
    [
      "certificateAuthorities null",
      edited((i) => (i.certificateAuthorities = null)),
      "listed no certificate authority",
    ],
    [
      "an invalid date",
      edited((i) => (second(i).expirationDate = "2027-02-30T13:21:14Z")),
      '"name":"apiserver","expirationDate":"2027-02-30T13:21:14Z"',
    ],
    [
      "a date with an offset",
      edited((i) => (second(i).expirationDate = "2027-11-21T14:21:14+01:00")),
      '"expirationDate":"2027-11-21T14:21:14+01:00"',
    ],
    [
      "a date that is null",
      edited((i) => (second(i).expirationDate = null)),
      '"name":"apiserver","expirationDate":null',
    ],
    ["no residualTime", edited((i) => delete second(i).residualTime), '"name":"apiserver"'],
    ["no missing field", edited((i) => delete second(i).missing), '"name":"apiserver"'],
    ["externallyManaged as text", edited((i) => (second(i).externallyManaged = "no")), '"externallyManaged":"no"'],
    ["a name with a quote", edited((i) => (second(i).name = 'api"server')), String.raw`"name":"api\"server"`],
    [
      "an unreadable CA",
      edited((i) => Object.assign(firstCa(i), { expirationDate: "never" })),
      '"name":"ca","expirationDate":"never"',
    ],
  ])("%s: exit 1, nothing on stdout, the problem named", (_label, output, message) => {
    const sandbox = makeSandbox("expiry-unreadable", output);
    const result = run(sandbox, ["--node-name", node]);
    expect(result.status).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain(`kubeadm certs check-expiration -o json on ${node} `);
    expect(result.stderr).toContain(message);
  });

  test("usage errors run nothing", () => {
    const sandbox = makeSandbox("expiry-usage");
    for (const args of [[], ["--node-name", "Prod_CP"], ["--node-name", node, "--timeout", "0"], ["--node-name"]]) {
      const result = run(sandbox, args);
      expect(result.status).toBe(2);
      expect(result.stdout).toBe("");
    }
    expect(calls(sandbox)).toEqual([]);
  });
});

describe("renew-certificates.sh", () => {
  const run = (sandbox: Sandbox, args: string[], env: Record<string, string> = {}) =>
    runNodeScript(sandbox, "renew-certificates.sh", args, { env });
  const args = (stamp: string, ...more: string[]) => ["--node-name", node, "--stamp", stamp, ...more];
  const sentinelText = (sandbox: Sandbox) =>
    fs.existsSync(at(sandbox, sentinel)) ? fs.readFileSync(at(sandbox, sentinel), "utf8") : undefined;

  test("gates, renews, restarts each static pod in turn with a gate after each, writes the stamp", () => {
    const sandbox = makeSandbox("renew");
    const result = run(sandbox, args("2027-05-01"));
    expectStatus(result, 0);
    expect(result.stdout).toBe("");
    expect(calls(sandbox)).toEqual(renewalCalls);
    // Each component's manifest was out while waiting for it to stop, back while waiting for it.
    expect(crictlSeen(sandbox)).toEqual(components.flatMap((c) => [`${c} absent`, `${c} present`]));
    expect(manifests(sandbox)).toEqual(allManifests);
    for (const c of components)
      expect(fs.readFileSync(at(sandbox, `${manifestsDir}/${c}.yaml`), "utf8")).toBe(manifest(c));
    expect(fs.existsSync(at(sandbox, parkedDir))).toBe(false);
    expect(sentinelText(sandbox)).toBe("2027-05-01\n");
    expect(mode(at(sandbox, sentinel))).toBe("644");
    // admin.conf is renewed in place, and left there.
    expect(fs.readFileSync(at(sandbox, adminConf), "utf8")).toBe(adminKubeconfig("renewed1"));
    // This node runs no kube-vip (its manifest is not there yet): nothing to restart, no failure.
    expect(result.stderr).toContain("no kube-vip manifest on this node: no kube-vip to restart");
    expect(fs.existsSync(at(sandbox, kubeVipSentinel))).toBe(false);
    const logFile = at(sandbox, "var/log/hcloud-control-plane/renew-certificates.log");
    expect(mode(logFile)).toBe("600");
    expect(fs.readFileSync(logFile, "utf8")).toContain("Done renewing certificates.");
    expect(result.stderr).not.toContain("Done renewing certificates.");

    // cert-expiry.sh now reports the renewed dates.
    const expiry = runNodeScript(sandbox, "cert-expiry.sh", ["--node-name", node]);
    expectStatus(expiry, 0);
    expect(JSON.parse(expiry.stdout)).toMatchObject({ earliest: renewedAt, earliestName: "admin.conf" });
  });

  test("the same stamp again does nothing at all; a new stamp renews again", () => {
    const sandbox = makeSandbox("renew-again");
    expectStatus(run(sandbox, args("2027-05-01")), 0);
    resetCalls(sandbox);
    const same = run(sandbox, args("2027-05-01"));
    expectStatus(same, 0);
    expect(same.stderr).toContain("already renewed with stamp 2027-05-01; nothing to do");
    expect(calls(sandbox)).toEqual([]);

    const next = run(sandbox, args("2028-04-30.1"));
    expectStatus(next, 0);
    expect(calls(sandbox)).toEqual(renewalCalls);
    expect(sentinelText(sandbox)).toBe("2028-04-30.1\n");
  });

  test("a container that never comes back: exit 1 naming the node and step, manifest restored, no stamp", () => {
    const sandbox = makeSandbox("renew-never-back");
    const result = run(sandbox, args("2027-05-01", "--timeout", "1"), { FAKE_NEVER_BACK: "kube-scheduler" });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`${node}: starting kube-scheduler: no container ran within 1s`);
    expect(result.ms).toBeLessThan(12_000);
    expect(manifests(sandbox)).toEqual(allManifests);
    // The parked directory is removed once empty.
    expect(fs.existsSync(at(sandbox, parkedDir))).toBe(false);
    expect(sentinelText(sandbox)).toBeUndefined();
    const log = calls(sandbox);
    const upTo = [
      ...gateCalls,
      renewCall,
      ...restartCalls("kube-apiserver"),
      ...restartCalls("kube-controller-manager"),
    ];
    expect(log.slice(0, upTo.length + 1)).toEqual([...upTo, crictlCall("kube-scheduler")]);
    // Then only the wait for kube-scheduler; etcd was never touched.
    for (const later of log.slice(upTo.length + 1)) expect(later).toBe(crictlCall("kube-scheduler"));
    expect(crictlSeen(sandbox)).not.toContain("etcd absent");
  });

  test("a container that never stops: its manifest is put back, exit 1, no stamp", () => {
    const sandbox = makeSandbox("renew-never-gone");
    const result = run(sandbox, args("2027-05-01", "--timeout", "1"), { FAKE_NEVER_GONE: "kube-controller-manager" });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`${node}: stopping kube-controller-manager: its container still runs 1s after`);
    expect(result.stderr).toContain("put the manifest of kube-controller-manager back");
    expect(manifests(sandbox)).toEqual(allManifests);
    expect(sentinelText(sandbox)).toBeUndefined();
    expect(calls(sandbox)).not.toContain(crictlCall("kube-scheduler"));
  });

  test("a gate that fails after a restart stops before the next component", () => {
    const sandbox = makeSandbox("renew-gate");
    // readyz passes twice (the first gate, then after kube-apiserver), then fails.
    readyzFailsAfter(sandbox, 2);
    const result = run(sandbox, args("2027-05-01", "--timeout", "1"));
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(
      `${node}: after restarting kube-controller-manager: the API server did not report ready within 1s`,
    );
    expect(calls(sandbox)).not.toContain(crictlCall("kube-scheduler"));
    expect(manifests(sandbox)).toEqual(allManifests);
    expect(sentinelText(sandbox)).toBeUndefined();
  });

  test.each([
    [
      "etcd unhealthy",
      { FAKE_FAIL: "etcd" },
      `${node}: before renewing: etcd endpoint health --cluster did not pass`,
      gateCalls,
    ],
    [
      "the API server not ready",
      { FAKE_HANG: "readyz" },
      `${node}: before renewing: the API server did not report ready`,
      [readyzCall(kubeconfig)],
    ],
    [
      "kubeadm certs renew all fails",
      { FAKE_FAIL: "renew" },
      `${node}: kubeadm certs renew all failed (no static pod was restarted)`,
      [...gateCalls, renewCall],
    ],
  ])("%s: exit 1 before any static pod is touched", (_label, env, message, expected) => {
    const sandbox = makeSandbox("renew-refused");
    const result = run(sandbox, args("2027-05-01", "--timeout", "1"), env);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(message);
    expect(result.ms).toBeLessThan(12_000);
    const log = calls(sandbox);
    expect(log.slice(0, expected.length)).toEqual(expected);
    for (const later of log.slice(expected.length)) expect(later).toBe(expected[expected.length - 1]);
    expect(log.some((c) => c.startsWith("crictl"))).toBe(false);
    expect(manifests(sandbox)).toEqual(allManifests);
    expect(sentinelText(sandbox)).toBeUndefined();
  });

  describe("kube-vip, which holds admin.conf in memory", () => {
    const kubeVipManifests = [...allManifests, "kube-vip.yaml"].sort();
    const kubeVipFingerprint = (sandbox: Sandbox) =>
      fs.existsSync(at(sandbox, kubeVipSentinel)) ? fs.readFileSync(at(sandbox, kubeVipSentinel), "utf8") : undefined;

    test("is restarted after the renewal and the other static pods, behind the same gates", () => {
      const sandbox = makeSandbox("renew-kube-vip", before, { kubeVip: true });
      const result = run(sandbox, args("2027-05-01"));
      expectStatus(result, 0);
      expect(calls(sandbox)).toEqual([...renewalCalls, ...kubeVipRestartCalls]);
      expect(crictlSeen(sandbox).slice(-2)).toEqual(["kube-vip absent", "kube-vip present"]);
      expect(manifests(sandbox)).toEqual(kubeVipManifests);
      expect(fs.readFileSync(at(sandbox, `${manifestsDir}/kube-vip.yaml`), "utf8")).toBe(kubeVipManifest);
      expect(fs.existsSync(at(sandbox, parkedDir))).toBe(false);
      // The fingerprint of the admin.conf client certificate kube-vip now runs with; no key in it.
      expect(kubeVipFingerprint(sandbox)).toMatch(/^sha256:[0-9a-f]{64}\n$/);
      expect(mode(at(sandbox, kubeVipSentinel))).toBe("644");
      expect(sentinelText(sandbox)).toBe("2027-05-01\n");

      // A new renewal renews admin.conf again, so kube-vip is restarted again.
      const first = kubeVipFingerprint(sandbox);
      resetCalls(sandbox);
      expectStatus(run(sandbox, args("2028-04-30")), 0);
      expect(calls(sandbox)).toEqual([...renewalCalls, ...kubeVipRestartCalls]);
      expect(kubeVipFingerprint(sandbox)).not.toBe(first);
    });

    test("an admin.conf kubeadm did not renew (external CA): kube-vip already runs with it, not restarted", () => {
      const sandbox = makeSandbox("renew-kube-vip-external", before, { kubeVip: true });
      expectStatus(run(sandbox, args("2027-05-01")), 0);
      // kubeadm certs renew all with an external CA leaves admin.conf as it is ("Detected external
      // ca, ... can't be renewed", renewCert in cmd/kubeadm/app/cmd/certs.go).
      fs.writeFileSync(
        path.join(sandbox.fakeBin, "kubeadm"),
        fs.readFileSync(path.join(sandbox.fakeBin, "kubeadm"), "utf8").replace(/^ {4}renew_admin_conf$/m, "    :"),
      );
      resetCalls(sandbox);
      const result = run(sandbox, args("2028-04-30"));
      expectStatus(result, 0);
      expect(result.stderr).toContain("kube-vip was restarted with the current admin.conf already");
      expect(calls(sandbox)).toEqual(renewalCalls);
    });

    test.each([
      ["never comes back", { FAKE_NEVER_BACK: "kube-vip" }, `${node}: starting kube-vip: no container ran within 1s`],
      [
        "never stops",
        { FAKE_NEVER_GONE: "kube-vip" },
        `${node}: stopping kube-vip: its container still runs 1s after its manifest was moved out`,
      ],
    ])("a kube-vip that %s: exit 1 naming the node and step, manifest restored, no stamp", (_label, env, message) => {
      const sandbox = makeSandbox("renew-kube-vip-fails", before, { kubeVip: true });
      const result = run(sandbox, args("2027-05-01", "--timeout", "1"), env);
      expect(result.status).toBe(1);
      expect(result.stderr).toContain(message);
      expect(result.ms).toBeLessThan(12_000);
      expect(manifests(sandbox)).toEqual(kubeVipManifests);
      expect(sentinelText(sandbox)).toBeUndefined();
      expect(kubeVipFingerprint(sandbox)).toBeUndefined();
      // Everything before kube-vip ran, gates included; then only the waits for kube-vip.
      const log = calls(sandbox);
      expect(log.slice(0, renewalCalls.length)).toEqual(renewalCalls);
      for (const later of log.slice(renewalCalls.length)) expect(later).toBe(crictlCall("kube-vip"));

      // Fixed: the same stamp again renews and restarts everything, kube-vip included.
      resetCalls(sandbox);
      expectStatus(run(sandbox, args("2027-05-01")), 0);
      expect(calls(sandbox)).toEqual([...renewalCalls, ...kubeVipRestartCalls]);
      expect(sentinelText(sandbox)).toBe("2027-05-01\n");
    });

    test("a gate that fails after the kube-vip restart: exit 1, no fingerprint, no stamp", () => {
      const sandbox = makeSandbox("renew-kube-vip-gate", before, { kubeVip: true });
      // readyz passes five times (before renewing, after each of the four components), then fails.
      readyzFailsAfter(sandbox, 5);
      const result = run(sandbox, args("2027-05-01", "--timeout", "1"));
      expect(result.status).toBe(1);
      expect(result.stderr).toContain(
        `${node}: after restarting kube-vip: the API server did not report ready within 1s`,
      );
      expect(manifests(sandbox)).toEqual(kubeVipManifests);
      expect(kubeVipFingerprint(sandbox)).toBeUndefined();
      expect(sentinelText(sandbox)).toBeUndefined();
    });

    test("a restarted kube-vip that no kube-vip Lease renewal follows: exit 1 naming the Lease, no fingerprint, no stamp", () => {
      const sandbox = makeSandbox("renew-kube-vip-lease", before, { kubeVip: true });
      const result = run(sandbox, args("2027-05-01", "--timeout", "1"), { FAKE_LEASE_RENEWED_FROM: "1000" });
      expect(result.status).toBe(1);
      expect(result.stderr).toContain(
        `${node}: kube-vip: no kube-vip renewed the Lease kube-system/plndr-cp-lock within 1s of the restart`,
      );
      expect(manifests(sandbox)).toEqual(kubeVipManifests);
      expect(kubeVipFingerprint(sandbox)).toBeUndefined();
      expect(sentinelText(sandbox)).toBeUndefined();
      // Once a kube-vip leads again, the re-run renews and restarts everything and passes.
      resetCalls(sandbox);
      expectStatus(run(sandbox, args("2027-05-01")), 0);
      expect(calls(sandbox)).toEqual([...renewalCalls, ...kubeVipRestartCalls]);
    });

    test("a kube-vip manifest an interrupted run left parked is put back first", () => {
      const sandbox = makeSandbox("renew-kube-vip-recover", before, { kubeVip: true });
      fs.mkdirSync(at(sandbox, parkedDir), { recursive: true });
      fs.renameSync(at(sandbox, `${manifestsDir}/kube-vip.yaml`), at(sandbox, `${parkedDir}/kube-vip.yaml`));
      const result = run(sandbox, args("2027-05-01"));
      expectStatus(result, 0);
      expect(result.stderr).toContain("put the manifest of kube-vip back");
      expect(calls(sandbox)).toEqual([...renewalCalls, ...kubeVipRestartCalls]);
      expect(manifests(sandbox)).toEqual(kubeVipManifests);
    });
  });

  test("a manifest an interrupted run left parked is put back first", () => {
    const sandbox = makeSandbox("renew-recover");
    fs.mkdirSync(at(sandbox, parkedDir), { recursive: true });
    fs.renameSync(at(sandbox, `${manifestsDir}/etcd.yaml`), at(sandbox, `${parkedDir}/etcd.yaml`));
    const result = run(sandbox, args("2027-05-01"));
    expectStatus(result, 0);
    expect(result.stderr).toContain("put the manifest of etcd back");
    expect(calls(sandbox)).toEqual(renewalCalls);
    expect(manifests(sandbox)).toEqual(allManifests);
  });

  test("SIGTERM while a manifest is out: it is put back", async () => {
    const sandbox = makeSandbox("renew-signal");
    const child = spawn(
      "/bin/bash",
      [path.join(nodeScriptsDir, "renew-certificates.sh"), ...args("2027-05-01", "--timeout", "30")],
      { env: { ...sandbox.env, FAKE_NEVER_GONE: "kube-apiserver" }, stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const closed = new Promise<number | null>((resolve) => child.on("close", resolve));
    const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    for (let i = 0; i < 100 && !crictlSeen(sandbox).includes("kube-apiserver absent"); i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(fs.existsSync(at(sandbox, `${manifestsDir}/kube-apiserver.yaml`))).toBe(false);
    child.kill("SIGTERM");
    const status = await closed;
    clearTimeout(killer);
    expect(status).toBe(143);
    expect(stderr).toContain("put the manifest of kube-apiserver back");
    expect(manifests(sandbox)).toEqual(allManifests);
    expect(sentinelText(sandbox)).toBeUndefined();
  });

  test("usage errors and a node that is not a control-plane node", () => {
    const sandbox = makeSandbox("renew-usage");
    const usage: string[][] = [
      ["--stamp", "2027-05-01"],
      ["--node-name", node],
      args("2027 05 01"),
      args("2027/05/01"),
      args(""),
      args("x".repeat(64)),
      args("$(id)"),
      args("2027-05-01", "--timeout", "soon"),
    ];
    for (const argv of usage) {
      const result = run(sandbox, argv);
      expect({ argv, status: result.status }).toEqual({ argv, status: 2 });
    }
    expect(run(sandbox, ["--stamp", "2027-05-01"]).stderr).toContain("--node-name must be a node name");
    expect(run(sandbox, args("2027/05/01")).stderr).toContain("--stamp must be 1 to 63 of A-Z a-z 0-9 . _ -");
    // A 63-character stamp is valid: the script goes on (to a failing gate).
    expectStatus(run(sandbox, args("x".repeat(63), "--timeout", "1"), { FAKE_FAIL: "etcd" }), 1);
    resetCalls(sandbox);

    fs.rmSync(at(sandbox, `${manifestsDir}/etcd.yaml`));
    const noEtcd = run(sandbox, args("2027-05-01"));
    expect(noEtcd.status).toBe(1);
    expect(noEtcd.stderr).toContain("etcd.yaml not found: not a kubeadm control-plane node with a local etcd");
    fs.rmSync(at(sandbox, adminConf));
    const noAdmin = run(sandbox, args("2027-05-01"));
    expect(noAdmin.status).toBe(1);
    expect(noAdmin.stderr).toContain(`${node}: ${at(sandbox, adminConf)} not found`);
    expect(calls(sandbox)).toEqual([]);
  });
});
