/**
 * What every S3 server of the tests offers (tests/support/rgw.ts, a real Ceph RGW), and the
 * aws-cli side they share: Debian's aws-cli v2 (/usr/bin/aws) called exactly as the backup scripts
 * call it (path-style addressing, the endpoint URL, access keys in the environment).
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

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

export interface AwsCli {
  /** Environment for aws-cli and the backup scripts (PATH has /usr/bin first). */
  env: NodeJS.ProcessEnv;
  /** Runs aws-cli against the endpoint; never throws. */
  run(args: string[], input?: Buffer): { status: number | null; stdout: Buffer; stderr: string };
  /** Runs aws-cli against the endpoint; throws (with the exit status and stderr) unless it exits 0. */
  must(args: string[], input?: Buffer): Buffer;
}

/**
 * aws-cli for `endpoint` with these keys: its config (path-style addressing) and HOME in
 * `configDir`, which the caller owns and removes; `extraEnv` is added to the environment.
 */
export function awsCli(
  endpoint: string,
  configDir: string,
  keys: { accessKeyId: string; secretAccessKey: string },
  extraEnv: NodeJS.ProcessEnv = {},
): AwsCli {
  const awsConfig = path.join(configDir, "config");
  fs.writeFileSync(awsConfig, "[default]\ns3 =\n  addressing_style = path\n");
  const env: NodeJS.ProcessEnv = {
    PATH: `/usr/bin:/bin:/usr/sbin:/sbin`,
    HOME: configDir,
    LANG: "C.UTF-8",
    AWS_ACCESS_KEY_ID: keys.accessKeyId,
    AWS_SECRET_ACCESS_KEY: keys.secretAccessKey,
    AWS_DEFAULT_REGION: "us-east-1",
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_PAGER: "",
    ...extraEnv,
  };
  const run: AwsCli["run"] = (args, input) => {
    const result = spawnSync(awsBinary, ["--endpoint-url", endpoint, ...args], {
      env: { ...env, AWS_CONFIG_FILE: awsConfig },
      input,
      timeout: 60_000,
      maxBuffer: 1 << 30,
    });
    return {
      status: result.status,
      stdout: result.stdout ?? Buffer.alloc(0),
      stderr: result.stderr?.toString() ?? String(result.error ?? ""),
    };
  };
  const must: AwsCli["must"] = (args, input) => {
    const result = run(args, input);
    if (result.status !== 0) throw new Error(`aws ${args.join(" ")} exited ${result.status}: ${result.stderr}`);
    return result.stdout;
  };
  return { env, run, must };
}

/** The object operations of S3Server on `bucket` through `must`; putAll stages under `stagingParent`. */
export function bucketObjects(
  bucket: string,
  must: AwsCli["must"],
  stagingParent: string,
): Pick<S3Server, "list" | "get" | "put" | "putAll" | "remove"> {
  return {
    list(prefix = "") {
      const out = must(["s3api", "list-objects-v2", "--bucket", bucket, "--prefix", prefix, "--output", "json"]);
      const text = out.toString().trim();
      const parsed = (text ? JSON.parse(text) : {}) as { Contents?: { Key: string }[] };
      return (parsed.Contents ?? []).map((o) => o.Key).sort();
    },
    get(key) {
      return must(["s3", "cp", `s3://${bucket}/${key}`, "-"]);
    },
    put(key, body) {
      must(["s3", "cp", "-", `s3://${bucket}/${key}`], Buffer.from(body));
    },
    putAll(objects) {
      const staging = fs.mkdtempSync(path.join(stagingParent, "put-"));
      try {
        for (const [key, body] of Object.entries(objects)) {
          fs.mkdirSync(path.dirname(path.join(staging, key)), { recursive: true });
          fs.writeFileSync(path.join(staging, key), body);
        }
        must(["s3", "cp", "--recursive", "--only-show-errors", staging, `s3://${bucket}/`]);
      } finally {
        fs.rmSync(staging, { recursive: true, force: true });
      }
    },
    remove(key) {
      must(["s3api", "delete-object", "--bucket", bucket, "--key", key]);
    },
  };
}

/**
 * The environment scripts/jobs/etcd-backup.sh reads (as components/etcd/backup.ts sets it),
 * writing under `prefix` of `s3`'s bucket; `extra` adds or overrides variables.
 */
export function backupJobEnv(
  s3: S3Server,
  job: { etcdEndpoints: string[]; prefix: string; ageRecipients: string; signingKeyFile: string; pkiDir: string },
  extra: NodeJS.ProcessEnv = {},
): NodeJS.ProcessEnv {
  return {
    ...s3.env,
    ETCD_ENDPOINTS: job.etcdEndpoints.join(","),
    S3_ENDPOINT: s3.endpoint,
    S3_BUCKET: s3.bucket,
    S3_PREFIX: job.prefix,
    S3_REGION: s3.region,
    BACKUP_AGE_RECIPIENTS: job.ageRecipients,
    BACKUP_SIGNING_KEY_FILE: job.signingKeyFile,
    PKI_DIR: job.pkiDir,
    S3_RETRY_SECONDS: "0",
    ...extra,
  };
}
