/** Per-run state with a time-out, for runs that start and never end (an abandoned stream). */
export interface TimedEntry {
  /** `performance.now()` when the run was last heard from. */
  seenAt: number;
}

interface Slot<T> {
  entry: T;
  /** When the entry took its place in the Map's order (set or moved by a sweep). */
  placedAt: number;
}

/** How many forgotten runs are kept aside, so one that ends after all can still be billed. */
const FORGOTTEN_LIMIT = 1000;

export class RunRegistry<T extends TimedEntry> {
  // A Map iterates in insertion order, so the oldest placed entries come first and a sweep stops at
  // the first one placed within the time-out. Runs heard from since are moved back by the sweep, so
  // hearing from a run (once per streamed token) costs one assignment, not a reinsertion.
  readonly #runs = new Map<string, Slot<T>>();
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
    this.#runs.set(runId, { entry, placedAt: entry.seenAt });
  }

  get(runId: string): T | undefined {
    return this.#runs.get(runId)?.entry;
  }

  /** Marks the run as alive now (a long stream is not abandoned while tokens arrive). */
  touch(runId: string, now = performance.now()): T | undefined {
    const slot = this.#runs.get(runId);
    if (slot !== undefined) slot.entry.seenAt = now;
    return slot?.entry;
  }

  /** Removes and returns the entry, looking among recently forgotten runs too: a run ends once. */
  take(runId: string): { entry: T; late: boolean } | undefined {
    const slot = this.#runs.get(runId);
    if (slot !== undefined) {
      this.#runs.delete(runId);
      return { entry: slot.entry, late: false };
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
    for (const [runId, slot] of this.#runs) {
      if (now - slot.placedAt < this.ttlMs) break; // this and every later one are too recent
      this.#runs.delete(runId);
      if (now - slot.entry.seenAt < this.ttlMs) {
        // Heard from since it was placed: back to the end (iteration meets it again and stops there).
        this.#runs.set(runId, { entry: slot.entry, placedAt: now });
        continue;
      }
      this.#forgotten.set(runId, slot.entry);
      swept++;
    }
    for (const runId of this.#forgotten.keys()) {
      if (this.#forgotten.size <= FORGOTTEN_LIMIT) break;
      this.#forgotten.delete(runId);
    }
    return swept;
  }
}
