/**
 * The kubeadm bootstrap graph under recording mocks: the serialized member chain, the membership
 * records on another running member, secret handling, kube-vip and the companion after the
 * chain, the Kubernetes provider and the CNI.
 *
 * What mocks cannot prove: that the commands succeed on a node (tests/nodeScripts.test.ts runs
 * the scripts against stand-ins) and how the command provider orders deletes; Pulumi deletes
 * dependents before their dependencies, so the chain asserted here orders deletes too.
 */
import { spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { kubeadmInput, memberMarker, openSshPublicKey } from "../components/lifecycle/bootstrap";
import { publicApiServer, rewriteKubeconfigServer } from "../components/lifecycle/clusterAccess";
import { parseConfig } from "../components/config";
import { firstRunningIndex } from "../components/hetzner/controlPlane";
import {
  nodeCommand,
  recordCheckOf,
  recordedDigestOf,
  recordDigest,
  shellQuote,
  workOf,
} from "../components/node/nodeScripts";
import { ProgramRun, RecordedResource } from "../tools/offline/harness";
import { loadStackConfig } from "../tools/offline/stackConfig";
import { nodeScriptsDir, useTempDir } from "./support/nodeSandbox";
import { byType, one, runStack } from "./support/program";
import { requireTool } from "./support/tools";

const Command = "command:remote:Command";
const Copy = "command:remote:CopyToRemote";

/**
 * Every resource `urn` waits for, directly or through others. A resource waits for its provider
 * as well as for its dependsOn (the engine creates the provider first), and so for whatever the
 * provider's own inputs wait for: the Kubernetes provider's kubeconfig, for one.
 */
function ancestors(run: ProgramRun, urn: string): Set<string> {
  const byUrn = new Map(run.resources.map((r) => [r.urn, r]));
  const waitsFor = (u: string) => {
    const r = byUrn.get(u);
    return r ? [...r.dependsOn, ...(r.provider ? [r.provider] : [])] : [];
  };
  const seen = new Set<string>();
  const stack = waitsFor(urn);
  while (stack.length > 0) {
    const next = stack.pop() as string;
    if (seen.has(next)) continue;
    seen.add(next);
    stack.push(...waitsFor(next));
  }
  return seen;
}

const byNodeNumber = (a: RecordedResource, b: RecordedResource) =>
  Number(/cp-(\d+)/.exec(a.name)?.[1]) - Number(/cp-(\d+)/.exec(b.name)?.[1]);

/** The membership records in node order. */
function memberships(run: ProgramRun): RecordedResource[] {
  return byType(run, Command)
    .filter((r) => r.name.endsWith("-membership"))
    .sort(byNodeNumber);
}

/** The member setup commands in node order. */
function members(run: ProgramRun): RecordedResource[] {
  return byType(run, Command)
    .filter((r) => r.name.endsWith("-member"))
    .sort((a, b) => Number(/cp-(\d+)/.exec(a.name)?.[1]) - Number(/cp-(\d+)/.exec(b.name)?.[1]));
}

const host = (r: RecordedResource) => (r.revealedInputs.connection as { host: string }).host;
const serverIp = (run: ProgramRun, node: string) =>
  (run.outputs.nodes as { name: string; publicIpv4: string }[]).find((n) => n.name === node)?.publicIpv4;

describe("the prod stack's bootstrap", () => {
  let run: ProgramRun;
  beforeAll(async () => {
    run = await runStack();
  });

  test("registers exactly these bootstrap resources", () => {
    const names = run.resources
      // Monitoring, backup, worker-token, day-2, CSR approver and cloud integration resources are in their own tests.
      .filter(
        (r) =>
          ![
            "monitoring",
            "etcd-backup",
            "worker-join",
            "upgrade",
            "certificates",
            "etcd-defrag",
            "kubelet-csr-approver",
            "cloud-controller",
            "csi",
          ].some((c) => r.parent === one(run, c).urn),
      )
      .filter(
        (r) =>
          r.type.startsWith("command:") || r.type.startsWith("kubernetes:") || r.type.startsWith("pulumi:providers"),
      )
      .map((r) => `${r.type} ${r.name}`)
      .sort();
    const perNode = (n: number) => [
      `${Command} bootstrap-cp-${n}-lib-dir`,
      `${Copy} bootstrap-cp-${n}-scripts`,
      `${Copy} bootstrap-cp-${n}-kubeadm-init`,
      `${Copy} bootstrap-cp-${n}-kubeadm-join`,
      `${Copy} bootstrap-cp-${n}-etcd-patch`,
      `${Copy} bootstrap-cp-${n}-kube-vip`,
      `${Command} bootstrap-cp-${n}-kube-vip-install`,
      `${Command} bootstrap-cp-${n}-reserved-ip-failover`,
      `${Command} bootstrap-cp-${n}-member`,
      `${Command} bootstrap-cp-${n}-membership`,
    ];
    expect(names).toEqual(
      [
        ...perNode(1),
        ...perNode(2),
        ...perNode(3),
        `${Command} access-admin-kubeconfig`,
        "pulumi:providers:kubernetes access-provider",
        "kubernetes:helm.sh/v3:Release cni-cilium",
      ].sort(),
    );
  });

  test("every node runs the same setup on itself, after cloud-init's preparation, its scripts and kubeadm files and the load balancer", () => {
    const nodes = run.outputs.nodes as { id: string }[];
    for (const n of [1, 2, 3]) {
      const member = one(run, `bootstrap-cp-${n}-member`);
      expect(host(member)).toBe(serverIp(run, `cp-${n}`));
      const peers = [1, 2, 3].filter((k) => k !== n).map((k) => `10.20.1.1${k}`);
      // No role in the program: whether it inits or joins is decided on the node (no --cluster-ca:
      // this stack never exported a cluster).
      expect(workOf(String(member.inputs.create))).toBe(
        "bash /usr/local/lib/hcloud-control-plane/node/wait-node-prepared.sh --package-version 1.34.2-1.1 </dev/null && " +
          `bash /usr/local/lib/hcloud-control-plane/node/kubeadm-member.sh --node-name prod-nbg1-cp-${n}` +
          " --init-config /etc/kubernetes/kubeadm/init.yaml --join-config-template /etc/kubernetes/kubeadm/join.yaml" +
          ` --peers ${peers.join(",")}` +
          " --endpoint-host api.prod-nbg1.k8s.example.com --endpoint-ip 10.20.1.250" +
          " --endpoint-url https://10.20.1.250:6443/readyz",
      );
      // Recorded per server: an update (a rotated key, more peers) finds the record, runs nothing.
      expect(recordedDigestOf(String(member.inputs.update))).toBe(recordDigest(`member of server ${nodes[n - 1].id}`));
      const waits = ancestors(run, member.urn);
      for (const name of [
        `bootstrap-cp-${n}-lib-dir`,
        `bootstrap-cp-${n}-kubeadm-init`,
        `bootstrap-cp-${n}-kubeadm-join`,
        `bootstrap-cp-${n}-etcd-patch`,
        `bootstrap-cp-${n}-scripts`,
        "api-lb-service",
        "api-lb-target-cp-1",
        "api-lb-target-cp-2",
        "api-lb-target-cp-3",
      ]) {
        expect([name, waits.has(one(run, name).urn)]).toEqual([name, true]);
      }
      // Once per server: a replaced server runs it again; edits of its arguments do not.
      expect(member.inputs.triggers).toEqual([nodes[n - 1].id]);
      expect(member.ignoreChanges).toEqual(["create", "stdin"]);
      expect(member.deleteBeforeReplace).toBe(true);
      // Nothing runs on the node when it goes: its membership record removes it from another node.
      expect(member.inputs.delete).toBeUndefined();
      // The key to reach a member over the private network, on stdin; no credentials in the state.
      expect(member.inputs.stdin).toBe("[secret]");
      expect(String(member.revealedInputs.stdin)).not.toMatch(/JOIN_TOKEN/);
    }
  });

  test("a stack that exported a cluster CA tells every setup, so none may initialize a second cluster", async () => {
    const hash = `sha256:${"ab".repeat(32)}`;
    const deployed = await runStack({}, { deployed: { caCertHash: hash, kubernetesVersion: "1.34.2" } });
    for (const n of [1, 2, 3])
      expect(String(one(deployed, `bootstrap-cp-${n}-member`).inputs.create)).toContain(` --cluster-ca ${hash} `);
  });

  test("restoreFrom reaches every setup (--restore-from), beside the recorded CA, so none starts an empty cluster", async () => {
    const hash = `sha256:${"ab".repeat(32)}`;
    const key = "prod-nbg1/etcd/20261203T120000Z-r4711.db.zst.age";
    const restoring = await runStack(
      { restoreFrom: key },
      { deployed: { caCertHash: hash, kubernetesVersion: "1.34.2" } },
    );
    for (const n of [1, 2, 3])
      expect(String(one(restoring, `bootstrap-cp-${n}-member`).inputs.create)).toContain(
        ` --cluster-ca ${hash} --restore-from ${key} `,
      );
    for (const n of [1, 2, 3])
      expect(String(one(run, `bootstrap-cp-${n}-member`).inputs.create)).not.toContain("--restore-from");

    // The first node is seeded before its setup, where `pulumi up` runs, once per server.
    const seed = one(restoring, "bootstrap-cp-1-restore-seed");
    expect(seed.type).toBe("command:local:Command");
    expect(
      restoring.resources
        .filter((r) => /restore-(seed|prepared)$/.test(r.name))
        .map((r) => r.name)
        .sort(),
    ).toEqual(["bootstrap-cp-1-restore-prepared", "bootstrap-cp-1-restore-seed"]);
    expect(seed.inputs.create).toBe(
      `bash scripts/ops/etcd-restore.sh seed --node prod-nbg1-cp-1=${serverIp(restoring, "cp-1")}` +
        " --peer-url https://10.20.1.11:2380 --endpoint-url https://10.20.1.250:6443/readyz" +
        " --peer 10.20.1.12 --peer 10.20.1.13 --init-config /etc/kubernetes/kubeadm/init.yaml" +
        ` --key ${key} --ssh-key-stdin`,
    );
    // Credentials and the SSH key never in the command line; the key on stdin.
    expect(seed.inputs.stdin).toBe("[secret]");
    const env = seed.revealedInputs.environment as Record<string, string>;
    expect(Object.keys(env).sort()).toEqual([
      "AWS_ACCESS_KEY_ID",
      "AWS_SECRET_ACCESS_KEY",
      "BACKUP_SIGNING_PUBLIC_KEY",
      "S3_BUCKET",
      "S3_ENDPOINT",
      "S3_PREFIX",
      "S3_REGION",
    ]);
    expect([env.S3_ENDPOINT, env.S3_BUCKET, env.S3_PREFIX, env.S3_REGION]).toEqual([
      "https://nbg1.your-objectstorage.com",
      "prod-nbg1-etcd-backups",
      "prod-nbg1",
      "nbg1",
    ]);
    expect(seed.inputs.triggers).toEqual([(restoring.outputs.nodes as { id: string }[])[0].id]);
    expect(seed.ignoreChanges).toEqual(["create", "environment", "stdin"]);
    const prepared = one(restoring, "bootstrap-cp-1-restore-prepared");
    expect(String(prepared.inputs.create)).toBe(
      "bash /usr/local/lib/hcloud-control-plane/node/wait-node-prepared.sh --package-version 1.34.2-1.1",
    );
    const seedWaits = ancestors(restoring, seed.urn);
    for (const name of ["bootstrap-cp-1-restore-prepared", "bootstrap-cp-1-kubeadm-init", "bootstrap-cp-1-scripts"])
      expect([name, seedWaits.has(one(restoring, name).urn)]).toEqual([name, true]);
    expect(ancestors(restoring, one(restoring, "bootstrap-cp-1-member").urn).has(seed.urn)).toBe(true);
    // latest: no --key, the seed takes the newest complete backup.
    const latest = await runStack({ restoreFrom: "latest" });
    expect(String(one(latest, "bootstrap-cp-1-restore-seed").inputs.create)).not.toContain("--key");
  });

  test("the restore seed verifies with the public half of backupSigningKey, as ssh-keygen -y derives it", () => {
    const keygen = requireTool("/usr/bin/ssh-keygen", "openssh-client");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "signing-key-"));
    for (const type of ["ed25519", "ecdsa", "rsa"]) {
      const file = path.join(dir, `signer-${type}`);
      const made = spawnSync(keygen, ["-q", "-t", type, "-N", "", "-C", "etcd-backup", "-f", file]);
      expect(made.status).toBe(0);
      const derived = spawnSync(keygen, ["-y", "-f", file], { encoding: "utf8" }).stdout.trim();
      expect(openSshPublicKey(fs.readFileSync(file, "utf8"))).toBe(derived.split(" ").slice(0, 2).join(" "));
    }
    expect(openSshPublicKey("[secret placeholder for backupSigningKey]")).toBeUndefined();
    expect(
      openSshPublicKey("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----"),
    ).toBeUndefined();
  });

  test("members are set up one at a time: each waits for the one before it, so no two change together", () => {
    const chain = members(run);
    expect(chain.map((r) => r.name)).toEqual([
      "bootstrap-cp-1-member",
      "bootstrap-cp-2-member",
      "bootstrap-cp-3-member",
    ]);
    chain.forEach((member, k) => {
      const waits = ancestors(run, member.urn);
      for (const earlier of chain.slice(0, k))
        expect([member.name, waits.has(earlier.urn)]).toEqual([member.name, true]);
      if (k > 0) expect(member.dependsOn).toContain(chain[k - 1].urn);
    });
  });

  test("the old init and join commands are the same resources under their new names (aliases)", () => {
    // Dropping them would run their stored delete (leave-cluster.sh) on a live member. The
    // aliases as the SDK sends them to the engine (RegisterResourceRequest.aliases).
    for (const n of [1, 2, 3]) {
      expect(one(run, `bootstrap-cp-${n}-member`).aliases).toEqual([
        `bootstrap-cp-${n}-init`,
        `bootstrap-cp-${n}-join`,
      ]);
    }
  });

  test("each membership record runs on another running member, after every setup, one after another", () => {
    const records = memberships(run);
    expect(records.map((r) => r.name)).toEqual([
      "bootstrap-cp-1-membership",
      "bootstrap-cp-2-membership",
      "bootstrap-cp-3-membership",
    ]);
    const nodes = run.outputs.nodes as { id: string }[];
    const lastMember = members(run).at(-1) as RecordedResource;
    // The first running node other than the record's own: cp-2 for cp-1, cp-1 for the others.
    const peerOf = { 1: 2, 2: 1, 3: 1 } as const;
    records.forEach((record, k) => {
      const n = (k + 1) as 1 | 2 | 3;
      expect(host(record)).toBe(serverIp(run, `cp-${peerOf[n]}`));
      const args = `--node-name prod-nbg1-cp-${n} --peer-url https://10.20.1.1${n}:2380 --this-node prod-nbg1-cp-${peerOf[n]}`;
      expect(record.inputs.create).toBe(`bash /usr/local/lib/hcloud-control-plane/node/membership.sh check ${args}`);
      expect(record.inputs.delete).toBe(`bash /usr/local/lib/hcloud-control-plane/node/membership.sh remove ${args}`);
      expect(record.inputs.triggers).toEqual([nodes[n - 1].id]);
      expect(record.deleteBeforeReplace).toBe(true);
      expect(record.dependsOn).toContain(k === 0 ? lastMember.urn : records[k - 1].urn);
    });
  });

  test("a stopped node is passed over: records, the kubeconfig, the worker token and the preflight run elsewhere", async () => {
    const down = await runStack({}, { serverStatus: { "control-plane-cp-1": "off" } });
    expect(host(one(down, "bootstrap-cp-2-membership"))).toBe(serverIp(down, "cp-3"));
    expect(one(down, "bootstrap-cp-2-membership").inputs.create).toContain("--this-node prod-nbg1-cp-3");
    expect(host(one(down, "bootstrap-cp-3-membership"))).toBe(serverIp(down, "cp-2"));
    for (const name of ["access-admin-kubeconfig", "worker-join-token", "upgrade-preflight"])
      expect([name, host(one(down, name))]).toEqual([name, serverIp(down, "cp-2")]);
    // Each node's own steps stay on their node.
    expect(host(one(down, "bootstrap-cp-1-member"))).toBe(serverIp(down, "cp-1"));
  });

  test("a server Hetzner no longer lists (deleted outside Pulumi) is passed over; the program still runs", async () => {
    const gone = await runStack({}, { serverStatus: { "control-plane-cp-1": "absent" } });
    for (const name of ["access-admin-kubeconfig", "worker-join-token", "upgrade-preflight"])
      expect([name, host(one(gone, name))]).toEqual([name, serverIp(gone, "cp-2")]);
    expect(host(one(gone, "bootstrap-cp-3-membership"))).toBe(serverIp(gone, "cp-2"));
  });

  test("with no server running, a step that needs a member stops the program naming every status", () => {
    const names = ["prod-nbg1-cp-1", "prod-nbg1-cp-2", "prod-nbg1-cp-3"];
    expect(firstRunningIndex(names, ["off", "running", "off"])).toBe(1);
    expect(firstRunningIndex(names, ["running", "running", "off"], 0)).toBe(1);
    // The only running node is the one excluded (a record for cp-2 has nowhere else to run).
    expect(() => firstRunningIndex(names, ["off", "running", "off"], 1)).toThrow(
      "no control-plane server is running (prod-nbg1-cp-1: off, prod-nbg1-cp-3: off), prod-nbg1-cp-2 aside: a step that needs a cluster member has nowhere to run; start one (hcloud server poweron NAME)",
    );
    expect(() => firstRunningIndex(names, ["off", "stopping", "off"])).toThrow(
      "no control-plane server is running (prod-nbg1-cp-1: off, prod-nbg1-cp-2: stopping, prod-nbg1-cp-3: off): ",
    );
  });

  test("every command that carries or prints a secret logs nothing and keeps its output secret", () => {
    const secretBearing = [
      "bootstrap-cp-1-member",
      "bootstrap-cp-2-member",
      "bootstrap-cp-3-member",
      "access-admin-kubeconfig",
      "bootstrap-cp-1-reserved-ip-failover",
      "bootstrap-cp-2-reserved-ip-failover",
      "bootstrap-cp-3-reserved-ip-failover",
    ];
    for (const name of secretBearing) {
      const r = one(run, name);
      expect([name, r.inputs.logging]).toEqual([name, "none"]);
      expect([name, r.additionalSecretOutputs]).toEqual([name, expect.arrayContaining(["stdout", "stderr"])]);
    }
    for (const r of byType(run, Command)) {
      // stdin carries the SSH key or the token: always a secret.
      if (r.inputs.stdin !== undefined) expect([r.name, r.inputs.stdin]).toEqual([r.name, "[secret]"]);
      // The SSH connection (private key inside) is a secret on every command.
      expect([r.name, r.inputs.connection]).toEqual([r.name, "[secret]"]);
    }
    expect(run.outputs.kubeconfig).toBe("[secret]");
  });

  test("the companion receives the Hetzner token on stdin and installs with the Floating IP's id and address", () => {
    for (const n of [1, 2, 3]) {
      const failover = one(run, `bootstrap-cp-${n}-reserved-ip-failover`);
      expect(failover.revealedInputs.stdin).toBe("[secret placeholder for hcloud:token: not decryptable offline]\n");
      expect(workOf(String(failover.inputs.create))).toMatch(
        new RegExp(
          `^bash /usr/local/lib/hcloud-control-plane/node/install-reserved-ip-failover.sh --floating-ip-id ${run.outputs.reservedIpId} --address ${String(run.outputs.reservedIp).replace(/\./g, "\\.")} # scripts [0-9a-f]{16}$`,
        ),
      );
      expect(failover.inputs.delete).toBe(
        "bash /usr/local/lib/hcloud-control-plane/node/install-reserved-ip-failover.sh --disable",
      );
      expect(failover.dependsOn).toContain(one(run, `bootstrap-cp-${n}-kube-vip-install`).urn);
    }
  });

  test("the companion's record covers its token: a new token installs again, the token is in no command text", async () => {
    const withToken = async (token: string) =>
      one(await runStack({ "hcloud:token": token }), "bootstrap-cp-1-reserved-ip-failover").revealedInputs;
    const [a, again, b] = [
      await withToken("A".repeat(64)),
      await withToken("A".repeat(64)),
      await withToken("B".repeat(64)),
    ];
    expect(a.stdin).toBe(`${"A".repeat(64)}\n`);
    expect(recordCheckOf(String(again.update))).toBe(recordCheckOf(String(a.update)));
    expect(recordCheckOf(String(b.update))).not.toBe(recordCheckOf(String(a.update)));
    expect(workOf(String(b.create))).toBe(workOf(String(a.create)));
    for (const text of [a.create, a.update, b.create, b.update]) expect(String(text)).not.toMatch(/AAAA|BBBB/);
    // Plain, not secret: a preview shows what the command runs.
    const recorded = one(run, "bootstrap-cp-1-reserved-ip-failover").inputs;
    expect(recordCheckOf(String(recorded.update))).toMatch(/^[0-9a-f]{64}$/);
    expect(String(recorded.create)).toContain("install-reserved-ip-failover.sh");
  });

  test("kube-vip goes to every node after every setup, holding the reserved IP", () => {
    const last = members(run).at(-1) as RecordedResource;
    for (const n of [1, 2, 3]) {
      const vip = one(run, `bootstrap-cp-${n}-kube-vip`);
      // The staged copy changes nothing that runs: it waits for its server only.
      expect([...vip.dependsOn].sort()).toEqual(
        [one(run, `control-plane-cp-${n}`).urn, one(run, "reserved-ip-fip").urn].sort(),
      );
      // Staged outside the kubelet's manifest directory: copying it restarts nothing.
      expect(vip.inputs.remotePath).toBe("/etc/kubernetes/kubeadm/kube-vip.yaml");
      const text = (vip.inputs.source as { asset: { text: string } }).asset.text;
      expect(text).toContain(`value: ${run.outputs.reservedIp}`);
      expect(text).toContain("/etc/kubernetes/admin.conf");
      expect(text).not.toContain("super-admin.conf");
      const install = one(run, `bootstrap-cp-${n}-kube-vip-install`);
      // The manifest's hash is in the command: a changed manifest re-runs the install (an update).
      expect(workOf(String(install.inputs.create))).toBe(
        `bash /usr/local/lib/hcloud-control-plane/node/install-kube-vip.sh --manifest /etc/kubernetes/kubeadm/kube-vip.yaml --node-name prod-nbg1-cp-${n} --lease plndr-cp-lock # manifest ${crypto.createHash("sha256").update(text).digest("hex").slice(0, 16)}`,
      );
      expect(install.dependsOn).toContain(vip.urn);
      expect(install.dependsOn).toContain(last.urn);
    }
  });

  test("on a running cluster the upgrade and certificate chains wait for the whole kube-vip chain (all three restart kube-vip)", async () => {
    const renewing = await runStack(
      { certificateRenewal: "2027-05-01" },
      { deployed: { caCertHash: `sha256:${"ab".repeat(32)}`, kubernetesVersion: "1.34.2" } },
    );
    const installs = [1, 2, 3].map((n) => one(renewing, `bootstrap-cp-${n}-kube-vip-install`).urn);
    const restarters = renewing.resources.filter((r) => /^(upgrade-cp-\d+|certificates-cp-\d+-renew)$/.test(r.name));
    expect(restarters.map((r) => r.name).sort()).toEqual([
      "certificates-cp-1-renew",
      "certificates-cp-2-renew",
      "certificates-cp-3-renew",
      "upgrade-cp-1",
      "upgrade-cp-2",
      "upgrade-cp-3",
    ]);
    for (const r of restarters) {
      const waits = ancestors(renewing, r.urn);
      for (const install of installs) expect([r.name, waits.has(install)]).toEqual([r.name, true]);
    }
    // And what reads the certificates waits for the last renewal.
    expect(one(renewing, "access-admin-kubeconfig").dependsOn).toContain(one(renewing, "certificates-cp-3-renew").urn);
  });

  test("on a new cluster each upgrade step waits for its own node's kube-vip and companion, the renewal for all of them", async () => {
    const renewing = await runStack({ certificateRenewal: "2027-05-01" });
    for (const n of [1, 2, 3]) {
      const step = one(renewing, `upgrade-cp-${n}`);
      const waits = ancestors(renewing, step.urn);
      // Its own node's and the earlier nodes' kube-vip: never two chains on one node at once.
      for (const k of [1, 2, 3]) {
        for (const name of [`bootstrap-cp-${k}-kube-vip-install`, `bootstrap-cp-${k}-reserved-ip-failover`]) {
          expect([step.name, name, waits.has(one(renewing, name).urn)]).toEqual([step.name, name, k <= n]);
        }
      }
      const renew = ancestors(renewing, one(renewing, `certificates-cp-${n}-renew`).urn);
      expect(renew.has(one(renewing, "upgrade-cp-3").urn)).toBe(true);
    }
    // The preflight only needs every member: it reads, and restarts nothing.
    const preflight = one(renewing, "upgrade-preflight");
    expect(preflight.dependsOn).toContain((members(renewing).at(-1) as RecordedResource).urn);
    expect(ancestors(renewing, preflight.urn).has(one(renewing, "bootstrap-cp-1-kube-vip-install").urn)).toBe(false);
  });

  test("kube-vip is installed one node at a time: each node after the previous node's kube-vip, companions one after another", () => {
    const installs = [1, 2, 3].map((n) => one(run, `bootstrap-cp-${n}-kube-vip-install`));
    const companions = [1, 2, 3].map((n) => one(run, `bootstrap-cp-${n}-reserved-ip-failover`));
    expect(installs[0].dependsOn).toContain((members(run).at(-1) as RecordedResource).urn);
    for (const k of [1, 2]) {
      expect(installs[k].dependsOn).toContain(installs[k - 1].urn);
      expect(companions[k].dependsOn).toContain(companions[k - 1].urn);
      expect(companions[k].dependsOn).toContain(installs[k].urn);
      // Never the other way round: no node's kube-vip waits for a later node's.
      expect(ancestors(run, installs[k - 1].urn).has(installs[k].urn)).toBe(false);
    }
  });

  test("on a running cluster each node's whole chain comes before the next node's: setup, kube-vip, companion", async () => {
    const running = await runStack(
      {},
      { deployed: { caCertHash: `sha256:${"ab".repeat(32)}`, kubernetesVersion: "1.34.2" } },
    );
    const chain = (n: number) =>
      ["member", "kube-vip-install", "reserved-ip-failover"].map((step) => one(running, `bootstrap-cp-${n}-${step}`));
    for (const n of [1, 2, 3]) {
      const [member, install, companion] = chain(n);
      expect(install.dependsOn).toContain(member.urn);
      expect(companion.dependsOn).toContain(install.urn);
      if (n > 1) {
        const previousCompanion = chain(n - 1)[2];
        expect(member.dependsOn).toContain(previousCompanion.urn);
        expect(install.dependsOn).toContain(previousCompanion.urn);
      }
    }
    // Never the other way round: no node's step waits for a later node's.
    for (const n of [1, 2])
      for (const later of chain(n + 1))
        for (const step of chain(n)) expect(ancestors(running, step.urn).has(later.urn)).toBe(false);
    // The records run on other members, so after the last setup: each of them is set up.
    const records = memberships(running);
    expect(records[0].dependsOn).toContain(chain(3)[0].urn);
    expect(records[1].dependsOn).toContain(records[0].urn);
  });

  test("every node gets the scripts, waits for cloud-init, and receives its own kubeadm files, both of them", () => {
    for (const n of [1, 2, 3]) {
      const scripts = one(run, `bootstrap-cp-${n}-scripts`);
      expect(scripts.inputs.source).toEqual({ archive: { path: "./scripts/node" } });
      expect(scripts.inputs.remotePath).toBe("/usr/local/lib/hcloud-control-plane");
      // The copy creates the directory when the lib-dir command has not yet (pulumi-command 1.2
      // CopyToRemote: MkdirAll); both wait for the server only, the setup for both.
      const server = one(run, `control-plane-cp-${n}`).urn;
      expect(scripts.dependsOn).toEqual([server]);
      expect(one(run, `bootstrap-cp-${n}-lib-dir`).dependsOn).toEqual([server]);
      expect(String((scripts.inputs.triggers as string[])[1])).toMatch(/^[0-9a-f]{64}$/);
      expect(run.resources.some((r) => r.name === `bootstrap-cp-${n}-prepared`)).toBe(false);
      for (const [file, path] of [
        ["init", "/etc/kubernetes/kubeadm/init.yaml"],
        ["join", "/etc/kubernetes/kubeadm/join.yaml"],
      ]) {
        const config = one(run, `bootstrap-cp-${n}-kubeadm-${file}`);
        const text = (config.inputs.source as { asset: { text: string } }).asset.text;
        expect(config.inputs.remotePath).toBe(path);
        expect(text).toContain(`advertiseAddress: 10.20.1.1${n}`);
        expect(text).toContain(`kind: ${file === "init" ? "InitConfiguration" : "JoinConfiguration"}`);
        // The file's hash is a trigger: a changed file is copied again.
        expect(config.inputs.triggers).toEqual([
          (run.outputs.nodes as { id: string }[])[n - 1].id,
          crypto.createHash("sha256").update(text).digest("hex"),
        ]);
        expect(text).toContain(`name: prod-nbg1-cp-${n}`);
      }
    }
  });

  test("the Kubernetes provider is built from the admin kubeconfig read on a running member, with a stable identifier", () => {
    const fetch = one(run, "access-admin-kubeconfig");
    expect(host(fetch)).toBe(serverIp(run, "cp-1"));
    // On a new cluster right after the last setup: every node runs the configured version, and
    // the day-2 chains (dayTwo.test.ts) and kube-vip run beside it.
    expect(fetch.dependsOn).toContain((members(run).at(-1) as RecordedResource).urn);
    const before = ancestors(run, fetch.urn);
    for (const side of ["upgrade-preflight", "bootstrap-cp-1-kube-vip-install", "bootstrap-cp-1-membership"]) {
      expect([side, before.has(one(run, side).urn)]).toEqual([side, false]);
    }
    expect(fetch.inputs.create).toBe('cat /etc/kubernetes/admin.conf # kubernetes 1.34.2, certificate renewal ""');
    const provider = one(run, "access-provider");
    expect(provider.dependsOn).toContain(fetch.urn);
    expect(provider.inputs).toEqual({ kubeconfig: "[secret]", clusterIdentifier: "prod-nbg1" });
    const kubeconfig = String(provider.revealedInputs.kubeconfig);
    expect(kubeconfig).toContain("server: https://api.prod-nbg1.k8s.example.com:6443");
    expect(kubeconfig).not.toContain("control-plane-endpoint.invalid");
  });

  test("the CNI is a pinned Helm release through the cluster's provider, installed once every member has joined", () => {
    const cni = one(run, "cni-cilium");
    const provider = one(run, "access-provider");
    expect(cni.provider).toBe(provider.urn);
    expect(cni.inputs).toMatchObject({ chart: "cilium", version: "1.18.4", namespace: "kube-system" });
    expect(cni.inputs.values).toMatchObject({
      ipam: { mode: "kubernetes" },
      routingMode: "tunnel",
      k8sServiceHost: "api.prod-nbg1.k8s.example.com",
    });
    // Through its provider: the admin kubeconfig is read after the member chain, so the CNI
    // waits for every join.
    const waits = ancestors(run, cni.urn);
    expect(waits).toContain(provider.urn);
    expect(waits).toContain(one(run, "access-admin-kubeconfig").urn);
    const chain = members(run);
    expect(chain).toHaveLength(3);
    for (const member of chain) expect([member.name, waits.has(member.urn)]).toEqual([member.name, true]);
  });
});

describe("variants", () => {
  test.each([1, 3, 5, 7])("%i nodes: n setups and n records in one chain, n kube-vip copies", async (n) => {
    const run = await runStack({ controlPlaneCount: n, nodeIps: [] });
    const chain = members(run);
    expect(chain.map((r) => r.name)).toEqual(Array.from({ length: n }, (_, i) => `bootstrap-cp-${i + 1}-member`));
    for (let k = 1; k < n; k++) expect(chain[k].dependsOn).toContain(chain[k - 1].urn);
    // A single node has no other member to record it on (and nothing could remove the last one).
    const records = memberships(run);
    expect(records).toHaveLength(n === 1 ? 0 : n);
    for (let k = 1; k < records.length; k++) expect(records[k].dependsOn).toContain(records[k - 1].urn);
    if (n === 1) expect(String(chain[0].inputs.create)).toContain(" --peers '' ");
    expect(byType(run, Copy).filter((r) => r.name.endsWith("-kube-vip"))).toHaveLength(n);
    expect(byType(run, Command).filter((r) => r.name.endsWith("-kube-vip-install"))).toHaveLength(n);
  });

  test("with failover off there is no companion, and the nodes need no token", async () => {
    const run = await runStack({ reservedIpFailover: false });
    expect(run.resources.filter((r) => r.name.endsWith("reserved-ip-failover"))).toEqual([]);
    // The cloud controller and the CSI driver still need one (cloudIntegration.test.ts): their own.
    const overrides = { reservedIpFailover: false, hcloudCloudToken: "T".repeat(64) };
    const config = loadStackConfig("prod", { overrides, externalSecrets: [] });
    expect(() => parseConfig(config)).not.toThrow();
    const withoutAny = loadStackConfig("prod", { overrides: { reservedIpFailover: false }, externalSecrets: [] });
    expect(() => parseConfig(withoutAny)).toThrow(
      'hcloud:token is not set, and hcloudCloudToken is "": the cloud controller and the CSI driver need a Hetzner token',
    );
  });

  test("with failover on and no hcloud:token the config is refused before anything is created", () => {
    const config = loadStackConfig("prod", { externalSecrets: [] });
    expect(() => parseConfig(config)).toThrow(
      "hcloud:token is not set, and reservedIpFailover needs it on the nodes: `pulumi config set --secret hcloud:token`, or set reservedIpFailover to false",
    );
  });

  test("calico: the tigera-operator chart with the pod CIDR as a VXLAN pool", async () => {
    const run = await runStack({ cni: "calico" });
    const release = one(run, "cni-tigera-operator");
    expect(release.inputs).toMatchObject({
      chart: "tigera-operator",
      version: "v3.30.4",
      namespace: "tigera-operator",
    });
    expect(release.inputs.values).toEqual({
      installation: {
        calicoNetwork: {
          bgp: "Disabled",
          ipPools: [{ cidr: "10.244.0.0/16", encapsulation: "VXLAN", natOutgoing: "Enabled", blockSize: 26 }],
        },
      },
    });
  });

  test("preview: the whole bootstrap registers while every command's output is unknown", async () => {
    const run = await runStack({}, { preview: true });
    expect(run.resources).toHaveLength(96);
    // Before the servers exist, where a record runs is unknown too.
    expect(one(run, "bootstrap-cp-2-membership").revealedInputs.connection).toBe("[unknown]");
    expect(one(run, "access-provider").revealedInputs.kubeconfig).toBe("[unknown]");
  });
});

describe("the command lines the program renders parse in their scripts", () => {
  const tmp = useTempDir("bootstrap-commands-");
  /** Runs a rendered command with the repository's scripts, under a temporary root, stdin empty. */
  const runRendered = (command: string, input = "") =>
    spawnSync(
      "bash",
      ["--norc", "-c", command.replaceAll("/usr/local/lib/hcloud-control-plane/node/", `${nodeScriptsDir}/`)],
      {
        input,
        encoding: "utf8",
        timeout: 30_000,
        env: { PATH: "/usr/bin:/bin", ROOT: fs.mkdtempSync(path.join(tmp(), "root-")), LC_ALL: "C" },
      },
    );

  test.each([1, 3])(
    "%i node(s): every setup waits for its node's preparation, then parses and stops at the missing key",
    async (n) => {
      const hash = `sha256:${"ab".repeat(32)}`;
      const run = await runStack({ controlPlaneCount: n, nodeIps: [] }, { deployed: { caCertHash: hash } });
      for (const member of members(run)) {
        const [wait, setup, ...rest] = workOf(String(member.inputs.create)).split(" </dev/null && ");
        expect(rest).toEqual([]);
        // wait-node-prepared.sh's own flags and behaviour are tested in nodeScripts.test.ts.
        expect(wait).toBe(
          "bash /usr/local/lib/hcloud-control-plane/node/wait-node-prepared.sh --package-version 1.34.2-1.1",
        );
        const result = runRendered(setup);
        expect({ name: member.name, status: result.status, stderr: result.stderr.trim() }).toEqual({
          name: member.name,
          status: 1,
          stderr: "kubeadm-member: error: stdin is empty; expected the SSH private key",
        });
      }
    },
  );

  test("the wait before a setup leaves stdin to the setup: the key reaches kubeadm-member.sh", async () => {
    const run = await runStack();
    const [, setup] = workOf(String(one(run, "bootstrap-cp-1-member").inputs.create)).split(" </dev/null && ");
    // `cat` in the wait's place would swallow stdin if the command did not close it for the wait.
    const result = runRendered(`cat </dev/null && ${setup}`, "not a key\n");
    expect({ status: result.status, stderr: result.stderr.trim() }).toEqual({
      status: 1,
      stderr:
        "kubeadm-member: error: stdin is not an SSH private key in OpenSSH or PEM format (expected one -----BEGIN ... PRIVATE KEY----- block)",
    });
  });

  test("a member's update runs no setup: it finds the record, or adopts the marker of a node set up before records", async () => {
    const run = await runStack();
    const member = one(run, "bootstrap-cp-2-member");
    const root = fs.mkdtempSync(path.join(tmp(), "update-"));
    // The marker path is the scripts' own (lib.sh, which member.sh's functions use).
    expect(fs.readFileSync(path.join(nodeScriptsDir, "lib.sh"), "utf8")).toContain(
      `readonly MEMBER_MARKER="${memberMarker}"`,
    );
    const under = (text: string) => text.replaceAll("/var/lib/kubernetes-node/", `${root}/`);
    const update = () => runRendered(under(String(member.inputs.update)));
    const record = path.join(root, "commands", "bootstrap-cp-2-member");
    // No marker, no record: no member here; the message names the node and the runbook.
    const none = update();
    expect({ status: none.status, stderr: none.stderr.trim() }).toEqual({
      status: 1,
      stderr: `prod-nbg1-cp-2: no ${root}/member, so this node is no member: replace its server (docs/runbooks/member-setup-failed.md)`,
    });
    expect(fs.existsSync(record)).toBe(false);
    // A node set up before records: the marker is adopted and recorded.
    fs.writeFileSync(path.join(root, "member"), "role=join\n");
    expect(update().status).toBe(0);
    expect(fs.readFileSync(record, "utf8").trim()).toBe(recordedDigestOf(String(member.inputs.create)));
    // Recorded: nothing runs, not even the marker check.
    fs.rmSync(path.join(root, "member"));
    const again = update();
    expect({ status: again.status, stdout: again.stdout }).toEqual({
      status: 0,
      stdout: expect.stringContaining("bootstrap-cp-2-member: recorded done on this node"),
    });
  });

  test("every membership check and removal parses (it stops where the cluster is needed)", async () => {
    const run = await runStack();
    for (const record of memberships(run)) {
      for (const command of [record.inputs.create, record.inputs.delete]) {
        const result = runRendered(String(command));
        expect({ name: record.name, status: result.status }).toEqual({ name: record.name, status: 1 });
        expect(result.stderr).not.toMatch(/usage error/);
      }
    }
  });
});

describe("pure pieces", () => {
  const cfg = parseConfig(loadStackConfig("prod"));

  test("admin.conf's server is rewritten to the public address, nothing else changes", () => {
    const original = [
      "apiVersion: v1",
      "clusters:",
      "  - cluster:",
      "      certificate-authority-data: Q0E=",
      "      server: https://10.20.1.250:6443",
      "    name: kubernetes",
      "kind: Config",
      "",
    ].join("\n");
    expect(rewriteKubeconfigServer(original, "https://198.51.100.7:6443")).toBe(
      original.replace("https://10.20.1.250:6443", "https://198.51.100.7:6443"),
    );
    expect(() => rewriteKubeconfigServer("apiVersion: v1\n", "https://x:6443")).toThrow(
      "the admin kubeconfig has no clusters",
    );
  });

  test("Pulumi reaches the API by DNS name, else the load balancer, else the reserved IP", () => {
    expect(publicApiServer(cfg, "198.51.100.7", "192.0.2.9")).toBe("https://api.prod-nbg1.k8s.example.com:6443");
    const noDns = { ...cfg, apiDnsName: undefined };
    expect(publicApiServer(noDns, "198.51.100.7", "192.0.2.9")).toBe("https://198.51.100.7:6443");
    const privateLb = { ...noDns, loadBalancer: { ...cfg.loadBalancer, publicInterface: false } };
    expect(publicApiServer(privateLb, "198.51.100.7", "192.0.2.9")).toBe("https://192.0.2.9:6443");
  });

  test("through the reserved IP, the kubeconfig is read only once every node holds it (companion or kube-vip)", async () => {
    const fetchDeps = (run: ProgramRun) => {
      const fetch = one(run, "access-admin-kubeconfig");
      return run.resources.filter((r) => fetch.dependsOn.includes(r.urn)).map((r) => r.name);
    };
    const viaReservedIp = await runStack({ apiDnsName: "", loadBalancerPublicInterface: false });
    expect(fetchDeps(viaReservedIp)).toEqual(
      expect.arrayContaining(["bootstrap-cp-1-reserved-ip-failover", "bootstrap-cp-3-reserved-ip-failover"]),
    );
    const withoutCompanion = await runStack({
      apiDnsName: "",
      loadBalancerPublicInterface: false,
      reservedIpFailover: false,
    });
    expect(fetchDeps(withoutCompanion)).toEqual(expect.arrayContaining(["bootstrap-cp-2-kube-vip-install"]));
    // By DNS name (prod) or the load balancer's address, the reserved IP is not on the way.
    const prod = await runStack();
    expect(fetchDeps(prod).filter((n) => /kube-vip|failover/.test(n))).toEqual([]);
  });

  test("certificate SANs hold every address clients use", () => {
    const input = kubeadmInput(cfg, cfg.nodes[1], {
      lbIpv4: "198.51.100.7",
      lbIpv6: "2001:db8::1",
      reservedIp: "192.0.2.9",
    });
    expect(input.certSans).toEqual([
      "10.20.1.250",
      "192.0.2.9",
      "198.51.100.7",
      "2001:db8::1",
      "api.prod-nbg1.k8s.example.com",
    ]);
    expect(input.controlPlaneEndpoint).toBe("api.prod-nbg1.k8s.example.com");
    expect(input.nodeHostname).toBe("prod-nbg1-cp-2");
  });

  test("command lines quote every argument and name only scripts that exist", () => {
    expect(shellQuote("it's")).toBe(`'it'"'"'s'`);
    expect(shellQuote("10.20.1.250")).toBe("10.20.1.250");
    expect(nodeCommand("kubeadm-init.sh", ["--config", "/a b"])).toBe(
      "bash /usr/local/lib/hcloud-control-plane/node/kubeadm-init.sh --config '/a b'",
    );
    expect(() => nodeCommand("no-such.sh")).toThrow("scripts/node/no-such.sh does not exist");
  });
});
