// The suite for Stryker's static mutants (module-level constants: a Set of reserved keys, a regex):
// every test file in a fresh module graph, so a mutated constant is evaluated again. Slower than
// vitest.mutate.config.ts; see docs/mutation.md ("Static mutants").
import { defineConfig } from "vitest/config";
import { common, resolve } from "./vitest.config";

export default defineConfig({
  resolve,
  test: { ...common, include: ["test/**/*.test.ts"], isolate: true, exclude: ["test/process/**", "test/example.test.ts", "test/package.test.ts", "**/node_modules/**"] },
});
