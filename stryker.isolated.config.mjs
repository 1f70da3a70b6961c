// Stryker with every test file isolated, for static mutants (see docs/mutation.md). Name the lines:
// `npm run mutate:isolated -- --mutate src/events.ts:58-76`.
import base from "./stryker.config.mjs";

/** @type {import("@stryker-mutator/api/core").PartialStrykerOptions} */
export default {
  ...base,
  vitest: { ...base.vitest, configFile: "vitest.mutate.isolated.config.ts" },
  incrementalFile: "reports/mutation/stryker-incremental.isolated.json",
  htmlReporter: { fileName: "reports/mutation/isolated.html" },
  jsonReporter: { fileName: "reports/mutation/isolated.json" },
  tempDirName: ".stryker-tmp-isolated",
};
