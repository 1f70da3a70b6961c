/**
 * The sink worker: what happens to an event after ingest answered 2xx (openmeterio/openmeter at 7e57a394,
 * `openmeter/sink/sink.go`):
 * - `parseMessage` drops a message whose Kafka payload fails `ValidateKafkaPayloadToCloudEvent`
 *   (`openmeter/ingest/kafkaingest/serializer/serializer.go`): empty id/type/source/subject, or a `time`
 *   of 1970-01-01T00:00:00Z or earlier ("time is zero": the payload keeps `time.Unix()`, and `<= 0` fails);
 *   with sink de-duplication on, it drops a key already set ("skipping non unique message");
 * - `flush` (every `minCommitCount` messages or `maxCommitWait`) drops repeats within the batch
 *   (`dedupeSinkMessages`, de-duplication on or off), re-checks the deduplicator, stores, and only then
 *   sets the keys (`dedupeSet`).
 * Dropped events are kept with the reason so tests can see what a 2xx did not bill.
 */
import type { Clock, ClockTimer } from "../clock";
import type { Deduplicator } from "./dedupe";
import type { DroppedEvent, ReceivedEvent, RequestRecord, SinkBatchingOptions, StoredEvent } from "./types";

export interface KafkaMessage {
  /** The event as sent. */
  event: ReceivedEvent;
  /** `CloudEventsKafkaPayload` + headers, as the sink will store it. */
  stored: StoredEvent;
  /** Dedupe key (namespace-source-id). */
  key: string;
  /** The request that forwarded it. */
  request: RequestRecord;
}

export interface SinkCallbacks {
  stored(messages: readonly KafkaMessage[]): void;
  dropped(dropped: DroppedEvent): void;
}

export class SinkWorker {
  readonly #clock: Clock;
  readonly #deduplicator: Deduplicator | undefined;
  readonly #batching: Required<SinkBatchingOptions> | undefined;
  readonly #callbacks: SinkCallbacks;
  #buffer: KafkaMessage[] = [];
  #timer: ClockTimer | undefined;
  #closed = false;

  constructor(options: {
    clock: Clock;
    deduplicator: Deduplicator | undefined;
    batching: SinkBatchingOptions | undefined;
    callbacks: SinkCallbacks;
  }) {
    this.#clock = options.clock;
    this.#deduplicator = options.deduplicator;
    this.#batching = options.batching
      ? { minCommitCount: options.batching.minCommitCount ?? 500, maxCommitWaitMs: options.batching.maxCommitWaitMs ?? 2000 }
      : undefined;
    this.#callbacks = options.callbacks;
    if (this.#batching) {
      if (!(this.#batching.minCommitCount >= 1)) throw new RangeError("sinkBatching.minCommitCount must be at least 1");
      if (!(this.#batching.maxCommitWaitMs > 0)) throw new RangeError("sinkBatching.maxCommitWaitMs must be positive");
      this.#arm();
    }
  }

  /** Messages consumed but not yet stored. */
  get pending(): number {
    return this.#buffer.length;
  }

  /** A message produced to Kafka reaches the sink (`parseMessage`, then the buffer). */
  consume(message: KafkaMessage): void {
    const invalid = payloadProblem(message.stored);
    if (invalid) {
      this.#callbacks.dropped({ event: message.event, reason: `failed to validate cloudevents message: ${invalid}` });
      return;
    }
    if (this.#deduplicator && !this.#deduplicator.checkUnique(message.key)) {
      this.#callbacks.dropped({ event: message.event, reason: "skipping non unique message" });
      return;
    }
    this.#buffer.push(message);
    if (this.#batching && this.#buffer.length >= this.#batching.minCommitCount) this.flush();
  }

  /** The end of an ingest request: without batching, each request's messages are one flush. */
  endOfRequest(): void {
    if (!this.#batching) this.flush();
  }

  /** Stores what is buffered (`flush`). */
  flush(): void {
    const messages = this.#buffer;
    this.#buffer = [];
    if (this.#batching) this.#arm();
    if (messages.length === 0) return;
    const seen = new Set<string>();
    let batch: KafkaMessage[] = [];
    for (const message of messages) {
      if (seen.has(message.key)) {
        this.#callbacks.dropped({ event: message.event, reason: "duplicate within one sink flush (dedupeSinkMessages)" });
        continue;
      }
      seen.add(message.key);
      batch.push(message);
    }
    if (this.#deduplicator) {
      const dedupe = this.#deduplicator;
      batch = batch.filter((message) => {
        if (dedupe.checkUnique(message.key)) return true;
        this.#callbacks.dropped({ event: message.event, reason: "skipping non unique message" });
        return false;
      });
    }
    if (batch.length === 0) return;
    const storedAt = new Date(this.#clock.wallNow()).toISOString();
    for (const message of batch) message.stored.storedAt = storedAt;
    this.#callbacks.stored(batch);
    this.#deduplicator?.set(batch.map((m) => m.key));
  }

  /** Forgets buffered messages. */
  clear(): void {
    this.#buffer = [];
  }

  close(): void {
    this.#closed = true;
    this.#timer?.clear();
    this.#timer = undefined;
  }

  #arm(): void {
    this.#timer?.clear();
    if (this.#closed || !this.#batching) return;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      this.flush();
    }, this.#batching.maxCommitWaitMs);
  }
}

/** `ValidateKafkaPayloadToCloudEvent`. */
function payloadProblem(stored: StoredEvent): string | undefined {
  const errs: string[] = [];
  if (stored.id === "") errs.push("id is empty");
  if (stored.type === "") errs.push("type is empty");
  if (stored.source === "") errs.push("source is empty");
  if (stored.subject === "") errs.push("subject is empty");
  if (stored.timeSeconds <= 0) errs.push("time is zero");
  return errs.length > 0 ? errs.join("\n") : undefined;
}
