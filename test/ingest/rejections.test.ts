import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { IngestClient, type IngestError, type IngestOptions } from "langchain-openmeter";
import { startOpenMeterServer, TestClock } from "langchain-openmeter/testing";
import { settleOn, unaccounted, until } from "../support/clocked";
import { startPlainServer } from "./helpers";

const makeEvents = (n: number) =>
  Array.from({ length: n }, (_, i) => ({ specversion: "1.0" as const, id: `e-${i}`, source: "s", type: "t", subject: "acme", data: { tokens: i } }));
const ids = (body: string) => (JSON.parse(body) as Array<{ id: string }>).map((e) => e.id);

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

function spoolDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "lcom-rejections-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Segment files (`*.log`) anywhere below the spool directory. */
function segments(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).filter((name) => name.endsWith(".log"));
}

function client(options: IngestOptions & { clock?: TestClock }) {
  const clock = options.clock ?? new TestClock();
  const errors: IngestError[] = [];
  const c = new IngestClient({
    flushOnExit: false,
    handleSignals: false,
    logger: { warn() {}, error() {} },
    onError: (e) => errors.push(e),
    ...options,
    clock,
  });
  cleanup.push(() => settleOn(clock, c.shutdown({ timeoutMs: 0 })));
  return { client: c, errors, clock };
}

describe("a refused batch", () => {
  it("400 for one event: the batch is halved until that event is alone; the others are delivered", async () => {
    const delivered: string[] = [];
    const server = await startPlainServer((_req, res, body) => {
      if (ids(body).includes("e-6")) return void res.writeHead(400, { "content-type": "application/problem+json" }).end('{"detail":"event e-6 is invalid"}');
      delivered.push(...ids(body));
      res.writeHead(204).end();
    });
    cleanup.push(() => server.close());
    const { client: c, errors } = client({ url: server.url, maxBatchSize: 10 });
    c.enqueue(makeEvents(10));
    await c.flush();
    expect(delivered.sort()).toEqual(["e-0", "e-1", "e-2", "e-3", "e-4", "e-5", "e-7", "e-8", "e-9"]);
    expect(errors.map((e) => [e.kind, e.status, e.events.map((x) => x.id), e.detail])).toEqual([["rejected", 400, ["e-6"], "event e-6 is invalid"]]);
    expect(c.stats()).toMatchObject({ delivered: 9, refused: 1, retries: 0, pending: { memory: 0, disk: 0 } });
    expect(server.requests.length).toBeLessThanOrEqual(1 + 2 * Math.ceil(Math.log2(10)));
  });

  it("400 with two bad events in different halves: the other eight are delivered, each bad one reported once", async () => {
    const delivered: string[] = [];
    const bad = new Set(["e-2", "e-7"]);
    const server = await startPlainServer((_req, res, body) => {
      if (ids(body).some((id) => bad.has(id))) return void res.writeHead(400).end();
      delivered.push(...ids(body));
      res.writeHead(204).end();
    });
    cleanup.push(() => server.close());
    const { client: c, errors } = client({ url: server.url, maxBatchSize: 10 });
    c.enqueue(makeEvents(10));
    await c.flush();
    expect(delivered.sort()).toEqual(["e-0", "e-1", "e-3", "e-4", "e-5", "e-6", "e-8", "e-9"]);
    expect(errors.flatMap((e) => e.events.map((x) => x.id)).sort()).toEqual(["e-2", "e-7"]);
    expect(errors.every((e) => e.kind === "rejected" && e.status === 400)).toBe(true);
    expect(c.stats()).toMatchObject({ delivered: 8, refused: 2 });
  });

  it("three invalid events at the front of a batch: the valid events behind them are still delivered", async () => {
    const delivered: string[] = [];
    const bad = new Set(["e-0", "e-1", "e-2"]);
    const server = await startPlainServer((_req, res, body) => {
      if (ids(body).some((id) => bad.has(id))) return void res.writeHead(400).end();
      delivered.push(...ids(body));
      res.writeHead(204).end();
    });
    cleanup.push(() => server.close());
    const { client: c, errors } = client({ url: server.url, maxBatchSize: 8 });
    c.enqueue(makeEvents(8));
    await c.flush();
    expect(delivered.sort()).toEqual(["e-3", "e-4", "e-5", "e-6", "e-7"]);
    expect(errors.flatMap((e) => e.events.map((x) => x.id)).sort()).toEqual(["e-0", "e-1", "e-2"]);
    expect(c.stats()).toMatchObject({ delivered: 5, refused: 3 });
  });

  it("400 for every event: after eight refused alone and none delivered, the rest waits (none refused unseen), reported once, one probe a minute", async () => {
    const server = await startPlainServer((_req, res) => void res.writeHead(400).end());
    cleanup.push(() => server.close());
    const { client: c, errors, clock } = client({ url: server.url, maxBatchSize: 100 });
    c.enqueue(makeEvents(100));
    await c.flush();
    const refused = errors.filter((e) => e.events.length > 0).flatMap((e) => e.events.map((x) => x.id));
    expect(refused).toHaveLength(8);
    expect(new Set(refused).size).toBe(8);
    expect(server.requests.length).toBeLessThanOrEqual(2 * 8 + Math.ceil(Math.log2(100)));
    expect(c.stats()).toMatchObject({ state: "misconfigured", refused: 8, delivered: 0, pending: { memory: 92, disk: 0 } });
    const said = errors.filter((e) => /seems to refuse them all/.test(e.message));
    expect(said).toHaveLength(1);
    const requests = server.requests.length;
    await clock.advance(59_999);
    expect(server.requests).toHaveLength(requests);
    await clock.advance(1);
    await until(() => server.requests.length > requests, "the probe a minute later");
  });
});

describe("a refused batch with a spool", () => {
  it("401: reported once, kept on disk, and delivered by the next client once the key is right", async () => {
    const server = await startOpenMeterServer({ apiKey: "right-key" });
    cleanup.push(() => server.close());
    const dir = spoolDir();
    const wrong = client({ url: server.url, apiKey: "wrong-key", spoolDir: dir });
    wrong.client.enqueue(makeEvents(4));
    await wrong.client.flush();
    expect(wrong.errors.map((e) => [e.kind, e.status])).toEqual([["rejected", 401]]);
    expect(wrong.errors[0]!.message).toMatch(/check apiKey.*the events wait in .*lcom-rejections-/);
    // A configuration report names no events: they are not lost, they wait.
    expect(wrong.errors[0]!.events).toEqual([]);
    expect(wrong.client.stats()).toMatchObject({ state: "misconfigured", refused: 0, dropped: 0, pending: { memory: 0, disk: 4 } });
    await settleOn(wrong.clock, wrong.client.shutdown());
    expect(server.events).toEqual([]);
    expect(segments(dir)).toHaveLength(1);

    const fixed = client({ url: server.url, apiKey: "right-key", spoolDir: dir });
    await fixed.client.flush();
    expect(server.events.map((e) => e.id).sort()).toEqual(["e-0", "e-1", "e-2", "e-3"]);
    expect(fixed.client.stats()).toMatchObject({ recovered: 4, delivered: 4, pending: { memory: 0, disk: 0 } });
    expect(unaccounted(fixed.client.stats())).toBe(0);
    expect(fixed.errors).toEqual([]);
    await settleOn(fixed.clock, fixed.client.shutdown());
    expect(segments(dir)).toEqual([]);
  });

  it("400 is not kept on disk: invalid content will not become valid by waiting", async () => {
    const server = await startPlainServer((_req, res) => void res.writeHead(400).end());
    cleanup.push(() => server.close());
    const dir = spoolDir();
    const { client: c, errors } = client({ url: server.url, spoolDir: dir });
    c.enqueue(makeEvents(2));
    await c.flush();
    expect(c.stats()).toMatchObject({ refused: 2, pending: { memory: 0, disk: 0 } });
    expect(errors.flatMap((e) => e.events.map((x) => x.id)).sort()).toEqual(["e-0", "e-1"]);
    await c.shutdown();
    expect(segments(dir)).toEqual([]);
  });

  it("a batch kept for a wrong key is probed once a minute, not re-sent in a loop, and reported once (restart with the key still wrong)", async () => {
    const server = await startPlainServer((_req, res) => void res.writeHead(401).end());
    cleanup.push(() => server.close());
    const dir = spoolDir();
    const first = client({ url: server.url, apiKey: "wrong", spoolDir: dir });
    first.client.enqueue(makeEvents(2));
    await first.client.flush();
    await settleOn(first.clock, first.client.shutdown());
    expect(server.requests).toHaveLength(1);

    const second = client({ url: server.url, apiKey: "wrong", spoolDir: dir });
    await second.client.flush(); // takes over the first client's segment and sends it once
    expect(server.requests).toHaveLength(2);
    expect(second.client.stats()).toMatchObject({ recovered: 2, state: "misconfigured", pending: { memory: 0, disk: 2 } });
    await second.clock.advance(59_999);
    expect(server.requests).toHaveLength(2);
    await second.clock.advance(1);
    await until(() => server.requests.length === 3, "the first probe");
    for (let minute = 2; minute <= 5; minute++) {
      await second.clock.advance(60_000);
      await until(() => server.requests.length === 2 + minute, `the probe of minute ${minute}`);
    }
    // One request at the start and one probe a minute: 6 in five minutes, whatever the machine's speed.
    expect(server.requests).toHaveLength(2 + 5);
    expect(second.errors).toHaveLength(1);
    expect(second.client.stats()).toMatchObject({ refused: 0, dropped: 0, pending: { memory: 0, disk: 2 } });
  });

  it("while the key is refused, later events and flushes send nothing; after the fix, every event is delivered and the kept batch once", async () => {
    let status = 403;
    const server = await startPlainServer((_req, res) => void res.writeHead(status).end());
    cleanup.push(() => server.close());
    const dir = spoolDir();
    const { client: c, errors, clock } = client({ url: server.url, spoolDir: dir, maxBatchSize: 1 });
    const events = makeEvents(6);
    c.enqueue(events[0]!);
    await c.flush();
    for (const event of events.slice(1)) {
      c.enqueue(event);
      await c.flush();
    }
    expect(server.requests).toHaveLength(1);
    expect(c.stats()).toMatchObject({ state: "misconfigured", pending: { memory: 0, disk: 6 } });
    status = 204;
    await clock.advance(60_000);
    await settleOn(clock, c.flush());
    expect(c.stats()).toMatchObject({ state: "healthy", delivered: 6, pending: { memory: 0, disk: 0 } });
    const sent = server.requests.flatMap((r) => ids(r.body));
    expect(sent.filter((id) => id === "e-0")).toHaveLength(2); // refused once, delivered once
    expect(new Set(sent)).toEqual(new Set(events.map((e) => e.id)));
    expect(server.requests).toHaveLength(1 + 6);
    expect(errors.map((e) => e.status)).toEqual([403]);
  });
});

describe("a refused batch meeting an outage", () => {
  it("once retries run out for one half, the other halves wait for the probe too (nothing is sent while backing off)", async () => {
    let seen = 0;
    const server = await startPlainServer((_req, res) => void res.writeHead(seen++ === 0 ? 400 : 503).end());
    cleanup.push(() => server.close());
    const { client: c, clock } = client({ url: server.url, maxBatchSize: 4, retry: { retries: 2, minDelayMs: 1, maxDelayMs: 60_000 } });
    c.enqueue(makeEvents(4));
    await c.flush();
    // The 400, then the first half with its two retries; the client backs off.
    expect(c.stats().state).toBe("backing-off");
    expect(server.requests.map((r) => ids(r.body).length)).toEqual([4, 2, 2, 2]);
    await clock.advance(59_999);
    expect(server.requests).toHaveLength(4);
    expect(c.stats()).toMatchObject({ refused: 0, delivered: 0, pending: { memory: 4, disk: 0 } });
  });
});
