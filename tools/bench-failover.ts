/**
 * `npm run bench:failover -- [--runs 5] [--action-seconds 3]`
 *
 * Measures the reserved-IP companion's share of a failover on this machine: two simulated
 * nodes run scripts/node/reserved-ip-failover.sh with its production defaults against the fake
 * Hetzner API (tests/support/failoverNodes.ts); the address moves from node A's interface to
 * node B's at T0, and the run ends when the fake API reports the Floating IP assigned to B.
 * Runs move the address at different points of B's check loop (spread over --interval), and
 * the assign action runs for --action-seconds (default: the table's assumption). Prints each
 * run and min / median / max against the companion's terms in docs/failover-budget.md.
 *
 * It measures our script and the fake, not Hetzner: the real API's round trips and action
 * times are the table's assumptions.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { companionWorstCase, hetznerApiAssumptions } from "../components/config/failoverBudget";
import { measureReservedIpFailover } from "../tests/support/failoverNodes";
import { companionDefaults } from "./failover-budget";
import { countOption, median, numberOption } from "./options";

async function main(): Promise<void> {
  const runs = countOption("runs", 5);
  const actionSeconds = numberOption("action-seconds", hetznerApiAssumptions.assignActionSeconds);
  const companion = companionDefaults();
  const share = companionWorstCase(companion);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bench-failover-"));
  const figures: number[] = [];
  try {
    console.log(
      `companion: --interval ${companion.checkInterval} s, --action-poll-interval ${companion.actionPollInterval} s; ` +
        `assign action ${actionSeconds} s; budgeted share ${share} s`,
    );
    for (let i = 0; i < runs; i++) {
      // Spread T0 over one check interval: the wait for the next check is the term that varies.
      const delayBeforeT0 = (companion.checkInterval * i) / runs;
      const run = await measureReservedIpFailover({
        tmpDir: tmp,
        actionSeconds,
        actionPollInterval: companion.actionPollInterval,
        delayBeforeT0,
        boundSeconds: share * 4,
      });
      figures.push(run.seconds);
      console.log(
        `run ${i + 1}/${runs}: ${run.seconds.toFixed(2)} s (T0 ${delayBeforeT0.toFixed(2)} s after settling, ${run.requestsAfterT0.length} API requests)`,
      );
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  const sorted = [...figures].sort((a, b) => a - b);
  const middle = median(figures);
  const max = sorted[sorted.length - 1];
  console.log(
    `address moved -> Floating IP assigned: min ${sorted[0].toFixed(2)} s, median ${middle.toFixed(2)} s, max ${max.toFixed(2)} s; ` +
      `budgeted ${share} s: ${max <= share ? "within" : "OVER"}`,
  );
  if (max > share) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
