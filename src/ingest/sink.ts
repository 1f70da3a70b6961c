import type { CloudEvent } from "../cloudevent";

/**
 * What the metering handler hands finished events to. `IngestClient` is the real one; tests and
 * users with their own pipeline may pass anything that keeps this promise.
 */
export interface EventSink {
  /** Queues events for delivery. Synchronous, no network I/O: it runs inside LangChain's callback queue. */
  enqueue(events: CloudEvent | readonly CloudEvent[]): void;
  /** Resolves when everything enqueued before the call was delivered, reported, or (with a spool) is waiting on disk. */
  flush(options?: FlushOptions): Promise<void>;
  /** Delivers what it can within its time bound (or `timeoutMs`), stops timers, and refuses later events. */
  shutdown(options?: FlushOptions): Promise<void>;
}

export interface FlushOptions {
  /** Resolve by then at the latest; what is not delivered yet stays queued (on disk with a spool). */
  timeoutMs?: number;
}
