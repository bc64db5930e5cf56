// Jest's own order (failed suites first, then the longest by the timings jest cached from the
// last run, the rest by file size), except on a fresh clone, which has no cached timings: there
// the suites known to take longest start first, longest first, so that none of them starts
// last and becomes the tail of a parallel run. The other suites keep jest's file-size order.
// Jest loads this file with require(), so it is CommonJS like jest.config.js.
/* eslint-disable @typescript-eslint/no-require-imports */
const Sequencer = require("@jest/test-sequencer").default;
const path = require("node:path");

/** Seconds each of the slowest suites takes on 2 busy cores (jest's per-suite times, roughly halved from a loaded run). */
const estimates = {
  // One Ceph RGW drill in the first wave of four: three at once starve each other of the 2 cores
  // (each aws-cli call then takes many seconds). The other two start as the first short suites end.
  "etcdBackup.test.ts": 400,
  "apiserverSans.test.ts": 130,
  "settingsTable.test.ts": 110,
  "nodeScripts.test.ts": 100,
  "etcdRestore.test.ts": 95,
  "resize.test.ts": 90,
  "kubeadmMember.test.ts": 90,
  "backupStream.test.ts": 85,
  "plan.test.ts": 80,
  "etcdDefrag.test.ts": 80,
  "apiEndpointChange.test.ts": 70,
  "prometheusRules.test.ts": 70,
  "csrApprover.test.ts": 55,
  "previewGuard.test.ts": 50,
  "membership.test.ts": 35,
};

class SlowFirstSequencer extends Sequencer {
  sort(tests) {
    const fresh = tests.every((test) => this.time(test) === undefined);
    const sorted = super.sort(tests);
    if (!fresh) return sorted;
    const estimate = (test) => estimates[path.basename(test.path)] ?? 0;
    // Array.prototype.sort is stable: suites without an estimate stay in jest's order.
    return sorted.sort((a, b) => estimate(b) - estimate(a));
  }
}

module.exports = SlowFirstSequencer;
