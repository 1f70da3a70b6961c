/**
 * A local stand-in for Ollama's `POST /api/chat` as the `ollama` 0.6 client (and through it
 * `@langchain/ollama`'s ChatOllama, which always streams) parses it: newline-delimited JSON
 * `ChatResponse`s (dist/index.d.ts), the last with `done: true`, `done_reason`, and the counts
 * `prompt_eval_count` (input) and `eval_count` (output, thinking included). Point ChatOllama at it
 * with `baseUrl: fake.baseURL`.
 */
import type { ServerResponse } from "node:http";
import { type IncomingJsonRequest, roughTokenCount, sendJson, splitIntoDeltas, startLoopbackServer } from "./http.js";

export interface OllamaReply {
  text?: string;
  promptEvalCount?: number;
  evalCount?: number;
}

export interface OllamaExchange {
  path: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- whatever the client sent
  body: Record<string, any>;
  reply: { status: number; promptEvalCount?: number; evalCount?: number };
}

export interface OllamaFake {
  baseURL: string;
  requests: OllamaExchange[];
  enqueue(...replies: OllamaReply[]): void;
  respondWith(responder: () => OllamaReply): void;
  close(): Promise<void>;
}

export async function startOllamaServer(): Promise<OllamaFake> {
  const queue: OllamaReply[] = [];
  let responder: () => OllamaReply = () => ({});
  const requests: OllamaExchange[] = [];
  const handle = async (req: IncomingJsonRequest, res: ServerResponse) => {
    const body = (req.body && typeof req.body === "object" ? req.body : {}) as Record<string, any>;
    const exchange: OllamaExchange = { path: req.path, body, reply: { status: 0 } };
    requests.push(exchange);
    if (req.method !== "POST" || req.path !== "/api/chat") {
      exchange.reply = { status: 404 };
      return sendJson(res, 404, { error: "404 page not found" });
    }
    const reply = queue.shift() ?? responder();
    const text = reply.text ?? "Hello from the fake Ollama.";
    const promptEvalCount = reply.promptEvalCount ?? roughTokenCount(JSON.stringify(body.messages ?? []));
    const evalCount = reply.evalCount ?? roughTokenCount(text);
    exchange.reply = { status: 200, promptEvalCount, evalCount };
    const at = () => new Date().toISOString();
    res.writeHead(200, { "content-type": "application/x-ndjson" });
    for (const piece of splitIntoDeltas(text)) {
      res.write(`${JSON.stringify({ model: body.model, created_at: at(), message: { role: "assistant", content: piece }, done: false })}\n`);
    }
    res.write(
      `${JSON.stringify({
        model: body.model,
        created_at: at(),
        message: { role: "assistant", content: "" },
        done: true,
        done_reason: "stop",
        total_duration: 812_000_000,
        load_duration: 12_000_000,
        prompt_eval_count: promptEvalCount,
        prompt_eval_duration: 100_000_000,
        eval_count: evalCount,
        eval_duration: 700_000_000,
      })}\n`,
    );
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
