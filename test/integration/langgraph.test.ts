/**
 * The metering handler under LangGraph's prebuilt ReAct agent, driving the real ChatOpenAI against the
 * local OpenAI fake: the subject set on the agent's invoke reaches every model call of the loop (and a
 * model called inside a tool), LangGraph's own metadata stays out of the events, and the tokens billed
 * are exactly the sum of the provider's replies.
 */
import { HumanMessage } from "@langchain/core/messages";
import type { RunnableConfig } from "@langchain/core/runnables";
import { tool } from "@langchain/core/tools";
import { MemorySaver } from "@langchain/langgraph";
import { createReactAgent } from "@langchain/langgraph/prebuilt";
import { ChatOpenAI } from "@langchain/openai";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { useProviderFake } from "../support/lifecycle.js";
import { hasToolResult, type OpenAIFake, startOpenAIServer } from "../support/openai-server.js";
import { expectedEvents, meteringSetup, runIdsOf, totalsBySubject } from "../support/metering.js";

let fake: OpenAIFake;
useProviderFake(startOpenAIServer, (started) => (fake = started));

const openai = (fields: Record<string, unknown> = {}) =>
  new ChatOpenAI({ model: "gpt-4o-mini", apiKey: "test", maxRetries: 0, configuration: { baseURL: fake.baseURL }, ...fields });
const base = { model: "gpt-4o-mini", provider: "openai", responseModel: "gpt-4o-mini-2024-07-18" };

const weather = tool(async ({ city }: { city: string }) => `It is sunny in ${city}.`, {
  name: "get_weather",
  description: "Current weather for a city.",
  schema: z.object({ city: z.string() }),
});

/** First call asks for the tool, the second (seeing the tool result) answers. */
function scriptAgentLoop() {
  fake.respondWith((request) =>
    hasToolResult(request)
      ? { content: "It is sunny in Paris.", usage: { prompt_tokens: 60, completion_tokens: 7, prompt_tokens_details: { cached_tokens: 32 } } }
      : { toolCalls: [{ name: "get_weather", arguments: { city: "Paris" } }], usage: { prompt_tokens: 50, completion_tokens: 12 } },
  );
}

describe("createReactAgent + ChatOpenAI + MeteringCallbackHandler", () => {
  it("the agent's subject reaches both model calls; tokens = the two replies, exactly", async () => {
    const { sink, handler, warnings } = meteringSetup();
    scriptAgentLoop();
    const agent = createReactAgent({ llm: openai({ callbacks: [handler] }), tools: [weather] });
    const state = await agent.invoke({ messages: [new HumanMessage("Weather in Paris?")] }, { metadata: { subject: "agent-co", tier: "pro" } });
    await handler.flush();

    expect(state.messages.at(-1)?.content).toBe("It is sunny in Paris.");
    expect(fake.requests).toHaveLength(2);
    const [first, second] = runIdsOf(sink.events);
    // Exact data: LangGraph's langgraph_* / checkpoint keys must not leak into the events.
    expect(sink.events).toEqual([
      ...expectedEvents(first!, { subject: "agent-co", ...base, input: 50, output: 12, extra: { tier: "pro" } }),
      ...expectedEvents(second!, { subject: "agent-co", ...base, input: 60, output: 7, cached: 32, extra: { tier: "pro" } }),
    ]);
    expect(totalsBySubject(sink.events)).toEqual({ "agent-co": { input: 110, output: 19 } });
    expect(handler.stats()).toMatchObject({ metered: 2, open: 0, missingSubject: 0 });
    expect(warnings).toEqual([]);
  });

  it("with the handler on the agent's invoke callbacks (it then sees graph, node and tool runs too)", async () => {
    const { sink, handler } = meteringSetup();
    scriptAgentLoop();
    const agent = createReactAgent({ llm: openai(), tools: [weather] });
    await agent.invoke({ messages: [new HumanMessage("Weather in Paris?")] }, { callbacks: [handler], metadata: { subject: "agent-co" } });
    await handler.flush();

    const [first, second] = runIdsOf(sink.events);
    expect(sink.events).toEqual([
      ...expectedEvents(first!, { subject: "agent-co", ...base, input: 50, output: 12 }),
      ...expectedEvents(second!, { subject: "agent-co", ...base, input: 60, output: 7, cached: 32 }),
    ]);
  });

  it("with a checkpointer and thread_id: LangGraph's configurable keys stay out of the events", async () => {
    const { sink, handler } = meteringSetup();
    scriptAgentLoop();
    const agent = createReactAgent({ llm: openai({ callbacks: [handler] }), tools: [weather], checkpointer: new MemorySaver() });
    await agent.invoke(
      { messages: [new HumanMessage("Weather in Paris?")] },
      { configurable: { thread_id: "thread-1" }, metadata: { subject: "agent-co" } },
    );
    await handler.flush();
    const [first, second] = runIdsOf(sink.events);
    expect(sink.events).toEqual([
      ...expectedEvents(first!, { subject: "agent-co", ...base, input: 50, output: 12 }),
      ...expectedEvents(second!, { subject: "agent-co", ...base, input: 60, output: 7, cached: 32 }),
    ]);
  });

  it("streamMode 'messages': the model streams (usage chunk), both calls billed exactly", async () => {
    const { sink, handler } = meteringSetup();
    scriptAgentLoop();
    const agent = createReactAgent({ llm: openai({ callbacks: [handler] }), tools: [weather] });
    let chunks = 0;
    for await (const _ of await agent.stream(
      { messages: [new HumanMessage("Weather in Paris?")] },
      { streamMode: "messages", metadata: { subject: "agent-co" } },
    )) {
      chunks++;
    }
    await handler.flush();

    expect(chunks).toBeGreaterThan(2);
    expect(fake.requests.map((r) => [r.stream, r.includeUsage])).toEqual([
      [true, true],
      [true, true],
    ]);
    // The tokens, subject and details: exact.
    expect(sink.events.map((e) => [e.subject, e.data?.type, e.data?.tokens, e.data?.cached_tokens])).toEqual([
      ["agent-co", "input", 50, undefined],
      ["agent-co", "output", 12, undefined],
      ["agent-co", "input", 60, 32],
      ["agent-co", "output", 7, undefined],
    ]);
    expect(handler.stats()).toMatchObject({ metered: 2, open: 0 });
  });

  // On this path (BaseChatModel._generateUncached's lc_prefer_streaming branch) the aggregated chunk
  // keeps ChatOpenAI's `model_name` in `generationInfo` only, not in `message.response_metadata`:
  // servedModel() reads it from there, so response_model still rides along.
  it("streamMode 'messages': the served snapshot still rides along as response_model", async () => {
    const { sink, handler } = meteringSetup();
    scriptAgentLoop();
    const agent = createReactAgent({ llm: openai({ callbacks: [handler] }), tools: [weather] });
    for await (const _ of await agent.stream(
      { messages: [new HumanMessage("Weather in Paris?")] },
      { streamMode: "messages", metadata: { subject: "agent-co" } },
    )) {
      // drain
    }
    await handler.flush();
    const [first, second] = runIdsOf(sink.events);
    expect(sink.events).toEqual([
      ...expectedEvents(first!, { subject: "agent-co", ...base, input: 50, output: 12 }),
      ...expectedEvents(second!, { subject: "agent-co", ...base, input: 60, output: 7, cached: 32 }),
    ]);
  });

  it("streamEvents v3 (the content-block stream-events protocol): both calls billed exactly", async () => {
    const { sink, handler } = meteringSetup();
    scriptAgentLoop();
    const agent = createReactAgent({ llm: openai({ callbacks: [handler] }), tools: [weather] });
    const run = await agent.streamEvents({ messages: [new HumanMessage("Weather in Paris?")] }, {
      version: "v3",
      streamMode: ["messages"],
      metadata: { subject: "agent-co" },
    });
    for await (const _ of run) {
      // drain
    }
    await handler.flush();
    expect(fake.requests.map((r) => [r.stream, r.includeUsage])).toEqual([
      [true, true],
      [true, true],
    ]);
    expect(sink.events.map((e) => [e.subject, e.data?.type, e.data?.tokens, e.data?.cached_tokens])).toEqual([
      ["agent-co", "input", 50, undefined],
      ["agent-co", "output", 12, undefined],
      ["agent-co", "input", 60, 32],
      ["agent-co", "output", 7, undefined],
    ]);
    expect(handler.stats()).toMatchObject({ metered: 2, open: 0 });
  });

  it("a model called inside a tool is billed to the agent's subject too", async () => {
    const { sink, handler } = meteringSetup();
    const summariser = openai({ model: "gpt-4.1-mini" });
    const research = tool(
      async ({ topic }: { topic: string }, config?: RunnableConfig) => {
        const summary = await summariser.invoke(`summarise ${topic}`, config);
        return String(summary.content);
      },
      { name: "research", description: "Research a topic.", schema: z.object({ topic: z.string() }) },
    );
    fake.respondWith((request) => {
      if (request.body.model === "gpt-4.1-mini") return { content: "A summary.", usage: { prompt_tokens: 500, completion_tokens: 40 } };
      return hasToolResult(request)
        ? { content: "Done.", usage: { prompt_tokens: 90, completion_tokens: 5 } }
        : { toolCalls: [{ name: "research", arguments: { topic: "metering" } }], usage: { prompt_tokens: 70, completion_tokens: 15 } };
    });
    const agent = createReactAgent({ llm: openai(), tools: [research] });
    await agent.invoke({ messages: [new HumanMessage("Research metering")] }, { callbacks: [handler], metadata: { subject: "tool-co" } });
    await handler.flush();

    const runIds = runIdsOf(sink.events);
    expect(runIds).toHaveLength(3);
    expect(sink.events).toEqual([
      ...expectedEvents(runIds[0]!, { subject: "tool-co", ...base, input: 70, output: 15 }),
      ...expectedEvents(runIds[1]!, { subject: "tool-co", model: "gpt-4.1-mini", provider: "openai", responseModel: "gpt-4.1-mini-2025-04-14", input: 500, output: 40 }),
      ...expectedEvents(runIds[2]!, { subject: "tool-co", ...base, input: 90, output: 5 }),
    ]);
  });

  it("two agents for two subjects at once: each subject gets exactly its own calls", async () => {
    const { sink, handler } = meteringSetup();
    scriptAgentLoop();
    const agent = createReactAgent({ llm: openai({ callbacks: [handler] }), tools: [weather] });
    await Promise.all([
      agent.invoke({ messages: [new HumanMessage("Weather in Paris?")] }, { metadata: { subject: "left" } }),
      agent.invoke({ messages: [new HumanMessage("Weather in Paris?")] }, { metadata: { subject: "right" } }),
      agent.invoke({ messages: [new HumanMessage("Weather in Paris?")] }, { metadata: { subject: "right" } }),
    ]);
    await handler.flush();
    expect(fake.requests).toHaveLength(6);
    expect(totalsBySubject(sink.events)).toEqual({ left: { input: 110, output: 19 }, right: { input: 220, output: 38 } });
    expect(new Set(sink.events.map((e) => e.id)).size).toBe(12);
  });
});
