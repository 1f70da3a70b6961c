/** Per-run state with a time-out, for runs that start and never end (an abandoned stream). */
export interface TimedEntry {
  /** `performance.now()` when the entry was stored. */
  readonly storedAt: number;
}

export class RunRegistry<T extends TimedEntry> {
  // A Map iterates in insertion order, so the oldest entries come first and a sweep stops early.
  readonly #runs = new Map<string, T>();

  constructor(readonly ttlMs: number) {}

  get size(): number {
    return this.#runs.size;
  }

  set(runId: string, entry: T): void {
    this.#runs.delete(runId);
    this.#runs.set(runId, entry);
  }

  get(runId: string | undefined): T | undefined {
    return runId === undefined ? undefined : this.#runs.get(runId);
  }

  /** Removes and returns the entry: a run ends once. */
  take(runId: string): T | undefined {
    const entry = this.#runs.get(runId);
    if (entry !== undefined) this.#runs.delete(runId);
    return entry;
  }

  delete(runId: string): void {
    this.#runs.delete(runId);
  }

  /** Drops entries older than the time-out; returns how many. */
  sweep(now = performance.now()): number {
    let swept = 0;
    for (const [runId, entry] of this.#runs) {
      if (now - entry.storedAt < this.ttlMs) break;
      this.#runs.delete(runId);
      swept++;
    }
    return swept;
  }

  clear(): void {
    this.#runs.clear();
  }
}
