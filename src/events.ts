import type { CloudEvent, DataValue } from "./cloudevent";
import type { TokenUsage } from "./usage";

/**
 * `data.type` of a token event. Without `splitTokenTypes` only `input` and `output`; with it, disjoint
 * buckets named after OpenMeter's LLM-cost token types (`BillingFeatureLLMTokenType` in its v3 API:
 * input, output, cache_read, cache_write, reasoning) plus the three price-relevant kinds that table has
 * no name for: 1-hour cache writes and audio in and out, each priced apart by its provider.
 */
export type TokenKind =
  | "input"
  | "output"
  | "cache_read"
  | "cache_write"
  | "cache_write_1h"
  | "input_audio"
  | "reasoning"
  | "output_audio";

/** A call that did not finish: the provider billed it all the same. */
export type CallStatus = "aborted" | "error";

export type UsageEventData = {
  type: TokenKind;
  tokens: number;
  model?: string;
  provider?: string;
  response_model?: string;
  /** Input event, without split: cache reads (part of `tokens`). */
  cached_tokens?: number;
  /** Input event, without split: cache writes of any TTL (part of `tokens`). */
  cache_write_tokens?: number;
  cache_write_5m_tokens?: number;
  cache_write_1h_tokens?: number;
  /** Without split: audio tokens of this side (part of `tokens`). */
  audio_tokens?: number;
  /** Output event, without split: reasoning tokens (part of `tokens`). */
  reasoning_tokens?: number;
  /** Set only for a call that did not finish. */
  status?: CallStatus;
  /** Set only where `tokens` is an estimate, not the provider's report. */
  estimated?: true;
} & Record<string, DataValue | undefined>;

export type UsageEvent = CloudEvent<UsageEventData>;

/** A server-side tool the provider ran for the call and bills per request (web search, ...). */
export type ServerToolEventData = {
  tool: string;
  requests: number;
  model?: string;
  provider?: string;
  response_model?: string;
  status?: CallStatus;
  estimated?: true;
} & Record<string, DataValue | undefined>;

export type ServerToolEvent = CloudEvent<ServerToolEventData>;

/** The event's own `data` fields: user metadata with these names is left out. */
export const RESERVED_DATA_KEYS: ReadonlySet<string> = new Set([
  "type",
  "tokens",
  "model",
  "provider",
  "response_model",
  "cached_tokens",
  "cache_write_tokens",
  "cache_write_5m_tokens",
  "cache_write_1h_tokens",
  "audio_tokens",
  "reasoning_tokens",
  "status",
  "estimated",
  "tool",
  "requests",
]);

export interface UsageRecord {
  /** The id the events derive from: the run id (a reused run id gets a suffix, see the handler). */
  billingId: string;
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
  /** Set for a call that did not finish. */
  status?: CallStatus;
  /** Requests per server tool (`web_search: 3`). */
  serverTools?: Readonly<Record<string, number>>;
  /** Whether the server tool counts are estimates. */
  serverToolsEstimated?: boolean;
  /** User metadata already filtered to flat values. */
  extra?: Record<string, DataValue>;
}

export interface EventSettings {
  source: string;
  eventType: string;
  /** Send disjoint token buckets (`cache_read`, `reasoning`, ...) instead of input and output. */
  splitTokenTypes: boolean;
  /** CloudEvents `type` of the server tool events. */
  serverToolEventType: string;
}

type Bucket = { kind: TokenKind; tokens: number; side: "input" | "output" };

/**
 * Turns one run's usage into its CloudEvents, with ids derived from the billing id so a retry or
 * replay is de-duplicated downstream. The token events' `tokens` add up to the billed input + output,
 * in either mode; server tool requests follow as events of their own type.
 */
export function buildEvents(record: UsageRecord, settings: EventSettings): Array<UsageEvent | ServerToolEvent> {
  const events: Array<UsageEvent | ServerToolEvent> = settings.splitTokenTypes ? splitEvents(record, settings) : pairEvents(record, settings);
  for (const [tool, requests] of Object.entries(record.serverTools ?? {})) {
    if (requests > 0) events.push(serverToolEvent(record, settings, tool, requests));
  }
  return events;
}

function pairEvents(record: UsageRecord, settings: EventSettings): UsageEvent[] {
  const { usage } = record;
  return [
    tokenEvent(record, settings, { kind: "input", tokens: usage.input, side: "input" }, {
      cached_tokens: usage.cacheRead,
      cache_write_tokens: usage.cacheWrite,
      cache_write_5m_tokens: usage.cacheWrite5m,
      cache_write_1h_tokens: usage.cacheWrite1h,
      audio_tokens: usage.audioInput,
    }),
    tokenEvent(record, settings, { kind: "output", tokens: usage.output, side: "output" }, {
      reasoning_tokens: usage.reasoning,
      audio_tokens: usage.audioOutput,
    }),
  ];
}

/** The disjoint buckets of a usage; `input` and `output` keep what no other bucket took. */
export function tokenBuckets(usage: TokenUsage): Bucket[] {
  const cacheRead = usage.cacheRead ?? 0;
  const cacheWrite = usage.cacheWrite ?? 0;
  const write1h = usage.cacheWrite1h ?? 0;
  // Audio is split out only where it cannot overlap the cache counts (a cached audio token would be
  // counted twice): the buckets must add up to the total.
  const audioIn = cacheRead + cacheWrite + (usage.audioInput ?? 0) <= usage.input ? (usage.audioInput ?? 0) : 0;
  const reasoning = usage.reasoning ?? 0;
  const audioOut = reasoning + (usage.audioOutput ?? 0) <= usage.output ? (usage.audioOutput ?? 0) : 0;
  const buckets: Bucket[] = [
    { kind: "input", tokens: usage.input - cacheRead - cacheWrite - audioIn, side: "input" },
    { kind: "output", tokens: usage.output - reasoning - audioOut, side: "output" },
    { kind: "cache_read", tokens: cacheRead, side: "input" },
    { kind: "cache_write", tokens: cacheWrite - write1h, side: "input" },
    { kind: "cache_write_1h", tokens: write1h, side: "input" },
    { kind: "input_audio", tokens: audioIn, side: "input" },
    { kind: "reasoning", tokens: reasoning, side: "output" },
    { kind: "output_audio", tokens: audioOut, side: "output" },
  ];
  // input and output always go out (a meter sees the call even at 0); the others only when non-zero.
  return buckets.filter((bucket, i) => i < 2 || bucket.tokens > 0);
}

function splitEvents(record: UsageRecord, settings: EventSettings): UsageEvent[] {
  return tokenBuckets(record.usage).map((bucket) => tokenEvent(record, settings, bucket));
}

function tokenEvent(
  record: UsageRecord,
  settings: EventSettings,
  bucket: Bucket,
  details?: Partial<Record<"cached_tokens" | "cache_write_tokens" | "cache_write_5m_tokens" | "cache_write_1h_tokens" | "audio_tokens" | "reasoning_tokens", number>>,
): UsageEvent {
  // `extra` never holds reserved keys (see selectMetadata), so the event's own fields cannot be shadowed.
  const data: UsageEventData = { type: bucket.kind, tokens: bucket.tokens };
  describeCall(data, record);
  for (const [key, value] of Object.entries(details ?? {})) if (value) data[key] = value;
  if (record.status !== undefined) data.status = record.status;
  if (bucket.side === "input" ? record.usage.inputEstimated : record.usage.outputEstimated) data.estimated = true;
  if (record.extra) Object.assign(data, record.extra);
  return envelope(record, settings.source, settings.eventType, `${record.billingId}-${bucket.kind}`, data);
}

function serverToolEvent(record: UsageRecord, settings: EventSettings, tool: string, requests: number): ServerToolEvent {
  const data: ServerToolEventData = { tool, requests };
  describeCall(data, record);
  if (record.status !== undefined) data.status = record.status;
  if (record.serverToolsEstimated) data.estimated = true;
  if (record.extra) Object.assign(data, record.extra);
  return envelope(record, settings.source, settings.serverToolEventType, `${record.billingId}-tool-${tool}`, data);
}

function describeCall(data: Record<string, DataValue | undefined>, record: UsageRecord): void {
  if (record.model !== undefined) data.model = record.model;
  if (record.provider !== undefined) data.provider = record.provider;
  if (record.responseModel !== undefined) data.response_model = record.responseModel;
}

function envelope<D extends Record<string, unknown>>(record: UsageRecord, source: string, type: string, id: string, data: D): CloudEvent<D> {
  return { specversion: "1.0", id, source, type, subject: record.subject, time: record.time, data };
}
