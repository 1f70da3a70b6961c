/**
 * A local stand-in for Anthropic's Messages API (`POST /v1/messages`) that speaks the wire format
 * `@anthropic-ai/sdk` (and through it `@langchain/anthropic`'s ChatAnthropic) parses: Message JSON with
 * usage {input_tokens, cache_creation_input_tokens, cache_read_input_tokens, output_tokens}, NAMED SSE
 * events (`event: message_start` + `data:`; the SDK drops data lines without an event line), tool_use
 * blocks, and Anthropic's error envelope.
 *
 * Shapes from @anthropic-ai/sdk 0.122 resources/messages/messages.d.ts: `Usage` (with `cache_creation`
 * by TTL, `server_tool_use`, `output_tokens_details`), `MessageDeltaUsage` (cumulative), the
 * `RawMessageStreamEvent`s, and the `ServerToolUseBlock` / `WebSearchToolResultBlock` / thinking blocks.
 *
 * Point ChatAnthropic at it with
 *   new ChatAnthropic({ model: "claude-sonnet-4-5", apiKey: "test", maxRetries: 0, anthropicApiUrl: fake.baseURL })
 * (`clientOptions: { baseURL: fake.baseURL }` works too; `anthropicApiUrl` wins when both are set).
 */
import type { ServerResponse } from "node:http";
import {
  createGate,
  fakeId,
  type IncomingJsonRequest,
  roughTokenCount,
  sendJson,
  sleep,
  splitIntoDeltas,
  startLoopbackServer,
  startSse,
  writeSse,
} from "./http.js";

/** Anthropic's `Usage` as a Message carries it (the fields the fake sends). */
export interface AnthropicUsage {
  /** Uncached input only: cache reads and writes are NOT included here (they are separate fields). */
  input_tokens: number;
  cache_creation_input_tokens: number | null;
  cache_read_input_tokens: number | null;
  cache_creation?: { ephemeral_5m_input_tokens: number; ephemeral_1h_input_tokens: number } | null;
  output_tokens: number;
  output_tokens_details?: { thinking_tokens: number } | null;
  server_tool_use?: { web_search_requests: number; web_fetch_requests: number } | null;
  service_tier?: "standard" | "priority" | "batch" | null;
}

export type AnthropicUsageOverride = Partial<AnthropicUsage>;

export interface AnthropicToolUseSpec {
  /** Default: a fresh `toolu_...` id. */
  id?: string;
  name: string;
  input: Record<string, unknown>;
}

export interface AnthropicErrorSpec {
  status: number;
  /** e.g. "invalid_request_error", "rate_limit_error", "api_error", "overloaded_error". Default from the status. */
  type?: string;
  message?: string;
  headers?: Record<string, string>;
}

export interface AnthropicStreamFailure {
  /** How many SSE events (message_start included, pings included) to send before failing. */
  afterEvents: number;
  /**
   * "error-event": `event: error` with `{"type":"error","error":{...}}` (what the API sends on overload
   * mid-stream; the SDK throws an APIError); "disconnect": socket destroyed; "hang": silence until close().
   */
  mode: "error-event" | "disconnect" | "hang";
  errorType?: string;
  message?: string;
}

export interface AnthropicReply {
  /** The text block. Default "Hello from the fake Anthropic." (none when toolUses are given); null: no text block. */
  text?: string | null;
  /** tool_use blocks after the text; stop_reason defaults to "tool_use". */
  toolUses?: AnthropicToolUseSpec[];
  stopReason?: "end_turn" | "max_tokens" | "stop_sequence" | "tool_use" | "pause_turn" | "refusal";
  /**
   * The final usage, as a non-streaming Message reports it and as `message_delta` reports it when
   * streaming. Missing counts are derived deterministically; cache fields default to 0.
   */
  usage?: AnthropicUsageOverride;
  /** Streaming: `message_start.message.usage.output_tokens`. The real API sends a small number, usually 1. Default 1. */
  startOutputTokens?: number;
  /**
   * Streaming: what `message_delta.usage` carries. "cumulative" (default, the current API): input_tokens,
   * cache fields and output_tokens, all cumulative totals; "output_only": just `{ output_tokens }` (older docs).
   */
  messageDeltaUsage?: "cumulative" | "output_only";
  /** Streaming: send a `ping` event after the first content_block_start. Default true. */
  ping?: boolean;
  /**
   * Streaming: message_start's usage where it differs from the final one (after a server tool ran the
   * final, cumulative input exceeds message_start's). Default: the final usage, output 1.
   */
  startUsage?: AnthropicUsageOverride;
  /** Streaming: how many `message_delta` events carry the (cumulative) usage. Default 1. */
  messageDeltas?: number;
  /** Server tools run before the answer: a server_tool_use block and its result block each. */
  serverTools?: Array<{ name: "web_search" | "web_fetch"; query: string }>;
  /** A thinking block before the text. */
  thinking?: string;
  /** The served model. Default: the requested model. */
  model?: string;
  headers?: Record<string, string>;
  delayMs?: number;
  chunkDelayMs?: number;
  error?: AnthropicErrorSpec;
  streamFailure?: AnthropicStreamFailure;
  /** Streaming: after this many SSE events, wait for `fake.release()` before going on. */
  holdAfterEvents?: number;
}

export interface AnthropicRequest {
  path: string;
  headers: Record<string, string | string[] | undefined>;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- whatever the SDK sent
  body: Record<string, any>;
  stream: boolean;
}

export interface AnthropicExchange extends AnthropicRequest {
  /**
   * What was served. `usage` is the final usage (the Message's, or message_delta's counts when
   * streaming); `startUsage` is message_start's usage when streaming.
   */
  reply: { status: number; model?: string; id?: string; usage?: AnthropicUsage; startUsage?: AnthropicUsage };
}

export type AnthropicResponder = (request: AnthropicRequest) => AnthropicReply | Promise<AnthropicReply>;

export interface AnthropicFakeOptions {
  respond?: AnthropicResponder;
  /** Require x-api-key (or Authorization) and anthropic-version headers, like the real API. Default true. */
  requireHeaders?: boolean;
}

export interface AnthropicFake {
  /** `http://127.0.0.1:<port>` (the SDK appends `/v1/messages`): ChatAnthropic `anthropicApiUrl`. */
  baseURL: string;
  requests: AnthropicExchange[];
  enqueue(...replies: AnthropicReply[]): void;
  respondWith(responder: AnthropicResponder): void;
  /** Lets streams held by `holdAfterEvents` go on. */
  release(): void;
  /** How many streams are held right now. */
  readonly held: number;
  close(): Promise<void>;
}

export const DEFAULT_ANTHROPIC_TEXT = "Hello from the fake Anthropic.";

const ERROR_TYPES: Record<number, string> = {
  400: "invalid_request_error",
  401: "authentication_error",
  402: "billing_error",
  403: "permission_error",
  404: "not_found_error",
  413: "request_too_large",
  429: "rate_limit_error",
  500: "api_error",
  504: "timeout_error",
  529: "overloaded_error",
};

/** True when the last user turn carries a `tool_result` block: the agent-loop switch. */
export function hasToolResult(request: AnthropicRequest): boolean {
  const messages: unknown[] = Array.isArray(request.body.messages) ? request.body.messages : [];
  return messages.some((m) => {
    const content = (m as { content?: unknown }).content;
    return Array.isArray(content) && content.some((b) => (b as { type?: string }).type === "tool_result");
  });
}

/** The deterministic uncached input count used when a reply does not set `input_tokens`. */
export function derivedInputTokens(body: Record<string, unknown>): number {
  return roughTokenCount(JSON.stringify([body.system ?? null, body.messages ?? [], body.tools ?? null]));
}

function sendError(res: ServerResponse, spec: AnthropicErrorSpec): void {
  const requestId = fakeId("req_011", 24);
  sendJson(
    res,
    spec.status,
    {
      type: "error",
      error: { type: spec.type ?? ERROR_TYPES[spec.status] ?? "api_error", message: spec.message ?? defaultMessage(spec.status) },
      request_id: requestId,
    },
    { "request-id": requestId, ...spec.headers },
  );
}

function defaultMessage(status: number): string {
  if (status === 529) return "Overloaded";
  if (status >= 500) return "Internal server error";
  if (status === 429) return "Number of request tokens has exceeded your per-minute rate limit";
  return "Invalid request";
}

export async function startAnthropicServer(options: AnthropicFakeOptions = {}): Promise<AnthropicFake> {
  const queue: AnthropicReply[] = [];
  let responder: AnthropicResponder = options.respond ?? (() => ({}));
  const requireHeaders = options.requireHeaders ?? true;
  const requests: AnthropicExchange[] = [];
  const gate = createGate();

  const handle = async (req: IncomingJsonRequest, res: ServerResponse) => {
    const body = (req.body && typeof req.body === "object" ? req.body : {}) as Record<string, any>;
    const stream = body.stream === true;
    const exchange: AnthropicExchange = { path: req.path, headers: req.headers, body, stream, reply: { status: 0 } };
    requests.push(exchange);
    const fail = (spec: AnthropicErrorSpec) => {
      exchange.reply = { status: spec.status };
      sendError(res, spec);
    };

    if (req.method !== "POST" || req.path.split("?")[0] !== "/v1/messages") {
      return fail({ status: 404, message: `Not found: ${req.method} ${req.path}` });
    }
    if (requireHeaders) {
      if (!req.headers["x-api-key"] && !req.headers.authorization) {
        return fail({ status: 401, message: "x-api-key header is required" });
      }
      if (!req.headers["anthropic-version"]) return fail({ status: 400, message: "anthropic-version: header is required" });
    }
    if (req.body === undefined) return fail({ status: 400, message: "Request body is not valid JSON" });
    if (typeof body.model !== "string") return fail({ status: 400, message: "model: Field required" });
    if (typeof body.max_tokens !== "number") return fail({ status: 400, message: "max_tokens: Field required" });
    if (!Array.isArray(body.messages)) return fail({ status: 400, message: "messages: Field required" });

    const reply = queue.shift() ?? (await responder(exchange));
    if (reply.delayMs) await sleep(reply.delayMs);
    if (reply.error) return fail(reply.error);

    const model = reply.model ?? body.model;
    const id = fakeId("msg_01", 22);
    const toolUses = (reply.toolUses ?? []).map((t) => ({ id: t.id ?? fakeId("toolu_01", 22), name: t.name, input: t.input }));
    const text = reply.text !== undefined ? reply.text : toolUses.length > 0 ? null : DEFAULT_ANTHROPIC_TEXT;
    const stopReason = reply.stopReason ?? (toolUses.length > 0 ? "tool_use" : "end_turn");
    const o = reply.usage ?? {};
    const usage: AnthropicUsage = {
      input_tokens: o.input_tokens ?? derivedInputTokens(body),
      cache_creation_input_tokens: o.cache_creation_input_tokens !== undefined ? o.cache_creation_input_tokens : 0,
      cache_read_input_tokens: o.cache_read_input_tokens !== undefined ? o.cache_read_input_tokens : 0,
      cache_creation:
        o.cache_creation !== undefined
          ? o.cache_creation
          : { ephemeral_5m_input_tokens: o.cache_creation_input_tokens ?? 0, ephemeral_1h_input_tokens: 0 },
      output_tokens:
        o.output_tokens ??
        Math.max(1, roughTokenCount(text ?? "") + toolUses.reduce((s, t) => s + roughTokenCount(t.name + JSON.stringify(t.input)), 0)),
      output_tokens_details: o.output_tokens_details !== undefined ? o.output_tokens_details : null,
      server_tool_use:
        o.server_tool_use !== undefined
          ? o.server_tool_use
          : {
              web_search_requests: (reply.serverTools ?? []).filter((t) => t.name === "web_search").length,
              web_fetch_requests: (reply.serverTools ?? []).filter((t) => t.name === "web_fetch").length,
            },
      service_tier: o.service_tier !== undefined ? o.service_tier : "standard",
    };
    const serverBlocks = (reply.serverTools ?? []).flatMap((t) => {
      const id = fakeId("srvtoolu_01", 22);
      const result =
        t.name === "web_search"
          ? { type: "web_search_tool_result", tool_use_id: id, content: [{ type: "web_search_result", url: "https://example.com/", title: "Example", encrypted_content: "EqgfCioIARgBIiQ3", page_age: null }] }
          : { type: "web_fetch_tool_result", tool_use_id: id, content: { type: "web_fetch_result", url: "https://example.com/", content: { type: "document", source: { type: "text", media_type: "text/plain", data: "Example" } }, retrieved_at: null } };
      return [{ type: "server_tool_use", id, name: t.name, input: { query: t.query } }, result];
    });
    const thinkingBlocks = reply.thinking !== undefined ? [{ type: "thinking", thinking: reply.thinking, signature: "EuYBCkQYAiJA" }] : [];
    const content = [
      ...thinkingBlocks,
      ...serverBlocks,
      ...(text !== null ? [{ type: "text", text }] : []),
      ...toolUses.map((t) => ({ type: "tool_use", id: t.id, name: t.name, input: t.input })),
    ];
    const requestId = fakeId("req_011", 24);
    const headers = { "request-id": requestId, ...reply.headers };

    if (!stream) {
      exchange.reply = { status: 200, model, id, usage };
      sendJson(
        res,
        200,
        { id, type: "message", role: "assistant", model, content, stop_reason: stopReason, stop_sequence: null, usage },
        headers,
      );
      return;
    }

    const startUsage: AnthropicUsage = {
      ...usage,
      server_tool_use: { web_search_requests: 0, web_fetch_requests: 0 },
      output_tokens_details: null,
      ...reply.startUsage,
      output_tokens: reply.startUsage?.output_tokens ?? reply.startOutputTokens ?? 1,
    };
    exchange.reply = { status: 200, model, id, usage, startUsage };
    const events: Array<[string, unknown]> = [];
    events.push([
      "message_start",
      {
        type: "message_start",
        message: { id, type: "message", role: "assistant", model, content: [], stop_reason: null, stop_sequence: null, usage: startUsage },
      },
    ]);
    let pinged = reply.ping === false;
    const ping = () => {
      if (!pinged) events.push(["ping", { type: "ping" }]);
      pinged = true;
    };
    let index = 0;
    for (const block of [...thinkingBlocks, ...serverBlocks] as Array<Record<string, unknown> & { type: string }>) {
      if (block.type === "thinking") {
        events.push(["content_block_start", { type: "content_block_start", index, content_block: { type: "thinking", thinking: "", signature: "" } }]);
        ping();
        for (const piece of splitIntoDeltas(String(block.thinking))) {
          events.push(["content_block_delta", { type: "content_block_delta", index, delta: { type: "thinking_delta", thinking: piece } }]);
        }
        events.push(["content_block_delta", { type: "content_block_delta", index, delta: { type: "signature_delta", signature: block.signature } }]);
      } else if (block.type === "server_tool_use") {
        events.push(["content_block_start", { type: "content_block_start", index, content_block: { ...block, input: {} } }]);
        ping();
        events.push(["content_block_delta", { type: "content_block_delta", index, delta: { type: "input_json_delta", partial_json: JSON.stringify(block.input) } }]);
      } else {
        events.push(["content_block_start", { type: "content_block_start", index, content_block: block }]);
      }
      events.push(["content_block_stop", { type: "content_block_stop", index }]);
      index += 1;
    }
    if (text !== null) {
      events.push(["content_block_start", { type: "content_block_start", index, content_block: { type: "text", text: "" } }]);
      ping();
      for (const piece of splitIntoDeltas(text)) {
        events.push(["content_block_delta", { type: "content_block_delta", index, delta: { type: "text_delta", text: piece } }]);
      }
      events.push(["content_block_stop", { type: "content_block_stop", index }]);
      index += 1;
    }
    for (const t of toolUses) {
      events.push(["content_block_start", { type: "content_block_start", index, content_block: { type: "tool_use", id: t.id, name: t.name, input: {} } }]);
      ping();
      const json = JSON.stringify(t.input);
      events.push(["content_block_delta", { type: "content_block_delta", index, delta: { type: "input_json_delta", partial_json: "" } }]);
      for (let i = 0; i < json.length; i += 10) {
        events.push(["content_block_delta", { type: "content_block_delta", index, delta: { type: "input_json_delta", partial_json: json.slice(i, i + 10) } }]);
      }
      events.push(["content_block_stop", { type: "content_block_stop", index }]);
      index += 1;
    }
    // Every message_delta's usage is cumulative (MessageDeltaUsage): with several, the output grows
    // to the final count, and only the last says why the message stopped.
    const deltas = Math.max(1, reply.messageDeltas ?? 1);
    for (let i = 1; i <= deltas; i++) {
      const output = i === deltas ? usage.output_tokens : Math.max(startUsage.output_tokens, Math.floor((usage.output_tokens * i) / deltas));
      const deltaUsage =
        (reply.messageDeltaUsage ?? "cumulative") === "cumulative"
          ? {
              input_tokens: usage.input_tokens,
              cache_creation_input_tokens: usage.cache_creation_input_tokens,
              cache_read_input_tokens: usage.cache_read_input_tokens,
              output_tokens: output,
              output_tokens_details: usage.output_tokens_details ?? null,
              server_tool_use: usage.server_tool_use ?? null,
            }
          : { output_tokens: output };
      const last = i === deltas;
      events.push([
        "message_delta",
        { type: "message_delta", delta: { stop_reason: last ? stopReason : null, stop_sequence: null }, usage: deltaUsage },
      ]);
    }
    events.push(["message_stop", { type: "message_stop" }]);

    startSse(res, headers);
    let sent = 0;
    for (const [event, data] of events) {
      if (reply.holdAfterEvents !== undefined && sent === reply.holdAfterEvents) await gate.wait();
      if (reply.streamFailure && sent >= reply.streamFailure.afterEvents) return failStream(res, reply.streamFailure);
      writeSse(res, data, event);
      sent += 1;
      if (reply.chunkDelayMs) await sleep(reply.chunkDelayMs);
    }
    res.end();
  };

  const server = await startLoopbackServer(handle);
  return {
    baseURL: server.origin,
    requests,
    enqueue: (...replies) => {
      queue.push(...replies);
    },
    respondWith: (next) => {
      responder = next;
    },
    release: () => gate.release(),
    get held() {
      return gate.waiting;
    },
    close: () => server.close(),
  };
}

function failStream(res: ServerResponse, failure: AnthropicStreamFailure): void {
  if (failure.mode === "disconnect") {
    res.destroy();
  } else if (failure.mode === "error-event") {
    writeSse(
      res,
      { type: "error", error: { type: failure.errorType ?? "overloaded_error", message: failure.message ?? "Overloaded" } },
      "error",
    );
    res.end();
  }
}
