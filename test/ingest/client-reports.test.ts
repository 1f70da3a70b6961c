// What the client says, and to whom: onError or the logger, warnings once, reasons summed up, the
// transport's answer boundaries. Written against the survivors of the 05:21 mutation run (docs/mutation.md).
import diagnostics from "node:diagnostics_channel";
import { mkdirSync, readdirSync, rmSync, statfsSync } from "node:fs";
import { getEventListeners } from "node:events";
import type { ServerResponse } from "node:http";
import { join, relative } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type CloudEvent, IngestClient, IngestError, type IngestOptions } from "langchain-openmeter";
import { TestClock } from "langchain-openmeter/testing";
import { READ_RETRY_MS } from "../../src/ingest/disk-log/disk-log";
import { encodeRecords } from "../../src/ingest/disk-log/records";
import { ENQUEUE_OWNED } from "../../src/ingest/client";
import { Transport } from "../../src/ingest/transport";
import { until } from "../support/clocked";
import { balance, leaveSpool, makeEvents, recorder, startClient, startPlainServer, tempDir } from "./helpers";

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

type Responder = Parameters<typeof startPlainServer>[0];

function setup(respond: Responder, options: Partial<IngestOptions> = {}) {
  return startClient(respond, { retry: { retries: 0, minDelayMs: 1, maxDelayMs: 500 }, ...options }, cleanup);
}

describe("reports", () => {
  it("invalid events of many kinds: one report naming five reasons and counting the rest, to onError only", async () => {
    const { client, rec } = await setup((_req, res) => res.writeHead(204).end());
    const [base] = makeEvents(1);
    const broken = [
      { ...base, id: "" },
      { ...base, source: "" },
      { ...base, type: "" },
      { ...base, subject: "" },
      { ...base, specversion: "0.9" },
      { ...base, time: "yesterday" },
      { ...base, source: "my_app:prod" },
    ];
    client.enqueue(broken as never);
    await new Promise((resolve) => setImmediate(resolve));
    expect(rec.errors).toHaveLength(1);
    expect(rec.errors[0]!.kind).toBe("invalid-event");
    expect(rec.errors[0]!.events).toHaveLength(7);
    expect(rec.errors[0]!.message).toMatch(/^7 invalid event\(s\) not queued: /);
    expect(rec.errors[0]!.message).toMatch(/; and 2 more reason\(s\)$/);
    expect(rec.errors[0]!.message.split("; ")).toHaveLength(6); // five reasons, then the count of the rest
    expect(rec.warnings).toEqual([]); // refused at enqueue, never lost in delivery: not a warning
  });

  it("an invalid object shaped like the queue's own records ({ json, epoch }) is reported as it was given", async () => {
    const { client, rec } = await setup((_req, res) => res.writeHead(204).end());
    const lookalike = { json: "not json", epoch: 1 };
    client.enqueue(lookalike as never);
    await new Promise((resolve) => setImmediate(resolve));
    expect(rec.errors.map((e) => [e.kind, e.events])).toEqual([["invalid-event", [lookalike]]]);
  });

  it("IngestError is named so, and has a cause only when given one", () => {
    const plain = new IngestError("m", { kind: "rejected", events: [] });
    expect(plain.name).toBe("IngestError");
    expect(String(plain)).toBe("IngestError: m");
    expect("cause" in plain).toBe(false);
    const root = new Error("root");
    expect(new IngestError("m", { kind: "rejected", events: [], cause: root }).cause).toBe(root);
  });

  it("without onError a report is logged as an error; an onError that throws is logged, not thrown", async () => {
    const rec = recorder();
    const logged = new IngestClient({ url: "http://127.0.0.1:9/api/v1/events", handleSignals: false, flushOnExit: false, logger: rec.logger, clock: new TestClock() });
    cleanup.push(() => logged.shutdown({ timeoutMs: 0 }));
    logged.enqueue([{ ...makeEvents(1)[0]!, id: "" }] as never);
    await new Promise((resolve) => setImmediate(resolve));
    expect(rec.logged).toEqual([expect.stringMatching(/^1 invalid event\(s\) not queued: /)]);
    expect(rec.warnings).toEqual([]);

    const rec2 = recorder();
    const throwing = new IngestClient({
      url: "http://127.0.0.1:9/api/v1/events",
      handleSignals: false,
      flushOnExit: false,
      logger: rec2.logger,
      clock: new TestClock(),
      onError: () => {
        throw new Error("boom");
      },
    });
    cleanup.push(() => throwing.shutdown({ timeoutMs: 0 }));
    throwing.enqueue([{ ...makeEvents(1)[0]!, id: "" }] as never);
    await new Promise((resolve) => setImmediate(resolve));
    expect(rec2.logged).toEqual(["onError threw: Error: boom"]);
  });

  it("a backoff shorter than a second is said in ms, a longer one in seconds", async () => {
    for (const [maxDelayMs, said] of [
      [500, "one request every 500 ms"],
      [1500, "one request every 1.5 s"],
    ] as const) {
      const { client, rec, clock } = await setup((_req, res) => res.writeHead(503).end(), { retry: { retries: 0, minDelayMs: 1, maxDelayMs } });
      client.enqueue(makeEvents(1));
      await clock.advanceUntil(client.flush());
      expect(rec.warnings.filter((w) => w.includes("retries ran out"))).toEqual([expect.stringContaining(said)]);
    }
  });

  it("stats() of a new client, with or without a spool: every count zero, nothing unread, healthy", async () => {
    const spool = tempDir("om-stats-");
    cleanup.push(spool.remove);
    const zero = { enqueued: 0, recovered: 0, delivered: 0, refused: 0, dropped: 0, handedOver: 0, pending: { memory: 0, disk: 0 }, unread: { segments: 0, bytes: 0 }, inFlight: 0, batches: 0, retries: 0, state: "healthy" };
    const memory = await setup((_req, res) => res.writeHead(204).end());
    const disk = await setup((_req, res) => res.writeHead(204).end(), { spoolDir: spool.dir });
    await disk.client.flush(); // the look for other processes' segments at start
    expect(memory.client.stats()).toStrictEqual(zero);
    expect(disk.client.stats()).toStrictEqual(zero);
  });

  it("stats() says closed only once shutdown was called", async () => {
    const { client, clock } = await setup((_req, res) => res.writeHead(204).end());
    expect(client.stats().state).toBe("healthy");
    await clock.advanceUntil(client.shutdown());
    expect(client.stats().state).toBe("closed");
  });
});

describe("the handler's own events (ENQUEUE_OWNED)", () => {
  it("are checked at enqueue like any other: an invalid one is refused and reported", async () => {
    const { client, rec } = await setup((_req, res) => res.writeHead(204).end());
    const invalid = { ...makeEvents(1)[0]!, subject: "" };
    client[ENQUEUE_OWNED]([invalid]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(rec.errors.map((e) => [e.kind, e.message, e.events])).toEqual([["invalid-event", "1 invalid event(s) not queued: `subject` must not be empty", [invalid]]]);
    expect(client.stats()).toMatchObject({ enqueued: 1, refused: 1, pending: { memory: 0, disk: 0 } });
  });

  it("are serialised when sent, not copied at enqueue (nobody else holds them); a caller's events are copied at once", async () => {
    const { client, server } = await setup((_req, res) => res.writeHead(204).end());
    const [owned, given] = makeEvents(2).map((e) => ({ ...e, data: { ...e.data } }));
    client[ENQUEUE_OWNED]([owned!]);
    client.enqueue(given!);
    owned!.data.tokens = 1000;
    given!.data.tokens = 1000;
    await client.flush();
    const sent = JSON.parse(server.requests[0]!.body) as Array<{ data: { tokens: number } }>;
    expect(sent.map((e) => e.data.tokens)).toEqual([1000, 2]);
  });
});

describe("the spool's warnings", () => {
  it("a spool directory with less free space than maxSpoolBytes is warned about at construction; one with enough is not", async () => {
    const spool = tempDir("om-free-");
    cleanup.push(spool.remove);
    const { rec } = await setup((_req, res) => res.writeHead(204).end(), { spoolDir: spool.dir, maxSpoolBytes: 2 ** 52 });
    expect(rec.warnings).toEqual([expect.stringMatching(new RegExp(`^spoolDir ${spool.dir} has \\d+ MiB free, less than maxSpoolBytes \\(${2 ** 32} MiB\\): an outage may fill it$`))]);
    const free = statfsSync(spool.dir);
    const saidMiB = Number(/has (\d+) MiB free/.exec(rec.warnings[0]!)![1]);
    expect(Math.abs(saidMiB - (free.bavail * free.bsize) / 1024 ** 2)).toBeLessThan(1024); // the same disk, read a moment apart
    const roomy = await setup((_req, res) => res.writeHead(204).end(), { spoolDir: spool.dir, maxSpoolBytes: 65_536 });
    expect(roomy.rec.warnings.filter((w) => w.includes("free"))).toEqual([]);
  });

  /** A spool directory holding one released owner's segment (as a process that ended leaves it). */
  function spoolWith(segment?: string | CloudEvent[]) {
    const spool = tempDir("om-said-");
    cleanup.push(spool.remove);
    return { dir: spool.dir, file: leaveSpool(spool.dir, segment) };
  }

  /** Where the taken-over segment is now: the adopting client moved its owner's directory into its own. */
  function adopted(spool: { dir: string; file: string }) {
    const [mine] = readdirSync(spool.dir).filter((name) => name !== "000000001-0123456789ab" && !name.startsWith("."));
    return join(spool.dir, mine!, relative(spool.dir, spool.file));
  }

  /** `n` records whose checksums hold but which are no events, and the byte range of each. */
  function notEvents(n: number) {
    const lines = Array.from({ length: n }, (_, i) => encodeRecords([JSON.stringify({ x: i })]));
    const starts = lines.map((_, i) => lines.slice(0, i).reduce((sum, line) => sum + Buffer.byteLength(line), 0));
    const said = lines.map((line, i) => `record ${i} (bytes ${starts[i]}-${starts[i]! + Buffer.byteLength(line)}): not a JSON event (its checksum holds: it was written so)`);
    return { text: lines.join(""), said };
  }

  it("corrupt records taken over: the first five are named with their byte ranges and the rest is '…', to onError with no events and as a warning", async () => {
    const records = notEvents(7);
    const spool = spoolWith(records.text);
    const { rec } = await setup((_req, res) => res.writeHead(204).end(), { spoolDir: spool.dir });
    await until(() => rec.errors.length === 1, "the corrupt-record report");
    const message = `7 record(s) in ${adopted(spool)} are corrupt and were not sent: ${records.said.slice(0, 5).join("; ")}; …`;
    expect(rec.errors[0]).toMatchObject({ kind: "corrupt", message, events: [] });
    expect(rec.warnings).toContain(message);
  });

  it("exactly five corrupt records are all named, with no '…'", async () => {
    const records = notEvents(5);
    const spool = spoolWith(records.text);
    const { rec, client } = await setup((_req, res) => res.writeHead(204).end(), { spoolDir: spool.dir });
    await client.flush(); // nothing to send: the read alone settles it (real file I/O; the clock need not move)
    expect(rec.errors).toHaveLength(1);
    expect(rec.errors[0]!.message).toBe(`5 record(s) in ${adopted(spool)} are corrupt and were not sent: ${records.said.join("; ")}`);
  });

  it("segments taken over from an earlier process are announced with their count and size; an owner that left none is not", async () => {
    const segment = encodeRecords(makeEvents(2).map((e) => JSON.stringify(e)));
    const spool = spoolWith(segment);
    const { client, rec, clock } = await setup((_req, res) => res.writeHead(204).end(), { spoolDir: spool.dir });
    await clock.advanceUntil(client.flush());
    expect(client.stats()).toMatchObject({ recovered: 2, delivered: 2 });
    expect(rec.warnings).toEqual([`delivering 1 spool segment(s) (${Buffer.byteLength(segment)} bytes) left in ${spool.dir} by 1 earlier process(es)`]);

    const empty = spoolWith(); // an owner directory with no segment in it
    const second = await setup((_req, res) => res.writeHead(204).end(), { spoolDir: empty.dir });
    await second.clock.advanceUntil(second.client.flush());
    expect(second.rec.warnings).toEqual([]);
  });

  it("a taken-over segment that cannot be read is warned about (what failed, and that it is tried again), not reported as lost", async () => {
    const spool = spoolWith(makeEvents(2));
    mkdirSync(spool.file.replace(/\.log$/, ".ack")); // its ledger cannot be read: EISDIR
    const { rec, client, clock } = await setup((_req, res) => res.writeHead(204).end(), { spoolDir: spool.dir });
    await until(() => rec.warnings.length === 2, "the warning about the read");
    expect(rec.warnings[1]).toMatch(/^reading \S+000000001-0123456789ab\/00000001\.log failed: EISDIR: .*; trying again later$/);
    client.enqueue(makeEvents(3)); // the sender takes again after each answer: no read (and no warning) each time
    await clock.advanceUntil(client.flush({ timeoutMs: 100 })); // (the unreadable segment would hold it longer)
    expect(client.stats().delivered).toBe(3);
    expect(rec.warnings).toHaveLength(2);
    expect(rec.errors).toEqual([]);
  });

  it("a taken-over segment that could not be read is read again READ_RETRY_MS later and delivered, with no other traffic", async () => {
    const events = makeEvents(2);
    const spool = spoolWith(events);
    mkdirSync(spool.file.replace(/\.log$/, ".ack"));
    const { rec, client, clock, server } = await setup((_req, res) => res.writeHead(204).end(), { spoolDir: spool.dir });
    await until(() => rec.warnings.some((w) => w.startsWith("reading ")), "the failed read");
    rmSync(adopted(spool).replace(/\.log$/, ".ack"), { recursive: true }); // the ledger is fine again
    await clock.advance(READ_RETRY_MS);
    await until(() => client.stats().delivered === 2, "the segment read again and delivered");
    expect(server.requests.flatMap((r) => (JSON.parse(r.body) as Array<{ id: string }>).map((e) => e.id))).toEqual(events.map((e) => e.id));
  });

  it("small events share one segment file (segments are rotated at 1 MiB)", async () => {
    const spool = tempDir("om-segments-");
    cleanup.push(spool.remove);
    const { client } = await setup((_req, res) => res.writeHead(503).end(), { spoolDir: spool.dir });
    for (let i = 0; i < 3; i++) client.enqueue(makeEvents(1));
    const files = readdirSync(spool.dir, { recursive: true }) as string[];
    expect(files.filter((name) => name.endsWith(".log"))).toHaveLength(1);
  });

  it("a spool directory removed while events were only on disk: the report counts those lost, to onError with no events and as a warning", async () => {
    const spool = tempDir("om-removed-");
    cleanup.push(spool.remove);
    // The endpoint is down and the cache holds 2: of 5 events, 3 are on disk only.
    const { client, rec, clock } = await setup((_req, res) => res.writeHead(503).end(), { spoolDir: spool.dir, maxQueueSize: 2 });
    client.enqueue(makeEvents(1));
    await clock.advanceUntil(client.flush());
    for (let i = 0; i < 4; i++) client.enqueue(makeEvents(1));
    rmSync(spool.dir, { recursive: true, force: true });
    await clock.advance(100); // the directory is checked every 100 ms
    client.enqueue(makeEvents(1));
    const removed = rec.errors.filter((e) => e.kind === "spool-write");
    expect(removed).toHaveLength(1);
    // The stats say the same: held in memory now, or lost (counted as dropped); the sixth went to the new directory.
    const { pending, dropped: lost } = client.stats();
    expect(pending).toEqual({ memory: 5 - lost, disk: 1 });
    expect(lost).toBeGreaterThan(0);
    const { left, right } = balance(client.stats());
    expect(right).toBe(left); // the lost ones are counted, once
    const message = `the spool directory ${spool.dir} was removed while in use: ${5 - lost} event(s) written before are held in memory only now, and ${lost} that were only on disk are lost; later events go to a new directory`;
    expect(removed[0]).toMatchObject({ message, events: [] });
    expect(rec.warnings).toContain(message);
  });

  it("a spool directory removed with nothing only on disk: the report says what is held and loses nothing", async () => {
    const spool = tempDir("om-removed-");
    cleanup.push(spool.remove);
    const { client, rec, clock } = await setup((_req, res) => res.writeHead(503).end(), { spoolDir: spool.dir });
    client.enqueue(makeEvents(2));
    await clock.advanceUntil(client.flush());
    rmSync(spool.dir, { recursive: true, force: true });
    await clock.advance(100);
    client.enqueue(makeEvents(1));
    expect(rec.errors.filter((e) => e.kind === "spool-write").map((e) => e.message)).toEqual([
      `the spool directory ${spool.dir} was removed while in use: 2 event(s) written before are held in memory only now; later events go to a new directory`,
    ]);
    expect(client.stats().dropped).toBe(0);
  });
});

describe("delivery warnings: each kind, for each kind of failure, at most once a minute", () => {
  /** An endpoint answering each request with the next status of `script` (then 204). */
  function scripted(script: number[]) {
    let i = 0;
    return (_req: unknown, res: ServerResponse) => void res.writeHead(script[i++] ?? 204).end();
  }

  it("retrying: said on the first failure, not again within the minute, again at exactly one minute", async () => {
    const { client, rec, clock } = await setup(scripted([503, 204, 503, 204, 503, 204]), { retry: { retries: 1, minDelayMs: 1, maxDelayMs: 1 } });
    const retrying = () => rec.warnings.filter((w) => w.includes("retrying"));
    await clock.advance(1000); // not at 0: a last warning at 0 must count as given
    const start = clock.now();
    for (const at of [0, 59_999, 60_000]) {
      await clock.advance(start + at - clock.now());
      client.enqueue(makeEvents(1));
      await client.flush(); // p-retry's 1 ms waits are real: the clock stays where it is
    }
    expect(client.stats()).toMatchObject({ delivered: 3, retries: 3, state: "healthy" });
    expect(retrying()).toEqual([expect.stringMatching(/503.*; retrying \(events are kept in memory\)$/), expect.stringMatching(/503.*; retrying \(events are kept in memory\)$/)]);
    expect(rec.warnings).toEqual(retrying()); // a retry that succeeds is no outage: nothing else is said
  });

  it("backing off: once a minute for the same failure, at once for another; the spool is named as where the events wait", async () => {
    const spool = tempDir("om-flap-");
    cleanup.push(spool.remove);
    // Each failure is probed after maxDelayMs (1 s) and answered 204: the endpoint flaps.
    const { client, rec, clock } = await setup(scripted([503, 204, 503, 204, 500, 204, 503, 204]), { spoolDir: spool.dir, retry: { retries: 0, minDelayMs: 1, maxDelayMs: 1000 } });
    const said: number[] = [];
    await clock.advance(1000); // not at 0: a last warning at 0 must count as given
    const start = clock.now();
    for (const at of [0, 30_000, 40_000, 60_000]) {
      await clock.advance(start + at - clock.now());
      client.enqueue(makeEvents(1));
      await client.flush(); // resolves once retries ran out, with the clock where it is
      await clock.advance(1000); // the probe, answered 204
      await until(() => client.stats().state === "healthy", "the probe's success");
      said.push(rec.warnings.length);
    }
    expect(said).toEqual([1, 1, 2, 3]);
    expect(rec.warnings[0]).toMatch(new RegExp(`503.*; retries ran out, so one request every 1 s checks whether the endpoint is back \\(events are kept on disk in ${spool.dir}\\)$`));
    expect(rec.warnings[1]).toMatch(/500/);
    expect(rec.warnings[2]).toMatch(/503/);
    expect(client.stats()).toMatchObject({ delivered: 4 });
  });
});

describe("the transport's answer boundaries", () => {
  const send = async (status: number, signal?: AbortSignal) => {
    const server = await startPlainServer((_req, res) => res.writeHead(status).end());
    cleanup.push(() => server.close());
    const transport = new Transport({ url: server.url, timeoutMs: 5000, connections: 1, clock: new TestClock({ ioWaitMs: 0 }) });
    cleanup.push(() => transport.close());
    return { result: await transport.send("[]", signal), requests: server.requests };
  };

  it("299 is delivered; 300 is not (a redirect is a wrong url)", async () => {
    expect((await send(299)).result).toMatchObject({ kind: "delivered", status: 299 });
    expect((await send(300)).result).toMatchObject({ kind: "refused", status: 300, configuration: true });
  });

  it("599 is retried; 600 is not an answer to retry", async () => {
    expect((await send(599)).result).toMatchObject({ kind: "retryable", status: 599 });
    expect((await send(600)).result).toMatchObject({ kind: "refused", status: 600 });
  });

  it("413 for one event without a body: the message ends with the advice (no detail to add)", async () => {
    const { client, rec } = await setup((_req, res) => res.writeHead(413).end());
    const [event] = makeEvents(1);
    client.enqueue(event!);
    await client.flush();
    expect(rec.errors.map((e) => e.message)).toEqual([`1 event not ingested: alone it is larger (${Buffer.byteLength(JSON.stringify(event))} bytes) than the endpoint accepts (413); make its \`data\` smaller`]);
  });

  it("an aborted signal sends nothing", async () => {
    const { result, requests } = await send(204, AbortSignal.abort());
    expect(result).toEqual({ kind: "aborted" });
    expect(requests).toEqual([]);
  });
});

describe("the transport's cut-offs", () => {
  /** A server that answers as `start` says and then holds the response open. */
  async function holding(start: (res: ServerResponse) => void) {
    const held: ServerResponse[] = [];
    const server = await startPlainServer((_req, res) => {
      start(res);
      held.push(res);
    });
    cleanup.push(() => server.close(), () => held.forEach((res) => res.destroy()));
    const clock = new TestClock();
    const transport = new Transport({ url: server.url, timeoutMs: 5000, connections: 1, clock });
    cleanup.push(() => transport.close());
    return { server, clock, transport, held };
  }

  it("a caller's abort while the answer is awaited ends the send as aborted, and leaves no listener or timer", async () => {
    const { server, clock, transport } = await holding(() => {});
    const controller = new AbortController();
    const sending = transport.send("[]", controller.signal);
    await until(() => server.requests.length === 1, "the request at the server");
    controller.abort();
    expect(await sending).toEqual({ kind: "aborted" });
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
    expect(clock.pendingTimers).toBe(0);
  });

  it("a caller's abort while an error answer's body is read ends the send as aborted", async () => {
    const { server, transport } = await holding((res) => {
      res.writeHead(500, { "content-type": "text/plain" });
      res.write("partial");
    });
    // undici says when an answer's headers are in (diagnostics channel `undici:request:headers`).
    const headersIn = new Promise<void>((resolve) => {
      const onHeaders = () => {
        diagnostics.unsubscribe("undici:request:headers", onHeaders);
        resolve();
      };
      diagnostics.subscribe("undici:request:headers", onHeaders);
    });
    const controller = new AbortController();
    const sending = transport.send("[]", controller.signal);
    await headersIn; // the body never ends
    controller.abort();
    expect(await sending).toEqual({ kind: "aborted" });
  });

  it("the deadline while an error answer's body is read is a time-out naming the status", async () => {
    const { clock, transport } = await holding((res) => {
      res.writeHead(503, { "content-type": "text/plain" });
      res.write("partial");
    });
    const result = await clock.advanceUntil(transport.send("[]", new AbortController().signal), { stepMs: 1000 });
    expect(result).toMatchObject({ kind: "retryable", message: expect.stringContaining("while reading a 503 answer") });
    expect(clock.pendingTimers).toBe(0);
  });

  it("the deadline while a 2xx web page is read still says it is a web page (the events went nowhere)", async () => {
    const { clock, transport } = await holding((res) => {
      res.writeHead(200, { "content-type": "text/html" });
      res.write("<html>");
    });
    const result = await clock.advanceUntil(transport.send("[]", new AbortController().signal), { stepMs: 1000 });
    expect(result).toMatchObject({ kind: "refused", status: 200, configuration: true, detail: undefined });
  });

  it("an error answer read in full leaves no deadline behind", async () => {
    const server = await startPlainServer((_req, res) => res.writeHead(500, { "content-type": "text/plain" }).end("down"));
    cleanup.push(() => server.close());
    const clock = new TestClock();
    const transport = new Transport({ url: server.url, timeoutMs: 5000, connections: 1, clock });
    cleanup.push(() => transport.close());
    expect(await transport.send("[]", new AbortController().signal)).toMatchObject({ kind: "retryable", status: 500, detail: "down" });
    expect(clock.pendingTimers).toBe(0);
  });

  it("a delivered answer leaves no listener on the caller's signal, and its deadline is cleared once its body is drained", async () => {
    const server = await startPlainServer((_req, res) => res.writeHead(204).end());
    cleanup.push(() => server.close());
    const clock = new TestClock();
    const transport = new Transport({ url: server.url, timeoutMs: 5000, connections: 1, clock });
    cleanup.push(() => transport.close());
    const controller = new AbortController();
    expect(await transport.send("[]", controller.signal)).toMatchObject({ kind: "delivered" });
    await until(() => clock.pendingTimers === 0, "the deadline cleared after the body was drained");
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
  });
});

