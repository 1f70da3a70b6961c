import type { Clock, ClockTimer } from "./clock";

/** Per-run state with a time-out, for runs that start and never end (an abandoned stream). */
export interface TimedEntry {
  /** `clock.now()` when the run was last heard from. */
  seenAt: number;
}

/** How many expired runs are kept aside, so one that ends after all is recognised. */
const FORGOTTEN_LIMIT = 1000;

/**
 * The runs between their start and end callbacks. A run not heard from for `ttlMs` is handed to
 * `onExpire` by a timer (on the injected clock, never keeping the process alive) and set aside, so
 * that an end arriving later is still recognised.
 */
export class RunRegistry<T extends TimedEntry> {
  readonly #runs = new Map<string, T>();
  readonly #forgotten = new Map<string, T>();
  #timer: ClockTimer | undefined;

  constructor(
    readonly ttlMs: number,
    readonly clock: Clock,
    readonly onExpire: (runId: string, entry: T) => void,
  ) {}

  get size(): number {
    return this.#runs.size;
  }

  /** The open runs. */
  values(): IterableIterator<T> {
    return this.#runs.values();
  }

  has(runId: string): boolean {
    return this.#runs.has(runId);
  }

  set(runId: string, entry: T): void {
    this.#runs.set(runId, entry);
    // Every run already here is due no later than this one: a pending timer still comes first.
    this.#timer ??= this.clock.setTimeout(() => this.#expire(), this.ttlMs);
  }

  get(runId: string): T | undefined {
    return this.#runs.get(runId);
  }

  /** Marks the run as alive now (a long stream is not abandoned while tokens arrive). O(1). */
  touch(runId: string): T | undefined {
    const entry = this.#runs.get(runId);
    if (entry !== undefined) entry.seenAt = this.clock.now();
    return entry;
  }

  /** Removes and returns the entry, looking among expired runs too: a run ends once. */
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

  /** Removes and returns the open runs that match, oldest first. */
  removeIf(matches: (entry: T) => boolean): Array<[string, T]> {
    const removed = [...this.#runs].filter(([, entry]) => matches(entry));
    for (const [runId] of removed) this.#runs.delete(runId);
    return removed;
  }

  #expire(): void {
    this.#timer = undefined;
    const now = this.clock.now();
    let nextDue = Infinity;
    for (const [runId, entry] of this.#runs) {
      const due = entry.seenAt + this.ttlMs;
      if (due > now) {
        nextDue = Math.min(nextDue, due);
        continue;
      }
      this.#runs.delete(runId);
      this.#forgotten.set(runId, entry);
      if (this.#forgotten.size > FORGOTTEN_LIMIT) this.#forgotten.delete(this.#forgotten.keys().next().value as string);
      this.onExpire(runId, entry);
    }
    if (nextDue !== Infinity) this.#timer = this.clock.setTimeout(() => this.#expire(), nextDue - now);
  }
}
