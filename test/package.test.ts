/**
 * The published package, as a user gets it: `npm pack`, installed into a fresh project, used through
 * both `import` and `require`.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "..");
const coreVersion: string = JSON.parse(execFileSync("npm", ["pkg", "get", "devDependencies.@langchain/core"], { cwd: root, encoding: "utf8" })).replace(/^\^/, "");
let project: string;

function run(file: string, args: string[], cwd = project): string {
  return execFileSync(file, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, npm_config_loglevel: "error" } });
}

beforeAll(() => {
  project = mkdtempSync(join(tmpdir(), "lcom-pack-"));
  // prepack builds dist/ first, so this works from a fresh clone.
  run("npm", ["pack", "--pack-destination", project], root);
  const tarball = readdirSync(project).find((name) => name.endsWith(".tgz"));
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true }));
  run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", `./${tarball}`, `@langchain/core@${coreVersion}`]);
}, 240_000);

afterAll(() => {
  if (project) rmSync(project, { recursive: true, force: true });
});

const script = (kind: "esm" | "cjs") => `
${kind === "esm" ? 'import { MeteringCallbackHandler, IngestClient, cloudEventProblems } from "langchain-openmeter";\nimport { startOpenMeterServer } from "langchain-openmeter/testing";' : 'const { MeteringCallbackHandler, IngestClient, cloudEventProblems } = require("langchain-openmeter");\nconst { startOpenMeterServer } = require("langchain-openmeter/testing");'}
(async () => {
  const server = await startOpenMeterServer();
  const handler = new MeteringCallbackHandler({ url: server.url });
  handler.handleChatModelStart({}, [], "run-1", undefined, {}, [], { subject: "acme", ls_model_name: "m", ls_provider: "p" });
  handler.handleLLMEnd({ generations: [[{ text: "", message: { usage_metadata: { input_tokens: 3, output_tokens: 4, total_tokens: 7 } } }]] }, "run-1");
  await handler.shutdown();
  console.log(JSON.stringify({ totals: server.totals(), client: typeof IngestClient, schema: typeof cloudEventProblems }));
  await server.close();
})();
`;

describe("the packed tarball", () => {
  it("ships dist with types and no sources or tests", () => {
    const files = readdirSync(join(project, "node_modules", "langchain-openmeter", "dist"));
    expect(files).toEqual(expect.arrayContaining(["index.js", "index.cjs", "index.d.ts", "index.d.cts", "testing.js", "testing.cjs"]));
    expect(readdirSync(join(project, "node_modules", "langchain-openmeter")).sort()).toEqual(["LICENSE", "README.md", "dist", "package.json"]);
  });

  for (const kind of ["esm", "cjs"] as const) {
    it(`meters a call through ${kind === "esm" ? "import" : "require"}`, () => {
      const file = join(project, kind === "esm" ? "use.mjs" : "use.cjs");
      writeFileSync(file, script(kind));
      const output = JSON.parse(run(process.execPath, [file]).trim().split("\n").pop()!);
      expect(output).toEqual({ totals: { acme: { input: 3, output: 4 } }, client: "function", schema: "function" });
    });
  }
});
