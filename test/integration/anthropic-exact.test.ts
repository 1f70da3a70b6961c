/**
 * ChatAnthropic against the Anthropic fake, for what Anthropic prices apart or reports only in the
 * stream: cache writes by TTL, server tools (billed per request, and raising the cumulative input of
 * `message_delta`), several `message_delta`s, thinking, and the served model on every path.
 */
import { ChatAnthropic } from "@langchain/anthropic";
import { BaseCallbackHandler } from "@langchain/core/callbacks/base";
import { describe, expect, it } from "vitest";
import { type AnthropicFake, startAnthropicServer } from "../support/anthropic-server.js";
import { CaptureHandler, endUsage } from "../support/capture.js";
import { useProviderFake } from "../support/lifecycle.js";
import { eventsOfRun, expectedEvents, expectedToolEvent, meteringSetup, newRunId } from "../support/metering.js";

let fake: AnthropicFake;
useProviderFake(startAnthropicServer, (started) => (fake = started));

const MODEL = "claude-sonnet-4-5-20250929";
const anthropic = (fields: Record<string, unknown> = {}) =>
  new ChatAnthropic({ model: MODEL, apiKey: "test", maxRetries: 0, anthropicApiUrl: fake.baseURL, ...fields });
const base = { model: MODEL, provider: "anthropic" };
const webSearch = { type: "web_search_20250305", name: "web_search", max_uses: 5 };

/** A bystander handler that switches the call onto the content-block stream-events protocol. */
class StreamEventsPreferrer extends BaseCallbackHandler {
  name = "stream-events-preferrer";
  lc_prefer_chat_model_stream_events = true;
}

const drain = async (stream: AsyncIterable<unknown>) => {
  for await (const _ of stream) {
    // drain
  }
};

// @langchain/anthropic passes only the total cache writes on in usage_metadata; the TTL split comes
// from the raw usage (remove withTtl in src/providers/anthropic.ts and these fail).
describe("prompt caching: 5-minute and 1-hour writes apart", () => {
  const usage = {
    input_tokens: 100,
    cache_read_input_tokens: 1000,
    cache_creation_input_tokens: 300,
    cache_creation: { ephemeral_5m_input_tokens: 100, ephemeral_1h_input_tokens: 200 },
    output_tokens: 50,
  };
  const billed = { input: 1400, output: 50, cached: 1000, cacheWrite: 300, cacheWrite5m: 100, cacheWrite1h: 200 };

  it("invoke: both TTLs ride along on the input event", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ usage });
    const runId = newRunId();
    await anthropic({ callbacks: [handler] }).invoke("x", { runId, metadata: { subject: "acme" } });
    await handler.flush();
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, ...billed }));
  });

  it(".stream(): both TTLs from message_start's usage", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ usage });
    const runId = newRunId();
    await drain(await anthropic({ callbacks: [handler] }).stream("x", { runId, metadata: { subject: "acme" } }));
    await handler.flush();
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, ...billed }));
  });

  it("split: cache_write (5 minutes) and cache_write_1h are buckets of their own, the sum unchanged", async () => {
    const { sink, handler } = meteringSetup({ splitTokenTypes: true });
    fake.enqueue({ usage });
    await anthropic({ callbacks: [handler] }).invoke("x", { metadata: { subject: "acme" } });
    await handler.flush();
    expect(sink.events.map((e) => [e.data!.type, e.data!.tokens])).toEqual([
      ["input", 100],
      ["output", 50],
      ["cache_read", 1000],
      ["cache_write", 100],
      ["cache_write_1h", 200],
    ]);
  });
});

describe("server tools: requests billed apart, their results billed as input", () => {
  // message_start counts the prompt; message_delta's cumulative input adds the search results.
  const start = { input_tokens: 400, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 };
  const usage = { input_tokens: 5200, output_tokens: 300 };
  const reply = { serverTools: [{ name: "web_search" as const, query: "a" }, { name: "web_search" as const, query: "b" }], text: "Here.", usage, startUsage: start };

  it("invoke: usage.server_tool_use becomes one request event; input exact", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue(reply);
    const runId = newRunId();
    await anthropic({ callbacks: [handler] }).bindTools([webSearch]).invoke("Search", { runId, metadata: { subject: "acme" } });
    await handler.flush();
    expect(fake.requests[0]?.reply.usage?.server_tool_use).toEqual({ web_search_requests: 2, web_fetch_requests: 0 });
    expect(eventsOfRun(sink.events, runId)).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 5200, output: 300 }));
    expect(sink.events.slice(2)).toEqual([expectedToolEvent(runId, { subject: "acme", ...base, tool: "web_search", requests: 2 })]);
  });

  // @langchain/anthropic 1.5 drops message_delta's input: the callbacks see message_start's 400. The
  // requests are counted from the server_tool_use blocks (exact); the input is flagged estimated.
  it(".stream() without the fetch hook: requests counted from the content blocks, input flagged estimated", async () => {
    const { sink, handler, warnings } = meteringSetup();
    fake.enqueue(reply);
    const capture = new CaptureHandler();
    const runId = newRunId();
    await drain(await anthropic({ callbacks: [handler] }).bindTools([webSearch]).stream("Search", { runId, callbacks: [capture], metadata: { subject: "acme" } }));
    await handler.flush();
    expect(endUsage(capture.ends[0])).toMatchObject({ input_tokens: 400 }); // what LangChain reports
    expect(eventsOfRun(sink.events, runId)).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 400, output: 300, inputEstimated: true }));
    expect(sink.events.slice(2)).toEqual([expectedToolEvent(runId, { subject: "acme", ...base, tool: "web_search", requests: 2 })]);
    expect(warnings.join("\n")).toMatch(/server tool ran in an Anthropic stream.*handler\.anthropicFetch\(\)/);
  });

  it(".stream() with clientOptions.fetch = handler.anthropicFetch(): message_delta's cumulative input, exact", async () => {
    const { sink, handler, warnings } = meteringSetup();
    fake.enqueue(reply);
    const runId = newRunId();
    const model = anthropic({ callbacks: [handler], clientOptions: { fetch: handler.anthropicFetch() } }).bindTools([webSearch]);
    await drain(await model.stream("Search", { runId, metadata: { subject: "acme" } }));
    await handler.flush();
    expect(eventsOfRun(sink.events, runId)).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 5200, output: 300 }));
    expect(sink.events.slice(2)).toEqual([expectedToolEvent(runId, { subject: "acme", ...base, tool: "web_search", requests: 2 })]);
    expect(warnings).toEqual([]);
  });

  it("web_fetch too: one event per tool, ids stable per run and tool", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ serverTools: [{ name: "web_search", query: "a" }, { name: "web_fetch", query: "https://example.com/" }], usage });
    const runId = newRunId();
    await anthropic({ callbacks: [handler] }).invoke("x", { runId, metadata: { subject: "acme" } });
    await handler.flush();
    expect(sink.events.slice(2).map((e) => [e.id, e.type, e.data?.tool, e.data?.requests])).toEqual([
      [`${runId}-tool-web_search`, "llm.server_tool_request", "web_search", 1],
      [`${runId}-tool-web_fetch`, "llm.server_tool_request", "web_fetch", 1],
    ]);
  });
});

// Remove streamedOutput's chunk-path branch (src/providers/anthropic.ts) and the first fails; its
// stream-events branch, and the second fails.
describe("several message_delta events (each cumulative)", () => {
  it("chunks: the last message_delta's count, not LangChain's sum of start and every delta", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ usage: { input_tokens: 10, output_tokens: 90 }, messageDeltas: 3 });
    const capture = new CaptureHandler();
    const runId = newRunId();
    await drain(await anthropic({ callbacks: [handler] }).stream("x", { runId, callbacks: [capture], metadata: { subject: "acme" } }));
    await handler.flush();
    expect(endUsage(capture.ends[0])).toMatchObject({ output_tokens: 1 + 30 + 60 + 90 }); // what LangChain reports
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 10, output: 90 }));
  });

  // The stream-events path sees running sums (start + deltas so far); the last increment is the last
  // delta's cumulative count. Subtracting message_start's count once would bill 180.
  it("stream events: the last increment, not the sum minus message_start's count", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ usage: { input_tokens: 10, output_tokens: 90 }, messageDeltas: 3 });
    const capture = new CaptureHandler();
    const runId = newRunId();
    await anthropic({ callbacks: [handler, new StreamEventsPreferrer()] }).invoke("x", { runId, callbacks: [capture], metadata: { subject: "acme" } });
    await handler.flush();
    expect(fake.requests[0]?.stream).toBe(true);
    expect(endUsage(capture.ends[0])).toMatchObject({ output_tokens: 181 });
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 10, output: 90 }));
  });
});

describe("thinking and the served model", () => {
  it("invoke with thinking: thinking_tokens ride along as reasoning, part of the output", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ thinking: "Let me think.", text: "42", usage: { input_tokens: 30, output_tokens: 500, output_tokens_details: { thinking_tokens: 430 } } });
    const runId = newRunId();
    await anthropic({ thinking: { type: "enabled", budget_tokens: 1024 }, maxTokens: 2048, callbacks: [handler] }).invoke("x", { runId, metadata: { subject: "acme" } });
    await handler.flush();
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 30, output: 500, reasoning: 430 }));
  });

  it("an alias, streamed: response_model is the snapshot message_start named (as invoke sends it)", async () => {
    const alias = { model: "claude-sonnet-4-5", provider: "anthropic", responseModel: MODEL };
    const { sink, handler } = meteringSetup();
    fake.enqueue({ usage: { input_tokens: 9, output_tokens: 4 }, model: MODEL }, { usage: { input_tokens: 9, output_tokens: 4 }, model: MODEL });
    const streamed = newRunId();
    await drain(await anthropic({ model: "claude-sonnet-4-5", callbacks: [handler] }).stream("x", { runId: streamed, metadata: { subject: "acme" } }));
    const events = newRunId();
    await anthropic({ model: "claude-sonnet-4-5", callbacks: [handler, new StreamEventsPreferrer()] }).invoke("x", { runId: events, metadata: { subject: "acme" } });
    await handler.flush();
    expect(eventsOfRun(sink.events, streamed)).toEqual(expectedEvents(streamed, { subject: "acme", ...alias, input: 9, output: 4 }));
    expect(eventsOfRun(sink.events, events)).toEqual(expectedEvents(events, { subject: "acme", ...alias, input: 9, output: 4 }));
  });
});
