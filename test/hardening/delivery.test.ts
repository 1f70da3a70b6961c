/**
 * Hardening: what the endpoint and the disk can do to delivery. Each test is a row of
 * docs/hardening.md. Nothing may be lost silently: every event ends up delivered, waiting (in
 * memory or on disk), or in a report through onError with the events and the reason; and the
 * counts add up: enqueued + recovered = delivered + refused + dropped + handedOver + pending.
 * Time is a TestClock: time-outs, backoff and shutdown deadlines are reached by moving it.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { IngestClient, type IngestOptions } from "langchain-openmeter";
import { startOpenMeterServer, TestClock } from "langchain-openmeter/testing";
import { encodeRecords } from "../../src/ingest/disk-log/records";
import { settleOn, unaccounted, until } from "../support/clocked";
import { bodyIds, makeEvents, recorder, startPlainServer } from "../ingest/helpers";

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

/** Retries whose real delays are a millisecond; after them, one probe per second on the test clock. */
const quickRetry = { retries: 2, minDelayMs: 1, maxDelayMs: 1000 };

function newClient(url: string, options: Partial<IngestOptions> = {}) {
  const rec = recorder();
  const clock = (options.clock as TestClock | undefined) ?? new TestClock();
  const client = new IngestClient({
    url,
    retry: quickRetry,
    flushOnExit: false,
    handleSignals: false,
    logger: rec.logger,
    onError: rec.onError,
    ...options,
    clock,
  });
  cleanup.push(() => settleOn(clock, client.shutdown({ timeoutMs: 0 })));
  return { client, rec, clock };
}

async function plain(handler: Parameters<typeof startPlainServer>[0]) {
  const server = await startPlainServer(handler);
  cleanup.push(() => server.close());
  return server;
}

/** An endpoint that answers `status()` (503 until told otherwise) and records the ids it acknowledged. */
async function switchable() {
  const state = { status: 503, acknowledged: [] as string[] };
  const server = await plain((_req, res, body) => {
    if (state.status < 300) state.acknowledged.push(...bodyIds(body));
    res.writeHead(state.status).end();
  });
  return Object.assign(server, { state });
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "om-hardening-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Segment files (`*.log`) anywhere below a spool directory. */
function segments(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).filter((name) => name.endsWith(".log")).map((name) => join(dir, name));
}

/** This client's owner directory: the one directory in a fresh spoolDir. */
function ownerDir(dir: string): string {
  const owners = readdirSync(dir).filter((name) => /^[0-9a-z]{9}-[0-9a-f]{12}$/.test(name));
  expect(owners).toHaveLength(1);
  return join(dir, owners[0]!);
}

/** An owner directory as a process that ended (or died) leaves it: segments, and a lock unless released. */
function leftBehind(dir: string, segmentsText: string[], lockAgeMs?: number): string {
  const owner = join(dir, "000000001-0123456789ab");
  mkdirSync(owner, { recursive: true });
  segmentsText.forEach((text, i) => writeFileSync(join(owner, `${String(i + 1).padStart(8, "0")}.log`), text));
  if (lockAgeMs !== undefined) {
    const lock = join(owner, "owner.lock");
    writeFileSync(lock, "{}\n");
    const at = new Date(Date.now() - lockAgeMs);
    utimesSync(lock, at, at);
  }
  return owner;
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
    expect(client.stats()).toMatchObject({ delivered: 0, refused: 2 });
    expect(rec.errors).toHaveLength(1);
    expect(rec.errors[0]).toMatchObject({ kind: "rejected", status: 200, events });
    expect(rec.errors[0]!.message).toMatch(/answered 200 with an HTML page, not OpenMeter: the events were not ingested; check url/);
    expect(rec.errors[0]!.detail).toMatch(/^Sign in: .*Corporate proxy login/);
  });

  it("a 200 with an HTML page, with a spool: the events wait on disk for a corrected url, reported once", async () => {
    const server = await startOpenMeterServer();
    cleanup.push(() => server.close());
    server.failNext(5, { status: 200, body: "<html><title>Sign in</title></html>", contentType: "text/html" });
    const { client, rec } = newClient(server.url, { spoolDir: tempDir() });
    client.enqueue(makeEvents(2));
    await client.flush();
    expect(client.stats()).toMatchObject({ state: "misconfigured", delivered: 0, refused: 0, pending: { memory: 0, disk: 2 } });
    expect(rec.errors.map((e) => [e.kind, e.status])).toEqual([["rejected", 200]]);
  });

  it("a 2xx with a JSON or empty body: delivered", async () => {
    const server = await plain((_req, res, _b, i) => {
      if (i === 0) res.writeHead(202, { "content-type": "application/json" }).end('{"accepted":true}');
      else res.writeHead(200).end();
    });
    const { client, rec } = newClient(server.url, { maxBatchSize: 1 });
    client.enqueue(makeEvents(2));
    await client.flush();
    expect(server.requests).toHaveLength(2);
    expect(client.stats()).toMatchObject({ delivered: 2, refused: 0 });
    expect(rec.errors).toEqual([]);
  });

  it("an error whose body claims JSON but is not: the raw text becomes the detail", async () => {
    const server = await plain((_req, res) => res.writeHead(400, { "content-type": "application/problem+json" }).end("{not json at all"));
    const { client, rec } = newClient(server.url);
    client.enqueue(makeEvents(1));
    await client.flush();
    expect(rec.errors).toHaveLength(1);
    expect(rec.errors[0]).toMatchObject({ kind: "rejected", status: 400, detail: "{not json at all" });
  });

  it("an error with a binary body: reported with a bounded detail, nothing thrown", async () => {
    const server = await plain((_req, res) => res.writeHead(400, { "content-type": "application/octet-stream" }).end(Buffer.alloc(100_000, 0xff)));
    const { client, rec } = newClient(server.url);
    client.enqueue(makeEvents(1));
    await client.flush();
    expect(rec.errors).toHaveLength(1);
    expect(rec.errors[0]!.status).toBe(400);
    expect(rec.errors[0]!.detail!.length).toBeLessThanOrEqual(201);
  });
});

describe("redirects", () => {
  it("307 and 308 are not followed (the body would be re-posted to a place nobody chose): reported as a url problem", async () => {
    const server = await plain((_req, res, _b, i) => res.writeHead(i === 0 ? 307 : 308, { location: "https://moved.example/api/v1/events" }).end());
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
    const { client, rec } = newClient(server.url, { maxBatchSize: 1, maxConcurrency: 1 });
    client.enqueue(makeEvents(2));
    await client.flush();
    expect(rec.errors).toHaveLength(2);
    expect(rec.errors[0]!.message).toMatch(/redirect to https:\/\/other\.example\/events\);/);
    expect(rec.errors[0]!.message).not.toContain("hunter2");
    expect(rec.errors[1]!.message).toContain(`redirect to ${server.origin}/v3/openmeter/events`);
  });
});

describe("connections that misbehave", () => {
  it("a server that accepts the TCP connection and never answers: timed out at timeoutMs on the clock, retried, then kept and reported at shutdown with the events", async () => {
    // Counted by the connections that carried a request: the pool may open a spare one.
    const sockets: Socket[] = [];
    const asked = new Set<Socket>();
    const silent = createServer((socket) => {
      sockets.push(socket);
      socket.on("data", () => asked.add(socket));
    });
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    cleanup.push(
      () =>
        new Promise((resolve) => {
          for (const s of sockets) s.destroy();
          silent.close(resolve);
        }),
    );
    const port = (silent.address() as { port: number }).port;
    // A bare TCP server is no HTTP server the clock can see receive the request: its requests do not hold the clock.
    const { client, rec, clock } = newClient(`http://127.0.0.1:${port}/api/v1/events`, {
      timeoutMs: 150,
      retry: { retries: 1, minDelayMs: 1, maxDelayMs: 60_000 },
      clock: new TestClock({ ioWaitMs: 0 }),
    });
    const events = makeEvents(1);
    client.enqueue(events);
    const flushed = client.flush();
    await until(() => asked.size === 1, "the first request");
    await clock.advance(150);
    await until(() => asked.size === 2, "the retry");
    await clock.advance(150);
    await flushed;
    expect(client.stats()).toMatchObject({ retries: 1, state: "backing-off", pending: { memory: 1, disk: 0 } });
    expect(rec.warnings.join("\n")).toMatch(/did not answer within timeoutMs \(150 ms\)/);
    await settleOn(clock, client.shutdown({ timeoutMs: 0 }));
    expect(rec.errors).toHaveLength(1);
    expect(rec.errors[0]).toMatchObject({ kind: "undelivered", events });
    expect(client.stats()).toMatchObject({ dropped: 1, pending: { memory: 0, disk: 0 } });
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
    expect(client.stats()).toMatchObject({ delivered: 3, retries: 1, refused: 0 });
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
    expect(client.stats()).toMatchObject({ delivered: 3, retries: 0 });
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

describe("the spool directory", () => {
  it("that cannot be made (a file in the way, a path under a file): refused at construction with an error naming it", () => {
    const dir = tempDir();
    const file = join(dir, "not-a-dir");
    writeFileSync(file, "x");
    for (const spoolDir of [file, join(file, "spool")]) {
      let error: Error | undefined;
      try {
        new IngestClient({ url: "http://127.0.0.1:1/api/v1/events", spoolDir, flushOnExit: false, handleSignals: false, logger: { warn() {}, error() {} } });
      } catch (thrown) {
        error = thrown as Error;
      }
      expect(error?.name).toBe("SpoolDirError");
      expect(error?.message).toContain(`spoolDir ${spoolDir} cannot be used`);
      expect(error?.message).toMatch(/give a directory this process can create and write/);
    }
  });

  it("at maxSpoolBytes during an outage: events are held in memory up to maxQueueSize, the rest reported `spool-full` with the events", async () => {
    const server = await switchable();
    const dir = tempDir();
    const { client, rec, clock } = newClient(server.url, { spoolDir: dir, maxSpoolBytes: 65_536, maxQueueSize: 10, retry: { retries: 0, minDelayMs: 1, maxDelayMs: 1000 } });
    client.enqueue(makeEvents(1));
    await client.flush(); // the endpoint is down: the client backs off, and limits apply
    const events = makeEvents(600);
    for (const event of events) client.enqueue(event);
    await until(() => rec.errors.length > 0, "the spool-full report");
    const stats = client.stats();
    expect(stats.pending.memory).toBe(10);
    expect(stats.pending.disk).toBeGreaterThan(200);
    expect(stats.dropped).toBe(601 - 10 - stats.pending.disk);
    expect(unaccounted(stats)).toBe(0);
    expect(rec.errors.every((e) => e.kind === "spool-full")).toBe(true);
    const reported = rec.errors.flatMap((e) => e.events.map((x) => x.id));
    expect(reported).toHaveLength(stats.dropped);
    expect(rec.errors[0]!.message).toMatch(/reached maxSpoolBytes \(65536 bytes\).*in-memory queue is full too \(maxQueueSize 10\)/);
    // What was held is delivered once the endpoint is back; what was reported is not sent.
    server.state.status = 204;
    await clock.advance(1000);
    await settleOn(clock, client.flush());
    expect(client.stats()).toMatchObject({ delivered: 601 - stats.dropped, pending: { memory: 0, disk: 0 } });
    expect(new Set(server.state.acknowledged).size).toBe(601 - stats.dropped);
    for (const id of reported) expect(server.state.acknowledged).not.toContain(id);
  });

  it("that cannot be written (the next segment's name is taken): events are held in memory with one warning, then on disk again; beyond memory, reported `spool-write`", async () => {
    const server = await switchable();
    const dir = tempDir();
    const { client, rec, clock } = newClient(server.url, { spoolDir: dir, maxQueueSize: 2, retry: { retries: 0, minDelayMs: 1, maxDelayMs: 1000 } });
    client.enqueue(makeEvents(1));
    await client.flush(); // one segment on disk; the client backs off
    const owner = ownerDir(dir);
    expect(segments(dir)).toEqual([join(owner, "00000001.log")]);
    for (const seq of [2, 3, 4]) mkdirSync(join(owner, `0000000${seq}.log`));
    const [a, b, c, d] = makeEvents(4);
    // Each flush starts a new segment for what follows: three appends meet a taken name.
    for (const event of [a!, b!, c!, d!]) {
      client.enqueue(event);
      await client.flush();
    }
    await until(() => rec.errors.length > 0, "the spool-write report");
    expect(rec.errors.map((e) => [e.kind, e.events.map((x) => x.id)])).toEqual([["spool-write", [c!.id]]]);
    expect(rec.warnings.filter((w) => /could not write the spool in .*: events are held in memory until it works again/.test(w))).toHaveLength(1);
    expect(rec.warnings.filter((w) => /can be written again/.test(w))).toHaveLength(1);
    expect(client.stats()).toMatchObject({ dropped: 1, pending: { memory: 2, disk: 2 } });
    expect(unaccounted(client.stats())).toBe(0);
    server.state.status = 204;
    await clock.advance(1000);
    await settleOn(clock, client.flush());
    expect(client.stats()).toMatchObject({ delivered: 4, dropped: 1, pending: { memory: 0, disk: 0 } });
    expect(server.state.acknowledged).not.toContain(c!.id);
  });

  it("removed while running (a tmp cleaner): the events the client still holds are delivered or reported, never said to be another process's", async () => {
    const server = await switchable();
    const dir = tempDir();
    const { client, rec, clock } = newClient(server.url, { spoolDir: dir, retry: { retries: 0, minDelayMs: 1, maxDelayMs: 10_000 } });
    const held = makeEvents(5);
    client.enqueue(held);
    await client.flush();
    expect(client.stats().pending).toEqual({ memory: 0, disk: 5 });
    rmSync(dir, { recursive: true, force: true });
    await clock.advance(2000); // the lease's renewal finds the directory gone
    const later = makeEvents(2);
    client.enqueue(later);
    server.state.status = 204;
    await clock.advance(10_000);
    await settleOn(clock, client.flush());
    await until(() => client.stats().pending.disk === 0, "the later events to be delivered");
    const accounted = new Set([...server.state.acknowledged, ...rec.errors.flatMap((e) => e.events.map((x) => x.id))]);
    for (const event of [...held, ...later]) expect(accounted).toContain(event.id);
    expect(client.stats().handedOver).toBe(0);
    expect(unaccounted(client.stats())).toBe(0);
  });
});

describe("the write-ahead log", () => {
  it("an event is on disk when enqueue returns; an invalid one is refused there and never written", async () => {
    const server = await switchable();
    const dir = tempDir();
    const { client, rec } = newClient(server.url, { spoolDir: dir });
    const [good, other] = makeEvents(2);
    const bad = { ...other!, subject: "" };
    client.enqueue([good!, bad]);
    const lines = segments(dir).flatMap((file) => readFileSync(file, "utf8").split("\n").filter(Boolean));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`"id":"${good!.id}"`);
    await until(() => rec.errors.length > 0, "the invalid-event report");
    expect(rec.errors.map((e) => [e.kind, e.events])).toEqual([["invalid-event", [bad]]]);
    expect(client.stats()).toMatchObject({ enqueued: 2, refused: 1, pending: { memory: 0, disk: 1 } });
  });

  it("segments left by a process that ended are delivered by the next client, and deleted once acknowledged", async () => {
    const dir = tempDir();
    const events = makeEvents(3);
    leftBehind(dir, [encodeRecords(events.map((e) => JSON.stringify(e)))]);
    const server = await switchable();
    server.state.status = 204;
    const { client, rec } = newClient(server.url, { spoolDir: dir });
    await client.flush();
    expect(server.state.acknowledged).toEqual(events.map((e) => e.id));
    expect(client.stats()).toMatchObject({ recovered: 3, delivered: 3, pending: { memory: 0, disk: 0 } });
    expect(unaccounted(client.stats())).toBe(0);
    expect(rec.errors).toEqual([]);
    await until(() => segments(dir).length === 0, "the delivered segment to be deleted");
  });

  it("a dead process's segments (its lock not renewed for spoolLeaseMs) are taken over, with bytes intact (UTF-8 subjects)", async () => {
    const dir = tempDir();
    const events = makeEvents(2).map((e, i) => ({ ...e, subject: i === 0 ? "café ☕" : "東京-株式会社" }));
    leftBehind(dir, [encodeRecords(events.map((e) => JSON.stringify(e)))], 60_000);
    const received: unknown[] = [];
    const echo = await plain((_req, res, body) => {
      received.push(...(JSON.parse(body) as unknown[]));
      res.writeHead(204).end();
    });
    const { client, clock } = newClient(echo.url, { spoolDir: dir });
    await settleOn(clock, client.flush());
    expect(received).toEqual(events);
    expect(client.stats()).toMatchObject({ recovered: 2, delivered: 2 });
  });

  it("a live owner's segments are left alone: two clients on one spoolDir (named relative and absolute) deliver each event once, through an outage", async () => {
    const server = await switchable();
    const dir = tempDir();
    const clock = new TestClock();
    const a = newClient(server.url, { spoolDir: dir, clock, retry: { retries: 0, minDelayMs: 1, maxDelayMs: 1000 } });
    const b = newClient(server.url, { spoolDir: relative(process.cwd(), dir), clock, retry: { retries: 0, minDelayMs: 1, maxDelayMs: 1000 } });
    const fromA = makeEvents(5);
    const fromB = makeEvents(5);
    a.client.enqueue(fromA);
    b.client.enqueue(fromB);
    await Promise.all([a.client.flush(), b.client.flush()]);
    // Three leases long: both renew their locks, each looks for dead owners and finds none.
    await clock.advance(30_000);
    server.state.status = 204;
    await settleOn(clock, Promise.all([a.client.flush(), b.client.flush()]));
    await clock.advance(1000);
    await settleOn(clock, Promise.all([a.client.flush(), b.client.flush()]));
    expect([...server.state.acknowledged].sort()).toEqual([...fromA, ...fromB].map((e) => e.id).sort());
    expect(a.client.stats()).toMatchObject({ recovered: 0, delivered: 5, handedOver: 0 });
    expect(b.client.stats()).toMatchObject({ recovered: 0, delivered: 5, handedOver: 0 });
  });

  it("a client whose lease lapsed (its event loop was blocked): the taker delivers each event once, and the first client's counts still add up", async () => {
    const server = await switchable();
    const dir = tempDir();
    const wall = Date.now();
    const first = newClient(server.url, { spoolDir: dir, clock: new TestClock({ wall }), retry: { retries: 0, minDelayMs: 1, maxDelayMs: 60_000 } });
    const events = makeEvents(5);
    first.client.enqueue(events);
    await first.client.flush(); // 503: the batch went back to the queue; the client backs off
    // Another client, a minute later: the first one's lock looks dead.
    server.state.status = 204;
    const taker = newClient(server.url, { spoolDir: dir, clock: new TestClock({ wall: wall + 60_000 }) });
    await settleOn(taker.clock, taker.client.flush());
    expect(taker.client.stats()).toMatchObject({ recovered: 5, delivered: 5 });
    // The first client's next renewal finds its directory taken.
    await first.clock.advance(2000);
    await until(() => first.rec.logged.some((m) => /another process took over/.test(m)), "the lease-lost message");
    expect(first.rec.logged.filter((m) => /another process took over/.test(m))).toEqual([
      "another process took over this client's spool (its lease was not renewed for spoolLeaseMs: was the event loop blocked?); it delivers the 5 event(s) it holds",
    ]);
    expect(first.client.stats()).toMatchObject({ handedOver: 5, pending: { memory: 0, disk: 0 } });
    expect(unaccounted(first.client.stats())).toBe(0);
    expect(server.state.acknowledged.sort()).toEqual(events.map((e) => e.id).sort());
  });

  /** A segment as a crash or a disk can leave it: good, flipped, not an event, torn. */
  function damagedSegment() {
    const [a, b, c] = makeEvents(3).map((e, i) => ({ ...e, data: { ...e.data, tokens: 100 + i } }));
    const good = encodeRecords([JSON.stringify(a)]);
    const flipped = encodeRecords([JSON.stringify(b)]).replace('"tokens":101', '"tokens":901');
    const notAnEvent = encodeRecords([JSON.stringify({ x: 1 })]);
    const torn = encodeRecords([JSON.stringify(c)]).slice(0, 40);
    const at = [0, good, flipped, notAnEvent, torn].map((_, i, parts) => parts.slice(1, i + 1).reduce((n: number, p) => n + Buffer.byteLength(p as string), 0));
    return { text: good + flipped + notAnEvent + torn, good: a!, flipped: b!, torn: c!, at };
  }

  it("corrupt records (a flipped digit, a torn last line) are reported with their byte ranges, never sent; the rest is delivered", async () => {
    const dir = tempDir();
    const segment = damagedSegment();
    leftBehind(dir, [segment.text]);
    const server = await switchable();
    server.state.status = 204;
    const { client, rec } = newClient(server.url, { spoolDir: dir });
    await until(() => client.stats().delivered === 1 && rec.errors.length === 1, "the good record and the report");
    expect(server.state.acknowledged).toEqual([segment.good.id]);
    const report = rec.errors[0]!;
    expect(report.kind).toBe("corrupt");
    expect(report.events).toEqual([]);
    expect(report.message).toMatch(/^3 record\(s\) in .*00000001\.log are corrupt and were not sent: /);
    expect(report.message).toContain(`record 1 (bytes ${segment.at[1]}-${segment.at[2]}): checksum mismatch`);
    expect(report.message).toContain(`record 3 (bytes ${segment.at[3]}-${segment.at[4]}): the record has no end`);
    expect(report.message).toMatch(/record 2.*: not a JSON event/);
    expect(client.stats()).toMatchObject({ delivered: 1, dropped: 3, recovered: 4, pending: { memory: 0, disk: 0 } });
    expect(unaccounted(client.stats())).toBe(0);
    expect(server.state.acknowledged).not.toContain(segment.flipped.id);
    expect(server.state.acknowledged).not.toContain(segment.torn.id);
    // Every record acknowledged or reported: the segment is done and deleted.
    await until(() => segments(dir).length === 0, "the finished segment to be deleted");
  });

  it("a record whose checksum holds but which is no event is reported with its byte range too", async () => {
    const dir = tempDir();
    const segment = damagedSegment();
    leftBehind(dir, [segment.text]);
    const server = await switchable();
    server.state.status = 204;
    const { rec } = newClient(server.url, { spoolDir: dir });
    await until(() => rec.errors.length === 1, "the report");
    expect(rec.errors[0]!.message).toContain(`record 2 (bytes ${segment.at[2]}-${segment.at[3]}): not a JSON event`);
  });

  it("flush() waits for the valid events of a taken-over segment that also holds corrupt records", async () => {
    const dir = tempDir();
    const segment = damagedSegment();
    leftBehind(dir, [segment.text]);
    const server = await switchable();
    server.state.status = 204;
    const { client } = newClient(server.url, { spoolDir: dir });
    await client.flush();
    expect(server.state.acknowledged).toEqual([segment.good.id]);
    expect(client.stats()).toMatchObject({ delivered: 1, pending: { memory: 0, disk: 0 } });
  });

  it("an empty segment (a crash between creating and writing it): nothing sent, nothing reported, removed", async () => {
    const dir = tempDir();
    leftBehind(dir, [""]);
    const server = await switchable();
    server.state.status = 204;
    const { client, rec } = newClient(server.url, { spoolDir: dir });
    await client.flush();
    expect(server.requests).toHaveLength(0);
    expect(rec.errors).toEqual([]);
    expect(rec.warnings.filter((w) => /corrupt|lost|not sent/.test(w))).toEqual([]);
    expect(client.stats()).toMatchObject({ recovered: 0, dropped: 0 });
    await until(() => segments(dir).length === 0, "the empty segment to be removed");
  });
});

describe("the spool through outages and shutdown", () => {
  it("while the endpoint is down, one probe per retry.maxDelayMs; once it is back, the probe delivers everything without new traffic", async () => {
    const server = await switchable();
    const { client, clock } = newClient(server.url, { spoolDir: tempDir() });
    client.enqueue(makeEvents(4));
    await client.flush();
    expect(server.requests).toHaveLength(3); // one request, two retries
    for (let probe = 1; probe <= 3; probe++) {
      await clock.advance(1000);
      await until(() => server.requests.length === 3 + probe, `probe ${probe}`);
    }
    await clock.advance(999);
    expect(server.requests).toHaveLength(6);
    server.state.status = 204;
    await clock.advance(1);
    await until(() => client.stats().delivered === 4, "the probe to deliver");
    expect(client.stats()).toMatchObject({ state: "healthy", pending: { memory: 0, disk: 0 } });
  });

  it("shutdown() with events on disk and the endpoint healthy: delivered before it resolves, the spool left empty", async () => {
    const server = await switchable();
    server.state.status = 204;
    const dir = tempDir();
    const { client, clock } = newClient(server.url, { spoolDir: dir, maxBatchSize: 2, maxConcurrency: 1 });
    client.enqueue(makeEvents(6));
    expect(client.stats().pending).toEqual({ memory: 0, disk: 6 });
    const { elapsedMs } = await settleOn(clock, client.shutdown());
    expect(elapsedMs).toBeLessThanOrEqual(5000);
    expect(server.requests).toHaveLength(3);
    expect(client.stats()).toMatchObject({ state: "closed", delivered: 6, pending: { memory: 0, disk: 0 } });
    await until(() => segments(dir).length === 0, "the delivered segment to be deleted");
  });

  it("shutdown() during an outage, with a spool: no more requests, it resolves at once, and says where the events wait", async () => {
    const server = await switchable();
    const dir = tempDir();
    const { client, rec, clock } = newClient(server.url, { spoolDir: dir });
    client.enqueue(makeEvents(3));
    await client.flush();
    const before = server.requests.length;
    const { elapsedMs } = await settleOn(clock, client.shutdown(), { stepMs: 10 });
    expect(elapsedMs).toBeLessThanOrEqual(10);
    expect(server.requests).toHaveLength(before);
    expect(client.stats()).toMatchObject({ pending: { memory: 0, disk: 3 }, dropped: 0 });
    expect(rec.warnings.at(-1)).toMatch(/^3 event\(s\) not delivered yet are kept in .*om-hardening-.*: the next process that opens spoolDir .* delivers them$/);
    expect(rec.errors).toEqual([]);
  });

  it("shutdown() while the endpoint hangs: requests are cut off at shutdownTimeoutMs, the events stay on disk, and the next client delivers them", async () => {
    const hanging = await plain(() => undefined);
    const dir = tempDir();
    const { client, rec, clock } = newClient(hanging.url, { spoolDir: dir, shutdownTimeoutMs: 3000 });
    const events = makeEvents(3);
    client.enqueue(events);
    const shutdown = client.shutdown();
    await until(() => hanging.requests.length === 1, "the request to hang");
    const { elapsedMs } = await settleOn(clock, shutdown, { stepMs: 100 });
    expect(elapsedMs).toBe(3000);
    expect(client.stats()).toMatchObject({ pending: { memory: 0, disk: 3 }, delivered: 0, dropped: 0 });
    expect(rec.warnings.at(-1)).toMatch(/^3 event\(s\) not delivered yet are kept in /);

    const server = await switchable();
    server.state.status = 204;
    const next = newClient(server.url, { spoolDir: dir });
    await next.client.flush();
    expect(server.state.acknowledged).toEqual(events.map((e) => e.id));
    expect(next.client.stats()).toMatchObject({ recovered: 3, delivered: 3 });
  });
});
