// The endpoint is described with msw handlers, served over a real loopback socket by startMswEndpoint (msw cannot see undici's Pool).
// Time is a TestClock: time-outs, Retry-After and backoff are reached by moving it, never waited out.
import { inspect } from "node:util";
import { delay, http, HttpResponse, type HttpResponseResolver, type RequestHandler } from "msw";
import { afterEach, describe, expect, it } from "vitest";
import { IngestClient, IngestError, type IngestOptions } from "langchain-openmeter";
import { TestClock } from "langchain-openmeter/testing";
import { settleOn, turn, unaccounted, until } from "../support/clocked";
import { startMswEndpoint } from "../support/msw-endpoint";
import { bodyIds, makeEvents, recorder, startPlainServer, type SeenRequest } from "./helpers";

type Server = { url: string; requests: SeenRequest[]; close(): Promise<void> };
const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

/** Retries whose (real, p-retry) delays are a millisecond; the backoff after them is 1 ms on the test clock. */
const quickRetry = { retries: 3, minDelayMs: 1, maxDelayMs: 1 };

async function setup(
  handler: RequestHandler | Parameters<typeof startPlainServer>[0],
  options: Partial<IngestOptions> = {},
): Promise<{ server: Server; client: IngestClient; rec: ReturnType<typeof recorder>; clock: TestClock }> {
  // An msw handler, or (for socket-level facts msw cannot express) a plain node:http responder.
  const server = typeof handler === "function" ? await startPlainServer(handler) : await startMswEndpoint(handler);
  const rec = recorder();
  const clock = (options.clock as TestClock | undefined) ?? new TestClock();
  const client = new IngestClient({
    url: server.url,
    retry: quickRetry,
    flushOnExit: false,
    handleSignals: false,
    logger: rec.logger,
    onError: rec.onError,
    ...options,
    clock,
  });
  cleanup.push(
    () => server.close(),
    // A zero deadline: whatever a test left held is let go at once.
    () => settleOn(clock, client.shutdown({ timeoutMs: 0 })),
  );
  return { server, client, rec, clock };
}

/** POST …/api/v1/events, answered by `resolver`. */
const onEvents = (resolver: HttpResponseResolver) => http.post("*/api/v1/events", resolver);

const noContent = () => new HttpResponse(null, { status: 204 });
const ok = onEvents(noContent);

/** An RFC 9457 problem+json answer. */
const problemJson = (status: number, problem: Record<string, unknown>, headers: Record<string, string> = {}) =>
  HttpResponse.json(problem, { status, headers: { "content-type": "application/problem+json", ...headers } });

/** Answers the first `n` requests with `fail()`, then 204. */
const failFirst = (n: number, fail: () => Response) => {
  let seen = 0;
  return onEvents(() => (seen++ < n ? fail() : noContent()));
};

describe("request format", () => {
  it("POSTs the events as a JSON array with the exact Content-Type (no parameters) and a Bearer token", async () => {
    const { server, client } = await setup(ok, { apiKey: "om_test_key" });
    const events = makeEvents(3);
    client.enqueue(events);
    await client.flush();
    expect(server.requests).toHaveLength(1);
    const [req] = server.requests;
    expect(req!.method).toBe("POST");
    expect(req!.path).toBe("/api/v1/events");
    expect(req!.headers["content-type"]).toBe("application/cloudevents-batch+json");
    expect(req!.headers.authorization).toBe("Bearer om_test_key");
    // Exactly the events, no top-level attribute added.
    expect(JSON.parse(req!.body)).toEqual(events);
  });

  it("keeps the url's query and sends no Authorization header when there is no apiKey", async () => {
    const server = await startMswEndpoint(ok);
    const clock = new TestClock();
    const client = new IngestClient({ url: `${server.url}?tenant=a`, clock, flushOnExit: false, handleSignals: false });
    cleanup.push(() => server.close(), () => settleOn(clock, client.shutdown({ timeoutMs: 0 })));
    client.enqueue(makeEvents(1)[0]!);
    await client.flush();
    expect(server.requests).toHaveLength(1);
    expect(server.requests[0]!.path).toBe("/api/v1/events?tenant=a");
    expect(server.requests[0]!.headers.authorization).toBeUndefined();
    expect(client.stats().delivered).toBe(1);
  });

  it("reuses one keep-alive connection for consecutive batches", async () => {
    // The client's socket port is not visible to an msw handler: a plain node:http responder.
    const ports = new Set<number>();
    const { server, client } = await setup(
      (req, res) => {
        ports.add(req.socket.remotePort!);
        res.writeHead(204).end();
      },
      { maxConcurrency: 1, maxBatchSize: 2 },
    );
    client.enqueue(makeEvents(6));
    await client.flush();
    expect(server.requests.map((r) => bodyIds(r.body).length)).toEqual([2, 2, 2]);
    expect(ports.size).toBe(1);
  });

  it("sends a partial batch after flushIntervalMs on the clock, not before", async () => {
    const { server, client, clock } = await setup(ok, { flushIntervalMs: 1000, maxBatchSize: 10 });
    client.enqueue(makeEvents(3));
    await clock.advance(999);
    expect(server.requests).toHaveLength(0);
    await clock.advance(1);
    await until(() => client.stats().delivered === 3, "the partial batch to be delivered");
    expect(server.requests.map((r) => bodyIds(r.body).length)).toEqual([3]);
  });

  it("sends a full batch at once, without waiting for flushIntervalMs", async () => {
    const { server, client } = await setup(ok, { flushIntervalMs: 60_000, maxBatchSize: 2 });
    client.enqueue(makeEvents(2));
    await until(() => client.stats().delivered === 2, "the full batch to be delivered");
    expect(server.requests).toHaveLength(1);
  });
});

describe("success", () => {
  // The 200 carries an HTML body but no Content-Type (bytes, so no text/plain default either): only
  // a text/html Content-Type makes the client refuse a 2xx (test/hardening/delivery.test.ts).
  for (const [status, body] of [[204, undefined], [202, undefined], [200, "<html><body>ok from a proxy</body></html>"]] as const) {
    it(`treats ${status} as delivered`, async () => {
      const { client, rec } = await setup(onEvents(() => new HttpResponse(body === undefined ? null : new TextEncoder().encode(body), { status })));
      client.enqueue(makeEvents(2));
      await client.flush();
      expect(client.stats()).toMatchObject({ delivered: 2, batches: 1, refused: 0, retries: 0, pending: { memory: 0, disk: 0 }, state: "healthy" });
      expect(rec.errors).toEqual([]);
    });
  }
});

describe("statuses that are not retried", () => {
  const cases: Array<[number, RegExp]> = [
    [400, /rejected the batch/],
    [401, /check apiKey/],
    [403, /check apiKey/],
    [404, /check url: OpenMeter's events path ends in \/events/],
    [409, /not retried/],
    // One event cannot be split: the advice is about the event, not maxBatchSize.
    [413, /alone it is larger \(\d+ bytes\) than the endpoint accepts/],
    [415, /unsupported media type/],
    [422, /not retried/],
  ];
  for (const [status, hint] of cases) {
    it(`${status}: one request, one onError with status, detail and events, counted refused`, async () => {
      const problem = { type: "about:blank", title: "Nope", status, detail: `problem ${status}` };
      const { server, client, rec } = await setup(onEvents(() => problemJson(status, problem)));
      const events = makeEvents(1);
      client.enqueue(events);
      await client.flush();
      expect(server.requests).toHaveLength(1);
      expect(rec.errors).toHaveLength(1);
      const error = rec.errors[0]!;
      expect(error).toBeInstanceOf(IngestError);
      expect(error.kind).toBe("rejected");
      expect(error.status).toBe(status);
      expect(error.detail).toBe(`problem ${status}`);
      expect(error.events).toEqual(events);
      expect(error.message).toMatch(hint);
      expect(error.message).toContain(`problem ${status}`);
      expect(error.message).toMatch(
        status === 413
          ? `1 event not ingested: alone it is larger (${Buffer.byteLength(JSON.stringify(events[0]))} bytes) than the endpoint accepts (413); make its \`data\` smaller: problem 413`
          : /^1 event\(s\) not ingested: /,
      );
      expect(client.stats()).toMatchObject({ refused: 1, delivered: 0, retries: 0, pending: { memory: 0, disk: 0 } });
      expect(rec.warnings).toEqual([]); // reported through onError; the logger is for what onError cannot carry
    });
  }

  it("does not follow redirects: reports a url problem", async () => {
    const { server, client, rec } = await setup(
      onEvents(() => new HttpResponse(null, { status: 301, headers: { location: "https://elsewhere.example/api/v1/events" } })),
    );
    client.enqueue(makeEvents(1));
    await client.flush();
    expect(server.requests).toHaveLength(1);
    expect(rec.errors).toHaveLength(1);
    expect(rec.errors[0]!.status).toBe(301);
    expect(rec.errors[0]!.message).toMatch(/redirect to https:\/\/elsewhere\.example\/api\/v1\/events.*check url/);
  });

  it("takes a short snippet of a non-JSON body (an HTML page from a proxy)", async () => {
    const html = `<!doctype html><html><head><title>400 Bad Request</title><style>b{}</style></head><body><h1>Bad   Request</h1><p>${"x".repeat(1000)}</p></body></html>`;
    const { client, rec } = await setup(onEvents(() => HttpResponse.html(html, { status: 400 })));
    client.enqueue(makeEvents(1));
    await client.flush();
    const detail = rec.errors[0]!.detail!;
    expect(detail.startsWith("400 Bad Request: Bad Request x")).toBe(true);
    expect(detail.length).toBeLessThanOrEqual(201);
    expect(detail).not.toContain("<");
  });

  it("reads plain text and application/json bodies", async () => {
    let i = 0;
    const { client, rec } = await setup(
      onEvents(() => (i++ === 0 ? HttpResponse.text("  bad\n event  ", { status: 400 }) : HttpResponse.json({ message: "bad json" }, { status: 400 }))),
      { maxBatchSize: 1, maxConcurrency: 1 },
    );
    client.enqueue(makeEvents(2));
    await client.flush();
    expect(rec.errors.map((e) => e.detail)).toEqual(["bad event", "bad json"]);
  });

  it("413 splits the batch in halves until the parts fit; only the event too large alone is refused", async () => {
    const { server, client, rec } = await setup(
      onEvents(async ({ request }) => {
        const ids = bodyIds(await request.text());
        return ids.length > 2 || ids.some((id) => id.endsWith("-4")) ? new HttpResponse(null, { status: 413 }) : noContent();
      }),
    );
    const events = makeEvents(7);
    client.enqueue(events);
    await client.flush();
    const delivered = server.requests.filter((r) => bodyIds(r.body).length <= 2 && !bodyIds(r.body).some((id) => id.endsWith("-4")));
    expect(delivered.flatMap((r) => bodyIds(r.body)).sort()).toEqual(events.filter((_, i) => i !== 4).map((e) => e.id).sort());
    expect(rec.errors).toHaveLength(1);
    expect(rec.errors[0]!.events.map((e) => e.id)).toEqual([events[4]!.id]);
    expect(client.stats()).toMatchObject({ delivered: 6, refused: 1, retries: 0 });
  });
});

describe("statuses that are retried", () => {
  for (const status of [408, 429, 500, 502, 503, 504]) {
    it(`${status} is retried with the same events and the batch delivered`, async () => {
      const { server, client, rec } = await setup(failFirst(2, () => new HttpResponse(null, { status })));
      client.enqueue(makeEvents(2));
      await client.flush();
      expect(server.requests).toHaveLength(3);
      expect(new Set(server.requests.map((r) => r.body)).size).toBe(1); // same events, same ids
      expect(client.stats()).toMatchObject({ delivered: 2, retries: 2, refused: 0, state: "healthy" });
      expect(rec.errors).toEqual([]);
    });
  }

  it("honours Retry-After in seconds: nothing is sent before it is over, the probe goes out when it is", async () => {
    const { server, client, clock } = await setup(failFirst(1, () => new HttpResponse(null, { status: 429, headers: { "retry-after": "1" } })), {
      retry: { retries: 3, minDelayMs: 1, maxDelayMs: 5000 },
    });
    client.enqueue(makeEvents(1));
    // flush() would wait the server's Retry-After out: watch the state instead.
    void client.flush(); // sends the batch now; it would wait the Retry-After out
    await until(() => client.stats().state === "backing-off", "the Retry-After answer");
    expect(server.requests).toHaveLength(1);
    expect(client.stats()).toMatchObject({ state: "backing-off", delivered: 0, pending: { memory: 1, disk: 0 } });
    await clock.advance(999);
    expect(server.requests).toHaveLength(1);
    await clock.advance(1);
    await until(() => client.stats().delivered === 1, "the request after Retry-After");
    expect(server.requests).toHaveLength(2);
    expect(server.requests[1]!.body).toBe(server.requests[0]!.body);
    expect(client.stats()).toMatchObject({ state: "healthy", pending: { memory: 0, disk: 0 } });
  });

  it("a Retry-After is said as the server's wait, not as retries that ran out", async () => {
    const { client, rec } = await setup(failFirst(1, () => new HttpResponse(null, { status: 429, headers: { "retry-after": "120" } })), {
      retry: { retries: 3, minDelayMs: 1, maxDelayMs: 1000 },
    });
    client.enqueue(makeEvents(1));
    void client.flush(); // sends the batch now; it would wait the Retry-After out
    await until(() => client.stats().state === "backing-off", "the Retry-After answer");
    expect(client.stats()).toMatchObject({ state: "backing-off", retries: 0 });
    const said = rec.warnings.filter((w) => /answered 429/.test(w));
    expect(said).toHaveLength(1);
    expect(said[0]).not.toMatch(/retries ran out/);
    expect(said[0]).toMatch(/120 s|2 min|Retry-After/);
  });

  it("honours Retry-After as an HTTP date, read against the clock's wall time", async () => {
    const wall = Date.parse("2026-05-05T15:26:47.000Z");
    const clock = new TestClock({ wall });
    const { server, client } = await setup(
      failFirst(1, () => new HttpResponse(null, { status: 503, headers: { "retry-after": new Date(wall + 2000).toUTCString() } })),
      { clock, retry: { retries: 3, minDelayMs: 1, maxDelayMs: 5000 } },
    );
    client.enqueue(makeEvents(1));
    void client.flush(); // sends the batch now; it would wait the Retry-After out
    await until(() => client.stats().state === "backing-off", "the Retry-After answer");
    expect(server.requests).toHaveLength(1);
    await clock.advance(1999);
    expect(server.requests).toHaveLength(1);
    await clock.advance(1);
    await until(() => client.stats().delivered === 1, "the request after the Retry-After date");
    expect(server.requests).toHaveLength(2);
  });

  it("honours a Retry-After longer than retry.maxDelayMs (which bounds only the backoff)", async () => {
    const { server, client, clock } = await setup(failFirst(1, () => new HttpResponse(null, { status: 503, headers: { "retry-after": "1" } })), {
      retry: { retries: 3, minDelayMs: 1, maxDelayMs: 50 },
    });
    client.enqueue(makeEvents(1));
    void client.flush(); // sends the batch now; it would wait the Retry-After out
    await until(() => client.stats().state === "backing-off", "the Retry-After answer");
    await clock.advance(50);
    expect(server.requests).toHaveLength(1);
    await clock.advance(950);
    await until(() => client.stats().delivered === 1, "the request after Retry-After");
    expect(server.requests).toHaveLength(2);
  });

  it("after a Retry-After, no request at all goes out before the wait is over, new events included", async () => {
    const { server, client, clock } = await setup(failFirst(1, () => new HttpResponse(null, { status: 429, headers: { "retry-after": "30" } })), {
      maxBatchSize: 1,
    });
    client.enqueue(makeEvents(1));
    void client.flush(); // sends the batch now; it would wait the Retry-After out
    await until(() => client.stats().state === "backing-off", "the Retry-After answer");
    for (let i = 0; i < 5; i++) {
      client.enqueue(makeEvents(1));
      await turn();
      await clock.advance(5000);
    }
    expect(clock.now()).toBe(25_000);
    expect(server.requests).toHaveLength(1);
    await clock.advance(5000);
    await until(() => client.stats().delivered === 6, "every event after the wait");
    expect(server.requests).toHaveLength(7);
  });

  it("honours a 429 whose Retry-After is an HTTP date and whose body is problem+json, with no report", async () => {
    const wall = Date.parse("2026-05-05T15:26:47.000Z");
    const clock = new TestClock({ wall });
    const { server, client, rec } = await setup(
      failFirst(1, () =>
        problemJson(429, { type: "about:blank", title: "Too Many Requests", status: 429, detail: "rate limited" }, { "retry-after": new Date(wall + 2000).toUTCString() }),
      ),
      { clock, retry: { retries: 3, minDelayMs: 1, maxDelayMs: 50 } },
    );
    client.enqueue(makeEvents(1));
    void client.flush(); // sends the batch now; it would wait the Retry-After out
    await until(() => client.stats().state === "backing-off", "the Retry-After answer");
    await clock.advance(1999);
    expect(server.requests).toHaveLength(1);
    await clock.advance(1);
    await until(() => client.stats().delivered === 1, "the request after the Retry-After date");
    expect(server.requests).toHaveLength(2);
    expect(client.stats()).toMatchObject({ delivered: 1, refused: 0, dropped: 0 });
    expect(rec.errors).toEqual([]);
  });

  it("when retries run out: one warning with the last status and detail, the events kept, one probe per retry.maxDelayMs", async () => {
    const { server, client, rec, clock } = await setup(onEvents(() => problemJson(503, { detail: "maintenance" })), {
      retry: { retries: 3, minDelayMs: 1, maxDelayMs: 1000 },
    });
    const events = makeEvents(2);
    client.enqueue(events);
    await client.flush();
    expect(server.requests).toHaveLength(4);
    expect(client.stats()).toMatchObject({ state: "backing-off", retries: 3, delivered: 0, refused: 0, dropped: 0, pending: { memory: 2, disk: 0 } });
    expect(rec.errors).toEqual([]);
    const backingOff = rec.warnings.filter((w) => /retries ran out/.test(w));
    expect(backingOff).toHaveLength(1);
    expect(backingOff[0]).toMatch(/answered 503: maintenance; retries ran out, so one request every 1 s checks whether the endpoint is back \(events are kept in memory\)/);
    // Probes: one request each, without retries, one per maxDelayMs.
    await clock.advance(999);
    expect(server.requests).toHaveLength(4);
    await clock.advance(1);
    await until(() => server.requests.length === 5, "the first probe");
    await clock.advance(1000);
    await until(() => server.requests.length === 6, "the second probe");
    expect(client.stats().retries).toBe(3);
    expect(new Set(server.requests.map((r) => r.body)).size).toBe(1);
  });

  it("shutdown with events held only in memory during an outage: one probe before the deadline, then one `undelivered` report with the events", async () => {
    // 503 to the first 20 requests, then no answer at all: a client that probes in a loop shows it
    // in the request count instead of spinning the test forever.
    let seen = 0;
    const { server, client, rec, clock } = await setup(
      onEvents(async () => {
        if (seen++ < 20) return problemJson(503, { detail: "maintenance" });
        await delay("infinite");
        return noContent();
      }),
      { retry: { retries: 1, minDelayMs: 1, maxDelayMs: 30_000 }, shutdownTimeoutMs: 4000 },
    );
    const events = makeEvents(2);
    client.enqueue(events);
    await client.flush();
    expect(server.requests).toHaveLength(2);
    const { elapsedMs } = await settleOn(clock, client.shutdown(), { stepMs: 50 });
    expect(elapsedMs).toBeLessThanOrEqual(4000);
    expect(server.requests).toHaveLength(3);
    expect(rec.errors).toHaveLength(1);
    expect(rec.errors[0]).toMatchObject({ kind: "undelivered", events });
    expect(rec.errors[0]!.message).toMatch(/2 event\(s\) were not delivered and are lost with this process: set spoolDir/);
    expect(client.stats()).toMatchObject({ state: "closed", dropped: 2, pending: { memory: 0, disk: 0 } });
    expect(unaccounted(client.stats())).toBe(0);
    expect(() => client.enqueue(makeEvents(1))).toThrow(/shut down/);
  });

  it("retries a network error (HttpResponse.error(): the connection is reset) and then delivers", async () => {
    const { server, client, rec } = await setup(failFirst(1, () => HttpResponse.error()));
    const batch = makeEvents(2);
    client.enqueue(batch);
    await client.flush();
    expect(server.requests).toHaveLength(2);
    expect(server.requests[0]!.body).toBe(server.requests[1]!.body); // same events, same ids
    expect(client.stats()).toMatchObject({ delivered: 2, retries: 1, refused: 0 });
    expect(rec.errors).toEqual([]);
  });

  it("the warning that delivery is being retried says what failed: a reset, or the time-out (once a minute, not per retry)", async () => {
    for (const failure of ["reset", "hang"] as const) {
      let i = 0;
      const { client, rec, clock } = await setup(
        onEvents(async () => {
          i++;
          if (i === 1 && failure === "reset") return HttpResponse.error();
          if (i === 1) await delay("infinite");
          return noContent();
        }),
        { timeoutMs: 200 },
      );
      client.enqueue(makeEvents(1));
      const flushed = client.flush();
      await until(() => i === 1, "the first attempt");
      if (failure === "hang") await clock.advance(200);
      await flushed;
      expect(client.stats()).toMatchObject({ delivered: 1, retries: 1 });
      const said = rec.warnings.filter((w) => /retrying/.test(w));
      expect(said).toHaveLength(1);
      expect(said[0]).toMatch(failure === "reset" ? /ECONNRESET|socket hang up|other side closed/ : /timeoutMs \(200 ms\)/);
    }
  });

  it("a host nothing listens on: retried as an outage; the warning says ECONNREFUSED and to check url", async () => {
    const server = await startMswEndpoint(ok);
    await server.close();
    const rec = recorder();
    const clock = new TestClock();
    const client = new IngestClient({
      url: server.url,
      clock,
      retry: { retries: 2, minDelayMs: 1, maxDelayMs: 5 },
      flushOnExit: false,
      handleSignals: false,
      logger: rec.logger,
      onError: rec.onError,
    });
    client.enqueue(makeEvents(1));
    await client.flush();
    expect(client.stats()).toMatchObject({ retries: 2, state: "backing-off", pending: { memory: 1, disk: 0 } });
    expect(rec.warnings.join("\n")).toMatch(/ECONNREFUSED .*\(check url: nothing listens at that host and port\)/);
    expect(rec.errors).toEqual([]);
    await settleOn(clock, client.shutdown({ timeoutMs: 0 }));
    // Lost for good: one report with the event, and a warning besides it.
    expect(rec.errors.map((e) => e.kind)).toEqual(["undelivered"]);
    expect(rec.warnings.at(-1)).toMatch(/1 event\(s\) were not delivered and are lost with this process/);
  });

  it("times out a server that never answers at timeoutMs on the clock, and retries", async () => {
    let i = 0;
    const { server, client, clock } = await setup(
      onEvents(async () => {
        if (i++ === 0) await delay("infinite"); // hang
        return noContent();
      }),
      { timeoutMs: 200 },
    );
    client.enqueue(makeEvents(1));
    const flushed = client.flush();
    await until(() => server.requests.length === 1, "the first request");
    await clock.advance(199);
    expect(server.requests).toHaveLength(1);
    expect(client.stats()).toMatchObject({ inFlight: 1, delivered: 0, retries: 0 });
    await clock.advance(1);
    await flushed;
    expect(server.requests).toHaveLength(2);
    expect(client.stats()).toMatchObject({ delivered: 1, retries: 1 });
  });

  it("one deadline covers the answer's body too: an error body that drips is cut off at timeoutMs, and retried", async () => {
    let i = 0;
    const { server, client, clock } = await setup(
      (_req, res) => {
        if (i++ > 0) return void res.writeHead(204).end();
        res.writeHead(503, { "content-type": "text/plain" });
        res.write("Service unavail"); // ...and never ends
      },
      { timeoutMs: 300 },
    );
    client.enqueue(makeEvents(1));
    const flushed = client.flush();
    await until(() => server.requests.length === 1, "the first request");
    await clock.advance(299);
    expect(server.requests).toHaveLength(1);
    await clock.advance(1);
    await flushed;
    expect(server.requests).toHaveLength(2);
    expect(client.stats()).toMatchObject({ delivered: 1, retries: 1, refused: 0 });
  });

  it("a 2xx is the acknowledgement, and a body that drips after it is cut at timeoutMs, freeing the connection", async () => {
    const { server, client, clock } = await setup(
      (_req, res) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.write('{"accepted":'); // ...and never ends
      },
      { timeoutMs: 300, maxBatchSize: 1, maxConcurrency: 1 },
    );
    client.enqueue(makeEvents(2));
    const flushed = client.flush();
    await until(() => client.stats().delivered === 1, "the first batch to be acknowledged by its status");
    // The one connection is still reading the first body: the second batch waits for it.
    expect(server.requests).toHaveLength(1);
    await clock.advance(300);
    await flushed;
    expect(server.requests).toHaveLength(2);
    expect(client.stats()).toMatchObject({ delivered: 2, retries: 0, refused: 0 });
    await server.close(); // ends the second dripping body now
  });
});

describe("events and secrets", () => {
  it("leaves invalid events out of the batch with one report naming each reason, and sends the rest", async () => {
    const { server, client, rec } = await setup(ok);
    const [a, b, c] = makeEvents(3);
    const bad1 = { ...b!, subject: "" };
    const bad2 = { ...c!, data: { n: 10n } };
    client.enqueue([a!, bad1, bad2 as never]);
    await client.flush();
    expect(server.requests).toHaveLength(1);
    expect(bodyIds(server.requests[0]!.body)).toEqual([a!.id]);
    await until(() => rec.errors.length > 0, "the report of the invalid events");
    expect(rec.errors).toHaveLength(1);
    expect(rec.errors[0]!.kind).toBe("invalid-event");
    expect(rec.errors[0]!.events).toEqual([bad1, bad2]);
    // Each reason once, joined by "; ", nothing after the second (fewer than five: no "and more").
    expect(rec.errors[0]!.message).toMatch(/^2 invalid event\(s\) not queued: [^;]*`subject` must not be empty[^;]*; [^;]*BigInt[^;]*$/);
    expect(client.stats()).toMatchObject({ enqueued: 3, delivered: 1, refused: 2 });
  });

  it("never puts the apiKey in a message, detail, log line or error property, even when the server echoes it", async () => {
    const key = "om_sk_live_8f3a9d2c";
    let i = 0;
    const { server, client, rec } = await setup(
      onEvents(({ request }) => {
        const echo = `header was ${request.headers.get("authorization")}`;
        return i++ === 0 ? HttpResponse.text(echo, { status: 503 }) : problemJson(401, { detail: echo });
      }),
      { apiKey: key, retry: { retries: 1, minDelayMs: 1, maxDelayMs: 5 } },
    );
    client.enqueue(makeEvents(1));
    await client.flush();
    expect(server.requests).toHaveLength(2);
    expect(server.requests[0]!.headers.authorization).toBe(`Bearer ${key}`);
    expect(rec.errors).toHaveLength(1);
    expect(rec.errors[0]!.detail).toBe("header was Bearer [redacted]");
    const everything = [
      ...rec.logged,
      ...rec.errors.map((e) => inspect(e, { depth: 10, showHidden: true })),
      ...rec.errors.map((e) => JSON.stringify({ ...e, message: e.message, events: e.events })),
      JSON.stringify(client.stats()),
    ].join("\n");
    expect(everything).toContain("[redacted]");
    expect(everything).not.toContain(key);
  });
});
