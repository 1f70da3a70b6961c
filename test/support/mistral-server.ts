/**
 * A local stand-in for Mistral's chat completions (`POST /v1/chat/completions`) as
 * `@mistralai/mistralai` 2.2 (and through it `@langchain/mistralai`'s ChatMistralAI) parses it:
 * `ChatCompletionResponse` JSON, or data-only SSE `CompletionChunk`s ending with `data: [DONE]`, the
 * last chunk carrying `usage` (esm/models/components/completionchunk.d.ts, usageinfo.d.ts: prompt_tokens,
 * completion_tokens, total_tokens on the wire). Point ChatMistralAI at it with `serverURL: fake.baseURL`.
 */
import type { ServerResponse } from "node:http";
import { fakeId, type IncomingJsonRequest, roughTokenCount, sendJson, splitIntoDeltas, startLoopbackServer, startSse, writeSse } from "./http.js";

export interface MistralReply {
  text?: string;
  promptTokens?: number;
  completionTokens?: number;
  /** The served model. Default: the requested one. */
  model?: string;
}

export interface MistralExchange {
  path: string;
  stream: boolean;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- whatever the SDK sent
  body: Record<string, any>;
  reply: { status: number; usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number } };
}

export interface MistralFake {
  baseURL: string;
  requests: MistralExchange[];
  enqueue(...replies: MistralReply[]): void;
  respondWith(responder: () => MistralReply): void;
  close(): Promise<void>;
}

export async function startMistralServer(): Promise<MistralFake> {
  const queue: MistralReply[] = [];
  let responder: () => MistralReply = () => ({});
  const requests: MistralExchange[] = [];
  const handle = async (req: IncomingJsonRequest, res: ServerResponse) => {
    const body = (req.body && typeof req.body === "object" ? req.body : {}) as Record<string, any>;
    const exchange: MistralExchange = { path: req.path, stream: body.stream === true, body, reply: { status: 0 } };
    requests.push(exchange);
    if (req.method !== "POST" || req.path !== "/v1/chat/completions") {
      exchange.reply = { status: 404 };
      return sendJson(res, 404, { detail: "Not Found" });
    }
    if (!String(req.headers.authorization ?? "").startsWith("Bearer ")) {
      exchange.reply = { status: 401 };
      return sendJson(res, 401, { message: "Unauthorized", request_id: fakeId("", 32) });
    }
    const reply = queue.shift() ?? responder();
    const text = reply.text ?? "Bonjour from the fake Mistral.";
    const model = reply.model ?? body.model;
    const usage = {
      prompt_tokens: reply.promptTokens ?? roughTokenCount(JSON.stringify(body.messages ?? [])),
      completion_tokens: reply.completionTokens ?? roughTokenCount(text),
      total_tokens: 0,
    };
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
    exchange.reply = { status: 200, usage };
    const id = fakeId("", 32);
    const created = Math.floor(Date.now() / 1000);
    if (!exchange.stream) {
      return sendJson(res, 200, {
        id,
        object: "chat.completion",
        model,
        usage,
        created,
        choices: [{ index: 0, message: { role: "assistant", content: text, tool_calls: null, prefix: false }, finish_reason: "stop" }],
      });
    }
    startSse(res);
    const chunk = (delta: Record<string, unknown>, finish: string | null, extra: Record<string, unknown> = {}) => ({
      id,
      object: "chat.completion.chunk",
      created,
      model,
      choices: [{ index: 0, delta, finish_reason: finish }],
      ...extra,
    });
    writeSse(res, chunk({ role: "assistant", content: "" }, null));
    for (const piece of splitIntoDeltas(text)) writeSse(res, chunk({ content: piece }, null));
    // The last chunk: an empty delta, the finish reason, and the usage of the whole call.
    writeSse(res, chunk({ content: "" }, "stop", { usage }));
    writeSse(res, "[DONE]");
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
