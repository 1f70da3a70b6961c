// The client's part in the process's ending, called as the lifecycle registry calls it (the
// child-process tests in test/process/ show the real endings; these check what each hook does).
// Its own process (vitest.config.ts, processGlobal): calling the registry reaches every live client.
import { existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { IngestOptions } from "langchain-openmeter";
import { turn, until } from "../support/clocked";
import { leaveSpool, makeEvents, startClient, tempDir } from "./helpers";

interface Registry {
  onBeforeExit: () => void;
  onExit: () => void;
}
const registry = () => (globalThis as Record<symbol, Registry | undefined>)[Symbol.for("langchain-openmeter.lifecycle.v1")]!;

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

type Respond = Parameters<typeof startClient>[0];
const accept: Respond = (_req, res) => void res.writeHead(204).end();
const unavailable: Respond = (_req, res) => void res.writeHead(503).end();

function setup(respond: Respond, options: Partial<IngestOptions> = {}) {
  return startClient(respond, { retry: { retries: 0, minDelayMs: 1, maxDelayMs: 1000 }, ...options }, cleanup);
}

function spool() {
  const made = tempDir("om-exit-");
  cleanup.push(made.remove);
  return made.dir;
}

/** The owner directory of a process that ended, holding one segment whose ledger cannot be read (EISDIR). */
const LEFT_BY = "000000001-0123456789ab";
function unreadableSegmentIn(dir: string) {
  mkdirSync(leaveSpool(dir, makeEvents(2), LEFT_BY).replace(/\.log$/, ".ack"));
}

const undeliveredInMemory = (n: number) => `${n} event(s) were not delivered and are lost with this process: set spoolDir to keep them on disk for the next run`;

describe("beforeExit: the program ran out of work", () => {
  it("with events held in memory, the client shuts down and delivers them", async () => {
    const { client, server } = await setup(accept, { flushOnExit: true });
    client.enqueue(makeEvents(3));
    registry().onBeforeExit();
    expect(client.stats().state).toBe("closed");
    await until(() => client.stats().delivered === 3, "the delivery at exit");
    expect(server.requests).toHaveLength(1);
  });

  it("with events on disk and the endpoint reachable, it delivers them too", async () => {
    const { client } = await setup(accept, { flushOnExit: true, spoolDir: spool() });
    client.enqueue(makeEvents(2));
    expect(client.stats().pending).toEqual({ memory: 0, disk: 2 });
    registry().onBeforeExit();
    expect(client.stats().state).toBe("closed");
    await until(() => client.stats().delivered === 2, "the delivery at exit");
  });

  it("with a spool and an endpoint backing off, it does not hold the exit: the events wait on disk", async () => {
    const { client } = await setup(unavailable, { flushOnExit: true, spoolDir: spool() });
    client.enqueue(makeEvents(2));
    await client.flush();
    expect(client.stats().state).toBe("backing-off");
    registry().onBeforeExit();
    expect(client.stats().state).toBe("backing-off"); // not shut down
    client.enqueue(makeEvents(1)); // still open
    expect(client.stats().pending.disk).toBe(3);
  });

  it("with a spool and an endpoint being retried (not given up on yet), it shuts down and goes on trying within the bound", async () => {
    let answered = 0;
    const { client } = await setup(
      (_req, res) => {
        answered++;
        res.writeHead(answered === 1 ? 503 : 204).end();
      },
      { flushOnExit: true, spoolDir: spool(), retry: { retries: 1, minDelayMs: 20, maxDelayMs: 20 } },
    );
    client.enqueue(makeEvents(2));
    void client.flush();
    await until(() => client.stats().state === "retrying", "the first failure");
    registry().onBeforeExit();
    expect(client.stats().state).toBe("closed");
    await until(() => client.stats().delivered === 2, "the retry's delivery");
  });

  it("with only taken-over segments not read yet (one that cannot be read), it shuts down to try them within the bound", async () => {
    const dir = spool();
    unreadableSegmentIn(dir);
    const { client, rec } = await setup(accept, { flushOnExit: true, spoolDir: dir, shutdownTimeoutMs: 0 });
    await until(() => rec.warnings.some((w) => w.startsWith("reading ")), "the failed read");
    expect(client.stats()).toMatchObject({ pending: { memory: 0, disk: 0 }, unread: { segments: 1 } });
    registry().onBeforeExit();
    expect(client.stats().state).toBe("closed");
  });

  it("without a spool and an endpoint backing off, it still tries: the events would be lost", async () => {
    const { client } = await setup(unavailable, { flushOnExit: true });
    client.enqueue(makeEvents(2));
    await client.flush();
    expect(client.stats().state).toBe("backing-off");
    registry().onBeforeExit();
    expect(client.stats().state).toBe("closed");
  });

  it("with nothing held, or with flushOnExit false, or after shutdown, it does nothing", async () => {
    const idle = await setup(accept, { flushOnExit: true });
    const off = await setup(accept, { flushOnExit: false });
    off.client.enqueue(makeEvents(1));
    const done = await setup(accept, { flushOnExit: true });
    await done.client.shutdown();
    const reports = done.rec.logged.length;
    registry().onBeforeExit();
    expect(idle.client.stats().state).toBe("healthy");
    expect(off.client.stats()).toMatchObject({ state: "healthy", pending: { memory: 1 } });
    expect(done.rec.logged).toHaveLength(reports);
  });
});

describe("exit: synchronous, says what is left", () => {
  it("events held only in memory are reported undelivered, with the events, once; the client is closed", async () => {
    const { client, rec } = await setup(unavailable);
    const events = makeEvents(3);
    client.enqueue(events);
    await client.flush();
    registry().onExit();
    registry().onExit(); // a signal's exit part, then the exit event: said once
    expect(rec.errors.map((e) => [e.kind, e.message, e.events])).toEqual([["undelivered", undeliveredInMemory(3), events]]);
    expect(rec.warnings).toContain(undeliveredInMemory(3));
    expect(client.stats()).toMatchObject({ state: "closed", dropped: 3, pending: { memory: 0, disk: 0 } });
    expect(() => client.enqueue(makeEvents(1))).toThrow(/shut down/);
  });

  it("events on disk are left for the next process, which is told where; the lease is let go so it takes them at once", async () => {
    const dir = spool();
    const { client, rec } = await setup(unavailable, { spoolDir: dir });
    client.enqueue(makeEvents(2));
    await client.flush();
    const [owner] = readdirSync(dir).filter((name) => !name.startsWith("."));
    expect(existsSync(join(dir, owner!, "owner.lock"))).toBe(true);
    registry().onExit();
    expect(rec.warnings).toContain(`2 event(s) not delivered yet are kept in ${join(dir, owner!)}: the next process that opens spoolDir ${dir} delivers them`);
    expect(rec.errors).toEqual([]);
    expect(existsSync(join(dir, owner!, "owner.lock"))).toBe(false);
    expect(client.stats()).toMatchObject({ dropped: 0, pending: { memory: 0, disk: 2 } });
  });

  it("with a spool, said once however often the exit part runs; the sender stops (no probe after exit)", async () => {
    const dir = spool();
    const { client, rec, server, clock } = await setup(unavailable, { spoolDir: dir });
    client.enqueue(makeEvents(2));
    await client.flush();
    const requests = server.requests.length;
    registry().onExit();
    registry().onExit();
    expect(rec.warnings.filter((w) => w.includes("not delivered yet are kept in"))).toHaveLength(1);
    await clock.advance(5000); // the probe would be due after 1 s
    for (let i = 0; i < 10; i++) await turn();
    expect(server.requests).toHaveLength(requests);
  });

  it("taken-over segments not read yet are said too, with where they are kept", async () => {
    const dir = spool();
    unreadableSegmentIn(dir);
    const { client, rec } = await setup(accept, { spoolDir: dir });
    await until(() => rec.warnings.some((w) => w.startsWith("reading ")), "the failed read");
    registry().onExit();
    const [owner] = readdirSync(dir).filter((name) => name !== LEFT_BY && !name.startsWith("."));
    expect(rec.warnings.at(-1)).toBe(`1 spool segment(s) taken over and not read yet are kept in ${join(dir, owner!)}: the next process that opens spoolDir ${dir} delivers them`);
    expect(client.stats().unread.segments).toBe(1);
  });

  it("events on disk and segments not read yet are said together", async () => {
    const dir = spool();
    unreadableSegmentIn(dir);
    const { client, rec } = await setup(unavailable, { spoolDir: dir });
    await until(() => rec.warnings.some((w) => w.startsWith("reading ")), "the failed read");
    client.enqueue(makeEvents(1));
    registry().onExit();
    expect(rec.warnings.at(-1)).toMatch(/^1 event\(s\) not delivered yet and 1 spool segment\(s\) taken over and not read yet are kept in /);
  });

  it("refusals of the current turn are reported at exit, not lost with the turn", async () => {
    const { client, rec } = await setup(accept);
    const invalid = { ...makeEvents(1)[0]!, subject: "" };
    client.enqueue([invalid]);
    registry().onExit(); // synchronously, before the report's setImmediate
    expect(rec.errors.map((e) => [e.kind, e.events])).toEqual([["invalid-event", [invalid]]]);
  });

  it("with a spool that could not take some events (its directory was removed), those held in memory are reported lost", async () => {
    const dir = spool();
    const { client, rec, clock } = await setup(unavailable, { spoolDir: dir, maxQueueSize: 2 });
    client.enqueue(makeEvents(1));
    await client.flush();
    rmSync(dir, { recursive: true, force: true });
    await clock.advance(100); // the directory is checked every 100 ms
    client.enqueue(makeEvents(1)); // finds it gone: what was cached is held in memory now
    const memory = client.stats().pending.memory;
    expect(memory).toBeGreaterThan(0);
    registry().onExit();
    const lost = rec.errors.filter((e) => e.kind === "undelivered");
    expect(lost.map((e) => [e.message, e.events.length])).toEqual([[`${memory} event(s) were not delivered and are lost with this process: the spool could not take them`, memory]]);
  });

  it("during a shutdown still delivering, what is held in memory is said at exit, and not again when the shutdown ends", async () => {
    let answer: (() => void) | undefined;
    const { client, rec, clock } = await setup((_req, res) => void (answer = () => res.writeHead(503).end()));
    const events = makeEvents(2);
    client.enqueue(events);
    const ended = client.shutdown({ timeoutMs: 1000 });
    await until(() => answer !== undefined, "the request at shutdown");
    registry().onExit();
    expect(rec.errors.map((e) => [e.kind, e.events])).toEqual([["undelivered", events]]);
    answer!();
    await clock.advanceUntil(ended);
    expect(rec.errors).toHaveLength(1);
  });

  it("after a shutdown that said everything, exit says nothing more", async () => {
    const { client, rec, clock } = await setup(unavailable);
    client.enqueue(makeEvents(1));
    await clock.advanceUntil(client.shutdown({ timeoutMs: 0 }));
    const said = [...rec.logged];
    expect(rec.errors.map((e) => e.kind)).toEqual(["undelivered"]);
    registry().onExit();
    expect(rec.logged).toEqual(said);
    expect(rec.errors).toHaveLength(1);
  });
});

// Last in this file: after a signal the registry stays in its signalling state for the process's life.
describe("a signal", () => {
  it("shuts down a client that handles signals, delivering what it holds; one that does not is left alone", async () => {
    const own = () => {}; // the program's own listener: the signal is not raised again
    process.on("SIGTERM", own);
    cleanup.push(() => process.removeListener("SIGTERM", own));
    const handling = await setup(accept, { handleSignals: true });
    const ignoring = await setup(accept, { handleSignals: false });
    handling.client.enqueue(makeEvents(2));
    ignoring.client.enqueue(makeEvents(1));
    process.emit("SIGTERM", "SIGTERM");
    expect(handling.client.stats().state).toBe("closed");
    await until(() => handling.client.stats().delivered === 2, "the delivery at the signal");
    expect(ignoring.client.stats()).toMatchObject({ state: "healthy", delivered: 0 });
  });
});
