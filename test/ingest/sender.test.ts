// The sender on its own: its states, its waits and what it does with each answer. The transport here
// is a script of answers (the sender's one dependency below it); delivery over real HTTP is shown in
// client.test.ts, retry.test.ts and rejections.test.ts against the OpenMeter fake.
import { describe, expect, it } from "vitest";
import { Batcher } from "../../src/ingest/batcher";
import { MemoryQueue } from "../../src/ingest/memory-queue";
import type { QueuedEvent } from "../../src/ingest/queue";
import type { RetryingTransport } from "../../src/ingest/retrying-transport";
import { MISCONFIGURED_PROBE_MS, Sender, type SenderState } from "../../src/ingest/sender";
import type { AttemptResult } from "../../src/ingest/transport";
import { TestClock } from "../../src/testing/clock";

const delivered: AttemptResult = { kind: "delivered", status: 204 };
const retryable = (retryAfterMs?: number): AttemptResult => ({ kind: "retryable", status: 503, detail: undefined, message: "503", retryAfterMs });
const refused = (status: number, configuration = false): AttemptResult => ({ kind: "refused", status, detail: undefined, message: `${status}`, configuration });

let seq = 0;
const events = (n: number): QueuedEvent[] =>
  Array.from({ length: n }, () => {
    const id = `s${seq++}`;
    return { id, json: JSON.stringify({ id }), epoch: 0 };
  });

type Answer = (ids: string[], retries: number | undefined) => AttemptResult | Promise<AttemptResult>;

function setUp(answer: Answer, options: { maxConcurrency?: number; maxBatchSize?: number; keep?: boolean } = {}) {
  const clock = new TestClock();
  const queue = new MemoryQueue();
  const sends: Array<{ ids: string[]; retries: number | undefined; at: number }> = [];
  const states: SenderState[] = [];
  const refusedIds: string[] = [];
  const deliveredIds: string[] = [];
  const misconfigured: string[] = [];
  let retried = 0;
  const transport = {
    async send(body: string, _signal: AbortSignal, retries?: number) {
      const ids = (JSON.parse(body) as Array<{ id: string }>).map((e) => e.id);
      sends.push({ ids, retries, at: clock.now() });
      return answer(ids, retries);
    },
  } as unknown as RetryingTransport;
  const maxBatchSize = options.maxBatchSize ?? 100;
  const batcher = new Batcher(clock, maxBatchSize, 1000, () => sender.pump());
  const sender: Sender = new Sender({
    queue,
    transport,
    batcher,
    clock,
    maxConcurrency: options.maxConcurrency ?? 1,
    maxBatchSize,
    backoffMs: 10_000,
    keepOnConfigurationProblem: options.keep ?? true,
    hooks: {
      delivered: (batch) => deliveredIds.push(...batch.events.map((e) => e.id)),
      refused: (list) => refusedIds.push(...list.map((e) => e.id)),
      reportRefused: () => {},
      misconfigured: (batch) => misconfigured.push(...batch.events.map((e) => e.id)),
      stateChanged: (state) => states.push(state),
      retried: () => retried++,
      afterRequest: () => {},
    },
  });
  const send = async (list: QueuedEvent[]) => {
    queue.append(list, { memoryLimit: 10_000 });
    batcher.force();
    sender.pump();
    await clock.advance(0);
  };
  return { clock, queue, sender, sends, states, refusedIds, deliveredIds, misconfigured, retried: () => retried, send };
}

/** A promise the test settles by hand. */
function gate<T>() {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => (open = resolve));
  return { promise, open };
}

describe("states", () => {
  it("says each change once: retrying, backing-off (not again when the probe fails), healthy", async () => {
    let answers = [retryable(), retryable(), delivered];
    const s = setUp(() => answers.shift()!);
    s.sender.noteRetry(retryable() as never);
    s.sender.noteRetry(retryable() as never);
    expect(s.states).toEqual(["retrying"]);
    expect(s.retried()).toBe(2);
    await s.send(events(2));
    expect(s.states).toEqual(["retrying", "backing-off"]);
    expect(s.sender.unreachable).toBe(true);
    await s.clock.advance(10_000); // the probe fails too
    expect(s.sends).toHaveLength(2);
    expect(s.states).toEqual(["retrying", "backing-off"]);
    await s.clock.advance(10_000);
    expect(s.states).toEqual(["retrying", "backing-off", "healthy"]);
    expect(s.sender.unreachable).toBe(false);
    answers = [delivered];
    await s.send(events(1));
    expect(s.states).toEqual(["retrying", "backing-off", "healthy"]); // healthy stays quiet
  });

  it("the probe after a wait goes without retries; a wait with nothing queued any more sends nothing", async () => {
    const s = setUp(() => retryable());
    await s.send(events(1));
    expect(s.sends[0]!.retries).toBeUndefined();
    s.queue.drainMemory();
    await s.clock.advance(10_000);
    expect(s.sends).toHaveLength(1);
    await s.send(events(1)); // still backing off: the timer has run, so this is the probe
    expect(s.sends.map((send) => send.retries)).toEqual([undefined, 0]);
  });

  it("after the server's Retry-After the batch goes again and counts as a retry; after retries ran out, the probe does not", async () => {
    const answers = [retryable(500), delivered, retryable(), delivered];
    const s = setUp(() => answers.shift()!);
    await s.send(events(1));
    expect(s.sender.unreachable).toBe(false); // it said when
    await s.clock.advance(499);
    expect(s.sends).toHaveLength(1);
    await s.clock.advance(1);
    expect(s.sends).toHaveLength(2);
    expect(s.retried()).toBe(1);
    await s.send(events(1));
    await s.clock.advance(10_000);
    expect(s.sends).toHaveLength(4);
    expect(s.retried()).toBe(1);
  });
});

describe("resumeBy: waits that end by a deadline", () => {
  it("cuts the wait under way to end at the deadline", async () => {
    const s = setUp(() => (s.sends.length === 1 ? retryable() : delivered));
    await s.send(events(1));
    s.sender.resumeBy(s.clock.now() + 1000);
    await s.clock.advance(999);
    expect(s.sends).toHaveLength(1);
    await s.clock.advance(1);
    expect(s.sends).toHaveLength(2);
  });

  it("caps a wait that starts later, and leaves a shorter one alone", async () => {
    const s = setUp(() => (s.sends.length <= 3 ? retryable() : delivered));
    await s.clock.advance(5000); // not at 0, so that a wait measured from 0 would show
    s.sender.resumeBy(8000);
    await s.send(events(1)); // at 5 s: a 10 s wait, cut to end at 8 s
    await s.clock.advance(2999);
    expect(s.sends).toHaveLength(1);
    await s.clock.advance(1);
    expect(s.sends.map((send) => send.at)).toEqual([5000, 8000]);
    // It fails again at 8 s, the deadline: the full 10 s now, and a later deadline does not stretch it.
    s.sender.resumeBy(40_000);
    await s.clock.advance(10_000);
    expect(s.sends.map((send) => send.at)).toEqual([5000, 8000, 18_000]);
    // A wait that ends before the deadline (18 s + 10 s < 40 s) is left alone.
    await s.clock.advance(10_000);
    expect(s.sends.map((send) => send.at)).toEqual([5000, 8000, 18_000, 28_000]);
  });

  it("a deadline set while a wait runs cuts it from now, not from the clock's start", async () => {
    const s = setUp(() => (s.sends.length === 1 ? retryable() : delivered));
    await s.clock.advance(5000);
    await s.send(events(1)); // a wait until 15 s
    s.sender.resumeBy(6000);
    await s.clock.advance(999);
    expect(s.sends).toHaveLength(1);
    await s.clock.advance(1);
    expect(s.sends.map((send) => send.at)).toEqual([5000, 6000]);
  });
});

describe("answers", () => {
  it("an aborted request (stop) gives its batch back to the queue", async () => {
    const answer = gate<AttemptResult>();
    const s = setUp(() => answer.promise);
    await s.send(events(3));
    expect(s.queue.ready).toBe(0);
    s.sender.stop();
    answer.open({ kind: "aborted" });
    await s.sender.idle();
    expect(s.queue.ready).toBe(3);
    expect(s.sends).toHaveLength(1); // stopped: not sent again
    expect(s.states).toEqual([]); // an abort is not an outage
  });

  it("after stop, a failed request leaves no wait behind", async () => {
    const answer = gate<AttemptResult>();
    const s = setUp(() => answer.promise);
    await s.send(events(1));
    s.sender.stop();
    answer.open(retryable());
    await s.sender.idle();
    expect(s.clock.pendingTimers).toBe(0);
    expect(s.queue.ready).toBe(1);
  });

  it("a transport that throws (a bug) loses nothing: the batch is kept and sent again", async () => {
    let calls = 0;
    const s = setUp(() => {
      if (calls++ === 0) throw new Error("a bug");
      return delivered;
    });
    await s.send(events(2));
    await s.sender.idle();
    expect(s.deliveredIds).toHaveLength(2);
    expect(s.queue.pending()).toEqual({ memory: 0, disk: 0 });
  });

  it("idle waits for every request under way, not just the first to end", async () => {
    const answers = [gate<AttemptResult>(), gate<AttemptResult>()];
    let i = 0;
    const s = setUp(() => answers[i++]!.promise, { maxConcurrency: 2, maxBatchSize: 1 });
    let idle = false;
    await s.sender.idle(); // nothing under way: at once
    await s.send(events(2));
    expect(s.sends).toHaveLength(2);
    void s.sender.idle().then(() => (idle = true));
    answers[0]!.open(delivered);
    await s.clock.advance(0);
    expect(idle).toBe(false);
    answers[1]!.open(delivered);
    await s.clock.advance(0);
    expect(idle).toBe(true);
  });

  it("when a half finds the endpoint down, the other half waits with the queue instead of being sent", async () => {
    const s = setUp((ids) => (ids.length === 4 ? refused(400) : retryable()));
    await s.send(events(4));
    await s.sender.idle();
    expect(s.sends.map((send) => send.ids.length)).toEqual([4, 2]);
    expect(s.queue.ready).toBe(4);
    expect(s.refusedIds).toEqual([]);
  });

  it("events refused alone with 413 do not make the endpoint look as if it refused everything", async () => {
    // 413 for every request of one event, 400 for larger ones: 9 events end refused one by one.
    const s = setUp((ids) => (ids.length === 1 ? refused(413) : refused(400)));
    await s.send(events(9));
    await s.sender.idle();
    expect(s.refusedIds).toHaveLength(9);
    expect(s.misconfigured).toEqual([]);
    expect(s.states).toEqual([]);
  });

  it("after 8 events refused alone with 400 and none delivered, the rest waits as for a wrong key; a probe a minute", async () => {
    const s = setUp(() => refused(400));
    const list = events(16);
    await s.send(list);
    await s.sender.idle();
    expect(s.refusedIds).toEqual(list.slice(0, 8).map((e) => e.id));
    expect(s.states).toEqual(["misconfigured"]);
    expect(s.queue.ready).toBe(8);
    const sent = s.sends.length;
    await s.clock.advance(MISCONFIGURED_PROBE_MS - 1);
    expect(s.sends).toHaveLength(sent);
    await s.clock.advance(1);
    expect(s.sends[sent]).toMatchObject({ at: MISCONFIGURED_PROBE_MS, ids: list.slice(8).map((e) => e.id) });
    // Refused again: nothing changed, so nothing more is refused and nobody is told it is healthy.
    await s.clock.advance(0);
    expect(s.sends).toHaveLength(sent + 1);
    expect(s.refusedIds).toHaveLength(8);
    expect(s.states).toEqual(["misconfigured"]);
    expect(s.queue.ready).toBe(8);
    await s.clock.advance(MISCONFIGURED_PROBE_MS);
    expect(s.sends).toHaveLength(sent + 2);
  });

  it("once a probe of an endpoint that refused everything is delivered, refusals are real again", async () => {
    let fixed = false;
    const s = setUp((ids) => (fixed && !ids.includes(bad) ? delivered : refused(400)));
    const list = events(12);
    const bad = list[10]!.id;
    await s.send(list);
    await s.sender.idle();
    expect(s.states).toEqual(["misconfigured"]);
    fixed = true;
    await s.clock.advance(MISCONFIGURED_PROBE_MS);
    await s.sender.idle();
    expect(s.states).toEqual(["misconfigured", "healthy"]);
    expect(s.refusedIds).toEqual([...list.slice(0, 8).map((e) => e.id), bad]);
    expect(s.deliveredIds.sort()).toEqual(list.slice(8).map((e) => e.id).filter((id) => id !== bad).sort());
  });

  it("a 400 to the probe of a wrong key (fixed since) is bisected as usual", async () => {
    let keyFixed = false;
    const s = setUp((ids) => (!keyFixed ? refused(401, true) : ids.length > 1 ? refused(400) : ids[0] === bad ? refused(400) : delivered));
    const list = events(4);
    const bad = list[0]!.id;
    await s.send(list);
    keyFixed = true;
    await s.clock.advance(MISCONFIGURED_PROBE_MS);
    await s.sender.idle();
    expect(s.refusedIds).toEqual([bad]);
    expect(s.deliveredIds).toHaveLength(3);
    expect(s.states).toEqual(["misconfigured", "healthy"]);
  });

  it("singles refused with 400 after 413 splits do not make the endpoint look as if it refused everything", async () => {
    const s = setUp((ids) => (ids.length === 1 ? refused(400) : refused(413)));
    await s.send(events(20));
    await s.sender.idle();
    expect(s.refusedIds).toHaveLength(20);
    expect(s.states).toEqual([]);
  });

  it("once an event of the batch was delivered, any number refused alone are real refusals", async () => {
    const list = events(20);
    const good = new Set(list.slice(0, 4).map((e) => e.id));
    const s = setUp((ids) => (ids.every((id) => good.has(id)) ? delivered : refused(400)));
    await s.send(list);
    await s.sender.idle();
    expect(s.deliveredIds.sort()).toEqual([...good].sort());
    expect(s.refusedIds).toHaveLength(16);
    expect(s.states).toEqual([]);
  });

  it("the endpoint that refused everything is told once; a probe answered otherwise than 400 is handled as usual", async () => {
    let probe = false;
    const s = setUp(() => (probe ? refused(422) : refused(400)));
    const list = events(24); // seen deep in the split, with halves left at two levels above
    await s.send(list);
    await s.sender.idle();
    expect(s.states).toEqual(["misconfigured"]);
    expect(s.misconfigured).toEqual([list[8]!.id]); // the half at hand when it was seen
    expect(s.queue.ready).toBe(16);
    probe = true;
    await s.clock.advance(MISCONFIGURED_PROBE_MS);
    await s.sender.idle();
    expect(s.states).toEqual(["misconfigured", "healthy"]);
    expect(s.refusedIds).toHaveLength(24);
  });

  it("a refusal of our configuration without a disk log refuses the events instead of keeping them", async () => {
    const s = setUp(() => refused(401, true), { keep: false });
    await s.send(events(2));
    await s.sender.idle();
    expect(s.refusedIds).toHaveLength(2);
    expect(s.states).toEqual([]);
  });
});
