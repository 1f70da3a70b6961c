/**
 * OpenAI's Responses API (`POST /v1/responses`) for the OpenAI fake, in the shapes of openai 6.49's
 * resources/responses/responses.d.ts: a `Response` object (output items: `web_search_call` /
 * `file_search_call` items, then a `message` with `output_text` content; `ResponseUsage`), and, when
 * streaming, the named SSE events `response.created`, `response.output_item.added/done`,
 * `response.content_part.added/done`, `response.output_text.delta/done`,
 * `response.web_search_call.*`, and `response.completed` or `response.incomplete`, which alone carry
 * the usage.
 */
import type { ServerResponse } from "node:http";
import { fakeId, roughTokenCount, sendJson, splitIntoDeltas, startSse, writeSse } from "./http.js";

/** `ResponseUsage`. */
export interface ResponsesUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}

export interface ResponsesReply {
  text?: string;
  /** Hosted tool calls made before the answer, in order. */
  hostedCalls?: Array<"web_search_call" | "file_search_call">;
  usage?: { input_tokens?: number; output_tokens?: number; cached_tokens?: number; reasoning_tokens?: number };
  /** `status: "incomplete"` with `incomplete_details.reason: "max_output_tokens"` (and `response.incomplete` when streaming). */
  incomplete?: boolean;
  model?: string;
}

export interface ResponsesExchange {
  status: number;
  model?: string;
  usage?: ResponsesUsage;
}

/** Answers one Responses request; the fake has already checked auth and parsed the body. */
export function respondToResponses(res: ServerResponse, body: Record<string, any>, reply: ResponsesReply, model: string): ResponsesExchange {
  const text = reply.text ?? "Hello from the fake Responses API.";
  const created = Math.floor(Date.now() / 1000);
  const id = fakeId("resp_", 40);
  const hosted = (reply.hostedCalls ?? []).map((type) => ({ type, id: fakeId(type === "web_search_call" ? "ws_" : "fs_", 40) }));
  const messageId = fakeId("msg_", 40);
  const o = reply.usage ?? {};
  const input = o.input_tokens ?? roughTokenCount(JSON.stringify(body.input ?? ""));
  const output = o.output_tokens ?? roughTokenCount(text);
  const usage: ResponsesUsage = {
    input_tokens: input,
    input_tokens_details: { cached_tokens: o.cached_tokens ?? 0 },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: o.reasoning_tokens ?? 0 },
    total_tokens: input + output,
  };
  const status = reply.incomplete ? "incomplete" : "completed";
  const hostedDone = hosted.map((call) =>
    call.type === "web_search_call"
      ? { type: call.type, id: call.id, status: "completed", action: { type: "search", query: "fake query" } }
      : { type: call.type, id: call.id, status: "completed", queries: ["fake query"], results: null },
  );
  const message = {
    type: "message",
    id: messageId,
    status,
    role: "assistant",
    content: [{ type: "output_text", text, annotations: [], logprobs: [] }],
  };
  const response = (state: "in_progress" | typeof status, withOutput: boolean) => ({
    id,
    object: "response",
    created_at: created,
    status: state,
    background: false,
    error: null,
    incomplete_details: state === "incomplete" ? { reason: "max_output_tokens" } : null,
    instructions: null,
    max_output_tokens: body.max_output_tokens ?? null,
    model,
    output: withOutput ? [...hostedDone, message] : [],
    parallel_tool_calls: true,
    previous_response_id: null,
    reasoning: { effort: null, summary: null },
    service_tier: "default",
    store: true,
    temperature: 1,
    text: { format: { type: "text" }, verbosity: "medium" },
    tool_choice: "auto",
    tools: Array.isArray(body.tools) ? body.tools : [],
    top_p: 1,
    truncation: "disabled",
    usage: withOutput ? usage : null,
    user: null,
    metadata: {},
  });
  if (body.stream !== true) {
    sendJson(res, 200, response(status, true), { "x-request-id": fakeId("req_", 32) });
    return { status: 200, model, usage };
  }

  startSse(res, { "x-request-id": fakeId("req_", 32) });
  let sequence = 0;
  const send = (type: string, fields: Record<string, unknown>) => writeSse(res, { type, sequence_number: sequence++, ...fields }, type);
  send("response.created", { response: response("in_progress", false) });
  send("response.in_progress", { response: response("in_progress", false) });
  hosted.forEach((call, outputIndex) => {
    const kind = call.type.replace(/_call$/, "");
    send("response.output_item.added", { output_index: outputIndex, item: { type: call.type, id: call.id, status: "in_progress" } });
    send(`response.${kind}_call.in_progress`, { output_index: outputIndex, item_id: call.id });
    send(`response.${kind}_call.searching`, { output_index: outputIndex, item_id: call.id });
    send(`response.${kind}_call.completed`, { output_index: outputIndex, item_id: call.id });
    send("response.output_item.done", { output_index: outputIndex, item: hostedDone[outputIndex] });
  });
  const outputIndex = hosted.length;
  send("response.output_item.added", { output_index: outputIndex, item: { ...message, status: "in_progress", content: [] } });
  send("response.content_part.added", { item_id: messageId, output_index: outputIndex, content_index: 0, part: { type: "output_text", text: "", annotations: [] } });
  for (const delta of splitIntoDeltas(text)) {
    send("response.output_text.delta", { item_id: messageId, output_index: outputIndex, content_index: 0, delta, logprobs: [] });
  }
  send("response.output_text.done", { item_id: messageId, output_index: outputIndex, content_index: 0, text, logprobs: [] });
  send("response.content_part.done", { item_id: messageId, output_index: outputIndex, content_index: 0, part: message.content[0] });
  send("response.output_item.done", { output_index: outputIndex, item: message });
  send(status === "completed" ? "response.completed" : "response.incomplete", { response: response(status, true) });
  res.end();
  return { status: 200, model, usage };
}
