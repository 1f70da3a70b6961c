/**
 * Public types of `langchain-openmeter/testing`'s OpenMeter model, hand-written so they read as
 * documentation. Each option says where its behaviour comes from in OpenMeter's source
 * (openmeterio/openmeter at commit 7e57a394a0283fb210a644685ad1d257f6d5c85c unless stated).
 */
import type { Clock } from "../clock";
import type { CloudEvent } from "../cloudevent";
import type { MeterDefinition } from "./meters";

export type OpenMeterApi = "v1" | "v3";

/**
 * - `ok`: behave like OpenMeter.
 * - `hang`: read the request, never answer (the client must time out).
 * - `reset`: destroy the connection (TCP reset) as soon as a request arrives.
 * - `down`: answer 503 problem+json to every events request.
 */
export type OpenMeterServerMode = "ok" | "hang" | "reset" | "down";

/**
 * One de-duplication driver, as OpenMeter configures it (`app/config/dedupe.go`):
 * - `memory`: an LRU of `size` keys (hashicorp/golang-lru: a repeat does not refresh a key, so it
 *   behaves as "the last `size` distinct keys").
 * - `redis`: keys kept `expirationMs` (24 h by default: `pkg/redis` `Configure`, `app/config/sink.go`);
 *   the quickstart sets 768 h = 32 days (`quickstart/config.yaml`).
 */
export type DedupeDriver =
  | {
      driver: "memory";
      /** LRU capacity in keys. @default 128 (`dedupe.config.size` / `sink.dedupe.config.size`) */
      size?: number;
    }
  | {
      driver: "redis";
      /** How long a key is kept, in ms of the server's clock. @default 86_400_000 (24 h) */
      expirationMs?: number;
    };

/**
 * Where OpenMeter de-duplicates. Both are off in a bare self-hosted server
 * (`dedupe.enabled: false`, `sink.dedupe.enabled: false`).
 */
export interface DedupeConfig {
  /**
   * Ingest-time check (`dedupe.*`, `openmeter/ingest/dedupe.go` `DeduplicatingCollector`): per event,
   * before forwarding, and it records the key first, so a forward that fails leaves the key behind and a
   * retry of that event is answered 2xx and dropped (OpenMeter issue #5118). Such events are listed in
   * `server.lost`. @default undefined (off)
   */
  ingest?: DedupeDriver;
  /**
   * Sink-side check (`sink.dedupe.*`, `openmeter/sink/sink.go` `parseMessage` and `flush`): keys are
   * checked when the sink worker consumes and stores, and set only after storing. The quickstart turns
   * this one on (Redis, 32 days). @default undefined (off)
   */
  sink?: DedupeDriver;
}

/**
 * Sink worker batching (`app/config/sink.go`: `sink.minCommitCount` 500, `sink.maxCommitWait` 2s).
 * The sink always drops repeats of a `source`+`id` within one flush, de-duplication on or off
 * (`openmeter/sink/sink.go` `dedupeSinkMessages`). The flush timer is re-armed after every flush (as
 * `setFlushTimer` is), so a `TestClock` always has one timer pending while the server runs.
 */
export interface SinkBatchingOptions {
  /** Flush when this many messages are buffered. @default 500 */
  minCommitCount?: number;
  /** Flush this long after the previous flush, in ms of the server's clock. @default 2000 */
  maxCommitWaitMs?: number;
}

export interface OpenMeterServerOptions {
  /** Which API to mirror: `v1` (self-hosted: `/api/v1`, `/api/v2`) or `v3` (Kong Konnect: `/v3/openmeter`). @default "v1" */
  api?: OpenMeterApi;
  /** Interface to listen on. @default "127.0.0.1" */
  host?: string;
  /** Port to listen on. @default 0 (a free port) */
  port?: number;
  /** Require `Authorization: Bearer <apiKey>` (401 otherwise); the fake's own, a self-hosted OpenMeter has no auth. @default undefined (no auth) */
  apiKey?: string;
  /** Clock for every timer and timestamp of the fake (outages, delays, sink flushes, Redis TTLs, receive times, balances). @default systemClock */
  clock?: Clock;
  /** Latency added before every answer, in ms of the clock; settable later via `server.delayMs`. @default 0 */
  delayMs?: number;
  /** De-duplication: `false` = bare self-hosted server, `true` = quickstart (sink, Redis, 32 days), or a `DedupeConfig`. @default false */
  dedupe?: boolean | DedupeConfig;
  /** Sink batching (`sink.minCommitCount`/`maxCommitWait`); `false` stores each request's events as one flush, at once. @default false */
  sinkBatching?: false | SinkBatchingOptions;
  /** librdkafka `message.max.bytes`: a larger event fails its produce, and the request gets a 500 after the events before it. @default 1_000_000 */
  kafkaMaxMessageBytes?: number;
  /**
   * A gateway's body limit in front of OpenMeter (413, `Connection: close`); OpenMeter reads any size, and Kong Konnect's
   * real limits are not published, so this number is yours. @default undefined (no limit)
   */
  gatewayLimitBytes?: number;
  /** @deprecated Use `gatewayLimitBytes` (same meaning). @default undefined */
  maxBodyBytes?: number;
  /** Meters to define (replaces the default). @default [LLM_TOKENS_METER] */
  meters?: readonly MeterDefinition[];
}

/** An event as sent (null optional attributes removed, `time` filled in when missing). */
export interface ReceivedEvent extends CloudEvent {
  /** As sent, or the receive time (RFC 3339, UTC, milliseconds) when the event had none. */
  time: string;
  datacontenttype?: "application/json";
  dataschema?: string;
}

/**
 * An event as OpenMeter stores it (`openmeter/ingest/kafkaingest/serializer/serializer.go`
 * `CloudEventsKafkaPayload`, `openmeter/sink/storage.go`): only id, type, source, subject, time and data
 * survive; `source` is Go's re-serialization of the parsed URI reference; `time` is whole seconds.
 */
export interface StoredEvent {
  id: string;
  type: string;
  /** `url.Parse(source).String()`, e.g. `"my app"` is stored as `"my%20app"`. */
  source: string;
  subject: string;
  /** Whole seconds, UTC (`ev.Time().Unix()`), as RFC 3339. */
  time: string;
  /** Seconds since the epoch. */
  timeSeconds: number;
  /** The event's `data`, or `undefined` when it had none (stored as ""). */
  data: unknown;
  /** `specversion` as sent (it travels in a Kafka header). */
  specversion: string;
  /** When the server forwarded it (server clock, wall time). */
  ingestedAt: string;
  /** When the sink stored it (server clock, wall time). */
  storedAt: string;
}

/** An event the sink worker dropped after the request was answered 2xx, with OpenMeter's reason. */
export interface DroppedEvent {
  event: ReceivedEvent;
  /** e.g. `"failed to validate cloudevents message: time is zero"`, `"skipping non unique message"`. */
  reason: string;
}

export type RequestOutcome =
  | "accepted" // 2xx: every event forwarded (or dropped as a duplicate by ingest de-duplication)
  | "failed" // 5xx after forwarding `accepted` events one by one (OpenMeter stops at the first failure)
  | "rejected" // 4xx from OpenMeter's rules or the fake's: auth, gateway size, content type, JSON, validation, path, method
  | "scripted" // answered from the failNext() queue
  | "down" // 503 because of setMode("down") / outage()
  | "hang" // never answered
  | "reset"; // connection destroyed

export interface RequestRecord {
  method: string;
  /** Path and query, as requested. */
  path: string;
  /** Status sent, or `null` when the request was never answered (hang, reset, or server closed). */
  status: number | null;
  outcome: RequestOutcome;
  /** The Content-Type header as sent, or `null`. */
  contentType: string | null;
  /** Whether an Authorization header was present (its value is never recorded). */
  authorization: boolean;
  /** The raw request body (UTF-8). */
  body: string;
  /** Events in the body when it could be parsed (1 for a single event), else 0. */
  eventCount: number;
  /** Events of this request forwarded to Kafka (produced), before sink processing. */
  accepted: number;
  /** Events of this request whose `source`+`id` had already been forwarded before (re-sent). */
  duplicates: number;
  /** Problem detail for an error answer. */
  detail?: string;
  /** When the request arrived (server clock). */
  time: Date;
}

export interface ScriptedResponse {
  /** HTTP status to answer with, e.g. 503, 429, 400, 401 or 200. */
  status: number;
  /** `Retry-After` header value: seconds (number or string) or an HTTP date. */
  retryAfter?: number | string;
  /** Response body: a string as is, an object as JSON. Default: problem+json for status >= 400, empty otherwise. */
  body?: string | object;
  /** Default: `application/problem+json` for the default/object body, `text/plain` for a string. */
  contentType?: string;
  /** Extra response headers. */
  headers?: Record<string, string>;
}

/** A forwarding failure injected after `afterEvents` events of a request were produced. */
export interface ForwardFailure {
  /**
   * Status to answer. OpenMeter answers 500 ("Internal Server Error", no detail) to any producer error
   * (`pkg/framework/transport/httptransport/handler.go` `encodeError`, `pkg/models/problem.go`).
   * @default 500
   */
  status?: number;
  /** How many requests (that reach forwarding) fail this way. @default 1 */
  times?: number;
}

/** Called with each batch of newly stored events and the request that forwarded the last of them. */
export type EventsListener = (events: readonly ReceivedEvent[], request: RequestRecord) => void;

/** Sum of `data.tokens` per subject, then per `data.type`, through the LLM tokens meter: `{ acme: { input: 120, output: 30 } }`. */
export type TokenTotals = Record<string, Record<string, number>>;
