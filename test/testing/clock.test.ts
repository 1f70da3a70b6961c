// TestClock and real I/O: time does not move while a request the library reported (Clock.io) is
// outside any server of this process, nor while the OpenMeter fake holds it to work on an answer;
// it moves for a request a server is sitting on, and after ioWaitMs when no server ever sees it.
import { createServer } from "node:http";
import { Pool } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import { IngestClient } from "langchain-openmeter";
import { startOpenMeterServer, TestClock } from "langchain-openmeter/testing";
import { makeEvents } from "../ingest/helpers";
import { listenOnLoopback } from "../support/http";

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

/** A promise and the function that settles it, with what happened in order. */
function later() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe("TestClock with requests under way", () => {
  it("a timer due inside advance() waits for a reported request that no server has received", async () => {
    const clock = new TestClock({ ioWaitMs: 60_000 });
    const order: string[] = [];
    const request = later();
    clock.io(request.promise.then(() => void order.push("answered")));
    clock.setTimeout(() => order.push("deadline"), 1000);
    setTimeout(request.resolve, 20); // the answer comes in real time, after many turns of the loop
    await clock.advance(5000);
    expect(order).toEqual(["answered", "deadline"]);
  });

  it("gives up waiting after ioWaitMs of real time: a request nobody in this process will answer", async () => {
    const clock = new TestClock({ ioWaitMs: 10 });
    let fired = false;
    clock.io(new Promise(() => {}));
    clock.setTimeout(() => (fired = true), 1000);
    await clock.advance(1000);
    expect(fired).toBe(true);
  });

  it("moves for a request a server of this process has received and sits on (a hang the client's deadline must end)", async () => {
    const clock = new TestClock({ ioWaitMs: 60_000 });
    const server = createServer(() => {}); // never answers
    const { origin, close } = await listenOnLoopback(server);
    const pool = new Pool(origin);
    const aborter = new AbortController();
    cleanup.push(close, () => pool.destroy());
    const request = pool.request({ path: "/", method: "GET", signal: aborter.signal });
    request.catch(() => undefined);
    clock.io(request);
    let fired = false;
    clock.setTimeout(() => {
      fired = true;
      aborter.abort();
    }, 1000);
    await clock.advance(1000);
    expect(fired).toBe(true);
    await expect(request).rejects.toThrow();
  });

  it("hold(): no timer fires while held work is pending", async () => {
    const clock = new TestClock();
    const order: string[] = [];
    const work = later();
    clock.hold(work.promise.then(() => void order.push("worked")));
    clock.setTimeout(() => order.push("timer"), 10);
    setTimeout(work.resolve, 20);
    await clock.advance(10);
    expect(order).toEqual(["worked", "timer"]);
  });
});

describe("a client's deadline measures the server, not the machine", () => {
  it("the ingest client reports each request it sends to its clock (Clock.io), until the answer's headers", async () => {
    const reported: Array<Promise<unknown>> = [];
    class CountingClock extends TestClock {
      override io(request: Promise<unknown>): void {
        reported.push(request);
        super.io(request);
      }
    }
    const clock = new CountingClock();
    const server = await startOpenMeterServer({ clock });
    const client = new IngestClient({ url: server.url, clock, maxBatchSize: 10, flushIntervalMs: 10, handleSignals: false, flushOnExit: false });
    cleanup.push(
      () => server.close(),
      () => clock.advanceUntil(client.shutdown()),
    );
    client.enqueue(makeEvents(25));
    await clock.advanceUntil(client.flush());
    expect(server.requests).toHaveLength(3);
    expect(reported).toHaveLength(3);
    await expect(Promise.all(reported)).resolves.toHaveLength(3);
  });


  it("a 1.5 MB batch under a 100 ms deadline, the clock jumped a minute at once: delivered once, not timed out and sent again", async () => {
    const clock = new TestClock();
    const server = await startOpenMeterServer({ clock });
    const client = new IngestClient({
      url: server.url,
      clock,
      timeoutMs: 100,
      maxBatchSize: 5000,
      flushIntervalMs: 10,
      retry: { retries: 3, minDelayMs: 1, maxDelayMs: 1000 },
      handleSignals: false,
      flushOnExit: false,
    });
    cleanup.push(
      () => server.close(),
      () => clock.advanceUntil(client.shutdown()),
    );
    const events = makeEvents(5000).map((e) => ({ ...e, data: { ...e.data, padding: "x".repeat(200) } }));
    client.enqueue(events);
    // One jump: the upload takes many turns of the event loop, and the deadline is due 100 ms in.
    await clock.advance(60_000);
    expect(server.requests.map((r) => r.outcome)).toEqual(["accepted"]);
    expect(server.events).toHaveLength(5000);
    expect(client.stats()).toMatchObject({ delivered: 5000, retries: 0 });
  });
});
