/**
 * A local stand-in for OpenAI's Chat Completions API (`POST /v1/chat/completions`) that speaks the wire
 * format the `openai` SDK (and through it `@langchain/openai`'s ChatOpenAI) parses: ChatCompletion JSON,
 * `data:`-only SSE chunks ending with `data: [DONE]`, the usage-only chunk with `choices: []` when
 * `stream_options.include_usage` is set, tool calls, `n > 1`, audio output (`ChatCompletionAudio`),
 * and OpenAI's error envelope; shapes from openai 6.49 resources/chat/completions/completions.d.ts and
 * resources/completions.d.ts (`CompletionUsage`). `POST /v1/responses` is the Responses API
 * (openai-responses.ts).
 *
 * Point ChatOpenAI at it with
 *   new ChatOpenAI({ model: "gpt-4o-mini", apiKey: "test", maxRetries: 0, configuration: { baseURL: fake.baseURL } })
 */
import type { ServerResponse } from "node:http";
import { respondToResponses, type ResponsesExchange, type ResponsesReply } from "./openai-responses.js";
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

/** OpenAI's `CompletionUsage`, as the API sends it. */
export interface OpenAIUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details?: { cached_tokens?: number; audio_tokens?: number } | null;
  completion_tokens_details?: {
    reasoning_tokens?: number;
    audio_tokens?: number;
    accepted_prediction_tokens?: number;
    rejected_prediction_tokens?: number;
  } | null;
}

/**
 * Overrides for the served usage. Missing counts are derived deterministically from the request and the
 * reply; `total_tokens` defaults to prompt + completion; the details objects default to all zeros (as the
 * real API sends them) and are merged field by field, or dropped entirely with `null`.
 */
export type OpenAIUsageOverride = Partial<OpenAIUsage>;

export interface OpenAIToolCallSpec {
  /** Default: a fresh `call_...` id. */
  id?: string;
  name: string;
  /** An object is JSON-encoded; a string is sent as is (so malformed JSON can be tested too). */
  arguments: string | Record<string, unknown>;
}

export interface OpenAIErrorSpec {
  status: number;
  message?: string;
  /** e.g. "server_error", "invalid_request_error", "rate_limit_exceeded"... Default from the status. */
  type?: string;
  code?: string | null;
  param?: string | null;
  headers?: Record<string, string>;
}

export interface OpenAIStreamFailure {
  /** How many chunks (the role chunk included) to send before failing. */
  afterChunks: number;
  /**
   * "error-event": a `data: {"error": {...}}` line, which the SDK turns into an APIError mid-stream;
   * "disconnect": the socket is destroyed; "hang": nothing more is sent until the server closes.
   */
  mode: "error-event" | "disconnect" | "hang";
  message?: string;
}

export interface OpenAIReply {
  /**
   * The assistant text. An array gives one text per choice (cycled when shorter than `n`).
   * Default: "Hello from the fake OpenAI." (or null when `toolCalls` are given).
   */
  content?: string | null | Array<string | null>;
  /** Makes the reply an assistant tool-call message; finish_reason defaults to "tool_calls". */
  toolCalls?: OpenAIToolCallSpec[];
  finishReason?: "stop" | "length" | "tool_calls" | "content_filter" | "function_call";
  /** `null`: no usage at all (also no usage chunk when streaming). */
  usage?: OpenAIUsageOverride | null;
  /** The served model snapshot. Default: the request's model mapped through `modelSnapshots`. */
  model?: string;
  /** Extra response headers. */
  headers?: Record<string, string>;
  /** Wait before answering. */
  delayMs?: number;
  /** Wait between SSE chunks. */
  chunkDelayMs?: number;
  /** Answer with an error instead. */
  error?: OpenAIErrorSpec;
  /** Streaming only: break the stream part-way. */
  streamFailure?: OpenAIStreamFailure;
  /** Streaming only: after this many chunks, wait for `fake.release()` before going on. */
  holdAfterChunks?: number;
  /** How to answer a `POST /v1/responses` (the Responses API). */
  responses?: ResponsesReply;
}

/** What the fake saw. `body` is the JSON the SDK sent (ChatCompletionCreateParams). */
export interface OpenAIRequest {
  path: string;
  headers: Record<string, string | string[] | undefined>;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- whatever the SDK sent
  body: Record<string, any>;
  stream: boolean;
  /** `stream_options.include_usage === true` */
  includeUsage: boolean;
  n: number;
}

export interface OpenAIExchange extends OpenAIRequest {
  /** What was served: status, and for successes the snapshot and the exact usage object sent (or null). */
  reply: { status: number; model?: string; usage?: OpenAIUsage | null; choices?: number; id?: string; responses?: ResponsesExchange };
}

export type OpenAIResponder = (request: OpenAIRequest) => OpenAIReply | Promise<OpenAIReply>;

export interface OpenAIFakeOptions {
  /** Used when the queue is empty. Default: a plain text reply. */
  respond?: OpenAIResponder;
  /** Request model -> served snapshot. Merged over DEFAULT_OPENAI_SNAPSHOTS. */
  modelSnapshots?: Record<string, string>;
  /** Require `Authorization: Bearer ...` (401 otherwise), like the real API. Default true. */
  requireAuth?: boolean;
}

export interface OpenAIFake {
  /** `http://127.0.0.1:<port>/v1`: pass as ChatOpenAI `configuration.baseURL` (or openai `baseURL`). */
  baseURL: string;
  origin: string;
  /** Every request, in arrival order, with what was served. */
  requests: OpenAIExchange[];
  /** Replies served first, in order, before falling back to the responder. */
  enqueue(...replies: OpenAIReply[]): void;
  /** Replaces the fallback responder. */
  respondWith(responder: OpenAIResponder): void;
  /** Lets streams held by `holdAfterChunks` go on. */
  release(): void;
  /** How many streams are held right now. */
  readonly held: number;
  close(): Promise<void>;
}

export const DEFAULT_OPENAI_SNAPSHOTS: Readonly<Record<string, string>> = {
  "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
  "gpt-4o": "gpt-4o-2024-08-06",
  "gpt-4.1": "gpt-4.1-2025-04-14",
  "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
  "o3-mini": "o3-mini-2025-01-31",
  "o4-mini": "o4-mini-2025-04-16",
};

export const DEFAULT_OPENAI_TEXT = "Hello from the fake OpenAI.";

const ERROR_TYPES: Record<number, string> = {
  400: "invalid_request_error",
  401: "invalid_request_error",
  403: "invalid_request_error",
  404: "invalid_request_error",
  429: "rate_limit_exceeded",
};

/** True when the request's messages include a tool result (`role: "tool"`): the agent-loop switch. */
export function hasToolResult(request: OpenAIRequest): boolean {
  const messages: unknown[] = Array.isArray(request.body.messages) ? request.body.messages : [];
  return messages.some((m) => (m as { role?: string }).role === "tool");
}

/** The deterministic prompt count used when a reply does not set `prompt_tokens`. */
export function derivedPromptTokens(body: Record<string, unknown>): number {
  const messages: unknown[] = Array.isArray(body.messages) ? body.messages : [];
  let tokens = 3;
  for (const message of messages) tokens += 4 + roughTokenCount(JSON.stringify(message));
  if (Array.isArray(body.tools) && body.tools.length > 0) tokens += roughTokenCount(JSON.stringify(body.tools));
  return tokens;
}

interface ChoicePlan {
  index: number;
  content: string | null;
  toolCalls: Array<{ id: string; name: string; arguments: string }>;
  finishReason: string;
}

function planChoices(reply: OpenAIReply, n: number): ChoicePlan[] {
  const toolCalls = (reply.toolCalls ?? []).map((call) => ({
    id: call.id ?? fakeId("call_", 24),
    name: call.name,
    arguments: typeof call.arguments === "string" ? call.arguments : JSON.stringify(call.arguments),
  }));
  const contents: Array<string | null> = Array.isArray(reply.content)
    ? reply.content
    : [reply.content !== undefined ? reply.content : toolCalls.length > 0 ? null : DEFAULT_OPENAI_TEXT];
  const finishReason = reply.finishReason ?? (toolCalls.length > 0 ? "tool_calls" : "stop");
  return Array.from({ length: n }, (_, index) => ({
    index,
    content: contents.length > 0 ? (contents[index % contents.length] ?? null) : null,
    // Each choice gets its own tool call ids, like the real API.
    toolCalls: toolCalls.map((call) => ({ ...call, id: index === 0 ? call.id : fakeId("call_", 24) })),
    finishReason,
  }));
}

function buildUsage(override: OpenAIUsageOverride | null | undefined, body: Record<string, unknown>, choices: ChoicePlan[]): OpenAIUsage | null {
  if (override === null) return null;
  const o = override ?? {};
  const prompt = o.prompt_tokens ?? derivedPromptTokens(body);
  const completion =
    o.completion_tokens ??
    choices.reduce(
      (sum, c) =>
        sum + roughTokenCount(c.content ?? "") + c.toolCalls.reduce((s, t) => s + roughTokenCount(t.name + t.arguments), 0),
      0,
    );
  const usage: OpenAIUsage = {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: o.total_tokens ?? prompt + completion,
  };
  if (o.prompt_tokens_details !== null) {
    usage.prompt_tokens_details = { cached_tokens: 0, audio_tokens: 0, ...o.prompt_tokens_details };
  }
  if (o.completion_tokens_details !== null) {
    usage.completion_tokens_details = {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
      ...o.completion_tokens_details,
    };
  }
  return usage;
}

function sendError(res: ServerResponse, spec: OpenAIErrorSpec): void {
  sendJson(
    res,
    spec.status,
    {
      error: {
        message: spec.message ?? (spec.status >= 500 ? "The server had an error while processing your request. Sorry about that!" : "Bad request."),
        type: spec.type ?? ERROR_TYPES[spec.status] ?? "server_error",
        param: spec.param ?? null,
        code: spec.code ?? null,
      },
    },
    { "x-request-id": fakeId("req_", 32), ...spec.headers },
  );
}

export async function startOpenAIServer(options: OpenAIFakeOptions = {}): Promise<OpenAIFake> {
  const queue: OpenAIReply[] = [];
  let responder: OpenAIResponder = options.respond ?? (() => ({}));
  const snapshots = { ...DEFAULT_OPENAI_SNAPSHOTS, ...options.modelSnapshots };
  const requireAuth = options.requireAuth ?? true;
  const requests: OpenAIExchange[] = [];
  const gate = createGate();

  const handle = async (req: IncomingJsonRequest, res: ServerResponse) => {
    const body = (req.body && typeof req.body === "object" ? req.body : {}) as Record<string, any>;
    const stream = body.stream === true;
    const exchange: OpenAIExchange = {
      path: req.path,
      headers: req.headers,
      body,
      stream,
      includeUsage: body.stream_options?.include_usage === true,
      n: typeof body.n === "number" ? body.n : 1,
      reply: { status: 0 },
    };
    requests.push(exchange);
    const fail = (spec: OpenAIErrorSpec) => {
      exchange.reply = { status: spec.status };
      sendError(res, spec);
    };

    const path = req.path.split("?")[0];
    if (req.method !== "POST" || (path !== "/v1/chat/completions" && path !== "/v1/responses")) {
      return fail({ status: 404, message: `Invalid URL (${req.method} ${req.path})`, type: "invalid_request_error" });
    }
    const auth = req.headers.authorization;
    if (requireAuth && (typeof auth !== "string" || !auth.startsWith("Bearer ") || auth.length <= 7)) {
      return fail({
        status: 401,
        message: "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth.",
      });
    }
    if (req.body === undefined) return fail({ status: 400, message: "We could not parse the JSON body of your request." });
    if (typeof body.model !== "string") return fail({ status: 400, message: "you must provide a model parameter", param: "model" });
    if (path === "/v1/responses") {
      const reply = queue.shift() ?? (await responder(exchange));
      if (reply.delayMs) await sleep(reply.delayMs);
      if (reply.error) return fail(reply.error);
      const served = reply.responses?.model ?? reply.model ?? snapshots[body.model] ?? body.model;
      exchange.reply = { status: 200, model: served, responses: respondToResponses(res, body, reply.responses ?? {}, served) };
      return;
    }
    if (!Array.isArray(body.messages) || body.messages.length === 0) {
      return fail({ status: 400, message: "Missing required parameter: 'messages'.", param: "messages", code: "missing_required_parameter" });
    }
    if (body.stream_options != null && !stream) {
      return fail({
        status: 400,
        message: "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        param: "stream_options",
        code: "invalid_value",
      });
    }

    const reply = queue.shift() ?? (await responder(exchange));
    if (reply.delayMs) await sleep(reply.delayMs);
    if (reply.error) return fail(reply.error);

    const model = reply.model ?? snapshots[body.model] ?? body.model;
    const choices = planChoices(reply, exchange.n);
    const usage = buildUsage(reply.usage, body, choices);
    const id = fakeId("chatcmpl-", 29);
    const created = Math.floor(Date.now() / 1000);
    const systemFingerprint = "fp_0aa8d3e20b";
    const wantsAudio = Array.isArray(body.modalities) && body.modalities.includes("audio");
    const headers = { "x-request-id": fakeId("req_", 32), "openai-processing-ms": "42", ...reply.headers };
    exchange.reply = { status: 200, model, usage: stream && !exchange.includeUsage ? null : usage, choices: choices.length, id };

    if (!stream) {
      sendJson(
        res,
        200,
        {
          id,
          object: "chat.completion",
          created,
          model,
          choices: choices.map((c) => ({
            index: c.index,
            message: {
              role: "assistant",
              // With audio output the text is the audio's transcript, and content is null.
              content: wantsAudio ? null : c.content,
              refusal: null,
              annotations: [],
              ...(wantsAudio ? { audio: { id: fakeId("audio_", 24), data: "UklGRg==", expires_at: created + 3600, transcript: c.content ?? "" } } : {}),
              ...(c.toolCalls.length > 0
                ? { tool_calls: c.toolCalls.map((t) => ({ id: t.id, type: "function", function: { name: t.name, arguments: t.arguments } })) }
                : {}),
            },
            logprobs: null,
            finish_reason: c.finishReason,
          })),
          ...(usage ? { usage } : {}),
          service_tier: "default",
          system_fingerprint: systemFingerprint,
        },
        headers,
      );
      return;
    }

    // Streaming: per choice, a role chunk, content / tool-call deltas, a finish chunk; choices interleaved.
    const includeObfuscation = body.stream_options?.include_obfuscation !== false;
    const chunk = (choice: Record<string, unknown> | undefined, extra: Record<string, unknown> = {}) => ({
      id,
      object: "chat.completion.chunk",
      created,
      model,
      service_tier: "default",
      system_fingerprint: systemFingerprint,
      choices: choice ? [choice] : [],
      ...(exchange.includeUsage ? { usage: null } : {}),
      ...extra,
      ...(includeObfuscation ? { obfuscation: "fk" } : {}),
    });
    const perChoice = choices.map((c) => {
      const out: Record<string, unknown>[] = [];
      const choice = (delta: Record<string, unknown>, finish: string | null = null) => ({ index: c.index, delta, logprobs: null, finish_reason: finish });
      const first = c.toolCalls[0];
      const toolCallStart = (t: { id: string; name: string }, i: number) => ({ index: i, id: t.id, type: "function", function: { name: t.name, arguments: "" } });
      if (first && c.content === null) {
        out.push(choice({ role: "assistant", content: null, tool_calls: [toolCallStart(first, 0)], refusal: null }));
      } else {
        out.push(choice({ role: "assistant", content: "", refusal: null }));
        for (const piece of splitIntoDeltas(c.content ?? "")) out.push(choice({ content: piece }));
        if (first) out.push(choice({ tool_calls: [toolCallStart(first, 0)] }));
      }
      c.toolCalls.forEach((t, i) => {
        if (i > 0) out.push(choice({ tool_calls: [toolCallStart(t, i)] }));
        for (const piece of splitArguments(t.arguments)) out.push(choice({ tool_calls: [{ index: i, function: { arguments: piece } }] }));
      });
      out.push(choice({}, c.finishReason));
      return out;
    });
    const ordered: Record<string, unknown>[] = [];
    for (let step = 0; perChoice.some((list) => step < list.length); step += 1) {
      for (const list of perChoice) {
        const item = list[step];
        if (item) ordered.push(chunk(item));
      }
    }

    startSse(res, headers);
    let sent = 0;
    for (const item of ordered) {
      if (reply.holdAfterChunks !== undefined && sent === reply.holdAfterChunks) await gate.wait();
      if (reply.streamFailure && sent >= reply.streamFailure.afterChunks) return failStream(res, reply.streamFailure);
      writeSse(res, item);
      sent += 1;
      if (reply.chunkDelayMs) await sleep(reply.chunkDelayMs);
    }
    if (reply.streamFailure && sent >= reply.streamFailure.afterChunks) return failStream(res, reply.streamFailure);
    if (exchange.includeUsage && usage) writeSse(res, chunk(undefined, { usage }));
    writeSse(res, "[DONE]");
    res.end();
  };

  const server = await startLoopbackServer(handle);
  return {
    baseURL: `${server.origin}/v1`,
    origin: server.origin,
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

function failStream(res: ServerResponse, failure: OpenAIStreamFailure): void {
  if (failure.mode === "disconnect") {
    res.destroy();
  } else if (failure.mode === "error-event") {
    writeSse(res, {
      error: { message: failure.message ?? "The server had an error while processing your request.", type: "server_error", param: null, code: null },
    });
    res.end();
  }
  // "hang": leave the response open; close() destroys the socket.
}

/** Splits JSON arguments into a few pieces the way the API streams them. */
function splitArguments(args: string): string[] {
  if (args.length === 0) return [];
  const pieces: string[] = [];
  for (let i = 0; i < args.length; i += 8) pieces.push(args.slice(i, i + 8));
  return pieces;
}
