import type { CloudEvent } from "../cloudevent";

/**
 * Why events were not delivered:
 * - `rejected`: the endpoint refused them for good (400, 401, 403, 404, 413, 415, 422, a web page, ...);
 * - `invalid-event`: not a valid CloudEvent for OpenMeter, or not serialisable: refused at `enqueue`;
 * - `queue-full`: held nowhere: the endpoint was failing, the in-memory queue was full and no `spoolDir` is set;
 * - `spool-full`, `spool-write`: the spool was full (`maxSpoolBytes`) or could not be written, and memory was full too;
 * - `corrupt`: a record in the spool failed its checksum (reported with its byte range, never sent);
 * - `undelivered`: still held in memory when the process ended or `shutdown()` gave up (no `spoolDir`);
 * - `refused`: handed over after `shutdown()`.
 */
export type IngestErrorKind =
  | "rejected"
  | "invalid-event"
  | "queue-full"
  | "spool-full"
  | "spool-write"
  | "corrupt"
  | "undelivered"
  | "refused";

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
  /** HTTP status of the answer, when there was one. */
  readonly status: number | undefined;
  /** The server's problem+json `detail` (or title), or a short snippet of a non-JSON body. */
  readonly detail: string | undefined;
  /** The events this error is about (for `corrupt`: none, the message gives the file and byte ranges). */
  readonly events: CloudEvent[];

  constructor(message: string, init: IngestErrorInit) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.kind = init.kind;
    this.status = init.status;
    this.detail = init.detail;
    this.events = init.events;
  }
}
