/**
 * The metering handler on the real @langchain/google-genai ChatGoogleGenerativeAI against the local
 * Gemini fake. Google bills thinking as output ("Output price (including thinking tokens)",
 * ai.google.dev/gemini-api/docs/pricing); @langchain/google-genai 2.3 leaves it out of output_tokens
 * and, streamed, sums the absolute cachedContentTokenCount of every chunk. Both are corrected from
 * what reaches the callbacks: the total (which includes the thinking) and the chunk count.
 */
import { BaseCallbackHandler } from "@langchain/core/callbacks/base";
import { tool } from "@langchain/core/tools";
import { ChatGoogleGenerativeAI } from "@langchain/google-genai";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { CaptureHandler, endUsage } from "../support/capture.js";
import { type GoogleFake, startGoogleServer } from "../support/google-server.js";
import { useProviderFake } from "../support/lifecycle.js";
import { expectedEvents, meteringSetup, newRunId } from "../support/metering.js";

let fake: GoogleFake;
useProviderFake(startGoogleServer, (started) => (fake = started));

const gemini = (fields: Record<string, unknown> = {}) =>
  new ChatGoogleGenerativeAI({ model: "gemini-2.5-flash", apiKey: "test", maxRetries: 0, baseUrl: fake.baseURL, ...fields });
const base = { model: "gemini-2.5-flash", provider: "google_genai" };
const text = "Thinking models answer after they think, at some length.";

class StreamEventsPreferrer extends BaseCallbackHandler {
  name = "stream-events-preferrer";
  lc_prefer_chat_model_stream_events = true;
}

const drain = async (stream: AsyncIterable<unknown>) => {
  for await (const _ of stream) {
    // drain
  }
};

describe("ChatGoogleGenerativeAI + MeteringCallbackHandler", () => {
  it("invoke without thinking: exact as reported", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ promptTokens: 120, candidatesTokens: 30 });
    const runId = newRunId();
    await gemini({ callbacks: [handler] }).invoke("Hi", { runId, metadata: { subject: "acme" } });
    await handler.flush();
    expect(fake.requests[0]?.path).toBe("/v1beta/models/gemini-2.5-flash:generateContent");
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 120, output: 30 }));
  });

  // Remove the total-based correction in providers/google.ts and the output falls back to 30.
  it("invoke with thinking: output = candidates + thoughts (Google bills thinking as output), reasoning detail", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ promptTokens: 120, candidatesTokens: 30, thoughtsTokens: 800 });
    const capture = new CaptureHandler();
    const runId = newRunId();
    await gemini({ callbacks: [handler], thinkingConfig: { thinkingBudget: 1024 } }).invoke("Think", { runId, callbacks: [capture], metadata: { subject: "acme" } });
    await handler.flush();
    expect(fake.requests[0]?.body.generationConfig?.thinkingConfig).toEqual({ thinkingBudget: 1024 });
    expect(endUsage(capture.ends[0])).toMatchObject({ input_tokens: 120, output_tokens: 30, total_tokens: 950 }); // what LangChain reports
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 120, output: 830, reasoning: 800 }));
  });

  it("invoke with cached content: cache reads ride along, exact", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ promptTokens: 5000, candidatesTokens: 40, cachedTokens: 4096 });
    const runId = newRunId();
    await gemini({ callbacks: [handler] }).invoke("Hi", { runId, metadata: { subject: "acme" } });
    await handler.flush();
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 5000, output: 40, cached: 4096 }));
  });

  // LangChain reports chunks × 4096 as cache_read; remove the division in providers/google.ts and the
  // detail exceeds the input and is dropped (and with split, 4096 cached tokens would cost full price).
  it(".stream() with cached content and thinking: cache reads once (not once per chunk), thinking billed", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ text, promptTokens: 5000, candidatesTokens: 24, cachedTokens: 4096, thoughtsTokens: 300 });
    const capture = new CaptureHandler();
    const runId = newRunId();
    await drain(await gemini({ callbacks: [handler] }).stream("Think", { runId, callbacks: [capture], metadata: { subject: "acme" } }));
    await handler.flush();
    const chunks = fake.requests[0]!.reply.chunks!;
    expect(chunks).toBeGreaterThan(3);
    expect(endUsage(capture.ends[0])).toMatchObject({ input_tokens: 5000, output_tokens: 24, input_token_details: { cache_read: 4096 * chunks } });
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 5000, output: 324, cached: 4096, reasoning: 300 }));
  });

  it("streaming: true invoke with thinking: corrected the same way", async () => {
    const { sink, handler } = meteringSetup({ splitTokenTypes: true });
    fake.enqueue({ text, promptTokens: 2000, candidatesTokens: 24, cachedTokens: 1024, thoughtsTokens: 500 });
    await gemini({ streaming: true, callbacks: [handler] }).invoke("Think", { metadata: { subject: "acme" } });
    await handler.flush();
    expect(fake.requests[0]?.stream).toBe(true);
    expect(sink.events.map((e) => [e.data!.type, e.data!.tokens])).toEqual([
      ["input", 976],
      ["output", 24],
      ["cache_read", 1024],
      ["reasoning", 500],
    ]);
  });

  it("the stream-events protocol (absolute usage snapshots): thinking billed, cache reads as reported", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ text, promptTokens: 3000, candidatesTokens: 24, cachedTokens: 2048, thoughtsTokens: 250 });
    const runId = newRunId();
    await gemini({ callbacks: [handler, new StreamEventsPreferrer()] }).invoke("Think", { runId, metadata: { subject: "acme" } });
    await handler.flush();
    expect(fake.requests[0]?.stream).toBe(true);
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 3000, output: 274, cached: 2048, reasoning: 250 }));
  });

  it("a function call: exact", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ functionCall: { name: "get_weather", args: { city: "Rome" } }, promptTokens: 80, candidatesTokens: 12 });
    const weather = tool(async () => "sunny", { name: "get_weather", description: "Weather.", schema: z.object({ city: z.string() }) });
    const runId = newRunId();
    const message = await gemini({ callbacks: [handler] }).bindTools([weather]).invoke("Weather?", { runId, metadata: { subject: "acme" } });
    await handler.flush();
    expect(message.tool_calls?.[0]?.name).toBe("get_weather");
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 80, output: 12 }));
  });

  // With a built-in tool the total also holds toolUsePromptTokenCount, which no callback tells apart
  // from the thinking: the remainder is billed as output and flagged.
  it("a built-in tool (Google Search): the total's remainder billed as output, flagged estimated", async () => {
    const { sink, handler, warnings } = meteringSetup();
    fake.enqueue({ promptTokens: 100, candidatesTokens: 50, thoughtsTokens: 200, toolUsePromptTokens: 700 });
    const runId = newRunId();
    await gemini({ callbacks: [handler] }).bindTools([{ googleSearch: {} }]).invoke("News?", { runId, metadata: { subject: "acme" } });
    await handler.flush();
    expect(fake.requests[0]?.body.tools).toEqual([{ googleSearch: {} }]);
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 100, output: 950, outputEstimated: true }));
    expect(warnings.join("\n")).toMatch(/tool-use prompt tokens.*flagged estimated/);
  });
});
