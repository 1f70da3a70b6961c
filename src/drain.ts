import type { Clock, ClockTimer } from "./clock";

/**
 * What is still running under the handler, so that `shutdown()` can wait for the model calls that a
 * run under way is still going to make (the second step of an agent) and bill them, instead of
 * closing the moment the current call ends.
 *
 * - Chain runs (chains, graph nodes, tools' parents) are seen when the handler rides in the invoke
 *   config: while one is open, another model call may follow.
 * - When the handler sits on the model only (`new ChatOpenAI({ callbacks })`), the chain around a
 *   call is invisible; a model call whose parent was never seen may be followed by another, so the
 *   drain waits `quietMs` after such a call ended for the next one to start.
 */
export class RunWatch {
  /** Open chain runs and when they started. */
  readonly #chains = new Map<string, number>();
  /** When the last model call inside an invisible parent ended. */
  #invisibleEndedAt = Number.NEGATIVE_INFINITY;
  #waiters: Array<() => void> = [];

  constructor(
    readonly clock: Clock,
    /** Chain runs older than this are taken to be abandoned (a stream nobody reads). */
    readonly staleMs: number,
    readonly quietMs: number,
  ) {}

  chainStarted(runId: string): void {
    this.#chains.set(runId, this.clock.now());
    if (this.#chains.size > 10_000) this.#sweep();
    this.#wake();
  }

  chainEnded(runId: string): void {
    if (this.#chains.delete(runId)) this.#wake();
  }

  /** Whether this model call's parent is a chain the handler does not see. */
  hasInvisibleParent(parentRunId: string | undefined): boolean {
    return parentRunId !== undefined && !this.#chains.has(parentRunId);
  }

  modelStarted(): void {
    this.#wake();
  }

  modelEnded(invisibleParent: boolean): void {
    if (invisibleParent) this.#invisibleEndedAt = this.clock.now();
    this.#wake();
  }

  /**
   * Resolves once nothing runs that may still call a model (`openModelRuns` returns 0, no chain run
   * is open, no invisible parent ended a call within `quietMs`), or at `deadline`.
   */
  async drained(openModelRuns: () => number, deadline: number): Promise<void> {
    for (;;) {
      const now = this.clock.now();
      if (now >= deadline) return;
      this.#sweep();
      let until = deadline;
      if (openModelRuns() === 0 && this.#chains.size === 0) {
        const quietEnd = this.#invisibleEndedAt + this.quietMs;
        if (now >= quietEnd) return;
        until = Math.min(quietEnd, deadline);
      }
      await this.#activityOr(until);
    }
  }

  #activityOr(until: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: ClockTimer | undefined;
      const done = () => {
        timer?.clear();
        resolve();
      };
      this.#waiters.push(done);
      timer = this.clock.setTimeout(done, Math.max(0, until - this.clock.now()));
    });
  }

  #wake(): void {
    if (this.#waiters.length === 0) return;
    for (const resolve of this.#waiters.splice(0)) resolve();
  }

  #sweep(): void {
    const before = this.clock.now() - this.staleMs;
    for (const [runId, startedAt] of this.#chains) if (startedAt < before) this.#chains.delete(runId);
  }
}
