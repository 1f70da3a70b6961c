import { InMemoryCache } from "@langchain/core/caches";
import { awaitAllCallbacks } from "@langchain/core/callbacks/promises";
import { RunnableLambda } from "@langchain/core/runnables";
import { ChatPromptTemplate } from "@langchain/core/prompts";
import { StringOutputParser } from "@langchain/core/output_parsers";
import { describe, expect, it } from "vitest";
import { MeteringCallbackHandler, type UnbilledCall } from "langchain-openmeter";
import { TestClock } from "langchain-openmeter/testing";
import { MemorySink, recordingLogger } from "./support/memory-sink";
import { ScriptedChatModel, usage } from "./support/scripted-model";

function setup(options: Record<string, unknown> = {}) {
  const sink = new MemorySink();
  const log = recordingLogger();
  const handler = new MeteringCallbackHandler({ client: sink, logger: log.logger, ...options });
  return { sink, handler, ...log };
}

describe("MeteringCallbackHandler: events", () => {
  it("turns one call into an input and an output CloudEvent, field by field", async () => {
    const { sink, handler } = setup();
    const model = new ScriptedChatModel(() => ({ usage: usage(120, 30), responseModel: "scripted-1-2026-01-01" }), "scripted-1", "openai", {
      callbacks: [handler],
    });
    const before = Date.now();
    await model.invoke("hi", { metadata: { subject: "acme", tier: "pro" } });
    await handler.flush();

    expect(sink.events).toHaveLength(2);
    const [input, output] = sink.events;
    const runId = input!.id.replace(/-input$/, "");
    expect(input).toEqual({
      specversion: "1.0",
      id: `${runId}-input`,
      source: "langchain",
      type: "kong.llm_request",
      subject: "acme",
      time: expect.any(String),
      data: { type: "input", tokens: 120, model: "scripted-1", provider: "openai", response_model: "scripted-1-2026-01-01", tier: "pro" },
    });
    expect(output).toEqual({ ...input, id: `${runId}-output`, data: { ...input!.data, type: "output", tokens: 30 } });
    expect(Date.parse(input!.time!)).toBeGreaterThanOrEqual(before - 1);
    expect(input!.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it("accepts the tutorials' (url, apiKey) form and the source/eventType options", async () => {
    const sink = new MemorySink();
    expect(() => new MeteringCallbackHandler("http://127.0.0.1:1/api/v1/events", "key", { client: sink })).toThrow(
      /`url`, `apiKey` configure the ingest client .* but `client` was given/,
    );
    const handler = new MeteringCallbackHandler({ client: sink, source: "my-app", eventType: "llm.tokens", logger: recordingLogger().logger });
    const model = new ScriptedChatModel(() => ({ usage: usage(1, 2) }), "m", "p", { callbacks: [handler] });
    await model.invoke("x", { metadata: { subject: "s" } });
    await handler.flush();
    expect(sink.events.map((e) => [e.source, e.type])).toEqual([
      ["my-app", "llm.tokens"],
      ["my-app", "llm.tokens"],
    ]);
  });

  it("carries cache and reasoning details on the right event", async () => {
    const { sink, handler } = setup();
    const model = new ScriptedChatModel(() => ({ usage: usage(1000, 300, { cacheRead: 600, cacheWrite: 100, reasoning: 200 }) }), "m", "anthropic", {
      callbacks: [handler],
    });
    await model.invoke("x", { metadata: { subject: "acme" } });
    await handler.flush();
    expect(sink.events[0]!.data).toMatchObject({ type: "input", tokens: 1000, cached_tokens: 600, cache_write_tokens: 100 });
    expect(sink.events[0]!.data).not.toHaveProperty("reasoning_tokens");
    expect(sink.events[1]!.data).toMatchObject({ type: "output", tokens: 300, reasoning_tokens: 200 });
    expect(sink.events[1]!.data).not.toHaveProperty("cached_tokens");
  });

  it("splitTokenTypes: disjoint buckets named after OpenMeter's token types, adding up to the total", async () => {
    const { sink, handler } = setup({ splitTokenTypes: true });
    const model = new ScriptedChatModel(() => ({ usage: usage(1000, 300, { cacheRead: 600, cacheWrite: 100, reasoning: 120 }) }), "m", "p", {
      callbacks: [handler],
    });
    await model.invoke("x", { metadata: { subject: "acme" } });
    await handler.flush();
    expect(sink.events.map((e) => [e.id.slice(e.id.lastIndexOf("-") + 1), e.data!.type, e.data!.tokens])).toEqual([
      ["input", "input", 300],
      ["output", "output", 180],
      ["cache_read", "cache_read", 600],
      ["cache_write", "cache_write", 100],
      ["reasoning", "reasoning", 120],
    ]);
    expect(sink.events.reduce((sum, e) => sum + (e.data!.tokens as number), 0)).toBe(1300);
    // The details that became buckets do not ride along a second time.
    expect(sink.events.some((e) => "cached_tokens" in e.data! || "reasoning_tokens" in e.data!)).toBe(false);
  });

  it("splitCachedInput (the old name) is refused with the new one", () => {
    expect(() => new MeteringCallbackHandler({ client: new MemorySink(), splitCachedInput: true as never })).toThrow(
      "`splitCachedInput` was renamed `splitTokenTypes`",
    );
  });

  it("takes usage once per run when n > 1 (every generation carries the same object)", async () => {
    const { sink, handler } = setup();
    const model = new ScriptedChatModel(() => ({ usage: usage(10, 90), n: 3 }), "m", "p", { callbacks: [handler] });
    await model.generate([["hello"]], { metadata: { subject: "acme" } } as never);
    await handler.flush();
    expect(sink.events.map((e) => e.data!.tokens)).toEqual([10, 90]);
  });

  it("falls back to llmOutput.tokenUsage, and flags estimated usage", async () => {
    const { sink, handler, warnings } = setup();
    let call = 0;
    const model = new ScriptedChatModel(
      () =>
        call++ === 0
          ? { llmOutput: { tokenUsage: { promptTokens: 7, completionTokens: 3, totalTokens: 10 } } }
          : { llmOutput: { estimatedTokenUsage: { promptTokens: 5, completionTokens: 2, totalTokens: 7 } } },
      "m",
      "p",
      { callbacks: [handler] },
    );
    await model.invoke("a", { metadata: { subject: "acme" } });
    await model.invoke("b", { metadata: { subject: "acme" } });
    await handler.flush();
    expect(sink.events.map((e) => [e.data!.tokens, e.data!.estimated])).toEqual([
      [7, undefined],
      [3, undefined],
      [5, true],
      [2, true],
    ]);
    expect(warnings.some((w) => w.includes("estimate"))).toBe(true);
  });

  it("sends nothing and warns once when a model reports no usage", async () => {
    const { sink, handler, warnings } = setup();
    const model = new ScriptedChatModel(() => ({}), "m", "p", { callbacks: [handler] });
    await model.invoke("a", { metadata: { subject: "acme" } });
    await model.invoke("b", { metadata: { subject: "acme" } });
    await handler.flush();
    expect(sink.events).toEqual([]);
    expect(warnings.filter((w) => w.includes("no token usage"))).toHaveLength(1);
    expect(handler.stats()).toMatchObject({ missingUsage: 2, metered: 0, open: 0 });
  });
});

describe("MeteringCallbackHandler: subject", () => {
  it("sends nothing for a call without a subject, warns once naming `subject`, and leaves the call alone", async () => {
    const { sink, handler, warnings } = setup();
    const model = new ScriptedChatModel(() => ({ usage: usage(1, 1), text: "answer" }), "m", "p", { callbacks: [handler] });
    const answers = [await model.invoke("a"), await model.invoke("b")];
    await handler.flush();
    expect(answers.map((a) => a.content)).toEqual(["answer", "answer"]);
    expect(sink.events).toEqual([]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/metadata: \{ subject: "<customer id>" \}/);
    expect(handler.stats()).toMatchObject({ missingSubject: 2, open: 0 });
  });

  it("uses subjectKey, then defaultSubject; a resolver comes first", async () => {
    const { sink, handler } = setup({
      subjectKey: "customerId",
      defaultSubject: "house",
      resolveSubject: ({ tags }: { tags: readonly string[] }) => tags.find((t) => t.startsWith("cust:"))?.slice(5),
    });
    const model = new ScriptedChatModel(() => ({ usage: usage(1, 1) }), "m", "p", { callbacks: [handler] });
    await model.invoke("a", { metadata: { customerId: "globex" } });
    await model.invoke("b");
    await model.invoke("c", { tags: ["cust:initech"], metadata: { customerId: "globex" } });
    await handler.flush();
    expect(sink.events.filter((e) => e.data!.type === "input").map((e) => e.subject)).toEqual(["globex", "house", "initech"]);
    expect(sink.events[0]!.data).not.toHaveProperty("customerId");
  });

  it("reaches a model beneath chains, a RunnableLambda and nested invokes", async () => {
    const { sink, handler } = setup();
    const model = new ScriptedChatModel(() => ({ usage: usage(3, 4) }), "m", "p");
    const prompt = ChatPromptTemplate.fromTemplate("{input}");
    const inner = prompt.pipe(model).pipe(new StringOutputParser());
    const outer = RunnableLambda.from(async (input: { input: string }, config) => inner.invoke(input, config));
    await outer.invoke({ input: "x" }, { callbacks: [handler], metadata: { subject: "acme", team: "blue" } });
    await handler.flush();
    expect(sink.events.map((e) => [e.subject, e.data!.tokens, e.data!.team])).toEqual([
      ["acme", 3, "blue"],
      ["acme", 4, "blue"],
    ]);
    expect(handler.stats().open).toBe(0);
  });

  it("refuses subjects that could never match a customer, and says why", async () => {
    const { sink, handler, warnings } = setup();
    const model = new ScriptedChatModel(() => ({ usage: usage(1, 1) }), "m", "p", { callbacks: [handler] });
    await model.invoke("a", { metadata: { subject: "  " } });
    await model.invoke("b", { metadata: { subject: "a\nb" } });
    await model.invoke("c", { metadata: { subject: 4711 } });
    await handler.flush();
    expect(sink.events.map((e) => e.subject)).toEqual(["4711", "4711"]);
    expect(warnings.join("\n")).toMatch(/refused: it is empty/);
    expect(warnings.join("\n")).toMatch(/refused: it contains control or invisible characters/);
  });
});

describe("MeteringCallbackHandler: metadata", () => {
  it("copies flat user values, keeps LangChain's keys and objects out, and lets the event's own fields win", async () => {
    const { sink, handler, warnings } = setup();
    const model = new ScriptedChatModel(() => ({ usage: usage(5, 6) }), "m", "openai", { callbacks: [handler] });
    const when = new Date("2026-01-02T03:04:05.000Z");
    await model.invoke("a", {
      metadata: {
        subject: "acme",
        tier: "pro",
        seats: 3,
        trial: false,
        when,
        big: 12n,
        nested: { a: 1 },
        list: [1],
        fn: () => 1,
        ls_temperature: 0.2,
        versions: { x: 1 },
        langgraph_node: "agent",
        thread_id: "t1",
        checkpoint_ns: "agent:1",
        // langchain's createAgent({ name }) and its middleware; LangGraph Platform's retry counter.
        lc_agent_name: "researcher",
        lc_source: "summarization",
        run_attempt: 1,
        tokens: 999999,
        type: "spoofed",
      },
    });
    await handler.flush();
    expect(sink.events[0]!.data).toEqual({
      type: "input",
      tokens: 5,
      model: "m",
      provider: "openai",
      tier: "pro",
      seats: 3,
      trial: false,
      when: "2026-01-02T03:04:05.000Z",
      big: "12",
    });
    expect(warnings.filter((w) => /`tokens`|`type`/.test(w))).toHaveLength(2);
  });

  it("with a list, copies exactly those keys (LangChain's included); with false, none", async () => {
    const listed = setup({ includeMetadata: ["tier", "thread_id"] });
    const none = setup({ includeMetadata: false });
    for (const { handler } of [listed, none]) {
      const model = new ScriptedChatModel(() => ({ usage: usage(1, 1) }), "m", "p", { callbacks: [handler] });
      await model.invoke("a", { metadata: { subject: "acme", tier: "pro", seats: 2, thread_id: "t-9" } });
      await handler.flush();
    }
    expect(listed.sink.events[0]!.data).toEqual({ type: "input", tokens: 1, model: "m", provider: "p", tier: "pro", thread_id: "t-9" });
    expect(none.sink.events[0]!.data).toEqual({ type: "input", tokens: 1, model: "m", provider: "p" });
  });
});

describe("MeteringCallbackHandler: runs that do not end normally", () => {
  it("bills nothing for a LangChain cache hit", async () => {
    const { sink, handler } = setup();
    const model = new ScriptedChatModel(() => ({ usage: usage(50, 5) }), "m", "p", { callbacks: [handler], cache: new InMemoryCache() });
    await model.invoke("same", { metadata: { subject: "acme" } });
    await model.invoke("same", { metadata: { subject: "acme" } });
    await handler.flush();
    expect(sink.events.map((e) => e.data!.tokens)).toEqual([50, 5]);
    expect(handler.stats()).toMatchObject({ cacheHits: 1, metered: 1, open: 0 });
  });

  it("bills nothing for a failed call, frees its state, and lets the error through untouched", async () => {
    const { sink, handler } = setup();
    const model = new ScriptedChatModel(() => ({ fail: "provider exploded" }), "m", "p", { callbacks: [handler] });
    await expect(model.invoke("a", { metadata: { subject: "acme" } })).rejects.toThrow("provider exploded");
    await handler.flush();
    expect(sink.events).toEqual([]);
    expect(handler.stats()).toMatchObject({ failed: 1, open: 0 });
  });

  it("forgets runs that never end after runTimeoutMs, on a timer, and still bills one that ends late", async () => {
    const clock = new TestClock();
    const unbilled: UnbilledCall[] = [];
    const { sink, handler, warnings } = setup({ runTimeoutMs: 1000, clock, onUnbilled: (call: UnbilledCall) => unbilled.push(call) });
    handler.handleChatModelStart({} as never, [], "run-slow", undefined, {}, [], { subject: "acme", ls_model_name: "m" });
    expect(handler.stats().open).toBe(1);
    await clock.advance(999);
    expect(handler.stats()).toMatchObject({ open: 1, abandoned: 0 });
    // No other call starts: the timer alone settles it. Nothing of it was seen, so nothing is billed.
    await clock.advance(1);
    expect(handler.stats()).toMatchObject({ open: 0, abandoned: 1 });
    expect(unbilled).toEqual([expect.objectContaining({ reason: "abandoned", runId: "run-slow", model: "m", subject: "acme" })]);

    handler.handleLLMEnd({ generations: [[{ text: "", message: { usage_metadata: usage(5, 6) } } as never]] }, "run-slow");
    expect(sink.events.map((e) => [e.id, e.data!.tokens])).toEqual([
      ["run-slow-input", 5],
      ["run-slow-output", 6],
    ]);
    expect(handler.stats()).toMatchObject({ lateEnds: 1 });
    expect(warnings.join("\n")).toMatch(/ran longer than runTimeoutMs \(1000 ms\).*raise runTimeoutMs/);
    expect(clock.pendingTimers).toBe(0); // nothing left to watch: no timer
  });

  it("a stream billed as aborted after runTimeoutMs that ends after all: not billed again, and the user told", async () => {
    const clock = new TestClock();
    const { sink, handler, warnings } = setup({ runTimeoutMs: 1000, clock });
    handler.handleChatModelStart({} as never, [], "run-paused", undefined, {}, [], { subject: "acme", ls_model_name: "m" });
    handler.handleLLMNewToken("some text", {} as never, "run-paused");
    await clock.advance(1000);
    expect(sink.events.map((e) => e.id)).toEqual(["run-paused-input", "run-paused-output"]);
    handler.handleLLMEnd({ generations: [[{ text: "", message: { usage_metadata: usage(50, 60) } } as never]] }, "run-paused");
    expect(sink.events).toHaveLength(2);
    expect(warnings.join("\n")).toMatch(/run-paused ended after runTimeoutMs .*already been billed as aborted.*Raise runTimeoutMs/);
  });

  it("an end without usage after bare tokens (an answer announced, not streamed): no usage, not an estimate", () => {
    const { sink, handler, warnings } = setup();
    handler.handleChatModelStart({} as never, [], "run-announced", undefined, {}, [], { subject: "acme", ls_model_name: "m" });
    handler.handleLLMNewToken("the whole answer", {} as never, "run-announced"); // as @langchain/google-genai's invoke does
    handler.handleLLMEnd({ generations: [[{ text: "the whole answer" } as never]] }, "run-announced");
    expect(sink.events).toEqual([]);
    expect(handler.stats()).toMatchObject({ missingUsage: 1, unfinished: 0 });
    expect(warnings.join("\n")).toMatch(/no token usage/);
  });

  it("keeps a long stream alive while its tokens arrive", async () => {
    const clock = new TestClock();
    const { handler } = setup({ runTimeoutMs: 1000, clock });
    handler.handleChatModelStart({} as never, [], "run-stream", undefined, {}, [], { subject: "acme" });
    for (let i = 0; i < 4; i++) {
      await clock.advance(400);
      handler.handleLLMNewToken("t", {} as never, "run-stream");
    }
    expect(handler.stats()).toMatchObject({ open: 1, abandoned: 0, unfinished: 0 });
    // Silent for runTimeoutMs after its last token: settled as an aborted stream, from what was seen.
    await clock.advance(1000);
    expect(handler.stats()).toMatchObject({ open: 0, abandoned: 0, unfinished: 1 });
  });

  it("never throws into the user's call, even when the sink does", async () => {
    const log = recordingLogger();
    const broken = { enqueue: () => { throw new Error("boom"); }, flush: async () => {}, shutdown: async () => {} };
    const handler = new MeteringCallbackHandler({ client: broken, logger: log.logger });
    const model = new ScriptedChatModel(() => ({ usage: usage(1, 1), text: "fine" }), "m", "p", { callbacks: [handler] });
    const answer = await model.invoke("a", { metadata: { subject: "acme" } });
    await handler.flush();
    expect(answer.content).toBe("fine");
    expect(log.errors.join()).toMatch(/not delivered: the ingest client refused them \(boom\)/);
  });
});

describe("MeteringCallbackHandler: streamed usage", () => {
  it("undoes @langchain/anthropic's one-token over-count (message_start's output added to the final count)", async () => {
    const { sink, handler } = setup();
    const model = new ScriptedChatModel(
      () => ({ streamUsage: [usage(25, 1), { input_tokens: 0, output_tokens: 42, total_tokens: 42 }] }),
      "claude-x",
      "anthropic",
      { callbacks: [handler] },
    );
    for await (const _ of await model.stream("a", { metadata: { subject: "acme" } })) void _;
    await handler.flush();
    expect(sink.events.map((e) => e.data!.tokens)).toEqual([25, 42]);
  });

  it("leaves other providers' streamed usage as reported", async () => {
    const { sink, handler } = setup();
    const model = new ScriptedChatModel(
      () => ({ streamUsage: [usage(25, 1), { input_tokens: 0, output_tokens: 42, total_tokens: 42 }] }),
      "m",
      "openai",
      { callbacks: [handler] },
    );
    for await (const _ of await model.stream("a", { metadata: { subject: "acme" } })) void _;
    await handler.flush();
    expect(sink.events.map((e) => e.data!.tokens)).toEqual([25, 43]);
  });
});

describe("MeteringCallbackHandler: options", () => {
  it("names the option and what is allowed", () => {
    const client = new MemorySink();
    expect(() => new MeteringCallbackHandler({ client, source: "" })).toThrow("`source` must not be empty");
    expect(() => new MeteringCallbackHandler({ client, source: "my app" })).toThrow("`source` contains a space or other whitespace at position 2");
    expect(() => new MeteringCallbackHandler({ client, source: "my_app:prod" })).toThrow(/`source` contains ":" at position 7/);
    expect(() => new MeteringCallbackHandler({ client, includeMetadata: "yes" as never })).toThrow(/`includeMetadata` must be true, false, or a list/);
    expect(() => new MeteringCallbackHandler({ client, subjectkey: "x" } as never)).toThrow("unknown option `subjectkey` (did you mean `subjectKey`?)");
    expect(() => new MeteringCallbackHandler({ client: {} as never })).toThrow(/`client` must have enqueue\(\), flush\(\) and shutdown\(\)/);
    expect(() => new MeteringCallbackHandler(42 as never)).toThrow(/pass an options object .* got number/);
    expect(() => new MeteringCallbackHandler("http://127.0.0.1:1/api/v1/events", "k1", { apiKey: "k2" } as never)).toThrow(
      "`apiKey` was given twice (as an argument and in the options): pass it once",
    );
    // A wrong primitive type gets the option's own message, not "must be an object".
    expect(() => new MeteringCallbackHandler({ client, splitTokenTypes: "yes" as never })).toThrow("`splitTokenTypes` must be true or false");
    expect(() => new MeteringCallbackHandler({ client, source: 5 as never })).toThrow("`source` must be a string");
    expect(() => new MeteringCallbackHandler({ client, includeMetadata: [""] })).toThrow("`includeMetadata` keys must be non-empty strings");
  });
});

describe("MeteringCallbackHandler: with its own ingest client", () => {
  it("bills a call still under way when shutdown() is called", async () => {
    const { startOpenMeterServer } = await import("langchain-openmeter/testing");
    const server = await startOpenMeterServer();
    const handler = new MeteringCallbackHandler({ url: server.url, logger: recordingLogger().logger, flushOnExit: false });
    const model = new ScriptedChatModel(() => ({ usage: usage(7, 8), delayMs: 300 }), "m", "p", { callbacks: [handler] });
    const call = model.invoke("slow", { metadata: { subject: "acme" } });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await handler.shutdown();
    await call;
    expect(server.totals()).toEqual({ acme: { input: 7, output: 8 } });
    await server.close();
  });

  it("bills a call that returned before shutdown() even when a slow handler still holds LangChain's queue", async () => {
    const { BaseCallbackHandler } = await import("@langchain/core/callbacks/base");
    // Another handler (a tracer, say) that takes its time: our start callback waits behind it.
    class SlowStart extends BaseCallbackHandler {
      name = "SlowStart";
      override async handleChatModelStart(): Promise<void> {
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    const { startOpenMeterServer } = await import("langchain-openmeter/testing");
    const server = await startOpenMeterServer();
    const log = recordingLogger();
    const handler = new MeteringCallbackHandler({ url: server.url, logger: log.logger, flushOnExit: false });
    const model = new ScriptedChatModel(() => ({ usage: usage(5, 6) }), "m", "p", { callbacks: [new SlowStart(), handler] });
    await model.invoke("x", { metadata: { subject: "acme" } });
    await handler.shutdown();
    expect(server.totals()).toEqual({ acme: { input: 5, output: 6 } });
    expect(log.warnings.join("\n")).not.toMatch(/after shutdown\(\) was not metered/);
    await server.close();
  });

  it("reports, with the events, a call that ends after shutdown() finished", async () => {
    const log = recordingLogger();
    const errors: Array<{ kind: string; events: unknown[] }> = [];
    const clock = new TestClock();
    const handler = new MeteringCallbackHandler({
      url: "http://127.0.0.1:9/api/v1/events",
      logger: log.logger,
      flushOnExit: false,
      handleSignals: false,
      clock,
      onError: (error) => errors.push(error),
    });
    handler.handleChatModelStart({} as never, [], "run-late", undefined, {}, [], { subject: "acme" });
    await clock.advanceUntil(handler.shutdown()); // waits shutdownTimeoutMs on the clock for the open run, then gives up on it
    handler.handleLLMEnd({ generations: [[{ text: "", message: { usage_metadata: usage(1, 2) } } as never]] }, "run-late");
    expect(errors.map((e) => [e.kind, e.events.length])).toEqual([["refused", 2]]);
    expect(log.errors.join("\n")).toMatch(/not delivered: the call was still running when shutdown\(\) finished \(run-late-input acme 1, run-late-output acme 2\)/);

    handler.handleChatModelStart({} as never, [], "run-after", undefined, {}, [], { subject: "acme" });
    expect(handler.stats().open).toBe(0);
    expect(log.warnings.join("\n")).toMatch(/started after shutdown\(\) was not metered/);
  });

  it("shutdown(): a stream silent through the drain is billed as aborted; one that never streamed is left to end", async () => {
    const clock = new TestClock();
    const { sink, handler, warnings } = setup({ clock, handleSignals: false });
    handler.handleChatModelStart({} as never, [], "run-broken-off", undefined, {}, [], { subject: "acme", ls_model_name: "m" });
    handler.handleLLMNewToken("partial answer", {} as never, "run-broken-off");
    handler.handleChatModelStart({} as never, [], "run-invoke", undefined, {}, [], { subject: "acme", ls_model_name: "m" });
    await clock.advanceUntil(handler.shutdown()); // waits shutdownTimeoutMs for the call that may still end, then settles the silent stream
    expect(sink.events.map((e) => [e.id, e.data!.status, e.data!.estimated])).toEqual([
      ["run-broken-off-input", "aborted", true],
      ["run-broken-off-output", "aborted", true],
    ]);
    expect(handler.stats()).toMatchObject({ unfinished: 1, open: 1 });
    expect(warnings.join("\n")).toMatch(/run-broken-off \(model m\) was still open when shutdown\(\) finished waiting.*billed as aborted/);
  }, 15_000);

  it("delivers to an OpenMeter-compatible endpoint, counts it, and refuses runs after shutdown", async () => {
    const { startOpenMeterServer } = await import("langchain-openmeter/testing");
    const server = await startOpenMeterServer({ apiKey: "secret-key" });
    const log = recordingLogger();
    const handler = new MeteringCallbackHandler(server.url, "secret-key", { logger: log.logger, flushOnExit: false, handleSignals: false });
    const model = new ScriptedChatModel(() => ({ usage: usage(11, 22) }), "m", "openai", { callbacks: [handler] });
    await model.invoke("a", { metadata: { subject: "acme" } });
    await handler.flush();
    expect(server.totals()).toEqual({ acme: { input: 11, output: 22 } });
    expect(handler.stats()).toMatchObject({ metered: 1, open: 0, delivery: { enqueued: 2, delivered: 2, batches: 1, refused: 0, dropped: 0 } });

    await handler.shutdown();
    await model.invoke("b", { metadata: { subject: "acme" } });
    await awaitAllCallbacks();
    expect(server.events).toHaveLength(2);
    expect(log.warnings.join("\n")).toMatch(/after shutdown\(\) was not metered/);
    expect([...log.warnings, ...log.errors].join("\n")).not.toContain("secret-key");
    await server.close();
  });
});
