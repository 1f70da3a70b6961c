import { type CloudEvent, cloudEventProblems } from "../cloudevent";
import type { QueuedEvent } from "./queue";

/**
 * The largest event sent. OpenMeter forwards each event as one Kafka message, and librdkafka refuses
 * a message over `message.max.bytes` (1,000,000 by default) with a 500 for the whole request, after
 * the events before it were forwarded: such an event would be retried for ever. Ours are ~300 bytes.
 */
export const MAX_EVENT_BYTES = 900_000;

export type Serialized = { ok: true; event: QueuedEvent } | { ok: false; reason: string };

/**
 * Checks one event against what OpenMeter accepts and serialises it, once, at `enqueue`: the queue
 * holds the JSON, so a caller that reuses or mutates its object afterwards changes nothing, and an
 * event that cannot be read (a throwing getter, a revoked Proxy, a BigInt) costs only itself.
 */
export function serializeEvent(event: unknown, epoch: number): Serialized {
  try {
    const problems = cloudEventProblems(event);
    if (problems.length > 0) return { ok: false, reason: problems.join("; ") };
    const json = JSON.stringify(event);
    // Cheap first: only a long string can be too many bytes.
    if (json.length * 3 > MAX_EVENT_BYTES && Buffer.byteLength(json) > MAX_EVENT_BYTES) {
      return {
        ok: false,
        reason: `it is ${Buffer.byteLength(json)} bytes as JSON, more than OpenMeter's Kafka producer takes in one message (about 1,000,000 bytes, and ${MAX_EVENT_BYTES} here to leave room for its headers): make its \`data\` smaller`,
      };
    }
    // The schema passed, so `id` is a string; read it back from the JSON's source object once more is not needed.
    return { ok: true, event: { id: (event as { id: string }).id, json, epoch } };
  } catch (error) {
    return { ok: false, reason: `it cannot be serialised (${error instanceof Error ? error.message : String(error)})` };
  }
}

/**
 * An event the metering handler built itself: a fresh object of flat values that nothing else
 * holds or changes, so nothing can alias it and no getter can throw. Its JSON is made when it is
 * first needed: at once for the disk log (written ahead), at batch time for the memory queue, off
 * LangChain's callback queue.
 */
export class OwnedEvent implements QueuedEvent {
  #json: string | undefined;
  constructor(
    readonly event: CloudEvent,
    readonly epoch: number,
  ) {}

  get id(): string {
    return this.event.id;
  }

  get json(): string {
    return (this.#json ??= JSON.stringify(this.event));
  }
}
