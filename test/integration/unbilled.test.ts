/**
 * Nothing unbilled in silence: every call that produced no event reaches `onUnbilled` with a reason;
 * warnings are told once and then summarised on a timer; `configurable.subject` is accepted; a call
 * LangChain runs without callbacks (`model.streamEvents()` without `version`) is detected; a run id
 * passed to two calls is billed twice, under different ids.
 */
import { InMemoryCache } from "@langchain/core/caches";
import { awaitAllCallbacks } from "@langchain/core/callbacks/promises";
import { HumanMessage } from "@langchain/core/messages";
import { RunnableLambda, type RunnableConfig } from "@langchain/core/runnables";
import { createReactAgent } from "@langchain/langgraph/prebuilt";
import { ChatOpenAI } from "@langchain/openai";
import type { UnbilledCall } from "langchain-openmeter";
import { TestClock } from "langchain-openmeter/testing";
import { describe, expect, it } from "vitest";
import { useProviderFake } from "../support/lifecycle.js";
import { expectedEvents, meteringSetup, newRunId, runIdsOf } from "../support/metering.js";
import { type OpenAIFake, startOpenAIServer } from "../support/openai-server.js";

let fake: OpenAIFake;
useProviderFake(startOpenAIServer, (started) => (fake = started));

const openai = (fields: Record<string, unknown> = {}) =>
  new ChatOpenAI({ model: "gpt-4o-mini", apiKey: "test", maxRetries: 0, configuration: { baseURL: fake.baseURL }, ...fields });
const base = { model: "gpt-4o-mini", provider: "openai", responseModel: "gpt-4o-mini-2024-07-18" };
const usage = { prompt_tokens: 12, completion_tokens: 5 };

function setup(options: Record<string, unknown> = {}) {
  const clock = new TestClock();
  const unbilled: UnbilledCall[] = [];
  return { ...meteringSetup({ clock, onUnbilled: (call: UnbilledCall) => unbilled.push(call), ...options }), clock, unbilled };
}

describe("onUnbilled: a reason for every call that produced no event", () => {
  it("no subject, no usage, a cache hit, after shutdown: each reported with its run, model and reason", async () => {
    const { handler, sink, unbilled } = setup();
    fake.respondWith(() => ({ usage }));
    const model = openai({ callbacks: [handler] });
    const noSubject = newRunId();
    await model.invoke("a", { runId: noSubject });
    const noUsage = newRunId();
    for await (const _ of await openai({ streamUsage: false, callbacks: [handler] }).stream("b", { runId: noUsage, metadata: { subject: "acme" } })) {
      // drain
    }
    const cached = openai({ callbacks: [handler], cache: new InMemoryCache() });
    await cached.invoke("same", { metadata: { subject: "acme" } });
    const hit = newRunId();
    await cached.invoke("same", { runId: hit, metadata: { subject: "acme" } });
    await handler.shutdown();
    const late = newRunId();
    await model.invoke("c", { runId: late, metadata: { subject: "acme" } });
    await handler.flush();

    expect(unbilled.map(({ reason, runId, model, provider, subject }) => ({ reason, runId, model, provider, subject }))).toEqual([
      { reason: "no_subject", runId: noSubject, model: "gpt-4o-mini", provider: "openai", subject: undefined },
      { reason: "no_usage", runId: noUsage, model: "gpt-4o-mini", provider: "openai", subject: "acme" },
      { reason: "cache_hit", runId: hit, model: "gpt-4o-mini", provider: "openai", subject: "acme" },
      { reason: "after_shutdown", runId: late, model: "gpt-4o-mini", provider: "openai", subject: undefined },
    ]);
    expect(unbilled.every((call) => call.message.length > 20)).toBe(true);
    expect(sink.events).toHaveLength(2); // the first cached call, billed
  });

  it("a call that never ends and showed nothing: reported as abandoned after runTimeoutMs, by the timer", async () => {
    const { handler, unbilled, clock } = setup({ runTimeoutMs: 5000 });
    handler.handleChatModelStart({} as never, [[new HumanMessage("x")]], "stuck", undefined, {}, [], { subject: "acme", ls_model_name: "m", ls_provider: "p" });
    await clock.advance(4999);
    expect(unbilled).toEqual([]);
    await clock.advance(1);
    expect(unbilled).toEqual([expect.objectContaining({ reason: "abandoned", runId: "stuck", subject: "acme", model: "m" })]);
  });
});

describe("warnings: told once, then summarised every warningIntervalMs", () => {
  it("calls without a subject: one warning at once, then a count per interval while they go on", async () => {
    const { handler, warnings, clock } = setup({ warningIntervalMs: 60_000 });
    fake.respondWith(() => ({ usage }));
    const model = openai({ callbacks: [handler] });
    for (let i = 0; i < 3; i++) await model.invoke(`q${i}`);
    await handler.flush();
    expect(warnings).toEqual([expect.stringMatching(/a model call had no subject, so it was not billed/)]);

    await clock.advance(59_999);
    expect(warnings).toHaveLength(1);
    await clock.advance(1);
    expect(warnings[1]).toBe("since the last summary (every 60000 ms): 2× model calls had no subject and were not billed");

    await clock.advance(120_000); // nothing new: no summary, no timer
    expect(warnings).toHaveLength(2);
    expect(clock.pendingTimers).toBe(0);
    for (let i = 0; i < 4; i++) await model.invoke(`r${i}`);
    await handler.flush();
    await clock.advance(60_000);
    expect(warnings.slice(2)).toEqual(["since the last summary (every 60000 ms): 4× model calls had no subject and were not billed"]);
  });
});

describe("configurable.subject", () => {
  it("a bare model call: configurable.subject is the subject when the metadata names none", async () => {
    const { handler, sink } = setup();
    fake.enqueue({ usage });
    const runId = newRunId();
    await openai({ callbacks: [handler] }).invoke("x", { runId, configurable: { subject: "acme" } });
    await handler.flush();
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 12, output: 5 }));
  });

  it("precedence: metadata.subject over configurable.subject; resolveSubject sees the one chosen", async () => {
    const seen: unknown[] = [];
    const { handler, sink } = setup({ resolveSubject: ({ metadata }: { metadata: Record<string, unknown> }) => void seen.push(metadata.subject) });
    fake.respondWith(() => ({ usage }));
    await openai({ callbacks: [handler] }).invoke("x", { configurable: { subject: "from-configurable" }, metadata: { subject: "from-metadata" } });
    await openai({ callbacks: [handler] }).invoke("x", { configurable: { subject: "from-configurable" } });
    await handler.flush();
    expect(sink.events.map((e) => e.subject)).toEqual(["from-metadata", "from-metadata", "from-configurable", "from-configurable"]);
    expect(seen).toEqual(["from-metadata", "from-configurable"]);
  });

  it("a LangGraph agent invoked with configurable: { subject } (and a custom subjectKey): every model call billed to it", async () => {
    const { handler, sink } = setup({ subjectKey: "customer" });
    fake.respondWith(() => ({ usage }));
    const agent = createReactAgent({ llm: openai({ callbacks: [handler] }), tools: [] });
    await agent.invoke({ messages: [new HumanMessage("hi")] }, { configurable: { customer: "agent-co", thread_id: "t-1" } });
    const lambda = RunnableLambda.from(async (input: string, config?: RunnableConfig) => openai().invoke(input, config));
    await lambda.invoke("x", { callbacks: [handler], configurable: { customer: "lambda-co" } });
    await handler.flush();
    expect(sink.events.map((e) => e.subject)).toEqual(["agent-co", "agent-co", "lambda-co", "lambda-co"]);
  });

  it("calls no metering handler sees keep their metadata as it was", async () => {
    const seen: Array<Record<string, unknown> | undefined> = [];
    const model = openai({
      callbacks: [{ handleChatModelStart: (_llm: unknown, _m: unknown, _r: string, _p?: string, _e?: unknown, _t?: unknown, metadata?: Record<string, unknown>) => void seen.push(metadata) }],
    });
    setup(); // a handler exists in the process, but not on this call
    fake.enqueue({ usage });
    await model.invoke("x", { configurable: { subject: "acme" } });
    await awaitAllCallbacks();
    expect(seen).toHaveLength(1);
    expect(seen[0]).toHaveProperty("ls_provider", "openai");
    expect(seen[0]).not.toHaveProperty("subject");
  });
});

describe("model.streamEvents() without version", () => {
  it("runs without callbacks in @langchain/core 1.4: not billed, but warned, counted and reported", async () => {
    const { handler, sink, warnings, unbilled } = setup();
    fake.enqueue({ usage });
    for await (const _ of openai({ callbacks: [handler] }).streamEvents("x", { metadata: { subject: "acme" } })) {
      // drain
    }
    await handler.flush();
    expect(fake.requests).toHaveLength(1); // the provider was called, and billed it
    expect(sink.events).toEqual([]);
    expect(handler.stats().unsupportedPath).toBe(1);
    expect(warnings.join("\n")).toMatch(/model\.streamEvents\(\) without `version` was called on model gpt-4o-mini.*Pass `\{ version: "v2" \}`/);
    expect(unbilled).toEqual([expect.objectContaining({ reason: "unsupported_path", model: "gpt-4o-mini", subject: "acme" })]);
  });

  it("with version v2 it is billed, and nothing is warned", async () => {
    const { handler, sink, warnings } = setup();
    fake.enqueue({ usage });
    const runId = newRunId();
    for await (const _ of openai({ callbacks: [handler] }).streamEvents("x", { version: "v2", runId, metadata: { subject: "acme" } })) {
      // drain
    }
    await handler.flush();
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 12, output: 5 }));
    expect(warnings).toEqual([]);
  });
});

describe("a run id passed to two calls", () => {
  it("each call billed, the second under <runId>~2, and the user told which option to change", async () => {
    const { handler, sink, warnings } = setup();
    fake.enqueue({ usage: { prompt_tokens: 10, completion_tokens: 1 } }, { usage: { prompt_tokens: 20, completion_tokens: 2 } });
    const runId = newRunId();
    const model = openai({ callbacks: [handler] });
    await model.invoke("a", { runId, metadata: { subject: "acme" } });
    await model.invoke("b", { runId, metadata: { subject: "acme" } });
    await handler.flush();
    expect(runIdsOf(sink.events)).toEqual([runId, `${runId}~2`]);
    expect(sink.events.map((e) => e.data?.tokens)).toEqual([10, 1, 20, 2]);
    expect(warnings.join("\n")).toMatch(new RegExp(`run id ${runId} was passed to more than one model call.*Pass a fresh \`runId\``));
    expect(handler.stats().duplicateRunIds).toBe(1);
  });
});
