/**
 * Hardening: what the endpoint and the disk can do to delivery. Each test is a row of
 * docs/hardening.md. Nothing may be lost silently: every event ends up delivered, spooled, or in
 * one report through onError with the reason.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { IngestClient } from "langchain-openmeter";
import { startOpenMeterServer } from "langchain-openmeter/testing";
import { bodyIds, fastRetry, makeEvents, recorder, startPlainServer } from "../ingest/helpers";

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

function newClient(url: string, options: Record<string, unknown> = {}) {
  const rec = recorder();
  const client = new IngestClient({ url, retry: fastRetry, flushOnExit: false, logger: rec.logger, onError: rec.onError, ...options });
  cleanup.push(() => client.shutdown());
  return { client, rec };
}

async function plain(handler: Parameters<typeof startPlainServer>[0]) {
  const server = await startPlainServer(handler);
  cleanup.push(() => server.close());
  return server;
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "om-hardening-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe("answers that are not what OpenMeter sends", () => {
  it("a 200 with an HTML page (a proxy or login page): not counted as delivered; one report saying to check url", async () => {
    const server = await startOpenMeterServer();
    cleanup.push(() => server.close());
    server.failNext(1, { status: 200, body: "<html><head><title>Sign in</title></head><body>Corporate proxy login</body></html>", contentType: "text/html" });
    const { client, rec } = newClient(server.url);
    const events = makeEvents(2);
    client.enqueue(events);
    await client.flush();
    expect(server.events).toHaveLength(0);
    expect(client.stats()).toMatchObject({ sent: 0, failed: 2 });
    expect(rec.errors).toHaveLength(1);
    expect(rec.errors[0]).toMatchObject({ kind: "rejected", status: 200, events });
    expect(rec.errors[0]!.message).toMatch(/answered 200 with an HTML page, not OpenMeter: the events were not ingested; check url/);
    expect(rec.errors[0]!.detail).toMatch(/^Sign in: .*Corporate proxy login/);
  });

  it("a 2xx with a JSON or empty body: delivered", async () => {
    const server = await plain((_req, res, _b, i) => {
      if (i === 0) res.writeHead(202, { "content-type": "application/json" }).end('{"accepted":true}');
      else res.writeHead(200).end();
    });
    const { client, rec } = newClient(server.url, { maxBatchSize: 1 });
    client.enqueue(makeEvents(2));
    await client.flush();
    expect(client.stats()).toMatchObject({ sent: 2, failed: 0 });
    expect(rec.errors).toEqual([]);
  });

  it("an error whose body claims JSON but is not: the raw text becomes the detail", async () => {
    const server = await plain((_req, res) => res.writeHead(400, { "content-type": "application/problem+json" }).end("{not json at all"));
    const { client, rec } = newClient(server.url);
    client.enqueue(makeEvents(1));
    await client.flush();
    expect(rec.errors[0]).toMatchObject({ kind: "rejected", status: 400, detail: "{not json at all" });
  });

  it("an error with a binary body: reported with a bounded detail, nothing thrown", async () => {
    const server = await plain((_req, res) => res.writeHead(400, { "content-type": "application/octet-stream" }).end(Buffer.alloc(100_000, 0xff)));
    const { client, rec } = newClient(server.url);
    client.enqueue(makeEvents(1));
    await client.flush();
    expect(rec.errors[0]!.status).toBe(400);
    expect(rec.errors[0]!.detail!.length).toBeLessThanOrEqual(201);
  });
});

describe("redirects", () => {
  it("307 and 308 are not followed (the body would be re-posted to a place nobody chose): reported as a url problem", async () => {
    const server = await plain((_req, res, _b, i) =>
      res.writeHead(i === 0 ? 307 : 308, { location: "https://moved.example/api/v1/events" }).end(),
    );
    const { client, rec } = newClient(server.url, { maxBatchSize: 1 });
    client.enqueue(makeEvents(2));
    await client.flush();
    expect(server.requests).toHaveLength(2);
    expect(rec.errors.map((e) => e.status)).toEqual([307, 308]);
    for (const error of rec.errors) expect(error.message).toMatch(/redirect to https:\/\/moved\.example\/api\/v1\/events.*check url/);
  });

  it("a Location with credentials and a query, or a relative one: shown without secrets, resolved against url", async () => {
    const server = await plain((_req, res, _b, i) =>
      res.writeHead(302, { location: i === 0 ? "https://user:hunter2@other.example/events?token=hunter2" : "/v3/openmeter/events" }).end(),
    );
    const { client, rec } = newClient(server.url, { maxBatchSize: 1 });
    client.enqueue(makeEvents(2));
    await client.flush();
    expect(rec.errors[0]!.message).toMatch(/redirect to https:\/\/other\.example\/events\);/);
    expect(rec.errors[0]!.message).not.toContain("hunter2");
    expect(rec.errors[1]!.message).toContain(`redirect to ${server.origin}/v3/openmeter/events`);
  });
});

describe("connections that misbehave", () => {
  it("a server that accepts the TCP connection and never reads or answers: timed out, retried, then reported with the events", async () => {
    const sockets: Socket[] = [];
    const silent = createServer((socket) => void sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    cleanup.push(() => new Promise((resolve) => {
      for (const s of sockets) s.destroy();
      silent.close(resolve);
    }));
    const port = (silent.address() as { port: number }).port;
    const { client, rec } = newClient(`http://127.0.0.1:${port}/api/v1/events`, { timeoutMs: 150, retry: { retries: 1, minDelayMs: 1, maxDelayMs: 5 } });
    const events = makeEvents(1);
    client.enqueue(events);
    await client.flush();
    expect(rec.errors).toHaveLength(1);
    expect(rec.errors[0]).toMatchObject({ kind: "retries-exhausted", events });
    expect(rec.errors[0]!.message).toMatch(/timeout/i);
    expect(client.stats()).toMatchObject({ retries: 1, failed: 1 });
  });

  it("a 503 whose body is cut off mid-way (connection closed): retried, then delivered", async () => {
    const server = await plain((_req, res, _b, i) => {
      if (i > 0) return void res.writeHead(204).end();
      res.writeHead(503, { "content-type": "text/plain", "content-length": "5000" });
      res.write("Service temporarily unav", () => res.socket?.destroy());
    });
    const { client, rec } = newClient(server.url);
    client.enqueue(makeEvents(3));
    await client.flush();
    expect(server.requests).toHaveLength(2);
    expect(client.stats()).toMatchObject({ sent: 3, retries: 1, failed: 0 });
    expect(rec.errors).toEqual([]);
  });

  it("a 2xx whose body is cut off mid-way: the status is the acknowledgement, delivered once, not re-sent", async () => {
    const server = await plain((_req, res, _b, i) => {
      if (i > 0) return void res.writeHead(204).end();
      res.writeHead(200, { "content-type": "application/json", "content-length": "5000" });
      res.write('{"ok":', () => res.socket?.destroy());
    });
    const { client, rec } = newClient(server.url);
    client.enqueue(makeEvents(2));
    await client.flush();
    client.enqueue(makeEvents(1));
    await client.flush();
    expect(server.requests.map((r) => bodyIds(r.body).length)).toEqual([2, 1]);
    expect(client.stats()).toMatchObject({ sent: 3, retries: 0 });
    expect(rec.errors).toEqual([]);
  });
});

describe("size", () => {
  it("one event larger than the endpoint's body limit: its batch-mates are delivered, it alone is reported once, saying so", async () => {
    const server = await startOpenMeterServer({ maxBodyBytes: 4096 });
    cleanup.push(() => server.close());
    const { client, rec } = newClient(server.url);
    const [a, b, c] = makeEvents(3);
    const huge = { ...b!, data: { type: "input", tokens: 1, blob: "x".repeat(20_000) } };
    client.enqueue([a!, huge, c!]);
    await client.flush();
    expect(server.events.map((e) => e.id).sort()).toEqual([a!.id, c!.id].sort());
    expect(rec.errors).toHaveLength(1);
    expect(rec.errors[0]).toMatchObject({ kind: "rejected", status: 413, events: [huge] });
    expect(rec.errors[0]!.message).toMatch(/1 event not ingested: alone it is larger \(\d+ bytes\) than the endpoint accepts \(413\); make its `data` smaller/);
    expect(rec.errors[0]!.message).not.toMatch(/maxBatchSize/);
  });
});

describe("spool on a bad disk", () => {
  it("a spool file on a full disk (events.jsonl -> /dev/full, writes fail with ENOSPC): counted dropped, reported with the events and what to check", async () => {
    const dir = tempDir();
    const server = await plain((_req, res) => res.writeHead(503).end());
    const { client, rec } = newClient(server.url, { spoolDir: dir, retry: { retries: 0 } });
    await client.replaySpool(); // the start-up replay, before the file is swapped for /dev/full
    symlinkSync("/dev/full", join(dir, "events.jsonl"));
    const events = makeEvents(2);
    client.enqueue(events);
    await client.flush();
    expect(client.stats()).toMatchObject({ spooled: 0, dropped: 2 });
    const spoolErrors = rec.errors.filter((e) => e.kind === "spool");
    expect(spoolErrors).toHaveLength(1);
    expect(spoolErrors[0]!.events).toEqual(events);
    expect(spoolErrors[0]!.message).toMatch(/2 event\(s\) lost: could not write the spool .*ENOSPC.*check spoolDir is a writable directory with free space/);
    expect(rec.warnings.some((w) => w.includes("2 event(s) lost"))).toBe(true);
  });

  it("an unreadable spool (events.jsonl is a directory): reported, kept for later, and new events are still spooled", async () => {
    const dir = tempDir();
    mkdirSync(join(dir, "events.jsonl"));
    writeFileSync(join(dir, "events.jsonl", "inner"), "x");
    const server = await plain((_req, res) => res.writeHead(503).end());
    const { client, rec } = newClient(server.url, { spoolDir: dir, retry: { retries: 0 } });
    await client.replaySpool();
    const readErrors = rec.errors.filter((e) => e.kind === "spool" && /could not replay/.test(e.message));
    expect(readErrors.length).toBeGreaterThanOrEqual(1);
    expect(readErrors[0]!.message).toMatch(/EISDIR.*it is kept and retried later/);
    client.enqueue(makeEvents(2));
    await client.flush();
    expect(client.stats()).toMatchObject({ spooled: 2, dropped: 0 });
  });

  it("an empty (truncated to zero) spool file: replayed as nothing and removed, no warning", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "events.jsonl"), "");
    const server = await plain((_req, res) => res.writeHead(204).end());
    const { client, rec } = newClient(server.url, { spoolDir: dir });
    expect(await client.replaySpool()).toBe(0);
    expect(rec.warnings).toEqual([]);
    expect(rec.errors).toEqual([]);
  });
});
