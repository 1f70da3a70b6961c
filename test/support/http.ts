/**
 * Tiny loopback HTTP plumbing shared by the provider fakes: a server on 127.0.0.1:0 that hands each
 * request (with its parsed JSON body) to a handler, and an SSE writer. Nothing here knows a provider.
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

export interface IncomingJsonRequest {
  method: string;
  /** Path and query, e.g. "/v1/chat/completions". */
  path: string;
  headers: IncomingHttpHeaders;
  /** The parsed JSON body, or undefined when the body was empty or not JSON. */
  body: unknown;
  rawBody: string;
}

export type JsonHandler = (req: IncomingJsonRequest, res: ServerResponse) => void | Promise<void>;

export interface LoopbackServer {
  /** e.g. "http://127.0.0.1:54321" (no trailing slash). */
  origin: string;
  port: number;
  /** Stops listening and destroys open sockets (including hung streams). Idempotent. */
  close(): Promise<void>;
}

/**
 * Listens on 127.0.0.1 at a free port. `close()` also drops idle keep-alive sockets and requests
 * parked in a handler, which would otherwise hold it open.
 */
export async function listenOnLoopback(server: Server): Promise<{ origin: string; close(): Promise<void> }> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export async function startLoopbackServer(handler: JsonHandler): Promise<LoopbackServer> {
  const sockets = new Set<Socket>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const rawBody = Buffer.concat(chunks).toString("utf8");
      let body: unknown;
      try {
        body = rawBody ? JSON.parse(rawBody) : undefined;
      } catch {
        body = undefined;
      }
      const incoming: IncomingJsonRequest = {
        method: req.method ?? "GET",
        path: req.url ?? "/",
        headers: req.headers,
        body,
        rawBody,
      };
      Promise.resolve()
        .then(() => handler(incoming, res))
        .catch((error: unknown) => {
          // A bug in a fake or a responder: answer 500 so the test sees it instead of hanging.
          if (!res.headersSent) {
            res.writeHead(500, { "content-type": "application/json" });
            res.end(JSON.stringify({ error: { message: `fake server failure: ${String(error)}` } }));
          } else {
            res.destroy();
          }
        });
    });
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;
  return {
    origin: `http://127.0.0.1:${port}`,
    port,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
      return closed;
    },
  };
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
}

/** Starts a `text/event-stream` response. */
export function startSse(res: ServerResponse, headers: Record<string, string> = {}): void {
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    connection: "keep-alive",
    ...headers,
  });
  res.flushHeaders();
}

/**
 * Writes one SSE message. With `event`, an `event:` line precedes the data line (Anthropic needs it:
 * its SDK drops data lines without one); without, only `data:` (OpenAI chat completions).
 */
export function writeSse(res: ServerResponse, data: unknown, event?: string): void {
  const payload = typeof data === "string" ? data : JSON.stringify(data);
  res.write(`${event === undefined ? "" : `event: ${event}\n`}data: ${payload}\n\n`);
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Splits text into word-ish pieces that keep their whitespace, so joining them gives the text back. */
export function splitIntoDeltas(text: string): string[] {
  const parts = text.match(/\S+\s*|\s+/g);
  return parts ?? [];
}

/** A deterministic stand-in for a tokenizer: ~4 characters a token, at least 1 for non-empty text. */
export function roughTokenCount(text: string): number {
  return text.length === 0 ? 0 : Math.max(1, Math.ceil(text.length / 4));
}

let counter = 0;
/** Deterministic-enough unique ids: prefix + process-wide counter + random suffix. */
export function fakeId(prefix: string, length = 24): string {
  counter += 1;
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  let random = "";
  for (let i = 0; i < length; i += 1) random += alphabet[Math.floor(Math.random() * alphabet.length)];
  return `${prefix}${counter.toString(36)}${random}`.slice(0, prefix.length + length);
}

/**
 * Where a fake holds a stream part-way until the test says go on: `wait()` parks the stream,
 * `release()` lets every parked stream continue. No timers: the test decides when.
 */
export function createGate(): { wait(): Promise<void>; release(): void; readonly waiting: number } {
  let waiters: Array<() => void> = [];
  return {
    wait: () => new Promise<void>((resolve) => waiters.push(resolve)),
    release() {
      const parked = waiters;
      waiters = [];
      for (const resolve of parked) resolve();
    },
    get waiting() {
      return waiters.length;
    },
  };
}
