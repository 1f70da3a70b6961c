import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
  resolve: {
    alias: {
      "langchain-openmeter/testing": fileURLToPath(new URL("./src/testing/index.ts", import.meta.url)),
      "langchain-openmeter": fileURLToPath(new URL("./src/index.ts", import.meta.url)),
    },
  },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Tests start real loopback servers; forks keep sockets and timers per file.
    pool: "forks",
    isolate: false,
    // Lets memory tests force a collection (globalThis.gc).
    execArgv: ["--expose-gc"],
  },
});
