// The suite as Stryker runs it for every mutant: the whole of vitest.config.ts less the child-process
// files, which take tens of seconds each, spawn other Node processes that Stryker's instrumented code
// does not reach, and so can neither kill a mutant nor be spared by per-test coverage.
import { defineConfig, mergeConfig } from "vitest/config";
import base from "./vitest.config";

export default mergeConfig(
  base,
  defineConfig({
    test: {
      exclude: ["test/process/**", "test/example.test.ts", "test/package.test.ts", "**/node_modules/**"],
    },
  }),
);
