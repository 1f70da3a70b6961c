/** Machine context, GC access, heap readings and the result plumbing shared by every benchmark. */
import { createRequire } from "node:module";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { pathToFileURL } from "node:url";
import type { Row } from "./stats";

const require = createRequire(import.meta.url);

/** `global.gc`, enabled at run time when the process was not started with --expose-gc. */
export const gc: () => void = (() => {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (existing) return existing;
  setFlagsFromString("--expose-gc");
  return runInNewContext("gc") as () => void;
})();

/** Heap in use after full collections (several passes: weak refs and finalizers settle in a few). */
export async function settledHeap(): Promise<number> {
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  gc();
  return process.memoryUsage().heapUsed;
}

export function machine(): Record<string, string> {
  const cpus = os.cpus();
  const version = (name: string) => {
    try {
      return (require(`${name}/package.json`) as { version: string }).version;
    } catch {
      return "?";
    }
  };
  return {
    cpus: `${cpus.length} x ${cpus[0]?.model ?? "?"}`,
    memory: `${Math.round(os.totalmem() / 1024 ** 3)} GB`,
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    "@langchain/core": version("@langchain/core"),
    undici: version("undici"),
  };
}

/** The file system a path lives on (from /proc/mounts, the longest matching mount point), e.g. "ext4 on /". */
export function fileSystemOf(path: string): string {
  try {
    const mounts = require("node:fs").readFileSync("/proc/mounts", "utf8") as string;
    let best: { point: string; type: string } | undefined;
    for (const line of mounts.split("\n")) {
      const [, point, type] = line.split(" ");
      if (!point || !type) continue;
      if ((path === point || path.startsWith(point.endsWith("/") ? point : `${point}/`)) && (!best || point.length > best.point.length)) best = { point, type };
    }
    return best ? `${best.type} on ${best.point}` : "unknown";
  } catch {
    return "unknown";
  }
}

/** The 1-minute load average, one decimal: how busy the shared box was. */
export const loadAverage = (): string => os.loadavg()[0]!.toFixed(1);

export function envNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got ${JSON.stringify(raw)}`);
  return n;
}

/** What a benchmark hands back to bench/run.ts (and prints when run alone). */
export interface BenchResult {
  name: string;
  title: string;
  /** One or more tables, each with a caption. */
  tables: Array<{ caption: string; rows: Row[] }>;
  /** Target checks: met or not, with the measured figure. */
  targets: Array<{ target: string; measured: string; met: boolean }>;
  notes: string[];
  /** Parameters actually used, for the results file. */
  params: Record<string, string | number>;
}

/** True when the module is the process's entry point (`npx tsx bench/<name>.ts`). */
export function isMain(importMetaUrl: string): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return importMetaUrl === pathToFileURL(require("node:fs").realpathSync(entry)).href || importMetaUrl === pathToFileURL(entry).href;
  } catch {
    return false;
  }
}

export function printResult(result: BenchResult, render: (r: BenchResult) => string): void {
  console.log(render(result));
  const out = process.env.BENCH_JSON;
  if (out) {
    mkdirSync(require("node:path").dirname(out), { recursive: true });
    writeFileSync(out, JSON.stringify(result, null, 2));
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes on one machine. */
export const wallNow = (): number => performance.timeOrigin + performance.now();
