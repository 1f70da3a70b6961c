/**
 * Meters against OpenMeter's code (openmeterio/openmeter at 7e57a394): definitions
 * (`openmeter/meter/meter.go` `Validate`), per-event errors (`openmeter/meter/parse.go` `ParseEvent`,
 * shown by `openmeter/meterevent/adapter/event.go` `validateEvents`), and the query
 * (`openmeter/streaming/clickhouse/meter_query.go` `toSQL`/`scanRows`, `connector.go` `QueryMeter`,
 * `openmeter/meter/httphandler/query.go` and `mapping.go`, `openmeter/streaming/query_params.go`).
 */
import { describe, expect, it } from "vitest";
import { LLM_TOKENS_METER, TestClock, type MeterDefinition } from "langchain-openmeter/testing";
import { event, getJson, post, start } from "./helpers";

const tokens = (n: number, tokensValue: unknown, extra: Record<string, unknown> = {}) =>
  event(n, { id: `t-${n}`, data: { type: "input", tokens: tokensValue, model: "m", provider: "p", ...extra } });

describe("the default meter", () => {
  it("is the LLM tokens meter: kong.llm_request, SUM of $.tokens, grouped by type, model and provider", async () => {
    const server = await start();
    expect(server.meters.list().map((m) => m.definition)).toEqual([
      { slug: "llm_tokens", eventType: "kong.llm_request", aggregation: "SUM", valueProperty: "$.tokens", groupBy: { type: "$.type", model: "$.model", provider: "$.provider" } },
    ]);
    expect(LLM_TOKENS_METER.slug).toBe("llm_tokens");
  });
});

describe("what a 2xx does not meter", () => {
  it("an event of another CloudEvent type is stored but counts in no total, and the events list says no meter reads it", async () => {
    const clock = new TestClock({ wall: Date.UTC(2026, 4, 9) }); // four days after the events
    const server = await start({ clock });
    expect((await post(server, [tokens(1, 5), event(2, { id: "other", type: "llm_request" })])).status).toBe(204);
    expect(server.storedEvents).toHaveLength(2);
    expect(server.totals()).toEqual({ acme: { input: 5 } });
    // listEvents: `from` defaults to the last 72 hours, so these events need an explicit `from`.
    expect((await getJson(server, "/api/v1/events?id=other")).body).toEqual([]);
    const list = await getJson(server, "/api/v1/events?id=other&from=2026-05-01T00:00:00Z");
    expect(list.status).toBe(200);
    expect(list.body).toEqual([
      expect.objectContaining({
        event: expect.objectContaining({ id: "other", type: "llm_request" }),
        validationError: "no meter found for event type: llm_request\nno customer found for event subject: acme",
      }),
    ]);
  });

  const invalid: Array<[string, Record<string, unknown> | undefined, string]> = [
    ["a missing value property", { type: "input" }, 'invalid event: missing value property: "$.tokens"'],
    ["a null value", { type: "input", tokens: null }, "invalid event: value cannot be null"],
    ["a non-numeric string", { type: "input", tokens: "abc" }, "invalid event: value cannot be parsed as float64: abc"],
    ["a boolean", { type: "input", tokens: true }, "invalid event: unsupported value property type: bool"],
    ["an object", { type: "input", tokens: { n: 1 } }, "invalid event: unsupported value property type: map[string]interface {}"],
    ["the string Inf", { type: "input", tokens: "Inf" }, "invalid event: value cannot be infinity"],
    ["no data at all", undefined, "invalid event: null and missing value property"],
  ];
  it.each(invalid)("%s: counted as nothing, and listed as the meter's error", async (_name, data, error) => {
    const server = await start();
    const bad = event(2, { id: "bad", ...(data === undefined ? { data: undefined } : { data }) });
    expect((await post(server, [tokens(1, 5), JSON.parse(JSON.stringify(bad))])).status).toBe(204);
    expect(server.totals()).toEqual({ acme: { input: 5 } });
    expect(server.meters.errors("llm_tokens").map((e) => [e.event.id, e.error])).toEqual([["bad", error]]);
  });

  it("a numeric string counts (ParseEvent uses strconv.ParseFloat on strings)", async () => {
    const server = await start();
    await post(server, [tokens(1, "12"), tokens(2, "1e2"), tokens(3, 3)]);
    expect(server.totals()).toEqual({ acme: { input: 115 } });
    expect(server.meters.errors("llm_tokens")).toEqual([]);
  });

  it("a missing group-by key is '' (JSON_VALUE of a missing path), not a separate 'unknown'", async () => {
    const server = await start();
    await post(server, [event(1, { data: { tokens: 4 } }), tokens(2, 6)]);
    expect(server.totals()).toEqual({ acme: { "": 4, input: 6 } });
  });
});

describe("the meter query", () => {
  const day = (h: number, m = 0, s = 0) => new Date(Date.UTC(2026, 4, 5, h, m, s)).toISOString();

  async function seeded() {
    const server = await start();
    await post(server, [
      event(1, { id: "a", time: day(10, 0, 0), data: { type: "input", tokens: 100, model: "gpt-4o", provider: "openai" } }),
      event(2, { id: "b", time: day(10, 30, 30), data: { type: "output", tokens: 20, model: "gpt-4o", provider: "openai" } }),
      event(3, { id: "c", time: day(11, 15, 0), data: { type: "input", tokens: 50, model: "claude", provider: "anthropic" } }),
      event(4, { id: "d", subject: "globex", time: day(11, 59, 59), data: { type: "input", tokens: 7, model: "claude", provider: "anthropic" } }),
    ]);
    return server;
  }

  it("without groupBy, one row over everything; the window spans the minutes of the first and last event", async () => {
    const server = await seeded();
    expect(server.meters.query("llm_tokens")).toEqual({
      data: [{ value: 177, windowStart: day(10), windowEnd: day(12), subject: null, groupBy: {} }],
    });
  });

  it("from is inclusive and to exclusive in whole seconds (the SQL is time >= from AND time < to); the row spans from/to", async () => {
    const server = await seeded();
    const result = server.meters.query("llm_tokens", { from: day(10, 30, 30), to: day(11, 59, 59) });
    expect(result.data).toEqual([{ value: 70, windowStart: day(10, 30, 30), windowEnd: day(11, 59, 59), subject: null, groupBy: {} }]);
    // Sub-second bounds are cut to the second (from.Unix(), to.Unix()).
    expect(server.meters.query("llm_tokens", { from: day(10, 30, 30), to: new Date(Date.UTC(2026, 4, 5, 11, 59, 59, 999)) }).data[0]?.value).toBe(70);
  });

  it("subject filters and groups by subject; groupBy and filterGroupBy use the meter's dimensions", async () => {
    const server = await seeded();
    // Without a window the SQL has no ORDER BY: compare as a set.
    const rows = server.meters.query("llm_tokens", { subject: ["acme"], groupBy: ["model"] }).data.map((r) => [r.subject, r.groupBy.model, r.value]);
    expect(rows.sort()).toEqual([
      ["acme", "claude", 50],
      ["acme", "gpt-4o", 120],
    ]);
    expect(server.meters.query("llm_tokens", { filterGroupBy: { type: "input" } }).data[0]?.value).toBe(157);
    expect(() => server.meters.query("llm_tokens", { groupBy: ["tier"] })).toThrow("invalid group by: tier");
    expect(() => server.meters.query("llm_tokens", { from: day(10), to: day(10) })).toThrow("from and to cannot be equal");
  });

  it("windowSize HOUR gives one row per hour, ordered by window start", async () => {
    const server = await seeded();
    const rows = server.meters.query("llm_tokens", { windowSize: "HOUR" }).data;
    expect(rows.map((r) => [r.windowStart, r.windowEnd, r.value])).toEqual([
      [day(10), day(11), 120],
      [day(11), day(12), 57],
    ]);
  });

  it("is served at GET /api/v1/meters/{meterIdOrSlug}/query with the v1 parameters", async () => {
    const server = await seeded();
    const query = `/api/v1/meters/llm_tokens/query?subject=acme&groupBy=type&filterGroupBy%5Bprovider%5D=openai&from=${encodeURIComponent(day(0))}`;
    const { status, body } = await getJson(server, query);
    expect(status).toBe(200);
    // No `to`: the row ends at the minute after the group's last event; rows come in no defined order.
    const result = body as { from: string; data: unknown[] };
    expect(result.from).toBe(day(0));
    expect(result.data).toHaveLength(2);
    expect(result.data).toEqual(
      expect.arrayContaining([
        { value: 100, windowStart: day(0), windowEnd: day(10, 1), subject: "acme", groupBy: { type: "input" } },
        { value: 20, windowStart: day(0), windowEnd: day(10, 31), subject: "acme", groupBy: { type: "output" } },
      ]),
    );
    expect((await getJson(server, "/api/v1/meters/nope/query")).status).toBe(404);
    expect((await getJson(server, "/api/v1/meters/llm_tokens/query?groupBy=tier")).status).toBe(400);
    expect((await getJson(server, "/api/v1/meters/llm_tokens/query?windowSize=WEEK")).status).toBe(400);
    expect((await getJson(server, "/api/v1/meters/llm_tokens/query?from=2026-05-05t00:00:00Z")).status).toBe(400);
  });
});

describe("aggregations", () => {
  const def = (aggregation: MeterDefinition["aggregation"], valueProperty?: string): MeterDefinition => ({
    slug: `m_${aggregation.toLowerCase()}`,
    eventType: "kong.llm_request",
    aggregation,
    ...(valueProperty ? { valueProperty } : {}),
  });

  it("COUNT counts every event of the type, a bad value included; AVG, MIN, MAX skip bad values; LATEST takes the latest time", async () => {
    const server = await start({
      meters: [def("COUNT"), def("AVG", "$.tokens"), def("MIN", "$.tokens"), def("MAX", "$.tokens"), def("LATEST", "$.tokens")],
    });
    await post(server, [
      tokens(1, 10, {}),
      event(2, { id: "t-2", time: "2026-05-05T15:30:00Z", data: { tokens: 30 } }),
      event(3, { id: "t-3", time: "2026-05-05T15:00:00Z", data: { tokens: 20 } }),
      tokens(4, "x"),
    ]);
    const value = (slug: string) => server.meters.query(slug).data[0]?.value;
    expect(value("m_count")).toBe(4);
    expect(value("m_avg")).toBe(20);
    expect(value("m_min")).toBe(10);
    expect(value("m_max")).toBe(30);
    expect(value("m_latest")).toBe(30);
  });

  it("UNIQUE_COUNT counts distinct JSON_VALUE strings, where a missing property is the value ''", async () => {
    const server = await start({ meters: [def("UNIQUE_COUNT", "$.model")] });
    await post(server, [tokens(1, 1), tokens(2, 1), event(3, { id: "t-3", data: { model: "other" } }), event(4, { id: "t-4", data: { tokens: 1 } })]);
    expect(server.meters.query("m_unique_count").data[0]?.value).toBe(3); // "m", "other", ""
  });

  it("a SUM over no events is no row; a COUNT over no events without groupBy is one row of 0 (an aggregate without GROUP BY)", async () => {
    const server = await start({ meters: [LLM_TOKENS_METER, def("COUNT")] });
    expect(server.meters.query("llm_tokens").data).toEqual([]);
    expect(server.meters.query("m_count").data.map((r) => r.value)).toEqual([0]);
    expect(server.totals()).toEqual({});
  });
});

describe("definitions are validated as OpenMeter validates them", () => {
  const bad: Array<[string, Partial<MeterDefinition>, RegExp]> = [
    ["COUNT with a value property", { aggregation: "COUNT", valueProperty: "$.tokens" }, /not allowed when the aggregation is count/],
    ["SUM without a value property", { aggregation: "SUM", valueProperty: undefined }, /required when the aggregation is not count/],
    ["a value property without $", { valueProperty: "tokens" }, /must start with \$/],
    ["a group-by path without $", { groupBy: { model: "model" } }, /group by value must start with \$ for key model/],
    ["a group-by key with a dash", { groupBy: { "the-model": "$.model" } }, /only alphanumeric and underscore/],
    ["a slug with upper case", { slug: "LLM" }, /must match/],
  ];
  it.each(bad)("refuses %s", async (_name, change, message) => {
    const server = await start();
    expect(() => server.meters.add({ slug: "tokens_x", eventType: "t", aggregation: "SUM", valueProperty: "$.tokens", ...change } as MeterDefinition)).toThrow(message);
  });
});
