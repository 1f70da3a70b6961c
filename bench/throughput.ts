/**
 * 2. Delivery throughput, and 4. the CPU each event costs against its floor.
 *
 * IngestClient delivers to a loopback sink (its own process) without a spool (memory queue) and with
 * `spoolDir` (every enqueue written to the write-ahead log, read back from it when the backlog
 * outgrows the in-memory cache), at maxBatchSize 100 (default) and 500, beside one POST per event.
 * Events are enqueued as the handler does, one model call (two events) per `enqueue`:
 * - steady: the producer yields to the event loop every 1,000 events and waits (sleeping, not
 *   spinning) while more than 4,000 are pending, so writing and delivering overlap;
 * - backlog: every event is enqueued first, then delivered (with spoolDir most of it is read back
 *   from disk: what a restart or the end of an outage delivers).
 * Timed from the first enqueue until `flush()` resolves (every event acknowledged). CPU is this
 * process's user + system time over the same window.
 *
 * The floor, measured in the same rounds: `JSON.stringify` of the same events plus one
 * `fs.writeSync` to a file per batch of them (100, and 500 for the batch-500 rows), CPU time.
 *
 *   npx tsx bench/throughput.ts          BENCH_THROUGHPUT_EVENTS=50000 BENCH_THROUGHPUT_REPS=5
 */
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync, unlinkSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Pool } from "undici";
import { type CloudEvent, IngestClient } from "../src/index";
import { listDir } from "./lib/disk";
import { Endpoint } from "./lib/endpoint";
import { type BenchResult, envNumber, isMain, printResult, sleep } from "./lib/env";
import { renderResult } from "./lib/report";
import { fmt, ratio, type Row, summarize } from "./lib/stats";

const CONCURRENCY = 4; // IngestClient's default maxConcurrency
const quietLogger = { warn: () => {}, error: (m: string) => console.error(m) };

/**
 * `n` events as the handler builds them (same keys, same order: see src/events.ts), one model call
 * per element: an input and an output event.
 */
function makeCalls(n: number, tag: string): CloudEvent[][] {
  const time = new Date().toISOString();
  const calls: CloudEvent[][] = [];
  for (let i = 0; i < n / 2; i++) {
    const run = `${tag}-${i}`;
    const subject = `customer-${i % 100}`;
    calls.push([
      {
        specversion: "1.0",
        id: `${run}-input`,
        source: "langchain",
        type: "kong.llm_request",
        subject,
        time,
        data: { type: "input", tokens: 120, model: "gpt-4o-mini", provider: "openai", cached_tokens: 100, tier: "pro" },
      },
      {
        specversion: "1.0",
        id: `${run}-output`,
        source: "langchain",
        type: "kong.llm_request",
        subject,
        time,
        data: { type: "output", tokens: 30, model: "gpt-4o-mini", provider: "openai", reasoning_tokens: 10, tier: "pro" },
      },
    ]);
  }
  return calls;
}

interface Measured {
  events: number;
  ms: number;
  cpuUs: number;
  requests: number;
}

async function measure(endpoint: Endpoint, events: number, work: () => Promise<void>): Promise<Measured> {
  await endpoint.reset();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await work();
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const stats = await endpoint.stats();
  if (stats.events !== events) throw new Error(`endpoint counted ${stats.events} events, expected ${events}`);
  return { events, ms, cpuUs: cpu.user + cpu.system, requests: stats.requests };
}

const HIGH_WATER = 4000;
const LOW_WATER = 2000;

const pendingOf = (client: IngestClient) => {
  const { memory, disk } = client.stats().pending;
  return memory + disk;
};

interface ClientVariant {
  spool: boolean;
  batch: number;
  mode: "steady" | "backlog";
}

const spoolDirs: string[] = [];
let spoolLeftBytes = 0;

async function viaClient(endpoint: Endpoint, v: ClientVariant, n: number, tag: string): Promise<Measured> {
  const calls = makeCalls(n, tag);
  const spoolDir = v.spool ? mkdtempSync(join(tmpdir(), "bench-throughput-spool-")) : undefined;
  if (spoolDir) spoolDirs.push(spoolDir);
  const client = new IngestClient({
    url: endpoint.url,
    maxBatchSize: v.batch,
    flushOnExit: false,
    handleSignals: false,
    logger: quietLogger,
    ...(spoolDir ? { spoolDir } : {}),
  });
  try {
    return await measure(endpoint, n, async () => {
      if (v.mode === "backlog") {
        for (const call of calls) client.enqueue(call);
      } else {
        for (let i = 0; i < calls.length; i++) {
          client.enqueue(calls[i]!);
          if (i % 500 === 499) {
            await new Promise((r) => setImmediate(r));
            if (pendingOf(client) > HIGH_WATER) while (pendingOf(client) > LOW_WATER) await sleep(1);
          }
        }
      }
      await client.flush();
    });
  } finally {
    await client.shutdown();
    if (spoolDir) {
      spoolLeftBytes += listDir(spoolDir).bytes;
      rmSync(spoolDir, { recursive: true, force: true });
    }
  }
}

/** The floor: JSON.stringify of each event, one writeSync per `batch` of them. CPU µs. */
function floor(n: number, batch: number, tag: string, path: string): Measured {
  const events = makeCalls(n, tag).flat();
  const fd = openSync(path, "w");
  try {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < events.length; i += batch) {
      let text = "";
      const end = Math.min(events.length, i + batch);
      for (let j = i; j < end; j++) text += `${JSON.stringify(events[j])}\n`;
      writeSync(fd, text);
    }
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    return { events: n, ms, cpuUs: cpu.user + cpu.system, requests: 0 };
  } finally {
    ftruncateSync(fd, 0);
    closeSync(fd);
  }
}

/** The tutorials' pattern: `await fetch()` one event at a time. */
async function fetchOneAtATime(endpoint: Endpoint, n: number, tag: string): Promise<Measured> {
  const events = makeCalls(n, tag).flat();
  return await measure(endpoint, n, async () => {
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
  const events = makeCalls(n, tag).flat();
  const url = new URL(endpoint.url);
  const pool = new Pool(url.origin, { connections: CONCURRENCY });
  try {
    return await measure(endpoint, n, async () => {
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

interface Sender {
  name: string;
  kind: "baseline" | "client" | "floor";
  client?: ClientVariant;
  floorBatch?: number;
  run: (rep: number) => Promise<Measured>;
  runs: Measured[];
}

export async function run(): Promise<BenchResult> {
  const n = envNumber("BENCH_THROUGHPUT_EVENTS", 50_000);
  const reps = envNumber("BENCH_THROUGHPUT_REPS", 5);
  const small = Math.max(1000, Math.round(n / 10)); // one request per event: fewer events, same statistic
  const endpoint = await Endpoint.start({ kind: "sink" });
  const floorDir = mkdtempSync(join(tmpdir(), "bench-floor-"));
  const floorFile = join(floorDir, "floor.jsonl");

  const clientName = (v: ClientVariant) =>
    `IngestClient, ${v.spool ? "spoolDir" : "no spool"}, maxBatchSize ${v.batch}, ${v.mode}`;
  const clientSender = (v: ClientVariant): Sender => ({
    name: clientName(v),
    kind: "client",
    client: v,
    run: (rep) => viaClient(endpoint, v, n, `${v.spool ? "d" : "m"}${v.batch}${v.mode}-${rep}`),
    runs: [],
  });
  const floorSender = (batch: number): Sender => ({
    name: `floor: JSON.stringify + one writeSync per ${batch} events${batch === 2 ? " (one per model call; not the target's floor)" : ""}`,
    kind: "floor",
    floorBatch: batch,
    run: async (rep) => floor(n, batch, `floor${batch}-${rep}`, floorFile),
    runs: [],
  });
  const senders: Sender[] = [
    { name: "one POST per event (undici, 4 in flight)", kind: "baseline", run: (r) => onePostPerEvent(endpoint, small, `post${r}`), runs: [] },
    { name: "one POST per event (fetch, one at a time)", kind: "baseline", run: (r) => fetchOneAtATime(endpoint, Math.round(small / 4), `fetch${r}`), runs: [] },
    clientSender({ spool: false, batch: 100, mode: "steady" }),
    clientSender({ spool: true, batch: 100, mode: "steady" }),
    clientSender({ spool: false, batch: 500, mode: "steady" }),
    clientSender({ spool: true, batch: 500, mode: "steady" }),
    clientSender({ spool: false, batch: 100, mode: "backlog" }),
    clientSender({ spool: true, batch: 100, mode: "backlog" }),
    floorSender(100),
    floorSender(500),
    // Not the target's floor: what the durability contract itself costs, one write per model call.
    floorSender(2),
  ];

  // Warm-up every path once (JIT, sockets, the file system).
  for (const s of senders) await (s.kind === "baseline" ? s.run(-1) : s.kind === "floor" ? floor(5000, s.floorBatch!, "warm", floorFile) : viaClient(endpoint, s.client!, 10_000, `warm-${s.name}`));

  // Each sender several times, interleaved in a rotating order, keeping the median.
  for (let rep = 0; rep < reps; rep++) {
    for (let k = 0; k < senders.length; k++) {
      const s = senders[(k + rep) % senders.length]!;
      s.runs.push(await s.run(rep));
    }
  }
  await endpoint.close();
  unlinkSync(floorFile);
  rmSync(floorDir, { recursive: true, force: true });

  const rate = (m: Measured) => m.events / (m.ms / 1000);
  const cpuPerEvent = (m: Measured) => m.cpuUs / m.events;
  const med = (s: Sender) => {
    const rates = summarize(s.runs.map(rate));
    const cpu = summarize(s.runs.map(cpuPerEvent));
    return { rate: rates.median, rateLow: rates.p25, rateHigh: rates.p75, cpu: cpu.median, requests: s.runs[0]!.requests, events: s.runs[0]!.events };
  };
  const m = new Map(senders.map((s) => [s, med(s)]));
  const find = (pred: (v: ClientVariant) => boolean) => senders.find((s) => s.client && pred(s.client))!;
  const post = senders[0]!;
  const fetchBase = senders[1]!;
  const memSteady = find((v) => !v.spool && v.batch === 100 && v.mode === "steady");
  const diskSteady = find((v) => v.spool && v.batch === 100 && v.mode === "steady");
  const memBacklog = find((v) => !v.spool && v.batch === 100 && v.mode === "backlog");
  const diskBacklog = find((v) => v.spool && v.batch === 100 && v.mode === "backlog");
  const floorOf = (batch: number) => senders.find((s) => s.floorBatch === batch)!;
  const floorFor = (s: Sender) => floorOf(s.client?.batch ?? 100);
  /** Per-rep ratio of a client's CPU per event to the floor measured in the same rep. */
  const cpuRatios = (s: Sender) => summarize(s.runs.map((r, i) => cpuPerEvent(r) / cpuPerEvent(floorFor(s).runs[i]!)));

  const rows: Row[] = senders
    .filter((s) => s.kind !== "floor")
    .map((s) => {
      const x = m.get(s)!;
      const cr = cpuRatios(s);
      return {
        sender: s.name,
        events: String(x.events),
        requests: String(x.requests),
        "events/s (median)": fmt(x.rate, 0),
        "middle half": `${fmt(x.rateLow, 0)} to ${fmt(x.rateHigh, 0)}`,
        "vs one POST per event": ratio(x.rate, m.get(post)!.rate),
        "CPU µs/event": fmt(x.cpu),
        "CPU vs floor (same round)": `${ratio(cr.median, 1)} (${ratio(cr.p25, 1)} to ${ratio(cr.p75, 1)})`,
      };
    });
  const floorRows: Row[] = [100, 500, 2].map((b) => {
    const x = m.get(floorOf(b))!;
    return { floor: floorOf(b).name, "CPU µs/event (median)": fmt(x.cpu), "runs": floorOf(b).runs.map((r) => fmt(cpuPerEvent(r))).join(", ") };
  });

  const rMemSteady = cpuRatios(memSteady);
  const rDiskSteady = cpuRatios(diskSteady);
  const rDiskBacklog = cpuRatios(diskBacklog);
  /** The spool's CPU per event against a floor that writes once per model call, as the log must. */
  const rDiskPerCall = summarize(diskSteady.runs.map((r, i) => cpuPerEvent(r) / cpuPerEvent(floorOf(2).runs[i]!)));
  const spoolVsMem = summarize(diskSteady.runs.map((r, i) => rate(r) / rate(memSteady.runs[i]!)));
  return {
    name: "throughput",
    title: "2 and 4. Delivery throughput, and the CPU per event against its floor",
    params: { events: n, eventsOneRequestEach: small, maxConcurrency: CONCURRENCY, repetitions: reps, steadyHighWater: HIGH_WATER },
    tables: [
      {
        caption:
          "Events enqueued one model call (two events) at a time, timed until `flush()` resolves (every event acknowledged). The endpoint is a " +
          "minimal loopback sink in another process (parses each body, counts, answers 204), so the sender is what is measured. " +
          `Each sender ran ${reps} times, interleaved with the others; the figures are medians, with the middle half of the runs. ` +
          "CPU is this process's user + system time; its ratio to the floor is taken per round (the floor at the row's batch size, measured in the same round), median and middle half.",
        rows,
      },
      { caption: "The floor, in the same rounds (CPU time, same events):", rows: floorRows },
    ],
    targets: [
      {
        target: "at least 100,000 events/s delivered through the disk log (spoolDir, maxBatchSize 100)",
        measured:
          `${fmt(m.get(diskSteady)!.rate, 0)}/s steady (middle half ${fmt(m.get(diskSteady)!.rateLow, 0)} to ${fmt(m.get(diskSteady)!.rateHigh, 0)}), ` +
          `${ratio(spoolVsMem.median, 1)} the memory queue's ${fmt(m.get(memSteady)!.rate, 0)}/s in the same rounds; ` +
          `backlog read back from disk ${fmt(m.get(diskBacklog)!.rate, 0)}/s`,
        met: m.get(diskSteady)!.rate >= 100_000,
      },
      {
        target: "at least 20x one POST per event (no spool, maxBatchSize 100)",
        measured:
          `${ratio(m.get(memSteady)!.rate, m.get(post)!.rate)} vs undici with 4 in flight (${fmt(m.get(post)!.rate, 0)}/s); ` +
          `${ratio(m.get(memSteady)!.rate, m.get(fetchBase)!.rate)} vs fetch one at a time`,
        met: m.get(memSteady)!.rate / m.get(post)!.rate >= 20,
      },
      {
        target: "CPU per event within 3x the floor, without a spool (maxBatchSize 100)",
        measured: `${ratio(rMemSteady.median, 1)} (middle half ${ratio(rMemSteady.p25, 1)} to ${ratio(rMemSteady.p75, 1)}): ${fmt(m.get(memSteady)!.cpu)} µs vs ${fmt(m.get(floorOf(100))!.cpu)} µs`,
        met: rMemSteady.median <= 3,
      },
      {
        target: "CPU per event within 3x the floor, with spoolDir (maxBatchSize 100)",
        measured:
          `${ratio(rDiskSteady.median, 1)} (middle half ${ratio(rDiskSteady.p25, 1)} to ${ratio(rDiskSteady.p75, 1)}): ${fmt(m.get(diskSteady)!.cpu)} µs vs ${fmt(m.get(floorOf(100))!.cpu)} µs; ` +
          `${ratio(rDiskBacklog.median, 1)} for a backlog read back from disk`,
        met: rDiskSteady.median <= 3,
      },
    ],
    notes: [
      "The floor is what any durable sender must pay at the least: serialise each event once and hand a batch's bytes to the kernel in one call. " +
        "The client pays, on top: one write per enqueue (per model call, as the durability contract requires, instead of one per batch), " +
        "a CRC-32 per record, the ledger line per acknowledged batch, the request body and the HTTP exchange.",
      `Against a floor that writes once per model call (two events), as the durability contract requires, the spool's CPU per event is ` +
        `${ratio(rDiskPerCall.median, 1)} (${fmt(m.get(floorOf(2))!.cpu)} µs per event for that floor): the difference between this floor and the first is the price of one write per call instead of one per batch.`,
      `Backlog: ${fmt(m.get(memBacklog)!.rate, 0)}/s without a spool, ${fmt(m.get(diskBacklog)!.rate, 0)}/s with one; ` +
        "past maxQueueSize (10,000) events the log keeps segments on disk only and reads them back when their turn comes.",
      spoolLeftBytes === 0
        ? "Every spool directory was empty after shutdown (0 bytes left)."
        : `The spool directories held ${spoolLeftBytes} bytes after shutdown (expected 0).`,
      "The ratio to one POST per event is judged against the stronger baseline (undici pool, 4 requests in flight, like the client's default maxConcurrency).",
    ],
  };
}

if (isMain(import.meta.url)) printResult(await run(), renderResult);
