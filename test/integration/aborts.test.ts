/**
 * Calls the provider billed although they never finished: a `break` out of model.stream(), an
 * AbortSignal, an agent stream given up, a stream that breaks. Each test first pins which callbacks
 * @langchain/core 1.4 fires (WatchHandler), then what the handler bills: the provider's counts where it
 * sent any (Anthropic's message_start carries the whole input), else an estimate from what was sent and
 * received (about 4 characters a token), flagged `estimated: true`, with `data.status`.
 *
 * The fakes hold a stream part-way (`holdAfterChunks` / `holdAfterEvents`) until `release()`, so an
 * abort lands mid-stream without a timer; the handler's run time-out runs on a TestClock.
 */
import { ChatAnthropic } from "@langchain/anthropic";
import { HumanMessage } from "@langchain/core/messages";
import { createReactAgent } from "@langchain/langgraph/prebuilt";
import { ChatOpenAI } from "@langchain/openai";
import { TestClock } from "langchain-openmeter/testing";
import type { UnbilledCall } from "langchain-openmeter";
import { describe, expect, it } from "vitest";
import { type AnthropicFake, startAnthropicServer } from "../support/anthropic-server.js";
import { useProviderFake } from "../support/lifecycle.js";
import { expectedEvents, meteringSetup, newRunId, runIdsOf } from "../support/metering.js";
import { type OpenAIFake, startOpenAIServer } from "../support/openai-server.js";
import { WatchHandler } from "../support/watch.js";

let openaiFake: OpenAIFake;
useProviderFake(startOpenAIServer, (started) => (openaiFake = started));
let anthropicFake: AnthropicFake;
useProviderFake(startAnthropicServer, (started) => (anthropicFake = started));

const RUN_TIMEOUT = 60_000;
const openai = (fields: Record<string, unknown> = {}) =>
  new ChatOpenAI({ model: "gpt-4o-mini", apiKey: "test", maxRetries: 0, configuration: { baseURL: openaiFake.baseURL }, ...fields });
const anthropic = (fields: Record<string, unknown> = {}) =>
  new ChatAnthropic({ model: "claude-sonnet-4-5", apiKey: "test", maxRetries: 0, anthropicApiUrl: anthropicFake.baseURL, ...fields });
const openaiRun = { model: "gpt-4o-mini", provider: "openai" };
const anthropicRun = { model: "claude-sonnet-4-5", provider: "anthropic" };
const answer = "one two three four five six seven eight nine ten";
const prompt = "Count to ten";

/** The rough estimate, spelled out: 3 per prompt, 4 per message, a token per 4 characters. */
const estimatedInput = (...messages: string[]) => 3 + messages.reduce((sum, text) => sum + 4 + Math.ceil(text.length / 4), 0);
const estimatedOutput = (received: string) => Math.ceil(received.length / 4);

function setup(options: Record<string, unknown> = {}) {
  const clock = new TestClock();
  const unbilled: UnbilledCall[] = [];
  const metering = meteringSetup({ clock, runTimeoutMs: RUN_TIMEOUT, onUnbilled: (call: UnbilledCall) => unbilled.push(call), ...options });
  return { ...metering, clock, unbilled, watch: new WatchHandler() };
}

describe("break out of model.stream()", () => {
  it("OpenAI: no end and no error callback; settled on the timer after runTimeoutMs, estimated", async () => {
    const { sink, handler, watch, clock } = setup();
    openaiFake.enqueue({ content: answer, usage: { prompt_tokens: 354, completion_tokens: 112 } });
    const runId = newRunId();
    let chunks = 0;
    for await (const _ of await openai({ callbacks: [handler, watch] }).stream(prompt, { runId, metadata: { subject: "acme" } })) {
      if (++chunks === 4) break;
    }
    await handler.flush();
    // What LangChain reports of it: tokens, then nothing. (The 4th chunk's token callback never runs:
    // it would have run when the consumer asked for the 5th.)
    expect(watch.fired).toEqual({ tokens: 3, ends: 0, errors: 0 });
    expect(sink.events).toEqual([]);
    expect(handler.stats().open).toBe(1);

    await clock.advance(RUN_TIMEOUT - 1);
    expect(sink.events).toEqual([]);
    await clock.advance(1);
    expect(sink.events).toEqual(
      expectedEvents(runId, {
        subject: "acme",
        ...openaiRun,
        input: estimatedInput(prompt),
        output: estimatedOutput(watch.tokens.join("")),
        status: "aborted",
        inputEstimated: true,
        outputEstimated: true,
      }),
    );
    expect(handler.stats()).toMatchObject({ open: 0, unfinished: 1, metered: 0 });
  });

  it("Anthropic: message_start's input is the provider's (not estimated), the output is estimated", async () => {
    const { sink, handler, watch, clock } = setup();
    anthropicFake.enqueue({ text: answer, usage: { input_tokens: 354, cache_read_input_tokens: 1000, output_tokens: 112 } });
    const runId = newRunId();
    let chunks = 0;
    for await (const _ of await anthropic({ callbacks: [handler, watch] }).stream(prompt, { runId, metadata: { subject: "acme" } })) {
      if (++chunks === 5) break;
    }
    await handler.flush();
    expect(watch.fired).toEqual({ tokens: 4, ends: 0, errors: 0 });
    await clock.advance(RUN_TIMEOUT);
    expect(sink.events).toEqual(
      expectedEvents(runId, {
        subject: "acme",
        ...anthropicRun,
        responseModel: undefined,
        input: 1354,
        cached: 1000,
        output: estimatedOutput(watch.tokens.join("")),
        status: "aborted",
        outputEstimated: true,
      }),
    );
  });
});

describe("estimateTokens: a real tokenizer for the estimates", () => {
  it("js-tiktoken's o200k_base (bundled ranks, no download) counts what was sent and received", async () => {
    const { Tiktoken } = await import("js-tiktoken/lite");
    const { default: o200k } = await import("js-tiktoken/ranks/o200k_base");
    const encoder = new Tiktoken(o200k);
    const count = (text: string) => encoder.encode(text).length;
    const { sink, handler, watch, clock } = setup({ estimateTokens: count });
    // Short common words: about one token each, far from four characters a token.
    openaiFake.enqueue({ content: "a b c d e f g h i j k l m n o p", usage: { prompt_tokens: 354, completion_tokens: 112 } });
    const runId = newRunId();
    let chunks = 0;
    for await (const _ of await openai({ callbacks: [handler, watch] }).stream(prompt, { runId, metadata: { subject: "acme" } })) {
      if (++chunks === 12) break;
    }
    await clock.advance(RUN_TIMEOUT);
    expect(sink.events.map((e) => e.data?.tokens)).toEqual([3 + 4 + count(prompt), count(watch.tokens.join(""))]);
    expect(count(watch.tokens.join(""))).not.toBe(estimatedOutput(watch.tokens.join(""))); // the option is what counted
  });
});

describe("an AbortSignal", () => {
  it("aborted between chunks of .stream(): core stops asking, no callback fires; settled on the timer", async () => {
    const { sink, handler, watch, clock } = setup();
    openaiFake.enqueue({ content: answer, usage: { prompt_tokens: 354, completion_tokens: 112 } });
    const controller = new AbortController();
    const runId = newRunId();
    const read = async () => {
      let chunks = 0;
      for await (const _ of await openai({ callbacks: [handler, watch] }).stream(prompt, { runId, signal: controller.signal, metadata: { subject: "acme" } })) {
        if (++chunks === 3) controller.abort();
      }
    };
    await expect(read()).rejects.toThrow(/abort/i);
    await handler.flush();
    expect(watch.fired).toEqual({ tokens: 2, ends: 0, errors: 0 });
    await clock.advance(RUN_TIMEOUT);
    expect(sink.events.map((e) => [e.data?.type, e.data?.status, e.data?.estimated])).toEqual([
      ["input", "aborted", true],
      ["output", "aborted", true],
    ]);
  });

  it("aborted while the stream waits for the provider: handleLLMError(AbortError), billed at once", async () => {
    const { sink, handler, watch } = setup();
    openaiFake.enqueue({ content: answer, usage: { prompt_tokens: 354, completion_tokens: 112 }, holdAfterChunks: 3 });
    const controller = new AbortController();
    const runId = newRunId();
    const stream = await openai({ callbacks: [handler, watch] }).stream(prompt, { runId, signal: controller.signal, metadata: { subject: "acme" } });
    const reader = stream[Symbol.asyncIterator]();
    for (let i = 0; i < 3; i++) await reader.next();
    const pending = reader.next(); // the provider holds the 4th chunk
    await watch.until((w) => w.tokens.length === 3);
    controller.abort();
    await expect(pending).rejects.toThrow(/abort/i);
    await watch.until((w) => w.errors.length === 1);
    expect(watch.fired).toEqual({ tokens: 3, ends: 0, errors: 1 });
    expect(sink.events).toEqual(
      expectedEvents(runId, {
        subject: "acme",
        ...openaiRun,
        input: estimatedInput(prompt),
        output: estimatedOutput(watch.tokens.join("")),
        status: "aborted",
        inputEstimated: true,
        outputEstimated: true,
      }),
    );
  });

  it("Anthropic streaming: true invoke aborted mid-stream: the integration ends the run with the partial message; billed as aborted", async () => {
    const { sink, handler, watch } = setup();
    anthropicFake.enqueue({ text: answer, usage: { input_tokens: 354, output_tokens: 112 }, holdAfterEvents: 6 });
    const controller = new AbortController();
    const runId = newRunId();
    const call = anthropic({ streaming: true, callbacks: [handler, watch] }).invoke(prompt, { runId, signal: controller.signal, metadata: { subject: "acme" } });
    await watch.until((w) => w.tokens.length >= 5);
    controller.abort();
    anthropicFake.release(); // the next event arrives; @langchain/anthropic sees the abort and returns what it has
    const outcome = await call.then(
      (message) => ({ resolved: message.usage_metadata }),
      (error: Error) => ({ rejected: error.name }),
    );
    await watch.until((w) => w.ends.length + w.errors.length === 1);
    // What LangChain reports: no error at all. The call resolves with the partial message and an end
    // callback carrying message_start's usage: output_tokens 1, far less than the provider generated.
    // The handler tells from the missing message_delta (no stop reason) that the stream was cut short.
    expect(outcome).toEqual({ resolved: expect.objectContaining({ input_tokens: 354, output_tokens: 1 }) });
    expect(watch.fired).toMatchObject({ ends: 1, errors: 0 });
    expect(sink.events).toEqual(
      expectedEvents(runId, {
        subject: "acme",
        ...anthropicRun,
        input: 354,
        output: estimatedOutput(watch.tokens.join("")),
        status: "aborted",
        outputEstimated: true,
      }),
    );
  });
});

describe("agent streams", () => {
  it("break out of a LangGraph agent stream (messages mode): LangGraph aborts the model call; billed as aborted", async () => {
    const { sink, handler, watch } = setup();
    openaiFake.enqueue({ content: answer, usage: { prompt_tokens: 354, completion_tokens: 112 }, holdAfterChunks: 4 });
    const agent = createReactAgent({ llm: openai({ callbacks: [handler, watch] }), tools: [] });
    let messages = 0;
    for await (const _ of await agent.stream({ messages: [new HumanMessage(prompt)] }, { streamMode: "messages", metadata: { subject: "acme" } })) {
      if (++messages === 2) break;
    }
    openaiFake.release();
    await watch.until((w) => w.ends.length + w.errors.length === 1);
    expect(watch.fired).toMatchObject({ ends: 0, errors: 1 });
    const [runId] = runIdsOf(sink.events);
    expect(sink.events).toEqual(
      expectedEvents(runId!, {
        subject: "acme",
        ...openaiRun,
        input: estimatedInput(prompt),
        output: estimatedOutput(watch.tokens.join("")),
        status: "aborted",
        inputEstimated: true,
        outputEstimated: true,
      }),
    );
  });

  it("an agent stream left unread: LangGraph runs the model call to its end; billed exactly", async () => {
    const { sink, handler, watch } = setup();
    openaiFake.enqueue({ content: answer, usage: { prompt_tokens: 354, completion_tokens: 112 } });
    const agent = createReactAgent({ llm: openai({ callbacks: [handler, watch] }), tools: [] });
    const stream = await agent.stream({ messages: [new HumanMessage(prompt)] }, { streamMode: "messages", metadata: { subject: "acme" } });
    await stream[Symbol.asyncIterator]().next(); // one message, then nobody reads
    await watch.until((w) => w.ends.length === 1);
    const [runId] = runIdsOf(sink.events);
    expect(sink.events.map((e) => [e.id, e.data?.tokens, e.data?.status, e.data?.estimated])).toEqual([
      [`${runId}-input`, 354, undefined, undefined],
      [`${runId}-output`, 112, undefined, undefined],
    ]);
  });
});

describe("streams that break, and calls that fail", () => {
  it("a stream cut off after chunks arrived: handleLLMError; billed with status error, estimated", async () => {
    const { sink, handler, watch } = setup();
    openaiFake.enqueue({ content: answer, usage: { prompt_tokens: 354, completion_tokens: 112 }, holdAfterChunks: 4, streamFailure: { afterChunks: 4, mode: "disconnect" } });
    const runId = newRunId();
    const read = async () => {
      for await (const _ of await openai({ callbacks: [handler, watch] }).stream(prompt, { runId, metadata: { subject: "acme" } })) {
        // drain
      }
    };
    const reading = read();
    await watch.until((w) => w.tokens.length === 4);
    openaiFake.release();
    await expect(reading).rejects.toThrow();
    await watch.until((w) => w.errors.length === 1);
    expect(sink.events).toEqual(
      expectedEvents(runId, {
        subject: "acme",
        ...openaiRun,
        input: estimatedInput(prompt),
        output: estimatedOutput(watch.tokens.join("")),
        status: "error",
        inputEstimated: true,
        outputEstimated: true,
      }),
    );
  });

  it("a call refused before any output (500): nothing billed, onUnbilled says why", async () => {
    const { sink, handler, unbilled } = setup();
    openaiFake.enqueue({ error: { status: 500 } });
    const runId = newRunId();
    await expect(openai({ callbacks: [handler] }).invoke(prompt, { runId, metadata: { subject: "acme" } })).rejects.toMatchObject({ status: 500 });
    await handler.flush();
    expect(sink.events).toEqual([]);
    expect(unbilled).toEqual([expect.objectContaining({ reason: "failed", runId, subject: "acme", model: "gpt-4o-mini", provider: "openai" })]);
    expect(unbilled[0]?.message).toMatch(/failed before any output reached LangChain/);
  });
});
