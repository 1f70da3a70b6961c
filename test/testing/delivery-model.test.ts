/**
 * Partial ingest, de-duplication and the sink, against OpenMeter's code (openmeterio/openmeter at 7e57a394):
 * `openmeter/ingest/service.go` (events forwarded one by one, the first error returned),
 * `openmeter/ingest/dedupe.go` (ingest-time key recorded before the forward: issue #5118),
 * `openmeter/dedupe/memorydedupe/memorydedupe.go`, `openmeter/dedupe/redisdedupe/redisdedupe.go`,
 * `openmeter/dedupe/dedupe.go` (key format), `app/config/dedupe.go`, `app/config/sink.go` (defaults),
 * `openmeter/sink/sink.go` (`parseMessage`, `flush`, `dedupeSinkMessages`),
 * `openmeter/ingest/kafkaingest/serializer/serializer.go` (`ValidateKafkaPayloadToCloudEvent`), and
 * librdkafka `rdkafka_msg.c` `rd_kafka_msg_new0` (message.max.bytes checked when producing).
 */
import { describe, expect, it } from "vitest";
import { DEFAULT_REDIS_EXPIRATION_MS, QUICKSTART_EXPIRATION_MS, TestClock } from "langchain-openmeter/testing";
import { event, post, problemOf, start } from "./helpers";

const batch = (n: number, from = 0) => Array.from({ length: n }, (_, i) => event(from + i, { id: `e-${from + i}` }));
const storedIds = (server: { storedEvents: readonly { id: string }[] }) => server.storedEvents.map((e) => e.id);

describe("partial ingest: events forwarded one by one, the first failure ends the request", () => {
  it("failAfter(2) on 5 events: 500, events 0 and 1 forwarded and stored, 2-4 not", async () => {
    const server = await start();
    server.failAfter(2);
    const response = await post(server, batch(5));
    expect(response.status).toBe(500);
    await response.body?.cancel();
    expect(storedIds(server)).toEqual(["e-0", "e-1"]);
    expect(server.requests[0]).toMatchObject({ status: 500, outcome: "failed", eventCount: 5, accepted: 2 });
  });

  it("dedupe off (a bare self-hosted server): retrying the whole batch stores the first two twice and counts them", async () => {
    const server = await start();
    server.failAfter(2);
    await (await post(server, batch(5))).body?.cancel();
    expect((await post(server, batch(5))).status).toBe(204);
    expect(storedIds(server)).toEqual(["e-0", "e-1", "e-0", "e-1", "e-2", "e-3", "e-4"]);
    expect(server.duplicates).toBe(2);
    expect(server.totals()).toEqual({ acme: { input: 70 } }); // 5 events of 10 tokens billed as 7
  });

  it("quickstart de-duplication (sink, Redis, 32 days): the same retry bills each event once", async () => {
    const server = await start({ dedupe: true });
    expect(server.dedupe).toEqual({ sink: { driver: "redis", expirationMs: QUICKSTART_EXPIRATION_MS } });
    server.failAfter(2);
    await (await post(server, batch(5))).body?.cancel();
    expect((await post(server, batch(5))).status).toBe(204);
    expect(storedIds(server)).toEqual(["e-0", "e-1", "e-2", "e-3", "e-4"]);
    expect(server.duplicates).toBe(2);
    expect(server.dropped.map((d) => [d.event.id, d.reason])).toEqual([
      ["e-0", "skipping non unique message"],
      ["e-1", "skipping non unique message"],
    ]);
    expect(server.totals()).toEqual({ acme: { input: 50 } });
  });

  it("ingest-time de-duplication (#5118): the failed event's key was recorded, so its retry is answered 204 and lost", async () => {
    const server = await start({ dedupe: { ingest: { driver: "memory" } } });
    server.failAfter(2);
    await (await post(server, batch(5))).body?.cancel();
    expect((await post(server, batch(5))).status).toBe(204);
    expect(storedIds(server)).toEqual(["e-0", "e-1", "e-3", "e-4"]);
    expect(server.lost.map((e) => e.id)).toEqual(["e-2"]);
    expect(server.duplicates).toBe(2);
    expect(server.totals()).toEqual({ acme: { input: 40 } });
  });

  it("answers a chosen status a given number of times, and keeps a failure for a batch long enough to reach it", async () => {
    const server = await start();
    server.failAfter(3, { status: 503, times: 2 });
    expect((await post(server, batch(3))).status).toBe(204); // only 3 events: index 3 is never reached
    expect(server.queuedForwardFailures).toBe(2);
    const first = await post(server, batch(4, 10));
    expect(first.status).toBe(503);
    await first.body?.cancel();
    const second = await post(server, batch(4, 20));
    expect(second.status).toBe(503);
    await second.body?.cancel();
    expect((await post(server, batch(4, 30))).status).toBe(204);
    expect(server.storedEvents).toHaveLength(3 + 3 + 3 + 4);
  });
});

describe("size: no body limit, but each Kafka message is bounded by message.max.bytes", () => {
  it("an event over kafkaMaxMessageBytes fails the request with a 500 after the events before it were forwarded", async () => {
    const server = await start({ kafkaMaxMessageBytes: 2000 });
    const big = event(1, { id: "big", data: { type: "input", tokens: 1, pad: "x".repeat(2000) } });
    const response = await post(server, [event(0, { id: "small-0" }), big, event(2, { id: "small-2" })]);
    expect(response.status).toBe(500);
    expect(await problemOf(response)).not.toHaveProperty("detail");
    expect(server.requests[0]?.detail).toMatch(/Message size too large .*event 1: ~\d+ bytes > message\.max\.bytes 2000/);
    expect(storedIds(server)).toEqual(["small-0"]);
  });

  it("the default limit is librdkafka's 1,000,000 bytes: a 990 kB event passes, a 1 MB one fails", async () => {
    const server = await start();
    expect(server.kafkaMaxMessageBytes).toBe(1_000_000);
    const sized = (id: string, n: number) => event(0, { id, data: { type: "input", tokens: 1, pad: "x".repeat(n) } });
    expect((await post(server, [sized("ok", 990_000)])).status).toBe(204);
    const tooBig = await post(server, [sized("too-big", 1_000_000)]);
    expect(tooBig.status).toBe(500);
    await tooBig.body?.cancel();
    expect(storedIds(server)).toEqual(["ok"]);
  });
});

describe("de-duplication drivers", () => {
  it("the key is namespace-source-id concatenated, so source 'a-b' + id 'c' collides with source 'a' + id 'b-c'", async () => {
    const server = await start({ dedupe: true });
    await post(server, [event(1, { source: "a-b", id: "c" })]);
    await post(server, [event(2, { source: "a", id: "b-c" })]);
    expect(server.storedEvents.map((e) => `${e.source}|${e.id}`)).toEqual(["a-b|c"]);
    expect(server.dropped[0]?.reason).toBe("skipping non unique message");
  });

  it("memory: an LRU of `size` keys that a repeat does not refresh (golang-lru ContainsOrAdd)", async () => {
    const server = await start({ dedupe: { ingest: { driver: "memory", size: 2 } } });
    for (const id of ["k1", "k2", "k1", "k3", "k1"]) await post(server, [event(0, { id })]);
    // k1 repeated while cached (dropped), then k3 evicts k1 (the oldest, not refreshed), so k1 is stored again.
    expect(storedIds(server)).toEqual(["k1", "k2", "k3", "k1"]);
    expect(server.duplicates).toBe(2);
  });

  it("memory: 128 keys by default, so the 129th distinct event pushes out the first", async () => {
    const server = await start({ dedupe: { sink: { driver: "memory" } } });
    await post(server, batch(129));
    await post(server, [event(0, { id: "e-0" }), event(0, { id: "e-1" })]);
    expect(server.storedEvents).toHaveLength(130); // e-0 evicted and stored again, e-1 still known
    expect(server.storedEvents.at(-1)?.id).toBe("e-0");
  });

  it("redis: keys expire after expirationMs of the server's clock (24 h by default)", async () => {
    const clock = new TestClock();
    const server = await start({ clock, dedupe: { sink: { driver: "redis" } } });
    expect(DEFAULT_REDIS_EXPIRATION_MS).toBe(24 * 60 * 60 * 1000);
    await post(server, [event(1)]);
    await clock.advance(DEFAULT_REDIS_EXPIRATION_MS - 1);
    await post(server, [event(1)]);
    expect(server.storedEvents).toHaveLength(1);
    await clock.advance(1);
    await post(server, [event(1)]);
    expect(server.storedEvents).toHaveLength(2);
    expect(server.duplicates).toBe(2);
  });

  it("dedupe off still drops a repeat inside one sink flush (dedupeSinkMessages), and counts it", async () => {
    const server = await start();
    expect(server.dedupe).toEqual({});
    expect((await post(server, [event(1), event(1)])).status).toBe(204);
    expect(server.storedEvents).toHaveLength(1);
    expect(server.dropped[0]?.reason).toMatch(/duplicate within one sink flush/);
    expect(server.duplicates).toBe(1);
  });
});

describe("the sink worker", () => {
  it("with sinkBatching, events are stored at the flush: after minCommitCount messages or maxCommitWaitMs", async () => {
    const clock = new TestClock();
    const server = await start({ clock, sinkBatching: { minCommitCount: 3, maxCommitWaitMs: 2000 } });
    await post(server, [event(1)]);
    await post(server, [event(1)]); // a retry while the first copy is still in the buffer
    expect(server.storedEvents).toHaveLength(0);
    expect(server.pendingInSink).toBe(2);
    await clock.advance(2000);
    expect(server.storedEvents).toHaveLength(1); // the buffer's repeat was dropped in the flush
    await post(server, [event(2), event(3), event(4)]);
    expect(server.storedEvents).toHaveLength(4); // minCommitCount reached: flushed at once
  });

  it("an event at or before 1970-01-01T00:00:00Z is answered 204 and dropped ('time is zero')", async () => {
    const server = await start();
    expect((await post(server, [event(1, { time: "1970-01-01T00:00:00Z" }), event(2, { time: "1969-12-31T23:59:59Z" }), event(3, { time: "1970-01-01T00:00:01Z" })])).status).toBe(204);
    expect(storedIds(server)).toEqual(["run-3-input"]);
    expect(server.dropped.map((d) => d.reason)).toEqual([
      "failed to validate cloudevents message: time is zero",
      "failed to validate cloudevents message: time is zero",
    ]);
  });
});
