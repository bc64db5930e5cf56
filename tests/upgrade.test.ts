/**
 * The Kubernetes upgrade scripts that Pulumi runs over SSH on control-plane nodes:
 * upgrade-preflight.sh (the version-skew checks, read-only) and upgrade-node.sh (kubeadm upgrade
 * apply/node, drain, packages, kubelet restart, uncordon). Each runs for real with bash under a
 * temporary root. Fakes of kubeadm, kubectl, kubelet, apt-get, apt-mark, dpkg-query and systemctl
 * record their argv and keep a small node state in $FAKE_CAPTURE: installed package versions
 * (pkg.NAME), holds (held.NAME), the channel apt last updated from, the cluster's version (set by
 * `kubeadm upgrade apply`, read by `kubeadm upgrade node` and, through ConfigMap
 * kube-system/kubeadm-config, by --role auto), the Node's Ready status, kubelet version and
 * cordon. `kubeadm upgrade apply/node` rewrites the kube-apiserver manifest under the root and
 * admin.conf with a new client certificate, as kubeadm does; the fake crictl (tests/support/staticPods.ts) lists a
 * static pod's container while its manifest is in /etc/kubernetes/manifests.
 *
 * What this cannot prove: that kubeadm, kubectl and apt behave as the fakes do (kubeadm upgrade
 * node taking the version from the cluster, apt refusing a held package, jsonpath output). The
 * proof of those is a real upgrade of a real cluster, one minor at a time.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import {
  at,
  calls,
  etcdHealthCall,
  expectScriptContract,
  expectShellcheckClean,
  expectStatus,
  kubectlGateArms,
  makeSandbox,
  mode,
  readyzCall,
  resetCalls,
  runNodeScript,
  type Run,
  type RunOptions,
  type Sandbox,
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

const tmp = useTempDir("upgrade-test-");

const adminConf = "/etc/kubernetes/admin.conf";
const manifestPath = "/etc/kubernetes/manifests/kube-apiserver.yaml";
const kubeVipManifestPath = "/etc/kubernetes/manifests/kube-vip.yaml";
const sentinelPath = "/var/lib/kubernetes-node/prepared";
const sourcesList = "/etc/apt/sources.list.d/kubernetes.list";
const keyring = "/etc/apt/keyrings/kubernetes-apt-keyring.gpg";
const patchesDir = "/etc/kubernetes/kubeadm-patches";
const logDir = "/var/log/hcloud-control-plane";

const kubeconfig = `$ROOT${adminConf}`;
const kubectl = `kubectl --kubeconfig ${kubeconfig}`;
const readyzGate = readyzCall(kubeconfig);
const gates = (node: string) => [readyzGate, etcdHealthCall(kubeconfig, node)];

// ---------------------------------------------------------------------------------------------
// Fakes. State files in $FAKE_CAPTURE; $FAKE_ROOT is the sandbox root (the scripts' --root).

const manifest = (tag: string) =>
  [
    "apiVersion: v1",
    "kind: Pod",
    "metadata:",
    "  name: kube-apiserver",
    "  namespace: kube-system",
    "spec:",
    "  containers:",
    "  - command:",
    "    - kube-apiserver",
    `    image: registry.k8s.io/kube-apiserver:${tag}`,
    "    name: kube-apiserver",
    "",
  ].join("\n");

/**
 * The ClusterConfiguration kubeadm keeps under the key ClusterConfiguration of ConfigMap
 * kube-system/kubeadm-config: the YAML of its upload-config phase (UploadConfiguration in
 * cmd/kubeadm/app/phases/uploadconfig/uploadconfig.go, kubernetes/kubernetes; sigs.k8s.io/yaml
 * sorts the keys), trimmed. The fake kubectl puts the cluster's version (state file
 * cluster-version) where @VERSION@ stands.
 */
const clusterConfiguration = [
  "apiServer: {}",
  "apiVersion: kubeadm.k8s.io/v1beta4",
  "certificatesDir: /etc/kubernetes/pki",
  "clusterName: prod",
  "controlPlaneEndpoint: 10.20.1.5:6443",
  "controllerManager: {}",
  "dns: {}",
  "etcd:",
  "  local:",
  "    dataDir: /var/lib/etcd",
  "imageRepository: registry.k8s.io",
  "kind: ClusterConfiguration",
  "kubernetesVersion: @VERSION@",
  "networking:",
  "  dnsDomain: cluster.local",
  "  serviceSubnet: 10.96.0.0/12",
  "proxy: {}",
  "scheduler: {}",
  "",
].join("\n");

// kubectl notes the sentinel as it is at each /readyz and uncordon, to show when it was written.
const fakes: Record<string, string> = {
  // kubeadm upgrade apply/node renews admin.conf after the static pods it manages
  // (StaticPodControlPlane in cmd/kubeadm/app/phases/upgrade/staticpods.go), unless it fails first.
  // apply's phases run in the order of newCmdApply in cmd/kubeadm/app/cmd/upgrade/apply.go:
  // control-plane (the manifests, the certificates), then upload-config, which writes the target
  // into kubeadm-config; a phase that fails stops it there ("error execution phase ...", the
  // workflow runner's message). `kubeadm upgrade node` has no upload-config phase (NewCmdNode in
  // cmd/kubeadm/app/cmd/upgrade/node.go): it reads the cluster's version and writes nothing there.
  kubeadm: `
S="$FAKE_CAPTURE"
${renewAdminConf}
installed() { local v; v="$(<"$S/pkg.kubeadm")"; echo "v\${v%%-*}"; }
write_manifest() {
  mkdir -p "$FAKE_ROOT/etc/kubernetes/manifests"
  printf '%s\\n' "spec:" "  containers:" "  - image: registry.k8s.io/kube-apiserver:$1" "    name: kube-apiserver" \\
    >"$FAKE_ROOT/etc/kubernetes/manifests/kube-apiserver.yaml"
}
patches_ok() { [[ "\${*: -2:1}" == --patches && -d "\${*: -1}" ]] || { echo "fake kubeadm: no --patches DIR" >&2; exit 98; }; }
case "$1 \${2:-}" in
  "version -o") installed ;;
  "upgrade plan")
    [[ "$3" == "$(installed)" ]] || { echo "[upgrade] kubeadm $(installed) cannot plan $3" >&2; exit 1; }
    if fails plan; then echo "[upgrade/versions] FATAL: plan failed" >&2; exit 1; fi
    echo "Upgrade to the latest stable version: $3"
    ;;
  "upgrade apply")
    patches_ok "$@"
    [[ "$3" == "$(installed)" && "$4" == --yes ]] || { echo "[upgrade] kubeadm $(installed) cannot apply $3" >&2; exit 1; }
    if fails apply; then echo "[upgrade/apply] FATAL: couldn't upgrade control plane" >&2; exit 1; fi
    write_manifest "$3"
    renew_admin_conf
    if fails upload-config; then
      echo "error execution phase upload-config/kubeadm: error uploading the kubeadm ClusterConfiguration: Unauthorized" >&2; exit 1
    fi
    echo "$3" >"$S/cluster-version"
    echo "[upgrade/successful] SUCCESS! Your cluster was upgraded to \\"$3\\". Enjoy!"
    ;;
  "upgrade node")
    patches_ok "$@"
    if fails upgrade-node; then echo "[upgrade] FATAL: upgrade node failed" >&2; exit 1; fi
    write_manifest "$(<"$S/cluster-version")"
    renew_admin_conf
    echo "[upgrade] The control plane instance for this node was successfully upgraded!"
    ;;
  *) echo "fake kubeadm: unexpected $*" >&2; exit 99 ;;
esac`,
  kubectl: `
S="$FAKE_CAPTURE"
sentinel() { printf '%s %s\\n' "$1" "$(<"$FAKE_ROOT${sentinelPath}")" >>"$S/sentinel-seen"; }
case "$*" in
${kubectlGateArms("sentinel readyz")}
${kubeVipLeaseArm()}
  # The ConfigMap's key as jsonpath prints a string: verbatim, no newline of its own; a missing
  # key prints nothing (kubectl get's --allow-missing-template-keys defaults to true); a missing
  # ConfigMap is NotFound (k8s.io/apimachinery pkg/api/errors/errors.go NewNotFound).
  # State file kubeadm-config: the key's content (see clusterConfiguration); absent: no ConfigMap.
  *" -n kube-system get configmap kubeadm-config -o jsonpath={.data.ClusterConfiguration}")
    if hangs kubeadm-config; then exec sleep 30; fi
    if fails kubeadm-config; then
      echo "The connection to the server 10.20.1.5:6443 was refused - did you specify the right host or port?" >&2; exit 1
    fi
    if [[ ! -f "$S/kubeadm-config" ]]; then echo 'Error from server (NotFound): configmaps "kubeadm-config" not found' >&2; exit 1; fi
    data="$(<"$S/kubeadm-config")"
    if [[ -n "$data" ]]; then printf '%s\\n' "\${data//@VERSION@/$(<"$S/cluster-version")}"; fi
    ;;
  *" get pods -l component=kube-apiserver -o "*) printf '%s\\n' "$FAKE_APISERVERS" ;;
  *" get nodes -o "*) printf '%s\\n' "$FAKE_KUBELETS" ;;
  *" get node "*)
    [[ "$5" == "$FAKE_NODE" ]] || { echo "Error from server (NotFound): nodes \\"$5\\" not found" >&2; exit 1; }
    printf '%s|%s|%s' "$(<"$S/node.ready")" "$(<"$S/node.kubelet")" "$(<"$S/node.unschedulable")"
    ;;
  *" drain "*)
    echo true >"$S/node.unschedulable"
    if fails drain; then echo "error: cannot evict pod as it would violate the pod's disruption budget" >&2; exit 1; fi
    echo "node/$4 drained"
    ;;
  *" uncordon "*)
    sentinel uncordon
    if fails uncordon; then echo "Unable to connect to the server" >&2; exit 1; fi
    : >"$S/node.unschedulable"
    echo "node/$4 uncordoned"
    ;;
  *) echo "fake kubectl: unexpected $*" >&2; exit 99 ;;
esac`,
  kubelet: 'echo "fake kubelet: not to be run by the scripts" >&2; exit 99',
  "apt-get": `
S="$FAKE_CAPTURE"
[[ "\${DEBIAN_FRONTEND:-}" == noninteractive ]] || { echo "fake apt-get: DEBIAN_FRONTEND not noninteractive" >&2; exit 98; }
case " $* " in
  *" update "*)
    if fails apt-update; then echo "E: Failed to fetch https://pkgs.k8s.io/ InRelease" >&2; exit 100; fi
    line="$(<"$FAKE_ROOT/etc/apt/sources.list.d/kubernetes.list")"
    [[ "$line" =~ core:/stable:/(v[0-9]+\\.[0-9]+)/deb/ ]] || exit 100
    echo "\${BASH_REMATCH[1]}" >"$S/apt.channel"
    echo "Hit:1 https://pkgs.k8s.io/core:/stable:/\${BASH_REMATCH[1]}/deb  InRelease"
    ;;
  *" install "*)
    channel="$(<"$S/apt.channel")"
    wanted=()
    for arg in "$@"; do
      if [[ "$arg" == install ]]; then wanted=(); elif [[ "$arg" == *=* ]]; then wanted+=("$arg"); fi
    done
    for arg in "\${wanted[@]}"; do
      package="\${arg%%=*}" version="\${arg#*=}" minor="\${arg#*=}"
      minor="v\${minor%%-*}"
      if [[ "\${minor%.*}" != "$channel" ]]; then echo "E: Version '$version' for '$package' was not found" >&2; exit 100; fi
      if [[ -f "$S/held.$package" ]]; then
        echo "E: Held packages were changed and -y was used without --allow-change-held-packages." >&2; exit 100
      fi
      if fails "install-$package"; then echo "E: Sub-process /usr/bin/dpkg returned an error code (1)" >&2; exit 100; fi
    done
    for arg in "\${wanted[@]}"; do
      echo "\${arg#*=}" >"$S/pkg.\${arg%%=*}"
      echo "Setting up \${arg%%=*} (\${arg#*=}) ..."
    done
    ;;
  *) echo "fake apt-get: unexpected $*" >&2; exit 99 ;;
esac`,
  "apt-mark": `
S="$FAKE_CAPTURE"
action="$1"
shift
for package in "$@"; do
  case "$action" in
    hold) touch "$S/held.$package"; echo "$package set on hold." ;;
    unhold) rm -f "$S/held.$package"; echo "Canceled hold on $package." ;;
    *) exit 99 ;;
  esac
done`,
  "dpkg-query": `
[[ "$1 $2" == '-W -f=\${Version}' && $# -eq 3 ]] || { echo "fake dpkg-query: unexpected $*" >&2; exit 99; }
if [[ -f "$FAKE_CAPTURE/pkg.$3" ]]; then printf '%s' "$(<"$FAKE_CAPTURE/pkg.$3")"; else
  echo "dpkg-query: no packages found matching $3" >&2; exit 1; fi`,
  systemctl: `
S="$FAKE_CAPTURE"
case "$*" in
  daemon-reload) ;;
  "restart kubelet")
    if fails restart; then echo "Job for kubelet.service failed because the control process exited with error code." >&2; exit 1; fi
    version="$(<"$S/pkg.kubelet")"
    echo "v\${version%%-*}" >"$S/node.kubelet"
    if fails kubelet-ready; then echo False >"$S/node.ready"; else echo True >"$S/node.ready"; fi
    ;;
  *) echo "fake systemctl: unexpected $*" >&2; exit 99 ;;
esac`,
  hostname: 'echo "${FAKE_HOSTNAME:-prod-nbg1-cp-1}"',
  crictl: crictlFake,
};

const realTools = [
  ...["bash", "cat", "chmod", "install", "mktemp", "mv", "rm", "sleep", "timeout"], // the scripts
  "dirname", // sourcing lib.sh
  ...["grep", "sha256sum", "rmdir"], // lib.sh's static pod restart and admin.conf fingerprint
  ...["awk", "date"], // lib.sh's kube-vip Lease name and renewal time; the fake Lease
  ...["mkdir", "touch"], // the fakes
];

const node1 = "prod-nbg1-cp-1";
const node2 = "prod-nbg1-cp-2";

interface NodeState {
  /** The version of kubeadm, kubelet and kubectl, e.g. "1.34.2". */
  packages: string;
  /** The image tag of the kube-apiserver manifest, e.g. "v1.34.2". */
  manifest: string;
  /** The sentinel's package version. */
  sentinel: string;
  /** The channel of the apt sources list, e.g. "v1.34". */
  channel: string;
  /** The version in the cluster's kubeadm configuration, e.g. "v1.34.2". */
  cluster: string;
  node: string;
  /** The node runs kube-vip (its manifest is there). */
  kubeVip?: boolean;
}

const at1342: NodeState = {
  packages: "1.34.2",
  manifest: "v1.34.2",
  sentinel: "1.34.2-1.1",
  channel: "v1.34",
  cluster: "v1.34.2",
  node: node1,
};

const state = (sandbox: Sandbox, name: string) => fs.readFileSync(path.join(sandbox.capture, name), "utf8").trim();
const setState = (sandbox: Sandbox, name: string, value: string) =>
  fs.writeFileSync(path.join(sandbox.capture, name), value === "" ? "" : `${value}\n`);

function controlPlaneNode(name: string, node: Partial<NodeState> = {}): Sandbox {
  const s = { ...at1342, ...node };
  const sandbox = makeSandbox(tmp(), name, {
    fakes,
    realTools,
    files: {
      [adminConf.slice(1)]: adminKubeconfig("1"),
      ...(s.kubeVip ? { [kubeVipManifestPath.slice(1)]: kubeVipManifest } : {}),
      [manifestPath.slice(1)]: manifest(s.manifest),
      [sentinelPath.slice(1)]: `${s.sentinel}\n`,
      [sourcesList.slice(1)]: `deb [signed-by=${keyring}] https://pkgs.k8s.io/core:/stable:/${s.channel}/deb/ /\n`,
      [keyring.slice(1)]: "binary keyring\n",
      [`${patchesDir.slice(1)}/etcd+strategic.yaml`]: "spec: {}\n",
    },
  });
  sandbox.env.FAKE_ROOT = sandbox.root;
  sandbox.env.FAKE_NODE = s.node;
  sandbox.env.FAKE_ADMIN_CONF = at(sandbox, adminConf);
  sandbox.env.FAKE_MANIFESTS = path.dirname(at(sandbox, manifestPath));
  for (const p of ["kubeadm", "kubelet", "kubectl"]) {
    setState(sandbox, `pkg.${p}`, `${s.packages}-1.1`);
    setState(sandbox, `held.${p}`, "");
  }
  setState(sandbox, "apt.channel", s.channel);
  setState(sandbox, "cluster-version", s.cluster);
  setState(sandbox, "kubeadm-config", clusterConfiguration);
  setState(sandbox, "node.ready", "True");
  setState(sandbox, "node.kubelet", `v${s.packages}`);
  setState(sandbox, "node.unschedulable", "");
  return sandbox;
}

const packages = (sandbox: Sandbox) =>
  Object.fromEntries(["kubeadm", "kubelet", "kubectl"].map((p) => [p, state(sandbox, `pkg.${p}`)]));
const held = (sandbox: Sandbox) =>
  ["kubeadm", "kubelet", "kubectl"].filter((p) => fs.existsSync(path.join(sandbox.capture, `held.${p}`)));
const manifestTag = (sandbox: Sandbox) =>
  /kube-apiserver:(\S+)/.exec(fs.readFileSync(at(sandbox, manifestPath), "utf8"))?.[1];
const sentinel = (sandbox: Sandbox) => fs.readFileSync(at(sandbox, sentinelPath), "utf8");
/** The calls without the read-only package queries. */
const actions = (sandbox: Sandbox) => calls(sandbox).filter((c) => !c.startsWith("dpkg-query "));

/** What the terminal must never show: kubeadm's, kubectl's and apt's own output. */
function expectQuietTerminal(result: Run): void {
  expect(result.stdout).toBe("");
  for (const text of ["SUCCESS!", "Setting up", "set on hold", "drained", "Hit:1", "Upgrade to the latest"]) {
    expect(result.stderr).not.toContain(text);
  }
}

// ---------------------------------------------------------------------------------------------

describe("upgrade scripts: the node script contract", () => {
  test("shellcheck passes", () => {
    expectShellcheckClean(["upgrade-preflight.sh", "upgrade-node.sh"]);
  });

  test("upgrade-preflight.sh: strict mode, --help documents every flag, unknown flags exit 2", () => {
    const sandbox = controlPlaneNode("contract-preflight");
    expectScriptContract(sandbox, "upgrade-preflight.sh", [
      "--version",
      "--node-name",
      "--timeout",
      "--root",
      "ROOT",
      "POLL_SECONDS",
    ]);
  });

  test("upgrade-node.sh: strict mode, --help documents every flag, unknown flags exit 2", () => {
    const sandbox = controlPlaneNode("contract-node");
    expectScriptContract(sandbox, "upgrade-node.sh", [
      "--role",
      "apply|node|auto",
      "kube-system/kubeadm-config",
      "--version",
      "--package-version",
      "--channel",
      "--node-name",
      "--patches",
      patchesDir,
      "--drain-timeout",
      "--timeout",
      "--root",
      "ROOT",
      "POLL_SECONDS",
      `${logDir}/upgrade-node.log`,
    ]);
  });
});

// ---------------------------------------------------------------------------------------------

describe("upgrade-preflight.sh", () => {
  const apiservers = (...versions: string[]) =>
    versions.map((v, i) => `prod-nbg1-cp-${i + 1} registry.k8s.io/kube-apiserver:v${v}`).join("\n");
  const threeAt1342 = apiservers("1.34.2", "1.34.2", "1.34.2");
  const kubelets = (entries: Record<string, string>) =>
    Object.entries(entries)
      .map(([name, version]) => `${name} v${version}`)
      .join("\n");
  const fiveKubelets = kubelets({
    [node1]: "1.34.2",
    [node2]: "1.34.2",
    "prod-nbg1-cp-3": "1.34.2",
    "prod-workers-a1b2c": "1.33.4",
    "prod-workers-d3e4f": "1.34.1",
  });
  const podsCall =
    `${kubectl} -n kube-system get pods -l component=kube-apiserver -o jsonpath=` +
    `{range .items[*]}{.spec.nodeName}{" "}{.spec.containers[?(@.name=="kube-apiserver")].image}{"\\n"}{end}`;
  const nodesCall =
    `${kubectl} get nodes -o jsonpath=` +
    `{range .items[*]}{.metadata.name}{" "}{.status.nodeInfo.kubeletVersion}{"\\n"}{end}`;

  function preflight(
    name: string,
    version: string,
    cluster: { apiservers?: string; kubelets?: string },
    options: RunOptions = {},
    extra: string[] = [],
  ): { sandbox: Sandbox; result: Run } {
    const sandbox = controlPlaneNode(name);
    sandbox.env.FAKE_APISERVERS = cluster.apiservers ?? threeAt1342;
    sandbox.env.FAKE_KUBELETS = cluster.kubelets ?? fiveKubelets;
    const result = runNodeScript(
      sandbox,
      "upgrade-preflight.sh",
      ["--version", version, "--node-name", node1, ...extra],
      options,
    );
    return { sandbox, result };
  }

  test("a minor step passes with a one-line summary; it reads and gates, nothing else", () => {
    const { sandbox, result } = preflight("preflight-minor", "1.35.0", {});
    expectStatus(result, 0);
    expect(result.stdout).toBe(
      "upgrade-preflight: target 1.35.0: 3 API servers at 1.34.2, 5 kubelets between 1.33.4 and 1.34.2: ok\n",
    );
    expect(result.stderr).not.toContain("violation");
    expect(calls(sandbox)).toEqual([readyzGate, podsCall, nodesCall, etcdHealthCall(kubeconfig, node1)]);
    expect(mode(at(sandbox, `${logDir}/upgrade-preflight.log`))).toBe("600");
  });

  test("a patch step, the running version itself and a half-done upgrade pass", () => {
    const patchStep = preflight("preflight-patch", "1.34.3", {});
    expectStatus(patchStep.result, 0);
    expect(patchStep.result.stdout).toContain("target 1.34.3: 3 API servers at 1.34.2");
    const same = preflight("preflight-same", "1.34.2", {});
    expectStatus(same.result, 0);
    // The first node was upgraded, then a later node failed: the re-run's preflight passes.
    const halfDone = preflight("preflight-half", "1.35.0", {
      apiservers: apiservers("1.35.0", "1.34.2", "1.34.2"),
      kubelets: kubelets({ [node1]: "1.35.0", [node2]: "1.34.2" }),
    });
    expectStatus(halfDone.result, 0);
    expect(halfDone.result.stdout).toBe(
      "upgrade-preflight: target 1.35.0: 3 API servers between 1.34.2 and 1.35.0, 2 kubelets between 1.34.2 and 1.35.0: ok\n",
    );
    // The hostname names the etcd pod when --node-name is not given.
    const sandbox = controlPlaneNode("preflight-hostname");
    Object.assign(sandbox.env, { FAKE_APISERVERS: threeAt1342, FAKE_KUBELETS: fiveKubelets, FAKE_HOSTNAME: node2 });
    expectStatus(runNodeScript(sandbox, "upgrade-preflight.sh", ["--version", "1.35.0"]), 0);
    expect(calls(sandbox)).toEqual(["hostname", readyzGate, podsCall, nodesCall, etcdHealthCall(kubeconfig, node2)]);
  });

  test("runs on any member: on cp-2, with cp-1 gone from the cluster (removed, its replacement not joined yet)", () => {
    const sandbox = controlPlaneNode("preflight-any-member", { node: node2 });
    sandbox.env.FAKE_APISERVERS = [2, 3]
      .map((i) => `prod-nbg1-cp-${i} registry.k8s.io/kube-apiserver:v1.34.2`)
      .join("\n");
    sandbox.env.FAKE_KUBELETS = kubelets({ [node2]: "1.34.2", "prod-nbg1-cp-3": "1.34.2" });
    const result = runNodeScript(sandbox, "upgrade-preflight.sh", ["--version", "1.35.0", "--node-name", node2]);
    expectStatus(result, 0);
    expect(result.stdout).toBe("upgrade-preflight: target 1.35.0: 2 API servers at 1.34.2, 2 kubelets at 1.34.2: ok\n");
    // The etcd gate goes through this node's own etcd member.
    expect(calls(sandbox)).toEqual([readyzGate, podsCall, nodesCall, etcdHealthCall(kubeconfig, node2)]);
  });

  test.each([
    [
      "a two-minor jump",
      "1.36.0",
      {},
      [
        "node prod-nbg1-cp-1: kube-apiserver is at 1.34.2, more than one minor below the target 1.36.0",
        "node prod-nbg1-cp-2: kube-apiserver is at 1.34.2, more than one minor below the target 1.36.0",
        "node prod-nbg1-cp-3: kube-apiserver is at 1.34.2, more than one minor below the target 1.36.0",
        "upgrade to 1.35 first",
      ],
      3,
    ],
    [
      "a downgrade",
      "1.34.1",
      { apiservers: apiservers("1.34.2", "1.34.1", "1.34.1"), kubelets: kubelets({ [node1]: "1.34.1" }) },
      ["node prod-nbg1-cp-1: kube-apiserver is at 1.34.2, newer than the target 1.34.1; downgrades are not supported"],
      1,
    ],
    [
      "a minor downgrade",
      "1.33.6",
      { kubelets: kubelets({ [node1]: "1.33.6" }) },
      ["node prod-nbg1-cp-3: kube-apiserver is at 1.34.2, newer than the target 1.33.6"],
      3,
    ],
    [
      "a kubelet four minors old",
      "1.35.0",
      { kubelets: kubelets({ [node1]: "1.34.2", "prod-workers-old": "1.31.9", "prod-workers-ok": "1.32.0" }) },
      ["node prod-workers-old: kubelet is at 1.31.9, more than three minors older than the target 1.35.0"],
      1,
    ],
    [
      "a kubelet newer than the target",
      "1.35.0",
      { kubelets: kubelets({ [node1]: "1.34.2", "prod-workers-new": "1.35.1" }) },
      ["node prod-workers-new: kubelet is at 1.35.1, newer than the target 1.35.0"],
      1,
    ],
    [
      "an apiserver image without a version tag",
      "1.35.0",
      { apiservers: `${node1} registry.k8s.io/kube-apiserver@sha256:${"ab".repeat(32)}` },
      ["node prod-nbg1-cp-1: cannot read the kube-apiserver version from its image"],
      1,
    ],
    ["no kube-apiserver pod", "1.35.0", { apiservers: "" }, ["no kube-apiserver pod found in kube-system"], 1],
  ])("refuses %s, naming each node and version", (_label, version, cluster, messages, count) => {
    const { sandbox, result } = preflight("preflight-refused", version, cluster);
    expect(result.status).toBe(1);
    expect(result.stdout).toBe("");
    for (const message of messages) expect(result.stderr).toContain(message);
    expect(result.stderr).toContain(`target ${version}: ${count} check(s) failed`);
    expect(result.stderr).toContain("nothing was changed");
    // Only reads and the gates ran.
    expect(calls(sandbox)).toEqual([readyzGate, podsCall, nodesCall, etcdHealthCall(kubeconfig, node1)]);
  });

  test("lists every violation together: two minors up and a kubelet newer than the target", () => {
    const { result } = preflight("preflight-many", "1.36.0", {
      apiservers: apiservers("1.35.0", "1.34.2", "1.35.0"),
      kubelets: kubelets({ [node1]: "1.35.0", "prod-workers-new": "1.36.1" }),
    });
    expect(result.status).toBe(1);
    const violations = result.stderr.split("\n").filter((l) => l.includes("violation:"));
    expect(violations).toEqual([
      expect.stringContaining("node prod-nbg1-cp-2: kube-apiserver is at 1.34.2, more than one minor below"),
      expect.stringContaining("node prod-workers-new: kubelet is at 1.36.1, newer than the target 1.36.0"),
    ]);
    expect(result.stderr).toContain("target 1.36.0: 2 check(s) failed");
  });

  test("unhealthy etcd is a violation; a /readyz that never answers ok fails before reading", () => {
    const etcd = preflight("preflight-etcd", "1.35.0", {}, { env: { FAKE_FAIL: "etcd" } }, ["--timeout", "1"]);
    expect(etcd.result.status).toBe(1);
    expect(etcd.result.stderr).toContain(
      "violation: etcd: endpoint health --cluster in etcd-prod-nbg1-cp-1 did not pass within 1s",
    );
    expect(etcd.result.ms).toBeLessThan(12_000);

    const failures: Record<string, string>[] = [{ FAKE_FAIL: "readyz" }, { FAKE_HANG: "readyz" }];
    for (const env of failures) {
      const readyz = preflight("preflight-readyz", "1.35.0", {}, { env }, ["--timeout", "1"]);
      expect(readyz.result.status).toBe(1);
      expect(readyz.result.stderr).toContain("the API server did not report ready within 1s");
      expect(readyz.result.ms).toBeLessThan(12_000);
      expect(new Set(calls(readyz.sandbox))).toEqual(new Set([readyzGate]));
    }
  });

  test("usage errors exit 2 and run nothing", () => {
    const sandbox = controlPlaneNode("preflight-usage");
    for (const args of [
      [],
      ["--version", "v1.35.0"],
      ["--version", "1.35"],
      ["--version", "1.35.0", "--timeout", "0"],
    ]) {
      const result = runNodeScript(sandbox, "upgrade-preflight.sh", [...args, "--node-name", node1]);
      expect([args, result.status]).toEqual([args, 2]);
    }
    expect(calls(sandbox)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

describe("upgrade-node.sh", () => {
  const to135 = (role: "apply" | "node" | "auto", node = node1) => [
    "--role",
    role,
    "--version",
    "1.35.0",
    "--package-version",
    "1.35.0-1.1",
    "--channel",
    "v1.35",
    "--node-name",
    node,
  ];
  const aptGet = "apt-get -q -o DPkg::Lock::Timeout=120";
  const nodeCall = (node: string) =>
    `${kubectl} get node ${node} -o jsonpath=` +
    '{.status.conditions[?(@.type=="Ready")].status}|{.status.nodeInfo.kubeletVersion}|{.spec.unschedulable}';
  const drainCall = (node: string, timeout = "600") =>
    `${kubectl} drain ${node} --ignore-daemonsets --delete-emptydir-data --timeout=${timeout}s`;
  const kubeadmPackage = [
    `${aptGet} update`,
    "apt-mark unhold kubeadm",
    `${aptGet} install -y --no-install-recommends kubeadm=1.35.0-1.1`,
    "apt-mark hold kubeadm",
    "kubeadm version -o short",
  ];
  const kubeletPackages = [
    "apt-mark unhold kubelet kubectl",
    `${aptGet} install -y --no-install-recommends kubelet=1.35.0-1.1 kubectl=1.35.0-1.1`,
    "apt-mark hold kubelet kubectl",
  ];
  const restart = ["systemctl daemon-reload", "systemctl restart kubelet"];
  const applyCalls = [
    "kubeadm upgrade plan v1.35.0",
    `kubeadm upgrade apply v1.35.0 --yes --patches $ROOT${patchesDir}`,
  ];
  const afterDrain = (node: string) => [
    ...kubeletPackages,
    ...restart,
    nodeCall(node),
    `${kubectl} uncordon ${node}`,
    ...gates(node),
  ];
  const at135 = { packages: "1.35.0", manifest: "v1.35.0", sentinel: "1.35.0-1.1", channel: "v1.35" };

  function expectUpgraded(sandbox: Sandbox): void {
    expect(packages(sandbox)).toEqual({ kubeadm: "1.35.0-1.1", kubelet: "1.35.0-1.1", kubectl: "1.35.0-1.1" });
    expect(held(sandbox)).toEqual(["kubeadm", "kubelet", "kubectl"]);
    expect(manifestTag(sandbox)).toBe("v1.35.0");
    expect(sentinel(sandbox)).toBe("1.35.0-1.1\n");
    expect(mode(at(sandbox, sentinelPath))).toBe("644");
    expect(fs.readFileSync(at(sandbox, sourcesList), "utf8")).toBe(
      `deb [signed-by=${keyring}] https://pkgs.k8s.io/core:/stable:/v1.35/deb/ /\n`,
    );
    expect(mode(at(sandbox, sourcesList))).toBe("644");
    expect(fs.readFileSync(at(sandbox, keyring), "utf8")).toBe("binary keyring\n");
    expect(state(sandbox, "node.kubelet")).toBe("v1.35.0");
    expect(state(sandbox, "node.unschedulable")).toBe("");
  }

  test("role apply: gate, repository, kubeadm, plan, apply, drain, kubelet, restart, Ready, uncordon, sentinel, gate", () => {
    const sandbox = controlPlaneNode("apply");
    const result = runNodeScript(sandbox, "upgrade-node.sh", to135("apply"));
    expectStatus(result, 0);
    expect(result.stderr).toContain(`${node1} upgraded to 1.35.0`);
    expectQuietTerminal(result);
    expect(actions(sandbox)).toEqual([
      ...gates(node1),
      ...kubeadmPackage,
      ...applyCalls,
      drainCall(node1),
      ...afterDrain(node1),
    ]);
    // The sentinel is written after the uncordon and before the last gate.
    expect(fs.readFileSync(path.join(sandbox.capture, "sentinel-seen"), "utf8")).toBe(
      "readyz 1.34.2-1.1\nuncordon 1.34.2-1.1\nreadyz 1.35.0-1.1\n",
    );
    expectUpgraded(sandbox);
    expect(state(sandbox, "cluster-version")).toBe("v1.35.0");
    const logFile = at(sandbox, `${logDir}/upgrade-node.log`);
    expect(mode(logFile)).toBe("600");
    expect(mode(path.dirname(logFile))).toBe("700");
    const log = fs.readFileSync(logFile, "utf8");
    for (const text of ["SUCCESS! Your cluster was upgraded", "Setting up kubelet", "node/prod-nbg1-cp-1 drained"]) {
      expect(log).toContain(text);
    }
    // Package versions are only read, before and after each install.
    for (const query of calls(sandbox).filter((c) => c.startsWith("dpkg-query "))) {
      expect(query).toMatch(/^dpkg-query -W -f=\$\{Version\} (kubeadm|kubelet|kubectl)$/);
    }
  });

  test("role node: kubeadm upgrade node (after role apply elsewhere) instead of plan and apply", () => {
    const sandbox = controlPlaneNode("node", { node: node2, cluster: "v1.35.0" });
    const result = runNodeScript(sandbox, "upgrade-node.sh", to135("node", node2));
    expectStatus(result, 0);
    expectQuietTerminal(result);
    expect(actions(sandbox)).toEqual([
      ...gates(node2),
      ...kubeadmPackage,
      `kubeadm upgrade node --patches $ROOT${patchesDir}`,
      drainCall(node2),
      ...afterDrain(node2),
    ]);
    expectUpgraded(sandbox);
  });

  test("role node before role apply: the manifest stays old, exit 1 before the drain", () => {
    const sandbox = controlPlaneNode("node-early", { node: node2 });
    const result = runNodeScript(sandbox, "upgrade-node.sh", to135("node", node2));
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`upgrade of ${node2} failed at kubeadm upgrade node: after kubeadm upgrade node`);
    expect(result.stderr).toContain("runs 'v1.34.2', want v1.35.0");
    expect(result.stderr).not.toContain("cordoned");
    expect(actions(sandbox).some((c) => c.includes(" drain "))).toBe(false);
  });

  test("a node already at the version only checks the gates and that its Node is at the version, uncordoned", () => {
    // A brand-new cluster at 1.35.0, or a second run after a successful upgrade.
    const sandbox = controlPlaneNode("noop", at135);
    for (const role of ["apply", "node"] as const) {
      resetCalls(sandbox);
      const result = runNodeScript(sandbox, "upgrade-node.sh", to135(role));
      expectStatus(result, 0);
      expect(result.stderr).toContain(`${node1} already at 1.35.0`);
      expectQuietTerminal(result);
      expect(actions(sandbox)).toEqual([...gates(node1), nodeCall(node1)]);
    }
    expect(sentinel(sandbox)).toBe("1.35.0-1.1\n");

    // The same, after a real upgrade: the second run changes nothing.
    const upgraded = controlPlaneNode("noop-after");
    expectStatus(runNodeScript(upgraded, "upgrade-node.sh", to135("apply")), 0);
    resetCalls(upgraded);
    const again = runNodeScript(upgraded, "upgrade-node.sh", to135("apply"));
    expectStatus(again, 0);
    expect(actions(upgraded)).toEqual([...gates(node1), nodeCall(node1)]);
  });

  test("a new cluster before its pod network: a NotReady Node at the version is a warning, not a failure", () => {
    // Pulumi installs the CNI after the upgrade chain, so on a new cluster no Node is Ready yet.
    const sandbox = controlPlaneNode("noop-no-cni", at135);
    setState(sandbox, "node.ready", "False");
    const result = runNodeScript(sandbox, "upgrade-node.sh", to135("apply"));
    expectStatus(result, 0);
    expect(result.stderr).toContain(`warning: ${node1} is not Ready (Ready=False)`);
    expect(result.stderr).toContain(`${node1} already at 1.35.0`);
    expect(actions(sandbox)).toEqual([...gates(node1), nodeCall(node1)]);
  });

  test("a node at the version that is cordoned, runs an old kubelet or is unhealthy fails the check, changing nothing", () => {
    const cordoned = controlPlaneNode("noop-cordoned", at135);
    setState(cordoned, "node.unschedulable", "true");
    const result = runNodeScript(cordoned, "upgrade-node.sh", to135("node"));
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(
      `upgrade of ${node1} failed at already-done check: ${node1} is at 1.35.0 but cordoned`,
    );
    expect(actions(cordoned)).toEqual([...gates(node1), nodeCall(node1)]);

    // The packages say 1.35.0 but the kubelet still runs 1.34.2 (never restarted).
    const stale = controlPlaneNode("noop-stale-kubelet", at135);
    setState(stale, "node.kubelet", "v1.34.2");
    const kubelet = runNodeScript(stale, "upgrade-node.sh", [...to135("node"), "--timeout", "1"]);
    expect(kubelet.status).toBe(1);
    expect(kubelet.stderr).toContain(
      `upgrade of ${node1} failed at already-done check: ${node1} has the 1.35.0 packages but its Node does not report kubelet v1.35.0`,
    );
    expect(actions(stale).filter((c) => !c.includes(" get node "))).toEqual(gates(node1));

    const unhealthy = controlPlaneNode("noop-etcd", at135);
    const etcd = runNodeScript(unhealthy, "upgrade-node.sh", [...to135("node"), "--timeout", "1"], {
      env: { FAKE_FAIL: "etcd" },
    });
    expect(etcd.status).toBe(1);
    expect(etcd.stderr).toContain(`upgrade of ${node1} failed at already-done check: etcd endpoint health`);
    expect(etcd.ms).toBeLessThan(12_000);
  });

  test("the first gate fails: nothing changes", () => {
    const sandbox = controlPlaneNode("gate");
    const result = runNodeScript(sandbox, "upgrade-node.sh", [...to135("apply"), "--timeout", "1"], {
      env: { FAKE_FAIL: "readyz" },
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(
      `upgrade of ${node1} failed at gate: the API server did not report ready within 1s`,
    );
    expect(new Set(actions(sandbox))).toEqual(new Set([readyzGate]));
    expect(packages(sandbox).kubeadm).toBe("1.34.2-1.1");
    expect(fs.readFileSync(at(sandbox, sourcesList), "utf8")).toContain("/v1.34/");
  });

  test("a drain failure exits 1 naming the node and 'drain'; kubelet is not touched", () => {
    const sandbox = controlPlaneNode("drain", { node: node2, cluster: "v1.35.0" });
    const result = runNodeScript(sandbox, "upgrade-node.sh", [...to135("node", node2), "--drain-timeout", "30"], {
      env: { FAKE_FAIL: "drain" },
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`upgrade of ${node2} failed at drain: kubectl drain ${node2} failed`);
    expect(result.stderr).toContain(`${node2} is left cordoned on purpose`);
    expect(result.stderr).toContain(`kubectl uncordon ${node2}`);
    expect(result.stdout).toBe("");
    expect(actions(sandbox)).toEqual([
      ...gates(node2),
      ...kubeadmPackage,
      `kubeadm upgrade node --patches $ROOT${patchesDir}`,
      drainCall(node2, "30"),
    ]);
    expect(packages(sandbox)).toEqual({ kubeadm: "1.35.0-1.1", kubelet: "1.34.2-1.1", kubectl: "1.34.2-1.1" });
    expect(held(sandbox)).toEqual(["kubeadm", "kubelet", "kubectl"]);
    expect(sentinel(sandbox)).toBe("1.34.2-1.1\n");
  });

  test.each([
    ["the kubelet package", "install-kubelet", "kubelet package: apt-get install kubelet=1.35.0-1.1"],
    ["the kubelet restart", "restart", "kubelet restart: systemctl restart kubelet failed"],
    ["the Node not becoming Ready", "kubelet-ready", "node ready: prod-nbg1-cp-1 was not Ready with kubelet v1.35.0"],
    ["the uncordon", "uncordon", "uncordon: kubectl uncordon prod-nbg1-cp-1 failed"],
  ])(
    "a failure after the drain (%s) leaves the node cordoned and says so; a re-run completes without kubeadm upgrade apply",
    (_label, failure, message) => {
      const sandbox = controlPlaneNode("after-drain");
      const failed = runNodeScript(sandbox, "upgrade-node.sh", [...to135("apply"), "--timeout", "1"], {
        env: { FAKE_FAIL: failure },
      });
      expect(failed.status).toBe(1);
      expect(failed.stderr).toContain(`upgrade of ${node1} failed at ${message}`);
      expect(failed.stderr).toContain(
        `${node1} is left cordoned on purpose: fix the cause, then run the same command again (pulumi up)`,
      );
      expect(failed.ms).toBeLessThan(12_000);
      expect(state(sandbox, "node.unschedulable")).toBe("true");
      expect(sentinel(sandbox)).toBe("1.34.2-1.1\n");
      expect(manifestTag(sandbox)).toBe("v1.35.0");

      // Fixed: the same command resumes. The control plane is not upgraded again.
      resetCalls(sandbox);
      const rerun = runNodeScript(sandbox, "upgrade-node.sh", to135("apply"));
      expectStatus(rerun, 0);
      expect(rerun.stderr).toContain("kubeadm upgrade apply skipped");
      const log = actions(sandbox);
      expect(log.filter((c) => c.startsWith("kubeadm upgrade"))).toEqual([]);
      expect(log).toContain(drainCall(node1));
      expect(log.slice(-4)).toEqual([nodeCall(node1), `${kubectl} uncordon ${node1}`, ...gates(node1)]);
      expectUpgraded(sandbox);
    },
  );

  test("a failing kubeadm upgrade apply stops before the drain; the re-run applies again", () => {
    const sandbox = controlPlaneNode("apply-fails");
    const failed = runNodeScript(sandbox, "upgrade-node.sh", to135("apply"), { env: { FAKE_FAIL: "apply" } });
    expect(failed.status).toBe(1);
    expect(failed.stderr).toContain(
      `upgrade of ${node1} failed at kubeadm upgrade apply: kubeadm upgrade apply v1.35.0 failed`,
    );
    expect(failed.stderr).not.toContain("cordoned");
    expect(failed.stderr).not.toContain("FATAL");
    expect(actions(sandbox).some((c) => c.includes(" drain "))).toBe(false);
    expect(manifestTag(sandbox)).toBe("v1.34.2");

    resetCalls(sandbox);
    expectStatus(runNodeScript(sandbox, "upgrade-node.sh", to135("apply")), 0);
    expect(actions(sandbox)).toEqual([
      ...gates(node1),
      `${aptGet} update`,
      "apt-mark hold kubeadm",
      "kubeadm version -o short",
      ...applyCalls,
      drainCall(node1),
      ...afterDrain(node1),
    ]);
    expectUpgraded(sandbox);
  });

  describe("role auto: apply or node as the cluster's kubeadm configuration says", () => {
    const configCall = `${kubectl} -n kube-system get configmap kubeadm-config -o jsonpath={.data.ClusterConfiguration}`;
    const nodeUpgrade = `kubeadm upgrade node --patches $ROOT${patchesDir}`;
    /** Nothing changed: only reads ran, and the packages, the apt source and the manifest are as before. */
    function expectUnchanged(sandbox: Sandbox): void {
      for (const c of actions(sandbox))
        expect([readyzGate, etcdHealthCall(kubeconfig, node2), configCall]).toContain(c);
      expect(packages(sandbox)).toEqual({ kubeadm: "1.34.2-1.1", kubelet: "1.34.2-1.1", kubectl: "1.34.2-1.1" });
      expect(fs.readFileSync(at(sandbox, sourcesList), "utf8")).toContain("/v1.34/");
      expect(manifestTag(sandbox)).toBe("v1.34.2");
      expect(sentinel(sandbox)).toBe("1.34.2-1.1\n");
      expect(state(sandbox, "node.unschedulable")).toBe("");
    }

    test("a cluster below the target: this node is the first of the upgrade, whichever it is, and runs kubeadm upgrade apply", () => {
      // cp-2 goes first (cp-1 is down or being replaced): the role follows the cluster, not the name.
      const sandbox = controlPlaneNode("auto-apply", { node: node2 });
      const result = runNodeScript(sandbox, "upgrade-node.sh", to135("auto", node2));
      expectStatus(result, 0);
      expect(result.stderr).toContain(
        `role auto: the cluster's kubeadm configuration (ConfigMap kube-system/kubeadm-config) is at v1.34.2, below 1.35.0: no node has applied this upgrade yet; ${node2} runs kubeadm upgrade apply`,
      );
      expectQuietTerminal(result);
      expect(actions(sandbox)).toEqual([
        ...gates(node2),
        configCall,
        ...kubeadmPackage,
        ...applyCalls,
        drainCall(node2),
        ...afterDrain(node2),
      ]);
      expectUpgraded(sandbox);
      expect(state(sandbox, "cluster-version")).toBe("v1.35.0");
    });

    test("a cluster at the target: kubeadm upgrade apply ran on another node; this one runs kubeadm upgrade node", () => {
      const sandbox = controlPlaneNode("auto-node", { cluster: "v1.35.0" });
      const result = runNodeScript(sandbox, "upgrade-node.sh", to135("auto"));
      expectStatus(result, 0);
      expect(result.stderr).toContain(
        `role auto: the cluster's kubeadm configuration (ConfigMap kube-system/kubeadm-config) is at v1.35.0, the target: kubeadm upgrade apply ran already; ${node1} runs kubeadm upgrade node`,
      );
      expectQuietTerminal(result);
      expect(actions(sandbox)).toEqual([
        ...gates(node1),
        configCall,
        ...kubeadmPackage,
        nodeUpgrade,
        drainCall(node1),
        ...afterDrain(node1),
      ]);
      expectUpgraded(sandbox);
    });

    test("a cluster above the target is refused, naming both versions; nothing changes", () => {
      const sandbox = controlPlaneNode("auto-above", { node: node2, cluster: "v1.36.0" });
      const result = runNodeScript(sandbox, "upgrade-node.sh", to135("auto", node2));
      expect(result.status).toBe(1);
      expect(result.stderr).toContain(
        `upgrade of ${node2} failed at role: the cluster's kubeadm configuration (ConfigMap kube-system/kubeadm-config) is at v1.36.0, newer than the target 1.35.0; downgrades are not supported; nothing was changed`,
      );
      expect(actions(sandbox)).toEqual([...gates(node2), configCall]);
      expectUnchanged(sandbox);
    });

    test.each([
      ["an API server that refuses the read", { env: { FAKE_FAIL: "kubeadm-config" } }, undefined, "cannot read"],
      ["a read that hangs", { env: { FAKE_HANG: "kubeadm-config" } }, undefined, "cannot read"],
      ["no ConfigMap kubeadm-config", {}, null, "cannot read"],
      ["a ConfigMap without the ClusterConfiguration key", {}, "", "holds no ClusterConfiguration"],
      [
        "a ClusterConfiguration without kubernetesVersion",
        {},
        clusterConfiguration.replace("kubernetesVersion: @VERSION@\n", ""),
        "holds no ClusterConfiguration",
      ],
      [
        "a kubernetesVersion that is not x.y.z",
        {},
        clusterConfiguration.replace("@VERSION@", "stable-1"),
        "holds no ClusterConfiguration",
      ],
      [
        "a kubernetesVersion only inside another key",
        {},
        clusterConfiguration.replace("kubernetesVersion: @VERSION@\n", "extra:\n  kubernetesVersion: @VERSION@\n"),
        "holds no ClusterConfiguration",
      ],
      [
        "another kind of document",
        {},
        clusterConfiguration.replace("kind: ClusterConfiguration", "kind: InitConfiguration"),
        "holds no ClusterConfiguration",
      ],
    ] as [string, RunOptions, string | null | undefined, string][])(
      "unreadable kubeadm-config (%s): refused, the role not guessed, nothing changed",
      (_label, options, content, message) => {
        const sandbox = controlPlaneNode("auto-unreadable", { node: node2 });
        if (content === null) fs.rmSync(path.join(sandbox.capture, "kubeadm-config"));
        else if (content !== undefined) setState(sandbox, "kubeadm-config", content);
        const result = runNodeScript(sandbox, "upgrade-node.sh", [...to135("auto", node2), "--timeout", "1"], options);
        expect(result.status).toBe(1);
        expect(result.stderr).toContain(`upgrade of ${node2} failed at role: `);
        expect(result.stderr).toContain(message);
        expect(result.stderr).toContain("the role is not guessed and nothing was changed");
        expect(result.stderr).not.toContain("role auto:");
        expect(result.ms).toBeLessThan(12_000);
        expect(actions(sandbox)).toContain(configCall);
        expectUnchanged(sandbox);
      },
    );

    test("a re-run after a successful apply on the same node: already done; after a later failure: kubeadm skipped", () => {
      // The whole upgrade went through: the re-run only checks, and reads no configuration.
      const done = controlPlaneNode("auto-rerun-done");
      expectStatus(runNodeScript(done, "upgrade-node.sh", to135("auto")), 0);
      expect(state(done, "cluster-version")).toBe("v1.35.0");
      resetCalls(done);
      const again = runNodeScript(done, "upgrade-node.sh", to135("auto"));
      expectStatus(again, 0);
      expect(again.stderr).toContain(`${node1} already at 1.35.0`);
      expect(actions(done)).toEqual([...gates(node1), nodeCall(node1)]);

      // apply went through, the uncordon failed: the cluster and this node's manifest are at the
      // target, so the re-run is role node and skips kubeadm, as role apply's re-run does.
      const sandbox = controlPlaneNode("auto-rerun");
      const failed = runNodeScript(sandbox, "upgrade-node.sh", [...to135("auto"), "--timeout", "1"], {
        env: { FAKE_FAIL: "uncordon" },
      });
      expect(failed.status).toBe(1);
      expect(failed.stderr).toContain(`upgrade of ${node1} failed at uncordon`);
      expect(state(sandbox, "cluster-version")).toBe("v1.35.0");
      expect(manifestTag(sandbox)).toBe("v1.35.0");
      resetCalls(sandbox);
      const rerun = runNodeScript(sandbox, "upgrade-node.sh", to135("auto"));
      expectStatus(rerun, 0);
      expect(rerun.stderr).toContain(`${node1} runs kubeadm upgrade node`);
      expect(rerun.stderr).toContain("the kube-apiserver manifest already runs v1.35.0; kubeadm upgrade node skipped");
      expect(actions(sandbox)).toEqual([
        ...gates(node1),
        configCall,
        `${aptGet} update`,
        "apt-mark hold kubeadm",
        "kubeadm version -o short",
        drainCall(node1),
        "apt-mark hold kubelet kubectl",
        ...restart,
        nodeCall(node1),
        `${kubectl} uncordon ${node1}`,
        ...gates(node1),
      ]);
      expectUpgraded(sandbox);
    });

    test("an apply that upgraded this node's control plane but stopped before upload-config runs again on the re-run", () => {
      const sandbox = controlPlaneNode("auto-partial", { node: node2 });
      const failed = runNodeScript(sandbox, "upgrade-node.sh", to135("auto", node2), {
        env: { FAKE_FAIL: "upload-config" },
      });
      expect(failed.status).toBe(1);
      expect(failed.stderr).toContain(`upgrade of ${node2} failed at kubeadm upgrade apply`);
      // This node's control plane is at the target; the cluster's configuration is not.
      expect(manifestTag(sandbox)).toBe("v1.35.0");
      expect(state(sandbox, "cluster-version")).toBe("v1.34.2");

      resetCalls(sandbox);
      const rerun = runNodeScript(sandbox, "upgrade-node.sh", to135("auto", node2));
      expectStatus(rerun, 0);
      expect(rerun.stderr).toContain(`${node2} runs kubeadm upgrade apply`);
      expect(rerun.stderr).toContain("an earlier kubeadm upgrade apply did not finish; it runs again");
      expect(actions(sandbox)).toEqual([
        ...gates(node2),
        configCall,
        `${aptGet} update`,
        "apt-mark hold kubeadm",
        "kubeadm version -o short",
        ...applyCalls,
        drainCall(node2),
        ...afterDrain(node2),
      ]);
      expect(state(sandbox, "cluster-version")).toBe("v1.35.0");
      expectUpgraded(sandbox);
    });
  });

  describe("kube-vip, which holds the admin.conf kubeadm upgrade renews", () => {
    const kubeVipRestart = [crictlCall("kube-vip"), crictlCall("kube-vip")];
    const fingerprint = (sandbox: Sandbox) =>
      fs.existsSync(at(sandbox, kubeVipSentinel)) ? fs.readFileSync(at(sandbox, kubeVipSentinel), "utf8") : undefined;

    test.each([
      ["apply", node1, "v1.34.2", applyCalls],
      ["node", node2, "v1.35.0", [`kubeadm upgrade node --patches $ROOT${patchesDir}`]],
    ] as const)(
      "role %s: restarted right after kubeadm upgrade, then the gates, before the drain",
      (role, node, cluster, upgrade) => {
        const sandbox = controlPlaneNode(`kube-vip-${role}`, { node, cluster, kubeVip: true });
        const result = runNodeScript(sandbox, "upgrade-node.sh", to135(role, node));
        expectStatus(result, 0);
        expectQuietTerminal(result);
        expect(actions(sandbox)).toEqual([
          ...gates(node),
          ...kubeadmPackage,
          ...upgrade,
          ...kubeVipRestart,
          ...gates(node),
          kubeVipLeaseCall(kubeconfig),
          drainCall(node),
          ...afterDrain(node),
        ]);
        // Its manifest was out while waiting for it to stop, back while waiting for it to run.
        expect(crictlSeen(sandbox)).toEqual(["kube-vip absent", "kube-vip present"]);
        expect(fs.readFileSync(at(sandbox, kubeVipManifestPath), "utf8")).toBe(kubeVipManifest);
        expect(fs.existsSync(at(sandbox, "/etc/kubernetes/manifests-parked"))).toBe(false);
        expect(fs.readFileSync(at(sandbox, adminConf), "utf8")).toBe(adminKubeconfig("renewed1"));
        expect(fingerprint(sandbox)).toMatch(/^sha256:[0-9a-f]{64}\n$/);
        expectUpgraded(sandbox);
      },
    );

    test("a kube-vip that never comes back: exit 1 naming the node and step before the drain, manifest restored; the re-run restarts it", () => {
      const sandbox = controlPlaneNode("kube-vip-never-back", { kubeVip: true });
      const failed = runNodeScript(sandbox, "upgrade-node.sh", [...to135("apply"), "--timeout", "1"], {
        env: { FAKE_NEVER_BACK: "kube-vip" },
      });
      expect(failed.status).toBe(1);
      expect(failed.stderr).toContain(
        `upgrade of ${node1} failed at kube-vip restart: starting kube-vip: no container ran within 1s`,
      );
      expect(failed.stderr).not.toContain("cordoned");
      expect(failed.ms).toBeLessThan(12_000);
      expect(fs.readFileSync(at(sandbox, kubeVipManifestPath), "utf8")).toBe(kubeVipManifest);
      expect(actions(sandbox).some((c) => c.includes(" drain "))).toBe(false);
      expect(fingerprint(sandbox)).toBeUndefined();
      expect(sentinel(sandbox)).toBe("1.34.2-1.1\n");

      // Fixed: kubeadm upgrade apply is not run again, kube-vip is restarted, the rest follows.
      resetCalls(sandbox);
      const rerun = runNodeScript(sandbox, "upgrade-node.sh", to135("apply"));
      expectStatus(rerun, 0);
      expect(rerun.stderr).toContain("kubeadm upgrade apply skipped");
      expect(actions(sandbox)).toEqual([
        ...gates(node1),
        `${aptGet} update`,
        "apt-mark hold kubeadm",
        "kubeadm version -o short",
        ...kubeVipRestart,
        ...gates(node1),
        kubeVipLeaseCall(kubeconfig),
        drainCall(node1),
        ...afterDrain(node1),
      ]);
      expectUpgraded(sandbox);
    });

    test("a kube-vip that never stops: its manifest is put back, exit 1 naming the node and step", () => {
      const sandbox = controlPlaneNode("kube-vip-never-gone", { kubeVip: true });
      const failed = runNodeScript(sandbox, "upgrade-node.sh", [...to135("apply"), "--timeout", "1"], {
        env: { FAKE_NEVER_GONE: "kube-vip" },
      });
      expect(failed.status).toBe(1);
      expect(failed.stderr).toContain(
        `upgrade of ${node1} failed at kube-vip restart: stopping kube-vip: its container still runs 1s after its manifest was moved out`,
      );
      expect(failed.stderr).toContain("put the manifest of kube-vip back");
      expect(fs.readFileSync(at(sandbox, kubeVipManifestPath), "utf8")).toBe(kubeVipManifest);
      expect(actions(sandbox).some((c) => c.includes(" drain "))).toBe(false);
    });

    test("a gate that fails after the kube-vip restart stops before the drain; no fingerprint", () => {
      const sandbox = controlPlaneNode("kube-vip-gate", { kubeVip: true });
      // etcd's health passes once (the first gate), then fails.
      fs.writeFileSync(
        path.join(sandbox.fakeBin, "kubectl"),
        fs
          .readFileSync(path.join(sandbox.fakeBin, "kubectl"), "utf8")
          .replace("if fails etcd;", "if fails etcd || (($(count etcd) > 1));"),
      );
      const failed = runNodeScript(sandbox, "upgrade-node.sh", [...to135("apply"), "--timeout", "1"]);
      expect(failed.status).toBe(1);
      expect(failed.stderr).toContain(`upgrade of ${node1} failed at kube-vip restart: etcd endpoint health --cluster`);
      expect(actions(sandbox).some((c) => c.includes(" drain "))).toBe(false);
      expect(fingerprint(sandbox)).toBeUndefined();
    });

    test("a re-run after a later failure does not restart kube-vip again", () => {
      const sandbox = controlPlaneNode("kube-vip-rerun", { kubeVip: true });
      const failed = runNodeScript(sandbox, "upgrade-node.sh", [...to135("apply"), "--timeout", "1"], {
        env: { FAKE_FAIL: "uncordon" },
      });
      expect(failed.status).toBe(1);
      expect(actions(sandbox)).toContain(crictlCall("kube-vip"));
      resetCalls(sandbox);
      const rerun = runNodeScript(sandbox, "upgrade-node.sh", to135("apply"));
      expectStatus(rerun, 0);
      expect(rerun.stderr).toContain("kube-vip was restarted with the current admin.conf already");
      expect(actions(sandbox).some((c) => c.startsWith("crictl"))).toBe(false);
      expectUpgraded(sandbox);
    });

    test("a node without the kube-vip manifest is upgraded without it; a node at the version is left alone", () => {
      const sandbox = controlPlaneNode("kube-vip-none");
      const result = runNodeScript(sandbox, "upgrade-node.sh", to135("apply"));
      expectStatus(result, 0);
      expect(result.stderr).toContain("no kube-vip manifest on this node: no kube-vip to restart");
      expect(actions(sandbox).some((c) => c.startsWith("crictl"))).toBe(false);
      expect(fingerprint(sandbox)).toBeUndefined();

      const done = controlPlaneNode("kube-vip-noop", { ...at135, kubeVip: true });
      expectStatus(runNodeScript(done, "upgrade-node.sh", to135("apply")), 0);
      expect(actions(done)).toEqual([...gates(node1), nodeCall(node1)]);
    });
  });

  test("an unexpected failure (set -e) is reported with the node and the step", () => {
    // The sentinel's directory is a file: the upgrade works up to the sentinel, which cannot be written.
    const sandbox = controlPlaneNode("unexpected");
    fs.rmSync(at(sandbox, "var/lib/kubernetes-node"), { recursive: true });
    fs.writeFileSync(at(sandbox, "var/lib/kubernetes-node"), "not a directory\n");
    const result = runNodeScript(sandbox, "upgrade-node.sh", to135("apply"));
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`error: upgrade of ${node1} failed at sentinel (exit status 1)`);
    expect(result.stderr).not.toContain("cordoned");
    expect(state(sandbox, "node.unschedulable")).toBe("");
    expect(actions(sandbox).slice(-1)).toEqual([`${kubectl} uncordon ${node1}`]);
  });

  test("a missing patches directory or keyring fails before anything changes", () => {
    const noPatches = controlPlaneNode("no-patches");
    fs.rmSync(at(noPatches, patchesDir), { recursive: true });
    const patches = runNodeScript(noPatches, "upgrade-node.sh", to135("apply"));
    expect(patches.status).toBe(1);
    expect(patches.stderr).toContain(`the kubeadm patches directory ${patchesDir} does not exist`);
    expect(actions(noPatches)).toEqual([]);

    const noKeyring = controlPlaneNode("no-keyring");
    fs.rmSync(at(noKeyring, keyring));
    const key = runNodeScript(noKeyring, "upgrade-node.sh", to135("apply"));
    expect(key.status).toBe(1);
    expect(key.stderr).toContain(`upgrade of ${node1} failed at apt repository: the pkgs.k8s.io keyring ${keyring}`);
    expect(actions(noKeyring)).toEqual(gates(node1));
    expect(fs.readFileSync(at(noKeyring, sourcesList), "utf8")).toContain("/v1.34/");
  });

  test.each([
    ["a channel that does not match the minor", { 7: "v1.34" }, "--channel must be v1.35 for 1.35.0, got 'v1.34'"],
    ["a package version of another version", { 5: "1.34.2-1.1" }, "--package-version must look like 1.35.0-1.1"],
    ["a bad role", { 1: "init" }, "--role must be apply, node or auto, got 'init'"],
    ["a v-prefixed version", { 3: "v1.35.0" }, "--version must look like 1.35.0"],
    ["an uppercase node name", { 9: "CP-1" }, "--node-name must be a lowercase DNS name"],
  ])("usage error: %s exits 2 and runs nothing", (_label, replace, message) => {
    const sandbox = controlPlaneNode("usage");
    const args = to135("apply").map((a, i) => (replace as Record<number, string>)[i] ?? a);
    const result = runNodeScript(sandbox, "upgrade-node.sh", args);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(message);
    expect(calls(sandbox)).toEqual([]);
  });

  test("usage error: a relative --patches, a zero --drain-timeout, a bad --timeout, a missing --node-name", () => {
    const sandbox = controlPlaneNode("usage-more");
    for (const extra of [
      ["--patches", "kubeadm-patches"],
      ["--drain-timeout", "0"],
      ["--timeout", "x"],
    ]) {
      expect(runNodeScript(sandbox, "upgrade-node.sh", [...to135("apply"), ...extra]).status).toBe(2);
    }
    expect(runNodeScript(sandbox, "upgrade-node.sh", to135("apply").slice(0, 8)).status).toBe(2);
    expect(calls(sandbox)).toEqual([]);
  });
});
