// The suite as Stryker runs it for every mutant (npm run mutate, see docs/mutation.md).
//
// - The child-process files are left out: they take tens of seconds each and exercise other Node
//   processes, which Stryker's instrumented code does not reach, so they cannot kill a mutant.
// - Test files share one module cache per worker (`isolate: false`): Stryker switches mutants at run
//   time, so the modules need not be loaded again for every mutant, and LangChain's imports cost
//   seconds per file. The files that count or emit on the process's own listeners keep a fresh process.
import { defineConfig } from "vitest/config";
import base from "./vitest.config";

const slow = ["test/process/**", "test/example.test.ts", "test/package.test.ts"];
const processGlobal = ["test/ingest/lifecycle.test.ts", "test/ingest/options.test.ts", "test/handler-lifecycle.test.ts"];

export default defineConfig({
  resolve: base.resolve,
  test: {
    projects: [
      {
        resolve: base.resolve,
        test: { ...base.test, name: "shared", isolate: false, exclude: [...slow, ...processGlobal, "**/node_modules/**"] },
      },
      { resolve: base.resolve, test: { ...base.test, name: "isolated", include: processGlobal } },
    ],
  },
});
