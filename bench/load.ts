/**
 * 5. Under load: a steady rate of model calls (default 500/s for 10 s) against an endpoint with
 * 20 ms latency. Samples LangChain's global callback queue (size + pending), the heap, and the
 * delay from each call's end to its events' arrival at the endpoint, for a do-nothing handler
 * (the floor), MeteringCallbackHandler, and the naive await-fetch handler.
 *
 *   npx tsx bench/load.ts          BENCH_LOAD_RATE=500 BENCH_LOAD_SECONDS=10 BENCH_NAIVE_GRACE_S=3
 */
import { randomUUID } from "node:crypto";
import { awaitAllCallbacks } from "@langchain/core/callbacks/promises";
import type { BaseCallbackHandler } from "@langchain/core/callbacks/base";
import { MeteringCallbackHandler } from "../src/index";
import { Endpoint } from "./lib/endpoint";
import { type BenchResult, envNumber, isMain, printResult, settledHeap, sleep, wallNow } from "./lib/env";
import { NaiveFetchHandler, NoopHandler } from "./lib/handlers";
import { callbackQueue, queueDepth } from "./lib/lc-queue";
import { InstantChatModel } from "./lib/model";
import { renderResult } from "./lib/report";
import { fmt, mb, MB, summarize, type Row } from "./lib/stats";

interface LoadOutcome {
  name: string;
  calls: number;
  depth: ReturnType<typeof summarize>;
  depthAtEnd: number;
  heapMax: number;
  heapGrowth: number;
  delay?: ReturnType<typeof summarize>;
  timeDelay?: ReturnType<typeof summarize>;
  delivered: number;
  expected: number;
  lateCalls: number;
}

async function drive(
  name: string,
  handler: BaseCallbackHandler | undefined,
  endpoint: Endpoint,
  rate: number,
  seconds: number,
  settle: () => Promise<void>,
): Promise<LoadOutcome> {
  const model = new InstantChatModel(handler ? { callbacks: [handler] } : {});
  // Short warm-up at the same rate, then measure.
  for (let i = 0; i < 200; i++) await model.invoke("hi", { metadata: { subject: "acme" } });
  await awaitAllCallbacks();
  if (handler instanceof MeteringCallbackHandler) await handler.flush();
  await endpoint.reset();
  await endpoint.setTrack(true);

  const heapStart = await settledHeap();
  const ends = new Map<string, number>();
  const depths: number[] = [];
  let heapMax = 0;
  const sampler = setInterval(() => {
    depths.push(queueDepth());
    heapMax = Math.max(heapMax, process.memoryUsage().heapUsed);
  }, 10);

  const total = Math.round(rate * seconds);
  const inflight = new Set<Promise<unknown>>();
  let issued = 0;
  let lateCalls = 0;
  const start = performance.now();
  while (issued < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate));
    if (due - issued > rate / 20) lateCalls += due - issued; // the scheduler fell behind by > 50 ms
    for (; issued < due; issued++) {
      const runId = randomUUID();
      const p = model.invoke("hi", { runId, metadata: { subject: "acme", tier: "pro" } }).then(() => {
        ends.set(runId, wallNow());
        inflight.delete(p);
      });
      inflight.add(p);
    }
    await sleep(2);
  }
  await Promise.all(inflight);
  const depthAtEnd = queueDepth();
  await settle();
  clearInterval(sampler);
  await endpoint.setTrack(false);

  const receipts = await endpoint.receipts();
  const delays: number[] = [];
  const timeDelays: number[] = [];
  for (const [id, at, time] of receipts) {
    const end = ends.get(id.replace(/-(input|output)$/, ""));
    if (end !== undefined) delays.push(at - end);
    if (time) timeDelays.push(at - Date.parse(time));
  }
  const heapEnd = await settledHeap();
  return {
    name,
    calls: total,
    depth: summarize(depths),
    depthAtEnd,
    heapMax,
    heapGrowth: heapEnd - heapStart,
    delay: delays.length ? summarize(delays) : undefined,
    timeDelay: timeDelays.length ? summarize(timeDelays) : undefined,
    delivered: receipts.length,
    expected: handler instanceof NoopHandler ? 0 : 2 * total,
    lateCalls,
  };
}

export async function run(): Promise<BenchResult> {
  const rate = envNumber("BENCH_LOAD_RATE", 500);
  const seconds = envNumber("BENCH_LOAD_SECONDS", 10);
  const graceS = envNumber("BENCH_NAIVE_GRACE_S", 3);
  const delayMs = 20;
  const endpoint = await Endpoint.start({ kind: "openmeter", delayMs });

  const outcomes: LoadOutcome[] = [];
  outcomes.push(await drive("do-nothing handler", new NoopHandler(), endpoint, rate, seconds, () => awaitAllCallbacks()));

  const metering = new MeteringCallbackHandler({ url: endpoint.url });
  outcomes.push(await drive("MeteringCallbackHandler", metering, endpoint, rate, seconds, () => metering.flush()));
  await metering.shutdown();

  // Naive last: its backlog cannot drain in any reasonable time, so it gets a grace period and is then cleared.
  let drainedInGrace = false;
  const naive = new NaiveFetchHandler(endpoint.url);
  const naiveOutcome = await drive("naive await-fetch handler", naive, endpoint, rate, seconds, async () => {
    await Promise.race([callbackQueue.onIdle(), sleep(graceS * 1000)]);
    drainedInGrace = queueDepth() === 0;
  });
  const leftInQueue = queueDepth();
  callbackQueue.clear();
  outcomes.push(naiveOutcome);
  await awaitAllCallbacks();
  await endpoint.close();

  const rows: Row[] = outcomes.map((o) => ({
    handler: o.name,
    calls: String(o.calls),
    "queue depth median": fmt(o.depth.median, 0),
    "queue depth p99": fmt(o.depth.p99, 0),
    "queue depth max": fmt(o.depth.max, 0),
    "end→delivered median": o.delay ? `${fmt(o.delay.median)} ms` : "",
    "end→delivered p99": o.delay ? `${fmt(o.delay.p99)} ms` : "",
    "end→delivered max": o.delay ? `${fmt(o.delay.max)} ms` : "",
    "delivered": o.expected ? `${o.delivered}/${o.expected}` : "",
    "heap max": mb(o.heapMax),
    "heap growth (after GC)": mb(o.heapGrowth),
  }));
  const ours = outcomes[1]!;
  const naiveO = outcomes[2]!;
  const late = outcomes.filter((o) => o.lateCalls > 0).map((o) => `${o.name}: ${o.lateCalls}`);
  return {
    name: "load",
    title: "5. Under load: LangChain's callback queue",
    params: { rate, seconds, endpointDelayMs: delayMs, naiveGraceSeconds: graceS },
    tables: [
      {
        caption:
          `${rate} calls/s for ${seconds} s, calls issued concurrently on schedule. Queue depth is LangChain's global callback queue ` +
          "(p-queue `size + pending`, sampled every 10 ms). end→delivered: from `invoke()` resolving to the endpoint receiving the event.",
        rows,
      },
    ],
    targets: [
      {
        target: `LangChain's callback queue under 10 pending at ${rate} calls/s (MeteringCallbackHandler)`,
        measured: `p99 ${fmt(ours.depth.p99, 0)}, max ${fmt(ours.depth.max, 0)}`,
        met: ours.depth.max < 10,
      },
    ],
    notes: [
      `MeteringCallbackHandler's event \`time\` → received: median ${fmt(ours.timeDelay?.median ?? NaN)} ms, p99 ${fmt(ours.timeDelay?.p99 ?? NaN)} ms ` +
        "(batches of 100 fill in ~100 ms at this rate, plus the 20 ms round-trip).",
      `Naive handler: ${naiveO.depthAtEnd} callbacks queued when the last call returned; ${drainedInGrace ? "drained" : `still ${leftInQueue} queued`} ` +
        `${graceS} s later (then cleared). It delivers at most one call per round-trip (~${Math.round(1000 / delayMs)} calls/s), so the queue ` +
        `and the delay grow without bound: ${naiveO.delivered}/${naiveO.expected} events delivered, the last after ${fmt((naiveO.delay?.max ?? NaN) / 1000, 1)} s. ` +
        "Every other handler in the process (tracing included) waits behind it.",
      `Naive handler's own \`time\` (stamped in handleLLMEnd) → received: median ${fmt(naiveO.timeDelay?.median ?? NaN)} ms: stamped when the ` +
        "callback finally ran, it hides the queueing delay from the call end.",
      ...(late.length ? [`The load generator fell behind schedule by more than 50 ms for some calls (${late.join(", ")}).`] : []),
      "The naive handler's heap figures are taken before its backlog was cleared (max) and after (growth): the backlog itself is " +
        `what grows, ${fmt((naiveO.heapMax - ours.heapMax) / MB, 1)} MB more at peak than MeteringCallbackHandler in this window.`,
    ],
  };
}

if (isMain(import.meta.url)) printResult(await run(), renderResult);
