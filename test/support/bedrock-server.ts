/**
 * A local stand-in for Amazon Bedrock's Converse API, as `@aws-sdk/client-bedrock-runtime` 3.1164
 * (and through it `@langchain/aws`'s ChatBedrockConverse) calls it: `POST /model/{modelId}/converse`
 * answering `ConverseResponse` JSON, and `POST /model/{modelId}/converse-stream` answering
 * `application/vnd.amazon.eventstream`: binary event-stream messages (framed by
 * `@smithy/core/event-streams`' EventStreamCodec, the SDK's own codec) with `:message-type: event`,
 * `:event-type` messageStart / contentBlockDelta / contentBlockStop / messageStop / metadata, and the
 * event's JSON as body. Shapes from dist-types/models/models_0.d.ts: `TokenUsage` (inputTokens without
 * the cache, cacheReadInputTokens, cacheWriteInputTokens, cacheDetails by TTL), `ConverseStreamMetadataEvent`.
 *
 * The runtime client speaks HTTP/2 (its default NodeHttp2Handler), so the fake does too, cleartext on
 * loopback. Point it at the fake with a client of your own:
 *   new ChatBedrockConverse({ model, region: "us-east-1", client: bedrockClient(fake) })
 */
import type { ServerResponse } from "node:http";
import { createServer, type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import type { AddressInfo } from "node:net";
import { BedrockRuntimeClient } from "@aws-sdk/client-bedrock-runtime";
import { EventStreamCodec } from "@smithy/core/event-streams";
import { fakeId, type IncomingJsonRequest, roughTokenCount, sendJson, splitIntoDeltas } from "./http.js";

export interface BedrockUsage {
  inputTokens: number;
  outputTokens: number;
  totalTokens: number;
  cacheReadInputTokens?: number;
  cacheWriteInputTokens?: number;
  cacheDetails?: Array<{ ttl: "5m" | "1h"; inputTokens: number }>;
}

export interface BedrockReply {
  text?: string;
  /** Uncached input (Bedrock's `inputTokens` leaves the cache out). */
  inputTokens?: number;
  outputTokens?: number;
  cacheRead?: number;
  /** Cache writes by TTL; `cacheWriteInputTokens` is their sum. */
  cacheWrite5m?: number;
  cacheWrite1h?: number;
  error?: { status: number; type: string; message: string };
}

export interface BedrockExchange {
  path: string;
  stream: boolean;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- whatever the SDK sent
  body: Record<string, any>;
  reply: { status: number; usage?: BedrockUsage };
}

export interface BedrockFake {
  url: string;
  requests: BedrockExchange[];
  enqueue(...replies: BedrockReply[]): void;
  respondWith(responder: () => BedrockReply): void;
  close(): Promise<void>;
}

const codec = new EventStreamCodec(
  (bytes) => new TextDecoder().decode(bytes),
  (text) => new TextEncoder().encode(text),
);

/** A Bedrock runtime client with static fake credentials, pointed at the fake. */
export function bedrockClient(fake: BedrockFake): BedrockRuntimeClient {
  return new BedrockRuntimeClient({
    region: "us-east-1",
    endpoint: fake.url,
    credentials: { accessKeyId: "AKIDFAKEFAKEFAKEFAKE", secretAccessKey: "fake-secret" },
    maxAttempts: 1,
  });
}

export async function startBedrockServer(): Promise<BedrockFake> {
  const queue: BedrockReply[] = [];
  let responder: () => BedrockReply = () => ({});
  const requests: BedrockExchange[] = [];

  const handle = async (req: IncomingJsonRequest, res: ServerResponse) => {
    const match = /^\/model\/([^/]+)\/(converse|converse-stream)$/.exec(req.path);
    const body = (req.body && typeof req.body === "object" ? req.body : {}) as Record<string, any>;
    const exchange: BedrockExchange = { path: req.path, stream: match?.[2] === "converse-stream", body, reply: { status: 0 } };
    requests.push(exchange);
    const fail = (status: number, type: string, message: string) => {
      exchange.reply = { status };
      sendJson(res, status, { message }, { "x-amzn-errortype": type, "x-amzn-requestid": fakeId("", 36) });
    };
    if (req.method !== "POST" || !match) return fail(404, "UnknownOperationException", `Unknown operation ${req.method} ${req.path}`);
    // SigV4: the SDK signs every request; a missing signature is what the real service refuses first.
    if (!String(req.headers.authorization ?? "").startsWith("AWS4-HMAC-SHA256 ")) return fail(403, "MissingAuthenticationTokenException", "Missing Authentication Token");
    if (!Array.isArray(body.messages)) return fail(400, "ValidationException", "1 validation error detected: messages");

    const reply = queue.shift() ?? responder();
    if (reply.error) return fail(reply.error.status, reply.error.type, reply.error.message);
    const text = reply.text ?? "Hello from the fake Bedrock.";
    const write5m = reply.cacheWrite5m ?? 0;
    const write1h = reply.cacheWrite1h ?? 0;
    const usage: BedrockUsage = {
      inputTokens: reply.inputTokens ?? roughTokenCount(JSON.stringify(body.messages)),
      outputTokens: reply.outputTokens ?? roughTokenCount(text),
      totalTokens: 0,
      ...(reply.cacheRead !== undefined || write5m + write1h > 0 ? { cacheReadInputTokens: reply.cacheRead ?? 0, cacheWriteInputTokens: write5m + write1h } : {}),
      // Sorted by TTL duration, 1h before 5m (CacheDetail's doc); empty without cache writes.
      ...(write5m + write1h > 0
        ? {
            cacheDetails: [
              ...(write1h > 0 ? [{ ttl: "1h" as const, inputTokens: write1h }] : []),
              ...(write5m > 0 ? [{ ttl: "5m" as const, inputTokens: write5m }] : []),
            ],
          }
        : {}),
    };
    usage.totalTokens = usage.inputTokens + usage.outputTokens + (usage.cacheReadInputTokens ?? 0) + (usage.cacheWriteInputTokens ?? 0);
    exchange.reply = { status: 200, usage };

    if (!exchange.stream) {
      sendJson(
        res,
        200,
        { output: { message: { role: "assistant", content: [{ text }] } }, stopReason: "end_turn", usage, metrics: { latencyMs: 42 } },
        { "x-amzn-requestid": fakeId("", 36) },
      );
      return;
    }
    res.writeHead(200, { "content-type": "application/vnd.amazon.eventstream", "x-amzn-requestid": fakeId("", 36) });
    const send = (eventType: string, payload: unknown) =>
      res.write(
        codec.encode({
          headers: {
            ":event-type": { type: "string", value: eventType },
            ":content-type": { type: "string", value: "application/json" },
            ":message-type": { type: "string", value: "event" },
          },
          body: new TextEncoder().encode(JSON.stringify(payload)),
        }),
      );
    send("messageStart", { role: "assistant" });
    for (const piece of splitIntoDeltas(text)) send("contentBlockDelta", { contentBlockIndex: 0, delta: { text: piece } });
    send("contentBlockStop", { contentBlockIndex: 0 });
    send("messageStop", { stopReason: "end_turn" });
    send("metadata", { usage, metrics: { latencyMs: 42 } });
    res.end();
  };

  const server = await startH2cServer(handle);
  return {
    url: server.origin,
    requests,
    enqueue: (...replies) => void queue.push(...replies),
    respondWith: (next) => {
      responder = next;
    },
    close: () => server.close(),
  };
}

/** An HTTP/2 cleartext server on 127.0.0.1 (the compatibility API gives http/1-like req and res). */
async function startH2cServer(handler: (req: IncomingJsonRequest, res: ServerResponse) => Promise<void>): Promise<{ origin: string; close(): Promise<void> }> {
  const sessions = new Set<{ destroy(): void }>();
  const server = createServer((req: Http2ServerRequest, res: Http2ServerResponse) => {
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
      const incoming: IncomingJsonRequest = { method: req.method, path: req.url, headers: req.headers, body, rawBody };
      handler(incoming, res as unknown as ServerResponse).catch((error: unknown) => {
        if (!res.headersSent) {
          res.writeHead(500, { "content-type": "application/json" });
          res.end(JSON.stringify({ message: `fake server failure: ${String(error)}` }));
        } else res.stream.close();
      });
    });
  });
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const session of sessions) session.destroy();
      }),
  };
}
