/**
 * 4. Memory.
 * a) Heap after 1,000,000 calls through MeteringCallbackHandler, its callbacks driven directly with
 *    the arguments LangChain passes (fresh objects each call), delivering through a real
 *    IngestClient to a loopback sink: settled heap (forced GC) sampled along the way.
 * b) The same through a real chat model invoke(), fewer calls.
 * c) An endpoint outage (503 to everything) under a steady 500 calls/s, with a bounded queue
 *    (maxQueueSize) and a spoolDir: heap sampled through the outage, then recovery and delivery.
 *
 *   npx tsx bench/memory.ts   BENCH_MEMORY_CALLS=1000000 BENCH_MEMORY_MODEL_CALLS=50000
 *                             BENCH_OUTAGE_S=20 (BENCH_OUTAGE_S=60 for the full minute)
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HumanMessage } from "@langchain/core/messages";
import { awaitAllCallbacks } from "@langchain/core/callbacks/promises";
import { IngestClient, MeteringCallbackHandler } from "../src/index";
import { Endpoint } from "./lib/endpoint";
import { type BenchResult, envNumber, isMain, printResult, settledHeap, sleep } from "./lib/env";
import { InstantChatModel, llmResult, realisticCallArgs } from "./lib/model";
import { renderResult } from "./lib/report";
import { fmt, mb, MB, type Row } from "./lib/stats";

const quietLogger = { warn: () => {}, error: (m: string) => console.error(m) };

/** One call as LangChain makes it: start with fresh messages and metadata, end with a fresh result. */
function oneCall(handler: MeteringCallbackHandler, args: ReturnType<typeof realisticCallArgs>): void {
  const runId = randomUUID();
  handler.handleChatModelStart(
    args.serialized,
    [[new HumanMessage("What is the capital of France?")]],
    runId,
    undefined,
    { ...args.extraParams },
    [],
    { ...args.metadata },
  );
  handler.handleLLMEnd(llmResult() as never, runId, undefined, undefined, {});
}

async function millionCalls(calls: number) {
  const endpoint = await Endpoint.start({ kind: "sink" });
  const handler = new MeteringCallbackHandler({ url: endpoint.url, logger: quietLogger });
  const client = handler.client as IngestClient;
  const args = realisticCallArgs();
  const chunk = 1000;
  let done = 0;
  const drive = async (n: number) => {
    for (let end = done + n; done < end; ) {
      for (let i = 0; i < chunk; i++) oneCall(handler, args);
      done += chunk;
      await new Promise((r) => setImmediate(r));
      // Back-pressure like a real process at full speed: never let the queue hit maxQueueSize.
      while ((client.stats().pending.memory + client.stats().pending.disk) > 4000) await sleep(1);
    }
  };
  await drive(20_000); // warm-up
  await handler.flush();
  const samples: Array<{ calls: number; heap: number }> = [];
  const base = await settledHeap();
  done = 0;
  samples.push({ calls: 0, heap: base });
  const step = calls / 5;
  const t0 = performance.now();
  while (done < calls) {
    await drive(step);
    await handler.flush();
    samples.push({ calls: done, heap: await settledHeap() });
  }
  const seconds = (performance.now() - t0) / 1000;
  const stats = client.stats();
  const delivered = (await endpoint.stats()).events;
  await handler.shutdown();
  await endpoint.close();
  return { samples, seconds, stats, delivered, handlerStats: handler.stats() };
}

async function modelCalls(calls: number) {
  const endpoint = await Endpoint.start({ kind: "sink" });
  const handler = new MeteringCallbackHandler({ url: endpoint.url, logger: quietLogger });
  const client = handler.client as IngestClient;
  const model = new InstantChatModel({ callbacks: [handler] });
  const config = { metadata: { subject: "acme", tier: "pro" } };
  for (let i = 0; i < 2000; i++) await model.invoke("hi", config);
  await handler.flush();
  const before = await settledHeap();
  for (let i = 0; i < calls; i++) {
    await model.invoke("What is the capital of France?", config);
    // An instant model never does I/O, so a tight loop would starve the client's sockets; a real call
    // turns the event loop. Yield every 50 calls.
    if (i % 50 === 49) await new Promise((r) => setImmediate(r));
  }
  await awaitAllCallbacks();
  await handler.flush();
  const after = await settledHeap();
  const stats = client.stats();
  const delivered = (await endpoint.stats()).events;
  await handler.shutdown();
  await endpoint.close();
  return { before, after, stats, delivered };
}

export async function outage(seconds: number, rate: number, maxQueueSize: number) {
  const endpoint = await Endpoint.start({ kind: "sink", track: true });
  const spoolDir = mkdtempSync(join(tmpdir(), "bench-spool-"));
  const handler = new MeteringCallbackHandler({ url: endpoint.url, logger: quietLogger, maxQueueSize, spoolDir });
  const client = handler.client as IngestClient;
  const args = realisticCallArgs();
  // Warm-up below maxQueueSize, so nothing is spooled (and no replay is running) when the outage starts.
  for (let k = 0; k < 5; k++) {
    for (let i = 0; i < 100; i++) oneCall(handler, args);
    await handler.flush();
  }
  await endpoint.reset();

  const spoolBytes = () => readdirSync(spoolDir).reduce((s, f) => s + statSync(join(spoolDir, f)).size, 0);
  const heapStart = await settledHeap();
  await endpoint.setDown(true);
  const samples: Array<{ t: number; heap: number; queue: number; inFlight: number; spool: number }> = [];
  let calls = 0;
  const t0 = performance.now();
  let nextSample = 0;
  while (true) {
    const elapsed = (performance.now() - t0) / 1000;
    if (elapsed >= seconds) break;
    const due = Math.floor(elapsed * rate);
    for (; calls < due; calls++) oneCall(handler, args);
    if (elapsed >= nextSample) {
      const s = client.stats();
      samples.push({ t: elapsed, heap: await settledHeap(), queue: s.pending.memory + s.pending.disk, inFlight: s.inFlight, spool: spoolBytes() });
      nextSample += Math.max(1, seconds / 20);
    }
    await sleep(5);
  }
  {
    const s = client.stats();
    samples.push({ t: seconds, heap: await settledHeap(), queue: s.pending.memory + s.pending.disk, inFlight: s.inFlight, spool: spoolBytes() });
  }
  await endpoint.setDown(false);
  const outageCalls = calls;
  // Traffic goes on after the endpoint is back (as it would): time until everything sent so far arrived.
  const r0 = performance.now();
  const deadline = r0 + 120_000;
  let unique = 0;
  // Done when every call issued more than one flush interval (+ margin) ago has its events delivered.
  const marks: Array<{ at: number; calls: number }> = [];
  while (performance.now() < deadline) {
    const now = performance.now();
    const due = Math.floor(((now - t0) / 1000) * rate);
    for (; calls < due; calls++) oneCall(handler, args);
    marks.push({ at: now, calls });
    while (marks.length > 1 && marks[1]!.at <= now - 1500) marks.shift();
    unique = (await endpoint.stats()).unique;
    const settled = marks[0]!.at <= now - 1500 ? marks[0]!.calls : 0;
    if (settled >= outageCalls && unique >= settled * 2) break;
    await sleep(20);
  }
  const recoverySeconds = (performance.now() - r0) / 1000;
  await handler.flush();
  unique = (await endpoint.stats()).unique;
  const expected = calls * 2;
  const heapAfter = await settledHeap();
  const stats = client.stats();
  await handler.shutdown();
  await endpoint.close();
  rmSync(spoolDir, { recursive: true, force: true });
  return { samples, heapStart, heapAfter, calls, outageCalls, expected, unique, recoverySeconds, stats };
}

export async function run(): Promise<BenchResult> {
  const calls = envNumber("BENCH_MEMORY_CALLS", 1_000_000);
  const model = envNumber("BENCH_MEMORY_MODEL_CALLS", 50_000);
  const outageS = envNumber("BENCH_OUTAGE_S", 20);
  const rate = 500;
  const maxQueueSize = 1000;

  const m = await millionCalls(calls);
  const mc = await modelCalls(model);
  const o = await outage(outageS, rate, maxQueueSize);

  const growth = m.samples.at(-1)!.heap - m.samples[0]!.heap;
  const millionRows: Row[] = m.samples.map((s) => ({
    calls: s.calls.toLocaleString("en-US"),
    "heap after GC": mb(s.heap),
    "growth since 0": mb(s.heap - m.samples[0]!.heap),
  }));
  const outageRows: Row[] = o.samples.map((s) => ({
    "outage s": fmt(s.t, 0),
    "heap after GC": mb(s.heap),
    "vs before outage": mb(s.heap - o.heapStart),
    "queued": String(s.queue),
    "in flight": String(s.inFlight),
    "spool file": mb(s.spool),
  }));
  const outageHeaps = o.samples.map((s) => s.heap);
  const half = outageHeaps.slice(Math.floor(outageHeaps.length / 2));
  const lateGrowth = Math.max(...half) - half[0]!;

  return {
    name: "memory",
    title: "4. Memory",
    params: { calls, modelCalls: model, outageSeconds: outageS, outageRate: rate, maxQueueSize },
    tables: [
      { caption: `a) ${calls.toLocaleString("en-US")} calls through the handler's callbacks (driven directly, real IngestClient to a loopback sink; ${fmt(calls / m.seconds, 0)} calls/s):`, rows: millionRows },
      {
        caption: `c) Endpoint outage (503 to every request) for ${outageS} s under ${rate} calls/s, maxQueueSize ${maxQueueSize}, spoolDir set:`,
        rows: outageRows,
      },
    ],
    targets: [
      { target: "heap growth under 10 MB over 1,000,000 calls", measured: `${mb(growth)} over ${calls.toLocaleString("en-US")} calls`, met: growth < 10 * MB && calls >= 1_000_000 },
      {
        target: "heap bounded during the outage (not growing with its length)",
        measured: `max ${mb(Math.max(...outageHeaps) - o.heapStart)} over the pre-outage heap; ${mb(lateGrowth)} growth over the second half`,
        met: lateGrowth < 2 * MB,
      },
    ],
    notes: [
      `a) ${m.delivered.toLocaleString("en-US")} events delivered (${(2 * (calls + 20_000)).toLocaleString("en-US")} expected with the warm-up); client dropped ${m.stats.dropped}, refused ${m.stats.refused}; handler: ${m.handlerStats.metered} metered, ${m.handlerStats.open} runs open at the end.`,
      `b) ${model.toLocaleString("en-US")} calls through a real chat model's invoke(): heap ${mb(mc.before)} → ${mb(mc.after)} (${mb(mc.after - mc.before)}); ` +
        `${mc.delivered.toLocaleString("en-US")} events delivered, ${mc.stats.dropped} dropped.`,
      `c) ${o.outageCalls.toLocaleString("en-US")} calls (${(2 * o.outageCalls).toLocaleString("en-US")} events) during the outage; with traffic going on at the same rate after it ended, ` +
        `every event sent so far (${o.unique.toLocaleString("en-US")} of ${o.expected.toLocaleString("en-US")} unique) had arrived ${fmt(o.recoverySeconds, 1)} s later ` +
        `(${o.unique >= o.expected ? "none lost" : `${o.expected - o.unique} missing at the 120 s cap`}); ` +
        `client: ${o.stats.pending.disk} still on disk, ${o.stats.delivered} delivered, ${o.stats.retries} retries, ${o.stats.dropped} dropped. Heap after recovery: ${mb(o.heapAfter - o.heapStart)} vs before.`,
      "c) Traffic is kept going after the outage, as in a live service: the spool is replayed right after a live batch succeeds. " +
        "An idle process catches up too, on the replay timer (5 s, doubling while the endpoint stays down), which this run does not wait for.",
    ],
  };
}

if (isMain(import.meta.url)) printResult(await run(), renderResult);
