import { afterEach, describe, expect, it } from "vitest";
import {
  startOpenMeterServer,
  type OpenMeterServer,
  type OpenMeterServerOptions,
} from "langchain-openmeter/testing";

const BATCH = "application/cloudevents-batch+json";
const SINGLE = "application/cloudevents+json";

const servers: OpenMeterServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function start(options?: OpenMeterServerOptions): Promise<OpenMeterServer> {
  const server = await startOpenMeterServer(options);
  servers.push(server);
  return server;
}

function event(n: number, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    specversion: "1.0",
    id: `run-${n}-input`,
    source: "langchain",
    type: "kong.llm_request",
    subject: "acme",
    time: "2026-05-05T15:26:47.000Z",
    data: { type: "input", tokens: 10, model: "gpt-4o-mini" },
    ...overrides,
  };
}

interface PostOptions {
  contentType?: string | null;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  method?: string;
  url?: string;
}

function post(server: OpenMeterServer, body: unknown, options: PostOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { ...options.headers };
  const contentType = options.contentType === undefined ? BATCH : options.contentType;
  if (contentType !== null) headers["content-type"] = contentType;
  return fetch(options.url ?? server.url, {
    method: options.method ?? "POST",
    headers,
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...(options.signal ? { signal: options.signal } : {}),
  });
}

async function problemOf(response: Response): Promise<{ type: string; title: string; status: number; detail: string; [k: string]: unknown }> {
  expect(response.headers.get("content-type")).toBe("application/problem+json");
  return (await response.json()) as { type: string; title: string; status: number; detail: string };
}

async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe("v1 wire behaviour", () => {
  it("serves POST /api/v1/events on 127.0.0.1 and answers 204 with no body", async () => {
    const server = await start();
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/api\/v1\/events$/);
    const response = await post(server, [event(1), event(2)]);
    expect(response.status).toBe(204);
    expect(await response.text()).toBe("");
    expect(server.events.map((e) => e.id)).toEqual(["run-1-input", "run-2-input"]);
    expect(server.events[0]).toEqual(event(1));
  });

  it("accepts one event as cloudevents+json and either shape as application/json", async () => {
    const server = await start();
    expect((await post(server, event(1), { contentType: SINGLE })).status).toBe(204);
    expect((await post(server, event(2), { contentType: "application/json" })).status).toBe(204);
    expect((await post(server, [event(3), event(4)], { contentType: "application/json" })).status).toBe(204);
    expect(server.events.map((e) => e.id)).toEqual(["run-1-input", "run-2-input", "run-3-input", "run-4-input"]);
  });

  it("rejects a Content-Type with a charset parameter with 400, not 415", async () => {
    const server = await start();
    const response = await post(server, [event(1)], { contentType: `${BATCH}; charset=utf-8` });
    expect(response.status).toBe(400);
    const problem = await problemOf(response);
    expect(problem).toMatchObject({ type: "about:blank", title: "Bad Request", status: 400 });
    expect(problem.detail).toContain("without parameters");
    expect(server.events).toHaveLength(0);
  });

  it("rejects other and missing content types with 400", async () => {
    const server = await start();
    for (const contentType of ["text/plain", "Application/JSON", "application/cloudevents-batch+json;v=1", null]) {
      const response = await post(server, [event(1)], { contentType });
      expect(response.status, String(contentType)).toBe(400);
      expect((await problemOf(response)).detail).toMatch(/Content-Type/);
    }
    expect(server.events).toHaveLength(0);
  });

  it("rejects an array sent as a single event and an object sent as a batch", async () => {
    const server = await start();
    const single = await post(server, [event(1)], { contentType: SINGLE });
    expect(single.status).toBe(400);
    expect((await problemOf(single)).detail).toContain("one event");
    const batch = await post(server, event(1), { contentType: BATCH });
    expect(batch.status).toBe(400);
    expect((await problemOf(batch)).detail).toContain("array");
    expect(server.events).toHaveLength(0);
  });

  it("keeps CloudEvents extension attributes but rejects invalid extension names", async () => {
    const server = await start();
    expect((await post(server, [event(1, { traceparent: "00-abc" })])).status).toBe(204);
    expect(server.events[0]).toMatchObject({ traceparent: "00-abc" });
    const bad = await post(server, [event(2, { Trace_Id: "x" })]);
    expect(bad.status).toBe(400);
    expect((await problemOf(bad)).detail).toContain("event[0].Trace_Id");
  });

  it("sets a missing or null time to the receive time", async () => {
    const server = await start();
    const before = Date.now();
    const { time: _omit, ...withoutTime } = event(1);
    expect((await post(server, [withoutTime, event(2, { time: null })])).status).toBe(204);
    const after = Date.now();
    for (const received of server.events) {
      const t = Date.parse(received.time);
      expect(t).toBeGreaterThanOrEqual(before - 1);
      expect(t).toBeLessThanOrEqual(after + 1);
    }
  });

  it("answers 404 for other paths and 405 with Allow for other methods", async () => {
    const server = await start();
    const notFound = await post(server, [event(1)], { url: `${server.origin}/v3/openmeter/events` });
    expect(notFound.status).toBe(404);
    expect((await problemOf(notFound)).detail).toContain("/api/v1/events");
    const wrongMethod = await fetch(server.url, { method: "PUT", body: "[]" });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get("allow")).toBe("POST");
    await problemOf(wrongMethod);
    expect(server.requests.map((r) => [r.method, r.status, r.outcome])).toEqual([
      ["POST", 404, "rejected"],
      ["PUT", 405, "rejected"],
    ]);
  });
});

describe("v3 wire behaviour", () => {
  it("serves POST /v3/openmeter/events, answers 202 and ignores media-type parameters", async () => {
    const server = await start({ api: "v3" });
    expect(server.url).toMatch(/\/v3\/openmeter\/events$/);
    const response = await post(server, [event(1)], { contentType: `${BATCH}; charset=utf-8` });
    expect(response.status).toBe(202);
    expect((await post(server, event(2), { contentType: "Application/CloudEvents+JSON" })).status).toBe(202);
    expect(server.events).toHaveLength(2);
    expect((await post(server, [event(3)], { url: `${server.origin}/api/v1/events` })).status).toBe(404);
  });

  it("rejects unsupported media types with a 400 problem", async () => {
    const server = await start({ api: "v3" });
    const response = await post(server, [event(1)], { contentType: "text/plain" });
    expect(response.status).toBe(400);
    const problem = await problemOf(response);
    expect(problem).toMatchObject({ status: 400, title: "Bad Request" });
    expect(problem.invalid_parameters).toEqual([expect.objectContaining({ field: "body", source: "body" })]);
  });

  it("rejects unknown top-level attributes (additionalProperties: false)", async () => {
    const server = await start({ api: "v3" });
    const response = await post(server, [event(1), event(2, { model: "gpt-4o" })]);
    expect(response.status).toBe(400);
    const problem = await problemOf(response);
    expect(problem.detail).toContain("event[1].model");
    expect(problem.invalid_parameters).toEqual([
      expect.objectContaining({ field: "[1].model", rule: "unknown_attribute", source: "body" }),
    ]);
    expect(server.events).toHaveLength(0);
  });
});

describe("event validation", () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ["missing id", { id: undefined }, "event[1].id: is required"],
    ["empty source", { source: "" }, "event[1].source: must not be empty"],
    ["numeric type", { type: 7 }, "event[1].type: must be a string"],
    ["null subject", { subject: null }, "event[1].subject: is required"],
    ["empty subject", { subject: "" }, "event[1].subject: must not be empty"],
    ["wrong specversion", { specversion: "0.2" }, "event[1].specversion"],
    ["non-RFC 3339 time", { time: "2026-05-05 15:26:47" }, "event[1].time"],
    ["impossible date", { time: "2026-02-30T00:00:00Z" }, "event[1].time"],
    ["array data", { data: [1, 2] }, "event[1].data: must be a JSON object"],
    ["string data", { data: "tokens=3" }, "event[1].data: must be a JSON object"],
    ["other datacontenttype", { datacontenttype: "text/plain" }, "event[1].datacontenttype"],
    ["relative dataschema", { dataschema: "schema.json" }, "event[1].dataschema"],
  ];

  for (const api of ["v1", "v3"] as const) {
    it.each(cases)(`${api}: one event with %s rejects the whole request`, async (_name, overrides, message) => {
      const server = await start({ api });
      const bad = JSON.parse(JSON.stringify(event(2, overrides))) as Record<string, unknown>;
      const response = await post(server, [event(1), bad, event(3)]);
      expect(response.status).toBe(400);
      const problem = await problemOf(response);
      expect(problem.detail).toContain(message);
      expect(server.events).toHaveLength(0);
      expect(server.requests[0]).toMatchObject({ status: 400, outcome: "rejected", eventCount: 3, accepted: 0 });
    });
  }

  it("rejects a non-object event, naming its index", async () => {
    const server = await start();
    const response = await post(server, [event(1), 42]);
    expect(response.status).toBe(400);
    expect((await problemOf(response)).detail).toContain("event[1]: must be a JSON object");
  });

  it("accepts null optional attributes and time offsets, and stores them without the nulls", async () => {
    const server = await start({ api: "v3" });
    const response = await post(server, [
      event(1, { data: null, datacontenttype: null, dataschema: null, time: "2026-05-05T17:26:47.5+02:00" }),
      event(2, { datacontenttype: "application/json", dataschema: "https://example.com/schema.json" }),
    ]);
    expect(response.status).toBe(202);
    expect(server.events[0]).not.toHaveProperty("data");
    expect(server.events[0]).not.toHaveProperty("datacontenttype");
    expect(server.events[0]?.time).toBe("2026-05-05T17:26:47.5+02:00");
    expect(server.events[1]?.dataschema).toBe("https://example.com/schema.json");
  });

  it("answers malformed JSON with a 400 problem", async () => {
    const server = await start();
    const response = await post(server, '[{"id": "x",');
    expect(response.status).toBe(400);
    expect((await problemOf(response)).detail).toMatch(/malformed JSON/);
    const empty = await post(server, "");
    expect(empty.status).toBe(400);
  });
});

describe("auth and limits", () => {
  it("answers 401 problem+json to a missing or wrong bearer token and accepts the right one", async () => {
    const server = await start({ apiKey: "om_secret_123" });
    const missing = await post(server, [event(1)]);
    expect(missing.status).toBe(401);
    expect(missing.headers.get("www-authenticate")).toBe("Bearer");
    expect(await problemOf(missing)).toMatchObject({ status: 401, title: "Unauthorized" });
    const wrong = await post(server, [event(1)], { headers: { authorization: "Bearer nope" } });
    expect(wrong.status).toBe(401);
    const basic = await post(server, [event(1)], { headers: { authorization: "Basic om_secret_123" } });
    expect(basic.status).toBe(401);
    expect(server.events).toHaveLength(0);
    const right = await post(server, [event(1)], { headers: { authorization: "Bearer om_secret_123" } });
    expect(right.status).toBe(204);
    expect(server.events).toHaveLength(1);
    expect(server.requests.map((r) => r.authorization)).toEqual([false, true, true, true]);
    expect(JSON.stringify(server.requests)).not.toContain("om_secret_123");
  });

  it("answers 413 to a body over maxBodyBytes and records nothing", async () => {
    const server = await start({ maxBodyBytes: 2048 });
    const big = Array.from({ length: 20 }, (_, i) => event(i));
    expect(JSON.stringify(big).length).toBeGreaterThan(2048);
    const response = await post(server, big);
    expect(response.status).toBe(413);
    expect((await problemOf(response)).detail).toContain("2048");
    expect(server.events).toHaveLength(0);
    expect((await post(server, [event(1)])).status).toBe(204);
  });

  it("defaults maxBodyBytes to 1 MiB", async () => {
    const server = await start();
    expect(server.maxBodyBytes).toBe(1024 * 1024);
  });
});

describe("de-duplication", () => {
  it("drops repeats of source + id silently and counts them (default)", async () => {
    const server = await start();
    expect((await post(server, [event(1), event(2)])).status).toBe(204);
    expect((await post(server, [event(2), event(3), event(3)])).status).toBe(204);
    expect((await post(server, [event(1, { source: "other" })])).status).toBe(204);
    expect(server.events.map((e) => `${e.source}/${e.id}`)).toEqual([
      "langchain/run-1-input",
      "langchain/run-2-input",
      "langchain/run-3-input",
      "other/run-1-input",
    ]);
    expect(server.duplicates).toBe(2);
    expect(server.requests[1]).toMatchObject({ eventCount: 3, accepted: 1, duplicates: 2, outcome: "accepted" });
  });

  it("keeps repeats when dedupe is off, still counting them", async () => {
    const server = await start({ dedupe: false });
    await post(server, [event(1)]);
    await post(server, [event(1)]);
    expect(server.events).toHaveLength(2);
    expect(server.duplicates).toBe(1);
    expect(server.totals()).toEqual({ acme: { input: 20 } });
  });
});

describe("fault injection", () => {
  it("answers scripted failures in order, records nothing from them, then recovers", async () => {
    const server = await start();
    server.failNext(2, { status: 503 });
    server.failNext(1, { status: 429, retryAfter: "1" });
    expect(server.queuedFailures).toBe(3);

    const first = await post(server, [event(1)]);
    expect(first.status).toBe(503);
    expect(await problemOf(first)).toMatchObject({ status: 503 });
    expect((await post(server, [event(1)])).status).toBe(503);
    const limited = await post(server, [event(1)]);
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("1");
    await limited.body?.cancel();
    expect(server.events).toHaveLength(0);

    expect((await post(server, [event(1)])).status).toBe(204);
    expect(server.events).toHaveLength(1);
    expect(server.duplicates).toBe(0);
    expect(server.requests.map((r) => r.outcome)).toEqual(["scripted", "scripted", "scripted", "accepted"]);
    expect(server.requests[0]?.eventCount).toBe(1);
  });

  it("can answer 200 with an HTML page, like a misbehaving proxy, without recording", async () => {
    const server = await start();
    server.failNext(1, { status: 200, body: "<html><body>Bad gateway</body></html>", contentType: "text/html" });
    const response = await post(server, [event(1)]);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/html");
    expect(await response.text()).toContain("Bad gateway");
    expect(server.events).toHaveLength(0);
  });

  it("scripts 400 and 401 with custom bodies ahead of real validation", async () => {
    const server = await start();
    server.failNext(1, { status: 400, body: { title: "Bad Request", status: 400, detail: "nope" } });
    server.failNext(1, { status: 401 });
    const bad = await post(server, [event(1)]);
    expect(bad.status).toBe(400);
    expect((await problemOf(bad)).detail).toBe("nope");
    const unauthorized = await post(server, [event(1)]);
    expect(unauthorized.status).toBe(401);
    expect(await problemOf(unauthorized)).toMatchObject({ status: 401, title: "Unauthorized" });
    expect(server.events).toHaveLength(0);
  });

  it("rejects nonsense scripts", async () => {
    const server = await start();
    expect(() => server.failNext(1, { status: 42 })).toThrow(/status/);
    expect(() => server.failNext(-1, { status: 503 })).toThrow(/count/);
  });

  it("hang: never answers, so the client's timeout fires", async () => {
    const server = await start();
    server.setMode("hang");
    await expect(post(server, [event(1)], { signal: AbortSignal.timeout(200) })).rejects.toMatchObject({
      name: "TimeoutError",
    });
    expect(server.events).toHaveLength(0);
    expect(server.requests[0]).toMatchObject({ outcome: "hang", status: null });
    server.setMode("ok");
    expect((await post(server, [event(1)])).status).toBe(204);
  });

  it("close() ends a hanging request instead of waiting for it", async () => {
    const server = await startOpenMeterServer();
    server.setMode("hang");
    const pending = post(server, [event(1)]);
    const outcome = pending.then(
      () => "answered",
      () => "failed",
    );
    await until(() => server.requests.length === 1 && server.requests[0]?.outcome === "hang");
    await server.close();
    expect(await outcome).toBe("failed");
  });

  it("reset: destroys the connection; the client sees a network error", async () => {
    const server = await start();
    server.setMode("reset");
    await expect(post(server, [event(1)])).rejects.toThrow(TypeError);
    expect(server.events).toHaveLength(0);
    expect(server.requests[0]).toMatchObject({ outcome: "reset", status: null });
    server.setMode("ok");
    expect((await post(server, [event(1)])).status).toBe(204);
  });

  it("down: answers 503 to everything without consuming scripted failures", async () => {
    const server = await start({ api: "v3" });
    server.failNext(1, { status: 429 });
    server.setMode("down");
    const response = await post(server, [event(1)]);
    expect(response.status).toBe(503);
    expect(await problemOf(response)).toMatchObject({ status: 503, title: "Service Unavailable" });
    expect(server.queuedFailures).toBe(1);
    expect(server.requests[0]?.outcome).toBe("down");
    expect(server.events).toHaveLength(0);
  });

  it("outage(ms): down for a while, then accepts again", async () => {
    const server = await start();
    const back = server.outage(100);
    expect(server.mode).toBe("down");
    const during = await post(server, [event(1)]);
    expect(during.status).toBe(503);
    await during.body?.cancel();
    await back;
    expect(server.mode).toBe("ok");
    expect((await post(server, [event(1)])).status).toBe(204);
    expect(server.events).toHaveLength(1);
  });

  it("delayMs holds each answer back (a client timeout shorter than the delay fires)", async () => {
    const server = await start({ delayMs: 1000 });
    expect(server.delayMs).toBe(1000);
    await expect(post(server, [event(1)], { signal: AbortSignal.timeout(50) })).rejects.toMatchObject({
      name: "TimeoutError",
    });
    server.delayMs = 0;
    expect((await post(server, [event(2)])).status).toBe(204);
  });
});

describe("inspection", () => {
  it("totals() sums data.tokens per subject and data.type", async () => {
    const server = await start();
    await post(server, [
      event(1, { data: { type: "input", tokens: 100 } }),
      event(2, { id: "run-1-output", data: { type: "output", tokens: 30 } }),
      event(3, { data: { type: "input", tokens: 20 } }),
      event(4, { subject: "globex", data: { type: "output", tokens: 7 } }),
      event(5, { subject: "globex", data: { note: "no tokens" } }),
      event(6, { subject: "initech" }),
    ]);
    await post(server, [event(1, { data: { type: "input", tokens: 100 } })]); // duplicate: not counted
    expect(server.totals()).toEqual({
      acme: { input: 120, output: 30 },
      globex: { output: 7 },
      initech: { input: 10 },
    });
  });

  it("waitForEvents resolves once enough events arrived, and rejects clearly on timeout", async () => {
    const server = await start();
    const waiting = server.waitForEvents(3, 5000);
    await post(server, [event(1), event(2)]);
    await post(server, [event(3)]);
    expect((await waiting).map((e) => e.id)).toEqual(["run-1-input", "run-2-input", "run-3-input"]);

    server.failNext(1, { status: 503 });
    const tooMany = server.waitForEvents(5, 200);
    await post(server, [event(4)]);
    await expect(tooMany).rejects.toThrow(
      /expected at least 5 events within 200 ms, got 3 .*last request: POST \/api\/v1\/events -> 503 \(scripted\)/,
    );
  });

  it("onEvents gets each accepted batch of new events until unsubscribed", async () => {
    const server = await start();
    const batches: string[][] = [];
    const off = server.onEvents((events, request) => {
      batches.push(events.map((e) => e.id));
      expect(request.outcome).toBe("accepted");
    });
    await post(server, [event(1), event(2)]);
    await post(server, [event(2)]); // only a duplicate: no call
    server.failNext(1, { status: 500 });
    await post(server, [event(3)]); // rejected: no call
    off();
    await post(server, [event(4)]);
    expect(batches).toEqual([["run-1-input", "run-2-input"]]);
    expect(server.events).toHaveLength(3);
  });

  it("reset() forgets events, requests, duplicates, scripts, mode and delay", async () => {
    const server = await start({ delayMs: 5 });
    await post(server, [event(1), event(1)]);
    server.failNext(3, { status: 503 });
    server.setMode("down");
    server.delayMs = 50;
    server.reset();
    expect(server.events).toHaveLength(0);
    expect(server.requests).toHaveLength(0);
    expect(server.duplicates).toBe(0);
    expect(server.queuedFailures).toBe(0);
    expect(server.mode).toBe("ok");
    expect(server.delayMs).toBe(5);
    expect((await post(server, [event(1)])).status).toBe(204); // de-duplication state is gone too
    expect(server.events).toHaveLength(1);
  });

  it("logs method, path, status, content type and event count per request", async () => {
    const server = await start();
    await post(server, [event(1), event(2)], { url: `${server.url}?debug=1` });
    expect(server.requests).toEqual([
      expect.objectContaining({
        method: "POST",
        path: "/api/v1/events?debug=1",
        status: 204,
        contentType: BATCH,
        authorization: false,
        eventCount: 2,
        accepted: 2,
        time: expect.any(Date),
      }),
    ]);
  });

  it("close() is idempotent and rejects pending waiters", async () => {
    const server = await startOpenMeterServer();
    const waiting = server.waitForEvents(1, 10_000);
    await Promise.all([server.close(), server.close()]);
    await expect(waiting).rejects.toThrow(/closed/);
    await expect(post(server, [event(1)])).rejects.toThrow();
  });
});
