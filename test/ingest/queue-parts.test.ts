/**
 * The ingest client's small parts on their own: the flush epochs (flush-tracker.ts), when a batch is
 * due (batcher.ts), the in-memory queue (memory-queue.ts) and serialisation at enqueue (serialize.ts).
 * The client tests drive them together over HTTP; these pin each rule at its edge, on TestClock.
 */
import { describe, expect, it } from "vitest";
import { Batcher } from "../../src/ingest/batcher";
import { FlushTracker } from "../../src/ingest/flush-tracker";
import { MemoryQueue } from "../../src/ingest/memory-queue";
import type { QueuedEvent } from "../../src/ingest/queue";
import { MAX_EVENT_BYTES, serializeEvent } from "../../src/ingest/serialize";
import { TestClock } from "../../src/testing/clock";

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));
const queued = (n: number, from = 0): QueuedEvent[] => Array.from({ length: n }, (_, i) => ({ id: `e${from + i}`, json: `{"id":"e${from + i}"}`, epoch: 0 }));
const ids = (events: readonly QueuedEvent[] | undefined) => events?.map((e) => e.id);

describe("FlushTracker", () => {
  it("a mark closes the epoch only when something entered it", () => {
    const tracker = new FlushTracker();
    expect(tracker.mark()).toBe(0);
    expect(tracker.epoch).toBe(0);
    tracker.add(0, 2);
    expect(tracker.mark()).toBe(0);
    expect(tracker.epoch).toBe(1);
    // Nothing entered epoch 1 since: the next mark is 1 and stays open.
    expect(tracker.mark()).toBe(1);
    expect(tracker.epoch).toBe(1);
  });

  it("adding to an earlier epoch (events taken over) does not count as entering the current one", () => {
    const tracker = new FlushTracker();
    tracker.add(0, 1);
    tracker.mark();
    tracker.add(0, 1);
    expect(tracker.mark()).toBe(1);
    expect(tracker.epoch).toBe(1);
    tracker.add(1, 0);
    expect(tracker.mark()).toBe(1);
    expect(tracker.epoch).toBe(1);
  });

  it("a mark is done when no event of it or an earlier epoch is left; later epochs do not hold it", () => {
    const tracker = new FlushTracker();
    tracker.add(0, 2);
    const first = tracker.mark();
    tracker.add(1, 5);
    expect(tracker.isDone(first, undefined)).toBe(false);
    tracker.done(0, 1);
    expect(tracker.isDone(first, undefined)).toBe(false);
    tracker.done(0, 1);
    expect(tracker.isDone(first, undefined)).toBe(true);
    expect(tracker.isDone(1, undefined)).toBe(false);
    // Done more than added clears the epoch, never leaves a negative count behind.
    tracker.done(1, 9);
    expect(tracker.isDone(1, undefined)).toBe(true);
    tracker.add(1, 1);
    expect(tracker.isDone(1, undefined)).toBe(false);
  });

  it("an unread segment of the mark's epoch or earlier holds it; a later one does not", () => {
    const tracker = new FlushTracker();
    expect(tracker.isDone(3, 3)).toBe(false);
    expect(tracker.isDone(3, 2)).toBe(false);
    expect(tracker.isDone(3, 4)).toBe(true);
    expect(tracker.isDone(3, undefined)).toBe(true);
  });
});

describe("Batcher", () => {
  function batcher(maxBatchSize = 3, flushIntervalMs = 1000) {
    const clock = new TestClock();
    let due = 0;
    const b = new Batcher(clock, maxBatchSize, flushIntervalMs, () => due++);
    return { clock, b, due: () => due };
  }

  it("a partial batch is due flushIntervalMs after its first event, not before, and not again for later events", async () => {
    const { clock, b, due } = batcher();
    b.appended(1);
    expect(b.due(1)).toBe(false);
    await clock.advance(500);
    b.appended(2);
    await clock.advance(499);
    expect(due()).toBe(0);
    expect(clock.pendingTimers).toBe(1);
    await clock.advance(1);
    expect(due()).toBe(1);
    expect(b.due(2)).toBe(true);
    // The timer fired: appends until the batch is taken start no new one.
    b.appended(2);
    expect(clock.pendingTimers).toBe(0);
  });

  it("a full batch is due at once, on the next turn, once for a burst, never inside the append", async () => {
    const { clock, b, due } = batcher(3);
    b.appended(3);
    b.appended(4);
    expect(due()).toBe(0);
    expect(b.due(3)).toBe(true);
    expect(b.due(2)).toBe(false);
    expect(clock.pendingTimers).toBe(0);
    await nextTurn();
    expect(due()).toBe(1);
    b.appended(5);
    await nextTurn();
    expect(due()).toBe(2);
  });

  it("nothing waiting is never due, even when forced or after the timer", async () => {
    const { b } = batcher();
    b.force();
    expect(b.due(0)).toBe(false);
    expect(b.due(1)).toBe(true);
  });

  it("force makes everything due on the next turn", async () => {
    const { b, due } = batcher();
    b.appended(1);
    b.force();
    b.force();
    expect(due()).toBe(0);
    await nextTurn();
    expect(due()).toBe(1);
  });

  it("taken with nothing left resets: the next event starts a new interval", async () => {
    const { clock, b, due } = batcher();
    b.appended(1);
    await clock.advance(1000);
    expect(due()).toBe(1);
    b.taken(0);
    expect(b.due(1)).toBe(false);
    b.appended(1);
    await clock.advance(999);
    expect(due()).toBe(1);
    await clock.advance(1);
    expect(due()).toBe(2);
  });

  it("taken with events left arms the timer for them; a forced flush is over once everything was taken", async () => {
    const { clock, b, due } = batcher();
    b.force();
    await nextTurn();
    b.taken(2);
    expect(clock.pendingTimers).toBe(1);
    b.taken(0);
    expect(clock.pendingTimers).toBe(0);
    expect(b.due(1)).toBe(false);
    await clock.advance(5000);
    expect(due()).toBe(1);
  });

  it("taken with events left while the interval's timer runs: one timer", async () => {
    const { clock, b } = batcher();
    b.appended(1);
    b.taken(1);
    expect(clock.pendingTimers).toBe(1);
  });

  it("stop clears the timer", async () => {
    const { clock, b, due } = batcher();
    b.appended(1);
    b.stop();
    expect(clock.pendingTimers).toBe(0);
    await clock.advance(2000);
    expect(due()).toBe(0);
    // And a later append arms a new one.
    b.appended(1);
    expect(clock.pendingTimers).toBe(1);
  });
});

describe("MemoryQueue", () => {
  it("takes the oldest events first, up to max, and only when live events are due", () => {
    const queue = new MemoryQueue();
    expect(queue.append(queued(5), { memoryLimit: 10 })).toBeUndefined();
    expect(queue.take(2, { liveDue: false })).toBeUndefined();
    expect(ids(queue.take(2, { liveDue: true })?.events)).toStrictEqual(["e0", "e1"]);
    expect(ids(queue.take(10, { liveDue: true })?.events)).toStrictEqual(["e2", "e3", "e4"]);
    expect(queue.take(10, { liveDue: true })).toBeUndefined();
    expect(queue.take(0, { liveDue: true })).toBeUndefined();
    expect(queue.location).toBe("memory");
  });

  it("take without options takes live events", () => {
    const queue = new MemoryQueue();
    queue.append(queued(1), { memoryLimit: 10 });
    expect(ids(queue.take(5)?.events)).toStrictEqual(["e0"]);
  });

  it("max 0 takes nothing, even with events waiting", () => {
    const queue = new MemoryQueue();
    queue.append(queued(2), { memoryLimit: 10 });
    expect(queue.take(0, { liveDue: true })).toBeUndefined();
    expect(queue.ready).toBe(2);
  });

  it("counts ready and pending: taken events stay pending until settled", () => {
    const queue = new MemoryQueue();
    queue.append(queued(4), { memoryLimit: 10 });
    const batch = queue.take(3, { liveDue: true })!;
    expect(queue.ready).toBe(1);
    expect(queue.pending()).toStrictEqual({ memory: 4, disk: 0 });
    queue.settle(batch);
    expect(queue.pending()).toStrictEqual({ memory: 1, disk: 0 });
    // A second settle changes nothing.
    queue.settle(batch);
    expect(queue.pending()).toStrictEqual({ memory: 1, disk: 0 });
  });

  it("a released batch comes back first, even when live events are not due; releasing twice keeps one copy", () => {
    const queue = new MemoryQueue();
    queue.append(queued(4), { memoryLimit: 10 });
    const batch = queue.take(2, { liveDue: true })!;
    queue.release(batch);
    queue.release(batch);
    expect(queue.ready).toBe(4);
    expect(ids(queue.take(10, { liveDue: false })?.events)).toStrictEqual(["e0", "e1"]);
    expect(queue.take(10, { liveDue: false })).toBeUndefined();
    expect(queue.ready).toBe(2);
    expect(queue.pending().memory).toBe(4);
  });

  it("a settled batch cannot be released afterwards", () => {
    const queue = new MemoryQueue();
    queue.append(queued(2), { memoryLimit: 10 });
    const batch = queue.take(2, { liveDue: true })!;
    queue.settle(batch);
    queue.release(batch);
    expect(queue.ready).toBe(0);
    expect(queue.pending().memory).toBe(0);
  });

  it("refuses an append past memoryLimit, counting events under way, and says what to change", () => {
    const queue = new MemoryQueue();
    queue.append(queued(3), { memoryLimit: 5 });
    queue.take(2, { liveDue: true });
    const events = queued(3, 3);
    expect(queue.append(events, { memoryLimit: 5 })).toStrictEqual({
      events,
      kind: "queue-full",
      reason:
        "the in-memory queue holds 3 events (maxQueueSize 5) while the endpoint is failing, and no spoolDir is set; set spoolDir to keep them on disk, or raise maxQueueSize",
    });
    // Exactly up to the limit is kept.
    expect(queue.append(queued(2, 3), { memoryLimit: 5 })).toBeUndefined();
    expect(queue.pending().memory).toBe(5);
  });

  it("slices are settled and released on their own", () => {
    const queue = new MemoryQueue();
    queue.append(queued(4), { memoryLimit: 10 });
    const batch = queue.take(4, { liveDue: true })!;
    const front = batch.slice(0, 2);
    const back = batch.slice(2, 4);
    expect([ids(front.events), ids(back.events)]).toStrictEqual([["e0", "e1"], ["e2", "e3"]]);
    queue.settle(front);
    expect(queue.pending().memory).toBe(2);
    queue.release(back);
    expect(ids(queue.take(10, { liveDue: false })?.events)).toStrictEqual(["e2", "e3"]);
    // The sliced whole is no longer under way.
    queue.release(batch);
    expect(queue.ready).toBe(0);
  });

  it("drain removes and returns everything: under way, released and waiting", () => {
    const queue = new MemoryQueue();
    queue.append(queued(6), { memoryLimit: 10 });
    const underWay = queue.take(2, { liveDue: true })!;
    const released = queue.take(2, { liveDue: true })!;
    queue.release(released);
    expect(ids(queue.drainMemory())).toStrictEqual(["e0", "e1", "e2", "e3", "e4", "e5"]);
    expect(queue.pending()).toStrictEqual({ memory: 0, disk: 0 });
    expect(queue.ready).toBe(0);
    expect(queue.take(10, { liveDue: true })).toBeUndefined();
    queue.append(queued(1, 9), { memoryLimit: 1 });
    expect(ids(queue.take(10, { liveDue: true })?.events)).toStrictEqual(["e9"]);
    // A batch that was under way when drained was handed to the report: it does not come back.
    queue.release(underWay);
    expect(queue.ready).toBe(0);
    expect(queue.pending()).toStrictEqual({ memory: 1, disk: 0 });
  });

  it("keeps taking in order across a long run of appends and takes (the taken front is dropped now and then)", () => {
    const queue = new MemoryQueue();
    const seen: string[] = [];
    let next = 0;
    for (let round = 0; round < 30; round++) {
      queue.append(queued(500, next), { memoryLimit: 100_000 });
      next += 500;
      const batch = queue.take(450, { liveDue: true })!;
      seen.push(...ids(batch.events)!);
      queue.settle(batch);
    }
    for (let batch = queue.take(1000, { liveDue: true }); batch; batch = queue.take(1000, { liveDue: true })) {
      seen.push(...ids(batch.events)!);
      queue.settle(batch);
    }
    expect(seen).toStrictEqual(Array.from({ length: next }, (_, i) => `e${i}`));
    expect(queue.pending().memory).toBe(0);
  });
});

describe("serializeEvent", () => {
  const event = { specversion: "1.0", id: "e1", source: "app", type: "tokens", subject: "acme", time: "2025-01-02T03:04:05.678Z", data: { tokens: 1 } };

  it("serialises a valid event once, with its id and epoch", () => {
    expect(serializeEvent(event, 7)).toStrictEqual({ ok: true, event: { id: "e1", json: JSON.stringify(event), epoch: 7 } });
  });

  it("refuses an invalid event with all its problems", () => {
    const result = serializeEvent({ ...event, id: "", subject: 5 }, 0);
    expect(result.ok).toBe(false);
    expect((result as { reason: string }).reason).toMatch(/id.*; .*subject|subject.*; .*id/);
  });

  it(`refuses an event over ${MAX_EVENT_BYTES} bytes of JSON, counting bytes, not characters`, () => {
    const base = JSON.stringify({ ...event, data: { note: "" } }).length;
    const fits = { ...event, data: { note: "x".repeat(MAX_EVENT_BYTES - base) } };
    expect(Buffer.byteLength(JSON.stringify(fits))).toBe(MAX_EVENT_BYTES);
    expect(serializeEvent(fits, 0).ok).toBe(true);
    const over = { ...event, data: { note: "x".repeat(MAX_EVENT_BYTES - base + 1) } };
    expect(serializeEvent(over, 0)).toStrictEqual({
      ok: false,
      reason: `it is ${MAX_EVENT_BYTES + 1} bytes as JSON, more than OpenMeter's Kafka producer takes in one message (about 1,000,000 bytes, and 900000 here to leave room for its headers): make its \`data\` smaller`,
    });
    // Three bytes a character: a third as many characters are already too many bytes.
    const wide = { ...event, data: { note: "€".repeat(Math.ceil((MAX_EVENT_BYTES - base) / 3) + 1) } };
    expect(serializeEvent(wide, 0).ok).toBe(false);
    const wideFits = { ...event, data: { note: "€".repeat(Math.floor((MAX_EVENT_BYTES - base) / 3)) } };
    expect(serializeEvent(wideFits, 0).ok).toBe(true);
  });

  it("an event that cannot be read or serialised costs only itself, with the reason", () => {
    const throwing = { ...event, data: { get tokens() { throw new Error("no access"); } } };
    expect(serializeEvent(throwing, 0)).toMatchObject({ ok: false, reason: expect.stringMatching(/no access/) });
    const big = { ...event, data: { n: 1n } };
    expect(serializeEvent(big, 0)).toMatchObject({ ok: false });
    expect((serializeEvent(big, 0) as { reason: string }).reason.length).toBeGreaterThan(0);
  });
});
