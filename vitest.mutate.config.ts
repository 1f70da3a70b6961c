// The suite as Stryker runs it for every mutant (npm run mutate, see docs/mutation.md).
//
// - The child-process files are left out: they take tens of seconds each and exercise other Node
//   processes, which Stryker's instrumented code does not reach, so they cannot kill a mutant.
// - Test files share one module cache per worker (`isolate: false`): Stryker switches mutants at run
//   time, so the modules need not be loaded again for every mutant, and LangChain's imports cost
//   seconds per file. The files that count or emit on the process's own listeners keep a fresh process.
import { defineConfig } from "vitest/config";
import { common, processGlobal, resolve } from "./vitest.config";

const slow = ["test/process/**", "test/example.test.ts", "test/package.test.ts"];

export default defineConfig({
  resolve,
  test: {
    projects: [
      { resolve, test: { ...common, name: "shared", include: ["test/**/*.test.ts"], isolate: false, exclude: [...slow, ...processGlobal, "**/node_modules/**"] } },
      { resolve, test: { ...common, name: "isolated", include: processGlobal } },
    ],
  },
});
