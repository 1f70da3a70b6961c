/**
 * The queue between `enqueue()` and the sender. Two implementations keep the same promise:
 * `MemoryQueue` (no `spoolDir`) and `DiskLog` (a write-ahead log in `spoolDir`).
 *
 * An event stays in the queue from `append` until the batch that carries it is settled: taking a
 * batch does not remove its events, it only marks them as under way. A batch is settled when the
 * endpoint acknowledged it or refused it for good (and it was reported); it is released when it must
 * be sent again later (a retryable failure, a cut-off at shutdown). So whatever happens between
 * taking and settling, the events are still held.
 */

/** An event serialised once, at `enqueue`: later changes to the caller's object cannot alter what is billed. */
export interface QueuedEvent {
  /** The event's `id`, for reports. */
  readonly id: string;
  /** `JSON.stringify(event)`. */
  readonly json: string;
  /** The flush epoch it belongs to (see `FlushTracker`): `flush()` waits for the epochs before its call. */
  readonly epoch: number;
}

/** Events taken from the queue together, to be sent in one request. */
export interface Batch {
  readonly events: readonly QueuedEvent[];
  /** A part of this batch (for splitting a refused request), settled and released on its own. */
  slice(start: number, end: number): Batch;
}

/** What an append could not keep: the caller reports these events (they are not in the queue). */
export interface AppendRefusal {
  events: readonly QueuedEvent[];
  /** Why, for the report: names the limit or the disk error and what to change. */
  reason: string;
  kind: "queue-full" | "spool-full" | "spool-write";
}

export interface PendingCounts {
  /** Held only in memory: lost if the process dies. */
  memory: number;
  /** Written ahead to `spoolDir`: survives the process. */
  disk: number;
}

export interface EventQueue {
  /** Appends one call's events. With a disk log the bytes are handed to the kernel before this returns. */
  append(events: readonly QueuedEvent[], options: { memoryLimit: number }): AppendRefusal | undefined;
  /**
   * Up to `max` of the oldest events not under way, or undefined when none can be taken now (with a
   * disk log, a segment may still be loading: `onReadable` fires when it is in). Live events are taken
   * only when `liveDue` (the batcher says a batch is due); released batches and events taken over
   * from another owner are always due.
   */
  take(max: number, options: { liveDue: boolean }): Batch | undefined;
  /** The batch leaves the queue: delivered, or refused and reported. */
  settle(batch: Batch): void;
  /** The batch goes back to the front, to be taken again. */
  release(batch: Batch): void;
  /** Events that `take` could hand out now or soon (not under way). */
  readonly ready: number;
  /** Events in the queue, under way or not. */
  pending(): PendingCounts;
  /** Called when events became takeable without an append (a segment finished loading). */
  onReadable(listener: () => void): void;
  /**
   * Removes and returns the events held only in memory (a memory queue: all of them; a disk log:
   * those the disk refused), under way included, for the report when the process ends.
   */
  drainMemory(): QueuedEvent[];
  /** Where the events are kept, for messages ("in memory", or the directory). */
  readonly location: string;
  /**
   * Synchronous, for process exit: stops timers and lets go of files. What is still pending stays
   * where it is (a disk log leaves it for the next process). Idempotent.
   */
  close(): void;
}
