/**
 * 3. Heap and disk.
 * a) Heap after 1,000,000 calls through MeteringCallbackHandler, its callbacks driven directly with
 *    the arguments LangChain passes (fresh objects each call), delivering through a real
 *    IngestClient to a loopback sink, without a spool and with spoolDir: settled heap (forced GC)
 *    sampled along the way; with the spool also its bytes on disk (every 1,000 calls, for the peak;
 *    after the last flush and after shutdown, file by file: back to zero).
 * b) The same through a real chat model invoke(), fewer calls.
 * c) An endpoint outage (503 to everything) under a steady 500 calls/s, with a bounded queue
 *    (maxQueueSize) and a spoolDir: heap sampled through the outage, then recovery and delivery.
 *
 *   npx tsx bench/memory.ts   BENCH_MEMORY_CALLS=1000000 BENCH_MEMORY_MODEL_CALLS=50000
 *                             BENCH_OUTAGE_S=20 (BENCH_OUTAGE_S=60 for the full minute)
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HumanMessage } from "@langchain/core/messages";
import { awaitAllCallbacks } from "@langchain/core/callbacks/promises";
import { IngestClient, type IngestStats, MeteringCallbackHandler } from "../src/index";
import { dirBytes, type DiskListing, listDir } from "./lib/disk";
import { Endpoint } from "./lib/endpoint";
import { type BenchResult, envNumber, isMain, printResult, settledHeap, sleep } from "./lib/env";
import { InstantChatModel, llmResult, realisticCallArgs } from "./lib/model";
import { renderResult } from "./lib/report";
import { fmt, mb, MB, type Row } from "./lib/stats";

/** Events the client still holds (memory and disk, those in requests under way included). */
const pendingEvents = (client: IngestClient) => {
  const { memory, disk } = client.stats().pending;
  return memory + disk;
};

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

interface MillionRun {
  spool: boolean;
  samples: Array<{ calls: number; heap: number; disk: number; segments: number }>;
  seconds: number;
  /** Most bytes of segments (and ledgers) on disk at any sample, and the most of all files. */
  peakSegmentBytes: number;
  peakBytes: number;
  /** The spool after the last flush (deletions settled), and after shutdown. */
  afterFlush?: DiskListing;
  afterShutdown?: DiskListing;
  stats: IngestStats;
  delivered: number;
  handlerStats: ReturnType<MeteringCallbackHandler["stats"]>;
}

async function millionCalls(calls: number, warmup: number, spool: boolean): Promise<MillionRun> {
  const endpoint = await Endpoint.start({ kind: "sink" });
  const spoolDir = spool ? mkdtempSync(join(tmpdir(), "bench-memory-spool-")) : undefined;
  const handler = new MeteringCallbackHandler({ url: endpoint.url, logger: quietLogger, ...(spoolDir ? { spoolDir } : {}) });
  const client = handler.client as IngestClient;
  const args = realisticCallArgs();
  const chunk = 1000;
  let done = 0;
  let peakSegmentBytes = 0;
  let peakBytes = 0;
  const sampleDisk = () => {
    if (!spoolDir) return;
    const l = listDir(spoolDir);
    peakSegmentBytes = Math.max(peakSegmentBytes, l.segmentBytes);
    peakBytes = Math.max(peakBytes, l.bytes);
  };
  const drive = async (n: number) => {
    for (let end = done + n; done < end; ) {
      for (let i = 0; i < chunk; i++) oneCall(handler, args);
      done += chunk;
      sampleDisk();
      await new Promise((r) => setImmediate(r));
      // Back-pressure like a real process at full speed: a few batches ahead of the sender, no more.
      while (pendingEvents(client) > 4000) await sleep(1);
    }
  };
  await drive(warmup); // JIT, pools, the first segments: the samples then show only what the calls leave behind
  await handler.flush();
  const samples: MillionRun["samples"] = [];
  const base = await settledHeap();
  done = 0;
  const disk = () => (spoolDir ? listDir(spoolDir) : { bytes: 0, segmentBytes: 0 });
  samples.push({ calls: 0, heap: base, disk: disk().bytes, segments: disk().segmentBytes });
  const step = calls / 5;
  const t0 = performance.now();
  while (done < calls) {
    await drive(step);
    await handler.flush();
    const heap = await settledHeap();
    const d = disk();
    samples.push({ calls: done, heap, disk: d.bytes, segments: d.segmentBytes });
  }
  const seconds = (performance.now() - t0) / 1000;
  let afterFlush: DiskListing | undefined;
  if (spoolDir) {
    // A delivered segment is unlinked in the background: give the deletions a moment to land.
    for (let i = 0; i < 100 && listDir(spoolDir).segmentBytes > 0; i++) await sleep(10);
    afterFlush = listDir(spoolDir);
  }
  const stats = client.stats();
  const delivered = (await endpoint.stats()).events;
  const handlerStats = handler.stats();
  await handler.shutdown();
  const afterShutdown = spoolDir ? listDir(spoolDir) : undefined;
  await endpoint.close();
  if (spoolDir) rmSync(spoolDir, { recursive: true, force: true });
  return { spool, samples, seconds, peakSegmentBytes, peakBytes, afterFlush, afterShutdown, stats, delivered, handlerStats };
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

  const spoolBytes = () => dirBytes(spoolDir);
  const heapStart = await settledHeap();
  await endpoint.setDown(true);
  const samples: Array<{ t: number; heap: number; memory: number; disk: number; inFlight: number; spool: number }> = [];
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
      samples.push({ t: elapsed, heap: await settledHeap(), memory: s.pending.memory, disk: s.pending.disk, inFlight: s.inFlight, spool: spoolBytes() });
      nextSample += Math.max(1, seconds / 20);
    }
    await sleep(5);
  }
  {
    const s = client.stats();
    samples.push({ t: seconds, heap: await settledHeap(), memory: s.pending.memory, disk: s.pending.disk, inFlight: s.inFlight, spool: spoolBytes() });
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
  const peakSpool = Math.max(...samples.map((x) => x.spool));
  await handler.shutdown();
  const spoolLeft = listDir(spoolDir);
  await endpoint.close();
  rmSync(spoolDir, { recursive: true, force: true });
  return { samples, heapStart, heapAfter, calls, outageCalls, expected, unique, recoverySeconds, stats, peakSpool, spoolLeft };
}

/** The files left, for the notes: "none", or each with its size. */
const describeFiles = (l: DiskListing | undefined) =>
  !l || l.files.length === 0 ? "no files" : l.files.map((f) => `${f.path} (${f.bytes} B)`).join(", ");

export async function run(): Promise<BenchResult> {
  const calls = envNumber("BENCH_MEMORY_CALLS", 1_000_000);
  const warmup = envNumber("BENCH_MEMORY_WARMUP", 100_000);
  const model = envNumber("BENCH_MEMORY_MODEL_CALLS", 50_000);
  const outageS = envNumber("BENCH_OUTAGE_S", 20);
  const rate = 500;
  const maxQueueSize = 1000;

  const runs = [await millionCalls(calls, warmup, false), await millionCalls(calls, warmup, true)];
  const [mem, disk] = runs as [MillionRun, MillionRun];
  const mc = await modelCalls(model);
  const o = await outage(outageS, rate, maxQueueSize);

  const growth = (r: MillionRun) => r.samples.at(-1)!.heap - r.samples[0]!.heap;
  /** The largest rise of the settled heap between any two samples: growth that a final sample could hide. */
  const worstRise = (r: MillionRun) => Math.max(...r.samples.map((x) => x.heap - r.samples[0]!.heap));
  /** Least-squares slope of the settled heap over the calls, bytes per call: a steady leak, however small, shows here. */
  const slope = (r: MillionRun) => {
    const xs = r.samples.map((x) => x.calls);
    const ys = r.samples.map((x) => x.heap);
    const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
    const my = ys.reduce((a, b) => a + b, 0) / ys.length;
    let num = 0;
    let den = 0;
    for (let i = 0; i < xs.length; i++) {
      num += (xs[i]! - mx) * (ys[i]! - my);
      den += (xs[i]! - mx) ** 2;
    }
    return num / den;
  };
  /** Flat: less than a quarter of a byte per call (250 kB per million calls), beyond what forced GC leaves as noise. */
  const FLAT = 0.25;
  const millionRows: Row[] = mem.samples.map((x, i) => {
    const d = disk.samples[i]!;
    return {
      calls: x.calls.toLocaleString("en-US"),
      "no spool: heap after GC": mb(x.heap),
      "no spool: growth since 0": mb(x.heap - mem.samples[0]!.heap),
      "spoolDir: heap after GC": mb(d.heap),
      "spoolDir: growth since 0": mb(d.heap - disk.samples[0]!.heap),
      "spoolDir: segment bytes after flush": d.segments.toLocaleString("en-US"),
      "spoolDir: all files": `${d.disk.toLocaleString("en-US")} B`,
    };
  });
  const outageRows: Row[] = o.samples.map((x) => ({
    "outage s": fmt(x.t, 0),
    "heap after GC": mb(x.heap),
    "vs before outage": mb(x.heap - o.heapStart),
    "pending on disk": String(x.disk),
    "held in memory only": String(x.memory),
    "in flight": String(x.inFlight),
    "spool on disk": mb(x.spool),
  }));
  const outageHeaps = o.samples.map((x) => x.heap);
  const half = outageHeaps.slice(Math.floor(outageHeaps.length / 2));
  const lateGrowth = Math.max(...half) - half[0]!;
  const million = calls.toLocaleString("en-US");
  const diskZero = disk.afterFlush !== undefined && disk.afterFlush.segmentBytes === 0 && (disk.afterShutdown?.bytes ?? 0) === 0;

  return {
    name: "memory",
    title: "3. Heap and disk",
    params: { calls, warmup, modelCalls: model, outageSeconds: outageS, outageRate: rate, maxQueueSize },
    tables: [
      {
        caption:
          `a) ${million} calls through the handler's callbacks (driven directly with the arguments LangChain passes, fresh objects each call; ` +
          `real IngestClient to a loopback sink), without a spool (${fmt(calls / mem.seconds, 0)} calls/s) and with spoolDir (${fmt(calls / disk.seconds, 0)} calls/s). ` +
          "Heap after forced GC, and the spool directory's bytes, after a flush every fifth of the way:",
        rows: millionRows,
      },
      {
        caption: `c) Endpoint outage (503 to every request) for ${outageS} s under ${rate} calls/s, maxQueueSize ${maxQueueSize}, spoolDir set:`,
        rows: outageRows,
      },
    ],
    targets: [
      {
        target: `heap flat over ${million} calls without a spool (settled heap's slope under ${FLAT} B/call)`,
        measured: `${fmt(slope(mem), 2)} B/call (least squares over the ${mem.samples.length} samples); growth ${mb(growth(mem))}, largest rise ${mb(worstRise(mem))}`,
        met: slope(mem) < FLAT && calls >= 1_000_000,
      },
      {
        target: `heap flat over ${million} calls with spoolDir (settled heap's slope under ${FLAT} B/call)`,
        measured: `${fmt(slope(disk), 2)} B/call (least squares over the ${disk.samples.length} samples); growth ${mb(growth(disk))}, largest rise ${mb(worstRise(disk))}`,
        met: slope(disk) < FLAT && calls >= 1_000_000,
      },
      {
        target: "spool back to zero bytes after delivery",
        measured:
          `${disk.afterFlush?.segmentBytes ?? "?"} bytes of segments after the last flush (${disk.afterFlush?.bytes ?? "?"} B in all: ${describeFiles(disk.afterFlush)}); ` +
          `${disk.afterShutdown?.bytes ?? "?"} B after shutdown (${describeFiles(disk.afterShutdown)}); peak ${mb(disk.peakBytes)}`,
        met: diskZero,
      },
      {
        target: "heap bounded during the outage (not growing with its length)",
        measured: `max ${mb(Math.max(...outageHeaps) - o.heapStart)} over the pre-outage heap; ${mb(lateGrowth)} growth over the second half`,
        met: lateGrowth < 2 * MB,
      },
    ],
    notes: [
      ...runs.map(
        (r) =>
          `a) ${r.spool ? "spoolDir" : "no spool"}: ${r.delivered.toLocaleString("en-US")} events delivered (${(2 * (calls + warmup)).toLocaleString("en-US")} expected with the warm-up); ` +
          `client: ${r.stats.delivered.toLocaleString("en-US")} delivered, ${r.stats.dropped} dropped, ${r.stats.refused} refused, ${r.stats.pending.memory + r.stats.pending.disk} pending; ` +
          `handler: ${r.handlerStats.metered.toLocaleString("en-US")} metered, ${r.handlerStats.open} runs open at the end.`,
      ),
      ...runs.map((r) => {
        const requests = (r.stats.batches * calls) / (calls + warmup);
        return (
          `a) ${r.spool ? "spoolDir" : "no spool"}: after a warm-up of ${warmup.toLocaleString("en-US")} calls, the settled heap grew ` +
          `${fmt(slope(r), 2)} bytes per call by least squares, ${fmt((slope(r) * calls) / requests, 0)} bytes per request sent (${fmt(requests, 0)} requests).`
        );
      }),
      `a) spoolDir: peak disk use ${mb(disk.peakBytes)} (${mb(disk.peakSegmentBytes)} of segments and ledgers), sampled every 1,000 calls; the producer is held ` +
        "to about 4,000 pending events (a real process at full speed, a few batches ahead of the sender), so this is the steady-state footprint: " +
        "segments of 1 MiB, each deleted once all its events are acknowledged. An outage grows it (c), up to maxSpoolBytes.",
      `b) ${model.toLocaleString("en-US")} calls through a real chat model's invoke() (no spool): heap ${mb(mc.before)} → ${mb(mc.after)} (${mb(mc.after - mc.before)}); ` +
        `${mc.delivered.toLocaleString("en-US")} events delivered, ${mc.stats.dropped} dropped.`,
      `c) ${o.outageCalls.toLocaleString("en-US")} calls (${(2 * o.outageCalls).toLocaleString("en-US")} events) during the outage, every one written to the spool (peak ${mb(o.peakSpool)}); ` +
        `with traffic going on at the same rate after it ended, every event sent so far (${o.unique.toLocaleString("en-US")} of ${o.expected.toLocaleString("en-US")} unique) had arrived ${fmt(o.recoverySeconds, 1)} s later ` +
        `(${o.unique >= o.expected ? "none lost" : `${o.expected - o.unique} missing at the 120 s cap`}); ` +
        `client: ${o.stats.delivered.toLocaleString("en-US")} delivered in ${o.stats.batches} requests, ${o.stats.retries} retries, ${o.stats.dropped} dropped. ` +
        `Heap after recovery: ${mb(o.heapAfter - o.heapStart)} vs before; spool after shutdown: ${o.spoolLeft.bytes} B (${describeFiles(o.spoolLeft)}).`,
      "c) During the outage the requests under way are retried (up to 10 times, the wait doubling from 200 ms with jitter) while every new " +
        "event waits on disk; the log's in-memory cache stays within maxQueueSize. Recovery is timed from the endpoint's return until every event sent so far had arrived.",
    ],
  };
}

if (isMain(import.meta.url)) printResult(await run(), renderResult);
