/**
 * Drives the real @langchain/openai and @langchain/anthropic integrations against the local fakes, and
 * pins down what LangChain reports as usage for each call mode (the facts the metering handler relies on).
 */
import { ChatAnthropic } from "@langchain/anthropic";
import { awaitAllCallbacks } from "@langchain/core/callbacks/promises";
import { AIMessageChunk, HumanMessage, type AIMessage } from "@langchain/core/messages";
import { tool } from "@langchain/core/tools";
import { createReactAgent } from "@langchain/langgraph/prebuilt";
import { ChatOpenAI } from "@langchain/openai";
import Anthropic from "@anthropic-ai/sdk";
import net from "node:net";
import OpenAI from "openai";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { type AnthropicFake, hasToolResult as anthropicHasToolResult, startAnthropicServer } from "./anthropic-server.js";
import { CaptureHandler, endUsage } from "./capture.js";
import { guardNetwork, type NetworkGuard } from "./network.js";
import { hasToolResult as openaiHasToolResult, type OpenAIFake, startOpenAIServer } from "./openai-server.js";

let guard: NetworkGuard;
beforeAll(() => {
  guard = guardNetwork();
});
afterAll(() => {
  guard.restore();
  // Nothing in this file may reach past loopback.
  expect(guard.blocked).toEqual([]);
});

const weather = tool(async ({ city }: { city: string }) => `It is sunny in ${city}.`, {
  name: "get_weather",
  description: "Current weather for a city.",
  schema: z.object({ city: z.string() }),
});

async function concatStream(stream: AsyncIterable<AIMessageChunk>): Promise<AIMessageChunk> {
  let full: AIMessageChunk | undefined;
  for await (const chunk of stream) full = full ? full.concat(chunk) : chunk;
  if (!full) throw new Error("empty stream");
  return full;
}

describe("network guard", () => {
  it("refuses non-loopback fetches and TCP connections, and records them", async () => {
    const before = guard.blocked.length;
    await expect(fetch("https://api.openai.com/v1/models")).rejects.toThrow(/blocked/);
    expect(() => net.connect(443, "api.anthropic.com")).toThrow(/blocked/);
    expect(guard.blocked.splice(before)).toEqual(["https://api.openai.com/v1/models", "tcp://api.anthropic.com"]);
  });
});

describe("OpenAI fake + ChatOpenAI", () => {
  let fake: OpenAIFake;
  beforeAll(async () => {
    fake = await startOpenAIServer();
  });
  afterAll(() => fake.close());
  afterEach(() => {
    fake.requests.length = 0;
  });

  const model = (fields: Record<string, unknown> = {}) =>
    new ChatOpenAI({ model: "gpt-4o-mini", apiKey: "test", maxRetries: 0, configuration: { baseURL: fake.baseURL }, ...fields });

  const usage = {
    prompt_tokens: 1200,
    completion_tokens: 345,
    prompt_tokens_details: { cached_tokens: 1024 },
    completion_tokens_details: { reasoning_tokens: 128 },
  };
  const expectedUsage = {
    input_tokens: 1200,
    output_tokens: 345,
    total_tokens: 1545,
    input_token_details: { audio: 0, cache_read: 1024 },
    output_token_details: { audio: 0, reasoning: 128 },
  };

  it("invoke: non-streaming ChatCompletion with exact usage and the served snapshot", async () => {
    fake.enqueue({ content: "Hi there!", usage });
    const capture = new CaptureHandler();
    const message = await model().invoke("Say hi", { callbacks: [capture] });
    await awaitAllCallbacks();

    expect(message.content).toBe("Hi there!");
    expect(message.usage_metadata).toEqual(expectedUsage);
    expect(message.response_metadata.model_name).toBe("gpt-4o-mini-2024-07-18");
    expect(message.response_metadata.tokenUsage).toEqual({ promptTokens: 1200, completionTokens: 345, totalTokens: 1545 });

    const [request] = fake.requests;
    expect(request?.path).toBe("/v1/chat/completions");
    expect(request?.headers.authorization).toBe("Bearer test");
    expect(request?.body.model).toBe("gpt-4o-mini");
    expect(request?.stream).toBe(false);
    expect(request?.body.stream_options).toBeUndefined();
    expect(request?.reply.usage).toMatchObject({ prompt_tokens: 1200, completion_tokens: 345, total_tokens: 1545 });

    expect(capture.starts.map((s) => s.kind)).toEqual(["chat"]);
    expect(capture.ends).toHaveLength(1);
    expect(endUsage(capture.ends[0])).toEqual(expectedUsage);
    expect(capture.ends[0]?.output.llmOutput?.tokenUsage).toEqual({ promptTokens: 1200, completionTokens: 345, totalTokens: 1545 });
  });

  it("invoke: default usage is derived deterministically and reported back", async () => {
    const message = await model().invoke("Say hi");
    const served = fake.requests[0]?.reply.usage;
    expect(served).toBeDefined();
    expect(message.usage_metadata).toMatchObject({
      input_tokens: served?.prompt_tokens,
      output_tokens: served?.completion_tokens,
      total_tokens: served?.total_tokens,
    });
    await model().invoke("Say hi");
    expect(fake.requests[1]?.reply.usage).toEqual(served);
  });

  it(".stream(): ChatOpenAI 1.4.7 asks for include_usage by default and gets the usage chunk", async () => {
    fake.enqueue({ content: "Streaming is fun.", usage });
    const capture = new CaptureHandler();
    const chunks: AIMessageChunk[] = [];
    for await (const chunk of await model().stream("Stream please", { callbacks: [capture] })) chunks.push(chunk);
    await awaitAllCallbacks();

    const [request] = fake.requests;
    expect(request?.stream).toBe(true);
    expect(request?.body.stream_options).toEqual({ include_usage: true });
    // Only the final (usage) chunk carries usage_metadata.
    expect(chunks.filter((c) => c.usage_metadata !== undefined)).toHaveLength(1);
    const full = chunks.reduce((a, b) => a.concat(b));
    expect(full.content).toBe("Streaming is fun.");
    expect(full.usage_metadata).toEqual(expectedUsage);
    expect(capture.ends).toHaveLength(1);
    expect(endUsage(capture.ends[0])).toEqual(expectedUsage);
  });

  it(".stream() with streamUsage: false sends no stream_options and gets no usage at all", async () => {
    fake.enqueue({ usage });
    const capture = new CaptureHandler();
    const full = await concatStream(await model({ streamUsage: false }).stream("x", { callbacks: [capture] }));
    await awaitAllCallbacks();
    expect(fake.requests[0]?.body.stream_options).toBeUndefined();
    expect(fake.requests[0]?.reply.usage).toBeNull();
    expect(full.usage_metadata).toBeUndefined();
    expect(endUsage(capture.ends[0])).toBeUndefined();
    expect(capture.ends[0]?.output.llmOutput).toBeUndefined();
  });

  it("streaming: true invoke: exact usage on the message, but llmOutput only has a tokenizer estimate", async () => {
    fake.enqueue({ content: "Streamed through invoke.", usage });
    const capture = new CaptureHandler();
    const before = guard.tokenizerRequests.length;
    const message = await model({ streaming: true }).invoke("Hello", { callbacks: [capture] });
    await awaitAllCallbacks();

    expect(fake.requests[0]?.body.stream_options).toEqual({ include_usage: true });
    expect(message.usage_metadata).toEqual(expectedUsage);
    expect(endUsage(capture.ends[0])).toEqual(expectedUsage);
    // _generate's streaming branch always estimates with a tokenizer it fetches from tiktoken.pages.dev
    // (served offline here by the network guard), even though the usage chunk arrived. It asks for gpt2:
    // the delegate ChatOpenAICompletions instance has no `modelName`, so getNumTokens falls back to "gpt2".
    // LangChain caches it per process: fetched by this call, or already by an earlier file of this worker.
    expect([[], ["https://tiktoken.pages.dev/js/gpt2.json"]]).toContainEqual(guard.tokenizerRequests.slice(before));
    const llmOutput = capture.ends[0]?.output.llmOutput;
    expect(llmOutput?.tokenUsage).toBeUndefined();
    expect(llmOutput?.estimatedTokenUsage).toMatchObject({ promptTokens: expect.any(Number), completionTokens: expect.any(Number) });
    expect(llmOutput?.estimatedTokenUsage.promptTokens).not.toBe(1200);
  });

  it("a handler with lc_prefer_streaming turns invoke into a streamed call: exact usage, no tokenizer", async () => {
    fake.enqueue({ usage });
    const streamingCapture = Object.assign(new CaptureHandler(), { lc_prefer_streaming: true });
    const before = guard.tokenizerRequests.length;
    const message = await model({ streaming: true }).invoke("x", { callbacks: [streamingCapture] });
    await awaitAllCallbacks();
    expect(fake.requests[0]?.body.stream_options).toEqual({ include_usage: true });
    expect(message.usage_metadata).toEqual(expectedUsage);
    expect(streamingCapture.ends[0]?.output.llmOutput).toEqual({ tokenUsage: { promptTokens: 1200, completionTokens: 345, totalTokens: 1545 } });
    expect(guard.tokenizerRequests.length).toBe(before);
  });

  it("n = 2: two choices, one usage object shared by both generations", async () => {
    fake.enqueue({ content: ["First answer.", "Second answer."], usage: { prompt_tokens: 10, completion_tokens: 8 } });
    const capture = new CaptureHandler();
    const result = await model({ n: 2 }).generate([[new HumanMessage("Two answers")]], { callbacks: [capture] });
    await awaitAllCallbacks();

    expect(fake.requests[0]?.n).toBe(2);
    const generations = result.generations[0] ?? [];
    expect(generations.map((g) => g.text)).toEqual(["First answer.", "Second answer."]);
    const [first, second] = generations.map((g) => (g as unknown as { message: AIMessage }).message.usage_metadata);
    expect(first).toMatchObject({ input_tokens: 10, output_tokens: 8, total_tokens: 18 });
    expect(second).toBe(first); // the very same object: summing per generation would bill twice
    expect(capture.ends).toHaveLength(1);
    expect(capture.ends[0]?.output.generations[0]).toHaveLength(2);
    expect(capture.ends[0]?.output.llmOutput?.tokenUsage).toEqual({ promptTokens: 10, completionTokens: 8, totalTokens: 18 });
  });

  it("n = 2 streamed (raw SDK): choices interleave, one final usage chunk with empty choices", async () => {
    fake.enqueue({ content: ["a b", "c d"], usage: { prompt_tokens: 5, completion_tokens: 4 } });
    const client = new OpenAI({ apiKey: "test", baseURL: fake.baseURL, maxRetries: 0 });
    const stream = await client.chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "x" }],
      n: 2,
      stream: true,
      stream_options: { include_usage: true },
    });
    const texts = ["", ""];
    const usages: unknown[] = [];
    for await (const chunk of stream) {
      for (const choice of chunk.choices) texts[choice.index] += choice.delta.content ?? "";
      if (chunk.usage) {
        expect(chunk.choices).toEqual([]);
        usages.push(chunk.usage);
      } else {
        expect(chunk.usage).toBeNull();
      }
      expect(chunk.model).toBe("gpt-4o-mini-2024-07-18");
    }
    expect(texts).toEqual(["a b", "c d"]);
    expect(usages).toEqual([
      {
        prompt_tokens: 5,
        completion_tokens: 4,
        total_tokens: 9,
        prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
        completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
      },
    ]);
  });

  it("tool calls: a createReactAgent loop runs two model calls, each with its own exact usage", async () => {
    fake.respondWith((request) =>
      openaiHasToolResult(request)
        ? { content: "It is sunny in Paris.", usage: { prompt_tokens: 60, completion_tokens: 7 } }
        : { toolCalls: [{ name: "get_weather", arguments: { city: "Paris" } }], usage: { prompt_tokens: 50, completion_tokens: 12 } },
    );
    try {
      const capture = new CaptureHandler();
      const agent = createReactAgent({ llm: model(), tools: [weather] });
      const state = await agent.invoke({ messages: [new HumanMessage("Weather in Paris?")] }, { callbacks: [capture] });
      await awaitAllCallbacks();

      expect(state.messages.at(-1)?.content).toBe("It is sunny in Paris.");
      expect(fake.requests).toHaveLength(2);
      expect(fake.requests[0]?.body.tools?.[0]?.function?.name).toBe("get_weather");
      const toolMessage = fake.requests[1]?.body.messages.find((m: { role: string }) => m.role === "tool");
      expect(toolMessage.content).toBe("It is sunny in Paris.");
      expect(toolMessage.tool_call_id).toBe(fake.requests[1]?.body.messages.find((m: { role: string }) => m.role === "assistant").tool_calls[0].id);
      expect(capture.ends.map((e) => endUsage(e))).toEqual([
        expect.objectContaining({ input_tokens: 50, output_tokens: 12, total_tokens: 62 }),
        expect.objectContaining({ input_tokens: 60, output_tokens: 7, total_tokens: 67 }),
      ]);
    } finally {
      fake.respondWith(() => ({}));
    }
  });

  it("tool calls streamed: tool-call deltas aggregate into a parsed tool call", async () => {
    fake.enqueue({
      toolCalls: [
        { name: "get_weather", arguments: { city: "Paris" } },
        { name: "get_weather", arguments: { city: "Rome" } },
      ],
      usage: { prompt_tokens: 40, completion_tokens: 20 },
    });
    const full = await concatStream(await model().bindTools([weather]).stream("Weather in Paris and Rome?"));
    expect(full.tool_calls?.map((t) => [t.name, t.args])).toEqual([
      ["get_weather", { city: "Paris" }],
      ["get_weather", { city: "Rome" }],
    ]);
    expect(full.usage_metadata).toMatchObject({ input_tokens: 40, output_tokens: 20, total_tokens: 60 });
    expect(full.response_metadata.finish_reason).toBe("tool_calls");
  });

  it("errors: 500 and 400 in OpenAI's envelope reach handleLLMError; maxRetries: 0 means one request", async () => {
    fake.enqueue({ error: { status: 500 } }, { error: { status: 400, message: "Invalid 'messages'.", param: "messages" } });
    const capture = new CaptureHandler();
    await expect(model().invoke("x", { callbacks: [capture] })).rejects.toMatchObject({ status: 500 });
    await expect(model().invoke("x", { callbacks: [capture] })).rejects.toThrow(/Invalid 'messages'/);
    await awaitAllCallbacks();
    expect(fake.requests.map((r) => r.reply.status)).toEqual([500, 400]);
    expect(capture.errors).toHaveLength(2);
    expect(capture.ends).toHaveLength(0);
  });

  it("errors: a stream that breaks part-way rejects (error event and disconnect)", async () => {
    fake.enqueue({ content: "one two three four", streamFailure: { afterChunks: 2, mode: "error-event" } });
    fake.enqueue({ content: "one two three four", streamFailure: { afterChunks: 2, mode: "disconnect" } });
    const capture = new CaptureHandler();
    // `.stream()` itself awaits the first chunk, so the failure may surface there or while iterating.
    const drain = async () => concatStream(await model().stream("x", { callbacks: [capture] }));
    await expect(drain()).rejects.toThrow(/server had an error/);
    await expect(drain()).rejects.toThrow(/terminated/);
    await awaitAllCallbacks();
    expect(capture.errors).toHaveLength(2);
    expect(capture.ends).toHaveLength(0);
  });

  it("rejects stream_options without stream, like the real API", async () => {
    const client = new OpenAI({ apiKey: "test", baseURL: fake.baseURL, maxRetries: 0 });
    await expect(
      client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "x" }], stream_options: { include_usage: true } }),
    ).rejects.toMatchObject({ status: 400, param: "stream_options" });
  });
});

describe("Anthropic fake + ChatAnthropic", () => {
  let fake: AnthropicFake;
  beforeAll(async () => {
    fake = await startAnthropicServer();
  });
  afterAll(() => fake.close());
  afterEach(() => {
    fake.requests.length = 0;
  });

  const model = (fields: Record<string, unknown> = {}) =>
    new ChatAnthropic({ model: "claude-sonnet-4-5-20250929", apiKey: "test", maxRetries: 0, anthropicApiUrl: fake.baseURL, ...fields });

  const usage = { input_tokens: 100, cache_read_input_tokens: 1000, cache_creation_input_tokens: 200, output_tokens: 50 };

  it("invoke: input_tokens in usage_metadata = input + cache_read + cache_creation", async () => {
    fake.enqueue({ text: "Bonjour!", usage });
    const capture = new CaptureHandler();
    const message = await model().invoke("Say hi in French", { callbacks: [capture] });
    await awaitAllCallbacks();

    expect(message.content).toBe("Bonjour!");
    expect(message.usage_metadata).toEqual({
      input_tokens: 1300,
      output_tokens: 50,
      total_tokens: 1350,
      input_token_details: { cache_creation: 200, cache_read: 1000 },
    });
    expect(message.response_metadata.model).toBe("claude-sonnet-4-5-20250929");
    expect(message.response_metadata.usage).toMatchObject(usage);
    const [request] = fake.requests;
    expect(request?.path).toBe("/v1/messages");
    expect(request?.headers["x-api-key"]).toBe("test");
    expect(request?.headers["anthropic-version"]).toBe("2023-06-01");
    expect(request?.stream).toBe(false);
    expect(endUsage(capture.ends[0])).toEqual(message.usage_metadata);
  });

  it("clientOptions.baseURL works as well as anthropicApiUrl", async () => {
    const viaClientOptions = new ChatAnthropic({
      model: "claude-sonnet-4-5-20250929",
      apiKey: "test",
      maxRetries: 0,
      clientOptions: { baseURL: fake.baseURL },
    });
    fake.enqueue({ usage: { input_tokens: 3, output_tokens: 2 } });
    const message = await viaClientOptions.invoke("x");
    expect(message.usage_metadata).toMatchObject({ input_tokens: 3, output_tokens: 2 });
  });

  it(".stream(): LangChain reports message_start's output_tokens + message_delta's (the +1 quirk)", async () => {
    fake.enqueue({ text: "Streaming in French.", usage });
    const capture = new CaptureHandler();
    const chunks: AIMessageChunk[] = [];
    for await (const chunk of await model().stream("x", { callbacks: [capture] })) chunks.push(chunk);
    await awaitAllCallbacks();

    const [request] = fake.requests;
    expect(request?.stream).toBe(true);
    expect(request?.reply.startUsage?.output_tokens).toBe(1);
    expect(request?.reply.usage?.output_tokens).toBe(50);
    // message_start chunk: full input (incl. cache) and output 1; message_delta chunk: input 0, output 50.
    expect(chunks.map((c) => c.usage_metadata).filter(Boolean)).toEqual([
      { input_tokens: 1300, output_tokens: 1, total_tokens: 1301, input_token_details: { cache_creation: 200, cache_read: 1000 } },
      { input_tokens: 0, output_tokens: 50, total_tokens: 50 },
    ]);
    const expected = {
      input_tokens: 1300,
      output_tokens: 51, // the provider billed 50
      total_tokens: 1351,
      input_token_details: { cache_creation: 200, cache_read: 1000 },
      output_token_details: {}, // added by mergeUsageMetadata when the chunks are concatenated
    };
    expect(chunks.reduce((a, b) => a.concat(b)).usage_metadata).toEqual(expected);
    expect(endUsage(capture.ends[0])).toEqual(expected);
  });

  it(".stream(): the overcount is whatever message_start said, not always 1", async () => {
    fake.enqueue({ usage: { input_tokens: 10, output_tokens: 20 }, startOutputTokens: 3, messageDeltaUsage: "output_only" });
    const full = await concatStream(await model().stream("x"));
    expect(full.usage_metadata).toMatchObject({ input_tokens: 10, output_tokens: 23, total_tokens: 33 });
  });

  it("streaming: true invoke shows the same +1", async () => {
    fake.enqueue({ usage: { input_tokens: 10, output_tokens: 20 } });
    const capture = new CaptureHandler();
    const message = await model({ streaming: true }).invoke("x", { callbacks: [capture] });
    await awaitAllCallbacks();
    expect(fake.requests[0]?.stream).toBe(true);
    expect(message.usage_metadata).toMatchObject({ input_tokens: 10, output_tokens: 21, total_tokens: 31 });
    expect(endUsage(capture.ends[0])).toMatchObject({ output_tokens: 21 });
  });

  it("raw SDK sees the named events, including ping, and message_delta's exact count", async () => {
    fake.enqueue({ text: "a b", usage: { input_tokens: 7, output_tokens: 4, cache_read_input_tokens: 5 } });
    const client = new Anthropic({ apiKey: "test", baseURL: fake.baseURL, maxRetries: 0 });
    const stream = await client.messages.create({
      model: "claude-sonnet-4-5-20250929",
      max_tokens: 100,
      messages: [{ role: "user", content: "x" }],
      stream: true,
    });
    const types: string[] = [];
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === "message_start") expect(event.message.usage).toMatchObject({ input_tokens: 7, cache_read_input_tokens: 5, output_tokens: 1 });
      if (event.type === "message_delta") expect(event.usage).toMatchObject({ input_tokens: 7, cache_read_input_tokens: 5, output_tokens: 4 });
    }
    // ping is consumed by the SDK and never yielded
    expect(types).toEqual([
      "message_start",
      "content_block_start",
      "content_block_delta",
      "content_block_delta",
      "content_block_stop",
      "message_delta",
      "message_stop",
    ]);
  });

  it("tool use: a createReactAgent loop runs two model calls with exact usage each", async () => {
    fake.respondWith((request) =>
      anthropicHasToolResult(request)
        ? { text: "It is sunny in Paris.", usage: { input_tokens: 80, output_tokens: 9 } }
        : { text: "Let me check.", toolUses: [{ name: "get_weather", input: { city: "Paris" } }], usage: { input_tokens: 70, output_tokens: 30 } },
    );
    try {
      const capture = new CaptureHandler();
      const agent = createReactAgent({ llm: model(), tools: [weather] });
      const state = await agent.invoke({ messages: [new HumanMessage("Weather in Paris?")] }, { callbacks: [capture] });
      await awaitAllCallbacks();
      expect(state.messages.at(-1)?.content).toBe("It is sunny in Paris.");
      expect(fake.requests).toHaveLength(2);
      expect(fake.requests[0]?.body.tools?.[0]?.name).toBe("get_weather");
      expect(capture.ends.map((e) => endUsage(e))).toEqual([
        expect.objectContaining({ input_tokens: 70, output_tokens: 30 }),
        expect.objectContaining({ input_tokens: 80, output_tokens: 9 }),
      ]);
    } finally {
      fake.respondWith(() => ({}));
    }
  });

  it("tool use streamed: input_json_delta aggregates into a parsed tool call", async () => {
    fake.enqueue({ toolUses: [{ name: "get_weather", input: { city: "Rome" } }], usage: { input_tokens: 11, output_tokens: 22 } });
    const full = await concatStream(await model().bindTools([weather]).stream("Weather in Rome?"));
    expect(full.tool_calls?.map((t) => [t.name, t.args])).toEqual([["get_weather", { city: "Rome" }]]);
    expect(full.usage_metadata).toMatchObject({ input_tokens: 11, output_tokens: 23 });
  });

  it("LangGraph streamMode 'messages' makes a non-streaming ChatAnthropic stream, so the +1 appears there too", async () => {
    fake.enqueue({ text: "Hi.", usage: { input_tokens: 10, output_tokens: 20 } });
    const capture = new CaptureHandler();
    const agent = createReactAgent({ llm: model(), tools: [weather] });
    for await (const _ of await agent.stream({ messages: [new HumanMessage("hi")] }, { streamMode: "messages", callbacks: [capture] })) {
      // drain
    }
    await awaitAllCallbacks();
    expect(fake.requests[0]?.stream).toBe(true);
    expect(endUsage(capture.ends[0])).toMatchObject({ input_tokens: 10, output_tokens: 21 });
  });

  it("the content-block event protocol (lc_prefer_chat_model_stream_events) sums the same way", async () => {
    fake.enqueue({ usage: { input_tokens: 10, output_tokens: 20, cache_read_input_tokens: 5 } });
    const capture = Object.assign(new CaptureHandler(), { lc_prefer_chat_model_stream_events: true });
    const message = await model().invoke("x", { callbacks: [capture] });
    await awaitAllCallbacks();
    expect(fake.requests[0]?.stream).toBe(true);
    // convertAnthropicStream (utils/stream_events) adds message_delta's output_tokens to message_start's.
    expect(message.usage_metadata).toMatchObject({ input_tokens: 15, output_tokens: 21, total_tokens: 36 });
    expect(endUsage(capture.ends[0])).toMatchObject({ input_tokens: 15, output_tokens: 21 });
  });

  it("errors: 529 overloaded and 400 in Anthropic's envelope reach handleLLMError", async () => {
    fake.enqueue({ error: { status: 529 } }, { error: { status: 400, message: "messages: at least one message is required" } });
    const capture = new CaptureHandler();
    await expect(model().invoke("x", { callbacks: [capture] })).rejects.toMatchObject({ status: 529 });
    await expect(model().invoke("x", { callbacks: [capture] })).rejects.toThrow(/at least one message/);
    await awaitAllCallbacks();
    expect(fake.requests.map((r) => r.reply.status)).toEqual([529, 400]);
    expect(capture.errors).toHaveLength(2);
    expect(capture.ends).toHaveLength(0);
  });

  it("errors: an overloaded error event mid-stream rejects the stream", async () => {
    fake.enqueue({ text: "one two three", streamFailure: { afterEvents: 3, mode: "error-event" } });
    const capture = new CaptureHandler();
    const drain = async () => concatStream(await model().stream("x", { callbacks: [capture] }));
    await expect(drain()).rejects.toThrow(/Overloaded/);
    await awaitAllCallbacks();
    expect(capture.errors).toHaveLength(1);
  });
});
