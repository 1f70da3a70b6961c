/**
 * A loopback events endpoint in its own process, so that its CPU and heap never count against the
 * process being measured. Kinds:
 * - "openmeter": the library's OpenMeter-compatible test server (validation, de-duplication, 204).
 * - "sink": a minimal endpoint that parses each batch, counts events and answers 204; it stores
 *   nothing (unless asked to track ids), so it can take millions of events.
 * Both support a response delay and a "down" mode (503). Driven over IPC by endpoint.ts.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { startOpenMeterServer } from "../../src/testing";

const kind = process.env.BENCH_ENDPOINT_KIND ?? "sink";
const wallNow = () => performance.timeOrigin + performance.now();

let delayMs = Number(process.env.BENCH_ENDPOINT_DELAY_MS ?? 0);
let down = false;
let track = process.env.BENCH_ENDPOINT_TRACK === "1";
let events = 0;
let requests = 0;
let rejected = 0;
const unique = new Set<string>();
/** [id, receive wall time, event time as sent] */
let receipts: Array<[string, number, string | undefined]> = [];

let url: string;
let setOpenMeterMode: ((down: boolean) => void) | undefined;
let setOpenMeterDelay: ((ms: number) => void) | undefined;

if (kind === "openmeter") {
  const server = await startOpenMeterServer({ delayMs });
  url = server.url;
  setOpenMeterMode = (d) => server.setMode(d ? "down" : "ok");
  setOpenMeterDelay = (ms) => (server.delayMs = ms);
  server.onEvents((batch, request) => {
    const at = request.time.getTime();
    events += batch.length;
    if (track) for (const e of batch) receipts.push([e.id, at, e.time]);
  });
  // Count requests and rejections from the server's own record, periodically trimmed to bound memory.
  setInterval(() => {
    for (const r of server.requests) {
      requests++;
      if (r.outcome !== "accepted") rejected++;
    }
    (server.requests as unknown[]).length = 0;
  }, 200).unref();
} else {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const at = wallNow();
      requests++;
      const answer = (status: number) => {
        const send = () => res.writeHead(status, { "content-length": "0" }).end();
        if (delayMs > 0) setTimeout(send, delayMs);
        else send();
      };
      if (down) {
        rejected++;
        return answer(503);
      }
      let list: Array<{ id: string; time?: string }>;
      try {
        const json = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        list = Array.isArray(json) ? json : [json];
      } catch {
        rejected++;
        return answer(400);
      }
      events += list.length;
      if (track) {
        for (const e of list) {
          unique.add(e.id);
          receipts.push([e.id, at, e.time]);
        }
      }
      answer(204);
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1/events`;
}

type Command =
  | { id: number; cmd: "stats" }
  | { id: number; cmd: "receipts" }
  | { id: number; cmd: "reset" }
  | { id: number; cmd: "delay"; ms: number }
  | { id: number; cmd: "down"; down: boolean }
  | { id: number; cmd: "track"; track: boolean };

process.on("message", (m: Command) => {
  let result: unknown = null;
  switch (m.cmd) {
    case "stats":
      result = { events, requests, rejected, unique: unique.size, heapUsed: process.memoryUsage().heapUsed };
      break;
    case "receipts":
      result = receipts;
      receipts = [];
      break;
    case "reset":
      events = requests = rejected = 0;
      unique.clear();
      receipts = [];
      break;
    case "delay":
      delayMs = m.ms;
      setOpenMeterDelay?.(m.ms);
      break;
    case "down":
      down = m.down;
      setOpenMeterMode?.(m.down);
      break;
    case "track":
      track = m.track;
      break;
  }
  process.send!({ id: m.id, result });
});
process.on("disconnect", () => process.exit(0));
process.send!({ ready: url });
