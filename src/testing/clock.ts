import { subscribe } from "node:diagnostics_channel";
import type { Clock, ClockTimer } from "../clock";

/** Requests this process's node:http servers have received and not yet answered (or lost). */
const serverRequests = { open: 0 };
subscribe("http.server.request.start", (message) => {
  serverRequests.open++;
  (message as { response: { once(event: "close", listener: () => void): void } }).response.once("close", () => serverRequests.open--);
});

interface Pending {
  id: number;
  due: number;
  callback: () => void;
}

/**
 * A clock that moves only when told to. Pass it as `clock` to an `IngestClient` or a
 * `MeteringCallbackHandler` (and to `startOpenMeterServer`), then `await clock.advance(ms)`: timers
 * due in that span fire in order, and between two of them the event loop turns, so promise chains and
 * finished socket I/O run before the next timer (a retry scheduled by a failed request fires in the
 * same `advance` if it falls inside it).
 *
 * @example
 * const clock = new TestClock();
 * const client = new IngestClient({ url: server.url, clock, flushIntervalMs: 1000 });
 * client.enqueue(event);
 * await clock.advance(1000); // the batch is due now, without a second of waiting
 */
export class TestClock implements Clock {
  #now: number;
  #wall: number;
  #seq = 0;
  readonly #timers = new Map<number, Pending>();
  readonly #holds = new Set<Promise<unknown>>();
  readonly #requests = new Set<Promise<unknown>>();
  /** The longest real time `advance` waits for requests under way before it moves time anyway. */
  readonly ioWaitMs: number;

  /** `now` starts at 0 and `wallNow` at the real time of creation unless given. */
  constructor(start: { now?: number; wall?: number; ioWaitMs?: number } = {}) {
    this.#now = start.now ?? 0;
    this.#wall = start.wall ?? Date.now();
    this.ioWaitMs = start.ioWaitMs ?? 2000;
  }

  now(): number {
    return this.#now;
  }

  wallNow(): number {
    return this.#wall;
  }

  setTimeout(callback: () => void, ms: number): ClockTimer {
    const id = ++this.#seq;
    this.#timers.set(id, { id, due: this.#now + Math.max(0, ms), callback });
    return { clear: () => void this.#timers.delete(id), ref: () => {}, unref: () => {} };
  }

  /**
   * A request under way (the library reports each one, see `Clock.io`). Time stands still while more
   * requests are under way than this process's HTTP servers have received and not yet answered: a
   * request still in the kernel, or an answer not yet read, has not happened yet in clock time, while
   * one a server is sitting on (a hang, a delay on this clock) may wait for time to move. A request
   * gives up its claim after `ioWaitMs` of real time (a server in another process).
   */
  io(request: Promise<unknown>): void {
    this.#track(this.#requests, request);
  }

  /**
   * Time stands still while `work` is pending: the OpenMeter fake holds its clock while it works on an
   * answer, so a client's deadline sees an instant server. Never hold across a wait on this clock.
   */
  hold(work: Promise<unknown>): void {
    this.#track(this.#holds, work);
  }

  #track(set: Set<Promise<unknown>>, work: Promise<unknown>): void {
    const tracked = work.then(
      () => undefined,
      () => undefined,
    );
    set.add(tracked);
    void tracked.then(() => set.delete(tracked));
  }

  /** Timers waiting to fire. */
  get pendingTimers(): number {
    return this.#timers.size;
  }

  /** When the next timer is due, or undefined when none is pending. */
  get nextDue(): number | undefined {
    return this.#earliest()?.due;
  }

  /**
   * Moves time forward by `ms`, firing every timer due on the way (also those that the fired ones
   * set, while they fall inside the span), then lets the event loop turn.
   */
  async advance(ms: number): Promise<void> {
    if (!(ms >= 0)) throw new RangeError(`TestClock.advance: ms must be >= 0, got ${ms}`);
    const target = this.#now + ms;
    await this.#quiet();
    for (let next = this.#earliest(); next !== undefined && next.due <= target; next = this.#earliest()) {
      this.#moveTo(next.due);
      this.#timers.delete(next.id);
      next.callback();
      await this.#quiet();
    }
    this.#moveTo(target);
    await this.#quiet();
  }

  /**
   * Moves time forward in steps of `stepMs` until `promise` settles, and returns its value: for code
   * that does real I/O (files, sockets) between its timers, so a timer it sets later is still reached.
   * Throws when `promise` has not settled after `maxMs` of clock time.
   */
  async advanceUntil<T>(promise: Promise<T>, { stepMs = 10, maxMs = 600_000 }: { stepMs?: number; maxMs?: number } = {}): Promise<T> {
    let settled = false;
    const watched = promise.finally(() => {
      settled = true;
    });
    watched.catch(() => undefined);
    for (let moved = 0; !settled; moved += stepMs) {
      if (moved > maxMs) throw new Error(`TestClock.advanceUntil: not settled after ${maxMs} ms of clock time`);
      await this.advance(stepMs);
    }
    return watched;
  }

  /** Moves time to the next pending timer and fires it (and any due at the same time); false when none. */
  async next(): Promise<boolean> {
    const next = this.#earliest();
    if (next === undefined) return false;
    await this.advance(next.due - this.#now);
    return true;
  }

  /**
   * The event loop turns until no held work is pending and no request under way is outside a server
   * (see `io` and `hold`); requests give up their claim after `ioWaitMs`.
   */
  async #quiet(): Promise<void> {
    await settle();
    let giveUp: number | undefined;
    while (this.#holds.size > 0 || this.#requests.size > serverRequests.open) {
      if (this.#holds.size === 0) {
        giveUp ??= performance.now() + this.ioWaitMs;
        const left = giveUp - performance.now();
        if (left <= 0) break;
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([...this.#requests, new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.min(left, 5))))]);
        clearTimeout(timer);
      } else {
        await Promise.race(this.#holds);
      }
      await settle();
    }
  }

  #moveTo(time: number): void {
    if (time <= this.#now) return;
    this.#wall += time - this.#now;
    this.#now = time;
  }

  #earliest(): Pending | undefined {
    let earliest: Pending | undefined;
    for (const timer of this.#timers.values()) {
      if (earliest === undefined || timer.due < earliest.due || (timer.due === earliest.due && timer.id < earliest.id)) earliest = timer;
    }
    return earliest;
  }
}

/** A few turns of the event loop: promise chains settle, finished I/O callbacks run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
