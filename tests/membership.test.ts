/**
 * scripts/node/membership.sh: `check` and `remove` of a control-plane node's etcd member from
 * another (surviving) member, by peer URL.
 *
 * Part 1 runs it in a sandbox (tests/support/nodeSandbox.ts) with a fake kubectl whose etcdctl
 * answers as etcdctl 3.4 does: argument handling, the script contract, the order of the calls
 * and every message. Part 2 runs it against a REAL 3-member etcd on loopback
 * (tests/support/etcdCluster.ts): its fake kubectl runs the real /usr/bin/etcdctl for
 * `kubectl exec etcd-S -- etcdctl ...`, so every member add, promote and remove is real.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { EtcdCluster, etcdctlBinary, waitUntil } from "./support/etcdCluster";
import { addEtcdPod, etcdPodEnv, etcdPodExecArm } from "./support/etcdPodKubectl";
import {
  Sandbox,
  at,
  calls,
  etcdHealthCall,
  etcdctlCall,
  expectScriptContract,
  expectShellcheckClean,
  expectStatus,
  kubectlCall,
  kubectlGateArms,
  makeSandbox as makeNodeSandbox,
  readyzCall,
  resetCalls,
  runNodeScript,
  useTempDir,
} from "./support/nodeSandbox";
import { requireTool } from "./support/tools";

const script = "membership.sh";
const adminConf = "/etc/kubernetes/admin.conf";
const kubeconfig = `$ROOT${adminConf}`;
const tmp = useTempDir("membership-test-");

/**
 * Arms of a fake kubectl's `case "$*" in` for the Node objects, kept as files
 * $FAKE_CAPTURE/nodes/<name> holding the status of the node's Ready condition (True, False,
 * Unknown), answering as kubectl does:
 * - `get node NAME --ignore-not-found -o jsonpath=...`: the template's text with the values; no
 *   Node: nothing and exit 0 (k8s.io/kubectl pkg/cmd/get/get.go: with IgnoreNotFound a NotFound
 *   error returns nil before anything is printed).
 * - `drain NAME ...`: "node/NAME cordoned", "node/NAME drained"; no Node: `Error from server
 *   (NotFound): nodes "NAME" not found`, exit 1 (the drain command gets the node first, pkg/cmd/
 *   drain/drain.go; the message of pkg/cmd/util/helpers.go StandardErrorMessage). FAKE_FAIL=drain:
 *   an eviction a PodDisruptionBudget refuses, until --timeout; the node stays cordoned.
 * - `delete node NAME --ignore-not-found`: `node "NAME" deleted`; no Node: nothing, exit 0
 *   (pkg/cmd/delete/delete_flags.go: "Treat resource not found as a successful delete").
 *   FAKE_FAIL=delete-node: the API server refuses the connection.
 */
const kubectlNodeArms = `
  *" get node "*" --ignore-not-found -o jsonpath="*)
    if [[ -f "$FAKE_CAPTURE/nodes/$5" ]]; then printf '%s %s' "$5" "$(<"$FAKE_CAPTURE/nodes/$5")"; fi
    ;;
  *" drain "*" --ignore-daemonsets --delete-emptydir-data --timeout="*)
    if [[ ! -f "$FAKE_CAPTURE/nodes/$4" ]]; then printf 'Error from server (NotFound): nodes "%s" not found\\n' "$4" >&2; exit 1; fi
    echo "node/$4 cordoned"
    if fails drain; then
      echo "error when evicting pods/web-1 -n default (will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget." >&2
      echo "error: unable to drain node $4 due to error: global timeout reached: \${*: -1}, continuing command..." >&2
      exit 1
    fi
    echo "node/$4 drained"
    ;;
  *" delete node "*" --ignore-not-found")
    if fails delete-node; then echo "The connection to the server 10.20.0.2:6443 was refused - did you specify the right host or port?" >&2; exit 1; fi
    if [[ -f "$FAKE_CAPTURE/nodes/$5" ]]; then rm -f "$FAKE_CAPTURE/nodes/$5"; printf 'node "%s" deleted\\n' "$5"; fi
    ;;`;

/** Nodes of the fake kubectl: name -> Ready status. */
function setNodes(sandbox: Sandbox, nodes: Record<string, string>): void {
  const dir = path.join(sandbox.capture, "nodes");
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, ready] of Object.entries(nodes)) fs.writeFileSync(path.join(dir, name), ready);
}
const nodeNames = (sandbox: Sandbox): string[] => fs.readdirSync(path.join(sandbox.capture, "nodes")).sort();

const realTools = ["bash", "cat", "chmod", "dirname", "grep", "install", "rm", "sleep", "timeout"];

function newSandbox(name: string, kubectl: string, env: Record<string, string> = {}): Sandbox {
  const sandbox = makeNodeSandbox(tmp(), name, {
    fakes: { kubectl },
    realTools,
    env,
    files: { [adminConf.slice(1)]: "admin kubeconfig\n" },
  });
  setNodes(sandbox, {});
  return sandbox;
}

const run = (sandbox: Sandbox, args: string[], env: Record<string, string> = {}, timeoutMs = 15_000) =>
  runNodeScript(sandbox, script, args, { env, timeoutMs });

const args = (action: string, node: string, peerUrl: string, thisNode: string, extra: string[] = []) => [
  action,
  "--node-name",
  node,
  "--peer-url",
  peerUrl,
  "--this-node",
  thisNode,
  ...extra,
];

// ---------------------------------------------------------------------------------------------
// Part 1: the sandbox, etcd faked.

/**
 * A fake kubectl for `kubectl exec etcd-S -- etcdctl ...` answering as etcdctl 3.4 does:
 * - `member list -w simple`: $FAKE_MEMBERS without the removed ids, one member a line, fields
 *   joined by ", " (etcd-io/etcd etcdctl/ctlv3/command/printer_simple.go MemberList; an unstarted
 *   member has an empty name and no client URLs, printer.go makeMemberListTable).
 * - `endpoint health` on --endpoints: "<url> is healthy: successfully committed proposal: took
 *   = ..." on stdout; a URL listed in $FAKE_UNHEALTHY: "<url> is unhealthy: failed to commit
 *   proposal: context deadline exceeded" and "Error: unhealthy cluster" on stderr, exit 1
 *   (etcdctl/ctlv3/command/ep_command.go epHealthCommandFunc).
 * - `member remove ID`: "Member ID removed from cluster <cluster id>" (member_command.go).
 * kubectl exec passes the command's exit status on, and says "command terminated with exit code
 * N" (k8s.io/kubectl pkg/cmd/util/helpers.go checkErr: a utilexec.ExitError exits with its
 * ExitStatus).
 */
const fakeEtcdKubectl = `
endpoints() { local a=("$@") i; for ((i = 0; i < \${#a[@]}; i++)); do [[ "\${a[i]}" != --endpoints ]] || echo "\${a[i + 1]}"; done; }
case "$*" in
${kubectlGateArms()}
  *" exec etcd-"*" member list -w simple")
    if hangs member-list; then exec sleep 30; fi
    if fails member-list; then echo "Error: context deadline exceeded" >&2; echo "command terminated with exit code 1" >&2; exit 1; fi
    while IFS= read -r line; do
      [[ -n "$line" ]] || continue
      if ! grep -qx "\${line%%,*}" "$FAKE_CAPTURE/removed" 2>/dev/null; then printf '%s\\n' "$line"; fi
    done <<<"$FAKE_MEMBERS"
    ;;
  *" exec etcd-"*" endpoint health")
    url="$(endpoints "$@")"
    if [[ ",\${FAKE_UNHEALTHY:-}," == *",$url,"* ]]; then
      echo "$url is unhealthy: failed to commit proposal: context deadline exceeded" >&2
      echo "Error: unhealthy cluster" >&2; echo "command terminated with exit code 1" >&2; exit 1
    fi
    echo "$url is healthy: successfully committed proposal: took = 2.3ms"
    ;;
  *" exec etcd-"*" member remove "*)
    if fails member-remove; then echo "Error: etcdserver: re-configuration failed due to not enough started members" >&2; echo "command terminated with exit code 1" >&2; exit 1; fi
    echo "\${*: -1}" >>"$FAKE_CAPTURE/removed"
    echo "Member \${*: -1} removed from cluster 1c2ed7b1b8a14f1d"
    ;;
${kubectlNodeArms}
  *) echo "fake kubectl: unexpected $*" >&2; exit 99 ;;
esac`;

const cp = (n: number) => `prod-nbg1-cp-${n}`;
const peer = (n: number) => `https://10.20.1.1${n}:2380`;
const client = (n: number) => `https://10.20.1.1${n}:2379`;
const started = (id: string, n: number, learner = false) =>
  `${id}, started, ${cp(n)}, ${peer(n)}, ${client(n)}, ${learner}`;
const ids = { 1: "2a3b4c5d6e7f8091", 2: "3b4c5d6e7f809102", 3: "4c5d6e7f80910213" };
const threeMembers = [started(ids[1], 1), started(ids[2], 2), started(ids[3], 3)];

describe("membership.sh in the sandbox", () => {
  const sandboxFor = (name: string, members: string[]) => {
    return newSandbox(name, fakeEtcdKubectl, { FAKE_MEMBERS: members.join("\n") });
  };
  const etcdctl = (endpoints: string, command: string) => etcdctlCall(kubeconfig, cp(1), endpoints, command);
  const listCall = etcdctl("https://127.0.0.1:2379", "member list -w simple");
  const healthOf = (n: number) => etcdctl(client(n), "endpoint health");
  const nodeGet = kubectlCall(
    kubeconfig,
    `get node ${cp(3)} --ignore-not-found -o jsonpath={.metadata.name} {.status.conditions[?(@.type=="Ready")].status}`,
  );
  const drainCall = (timeout = "300") =>
    kubectlCall(kubeconfig, `drain ${cp(3)} --ignore-daemonsets --delete-emptydir-data --timeout=${timeout}s`);
  const removeCall = etcdctl("https://127.0.0.1:2379", `member remove ${ids[3]}`);
  const deleteCall = kubectlCall(kubeconfig, `delete node ${cp(3)} --ignore-not-found`);

  test("bash strict mode, --help documents every flag and both actions; shellcheck clean", () => {
    const sandbox = sandboxFor("contract", threeMembers);
    expectScriptContract(sandbox, script, [
      "check",
      "remove",
      "--node-name",
      "--peer-url",
      "--this-node",
      "--timeout",
      "--root",
      "ROOT",
      "POLL_SECONDS",
    ]);
    expectShellcheckClean([script]);
  });

  test.each([
    [
      "no action",
      ["--node-name", cp(3), "--peer-url", peer(3), "--this-node", cp(1)],
      "the first argument must be the action: check or remove",
    ],
    ["an unknown action", ["purge", "--node-name", cp(3)], "unknown argument 'purge'"],
    [
      "no --node-name",
      ["check", "--peer-url", peer(3), "--this-node", cp(1)],
      "--node-name must be a lowercase DNS name, got ''",
    ],
    [
      "no --this-node",
      ["remove", "--node-name", cp(3), "--peer-url", peer(3)],
      "--this-node must be a lowercase DNS name, got ''",
    ],
    [
      "no --peer-url",
      ["remove", "--node-name", cp(3), "--this-node", cp(1)],
      "--peer-url must be http(s)://<IPv4 address or DNS name>:<port>, got ''",
    ],
    ["a peer URL with a path", args("check", cp(3), `${peer(3)}/`, cp(1)), `got '${peer(3)}/'`],
    ["a peer URL without a port", args("check", cp(3), "https://10.20.1.13", cp(1)), "got 'https://10.20.1.13'"],
    ["a bad IPv4 address", args("check", cp(3), "https://10.20.1.300:2380", cp(1)), "got 'https://10.20.1.300:2380'"],
    [
      "a bad --timeout",
      args("remove", cp(3), peer(3), cp(1), ["--timeout", "0"]),
      "--timeout must be a positive whole number",
    ],
  ])("usage error, exit 2, nothing run: %s", (_label, argv, message) => {
    const sandbox = sandboxFor("usage", threeMembers);
    const result = run(sandbox, argv);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(message);
    expect(calls(sandbox)).toEqual([]);
  });

  test("remove refuses, before any call, to run through the etcd pod of the node it removes", () => {
    const sandbox = sandboxFor("self", threeMembers);
    const result = run(sandbox, args("remove", cp(3), peer(3), cp(3)));
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(
      `refusing to remove ${cp(3)} through its own etcd pod: run this on another member (--this-node)`,
    );
    expect(calls(sandbox)).toEqual([]);
  });

  test.each([
    [
      "a started voting member",
      [started(ids[2], 2), started(ids[3], 3)],
      0,
      `${cp(3)} is a started, voting etcd member (id ${ids[3]}, peer URL ${peer(3)})`,
    ],
    [
      "a learner",
      [started(ids[2], 2), started(ids[3], 3, true)],
      1,
      `${cp(3)}: the etcd member ${ids[3]} is a learner, not a voting member`,
    ],
    [
      "an unstarted member (empty name)",
      [started(ids[2], 2), `${ids[3]}, unstarted, , ${peer(3)}, , true`],
      1,
      `${cp(3)}: the etcd member ${ids[3]} with peer URL ${peer(3)} has not started (its name is empty`,
    ],
    [
      "a member named after another node",
      [started(ids[2], 2), `${ids[3]}, started, ${cp(4)}, ${peer(3)}, ${client(3)}, false`],
      1,
      `the etcd member ${ids[3]} with peer URL ${peer(3)} is named ${cp(4)}, not ${cp(3)}`,
    ],
    [
      "no member with the peer URL",
      [started(ids[2], 2), started(ids[3], 3).replace(peer(3), "https://10.20.1.23:2380")],
      1,
      `${cp(3)}: no etcd member has the peer URL ${peer(3)} (members: ${cp(1)} (id ${ids[1]}, peer URLs ${peer(1)}), ${cp(2)} (id ${ids[2]}, peer URLs ${peer(2)}), ${cp(3)} (id ${ids[3]}, peer URLs https://10.20.1.23:2380))`,
    ],
  ])("check of %s: read-only, one member list", (_label, members, status, message) => {
    const sandbox = sandboxFor("check", [started(ids[1], 1), ...members]);
    setNodes(sandbox, { [cp(3)]: "True" });
    const result = run(sandbox, args("check", cp(3), peer(3), cp(1)));
    expectStatus(result, status);
    expect(result.stdout).toBe(status === 0 ? `${ids[3]}\n` : "");
    expect(result.stderr).toContain(message);
    expect(calls(sandbox)).toEqual([listCall]);
    expect(nodeNames(sandbox)).toEqual([cp(3)]);
  });

  test("check matches the peer URL among several, and passes for a node that is down", () => {
    const multi = `${ids[3]}, started, ${cp(3)}, https://10.30.0.13:2380,${peer(3)}, ${client(3)}, false`;
    const sandbox = sandboxFor("check-multi", [started(ids[1], 1), started(ids[2], 2), multi]);
    // Down: its own endpoint would fail endpoint health; check does not ask.
    const result = run(sandbox, args("check", cp(3), peer(3), cp(1)), { FAKE_UNHEALTHY: client(3) });
    expectStatus(result, 0);
    expect(result.stdout).toBe(`${ids[3]}\n`);
  });

  test("remove of a dead member: gates, the other members' health, drain, member remove, Node deleted, final gate; a re-run does nothing", () => {
    const sandbox = sandboxFor("remove", threeMembers);
    setNodes(sandbox, { [cp(1)]: "True", [cp(2)]: "True", [cp(3)]: "Unknown" });
    const first = run(sandbox, args("remove", cp(3), peer(3), cp(1)), { FAKE_UNHEALTHY: client(3) });
    expectStatus(first, 0);
    expect(calls(sandbox)).toEqual([
      readyzCall(kubeconfig),
      listCall,
      healthOf(1),
      healthOf(2),
      nodeGet,
      drainCall(),
      removeCall,
      listCall,
      deleteCall,
      etcdHealthCall(kubeconfig, cp(1)),
    ]);
    expect(first.stderr).toContain(`warning: the Node ${cp(3)} is not Ready (Ready=Unknown): draining it, best effort`);
    expect(first.stdout).toBe(
      `removed the etcd member ${ids[3]} (${cp(3)}, peer URL ${peer(3)}); drained ${cp(3)} (it was not Ready); ` +
        `deleted the Node ${cp(3)}; etcd endpoint health --cluster passes on the 2 remaining members\n`,
    );
    expect(nodeNames(sandbox)).toEqual([cp(1), cp(2)]);

    // The Node came back (a kubelet still running registers it again): the re-run deletes it.
    setNodes(sandbox, { [cp(1)]: "True", [cp(2)]: "True", [cp(3)]: "Unknown" });
    resetCalls(sandbox);
    const again = run(sandbox, args("remove", cp(3), peer(3), cp(1)), { FAKE_UNHEALTHY: client(3) });
    expectStatus(again, 0);
    expect(calls(sandbox)).toEqual([readyzCall(kubeconfig), listCall, deleteCall]);
    expect(again.stdout).toBe(`no etcd member with peer URL ${peer(3)} (already removed); the Node ${cp(3)} is gone\n`);
    expect(nodeNames(sandbox)).toEqual([cp(1), cp(2)]);
  });

  test("remove of an unstarted member (a failed join's learner) by peer URL; no Node: a warning", () => {
    const unstarted = `${ids[3]}, unstarted, , ${peer(3)}, , true`;
    const sandbox = sandboxFor("remove-unstarted", [started(ids[1], 1), started(ids[2], 2), unstarted]);
    const result = run(sandbox, args("remove", cp(3), peer(3), cp(1)));
    expectStatus(result, 0);
    expect(result.stderr).toContain(`warning: there is no Node ${cp(3)}: nothing to drain`);
    expect(calls(sandbox)).toEqual([
      readyzCall(kubeconfig),
      listCall,
      healthOf(1),
      healthOf(2),
      nodeGet,
      removeCall,
      listCall,
      deleteCall,
      etcdHealthCall(kubeconfig, cp(1)),
    ]);
    expect(result.stdout).toContain(
      `removed the etcd member ${ids[3]} (unstarted, peer URL ${peer(3)}); no Node ${cp(3)} to drain`,
    );
  });

  test.each([
    [
      "another member is unhealthy",
      threeMembers,
      { FAKE_UNHEALTHY: `${client(2)},${client(3)}` },
      [healthOf(1), healthOf(2)],
      `refusing to remove ${cp(3)}: the etcd member ${cp(2)} (id ${ids[2]}, peer URLs ${peer(2)}) failed endpoint health on ${client(2)}; quorum after the removal would depend on it. Nothing was changed`,
    ],
    [
      "another member has not started",
      [started(ids[1], 1), `${ids[2]}, unstarted, , ${peer(2)}, , false`, started(ids[3], 3)],
      {},
      [healthOf(1)],
      `refusing to remove ${cp(3)}: the etcd member (unstarted) (id ${ids[2]}, peer URLs ${peer(2)}) has not started (no client URL); quorum after the removal would depend on it`,
    ],
    [
      "it is the only member",
      [started(ids[3], 3)],
      {},
      [],
      `refusing to remove ${cp(3)}: it is the only etcd member (${cp(3)} (id ${ids[3]}, peer URLs ${peer(3)})); nothing was changed`,
    ],
    [
      "its peer URL belongs to a member of another name",
      [started(ids[1], 1), started(ids[2], 2), `${ids[3]}, started, ${cp(4)}, ${peer(3)}, ${client(3)}, false`],
      {},
      [],
      `refusing to remove the etcd member ${ids[3]} with peer URL ${peer(3)}: it is named ${cp(4)}, not ${cp(3)}`,
    ],
  ])("remove refuses when %s: exit 1, nothing removed, not drained", (_label, members, env, healthCalls, message) => {
    const sandbox = sandboxFor("refuse", members);
    setNodes(sandbox, { [cp(3)]: "True" });
    const result = run(sandbox, args("remove", cp(3), peer(3), cp(1)), env);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(message);
    expect(result.stdout).toBe("");
    expect(calls(sandbox)).toEqual([readyzCall(kubeconfig), listCall, ...healthCalls]);
    expect(nodeNames(sandbox)).toEqual([cp(3)]);
  });

  test("remove: a Ready node whose drain fails stops before the member is removed; a NotReady one goes on with a warning", () => {
    const sandbox = sandboxFor("drain", threeMembers);
    setNodes(sandbox, { [cp(3)]: "True" });
    const ready = run(sandbox, args("remove", cp(3), peer(3), cp(1), ["--timeout", "5"]), { FAKE_FAIL: "drain" });
    expect(ready.status).toBe(1);
    expect(ready.stderr).toContain(
      `kubectl drain ${cp(3)} failed; its etcd member is not removed and the node stays cordoned (kubectl uncordon ${cp(3)} to undo)`,
    );
    expect(calls(sandbox).slice(-2)).toEqual([nodeGet, drainCall("5")]);

    setNodes(sandbox, { [cp(3)]: "False" });
    resetCalls(sandbox);
    const notReady = run(sandbox, args("remove", cp(3), peer(3), cp(1), ["--timeout", "5"]), { FAKE_FAIL: "drain" });
    expectStatus(notReady, 0);
    expect(notReady.stderr).toContain(`warning: kubectl drain ${cp(3)} failed (it is not Ready); going on`);
    expect(notReady.stdout).toContain(`could not drain ${cp(3)} (it was not Ready)`);
    expect(calls(sandbox)).toContain(removeCall);
  });

  test("remove: a member named like the node at another peer URL keeps its Node", () => {
    const moved = started(ids[3], 3).replace(peer(3), "https://10.20.1.23:2380");
    const sandbox = sandboxFor("moved", [started(ids[1], 1), started(ids[2], 2), moved]);
    setNodes(sandbox, { [cp(3)]: "True" });
    const result = run(sandbox, args("remove", cp(3), peer(3), cp(1)));
    expectStatus(result, 0);
    expect(result.stdout).toBe(
      `no etcd member with peer URL ${peer(3)}; the Node ${cp(3)} belongs to the member ${ids[3]} and is left alone\n`,
    );
    expect(calls(sandbox)).toEqual([readyzCall(kubeconfig), listCall]);
    expect(nodeNames(sandbox)).toEqual([cp(3)]);
  });

  test.each([
    ["/readyz failing", { FAKE_FAIL: "readyz" }, "the API server did not report ready within 1s", false],
    [
      "member list failing",
      { FAKE_FAIL: "member-list" },
      "could not read the etcd member list in etcd-prod-nbg1-cp-1 within 1s",
      false,
    ],
    [
      "member list hanging",
      { FAKE_HANG: "member-list" },
      "could not read the etcd member list in etcd-prod-nbg1-cp-1 within 1s",
      false,
    ],
    [
      "member remove failing",
      { FAKE_FAIL: "member-remove" },
      `etcdctl member remove ${ids[3]} failed; a re-run checks the member list again`,
      false,
    ],
    [
      "the Node deletion failing",
      { FAKE_FAIL: "delete-node" },
      `the etcd member ${ids[3]} is removed, but the Node ${cp(3)} could not be deleted within 1s`,
      true,
    ],
    [
      "the final etcd gate failing",
      { FAKE_FAIL: "etcd" },
      `the etcd member ${ids[3]} is removed and the Node ${cp(3)} deleted, but endpoint health --cluster did not pass within 1s`,
      true,
    ],
  ])("remove with %s: exit 1 within the timeout, saying what is done", (_label, env, message, removed) => {
    const sandbox = sandboxFor("fails", threeMembers);
    setNodes(sandbox, { [cp(3)]: "True" });
    const result = run(sandbox, args("remove", cp(3), peer(3), cp(1), ["--timeout", "1"]), env);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(message);
    expect(result.ms).toBeLessThan(12_000);
    expect(calls(sandbox).includes(removeCall)).toBe(removed || _label === "member remove failing");
    expect(fs.existsSync(path.join(sandbox.capture, "removed"))).toBe(removed);
  });

  test("kubectl and etcdctl output goes to the root-only log, not the terminal", () => {
    const sandbox = sandboxFor("log", threeMembers);
    setNodes(sandbox, { [cp(3)]: "True" });
    const result = run(sandbox, args("remove", cp(3), peer(3), cp(1)));
    expectStatus(result, 0);
    const log = at(sandbox, "var/log/hcloud-control-plane/membership.log");
    expect((fs.statSync(log).mode & 0o777).toString(8)).toBe("600");
    const text = fs.readFileSync(log, "utf8");
    expect(text).toContain(`Member ${ids[3]} removed from cluster`);
    expect(text).toContain(`node/${cp(3)} drained`);
    expect(result.stderr).not.toContain("removed from cluster");
  });
});

// ---------------------------------------------------------------------------------------------
// Part 2: a real 3-member etcd on loopback.

/** The real etcdctl behind `kubectl exec etcd-S -- etcdctl ...` (tests/support/etcdPodKubectl.ts). */
const realEtcdKubectl = `
case "$*" in
  *" get --raw /readyz") echo ok ;;
${etcdPodExecArm}
${kubectlNodeArms}
  *) echo "fake kubectl: unexpected $*" >&2; exit 99 ;;
esac`;

interface ListedMember {
  id: string;
  name: string;
  peerUrls: string[];
  clientUrls: string[];
  isLearner: boolean;
}

describe("membership.sh against a real 3-member etcd", () => {
  let cluster: EtcdCluster;
  let sandbox: Sandbox;
  const survivor = "etcd-1";

  beforeAll(async () => {
    requireTool(etcdctlBinary, "etcd-client");
    cluster = await EtcdCluster.create({ baseDir: tmp(), tls: true });
    // The fake maps exactly https://127.0.0.1:2379 to the local member: no real member may use it.
    expect(cluster.endpoints).not.toContain("https://127.0.0.1:2379");
    await cluster.startAll();
    sandbox = newSandbox("real", realEtcdKubectl, { ...etcdPodEnv(cluster), POLL_SECONDS: "0.2" });
    addEtcdPod(sandbox, survivor, cluster.member(survivor).clientUrl);
    setNodes(sandbox, { "etcd-1": "True", "etcd-2": "True", "etcd-3": "True" });
  }, 90_000);

  afterAll(async () => {
    // Every etcd process started here is stopped by its PID (EtcdCluster.stop), the dir removed.
    if (cluster) await cluster.cleanup();
  });

  const running = () => cluster.members.filter((m) => m.process).map((m) => m.clientUrl);

  /** The real member list (JSON; ids as exact hex, as etcdctl's simple format prints them). */
  const members = (): ListedMember[] => {
    const r = cluster.etcdctl(["--dial-timeout=2s", "member", "list", "-w", "json"], running());
    if (r.status !== 0) throw new Error(`member list failed: ${r.stderr}`);
    const exact = r.stdout.replace(/"ID":(\d+)/g, '"ID":"$1"');
    const parsed = JSON.parse(exact) as {
      members: { ID: string; name?: string; peerURLs?: string[]; clientURLs?: string[]; isLearner?: boolean }[];
    };
    return parsed.members.map((m) => ({
      id: BigInt(m.ID).toString(16),
      name: m.name ?? "",
      peerUrls: m.peerURLs ?? [],
      clientUrls: m.clientURLs ?? [],
      isLearner: m.isLearner ?? false,
    }));
  };
  const byPeer = (peerUrl: string) => members().find((m) => m.peerUrls.includes(peerUrl));
  const memberNames = () =>
    members()
      .map((m) => m.name || "(unstarted)")
      .sort();

  const membership = (action: string, node: string, peerUrl: string) =>
    run(sandbox, args(action, node, peerUrl, survivor, ["--timeout", "20"]), {}, 90_000);

  /**
   * `member add` for real; returns the ETCD_INITIAL_CLUSTER it printed. etcd refuses a member
   * add with "etcdserver: unhealthy cluster" until the leader has been connected to every voting
   * member for 5 s (etcd-io/etcd server/etcdserver/server.go mayAddMember, isConnectedFullySince
   * with HealthInterval): after a (re)start, retried, bounded.
   */
  const memberAdd = async (name: string, peerUrl: string, learner: boolean): Promise<string> => {
    let output = "";
    let stderr = "";
    await waitUntil(`member add ${name}`, 30_000, async () => {
      const r = cluster.etcdctl(
        ["member", "add", name, `--peer-urls=${peerUrl}`, ...(learner ? ["--learner"] : [])],
        running(),
      );
      ({ stdout: output, stderr } = r);
      // Any other failure is retried too, until the bound: the thrown error shows its stderr.
      return r.status === 0;
    }).catch((error: Error) => {
      throw new Error(`${error.message}; last stderr: ${stderr}`);
    });
    const initial = /^ETCD_INITIAL_CLUSTER="([^"]+)"$/m.exec(output)?.[1];
    if (!initial) throw new Error(`member add printed no ETCD_INITIAL_CLUSTER: ${output}`);
    return initial;
  };

  test("check passes for each started voting member and prints its id", () => {
    for (const m of cluster.members.slice(1)) {
      const result = membership("check", m.name, m.peerUrl);
      expectStatus(result, 0);
      expect(result.stdout).toBe(`${byPeer(m.peerUrl)?.id}\n`);
    }
  });

  test("an unstarted member (real member add, never started): check fails; remove by peer URL; a re-run is a no-op", async () => {
    const ghost = await cluster.allocateMember("etcd-ghost");
    await memberAdd("etcd-ghost", ghost.peerUrl, false);
    const listed = byPeer(ghost.peerUrl);
    expect(listed).toMatchObject({ name: "", clientUrls: [], isLearner: false });

    const check = membership("check", "etcd-ghost", ghost.peerUrl);
    expect(check.status).toBe(1);
    expect(check.stderr).toContain(`the etcd member ${listed?.id} with peer URL ${ghost.peerUrl} has not started`);

    const removed = membership("remove", "etcd-ghost", ghost.peerUrl);
    expectStatus(removed, 0);
    expect(removed.stdout).toContain(`removed the etcd member ${listed?.id} (unstarted, peer URL ${ghost.peerUrl})`);
    expect(byPeer(ghost.peerUrl)).toBeUndefined();
    expect(memberNames()).toEqual(["etcd-1", "etcd-2", "etcd-3"]);

    const again = membership("remove", "etcd-ghost", ghost.peerUrl);
    expectStatus(again, 0);
    expect(again.stdout).toBe(
      `no etcd member with peer URL ${ghost.peerUrl} (already removed); the Node etcd-ghost is gone\n`,
    );
    expect(memberNames()).toEqual(["etcd-1", "etcd-2", "etcd-3"]);
    await cluster.waitHealthy(30_000);
  }, 120_000);

  test("remove refuses while another member is stopped: the real member list keeps all three", async () => {
    await cluster.kill("etcd-2");
    try {
      const before = members();
      const result = membership("remove", "etcd-3", cluster.member("etcd-3").peerUrl);
      expect(result.status).toBe(1);
      const etcd2 = cluster.member("etcd-2");
      expect(result.stderr).toContain(
        `refusing to remove etcd-3: the etcd member etcd-2 (id ${byPeer(etcd2.peerUrl)?.id}, peer URLs ${etcd2.peerUrl}) failed endpoint health on ${etcd2.clientUrl}; quorum after the removal would depend on it. Nothing was changed`,
      );
      expect(members()).toEqual(before);
      expect(before.map((m) => m.name).sort()).toEqual(["etcd-1", "etcd-2", "etcd-3"]);
      expect(nodeNames(sandbox)).toContain("etcd-3");
    } finally {
      cluster.start("etcd-2");
    }
    await cluster.waitHealthy(60_000);
  }, 120_000);

  test("scaling 3 -> 5 -> 3: learners added, checked, promoted, checked; then removed one at a time, healthy after each step", async () => {
    for (const name of ["etcd-4", "etcd-5"]) {
      const m = await cluster.allocateMember(name);
      m.initialCluster = await memberAdd(name, m.peerUrl, true);
      cluster.start(name);
      await waitUntil(`${name} started`, 30_000, async () => byPeer(m.peerUrl)?.name === name);
      const learner = membership("check", name, m.peerUrl);
      expect(learner.status).toBe(1);
      expect(learner.stderr).toContain(
        `${name}: the etcd member ${byPeer(m.peerUrl)?.id} is a learner, not a voting member`,
      );
      // etcd promotes a learner only once its log has caught up with the leader's (etcdserver
      // ErrLearnerNotReady): retried, bounded.
      const id = byPeer(m.peerUrl)?.id ?? "";
      await waitUntil(
        `${name} promoted`,
        30_000,
        async () => cluster.etcdctl(["member", "promote", id], running()).status === 0,
      );
      const voting = membership("check", name, m.peerUrl);
      expectStatus(voting, 0);
      expect(voting.stdout).toBe(`${id}\n`);
      setNodes(sandbox, Object.fromEntries(cluster.members.map((x) => [x.name, "True"])));
      await cluster.waitHealthy(30_000);
    }
    expect(memberNames()).toEqual(["etcd-1", "etcd-2", "etcd-3", "etcd-4", "etcd-5"]);

    for (const name of ["etcd-5", "etcd-4"]) {
      const m = cluster.member(name);
      const id = byPeer(m.peerUrl)?.id;
      resetCalls(sandbox);
      const result = membership("remove", name, m.peerUrl);
      expectStatus(result, 0);
      expect(result.stdout).toContain(
        `removed the etcd member ${id} (${name}, peer URL ${m.peerUrl}); drained ${name}; deleted the Node ${name}`,
      );
      expect(calls(sandbox)).toContain(
        kubectlCall(kubeconfig, `drain ${name} --ignore-daemonsets --delete-emptydir-data --timeout=20s`),
      );
      // The removed etcd shuts itself down; stop its process by PID in any case.
      await cluster.stop(name);
      expect(byPeer(m.peerUrl)).toBeUndefined();
      expect(nodeNames(sandbox)).not.toContain(name);
      await cluster.waitHealthy(30_000);
    }
    expect(memberNames()).toEqual(["etcd-1", "etcd-2", "etcd-3"]);
  }, 240_000);

  test("remove of a killed member succeeds and etcd keeps quorum", async () => {
    const dead = cluster.member("etcd-3");
    const id = byPeer(dead.peerUrl)?.id;
    await cluster.kill("etcd-3");
    setNodes(sandbox, { "etcd-1": "True", "etcd-2": "True", "etcd-3": "Unknown" });
    const result = membership("remove", "etcd-3", dead.peerUrl);
    expectStatus(result, 0);
    expect(result.stdout).toContain(`removed the etcd member ${id} (etcd-3, peer URL ${dead.peerUrl})`);
    expect(result.stdout).toContain("etcd endpoint health --cluster passes on the 2 remaining members");
    expect(memberNames()).toEqual(["etcd-1", "etcd-2"]);
    expect(nodeNames(sandbox)).toEqual(["etcd-1", "etcd-2"]);
    // Quorum: a write through the survivors commits, and every remaining member is healthy.
    const put = cluster.etcdctl(["put", "/membership-test", "after-removal"], running());
    expect({ status: put.status, stderr: put.stderr }).toEqual({ status: 0, stderr: "" });
    await cluster.waitHealthy(30_000);
  }, 120_000);
});
