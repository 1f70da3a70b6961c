/**
 * Hardening: the API key appears nowhere a person or a log collector could read it. Every failure of
 * the other hardening files is provoked here with one key, everything the library emits is collected
 * (log lines, thrown errors with their stacks and `cause` chains, onError reports inspected and
 * JSON-serialized, events, every file in the spool directory, stats), and the collection is searched for the key.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { IngestClient, IngestError, MeteringCallbackHandler } from "langchain-openmeter";
import { TestClock } from "langchain-openmeter/testing";
import { settleOn, until } from "../support/clocked";
import { makeEvents, startPlainServer } from "../ingest/helpers";
import { ScriptedChatModel, usage } from "../support/scripted-model";

const KEY = "om_sk_live_S3CR3T_9f8e7d6c5b4a";
const KONNECT = "https://us.api.konghq.com/v3/openmeter/events";

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

/** Everything the library lets out, as text. */
class Collector {
  readonly texts: string[] = [];
  readonly logger = { warn: (m: string) => void this.texts.push(m), error: (m: string) => void this.texts.push(m) };
  readonly errors: IngestError[] = [];
  readonly onError = (error: IngestError) => {
    this.errors.push(error);
    this.addError(error);
  };

  addError(error: unknown): void {
    this.texts.push(String(error), inspect(error, { depth: 20, showHidden: true }));
    try {
      this.texts.push(JSON.stringify(error), JSON.stringify({ ...(error as object) }));
    } catch {}
    for (let e: unknown = error, depth = 0; e instanceof Error && depth < 10; e = e.cause, depth++) {
      this.texts.push(e.message, e.stack ?? "", JSON.stringify(Object.entries(e)));
    }
  }

  thrownBy(fn: () => unknown): void {
    try {
      fn();
    } catch (error) {
      this.addError(error);
      return;
    }
    throw new Error("expected a throw");
  }

  all(): string {
    return this.texts.join("\n");
  }
}

describe("the API key never leaks", () => {
  it("from construction errors, whatever the mistake", () => {
    const out = new Collector();
    out.thrownBy(() => new MeteringCallbackHandler(KEY, KONNECT)); // arguments swapped
    out.thrownBy(() => new MeteringCallbackHandler({ url: KEY, apiKey: KEY })); // the key in url by mistake
    out.thrownBy(() => new MeteringCallbackHandler({ url: `${KEY}/events` }));
    out.thrownBy(() => new MeteringCallbackHandler({ url: `https://x:${KEY}@host.example/events?key=${KEY}&x=1`, apiKey: KEY, maxBatchSize: 0 }));
    out.thrownBy(() => new MeteringCallbackHandler({ url: `ftp://x:${KEY}@host.example/events` }));
    out.thrownBy(() => new MeteringCallbackHandler(KONNECT, KEY, { apiKey: KEY } as never));
    out.thrownBy(() => new MeteringCallbackHandler({ url: KONNECT, apiKey: [KEY] as never }));
    out.thrownBy(() => new MeteringCallbackHandler({ url: KONNECT, apiKey: KEY, timeoutMs: KEY as never }));
    out.thrownBy(() => new MeteringCallbackHandler({ url: KONNECT, apiKey: KEY, spoolDir: { KEY } as never }));
    out.thrownBy(() => new MeteringCallbackHandler({ url: KONNECT, apiKey: KEY, source: KEY.repeat(0), defaultSubject: 5 as never }));
    out.thrownBy(() => new IngestClient({ url: KONNECT, apiKey: KEY, flushIntervalMs: KEY } as never));
    out.thrownBy(() => new IngestClient({ url: KEY } as never));
    expect(out.texts.length).toBeGreaterThan(20);
    expect(out.all()).not.toContain(KEY);
  });

  it("from every delivery failure, even when the server echoes the Authorization header back", async () => {
    const out = new Collector();
    const dir = mkdtempSync(join(tmpdir(), "om-secrets-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    // Each request gets the next failure; every body repeats the header it was sent.
    const failures = [
      (auth: string) => [503, "text/plain", `upstream saw ${auth}`],
      (auth: string) => [401, "application/problem+json", JSON.stringify({ title: "Unauthorized", detail: `bad token ${auth}` })],
      (auth: string) => [200, "text/html", `<html><title>${auth}</title><body>login ${auth}</body></html>`],
      (auth: string) => [301, "text/plain", `moved ${auth}`],
      (auth: string) => [400, "application/json", `{"message":"invalid ${auth}"}`],
      (auth: string) => [413, "text/plain", `too big ${auth}`],
      (auth: string) => [429, "text/html", `<p>slow down ${auth}</p>`],
    ] as const;
    const server = await startPlainServer((req, res, _body, i) => {
      const auth = String(req.headers.authorization);
      if (i === failures.length) return void res.socket?.destroy(); // a reset
      if (i > failures.length) return; // then hang
      const [status, type, body] = failures[i]!(auth);
      res.writeHead(status as number, { "content-type": type as string, "x-echo": auth, location: `https://u:${KEY}@elsewhere.example/?k=${KEY}` }).end(body);
    });
    cleanup.push(() => server.close());

    const clock = new TestClock();
    const handler = new MeteringCallbackHandler(server.url, KEY, {
      logger: out.logger,
      onError: out.onError,
      clock,
      flushOnExit: false,
      handleSignals: false,
      // One event per request, so every scripted failure meets a request of its own (no splitting).
      maxBatchSize: 1,
      maxConcurrency: 1,
      timeoutMs: 150,
      retry: { retries: 0, minDelayMs: 1, maxDelayMs: 5 },
    });
    cleanup.push(() => settleOn(clock, handler.shutdown()));
    const model = new ScriptedChatModel(() => ({ usage: usage(10, 5) }), "m", "p", { callbacks: [handler] });
    for (let i = 0; i < failures.length; i++) {
      await model.invoke("x", { metadata: { subject: "acme", note: "no secrets here" } });
      await settleOn(clock, handler.flush(), { stepMs: 5 });
      await clock.advance(5); // the probe after a backoff
    }
    // Past the script: a reset, then requests that hang until timeoutMs.
    await until(() => server.requests.length >= failures.length + 2, "the reset and a hanging request");
    await clock.advance(150);
    // What is still held in memory is reported with the events when the handler shuts down.
    await settleOn(clock, handler.shutdown());

    // A client with a spool that cannot be written and a full memory queue, and an invalid event.
    const spoolClock = new TestClock();
    const spooling = new IngestClient({
      url: server.url,
      apiKey: KEY,
      spoolDir: dir,
      clock: spoolClock,
      flushOnExit: false,
      handleSignals: false,
      timeoutMs: 150,
      maxQueueSize: 1,
      retry: { retries: 0, minDelayMs: 1, maxDelayMs: 60_000 },
      logger: out.logger,
      onError: out.onError,
    });
    cleanup.push(() => settleOn(spoolClock, spooling.shutdown({ timeoutMs: 0 })));
    spooling.enqueue(makeEvents(1));
    const hung = spooling.flush();
    await until(() => spooling.stats().inFlight === 1, "the request to hang");
    await spoolClock.advance(150);
    await hung; // backing off now: the memory limit applies
    const owner = readdirSync(dir).find((name) => /^[0-9a-z]{9}-[0-9a-f]{12}$/.test(name))!;
    for (let seq = 2; seq <= 9; seq++) mkdirSync(join(dir, owner, `0000000${seq}.log`));
    spooling.enqueue([...makeEvents(2), { ...makeEvents(1)[0]!, subject: "" }]);
    await until(() => out.errors.some((e) => e.kind === "spool-write") && out.errors.some((e) => e.kind === "invalid-event"), "the spool and invalid-event reports");

    expect(server.requests.length).toBeGreaterThanOrEqual(failures.length + 1);
    expect(server.requests.every((r) => r.headers.authorization === `Bearer ${KEY}`)).toBe(true);
    const kinds = new Set(out.errors.map((e) => e.kind));
    for (const kind of ["rejected", "undelivered", "invalid-event", "spool-write"]) expect(kinds).toContain(kind);
    const statuses = new Set(out.errors.map((e) => e.status));
    for (const status of [401, 200, 301, 400, 413]) expect(statuses).toContain(status);
    // Retryable answers are not reported through onError: they are said in warnings.
    for (const status of [503, 429]) expect(out.all()).toContain(`answered ${status}`);
    out.texts.push(JSON.stringify(handler.stats()), JSON.stringify(spooling.stats()));
    expect(out.all()).toContain("[redacted]");
    expect(out.all()).not.toContain(KEY);
    // Events carry no key either.
    expect(JSON.stringify(out.errors.flatMap((e) => e.events))).not.toContain(KEY);
  });

  it("from the spool directory (segments, ledgers, lock files) and the events themselves", async () => {
    const dir = mkdtempSync(join(tmpdir(), "om-secrets-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const server = await startPlainServer((_req, res) => res.writeHead(503).end());
    cleanup.push(() => server.close());
    const out = new Collector();
    const clock = new TestClock();
    const handler = new MeteringCallbackHandler(server.url, KEY, {
      spoolDir: dir,
      clock,
      flushOnExit: false,
      handleSignals: false,
      retry: { retries: 0 },
      logger: out.logger,
      onError: out.onError,
    });
    const model = new ScriptedChatModel(() => ({ usage: usage(3, 4) }), "m", "p", { callbacks: [handler] });
    await model.invoke("x", { metadata: { subject: "acme" } });
    await handler.flush();
    await settleOn(clock, handler.shutdown());
    const files = (readdirSync(dir, { recursive: true }) as string[]).map((name) => join(dir, name)).filter((path) => statSync(path).isFile());
    expect(files.some((path) => path.endsWith(".log"))).toBe(true);
    expect(files.some((path) => path.endsWith("owner.lock"))).toBe(false); // released at shutdown
    const spooled = files.map((path) => readFileSync(path, "utf8")).join("\n");
    expect(spooled).toContain("-input");
    expect(spooled).toContain("-output");
    expect(spooled + out.all()).not.toContain(KEY);
  });

  it("from the lock file of a running client", async () => {
    const dir = mkdtempSync(join(tmpdir(), "om-secrets-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const clock = new TestClock();
    const client = new IngestClient({ url: KONNECT, apiKey: KEY, spoolDir: dir, clock, flushOnExit: false, handleSignals: false });
    cleanup.push(() => settleOn(clock, client.shutdown({ timeoutMs: 0 })));
    const locks = (readdirSync(dir, { recursive: true }) as string[]).filter((name) => name.endsWith("owner.lock"));
    expect(locks).toHaveLength(1);
    const lock = readFileSync(join(dir, locks[0]!), "utf8");
    expect(JSON.parse(lock)).toMatchObject({ pid: process.pid });
    expect(lock).not.toContain(KEY);
  });
});
