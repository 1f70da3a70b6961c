// How a process ends, with default options: SIGTERM, a program's own SIGTERM listener, process.exit()
// in the serverless pattern, the natural end; and several owners of one spoolDir.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type OpenMeterServer, startOpenMeterServer } from "langchain-openmeter/testing";
import { type Bundles, bundle, callIds, type Child, restartAndDeliver, start, tempDir } from "./support";

let bundles: Bundles;
let server: OpenMeterServer;
const cleanup: Array<() => unknown> = [];
beforeAll(async () => {
  bundles = await bundle();
  // De-duplication off, as in a bare self-hosted OpenMeter: anything sent twice is counted twice.
  server = await startOpenMeterServer({ dedupe: false });
});
afterEach(async () => {
  server.setMode("ok");
  while (cleanup.length) await cleanup.pop()!();
});
afterAll(async () => {
  bundles.remove();
  await server.close();
});

function run(env: Record<string, string>): Child {
  const child = start(bundles.producer, { URL: server.url, ...env });
  cleanup.push(() => child.child.exitCode === null && child.child.signalCode === null && child.child.kill("SIGKILL"));
  return child;
}

function spool(): string {
  const t = tempDir("om-life-");
  cleanup.push(t.remove);
  return t.dir;
}

const receivedIds = (prefix: string) => server.events.filter((e) => e.id.startsWith(`${prefix}-`)).map((e) => e.id);
const countOf = (ids: string[]) => ids.length;
const all = (prefix: string, calls: number) => callIds(prefix, Array.from({ length: calls }, (_, i) => i));
/** Events held, not sent: a batch never fills and its interval is a minute. */
const holding = { FLUSH_MS: "60000", BATCH: "1000" };

describe("SIGTERM with default options", () => {
  it("without a spool, healthy endpoint: everything handed over is delivered, then the process dies of SIGTERM", async () => {
    const child = run({ ...holding, PREFIX: "term", CALLS: "50", AFTER: "wait-signal" });
    await child.waitFor((c) => c.lines.includes("produced"), "production");
    expect(receivedIds("term")).toEqual([]);
    child.child.kill("SIGTERM");
    expect((await child.exited).signal).toBe("SIGTERM");
    expect(receivedIds("term").sort()).toEqual(all("term", 50).sort());
  });

  it("with a spool during an outage: the process ends by SIGTERM within its bound, and the next process delivers it all", async () => {
    server.setMode("down");
    const dir = spool();
    // Retrying for ever would take minutes; the 300 ms shutdown bound must end it long before.
    const child = run({ ...holding, SPOOL: dir, PREFIX: "term-out", CALLS: "40", AFTER: "wait-signal", SHUTDOWN_MS: "300", RETRIES: "1000" });
    await child.waitFor((c) => c.lines.includes("produced"), "production");
    child.child.kill("SIGTERM");
    expect((await child.exited).signal).toBe("SIGTERM");
    expect(child.stderr()).toMatch(/kept in .*the next process that opens spoolDir/);
    server.setMode("ok");
    await restartAndDeliver(dir, server.url);
    expect(receivedIds("term-out").sort()).toEqual(all("term-out", 40).sort());
    expect(server.duplicates).toBe(0);
  });

  it("without a spool during an outage: ends by SIGTERM within its bound and reports every undelivered event with its id", async () => {
    server.setMode("down");
    const child = run({ ...holding, PREFIX: "term-lost", CALLS: "10", AFTER: "wait-signal", SHUTDOWN_MS: "300", RETRIES: "1000" });
    await child.waitFor((c) => c.lines.includes("produced"), "production");
    child.child.kill("SIGTERM");
    expect((await child.exited).signal).toBe("SIGTERM");
    const reported = child.lines.filter((l) => l.startsWith("error undelivered ")).flatMap((l) => l.slice("error undelivered ".length).split(","));
    expect(reported.sort()).toEqual(all("term-lost", 10).sort());
  });

  it("a second SIGTERM while shutting down ends the process at once", async () => {
    server.setMode("down");
    const child = run({ ...holding, PREFIX: "twice", CALLS: "5", AFTER: "wait-signal", SHUTDOWN_MS: "60000", RETRIES: "1000" });
    await child.waitFor((c) => c.lines.includes("produced"), "production");
    child.child.kill("SIGTERM");
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(child.child.exitCode === null && child.child.signalCode === null).toBe(true); // still draining: the bound is a minute
    child.child.kill("SIGTERM");
    expect((await child.exited).signal).toBe("SIGTERM");
    expect(child.lines.some((l) => l.startsWith("error undelivered "))).toBe(true);
  });
});

describe("a program with its own SIGTERM listener keeps control", () => {
  it("its listener calls process.exit(0) at once: with a spool nothing is lost, the exit code is the program's", async () => {
    const dir = spool();
    server.setMode("down");
    const child = run({ ...holding, SPOOL: dir, PREFIX: "app-exit", CALLS: "30", AFTER: "app-exit" });
    await child.waitFor((c) => c.lines.includes("produced"), "production");
    child.child.kill("SIGTERM");
    const ended = await child.exited;
    expect(ended).toEqual({ code: 0, signal: null });
    expect(child.lines).toContain("app sigterm");
    server.setMode("ok");
    await restartAndDeliver(dir, server.url);
    expect(receivedIds("app-exit").sort()).toEqual(all("app-exit", 30).sort());
  });

  it("its listener exits after its own work: the library delivers meanwhile and never ends the process itself", async () => {
    const child = run({ ...holding, PREFIX: "app-grace", CALLS: "20", AFTER: "app-graceful" });
    await child.waitFor((c) => c.lines.includes("produced"), "production");
    child.child.kill("SIGTERM");
    expect(await child.exited).toEqual({ code: 0, signal: null });
    expect(child.lines).toContain("app done");
    expect(receivedIds("app-grace").sort()).toEqual(all("app-grace", 20).sort());
  });

  it("its listener only logs: the process stays up after the library's shutdown, its events delivered", async () => {
    const child = run({ ...holding, PREFIX: "app-stay", CALLS: "10", AFTER: "app-ignores", SHUTDOWN_MS: "100" });
    await child.waitFor((c) => c.lines.includes("produced"), "production");
    child.child.kill("SIGTERM");
    await child.waitFor(() => countOf(receivedIds("app-stay")) === 20, "delivery after SIGTERM");
    await new Promise((resolve) => setTimeout(resolve, 300)); // three shutdown bounds later
    expect(child.child.exitCode).toBeNull();
    expect(child.child.signalCode).toBeNull();
    expect(child.lines).toContain("app sigterm");
  });
});

describe("other endings", () => {
  it("a program that simply ends delivers everything (beforeExit), with no report", async () => {
    const child = run({ ...holding, PREFIX: "end", CALLS: "35", AFTER: "end" });
    expect((await child.exited).code).toBe(0);
    expect(receivedIds("end").sort()).toEqual(all("end", 35).sort());
    expect(child.lines.filter((l) => l.startsWith("error "))).toEqual([]);
  });

  it("a program that simply ends during an outage, without a spool, ends within its bound and reports what it loses", async () => {
    server.setMode("down");
    const child = run({ ...holding, PREFIX: "end-out", CALLS: "5", AFTER: "end", SHUTDOWN_MS: "200", RETRIES: "1000" });
    expect((await child.exited).code).toBe(0);
    const reported = child.lines.filter((l) => l.startsWith("error undelivered ")).flatMap((l) => l.slice(18).split(","));
    expect(reported.sort()).toEqual(all("end-out", 5).sort());
  });

  it("serverless: each run flushes with a deadline and calls process.exit(); a run during an outage leaves its events to the next run's flush", async () => {
    const dir = spool();
    server.setMode("down");
    const first = run({ SPOOL: dir, PREFIX: "lambda-1", CALLS: "6", AFTER: "flush-exit", FLUSH_TIMEOUT: "200", RETRIES: "0" });
    expect((await first.exited).code).toBe(0);
    expect(receivedIds("lambda-1")).toEqual([]);
    server.setMode("ok");
    const second = run({ SPOOL: dir, PREFIX: "lambda-2", CALLS: "4", AFTER: "flush-exit", FLUSH_TIMEOUT: "5000" });
    expect((await second.exited).code).toBe(0);
    expect(receivedIds("lambda-1").sort()).toEqual(all("lambda-1", 6).sort());
    expect(receivedIds("lambda-2").sort()).toEqual(all("lambda-2", 4).sort());
    expect(server.duplicates).toBe(0);
  });
});

describe("several owners of one spoolDir", () => {
  it("two processes, each with an ESM and a CommonJS copy of the library, while the endpoint flaps: every event delivered once", async () => {
    const dir = spool();
    const before = server.duplicates;
    const flap = setInterval(() => server.setMode(server.mode === "ok" ? "down" : "ok"), 15);
    const children = ["pair-a", "pair-b"].map((prefix) =>
      run({ SPOOL: dir, CJS_LIB: bundles.cjsLibrary, PREFIX: prefix, CALLS: "300", AFTER: "hold", FLUSH_MS: "5", BATCH: "10", RETRIES: "2", LEASE_MS: "400" }),
    );
    await Promise.all(children.map((c) => c.waitFor((x) => x.lines.includes("produced"), "production")));
    clearInterval(flap);
    server.setMode("ok");
    // Both stay up until everything they hold went out (no request is left in flight at the end).
    await Promise.all(
      ["pair-a", "pair-b"].map((prefix) =>
        children[0]!.waitFor(() => new Set(receivedIds(prefix)).size === 600, `${prefix} delivered`, 20_000),
      ),
    );
    for (const child of children) child.child.kill("SIGTERM");
    for (const child of children) expect((await child.exited).signal).toBe("SIGTERM");
    await restartAndDeliver(dir, server.url);
    for (const prefix of ["pair-a", "pair-b"]) expect(receivedIds(prefix).sort()).toEqual(all(prefix, 300).sort());
    expect(server.duplicates - before).toBe(0);
    expect(children.flatMap((c) => c.lines.filter((l) => l.startsWith("error ")))).toEqual([]);
    expect(children.map((c) => c.stderr()).join("")).not.toMatch(/ENOENT/);
  });
});

/** Whether this machine can give a process a PID namespace of its own (root, util-linux unshare). */
const canUnshare = spawnSync("unshare", ["--fork", "--pid", "--mount-proc", process.execPath, "-e", "process.exit(process.pid === 1 ? 0 : 1)"]).status === 0;
if (!canUnshare) console.warn("skipping the pid-1 container test: it needs root and util-linux unshare for a PID namespace");

describe.runIf(canUnshare)("two containers on one volume, each program pid 1", () => {
  it("SIGKILL one and SIGTERM the other during an outage: the second ends with 143, and the next process delivers every event once", async () => {
    const dir = spool();
    server.setMode("down");
    const before = server.duplicates;
    const children = ["pid1-a", "pid1-b"].map((prefix) => {
      const child = start("unshare", { URL: server.url, SPOOL: dir, PREFIX: prefix, CALLS: "50", AFTER: "hold", FLUSH_MS: "5", BATCH: "10", RETRIES: "1", SHUTDOWN_MS: "300" }, [
        "--fork",
        "--pid",
        "--mount-proc",
        process.execPath,
        bundles.producer,
      ]);
      cleanup.push(() => child.child.exitCode === null && child.child.signalCode === null && child.child.kill("SIGKILL"));
      return child;
    });
    await Promise.all(children.map((c) => c.waitFor((x) => x.lines.includes("produced"), "production")));
    expect(children.every((c) => c.lines.includes("pid 1"))).toBe(true);
    // The program's own pid outside its namespace, to signal it as a container runtime would.
    const inner = (c: (typeof children)[number]) => Number(readFileSync(`/proc/${c.child.pid}/task/${c.child.pid}/children`, "utf8").trim().split(/\s+/)[0]);
    process.kill(inner(children[0]!), "SIGKILL");
    process.kill(inner(children[1]!), "SIGTERM");
    const [killed, terminated] = await Promise.all(children.map((c) => c.exited));
    expect(killed!.code).not.toBe(0); // unshare reports a killed child as a failure
    expect(terminated).toEqual({ code: 143, signal: null }); // pid 1 would otherwise ignore SIGTERM
    server.setMode("ok");
    await restartAndDeliver(dir, server.url);
    for (const prefix of ["pid1-a", "pid1-b"]) expect(receivedIds(prefix).sort()).toEqual(all(prefix, 50).sort());
    expect(server.duplicates - before).toBe(0);
  });
});
