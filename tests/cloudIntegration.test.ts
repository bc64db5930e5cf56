/**
 * The Hetzner cloud integration: the cloud controller manager and the CSI driver as pinned Helm
 * releases through the cluster's provider, their token Secrets, and their values checked against
 * the charts' own files (vendored under tests/fixtures/charts/, see its README).
 *
 * What the mocks cannot prove: that Helm renders these values into working pods. The values are
 * therefore checked against the charts' templates (every path set is read by a template) and,
 * for the CSI chart, its values.schema.json.
 */
import * as fs from "node:fs";
import * as path from "node:path";
// ajv 6 (hoisted from the lint toolchain). The CSI schema declares draft 2020-12 but uses only
// keywords with the same meaning in draft-07, which a test below keeps true.
import Ajv from "ajv";
import YAML from "yaml";
import { cloudControllerValues, hccmSecret } from "../components/addons/cloudController";
import { csiSecret, csiValues } from "../components/addons/csi";
import { parseConfig } from "../components/config";
import { versions } from "../components/versions";
import { loadStackConfig } from "../tools/offline/stackConfig";
import { byType, one, runStack } from "./support/program";

const charts = path.join(__dirname, "fixtures", "charts");
const hccmChart = path.join(charts, `hcloud-cloud-controller-manager-${versions.hcloudCloudControllerManagerChart}`);
const csiChart = path.join(charts, `hcloud-csi-${versions.hcloudCsiChart}`);
const release = "kubernetes:helm.sh/v3:Release";
const secretType = "kubernetes:core/v1:Secret";
const cfg = parseConfig(loadStackConfig("prod"));

/** Every path to a leaf (or a list) of a values object: ["networking", "enabled"], ... */
function leafPaths(value: unknown, prefix: string[] = []): string[][] {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    return Object.entries(value).flatMap(([k, v]) => leafPaths(v, [...prefix, k]));
  }
  return [prefix];
}

function templates(dir: string): string {
  const files = fs.readdirSync(path.join(dir, "templates"), { recursive: true, encoding: "utf8" });
  return files
    .filter((f) => f.endsWith(".yaml"))
    .map((f) => fs.readFileSync(path.join(dir, "templates", f), "utf8"))
    .join("\n");
}

/**
 * The paths of `values` no template reads: a path is read when a template names `.Values.<p>`
 * for the path or one of its prefixes as a whole (`range $k, $v := $.Values.env` reads every
 * env entry; `.Values.networking` followed by `.enabled` does not read `networking.clusterCIDR`).
 */
function unreadPaths(values: Record<string, unknown>, text: string): string[] {
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return leafPaths(values)
    .filter(
      (p) => !p.some((_, i) => new RegExp(`\\.Values\\.${escape(p.slice(0, i + 1).join("."))}(?![\\w.])`).test(text)),
    )
    .map((p) => p.join("."));
}

describe("chart values against the vendored charts", () => {
  test("every value set for the cloud controller is read by its chart's templates", () => {
    const values = cloudControllerValues(cfg);
    expect(unreadPaths(values, templates(hccmChart))).toEqual([]);
    // The Secret keys are the ones the chart's own defaults read (values.yaml: env.HCLOUD_TOKEN,
    // networking.network).
    const defaults = YAML.parse(fs.readFileSync(path.join(hccmChart, "values.yaml"), "utf8")) as {
      env: { HCLOUD_TOKEN: unknown };
      networking: { network: unknown };
    };
    expect(values).toMatchObject({ env: { HCLOUD_TOKEN: defaults.env.HCLOUD_TOKEN } });
    expect(values).toMatchObject({ networking: { network: defaults.networking.network } });
    expect(defaults.env.HCLOUD_TOKEN).toEqual({ valueFrom: { secretKeyRef: { name: hccmSecret.name, key: "token" } } });
  });

  test("a value no template reads is found (the check is not vacuous)", () => {
    expect(unreadPaths({ networking: { enabled: true, clustrCIDR: "x" } }, templates(hccmChart))).toEqual([
      "networking.clustrCIDR",
    ]);
    expect(unreadPaths({ controller: { hcloudVolumeLocation: "x" } }, templates(csiChart))).toEqual([
      "controller.hcloudVolumeLocation",
    ]);
  });

  test("every value set for the CSI driver is read by its templates and passes values.schema.json", () => {
    const values = csiValues(cfg);
    expect(unreadPaths(values, templates(csiChart))).toEqual([]);
    const schema = JSON.parse(fs.readFileSync(path.join(csiChart, "values.schema.json"), "utf8")) as Record<
      string,
      unknown
    >;
    const { $schema, ...body } = schema;
    expect($schema).toBe("https://json-schema.org/draft/2020-12/schema");
    const keywords = new Set(JSON.stringify(body).match(/"(\$[a-z]+|[a-zA-Z]+)":/g));
    // Only keywords draft-07 (ajv 6) reads the same way; "properties" values are property names.
    for (const k of ["$defs", "prefixItems", "unevaluatedProperties", "$dynamicRef", "dependentSchemas"]) {
      expect(keywords.has(`"${k}":`)).toBe(false);
    }
    const validate = new Ajv({ allErrors: true }).compile(body);
    expect([validate(values), validate.errors]).toEqual([true, null]);
    // It does reject a wrongly typed value.
    expect(validate({ storageClasses: [{ name: "x", defaultStorageClass: "yes" }] })).toBe(false);
    expect(values).toMatchObject({
      controller: { hcloudToken: { existingSecret: { name: csiSecret.name, key: "token" } } },
      storageClasses: [{ name: "hcloud-volumes", defaultStorageClass: true, reclaimPolicy: "Retain" }],
    });
    expect(values).toMatchObject({ controller: { hcloudVolumeDefaultLocation: "nbg1" } });
  });
});

describe("the releases in the program's graph", () => {
  test("both releases are pinned, go through the cluster's provider, after the pod network", async () => {
    const run = await runStack();
    const [cni] = byType(run, release).filter((r) => r.name === "cni-cilium");
    const hccm = one(run, "cloud-controller-hcloud-cloud-controller-manager");
    const csi = one(run, "csi-hcloud-csi");
    expect(hccm.inputs).toMatchObject({
      chart: "hcloud-cloud-controller-manager",
      version: "1.35.0",
      namespace: "kube-system",
      repositoryOpts: { repo: "https://charts.hetzner.cloud" },
      values: cloudControllerValues(cfg),
    });
    expect(csi.inputs).toMatchObject({ chart: "hcloud-csi", version: "2.22.1", values: csiValues(cfg) });
    expect(hccm.provider).toBe(cni.provider);
    expect(csi.provider).toBe(cni.provider);
    expect(hccm.provider).toMatch(/\$pulumi:providers:kubernetes::access-provider$/);
    const hccmSecretRes = one(run, "cloud-controller-token");
    const csiSecretRes = one(run, "csi-token");
    expect(hccm.dependsOn).toEqual(expect.arrayContaining([cni.urn, hccmSecretRes.urn]));
    expect(csi.dependsOn).toEqual(expect.arrayContaining([hccm.urn, csiSecretRes.urn]));
    // Monitoring installs beside the controller: its atomic wait outlasts the controller's
    // (index.ts; tests/monitoring.test.ts), and the bring-up's critical path stays short.
    expect(one(run, "monitoring-kube-prometheus-stack").dependsOn).not.toContain(hccm.urn);
    // The Secrets the charts read (names and keys as the values name them), as Pulumi secrets.
    expect(hccmSecretRes.inputs).toMatchObject({
      metadata: { name: "hcloud", namespace: "kube-system" },
      stringData: "[secret]",
    });
    expect(csiSecretRes.inputs).toMatchObject({
      metadata: { name: "hcloud-csi", namespace: "kube-system" },
      stringData: "[secret]",
    });
    expect(hccmSecretRes.revealedInputs.stringData).toEqual({
      token: expect.stringContaining("placeholder for hcloud:token"),
      network: expect.stringMatching(/\S/),
    });
    // The network id is the cluster network's.
    expect(hccmSecretRes.dependsOn).toContain(byType(run, "hcloud:index/network:Network")[0].urn);
    expect(csiSecretRes.revealedInputs.stringData).toEqual({
      token: expect.stringContaining("placeholder for hcloud:token"),
    });
  });

  test("hcloudCloudToken replaces hcloud:token, and its value reaches only the two Secrets", async () => {
    const token = "Q".repeat(64);
    const run = await runStack({ hcloudCloudToken: token });
    for (const name of ["cloud-controller-token", "csi-token"]) {
      expect(one(run, name).revealedInputs.stringData).toMatchObject({ token });
    }
    const plain = JSON.stringify([run.resources.map((r) => r.inputs), run.outputs]);
    expect(plain).not.toContain(token);
    const revealed = run.resources.filter((r) => JSON.stringify(r.revealedInputs).includes(token));
    expect(revealed.map((r) => r.name).sort()).toEqual(["cloud-controller-token", "csi-token"]);
  });

  test("switched off, neither release nor Secret exists; monitoring then follows the pod network", async () => {
    const run = await runStack({ cloudControllerManager: false, csiDriver: false });
    expect(run.resources.filter((r) => /^(cloud-controller|csi)(-|$)/.test(r.name))).toEqual([]);
    expect(byType(run, release).map((r) => r.name)).toEqual(["cni-cilium", "monitoring-kube-prometheus-stack"]);
    expect(one(run, "monitoring-kube-prometheus-stack").dependsOn).toContain(one(run, "cni-cilium").urn);
    const csiOnly = await runStack({ cloudControllerManager: false });
    expect(one(csiOnly, "csi-hcloud-csi").dependsOn).toContain(one(csiOnly, "cni-cilium").urn);
    expect(byType(csiOnly, secretType).map((r) => r.name)).not.toContain("cloud-controller-token");
  });
});
