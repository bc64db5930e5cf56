/**
 * Day-2 operations in the real program's graph, under the recording mocks: the upgrade chain
 * (order, one node at a time, what each step runs), version changes against the version the
 * stack last exported, the certificate renewal chain and expiry reads, the certificate alerts
 * fed by those reads, and the etcd-defrag CronJob.
 *
 * The node scripts themselves run against stand-ins in upgrade.test.ts and certificates.test.ts,
 * and the defrag script against a real 3-member etcd in etcdDefrag.test.ts. What this cannot
 * prove: that Pulumi's engine runs dependents only after a dependency succeeded (it does: a
 * failed step stops every step that depends on it) and the real `kubeadm upgrade` itself.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { CronJob } from "kubernetes-models/batch/v1/CronJob";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { earliestExpiry, parseNodeReport } from "../components/lifecycle/certificates";
import { parseConfig } from "../components/config";
import { defragCronJobManifest, defragScriptConfigMap, defragScriptPath } from "../components/etcd/defrag";
import { scriptHashAnnotation } from "../components/etcd/cronJob";
import { certificateExpiryMetric, RuleFile } from "../components/addons/monitoring/rules";
import { workOf } from "../components/node/nodeScripts";
import { ProgramRun, RecordedResource } from "../tools/offline/harness";
import { loadStackConfig } from "../tools/offline/stackConfig";
import { byType, one, runStack, T } from "./support/program";

const P = "hcloud-control-plane";
const Command = "command:remote:Command";
const nodes = ["cp-1", "cp-2", "cp-3"];

/** The commands a resource depends on (the server its connection names is an implicit dependency too). */
const dependsOnNames = (run: ProgramRun, r: RecordedResource) =>
  r.dependsOn
    .map((urn) => run.resources.find((x) => x.urn === urn)!)
    .filter((d) => d.type.startsWith("command:"))
    .map((d) => d.name)
    .sort();
// The work of a recorded command (components/node/nodeScripts.ts recordedWork), or the command.
const create = (run: ProgramRun, name: string) => workOf(String(one(run, name).inputs.create));
// The connection holds the SSH key, so the recorded inputs mask it; the revealed ones show the host.
const host = (run: ProgramRun, name: string) => (one(run, name).revealedInputs.connection as { host: string }).host;
const serverIp = (run: ProgramRun, node: string) =>
  (run.outputs.nodes as { name: string; publicIpv4: string }[]).find((n) => n.name === node)!.publicIpv4;

describe("the upgrade chain", () => {
  let run: ProgramRun;
  /** A stack that exported a cluster, running the configured version. */
  let running: ProgramRun;
  beforeAll(async () => {
    run = await runStack();
    running = await runStack(
      {},
      { deployed: { caCertHash: `sha256:${"ab".repeat(32)}`, kubernetesVersion: "1.34.2" } },
    );
  });

  test("preflight, then every node, each step depending only on the one before it", () => {
    const component = byType(running, `${P}:index:ControlPlaneUpgrade`)[0];
    const steps = running.resources.filter((r) => r.parent === component.urn);
    expect(steps.map((s) => s.name)).toEqual(["upgrade-preflight", "upgrade-cp-1", "upgrade-cp-2", "upgrade-cp-3"]);
    expect(steps.every((s) => s.type === Command)).toBe(true);
    // The preflight waits for the whole bootstrap chain: the joins, then the kube-vip chain
    // (upgrades restart kube-vip too, so the two never move its manifest on a node at once).
    expect(dependsOnNames(running, one(running, "upgrade-preflight"))).toEqual(["bootstrap-cp-3-reserved-ip-failover"]);
    expect(dependsOnNames(running, one(running, "upgrade-cp-1"))).toEqual(["upgrade-preflight"]);
    expect(dependsOnNames(running, one(running, "upgrade-cp-2"))).toEqual(["upgrade-cp-1"]);
    expect(dependsOnNames(running, one(running, "upgrade-cp-3"))).toEqual(["upgrade-cp-2"]);
  });

  test("on a new cluster: preflight after every setup, then every node after the previous step and its own kube-vip", () => {
    // Nothing to upgrade (each node was set up at the configured version): the steps only check
    // the gates, and go node by node right behind the kube-vip chain instead of after all of it.
    expect(dependsOnNames(run, one(run, "upgrade-preflight"))).toEqual(["bootstrap-cp-3-member"]);
    expect(dependsOnNames(run, one(run, "upgrade-cp-1"))).toEqual([
      "bootstrap-cp-1-reserved-ip-failover",
      "upgrade-preflight",
    ]);
    expect(dependsOnNames(run, one(run, "upgrade-cp-2"))).toEqual([
      "bootstrap-cp-2-reserved-ip-failover",
      "upgrade-cp-1",
    ]);
    expect(dependsOnNames(run, one(run, "upgrade-cp-3"))).toEqual([
      "bootstrap-cp-3-reserved-ip-failover",
      "upgrade-cp-2",
    ]);
  });

  test("each step runs on its own node and decides apply or node on it; the preflight on a running member", () => {
    // The first running node in node order: cp-1 while it runs (bootstrap.test.ts: a stopped one).
    expect(host(run, "upgrade-preflight")).toBe(serverIp(run, "cp-1"));
    for (const node of nodes) {
      expect(host(run, `upgrade-${node}`)).toBe(serverIp(run, node));
    }
    expect(new Set(nodes.map((n) => host(run, `upgrade-${n}`))).size).toBe(3);
    expect(create(run, "upgrade-preflight")).toBe(
      "bash /usr/local/lib/hcloud-control-plane/node/upgrade-preflight.sh --version 1.34.2",
    );
    // No node has the apply role: the first one whose cluster is below the version applies
    // (upgrade-node.sh --role auto, tests/upgrade.test.ts), whichever it is.
    const step = (node: string) =>
      "bash /usr/local/lib/hcloud-control-plane/node/upgrade-node.sh --role auto --version 1.34.2 " +
      `--package-version 1.34.2-1.1 --channel v1.34 --node-name prod-nbg1-${node} --patches /etc/kubernetes/kubeadm-patches`;
    for (const node of nodes) expect(create(run, `upgrade-${node}`)).toBe(step(node));
  });

  test("the steps have no delete and no trigger: a version change re-runs them as updates, in order", () => {
    for (const name of ["upgrade-preflight", ...nodes.map((n) => `upgrade-${n}`)]) {
      const inputs = one(run, name).inputs;
      expect([name, inputs.delete, inputs.triggers]).toEqual([name, undefined, undefined]);
    }
  });

  test("everything that needs the cluster at its version comes after the chain", () => {
    // The kubeconfig is read after the chain (an upgrade renews admin.conf), and so is every
    // object the Kubernetes provider creates.
    expect(dependsOnNames(running, one(running, "access-admin-kubeconfig"))).toEqual(["upgrade-cp-3"]);
    for (const node of nodes)
      expect(dependsOnNames(running, one(running, `certificates-${node}-expiry`))).toEqual(["upgrade-cp-3"]);
    expect(dependsOnNames(running, one(running, "worker-join-token"))).toEqual(["upgrade-cp-3"]);
  });

  test("on a new cluster it is there after the last setup: the upgrade steps do not hold it back", () => {
    expect(dependsOnNames(run, one(run, "access-admin-kubeconfig"))).toEqual(["bootstrap-cp-3-member"]);
    for (const node of nodes)
      expect(dependsOnNames(run, one(run, `certificates-${node}-expiry`))).toEqual(["bootstrap-cp-3-member"]);
    expect(dependsOnNames(run, one(run, "worker-join-token"))).toEqual(["bootstrap-cp-3-member"]);
    // The version the stack exports still waits for the last step (each ends checking its node).
    expect(run.outputs.kubernetesVersion).toBe("1.34.2");
  });
});

describe("the exported version", () => {
  test("is known only once the upgrade chain completed: unknown in a preview, where no step has run", async () => {
    const preview = await runStack(
      { kubernetesVersion: "1.35.0" },
      { preview: true, deployed: { kubernetesVersion: "1.34.2" } },
    );
    // Before, it was the configured value at once: a failed chain could export a version no node ran.
    expect(preview.outputs.kubernetesVersion).toBe("[unknown]");
    const up = await runStack({ kubernetesVersion: "1.35.0" }, { deployed: { kubernetesVersion: "1.34.2" } });
    expect(up.outputs.kubernetesVersion).toBe("1.35.0");
  });
});

describe("a version change", () => {
  test("one minor up: every step carries the new version, packages and channel; new servers get it from cloud-init", async () => {
    const run = await runStack({ kubernetesVersion: "1.35.0" }, { deployed: { kubernetesVersion: "1.34.2" } });
    expect(create(run, "upgrade-preflight")).toContain("--version 1.35.0");
    for (const node of nodes) {
      expect(create(run, `upgrade-${node}`)).toContain(
        `--version 1.35.0 --package-version 1.35.0-1.1 --channel v1.35 --node-name prod-nbg1-${node}`,
      );
      const server = one(run, `control-plane-${node}`);
      // A server created from now on is prepared with the new version ...
      expect(String(server.inputs.userData)).toMatch(/--package-version\n\s+- 1\.35\.0-1\.1\n/);
      expect(String(server.inputs.userData)).toMatch(/--channel\n\s+- v1\.35\n/);
      // ... while a running one never sees its userData change: the chain moves it.
      expect(server.ignoreChanges).toContain("userData");
    }
    expect(run.outputs.kubernetesVersion).toBe("1.35.0");
    // The kubeconfig and the certificate expiry are read again after an upgrade.
    expect(create(run, "access-admin-kubeconfig")).toContain("# kubernetes 1.35.0");
    expect(create(run, "certificates-cp-1-expiry")).toContain("# kubernetes 1.35.0");
  });

  test("two minors up is refused before any resource is registered, naming both versions", async () => {
    const sink: RecordedResource[] = [];
    await expect(
      runStack({ kubernetesVersion: "1.36.0" }, { sink, deployed: { kubernetesVersion: "1.34.2" } }),
    ).rejects.toThrow(
      `${P}:kubernetesVersion = "1.36.0": skips minor versions: this stack runs 1.34.2 (its kubernetesVersion output)`,
    );
    expect(sink.map((r) => r.type)).toEqual([T.stack]);
  });

  test("a downgrade is refused before any resource is registered", async () => {
    const sink: RecordedResource[] = [];
    await expect(
      runStack({ kubernetesVersion: "1.34.1" }, { sink, deployed: { kubernetesVersion: "1.34.2" } }),
    ).rejects.toThrow("kubeadm cannot downgrade a cluster");
    expect(sink.map((r) => r.type)).toEqual([T.stack]);
  });

  test("the stack's own last outputs are where the running version comes from", async () => {
    // A new stack may start at any supported version (1.31.0 would be a downgrade from the
    // default 1.34.2); the default against a deployed 1.32.9 skips 1.33 and is refused.
    await expect(runStack({ kubernetesVersion: "1.31.0" })).resolves.toBeDefined();
    await expect(runStack({}, { deployed: { kubernetesVersion: "1.32.9" } })).rejects.toThrow("skips minor versions");
  });
});

describe("kubeadm certificates", () => {
  let run: ProgramRun;
  beforeAll(async () => {
    run = await runStack();
  });

  test("without certificateRenewal there is no renewal; each node's expiry is read after the upgrade chain", () => {
    expect(run.resources.filter((r) => r.name.endsWith("-renew"))).toEqual([]);
    for (const node of nodes) {
      expect(create(run, `certificates-${node}-expiry`)).toBe(
        `bash /usr/local/lib/hcloud-control-plane/node/cert-expiry.sh --node-name prod-nbg1-${node} ` +
          '# kubernetes 1.34.2, certificate renewal ""',
      );
      expect(host(run, `certificates-${node}-expiry`)).toBe(host(run, `upgrade-${node}`));
    }
  });

  // The mocked reports (tools/offline/mocks.ts): cp-1's admin.conf expires 2027-12-02, cp-2's
  // apiserver 2027-11-21 (the earliest), cp-3's etcd-server 2027-12-04.
  test("the stack exports the earliest expiry over all nodes as a plain output", () => {
    expect(run.outputs.certificateExpiry).toEqual({
      earliest: "2027-11-21T09:30:00Z",
      node: "prod-nbg1-cp-2",
      certificate: "apiserver",
      nodes: [
        { name: "cp-1", node: "prod-nbg1-cp-1", earliest: "2027-12-02T09:30:00Z", certificate: "admin.conf" },
        { name: "cp-2", node: "prod-nbg1-cp-2", earliest: "2027-11-21T09:30:00Z", certificate: "apiserver" },
        { name: "cp-3", node: "prod-nbg1-cp-3", earliest: "2027-12-04T09:30:00Z", certificate: "etcd-server" },
      ],
    });
  });

  test("the PrometheusRule records each node's expiry as read, and alerts on it", () => {
    const spec = byType(run, "kubernetes:monitoring.coreos.com/v1:PrometheusRule")[0].inputs.spec as RuleFile;
    const group = spec.groups.find((g) => g.name === "kubeadm-certificates")!;
    const record = (node: string, certificate: string, seconds: number) => ({
      record: certificateExpiryMetric,
      expr: `vector(${seconds})`,
      labels: { node, certificate },
    });
    expect(group.rules.filter((r) => "record" in r)).toEqual([
      record("prod-nbg1-cp-1", "admin.conf", 1827739800),
      record("prod-nbg1-cp-2", "apiserver", 1826789400),
      record("prod-nbg1-cp-3", "etcd-server", 1827912600),
    ]);
    const alerts = group.rules.filter((r) => "alert" in r).map((r) => ("alert" in r ? [r.alert, r.expr] : []));
    expect(alerts).toEqual([
      ["KubeadmCertificateExpiration", `${certificateExpiryMetric} - time() < ${30 * 86400}`],
      ["KubeadmCertificateExpiration", `${certificateExpiryMetric} - time() < ${7 * 86400}`],
    ]);
  });

  test("certificateRenewal renews node after node after the upgrade chain; the reads and the kubeconfig follow", async () => {
    const renewed = await runStack({ certificateRenewal: "2027-05-01" });
    expect(dependsOnNames(renewed, one(renewed, "certificates-cp-1-renew"))).toEqual(["upgrade-cp-3"]);
    expect(dependsOnNames(renewed, one(renewed, "certificates-cp-2-renew"))).toEqual(["certificates-cp-1-renew"]);
    expect(dependsOnNames(renewed, one(renewed, "certificates-cp-3-renew"))).toEqual(["certificates-cp-2-renew"]);
    for (const node of nodes) {
      expect(create(renewed, `certificates-${node}-renew`)).toBe(
        `bash /usr/local/lib/hcloud-control-plane/node/renew-certificates.sh --node-name prod-nbg1-${node} --stamp 2027-05-01`,
      );
      expect(host(renewed, `certificates-${node}-renew`)).toBe(host(renewed, `upgrade-${node}`));
      expect(dependsOnNames(renewed, one(renewed, `certificates-${node}-expiry`))).toEqual(["certificates-cp-3-renew"]);
      expect(create(renewed, `certificates-${node}-expiry`)).toContain('certificate renewal "2027-05-01"');
    }
    // admin.conf was renewed on cp-1: the stack reads it again, so the exported kubeconfig is new.
    expect(dependsOnNames(renewed, one(renewed, "access-admin-kubeconfig"))).toEqual(["certificates-cp-3-renew"]);
    expect(create(renewed, "access-admin-kubeconfig")).toBe(
      'cat /etc/kubernetes/admin.conf # kubernetes 1.34.2, certificate renewal "2027-05-01"',
    );
    expect(renewed.resources).toHaveLength(run.resources.length + 3);
  });

  test("a node's report must be cert-expiry.sh's JSON with a date; the earliest over the nodes wins", () => {
    expect(() => parseNodeReport("cp-2", "kubeadm: command not found\n")).toThrow(
      "cert-expiry.sh on cp-2 printed no JSON report",
    );
    expect(() => parseNodeReport("cp-3", '{"node":"x","earliest":"soon"}')).toThrow(
      "cert-expiry.sh on cp-3 reported no earliest expiry",
    );
    const report = (node: string, earliest: string, earliestName: string) =>
      parseNodeReport(node, JSON.stringify({ node, earliest, earliestName, certificates: [], authorities: [] }));
    const expiry = earliestExpiry(
      ["cp-1", "cp-2", "cp-3"],
      [
        report("n1", "2027-11-21T09:30:00Z", "admin.conf"),
        report("n2", "2027-03-01T00:00:00Z", "apiserver"),
        report("n3", "2027-03-01T00:00:01Z", "etcd-server"),
      ],
    );
    expect(expiry).toMatchObject({ earliest: "2027-03-01T00:00:00Z", node: "n2", certificate: "apiserver" });
    expect(expiry.nodes.map((n) => n.name)).toEqual(["cp-1", "cp-2", "cp-3"]);
  });

  test("preview: the reads exist, their dates are unknown", async () => {
    const preview = await runStack({}, { preview: true });
    for (const node of nodes) expect(one(preview, `certificates-${node}-expiry`).type).toBe(Command);
    expect(preview.outputs.certificateExpiry).toBe("[unknown]");
  });
});

describe("the etcd-defrag CronJob", () => {
  const cfg = parseConfig(loadStackConfig("prod"));
  const script = fs.readFileSync(defragScriptPath, "utf8");
  const library = fs.readFileSync(path.join(__dirname, "..", "scripts", "node", "lib.sh"), "utf8");
  const scripts = { script, library };
  const manifest = defragCronJobManifest(cfg, scripts);
  const pod = manifest.spec.jobTemplate.spec.template.spec;
  const container = pod.containers[0];
  const env = Object.fromEntries(container.env.map((e) => [e.name, e.value]));

  test("is in the graph through the cluster's provider, after its script and the library it sources", async () => {
    const run = await runStack();
    const cronJob = one(run, "etcd-defrag-cronjob");
    expect(cronJob.type).toBe("kubernetes:batch/v1:CronJob");
    expect(cronJob.provider).toMatch(/::access-provider$/);
    expect(cronJob.dependsOn).toEqual([one(run, "etcd-defrag-script").urn]);
    expect(one(run, "etcd-defrag-script").inputs.data).toEqual({
      "etcd-defrag.sh": script,
      "lib.sh": library,
    });
  });

  test("validates against the Kubernetes schema", () => {
    expect(() => new CronJob(manifest as never).validate()).not.toThrow();
    expect(() => new ConfigMap(defragScriptConfigMap(scripts) as never).validate()).not.toThrow();
  });

  test("kube-system, the configured schedule in UTC, never two at once, on a control-plane node", () => {
    expect(manifest.metadata).toMatchObject({ name: "etcd-defrag", namespace: "kube-system" });
    expect(manifest.spec).toMatchObject({ schedule: "17 3 * * *", timeZone: "Etc/UTC", concurrencyPolicy: "Forbid" });
    expect(pod.nodeSelector).toEqual({ "node-role.kubernetes.io/control-plane": "" });
    expect(pod.hostNetwork).toBe(true);
    expect(container.image).toBe(cfg.backup.image);
    // Only the etcd client's files, never the PKI directory (tests/etcdDefrag.test.ts).
    expect(container.volumeMounts).not.toContainEqual(expect.objectContaining({ mountPath: "/etc/kubernetes/pki" }));
    expect(container.volumeMounts).toContainEqual({
      name: "etcd-client-key",
      mountPath: "/etc/kubernetes/pki/etcd/healthcheck-client.key",
      readOnly: true,
    });
    expect(container.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
    // The ConfigMap (script and library) is one directory: the script sources the library beside it.
    expect(pod.volumes).toContainEqual({
      name: "script",
      configMap: { name: "etcd-defrag-script", defaultMode: 0o555 },
    });
    expect(container.volumeMounts).toContainEqual({ name: "script", mountPath: "/opt/etcd-job", readOnly: true });
    expect(container.command).toEqual(["/bin/bash", "/opt/etcd-job/etcd-defrag.sh"]);
  });

  test("a change to the script or to its library changes the pod template, so the next run uses it", () => {
    const hashes = [
      scripts,
      { script: `${script}\n# changed\n`, library },
      { script, library: `${library}\n# changed\n` },
    ].map(
      (s) => defragCronJobManifest(cfg, s).spec.jobTemplate.spec.template.metadata.annotations[scriptHashAnnotation],
    );
    expect(new Set(hashes).size).toBe(3);
  });

  test("every member exactly once, the threshold and the size floor from the settings", () => {
    expect(env.ETCD_ENDPOINTS).toBe("https://10.20.1.11:2379,https://10.20.1.12:2379,https://10.20.1.13:2379");
    expect(env.DEFRAG_THRESHOLD_PERCENT).toBe("40");
    expect(env.DEFRAG_MIN_DB_SIZE_BYTES).toBe(String(100 * 1024 * 1024));
    const other = defragCronJobManifest(
      parseConfig(
        loadStackConfig("prod", {
          overrides: { etcdDefragSchedule: "0 4 * * 0", etcdDefragThresholdPercent: 25, etcdDefragMinSizeMiB: 0 },
        }),
      ),
      scripts,
    );
    const otherEnv = Object.fromEntries(
      other.spec.jobTemplate.spec.template.spec.containers[0].env.map((e) => [e.name, e.value]),
    );
    expect([other.spec.schedule, otherEnv.DEFRAG_THRESHOLD_PERCENT, otherEnv.DEFRAG_MIN_DB_SIZE_BYTES]).toEqual([
      "0 4 * * 0",
      "25",
      "0",
    ]);
  });

  test("every variable the job sets is one the script documents in --help", () => {
    const result = spawnSync("bash", [defragScriptPath, "--help"], {
      encoding: "utf8",
      env: { PATH: "/usr/bin:/bin" },
    });
    expect(result.status).toBe(0);
    for (const e of container.env)
      if (e.name !== "HOME") expect([e.name, result.stdout.includes(e.name)]).toEqual([e.name, true]);
  });
});
