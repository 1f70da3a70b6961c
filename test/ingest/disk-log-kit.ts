// The write-ahead log's test kit: a spool directory per test, events, a log with every callback recorded.
import { readdirSync } from "node:fs";
import { afterEach } from "vitest";
import { DiskLog, type DiskLogOptions, type DiskProblem } from "../../src/ingest/disk-log/disk-log";
import type { QueuedEvent } from "../../src/ingest/queue";
import type { Clock } from "../../src/clock";
import { TestClock } from "../../src/testing/clock";
import { tempDir } from "./helpers";

const cleanup: Array<() => void> = [];
afterEach(() => {
  while (cleanup.length) cleanup.pop()!();
});

export function spoolDir(): string {
  const t = tempDir("om-wal-");
  cleanup.push(t.remove);
  return t.dir;
}

let seq = 0;
export function event(id = `e${seq++}`, tokens = 100): QueuedEvent {
  const json = JSON.stringify({ specversion: "1.0", id, source: "langchain", type: "kong.llm_request", subject: "acme", data: { type: "input", tokens } });
  return { id, json, epoch: 0 };
}
export const events = (n: number, prefix = `b${seq++}`) => Array.from({ length: n }, (_, i) => event(`${prefix}-${i}`));

export function open(dir: string, clock: Clock = new TestClock(), options: Partial<DiskLogOptions> = {}) {
  const problems: DiskProblem[] = [];
  const recovered: QueuedEvent[] = [];
  /** The size of every onRecovered call, in order. */
  const recoveredCalls: number[] = [];
  const gone: number[] = [];
  const log = new DiskLog({
    dir,
    clock,
    leaseMs: 1000,
    maxBytes: 64 * 1024 * 1024,
    segmentBytes: 64 * 1024,
    fsync: false,
    cacheLimit: 10_000,
    epoch: () => 0,
    onRecovered: (list) => {
      recovered.push(...list);
      recoveredCalls.push(list.length);
    },
    onGone: (count) => gone.push(count),
    onProblem: (problem) => problems.push(problem),
    ...options,
  });
  cleanup.push(() => log.close());
  return { log, clock, problems, recovered, recoveredCalls, gone };
}

/** Takes and settles everything the log hands out, waiting for segments that load from disk. */
export async function drain(log: DiskLog, max = 50): Promise<string[]> {
  const ids: string[] = [];
  for (let idle = 0; idle < 50; ) {
    const batch = log.take(max, { liveDue: true });
    if (batch === undefined) {
      idle++;
      await new Promise((resolve) => setTimeout(resolve, 2));
      continue;
    }
    idle = 0;
    ids.push(...batch.events.map((e) => e.id));
    log.settle(batch);
  }
  return ids;
}

export const segmentsIn = (dir: string) => readdirSync(dir).filter((name) => name.endsWith(".log"));


/** The next time the log says a segment was read back. */
export function nextRead(log: DiskLog): Promise<void> {
  return new Promise((resolve) => log.onReadable(resolve));
}
