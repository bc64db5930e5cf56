/**
 * `npm run bench:backup -- [--size-mb 1024] [--value-kb 100] [--part-mb 128] [--concurrency 4]
 *   [--lock-mode COMPLIANCE|GOVERNANCE|none] [--runs 3] [--dir DIR] [--no-page-reporting]`
 *
 * Measures the etcd backup and restore scripts against the bare minimum, on this machine:
 * a 3-member loopback etcd (Debian's etcd) filled to about --size-mb with --value-kb values
 * (random bytes, base64: about as compressible as a Kubernetes database that holds Secrets and
 * ConfigMaps; zstd gains little), and a real Ceph RGW on 127.0.0.1 (tests/support/rgw.ts: one
 * memstore OSD, Object Lock on) as the object store, then
 *   (a) etcd-backup.sh end to end, as the CronJob runs it: snapshot, status, then one stream
 *       (zstd, age, sha256 and the snapshot's own sha256 check, multipart upload of --part-mb
 *       parts (S3_PART_SIZE_MIB), --concurrency of them at once (S3_UPLOAD_CONCURRENCY)), every
 *       object under Object Lock (--lock-mode, default COMPLIANCE as the stack sets it), the PKI
 *       of a kubeadm control plane (22 files of kubeadm's /etc/kubernetes/pki, random bytes of
 *       their usual sizes), signed sidecars, retention
 *   (b) bare: etcdctl snapshot save + one plain `aws s3 cp`
 *   (c) etcd-restore.sh fetch + member x3
 *   (d) bare: etcdctl snapshot restore x3 of the file (c) fetched ((c)'s members and (d) run
 *       twice each, c, d, d, c, and each gives the mean of its two)
 *   (e) the data part of a restore into new servers (`restoreFrom`): the fetch of (c), the
 *       snapshot restored as a cluster of one member as `seed` restores it on the first node,
 *       then etcd started on it until healthy with every key there (kubeadm init and the API
 *       server's start, which come next on a real node, do not run here)
 * and prints a table with seconds, sizes and ratios. (a) and (b) run --runs times, one after
 * the other, (a) first in odd runs and (b) first in even ones (a, b, b, a, a, b, ...): the table
 * gives the median of each step and the median of the runs' (a)/(b) ratios, each run's figures
 * are printed above it, with the machine's CPU seconds during (a) and (b) and who spent them
 * (the job, etcd, the store, the rest), the pages reclaimed and the free memory reported to the
 * host. On a virtual machine that hands its free memory back to the host (free page reporting),
 * what a step writes costs it host faults, which the guest sees as system CPU of the writer;
 * --no-page-reporting (holdHostMemory) keeps the memory for the bench. The README
 * ("Development") has the figures of both. One
 * snapshot save runs before the first run, outside the ratios, so that (a) and (b) both
 * snapshot a database read once since the fill. Use the figures to set the CronJob's
 * activeDeadlineSeconds and ETCD_SNAPSHOT_TIMEOUT / S3_TIMEOUT, and
 * the restore RTO.
 *
 * The gateway runs on the same 2 cores, so it takes a good part of both (a) and (b); the ratio
 * compares like with like, the absolute upload seconds are the store's as much as the script's.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  EtcdCluster,
  etcdctlBinary,
  makeAgeKey,
  makeSigningKey,
  requireBackupTools,
  runScript,
  ScriptResult,
  jobsDir,
  opsDir,
} from "../tests/support/etcdCluster";
import { startRgw } from "../tests/support/rgw";
import { awsBinary } from "../tests/support/s3Server";
import { countOption, flagOption, median, numberOption, stringOption } from "./options";

const sizeMb = numberOption("size-mb", 1024);
const valueKb = numberOption("value-kb", 100);
const partMb = numberOption("part-mb", 128);
const concurrency = numberOption("concurrency", 4);
const lockMode = stringOption("lock-mode", "COMPLIANCE");
const runs = countOption("runs", 3);
const baseDir = stringOption("dir", os.tmpdir());
const noPageReporting = flagOption("no-page-reporting");

const mib = (bytes: number) => `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
const seconds = (ms: number) => (ms / 1000).toFixed(1);
// The whole machine's CPU time so far, in seconds, from the first line of /proc/stat (user and
// nice; system, irq and softirq; idle and iowait; steal), counted in USER_HZ (100 on Linux,
// proc(5)). Every process counts: etcd, the gateway, the script and its tools.
type CpuTimes = { user: number; system: number; idle: number; steal: number };
const machineCpu = (): CpuTimes => {
  const [user, nice, system, idle, iowait, irq, softirq, steal] = fs
    .readFileSync("/proc/stat", "utf8")
    .split("\n")[0]
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  return {
    user: (user + nice) / 100,
    system: (system + irq + softirq) / 100,
    idle: (idle + iowait) / 100,
    steal: steal / 100,
  };
};
// Some virtual machines hand the guest's free memory back to their host as soon as it is freed
// (virtio-balloon free page reporting, mm/page_reporting.c; this kernel also counts it in
// reported_kib): every page the next step writes (a snapshot, an upload part) then costs the host
// a fault the first time it is touched again, which the guest sees as slow kernel copies (the
// system CPU of whoever writes). A server whose memory stays with it (a Hetzner VM under load
// for weeks) does not pay that.
const reportingDir = "/sys/module/page_reporting/parameters";
const readNumber = (file: string): number | undefined => {
  try {
    return Number(fs.readFileSync(file, "utf8").trim());
  } catch {
    return undefined;
  }
};
// The machine's free memory now, in MiB (/proc/meminfo, MemFree).
const freeMib = (): number => {
  const free = /^MemFree:\s+(\d+) kB$/m.exec(fs.readFileSync("/proc/meminfo", "utf8"));
  return free ? Number(free[1]) / 1024 : NaN;
};
// --no-page-reporting: for the bench's duration the kernel reports no free memory to the host
// (page_reporting_order above x86-64's largest order, 10: mm/page_reporting.c reports only free
// blocks of at least that order), and the free memory is touched once before the fill (a file
// that size written to /dev/shm, then removed), so that every step writes into memory the host
// already backs, as on a server whose memory stays with it. The setting is put back when the
// bench ends, also on SIGINT and SIGTERM. Needs root.
function holdHostMemory(): () => void {
  const file = path.join(reportingDir, "page_reporting_order");
  const before = readNumber(file);
  if (before === undefined) throw new Error(`--no-page-reporting: this kernel has no ${file}`);
  try {
    fs.writeFileSync(file, "11");
  } catch (error) {
    throw new Error(`--no-page-reporting: cannot write ${file} (run as root): ${String(error)}`);
  }
  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    fs.writeFileSync(file, String(before));
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      restore();
      process.exit(130);
    });
  }
  process.once("exit", restore);
  const mib = Math.max(0, Math.floor(freeMib() || 0) - 1024);
  const shm = path.join("/dev/shm", `bench-backup-touch-${process.pid}`);
  try {
    const touched = spawnSync("dd", ["if=/dev/zero", `of=${shm}`, "bs=1M", `count=${mib}`, "status=none"], {
      timeout: 600_000,
    });
    console.error(
      touched.status === 0
        ? `free page reporting off (was order ${before}); touched ${mib} MiB of free memory`
        : `free page reporting off (was order ${before}); touching ${mib} MiB of free memory through ${shm} failed (dd exit ${
            touched.status ?? touched.signal
          }: ${touched.stderr.toString().trim()}): only what was written is touched`,
    );
  } finally {
    fs.rmSync(shm, { force: true });
  }
  return restore;
}
// Page reclaim so far (/proc/vmstat): pages scanned by allocating processes themselves (direct
// reclaim, counted as their system CPU) and by kswapd; the free memory now; the free memory
// reported to the host so far, where the kernel counts it.
type Reclaim = { direct: number; kswapd: number; freeMib: number; reportedKib?: number };
const reclaimNow = (): Reclaim => {
  const vm = new Map(
    fs
      .readFileSync("/proc/vmstat", "utf8")
      .trim()
      .split("\n")
      .map((l) => l.split(" ") as [string, string]),
  );
  return {
    direct: Number(vm.get("pgscan_direct") ?? 0),
    kswapd: Number(vm.get("pgscan_kswapd") ?? 0),
    freeMib: freeMib(),
    reportedKib: readNumber(path.join(reportingDir, "reported_kib")),
  };
};
const reclaimSpent = (from: Reclaim, to: Reclaim) =>
  `pages scanned for reclaim: direct ${to.direct - from.direct}, kswapd ${to.kswapd - from.kswapd}; free memory ${from.freeMib.toFixed(
    0,
  )} MiB before${
    from.reportedKib !== undefined && to.reportedKib !== undefined
      ? `, ${((to.reportedKib - from.reportedKib) / 1024).toFixed(0)} MiB freed memory reported to the host`
      : ""
  }`;
// One process's CPU seconds from /proc/PID/stat (proc(5)): utime and stime (fields 14 and 15,
// every thread of it), or with `waited` cutime and cstime (16 and 17): the children it has
// waited for, with theirs. The bench waits for every script and tool it runs, so its own cutime
// and cstime over a run are that run's job: the script with every etcdctl, zstd, age, curl and
// aws it started, or the bare etcdctl and aws.
type ProcCpu = { user: number; system: number };
const procCpu = (pid: number | "self", waited = false): ProcCpu => {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return { user: 0, system: 0 };
  }
  // Field 3 (the state) is the first after the command name's closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const at = waited ? 16 : 14;
  return { user: Number(fields[at - 3]) / 100, system: Number(fields[at + 1 - 3]) / 100 };
};
const sumCpu = (all: ProcCpu[]): ProcCpu =>
  all.reduce((t, c) => ({ user: t.user + c.user, system: t.system + c.system }), { user: 0, system: 0 });
// The machine's CPU and who spent it: the job, etcd (every member; the snapshot's server among
// them), the object store (monitor, OSD, radosgw: on Hetzner these run elsewhere), and the rest
// (the kernel's own threads, such as page writeback, and this bench). The rest is one figure:
// the kernel splits a process's CPU time into user and system in proportion to its sampled
// ticks (kernel/sched/cputime.c, cputime_adjust) while /proc/stat adds up the ticks themselves,
// so per-process splits do not add up to the machine's split (the rest's user share came out
// negative by up to 0.8 s); their sums came within half a second (the rest -0.4 to 0.1 s).
type CpuSample = { machine: CpuTimes; job: ProcCpu; etcd: ProcCpu; store: ProcCpu; reclaim: Reclaim };
const userSystem = (c: ProcCpu) => `user ${c.user.toFixed(1)}, system ${c.system.toFixed(1)}`;
const cpuSpent = (from: CpuSample, to: CpuSample) => {
  const d = (a: ProcCpu, b: ProcCpu): ProcCpu => ({ user: b.user - a.user, system: b.system - a.system });
  const machine = d(from.machine, to.machine);
  const [job, etcd, store] = [d(from.job, to.job), d(from.etcd, to.etcd), d(from.store, to.store)];
  const accounted = sumCpu([job, etcd, store]);
  const rest = machine.user + machine.system - accounted.user - accounted.system;
  return {
    job,
    text:
      `machine ${userSystem(machine)}, idle ${(to.machine.idle - from.machine.idle).toFixed(1)}, steal ${(
        to.machine.steal - from.machine.steal
      ).toFixed(1)}; ` +
      `the job ${userSystem(job)}; etcd ${userSystem(etcd)}; the store ${userSystem(store)}; the rest ${rest.toFixed(1)}; ${reclaimSpent(from.reclaim, to.reclaim)}`,
  };
};

function timed<T>(f: () => T): [T, number] {
  const start = Date.now();
  const result = f();
  return [result, Date.now() - start];
}
async function timedAsync<T>(f: () => Promise<T>): Promise<[T, number]> {
  const start = Date.now();
  const result = await f();
  return [result, Date.now() - start];
}

function check(what: string, result: ScriptResult | { status: number | null; stderr: string | Buffer }) {
  if (result.status !== 0) throw new Error(`${what} failed (${result.status}):\n${result.stderr.toString()}`);
}

async function main() {
  requireBackupTools();
  const restoreReporting = noPageReporting ? holdHostMemory() : undefined;
  const dir = fs.mkdtempSync(path.join(baseDir, "bench-backup-"));
  // Every run's backup and bare upload stay in the gateway's memory (the backups are locked).
  const s3 = await startRgw("etcd-backups", {
    memstoreBytes: Math.max(2 * 1024 ** 3, Math.ceil(runs * sizeMb * 1024 ** 2 * 2.2) + 1024 ** 3),
  });
  const quota = Math.max(2 * 1024 ** 3, Math.ceil(sizeMb * 1024 ** 2 * 3));
  const cluster = await EtcdCluster.create({ baseDir: dir, quotaBackendBytes: Math.min(quota, 8 * 1024 ** 3) });
  try {
    await cluster.startAll();
    const valueBytes = Math.round(valueKb * 1024);
    const count = Math.ceil((sizeMb * 1024 ** 2) / valueBytes);
    const rawBytes = Math.ceil((valueBytes * 3) / 4);
    const perTxn = Math.max(1, Math.floor((4 * 1024 ** 2) / valueBytes));
    console.error(`filling etcd: ${count} values of ${valueKb} KB (${sizeMb} MB), ${perTxn} per transaction`);
    const [, fillMs] = await timedAsync(async () => {
      for (let done = 0; done < count;) {
        const n = Math.min(200, count - done);
        const chunk: [string, string][] = [...Array(n)].map((_, i) => [
          `/registry/bench/${String(done + i).padStart(8, "0")}`,
          randomBytes(rawBytes).toString("base64").slice(0, valueBytes),
        ]);
        // On a loaded machine etcd can answer 503 "request timed out" (the proposal did not
        // commit in time; it may still apply). The puts are idempotent: retry them, bounded.
        for (let attempt = 1; ; attempt++) {
          try {
            await cluster.putMany(chunk, perTxn, 2);
            break;
          } catch (error) {
            if (attempt >= 5) throw error;
            console.error(`fill: ${String(error).split("\n")[0]}; retrying (${attempt}/5)`);
            await new Promise((resolve) => setTimeout(resolve, 2000 * attempt));
          }
        }
        done += n;
      }
    });
    console.error(`filled in ${seconds(fillMs)} s`);

    // kubeadm's /etc/kubernetes/pki (kubeadm init phase certs all), with sizes of the files a
    // 2048-bit RSA PKI has.
    const pkiDir = path.join(dir, "pki");
    fs.mkdirSync(path.join(pkiDir, "etcd"), { recursive: true });
    for (const name of [
      "ca",
      "apiserver",
      "apiserver-kubelet-client",
      "front-proxy-ca",
      "front-proxy-client",
      "apiserver-etcd-client",
      "etcd/ca",
      "etcd/server",
      "etcd/peer",
      "etcd/healthcheck-client",
    ]) {
      fs.writeFileSync(path.join(pkiDir, `${name}.crt`), randomBytes(1200).toString("base64"));
      fs.writeFileSync(path.join(pkiDir, `${name}.key`), randomBytes(1250).toString("base64"));
    }
    fs.writeFileSync(path.join(pkiDir, "sa.key"), randomBytes(1250).toString("base64"));
    fs.writeFileSync(path.join(pkiDir, "sa.pub"), randomBytes(340).toString("base64"));
    const key = makeAgeKey(dir, "bench");
    const signer = makeSigningKey(dir, "backup-signing");
    const s3Env = {
      ...s3.env,
      S3_ENDPOINT: s3.endpoint,
      S3_BUCKET: s3.bucket,
      S3_PREFIX: "bench",
      S3_REGION: s3.region,
    };

    // Every timed step starts with no dirty pages of the one before (the fetch writes a GB,
    // whose writeback would otherwise land in the member restores' time).
    const settle = () => spawnSync("sync");
    // One snapshot first, outside (a) and (b): the first snapshot after the fill can be slower
    // than the next ones (its time is printed below the table), and only (a) would pay for it.
    // A bare `etcdctl snapshot save` of the first member into FILE.
    const snapshotSave = (file: string) =>
      spawnSync(etcdctlBinary, [`--endpoints=${cluster.endpoints[0]}`, "snapshot", "save", file], {
        env: { PATH: "/usr/bin:/bin" },
      });
    const warmUp = path.join(dir, "warm-up.db");
    const [warm, warmMs] = timed(() => snapshotSave(warmUp));
    check("warm-up snapshot save", warm);
    fs.rmSync(warmUp);
    settle();
    const bareSnapshot = path.join(dir, "bare.db");
    const awsConfig = path.join(dir, "aws-config");
    fs.writeFileSync(awsConfig, "[default]\ns3 =\n  addressing_style = path\n");
    type Summary = { key: string; snapshotBytes: number; size: number; revision: number; snapshotSeconds: number };
    const measured: {
      backupMs: number;
      saveMs: number;
      cpMs: number;
      summary: Summary;
      jobCpu: [ProcCpu, ProcCpu];
    }[] = [];
    // (c), (d) and (e), after the first run's (a) and (b): they take that run's backup (fetched
    // once, by (c)), with the store and the page cache as one run leaves them (all of every run's
    // uploads stay in the gateway's memory, and with five runs there, a fetch took 24 s, not 7).
    const restores = async (summary: Summary) => {
      settle();
      // (c) etcd-restore.sh fetch + member x3.
      const fetched = path.join(dir, "fetched.db");
      const [fetch, fetchMs] = await timedAsync(() =>
        runScript(
          path.join(opsDir, "etcd-restore.sh"),
          ["fetch", "--key", summary.key, "--out", fetched],
          { ...s3Env, BACKUP_AGE_IDENTITY_FILE: key.file, BACKUP_SIGNING_PUBLIC_KEY: signer.publicKey },
          3_600_000,
        ),
      );
      check("etcd-restore.sh fetch", fetch);
      // etcd-restore.sh member: the fetched snapshot into DATA_DIR as member M of INITIAL_CLUSTER.
      const restoreMember = (
        m: { name: string; peerUrl: string },
        dataDir: string,
        initialCluster: string,
        token: string,
      ) =>
        runScript(
          path.join(opsDir, "etcd-restore.sh"),
          [
            "member",
            "--snapshot",
            fetched,
            "--name",
            m.name,
            "--data-dir",
            dataDir,
            "--initial-cluster",
            initialCluster,
            "--peer-url",
            m.peerUrl,
            "--cluster-token",
            token,
          ],
          {},
          3_600_000,
        );
      // (c)'s members with etcd-restore.sh, (d) with a bare etcdctl snapshot restore: the same
      // fetched file, three members each, twice each in the order c, d, d, c; each figure is the
      // mean of its two. (Run once each, c then d on the bare run's file, (c) took 3 to 8 s more
      // than (d) in 8 of 11 benches, while alternating on one file outside the bench the two
      // took the same, 11.7 to 11.9 s against 11.5 to 12.1 s.)
      const restoreRoot = path.join(dir, "restored");
      const membersRun = async () => {
        fs.mkdirSync(restoreRoot);
        settle();
        const [, ms] = await timedAsync(async () => {
          for (const m of cluster.members) {
            check(
              "etcd-restore.sh member",
              await restoreMember(m, path.join(restoreRoot, m.name), cluster.initialCluster, "bench"),
            );
          }
        });
        fs.rmSync(restoreRoot, { recursive: true, force: true });
        return ms;
      };
      const bareRoot = path.join(dir, "bare-restored");
      const bareRestoreRun = () => {
        fs.mkdirSync(bareRoot);
        settle();
        const [, ms] = timed(() => {
          for (const m of cluster.members) {
            const r = spawnSync(
              etcdctlBinary,
              [
                "snapshot",
                "restore",
                fetched,
                `--name=${m.name}`,
                `--data-dir=${path.join(bareRoot, m.name)}`,
                `--initial-cluster=${cluster.initialCluster}`,
                `--initial-advertise-peer-urls=${m.peerUrl}`,
                "--initial-cluster-token=bench",
              ],
              { env: { PATH: "/usr/bin:/bin" } },
            );
            check("etcdctl snapshot restore", r);
          }
        });
        fs.rmSync(bareRoot, { recursive: true, force: true });
        return ms;
      };
      const membersTimes = [await membersRun()];
      const bareRestoreTimes = [bareRestoreRun()];
      bareRestoreTimes.push(bareRestoreRun());
      membersTimes.push(await membersRun());
      console.log(
        `restores (c, d, d, c): member x3 ${seconds(membersTimes[0])} s, bare x3 ${seconds(
          bareRestoreTimes[0],
        )} s, bare x3 ${seconds(bareRestoreTimes[1])} s, member x3 ${seconds(membersTimes[1])} s`,
      );
      const membersMs = median(membersTimes);
      const bareRestoreMs = median(bareRestoreTimes);

      settle();
      // (e) The first new node of a restore into new servers (docs/runbooks/etcd-restore.md,
      // "Restore into new servers"): the fetched snapshot restored as a cluster of that one member
      // (etcd-restore.sh member, the restore `seed` runs on the node), then etcd started on it
      // until it answers `endpoint health` and counts every key the fill wrote.
      const seeded = await EtcdCluster.create({
        baseDir: dir,
        size: 1,
        quotaBackendBytes: Math.min(quota, 8 * 1024 ** 3),
      });
      let seedRestoreMs: number;
      let seedStartMs: number;
      try {
        const m = seeded.members[0];
        let restored: ScriptResult;
        [restored, seedRestoreMs] = await timedAsync(() =>
          restoreMember(m, m.dataDir, seeded.initialCluster, seeded.token),
        );
        check("etcd-restore.sh member (one member)", restored);
        [, seedStartMs] = await timedAsync(async () => {
          seeded.start(m.name);
          await seeded.waitHealthy(600_000);
          // A range's count is every key in it, whatever --limit returns (etcdserverpb RangeResponse).
          const counted = seeded.etcdctl(["get", "/registry/bench/", "--prefix", "--limit=1", "-w", "json"]);
          check("etcdctl get --limit=1", counted);
          const total = Number((JSON.parse(counted.stdout) as { count?: number }).count ?? 0);
          if (total !== count) throw new Error(`the restored member holds ${total} keys, not ${count}`);
        });
      } finally {
        await seeded.cleanup().catch(() => undefined);
      }
      fs.rmSync(fetched, { force: true });
      return { fetchMs, membersMs, bareRestoreMs, seedRestoreMs, seedStartMs };
    };
    let restoreTimes: Awaited<ReturnType<typeof restores>> | undefined;
    const cpuSample = (): CpuSample => ({
      machine: machineCpu(),
      job: procCpu("self", true),
      etcd: sumCpu(cluster.members.flatMap((m) => (m.process?.pid ? [procCpu(m.process.pid)] : []))),
      store: sumCpu(s3.daemonPids().map((pid) => procCpu(pid))),
      reclaim: reclaimNow(),
    });
    // (a) etcd-backup.sh end to end.
    const backupRun = async () => {
      const cpuBefore = cpuSample();
      const [backup, backupMs] = await timedAsync(() =>
        runScript(
          path.join(jobsDir, "etcd-backup.sh"),
          [],
          {
            ...s3Env,
            ETCD_ENDPOINTS: cluster.endpoints.join(","),
            BACKUP_AGE_RECIPIENTS: key.recipient,
            BACKUP_SIGNING_KEY_FILE: signer.file,
            S3_PART_SIZE_MIB: String(partMb),
            S3_UPLOAD_CONCURRENCY: String(concurrency),
            PKI_DIR: pkiDir,
            BACKUP_OBJECT_LOCK_MODE: lockMode,
            BACKUP_WORK_DIR: dir,
          },
          3_600_000,
        ),
      );
      check("etcd-backup.sh", backup);
      return { backupMs, summary: JSON.parse(backup.stdout) as Summary, cpu: cpuSpent(cpuBefore, cpuSample()) };
    };
    // (b) bare: snapshot save + one aws s3 cp. (d) restores the first run's file.
    const bareRun = () => {
      fs.rmSync(bareSnapshot, { force: true });
      const cpuBefore = cpuSample();
      const [save, saveMs] = timed(() => snapshotSave(bareSnapshot));
      check("etcdctl snapshot save", save);
      const [cp, cpMs] = timed(() =>
        spawnSync(
          awsBinary,
          [
            "--endpoint-url",
            s3.endpoint,
            "s3",
            "cp",
            "--only-show-errors",
            bareSnapshot,
            `s3://${s3.bucket}/bare/snapshot.db`,
          ],
          { env: { ...s3.env, AWS_CONFIG_FILE: awsConfig } },
        ),
      );
      check("aws s3 cp", cp);
      return { saveMs, cpMs, cpu: cpuSpent(cpuBefore, cpuSample()) };
    };
    for (let run = 1; run <= runs; run++) {
      // Odd runs take (a) first, even runs (b): neither always runs right after the other.
      let a: Awaited<ReturnType<typeof backupRun>>;
      let b: ReturnType<typeof bareRun>;
      if (run % 2 === 1) {
        a = await backupRun();
        settle();
        b = bareRun();
      } else {
        b = bareRun();
        settle();
        a = await backupRun();
      }
      const { backupMs, summary } = a;
      const { saveMs, cpMs } = b;
      measured.push({ backupMs, saveMs, cpMs, summary, jobCpu: [a.cpu.job, b.cpu.job] });
      console.log(
        `run ${run}/${runs} (${run % 2 === 1 ? "a, b" : "b, a"}): (a) ${seconds(backupMs)} s (save ${summary.snapshotSeconds.toFixed(
          1,
        )} + the rest ${seconds(backupMs - summary.snapshotSeconds * 1000)}), (b) ${seconds(
          saveMs + cpMs,
        )} s (save ${seconds(saveMs)} + cp ${seconds(cpMs)}), ${(backupMs / (saveMs + cpMs)).toFixed(2)}x`,
      );
      console.log(`  CPU seconds in (a): ${a.cpu.text}`);
      console.log(`  CPU seconds in (b): ${b.cpu.text}`);
      settle();
      if (run === 1) {
        restoreTimes = await restores(summary);
        settle();
      }
    }
    const { fetchMs, membersMs, bareRestoreMs, seedRestoreMs, seedStartMs } = restoreTimes!;
    const backupMs = median(measured.map((m) => m.backupMs));
    const backupSaveMs = median(measured.map((m) => m.summary.snapshotSeconds * 1000));
    const saveMs = median(measured.map((m) => m.saveMs));
    const cpMs = median(measured.map((m) => m.cpMs));
    const bareMs = median(measured.map((m) => m.saveMs + m.cpMs));
    const backupRatio = median(measured.map((m) => m.backupMs / (m.saveMs + m.cpMs)));
    // The restores took the first run's backup.
    const summary = measured[0].summary;
    const bareBytes = fs.statSync(bareSnapshot).size;

    const rows: [string, number, string, string][] = [
      [`(a) etcd-backup.sh (save+status+stream+PKI+signed+lock ${lockMode})`, backupMs, mib(summary.size), ""],
      ["    of which snapshot save (the summary's snapshotSeconds)", backupSaveMs, "", ""],
      ["(b) bare: etcdctl snapshot save + aws s3 cp", bareMs, mib(bareBytes), ""],
      ["    of which snapshot save", saveMs, "", ""],
      ["    of which aws s3 cp", cpMs, "", ""],
      ["(c) etcd-restore.sh fetch + member x3", fetchMs + membersMs, "", ""],
      ["    of which fetch (download+sha256+age+zstd+status)", fetchMs, "", ""],
      ["    of which member x3", membersMs, "", ""],
      ["(d) bare: etcdctl snapshot restore x3 (the fetched file)", bareRestoreMs, "", ""],
      [
        "(e) restore into a new node: fetch + member (one) + etcd healthy",
        fetchMs + seedRestoreMs + seedStartMs,
        "",
        "",
      ],
      ["    of which member (a cluster of one)", seedRestoreMs, "", ""],
      ["    of which etcd start until healthy and every key counted", seedStartMs, "", ""],
    ];
    rows[0][3] = `${backupRatio.toFixed(2)}x (a)/(b)${runs > 1 ? `, median of ${runs} runs` : ""}`;
    rows[5][3] = `${((fetchMs + membersMs) / bareRestoreMs).toFixed(2)}x (c)/(d)`;
    console.log(
      `etcd backup benchmark: ${sizeMb} MB requested, ${count} values of ${valueKb} KB, snapshot ${mib(
        summary.snapshotBytes,
      )} (revision ${summary.revision}), uploaded ${mib(summary.size)} (zstd+age, ${(
        (100 * summary.size) /
        summary.snapshotBytes
      ).toFixed(
        0,
      )}%) in ${partMb} MiB parts, ${concurrency} at once; ${os.cpus().length} CPUs; fill took ${seconds(fillMs)} s`,
    );
    console.log(`${"step".padEnd(70)} ${"seconds".padStart(8)}  ${"size".padStart(12)}  ratio`);
    for (const [name, ms, size, ratio] of rows) {
      console.log(`${name.padEnd(70)} ${seconds(ms).padStart(8)}  ${size.padStart(12)}  ${ratio}`);
    }
    const jobCpu = (i: 0 | 1) => ({
      user: median(measured.map((m) => m.jobCpu[i].user)),
      system: median(measured.map((m) => m.jobCpu[i].system)),
    });
    console.log(
      `CPU seconds of the job itself (every process it started), median: (a) ${userSystem(jobCpu(0))}; (b) ${userSystem(
        jobCpu(1),
      )}`,
    );
    console.log(`(not in the ratios) the first snapshot save after the fill: ${seconds(warmMs)} s`);
    // mm/page_reporting.c reports free blocks of this order and above; x86-64 has none above 10.
    const order = readNumber(path.join(reportingDir, "page_reporting_order"));
    console.log(
      order === undefined
        ? "free page reporting: not in this kernel"
        : `free page reporting: page_reporting_order ${order}${
            order > 10 ? " (off: no free block is that large)" : " (on where a balloon device takes reports)"
          }`,
    );
  } finally {
    await cluster.cleanup().catch(() => undefined);
    await s3.stop().catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
    restoreReporting?.();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
