import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http";
import type { CloudEvent, IngestError, Logger } from "langchain-openmeter";
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
