/**
 * Event validation as OpenMeter's ingest endpoints do it, in the same two stages:
 *
 * 1. The OpenAPI request validator (kin-openapi `openapi3filter.ValidateRequestBody` via
 *    oapi-codegen/nethttp-middleware for v1, `api/v3/oasmiddleware` for v3; openmeterio/openmeter
 *    `openmeter/server/server.go`, `api/v3/server/server.go` at 7e57a394) checks the body against the
 *    `Event` (v1) or `MeteringEvent` (v3) schema: required attributes, string types, `minLength: 1`,
 *    the `datacontenttype` enum, `data` an object, `time` in kin-openapi's `date-time` format, and for
 *    v3 `additionalProperties: false`. kin-openapi checks no `uri`/`uri-reference` format (getkin/kin-openapi
 *    v0.144.0 `openapi3/schema_formats.go` registers only byte, date, date-time).
 * 2. The handler decodes each event with cloudevents/sdk-go v2.16.2 (`v2/event/event_unmarshal.go`
 *    `readJsonFromIterator`): `specversion` must be "1.0" or "0.3"; `source` must pass Go's `url.Parse`
 *    (`readUriRef`); `time` must pass Go's `time.Parse(time.RFC3339Nano, ...)` (`types.ParseTime`);
 *    extension attributes must have ASCII alphanumeric names, must not shadow a spec attribute, and
 *    must hold a string, boolean or a number in int32 range (`SetExtension`, `types.Validate`).
 *    `dataschema` is parsed with `types.ParseURI`, which drops an unparsable value without an error.
 */
import { goUrlString, uriReferenceProblem } from "../uri-reference";

/** One problem found in the body by the schema stage. */
export interface EventIssue {
  /** Event index in the batch (0 for a single event). */
  index: number;
  /** JSON pointer-ish field name, "" for the event as a whole. */
  field: string;
  reason: string;
  rule: "required" | "type" | "min_length" | "format" | "enum" | "additional_properties";
}

/** An event as the sdk-go decoder and OpenMeter's ingest service leave it. */
export interface DecodedEvent {
  id: string;
  type: string;
  /** As sent. */
  sourceAsSent: string;
  /** Go's `url.URL.String()` of the parsed source: what OpenMeter stores and de-duplicates on. */
  source: string;
  subject: string;
  specversion: string;
  /** Epoch milliseconds of `time` when given (null/absent: `undefined`, the server sets its receive time). */
  timeMs: number | undefined;
  /** `data` as sent (`undefined` when absent, `null` kept as null). */
  data: unknown;
  /** Extension attributes after sdk-go's validation (names lower-cased for 1.0); OpenMeter drops them on storage. */
  extensions: Record<string, unknown>;
  /**
   * Why the Kafka serializer cannot turn `data` into JSON (`serializer.go`: "cannot unmarshal cloudevents
   * data"): a 1.0 `data_base64` that decodes to something other than JSON. The forward then fails (500).
   */
  dataError?: string;
}

const REQUIRED = ["id", "source", "specversion", "type", "subject"] as const;
const V3_PROPERTIES = new Set(["id", "source", "specversion", "type", "subject", "time", "data", "datacontenttype", "dataschema"]);

/**
 * kin-openapi's `date-time` format (getkin/kin-openapi v0.144.0 `openapi3/schema_formats.go`
 * `FormatOfStringDateTime`): upper-case `T` and `Z` only, two-digit fields, seconds up to 60, an
 * offset required. OpenMeter pins kin-openapi v0.146.0 (`go.mod`); the mirror read here is v0.144.0.
 */
export const KIN_DATE_TIME =
  /^[0-9]{4}-(0[1-9]|10|11|12)-(0[1-9]|[12][0-9]|3[01])T([0-1][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)[0-9]{2}:[0-9]{2})$/;

/**
 * Epoch milliseconds of an RFC 3339 date-time as OpenMeter accepts it, or a reason it does not.
 * Both stages apply: the kin-openapi regex above, then Go's `time.Parse(time.RFC3339Nano, s)` (Go
 * `src/time/format_rfc3339.go` `parseRFC3339`, falling back to `src/time/format.go` `parse`), which
 * refuses a day the month does not have and second 60 ("second out of range"), but accepts zone
 * offsets up to +24:00 and minutes up to 60 ("as some people do write offsets of 24 hours or 60
 * minutes"). Digits beyond nanoseconds are ignored.
 */
export function parseOpenMeterTime(value: string): { ms: number } | { problem: string } {
  const m = KIN_DATE_TIME.exec(value);
  if (!m) {
    return {
      problem:
        `${JSON.stringify(value)} is not a date-time as OpenMeter's schema validator reads RFC 3339 ` +
        `(YYYY-MM-DDThh:mm:ss[.fraction](Z|±hh:mm), upper-case T and Z)`,
    };
  }
  const year = Number(value.slice(0, 4));
  const month = Number(value.slice(5, 7));
  const day = Number(value.slice(8, 10));
  const hour = Number(value.slice(11, 13));
  const minute = Number(value.slice(14, 16));
  const second = Number(value.slice(17, 19));
  if (day > daysIn(month, year)) return { problem: `${JSON.stringify(value)}: day out of range (Go's time.Parse)` };
  if (second === 60) return { problem: `${JSON.stringify(value)}: second out of range (Go's time.Parse refuses leap second 60)` };
  let offsetSeconds = 0;
  const zone = m[6]!;
  if (zone !== "Z") {
    const oh = Number(zone.slice(1, 3));
    const om = Number(zone.slice(4, 6));
    if (oh > 24) return { problem: `${JSON.stringify(value)}: time zone offset hour out of range (Go's time.Parse)` };
    if (om > 60) return { problem: `${JSON.stringify(value)}: time zone offset minute out of range (Go's time.Parse)` };
    offsetSeconds = (oh * 60 + om) * 60 * (zone[0] === "-" ? -1 : 1);
  }
  // Milliseconds from the fraction's first three digits (Go keeps nanoseconds; storage keeps seconds).
  const fractionMs = m[5] ? Number(`${m[5].slice(1)}000`.slice(0, 3)) : 0;
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, 0);
  return { ms: date.getTime() - offsetSeconds * 1000 + fractionMs };
}

function daysIn(month: number, year: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/**
 * Stage 1: the schema check of one event (kin-openapi against `Event` / `MeteringEvent`).
 * v1 stops at the first error (`MultiError` off), v3 collects them all (`MultiError: true`).
 */
export function schemaIssues(event: unknown, index: number, api: "v1" | "v3"): EventIssue[] {
  const issues: EventIssue[] = [];
  const issue = (field: string, rule: EventIssue["rule"], reason: string) => issues.push({ index, field, rule, reason });
  if (typeof event !== "object" || event === null || Array.isArray(event)) {
    issue("", "type", "value must be an object");
    return issues;
  }
  const e = event as Record<string, unknown>;
  for (const name of REQUIRED) {
    if (!(name in e)) issue(name, "required", `property "${name}" is missing`);
  }
  for (const [name, value] of Object.entries(e)) {
    switch (name) {
      case "id":
      case "source":
      case "specversion":
      case "type":
      case "subject":
        if (value === null) issue(name, "type", "Value is not nullable");
        else if (typeof value !== "string") issue(name, "type", "value must be a string");
        else if (utf16Length(value) < 1) issue(name, "min_length", "minimum string length is 1");
        break;
      case "datacontenttype":
        if (value === null) break;
        if (typeof value !== "string") issue(name, "type", "value must be a string");
        else if (value !== "application/json") issue(name, "enum", `value is not one of the allowed values ["application/json"]`);
        break;
      case "dataschema":
        if (value === null) break;
        if (typeof value !== "string") issue(name, "type", "value must be a string");
        else if (value.length < 1) issue(name, "min_length", "minimum string length is 1");
        break;
      case "time":
        if (value === null) break;
        if (typeof value !== "string") issue(name, "type", "value must be a string");
        else if (!KIN_DATE_TIME.test(value)) issue(name, "format", `string doesn't match the format "date-time"`);
        break;
      case "data":
        if (value === null) break;
        if (typeof value !== "object" || Array.isArray(value)) issue(name, "type", "value must be an object");
        break;
      default:
        if (api === "v3" && !V3_PROPERTIES.has(name)) issue(name, "additional_properties", `property "${name}" is unsupported`);
    }
  }
  return api === "v1" ? issues.slice(0, 1) : issues;
}

/** JSON schema string length counts UTF-16 code units (kin-openapi `visitJSONString`), as JS does. */
function utf16Length(value: string): number {
  return value.length;
}

/**
 * Stage 2: sdk-go's decode of one event that passed the schema. Returns the decoded event or the
 * decoder's error text (the handler answers 400 "invalid event: <text>").
 */
export function decodeEvent(raw: Record<string, unknown>): DecodedEvent | { error: string } {
  const specversion = raw.specversion;
  // event_unmarshal.go: CloudEventsVersionV1 / V03, else ValidationError{"specversion": "unknown value: ..."}.
  if (specversion !== "1.0" && specversion !== "0.3") {
    return { error: `specversion: unknown value: ${String(specversion)}` };
  }
  const source = String(raw.source);
  const problem = uriReferenceProblem(source);
  if (problem !== undefined) return { error: `cannot parse uri ref: ${source} (${problem})` };
  let timeMs: number | undefined;
  if (typeof raw.time === "string" && raw.time !== "") {
    const parsed = parseOpenMeterTime(raw.time);
    if ("problem" in parsed) return { error: `${parsed.problem}: not in RFC3339 format` };
    timeMs = parsed.ms;
  }
  const extensions: Record<string, unknown> = {};
  const spec = specversion === "1.0" ? SPEC_V1 : SPEC_V03;
  let data = raw.data;
  let dataError: string | undefined;
  if (specversion === "1.0" && "data_base64" in raw && raw.data_base64 !== null) {
    // event_unmarshal.go consumeData(isBase64): base64.StdEncoding, then the serializer's DataAs (JSON).
    const text = raw.data_base64;
    if (typeof text !== "string" || !/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) {
      return { error: "illegal base64 data" };
    }
    const bytes = Buffer.from(text, "base64").toString("utf8");
    try {
      data = JSON.parse(bytes) as unknown;
    } catch {
      data = undefined;
      dataError = "serialize event value: cannot unmarshal cloudevents data";
    }
  }
  for (const [name, value] of Object.entries(raw)) {
    if (KNOWN_KEYS.has(name) || (name === "data_base64" && specversion === "1.0")) continue;
    if (specversion === "1.0") {
      // validateExtensionName: ASCII letters and digits only, non-empty.
      if (!/^[A-Za-z0-9]+$/.test(name)) {
        return {
          error:
            `bad key ${JSON.stringify(name)}, CloudEvents attribute names MUST consist of lower-case letters ('a' to 'z'), ` +
            `upper-case letters ('A' to 'Z') or digits ('0' to '9') from the ASCII character set`,
        };
      }
    }
    if (spec.has(name.toLowerCase())) {
      return { error: `bad key ${JSON.stringify(name)}: CloudEvents spec attribute MUST NOT be overwritten by extension` };
    }
    if (value === null) continue; // SetExtension(name, nil) deletes it
    const invalid = extensionValueProblem(value);
    if (invalid) return { error: invalid };
    extensions[specversion === "1.0" ? name.toLowerCase() : name] = value;
  }
  return {
    id: String(raw.id),
    type: String(raw.type),
    sourceAsSent: source,
    source: goUrlString(source),
    subject: String(raw.subject),
    specversion,
    timeMs,
    data,
    extensions,
    ...(dataError !== undefined ? { dataError } : {}),
  };
}

/** Keys the decoder handles itself (sdk-go event_unmarshal.go). */
const KNOWN_KEYS = new Set(["specversion", "id", "type", "source", "subject", "time", "datacontenttype", "data", "dataschema"]);
const SPEC_V1 = new Set(["id", "source", "type", "datacontenttype", "subject", "time", "specversion", "dataschema"]);
const SPEC_V03 = new Set(["type", "source", "subject", "id", "time", "schemaurl", "datacontenttype", "datacontentencoding"]);

/** sdk-go `types.Validate` on a value jsoniter decoded: string and bool pass, numbers convert to int32. */
function extensionValueProblem(value: unknown): string | undefined {
  if (typeof value === "string" || typeof value === "boolean") return undefined;
  if (typeof value === "number") {
    if (value > 2147483647 || value < -2147483648) return `value ${value} out of range for int32`;
    return undefined;
  }
  return `invalid CloudEvents value: ${JSON.stringify(value)}`;
}

/** `event[1].subject: minimum string length is 1` — the form used in problem details. */
export function describeIssue(issue: EventIssue): string {
  return `Error at "/${issue.index}${issue.field ? `/${issue.field}` : ""}": ${issue.reason}`;
}
