import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { IngestClient, type IngestError } from "langchain-openmeter";
import { startOpenMeterServer } from "langchain-openmeter/testing";
import { startPlainServer } from "./helpers";

const makeEvents = (n: number) =>
  Array.from({ length: n }, (_, i) => ({ specversion: "1.0" as const, id: `e-${i}`, source: "s", type: "t", subject: "acme", data: { tokens: i } }));
const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0)) await fn();
});

describe("a refused batch", () => {
  it("400 for one event: the batch is halved until that event is alone; the others are delivered", async () => {
    const delivered: string[] = [];
    const server = await startPlainServer((_req, res, body) => {
      const ids = (JSON.parse(body) as Array<{ id: string }>).map((e) => e.id);
      if (ids.includes("e-6")) return void res.writeHead(400, { "content-type": "application/problem+json" }).end('{"detail":"event e-6 is invalid"}');
      delivered.push(...ids);
      res.writeHead(204).end();
    });
    cleanup.push(() => server.close());
    const errors: IngestError[] = [];
    const client = new IngestClient({ url: server.url, maxBatchSize: 10, flushOnExit: false, onError: (e) => errors.push(e) });
    client.enqueue(makeEvents(10));
    await client.shutdown();
    expect(delivered.sort()).toEqual(["e-0", "e-1", "e-2", "e-3", "e-4", "e-5", "e-7", "e-8", "e-9"]);
    expect(errors.map((e) => [e.kind, e.status, e.events.map((x) => x.id), e.detail])).toEqual([["rejected", 400, ["e-6"], "event e-6 is invalid"]]);
    expect(client.stats()).toMatchObject({ sent: 9, failed: 1, retries: 0 });
    expect(server.requests.length).toBeLessThanOrEqual(1 + 2 * Math.ceil(Math.log2(10)));
  });

  it("401 with a spool: reported, kept in the spool, and delivered once the key is right", async () => {
    const server = await startOpenMeterServer({ apiKey: "right-key" });
    cleanup.push(() => server.close());
    const spoolDir = mkdtempSync(join(tmpdir(), "lcom-401-"));
    cleanup.push(() => rmSync(spoolDir, { recursive: true, force: true }));
    const errors: IngestError[] = [];
    const wrong = new IngestClient({ url: server.url, apiKey: "wrong-key", spoolDir, flushOnExit: false, onError: (e) => errors.push(e) });
    wrong.enqueue(makeEvents(4));
    await wrong.shutdown();
    expect(errors.map((e) => [e.kind, e.status])).toEqual([["rejected", 401]]);
    expect(errors[0]!.message).toMatch(/check apiKey.*kept in the spool/);
    expect(wrong.stats()).toMatchObject({ failed: 0, spooled: 4 });
    expect(server.events).toEqual([]);

    const fixed = new IngestClient({ url: server.url, apiKey: "right-key", spoolDir, flushOnExit: false });
    await fixed.replaySpool();
    await fixed.shutdown();
    expect(server.events.map((e) => e.id).sort()).toEqual(["e-0", "e-1", "e-2", "e-3"]);
  });

  it("400 is not kept in the spool: invalid content will not become valid by waiting", async () => {
    const server = await startPlainServer((_req, res) => void res.writeHead(400).end());
    cleanup.push(() => server.close());
    const spoolDir = mkdtempSync(join(tmpdir(), "lcom-400-"));
    cleanup.push(() => rmSync(spoolDir, { recursive: true, force: true }));
    const client = new IngestClient({ url: server.url, spoolDir, flushOnExit: false, logger: { warn() {}, error() {} } });
    client.enqueue(makeEvents(2));
    await client.shutdown();
    // Invalid content will not become valid by waiting: not spooled, reported once for the batch.
    expect(client.stats()).toMatchObject({ failed: 2, spooled: 0 });
  });

  it("a batch kept in the spool for a configuration problem is not replayed in a loop (restart with the key still wrong)", async () => {
    const server = await startPlainServer((_req, res) => void res.writeHead(401).end());
    cleanup.push(() => server.close());
    const spoolDir = mkdtempSync(join(tmpdir(), "lcom-401-loop-"));
    cleanup.push(() => rmSync(spoolDir, { recursive: true, force: true }));
    const first = new IngestClient({ url: server.url, apiKey: "wrong", spoolDir, flushOnExit: false, onError() {} });
    first.enqueue(makeEvents(2));
    await first.shutdown();
    const afterFirst = server.requests.length;
    // A restart replays the spool once at construction; nothing may keep re-sending it after that.
    const second = new IngestClient({ url: server.url, apiKey: "wrong", spoolDir, flushOnExit: false, onError() {} });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await second.shutdown();
    // Counts requests, not time: a slower machine can only make fewer.
    expect(server.requests.length - afterFirst).toBeLessThanOrEqual(1);
  });

  it("a kept 403 batch is not replayed after every later success", async () => {
    const server = await startPlainServer((_req, res, body) => {
      const ids = (JSON.parse(body) as Array<{ id: string }>).map((e) => e.id);
      res.writeHead(ids.includes("e-0") ? 403 : 204).end();
    });
    cleanup.push(() => server.close());
    const spoolDir = mkdtempSync(join(tmpdir(), "lcom-403-loop-"));
    cleanup.push(() => rmSync(spoolDir, { recursive: true, force: true }));
    const client = new IngestClient({ url: server.url, spoolDir, flushOnExit: false, maxBatchSize: 1, onError() {} });
    const events = makeEvents(6);
    client.enqueue(events[0]!);
    await client.flush();
    for (const event of events.slice(1)) {
      client.enqueue(event);
      await client.flush();
    }
    const before = server.requests.length;
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(server.requests.length - before).toBe(0);
    await client.shutdown();
    expect(server.requests.filter((r) => r.body.includes('"e-0"'))).toHaveLength(1);
  });

  it("400 with two bad events in different halves: the other eight are delivered, the two reported together", async () => {
    const delivered: string[] = [];
    const bad = new Set(["e-2", "e-7"]);
    const server = await startPlainServer((_req, res, body) => {
      const ids = (JSON.parse(body) as Array<{ id: string }>).map((e) => e.id);
      if (ids.some((id) => bad.has(id))) return void res.writeHead(400).end();
      delivered.push(...ids);
      res.writeHead(204).end();
    });
    cleanup.push(() => server.close());
    const errors: IngestError[] = [];
    const client = new IngestClient({ url: server.url, maxBatchSize: 10, flushOnExit: false, onError: (e) => errors.push(e) });
    client.enqueue(makeEvents(10));
    await client.shutdown();
    expect(delivered.sort()).toEqual(["e-0", "e-1", "e-3", "e-4", "e-5", "e-6", "e-8", "e-9"]);
    expect(errors.map((e) => e.events.map((x) => x.id))).toEqual([["e-2", "e-7"]]);
    expect(client.stats()).toMatchObject({ sent: 8, failed: 2 });
  });

  it("400 for every event: a few probes, then the batch is given up without a request per event", async () => {
    const server = await startPlainServer((_req, res) => void res.writeHead(400).end());
    cleanup.push(() => server.close());
    const errors: IngestError[] = [];
    const client = new IngestClient({ url: server.url, maxBatchSize: 100, flushOnExit: false, onError: (e) => errors.push(e) });
    client.enqueue(makeEvents(100));
    await client.shutdown();
    expect(errors).toHaveLength(1);
    expect(errors[0]!.events).toHaveLength(100);
    expect(server.requests.length).toBeLessThanOrEqual(25);
  });
});
