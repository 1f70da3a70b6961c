/**
 * Time as the library sees it. Every timer and every "how long ago" goes through a `Clock`, so a test
 * moves time with a `TestClock` (from `langchain-openmeter/testing`) instead of waiting it out.
 */
export interface Clock {
  /** Monotonic milliseconds, for durations and deadlines (`performance.now()` on the system clock). */
  now(): number;
  /** Milliseconds since the epoch, for event times and the age of files (`Date.now()` on the system clock). */
  wallNow(): number;
  /**
   * Calls `callback` once after `ms`. The timer never keeps the process alive unless `ref()` is
   * called on it (a shutdown that must finish its work does so).
   */
  setTimeout(callback: () => void, ms: number): ClockTimer;
  /**
   * Told of each HTTP request the library starts, until its answer's headers arrive (or it fails).
   * The system clock ignores it; a `TestClock` does not move time while one is under way, so a
   * deadline on the clock measures the server, not how slowly a loaded test machine runs the socket.
   */
  io?(request: Promise<unknown>): void;
}

export interface ClockTimer {
  /** Cancels the timer; harmless after it fired. */
  clear(): void;
  /** Keeps the process alive until the timer fires or is cleared. */
  ref(): void;
  /** Lets the process end while the timer is pending (the default). */
  unref(): void;
}

/** The real clock: `performance.now()`, `Date.now()` and unref'd Node timers. */
export const systemClock: Clock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  setTimeout(callback, ms) {
    const timer = setTimeout(callback, Math.max(0, ms));
    timer.unref();
    return {
      clear: () => clearTimeout(timer),
      ref: () => void timer.ref(),
      unref: () => void timer.unref(),
    };
  },
};

/** Resolves after `ms` on `clock` (never keeps the process alive), or at once when `signal` aborts. */
export function delay(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      timer.clear();
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = clock.setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
