/**
 * The handler's callbacks driven directly (src/handler.ts), with a MemorySink and TestClock: what each
 * callback does with odd arguments, the warnings it gives (once, naming the model and run), what
 * `onUnbilled` and `onError` receive, and how the stream's evidence reaches the bill.
 */
import { describe, expect, it } from "vitest";
import { MeteringCallbackHandler, type CloudEvent, type IngestError, type UnbilledCall } from "langchain-openmeter";
import { TestClock } from "langchain-openmeter/testing";
import { MemorySink, recordingLogger } from "../support/memory-sink";

const um = (input_tokens: number, output_tokens: number) => ({ input_tokens, output_tokens, total_tokens: input_tokens + output_tokens });
const reported = (usage: unknown, message: Record<string, unknown> = {}) => ({ generations: [[{ text: "", message: { usage_metadata: usage, ...message } }]] }) as never;
const tokens = (events: CloudEvent[]) => events.map((e) => [e.id, e.data!.tokens]);

function setup(options: Record<string, unknown> = {}) {
  const sink = new MemorySink();
  const log = recordingLogger();
  const clock = new TestClock({ wall: Date.parse("2026-01-02T03:04:05.678Z") });
  const unbilled: UnbilledCall[] = [];
  const handler = new MeteringCallbackHandler({ client: sink, logger: log.logger, clock, onUnbilled: (call: UnbilledCall) => unbilled.push(call), ...options });
  const start = (runId: string, metadata: Record<string, unknown> = {}, extra: { parent?: string; params?: Record<string, unknown>; messages?: unknown } = {}) =>
    handler.handleChatModelStart(
      {} as never,
      (extra.messages ?? [[]]) as never,
      runId,
      extra.parent,
      extra.params ?? {},
      [],
      { subject: "acme", ls_model_name: "m", ls_provider: "p", ...metadata },
    );
  return { sink, handler, clock, unbilled, start, ...log };
}

describe("start callbacks", () => {
  it("a chat start without message lists, or an LLM start with prompts, is metered", () => {
    const { sink, handler } = setup();
    handler.handleChatModelStart({} as never, undefined as never, "r1", undefined, {}, [], { subject: "acme" });
    handler.handleLLMEnd(reported(um(1, 2)), "r1");
    handler.handleLLMStart({} as never, ["prompt"], "r2", undefined, {}, [], { subject: "acme" });
    handler.handleLLMEnd(reported(um(3, 4)), "r2");
    expect(tokens(sink.events)).toStrictEqual([
      ["r1-input", 1],
      ["r1-output", 2],
      ["r2-input", 3],
      ["r2-output", 4],
    ]);
  });

  it("the model: ls_model_name, else the invocation's model, else its model_name; an empty name counts as none", () => {
    const { sink, handler, start } = setup();
    start("a", { ls_model_name: "meta-model" }, { params: { invocation_params: { model: "param-model" } } });
    start("b", { ls_model_name: "" }, { params: { invocation_params: { model: "param-model", model_name: "other" } } });
    start("c", { ls_model_name: undefined }, { params: { invocation_params: { model_name: "named" } } });
    start("d", { ls_model_name: undefined }, { params: { invocation_params: { model: "" } } });
    for (const id of ["a", "b", "c", "d"]) handler.handleLLMEnd(reported(um(1, 1)), id);
    expect(sink.events.filter((e) => e.id.endsWith("-input")).map((e) => e.data!.model)).toStrictEqual(["meta-model", "param-model", "named", undefined]);
  });

  it("a provider that is not a string is no provider", () => {
    const { sink, handler, start } = setup();
    start("a", { ls_provider: 5 });
    handler.handleLLMEnd(reported(um(1, 1)), "a");
    expect("provider" in sink.events[0]!.data!).toBe(false);
  });

  it("the resolver sees the metadata, tags, run and parent; without metadata or tags, empty ones", () => {
    const seen: unknown[] = [];
    const { handler } = setup({ resolveSubject: (context: unknown) => (seen.push(context), "x") });
    handler.handleChatModelStart({} as never, [[]], "r1", "parent-1", {}, ["t1"], { team: "a" });
    handler.handleChatModelStart({} as never, [[]], "r2", undefined, {}, undefined, undefined);
    expect(seen).toStrictEqual([
      { metadata: { team: "a" }, tags: ["t1"], runId: "r1", parentRunId: "parent-1" },
      { metadata: {}, tags: [], runId: "r2", parentRunId: undefined },
    ]);
  });

  it("a resolver answering undefined leaves it to the metadata without a warning", () => {
    const { sink, handler, start, warnings } = setup({ resolveSubject: () => undefined });
    start("r1", { subject: "from-metadata" });
    handler.handleLLMEnd(reported(um(1, 1)), "r1");
    expect(sink.events[0]!.subject).toBe("from-metadata");
    expect(warnings).toStrictEqual([]);
  });

  it("a subject refused by the metadata check is warned with the key and reason, and the call falls to defaultSubject", () => {
    const { sink, handler, start, warnings } = setup({ subjectKey: "customer", defaultSubject: "house" });
    start("r1", { customer: "" });
    handler.handleLLMEnd(reported(um(1, 1)), "r1");
    expect(sink.events.map((e) => e.subject)).toStrictEqual(["house", "house"]);
    expect(warnings).toStrictEqual(["the subject from metadata.customer was refused: it is empty"]);
  });

  it("no subject: one warning naming the key, the call reported to onUnbilled with its model and provider", () => {
    const { handler, unbilled, warnings } = setup({ subjectKey: "customer" });
    handler.handleChatModelStart({} as never, [[]], "r1", undefined, {}, [], { ls_model_name: "m", ls_provider: "p" });
    handler.handleChatModelStart({} as never, [[]], "r2", undefined, {}, [], { ls_model_name: "m", ls_provider: "p" });
    expect(handler.stats()).toMatchObject({ missingSubject: 2, open: 0 });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toBe(
      "a model call had no subject, so it was not billed. Pass the customer as `metadata: { customer: \"<customer id>\" }` " +
        "(or `configurable: { customer: … }`) in the invoke config (or in a parent chain's config), or set `defaultSubject` or `resolveSubject`.",
    );
    expect(unbilled).toStrictEqual([
      { reason: "no_subject", message: warnings[0], runId: "r1", model: "m", provider: "p" },
      { reason: "no_subject", message: warnings[0], runId: "r2", model: "m", provider: "p" },
    ]);
  });

  it("the same subject value on consecutive calls is checked once but still gives each call its subject; a new value is checked anew", () => {
    const { sink, handler, start, warnings } = setup();
    start("r1", { subject: "a" });
    start("r2", { subject: "a" });
    start("r3", { subject: "\u0000" });
    start("r4", { subject: "\u0000" });
    start("r5", { subject: "b" });
    for (const id of ["r1", "r2", "r3", "r4", "r5"]) handler.handleLLMEnd(reported(um(1, 1)), id);
    expect(sink.events.filter((e) => e.id.endsWith("-input")).map((e) => [e.id, e.subject])).toStrictEqual([
      ["r1-input", "a"],
      ["r2-input", "a"],
      ["r5-input", "b"],
    ]);
    // One refusal warning and one missing-subject warning, for two refused calls: the second is counted.
    expect(warnings.map((w) => w.slice(0, 40))).toStrictEqual(["the subject from metadata.subject was re", "a model call had no subject, so it was n"]);
    expect(handler.stats().missingSubject).toBe(2);
  });

  it("two starts under one open run id: one run, one warning, billed once", () => {
    const { sink, handler, start, warnings } = setup();
    start("r1");
    start("r1");
    start("r1");
    handler.handleLLMEnd(reported(um(1, 1)), "r1");
    expect(sink.events).toHaveLength(2);
    expect(handler.stats()).toMatchObject({ duplicateRunIds: 2, open: 0 });
    expect(warnings).toStrictEqual([
      "run id r1 was started again while a call under it is still running: LangChain's callbacks cannot tell the two apart, so they are billed as one. Pass a fresh `runId` to every call (or none).",
    ]);
  });

  it("a run id used again after it ended: billed as ~2, ~3, each told once per run id", () => {
    const { sink, handler, start, warnings } = setup();
    for (let i = 0; i < 3; i++) {
      start("r1");
      handler.handleLLMEnd(reported(um(1, 1)), "r1");
    }
    expect(sink.events.map((e) => e.id)).toStrictEqual(["r1-input", "r1-output", "r1~2-input", "r1~2-output", "r1~3-input", "r1~3-output"]);
    expect(handler.stats().duplicateRunIds).toBe(2);
    expect(warnings).toStrictEqual([
      "run id r1 was passed to more than one model call: its events would share ids and be de-duplicated as one downstream, so this call is billed as r1~2. Pass a fresh `runId` to every call (or none).",
    ]);
  });

  it("ended run ids are remembered up to 10,000: the oldest is forgotten first", () => {
    // r0 … r10000 end: r0 is forgotten. Using r0 again remembers it as the newest, which forgets r1.
    const { sink, handler, start } = setup({ includeMetadata: false });
    for (let i = 0; i <= 10_000; i++) {
      start(`r${i}`);
      handler.handleLLMEnd(reported(um(1, 1)), `r${i}`);
    }
    sink.events.length = 0;
    start("r0");
    handler.handleLLMEnd(reported(um(1, 1)), "r0");
    start("r2");
    handler.handleLLMEnd(reported(um(1, 1)), "r2");
    start("r1");
    handler.handleLLMEnd(reported(um(1, 1)), "r1");
    expect(sink.events.map((e) => e.id)).toStrictEqual(["r0-input", "r0-output", "r2~2-input", "r2~2-output", "r1-input", "r1-output"]);
  });

  it("a start after shutdown: not metered, told once, reported with its model and provider", async () => {
    const { handler, start, unbilled, warnings } = setup();
    await handler.shutdown();
    start("r1", { ls_model_name: "late-model" });
    start("r2", { ls_model_name: "late-model" });
    const message = "a model call started after shutdown() was not metered (run r1, model late-model): create a new handler";
    expect(warnings).toStrictEqual([message]);
    expect(unbilled[0]).toStrictEqual({ reason: "after_shutdown", message, runId: "r1", model: "late-model", provider: "p" });
    expect(handler.stats().open).toBe(0);
  });
});

describe("streamed chunks and events", () => {
  it("tokens and events of runs the handler does not know are ignored without an error", () => {
    const { handler, errors } = setup();
    handler.handleLLMNewToken("t", {} as never, "unknown");
    handler.handleChatModelStreamEvent({ event: "usage" }, "unknown");
    expect(errors).toStrictEqual([]);
  });

  it("a token that is not a string, or no fields, is observed without an error", () => {
    const { handler, start, errors, sink } = setup();
    start("r1");
    handler.handleLLMNewToken(undefined as never, {} as never, "r1");
    handler.handleLLMNewToken("abcd", {} as never, "r1", undefined, undefined, undefined);
    handler.handleLLMEnd({ generations: [[{ text: "" }]] } as never, "r1");
    expect(errors).toStrictEqual([]);
    expect(sink.events).toStrictEqual([]);
  });

  it("a chunk or stream event that cannot be read is logged with the run, and the call goes on", () => {
    const { handler, start, errors } = setup();
    start("r1");
    const chunk = {
      get message(): never {
        throw new Error("bad chunk");
      },
    };
    handler.handleLLMNewToken("t", {} as never, "r1", undefined, undefined, { chunk } as never);
    const event = {
      get event(): never {
        throw new Error("bad event");
      },
    };
    handler.handleChatModelStreamEvent(event as never, "r1");
    expect(errors).toStrictEqual(["could not observe a chunk of run r1: bad chunk", "could not observe a stream event of run r1: bad event"]);
  });

  it("chunks then an end without usage and without a stop reason: the stream was cut short, billed as aborted", () => {
    const { handler, start, sink } = setup();
    start("r1", {}, { messages: [[{ content: "a".repeat(8) }]] });
    handler.handleLLMNewToken("x".repeat(8), {} as never, "r1", undefined, undefined, { chunk: { message: {} } } as never);
    handler.handleLLMEnd({ generations: [[{ text: "x".repeat(8) }]] } as never, "r1");
    // 3 per prompt + 4 per message + 8/4; 8 received characters / 4.
    expect(sink.events.map((e) => [e.data!.type, e.data!.tokens, e.data!.status, e.data!.estimated])).toStrictEqual([
      ["input", 9, "aborted", true],
      ["output", 2, "aborted", true],
    ]);
    expect(handler.stats()).toMatchObject({ unfinished: 1, metered: 0, missingUsage: 0 });
  });

  it("chunks that finished, then an end without usage: no usage, not an estimate, told once per model and problem", () => {
    const { handler, start, sink, warnings, unbilled } = setup();
    for (const [id, model] of [
      ["r1", "m1"],
      ["r2", "m1"],
      ["r3", "m2"],
    ]) {
      start(id!, { ls_model_name: model });
      handler.handleLLMNewToken("x", {} as never, id!, undefined, undefined, { chunk: { message: { response_metadata: { finish_reason: "stop" } } } } as never);
      handler.handleLLMEnd({ generations: [[{ text: "x" }]] } as never, id!);
    }
    expect(sink.events).toStrictEqual([]);
    expect(handler.stats()).toMatchObject({ missingUsage: 3, unfinished: 0 });
    const message = (model: string, run: string) =>
      `the model reported no token usage for model ${model} (run ${run}): nothing was billed for this call. Enable usage reporting in the model's options (for example \`streamUsage: true\`).`;
    expect(warnings).toStrictEqual([message("m1", "r1"), message("m2", "r3")]);
    expect(unbilled.map((c) => [c.reason, c.runId, c.message])).toStrictEqual([
      ["no_usage", "r1", message("m1", "r1")],
      ["no_usage", "r2", message("m1", "r2")],
      ["no_usage", "r3", message("m2", "r3")],
    ]);
  });

  it("a model with no name is described as such", () => {
    const { handler, warnings } = setup();
    handler.handleChatModelStart({} as never, [[]], "r1", undefined, {}, [], { subject: "acme" });
    handler.handleLLMEnd({ generations: [[{ text: "" }]] } as never, "r1");
    expect(warnings[0]).toMatch(/^the model reported no token usage for a model with no name \(run r1\)/);
  });

  it("the Anthropic correction sees the stream: message_start's output is not billed twice", () => {
    const { handler, start, sink } = setup();
    start("r1", { ls_provider: "anthropic" });
    handler.handleLLMNewToken("", {} as never, "r1", undefined, undefined, { chunk: { message: { id: "msg_1", usage_metadata: um(10, 1) } } } as never);
    handler.handleLLMNewToken("hi", {} as never, "r1", undefined, undefined, { chunk: { message: {} } } as never);
    handler.handleLLMNewToken("", {} as never, "r1", undefined, undefined, { chunk: { message: { usage_metadata: um(0, 5), additional_kwargs: { stop_reason: "end_turn" } } } } as never);
    handler.handleLLMEnd(reported(um(10, 6)), "r1");
    expect(tokens(sink.events)).toStrictEqual([
      ["r1-input", 10],
      ["r1-output", 5],
    ]);
  });

  it("the fetch tap's usage is looked up by the stream's message id", async () => {
    const { handler, start, sink } = setup();
    const body =
      'event: message_start\ndata: {"message":{"id":"msg_7","usage":{"input_tokens":10,"output_tokens":1}}}\n\n' +
      'event: message_delta\ndata: {"usage":{"input_tokens":25,"output_tokens":5,"server_tool_use":{"web_search_requests":1}}}\n\n';
    const fetch = handler.anthropicFetch((async () => new Response(body, { headers: { "content-type": "text/event-stream" } })) as typeof globalThis.fetch);
    await (await fetch("https://api.example/v1/messages")).text();
    start("r1", { ls_provider: "anthropic" });
    handler.handleLLMNewToken("", {} as never, "r1", undefined, undefined, { chunk: { message: { id: "msg_7", usage_metadata: um(10, 1) } } } as never);
    handler.handleLLMNewToken("", {} as never, "r1", undefined, undefined, { chunk: { message: { usage_metadata: um(0, 5), additional_kwargs: { stop_reason: "end_turn" } } } } as never);
    handler.handleLLMEnd(reported(um(10, 6)), "r1");
    expect(sink.events.map((e) => [e.id, e.data!.tokens ?? e.data!.requests, e.data!.estimated])).toStrictEqual([
      ["r1-input", 25, undefined],
      ["r1-output", 5, undefined],
      ["r1-tool-web_search", 1, undefined],
    ]);
  });
});

describe("end callbacks", () => {
  it("a served model equal to the requested one is not repeated as response_model", () => {
    const { handler, start, sink } = setup();
    start("r1", { ls_model_name: "gpt-x" });
    handler.handleLLMEnd(reported(um(1, 1), { response_metadata: { model_name: "gpt-x" } }), "r1");
    start("r2", { ls_model_name: "gpt-x" });
    handler.handleLLMEnd(reported(um(1, 1), { response_metadata: { model_name: "gpt-x-2026" } }), "r2");
    expect(sink.events.filter((e) => e.id.endsWith("-input")).map((e) => e.data!.response_model)).toStrictEqual([undefined, "gpt-x-2026"]);
  });

  it("the event time is the clock's wall time at the end, formatted once per millisecond", async () => {
    const { handler, start, sink, clock } = setup();
    start("r1");
    handler.handleLLMEnd(reported(um(1, 1)), "r1");
    start("r2");
    handler.handleLLMEnd(reported(um(1, 1)), "r2");
    await clock.advance(1001);
    start("r3");
    handler.handleLLMEnd(reported(um(1, 1)), "r3");
    expect(sink.events.map((e) => e.time)).toStrictEqual([
      "2026-01-02T03:04:05.678Z",
      "2026-01-02T03:04:05.678Z",
      "2026-01-02T03:04:05.678Z",
      "2026-01-02T03:04:05.678Z",
      "2026-01-02T03:04:06.679Z",
      "2026-01-02T03:04:06.679Z",
    ]);
  });

  it("a clock at wall time 0 gives the epoch as the event time, not an empty one", () => {
    const { handler, start, sink } = setup({ clock: new TestClock({ wall: 0 }) });
    start("r1");
    handler.handleLLMEnd(reported(um(1, 1)), "r1");
    expect(sink.events.map((e) => e.time)).toStrictEqual(["1970-01-01T00:00:00.000Z", "1970-01-01T00:00:00.000Z"]);
  });

  it("LangChain's estimate is billed, flagged, and the user told once per model", () => {
    const { handler, start, sink, warnings } = setup();
    for (const id of ["r1", "r2"]) {
      start(id, { ls_model_name: "est" });
      handler.handleLLMEnd({ generations: [[{ text: "" }]], llmOutput: { estimatedTokenUsage: { promptTokens: 4, completionTokens: 2 } } } as never, id);
    }
    expect(sink.events.slice(0, 2).map((e) => [e.data!.tokens, e.data!.estimated])).toStrictEqual([
      [4, true],
      [2, true],
    ]);
    expect(warnings).toStrictEqual(["model est reported no usage; LangChain's estimate was billed and flagged `estimated: true` (model est, run r1)"]);
    expect(handler.stats().metered).toBe(2);
  });

  it("a cache hit: nothing billed, counted, reported as cache_hit", () => {
    const { handler, start, sink, unbilled } = setup();
    start("r1");
    handler.handleLLMEnd(reported(um(5, 5)), "r1", undefined, undefined, { cached: true });
    start("r2");
    handler.handleLLMEnd(reported(um(5, 5)), "r2", undefined, undefined, { cached: "yes" });
    expect(tokens(sink.events)).toStrictEqual([
      ["r2-input", 5],
      ["r2-output", 5],
    ]);
    expect(handler.stats().cacheHits).toBe(1);
    expect(unbilled).toStrictEqual([
      { reason: "cache_hit", message: "LangChain answered from its cache: the call cost nothing", runId: "r1", model: "m", provider: "p", subject: "acme" },
    ]);
  });

  it("an end that cannot be metered is logged with the run, never thrown", () => {
    const { handler, start, errors } = setup();
    start("r1");
    const output = {
      get generations(): never {
        throw new Error("unreadable");
      },
    };
    expect(() => handler.handleLLMEnd(output as never, "r1")).not.toThrow();
    expect(errors).toStrictEqual(["could not meter run r1: unreadable"]);
  });

  it("onUnbilled that throws is logged, and metering goes on", () => {
    const { handler, start, errors, sink } = setup({
      onUnbilled: () => {
        throw new Error("callback bug");
      },
    });
    start("r1");
    handler.handleLLMEnd(reported(um(1, 1)), "r1", undefined, undefined, { cached: true });
    start("r2");
    handler.handleLLMEnd(reported(um(1, 1)), "r2");
    expect(errors).toStrictEqual(["onUnbilled threw (callback bug): it must not throw"]);
    expect(sink.events).toHaveLength(2);
  });
});

describe("error callbacks", () => {
  it("a failure before any output: nothing billed, counted, reported with the error", () => {
    const { handler, start, unbilled, sink } = setup();
    start("r1", { ls_model_name: "m1" });
    handler.handleLLMError(new Error("500 from provider"), "r1");
    expect(sink.events).toStrictEqual([]);
    expect(handler.stats()).toMatchObject({ failed: 1, open: 0 });
    expect(unbilled).toStrictEqual([
      {
        reason: "failed",
        message: "model call r1 (model m1) failed before any output reached LangChain (500 from provider): nothing was billed",
        runId: "r1",
        model: "m1",
        provider: "p",
        subject: "acme",
      },
    ]);
  });

  it("aborts are told apart from failures by the names and messages the SDKs use", () => {
    const { handler, start, unbilled } = setup();
    const errors: unknown[] = [
      Object.assign(new Error("x"), { name: "AbortError" }),
      Object.assign(new Error("x"), { name: "APIUserAbortError" }),
      Object.assign(new Error("x"), { name: "TimeoutError" }),
      new Error("AbortError: stopped"),
      new Error("Request was aborted."),
      new Error("This operation was aborted"),
      Object.assign(new Error("x"), { name: "MyTimeoutError" }),
      new Error("the AbortError came later"),
      "a string",
      null,
    ];
    errors.forEach((error, i) => {
      start(`r${i}`);
      handler.handleLLMError(error, `r${i}`);
    });
    expect(unbilled.map((c) => /was aborted before/.test(c.message))).toStrictEqual([true, true, true, true, true, true, false, false, false, false]);
    expect(unbilled.at(-2)!.message).toMatch(/failed before any output reached LangChain \(a string\)/);
    expect(unbilled.at(-1)!.message).toMatch(/failed before any output reached LangChain \(null\)/);
  });

  it("an abort after chunks arrived: billed as aborted; an error after chunks: billed as error", () => {
    const { handler, start, sink } = setup();
    start("r1");
    handler.handleLLMNewToken("abcd", {} as never, "r1", undefined, undefined, { chunk: { message: {} } } as never);
    handler.handleLLMError(Object.assign(new Error("x"), { name: "AbortError" }), "r1");
    start("r2");
    handler.handleLLMNewToken("abcd", {} as never, "r2", undefined, undefined, { chunk: { message: {} } } as never);
    handler.handleLLMError(new Error("socket hang up"), "r2");
    expect(sink.events.map((e) => [e.id, e.data!.status])).toStrictEqual([
      ["r1-input", "aborted"],
      ["r1-output", "aborted"],
      ["r2-input", "error"],
      ["r2-output", "error"],
    ]);
    expect(handler.stats()).toMatchObject({ unfinished: 2, failed: 0 });
  });

  it("an abort with core's partial message: billed from its usage (its text came as no chunk: nothing received); a cached call's error is not billed", () => {
    const { handler, start, sink } = setup();
    start("r1");
    handler.handleLLMError(Object.assign(new Error("x"), { name: "ModelAbortError", partialOutput: { usage_metadata: um(40, 0), content: "par" } }), "r1");
    start("r2");
    handler.handleLLMNewToken("abcd", {} as never, "r2", undefined, undefined, { chunk: { message: {} } } as never);
    handler.handleLLMError(new Error("x"), "r2", undefined, undefined, { cached: true });
    start("r3");
    handler.handleLLMError(Object.assign(new Error("x"), { partialOutput: "not an object" }), "r3");
    expect(sink.events.map((e) => [e.id, e.data!.tokens, e.data!.estimated])).toStrictEqual([
      ["r1-input", 40, undefined],
      ["r1-output", 0, true],
    ]);
    expect(handler.stats()).toMatchObject({ unfinished: 1, failed: 2 });
  });

  it("an error of an unknown run is ignored; an error that cannot be handled is logged, not thrown", () => {
    const { handler, start, errors } = setup({
      onUnbilled: () => {
        throw new Error("cb");
      },
    });
    handler.handleLLMError(new Error("x"), "unknown");
    expect(handler.stats().failed).toBe(0);
    start("r1");
    const error = {
      get name(): never {
        throw new Error("unreadable error");
      },
    };
    expect(() => handler.handleLLMError(error, "r1")).not.toThrow();
    expect(errors).toStrictEqual(["could not meter failed run r1: unreadable error"]);
  });

  it("an error after the run was billed as aborted on the timer is not billed again", async () => {
    const { handler, start, sink, clock } = setup({ runTimeoutMs: 1000 });
    start("r1");
    handler.handleLLMNewToken("abcd", {} as never, "r1");
    await clock.advance(1000);
    expect(sink.events).toHaveLength(2);
    handler.handleLLMError(new Error("late failure"), "r1");
    expect(sink.events).toHaveLength(2);
    expect(handler.stats()).toMatchObject({ failed: 0, unfinished: 1 });
  });

  it("an error of a run forgotten with nothing seen: reported as failed", async () => {
    const { handler, start, clock, unbilled } = setup({ runTimeoutMs: 1000 });
    start("r1");
    await clock.advance(1000);
    handler.handleLLMError(new Error("late failure"), "r1");
    expect(unbilled.map((c) => c.reason)).toStrictEqual(["abandoned", "failed"]);
  });
});

describe("runs that expire", () => {
  it("an abandoned stream is billed as aborted, told once per model with runTimeoutMs", async () => {
    const { handler, start, clock, warnings, sink } = setup({ runTimeoutMs: 1000 });
    start("r1");
    handler.handleLLMNewToken("abcd", {} as never, "r1");
    start("r2");
    handler.handleLLMNewToken("abcd", {} as never, "r2");
    await clock.advance(1000);
    expect(sink.events).toHaveLength(4);
    expect(warnings).toStrictEqual([
      "a call that did not finish (aborted) was billed from estimates, flagged `estimated: true` (model m, run r1)",
      "model call r1 (model m) had no news for runTimeoutMs (1000 ms), as an abandoned stream does (a `break` out of model.stream()): billed as aborted from what it sent and received",
    ]);
  });

  it("a run that showed nothing: reported abandoned with what to change", async () => {
    const { handler, start, clock, warnings, unbilled } = setup({ runTimeoutMs: 1000 });
    start("r1");
    await clock.advance(1000);
    const message =
      "model call r1 (model m) had no news for runTimeoutMs (1000 ms) and showed nothing to bill: it was not billed (if it ends later it is billed then; raise runTimeoutMs above your longest calls)";
    expect(warnings).toStrictEqual([message]);
    expect(unbilled).toStrictEqual([{ reason: "abandoned", message, runId: "r1", model: "m", provider: "p", subject: "acme" }]);
    expect(handler.stats().abandoned).toBe(1);
  });
});

describe("delivery", () => {
  it("a sink that refuses: the events are logged with ids, subjects and tokens, and the call goes on", () => {
    const sink = new MemorySink();
    sink.closed = true;
    const log = recordingLogger();
    const handler = new MeteringCallbackHandler({ client: sink, logger: log.logger });
    handler.handleChatModelStart({} as never, [[]], "r1", undefined, {}, [], { subject: "acme" });
    expect(() => handler.handleLLMEnd(reported(um(3, 4)), "r1")).not.toThrow();
    expect(log.errors).toStrictEqual([
      "2 events of a model call were not delivered: the ingest client refused them (sink is shut down) (r1-input acme 3, r1-output acme 4)",
    ]);
  });

  it("its own client shut down under it: the refusal reaches onError with the events; an onError that throws does not reach the call", async () => {
    const reports: IngestError[] = [];
    const log = recordingLogger();
    const options = { url: "http://127.0.0.1:9/api/v1/events", logger: log.logger, clock: new TestClock(), handleSignals: false, flushOnExit: false };
    const handler = new MeteringCallbackHandler({ ...options, onError: (error: IngestError) => reports.push(error) });
    await handler.client.shutdown();
    handler.handleChatModelStart({} as never, [[]], "r1", undefined, {}, [], { subject: "acme" });
    handler.handleLLMEnd(reported(um(3, 4)), "r1");
    expect(reports.map((r) => [r.kind, r.events.map((e) => e.id)])).toStrictEqual([["refused", ["r1-input", "r1-output"]]]);
    expect(reports[0]!.message).toMatch(/^2 events of a model call were not delivered: the ingest client refused them \(IngestClient was shut down/);
    const throwing = new MeteringCallbackHandler({
      ...options,
      onError: () => {
        throw new Error("bad onError");
      },
    });
    await throwing.client.shutdown();
    throwing.handleChatModelStart({} as never, [[]], "r1", undefined, {}, [], { subject: "acme" });
    expect(() => throwing.handleLLMEnd(reported(um(3, 4)), "r1")).not.toThrow();
  });

  it("server tool events are listed with their requests in a refusal", () => {
    const sink = new MemorySink();
    sink.closed = true;
    const log = recordingLogger();
    const handler = new MeteringCallbackHandler({ client: sink, logger: log.logger });
    handler.handleChatModelStart({} as never, [[]], "r1", undefined, {}, [], { subject: "acme", ls_provider: "anthropic" });
    handler.handleLLMEnd(reported(um(3, 4), { response_metadata: { usage: { server_tool_use: { web_search_requests: 2 } } } }), "r1");
    expect(log.errors[0]).toMatch(/\(r1-input acme 3, r1-output acme 4, r1-tool-web_search acme 2\)$/);
  });

  it("stats(): the handler's counts, delivery only for a client that counts", () => {
    const { handler } = setup();
    expect(handler.stats()).toStrictEqual({
      metered: 0,
      missingSubject: 0,
      missingUsage: 0,
      cacheHits: 0,
      failed: 0,
      unfinished: 0,
      abandoned: 0,
      unsupportedPath: 0,
      duplicateRunIds: 0,
      lateEnds: 0,
      blocked: 0,
      open: 0,
    });
    const counting = { enqueue() {}, async flush() {}, async shutdown() {}, stats: () => ({ delivered: 7 }) };
    const withDelivery = new MeteringCallbackHandler({ client: counting as never, logger: recordingLogger().logger });
    expect(withDelivery.stats().delivery).toStrictEqual({ delivered: 7 });
  });
});

describe("flush and shutdown with a client passed in", () => {
  function recordingClient() {
    const calls: unknown[] = [];
    const client = {
      enqueue: () => {},
      flush: async (options?: unknown) => void calls.push(["flush", options]),
      shutdown: async (options?: unknown) => void calls.push(["shutdown", options]),
    };
    return { client, calls };
  }

  it("flush() without a timeout waits for the client without one; with one, passes on what is left of it", async () => {
    const { client, calls } = recordingClient();
    const clock = new TestClock();
    const handler = new MeteringCallbackHandler({ client: client as never, logger: recordingLogger().logger, clock });
    await handler.flush();
    await handler.flush({ timeoutMs: 500 });
    expect(calls).toStrictEqual([
      ["flush", undefined],
      ["flush", { timeoutMs: 500 }],
    ]);
    expect(clock.pendingTimers).toBe(0);
  });

  it("shutdown() flushes a client it does not own with the time left, leaves it running, and is idempotent", async () => {
    const { client, calls } = recordingClient();
    const clock = new TestClock();
    const handler = new MeteringCallbackHandler({ client: client as never, logger: recordingLogger().logger, clock, shutdownTimeoutMs: 2000 } as never);
    const first = handler.shutdown();
    expect(handler.shutdown()).toBe(first);
    await first;
    expect(calls).toStrictEqual([["flush", { timeoutMs: 2000 }]]);
    expect(clock.pendingTimers).toBe(0);
  });

  it("shutdown() bills a stream still open from what it showed, and leaves one that showed nothing", async () => {
    const { client } = recordingClient();
    const events: CloudEvent[] = [];
    client.enqueue = ((batch: CloudEvent[]) => void events.push(...batch)) as never;
    const clock = new TestClock();
    const log = recordingLogger();
    const handler = new MeteringCallbackHandler({ client: client as never, logger: log.logger, clock, shutdownTimeoutMs: 5000 } as never);
    handler.handleChatModelStart({} as never, [[]], "streaming", undefined, {}, [], { subject: "acme", ls_model_name: "m" });
    handler.handleLLMNewToken("abcd", {} as never, "streaming");
    handler.handleChatModelStart({} as never, [[]], "silent", undefined, {}, [], { subject: "acme", ls_model_name: "m" });
    const done = handler.shutdown();
    await clock.advanceUntil(done, { stepMs: 100 });
    expect(events.map((e) => [e.id, e.data!.status])).toStrictEqual([
      ["streaming-input", "aborted"],
      ["streaming-output", "aborted"],
    ]);
    expect(handler.stats().open).toBe(1);
    expect(log.warnings.join("\n")).toMatch(/model call streaming \(model m\) was still open when shutdown\(\) finished waiting/);
  });
});
