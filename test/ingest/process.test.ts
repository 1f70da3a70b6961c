import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { type OpenMeterServer, startOpenMeterServer } from "langchain-openmeter/testing";

const root = fileURLToPath(new URL("../..", import.meta.url));
const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

interface Run {
  child: ChildProcess;
  lines: string[];
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function run(script: string, env: Record<string, string>): Run {
  const child = spawn(process.execPath, ["--import", "tsx", fixture(script)], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  let buffered = "";
  child.stdout!.on("data", (chunk: Buffer) => {
    buffered += chunk.toString("utf8");
    const parts = buffered.split("\n");
    buffered = parts.pop() ?? "";
    lines.push(...parts.filter(Boolean));
  });
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal })),
  );
  cleanup.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  return { child, lines, stderr: () => stderr, exited };
}

async function until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const lastStats = (r: Run) => {
  const line = [...r.lines].reverse().find((l) => l.includes('"enqueued"'));
  return line ? (JSON.parse(line) as Record<string, number>) : undefined;
};

async function server(): Promise<OpenMeterServer> {
  const s = await startOpenMeterServer();
  cleanup.push(() => s.close());
  return s;
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "om-proc-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const ids = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

describe("in a real process", () => {
  it("a script that enqueues and simply ends delivers everything (beforeExit)", async () => {
    const s = await server();
    const r = run("client-process.ts", { URL: s.url, COUNT: "35", PREFIX: "end", AFTER: "end" });
    const { code } = await r.exited;
    expect(code, r.stderr()).toBe(0);
    expect(s.events.map((e) => e.id).sort()).toEqual(ids("end", 35).sort());
    expect(r.lines).toEqual([]); // no errors reported
  });

  it("a script whose burst overflowed into the spool, and that simply ends, delivers the spooled events too", async () => {
    const s = await server();
    const dir = tempDir();
    const r = run("client-process.ts", { URL: s.url, SPOOL: dir, MAX_QUEUE: "10", COUNT: "45", PREFIX: "burst", AFTER: "end" });
    const { code } = await r.exited;
    expect(code, r.stderr()).toBe(0);
    expect(s.events.map((e) => e.id).sort()).toEqual(ids("burst", 45).sort());
    expect(readdirSync(dir)).toEqual([]);
  });

  it("a script that ends during an outage spools what it holds and exits, without probing the spool again", async () => {
    const s = await server();
    s.setMode("down");
    const dir = tempDir();
    const r = run("client-process.ts", { URL: s.url, SPOOL: dir, COUNT: "25", PREFIX: "down", AFTER: "end", RETRIES: "0" });
    const { code } = await r.exited;
    expect(code, r.stderr()).toBe(0);
    expect(s.requests).toHaveLength(3); // the three live batches of 10, 10 and 5; no probe after them
    const kept = readdirSync(dir).flatMap((name) =>
      readFileSync(join(dir, name), "utf8").split("\n").filter((line) => line.trim() !== "").map((line) => (JSON.parse(line) as { id: string }).id),
    );
    expect(kept.sort()).toEqual(ids("down", 25).sort());
  });

  it("SIGKILL during an outage with a spool loses nothing: later processes replay it, even a dead replayer's claim", async () => {
    const s = await server();
    const dir = tempDir();
    s.setMode("down");

    // 1. Events outlast their retries and land in the spool; then the process is killed.
    const a = run("client-process.ts", { URL: s.url, SPOOL: dir, COUNT: "40", PREFIX: "kill", AFTER: "hold", RETRIES: "1" });
    await until(() => lastStats(a)?.spooled === 40, "the first process to spool its events");
    a.child.kill("SIGKILL");
    expect((await a.exited).signal).toBe("SIGKILL");

    // 2. A second process claims the spool to replay it while the endpoint is still down (its probe
    //    fails, so it keeps the claimed file for a later pass), and is killed.
    const b = run("client-process.ts", { URL: s.url, SPOOL: dir, COUNT: "0", PREFIX: "none", AFTER: "hold", RETRIES: "50", MIN_DELAY: "200", MAX_DELAY: "200" });
    const probes = s.requests.length;
    await until(() => readdirSync(dir).some((n) => n.startsWith(`events.${b.child.pid}.`)) && s.requests.length > probes, "the second process to claim the spool");
    b.child.kill("SIGKILL");
    await b.exited;
    expect(readdirSync(dir).some((n) => n.endsWith(".replaying"))).toBe(true);
    expect(s.events).toHaveLength(0);

    // 3. The endpoint is back; a third process picks up the dead process's claim and delivers it all.
    s.setMode("ok");
    const c = run("client-process.ts", { URL: s.url, SPOOL: dir, COUNT: "5", PREFIX: "late", AFTER: "end" });
    expect((await c.exited).code).toBe(0);
    expect(s.events.map((e) => e.id).sort()).toEqual([...ids("kill", 40), ...ids("late", 5)].sort());
    expect(readdirSync(dir)).toEqual([]);
  });

  it("handleSignals: SIGTERM flushes, then the process dies of SIGTERM as usual", async () => {
    const s = await server();
    const r = run("client-process.ts", { URL: s.url, COUNT: "8", PREFIX: "sig", AFTER: "signal" });
    await until(() => lastStats(r)?.enqueued === 8, "the events to be enqueued");
    expect(s.events).toHaveLength(0); // flushIntervalMs is a minute and the batch is not full
    r.child.kill("SIGTERM");
    const { signal } = await r.exited;
    expect(signal).toBe("SIGTERM");
    expect(s.events.map((e) => e.id).sort()).toEqual(ids("sig", 8).sort());
  });

  it("handleSignals on a handler: SIGTERM during a model call bills the call, then the process dies of SIGTERM", async () => {
    const s = await server();
    const r = run("handler-sigterm.ts", { URL: s.url });
    await until(() => r.lines.includes("call started"), "the call to start");
    r.child.kill("SIGTERM");
    const { signal } = await r.exited;
    expect(signal).toBe("SIGTERM");
    expect(r.lines).toContain("call ended");
    expect(s.totals()).toEqual({ acme: { input: 7, output: 8 } });
  });

  it("concurrent writers from several processes never interleave lines in the spool", async () => {
    const dir = tempDir();
    const writers = Array.from({ length: 4 }, () => run("spool-writer.ts", { DIR: dir, BATCHES: "60", SIZE: "20" }));
    const results = await Promise.all(writers.map((w) => w.exited));
    expect(results.map((r) => r.code)).toEqual([0, 0, 0, 0]);
    const lines = readFileSync(join(dir, "events.jsonl"), "utf8").split("\n").filter((l) => l !== "");
    expect(lines).toHaveLength(4 * 60 * 20);
    const seen = new Set(lines.map((l) => (JSON.parse(l) as { id: string }).id));
    expect(seen.size).toBe(4 * 60 * 20);
    expect(existsSync(join(dir, "events.jsonl"))).toBe(true);
  });
});
