/**
 * The metering handler on the real @langchain/mistralai ChatMistralAI and @langchain/ollama ChatOllama
 * against local fakes of their APIs: both integrations report the provider's counts as they are.
 */
import { ChatMistralAI } from "@langchain/mistralai";
import { ChatOllama } from "@langchain/ollama";
import { describe, expect, it } from "vitest";
import { useProviderFake } from "../support/lifecycle.js";
import { expectedEvents, meteringSetup, newRunId } from "../support/metering.js";
import { type MistralFake, startMistralServer } from "../support/mistral-server.js";
import { type OllamaFake, startOllamaServer } from "../support/ollama-server.js";

let mistral: MistralFake;
useProviderFake(startMistralServer, (started) => (mistral = started));
let ollama: OllamaFake;
useProviderFake(startOllamaServer, (started) => (ollama = started));

const drain = async (stream: AsyncIterable<unknown>) => {
  for await (const _ of stream) {
    // drain
  }
};

describe("ChatMistralAI + MeteringCallbackHandler", () => {
  const model = (fields: Record<string, unknown> = {}) =>
    new ChatMistralAI({ model: "mistral-large-latest", apiKey: "test", maxRetries: 0, serverURL: mistral.baseURL, ...fields });
  const base = { model: "mistral-large-latest", provider: "mistral", responseModel: "mistral-large-2411" };

  it("invoke: exact, the served model as response_model", async () => {
    const { sink, handler } = meteringSetup();
    mistral.enqueue({ promptTokens: 64, completionTokens: 12, model: "mistral-large-2411" });
    const runId = newRunId();
    await model({ callbacks: [handler] }).invoke("Bonjour", { runId, metadata: { subject: "acme" } });
    await handler.flush();
    expect(mistral.requests[0]?.stream).toBe(false);
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 64, output: 12 }));
  });

  it(".stream(): the last chunk's usage, exact", async () => {
    const { sink, handler } = meteringSetup();
    mistral.enqueue({ promptTokens: 65, completionTokens: 13, model: "mistral-large-2411" });
    const runId = newRunId();
    await drain(await model({ callbacks: [handler] }).stream("Bonjour", { runId, metadata: { subject: "acme" } }));
    await handler.flush();
    expect(mistral.requests[0]?.stream).toBe(true);
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 65, output: 13 }));
  });

  it("streaming: true invoke: exact", async () => {
    const { sink, handler } = meteringSetup();
    mistral.enqueue({ promptTokens: 66, completionTokens: 14, model: "mistral-large-2411" });
    const runId = newRunId();
    await model({ streaming: true, callbacks: [handler] }).invoke("Bonjour", { runId, metadata: { subject: "acme" } });
    await handler.flush();
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 66, output: 14 }));
  });
});

describe("ChatOllama + MeteringCallbackHandler", () => {
  const model = (fields: Record<string, unknown> = {}) => new ChatOllama({ model: "llama3.2", baseUrl: ollama.baseURL, ...fields });
  const base = { model: "llama3.2", provider: "ollama" };

  it("invoke (streamed underneath): prompt_eval_count and eval_count, exact", async () => {
    const { sink, handler } = meteringSetup();
    ollama.enqueue({ promptEvalCount: 26, evalCount: 9 });
    const runId = newRunId();
    await model({ callbacks: [handler] }).invoke("Hi", { runId, metadata: { subject: "acme" } });
    await handler.flush();
    expect(ollama.requests[0]?.body.stream).toBe(true);
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 26, output: 9 }));
  });

  it(".stream(): exact", async () => {
    const { sink, handler } = meteringSetup();
    ollama.enqueue({ promptEvalCount: 27, evalCount: 10 });
    const runId = newRunId();
    await drain(await model({ callbacks: [handler] }).stream("Hi", { runId, metadata: { subject: "acme" } }));
    await handler.flush();
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 27, output: 10 }));
  });
});
