/**
 * The recorded node commands (components/node/nodeScripts.ts recordedWork), run by real bash as a
 * node's shell runs them: `create` does the work and records it, `update` does the work only when
 * the node's record holds another digest. The record directory is moved under a temporary root:
 * the texts are the program's own, with that one absolute path rewritten.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  commandRecordsDir,
  recordCheckOf,
  recordedDigestOf,
  recordedWork,
  recordDigest,
} from "../components/node/nodeScripts";

let root: string;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "recorded-"));
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

const records = () => path.join(root, "records");
const runs = () => path.join(root, "runs");
/** Runs a command text with bash -c, as the remote shell runs it, the record directory under `root`. */
function run(text: string, stdin = "") {
  const moved = text.split(commandRecordsDir).join(records());
  const r = spawnSync("bash", ["-c", moved], { input: stdin, encoding: "utf8", timeout: 10_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
/** Work that appends one line per run, so a test counts how often it ran. */
const work = (label: string) => `echo ${label} >> ${runs()} # the work, ${label}`;
const ranCount = () => (fs.existsSync(runs()) ? fs.readFileSync(runs(), "utf8").trim().split("\n").length : 0);

describe("recordedWork", () => {
  test("create runs the work and records its digest, root-only; update with the same text runs nothing", () => {
    const cmd = recordedWork("bootstrap-cp-1-kube-vip-install", work("v1"));
    expect(run(cmd.create)).toMatchObject({ status: 0 });
    expect(ranCount()).toBe(1);
    const file = path.join(records(), "bootstrap-cp-1-kube-vip-install");
    expect(fs.readFileSync(file, "utf8")).toBe(`${recordDigest(work("v1"))}\n`);
    expect(fs.statSync(records()).mode & 0o777).toBe(0o700);
    // A changed connection re-sends the same update text: the node finds its record.
    const again = run(cmd.update);
    expect(again).toMatchObject({ status: 0 });
    expect(again.stdout).toContain("bootstrap-cp-1-kube-vip-install: recorded done on this node");
    expect(ranCount()).toBe(1);
  });

  test("update with new work text runs it once and records the new digest", () => {
    expect(run(recordedWork("upgrade-cp-1", work("v1")).create).status).toBe(0);
    const next = recordedWork("upgrade-cp-1", work("v2"));
    expect(run(next.update).status).toBe(0);
    expect(fs.readFileSync(runs(), "utf8")).toBe("v1\nv2\n");
    expect(run(next.update).status).toBe(0);
    expect(ranCount()).toBe(2);
    expect(fs.readFileSync(path.join(records(), "upgrade-cp-1"), "utf8")).toBe(`${recordDigest(work("v2"))}\n`);
  });

  test("failed work records nothing and exits with its status: the next update runs it again", () => {
    const failing = recordedWork("certificates-cp-2-renew", `echo try >> ${runs()}; exit 7`);
    expect(run(failing.create).status).toBe(7);
    expect(fs.existsSync(path.join(records(), "certificates-cp-2-renew"))).toBe(false);
    expect(run(failing.update).status).toBe(7);
    expect(ranCount()).toBe(2);
  });

  test("an update of a node with no record (a stack from before records, another member) runs the work", () => {
    const cmd = recordedWork("upgrade-preflight", work("check"));
    expect(run(cmd.update).status).toBe(0);
    expect(ranCount()).toBe(1);
    expect(run(cmd.update).status).toBe(0);
    expect(ranCount()).toBe(1);
  });

  test("the identity, not the text, decides: the member's setup is recorded per server", () => {
    const first = recordedWork("bootstrap-cp-1-member", work("peers-a"), "member of server 101");
    expect(run(first.create).status).toBe(0);
    // More peers and the recorded CA change the text, not the server: nothing runs.
    expect(run(recordedWork("bootstrap-cp-1-member", work("peers-b"), "member of server 101").update).status).toBe(0);
    expect(ranCount()).toBe(1);
    // Another server (a replacement runs create; an update there finds no record either).
    expect(run(recordedWork("bootstrap-cp-1-member", work("peers-b"), "member of server 102").update).status).toBe(0);
    expect(ranCount()).toBe(2);
  });

  test("the work reads the command's stdin (the setup's key, the companion's token)", () => {
    const cmd = recordedWork("bootstrap-cp-1-reserved-ip-failover", `cat > ${path.join(root, "token")}`);
    expect(run(cmd.create, "secret-token\n").status).toBe(0);
    expect(fs.readFileSync(path.join(root, "token"), "utf8")).toBe("secret-token\n");
  });

  test("the digest is found in both texts; a resource name that is no file name is refused", () => {
    const cmd = recordedWork("upgrade-cp-3", "true");
    expect(recordedDigestOf(cmd.create)).toBe(recordDigest("true"));
    expect(recordedDigestOf(cmd.update)).toBe(recordDigest("true"));
    expect(recordCheckOf(cmd.update)).toBe(recordDigest("true"));
    // A create looks for nothing: it always runs its work.
    expect(recordCheckOf(cmd.create)).toBeUndefined();
    expect(recordedDigestOf("bash /usr/local/lib/hcloud-control-plane/node/cert-expiry.sh")).toBeUndefined();
    expect(() => recordedWork("../etc/passwd", "true")).toThrow(/not a file name/);
  });
});
