/**
 * Helpers for ingest tests that run on a `TestClock`: time moves only when a test moves it, while
 * requests still travel over real loopback sockets. Waiting here is always for a condition (a request
 * arrived, a promise settled), bounded so a broken client fails the test instead of hanging it; it is
 * never a sleep that stands in for time passing.
 */
import type { IngestStats } from "langchain-openmeter";
import type { TestClock } from "langchain-openmeter/testing";

/** One turn of the event loop (I/O callbacks included). */
export const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Resolves once `condition()` holds, turning the event loop meanwhile (real I/O goes on, the test
 * clock does not move). Fails after `limitMs` of real time, naming what it waited for.
 */
export async function until(condition: () => boolean, what: string, limitMs = 3000): Promise<void> {
  const start = performance.now();
  while (!condition()) {
    if (performance.now() - start > limitMs) throw new Error(`gave up waiting for ${what} after ${limitMs} ms`);
    await turn();
    // p-retry waits its own (tiny, real) delays between attempts: let real timers fire too.
    if (!condition()) await new Promise<void>((resolve) => setTimeout(resolve, 1));
  }
}

/**
 * Settles `promise` by moving `clock` in steps of `stepMs` (and letting real I/O run between
 * them); returns its value and how far the clock moved. Fails if it takes more than `maxMs` of clock time.
 */
export async function settleOn<T>(clock: TestClock, promise: Promise<T>, { stepMs = 100, maxMs = 600_000 } = {}): Promise<{ value: T; elapsedMs: number }> {
  const start = clock.now();
  let done = false;
  let value: T | undefined;
  let failure: { error: unknown } | undefined;
  promise.then(
    (v) => {
      done = true;
      value = v;
    },
    (error: unknown) => {
      done = true;
      failure = { error };
    },
  );
  for (let i = 0; i < 5 && !done; i++) await turn();
  while (!done) {
    if (clock.now() - start > maxMs) throw new Error(`did not settle within ${maxMs} ms on the test clock`);
    await clock.advance(stepMs);
    await new Promise<void>((resolve) => setTimeout(resolve, 1));
  }
  if (failure) throw failure.error;
  return { value: value as T, elapsedMs: clock.now() - start };
}

/** `enqueued + recovered` minus where the events went: 0 whenever the counts add up. */
export function unaccounted(stats: IngestStats): number {
  return (
    stats.enqueued +
    stats.recovered -
    (stats.delivered + stats.refused + stats.dropped + stats.handedOver + stats.pending.memory + stats.pending.disk)
  );
}
