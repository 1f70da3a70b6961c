/**
 * Hardening: what reaches the handler's callbacks (subjects, metadata values, usage shapes, odd run
 * sequences). Each test is a row of docs/hardening.md. The user's call must go on, nothing is billed
 * that the provider did not report, and each problem is told once.
 */
import { describe, expect, it } from "vitest";
import { MeteringCallbackHandler, type CloudEvent } from "langchain-openmeter";
import { MemorySink, recordingLogger } from "../support/memory-sink";
import { ScriptedChatModel, usage } from "../support/scripted-model";

function setup(options: Record<string, unknown> = {}) {
  const sink = new MemorySink();
  const log = recordingLogger();
  const handler = new MeteringCallbackHandler({ client: sink, logger: log.logger, ...options });
  let seq = 0;
  /** One run through the callbacks directly: start with this metadata, end with this output. */
  const run = (metadata: Record<string, unknown>, output: unknown, runId = `run-${seq++}`) => {
    handler.handleChatModelStart({} as never, [], runId, undefined, {}, [], { ls_model_name: "m", ls_provider: "p", ...metadata });
    handler.handleLLMEnd(output as never, runId);
    return runId;
  };
  return { sink, handler, run, ...log };
}

/** An LLMResult whose message reports this usage_metadata. */
const reported = (usageMetadata: unknown) => ({ generations: [[{ text: "", message: { usage_metadata: usageMetadata } }]] });
const tokens = (events: CloudEvent[]) => events.map((e) => [e.data!.type, e.data!.tokens]);

describe("subject", () => {
  it("a number becomes its decimal string", () => {
    const { sink, run } = setup();
    run({ subject: 4711 }, reported(usage(1, 2)));
    run({ subject: 12n }, reported(usage(1, 2)));
    expect(sink.events.map((e) => e.subject)).toEqual(["4711", "4711", "12", "12"]);
  });

  it("NaN or Infinity: refused as not a finite number, not billed", () => {
    const { sink, run, warnings } = setup();
    run({ subject: Number.NaN }, reported(usage(1, 2)));
    run({ subject: Number.POSITIVE_INFINITY }, reported(usage(1, 2)));
    expect(sink.events).toEqual([]);
    expect(warnings.join("\n")).toMatch(/refused: it is NaN, not a finite number/);
    expect(warnings.join("\n")).toMatch(/refused: it is Infinity, not a finite number/);
  });

  it("empty: refused, and the call falls back to defaultSubject when one is set", () => {
    const bare = setup();
    bare.run({ subject: "" }, reported(usage(1, 2)));
    expect(bare.sink.events).toEqual([]);
    expect(bare.warnings.join("\n")).toMatch(/subject from metadata\.subject was refused: it is empty/);
    const withDefault = setup({ defaultSubject: "house" });
    withDefault.run({ subject: "" }, reported(usage(1, 2)));
    expect(withDefault.sink.events.map((e) => e.subject)).toEqual(["house", "house"]);
  });

  it("surrounding whitespace is trimmed", () => {
    const { sink, run } = setup();
    run({ subject: "  acme\u00a0 " }, reported(usage(1, 2)));
    expect(sink.events[0]!.subject).toBe("acme");
  });

  it("very long (over 256 characters): refused with the limit, not billed", () => {
    const { sink, run, warnings } = setup();
    run({ subject: "a".repeat(257) }, reported(usage(1, 2)));
    run({ subject: "a".repeat(256) }, reported(usage(1, 2)));
    expect(sink.events.map((e) => e.subject.length)).toEqual([256, 256]);
    expect(warnings.join("\n")).toMatch(/refused: it is longer than 256 characters/);
  });

  it("control characters (tab, NUL, DEL, ESC): refused", () => {
    const { sink, run, warnings } = setup();
    for (const subject of ["ac\tme", "ac\u0000me", "acme\u007f", "\u001b[31macme"]) run({ subject }, reported(usage(1, 2)));
    expect(sink.events).toEqual([]);
    expect(warnings.filter((w) => w.includes("control or invisible characters"))).toHaveLength(1);
    expect(warnings.join("\n")).not.toContain("\u001b");
  });

  it("invisible characters (C1 controls, zero-width, bidi overrides, soft hyphen): refused, since they would match no customer", () => {
    const { sink, run, warnings } = setup();
    for (const subject of ["ac\u0085me", "acme\u202e", "\u200bacme", "ac\u00adme", "ac\u2060me"]) run({ subject }, reported(usage(1, 2)));
    expect(sink.events).toEqual([]);
    expect(warnings.filter((w) => w.includes("refused"))).toEqual(["the subject from metadata.subject was refused: it contains control or invisible characters"]);
    // Visible non-ASCII is a name like any other.
    run({ subject: "café-münchen 株式会社" }, reported(usage(1, 2)));
    expect(sink.events.map((e) => e.subject)).toEqual(["café-münchen 株式会社", "café-münchen 株式会社"]);
  });

  it("an object, an array or a boolean: refused with its type", () => {
    const { sink, run, warnings } = setup();
    run({ subject: { id: "acme" } }, reported(usage(1, 2)));
    run({ subject: true }, reported(usage(1, 2)));
    expect(sink.events).toEqual([]);
    expect(warnings.join("\n")).toMatch(/it is a object, not a string|it is an object, not a string/);
    expect(warnings.join("\n")).toMatch(/it is a boolean, not a string/);
  });

  it("a resolveSubject that throws: warned once, the metadata subject is used", () => {
    const { sink, run, warnings } = setup({
      resolveSubject: () => {
        throw new Error("lookup failed");
      },
    });
    run({ subject: "acme" }, reported(usage(1, 2)));
    run({ subject: "acme" }, reported(usage(1, 2)));
    expect(sink.events.map((e) => e.subject)).toEqual(["acme", "acme", "acme", "acme"]);
    expect(warnings.filter((w) => w.includes("`resolveSubject` threw (lookup failed)"))).toHaveLength(1);
  });
});

describe("subject fallbacks", () => {
  it("a resolveSubject that answers a refused value (empty, control characters): warned once, the metadata subject is used", () => {
    const answers = ["", "  ", "a\u0001b"];
    let call = 0;
    const { sink, run, warnings, handler } = setup({ resolveSubject: () => answers[call++ % answers.length] });
    for (let i = 0; i < 3; i++) run({ subject: "acme" }, reported(usage(1, 2)));
    expect(sink.events.map((e) => e.subject)).toEqual(Array(6).fill("acme"));
    expect(handler.stats()).toMatchObject({ metered: 3, missingSubject: 0 });
    expect(warnings).toEqual([
      "the subject from resolveSubject was refused: it is empty",
      "the subject from resolveSubject was refused: it contains control or invisible characters",
    ]);
  });
});

describe("metadata values", () => {
  it("a value whose getter throws is left out with one warning; the call is still billed", () => {
    const { sink, handler, warnings } = setup();
    const metadata: Record<string, unknown> = { subject: "acme", tier: "pro", ls_model_name: "m" };
    Object.defineProperty(metadata, "plan", { enumerable: true, get: () => { throw new Error("boom"); } });
    handler.handleChatModelStart({} as never, [], "run-getter", undefined, {}, [], metadata);
    handler.handleLLMEnd(reported(usage(1, 2)) as never, "run-getter");
    expect(sink.events.map((e) => [e.data?.type, e.data?.tokens, e.data?.tier, "plan" in (e.data ?? {})])).toEqual([
      ["input", 1, "pro", false],
      ["output", 2, "pro", false],
    ]);
    expect(warnings).toEqual(["metadata `plan` was not copied into events: reading it threw (boom)"]);
  });


  it("a circular object is left out, the flat values beside it travel, nothing throws", () => {
    const { sink, run } = setup();
    const circular: Record<string, unknown> = { name: "loop" };
    circular.self = circular;
    run({ subject: "acme", circular, tier: "pro" }, reported(usage(1, 2)));
    expect(sink.events[0]!.data).toEqual({ type: "input", tokens: 1, model: "m", provider: "p", tier: "pro" });
    expect(() => JSON.stringify(sink.events)).not.toThrow();
  });

  it("BigInt becomes a decimal string; functions and symbols are left out", () => {
    const { sink, run } = setup();
    run({ subject: "acme", big: 2n ** 70n, fn: () => 1, sym: Symbol("s") }, reported(usage(1, 2)));
    expect(sink.events[0]!.data).toEqual({ type: "input", tokens: 1, model: "m", provider: "p", big: "1180591620717411303424" });
  });

  it("a Date becomes its ISO string; an invalid Date is left out", () => {
    const { sink, run } = setup();
    run({ subject: "acme", at: new Date(0), bad: new Date("nope") }, reported(usage(1, 2)));
    expect(sink.events[0]!.data).toMatchObject({ at: "1970-01-01T00:00:00.000Z" });
    expect(sink.events[0]!.data).not.toHaveProperty("bad");
  });

  it("NaN and Infinity numbers are left out (JSON would turn them into null)", () => {
    const { sink, run } = setup();
    run({ subject: "acme", ratio: Number.NaN, cap: Number.NEGATIVE_INFINITY, seats: 3 }, reported(usage(1, 2)));
    expect(sink.events[0]!.data).toEqual({ type: "input", tokens: 1, model: "m", provider: "p", seats: 3 });
  });

  it("a huge string (1 MB) is left out with one warning naming the key; the call is still billed", () => {
    const { sink, run, warnings } = setup();
    const huge = "x".repeat(1_000_000);
    run({ subject: "acme", notes: huge }, reported(usage(1, 2)));
    run({ subject: "acme", notes: huge }, reported(usage(1, 2)));
    expect(sink.events).toHaveLength(4);
    expect(sink.events[0]!.data).not.toHaveProperty("notes");
    expect(warnings.filter((w) => w.includes("`notes`"))).toEqual(["metadata `notes` was not copied into events: its string is longer than 1024 characters"]);
    expect(JSON.stringify(sink.events).length).toBeLessThan(4000);
  });

  it("keys that collide with the event's own fields (type, tokens, model): the event's values win, each told once", () => {
    const { sink, run, warnings } = setup();
    for (let i = 0; i < 3; i++) run({ subject: "acme", type: "free", tokens: 0, model: "cheap-model", provider: "x" }, reported(usage(10, 20)));
    expect(sink.events.map((e) => [e.data!.type, e.data!.tokens, e.data!.model, e.data!.provider])).toEqual(
      Array.from({ length: 3 }, () => [
        ["input", 10, "m", "p"],
        ["output", 20, "m", "p"],
      ]).flat(),
    );
    const collisions = warnings.filter((w) => /^metadata `(type|tokens|model|provider)`/.test(w));
    expect(collisions.sort()).toEqual(
      ["model", "provider", "tokens", "type"].map((k) => `metadata \`${k}\` was not copied into events: the event sets a field of that name itself`),
    );
  });
});

describe("usage shapes", () => {
  it("zeros: billed as reported (two events of 0 tokens), not treated as missing", () => {
    const { sink, run, warnings } = setup();
    run({ subject: "acme" }, reported(usage(0, 0)));
    expect(tokens(sink.events)).toEqual([
      ["input", 0],
      ["output", 0],
    ]);
    expect(warnings).toEqual([]);
  });

  const invalid: Array<[string, unknown, unknown, RegExp]> = [
    ["negative", -5, 10, /input -5, output 10/],
    ["NaN", Number.NaN, 10, /input NaN/],
    ["a fraction", 10.5, 3, /input 10\.5/],
    ["Infinity", 10, Number.POSITIVE_INFINITY, /output Infinity/],
    ["beyond 2^53", 2 ** 53, 3, /input 9007199254740992/],
    ["a non-numeric string", "12 tokens", 3, /input "12 tokens"/],
    ["a BigInt", 12n, 3, /input 12n/],
    ["null", null, 3, /input null/],
  ];
  for (const [what, input, output, detail] of invalid) {
    it(`${what}: nothing billed, one warning with the value seen`, () => {
      const { sink, run, warnings, handler } = setup();
      run({ subject: "acme" }, reported({ input_tokens: input, output_tokens: output, total_tokens: 0 }));
      run({ subject: "acme" }, reported({ input_tokens: input, output_tokens: output, total_tokens: 0 }));
      expect(sink.events).toEqual([]);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/usage_metadata has no usable token counts/);
      expect(warnings[0]).toMatch(detail);
      expect(handler.stats()).toMatchObject({ missingUsage: 2, metered: 0, open: 0 });
    });
  }

  it("a count left out beside a total is the total's remainder (providers drop zeros); otherwise not guessed", () => {
    const { sink, run, warnings } = setup();
    run({ subject: "acme" }, reported({ input_tokens: 900, total_tokens: 900 }));
    run({ subject: "acme" }, reported({ output_tokens: 4, total_tokens: 10 }));
    expect(tokens(sink.events)).toEqual([
      ["input", 900],
      ["output", 0],
      ["input", 6],
      ["output", 4],
    ]);
    expect(warnings).toEqual([]);
    // No total, a total smaller than the count it must contain, or a value that is there but no count.
    run({ subject: "acme" }, reported({ input_tokens: 900 }));
    run({ subject: "acme" }, reported({ input_tokens: 900, total_tokens: 899 }));
    run({ subject: "acme" }, reported({ input_tokens: 900, output_tokens: "many", total_tokens: 1000 }));
    expect(sink.events).toHaveLength(4);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/usage_metadata has no usable token counts \(input 900, output undefined\)/);
  });

  it("whole-number floats (12.0) and decimal strings (\"12\") are counts", () => {
    const { sink, run } = setup();
    run({ subject: "acme" }, reported({ input_tokens: 12.0, output_tokens: "7" }));
    expect(tokens(sink.events)).toEqual([
      ["input", 12],
      ["output", 7],
    ]);
  });

  it("details that do not fit inside the totals (cache reads > input, reasoning > output) are dropped; the totals are billed", () => {
    const { sink, run } = setup();
    run(
      { subject: "acme" },
      reported({ input_tokens: 10, output_tokens: 5, input_token_details: { cache_read: 50 }, output_token_details: { reasoning: -1 } }),
    );
    expect(sink.events.map((e) => e.data)).toEqual([
      { type: "input", tokens: 10, model: "m", provider: "p" },
      { type: "output", tokens: 5, model: "m", provider: "p" },
    ]);
  });

  it("generations empty, missing, or the whole output missing: nothing billed, one warning, no throw", () => {
    const { sink, run, warnings, handler } = setup();
    for (const output of [{ generations: [] }, { generations: [[]] }, {}, undefined, null, { generations: "nope" }]) run({ subject: "acme" }, output);
    expect(sink.events).toEqual([]);
    expect(warnings).toEqual([expect.stringMatching(/the model reported no token usage .*nothing was billed.*streamUsage: true/)]);
    expect(handler.stats()).toMatchObject({ missingUsage: 6, open: 0 });
  });

  it("llmOutput of an unknown shape: nothing billed, warned", () => {
    const { sink, run, warnings } = setup();
    run({ subject: "acme" }, { generations: [[{ text: "" }]], llmOutput: { usage: { input_tokens: 5, output_tokens: 6 } } });
    run({ subject: "acme" }, { generations: [[{ text: "" }]], llmOutput: "42 tokens" });
    run({ subject: "acme" }, { generations: [[{ text: "" }]], llmOutput: { tokenUsage: { totalTokens: 11 } } });
    expect(sink.events).toEqual([]);
    expect(warnings.join("\n")).toMatch(/the model reported no token usage/);
    expect(warnings.join("\n")).toMatch(/llmOutput\.tokenUsage has no usable token counts \(input undefined, output undefined\)/);
  });

  it("llmOutput.tokenUsage in snake_case (prompt_tokens / completion_tokens) is read too", () => {
    const { sink, run } = setup();
    run({ subject: "acme" }, { generations: [[{ text: "" }]], llmOutput: { tokenUsage: { prompt_tokens: 8, completion_tokens: 2 } } });
    expect(tokens(sink.events)).toEqual([
      ["input", 8],
      ["output", 2],
    ]);
  });

  it("a usage object whose getter throws: logged as an error, nothing billed, the callback does not throw", () => {
    const { sink, handler, errors } = setup();
    handler.handleChatModelStart({} as never, [], "hostile", undefined, {}, [], { subject: "acme" });
    const hostile = {
      generations: [[{ text: "", message: { get usage_metadata() {
        throw new Error("getter exploded");
      } } }]],
    };
    expect(() => handler.handleLLMEnd(hostile as never, "hostile")).not.toThrow();
    expect(sink.events).toEqual([]);
    expect(errors).toEqual([expect.stringMatching(/could not meter run hostile: getter exploded/)]);
    expect(handler.stats().open).toBe(0);
  });
});

describe("run sequences", () => {
  it("end without start: nothing billed, nothing thrown", () => {
    const { sink, handler, warnings } = setup();
    expect(() => handler.handleLLMEnd(reported(usage(5, 5)) as never, "never-started")).not.toThrow();
    expect(() => handler.handleLLMError(new Error("x"), "never-started")).not.toThrow();
    expect(sink.events).toEqual([]);
    expect(warnings).toEqual([]);
    expect(handler.stats()).toMatchObject({ metered: 0, failed: 0, open: 0 });
  });

  it("the same run id ending twice: billed once", () => {
    const { sink, handler } = setup();
    handler.handleChatModelStart({} as never, [], "twice", undefined, {}, [], { subject: "acme" });
    handler.handleLLMEnd(reported(usage(5, 6)) as never, "twice");
    handler.handleLLMEnd(reported(usage(5, 6)) as never, "twice");
    expect(sink.events.map((e) => e.id)).toEqual(["twice-input", "twice-output"]);
  });

  it("the same run id started twice (chat and llm start both fire): one open run, billed once", () => {
    const { sink, handler } = setup();
    handler.handleChatModelStart({} as never, [], "dup", undefined, {}, [], { subject: "acme" });
    handler.handleLLMStart({} as never, [], "dup", undefined, {}, [], { subject: "acme" });
    expect(handler.stats().open).toBe(1);
    handler.handleLLMEnd(reported(usage(5, 6)) as never, "dup");
    expect(sink.events.map((e) => e.id)).toEqual(["dup-input", "dup-output"]);
  });

  it("a run id passed to a second call after the first ended: the second is billed under its own ids, and the user told", () => {
    const { sink, run, handler, warnings } = setup();
    run({ subject: "acme" }, reported(usage(5, 6)), "replayed");
    run({ subject: "acme" }, reported(usage(7, 8)), "replayed");
    run({ subject: "acme" }, reported(usage(1, 2)), "replayed");
    // The provider billed three calls: same ids would have let de-duplication keep only the first.
    expect(sink.events.map((e) => [e.id, e.data!.tokens])).toEqual([
      ["replayed-input", 5],
      ["replayed-output", 6],
      ["replayed~2-input", 7],
      ["replayed~2-output", 8],
      ["replayed~3-input", 1],
      ["replayed~3-output", 2],
    ]);
    expect(handler.stats().duplicateRunIds).toBe(2);
    expect(warnings.filter((w) => w.includes("run id replayed was passed to more than one model call"))).toHaveLength(1);
  });

  it("one handler on many models at once: each run billed with its own model and usage", async () => {
    const { sink, handler } = setup();
    const models = ["gpt-4o-mini", "claude-sonnet", "llama-3"].map(
      (name, i) => new ScriptedChatModel(() => ({ usage: usage(10 * (i + 1), i + 1) }), name, `provider-${i}`, { callbacks: [handler] }),
    );
    await Promise.all(models.flatMap((model) => [model.invoke("a", { metadata: { subject: "acme" } }), model.invoke("b", { metadata: { subject: "acme" } })]));
    await handler.flush();
    const byModel: Record<string, number[]> = {};
    for (const e of sink.events) (byModel[e.data!.model as string] ??= []).push(e.data!.tokens as number);
    expect(byModel).toEqual({ "gpt-4o-mini": [10, 1, 10, 1], "claude-sonnet": [20, 2, 20, 2], "llama-3": [30, 3, 30, 3] });
    expect(new Set(sink.events.map((e) => e.id)).size).toBe(12);
  });

  it("two handler instances on one call: each emits the same ids, so one endpoint bills the call once", async () => {
    const a = setup();
    const b = setup();
    const model = new ScriptedChatModel(() => ({ usage: usage(9, 4) }), "m", "p", { callbacks: [a.handler, b.handler] });
    await model.invoke("x", { metadata: { subject: "acme" } });
    await a.handler.flush();
    await b.handler.flush();
    expect(a.sink.events.map((e) => e.id)).toEqual(b.sink.events.map((e) => e.id));
    expect(tokens(a.sink.events)).toEqual([
      ["input", 9],
      ["output", 4],
    ]);
  });

  it("a call after shutdown() is not metered, the user's call still answers, and the user is told once", async () => {
    const { sink, handler, warnings } = setup();
    await handler.shutdown();
    const model = new ScriptedChatModel(() => ({ usage: usage(1, 1), text: "still here" }), "m", "p", { callbacks: [handler] });
    const answers = [await model.invoke("a", { metadata: { subject: "acme" } }), await model.invoke("b", { metadata: { subject: "acme" } })];
    expect(answers.map((m) => m.content)).toEqual(["still here", "still here"]);
    expect(sink.events).toEqual([]);
    expect(warnings.filter((w) => w.includes("after shutdown()"))).toHaveLength(1);
  });
});
