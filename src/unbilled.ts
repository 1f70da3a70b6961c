import type { Clock, ClockTimer } from "./clock";
import type { Logger } from "./logger";

/**
 * Why a model call produced no event:
 * - `no_subject`: no customer could be found for it (OpenMeter refuses an event without one);
 * - `no_usage`: it ended without token counts (usage reporting is off in the model's options);
 * - `failed`: it failed before the provider sent any output (providers bill no tokens for those;
 *   an aborted non-streamed call may still have been billed);
 * - `abandoned`: it never ended and nothing of it was seen after its start, so nothing can be estimated;
 * - `unsupported_path`: LangChain ran it without callbacks (`model.streamEvents()` without `version`);
 * - `cache_hit`: LangChain answered from its cache (it cost nothing);
 * - `after_shutdown`: it started after `shutdown()`.
 */
export type UnbilledReason = "no_subject" | "no_usage" | "failed" | "abandoned" | "unsupported_path" | "cache_hit" | "after_shutdown";

/** A model call that produced no event, as `onUnbilled` receives it. */
export interface UnbilledCall {
  reason: UnbilledReason;
  /** LangChain's run id, where there was a run. */
  runId?: string;
  /** The requested model. */
  model?: string;
  /** LangChain's `ls_provider`. */
  provider?: string;
  /** The customer, when one was found. */
  subject?: string;
  /** What happened, and what to change. */
  message: string;
}

/**
 * Warnings about calls, told in full the first time and then counted: every `intervalMs` one line
 * says how many more there were, so a misconfiguration repeated on every call stays visible without
 * drowning the user's logs. The timer runs only while there is something to tell.
 */
export class WarningDigest {
  readonly #told = new Set<string>();
  readonly #pending = new Map<string, number>();
  #timer: ClockTimer | undefined;

  constructor(
    readonly logger: Logger,
    readonly clock: Clock,
    readonly intervalMs: number,
  ) {}

  /**
   * Tells `message` the first time `key` is seen; later ones are counted under `summary` (a short
   * description of the problem, shared by keys that differ only in detail).
   */
  warn(key: string, message: string, summary: string = message): void {
    if (!this.#told.has(key)) {
      this.#told.add(key);
      this.logger.warn(message);
      return;
    }
    this.#pending.set(summary, (this.#pending.get(summary) ?? 0) + 1);
    this.#timer ??= this.clock.setTimeout(() => {
      this.#timer = undefined;
      this.flush();
    }, this.intervalMs);
  }

  /** Tells the counts gathered since the last summary, if any. */
  flush(): void {
    this.#timer?.clear();
    this.#timer = undefined;
    if (this.#pending.size === 0) return;
    const parts = [...this.#pending].map(([summary, times]) => `${times}× ${summary}`);
    this.#pending.clear();
    this.logger.warn(`since the last summary (every ${this.intervalMs} ms): ${parts.join("; ")}`);
  }
}
