/**
 * examples/worker-pool: the program runs under Pulumi's mocks against a mocked control-plane
 * stack reference (tests/support/workerPool.ts explains the mock), and its cloud-init is
 * checked by the real `cloud-init schema` and PyYAML. The join step's shell is run for real
 * with a fake kubeadm.
 *
 * What this cannot prove: that a real kubeadm join succeeds (that needs a cluster), or that
 * the Pulumi engine's StackReference answers exactly like the mock; the mock follows the SDK's
 * reading of it (outputs + secretOutputNames).
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import YAML from "yaml";
import { nodePaths } from "../components/node/cloudInit";
import { outputsVersion } from "../components/outputs";
import {
  checkOutputsVersion,
  consecutiveIps,
  parseWorkerJoin,
  supportedOutputsVersion,
} from "../examples/worker-pool/contract";
import { workerPaths } from "../examples/worker-pool/workerCloudInit";
import { parseCloudConfig, writtenFile } from "./support/cloudConfig";
import { pyyamlLoadAll, requireTool } from "./support/tools";
import {
  controlPlaneOutputs,
  exampleRoot,
  Recorded,
  runWorkerPool,
  without,
  WorkerPoolRun,
} from "./support/workerPool";

const serverType = "hcloud:index/server:Server";
const cloudInitBinary = "/usr/bin/cloud-init";
const join = controlPlaneOutputs().workerJoin;

interface JoinConfiguration {
  apiVersion: string;
  kind: string;
  discovery: { bootstrapToken: { apiServerEndpoint: string; token: string; caCertHashes: string[] } };
  nodeRegistration: { name: string; criSocket: string; kubeletExtraArgs: { name: string; value: string }[] };
  patches: { directory: string };
}

function servers(run: WorkerPoolRun): Recorded[] {
  return run.resources.filter((r) => r.type === serverType).sort((a, b) => a.name.localeCompare(b.name));
}

function userDataOf(server: Recorded): string {
  return server.revealedInputs.userData as string;
}

let tmp: string;
let run: WorkerPoolRun;
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "worker-pool-test-"));
  run = await runWorkerPool();
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe("output contract", () => {
  test("the example supports the contract version the control plane publishes", () => {
    // Fails when components/outputs.ts bumps outputsVersion: update the example with it.
    expect(supportedOutputsVersion).toBe(outputsVersion);
  });

  test("the mocked stack reference behaves like the engine's: only secret outputs are secrets", async () => {
    // Checked inside the example's run: the program read the configured stack.
    expect(run.stackReferences).toEqual([{ name: "control-plane", stack: "acme/hcloud-control-plane/prod" }]);
    // And directly: getOutput keeps workerJoin secret and clusterName plain.
    await runWorkerPool(); // leaves the mocks installed
    const ref = new pulumi.StackReference("probe", { name: "acme/hcloud-control-plane/prod" });
    const isSecret = (o: pulumi.Output<unknown>) => (o as unknown as { isSecret: Promise<boolean> }).isSecret;
    expect(await isSecret(ref.getOutput("workerJoin"))).toBe(true);
    expect(await isSecret(ref.getOutput("clusterName"))).toBe(false);
    await expect(ref.getOutputValue("workerJoin")).rejects.toThrow(/secret/);
  });

  test("a different outputsVersion is refused before anything is created", async () => {
    for (const version of [1, 3]) {
      await expect(runWorkerPool({ outputs: { ...controlPlaneOutputs(), outputsVersion: version } })).rejects.toThrow(
        `stack acme/hcloud-control-plane/prod has outputsVersion ${version}, but this example supports outputsVersion 2 only`,
      );
    }
    await expect(runWorkerPool({ outputs: without({ ...controlPlaneOutputs() }, "outputsVersion") })).rejects.toThrow(
      "stack acme/hcloud-control-plane/prod has no outputsVersion output, but this example supports outputsVersion 2 only",
    );
    expect(() => checkOutputsVersion("2", "s")).toThrow('has outputsVersion "2"');
  });

  test("a failed version check registers no resource at all", async () => {
    const sink: Recorded[] = [];
    await expect(runWorkerPool({ outputs: { ...controlPlaneOutputs(), outputsVersion: 3 }, sink })).rejects.toThrow(
      /outputsVersion 3/,
    );
    // Only the stack itself: the StackReference is a read, and no server was created.
    expect(sink.map((r) => r.type)).toEqual(["pulumi:pulumi:Stack"]);
  });

  test("malformed join material fails before any server, with the field named and the token never echoed", async () => {
    const badToken = "NOT-A-TOKEN-s3cr3t";
    const sink: Recorded[] = [];
    const failed = runWorkerPool({
      outputs: { ...controlPlaneOutputs(), workerJoin: { ...join, token: badToken } },
      sink,
    });
    await expect(failed).rejects.toThrow(
      "workerJoin.token of stack acme/hcloud-control-plane/prod is not a kubeadm bootstrap token",
    );
    await expect(failed).rejects.toThrow(expect.objectContaining({ message: expect.not.stringContaining(badToken) }));
    expect(sink.filter((r) => r.type === serverType)).toEqual([]);
    await expect(runWorkerPool({ outputs: without({ ...controlPlaneOutputs() }, "workerJoin") })).rejects.toThrow(
      "has no workerJoin output",
    );
    expect(() => parseWorkerJoin({ ...join, token: badToken }, "s")).toThrow(
      expect.objectContaining({ message: expect.not.stringContaining(badToken) }),
    );
    expect(() => parseWorkerJoin(undefined, "s")).toThrow("stack s has no workerJoin output");
    expect(() => parseWorkerJoin({ ...join, caCertHash: "md5:00" }, "s")).toThrow("workerJoin.caCertHash");
    expect(() => parseWorkerJoin({ ...join, controlPlaneEndpoint: "https://x" }, "s")).toThrow("host:port");
    expect(parseWorkerJoin(join, "s")).toEqual(join);
  });
  test("outputs that are missing or inconsistent fail with the output named", async () => {
    const stack = "acme/hcloud-control-plane/prod";
    await expect(runWorkerPool({ outputs: without({ ...controlPlaneOutputs() }, "networkId") })).rejects.toThrow(
      `stack ${stack} has no output networkId`,
    );
    await expect(runWorkerPool({ outputs: { ...controlPlaneOutputs(), kubernetesVersion: "v1.34" } })).rejects.toThrow(
      `output kubernetesVersion of stack ${stack} is not x.y.z`,
    );
    await expect(
      runWorkerPool({ outputs: { ...controlPlaneOutputs(), controlPlaneEndpoint: "10.20.1.250:6443" } }),
    ).rejects.toThrow(`workerJoin.controlPlaneEndpoint of stack ${stack} differs from its controlPlaneEndpoint output`);
  });
});

describe("project files", () => {
  const project = YAML.parse(fs.readFileSync(path.join(exampleRoot, "Pulumi.yaml"), "utf8")) as {
    name: string;
    runtime: { name: string; options: { typescript: boolean } };
    config: Record<string, { default?: unknown }>;
  };

  test("Pulumi.yaml is its own nodejs/TypeScript project; the sample and the README use only its keys", () => {
    expect(project.name).toBe("worker-pool");
    expect(project.runtime).toMatchObject({ name: "nodejs", options: { typescript: true } });
    expect(project.config).toMatchObject({
      workerCount: { default: 2 },
      serverType: { default: "cpx31" },
      image: { default: "ubuntu-24.04" },
    });
    const sample = YAML.parse(fs.readFileSync(path.join(exampleRoot, "Pulumi.example.yaml"), "utf8")) as {
      config: Record<string, unknown>;
    };
    const sampleKeys = Object.keys(sample.config).map((k) => k.replace(/^worker-pool:/, ""));
    expect(sampleKeys.filter((k) => !(k in project.config))).toEqual([]);
    const readme = fs.readFileSync(path.join(exampleRoot, "README.md"), "utf8");
    const documented = [...readme.matchAll(/^\| `([A-Za-z0-9]+)` \|/gm)].map((m) => m[1]);
    expect(documented).toEqual(Object.keys(project.config));
    for (const [key, decl] of Object.entries(project.config)) {
      const row = readme.split("\n").find((line) => line.startsWith(`| \`${key}\` |`));
      const shown = typeof decl.default === "string" ? decl.default : JSON.stringify(decl.default);
      const cell = decl.default === undefined ? "| **required** |" : `| \`${shown}\` |`;
      expect([key, row]).toEqual([key, expect.stringContaining(cell)]);
    }
  });

  test("every relative link in the README points at a file that exists", () => {
    const readme = fs.readFileSync(path.join(exampleRoot, "README.md"), "utf8");
    const links = [...readme.matchAll(/\]\((?!https?:|#)([^)#\s]+)/g)].map((m) => m[1]);
    expect(links.length).toBeGreaterThan(0);
    for (const link of links) expect([link, fs.existsSync(path.join(exampleRoot, link))]).toEqual([link, true]);
  });
});

describe("worker servers", () => {
  test("workerCount servers named and labelled per config, in the stack's location and network", () => {
    const found = servers(run);
    expect(found.map((s) => s.name)).toEqual(["prod-nbg1-worker-1", "prod-nbg1-worker-2", "prod-nbg1-worker-3"]);
    found.forEach((server, i) => {
      const n = i + 1;
      expect(server.inputs).toMatchObject({
        name: `prod-nbg1-worker-${n}`,
        serverType: "cpx31",
        image: "ubuntu-24.04",
        location: "nbg1",
        sshKeys: ["platform-ops"],
        firewallIds: [8000001],
        networks: [{ networkId: 7000001, ip: `10.20.1.${100 + n}`, aliasIps: [] }],
        publicNets: [{ ipv4Enabled: true, ipv6Enabled: true }],
        labels: { cluster: "prod-nbg1", role: "worker", "managed-by": "pulumi", pool: "worker", node: `worker-${n}` },
      });
      // A rotated token (new userData) must not replace running workers.
      expect(server.ignoreChanges).toEqual(["userData", "image", "sshKeys"]);
    });
    expect(run.outputs).toMatchObject({
      controlPlaneStack: "acme/hcloud-control-plane/prod",
      clusterName: "prod-nbg1",
      controlPlaneEndpoint: "api.prod-nbg1.k8s.example.com:6443",
      location: "nbg1",
      networkZone: "eu-central",
      kubernetesVersion: "1.34.2",
      joinTokenExpires: "2099-01-01T00:00:00Z",
    });
  });

  test("settings: count, pool name, public IPv4 and firewall", async () => {
    const custom = await runWorkerPool({
      config: {
        workerCount: 1,
        poolName: "gpu",
        serverType: "ccx33",
        firstPrivateIp: "10.20.1.200",
        publicIpv4: false,
        attachFirewall: false,
        sshKeys: [],
      },
    });
    const [server, ...rest] = servers(custom);
    expect(rest).toEqual([]);
    expect(server.inputs).toMatchObject({
      name: "prod-nbg1-gpu-1",
      serverType: "ccx33",
      firewallIds: [],
      sshKeys: [],
      networks: [{ networkId: 7000001, ip: "10.20.1.200" }],
      publicNets: [{ ipv4Enabled: false, ipv6Enabled: true }],
      labels: { pool: "gpu", node: "gpu-1" },
    });
  });

  test("bad settings fail with a clear message", async () => {
    await expect(runWorkerPool({ config: { workerCount: 0 } })).rejects.toThrow("workerCount must be a whole number");
    await expect(runWorkerPool({ config: { poolName: "Workers" } })).rejects.toThrow("poolName must be");
    await expect(runWorkerPool({ config: { image: "debian-12" } })).rejects.toThrow("image must be one of");
    await expect(runWorkerPool({ config: { firstPrivateIp: "10.20.1" } })).rejects.toThrow(
      "firstPrivateIp must be an IPv4 address",
    );
    // Addresses simply count on; whether they lie in the subnet is Hetzner's to refuse at `pulumi up`.
    expect(consecutiveIps("10.20.1.254", 3)).toEqual(["10.20.1.254", "10.20.1.255", "10.20.2.0"]);
  });
});

describe("join secrets", () => {
  test("userData is a secret input of every server", () => {
    for (const server of servers(run)) {
      expect(server.inputs.userData).toBe("[secret]");
      expect(typeof server.revealedInputs.userData).toBe("string");
    }
  });

  test("userData stays secret even if the control plane exported workerJoin without the secret bit", async () => {
    const warn = jest.spyOn(console, "warn").mockImplementation(() => undefined);
    try {
      const leaky = await runWorkerPool({ secretOutputNames: [] });
      for (const server of servers(leaky)) expect(server.inputs.userData).toBe("[secret]");
      expect(warn).toHaveBeenCalledWith(expect.stringContaining("exports workerJoin without the secret bit"));
    } finally {
      warn.mockRestore();
    }
  });

  test("an expired token is a warning, not an error: existing workers do not need it", async () => {
    const warn = jest.spyOn(console, "warn").mockImplementation(() => undefined);
    try {
      const expired = { ...join, expires: "2020-01-01T00:00:00Z" };
      const stale = await runWorkerPool({ outputs: { ...controlPlaneOutputs(), workerJoin: expired } });
      expect(servers(stale)).toHaveLength(3);
      expect(warn).toHaveBeenCalledWith(expect.stringContaining("expired at 2020-01-01T00:00:00Z"));
      expect(JSON.stringify(warn.mock.calls)).not.toContain(join.token);
    } finally {
      warn.mockRestore();
    }
  });

  test("the token appears in no non-secret input or output", () => {
    const visible = JSON.stringify({ inputs: run.resources.map((r) => r.inputs), outputs: run.outputs });
    expect(visible).not.toContain(join.token);
    expect(visible).not.toContain(join.token.split(".")[1]);
    // And the revealed record does hold it, so the check above looks in the right place.
    expect(JSON.stringify(run.resources.map((r) => r.revealedInputs))).toContain(join.token);
  });
});

describe("worker cloud-init", () => {
  test("the real cloud-init schema validator accepts every worker's user data", () => {
    const binary = requireTool(cloudInitBinary, "cloud-init");
    for (const server of servers(run)) {
      const file = path.join(tmp, `${server.name}.yaml`);
      fs.writeFileSync(file, userDataOf(server), { mode: 0o600 });
      const result = spawnSync(binary, ["schema", "--config-file", file], { encoding: "utf8" });
      expect({ status: result.status, stderr: result.stderr }).toEqual({ status: 0, stderr: "" });
      expect(result.stdout).toContain(`Valid cloud-config: ${file}`);
    }
  });

  test("prepares the node like the control plane, then joins with a root-only JoinConfiguration", () => {
    servers(run).forEach((server, i) => {
      const userData = userDataOf(server);
      expect(userData.split("\n")[0]).toBe("#cloud-config");
      const cloudConfig = parseCloudConfig(userData);
      // PyYAML, the parser cloud-init uses, reads the same document.
      expect(pyyamlLoadAll(userData)).toEqual([cloudConfig]);
      expect(cloudConfig.hostname).toBe(server.name);

      const paths = cloudConfig.write_files.map((f) => f.path);
      expect(paths).toContain(nodePaths.prepareScript);
      expect(paths).not.toContain(nodePaths.auditPolicy);

      const file = writtenFile(cloudConfig, workerPaths.joinConfig);
      expect(file).toMatchObject({ owner: "root:root", permissions: "0600" });
      const joinConfig = pyyamlLoadAll(file.content)[0] as JoinConfiguration;
      expect(joinConfig).toEqual({
        apiVersion: "kubeadm.k8s.io/v1beta4",
        kind: "JoinConfiguration",
        discovery: {
          bootstrapToken: {
            apiServerEndpoint: "api.prod-nbg1.k8s.example.com:6443",
            token: join.token,
            caCertHashes: [join.caCertHash],
          },
        },
        nodeRegistration: {
          name: server.name,
          criSocket: "unix:///run/containerd/containerd.sock",
          kubeletExtraArgs: [
            { name: "cloud-provider", value: "external" },
            { name: "node-ip", value: `10.20.1.${101 + i}` },
          ],
        },
        patches: { directory: "/etc/kubernetes/kubeadm-patches" },
      });

      // The kubelet's serving certificate through a CSR from its first start, whatever the
      // cluster's kubelet-config ConfigMap says: a kubeadm merge patch in the join's patches
      // directory (kubeadm names: <target>[suffix]+<patchtype>.yaml, target kubeletconfiguration).
      const patch = writtenFile(cloudConfig, workerPaths.kubeletPatch);
      expect(workerPaths.kubeletPatch).toBe(`${joinConfig.patches.directory}/kubeletconfiguration+merge.yaml`);
      expect(patch).toMatchObject({ owner: "root:root", permissions: "0644" });
      expect(pyyamlLoadAll(patch.content)).toEqual([{ serverTLSBootstrap: true }]);

      expect(cloudConfig.runcmd).toEqual([
        [
          nodePaths.prepareScript,
          "--kubernetes-version",
          "1.34.2",
          "--package-version",
          "1.34.2-1.1",
          "--channel",
          "v1.34",
          "--pause-image",
          "registry.k8s.io/pause:3.10.1",
        ],
        [
          "/bin/sh",
          "-c",
          expect.stringContaining("kubeadm join --config"),
          "worker-join",
          nodePaths.preparedSentinel,
          workerPaths.joinConfig,
        ],
      ]);
      // The token is only in the 0600 file, never on a command line cloud-init runs or logs.
      expect(JSON.stringify(cloudConfig.runcmd)).not.toContain(join.token);
    });
  });

  describe("the join step, run by /bin/sh with a fake kubeadm", () => {
    function joinStep(): string[] {
      const cloudConfig = parseCloudConfig(userDataOf(servers(run)[0]));
      return cloudConfig.runcmd[1];
    }

    function runStep(options: { prepared: boolean; kubeadmExit: number }) {
      const dir = fs.mkdtempSync(path.join(tmp, "join-"));
      const bin = path.join(dir, "bin");
      fs.mkdirSync(bin);
      const calls = path.join(dir, "kubeadm-calls");
      fs.writeFileSync(path.join(bin, "kubeadm"), `#!/bin/sh\necho "$*" >> "${calls}"\nexit ${options.kubeadmExit}\n`, {
        mode: 0o755,
      });
      const sentinel = path.join(dir, "prepared");
      if (options.prepared) fs.writeFileSync(sentinel, "1.34.2-1.1\n");
      const config = path.join(dir, "worker-join.yaml");
      fs.writeFileSync(config, "token file\n", { mode: 0o600 });
      const [shell, flag, script, name] = joinStep();
      const result = spawnSync(shell, [flag, script, name, sentinel, config], {
        encoding: "utf8",
        env: { PATH: `${bin}:/usr/bin:/bin` },
      });
      return {
        status: result.status,
        calls: fs.existsSync(calls) ? fs.readFileSync(calls, "utf8") : "",
        configKept: fs.existsSync(config),
        config,
      };
    }

    test("joins once prepared and removes the token file", () => {
      const r = runStep({ prepared: true, kubeadmExit: 0 });
      expect(r).toMatchObject({ status: 0, calls: `join --config ${r.config}\n`, configKept: false });
    });

    test("does not join an unprepared node and fails the step", () => {
      expect(runStep({ prepared: false, kubeadmExit: 0 })).toMatchObject({ calls: "", configKept: true });
      expect(runStep({ prepared: false, kubeadmExit: 0 }).status).not.toBe(0);
    });

    test("a failed join fails the step and keeps the file for a retry by hand", () => {
      expect(runStep({ prepared: true, kubeadmExit: 1 })).toMatchObject({ status: 1, configKept: true });
    });
  });
});
