import type { CloudEvent } from "../cloudevent";

/**
 * Why events could not be delivered:
 * - `rejected`: the endpoint answered a status that retrying cannot fix (400, 401, 404, 413, ...);
 * - `retries-exhausted`: network errors, time-outs, 408/429/5xx outlasted the retry budget (no spool);
 * - `invalid-event`: an event failed the CloudEvent schema and was left out of its batch;
 * - `queue-full`: the in-memory queue was full and no spool is configured;
 * - `spool`: the spool could not be written or read;
 * - `refused`: the events came after `shutdown()` (a call that ended after its handler shut down).
 */
export type IngestErrorKind = "rejected" | "retries-exhausted" | "invalid-event" | "queue-full" | "spool" | "refused";

export interface IngestErrorInit {
  kind: IngestErrorKind;
  events: CloudEvent[];
  status?: number | undefined;
  detail?: string | undefined;
  cause?: unknown;
}

/** What `onError` receives: events that were not delivered, and what to change. Never holds the API key. */
export class IngestError extends Error {
  override readonly name = "IngestError";
  readonly kind: IngestErrorKind;
  /** HTTP status of the last answer, when there was one. */
  readonly status: number | undefined;
  /** The server's problem+json `detail` (or title), or a short snippet of a non-JSON body. */
  readonly detail: string | undefined;
  /** The events this error is about. */
  readonly events: CloudEvent[];

  constructor(message: string, init: IngestErrorInit) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.kind = init.kind;
    this.status = init.status;
    this.detail = init.detail;
    this.events = init.events;
  }
}

/** A send attempt that may succeed later (network error, time-out, 408, 429, 5xx). */
export class TransientError extends Error {
  override readonly name = "TransientError";
  constructor(
    message: string,
    readonly status?: number,
    readonly detail?: string,
    /** From Retry-After, already capped. */
    readonly retryAfterMs?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A send attempt that cannot succeed by retrying (most 4xx, 3xx). */
export class PermanentError extends Error {
  override readonly name = "PermanentError";
  constructor(
    message: string,
    readonly status: number | undefined,
    readonly detail?: string,
  ) {
    super(message);
  }
}
