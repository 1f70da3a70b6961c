/**
 * ChatOpenAI's other modes against the local OpenAI fake: tools, audio, n > 1 streamed (where LangChain
 * concatenates the model name), and the Responses API (switched to by `useResponsesApi` or by a
 * built-in tool), whose usage arrives only on `response.completed` / `response.incomplete` and whose
 * hosted tool calls are billed per call.
 */
import { HumanMessage } from "@langchain/core/messages";
import { tool } from "@langchain/core/tools";
import { ChatOpenAI } from "@langchain/openai";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { CaptureHandler } from "../support/capture.js";
import { useProviderFake } from "../support/lifecycle.js";
import { type OpenAIFake, startOpenAIServer } from "../support/openai-server.js";
import { eventsOfRun, expectedEvents, expectedToolEvent, meteringSetup, newRunId } from "../support/metering.js";

let fake: OpenAIFake;
useProviderFake(startOpenAIServer, (started) => (fake = started));

const openai = (fields: Record<string, unknown> = {}) =>
  new ChatOpenAI({ model: "gpt-4o-mini", apiKey: "test", maxRetries: 0, configuration: { baseURL: fake.baseURL }, ...fields });
const base = { model: "gpt-4o-mini", provider: "openai", responseModel: "gpt-4o-mini-2024-07-18" };

const weather = tool(async ({ city }: { city: string }) => `Sunny in ${city}.`, {
  name: "get_weather",
  description: "Current weather for a city.",
  schema: z.object({ city: z.string() }),
});

describe("ChatOpenAI chat completions: tools, audio, n > 1 streamed", () => {
  it("a tool call, invoked: exact, cached input detail kept", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ toolCalls: [{ name: "get_weather", arguments: { city: "Rome" } }], usage: { prompt_tokens: 210, completion_tokens: 18, prompt_tokens_details: { cached_tokens: 128 } } });
    const runId = newRunId();
    const message = await openai({ callbacks: [handler] }).bindTools([weather]).invoke("Weather in Rome?", { runId, metadata: { subject: "acme" } });
    await handler.flush();
    expect(message.tool_calls?.[0]?.name).toBe("get_weather");
    expect(fake.requests[0]?.body.tools?.[0]?.function?.name).toBe("get_weather");
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 210, output: 18, cached: 128 }));
  });

  it("a tool call, streamed: billed from the usage chunk, once", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ toolCalls: [{ name: "get_weather", arguments: { city: "Rome" } }], usage: { prompt_tokens: 211, completion_tokens: 19 } });
    const runId = newRunId();
    for await (const _ of await openai({ callbacks: [handler] }).bindTools([weather]).stream("Weather?", { runId, metadata: { subject: "acme" } })) {
      // drain
    }
    await handler.flush();
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 211, output: 19 }));
  });

  it("audio in and out: the audio tokens ride along on each side, and are their own buckets when split", async () => {
    const audioUsage = {
      prompt_tokens: 900,
      completion_tokens: 700,
      prompt_tokens_details: { audio_tokens: 600, cached_tokens: 0 },
      completion_tokens_details: { audio_tokens: 650, reasoning_tokens: 0 },
    };
    const model = { model: "gpt-4o-audio-preview", modalities: ["text", "audio"], audio: { voice: "alloy", format: "wav" } };
    const served = { model: "gpt-4o-audio-preview", provider: "openai", responseModel: "gpt-4o-audio-preview-2025-06-03" };

    const { sink, handler } = meteringSetup();
    fake.enqueue({ content: "Bonjour", usage: audioUsage, model: served.responseModel });
    const runId = newRunId();
    const message = await openai({ ...model, callbacks: [handler] }).invoke([new HumanMessage("Say hi")], { runId, metadata: { subject: "acme" } });
    await handler.flush();
    expect(message.additional_kwargs.audio).toMatchObject({ transcript: "Bonjour" });
    expect(fake.requests[0]?.body.modalities).toEqual(["text", "audio"]);
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...served, input: 900, output: 700, audioInput: 600, audioOutput: 650 }));

    const split = meteringSetup({ splitTokenTypes: true });
    fake.enqueue({ content: "Bonjour", usage: audioUsage, model: served.responseModel });
    await openai({ ...model, callbacks: [split.handler] }).invoke("Say hi", { metadata: { subject: "acme" } });
    await split.handler.flush();
    expect(split.sink.events.map((e) => [e.data!.type, e.data!.tokens])).toEqual([
      ["input", 300],
      ["output", 50],
      ["input_audio", 600],
      ["output_audio", 650],
    ]);
  });

  // @langchain/openai's .stream() folds the choices into one message, and core's merge concatenates
  // string fields: model_name comes out "gpt-4o-mini-2024-07-18gpt-4o-mini-2024-07-18". The handler
  // takes the name from the first chunk that has it (drop `evidence.stream.model` from billFor in
  // src/providers/index.ts and this fails).
  it("n = 2 through .stream(): usage once, response_model the snapshot, not LangChain's concatenation", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ content: ["First.", "Second."], usage: { prompt_tokens: 20, completion_tokens: 6 } });
    const capture = new CaptureHandler();
    const runId = newRunId();
    for await (const _ of await openai({ n: 2, callbacks: [handler] }).stream("Two", { runId, callbacks: [capture], metadata: { subject: "acme" } })) {
      // drain
    }
    await handler.flush();
    const reported = capture.ends[0]?.output.generations[0]?.[0] as { message?: { response_metadata?: Record<string, unknown> } };
    expect(reported.message?.response_metadata?.model_name).toBe("gpt-4o-mini-2024-07-18gpt-4o-mini-2024-07-18");
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 20, output: 6 }));
  });

  it("n = 2 with streaming: true: usage once, the snapshot as response_model", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ content: ["First.", "Second."], usage: { prompt_tokens: 21, completion_tokens: 7 } });
    const runId = newRunId();
    const result = await openai({ n: 2, streaming: true, callbacks: [handler] }).generate([[new HumanMessage("Two")]], { runId, metadata: { subject: "acme" } });
    await handler.flush();
    expect(result.generations[0]).toHaveLength(2);
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 21, output: 7 }));
  });
});

describe("ChatOpenAI on the Responses API", () => {
  const responsesUsage = { input_tokens: 1500, output_tokens: 420, cached_tokens: 1024, reasoning_tokens: 256 };
  const billed = { input: 1500, output: 420, cached: 1024, reasoning: 256 };
  const served = { model: "gpt-4.1", provider: "openai", responseModel: "gpt-4.1-2025-04-14" };

  it("useResponsesApi, invoke: usage from the Response, exact", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ responses: { text: "Hi.", usage: responsesUsage } });
    const runId = newRunId();
    const message = await openai({ model: "gpt-4.1", useResponsesApi: true, callbacks: [handler] }).invoke("Hi", { runId, metadata: { subject: "acme" } });
    await handler.flush();
    expect(fake.requests[0]?.path).toBe("/v1/responses");
    expect(message.text).toBe("Hi.");
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...served, ...billed }));
  });

  it("useResponsesApi, .stream(): usage from response.completed, exact, once", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ responses: { text: "Streaming through the Responses API.", usage: responsesUsage } });
    const runId = newRunId();
    let chunks = 0;
    for await (const _ of await openai({ model: "gpt-4.1", useResponsesApi: true, callbacks: [handler] }).stream("Hi", { runId, metadata: { subject: "acme" } })) chunks++;
    await handler.flush();
    expect(fake.requests[0]?.body.stream).toBe(true);
    expect(chunks).toBeGreaterThan(4);
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...served, ...billed }));
  });

  it("response.incomplete (max_output_tokens): its usage is billed", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ responses: { text: "Cut", usage: { input_tokens: 40, output_tokens: 16 }, incomplete: true } });
    const runId = newRunId();
    for await (const _ of await openai({ model: "gpt-4.1", useResponsesApi: true, maxTokens: 16, callbacks: [handler] }).stream("Long", { runId, metadata: { subject: "acme" } })) {
      // drain
    }
    await handler.flush();
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...served, input: 40, output: 16 }));
  });

  it("a built-in web_search tool switches to /v1/responses; each web_search_call is a request event of its own type", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ responses: { text: "Found it.", hostedCalls: ["web_search_call", "web_search_call"], usage: { input_tokens: 3000, output_tokens: 90 } } });
    const runId = newRunId();
    await openai({ model: "gpt-4.1", callbacks: [handler] }).bindTools([{ type: "web_search" }]).invoke("News?", { runId, metadata: { subject: "acme", tier: "pro" } });
    await handler.flush();
    expect(fake.requests[0]?.path).toBe("/v1/responses");
    expect(eventsOfRun(sink.events, runId)).toEqual(expectedEvents(runId, { subject: "acme", ...served, input: 3000, output: 90, extra: { tier: "pro" } }));
    expect(sink.events.filter((e) => e.type === "llm.server_tool_request")).toEqual([
      expectedToolEvent(runId, { subject: "acme", ...served, tool: "web_search", requests: 2, extra: { tier: "pro" } }),
    ]);
  });

  it("web_search and file_search calls, streamed: counted once each from response.completed", async () => {
    const { sink, handler } = meteringSetup({ serverToolEventType: "llm.tool_calls" });
    fake.enqueue({ responses: { text: "Both.", hostedCalls: ["file_search_call", "web_search_call", "web_search_call", "web_search_call"], usage: { input_tokens: 500, output_tokens: 20 } } });
    const runId = newRunId();
    const model = openai({ model: "gpt-4.1", callbacks: [handler] }).bindTools([{ type: "web_search" }, { type: "file_search", vector_store_ids: ["vs_1"] }]);
    for await (const _ of await model.stream("Both?", { runId, metadata: { subject: "acme" } })) {
      // drain
    }
    await handler.flush();
    const tools = sink.events.filter((e) => e.type === "llm.tool_calls").map((e) => [e.id, e.data?.tool, e.data?.requests]);
    expect(tools).toEqual([
      [`${runId}-tool-file_search`, "file_search", 1],
      [`${runId}-tool-web_search`, "web_search", 3],
    ]);
    expect(eventsOfRun(sink.events, runId).map((e) => e.data?.tokens)).toEqual([500, 20]);
  });
});
