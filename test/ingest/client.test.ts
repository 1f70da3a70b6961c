// IngestClient as a whole: batching, flush, memory bounds, serialisation at enqueue, shutdown and the
// counters, against plain loopback servers; every timer on a TestClock.
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import type { ServerResponse } from "node:http";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type CloudEvent, IngestClient, type IngestOptions } from "langchain-openmeter";
import { TestClock } from "langchain-openmeter/testing";
import { balance, bodyIds, eventually, leaveSpool, makeEvents, startClient, startPlainServer, tempDir } from "./helpers";

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

type Responder = Parameters<typeof startPlainServer>[0];
const ok: Responder = (_req, res) => res.writeHead(204).end();

function setup(respond: Responder, options: Partial<IngestOptions> = {}) {
  return startClient(respond, { retry: { retries: 2, minDelayMs: 1, maxDelayMs: 1000 }, ...options }, cleanup);
}

/** A server that holds every request until `release` (or answers them all as `respond` says). */
function holdingServer() {
  const held: ServerResponse[] = [];
  return {
    respond: ((_req, res) => void held.push(res)) as Responder,
    held,
    releaseAll: (status = 204) => {
      for (const res of held.splice(0)) res.writeHead(status).end();
    },
  };
}

const idsOf = (requests: { body: string }[]) => requests.flatMap((r) => bodyIds(r.body));

describe("batching", () => {
  it("full batches go out on the next turn of the event loop; the partial rest only after flushIntervalMs on the clock", async () => {
    const { server, client, clock } = await setup(ok, { maxBatchSize: 10, flushIntervalMs: 1000 });
    const events = makeEvents(25);
    client.enqueue(events);
    await eventually(() => server.requests.length === 2, "the two full batches");
    await clock.advance(999);
    expect(client.stats().inFlight).toBe(0);
    expect(server.requests).toHaveLength(2);
    await clock.advance(1);
    await eventually(() => server.requests.length === 3, "the partial batch");
    expect(server.requests.map((r) => bodyIds(r.body).length)).toEqual([10, 10, 5]);
    expect(idsOf(server.requests)).toEqual(events.map((e) => e.id));
  });

  it("the interval starts with the first event of a batch, not with the last", async () => {
    const { server, client, clock } = await setup(ok, { maxBatchSize: 100, flushIntervalMs: 1000 });
    client.enqueue(makeEvents(1));
    await clock.advance(600);
    client.enqueue(makeEvents(1));
    await clock.advance(400);
    await eventually(() => server.requests.length === 1, "one batch 1000 ms after the first event");
    expect(bodyIds(server.requests[0]!.body)).toHaveLength(2);
  });

  it("never has more than maxConcurrency requests in flight", async () => {
    const hold = holdingServer();
    const { client, clock } = await setup(hold.respond, { maxBatchSize: 1, maxConcurrency: 3 });
    client.enqueue(makeEvents(12));
    await eventually(() => hold.held.length === 3, "three requests");
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(hold.held).toHaveLength(3);
    expect(client.stats().inFlight).toBe(3);
    const flushed = client.flush();
    while (client.stats().delivered < 12) {
      hold.releaseAll();
      await new Promise((resolve) => setTimeout(resolve, 2));
      expect(hold.held.length).toBeLessThanOrEqual(3);
    }
    await clock.advanceUntil(flushed);
    expect(client.stats()).toMatchObject({ delivered: 12, batches: 12, inFlight: 0 });
  });

  it("enqueue starts no request inside the caller's turn (LangChain's callback)", async () => {
    const { server, client } = await setup(ok, { maxBatchSize: 2 });
    client.enqueue(makeEvents(2));
    expect(client.stats().inFlight).toBe(0);
    expect(server.requests).toHaveLength(0);
    await eventually(() => server.requests.length === 1, "the request on the next turn");
  });
});

describe("flush", () => {
  it("resolves at once when there is nothing to send", async () => {
    const { server, client } = await setup(ok);
    await client.flush();
    expect(server.requests).toHaveLength(0);
  });

  it("waits for requests already in flight", async () => {
    const hold = holdingServer();
    const { client } = await setup(hold.respond, { maxBatchSize: 2 });
    client.enqueue(makeEvents(2));
    await eventually(() => hold.held.length === 1, "the request");
    let done = false;
    const flushing = client.flush().then(() => (done = true));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(done).toBe(false);
    hold.releaseAll();
    await flushing;
    expect(client.stats().delivered).toBe(2);
  });

  it("waits for what was enqueued before it, not for later traffic", async () => {
    const hold = holdingServer();
    const { client } = await setup(hold.respond, { maxBatchSize: 5, maxConcurrency: 1 });
    const before = makeEvents(5, "before");
    client.enqueue(before);
    let done = false;
    const flushing = client.flush().then(() => (done = true));
    await eventually(() => hold.held.length === 1, "the first batch");
    client.enqueue(makeEvents(5, "later")); // queued behind the first batch
    hold.releaseAll(); // the first batch is acknowledged; the later one is now in flight
    await flushing;
    expect(done).toBe(true);
    await eventually(() => hold.held.length === 1, "the later batch in flight");
    expect(client.stats().delivered).toBe(5);
    hold.releaseAll();
  });

  it("during an outage, resolves once retries ran out (the events stay queued) instead of holding the caller", async () => {
    let down = true;
    const { server, client, clock } = await setup((_req, res) => res.writeHead(down ? 503 : 204).end(), { retry: { retries: 2, minDelayMs: 1, maxDelayMs: 30_000 } });
    client.enqueue(makeEvents(3));
    await clock.advanceUntil(client.flush());
    expect(client.stats()).toMatchObject({ state: "backing-off", delivered: 0, pending: { memory: 3, disk: 0 } });
    expect(server.requests).toHaveLength(3);
    down = false;
    await clock.advance(30_000); // the probe after retry.maxDelayMs
    await eventually(() => client.stats().delivered === 3, "delivery after the probe");
    expect(client.stats().state).toBe("healthy");
  });

  it("with timeoutMs, resolves at the deadline on the clock while a request hangs", async () => {
    const hold = holdingServer();
    const { client, clock } = await setup(hold.respond, { timeoutMs: 60_000 });
    await clock.advance(1000); // the deadline is counted from the call, not from the clock's start
    client.enqueue(makeEvents(1));
    let done = false;
    const flushing = client.flush({ timeoutMs: 500 }).then(() => (done = true));
    await eventually(() => hold.held.length === 1, "the request");
    await clock.advance(499);
    expect(done).toBe(false);
    await clock.advance(1);
    await flushing;
    expect(client.stats().pending.memory).toBe(1);
    hold.releaseAll();
  });

  it("does not wait for the client's own records that no longer read back from the spool: they are reported corrupt and count as done", async () => {
    const dir = tempDir().dir;
    let down = true;
    // Down, with a cache of 2: of 5 events, the last ones are read back from disk when sent.
    const { client, rec, clock } = await setup((_req, res) => res.writeHead(down ? 503 : 204).end(), { spoolDir: dir, maxQueueSize: 2, retry: { retries: 0, minDelayMs: 1, maxDelayMs: 1000 } });
    client.enqueue(makeEvents(1));
    await client.flush();
    const events = makeEvents(4);
    for (const event of events) client.enqueue(event);
    const [owner] = readdirSync(dir).filter((name) => !name.startsWith("."));
    const segment = join(dir, owner!, readdirSync(join(dir, owner!)).filter((name) => name.endsWith(".log")).sort().at(-1)!); // beyond the cache: on disk only
    const text = readFileSync(segment, "utf8");
    expect(text).toContain(`"id":"${events[3]!.id}"`);
    writeFileSync(segment, text.replace(`"id":"${events[3]!.id}"`, `"id":"${events[3]!.id.slice(0, -1)}Z"`)); // a flipped byte: the checksum fails
    down = false;
    await clock.advance(1000); // the probe: the endpoint is back
    await eventually(() => client.stats().state === "healthy", "the probe's success");
    await clock.advanceUntil(client.flush(), { maxMs: 60_000 }); // steps of 10 ms: room for the read-back under load
    expect(rec.errors.map((e) => e.kind)).toEqual(["corrupt"]);
    expect(client.stats()).toMatchObject({ delivered: 4, dropped: 1, pending: { memory: 0, disk: 0 } });
  });

  it("never rejects, even when every event is refused", async () => {
    const { client, rec } = await setup((_req, res) => res.writeHead(422).end());
    client.enqueue(makeEvents(5));
    await expect(client.flush()).resolves.toBeUndefined();
    expect(client.stats()).toMatchObject({ refused: 5, delivered: 0 });
    expect(rec.errors.map((e) => e.kind)).toEqual(["rejected"]);
  });
});

describe("without a spool: memory is bounded in an outage, never while the endpoint keeps up", () => {
  it("a burst of 50,000 calls (100,000 events) in one synchronous loop: none dropped, all delivered", async () => {
    let received = 0;
    const { client, rec, clock } = await setup((_req, res, body) => {
      received += bodyIds(body).length;
      res.writeHead(204).end();
    }, { maxQueueSize: 10_000, maxBatchSize: 500 });
    const template = makeEvents(1)[0]!;
    for (let i = 0; i < 50_000; i++) {
      client.enqueue([
        { ...template, id: `burst-${i}-input` },
        { ...template, id: `burst-${i}-output` },
      ]);
    }
    expect(client.stats()).toMatchObject({ enqueued: 100_000, dropped: 0 });
    await clock.advanceUntil(client.flush());
    expect(received).toBe(100_000);
    expect(client.stats()).toMatchObject({ delivered: 100_000, dropped: 0, pending: { memory: 0, disk: 0 } });
    expect(rec.errors).toEqual([]);
  });

  it("in an outage, memory holds at most maxQueueSize; beyond it events are reported with the events, and the held ones are delivered later", async () => {
    let down = true;
    const { client, rec, clock } = await setup((_req, res) => res.writeHead(down ? 503 : 204).end(), {
      maxQueueSize: 20,
      maxBatchSize: 10,
      retry: { retries: 0, minDelayMs: 1, maxDelayMs: 1000 },
    });
    client.enqueue(makeEvents(10, "first"));
    await clock.advanceUntil(client.flush()); // the endpoint is found down
    expect(client.stats().state).toBe("backing-off");
    client.enqueue(makeEvents(10, "second"));
    client.enqueue(makeEvents(5, "third")); // 25 > maxQueueSize
    await new Promise((resolve) => setImmediate(resolve)); // refusals are reported once per turn
    expect(client.stats().pending.memory).toBe(20);
    expect(rec.errors.map((e) => [e.kind, e.events.map((x) => x.id)])).toEqual([["queue-full", makeEvents(5, "third").map((e) => e.id)]]);
    expect(rec.errors[0]!.message).toMatch(/^5 event\(s\) could not be held: .*maxQueueSize 20.*set spoolDir/);
    expect(rec.warnings).toContain(rec.errors[0]!.message); // lost for good: a warning too, beside onError
    down = false;
    await clock.advance(1000);
    await clock.advanceUntil(client.flush());
    expect(client.stats()).toMatchObject({ delivered: 20, dropped: 5, pending: { memory: 0, disk: 0 } });
  });
});

describe("events are serialised at enqueue", () => {
  it("a change to the object after enqueue changes nothing that is sent", async () => {
    const { server, client, clock } = await setup(ok);
    const [event] = makeEvents(1);
    client.enqueue(event!);
    (event!.data as Record<string, unknown>).tokens = 999_999;
    event!.id = "changed";
    await clock.advanceUntil(client.flush());
    const sent = JSON.parse(server.requests[0]!.body) as CloudEvent[];
    expect(sent[0]!.id).not.toBe("changed");
    expect(sent[0]!.data).toMatchObject({ tokens: 1 });
  });

  it("a loop that reuses one object sends one event per enqueue, each as it was then", async () => {
    const { server, client, clock } = await setup(ok);
    const [event] = makeEvents(1);
    for (let i = 0; i < 100; i++) {
      event!.id = `reused-${i}`;
      client.enqueue(event!);
    }
    await clock.advanceUntil(client.flush());
    expect(new Set(idsOf(server.requests)).size).toBe(100);
  });

  it("an event with a throwing getter or a revoked Proxy costs only itself", async () => {
    for (const spoolDir of [undefined, tempDir().dir]) {
      const { server, client, rec, clock } = await setup(ok, spoolDir ? { spoolDir } : {});
      const [a, b] = makeEvents(2);
      const getter = { ...makeEvents(1)[0]!, get data(): Record<string, unknown> { throw new Error("draft revoked"); } };
      const { proxy, revoke } = Proxy.revocable({ ...makeEvents(1)[0]! }, {});
      revoke();
      client.enqueue([a!, getter as unknown as CloudEvent, proxy, b!]);
      await clock.advanceUntil(client.flush());
      expect(idsOf(server.requests)).toEqual([a!.id, b!.id]);
      expect(rec.errors.map((e) => [e.kind, e.events.length])).toEqual([["invalid-event", 2]]);
      expect(rec.errors[0]!.message).toMatch(/draft revoked|revoked/);
      expect(client.stats()).toMatchObject({ enqueued: 4, delivered: 2, refused: 2 });
    }
  });
});

describe("shutdown", () => {
  it("is bounded by shutdownTimeoutMs on the clock while the endpoint hangs; without a spool it reports the events it leaves", async () => {
    const hold = holdingServer();
    const { client, rec, clock } = await setup(hold.respond, { shutdownTimeoutMs: 2000, timeoutMs: 60_000 });
    const events = makeEvents(3);
    client.enqueue(events);
    let done = false;
    const stopping = client.shutdown().then(() => (done = true));
    await eventually(() => hold.held.length === 1, "the request");
    await clock.advance(1999);
    expect(done).toBe(false);
    await clock.advance(1);
    await stopping;
    const undelivered = rec.errors.filter((e) => e.kind === "undelivered");
    expect(undelivered.flatMap((e) => e.events.map((x) => x.id))).toEqual(events.map((e) => e.id));
    expect(rec.warnings.some((w) => /3 event\(s\) were not delivered and are lost.*set spoolDir/.test(w))).toBe(true);
    const stats = client.stats();
    expect(stats).toMatchObject({ state: "closed", dropped: 3, pending: { memory: 0, disk: 0 } });
    expect(balance(stats).left).toBe(balance(stats).right);
    expect(clock.pendingTimers).toBe(0); // the cut-off request's deadline and every wait are gone
  });

  it("with a spool, leaves what is undelivered on disk, says where, and the next client delivers it", async () => {
    const dir = tempDir().dir;
    let down = true;
    const { server, client, rec, clock } = await setup((_req, res) => res.writeHead(down ? 503 : 204).end(), { spoolDir: dir, retry: { retries: 0, minDelayMs: 1, maxDelayMs: 1000 } });
    client.enqueue(makeEvents(4, "kept"));
    await clock.advanceUntil(client.shutdown());
    expect(rec.warnings.some((w) => w.includes(`4 event(s) not delivered yet are kept in ${dir}`))).toBe(true);
    expect(client.stats()).toMatchObject({ state: "closed", pending: { memory: 0, disk: 4 } });
    down = false;
    const next = new IngestClient({ url: server.url, spoolDir: dir, clock, handleSignals: false, flushOnExit: false, logger: rec.logger });
    await clock.advanceUntil(next.flush());
    expect(next.stats()).toMatchObject({ recovered: 4, delivered: 4 });
    expect(idsOf(server.requests.filter((r) => bodyIds(r.body)[0]!.startsWith("kept"))).slice(-4)).toEqual(makeEvents(4, "kept").map((e) => e.id));
    await clock.advanceUntil(next.shutdown());
  });

  it("a shutdown that delivers at once leaves nothing on the clock: no deadline, keep-alive or spool timer", async () => {
    for (const spoolDir of [undefined, tempDir().dir]) {
      const { client, server, clock } = await setup(ok, { spoolDir, shutdownTimeoutMs: 5000 });
      await client.flush();
      client.enqueue(makeEvents(3)); // a partial batch: its interval timer is set
      expect(clock.pendingTimers).toBeGreaterThan(0);
      await client.shutdown();
      expect(server.requests).toHaveLength(1);
      expect(clock.pendingTimers).toBe(0);
    }
    // Shut down while the look at other processes' spools is still under way: it sets no timer for the next look.
    const { client, clock } = await setup(ok, { spoolDir: tempDir().dir });
    await client.shutdown();
    expect(clock.pendingTimers).toBe(0);
  });

  it("with a spool, shutdown honours a Retry-After: no request before the server's wait is over, the events stay on disk", async () => {
    const dir = tempDir().dir;
    const { client, server, clock } = await setup((_req, res) => res.writeHead(429, { "retry-after": "60" }).end(), { spoolDir: dir });
    client.enqueue(makeEvents(2));
    void client.flush();
    await eventually(() => client.stats().state === "backing-off", "the 429");
    const requests = server.requests.length;
    await clock.advanceUntil(client.shutdown({ timeoutMs: 5000 }));
    expect(server.requests).toHaveLength(requests);
    expect(client.stats().pending).toEqual({ memory: 0, disk: 2 });
  });

  it("a flush() still waiting when shutdown gives up resolves then (its events were reported), instead of never", async () => {
    const hold = holdingServer();
    const { client, rec, clock } = await setup(hold.respond, { timeoutMs: 60_000 });
    client.enqueue(makeEvents(2));
    let flushed = false;
    void client.flush().then(() => (flushed = true));
    await eventually(() => hold.held.length === 1, "the request");
    await clock.advanceUntil(client.shutdown({ timeoutMs: 100 }));
    await eventually(() => flushed, "the flush to resolve");
    expect(rec.errors.map((e) => [e.kind, e.events.length])).toEqual([["undelivered", 2]]);
    hold.releaseAll();
  });

  it("a flush() after shutdown resolves when the shutdown has ended, with or without events left on disk", async () => {
    for (const spoolDir of [undefined, tempDir().dir]) {
      const hold = holdingServer(); // requests cut off at the deadline: the endpoint was never found unreachable
      cleanup.push(() => hold.releaseAll());
      const { client, clock } = await setup(hold.respond, { spoolDir, timeoutMs: 60_000 });
      client.enqueue(makeEvents(2));
      const stopping = client.shutdown({ timeoutMs: 1000 });
      let flushed = false;
      void client.flush().then(() => (flushed = true));
      for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
      expect(flushed).toBe(false); // the shutdown is still delivering: the flush waits for it
      await clock.advanceUntil(stopping);
      await eventually(() => flushed, "the flush waiting on the shutdown", 3000);
      let after = false;
      void client.flush().then(() => (after = true));
      await eventually(() => after, "a flush after it", 3000);
      expect(client.stats().pending.memory).toBe(0);
    }
  });

  it("refuses later events with an error that says what to do; shutdown is idempotent", async () => {
    const { client, clock } = await setup(ok);
    const first = client.shutdown();
    expect(client.shutdown()).toBe(first);
    await clock.advanceUntil(first);
    expect(() => client.enqueue(makeEvents(1))).toThrow(/shut down: enqueue\(\) is refused after shutdown\(\); create a new client/);
  });

  it("survives an onError and a logger that throw", async () => {
    const server = await startPlainServer((_req, res) => res.writeHead(400).end());
    const clock = new TestClock();
    const client = new IngestClient({
      url: server.url,
      clock,
      handleSignals: false,
      flushOnExit: false,
      onError: () => {
        throw new Error("onError broke");
      },
      logger: {
        warn: () => {
          throw new Error("warn broke");
        },
        error: () => {
          throw new Error("error broke");
        },
      },
    });
    client.enqueue(makeEvents(3));
    await clock.advanceUntil(client.flush());
    await clock.advanceUntil(client.shutdown());
    await server.close();
    expect(client.stats()).toMatchObject({ refused: 3, state: "closed" });
  });
});

describe("taking over what other processes left in the spool", () => {
  it("a spool left while the client runs (another container) is taken over at the next look, one spoolLeaseMs later on the clock", async () => {
    const dir = tempDir().dir;
    const { server, client, clock } = await setup(ok, { spoolDir: dir, spoolLeaseMs: 1000 });
    await client.flush(); // the look at start found nothing
    const left = makeEvents(2, "left-later");
    leaveSpool(dir, left);
    await clock.advance(999);
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(client.stats().recovered).toBe(0);
    await clock.advance(1);
    await eventually(() => client.stats().delivered === 2, "the left events delivered");
    expect(idsOf(server.requests)).toEqual(left.map((e) => e.id));
    expect(client.stats()).toMatchObject({ recovered: 2, pending: { memory: 0, disk: 0 } });
  });

  it("after shutdown it looks no more", async () => {
    const dir = tempDir().dir;
    const { client, clock } = await setup(ok, { spoolDir: dir, spoolLeaseMs: 1000 });
    await client.flush();
    await clock.advanceUntil(client.shutdown());
    leaveSpool(dir, makeEvents(1), "000000002-0123456789ab");
    await clock.advance(5000);
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(existsSync(join(dir, "000000002-0123456789ab", "00000001.log"))).toBe(true);
    expect(client.stats().recovered).toBe(0);
  });
});

describe("the counters add up", () => {
  it("after deliveries, refusals, invalid events, a full queue and an undelivered rest at shutdown", async () => {
    let mode: "ok" | "down" = "ok";
    // OpenMeter refuses a whole request for one bad event: here the one whose id ends in "-bad".
    const { client, clock } = await setup((_req, res, body) => res.writeHead(mode === "down" ? 503 : body.includes('-bad"') ? 400 : 204).end(), {
      maxBatchSize: 5,
      maxQueueSize: 8,
      retry: { retries: 0, minDelayMs: 1, maxDelayMs: 1000 },
    });
    const check = () => {
      const { left, right } = balance(client.stats());
      expect(right).toBe(left);
    };
    client.enqueue(makeEvents(5));
    await clock.advanceUntil(client.flush());
    check();
    client.enqueue([...makeEvents(4), { ...makeEvents(1)[0]!, id: "one-bad" }]);
    client.enqueue({ specversion: "1.0" } as CloudEvent);
    await clock.advanceUntil(client.flush());
    check();
    mode = "down";
    client.enqueue(makeEvents(5));
    await clock.advanceUntil(client.flush());
    client.enqueue(makeEvents(6)); // 11 > maxQueueSize while failing
    check();
    await clock.advanceUntil(client.shutdown());
    check();
    expect(client.stats()).toMatchObject({ enqueued: 22, delivered: 9, refused: 2, dropped: 11 });
  });
});
