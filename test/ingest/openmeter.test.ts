// The ingest client against the realistic OpenMeter fake (src/testing): per-event forwarding that can
// stop part-way, de-duplication off by default (a bare self-hosted server), the drivers' modes,
// #5118's ingest-time de-duplication, and the meters that turn events into invoices. Time on a TestClock.
import { afterEach, describe, expect, it } from "vitest";
import { type CloudEvent, IngestClient, type IngestOptions } from "langchain-openmeter";
import { type OpenMeterServer, type OpenMeterServerOptions, startOpenMeterServer, TestClock } from "langchain-openmeter/testing";
import { balance, eventually, makeEvents, recorder, tempDir } from "./helpers";

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

async function setup(serverOptions: OpenMeterServerOptions = {}, clientOptions: Partial<IngestOptions> = {}) {
  const clock = new TestClock();
  const server = await startOpenMeterServer({ clock, ...serverOptions });
  const rec = recorder();
  const client = new IngestClient({
    url: server.url,
    clock,
    maxBatchSize: 10,
    flushIntervalMs: 10,
    retry: { retries: 3, minDelayMs: 1, maxDelayMs: 1000 },
    handleSignals: false,
    flushOnExit: false,
    logger: rec.logger,
    onError: rec.onError,
    ...clientOptions,
  });
  cleanup.push(
    () => server.close(),
    () => clock.advanceUntil(client.shutdown()),
  );
  return { server, client, rec, clock };
}

const ids = (events: readonly { id: string }[]) => events.map((e) => e.id).sort();
const statuses = (server: OpenMeterServer) => server.requests.map((r) => r.status);

describe("against the realistic OpenMeter fake", () => {
  it("v1 answers 204 and v3 (Konnect) 202; both are delivered, with the exact batch Content-Type", async () => {
    for (const api of ["v1", "v3"] as const) {
      const { server, client, clock, rec } = await setup({ api });
      const events = makeEvents(25);
      client.enqueue(events);
      await clock.advanceUntil(client.flush());
      expect(ids(server.events)).toEqual(ids(events));
      expect(new Set(statuses(server))).toEqual(new Set([api === "v1" ? 204 : 202]));
      expect(server.requests.every((r) => r.contentType === "application/cloudevents-batch+json")).toBe(true);
      expect(rec.errors).toEqual([]);
    }
  });

  it("a 500 after part of a batch was forwarded, de-duplication off (a bare self-hosted server): the retry counts the forwarded part twice", async () => {
    const { server, client, clock } = await setup();
    server.failAfter(3);
    const events = makeEvents(10);
    client.enqueue(events);
    await clock.advanceUntil(client.flush());
    expect(statuses(server)).toEqual([500, 204]);
    expect(server.duplicates).toBe(3);
    expect(server.events).toHaveLength(13); // what a meter sums: three events billed twice
    expect(client.stats()).toMatchObject({ delivered: 10, retries: 1 });
  });

  it("the same with de-duplication on (the quickstart's Redis on the sink): every event counted once", async () => {
    const { server, client, clock } = await setup({ dedupe: true });
    server.failAfter(3);
    const events = makeEvents(10);
    client.enqueue(events);
    await clock.advanceUntil(client.flush());
    expect(statuses(server)).toEqual([500, 204]);
    expect(ids(server.storedEvents)).toEqual(ids(events));
    expect(server.totals()).toEqual({ acme: { input: events.reduce((sum, e) => sum + (e.data!.tokens as number), 0) } });
  });

  it("ingest-time de-duplication (OpenMeter #5118): the failed event's key is recorded before its forward, so the retry is answered 204 and that event is lost", async () => {
    const { server, client, clock } = await setup({ dedupe: { ingest: { driver: "memory" } } });
    server.failAfter(3);
    const events = makeEvents(10);
    client.enqueue(events);
    await clock.advanceUntil(client.flush());
    expect(statuses(server)).toEqual([500, 204]);
    // The client did what it can: it resent the batch with the same ids and got a 2xx.
    expect(client.stats()).toMatchObject({ delivered: 10, pending: { memory: 0, disk: 0 } });
    // What the server kept: everything but the event whose forward failed: its key was recorded first,
    // so the retry's copy was taken for a duplicate and dropped.
    expect(ids(server.storedEvents)).toEqual(ids([...events.slice(0, 3), ...events.slice(4)]));
    expect(ids(server.lost)).toEqual(ids(events.slice(3, 4)));
  });

  it("a burst of 503s: retried until delivered, nothing doubled (a 503 forwards nothing)", async () => {
    const { server, client, clock, rec } = await setup();
    server.failNext(6, { status: 503 });
    const events = makeEvents(40);
    client.enqueue(events);
    await clock.advanceUntil(client.flush());
    await eventually(() => server.events.length === 40, "delivery");
    expect(ids(server.events)).toEqual(ids(events));
    expect(server.duplicates).toBe(0);
    expect(rec.errors).toEqual([]);
  });

  it("429 with Retry-After: the sender waits as told on the clock, then delivers", async () => {
    const { server, client, clock } = await setup();
    server.failNext(1, { status: 429, retryAfter: 30 });
    client.enqueue(makeEvents(5));
    await clock.advance(10); // the batch's interval
    await eventually(() => client.stats().state === "backing-off", "the 429");
    await clock.advance(29_999);
    expect(server.requests).toHaveLength(1);
    await clock.advance(1);
    await eventually(() => server.events.length === 5, "delivery after Retry-After");
    expect(server.requests).toHaveLength(2);
  });

  it("a hanging server: the request times out on the clock and is retried", async () => {
    const { server, client, clock } = await setup({}, { timeoutMs: 5000 });
    server.setMode("hang");
    client.enqueue(makeEvents(3));
    await clock.advance(10); // the batch's interval
    await eventually(() => server.requests.length === 1, "the hanging request");
    server.setMode("ok");
    await clock.advance(5000);
    await eventually(() => server.events.length === 3, "the retry");
    expect(server.requests.map((r) => r.outcome)).toEqual(["hang", "accepted"]);
  });

  it("a long outage with traffic throughout (10 minutes of clock): nothing lost, nothing doubled, memory bounded", async () => {
    const { server, client, clock } = await setup({}, { maxQueueSize: 100_000, retry: { retries: 2, minDelayMs: 1, maxDelayMs: 30_000 } });
    server.setMode("down");
    const sent: CloudEvent[] = [];
    for (let minute = 0; minute < 10; minute++) {
      const batch = makeEvents(20);
      sent.push(...batch);
      client.enqueue(batch);
      await clock.advance(60_000);
    }
    expect(client.stats().pending.memory).toBe(200);
    const requestsDuringOutage = server.requests.length;
    expect(requestsDuringOutage).toBeLessThan(40); // one probe every 30 s, not a storm
    server.setMode("ok");
    await clock.advance(30_000);
    await clock.advanceUntil(client.flush());
    expect(ids(server.events)).toEqual(ids(sent));
    expect(server.duplicates).toBe(0);
  });

  it("an invalid event never reaches OpenMeter, so it cannot fail its batch-mates", async () => {
    const { server, client, clock, rec } = await setup();
    const events = makeEvents(3);
    client.enqueue([events[0]!, { ...events[1]!, source: "my_app:prod" }, events[2]!]);
    await clock.advanceUntil(client.flush());
    expect(ids(server.events)).toEqual(ids([events[0]!, events[2]!]));
    expect(rec.errors.map((e) => e.kind)).toEqual(["invalid-event"]);
    expect(rec.errors[0]!.message).toMatch(/`source` contains ":"/);
  });

  it("an event larger than OpenMeter's Kafka producer takes is refused at enqueue, not retried for ever", async () => {
    const { server, client, clock, rec } = await setup();
    const [small, big] = makeEvents(2);
    (big!.data as Record<string, unknown>).note = "x".repeat(950_000);
    client.enqueue([small!, big!]);
    await clock.advanceUntil(client.flush());
    expect(ids(server.events)).toEqual([small!.id]);
    expect(rec.errors[0]!.message).toMatch(/more than OpenMeter's Kafka producer takes in one message/);
  });

  it("a wrong apiKey without a spool: every batch reported with 'check apiKey' and its events, never retried", async () => {
    const { server, client, clock, rec } = await setup({ apiKey: "right" }, { apiKey: "wrong" });
    client.enqueue(makeEvents(15));
    await clock.advanceUntil(client.flush());
    expect(statuses(server)).toEqual([401, 401]);
    expect(rec.errors.map((e) => [e.status, e.events.length])).toEqual([
      [401, 10],
      [401, 5],
    ]);
    expect(rec.errors[0]!.message).toMatch(/check apiKey/);
  });

  it("a wrong apiKey with a spool: the events wait on disk, one probe a minute, and a client with the right key delivers them", async () => {
    const dir = tempDir();
    cleanup.push(dir.remove);
    const { server, client, clock, rec } = await setup({ apiKey: "right" }, { apiKey: "wrong", spoolDir: dir.dir });
    const events = makeEvents(15);
    client.enqueue(events);
    await clock.advanceUntil(client.flush());
    expect(client.stats()).toMatchObject({ state: "misconfigured", pending: { memory: 0, disk: 15 } });
    expect(rec.errors).toHaveLength(1);
    expect(rec.errors[0]!.message).toMatch(/check apiKey.*wait in/);
    // Timed from the refusal: flush() settles a few steps of the clock later, after the disk's work.
    const before = server.requests.length;
    const refusedAt = server.requests.at(-1)!.time.getTime();
    await clock.advance(120_000 - (clock.wallNow() - refusedAt) - 1);
    const probes = server.requests.slice(before).map((r) => r.time.getTime() - refusedAt);
    expect(probes).toEqual([60_000]);
    await clock.advanceUntil(client.shutdown());
    const fixed = new IngestClient({ url: server.url, apiKey: "right", spoolDir: dir.dir, clock, handleSignals: false, flushOnExit: false, logger: rec.logger });
    await clock.advanceUntil(fixed.flush());
    expect(ids(server.events)).toEqual(ids(events));
    await clock.advanceUntil(fixed.shutdown());
  });

  it("a wrong path: 404 says to check the url", async () => {
    const { server, client, clock, rec } = await setup();
    const wrong = new IngestClient({ url: `${server.origin}/api/v1/event`, clock, handleSignals: false, flushOnExit: false, logger: rec.logger, onError: rec.onError });
    wrong.enqueue(makeEvents(2));
    await clock.advanceUntil(wrong.flush());
    expect(rec.errors[0]!.status).toBe(404);
    expect(rec.errors[0]!.message).toMatch(/check url/);
    await clock.advanceUntil(wrong.shutdown());
    void client;
  });

  it("a gateway body limit (413, as a Konnect-like gateway might have): the batch is split until it fits", async () => {
    const { server, client, clock, rec } = await setup({ gatewayLimitBytes: 1500 }, { maxBatchSize: 20 });
    const events = makeEvents(20);
    client.enqueue(events);
    await clock.advanceUntil(client.flush());
    expect(ids(server.events)).toEqual(ids(events));
    expect(server.requests.some((r) => r.status === 413)).toBe(true);
    expect(rec.errors).toEqual([]);
  });

  it("what the meter sums: only events of the meter's type count (a wrong eventType bills nothing)", async () => {
    const { server, client, clock } = await setup();
    const [right, wrong] = makeEvents(2);
    client.enqueue([right!, { ...wrong!, type: "llm.tokens" }]);
    await clock.advanceUntil(client.flush());
    expect(server.events).toHaveLength(2);
    expect(server.totals()).toEqual({ acme: { input: right!.data!.tokens } });
  });

  it("the counters add up after partial ingests, retries and refusals", async () => {
    const { server, client, clock } = await setup({ apiKey: "k" }, { apiKey: "k" });
    server.failAfter(2, { times: 2 });
    server.failNext(1, { status: 422 });
    client.enqueue(makeEvents(30));
    await clock.advanceUntil(client.flush());
    const stats = client.stats();
    expect(balance(stats).right).toBe(balance(stats).left);
    expect(stats.delivered + stats.refused).toBe(30);
  });
});
