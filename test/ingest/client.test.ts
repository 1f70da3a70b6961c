import { afterEach, describe, expect, it } from "vitest";
import { IngestClient } from "langchain-openmeter";
import { bodyIds, fastRetry, makeEvents, recorder, startPlainServer } from "./helpers";

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

async function until(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > timeoutMs) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function setup(handler: Parameters<typeof startPlainServer>[0], options: Record<string, unknown> = {}) {
  const server = await startPlainServer(handler);
  const rec = recorder();
  const client = new IngestClient({ url: server.url, retry: fastRetry, flushOnExit: false, logger: rec.logger, onError: rec.onError, ...options });
  cleanup.push(() => server.close(), () => client.shutdown());
  return { server, client, rec };
}
const ok: Parameters<typeof startPlainServer>[0] = (_req, res) => res.writeHead(204).end();

describe("batching", () => {
  it("sends full batches of maxBatchSize without waiting for the interval", async () => {
    const { server, client } = await setup(ok, { maxBatchSize: 10, flushIntervalMs: 60_000 });
    client.enqueue(makeEvents(25));
    await until(() => server.requests.length >= 2);
    expect(server.requests.map((r) => bodyIds(r.body).length)).toEqual([10, 10]);
    await client.flush();
    expect(server.requests.map((r) => bodyIds(r.body).length)).toEqual([10, 10, 5]);
  });

  it("sends a partial batch after flushIntervalMs", async () => {
    const { server, client } = await setup(ok, { flushIntervalMs: 20 });
    client.enqueue(makeEvents(3));
    expect(server.requests).toHaveLength(0);
    // The server sees the request before the client sees the answer.
    await until(() => client.stats().sent === 3);
    expect(server.requests).toHaveLength(1);
    expect(bodyIds(server.requests[0]!.body)).toHaveLength(3);
    expect(client.stats()).toMatchObject({ sent: 3, batches: 1, queueDepth: 0 });
  });

  it("keeps event order within and across batches", async () => {
    const { server, client } = await setup(ok, { maxBatchSize: 4, maxConcurrency: 1 });
    const events = makeEvents(10);
    for (const e of events) client.enqueue(e);
    await client.flush();
    expect(server.requests.flatMap((r) => bodyIds(r.body))).toEqual(events.map((e) => e.id));
  });

  it("never has more than maxConcurrency batches in flight", async () => {
    let open = 0;
    let peak = 0;
    const { client } = await setup((_req, res) => {
      open++;
      peak = Math.max(peak, open);
      setTimeout(() => {
        open--;
        res.writeHead(204).end();
      }, 20);
    }, { maxBatchSize: 1, maxConcurrency: 3 });
    client.enqueue(makeEvents(12));
    expect(client.stats().queueDepth).toBe(12);
    await client.flush();
    expect(peak).toBe(3);
    expect(client.stats()).toMatchObject({ sent: 12, batches: 12, inFlight: 0, queueDepth: 0 });
  });

  it("enqueue does no I/O and no validation: nothing happens before the event loop turns", async () => {
    const { server, client, rec } = await setup(ok, { maxBatchSize: 1 });
    client.enqueue({ nonsense: true } as never);
    client.enqueue(makeEvents(1));
    expect(client.stats()).toMatchObject({ enqueued: 2, queueDepth: 2, failed: 0 });
    expect(rec.errors).toHaveLength(0);
    await client.flush();
    expect(server.requests).toHaveLength(1);
    expect(rec.errors[0]!.kind).toBe("invalid-event");
  });
});

describe("flush", () => {
  it("resolves at once when there is nothing to send", async () => {
    const { server, client } = await setup(ok);
    await client.flush();
    expect(server.requests).toHaveLength(0);
  });

  it("waits for batches already in flight", async () => {
    let release: () => void = () => {};
    const { client } = await setup((_req, res) => {
      release = () => res.writeHead(204).end();
    }, { maxBatchSize: 2 });
    client.enqueue(makeEvents(2));
    await until(() => client.stats().inFlight === 2);
    let done = false;
    const flushing = client.flush().then(() => (done = true));
    await new Promise((r) => setTimeout(r, 30));
    expect(done).toBe(false);
    release();
    await flushing;
    expect(client.stats().sent).toBe(2);
  });

  it("never rejects, even when everything fails", async () => {
    const { client, rec } = await setup((_req, res) => res.writeHead(500).end(), { retry: { retries: 0, minDelayMs: 0, maxDelayMs: 0 } });
    client.enqueue(makeEvents(5));
    await expect(client.flush()).resolves.toBeUndefined();
    expect(client.stats()).toMatchObject({ failed: 5, sent: 0 });
    expect(rec.errors).toHaveLength(1);
  });
});

describe("bounded queue without a spool", () => {
  it("counts overflow as dropped and reports it through onError and a warning", async () => {
    const { server, client, rec } = await setup(ok, { maxQueueSize: 5, maxBatchSize: 100 });
    const events = makeEvents(8);
    client.enqueue(events);
    expect(client.stats()).toMatchObject({ enqueued: 8, queueDepth: 5 });
    await client.flush();
    expect(client.stats()).toMatchObject({ sent: 5, dropped: 3 });
    expect(bodyIds(server.requests[0]!.body)).toEqual(events.slice(0, 5).map((e) => e.id));
    expect(rec.errors).toHaveLength(1);
    expect(rec.errors[0]).toMatchObject({ kind: "queue-full", events: events.slice(5) });
    expect(rec.errors[0]!.message).toMatch(/maxQueueSize 5.*raise maxQueueSize or set spoolDir/);
    expect(rec.warnings.some((w) => w.includes("dropped"))).toBe(true);
  });

  it("without onError the loss still reaches the logger", async () => {
    const server = await startPlainServer(ok);
    const logged: string[] = [];
    const client = new IngestClient({ url: server.url, maxQueueSize: 1, flushOnExit: false, logger: { warn: (m) => logged.push(m), error: (m) => logged.push(m) } });
    cleanup.push(() => server.close(), () => client.shutdown());
    client.enqueue(makeEvents(3));
    await client.flush();
    expect(logged.join("\n")).toMatch(/2 event\(s\) dropped/);
  });
});

describe("shutdown", () => {
  it("flushes, then refuses later events with a clear error; it is idempotent", async () => {
    const { server, client } = await setup(ok, { flushIntervalMs: 60_000 });
    client.enqueue(makeEvents(3));
    await Promise.all([client.shutdown(), client.shutdown()]);
    await client.shutdown();
    expect(server.requests).toHaveLength(1);
    expect(() => client.enqueue(makeEvents(1))).toThrow(/IngestClient was shut down/);
    await expect(client.flush()).resolves.toBeUndefined();
  });

  it("survives an onError and a logger that throw", async () => {
    const server = await startPlainServer((_req, res) => res.writeHead(400).end());
    const client = new IngestClient({
      url: server.url,
      flushOnExit: false,
      onError: () => {
        throw new Error("user bug");
      },
      logger: {
        warn: () => {
          throw new Error("logger bug");
        },
        error: () => {
          throw new Error("logger bug");
        },
      },
    });
    cleanup.push(() => server.close());
    client.enqueue(makeEvents(1));
    await client.flush();
    await client.shutdown();
    expect(client.stats().failed).toBe(1);
  });
});

describe("stats", () => {
  it("adds up: enqueued = sent + failed + spooled + dropped + inFlight + queueDepth", async () => {
    const { client } = await setup((_req, res, body) => {
      res.writeHead(body.includes("-3\"") ? 400 : 204).end();
    }, { maxBatchSize: 2, maxQueueSize: 6 });
    client.enqueue(makeEvents(9));
    await client.flush();
    const s = client.stats();
    expect(s.enqueued).toBe(9);
    expect(s.sent + s.failed + s.spooled + s.dropped + s.inFlight + s.queueDepth).toBe(9);
    // The refused batch [e-2, e-3] is split: e-2 is delivered, only e-3 fails.
    expect(s).toMatchObject({ sent: 5, failed: 1, dropped: 3, batches: 3 });
  });
});

describe("exit hooks", () => {
  it("one shared beforeExit listener for any number of clients, removed by shutdown; signals only when asked", async () => {
    const before = process.listenerCount("beforeExit");
    const sigterm = process.listenerCount("SIGTERM");
    const clients = Array.from({ length: 20 }, () => new IngestClient({ url: "http://127.0.0.1:9/api/v1/events" }));
    expect(process.listenerCount("beforeExit")).toBe(before + 1);
    expect(process.listenerCount("SIGTERM")).toBe(sigterm);
    const withSignals = new IngestClient({ url: "http://127.0.0.1:9/api/v1/events", handleSignals: true });
    expect(process.listenerCount("SIGTERM")).toBe(sigterm + 1);
    expect(process.listenerCount("SIGINT")).toBeGreaterThan(0);
    await Promise.all([...clients, withSignals].map((c) => c.shutdown()));
    expect(process.listenerCount("beforeExit")).toBe(before);
    expect(process.listenerCount("SIGTERM")).toBe(sigterm);
  });

  it("flushOnExit: false registers nothing", async () => {
    const before = process.listenerCount("beforeExit");
    const c = new IngestClient({ url: "http://127.0.0.1:9/api/v1/events", flushOnExit: false });
    expect(process.listenerCount("beforeExit")).toBe(before);
    await c.shutdown();
  });
});
