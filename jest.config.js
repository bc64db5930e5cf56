/** @type {import('jest').Config} */
module.exports = {
  preset: "ts-jest",
  testEnvironment: "node",
  roots: ["<rootDir>/tests"],
  testMatch: ["**/*.test.ts"],
  // Type checking is done once by `tsc --noEmit` in npm test; ts-jest only transpiles.
  transform: { "^.+\\.ts$": ["ts-jest", { diagnostics: false }] },
  // A bound on each test, not a speed claim (speed figures come from `npm run bench*`): the drills
  // start etcd, a Ceph RGW and many aws-cli processes, and take over a minute on 2 busy cores.
  testTimeout: 180000,
  // Most suites spend their time waiting on the processes they start (etcd, s3rver, bash
  // scripts and their bounded polls), not on the CPU: four suites at a time keep 2 cores busy,
  // where jest's default (cores - 1, one worker on 2 cores) runs every suite in turn.
  maxWorkers: 4,
  // On a fresh clone (no cached timings) the slowest suites start first.
  testSequencer: "<rootDir>/tests/support/sequencer.js",
};
