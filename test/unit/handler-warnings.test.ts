/**
 * The handler's warnings (src/handler.ts through WarningDigest): each problem is told in full once per
 * what it is about (model, run id, metadata key, reason), and its repeats are summarised under a
 * short name every warningIntervalMs. Also: how shutdown's drain treats quiet streams, and the
 * arithmetic of flush/shutdown deadlines on a clock that has moved.
 */
import { consumeCallback } from "@langchain/core/callbacks/promises";
import { describe, expect, it, vi } from "vitest";
import { MeteringCallbackHandler, type UnbilledCall } from "langchain-openmeter";
import { TestClock } from "langchain-openmeter/testing";
import { METERING_HOOKS, type MeteringHooks } from "../../src/langchain-hooks";
import { until } from "../support/clocked";
import { MemorySink, recordingLogger } from "../support/memory-sink";

const um = (input_tokens: number, output_tokens: number) => ({ input_tokens, output_tokens, total_tokens: input_tokens + output_tokens });
const reported = (usage: unknown) => ({ generations: [[{ text: "", message: { usage_metadata: usage } }]] }) as never;
const noUsage = { generations: [[{ text: "" }]] } as never;
const estimated = { generations: [[{ text: "" }]], llmOutput: { estimatedTokenUsage: { promptTokens: 1, completionTokens: 1 } } } as never;
const INTERVAL = 1000;

function setup(options: Record<string, unknown> = {}) {
  const sink = new MemorySink();
  const log = recordingLogger();
  const clock = new TestClock();
  const unbilled: UnbilledCall[] = [];
  const handler = new MeteringCallbackHandler({
    client: sink,
    logger: log.logger,
    clock,
    warningIntervalMs: INTERVAL,
    runTimeoutMs: 10_000,
    onUnbilled: (call: UnbilledCall) => unbilled.push(call),
    ...options,
  });
  const start = (runId: string, metadata: Record<string, unknown> = {}, parent?: string) =>
    handler.handleChatModelStart({} as never, [[]], runId, parent, {}, [], { subject: "acme", ls_model_name: "m", ...metadata });
  const token = (runId: string) => handler.handleLLMNewToken("abcd", {} as never, runId);
  const hooks = (handler as unknown as Record<symbol, MeteringHooks>)[METERING_HOOKS]!;
  return { sink, handler, clock, unbilled, start, token, hooks, ...log };
}
type Setup = ReturnType<typeof setup>;

/** Scenarios that hit one warning twice, and the short name its repeat is summarised under. */
const repeated: Array<[string, string, (s: Setup) => Promise<void> | void, Record<string, unknown>?]> = [
  [
    "a call ending after runTimeoutMs",
    "model calls ran longer than runTimeoutMs (billed when they ended)",
    async (s) => {
      for (const id of ["r1", "r2"]) s.start(id);
      await s.clock.advance(10_000);
      for (const id of ["r1", "r2"]) s.handler.handleLLMEnd(reported(um(1, 1)), id);
    },
  ],
  [
    "a stream billed as abandoned that ends after all",
    "model calls ended after they had been billed as abandoned (raise runTimeoutMs)",
    async (s) => {
      for (let i = 0; i < 2; i++) {
        s.start("r1");
        s.token("r1");
        await s.clock.advance(10_000);
        s.handler.handleLLMEnd(reported(um(1, 1)), "r1");
      }
    },
  ],
  [
    "no usage",
    "model calls reported no usage and were not billed",
    (s) => {
      for (const id of ["r1", "r2"]) {
        s.start(id);
        s.handler.handleLLMEnd(noUsage, id);
      }
    },
  ],
  [
    "a metadata value left out",
    "metadata `tokens` left out of events (the event sets a field of that name itself)",
    (s) => {
      for (const id of ["r1", "r2"]) {
        s.start(id, { tokens: 5 });
        s.handler.handleLLMEnd(reported(um(1, 1)), id);
      }
    },
  ],
  [
    "a bill's note",
    "model m reported no usage; LangChain's estimate was billed and flagged `estimated: true`",
    (s) => {
      for (const id of ["r1", "r2"]) {
        s.start(id);
        s.handler.handleLLMEnd(estimated, id);
      }
    },
  ],
  [
    "an abandoned stream",
    "abandoned streams billed as aborted",
    async (s) => {
      for (const id of ["r1", "r2"]) {
        s.start(id);
        s.token(id);
      }
      await s.clock.advance(10_000);
    },
  ],
  [
    "a run abandoned with nothing to bill",
    "model calls abandoned with nothing to bill",
    async (s) => {
      for (const id of ["r1", "r2"]) s.start(id);
      await s.clock.advance(10_000);
    },
  ],
  [
    "model.streamEvents() without version",
    "model.streamEvents() calls without `version` (not billed)",
    (s) => {
      s.hooks.unmeteredStreamEvents("m", { subject: "acme" });
      s.hooks.unmeteredStreamEvents("m", { subject: "acme" });
    },
  ],
  [
    "a run id passed to later calls",
    "run ids passed to more than one model call (billed under suffixed ids)",
    (s) => {
      for (let i = 0; i < 3; i++) {
        s.start("r1");
        s.handler.handleLLMEnd(reported(um(1, 1)), "r1");
      }
    },
  ],
  [
    "a start after shutdown",
    "model calls started after shutdown() (not metered)",
    async (s) => {
      await s.handler.shutdown();
      s.start("r1");
      s.start("r2");
    },
  ],
  [
    "a run id started twice at once",
    "run ids started twice at once (billed as one call)",
    (s) => {
      for (let i = 0; i < 3; i++) s.start("r1");
    },
  ],
  [
    "a resolveSubject that throws",
    "`resolveSubject` threw (fell back to the metadata)",
    (s) => {
      s.start("r1");
      s.start("r2");
    },
    {
      resolveSubject: () => {
        throw new Error("no");
      },
    },
  ],
  ["a subject from resolveSubject refused", "subjects from resolveSubject refused (it is empty)", (s) => (s.start("r1"), s.start("r2")), { resolveSubject: () => " " }],
  ["a subject from the metadata refused", "subjects from metadata.subject refused (it is empty)", (s) => (s.start("r1", { subject: "" }), s.start("r2", { subject: "" })), { defaultSubject: "house" }],
  ["no subject", "model calls had no subject and were not billed", (s) => (s.start("r1", { subject: undefined }), s.start("r2", { subject: undefined }))],
];

describe("repeated warnings are summarised under their short name", () => {
  for (const [what, summary, act, options] of repeated) {
    it(what, async () => {
      const s = setup(options);
      await act(s);
      await s.clock.advance(INTERVAL);
      const summaries = s.warnings.filter((w) => w.startsWith("since the last summary"));
      expect(summaries.join("\n")).toContain(`1× ${summary}`);
    });
  }

  it("shutdown tells what is pending at once", async () => {
    const s = setup();
    for (const id of ["r1", "r2"]) {
      s.start(id);
      s.handler.handleLLMEnd(noUsage, id);
    }
    await s.handler.shutdown();
    expect(s.warnings.at(-1)).toBe(`since the last summary (every ${INTERVAL} ms): 1× model calls reported no usage and were not billed`);
  });
});

/** Scenarios that hit one warning for two different things: each is told in full. */
const distinct: Array<[string, RegExp, (s: Setup) => Promise<void> | void, Record<string, unknown>?]> = [
  [
    "estimate notes of two models",
    /reported no usage; LangChain's estimate was billed/,
    (s) => {
      s.start("r1", { ls_model_name: "a" });
      s.handler.handleLLMEnd(estimated, "r1");
      s.start("r2", { ls_model_name: "b" });
      s.handler.handleLLMEnd(estimated, "r2");
    },
  ],
  [
    "abandoned streams of two models",
    /as an abandoned stream does/,
    async (s) => {
      s.start("r1", { ls_model_name: "a" });
      s.token("r1");
      s.start("r2", { ls_model_name: "b" });
      s.token("r2");
      await s.clock.advance(10_000);
    },
  ],
  [
    "runs of two models abandoned with nothing to bill",
    /showed nothing to bill/,
    async (s) => {
      s.start("r1", { ls_model_name: "a" });
      s.start("r2", { ls_model_name: "b" });
      await s.clock.advance(10_000);
    },
  ],
  [
    "two streams that end after they were billed as abandoned",
    /ended after runTimeoutMs .* already been billed as aborted/,
    async (s) => {
      for (const id of ["r1", "r2"]) {
        s.start(id);
        s.token(id);
      }
      await s.clock.advance(10_000);
      for (const id of ["r1", "r2"]) s.handler.handleLLMEnd(reported(um(1, 1)), id);
    },
  ],
  ["streamEvents() on two models", /model\.streamEvents\(\) without `version`/, (s) => (s.hooks.unmeteredStreamEvents("a", {}), s.hooks.unmeteredStreamEvents("b", {}))],
  [
    "two run ids passed again",
    /was passed to more than one model call/,
    (s) => {
      for (const id of ["r1", "r1", "r2", "r2"]) {
        s.start(id);
        s.handler.handleLLMEnd(reported(um(1, 1)), id);
      }
    },
  ],
  ["two run ids started twice at once", /was started again while a call under it is still running/, (s) => ["r1", "r1", "r2", "r2"].forEach((id) => s.start(id))],
  [
    "resolveSubject refusing for two reasons",
    /the subject from resolveSubject was refused/,
    (s) => (s.start("r1", { pick: "" }), s.start("r2", { pick: "\u0000" })),
    { resolveSubject: ({ metadata }: { metadata: Record<string, unknown> }) => metadata.pick as string },
  ],
  ["the metadata subject refused for two reasons", /the subject from metadata\.subject was refused/, (s) => (s.start("r1", { subject: "" }), s.start("r2", { subject: true })), { defaultSubject: "house" }],
  [
    "two metadata keys left out",
    /was not copied into events/,
    (s) => {
      s.start("r1", { tokens: 1, type: "x" });
      s.handler.handleLLMEnd(reported(um(1, 1)), "r1");
    },
  ],
];

describe("one warning in full for each model, run id, key or reason it is about", () => {
  for (const [what, pattern, act, options] of distinct) {
    it(what, async () => {
      const s = setup(options);
      await act(s);
      expect(s.warnings.filter((w) => pattern.test(w))).toHaveLength(2);
    });
  }
});

describe("model.streamEvents() without version (the hook langchain-hooks.ts calls)", () => {
  it("counted, reported with its model and subject; without either, the report has neither", () => {
    const s = setup();
    s.hooks.unmeteredStreamEvents("m", { subject: " acme " });
    s.hooks.unmeteredStreamEvents(undefined, undefined);
    s.hooks.unmeteredStreamEvents("m", { subject: "" });
    const message = (model: string) =>
      `model.streamEvents() without \`version\` was called on ${model}: LangChain runs it without callbacks, so it is not billed. Pass \`{ version: "v2" }\`, or use .stream() or .invoke().`;
    expect(s.unbilled).toStrictEqual([
      { reason: "unsupported_path", message: message("model m"), model: "m", subject: "acme" },
      { reason: "unsupported_path", message: message("a model with no name") },
      { reason: "unsupported_path", message: message("model m"), model: "m" },
    ]);
    expect(s.handler.stats().unsupportedPath).toBe(3);
    expect(s.errors).toStrictEqual([]);
  });

  it("without onUnbilled nothing is called; an onUnbilled that throws is logged", () => {
    const quiet = setup({ onUnbilled: undefined });
    quiet.hooks.unmeteredStreamEvents("m", {});
    expect(quiet.errors).toStrictEqual([]);
    const throwing = setup({
      onUnbilled: () => {
        throw new Error("cb");
      },
    });
    throwing.hooks.unmeteredStreamEvents("m", {});
    expect(throwing.errors).toStrictEqual(["onUnbilled threw (cb): it must not throw"]);
  });
});

describe("run ids", () => {
  it("a failed call's run id is remembered too: the next call under it is billed under a suffix", () => {
    const s = setup();
    s.start("r1");
    s.token("r1");
    s.handler.handleLLMNewToken("", {} as never, "r1", undefined, undefined, { chunk: { message: {} } } as never);
    s.handler.handleLLMError(new Error("socket hang up"), "r1");
    s.start("r1");
    s.handler.handleLLMEnd(reported(um(1, 1)), "r1");
    expect(s.sink.events.map((e) => e.id)).toStrictEqual(["r1-input", "r1-output", "r1~2-input", "r1~2-output"]);
  });

  it("a run id used again is remembered as the newest: the oldest other id is forgotten first", () => {
    const s = setup({ includeMetadata: false });
    for (let i = 0; i < 10_000; i++) {
      s.start(`r${i}`);
      s.handler.handleLLMEnd(reported(um(1, 1)), `r${i}`);
    }
    // r0 again: billed as r0~2 and now the newest; r10000 then pushes out r1, not r0.
    for (const id of ["r0", "r10000", "r0"]) {
      s.start(id);
      s.handler.handleLLMEnd(reported(um(1, 1)), id);
    }
    expect(s.sink.events.slice(-6).map((e) => e.id)).toStrictEqual(["r0~2-input", "r0~2-output", "r10000-input", "r10000-output", "r0~3-input", "r0~3-output"]);
  });
});

describe("shutdown's drain", () => {
  it("a stream quiet for a second or more does not hold it; it is billed as aborted at once", async () => {
    const s = setup({ shutdownTimeoutMs: 5000 });
    await s.clock.advance(2000);
    s.start("r1");
    s.token("r1");
    await s.clock.advance(1000);
    let done = false;
    const shutdown = s.handler.shutdown().then(() => (done = true));
    await until(() => done, "shutdown without the clock moving");
    await shutdown;
    expect(s.clock.now()).toBe(3000);
    expect(s.sink.events.map((e) => e.data!.status)).toStrictEqual(["aborted", "aborted"]);
  });

  it("a stream heard from within the last second holds it (until its end, or the deadline)", async () => {
    const s = setup({ shutdownTimeoutMs: 5000 });
    await s.clock.advance(2000);
    s.start("r1");
    s.token("r1");
    await s.clock.advance(500);
    let done = false;
    const shutdown = s.handler.shutdown().then(() => (done = true));
    await s.clock.advance(4999);
    expect(done).toBe(false);
    await s.clock.advance(1);
    await shutdown;
    expect(done).toBe(true);
  });

  it("a call that ends during the drain ends it then, not at the deadline", async () => {
    const s = setup({ shutdownTimeoutMs: 5000 });
    s.start("r1");
    let done = false;
    const shutdown = s.handler.shutdown().then(() => (done = true));
    await s.clock.advance(100);
    expect(done).toBe(false);
    s.handler.handleLLMEnd(reported(um(1, 1)), "r1");
    await until(() => done, "shutdown after the call ended");
    await shutdown;
    expect(s.clock.now()).toBe(100);
  });

  it("a call that fails during the drain ends it then", async () => {
    const s = setup({ shutdownTimeoutMs: 5000 });
    s.start("r1");
    let done = false;
    const shutdown = s.handler.shutdown().then(() => (done = true));
    await s.clock.advance(100);
    s.handler.handleLLMError(new Error("x"), "r1");
    await until(() => done, "shutdown after the call failed");
    await shutdown;
    expect(s.clock.now()).toBe(100);
  });

  it("a call that expires during the drain ends it then", async () => {
    const s = setup({ shutdownTimeoutMs: 5000, runTimeoutMs: 1000 });
    s.start("r1");
    let done = false;
    const shutdown = s.handler.shutdown().then(() => (done = true));
    await s.clock.advance(999);
    expect(done).toBe(false);
    await s.clock.advance(1);
    await until(() => done, "shutdown after the call expired");
    await shutdown;
    expect(s.clock.now()).toBe(1000);
  });

  it("a chain that ends, or fails, during the drain ends it then", async () => {
    for (const end of ["handleChainEnd", "handleChainError"] as const) {
      const s = setup({ shutdownTimeoutMs: 5000 });
      s.handler.handleChainStart({} as never, {}, "chain-1");
      let done = false;
      const shutdown = s.handler.shutdown().then(() => (done = true));
      await s.clock.advance(100);
      expect(done).toBe(false);
      s.handler[end]({} as never, "chain-1");
      await until(() => done, `shutdown after ${end}`);
      await shutdown;
      expect(s.clock.now()).toBe(100);
    }
  });

  it("a slow callback on LangChain's queue holds flush() and shutdown() only until their deadlines", async () => {
    const s = setup({ shutdownTimeoutMs: 3000 });
    await s.clock.advance(10_000);
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    await consumeCallback(() => held, false);
    try {
      let flushed = false;
      const flush = s.handler.flush({ timeoutMs: 500 }).then(() => (flushed = true));
      await s.clock.advance(499);
      expect(flushed).toBe(false);
      await s.clock.advance(1);
      await flush;
      let done = false;
      const shutdown = s.handler.shutdown().then(() => (done = true));
      await s.clock.advance(2999);
      expect(done).toBe(false);
      await s.clock.advance(1);
      await shutdown;
      expect(done).toBe(true);
      expect(s.clock.pendingTimers).toBe(0);
    } finally {
      release();
    }
  });
});

describe("deadlines on a clock that has moved", () => {
  function recordingClient() {
    const calls: unknown[] = [];
    const client = { enqueue: () => {}, flush: async (o?: unknown) => void calls.push(["flush", o]), shutdown: async (o?: unknown) => void calls.push(["shutdown", o]) };
    return { client, calls };
  }

  it("flush({ timeoutMs }) and shutdown() hand the client what is left of their time", async () => {
    const { client, calls } = recordingClient();
    const clock = new TestClock();
    await clock.advance(10_000);
    const handler = new MeteringCallbackHandler({ client: client as never, logger: recordingLogger().logger, clock, shutdownTimeoutMs: 2000 } as never);
    await handler.flush({ timeoutMs: 500 });
    await handler.shutdown();
    expect(calls).toStrictEqual([
      ["flush", { timeoutMs: 500 }],
      ["flush", { timeoutMs: 2000 }],
    ]);
  });

  it("its own client gets shutdown() with what is left of shutdownTimeoutMs", async () => {
    const clock = new TestClock();
    await clock.advance(10_000);
    const handler = new MeteringCallbackHandler({ url: "http://127.0.0.1:9/api/v1/events", logger: recordingLogger().logger, clock, shutdownTimeoutMs: 2000, handleSignals: false, flushOnExit: false });
    const shutdown = vi.spyOn(handler.client, "shutdown");
    handler.handleChatModelStart({} as never, [[]], "r1", undefined, {}, [], { subject: "acme" });
    const done = handler.shutdown();
    await clock.advance(300);
    handler.handleLLMError(new Error("x"), "r1");
    await until(() => shutdown.mock.calls.length > 0, "the client's shutdown");
    await done;
    expect(shutdown.mock.calls).toStrictEqual([[{ timeoutMs: 1700 }]]);
  });
});

describe("arguments", () => {
  it("(url, apiKey, options) with both given twice names both", () => {
    expect(() => new MeteringCallbackHandler("http://127.0.0.1:9/api/v1/events", "k", { url: "http://x", apiKey: "y" } as never)).toThrow(
      "MeteringCallbackHandler: `url` and `apiKey` was given twice (as an argument and in the options): pass it once",
    );
  });

  it("(url, undefined, { client }) names only the url as stray: an absent apiKey is not passed on", () => {
    expect(() => new MeteringCallbackHandler("http://127.0.0.1:9/api/v1/events", undefined, { client: new MemorySink() })).toThrow(
      "MeteringCallbackHandler: `url` configure the ingest client this handler would create, but `client` was given: set them on that client instead",
    );
  });

  it("null is named as null", () => {
    expect(() => new MeteringCallbackHandler(null as never)).toThrow(/got null$/);
  });
});

describe("aborts and partial output, read defensively", () => {
  it("an error name or message that is not a string is not read as one", () => {
    const s = setup();
    const sneaky = { toString: () => "AbortError" };
    s.start("r1");
    s.handler.handleLLMError({ name: sneaky, message: sneaky }, "r1");
    s.start("r2");
    s.handler.handleLLMError(Object.assign(new Error("x"), { name: "TimeoutErrorish" }), "r2");
    expect(s.unbilled.map((c) => /failed before/.test(c.message))).toStrictEqual([true, true]);
  });

  it("a partialOutput that is not an object (a function with fields) is ignored", () => {
    const s = setup();
    s.start("r1");
    s.handler.handleLLMError(Object.assign(new Error("x"), { name: "AbortError", partialOutput: Object.assign(() => {}, { usage_metadata: um(40, 0) }) }), "r1");
    expect(s.sink.events).toStrictEqual([]);
    expect(s.handler.stats().failed).toBe(1);
  });
});

describe("odd inputs the callbacks survive", () => {
  it("an end of a run the handler never saw is ignored without an error", () => {
    const s = setup();
    s.handler.handleLLMEnd(reported(um(1, 1)), "unknown");
    expect([s.errors, s.sink.events]).toStrictEqual([[], []]);
  });

  it("a start without metadata and without a resolver: no subject, reported, nothing logged as an error", () => {
    const s = setup();
    s.handler.handleChatModelStart({} as never, [[]], "r1", undefined, {}, [], undefined);
    expect(s.errors).toStrictEqual([]);
    expect(s.unbilled.map((c) => Object.keys(c).sort())).toStrictEqual([["message", "reason", "runId"]]);
  });

  it("a subject whose getter throws costs that call's metering only, logged with the run", () => {
    const s = setup();
    const metadata = {} as Record<string, unknown>;
    Object.defineProperty(metadata, "subject", { get: () => { throw new Error("no subject for you"); } });
    s.handler.handleChatModelStart({} as never, [[]], "r1", undefined, {}, [], metadata);
    expect(s.errors).toStrictEqual(["could not start metering run r1: no subject for you"]);
    s.start("r2");
    s.handler.handleLLMEnd(reported(um(1, 1)), "r2");
    expect(s.sink.events).toHaveLength(2);
  });

  it("an estimator that throws while settling an abandoned stream is logged with the run", async () => {
    const s = setup({
      runTimeoutMs: 1000,
      estimateTokens: () => {
        throw new Error("tokenizer broke");
      },
    });
    s.start("r1");
    s.token("r1");
    await s.clock.advance(1000);
    expect(s.errors).toStrictEqual(["could not settle run r1: tokenizer broke"]);
  });

  it("an LLM start's prompts are what an unfinished call's input is estimated from", () => {
    const s = setup();
    s.handler.handleLLMStart({} as never, ["a".repeat(8)], "r1", undefined, {}, [], { subject: "acme" });
    s.handler.handleLLMNewToken("", {} as never, "r1", undefined, undefined, { chunk: { message: {} } } as never);
    s.handler.handleLLMEnd(noUsage, "r1");
    // 3 per prompt + 8 characters / 4; nothing received.
    expect(s.sink.events.map((e) => [e.data!.type, e.data!.tokens])).toStrictEqual([
      ["input", 5],
      ["output", 0],
    ]);
  });

  it("a token that is not a string counts as no text", () => {
    const s = setup();
    s.start("r1");
    s.handler.handleLLMNewToken(undefined as never, {} as never, "r1", undefined, undefined, { chunk: { message: {} } } as never);
    s.handler.handleLLMEnd(noUsage, "r1");
    expect(s.sink.events.map((e) => [e.data!.type, e.data!.tokens])).toStrictEqual([
      ["input", 3],
      ["output", 0],
    ]);
  });

  it("a call with no model or provider is reported without them", () => {
    const s = setup();
    s.handler.handleChatModelStart({} as never, [[]], "r1", undefined, {}, [], { subject: "acme" });
    s.handler.handleLLMEnd(reported(um(1, 1)), "r1", undefined, undefined, { cached: true });
    expect(s.unbilled).toStrictEqual([{ reason: "cache_hit", message: "LangChain answered from its cache: the call cost nothing", runId: "r1", subject: "acme" }]);
  });
});
