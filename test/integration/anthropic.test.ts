/**
 * The metering handler on the real @langchain/anthropic ChatAnthropic, against the local Anthropic fake:
 * cache reads and writes are part of the input and ride along as details, and the streamed output is
 * what `message_delta` said (what Anthropic billed), not LangChain's sum with `message_start`'s count.
 */
import { ChatAnthropic } from "@langchain/anthropic";
import { BaseCallbackHandler } from "@langchain/core/callbacks/base";
import { HumanMessage } from "@langchain/core/messages";
import { tool } from "@langchain/core/tools";
import { createReactAgent } from "@langchain/langgraph/prebuilt";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { type AnthropicFake, startAnthropicServer } from "../support/anthropic-server.js";
import { CaptureHandler, endUsage } from "../support/capture.js";
import { useProviderFake } from "../support/lifecycle.js";
import { expectedEvents, meteringSetup, newRunId, runIdsOf } from "../support/metering.js";

let fake: AnthropicFake;
useProviderFake(startAnthropicServer, (started) => (fake = started));

const MODEL = "claude-sonnet-4-5-20250929";
const anthropic = (fields: Record<string, unknown> = {}) =>
  new ChatAnthropic({ model: MODEL, apiKey: "test", maxRetries: 0, anthropicApiUrl: fake.baseURL, ...fields });
const base = { model: MODEL, provider: "anthropic" };

// Anthropic's input_tokens excludes the cache; LangChain's (and the event's) input includes it.
const usage = { input_tokens: 100, cache_read_input_tokens: 1000, cache_creation_input_tokens: 200, output_tokens: 50 };
// The fake writes the cache for 5 minutes unless told otherwise (usage.cache_creation).
const billed = { input: 1300, output: 50, cached: 1000, cacheWrite: 200, cacheWrite5m: 200 };

/** A bystander handler that switches ChatModel invoke onto the content-block stream-events protocol. */
class StreamEventsPreferrer extends BaseCallbackHandler {
  name = "stream-events-preferrer";
  lc_prefer_chat_model_stream_events = true;
}

const weather = tool(async ({ city }: { city: string }) => `It is sunny in ${city}.`, {
  name: "get_weather",
  description: "Current weather for a city.",
  schema: z.object({ city: z.string() }),
});

describe("ChatAnthropic + MeteringCallbackHandler", () => {
  it("invoke: cache reads and writes are in the input and ride along as details", async () => {
    const { sink, handler, warnings } = meteringSetup();
    fake.enqueue({ text: "Bonjour!", usage });
    const runId = newRunId();
    await anthropic({ callbacks: [handler] }).invoke("Say hi", { runId, metadata: { subject: "acme", tier: "pro" } });
    await handler.flush();
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, ...billed, extra: { tier: "pro" } }));
    expect(handler.stats()).toMatchObject({ metered: 1, open: 0 });
    expect(warnings).toEqual([]);
  });

  it("invoke with an alias: the served snapshot rides along as response_model", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ usage: { input_tokens: 9, output_tokens: 4 }, model: MODEL });
    const runId = newRunId();
    await anthropic({ model: "claude-sonnet-4-5", callbacks: [handler] }).invoke("x", { runId, metadata: { subject: "acme" } });
    await handler.flush();
    expect(sink.events).toEqual(
      expectedEvents(runId, { subject: "acme", model: "claude-sonnet-4-5", provider: "anthropic", responseModel: MODEL, input: 9, output: 4 }),
    );
  });

  it(".stream(): output billed = message_delta's final count (LangChain's +1 undone), cache details kept", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ text: "Streaming in French, word by word.", usage });
    const capture = new CaptureHandler();
    const runId = newRunId();
    for await (const _ of await anthropic({ callbacks: [handler] }).stream("x", { runId, callbacks: [capture], metadata: { subject: "acme" } })) {
      // drain
    }
    await handler.flush();

    expect(fake.requests[0]?.reply.startUsage?.output_tokens).toBe(1);
    expect(endUsage(capture.ends[0])).toMatchObject({ output_tokens: 51 }); // what LangChain reports
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, ...billed })); // what Anthropic billed
  });

  it(".stream() with message_start output_tokens 3 and an output-only message_delta: bills message_delta's count", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ usage: { input_tokens: 10, output_tokens: 20 }, startOutputTokens: 3, messageDeltaUsage: "output_only" });
    const runId = newRunId();
    for await (const _ of await anthropic({ callbacks: [handler] }).stream("x", { runId, metadata: { subject: "acme" } })) {
      // drain
    }
    await handler.flush();
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 10, output: 20 }));
  });

  it(".stream() with startOutputTokens 3 and the cumulative message_delta: bills message_delta's count", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ usage: { input_tokens: 10, output_tokens: 20, cache_read_input_tokens: 5 }, startOutputTokens: 3 });
    const runId = newRunId();
    for await (const _ of await anthropic({ callbacks: [handler] }).stream("x", { runId, metadata: { subject: "acme" } })) {
      // drain
    }
    await handler.flush();
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 15, output: 20, cached: 5 }));
  });

  it("streaming: true invoke: bills message_delta's count", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ usage: { input_tokens: 10, output_tokens: 20 } });
    const runId = newRunId();
    const message = await anthropic({ streaming: true, callbacks: [handler] }).invoke("x", { runId, metadata: { subject: "acme" } });
    await handler.flush();
    expect(fake.requests[0]?.stream).toBe(true);
    expect(message.usage_metadata?.output_tokens).toBe(21);
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 10, output: 20 }));
  });

  it("a streamed tool_use reply: bills message_delta's count", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ toolUses: [{ name: "get_weather", input: { city: "Rome" } }], usage: { input_tokens: 11, output_tokens: 22 } });
    const runId = newRunId();
    for await (const _ of await anthropic({ callbacks: [handler] }).bindTools([weather]).stream("Weather in Rome?", { runId, metadata: { subject: "acme" } })) {
      // drain
    }
    await handler.flush();
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 11, output: 22 }));
  });

  it("a createReactAgent loop: both model calls billed to the agent's subject, exactly", async () => {
    const { sink, handler } = meteringSetup();
    fake.respondWith((request) =>
      (request.body.messages as Array<{ content: unknown }>).some(
        (m) => Array.isArray(m.content) && m.content.some((b: { type?: string }) => b.type === "tool_result"),
      )
        ? { text: "It is sunny in Paris.", usage: { input_tokens: 80, output_tokens: 9, cache_read_input_tokens: 64 } }
        : { text: "Let me check.", toolUses: [{ name: "get_weather", input: { city: "Paris" } }], usage: { input_tokens: 70, output_tokens: 30, cache_creation_input_tokens: 64 } },
    );
    const agent = createReactAgent({ llm: anthropic({ callbacks: [handler] }), tools: [weather] });
    const state = await agent.invoke({ messages: [new HumanMessage("Weather in Paris?")] }, { metadata: { subject: "agent-co" } });
    await handler.flush();

    expect(state.messages.at(-1)?.content).toBe("It is sunny in Paris.");
    const [first, second] = runIdsOf(sink.events);
    expect(sink.events).toEqual([
      ...expectedEvents(first!, { subject: "agent-co", ...base, input: 134, output: 30, cacheWrite: 64, cacheWrite5m: 64 }),
      ...expectedEvents(second!, { subject: "agent-co", ...base, input: 144, output: 9, cached: 64 }),
    ]);
  });

  it("a failed call (529 overloaded, maxRetries 0): no events, the run is freed", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ error: { status: 529 } });
    await expect(anthropic({ callbacks: [handler] }).invoke("x", { metadata: { subject: "acme" } })).rejects.toMatchObject({ status: 529 });
    await handler.flush();
    expect(sink.events).toEqual([]);
    expect(handler.stats()).toMatchObject({ failed: 1, open: 0, metered: 0 });
  });

  it("an overloaded error event mid-stream: billed as an error, message_start's input exact, the output estimated", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ text: "one two three", streamFailure: { afterEvents: 4, mode: "error-event" } });
    const runId = newRunId();
    const drain = async () => {
      for await (const _ of await anthropic({ callbacks: [handler] }).stream("x", { runId, metadata: { subject: "acme" } })) {
        // drain
      }
    };
    await expect(drain()).rejects.toThrow(/Overloaded/);
    await handler.flush();
    const start = fake.requests[0]!.reply.startUsage!;
    // Anthropic billed message_start's input; of the output only "one " arrived (1 token at 4 characters a token).
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: start.input_tokens, output: 1, status: "error", outputEstimated: true }));
    expect(handler.stats()).toMatchObject({ failed: 0, unfinished: 1, open: 0 });
  });
});

describe("ChatAnthropic streamed paths other callback handlers switch on", () => {
  it("LangGraph streamMode 'messages' (StreamMessagesHandler, lc_prefer_streaming): bills message_delta's count", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ text: "Hi.", usage: { input_tokens: 10, output_tokens: 20, cache_read_input_tokens: 5 }, startOutputTokens: 3 });
    const capture = new CaptureHandler();
    const agent = createReactAgent({ llm: anthropic({ callbacks: [handler] }), tools: [weather] });
    for await (const _ of await agent.stream(
      { messages: [new HumanMessage("hi")] },
      { streamMode: "messages", callbacks: [capture], metadata: { subject: "acme" } },
    )) {
      // drain
    }
    await handler.flush();

    expect(fake.requests[0]?.stream).toBe(true);
    expect(endUsage(capture.ends[0])).toMatchObject({ output_tokens: 23 }); // LangChain's sum
    const [runId] = runIdsOf(sink.events);
    expect(sink.events).toEqual(expectedEvents(runId!, { subject: "acme", ...base, input: 15, output: 20, cached: 5 }));
  });

  // When any handler in the run prefers the content-block stream-events protocol (LangGraph's
  // streamEvents v3 adds one), BaseChatModel calls `_streamChatModelEvents(messages, options)` without
  // the run manager, so handleLLMNewToken never fires. @langchain/anthropic still adds message_start's
  // output_tokens to message_delta's; the handler sees both through handleChatModelStreamEvent
  // (message-start / usage events) and bills what Anthropic billed.
  it("content-block stream-events protocol (lc_prefer_chat_model_stream_events) on invoke: bills message_delta's count", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ usage: { input_tokens: 10, output_tokens: 20, cache_read_input_tokens: 5 } });
    const capture = Object.assign(new CaptureHandler(), { lc_prefer_chat_model_stream_events: true });
    const runId = newRunId();
    await anthropic({ callbacks: [handler] }).invoke("x", { runId, callbacks: [capture], metadata: { subject: "acme" } });
    await handler.flush();

    expect(fake.requests[0]?.stream).toBe(true);
    expect(endUsage(capture.ends[0])).toMatchObject({ input_tokens: 15, output_tokens: 21 }); // LangChain's sum
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 15, output: 20, cached: 5 }));
  });

  it("content-block stream-events protocol with message_start output_tokens 3: bills message_delta's count", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ usage: { input_tokens: 10, output_tokens: 20 }, startOutputTokens: 3 });
    const runId = newRunId();
    await anthropic({ callbacks: [handler, new StreamEventsPreferrer()] }).invoke("x", { runId, metadata: { subject: "acme" } });
    await handler.flush();
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 10, output: 20 }));
  });

  it("LangGraph streamEvents v3 (StreamProtocolMessagesHandler, the stream-events protocol): bills message_delta's count", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ text: "Hi.", usage: { input_tokens: 10, output_tokens: 20 } });
    const agent = createReactAgent({ llm: anthropic({ callbacks: [handler] }), tools: [weather] });
    const run = await agent.streamEvents({ messages: [new HumanMessage("hi")] }, { version: "v3", streamMode: ["messages"], metadata: { subject: "acme" } });
    for await (const _ of run) {
      // drain
    }
    await handler.flush();

    expect(fake.requests[0]?.stream).toBe(true);
    const [runId] = runIdsOf(sink.events);
    expect(sink.events).toEqual(expectedEvents(runId!, { subject: "acme", ...base, input: 10, output: 20 }));
  });
});
