/**
 * The fake's wire behaviour, inspection and fault API. OpenMeter facts cite the file they come from
 * (openmeterio/openmeter at 7e57a394 unless stated); the rest is the fake's own API.
 */
import { describe, expect, it } from "vitest";
import { startOpenMeterServer, TestClock } from "langchain-openmeter/testing";
import { BATCH, event, JSON_TYPE, post, problemOf, SINGLE, start, until } from "./testing/helpers";

describe("v1 wire behaviour", () => {
  it("POST /api/v1/events answers 204 with an empty body (ingest/httpdriver/ingest.go: EmptyResponseEncoder(StatusNoContent))", async () => {
    const server = await start();
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/api\/v1\/events$/);
    const response = await post(server, [event(1), event(2)]);
    expect(response.status).toBe(204);
    expect(await response.text()).toBe("");
    expect(server.events.map((e) => e.id)).toEqual(["run-1-input", "run-2-input"]);
    expect(server.events[0]).toEqual(event(1));
  });

  it("takes one event as cloudevents+json, and one or many as application/json (ingest.go content-type switch)", async () => {
    const server = await start();
    expect((await post(server, event(1), { contentType: SINGLE })).status).toBe(204);
    expect((await post(server, event(2), { contentType: JSON_TYPE })).status).toBe(204);
    expect((await post(server, [event(3), event(4)], { contentType: JSON_TYPE })).status).toBe(204);
    expect(server.events.map((e) => e.id)).toEqual(["run-1-input", "run-2-input", "run-3-input", "run-4-input"]);
  });

  it("answers 400 'invalid content type' to a Content-Type with a parameter (v1 compares r.Header.Get exactly)", async () => {
    const server = await start();
    const response = await post(server, [event(1)], { contentType: `${BATCH}; charset=utf-8` });
    expect(response.status).toBe(400);
    const problem = await problemOf(response);
    expect(problem).toMatchObject({ type: "about:blank", title: "Bad Request", status: 400 });
    expect(problem.detail).toBe(`invalid content type: ${BATCH}; charset=utf-8`);
    expect(server.events).toHaveLength(0);
  });

  it("answers 400 to an unknown, upper-case or missing Content-Type (kin-openapi Content.Get is case-sensitive)", async () => {
    const server = await start();
    for (const contentType of ["text/plain", "Application/JSON", null]) {
      const response = await post(server, [event(1)], { contentType });
      expect(response.status, String(contentType)).toBe(400);
      expect((await problemOf(response)).detail).toMatch(/header Content-Type has unexpected value/);
    }
    expect(server.events).toHaveLength(0);
  });

  it("answers 400 to an array as cloudevents+json and an object as cloudevents-batch+json (schema of each media type)", async () => {
    const server = await start();
    const single = await post(server, [event(1)], { contentType: SINGLE });
    expect(single.status).toBe(400);
    expect((await problemOf(single)).detail).toContain("value must be an object");
    const batch = await post(server, event(1), { contentType: BATCH });
    expect(batch.status).toBe(400);
    expect((await problemOf(batch)).detail).toContain("value must be an array");
  });

  it("answers 404 problems for other paths and 405 for other methods on the events path", async () => {
    const server = await start();
    const notFound = await post(server, [event(1)], { url: `${server.origin}/v3/openmeter/events` });
    expect(notFound.status).toBe(404);
    expect((await problemOf(notFound)).detail).toContain("/api/v1/events");
    const wrongMethod = await fetch(server.url, { method: "PUT", body: "[]" });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get("allow")).toBe("GET, POST");
    await problemOf(wrongMethod);
    expect(server.requests.map((r) => [r.method, r.status, r.outcome])).toEqual([
      ["POST", 404, "rejected"],
      ["PUT", 405, "rejected"],
    ]);
  });

  it("a 500 carries no detail (pkg/models/problem.go NewStatusProblem clears it)", async () => {
    const server = await start();
    server.failAfter(0);
    const response = await post(server, [event(1)]);
    expect(response.status).toBe(500);
    const problem = await problemOf(response);
    expect(problem).toMatchObject({ type: "about:blank", title: "Internal Server Error", status: 500 });
    expect(problem).not.toHaveProperty("detail");
  });
});

describe("v3 (Kong Konnect) wire behaviour", () => {
  it("POST /v3/openmeter/events answers 202 and ignores well-formed media-type parameters (api/v3/handlers/events/ingest.go: mime.ParseMediaType, StatusAccepted)", async () => {
    const server = await start({ api: "v3" });
    expect(server.url).toMatch(/\/v3\/openmeter\/events$/);
    expect((await post(server, [event(1)], { contentType: `${BATCH}; charset=utf-8` })).status).toBe(202);
    expect((await post(server, event(2), { contentType: `${SINGLE};v=1` })).status).toBe(202);
    expect(server.events).toHaveLength(2);
    expect((await post(server, [event(3)], { url: `${server.origin}/api/v1/events` })).status).toBe(404);
  });

  it("answers 400 to an upper-case media type, which the handler would take but kin-openapi's Content.Get does not", async () => {
    const server = await start({ api: "v3" });
    const response = await post(server, event(1), { contentType: "Application/CloudEvents+JSON" });
    expect(response.status).toBe(400);
    expect(server.events).toHaveLength(0);
  });

  it("answers 400 with invalid_parameters to a media type it does not take", async () => {
    const server = await start({ api: "v3" });
    const response = await post(server, [event(1)], { contentType: "text/plain" });
    expect(response.status).toBe(400);
    const problem = await problemOf(response);
    expect(problem).toMatchObject({ status: 400, title: "Bad Request" });
    expect(problem.invalid_parameters).toEqual([expect.objectContaining({ field: "body", source: "body" })]);
  });

  it("answers 400 to a malformed media-type parameter (mime.ParseMediaType error)", async () => {
    const server = await start({ api: "v3" });
    expect((await post(server, [event(1)], { contentType: `${BATCH}; charset` })).status).toBe(400);
    expect((await post(server, [event(1)], { contentType: `${BATCH};` })).status).toBe(202); // a trailing ';' is ignored
  });
});

describe("auth and the gateway limit (the fake's own, not OpenMeter's)", () => {
  it("answers 401 problem+json to a missing or wrong bearer token, never records the token, and accepts the right one", async () => {
    const server = await start({ apiKey: "om_secret_123" });
    const missing = await post(server, [event(1)]);
    expect(missing.status).toBe(401);
    expect(missing.headers.get("www-authenticate")).toBe("Bearer");
    expect(await problemOf(missing)).toMatchObject({ status: 401, title: "Unauthorized" });
    expect((await post(server, [event(1)], { headers: { authorization: "Bearer nope" } })).status).toBe(401);
    expect((await post(server, [event(1)], { headers: { authorization: "Basic om_secret_123" } })).status).toBe(401);
    expect(server.events).toHaveLength(0);
    expect((await post(server, [event(1)], { headers: { authorization: "Bearer om_secret_123" } })).status).toBe(204);
    expect(server.events).toHaveLength(1);
    expect(server.requests.map((r) => r.authorization)).toEqual([false, true, true, true]);
    expect(JSON.stringify(server.requests.map(({ body: _b, ...r }) => r))).not.toContain("om_secret_123");
  });

  it("answers 413 with Connection: close to a body over gatewayLimitBytes and records nothing", async () => {
    const server = await start({ gatewayLimitBytes: 2048 });
    const big = Array.from({ length: 20 }, (_, i) => event(i));
    expect(JSON.stringify(big).length).toBeGreaterThan(2048);
    const response = await post(server, big);
    expect(response.status).toBe(413);
    expect(response.headers.get("connection")).toBe("close");
    expect((await problemOf(response)).detail).toContain("gateway limit of 2048 bytes");
    expect(server.events).toHaveLength(0);
    expect((await post(server, [event(1)])).status).toBe(204);
  });

  it("has no body limit by default: a 2 MB batch of small events is taken whole", async () => {
    const server = await start();
    expect(server.gatewayLimitBytes).toBeUndefined();
    const padded = Array.from({ length: 2000 }, (_, i) => event(i, { data: { type: "input", tokens: 1, pad: "x".repeat(1000) } }));
    expect(JSON.stringify(padded).length).toBeGreaterThan(2_000_000);
    expect((await post(server, padded)).status).toBe(204);
    expect(server.events).toHaveLength(2000);
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

  it("refuses nonsense scripts and injections", async () => {
    const server = await start();
    expect(() => server.failNext(1, { status: 42 })).toThrow(/status/);
    expect(() => server.failNext(-1, { status: 503 })).toThrow(/count/);
    expect(() => server.failAfter(-1)).toThrow(/events/);
    expect(() => server.failAfter(1, { status: 1000 })).toThrow(/status/);
    expect(() => server.failAfter(1, { times: 0 })).toThrow(/times/);
  });

  it("hang: never answers, so the client's timeout fires", async () => {
    const server = await start();
    server.setMode("hang");
    await expect(post(server, [event(1)], { signal: AbortSignal.timeout(200) })).rejects.toMatchObject({ name: "TimeoutError" });
    expect(server.events).toHaveLength(0);
    expect(server.requests[0]).toMatchObject({ outcome: "hang", status: null });
    server.setMode("ok");
    expect((await post(server, [event(1)])).status).toBe(204);
  });

  it("close() ends a hanging request instead of waiting for it", async () => {
    const server = await startOpenMeterServer();
    server.setMode("hang");
    const outcome = post(server, [event(1)]).then(
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

  it("down: answers 503 to every route without consuming scripted failures", async () => {
    const server = await start({ api: "v3" });
    server.failNext(1, { status: 429 });
    server.setMode("down");
    const response = await post(server, [event(1)]);
    expect(response.status).toBe(503);
    expect(await problemOf(response)).toMatchObject({ status: 503, title: "Service Unavailable" });
    const access = await fetch(`${server.origin}/v3/openmeter/customers/01G65Z755AFWAKHE12NY0CQ9FH/entitlement-access`);
    expect(access.status).toBe(503);
    await access.body?.cancel();
    expect(server.queuedFailures).toBe(1);
    expect(server.requests.map((r) => r.outcome)).toEqual(["down", "down"]);
    expect(server.events).toHaveLength(0);
  });

  it("outage(ms) runs on the injected clock: down until the clock passes ms, then ok", async () => {
    const clock = new TestClock();
    const server = await start({ clock });
    let back = false;
    const restored = server.outage(60_000).then(() => (back = true));
    expect(server.mode).toBe("down");
    const during = await post(server, [event(1)]);
    expect(during.status).toBe(503);
    await during.body?.cancel();
    await clock.advance(59_999);
    expect(server.mode).toBe("down");
    expect(back).toBe(false);
    await clock.advance(1);
    await restored;
    expect(server.mode).toBe("ok");
    expect((await post(server, [event(1)])).status).toBe(204);
    expect(server.events).toHaveLength(1);
  });

  it("delayMs holds each answer back by that much of the injected clock", async () => {
    const clock = new TestClock();
    const server = await start({ clock, delayMs: 1000 });
    expect(server.delayMs).toBe(1000);
    let status: number | undefined;
    const answered = post(server, [event(1)]).then((r) => (status = r.status));
    await until(() => server.requests.length === 1 && server.events.length === 1);
    await clock.advance(999);
    expect(status).toBeUndefined();
    await clock.advance(1);
    await answered;
    expect(status).toBe(204);
  });
});

describe("inspection", () => {
  it("totals() sums tokens per subject and data.type through the LLM tokens meter, never counting a duplicate", async () => {
    const server = await start({ dedupe: true });
    await post(server, [
      event(1, { data: { type: "input", tokens: 100 } }),
      event(2, { id: "run-1-output", data: { type: "output", tokens: 30 } }),
      event(3, { data: { type: "input", tokens: 20 } }),
      event(4, { subject: "globex", data: { type: "output", tokens: 7 } }),
      event(5, { subject: "globex", data: { note: "no tokens" } }),
      event(6, { subject: "initech" }),
    ]);
    await post(server, [event(1, { data: { type: "input", tokens: 100 } })]); // a repeat: dropped by the sink
    expect(server.totals()).toEqual({
      acme: { input: 120, output: 30 },
      globex: { output: 7 },
      initech: { input: 10 },
    });
  });

  it("waitForEvents resolves once enough events are stored, and rejects on the clock's timeout naming the last answer", async () => {
    const clock = new TestClock();
    const server = await start({ clock });
    const waiting = server.waitForEvents(3, 5000);
    await post(server, [event(1), event(2)]);
    await post(server, [event(3)]);
    expect((await waiting).map((e) => e.id)).toEqual(["run-1-input", "run-2-input", "run-3-input"]);

    server.failNext(1, { status: 503 });
    const tooMany = server.waitForEvents(5, 200);
    const settled = tooMany.catch((e: Error) => e);
    await post(server, [event(4)]);
    await clock.advance(200);
    expect(await settled).toEqual(
      expect.objectContaining({ message: expect.stringMatching(/expected at least 5 events within 200 ms, got 3 .*last request: POST \/api\/v1\/events -> 503 \(scripted\)/) }),
    );
  });

  it("onEvents gets each batch of newly stored events with the request that carried them, until unsubscribed", async () => {
    const server = await start({ dedupe: true });
    const batches: Array<[string[], string]> = [];
    const off = server.onEvents((events, request) => batches.push([events.map((e) => e.id), request.outcome]));
    await post(server, [event(1), event(2)]);
    await post(server, [event(2)]); // only a duplicate: no call
    server.failNext(1, { status: 500 });
    await post(server, [event(3)]); // scripted: no call
    off();
    await post(server, [event(4)]);
    expect(batches).toEqual([[["run-1-input", "run-2-input"], "accepted"]]);
    expect(server.events).toHaveLength(3);
  });

  it("reset() forgets events, requests, duplicates, de-duplication state, scripts, mode and delay", async () => {
    const server = await start({ delayMs: 5, dedupe: true });
    await post(server, [event(1)]);
    await post(server, [event(1)]);
    expect(server.duplicates).toBe(1);
    server.failNext(3, { status: 503 });
    server.failAfter(0);
    server.setMode("down");
    server.delayMs = 50;
    server.reset();
    expect(server.events).toHaveLength(0);
    expect(server.requests).toHaveLength(0);
    expect(server.duplicates).toBe(0);
    expect(server.queuedFailures).toBe(0);
    expect(server.queuedForwardFailures).toBe(0);
    expect(server.mode).toBe("ok");
    expect(server.delayMs).toBe(5);
    expect((await post(server, [event(1)])).status).toBe(204); // de-duplication state is gone too
    expect(server.events).toHaveLength(1);
  });

  it("logs method, path, status, content type, body and event counts per request", async () => {
    const server = await start();
    await post(server, [event(1), event(2)], { url: `${server.url}?debug=1` });
    expect(server.requests).toEqual([
      expect.objectContaining({
        method: "POST",
        path: "/api/v1/events?debug=1",
        status: 204,
        contentType: BATCH,
        authorization: false,
        body: JSON.stringify([event(1), event(2)]),
        eventCount: 2,
        accepted: 2,
        duplicates: 0,
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
