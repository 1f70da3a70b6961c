/**
 * The bundled example agent, run as a user runs it: a child process reading prompts from a pipe.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { join } from "node:path";
import { build } from "esbuild";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { startOpenMeterServer, type OpenMeterServer } from "langchain-openmeter/testing";
import { startOpenAIServer, type OpenAIFake } from "./support/openai-server";

const root = join(import.meta.dirname, "..");

// The user's environment must not leak in: no real key, no real endpoint.
const cleanEnv = () =>
  Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^(OPENAI_|API_|SUBJECT|MODEL|INPUT_PRICE|OUTPUT_PRICE|OFFLINE_|GRANT_TOKENS|BUDGET_)/.test(key)));

/**
 * The examples bundled once with esbuild (dependencies left to node_modules, as in a user's project),
 * so each run skips tsx's transform: a second of CPU per child on a 2-core box. The first test runs
 * the README's own `npm start` (tsx) instead, so that command is covered as written.
 */
const bundleDir = join(root, "node_modules", ".cache", "langchain-openmeter-tests");
const bundled = (name: string) => join(bundleDir, `${name}.mjs`);
beforeAll(async () => {
  await build({
    entryPoints: { agent: "examples/agent.ts", options: "examples/options.ts", budgets: "examples/budgets.ts" },
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    outdir: bundleDir,
    outExtension: { ".js": ".mjs" },
    absWorkingDir: root,
    alias: { "langchain-openmeter/testing": "./src/testing/index.ts", "langchain-openmeter": "./src/index.ts" },
    logLevel: "silent",
  });
});

/** `npm start` as the README says (tsx), or the bundle of the same example. */
type Script = "agent" | "options" | "budgets" | "npm start";
const command = (script: Script) =>
  script === "npm start" ? ["--import", "tsx", "examples/agent.ts"] : [bundled(script)];

function runExample(input: string, env: Record<string, string>, script: Script = "agent"): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, command(script), { cwd: root, env: { ...cleanEnv(), ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => (stdout += chunk));
    child.stderr.on("data", (chunk) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}

interface Session {
  child: ChildProcess;
  /** Everything printed so far (a terminal's output without escape sequences and carriage returns). */
  output(): string;
  /** Resolves once the output matches; rejects with the output so far if it does not within `ms`. */
  waitFor(pattern: RegExp, ms?: number): Promise<void>;
  write(text: string): void;
  /** How the process ended; a process still running after `ms` is killed and reported as `timedOut`. */
  exit(ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; timedOut: boolean; output: string; stderr: string }>;
}

/**
 * Starts the example and lets a test talk to it while it runs: through a pipe, or (`tty: true`) on a
 * pseudo-terminal made by util-linux `script`, the way a person at a terminal runs it.
 */
function startExample(env: Record<string, string>, { tty = false } = {}): Session {
  // These tests are about how the example ends: the offline model's real tokenizer (a second and a
  // half to build) is not what they check.
  const fullEnv = { ...cleanEnv(), TERM: "xterm", OFFLINE_ROUGH_COUNTS: "1", ...env };
  const child = tty
    ? spawn("script", ["-qfec", `stty cols 200 rows 50; exec '${process.execPath}' '${bundled("agent")}'`, "/dev/null"], {
        cwd: root,
        env: fullEnv,
        detached: true, // its own process group, so a hung run can be killed with everything under it
      })
    : spawn(process.execPath, [bundled("agent")], { cwd: root, env: fullEnv, detached: true });
  let raw = "";
  let stderr = "";
  const waiters = new Set<() => void>();
  child.stdout!.on("data", (chunk) => {
    raw += chunk;
    for (const wake of waiters) wake();
  });
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  const output = () => raw.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "").replace(/\r/g, "");
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal })),
  );
  const killGroup = () => {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // already gone
    }
  };
  cleanup.push(async () => killGroup());
  return {
    child,
    output,
    write: (text) => child.stdin!.write(text),
    waitFor: (pattern, ms = 15_000) =>
      new Promise((resolve, reject) => {
        const check = () => {
          if (!pattern.test(output())) return false;
          waiters.delete(check);
          clearTimeout(timer);
          resolve();
          return true;
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no ${pattern} within ${ms} ms; output so far:\n${output()}\nstderr:\n${stderr}`));
        }, ms);
        waiters.add(check);
        check();
      }),
    exit: async (ms) => {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<"late">((resolve) => (timer = setTimeout(resolve, ms, "late")));
      const result = await Promise.race([exited, late]);
      clearTimeout(timer);
      if (result === "late") {
        killGroup();
        return { code: null, signal: null, timedOut: true, output: output(), stderr };
      }
      return { ...result, timedOut: false, output: output(), stderr };
    },
  };
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const count = (text: string, pattern: RegExp) => text.match(new RegExp(pattern.source, "g"))?.length ?? 0;

const eventsIn = (stdout: string) =>
  stdout
    .split("\n")
    .filter((line) => line.trim().startsWith("ingesting event "))
    .map((line) => JSON.parse(line.trim().slice("ingesting event ".length)) as { id: string; subject: string; data: { type: string; tokens: number; status?: string; estimated?: boolean } });

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of cleanup.splice(0)) await close();
});

describe("the example agent (npm start)", () => {
  it("offline: answers piped prompts, prints each event, delivers them, and ends with an invoice preview", async () => {
    const { code, stdout } = await runExample("What is 1+1?\nhello\n", { INPUT_PRICE: "0.000001", OUTPUT_PRICE: "0.000002" }, "npm start");
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

  it("offline: a customer with a small grant runs out during the session; later prompts get a clear message instead of an answer (no stack trace), and only the answered ones are metered", async () => {
    const prompts = ["What is 1+1?", "hello", "What is 2+2?", "What is 3*7?", "What is 9-4?"];
    const { code, stdout, stderr } = await runExample(`${prompts.join("\n")}\n`, { GRANT_TOKENS: "200" });
    expect(code, stderr).toBe(0);
    expect(stdout).toContain("Customer acme has a grant of 200 tokens (llm_tokens)");
    const answers = stdout.split("\n").filter((line) => line.startsWith("AI: "));
    expect(answers).toHaveLength(prompts.length);
    const stopped = answers.filter((line) => line.startsWith("AI: [not answered: "));
    const answered = answers.length - stopped.length;
    // 200 tokens cover the first two turns (28+8 and 47+14 metered), not a third one's worst case.
    expect(answered).toBe(2);
    expect(stopped[0]).toMatch(/^AI: \[not answered: customer "acme" has \d+ of `llm_tokens` left \(.*\); this call could need \d+ \(about \d+ prompt tokens \+ up to 64 output\): .*add a grant\. The model was not called\.\]$/);
    expect(eventsIn(stdout)).toHaveLength(2 * answered);
    expect(stdout).toMatch(new RegExp(`Budget: acme has \\d+ tokens of llm_tokens left of a 200-token grant; ${prompts.length - answered} call\\(s\\) stopped before the model\\.`));
    expect(`${stdout}\n${stderr}`).not.toMatch(/\n\s+at |Error in handler/);
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

describe("ending the example agent (Ctrl-C, signals, an unreachable endpoint)", () => {
  // OFFLINE_DELAY_MS slows the offline model down (a pause per word), so an answer is still streaming when the test interrupts it.
  const longQuestion = "tell me a long story about the sea please";

  // util-linux `script` gives the example a real terminal; without it this test cannot run.
  const hasScript = spawnSync("script", ["--version"]).status === 0;
  it.skipIf(!hasScript)("Ctrl-C at a terminal while an answer streams: aborts it, meters it as aborted, prints the invoice once and exits 0", async () => {
    const session = startExample({ OFFLINE_DELAY_MS: "150" }, { tty: true });
    await session.waitFor(/You: $/);
    session.write("hello\r");
    await session.waitFor(/ingesting event .*"output"[\s\S]*You: $/);
    session.write(`${longQuestion}\r`);
    await session.waitFor(/AI: I'm /);
    session.write("\x03"); // Ctrl-C
    const { code, timedOut, output } = await session.exit(15_000);
    expect(timedOut, output).toBe(false);
    expect(code, output).toBe(0);
    expect(output).not.toContain("to talk to a real model"); // the answer was cut off, not waited for
    expect(output).toMatch(/answer stopped by Ctrl-C.*metered as aborted/i);
    // The first answer's two events and the aborted one's two were delivered; the invoice comes once,
    // after the answer, and nothing is asked after it.
    const events = eventsIn(output);
    expect(events.map((e) => [e.data?.type, e.data?.status, e.data?.estimated])).toEqual([
      ["input", undefined, undefined],
      ["output", undefined, undefined],
      ["input", "aborted", true],
      ["output", "aborted", true],
    ]);
    expect(output).toContain("Delivered 4 events");
    expect(count(output, /Invoice preview/)).toBe(1);
    expect(output.indexOf("Invoice preview")).toBeGreaterThan(output.indexOf("answer stopped by Ctrl-C"));
    expect(output.slice(output.indexOf("Invoice preview"))).not.toContain("You:");
    expect(count(output, /You: /)).toBe(2);
  }, 30_000);

  it("piped: SIGINT flushes and prints the invoice preview, also with standard input still open", async () => {
    const session = startExample({});
    session.write("What is 1+1?\n");
    await session.waitFor(/ingesting event .*"output"/);
    session.child.kill("SIGINT");
    const { code, signal, timedOut, output, stderr } = await session.exit(15_000);
    expect({ code, signal, timedOut }, `${output}\n${stderr}`).toEqual({ code: 0, signal: null, timedOut: false });
    expect(output).toContain("Delivered 2 events");
    expect(count(output, /Invoice preview/)).toBe(1);
  }, 30_000);

  it("piped: SIGTERM while an answer streams aborts it, then flushes and prints the invoice preview", async () => {
    const session = startExample({ OFFLINE_DELAY_MS: "200" });
    session.write("What is 2+2?\n");
    await session.waitFor(/ingesting event .*"output"/);
    session.write(`${longQuestion}\n`);
    await session.waitFor(/AI: I'm /);
    session.child.kill("SIGTERM");
    const { code, signal, timedOut, output, stderr } = await session.exit(15_000);
    expect({ code, signal, timedOut }, `${output}\n${stderr}`).toEqual({ code: 0, signal: null, timedOut: false });
    expect(output).not.toContain("to talk to a real model");
    expect(output).toMatch(/answer stopped by SIGTERM.*metered as aborted/i);
    expect(output).toContain("Delivered 4 events");
    expect(count(output, /Invoice preview/)).toBe(1);
  }, 30_000);

  it("an unreachable API_URL: says it is delivering, gives up after its deadline, and says what was not delivered", async () => {
    const url = `http://127.0.0.1:${await closedPort()}/api/v1/events`;
    const session = startExample({ API_URL: url, DELIVERY_DEADLINE_MS: "1500" });
    session.child.stdin!.end("What is 1+1?\n");
    const { code, timedOut, output, stderr } = await session.exit(30_000); // not the minutes of the default retries
    expect(timedOut, output).toBe(false);
    expect(output).toContain("delivering 2 events… (Ctrl-C to give up)");
    expect(output).toMatch(/gave up after 1.5 s/);
    expect(output).toContain(`Delivered 0 of 2 events to ${url}.`);
    expect(output).toMatch(/not delivered: 2 events \(endpoint unreachable: .*ECONNREFUSED/);
    expect(output.slice(output.indexOf("Invoice preview"))).toContain("2 of these events were not delivered");
    expect(code, `${output}\n${stderr}`).toBe(1); // metered usage was lost: a script running the example can tell
  }, 40_000);

  it("an unreachable API_URL: Ctrl-C while delivering gives up at once and still says what was not delivered", async () => {
    const url = `http://127.0.0.1:${await closedPort()}/api/v1/events`;
    const session = startExample({ API_URL: url });
    session.child.stdin!.end("What is 1+1?\n");
    await session.waitFor(/delivering 2 events/);
    session.child.kill("SIGINT");
    const { code, timedOut, output } = await session.exit(20_000);
    expect(timedOut, output).toBe(false);
    expect(output).toMatch(/not delivered: 2 events \(.*gave up by Ctrl-C\)/); // not by the 10 s deadline
    expect(count(output, /Invoice preview/)).toBe(1);
    expect(code, output).toBe(1);
  }, 30_000);
});

describe("examples/options.ts (the README's option groups)", () => {
  it("runs every group offline and shows what each one changes", async () => {
    const { code, stdout, stderr } = await runExample("", {}, "options");
    expect(code, stderr).toBe(0);
    expect(stdout).toContain('acme support-bot llm.tokens {"type":"input","tokens":200,"model":"cached-model","provider":"example","tier":"pro"}');
    expect(stdout).toContain('acme support-bot llm.tokens {"type":"cache_read","tokens":1000');
    expect(stdout.match(/^ {2}(globex|initech|internal) langchain kong\.llm_request \{"type":"input"/gm)).toHaveLength(3);
    expect(stdout).toContain("3 requests, answered 503, 503, 204");
    expect(stdout).toMatch(/endpoint down: 2 events wait on disk[\s\S]*endpoint back: the next client delivered 2 events left by the first/);
    expect(stdout).toContain("onError(kind undelivered): 2 events, input and output");
    expect(stdout).toMatch(/shutdown\(\) gave up after 0\.\d s, as shutdownTimeoutMs says/);
    expect(stdout).toMatch(/onError\(kind rejected, status 401\): .*check apiKey/);
    expect(`${stdout}${stderr}`).not.toMatch(/right-key|wrong-key|om_example_key/);
  }, 60_000);
});

describe("examples/budgets.ts (the README's budget modes)", () => {
  it("runs every mode offline: a customer stopped at its grant and reopened by a new one, Konnect's access, a run budget ending an agent loop gracefully, a money budget, the preview", async () => {
    const { code, stdout, stderr } = await runExample("", {}, "budgets");
    expect(code, stderr).toBe(0);
    const section = (title: string) => stdout.slice(stdout.indexOf(`## ${title}`)).split("\n## ")[0]!;
    const customer = section("Per customer");
    expect(customer.match(/: answered "/g)).toHaveLength(5); // 4 within the grant, 1 after the new grant
    expect(customer).toMatch(/call 5: stopped \(exhausted\): customer "acme" has \d+ of `llm_tokens` left/);
    expect(customer).toMatch(/OpenMeter's balance now: \d+ tokens/);
    expect(section("Konnect v3")).toMatch(/acme: answered\n {2}globex: stopped \(no_access\)/);
    expect(section("Per run")).toMatch(/\d+ model calls, then: Stopping here: this task used its budget/);
    expect(section("Money")).toMatch(/a short call: answered\n {2}with metadata\.runBudget \{ maxCost: 0\.00003 \}: stopped \(cost\)/);
    expect(section("Preview")).toMatch(/estimate\(\): \d+ input tokens, up to \d+ in all, at most \$0\.\d{6}\n {2}guard\.preview\(\): allowed false \(exhausted\); acme has 400 tokens available/);
    expect(stderr).not.toMatch(/Error in handler|\n\s+at /);
  }, 60_000);
});
