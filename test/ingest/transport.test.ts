import { inspect } from "node:util";
import { http, HttpResponse } from "msw";
import { setupServer } from "msw/node";
import { afterEach, describe, expect, it } from "vitest";
import { IngestClient, IngestError } from "langchain-openmeter";
import { bodyIds, fastRetry, makeEvents, recorder, startPlainServer } from "./helpers";

// msw cannot see these requests: it patches fetch and http.request, undici's Pool opens its own
// sockets. So every request test here runs against a real node:http server on 127.0.0.1.

type Server = Awaited<ReturnType<typeof startPlainServer>>;
const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

async function setup(
  handler: Parameters<typeof startPlainServer>[0],
  options: Record<string, unknown> = {},
): Promise<{ server: Server; client: IngestClient; rec: ReturnType<typeof recorder> }> {
  const server = await startPlainServer(handler);
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

const answer = (status: number, body?: string, headers: Record<string, string> = {}) =>
  ((_req, res) => {
    res.writeHead(status, headers);
    res.end(body);
  }) as Parameters<typeof startPlainServer>[0];

/** Fails the first `n` requests with `status`, then answers 204. */
const failFirst = (n: number, status: number, headers: Record<string, string> = {}) =>
  ((_req, res, _body, i) => {
    if (i < n) res.writeHead(status, headers).end();
    else res.writeHead(204).end();
  }) as Parameters<typeof startPlainServer>[0];

describe("why a real server", () => {
  it("msw does not intercept undici's Pool, so these tests use a loopback node:http server", async () => {
    const { server, client } = await setup(answer(204));
    const mock = setupServer(http.post(server.url, () => new HttpResponse(null, { status: 418 })));
    mock.listen({ onUnhandledRequest: "bypass" });
    try {
      client.enqueue(makeEvents(1));
      await client.flush();
    } finally {
      mock.close();
    }
    expect(server.requests).toHaveLength(1);
    expect(client.stats().sent).toBe(1);
  });
});

describe("request format", () => {
  it("POSTs a JSON array with the exact Content-Type and a Bearer token", async () => {
    const { server, client } = await setup(answer(204), { apiKey: "om_test_key" });
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
    const server = await startPlainServer(answer(204));
    const client = new IngestClient({ url: `${server.url}?tenant=a`, flushOnExit: false });
    cleanup.push(() => server.close(), () => client.shutdown());
    client.enqueue(makeEvents(1)[0]!);
    await client.flush();
    expect(server.requests[0]!.path).toBe("/api/v1/events?tenant=a");
    expect(server.requests[0]!.headers.authorization).toBeUndefined();
  });

  it("reuses one keep-alive connection for consecutive batches", async () => {
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
  for (const [status, body] of [[204, undefined], [202, undefined], [200, "<html><body>ok from a proxy</body></html>"]] as const) {
    it(`treats ${status} as delivered`, async () => {
      const { client, rec } = await setup(answer(status, body));
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
      const problem = JSON.stringify({ type: "about:blank", title: "Nope", status, detail: `problem ${status}` });
      const { server, client, rec } = await setup(answer(status, problem, { "content-type": "application/problem+json" }));
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
    const { server, client, rec } = await setup(answer(301, "", { location: "https://elsewhere.example/api/v1/events" }));
    client.enqueue(makeEvents(1));
    await client.flush();
    expect(server.requests).toHaveLength(1);
    expect(rec.errors[0]!.status).toBe(301);
    expect(rec.errors[0]!.message).toMatch(/redirect to https:\/\/elsewhere\.example\/api\/v1\/events.*check url/);
  });

  it("takes a short snippet of a non-JSON body (an HTML page from a proxy)", async () => {
    const html = `<!doctype html><html><head><title>400 Bad Request</title><style>b{}</style></head><body><h1>Bad   Request</h1><p>${"x".repeat(1000)}</p></body></html>`;
    const { client, rec } = await setup(answer(400, html, { "content-type": "text/html" }));
    client.enqueue(makeEvents(1));
    await client.flush();
    const detail = rec.errors[0]!.detail!;
    expect(detail.startsWith("400 Bad Request: Bad Request x")).toBe(true);
    expect(detail.length).toBeLessThanOrEqual(201);
    expect(detail).not.toContain("<");
  });

  it("reads plain text and application/json bodies", async () => {
    const { client, rec } = await setup((_req, res, _b, i) => {
      if (i === 0) res.writeHead(400, { "content-type": "text/plain" }).end("  bad\n event  ");
      else res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ message: "bad json" }));
    }, { maxBatchSize: 1, maxConcurrency: 1 });
    client.enqueue(makeEvents(2));
    await client.flush();
    expect(rec.errors.map((e) => e.detail)).toEqual(["bad event", "bad json"]);
  });

  it("413 splits the batch in halves until the parts fit, then gives up on single events only", async () => {
    const { server, client, rec } = await setup((_req, res, body) => {
      const ids = bodyIds(body);
      if (ids.length > 2 || ids.some((id) => id.endsWith("-4"))) res.writeHead(413).end();
      else res.writeHead(204).end();
    });
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
      const { server, client, rec } = await setup(failFirst(2, status));
      client.enqueue(makeEvents(2));
      await client.flush();
      expect(server.requests).toHaveLength(3);
      expect(new Set(server.requests.map((r) => r.body)).size).toBe(1); // same events, same ids
      expect(client.stats()).toMatchObject({ sent: 2, retries: 2, failed: 0 });
      expect(rec.errors).toEqual([]);
    });
  }

  it("honours Retry-After in seconds", async () => {
    const { server, client } = await setup(failFirst(1, 429, { "retry-after": "1" }), { retry: { retries: 3, minDelayMs: 1, maxDelayMs: 5000 } });
    client.enqueue(makeEvents(1));
    await client.flush();
    expect(server.requests).toHaveLength(2);
    expect(server.requests[1]!.at - server.requests[0]!.at).toBeGreaterThanOrEqual(950);
  });

  it("honours Retry-After as an HTTP date", async () => {
    const { server, client } = await setup((_req, res, _b, i) => {
      if (i === 0) res.writeHead(503, { "retry-after": new Date(Date.now() + 2000).toUTCString() }).end();
      else res.writeHead(204).end();
    }, { retry: { retries: 3, minDelayMs: 1, maxDelayMs: 5000 } });
    client.enqueue(makeEvents(1));
    await client.flush();
    expect(server.requests).toHaveLength(2);
    // HTTP dates have whole seconds: the wait is between 1 and 2 s.
    expect(server.requests[1]!.at - server.requests[0]!.at).toBeGreaterThanOrEqual(950);
  });

  it("honours a Retry-After longer than retry.maxDelayMs (which bounds only the backoff)", async () => {
    const { server, client } = await setup(failFirst(1, 503, { "retry-after": "1" }), { retry: { retries: 3, minDelayMs: 1, maxDelayMs: 50 } });
    client.enqueue(makeEvents(1));
    await client.flush();
    expect(server.requests).toHaveLength(2);
    expect(server.requests[1]!.at - server.requests[0]!.at).toBeGreaterThanOrEqual(950);
    expect(client.stats().sent).toBe(1);
  });

  it("reports once with the last status when retries run out and there is no spool", async () => {
    const { server, client, rec } = await setup(answer(503, JSON.stringify({ detail: "maintenance" }), { "content-type": "application/problem+json" }), {
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

  it("retries network errors (connection refused)", async () => {
    const server = await startPlainServer(answer(204));
    await server.close();
    const rec = recorder();
    const client = new IngestClient({ url: server.url, retry: { retries: 2, minDelayMs: 1, maxDelayMs: 5 }, flushOnExit: false, logger: rec.logger, onError: rec.onError });
    cleanup.push(() => client.shutdown());
    client.enqueue(makeEvents(1));
    await client.flush();
    expect(rec.errors[0]!.kind).toBe("retries-exhausted");
    expect(rec.errors[0]!.message).toMatch(/ECONNREFUSED/);
    expect(client.stats().retries).toBe(2);
  });

  it("times out a server that never answers (timeoutMs), and retries", async () => {
    const { server, client, rec } = await setup((_req, res, _b, i) => {
      if (i === 0) return; // hang
      res.writeHead(204).end();
    }, { timeoutMs: 200 });
    client.enqueue(makeEvents(1));
    await client.flush();
    expect(server.requests).toHaveLength(2);
    expect(client.stats()).toMatchObject({ sent: 1, retries: 1 });
    expect(rec.warnings.join("\n")).toMatch(/timeout/i);
  });
});

describe("events and secrets", () => {
  it("leaves invalid events out of the batch with one report, and sends the rest", async () => {
    const { server, client, rec } = await setup(answer(204));
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
    const { server, client, rec } = await setup((req, res, _b, i) => {
      const echo = `header was ${req.headers.authorization}`;
      if (i === 0) res.writeHead(503, { "content-type": "text/plain" }).end(echo);
      else res.writeHead(401, { "content-type": "application/problem+json" }).end(JSON.stringify({ detail: echo }));
    }, { apiKey: key, retry: { retries: 1, minDelayMs: 1, maxDelayMs: 5 } });
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
