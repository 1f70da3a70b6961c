// What the client says, and to whom: onError or the logger, warnings once, reasons summed up, the
// transport's answer boundaries. Written against the survivors of the 05:21 mutation run (docs/mutation.md).
import diagnostics from "node:diagnostics_channel";
import { getEventListeners } from "node:events";
import type { ServerResponse } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { IngestClient, type IngestOptions } from "langchain-openmeter";
import { TestClock } from "langchain-openmeter/testing";
import { Transport } from "../../src/ingest/transport";
import { until } from "../support/clocked";
import { makeEvents, recorder, startClient, startPlainServer, tempDir } from "./helpers";

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
    expect(rec.warnings).toEqual([]); // refused at enqueue, never lost in delivery: not a warning
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

  it("stats() says closed only once shutdown was called", async () => {
    const { client, clock } = await setup((_req, res) => res.writeHead(204).end());
    expect(client.stats().state).toBe("healthy");
    await clock.advanceUntil(client.shutdown());
    expect(client.stats().state).toBe("closed");
  });
});

describe("the spool's warnings", () => {
  it("a spool directory with less free space than maxSpoolBytes is warned about at construction; one with enough is not", async () => {
    const spool = tempDir("om-free-");
    cleanup.push(spool.remove);
    const { rec } = await setup((_req, res) => res.writeHead(204).end(), { spoolDir: spool.dir, maxSpoolBytes: 2 ** 52 });
    expect(rec.warnings).toEqual([expect.stringMatching(new RegExp(`^spoolDir ${spool.dir} has \\d+ MiB free, less than maxSpoolBytes \\(${2 ** 32} MiB\\): an outage may fill it$`))]);
    const roomy = await setup((_req, res) => res.writeHead(204).end(), { spoolDir: spool.dir, maxSpoolBytes: 65_536 });
    expect(roomy.rec.warnings.filter((w) => w.includes("free"))).toEqual([]);
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

