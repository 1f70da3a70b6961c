import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type CloudEvent, IngestClient, type IngestError, type IngestOptions, type IngestStats, type Logger } from "langchain-openmeter";
import { TestClock } from "langchain-openmeter/testing";
import { encodeRecords } from "../../src/ingest/disk-log/records";
import { listenOnLoopback } from "../support/http";

export interface SeenRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

/**
 * A bare node:http server on 127.0.0.1 for unit tests: msw does not intercept undici's Pool (it
 * patches fetch/http.request, while undici opens its own sockets), so request handling is tested over
 * real loopback sockets instead.
 */
export async function startPlainServer(
  handler: (req: IncomingMessage, res: ServerResponse, body: string, index: number) => void,
): Promise<{ url: string; origin: string; requests: SeenRequest[]; close(): Promise<void> }> {
  const requests: SeenRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      requests.push({ method: req.method ?? "", path: req.url ?? "", headers: req.headers, body, at: performance.now() });
      handler(req, res, body, requests.length - 1);
    });
  });
  const { origin, close } = await listenOnLoopback(server);
  return { url: `${origin}/api/v1/events`, origin, requests, close };
}

let seq = 0;
export function makeEvents(n: number, prefix = `run${process.pid}-${Date.now()}-${seq++}`): CloudEvent[] {
  return Array.from({ length: n }, (_, i) => ({
    specversion: "1.0" as const,
    id: `${prefix}-${i}`,
    source: "langchain",
    type: "kong.llm_request",
    subject: "acme",
    time: "2026-05-05T15:26:47.000Z",
    data: { type: "input", tokens: i + 1, model: "gpt-4o-mini" },
  }));
}

export function recorder() {
  const errors: IngestError[] = [];
  const warnings: string[] = [];
  const logged: string[] = [];
  const logger: Logger = {
    warn: (m) => {
      warnings.push(m);
      logged.push(m);
    },
    error: (m) => logged.push(m),
  };
  return { errors, warnings, logged, logger, onError: (e: IngestError) => void errors.push(e) };
}

/** Fast retry settings so failure tests take milliseconds, not minutes. */
export const fastRetry = { retries: 5, minDelayMs: 5, maxDelayMs: 50 };

export function bodyIds(body: string): string[] {
  return (JSON.parse(body) as CloudEvent[]).map((e) => e.id);
}

/** A temporary directory, removed by the returned cleanup (register it with afterEach). */
export function tempDir(prefix = "om-test-"): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * What a process that ended leaves in `spoolDir`: its owner directory, released (no lock), holding
 * one segment of `segment` (the file's text, or events to write as records; none: an empty
 * directory). Returns the segment's path.
 */
export function leaveSpool(spoolDir: string, segment?: string | CloudEvent[], owner = "000000001-0123456789ab"): string {
  const dir = join(spoolDir, owner);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, "00000001.log");
  if (segment !== undefined) writeFileSync(file, typeof segment === "string" ? segment : encodeRecords(segment.map((e) => JSON.stringify(e))));
  return file;
}

/**
 * Waits until `check()` holds, turning the event loop (socket I/O completes meanwhile); fails after
 * `timeoutMs` of real time, a generous bound that a correct run never comes near.
 */
export async function eventually(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** The identity every IngestStats must keep. */
export function balance(stats: IngestStats): { left: number; right: number } {
  return {
    left: stats.enqueued + stats.recovered,
    right: stats.delivered + stats.refused + stats.dropped + stats.handedOver + stats.pending.memory + stats.pending.disk,
  };
}

/**
 * A client on a TestClock against a plain loopback server answering as `respond` says, with its
 * reports recorded; `cleanup` receives the server's close and the client's shutdown.
 */
export async function startClient(
  respond: Parameters<typeof startPlainServer>[0],
  options: Partial<IngestOptions>,
  cleanup: Array<() => unknown>,
) {
  const server = await startPlainServer(respond);
  const rec = recorder();
  const clock = new TestClock();
  const client = new IngestClient({ url: server.url, clock, handleSignals: false, flushOnExit: false, logger: rec.logger, onError: rec.onError, ...options });
  cleanup.push(
    () => server.close(),
    () => clock.advanceUntil(client.shutdown()),
  );
  return { server, client, rec, clock };
}
