/**
 * 3. Delivery throughput: how many events per second IngestClient delivers to a loopback endpoint
 * at maxBatchSize 1, 100 and 500, against one POST per event (undici keep-alive pool, the same
 * number of requests in flight as the client's maxConcurrency). CPU time per event is this
 * process's (the endpoint runs in its own process).
 *
 *   npx tsx bench/throughput.ts          BENCH_THROUGHPUT_EVENTS=200000
 */
import { Pool } from "undici";
import { type CloudEvent, IngestClient } from "../src/index";
import { Endpoint } from "./lib/endpoint";
import { type BenchResult, envNumber, isMain, printResult } from "./lib/env";
import { renderResult } from "./lib/report";
import { fmt, ratio, type Row } from "./lib/stats";

const CONCURRENCY = 4;
const REPS = 3; // IngestClient's default maxConcurrency

function makeEvents(n: number, tag: string): CloudEvent[] {
  const time = new Date().toISOString();
  return Array.from({ length: n }, (_, i) => ({
    specversion: "1.0" as const,
    id: `${tag}-${i}-input`,
    source: "langchain",
    type: "kong.llm_request",
    subject: `customer-${i % 100}`,
    time,
    data: { type: "input", tokens: 120, model: "gpt-4o-mini", provider: "openai", cached_tokens: 100, tier: "pro" },
  }));
}

interface Measured {
  name: string;
  events: number;
  ms: number;
  cpuUs: number;
  requests: number;
}

async function measure(name: string, endpoint: Endpoint, events: number, work: () => Promise<void>): Promise<Measured> {
  await endpoint.reset();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await work();
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const stats = await endpoint.stats();
  if (stats.events !== events) throw new Error(`${name}: endpoint counted ${stats.events} events, expected ${events}`);
  return { name, events, ms, cpuUs: cpu.user + cpu.system, requests: stats.requests };
}

async function viaClient(endpoint: Endpoint, maxBatchSize: number, n: number, tag: string): Promise<Measured> {
  const events = makeEvents(n, tag);
  const client = new IngestClient({ url: endpoint.url, maxBatchSize, maxQueueSize: n, flushOnExit: false });
  try {
    return await measure(`IngestClient maxBatchSize ${maxBatchSize}`, endpoint, n, async () => {
      client.enqueue(events);
      await client.flush();
    });
  } finally {
    await client.shutdown();
  }
}

/** The tutorials' pattern: `await fetch()` one event at a time. */
async function fetchOneAtATime(endpoint: Endpoint, n: number, tag: string): Promise<Measured> {
  const events = makeEvents(n, tag);
  return await measure("one POST per event (fetch, one at a time)", endpoint, n, async () => {
    for (const event of events) {
      const res = await fetch(endpoint.url, {
        method: "POST",
        headers: { "content-type": "application/cloudevents+json" },
        body: JSON.stringify(event),
      });
      await res.arrayBuffer();
      if (res.status >= 300) throw new Error(`status ${res.status}`);
    }
  });
}

async function onePostPerEvent(endpoint: Endpoint, n: number, tag: string): Promise<Measured> {
  const events = makeEvents(n, tag);
  const url = new URL(endpoint.url);
  const pool = new Pool(url.origin, { connections: CONCURRENCY });
  try {
    return await measure("one POST per event (undici, 4 in flight)", endpoint, n, async () => {
      let next = 0;
      const worker = async () => {
        while (next < events.length) {
          const event = events[next++]!;
          const res = await pool.request({
            path: url.pathname,
            method: "POST",
            headers: { "content-type": "application/cloudevents+json" },
            body: JSON.stringify(event),
          });
          await res.body.dump();
          if (res.statusCode >= 300) throw new Error(`status ${res.statusCode}`);
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    });
  } finally {
    await pool.close();
  }
}

export async function run(): Promise<BenchResult> {
  const big = envNumber("BENCH_THROUGHPUT_EVENTS", 200_000);
  const small = Math.max(1000, Math.round(big / 20)); // one request per event: fewer events, same statistic
  const endpoint = await Endpoint.start({ kind: "sink" });

  // Warm-up every path once.
  await viaClient(endpoint, 100, 20_000, "warm-a");
  await viaClient(endpoint, 1, 2_000, "warm-b");
  await onePostPerEvent(endpoint, 2_000, "warm-c");

  // Each sender several times, interleaved, keeping the median rate: one run alone is at the mercy of the box.
  const senders: Array<(rep: number) => Promise<Measured>> = [
    (r) => onePostPerEvent(endpoint, small, `post${r}`),
    (r) => fetchOneAtATime(endpoint, small, `fetch${r}`),
    (r) => viaClient(endpoint, 1, small, `b1-${r}`),
    (r) => viaClient(endpoint, 100, big, `b100-${r}`),
    (r) => viaClient(endpoint, 500, big, `b500-${r}`),
  ];
  const runs: Measured[][] = senders.map(() => []);
  for (let rep = 0; rep < REPS; rep++) {
    for (let k = 0; k < senders.length; k++) {
      const i = (k + rep) % senders.length;
      runs[i]!.push(await senders[i]!(rep));
    }
  }
  const results = runs.map((list) => {
    const sorted = [...list].sort((a, b) => a.events / a.ms - b.events / b.ms);
    return { ...sorted[Math.floor(sorted.length / 2)]!, all: list };
  });
  await endpoint.close();

  const rate = (m: Measured) => m.events / (m.ms / 1000);
  const base = results[0]!;
  const fetchBase = results[1]!;
  const spread = (m: { all: Measured[] }) => m.all.map((x) => fmt(rate(x), 0)).join(", ");
  const rows: Row[] = results.map((m) => ({
    sender: m.name,
    events: String(m.events),
    requests: String(m.requests),
    "events/s": fmt(rate(m), 0),
    "vs one POST per event": ratio(rate(m), rate(base)),
    "CPU µs/event": fmt(m.cpuUs / m.events),
    "CPU vs one POST per event": ratio(m.cpuUs / m.events, base.cpuUs / base.events),
    "runs (events/s)": spread(m),
  }));
  const best = results.slice(3).reduce((a, b) => (rate(b) > rate(a) ? b : a));
  const b100 = results[3]!;
  return {
    name: "throughput",
    title: "3. Delivery throughput",
    params: { events: big, eventsOneRequestEach: small, maxConcurrency: CONCURRENCY, repetitions: REPS },
    tables: [
      {
        caption:
          "Events enqueued at once, timed until `flush()` resolves (every event acknowledged). The endpoint is a minimal " +
          "loopback sink in another process (parses each body, counts, answers 204), so the sender is what is measured. " +
          `CPU is this process's user+system time. Each sender ran ${REPS} times, interleaved; the row shows the median run. ` +
          "Ratios are against the first row (the stronger one-POST-per-event baseline).",
        rows,
      },
    ],
    targets: [
      {
        target: "at least 100,000 events/s delivered on loopback",
        measured: `${fmt(rate(b100), 0)}/s at maxBatchSize 100 (default), ${fmt(rate(best), 0)}/s best (${best.name})`,
        met: rate(b100) >= 100_000,
      },
      {
        target: "at least 20x one POST per event",
        measured:
          `${ratio(rate(b100), rate(base))} at maxBatchSize 100 vs undici with 4 in flight (${ratio(rate(best), rate(base))} at ${best.name.replace("IngestClient ", "")}); ` +
          `${ratio(rate(b100), rate(fetchBase))} vs fetch one at a time`,
        met: rate(b100) / rate(base) >= 20,
      },
    ],
    notes: [
      "The target ratio is judged against the stronger baseline (undici pool, 4 requests in flight, like the client's default maxConcurrency); the tutorials' sequential `await fetch()` is the second row.",
      "Where the time goes at maxBatchSize 100 (a CPU profile of the sender): serialising the batch and writing it to the socket; the sender " +
        "sits idle about a quarter of the time, waiting for the endpoint to parse the bodies on the same two cores. Past a few dozen events a " +
        "batch, the ratio is bounded by the JSON work per event on both sides, which one-POST-per-event pays too, not by per-request overhead; " +
        "it moves with the baseline's own noise (16,000 to 28,000 events/s across runs).",
    ],
  };
}

if (isMain(import.meta.url)) printResult(await run(), renderResult);
