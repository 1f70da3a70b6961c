/**
 * The ingest endpoint's request decoding, as OpenMeter does it (openmeterio/openmeter at 7e57a394):
 *
 * 1. The OpenAPI validator reads the whole body, however large (kin-openapi `ValidateRequestBody`:
 *    `io.ReadAll`; Go's HTTP server has no body limit), answers 400 to an empty body ("value is required
 *    but missing"), to a Content-Type that is none of the three media types (`openapi3.Content.Get`: exact,
 *    then without parameters; case-sensitive) and to a body that does not match the schema
 *    (`validate-event.ts`).
 * 2. The handler (`openmeter/ingest/httpdriver/ingest.go` for v1, `api/v3/handlers/events/ingest.go` for
 *    v3) switches on the Content-Type: v1 compares the header exactly (`r.Header.Get("Content-Type")`,
 *    so any parameter is "invalid content type"), v3 takes `mime.ParseMediaType`'s type (parameters
 *    ignored, but they must parse). Then:
 *    - `application/cloudevents+json`: one event; a decode error is 400 "invalid event: <error>";
 *    - `application/cloudevents-batch+json`: an array; the first event that fails decoding fails the
 *      request; `[]` decodes to no events and is answered 204/202;
 *    - `application/json`: tried as one event, then as an array; if neither decodes, or the array is empty,
 *      400 "invalid event: no events found" (so an invalid event sent as `application/json` gets that
 *      message, not the decoder's).
 * 3. The service forwards the events one by one (`openmeter/ingest/service.go` `IngestEvents`), setting a
 *    missing time to the receive time and converting it to UTC, and returns the first collector error.
 *
 * The Kafka message of an event (`openmeter/ingest/kafkaingest/collector.go`, `serializer/json.go`,
 * `serializer/serializer.go`): key `namespace-source-id`, value `{id,type,source,subject,time(unix seconds),
 * data(JSON text)}`, headers namespace, specversion, ingested_at and the OTel span context.
 */
import { dedupeKey, NAMESPACE } from "./dedupe";
import { decodeFirstJsonValue, Problem } from "./http";
import type { OpenMeterApi, StoredEvent } from "./types";
import { decodeEvent, describeIssue, schemaIssues, type DecodedEvent, type EventIssue } from "./validate-event";

export const CONTENT_TYPES = [
  "application/cloudevents+json",
  "application/cloudevents-batch+json",
  "application/json",
] as const;
export type IngestContentType = (typeof CONTENT_TYPES)[number];

export interface DecodedRequest {
  /** The raw events (as sent) with their decoding. */
  events: Array<{ raw: Record<string, unknown>; decoded: DecodedEvent }>;
}

/** Count of events in a parsable body (for the request record), else 0. */
export function countEvents(text: string): number {
  const parsed = decodeFirstJsonValue(text);
  if ("error" in parsed) return 0;
  return Array.isArray(parsed.value) ? parsed.value.length : typeof parsed.value === "object" && parsed.value !== null ? 1 : 0;
}

/** Steps 1 and 2: the body to events, or the problem OpenMeter answers. */
export function decodeIngestRequest(api: OpenMeterApi, contentType: string | null, text: string, onCount: (n: number) => void): DecodedRequest | Problem {
  // kin-openapi: an empty body fails `required: true` before anything else.
  if (text.length === 0) return new Problem(400, "request body has an error: value is required but missing");
  // kin-openapi Content.Get: exact, then the part before ';' (no trimming, case-sensitive); "" matches only */*.
  const header = contentType ?? "";
  const bare = header.includes(";") ? header.slice(0, header.indexOf(";")) : header;
  const schemaType = CONTENT_TYPES.find((t) => t === header || t === bare);
  if (!schemaType) {
    return new Problem(400, `request body has an error: header Content-Type has unexpected value ${JSON.stringify(header)}`);
  }
  const parsed = decodeFirstJsonValue(text);
  if ("error" in parsed) return new Problem(400, `request body has an error: failed to decode request body: ${parsed.error}`);
  const body = parsed.value;
  onCount(Array.isArray(body) ? body.length : typeof body === "object" && body !== null ? 1 : 0);

  const schemaProblem = checkSchema(api, schemaType, body);
  if (schemaProblem) return schemaProblem;

  // The handler's own content-type switch.
  let handlerType: string;
  if (api === "v1") {
    handlerType = header;
  } else {
    const media = parseMediaType(header);
    if ("error" in media) return new Problem(400, media.error);
    handlerType = media.type;
  }
  const invalid = (message: string) => new Problem(400, api === "v1" ? `invalid event: ${message}` : message);
  switch (handlerType) {
    case "application/cloudevents+json": {
      const one = decodeEvent(body as Record<string, unknown>);
      if ("error" in one) return invalid(one.error);
      return { events: [{ raw: body as Record<string, unknown>, decoded: one }] };
    }
    case "application/cloudevents-batch+json": {
      const events: DecodedRequest["events"] = [];
      for (const raw of body as Array<Record<string, unknown>>) {
        const one = decodeEvent(raw);
        if ("error" in one) return invalid(one.error);
        events.push({ raw, decoded: one });
      }
      return { events };
    }
    case "application/json": {
      if (!Array.isArray(body)) {
        const one = decodeEvent(body as Record<string, unknown>);
        if (!("error" in one)) return { events: [{ raw: body as Record<string, unknown>, decoded: one }] };
        return invalid("no events found");
      }
      const events: DecodedRequest["events"] = [];
      for (const raw of body as Array<Record<string, unknown>>) {
        const one = decodeEvent(raw);
        if ("error" in one) return invalid("no events found");
        events.push({ raw, decoded: one });
      }
      if (events.length === 0) return invalid("no events found");
      return { events };
    }
    default:
      return new Problem(400, api === "v1" ? `invalid content type: ${header}` : "invalid content type");
  }
}

/** kin-openapi against the media type's schema (v1 reports the first error, v3 all of them). */
function checkSchema(api: OpenMeterApi, type: IngestContentType, body: unknown): Problem | undefined {
  const schemaName = api === "v1" ? "#/components/schemas/Event" : "#/components/schemas/MeteringEvent";
  const fail = (issues: EventIssue[], prefix = "") =>
    new Problem(400, `request body has an error: doesn't match schema ${schemaName}: ${prefix}${issues.map(describeIssue).join(" | ")}`, issues);
  const batch = (list: unknown[]): EventIssue[] => {
    const all = list.flatMap((event, index) => schemaIssues(event, index, api));
    return api === "v1" ? all.slice(0, 1) : all;
  };
  if (type === "application/cloudevents+json") {
    const issues = schemaIssues(body, 0, api);
    return issues.length > 0 ? fail(issues) : undefined;
  }
  if (type === "application/cloudevents-batch+json") {
    if (!Array.isArray(body)) return fail([{ index: 0, field: "", rule: "type", reason: "value must be an array" }]);
    const issues = batch(body);
    return issues.length > 0 ? fail(issues) : undefined;
  }
  // application/json: anyOf [Event, array of Event].
  if (Array.isArray(body)) {
    const issues = batch(body);
    return issues.length > 0 ? fail(issues, "doesn't match any schema from \"anyOf\": ") : undefined;
  }
  const issues = schemaIssues(body, 0, api);
  return issues.length > 0 ? fail(issues, "doesn't match any schema from \"anyOf\": ") : undefined;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Go `mime.ParseMediaType`, as far as the v3 handler needs: the lower-cased type, or an error. */
export function parseMediaType(header: string): { type: string } | { error: string } {
  const semi = header.indexOf(";");
  const type = (semi < 0 ? header : header.slice(0, semi)).trim().toLowerCase();
  if (type === "") return { error: "mime: no media type" };
  const slash = type.indexOf("/");
  if (slash <= 0 || slash === type.length - 1 || !TOKEN.test(type.slice(0, slash)) || !TOKEN.test(type.slice(slash + 1))) {
    return { error: "mime: expected token after slash" };
  }
  if (semi < 0) return { type };
  const seen = new Set<string>();
  let rest = header.slice(semi);
  while (rest.trim() !== "") {
    const m = /^\s*;\s*([!#$%&'*+\-.^_`|~0-9A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[!#$%&'*+\-.^_`|~0-9A-Za-z]+)\s*/.exec(rest);
    if (!m) {
      if (rest.trim() === ";") break; // trailing semicolon is ignored
      return { error: "mime: invalid media parameter" };
    }
    const key = m[1]!.toLowerCase();
    if (seen.has(key)) return { error: "mime: duplicate parameter name" };
    seen.add(key);
    rest = rest.slice(m[0].length);
  }
  return { type };
}

/** The event as stored, and the Kafka message size librdkafka checks against `message.max.bytes`. */
export function kafkaMessage(
  decoded: DecodedEvent,
  timeMs: number,
  ingestedAtMs: number,
): { stored: StoredEvent; key: string; bytes: number } {
  // ev.Time().Unix(): whole seconds, floored.
  const timeSeconds = Math.floor(timeMs / 1000);
  const dataText = decoded.data === undefined ? "" : JSON.stringify(decoded.data);
  const key = dedupeKey(decoded.source, decoded.id);
  const value = JSON.stringify({ id: decoded.id, type: decoded.type, source: decoded.source, subject: decoded.subject, time: timeSeconds, data: dataText });
  const ingestedAt = new Date(ingestedAtMs).toISOString();
  const headers: Array<[string, number]> = [
    ["namespace", NAMESPACE.length],
    ["specversion", decoded.specversion.length],
    ["ingested_at", 30], // RFC3339Nano in UTC
    ["otel.span.context", OTEL_SPAN_CONTEXT_BYTES],
  ];
  const headerBytes = headers.reduce((sum, [name, len]) => sum + varintSize(name.length) + name.length + varintSize(len) + len, 0);
  const bytes = RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD + Buffer.byteLength(key) + Buffer.byteLength(value) + headerBytes;
  const stored: StoredEvent = {
    id: decoded.id,
    type: decoded.type,
    source: decoded.source,
    subject: decoded.subject,
    time: new Date(timeSeconds * 1000).toISOString(),
    timeSeconds,
    data: decoded.data === undefined ? undefined : decoded.data,
    specversion: decoded.specversion,
    ingestedAt,
    storedAt: ingestedAt,
  };
  return { stored, key, bytes };
}

/**
 * librdkafka `rdkafka_proto.h`: Length, Attributes, TimestampDelta, OffsetDelta, KeyLen, ValueLen and
 * HeaderCnt varints at their largest (5 + 1 + 10 + 5 + 5 + 5 + 5).
 */
export const RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD = 36;
/** base64 of an empty OTel SpanContext's JSON (`pkg/otelx/spancontext.go`): an estimate. */
const OTEL_SPAN_CONTEXT_BYTES = Math.ceil(
  JSON.stringify({ TraceID: "0".repeat(32), SpanID: "0".repeat(16), TraceFlags: "00", TraceState: "", Remote: false }).length / 3,
) * 4;

function varintSize(n: number): number {
  let zigzag = n * 2;
  let size = 1;
  while (zigzag >= 128) {
    zigzag = Math.floor(zigzag / 128);
    size++;
  }
  return size;
}
