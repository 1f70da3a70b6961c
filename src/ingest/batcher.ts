import type { Clock, ClockTimer } from "../clock";

/**
 * When live events are due to go out: a full batch at once, a partial one `flushIntervalMs` after the
 * first of its events arrived, everything on `flush()`. It only decides; the sender takes the batches.
 */
export class Batcher {
  #timer: ClockTimer | undefined;
  #timerFired = false;
  #forced = false;

  constructor(
    readonly clock: Clock,
    readonly maxBatchSize: number,
    readonly flushIntervalMs: number,
    /** Called when a batch became due (never synchronously inside `appended`). */
    readonly onDue: () => void,
  ) {}

  /** Events were appended; `ready` live events are waiting now. */
  appended(ready: number): void {
    if (ready >= this.maxBatchSize) this.#schedule();
    else this.#arm();
  }

  /** Whether the live events waiting should be sent now. */
  due(ready: number): boolean {
    return ready > 0 && (ready >= this.maxBatchSize || this.#timerFired || this.#forced);
  }

  /** After the sender took what it could: `ready` live events are left. */
  taken(ready: number): void {
    if (ready > 0) return this.#arm();
    // Nothing waits: the next event starts a new interval.
    this.#timerFired = false;
    this.#forced = false;
    this.#timer?.clear();
    this.#timer = undefined;
  }

  /** Everything waiting is due now (a flush). */
  force(): void {
    this.#forced = true;
    this.#schedule();
  }

  stop(): void {
    this.#timer?.clear();
    this.#timer = undefined;
  }

  #arm(): void {
    if (this.#timer !== undefined || this.#timerFired) return;
    this.#timer = this.clock.setTimeout(() => {
      this.#timer = undefined;
      this.#timerFired = true;
      this.onDue();
    }, this.flushIntervalMs);
  }

  #scheduled = false;
  /** Next turn of the event loop: a synchronous burst of appends becomes one pass, outside the caller's callback. */
  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.onDue();
    });
  }
}
