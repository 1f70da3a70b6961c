import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export const resolve = {
  alias: {
    "langchain-openmeter/testing": fileURLToPath(new URL("./src/testing/index.ts", import.meta.url)),
    "langchain-openmeter": fileURLToPath(new URL("./src/index.ts", import.meta.url)),
  },
};

export const common = {
  testTimeout: 30_000,
  hookTimeout: 30_000,
  // Tests start real loopback servers; forks keep sockets and timers per file.
  pool: "forks" as const,
  // Lets memory tests force a collection (globalThis.gc).
  execArgv: ["--expose-gc"],
};

/** Files that count, emit or replace the process's own signal and exit listeners: each in a fresh process. */
export const processGlobal = ["test/ingest/lifecycle.test.ts", "test/ingest/client-exit.test.ts", "test/ingest/options.test.ts", "test/handler-lifecycle.test.ts"];

export default defineConfig({
  resolve,
  test: {
    // Vitest's default leaves a core free; the 2-core CI box then runs one file at a time (61 s, not 38 s).
    maxWorkers: Math.max(2, availableParallelism()),
    projects: [
      // The rest share a module graph per worker: loading LangChain once per worker, not per file,
      // is most of the suite's speed. A file must leave no client running (afterEach shuts them down).
      { resolve, test: { ...common, name: "shared", include: ["test/**/*.test.ts"], exclude: [...processGlobal, "**/node_modules/**"], isolate: false } },
      { resolve, test: { ...common, name: "isolated", include: processGlobal } },
    ],
  },
});
