/** Per-run state with a time-out, for runs that start and never end (an abandoned stream). */
export interface TimedEntry {
  /** `performance.now()` when the run was last heard from. */
  seenAt: number;
}

/** How many forgotten runs are kept aside, so one that ends after all can still be billed. */
const FORGOTTEN_LIMIT = 1000;

export class RunRegistry<T extends TimedEntry> {
  // A Map iterates in insertion order, so the least recently seen entries come first and a sweep
  // stops at the first live one.
  readonly #runs = new Map<string, T>();
  readonly #forgotten = new Map<string, T>();
  readonly #sweepEveryMs: number;
  #lastSweep = performance.now();

  constructor(readonly ttlMs: number) {
    this.#sweepEveryMs = Math.min(ttlMs, 60_000);
  }

  get size(): number {
    return this.#runs.size;
  }

  set(runId: string, entry: T): void {
    this.#runs.delete(runId);
    this.#runs.set(runId, entry);
  }

  get(runId: string): T | undefined {
    return this.#runs.get(runId);
  }

  /** Marks the run as alive now (a long stream is not abandoned while tokens arrive). */
  touch(runId: string, now = performance.now()): T | undefined {
    const entry = this.#runs.get(runId);
    if (entry !== undefined) {
      entry.seenAt = now;
      this.#runs.delete(runId);
      this.#runs.set(runId, entry);
    }
    return entry;
  }

  /** Removes and returns the entry, looking among recently forgotten runs too: a run ends once. */
  take(runId: string): { entry: T; late: boolean } | undefined {
    const entry = this.#runs.get(runId);
    if (entry !== undefined) {
      this.#runs.delete(runId);
      return { entry, late: false };
    }
    const forgotten = this.#forgotten.get(runId);
    if (forgotten === undefined) return undefined;
    this.#forgotten.delete(runId);
    return { entry: forgotten, late: true };
  }

  delete(runId: string): void {
    this.#runs.delete(runId) || this.#forgotten.delete(runId);
  }

  /**
   * Moves runs not heard from for `ttlMs` aside (at most once per interval, so it can run on every
   * start without a timer holding the owner alive); returns how many.
   */
  sweep(now = performance.now()): number {
    if (now - this.#lastSweep < this.#sweepEveryMs) return 0;
    this.#lastSweep = now;
    let swept = 0;
    for (const [runId, entry] of this.#runs) {
      if (now - entry.seenAt < this.ttlMs) break;
      this.#runs.delete(runId);
      this.#forgotten.set(runId, entry);
      swept++;
    }
    for (const runId of this.#forgotten.keys()) {
      if (this.#forgotten.size <= FORGOTTEN_LIMIT) break;
      this.#forgotten.delete(runId);
    }
    return swept;
  }
}
