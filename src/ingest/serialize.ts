import { cloudEventProblems } from "../cloudevent";
import type { QueuedEvent } from "./queue";

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
    // The schema passed, so `id` is a string; read it back from the JSON's source object once more is not needed.
    return { ok: true, event: { id: (event as { id: string }).id, json, epoch } };
  } catch (error) {
    return { ok: false, reason: `it cannot be serialised (${error instanceof Error ? error.message : String(error)})` };
  }
}
