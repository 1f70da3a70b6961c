/**
 * The bundled example agent, run as a user runs it: a child process reading prompts from a pipe.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startOpenMeterServer, type OpenMeterServer } from "langchain-openmeter/testing";
import { startOpenAIServer, type OpenAIFake } from "./support/openai-server";

const root = join(import.meta.dirname, "..");

function runExample(input: string, env: Record<string, string>, script = "examples/agent.ts"): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // The user's environment must not leak in: no real key, no real endpoint.
    const clean = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^(OPENAI_|API_|SUBJECT|MODEL|INPUT_PRICE|OUTPUT_PRICE)/.test(key)));
    const child = spawn(process.execPath, ["--import", "tsx", script], { cwd: root, env: { ...clean, ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => (stdout += chunk));
    child.stderr.on("data", (chunk) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}

const eventsIn = (stdout: string) =>
  stdout
    .split("\n")
    .filter((line) => line.trim().startsWith("ingesting event "))
    .map((line) => JSON.parse(line.trim().slice("ingesting event ".length)) as { id: string; subject: string; data: { type: string; tokens: number } });

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of cleanup.splice(0)) await close();
});

describe("the example agent (npm start)", () => {
  it("offline: answers piped prompts, prints each event, delivers them, and ends with an invoice preview", async () => {
    const { code, stdout } = await runExample("What is 1+1?\nhello\n", { INPUT_PRICE: "0.000001", OUTPUT_PRICE: "0.000002" });
    expect(code).toBe(0);
    expect(stdout).toContain("offline stand-in");
    expect(stdout).toContain("AI: 1 + 1 = 2.");
    const events = eventsIn(stdout);
    expect(events.map((e) => [e.subject, e.data.type])).toEqual([
      ["acme", "input"],
      ["acme", "output"],
      ["acme", "input"],
      ["acme", "output"],
    ]);
    expect(stdout).toContain("Delivered 4 events");
    const input = events.filter((e) => e.data.type === "input").reduce((sum, e) => sum + e.data.tokens, 0);
    const output = events.filter((e) => e.data.type === "output").reduce((sum, e) => sum + e.data.tokens, 0);
    expect(stdout).toMatch(new RegExp(`Input tokens\\s+${input}\\s+\\$0\\.000001\\s+\\$${(input * 0.000001).toFixed(6)}`));
    expect(stdout).toMatch(new RegExp(`Output tokens\\s+${output}\\s+\\$0\\.000002\\s+\\$${(output * 0.000002).toFixed(6)}`));
    expect(stdout).toMatch(new RegExp(`Total\\s+\\$${(input * 0.000001 + output * 0.000002).toFixed(6)}`));
  }, 60_000);

  it("with OPENAI_API_KEY and API_URL: streams a real ChatOpenAI and meters exactly what the provider reported", async () => {
    const openai: OpenAIFake = await startOpenAIServer();
    const server: OpenMeterServer = await startOpenMeterServer({ apiKey: "om-test-key" });
    cleanup.push(() => openai.close(), () => server.close());
    openai.respondWith(() => ({ content: "Two.", usage: { prompt_tokens: 31, completion_tokens: 3 } }));

    const { code, stdout, stderr } = await runExample("What is 1+1?\n", {
      OPENAI_API_KEY: "sk-test",
      OPENAI_BASE_URL: openai.baseURL,
      API_URL: server.url,
      API_KEY: "om-test-key",
      SUBJECT: "globex",
    });
    expect(code, stderr).toBe(0);
    expect(stdout).toContain("Model: gpt-4o-mini (OpenAI)");
    expect(stdout).toContain("AI: Two.");
    expect(openai.requests).toHaveLength(1);
    expect(openai.requests[0]).toMatchObject({ stream: true, includeUsage: true });
    expect(server.totals()).toEqual({ globex: { input: 31, output: 3 } });
    expect(server.events.every((e) => e.data?.model === "gpt-4o-mini" && e.data?.provider === "openai")).toBe(true);
    expect(`${stdout}${stderr}`).not.toContain("om-test-key");
  }, 60_000);
});

describe("examples/options.ts (the README's option groups)", () => {
  it("runs every group offline and shows what each one changes", async () => {
    const { code, stdout, stderr } = await runExample("", {}, "examples/options.ts");
    expect(code, stderr).toBe(0);
    expect(stdout).toContain('acme support-bot llm.tokens {"type":"input","tokens":200,"model":"cached-model","provider":"example","tier":"pro"}');
    expect(stdout).toContain('acme support-bot llm.tokens {"type":"input_cached","tokens":1000');
    expect(stdout.match(/^ {2}(globex|initech|internal) langchain kong\.llm_request \{"type":"input"/gm)).toHaveLength(3);
    expect(stdout).toContain("3 requests, answered 503, 503, 204");
    expect(stdout).toMatch(/endpoint down: 2 events spooled[\s\S]*endpoint back: 2 events replayed/);
    expect(stdout).toMatch(/onError\(kind rejected, status 401\): .*check apiKey/);
    expect(`${stdout}${stderr}`).not.toMatch(/right-key|wrong-key|om_example_key/);
  }, 60_000);
});
