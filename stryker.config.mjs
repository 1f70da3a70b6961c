// Mutation testing (issue #11: a suite that is provably able to fail). Run with `npm run mutate`,
// which starts Stryker on Node 22 (StrykerJS 10 needs it; the project itself stays on Node 20).
// One file: `npm run mutate -- --mutate src/usage.ts`. See docs/mutation.md.
/** @type {import("@stryker-mutator/api/core").PartialStrykerOptions} */
export default {
  testRunner: "vitest",
  plugins: ["@stryker-mutator/vitest-runner"],
  vitest: {
    configFile: "vitest.mutate.config.ts",
    // The suite starts real loopback servers and relies on one process per file (vitest.config.ts).
    pool: "forks",
  },
  mutate: ["src/**/*.ts", "!src/testing/**"],
  // Other runs' sandboxes and reports are not part of the project.
  ignorePatterns: [".stryker-tmp*", "reports", "bench/results", "dist", "coverage"],
  coverageAnalysis: "perTest",
  // A 2-core box: two vitest workers, each running one test file at a time.
  concurrency: 2,
  // Tests that start servers vary in time under load; leave room before a mutant counts as a time-out.
  timeoutMS: 10_000,
  timeoutFactor: 2,
  incremental: true,
  incrementalFile: "reports/mutation/stryker-incremental.json",
  reporters: ["clear-text", "html", "json", "progress"],
  htmlReporter: { fileName: "reports/mutation/mutation.html" },
  jsonReporter: { fileName: "reports/mutation/mutation.json" },
  clearTextReporter: { allowColor: false, logTests: false, reportScoreTable: true, reportMutants: true },
  tempDirName: ".stryker-tmp",
  cleanTempDir: "always",
};
