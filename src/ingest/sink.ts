import type { CloudEvent } from "../cloudevent";

/**
 * What the metering handler hands finished events to. `IngestClient` is the real one; tests and
 * users with their own pipeline may pass anything that keeps this promise.
 */
export interface EventSink {
  /** Queues events for delivery. Synchronous, no I/O: it runs inside LangChain's callback queue. */
  enqueue(events: CloudEvent | readonly CloudEvent[]): void;
  /** Resolves when everything enqueued before the call was delivered, failed for good, or spooled. */
  flush(options?: FlushOptions): Promise<void>;
  /** Flushes, stops timers, and refuses later events. */
  shutdown(): Promise<void>;
}

export interface FlushOptions {
  /** Resolve by then at the latest; what is still undelivered is spooled (with a spool) or stays queued. */
  timeoutMs?: number;
}
