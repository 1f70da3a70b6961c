import { defineConfig, type Options } from "tsup";

const shared: Options = {
  entry: { index: "src/index.ts", testing: "src/testing/index.ts" },
  dts: true,
  sourcemap: true,
  target: "node20",
  platform: "node",
};

export default defineConfig([
  { ...shared, format: "esm", clean: true },
  {
    ...shared,
    format: "cjs",
    // p-retry (and its one dependency) ship only as ES modules; bundling them into the
    // CommonJS build keeps require("langchain-openmeter") working on every Node 20 release.
    noExternal: ["p-retry", "is-network-error"],
    // import.meta.url (used to find the installed @langchain/anthropic) needs a shim in CommonJS.
    shims: true,
  },
]);
