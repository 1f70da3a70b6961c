import { afterEach, describe, expect, it } from "vitest";
import { IngestClient, type CloudEvent } from "langchain-openmeter";
import { type OpenMeterServer, type OpenMeterServerOptions, startOpenMeterServer } from "langchain-openmeter/testing";
import { makeEvents, recorder } from "./helpers";

// The ingest client against the fake OpenMeter server (real sockets, OpenMeter's validation,
// de-duplication and status codes) with injected failures. Retry settings are small so an outage
// of seconds stands for one of minutes.

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

async function setup(serverOptions: OpenMeterServerOptions = {}, clientOptions: Record<string, unknown> = {}) {
  const server = await startOpenMeterServer(serverOptions);
  const rec = recorder();
  const client = new IngestClient({
    url: server.url,
    maxBatchSize: 10,
    flushIntervalMs: 10,
    retry: { retries: 8, minDelayMs: 10, maxDelayMs: 100 },
    timeoutMs: 2000,
    flushOnExit: false,
    logger: rec.logger,
    onError: rec.onError,
    ...clientOptions,
  });
  cleanup.push(() => server.close(), () => client.shutdown());
  return { server, client, rec };
}

/** Every event exactly once after de-duplication, and nothing else. */
function expectExactlyOnce(server: OpenMeterServer, events: readonly CloudEvent[]): void {
  const ids = server.events.map((e) => e.id);
  expect(new Set(ids).size).toBe(ids.length);
  expect([...ids].sort()).toEqual(events.map((e) => e.id).sort());
}

const statuses = (server: OpenMeterServer) => server.requests.map((r) => r.status);

describe("against a local OpenMeter", () => {
  it("v1: delivers with 204; v3: with 202", async () => {
    for (const api of ["v1", "v3"] as const) {
      const { server, client, rec } = await setup({ api });
      const events = makeEvents(25);
      client.enqueue(events);
      await client.flush();
      expectExactlyOnce(server, events);
      expect(new Set(statuses(server))).toEqual(new Set([api === "v1" ? 204 : 202]));
      expect(server.requests.every((r) => r.contentType === "application/cloudevents-batch+json")).toBe(true);
      expect(rec.errors).toEqual([]);
    }
  });

  it("a burst of 503s: retried until delivered", async () => {
    const { server, client, rec } = await setup();
    server.failNext(6, { status: 503 });
    const events = makeEvents(40);
    client.enqueue(events);
    await client.flush();
    expectExactlyOnce(server, events);
    expect(statuses(server).filter((s) => s === 503)).toHaveLength(6);
    expect(client.stats()).toMatchObject({ sent: 40, retries: 6, failed: 0 });
    expect(rec.errors).toEqual([]);
  });

  it("429 with Retry-After: waits as told, then delivers", async () => {
    const { server, client } = await setup({}, { retry: { retries: 3, minDelayMs: 1, maxDelayMs: 5000 } });
    server.failNext(1, { status: 429, retryAfter: 1 });
    const events = makeEvents(5);
    client.enqueue(events);
    await client.flush();
    expectExactlyOnce(server, events);
    const [first, second] = server.requests;
    expect(first!.status).toBe(429);
    expect(second!.time.getTime() - first!.time.getTime()).toBeGreaterThanOrEqual(950);
  });

  it("connection resets: retried until delivered", async () => {
    const { server, client, rec } = await setup();
    server.setMode("reset");
    const events = makeEvents(20);
    client.enqueue(events);
    while (server.requests.length < 3) await new Promise((r) => setTimeout(r, 5));
    server.setMode("ok");
    await client.flush();
    expectExactlyOnce(server, events);
    expect(server.requests.filter((r) => r.outcome === "reset").length).toBeGreaterThanOrEqual(3);
    expect(rec.errors).toEqual([]);
  });

  it("a hanging server: the request times out and is retried", async () => {
    const { server, client, rec } = await setup({}, { timeoutMs: 300, maxConcurrency: 1 });
    server.setMode("hang");
    const events = makeEvents(5);
    client.enqueue(events);
    while (server.requests.length < 1) await new Promise((r) => setTimeout(r, 5));
    server.setMode("ok");
    await client.flush();
    expectExactlyOnce(server, events);
    expect(server.requests[0]!.outcome).toBe("hang");
    expect(client.stats().retries).toBeGreaterThanOrEqual(1);
    expect(rec.warnings.join("\n")).toMatch(/timeout/i);
    expect(rec.errors).toEqual([]);
  });

  it("a long outage (3 s) with traffic throughout: nothing lost, nothing doubled", async () => {
    const { server, client, rec } = await setup({}, { retry: { retries: 30, minDelayMs: 20, maxDelayMs: 300 } });
    const outage = server.outage(3000);
    const events: CloudEvent[] = [];
    for (let round = 0; round < 10; round++) {
      const batch = makeEvents(7);
      events.push(...batch);
      client.enqueue(batch);
      await new Promise((r) => setTimeout(r, 150));
    }
    await outage;
    await client.flush();
    expectExactlyOnce(server, events);
    expect(server.requests.some((r) => r.outcome === "down")).toBe(true);
    expect(client.stats()).toMatchObject({ sent: 70, failed: 0, dropped: 0 });
    expect(rec.errors).toEqual([]);
  });

  it("a permanent 400 that every part of the batch meets: reported once, not retried; other batches still delivered", async () => {
    const { server, client, rec } = await setup({}, { maxConcurrency: 1 });
    // The batch and every probe of its parts are refused: after three events refused on their own
    // (10 -> 5 -> 3 -> 2 -> 1, 1, then 1) the rest is given up without a request each.
    server.failNext(7, { status: 400, body: { type: "about:blank", title: "Bad Request", status: 400, detail: "event 0: subject is required" } });
    const events = makeEvents(30);
    client.enqueue(events);
    await client.flush();
    expect(server.requests).toHaveLength(9); // the batch, six probes, two more batches; no retry
    expect(rec.errors).toHaveLength(1);
    expect(rec.errors[0]).toMatchObject({ kind: "rejected", status: 400, detail: "event 0: subject is required" });
    expect(rec.errors[0]!.events).toEqual(events.slice(0, 10));
    expectExactlyOnce(server, events.slice(10));
    expect(client.stats()).toMatchObject({ sent: 20, failed: 10, retries: 0 });
  });

  it("an invalid event never reaches OpenMeter, so it cannot fail its batch", async () => {
    const { server, client, rec } = await setup({ api: "v3" });
    const events = makeEvents(5);
    const bad = { ...makeEvents(1)[0]!, tier: "pro" } as CloudEvent; // v3 rejects unknown attributes
    client.enqueue([...events.slice(0, 2), bad, ...events.slice(2)]);
    await client.flush();
    expectExactlyOnce(server, events);
    expect(statuses(server)).toEqual([202]);
    expect(rec.errors.map((e) => e.kind)).toEqual(["invalid-event"]);
  });

  it("a wrong apiKey: 401 reported once per batch with 'check apiKey', never retried", async () => {
    const { server, client, rec } = await setup({ apiKey: "right-key" }, { apiKey: "wrong-key", maxBatchSize: 5 });
    client.enqueue(makeEvents(10));
    await client.flush();
    expect(statuses(server)).toEqual([401, 401]);
    expect(rec.errors).toHaveLength(2);
    expect(rec.errors[0]!.message).toMatch(/401.*check apiKey/);
    expect(rec.errors[0]!.detail).toBe("invalid API token");
    expect(server.events).toHaveLength(0);
    expect([...rec.logged, ...rec.errors.map((e) => e.message)].join("\n")).not.toContain("wrong-key");

    const good = await setup({ apiKey: "right-key" }, { apiKey: "right-key" });
    const events = makeEvents(3);
    good.client.enqueue(events);
    await good.client.flush();
    expectExactlyOnce(good.server, events);
  });

  it("a wrong path: 404 says to check the url", async () => {
    const server = await startOpenMeterServer();
    const rec = recorder();
    const client = new IngestClient({ url: `${server.origin}/api/v1/event`, flushOnExit: false, logger: rec.logger, onError: rec.onError });
    cleanup.push(() => server.close(), () => client.shutdown());
    client.enqueue(makeEvents(1));
    await client.flush();
    expect(server.requests).toHaveLength(1);
    expect(rec.errors[0]!.message).toMatch(/404.*check url: OpenMeter's events path ends in \/events/);
  });

  it("a body limit (413): the batch is split until it fits", async () => {
    const { server, client, rec } = await setup({ maxBodyBytes: 1200 }, { maxBatchSize: 20 });
    const events = makeEvents(20);
    client.enqueue(events);
    await client.flush();
    expectExactlyOnce(server, events);
    expect(statuses(server)).toContain(413);
    expect(rec.errors).toEqual([]);
  });

  it("an outage with a spool: what outlasts the retries is spooled, then replayed once the endpoint is back", async () => {
    const { mkdtempSync, rmSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const dir = mkdtempSync(join(tmpdir(), "om-spool-"));
    cleanup.push(async () => rmSync(dir, { recursive: true, force: true }));
    const { server, client, rec } = await setup({}, { spoolDir: dir, retry: { retries: 2, minDelayMs: 5, maxDelayMs: 20 } });
    server.setMode("down");
    const during = makeEvents(30);
    client.enqueue(during);
    await client.flush();
    expect(client.stats()).toMatchObject({ spooled: 30, sent: 0 });
    server.setMode("ok");
    const after = makeEvents(3);
    client.enqueue(after);
    await client.flush();
    await server.waitForEvents(33);
    await client.shutdown();
    expectExactlyOnce(server, [...during, ...after]);
    expect(server.duplicates).toBe(0);
    expect(rec.errors).toEqual([]);
  });
});
