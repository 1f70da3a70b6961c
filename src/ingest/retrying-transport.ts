import pRetry from "p-retry";
import type { AttemptResult, Transport } from "./transport";

export interface RetryPolicy {
  /** Retries after the first attempt. */
  retries: number;
  minDelayMs: number;
  maxDelayMs: number;
}

type Retryable = Extract<AttemptResult, { kind: "retryable" }>;

/** Carries a retryable answer through p-retry, which retries on thrown errors. */
class RetryableAnswer extends Error {
  constructor(readonly result: Retryable) {
    super(result.message);
  }
}

/**
 * The transport with retries: a decorator in the style of the OTLP exporter's retrying transport,
 * built on p-retry (exponential backoff with jitter, `signal` to stop, `unref` so a wait never keeps
 * the process alive, `shouldRetry` for what is worth another try). It returns the last attempt's
 * result, so a caller sees one `AttemptResult` whatever happened in between.
 *
 * A server that says when to come back (`Retry-After`) is not retried here: the answer goes back to
 * the sender, which waits as asked on the injected clock (minutes, perhaps) without holding a request.
 */
export class RetryingTransport {
  constructor(
    readonly transport: Transport,
    readonly policy: RetryPolicy,
    /** Called before each retry, with the answer that caused it. */
    readonly onRetry: (result: Retryable) => void = () => {},
  ) {}

  async send(body: string, signal: AbortSignal, retries = this.policy.retries): Promise<AttemptResult> {
    try {
      return await pRetry(
        async () => {
          const result = await this.transport.send(body, signal);
          if (result.kind === "retryable") throw new RetryableAnswer(result);
          return result;
        },
        {
          retries,
          minTimeout: this.policy.minDelayMs,
          maxTimeout: this.policy.maxDelayMs,
          factor: 2,
          randomize: true,
          signal,
          unref: true,
          shouldRetry: ({ error }) => error instanceof RetryableAnswer && error.result.retryAfterMs === undefined,
          onFailedAttempt: ({ error, retriesLeft }) => {
            if (retriesLeft > 0 && error instanceof RetryableAnswer && error.result.retryAfterMs === undefined) this.onRetry(error.result);
          },
        },
      );
    } catch (error) {
      if (error instanceof RetryableAnswer) return error.result;
      if (signal.aborted) return { kind: "aborted" };
      // Only a bug reaches this: keep the events (retryable) rather than drop them.
      return { kind: "retryable", status: undefined, detail: undefined, retryAfterMs: undefined, message: `unexpected error: ${String(error)}` };
    }
  }
}
