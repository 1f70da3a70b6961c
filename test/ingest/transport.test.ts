// The endpoint is described with msw handlers, served over a real loopback socket by startMswEndpoint (msw cannot see undici's Pool).
import { inspect } from "node:util";
import { delay, http, HttpResponse, type HttpResponseResolver, type RequestHandler } from "msw";
import { afterEach, describe, expect, it } from "vitest";
import { IngestClient, IngestError } from "langchain-openmeter";
import { startMswEndpoint } from "../support/msw-endpoint";
import { bodyIds, fastRetry, makeEvents, recorder, startPlainServer, type SeenRequest } from "./helpers";

type Server = { url: string; requests: SeenRequest[]; close(): Promise<void> };
const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

async function setup(
  handler: RequestHandler | Parameters<typeof startPlainServer>[0],
  options: Record<string, unknown> = {},
): Promise<{ server: Server; client: IngestClient; rec: ReturnType<typeof recorder> }> {
  // An msw handler, or (for socket-level facts msw cannot express) a plain node:http responder.
  const server = typeof handler === "function" ? await startPlainServer(handler) : await startMswEndpoint(handler);
  const rec = recorder();
  const client = new IngestClient({
    url: server.url,
    retry: fastRetry,
    flushOnExit: false,
    logger: rec.logger,
    onError: rec.onError,
    ...options,
  });
  cleanup.push(() => server.close(), () => client.shutdown());
  return { server, client, rec };
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

/** A Retry-After HTTP date `ms` from now (whole seconds, so the wait is up to 1 s shorter). */
const retryAtDate = (ms: number) => new Date(Date.now() + ms).toUTCString();

describe("request format", () => {
  it("POSTs a JSON array with the exact Content-Type and a Bearer token", async () => {
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
    expect(JSON.parse(req!.body)).toEqual(events);
  });

  it("keeps the url's query and omits Authorization when there is no apiKey", async () => {
    const server = await startMswEndpoint(ok);
    const client = new IngestClient({ url: `${server.url}?tenant=a`, flushOnExit: false });
    cleanup.push(() => server.close(), () => client.shutdown());
    client.enqueue(makeEvents(1)[0]!);
    await client.flush();
    expect(server.requests[0]!.path).toBe("/api/v1/events?tenant=a");
    expect(server.requests[0]!.headers.authorization).toBeUndefined();
  });

  it("reuses one keep-alive connection for consecutive batches", async () => {
    // The client's socket port is not visible to an msw handler: a plain node:http responder.
    const ports = new Set<number>();
    const { server, client } = await setup((req, res) => {
      ports.add(req.socket.remotePort!);
      res.writeHead(204).end();
    }, { maxConcurrency: 1, maxBatchSize: 2 });
    client.enqueue(makeEvents(6));
    await client.flush();
    expect(server.requests).toHaveLength(3);
    expect(ports.size).toBe(1);
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
      expect(client.stats()).toMatchObject({ sent: 2, batches: 1, failed: 0, retries: 0 });
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
    it(`${status}: one request, one onError with status, detail and events`, async () => {
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
      expect(client.stats()).toMatchObject({ failed: 1, sent: 0, retries: 0 });
    });
  }

  it("does not follow redirects: reports a url problem", async () => {
    const { server, client, rec } = await setup(
      onEvents(() => new HttpResponse(null, { status: 301, headers: { location: "https://elsewhere.example/api/v1/events" } })),
    );
    client.enqueue(makeEvents(1));
    await client.flush();
    expect(server.requests).toHaveLength(1);
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

  it("413 splits the batch in halves until the parts fit, then gives up on single events only", async () => {
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
    expect(client.stats()).toMatchObject({ sent: 6, failed: 1 });
  });
});

describe("statuses that are retried", () => {
  for (const status of [408, 429, 500, 502, 503, 504]) {
    it(`${status} is retried and the batch delivered`, async () => {
      const { server, client, rec } = await setup(failFirst(2, () => new HttpResponse(null, { status })));
      client.enqueue(makeEvents(2));
      await client.flush();
      expect(server.requests).toHaveLength(3);
      expect(new Set(server.requests.map((r) => r.body)).size).toBe(1); // same events, same ids
      expect(client.stats()).toMatchObject({ sent: 2, retries: 2, failed: 0 });
      expect(rec.errors).toEqual([]);
    });
  }

  it("honours Retry-After in seconds", async () => {
    const { server, client } = await setup(failFirst(1, () => new HttpResponse(null, { status: 429, headers: { "retry-after": "1" } })), {
      retry: { retries: 3, minDelayMs: 1, maxDelayMs: 5000 },
    });
    client.enqueue(makeEvents(1));
    await client.flush();
    expect(server.requests).toHaveLength(2);
    expect(server.requests[1]!.at - server.requests[0]!.at).toBeGreaterThanOrEqual(950);
  });

  it("honours Retry-After as an HTTP date", async () => {
    const { server, client } = await setup(failFirst(1, () => new HttpResponse(null, { status: 503, headers: { "retry-after": retryAtDate(2000) } })), {
      retry: { retries: 3, minDelayMs: 1, maxDelayMs: 5000 },
    });
    client.enqueue(makeEvents(1));
    await client.flush();
    expect(server.requests).toHaveLength(2);
    // HTTP dates have whole seconds: the wait is between 1 and 2 s.
    expect(server.requests[1]!.at - server.requests[0]!.at).toBeGreaterThanOrEqual(950);
  });

  it("honours a Retry-After longer than retry.maxDelayMs (which bounds only the backoff)", async () => {
    const { server, client } = await setup(failFirst(1, () => new HttpResponse(null, { status: 503, headers: { "retry-after": "1" } })), {
      retry: { retries: 3, minDelayMs: 1, maxDelayMs: 50 },
    });
    client.enqueue(makeEvents(1));
    await client.flush();
    expect(server.requests).toHaveLength(2);
    expect(server.requests[1]!.at - server.requests[0]!.at).toBeGreaterThanOrEqual(950);
    expect(client.stats().sent).toBe(1);
  });

  it("honours a 429 whose Retry-After is an HTTP date and whose body is problem+json, with no report", async () => {
    const { server, client, rec } = await setup(
      failFirst(1, () => problemJson(429, { type: "about:blank", title: "Too Many Requests", status: 429, detail: "rate limited" }, { "retry-after": retryAtDate(2000) })),
      { retry: { retries: 3, minDelayMs: 1, maxDelayMs: 50 } },
    );
    client.enqueue(makeEvents(1));
    await client.flush();
    expect(server.requests).toHaveLength(2);
    // HTTP dates have whole seconds: the wait is between 1 and 2 s, far above maxDelayMs.
    expect(server.requests[1]!.at - server.requests[0]!.at).toBeGreaterThanOrEqual(950);
    expect(client.stats()).toMatchObject({ sent: 1, retries: 1, failed: 0 });
    expect(rec.errors).toEqual([]);
  });

  it("reports once with the last status when retries run out and there is no spool", async () => {
    const { server, client, rec } = await setup(onEvents(() => problemJson(503, { detail: "maintenance" })), {
      retry: { retries: 3, minDelayMs: 1, maxDelayMs: 5 },
    });
    const events = makeEvents(2);
    client.enqueue(events);
    await client.flush();
    expect(server.requests).toHaveLength(4);
    expect(rec.errors).toHaveLength(1);
    expect(rec.errors[0]).toMatchObject({ kind: "retries-exhausted", status: 503, detail: "maintenance", events });
    expect(rec.errors[0]!.message).toMatch(/after 3 retries.*set spoolDir/);
    expect(client.stats()).toMatchObject({ failed: 2, retries: 3, sent: 0 });
  });

  it("retries a network error (HttpResponse.error(): the connection is reset) and then delivers", async () => {
    const { server, client, rec } = await setup(failFirst(1, () => HttpResponse.error()));
    const batch = makeEvents(2);
    client.enqueue(batch);
    await client.flush();
    expect(server.requests).toHaveLength(2);
    expect(server.requests[0]!.body).toBe(server.requests[1]!.body); // same events, same ids
    expect(client.stats()).toMatchObject({ sent: 2, retries: 1, failed: 0 });
    expect(rec.errors).toEqual([]);
    expect(rec.warnings.join("\n")).toMatch(/network error sending to .*ECONNRESET/);
  });

  it("retries network errors (connection refused)", async () => {
    const server = await startMswEndpoint(ok);
    await server.close();
    const rec = recorder();
    const client = new IngestClient({ url: server.url, retry: { retries: 2, minDelayMs: 1, maxDelayMs: 5 }, flushOnExit: false, logger: rec.logger, onError: rec.onError });
    cleanup.push(() => client.shutdown());
    client.enqueue(makeEvents(1));
    await client.flush();
    expect(rec.errors[0]!.kind).toBe("retries-exhausted");
    expect(rec.errors[0]!.message).toMatch(/ECONNREFUSED .*\(check url: nothing listens at that host and port\)/);
    expect(client.stats().retries).toBe(2);
    // Lost for good: besides onError, a warning follows the earlier "retrying (events are kept)".
    expect(rec.warnings.at(-1)).toMatch(/1 event\(s\) not delivered after 2 retries/);
  });

  it("times out a server that never answers (timeoutMs), and retries", async () => {
    let i = 0;
    const { server, client, rec } = await setup(
      onEvents(async () => {
        if (i++ === 0) await delay("infinite"); // hang
        return noContent();
      }),
      { timeoutMs: 200 },
    );
    client.enqueue(makeEvents(1));
    await client.flush();
    expect(server.requests).toHaveLength(2);
    expect(client.stats()).toMatchObject({ sent: 1, retries: 1 });
    expect(rec.warnings.join("\n")).toMatch(/timeout/i);
  });
});

describe("events and secrets", () => {
  it("leaves invalid events out of the batch with one report, and sends the rest", async () => {
    const { server, client, rec } = await setup(ok);
    const [a, b, c] = makeEvents(3);
    const bad1 = { ...b!, subject: "" };
    const bad2 = { ...c!, data: { n: 10n } };
    client.enqueue([a!, bad1, bad2 as never]);
    await client.flush();
    expect(bodyIds(server.requests[0]!.body)).toEqual([a!.id]);
    expect(rec.errors).toHaveLength(1);
    expect(rec.errors[0]!.kind).toBe("invalid-event");
    expect(rec.errors[0]!.events).toEqual([bad1, bad2]);
    expect(rec.errors[0]!.message).toMatch(/`subject` must not be empty.*not JSON-serializable/);
    expect(client.stats()).toMatchObject({ sent: 1, failed: 2 });
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
