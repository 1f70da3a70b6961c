import type { DataValue } from "./cloudevent";

/** Which invoke-metadata keys travel into `data`: every user key, exactly these keys, or none. */
export type MetadataPolicy = boolean | readonly string[];

/** LangChain's own bookkeeping: useless on an invoice line, so it stays out unless listed. */
const LANGCHAIN_KEYS = new Set([
  "versions",
  "checkpoint_ns",
  "checkpoint_id",
  "thread_id",
  "run_id",
  "run_name",
  // core adds it for a config `timeout`; LangGraph copies the rest from `configurable`.
  "timeoutMs",
  "assistant_id",
  "graph_id",
  "task_id",
  "run_attempt",
]);
// `lc_`: langchain's createAgent (`lc_agent_name`) and its middleware (`lc_source`).
const LANGCHAIN_PREFIX = /^(?:ls_|lc_|langgraph_|__)/;

export const MAX_METADATA_STRING = 1024;

export function isLangChainKey(key: string): boolean {
  return LANGCHAIN_PREFIX.test(key) || LANGCHAIN_KEYS.has(key);
}

/** Why a metadata value was left out, for a one-time warning. */
export type SkippedValue = { key: string; reason: string };

/**
 * Picks the metadata values that may ride along in an event's `data`: flat primitives a meter can
 * group by. Dates become ISO strings and bigints decimal strings; objects, functions and symbols stay
 * out; the subject key is never copied (the subject has its own attribute), and keys the event
 * sets itself (`reserved`) are refused so user metadata cannot change what is billed.
 */
export function selectMetadata(
  metadata: Record<string, unknown> | undefined,
  policy: MetadataPolicy,
  subjectKey: string,
  reserved: ReadonlySet<string>,
  onSkip?: (skipped: SkippedValue) => void,
): Record<string, DataValue> | undefined {
  if (!metadata || policy === false) return undefined;
  let selected: Record<string, DataValue> | undefined;
  const keys = policy === true ? Object.keys(metadata) : policy;
  for (const key of keys) {
    if (key === subjectKey || (policy === true && isLangChainKey(key))) continue;
    if (reserved.has(key)) {
      onSkip?.({ key, reason: "the event sets a field of that name itself" });
      continue;
    }
    let value: DataValue | undefined;
    try {
      value = toDataValue(metadata[key]);
    } catch (error) {
      // A getter or proxy that throws costs its own key, not the call's billing.
      onSkip?.({ key, reason: `reading it threw (${error instanceof Error ? error.message : String(error)})` });
      continue;
    }
    if (value === undefined) continue;
    if (typeof value === "string" && value.length > MAX_METADATA_STRING) {
      onSkip?.({ key, reason: `its string is longer than ${MAX_METADATA_STRING} characters` });
      continue;
    }
    (selected ??= {})[key] = value;
  }
  return selected;
}

function toDataValue(value: unknown): DataValue | undefined {
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      return Number.isFinite(value) ? value : undefined;
    case "bigint":
      return value.toString();
    case "object":
      if (value === null) return null;
      if (value instanceof Date) return Number.isNaN(value.getTime()) ? undefined : value.toISOString();
      return undefined;
    default:
      return undefined;
  }
}
