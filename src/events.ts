import type { CloudEvent, DataValue } from "./cloudevent";
import type { TokenUsage } from "./usage";

/** `data.type` values. The `input_cached*` kinds appear only when cached input is split out. */
export type TokenKind = "input" | "output" | "input_cached" | "input_cache_write";

export type UsageEventData = {
  type: TokenKind;
  tokens: number;
  model?: string;
  provider?: string;
  response_model?: string;
  cached_tokens?: number;
  cache_write_tokens?: number;
  reasoning_tokens?: number;
  estimated?: true;
} & Record<string, DataValue | undefined>;

export type UsageEvent = CloudEvent<UsageEventData>;

/** The event's own `data` fields: user metadata with these names is overridden. */
export const RESERVED_DATA_KEYS: ReadonlySet<string> = new Set([
  "type",
  "tokens",
  "model",
  "provider",
  "response_model",
  "cached_tokens",
  "cache_write_tokens",
  "reasoning_tokens",
  "estimated",
]);

export interface UsageRecord {
  runId: string;
  subject: string;
  /** RFC 3339: when the call ended. */
  time: string;
  usage: TokenUsage;
  /** The requested model (`ls_model_name`). */
  model?: string;
  /** The model the provider says served the call, when it differs from `model`. */
  responseModel?: string;
  /** LangChain's `ls_provider`. */
  provider?: string;
  /** User metadata already filtered to flat values. */
  extra?: Record<string, DataValue>;
}

export interface EventSettings {
  source: string;
  eventType: string;
  /** Send cache reads and writes as their own `input_cached` / `input_cache_write` events. */
  splitCachedInput: boolean;
}

/**
 * Turns one run's usage into its CloudEvents: an input and an output event (plus cached-input events
 * when split), with ids derived from the run id so a retry or replay is de-duplicated downstream.
 * The tokens of all events add up to the reported input + output.
 */
export function buildUsageEvents(record: UsageRecord, settings: EventSettings): UsageEvent[] {
  const { usage } = record;
  const cacheRead = usage.cacheRead ?? 0;
  const cacheWrite = usage.cacheWrite ?? 0;
  const split = settings.splitCachedInput && cacheRead + cacheWrite > 0;

  const input = split ? usage.input - cacheRead - cacheWrite : usage.input;
  const events = [
    event(record, settings, "input", input, split ? undefined : { cached_tokens: usage.cacheRead, cache_write_tokens: usage.cacheWrite }),
    event(record, settings, "output", usage.output, { reasoning_tokens: usage.reasoning }),
  ];
  if (split && cacheRead > 0) events.push(event(record, settings, "input_cached", cacheRead));
  if (split && cacheWrite > 0) events.push(event(record, settings, "input_cache_write", cacheWrite));
  return events;
}

function event(
  record: UsageRecord,
  settings: EventSettings,
  kind: TokenKind,
  tokens: number,
  details?: Partial<Record<"cached_tokens" | "cache_write_tokens" | "reasoning_tokens", number>>,
): UsageEvent {
  // `extra` never holds reserved keys (see selectMetadata), so the event's own fields cannot be shadowed.
  const data: UsageEventData = { type: kind, tokens };
  if (record.model !== undefined) data.model = record.model;
  if (record.provider !== undefined) data.provider = record.provider;
  if (record.responseModel !== undefined) data.response_model = record.responseModel;
  if (details?.cached_tokens) data.cached_tokens = details.cached_tokens;
  if (details?.cache_write_tokens) data.cache_write_tokens = details.cache_write_tokens;
  if (details?.reasoning_tokens) data.reasoning_tokens = details.reasoning_tokens;
  if (record.usage.estimated) data.estimated = true;
  if (record.extra) Object.assign(data, record.extra);
  return {
    specversion: "1.0",
    id: `${record.runId}-${kind}`,
    source: settings.source,
    type: settings.eventType,
    subject: record.subject,
    time: record.time,
    data,
  };
}
