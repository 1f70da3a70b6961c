/**
 * Event validation, against what OpenMeter's two stages do (openmeterio/openmeter at 7e57a394):
 * the OpenAPI validator (kin-openapi: `openmeter/server/server.go` for v1, `api/v3/server/server.go` for
 * v3; formats from getkin/kin-openapi `openapi3/schema_formats.go`), then the handler's decode with
 * cloudevents/sdk-go v2.16.2 (`v2/event/event_unmarshal.go`, `v2/types/uriref.go`, `v2/types/value.go`,
 * `v2/event/eventcontext_v1.go`, `v2/event/extensions.go`) and Go's `net/url`/`time` parsers.
 */
import { describe, expect, it } from "vitest";
import { BATCH, event, JSON_TYPE, post, problemOf, SINGLE, start } from "./helpers";

type Case = [name: string, overrides: Record<string, unknown>, detail: RegExp];

/** Refused by the schema stage (kin-openapi against Event / MeteringEvent). */
const schemaCases: Case[] = [
  ["a missing id (required)", { id: undefined }, /property "id" is missing/],
  ["an empty source (minLength: 1)", { source: "" }, /"\/1\/source": minimum string length is 1/],
  ["a numeric type (type: string)", { type: 7 }, /"\/1\/type": value must be a string/],
  ["a null subject (not nullable)", { subject: null }, /"\/1\/subject": Value is not nullable/],
  ["array data (type: object)", { data: [1, 2] }, /"\/1\/data": value must be an object/],
  ["string data (type: object)", { data: "tokens=3" }, /"\/1\/data": value must be an object/],
  ["datacontenttype text/plain (enum)", { datacontenttype: "text/plain" }, /"\/1\/datacontenttype"/],
  ["a lower-case t in time (kin date-time)", { time: "2026-05-05t15:26:47Z" }, /"\/1\/time": string doesn't match the format "date-time"/],
  ["a lower-case z in time", { time: "2026-05-05T15:26:47z" }, /"\/1\/time".*date-time/],
  ["a time without offset", { time: "2026-05-05T15:26:47" }, /"\/1\/time".*date-time/],
  ["a space instead of T", { time: "2026-05-05 15:26:47Z" }, /"\/1\/time".*date-time/],
  ["a one-digit hour", { time: "2026-05-05T5:26:47Z" }, /"\/1\/time".*date-time/],
];

/** Pass the schema, refused by the sdk-go decode: 400 "invalid event: ..." (v1) or the bare message (v3). */
const decodeCases: Case[] = [
  ["second 60 (Go time.Parse: second out of range)", { time: "2026-12-31T23:59:60Z" }, /second out of range.*not in RFC3339 format/],
  ["30 February (Go time.Parse: day out of range)", { time: "2026-02-30T00:00:00Z" }, /day out of range/],
  ["a zone offset of +25:00 (Go: offset hour out of range)", { time: "2026-05-05T15:26:47+25:00" }, /offset hour out of range/],
  ["source my_app:prod (url.Parse: colon in first segment)", { source: "my_app:prod" }, /cannot parse uri ref: my_app:prod/],
  ["source 1app:prod", { source: "1app:prod" }, /cannot parse uri ref: 1app:prod/],
  ["source 50%off (url.Parse: invalid escape)", { source: "50%off" }, /cannot parse uri ref: 50%off/],
  ["source :x (url.Parse: missing protocol scheme)", { source: ":x" }, /cannot parse uri ref: :x/],
  ["a tab in source (url.Parse: control character)", { source: "lang\tchain" }, /cannot parse uri ref/],
  ["a bad port in source", { source: "//host:port/x" }, /cannot parse uri ref/],
  ["specversion 0.2 (only 1.0 and 0.3 are known)", { specversion: "0.2" }, /specversion: unknown value: 0.2/],
];

describe.each(["v1", "v3"] as const)("%s: one invalid event refuses the whole request", (api) => {
  it.each(schemaCases)("schema stage: %s", async (_name, overrides, detail) => {
    const server = await start({ api });
    const bad = JSON.parse(JSON.stringify(event(2, overrides))) as Record<string, unknown>;
    const response = await post(server, [event(1), bad, event(3)]);
    expect(response.status).toBe(400);
    expect((await problemOf(response)).detail).toMatch(detail);
    expect(server.events).toHaveLength(0);
    expect(server.forwarded).toHaveLength(0);
    expect(server.requests[0]).toMatchObject({ status: 400, outcome: "rejected", eventCount: 3, accepted: 0 });
  });

  it.each(decodeCases)("decode stage: %s", async (_name, overrides, detail) => {
    const server = await start({ api });
    const response = await post(server, [event(1), event(2, overrides), event(3)]);
    expect(response.status).toBe(400);
    const problem = await problemOf(response);
    expect(problem.detail).toMatch(detail);
    if (api === "v1") expect(problem.detail).toMatch(/^invalid event: /);
    expect(server.events).toHaveLength(0);
  });
});

describe("what OpenMeter accepts that a strict reading would not", () => {
  it.each(["v1", "v3"] as const)("%s: specversion 0.3 is accepted (sdk-go CloudEventsVersionV03)", async (api) => {
    const server = await start({ api });
    expect((await post(server, [event(1, { specversion: "0.3" })])).status).toBe(api === "v1" ? 204 : 202);
    expect(server.storedEvents[0]?.specversion).toBe("0.3");
  });

  it("zone offsets up to +24:00 and minute 60 are accepted (Go time/format.go: 'some people do write offsets of 24 hours')", async () => {
    const server = await start();
    const response = await post(server, [event(1, { time: "2026-05-05T15:26:47+24:00" }), event(2, { time: "2026-05-05T15:26:47-00:60" })]);
    expect(response.status).toBe(204);
    expect(server.storedEvents.map((e) => e.time)).toEqual(["2026-05-04T15:26:47.000Z", "2026-05-05T16:26:47.000Z"]);
  });

  it("a relative dataschema is accepted: kin-openapi checks no 'uri' format and sdk-go's ParseURI drops what fails", async () => {
    const server = await start();
    expect((await post(server, [event(1, { dataschema: "schema.json" }), event(2, { dataschema: "::" })])).status).toBe(204);
  });

  it("JSON after the first value is ignored (Go json.Decoder.Decode reads one value)", async () => {
    const server = await start();
    expect((await post(server, `${JSON.stringify([event(1)])} trailing garbage`)).status).toBe(204);
    expect(server.events).toHaveLength(1);
  });

  it("v1 takes extension attributes (lower-cased names) but stores none of them (serializer.go CloudEventsKafkaPayload)", async () => {
    const server = await start();
    expect((await post(server, [event(1, { traceparent: "00-abc", Region: "eu", retries: 2, flag: true, gone: null })])).status).toBe(204);
    expect(server.events[0]).toMatchObject({ traceparent: "00-abc", Region: "eu" }); // as sent
    expect(Object.keys(server.storedEvents[0]!).sort()).toEqual(["data", "id", "ingestedAt", "source", "specversion", "storedAt", "subject", "time", "timeSeconds", "type"]);
  });

  it("v3 refuses any extension attribute (MeteringEvent additionalProperties: false), listing every one (MultiError)", async () => {
    const server = await start({ api: "v3" });
    const response = await post(server, [event(1, { traceparent: "00-abc" }), event(2, { model: "gpt-4o" })]);
    expect(response.status).toBe(400);
    const problem = await problemOf(response);
    expect(problem.invalid_parameters).toEqual([
      expect.objectContaining({ field: "[0].traceparent", rule: "additional_properties" }),
      expect.objectContaining({ field: "[1].model", rule: "additional_properties" }),
    ]);
  });
});

describe("extension attributes in v1 (sdk-go SetExtension / types.Validate)", () => {
  const refused: Array<[string, Record<string, unknown>, RegExp]> = [
    ["a name with an underscore", { trace_id: "x" }, /bad key "trace_id", CloudEvents attribute names MUST consist of/],
    ["a name that shadows a spec attribute in another case", { ID: "x" }, /bad key "ID": CloudEvents spec attribute MUST NOT be overwritten/],
    ["an object value", { meta: { a: 1 } }, /invalid CloudEvents value/],
    ["an array value", { tags: ["a"] }, /invalid CloudEvents value/],
    ["a number outside int32", { big: 2 ** 31 }, /out of range for int32/],
  ];
  it.each(refused)("refuses %s", async (_name, overrides, detail) => {
    const server = await start();
    const response = await post(server, [event(1, overrides)]);
    expect(response.status).toBe(400);
    expect((await problemOf(response)).detail).toMatch(detail);
  });
});

describe("data_base64 in v1 (sdk-go consumeData, kafkaingest serializer DataAs)", () => {
  const b64 = (text: string) => Buffer.from(text).toString("base64");

  it("base64 of JSON is accepted and stored as that JSON, metered like data", async () => {
    const { data: _drop, ...withoutData } = event(1);
    const server = await start();
    expect((await post(server, [{ ...withoutData, data_base64: b64('{"type":"input","tokens":7}') }])).status).toBe(204);
    expect(server.storedEvents[0]?.data).toEqual({ type: "input", tokens: 7 });
    expect(server.totals()).toEqual({ acme: { input: 7 } });
  });

  it("invalid base64 is 400; base64 of something that is not JSON passes decoding and fails the forward with a 500", async () => {
    const { data: _drop, ...withoutData } = event(1);
    const server = await start();
    expect((await post(server, [{ ...withoutData, data_base64: "not base64!" }])).status).toBe(400);
    const response = await post(server, [event(0, { id: "first" }), { ...withoutData, data_base64: b64("plain text") }]);
    expect(response.status).toBe(500);
    await response.body?.cancel();
    expect(server.storedEvents.map((e) => e.id)).toEqual(["first"]);
  });
});

describe("bodies and media types (ingest/httpdriver/ingest.go)", () => {
  it("[] as application/json is 400 'invalid event: no events found'", async () => {
    const server = await start();
    const response = await post(server, [], { contentType: JSON_TYPE });
    expect(response.status).toBe(400);
    expect((await problemOf(response)).detail).toBe("invalid event: no events found");
  });

  it("[] as application/cloudevents-batch+json is a 204 that ingests nothing", async () => {
    const server = await start();
    expect((await post(server, [], { contentType: BATCH })).status).toBe(204);
    expect(server.requests[0]).toMatchObject({ outcome: "accepted", eventCount: 0, accepted: 0 });
  });

  it("an invalid event as application/json gets 'no events found', the same event as cloudevents+json gets the decoder's error", async () => {
    const server = await start();
    const asJson = await post(server, event(1, { source: "my_app:prod" }), { contentType: JSON_TYPE });
    expect((await problemOf(asJson)).detail).toBe("invalid event: no events found");
    const asCloudEvent = await post(server, event(1, { source: "my_app:prod" }), { contentType: SINGLE });
    expect((await problemOf(asCloudEvent)).detail).toMatch(/^invalid event: cannot parse uri ref: my_app:prod/);
  });

  it("an empty body is 400 'value is required but missing' (kin-openapi ValidateRequestBody)", async () => {
    const server = await start();
    const response = await post(server, "");
    expect(response.status).toBe(400);
    expect((await problemOf(response)).detail).toMatch(/value is required but missing/);
  });

  it("malformed JSON and a number beyond float64 are 400 (Go json decoding)", async () => {
    const server = await start();
    const malformed = await post(server, '[{"id": "x",');
    expect(malformed.status).toBe(400);
    expect((await problemOf(malformed)).detail).toMatch(/failed to decode request body/);
    const huge = await post(server, `[${JSON.stringify(event(1)).replace('"tokens":10', '"tokens":1e400')}]`);
    expect(huge.status).toBe(400);
    expect((await problemOf(huge)).detail).toMatch(/cannot unmarshal number/);
  });

  it("v1 reports the first schema error only (MultiError off), v3 all of them", async () => {
    const bad = [event(1, { id: "" }), event(2, { subject: "" })];
    const v1 = await start();
    const v1Problem = await problemOf(await post(v1, bad));
    expect(v1Problem.detail).toMatch(/"\/0\/id"/);
    expect(v1Problem.detail).not.toMatch(/"\/1\/subject"/);
    const v3 = await start({ api: "v3" });
    const v3Problem = await problemOf(await post(v3, bad));
    expect(v3Problem.invalid_parameters).toHaveLength(2);
  });
});

describe("what OpenMeter stores (ingest/service.go, kafkaingest/serializer, sink/storage.go)", () => {
  it("time in UTC and truncated to whole seconds (ev.Time().Unix())", async () => {
    const server = await start();
    await post(server, [event(1, { time: "2026-05-05T17:26:47.999+02:00" })]);
    expect(server.events[0]?.time).toBe("2026-05-05T17:26:47.999+02:00"); // as sent
    expect(server.storedEvents[0]).toMatchObject({ time: "2026-05-05T15:26:47.000Z", timeSeconds: Date.UTC(2026, 4, 5, 15, 26, 47) / 1000 });
  });

  it("a missing or null time becomes the receive time on the server's clock", async () => {
    const { TestClock } = await import("langchain-openmeter/testing");
    const clock = new TestClock({ wall: Date.UTC(2026, 4, 5, 9, 0, 0, 250) });
    const server = await start({ clock });
    const { time: _omit, ...withoutTime } = event(1);
    await post(server, [withoutTime, event(2, { time: null })]);
    expect(server.events.map((e) => e.time)).toEqual(["2026-05-05T09:00:00.250Z", "2026-05-05T09:00:00.250Z"]);
    expect(server.storedEvents.map((e) => e.time)).toEqual(["2026-05-05T09:00:00.000Z", "2026-05-05T09:00:00.000Z"]);
  });

  it("source as Go's URL.String(): 'my app' is stored as 'my%20app', 'HTTP://X' as 'http://X'", async () => {
    const server = await start();
    await post(server, [event(1, { source: "my app" }), event(2, { source: "HTTP://Example.com/a b" })]);
    expect(server.storedEvents.map((e) => e.source)).toEqual(["my%20app", "http://Example.com/a%20b"]);
  });

  it("null optional attributes are accepted and left out of what was received; null data is stored as JSON null", async () => {
    const server = await start({ api: "v3" });
    const response = await post(server, [event(1, { data: null, datacontenttype: null, dataschema: null })]);
    expect(response.status).toBe(202);
    expect(server.events[0]).not.toHaveProperty("data");
    expect(server.events[0]).not.toHaveProperty("datacontenttype");
    // sdk-go keeps the bytes "null" as data; the serializer marshals them back to "null".
    expect(server.storedEvents[0]?.data).toBeNull();
  });
});
