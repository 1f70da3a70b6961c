/**
 * 1. Added latency per model call.
 *
 * a) `model.invoke()` of an instant chat model that reports usage, the handler on the model:
 *    bare; with a do-nothing handler (LangChain's own cost of running any handler: the floor); with
 *    MeteringCallbackHandler without a spool (memory queue) and with `spoolDir` (every call's events
 *    written to the write-ahead log before the callback returns); and the tutorials' naive handler
 *    (`await fetch()` inside handleLLMEnd), last and alone.
 * b) A small chain (`ChatPromptTemplate | model`) invoked with the handler in the invoke config, so
 *    LangChain reports the chain runs to it (MeteringCallbackHandler watches them for shutdown's
 *    drain): with a do-nothing handler that sets `ignoreChain: true` (the floor of a handler that
 *    asks for model runs only), with one that implements the chain hooks as no-ops (LangChain's own
 *    price of reporting chain runs), and with MeteringCallbackHandler.
 *
 * Every variant runs in each of many short rounds, in a rotating order, so drift on a noisy box hits
 * them alike; a target is judged on the median of the per-round differences of medians.
 * Between rounds (untimed) each metering handler is flushed, so every round starts from an empty queue.
 *
 *   npx tsx bench/latency.ts          BENCH_LATENCY_CALLS=20000 BENCH_NAIVE_CALLS=500
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { awaitAllCallbacks } from "@langchain/core/callbacks/promises";
import type { BaseCallbackHandler } from "@langchain/core/callbacks/base";
import { ChatPromptTemplate } from "@langchain/core/prompts";
import { MeteringCallbackHandler } from "../src/index";
import { listDir } from "./lib/disk";
import { Endpoint } from "./lib/endpoint";
import { type BenchResult, envNumber, isMain, printResult } from "./lib/env";
import { NaiveFetchHandler, NoopChainHandler, NoopHandler } from "./lib/handlers";
import { queueDepth } from "./lib/lc-queue";
import { InstantChatModel } from "./lib/model";
import { renderResult } from "./lib/report";
import { fmt, ratio, summarize, type Row, type Summary } from "./lib/stats";

const INPUT = "What is the capital of France?";
const METADATA = { subject: "acme", tier: "pro" };

interface Variant {
  name: string;
  group: "model.invoke" | "chain.invoke";
  call: () => Promise<unknown>;
  /** Flushed between rounds, untimed. */
  handler?: MeteringCallbackHandler;
  samples: number[];
  roundMedians: number[];
  /** Per round: (loop + callback drain) / calls, µs. */
  roundE2e: number[];
  loopMs: number;
  drainMs: number;
  calls: number;
}

function variant(name: string, group: Variant["group"], call: () => Promise<unknown>, handler?: MeteringCallbackHandler): Variant {
  return { name, group, call, handler, samples: [], roundMedians: [], roundE2e: [], loopMs: 0, drainMs: 0, calls: 0 };
}

function reset(v: Variant): void {
  Object.assign(v, { samples: [], roundMedians: [], roundE2e: [], loopMs: 0, drainMs: 0, calls: 0 });
}

/** `n` sequential calls, each timed; the time between two calls goes to the later one (nothing is left out). */
async function timedCalls(v: Variant, n: number): Promise<void> {
  const first = v.samples.length;
  const start = performance.now();
  let t0 = start;
  for (let i = 0; i < n; i++) {
    await v.call();
    const t1 = performance.now();
    v.samples.push((t1 - t0) * 1000);
    t0 = t1;
  }
  const loopEnd = performance.now();
  await awaitAllCallbacks();
  const end = performance.now();
  v.loopMs += loopEnd - start;
  v.drainMs += end - loopEnd;
  v.calls += n;
  v.roundMedians.push(summarize(v.samples.slice(first)).median);
  v.roundE2e.push(((end - start) / n) * 1000);
}

/** Per-round differences a − b: their median and middle half, and the ratio of the pooled medians. */
function paired(a: Variant, b: Variant) {
  const diffs = a.roundMedians.map((m, r) => m - b.roundMedians[r]!);
  const e2e = a.roundE2e.map((m, r) => m - b.roundE2e[r]!);
  return { diff: summarize(diffs), e2e: summarize(e2e), ratio: summarize(a.samples).median / summarize(b.samples).median };
}

const describeDiff = (d: Summary, rounds: number) => `${fmt(d.median)} µs (median of ${rounds} paired rounds; middle half ${fmt(d.p25)} to ${fmt(d.p75)} µs)`;

export async function run(): Promise<BenchResult> {
  const calls = envNumber("BENCH_LATENCY_CALLS", 20_000);
  const naiveCalls = envNumber("BENCH_NAIVE_CALLS", 500);
  const warmup = envNumber("BENCH_LATENCY_WARMUP", 2_000);
  const rounds = 50;
  const delayMs = 20;

  const endpoint = await Endpoint.start({ kind: "openmeter", delayMs });
  const spoolDir = mkdtempSync(join(tmpdir(), "bench-latency-spool-"));
  const logger = { warn: console.warn, error: console.error };
  const memory = new MeteringCallbackHandler({ url: endpoint.url, logger });
  const spooled = new MeteringCallbackHandler({ url: endpoint.url, logger, spoolDir });
  const inChain = new MeteringCallbackHandler({ url: endpoint.url, logger });
  // What the handler cost before it watched chains: the same handler told to ignore them (bench only, not an option).
  const inChainBlind = new MeteringCallbackHandler({ url: endpoint.url, logger });
  inChainBlind.ignoreChain = true;

  const onModel = (handler?: BaseCallbackHandler) => {
    const model = new InstantChatModel(handler ? { callbacks: [handler] } : {});
    const config = { metadata: METADATA };
    return () => model.invoke(INPUT, config);
  };
  // The handler rides in the invoke config, as LangChain's docs show for chains and graphs.
  const chain = ChatPromptTemplate.fromMessages([["human", "{question}"]]).pipe(new InstantChatModel());
  const onChain = (handler: BaseCallbackHandler) => {
    const config = { callbacks: [handler], metadata: METADATA };
    return () => chain.invoke({ question: INPUT }, config);
  };

  const variants = [
    variant("bare", "model.invoke", onModel()),
    variant("do-nothing handler", "model.invoke", onModel(new NoopHandler())),
    variant("MeteringCallbackHandler, no spool", "model.invoke", onModel(memory), memory),
    variant("MeteringCallbackHandler, spoolDir", "model.invoke", onModel(spooled), spooled),
    variant("do-nothing handler, ignoreChain: true", "chain.invoke", onChain(new NoopHandler({ ignoreChain: true }))),
    variant("do-nothing handler with no-op chain hooks", "chain.invoke", onChain(new NoopChainHandler())),
    variant("MeteringCallbackHandler (watches chains)", "chain.invoke", onChain(inChain), inChain),
    variant("MeteringCallbackHandler with ignoreChain forced on", "chain.invoke", onChain(inChainBlind), inChainBlind),
  ];
  const [bare, noop, ours, oursSpool, chainIgnore, chainNoop, chainOurs, chainBlind] = variants as [
    Variant, Variant, Variant, Variant, Variant, Variant, Variant, Variant,
  ];
  const flushAll = async () => {
    for (const v of variants) await v.handler?.flush();
  };

  // Warm-up: JIT, connection pool, endpoint, the spool's first segment.
  for (const v of variants) await timedCalls(v, warmup);
  await flushAll();
  variants.forEach(reset);
  await endpoint.reset();

  const perRound = Math.ceil(calls / rounds);
  let spoolPeak = 0;
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < variants.length; k++) await timedCalls(variants[(k + r) % variants.length]!, perRound);
    spoolPeak = Math.max(spoolPeak, listDir(spoolDir).segmentBytes);
    await flushAll();
  }
  const delivered = (await endpoint.stats()).events;
  const expected = 2 * (ours.calls + oursSpool.calls + chainOurs.calls + chainBlind.calls);

  // The naive handler last and alone: its backlog would hold up every other variant's callbacks.
  await endpoint.reset();
  const naiveHandler = new NaiveFetchHandler(endpoint.url);
  const naive = variant("naive await-fetch handler", "model.invoke", onModel(naiveHandler));
  await timedCalls(naive, 50); // warm-up (connection, JIT)
  reset(naive);
  await endpoint.reset();
  let maxDepth = 0;
  const sampler = setInterval(() => (maxDepth = Math.max(maxDepth, queueDepth())), 5);
  await timedCalls(naive, naiveCalls);
  clearInterval(sampler);
  const naiveDelivered = (await endpoint.stats()).events;

  for (const h of [memory, spooled, inChain, inChainBlind]) await h.shutdown();
  const spoolLeft = listDir(spoolDir);
  await endpoint.close();
  rmSync(spoolDir, { recursive: true, force: true });

  const s = new Map([...variants, naive].map((v) => [v, summarize(v.samples)]));
  const e2e = (v: Variant) => ((v.loopMs + v.drainMs) / v.calls) * 1000;
  const rowsFor = (list: Variant[], floor: Variant, base: Variant): Row[] =>
    list.map((v) => ({
      variant: v.name,
      calls: String(v.calls),
      "median µs": fmt(s.get(v)!.median),
      "p99 µs": fmt(s.get(v)!.p99),
      [`+median vs ${base.name}`]: fmt(s.get(v)!.median - s.get(base)!.median),
      // The naive handler runs alone, after the rounds: it has no paired rounds, only its pooled median.
      [`+median vs ${floor.name} (paired rounds)`]:
        v === floor || v === base ? "" : v === naive ? `${fmt(s.get(v)!.median - s.get(floor)!.median)} (alone, pooled)` : fmt(paired(v, floor).diff.median),
      "ratio of medians vs floor": v === base ? "" : ratio(s.get(v)!.median, s.get(floor)!.median),
      "end-to-end µs/call": fmt(e2e(v)),
      "queue drain after last call": `${fmt(v.drainMs / (v === naive ? 1 : rounds), 1)} ms`,
    }));

  const pMem = paired(ours, noop);
  const pSpool = paired(oursSpool, noop);
  const pSpoolOverMem = paired(oursSpool, ours);
  const pChainHooks = paired(chainNoop, chainIgnore);
  const pChainOurs = paired(chainOurs, chainIgnore);
  const pChainOursOverHooks = paired(chainOurs, chainNoop);
  const pWatching = paired(chainOurs, chainBlind);
  const naiveAddedE2e = e2e(naive) - e2e(noop);

  return {
    name: "latency",
    title: "1. Added latency per model call",
    params: { calls, rounds, warmup, naiveCalls, endpointDelayMs: delayMs },
    tables: [
      {
        caption:
          "a) Sequential `model.invoke()` of an instant chat model that reports usage, the handler on the model. Per-call latency is the time " +
          "`invoke()` takes (each call's time runs from the end of the previous one, so work LangChain runs in the background between calls is " +
          "counted too); end-to-end adds `awaitAllCallbacks()` at the end of each round, divided by the calls. The floor is the do-nothing handler.",
        rows: rowsFor([bare, noop, ours, oursSpool, naive], noop, bare),
      },
      {
        caption:
          "b) `ChatPromptTemplate | model` invoked with the handler in the invoke config: LangChain reports the sequence and the prompt as chain " +
          "runs to every handler that does not set `ignoreChain`. The floor is a do-nothing handler with `ignoreChain: true`.",
        rows: rowsFor([chainIgnore, chainNoop, chainOurs, chainBlind], chainIgnore, chainIgnore),
      },
      {
        caption: "Paired differences (median of the per-round differences of medians, with their middle half; end-to-end likewise):",
        rows: (
          [
            ["MeteringCallbackHandler, no spool − do-nothing handler (model.invoke)", pMem],
            ["MeteringCallbackHandler, spoolDir − do-nothing handler (model.invoke)", pSpool],
            ["spoolDir − no spool (the write-ahead log's own cost)", pSpoolOverMem],
            ["chain: no-op chain hooks − ignoreChain (LangChain's price of reporting chain runs)", pChainHooks],
            ["chain: MeteringCallbackHandler − no-op chain hooks (the handler's own work)", pChainOursOverHooks],
            ["chain: MeteringCallbackHandler − do-nothing with ignoreChain (watching chains, and metering)", pChainOurs],
            ["chain: MeteringCallbackHandler − itself with ignoreChain forced on (the price of watching chains)", pWatching],
          ] as const
        ).map(([what, p]) => ({
          difference: what,
          "per call, median µs": fmt(p.diff.median),
          "middle half µs": `${fmt(p.diff.p25)} to ${fmt(p.diff.p75)}`,
          "ratio of medians": ratio(p.ratio, 1),
          "end-to-end, median µs": fmt(p.e2e.median),
          "end-to-end middle half µs": `${fmt(p.e2e.p25)} to ${fmt(p.e2e.p75)}`,
        })),
      },
    ],
    targets: [
      {
        target: "MeteringCallbackHandler without a spool within 5 µs/call of the do-nothing handler",
        measured: `${describeDiff(pMem.diff, rounds)}; ${ratio(pMem.ratio, 1)} the do-nothing handler's median`,
        met: pMem.diff.median <= 5,
      },
      {
        target: "MeteringCallbackHandler with spoolDir within 10 µs/call of the do-nothing handler",
        measured: `${describeDiff(pSpool.diff, rounds)}; ${ratio(pSpool.ratio, 1)} the do-nothing handler's median`,
        met: pSpool.diff.median <= 10,
      },
    ],
    notes: [
      `LangChain's own floor (do-nothing handler vs bare): +${fmt(s.get(noop)!.median - s.get(bare)!.median)} µs median per call.`,
      `Watching chains: in a prompt | model chain, LangChain itself charges ${fmt(pChainHooks.diff.median)} µs per invoke (middle half ` +
        `${fmt(pChainHooks.diff.p25)} to ${fmt(pChainHooks.diff.p75)}) to report the two chain runs (a start and an end each, one task each on its ` +
        `callback queue) to a handler that does not set ignoreChain; the same MeteringCallbackHandler with ignoreChain forced on is ` +
        `${fmt(pWatching.diff.median)} µs faster (middle half ${fmt(pWatching.diff.p25)} to ${fmt(pWatching.diff.p75)}): that is the whole price of watching chains. ` +
        `Against a do-nothing handler with ignoreChain, metering included: +${fmt(pChainOurs.diff.median)} µs (${ratio(pChainOurs.ratio, 1)}).`,
      `The four metering handlers delivered ${delivered.toLocaleString("en-US")} events (${expected.toLocaleString("en-US")} expected) to the ${delayMs} ms endpoint, ` +
        "flushed between rounds (untimed): sequential calls of an instant model never turn the event loop (no I/O), so delivery waits for the end of a round anyway. " +
        `The spool held at most ${fmt(spoolPeak / 1024, 0)} KiB of segments at a round's end; after shutdown ${spoolLeft.bytes} bytes in ${spoolLeft.files.length} file(s) were left.`,
      `Naive handler: ${naiveCalls} calls; the queue drained ${fmt(naive.drainMs / 1000, 1)} s after the last invoke() returned ` +
        `(${fmt(naive.drainMs / naiveCalls, 1)} ms per call, the endpoint's round-trip), peak queue depth ${maxDepth}; ` +
        `${naiveDelivered} events delivered. End-to-end it adds ${fmt(naiveAddedE2e / 1000, 1)} ms per call over the do-nothing handler ` +
        `(${ratio(e2e(naive), e2e(ours))} MeteringCallbackHandler's end-to-end).`,
    ],
  };
}

if (isMain(import.meta.url)) printResult(await run(), renderResult);
