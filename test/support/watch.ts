/**
 * A callback handler that records which callbacks LangChain fired for a run, and lets a test wait for
 * one (the n-th token, an end, an error) without a timer. Put it after the metering handler in the
 * callbacks: LangChain runs handlers in order, so when it has seen a callback, the metering handler has too.
 */
import { BaseCallbackHandler } from "@langchain/core/callbacks/base";

export class WatchHandler extends BaseCallbackHandler {
  name = "watch";
  readonly tokens: string[] = [];
  readonly ends: unknown[] = [];
  readonly errors: unknown[] = [];
  #waiters: Array<{ ready: () => boolean; resolve: () => void }> = [];

  /** Resolves once `ready()` holds (checked after every callback). */
  until(ready: (watch: this) => boolean): Promise<void> {
    if (ready(this)) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ ready: () => ready(this), resolve }));
  }

  /** The callbacks seen, in order, for assertions on what LangChain reports. */
  get fired(): { tokens: number; ends: number; errors: number } {
    return { tokens: this.tokens.length, ends: this.ends.length, errors: this.errors.length };
  }

  override handleLLMNewToken(token: string): void {
    this.tokens.push(token);
    this.#check();
  }

  override handleLLMEnd(output: unknown): void {
    this.ends.push(output);
    this.#check();
  }

  override handleLLMError(error: unknown): void {
    this.errors.push(error);
    this.#check();
  }

  #check(): void {
    this.#waiters = this.#waiters.filter((waiter) => {
      if (!waiter.ready()) return true;
      waiter.resolve();
      return false;
    });
  }
}
