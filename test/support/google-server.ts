/**
 * A local stand-in for the Gemini API (`POST /v1beta/models/{model}:generateContent` and
 * `:streamGenerateContent?alt=sse`) that speaks what `@google/generative-ai` 0.24 (and through it
 * `@langchain/google-genai`'s ChatGoogleGenerativeAI) parses: `GenerateContentResponse` JSON
 * (dist/generative-ai.d.ts: candidates, usageMetadata, modelVersion), and SSE lines
 * `data: {json}\r\n\r\n` (dist/index.mjs `responseLineRE`), auth by `x-goog-api-key`.
 *
 * The SDK's `UsageMetadata` type lists promptTokenCount, candidatesTokenCount, totalTokenCount and
 * cachedContentTokenCount only; the API also sends `thoughtsTokenCount` and `toolUsePromptTokenCount`
 * (Google's REST reference, `UsageMetadata`), both part of `totalTokenCount`, which the fake sends as
 * the API does. Streamed, every chunk carries usageMetadata: the prompt, cache, thoughts and tool-use
 * counts whole, the candidates count (and so the total) cumulative so far.
 *
 * Point ChatGoogleGenerativeAI at it with `baseUrl: fake.baseURL`.
 */
import type { ServerResponse } from "node:http";
import { fakeId, type IncomingJsonRequest, roughTokenCount, sendJson, splitIntoDeltas, startLoopbackServer } from "./http.js";

export interface GoogleUsage {
  promptTokenCount: number;
  candidatesTokenCount: number;
  totalTokenCount: number;
  cachedContentTokenCount?: number;
  thoughtsTokenCount?: number;
  toolUsePromptTokenCount?: number;
  promptTokensDetails?: Array<{ modality: string; tokenCount: number }>;
}

export interface GoogleReply {
  text?: string;
  /** A functionCall part instead of text. */
  functionCall?: { name: string; args: Record<string, unknown> };
  promptTokens?: number;
  candidatesTokens?: number;
  cachedTokens?: number;
  thoughtsTokens?: number;
  toolUsePromptTokens?: number;
  /** modelVersion. Default: the requested model. */
  modelVersion?: string;
  error?: { status: number; message?: string };
  /** Streaming: destroy the socket after this many chunks. */
  disconnectAfterChunks?: number;
}

export interface GoogleExchange {
  path: string;
  stream: boolean;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- whatever the SDK sent
  body: Record<string, any>;
  /** The final usageMetadata served (the last chunk's when streaming), and the chunk count. */
  reply: { status: number; usage?: GoogleUsage; chunks?: number };
}

export interface GoogleFake {
  /** `http://127.0.0.1:<port>`: ChatGoogleGenerativeAI `baseUrl`. */
  baseURL: string;
  requests: GoogleExchange[];
  enqueue(...replies: GoogleReply[]): void;
  respondWith(responder: () => GoogleReply): void;
  close(): Promise<void>;
}

export async function startGoogleServer(): Promise<GoogleFake> {
  const queue: GoogleReply[] = [];
  let responder: () => GoogleReply = () => ({});
  const requests: GoogleExchange[] = [];

  const handle = async (req: IncomingJsonRequest, res: ServerResponse) => {
    const match = /^\/v1beta\/models\/([^:/]+):(generateContent|streamGenerateContent)(\?alt=sse)?$/.exec(req.path);
    const body = (req.body && typeof req.body === "object" ? req.body : {}) as Record<string, any>;
    const exchange: GoogleExchange = { path: req.path, stream: match?.[2] === "streamGenerateContent", body, reply: { status: 0 } };
    requests.push(exchange);
    const fail = (status: number, message: string) => {
      exchange.reply = { status };
      sendJson(res, status, { error: { code: status, message, status: status === 400 ? "INVALID_ARGUMENT" : status === 403 ? "PERMISSION_DENIED" : "INTERNAL" } });
    };
    if (req.method !== "POST" || !match) return fail(404, `Not found: ${req.method} ${req.path}`);
    if (!req.headers["x-goog-api-key"]) return fail(403, "Method doesn't allow unregistered callers. Please use API Key.");
    if (!Array.isArray(body.contents)) return fail(400, "* GenerateContentRequest.contents: contents is not specified");

    const reply = queue.shift() ?? responder();
    if (reply.error) return fail(reply.error.status, reply.error.message ?? "Internal error encountered.");
    const model = match[1]!;
    const text = reply.text ?? "Hello from the fake Gemini.";
    const prompt = reply.promptTokens ?? roughTokenCount(JSON.stringify(body.contents)) + roughTokenCount(JSON.stringify(body.systemInstruction ?? ""));
    const candidates = reply.candidatesTokens ?? Math.max(1, roughTokenCount(reply.functionCall ? JSON.stringify(reply.functionCall) : text));
    const extra = (reply.thoughtsTokens ?? 0) + (reply.toolUsePromptTokens ?? 0);
    const usageAt = (candidatesSoFar: number): GoogleUsage => ({
      promptTokenCount: prompt,
      candidatesTokenCount: candidatesSoFar,
      totalTokenCount: prompt + candidatesSoFar + extra,
      ...(reply.cachedTokens ? { cachedContentTokenCount: reply.cachedTokens } : {}),
      ...(reply.thoughtsTokens ? { thoughtsTokenCount: reply.thoughtsTokens } : {}),
      ...(reply.toolUsePromptTokens ? { toolUsePromptTokenCount: reply.toolUsePromptTokens } : {}),
      promptTokensDetails: [{ modality: "TEXT", tokenCount: prompt }],
    });
    const responseId = fakeId("", 22);
    const modelVersion = reply.modelVersion ?? model;
    const chunk = (parts: unknown[], candidatesSoFar: number, finished: boolean) => ({
      candidates: [{ content: { parts, role: "model" }, ...(finished ? { finishReason: "STOP" } : {}), index: 0 }],
      usageMetadata: usageAt(candidatesSoFar),
      modelVersion,
      responseId,
    });

    if (!exchange.stream) {
      const parts = reply.functionCall ? [{ functionCall: reply.functionCall }] : [{ text }];
      exchange.reply = { status: 200, usage: usageAt(candidates), chunks: 1 };
      sendJson(res, 200, chunk(parts, candidates, true));
      return;
    }

    const pieces = reply.functionCall ? [reply.functionCall] : splitIntoDeltas(text);
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    let sent = 0;
    for (const [i, piece] of pieces.entries()) {
      if (reply.disconnectAfterChunks !== undefined && sent >= reply.disconnectAfterChunks) {
        res.destroy();
        return;
      }
      const last = i === pieces.length - 1;
      const soFar = last ? candidates : Math.min(candidates, Math.floor((candidates * (i + 1)) / pieces.length));
      const parts = typeof piece === "string" ? [{ text: piece }] : [{ functionCall: piece }];
      res.write(`data: ${JSON.stringify(chunk(parts, soFar, last))}\r\n\r\n`);
      sent += 1;
    }
    exchange.reply = { status: 200, usage: usageAt(candidates), chunks: sent };
    res.end();
  };

  const server = await startLoopbackServer(handle);
  return {
    baseURL: server.origin,
    requests,
    enqueue: (...replies) => void queue.push(...replies),
    respondWith: (next) => {
      responder = next;
    },
    close: () => server.close(),
  };
}
