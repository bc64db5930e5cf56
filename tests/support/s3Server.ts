/**
 * A real S3-compatible server for tests: s3rver on 127.0.0.1 (a free port), one bucket, and
 * helpers that talk to it through Debian's aws-cli v2 (/usr/bin/aws) exactly as the backup
 * scripts do (path-style addressing, the endpoint URL, access keys in the environment).
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { requireTool } from "./tools";

// s3rver runs in a child Node process, so tests may block (spawnSync) while scripts talk to it.
// It checks signatures against its account registry; the tests use their own realistic keys (and
// assert that no script prints them), so the child registers that key pair first.
const serverScript = `
const S3rver = require("s3rver");
require("s3rver/lib/models/account").DUMMY_ACCOUNT.createKeyPair(process.env.KEY_ID, process.env.KEY_SECRET);
const server = new S3rver({ port: 0, address: "127.0.0.1", silent: true, directory: process.env.S3_DIR,
  configureBuckets: [{ name: process.env.BUCKET }] });
server.run().then(({ port }) => console.log(JSON.stringify({ port })), (e) => { console.error(e); process.exit(1); });
process.on("SIGTERM", () => server.close().finally(() => process.exit(0)));
`;

export const awsBinary = "/usr/bin/aws";

export interface S3Server {
  endpoint: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Environment for aws-cli and the backup scripts (PATH has /usr/bin first). */
  env: NodeJS.ProcessEnv;
  /** Every key in the bucket under `prefix`, sorted. */
  list(prefix?: string): string[];
  get(key: string): Buffer;
  put(key: string, body: Buffer | string): void;
  /** Many objects in one aws call. */
  putAll(objects: Record<string, string | Buffer>): void;
  remove(key: string): void;
  stop(): Promise<void>;
}

function randomHex(bytes: number): string {
  return [...Array(bytes)]
    .map(() =>
      Math.floor(Math.random() * 256)
        .toString(16)
        .padStart(2, "0"),
    )
    .join("");
}

/** Starts s3rver with one bucket; always call stop(), in afterAll. */
export async function startS3Server(bucket = "etcd-backups"): Promise<S3Server> {
  requireTool(awsBinary, "awscli");
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), "s3rver-"));
  const accessKeyId = `AKIA${randomHex(8).toUpperCase()}`;
  const secretAccessKey = randomHex(20);
  const child = spawn(process.execPath, ["-e", serverScript], {
    cwd: path.join(__dirname, "..", ".."),
    env: {
      PATH: process.env.PATH,
      KEY_ID: accessKeyId,
      KEY_SECRET: secretAccessKey,
      S3_DIR: directory,
      BUCKET: bucket,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const killOnExit = () => child.kill("SIGKILL");
  process.on("exit", killOnExit);
  const stopChild = async () => {
    process.off("exit", killOnExit);
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  };
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      let out = "";
      let err = "";
      const timer = setTimeout(() => reject(new Error(`s3rver did not start in 20 s: ${err}`)), 20_000);
      child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
      child.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        const line = out.split("\n")[0];
        if (out.includes("\n")) {
          clearTimeout(timer);
          resolve((JSON.parse(line) as { port: number }).port);
        }
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`s3rver exited (${code}): ${err}`));
      });
    });
  } catch (error) {
    await stopChild();
    fs.rmSync(directory, { recursive: true, force: true });
    throw error;
  }
  const endpoint = `http://127.0.0.1:${port}`;
  const configDir = fs.mkdtempSync(path.join(os.tmpdir(), "s3rver-aws-"));
  const awsConfig = path.join(configDir, "config");
  fs.writeFileSync(awsConfig, "[default]\ns3 =\n  addressing_style = path\n");
  const env: NodeJS.ProcessEnv = {
    PATH: `/usr/bin:/bin:/usr/sbin:/sbin`,
    HOME: configDir,
    LANG: "C.UTF-8",
    AWS_ACCESS_KEY_ID: accessKeyId,
    AWS_SECRET_ACCESS_KEY: secretAccessKey,
    AWS_DEFAULT_REGION: "us-east-1",
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_PAGER: "",
  };
  const aws = (args: string[], input?: Buffer): Buffer => {
    const result = spawnSync(awsBinary, ["--endpoint-url", endpoint, ...args], {
      env: { ...env, AWS_CONFIG_FILE: awsConfig },
      input,
      timeout: 60_000,
      maxBuffer: 1 << 30,
    });
    if (result.status !== 0) {
      throw new Error(`aws ${args.join(" ")} failed: ${result.stderr?.toString() ?? result.error}`);
    }
    return result.stdout;
  };
  return {
    endpoint,
    bucket,
    region: "us-east-1",
    accessKeyId,
    secretAccessKey,
    env,
    list(prefix = "") {
      const out = aws(["s3api", "list-objects-v2", "--bucket", bucket, "--prefix", prefix, "--output", "json"]);
      const parsed = (out.length ? JSON.parse(out.toString()) : {}) as { Contents?: { Key: string }[] };
      return (parsed.Contents ?? []).map((o) => o.Key).sort();
    },
    get(key) {
      return aws(["s3", "cp", `s3://${bucket}/${key}`, "-"]);
    },
    put(key, body) {
      aws(["s3", "cp", "-", `s3://${bucket}/${key}`], Buffer.from(body));
    },
    putAll(objects) {
      const staging = fs.mkdtempSync(path.join(os.tmpdir(), "s3rver-put-"));
      try {
        for (const [key, body] of Object.entries(objects)) {
          fs.mkdirSync(path.dirname(path.join(staging, key)), { recursive: true });
          fs.writeFileSync(path.join(staging, key), body);
        }
        aws(["s3", "cp", "--recursive", "--only-show-errors", staging, `s3://${bucket}/`]);
      } finally {
        fs.rmSync(staging, { recursive: true, force: true });
      }
    },
    remove(key) {
      aws(["s3api", "delete-object", "--bucket", bucket, "--key", key]);
    },
    async stop() {
      try {
        await stopChild();
      } finally {
        fs.rmSync(directory, { recursive: true, force: true });
        fs.rmSync(configDir, { recursive: true, force: true });
      }
    },
  };
}
