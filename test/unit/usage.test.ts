/**
 * Usage extraction (src/usage.ts) field by field: where LangChain puts the counts, which spelling
 * wins, how a missing count beside a total is derived, and which details survive. These pin what
 * the property tests (hardening/properties.test.ts) only bound: the exact numbers and where they came from.
 */
import { describe, expect, it } from "vitest";
import { count, detailsOf, extractUsage, fromUsageMetadata, isRecord, withDetails, type TokenUsage } from "../../src/usage";

const message = (usage_metadata: unknown) => ({ message: { usage_metadata } });
const exact = (input: number, output: number): TokenUsage => ({ input, output, inputEstimated: false, outputEstimated: false });

describe("extractUsage: where the counts are read", () => {
  it("no output, no generations, no llmOutput: missing, with the detail the warning shows", () => {
    const missing = { ok: false, problem: "missing", detail: "the model reported no token usage" };
    expect(extractUsage(undefined)).toStrictEqual(missing);
    expect(extractUsage({ generations: undefined } as never)).toStrictEqual(missing);
    expect(extractUsage({ generations: [], llmOutput: null } as never)).toStrictEqual(missing);
    expect(extractUsage({ generations: [], llmOutput: { tokenUsage: 5 } } as never)).toStrictEqual(missing);
  });

  it("skips batches and generations that are not what LangChain builds, and takes the first usage_metadata found", () => {
    const output = {
      generations: [null, [null, {}, { message: {} }, message(null), message({ input_tokens: 3, output_tokens: 4 })], [message({ input_tokens: 9, output_tokens: 9 })]],
    };
    expect(extractUsage(output as never)).toStrictEqual({ ok: true, where: "usage_metadata", usage: exact(3, 4) });
  });

  it("usage_metadata on the message comes before llmOutput.tokenUsage", () => {
    const output = { generations: [[message({ input_tokens: 1, output_tokens: 2 })]], llmOutput: { tokenUsage: { promptTokens: 7, completionTokens: 8 } } };
    expect(extractUsage(output as never)).toMatchObject({ ok: true, where: "usage_metadata", usage: { input: 1, output: 2 } });
  });

  it("llmOutput.tokenUsage comes before estimatedTokenUsage, and only the estimate is flagged", () => {
    const both = { generations: [[{ text: "" }]], llmOutput: { tokenUsage: { promptTokens: 7, completionTokens: 8 }, estimatedTokenUsage: { promptTokens: 1, completionTokens: 1 } } };
    expect(extractUsage(both as never)).toStrictEqual({ ok: true, where: "tokenUsage", usage: exact(7, 8) });
    const estimate = { generations: [], llmOutput: { estimatedTokenUsage: { promptTokens: 5, completionTokens: 6 } } };
    expect(extractUsage(estimate as never)).toStrictEqual({
      ok: true,
      where: "estimatedTokenUsage",
      usage: { input: 5, output: 6, inputEstimated: true, outputEstimated: true },
    });
  });

  it("llmOutput.tokenUsage: each provider's spelling of the counts is read", () => {
    const read = (tokenUsage: Record<string, unknown>) => extractUsage({ generations: [], llmOutput: { tokenUsage } } as never);
    expect(read({ promptTokens: 1, completionTokens: 2 })).toMatchObject({ usage: { input: 1, output: 2 } });
    expect(read({ prompt_tokens: 3, completion_tokens: 4 })).toMatchObject({ usage: { input: 3, output: 4 } });
    expect(read({ input_tokens: 5, output_tokens: 6 })).toMatchObject({ usage: { input: 5, output: 6 } });
    // camelCase first, then snake_case, then the input_/output_ names.
    expect(read({ promptTokens: 1, prompt_tokens: 2, input_tokens: 3, completionTokens: 4, completion_tokens: 5, output_tokens: 6 })).toMatchObject({
      usage: { input: 1, output: 4 },
    });
    expect(read({ prompt_tokens: 2, input_tokens: 3, completion_tokens: 5, output_tokens: 6 })).toMatchObject({ usage: { input: 2, output: 5 } });
    // A total in either spelling fills in a count left out.
    expect(read({ promptTokens: 10, totalTokens: 15 })).toMatchObject({ usage: { input: 10, output: 5 } });
    expect(read({ promptTokens: 10, total_tokens: 12 })).toMatchObject({ usage: { input: 10, output: 2 } });
    expect(read({ promptTokens: 10, totalTokens: 15, total_tokens: 12 })).toMatchObject({ usage: { input: 10, output: 5 } });
  });

  it("llmOutput.tokenUsage with no usable counts: invalid, naming where and what was there", () => {
    expect(extractUsage({ generations: [], llmOutput: { tokenUsage: { promptTokens: "many" } } } as never)).toStrictEqual({
      ok: false,
      problem: "invalid",
      detail: 'llmOutput.tokenUsage has no usable token counts (input "many", output undefined)',
    });
    expect(extractUsage({ generations: [], llmOutput: { estimatedTokenUsage: { completionTokens: -1 } } } as never)).toMatchObject({
      detail: "llmOutput.estimatedTokenUsage has no usable token counts (input undefined, output -1)",
    });
  });
});

describe("fromUsageMetadata: LangChain's UsageMetadata", () => {
  it("maps every detail to its field, each part of its total", () => {
    const result = fromUsageMetadata({
      input_tokens: 100,
      output_tokens: 50,
      input_token_details: { cache_read: 10, cache_creation: 30, ephemeral_5m_input_tokens: 20, ephemeral_1h_input_tokens: 10, audio: 5 },
      output_token_details: { reasoning: 7, audio: 3 },
    });
    expect(result).toStrictEqual({
      ok: true,
      where: "usage_metadata",
      usage: { ...exact(100, 50), cacheRead: 10, cacheWrite: 30, cacheWrite5m: 20, cacheWrite1h: 10, audioInput: 5, reasoning: 7, audioOutput: 3 },
    });
  });

  it("details that are not records are ignored, not read", () => {
    expect(fromUsageMetadata({ input_tokens: 1, output_tokens: 2, input_token_details: [5], output_token_details: "x" })).toStrictEqual({
      ok: true,
      where: "usage_metadata",
      usage: exact(1, 2),
    });
    expect(fromUsageMetadata({ input_tokens: 1, output_tokens: 2 })).toStrictEqual({ ok: true, where: "usage_metadata", usage: exact(1, 2) });
  });

  it("both counts present: the total changes neither (Gemini's total also holds the thinking)", () => {
    expect(fromUsageMetadata({ input_tokens: 10, output_tokens: 5, total_tokens: 18 })).toMatchObject({ usage: { input: 10, output: 5 } });
    expect(fromUsageMetadata({ input_tokens: 10, output_tokens: 5, total_tokens: 12 })).toMatchObject({ usage: { input: 10, output: 5 } });
  });

  it("a count left out beside a total is the total's remainder (even 0); one present but unusable is never guessed", () => {
    expect(fromUsageMetadata({ input_tokens: 10, total_tokens: 15 })).toMatchObject({ usage: { input: 10, output: 5 } });
    expect(fromUsageMetadata({ input_tokens: 10, output_tokens: null, total_tokens: 10 })).toMatchObject({ usage: { input: 10, output: 0 } });
    expect(fromUsageMetadata({ output_tokens: 4, total_tokens: 15 })).toMatchObject({ usage: { input: 11, output: 4 } });
    expect(fromUsageMetadata({ input_tokens: null, output_tokens: 4, total_tokens: 4 })).toMatchObject({ usage: { input: 0, output: 4 } });
    // A total below the count it should contain, no total, or a value that is there but no count: invalid.
    expect(fromUsageMetadata({ input_tokens: 10, total_tokens: 9 })).toMatchObject({ ok: false, problem: "invalid" });
    expect(fromUsageMetadata({ output_tokens: 10, total_tokens: 9 })).toMatchObject({ ok: false, problem: "invalid" });
    expect(fromUsageMetadata({ input_tokens: 10 })).toMatchObject({ ok: false, problem: "invalid" });
    expect(fromUsageMetadata({ output_tokens: 10 })).toMatchObject({ ok: false, problem: "invalid" });
    expect(fromUsageMetadata({ input_tokens: 10, output_tokens: "x", total_tokens: 15 })).toMatchObject({ ok: false, problem: "invalid" });
    expect(fromUsageMetadata({ input_tokens: -1, output_tokens: 4, total_tokens: 15 })).toMatchObject({ ok: false, problem: "invalid" });
    expect(fromUsageMetadata({ total_tokens: 15 })).toMatchObject({ ok: false, problem: "invalid" });
  });

  it("invalid: the detail shows strings quoted and cut at 40 characters, bigints with n", () => {
    expect(fromUsageMetadata({ input_tokens: "x".repeat(50), output_tokens: 12n })).toStrictEqual({
      ok: false,
      problem: "invalid",
      detail: `usage_metadata has no usable token counts (input "${"x".repeat(40)}", output 12n)`,
    });
    expect(fromUsageMetadata({ input_tokens: 1.5, output_tokens: null })).toMatchObject({
      detail: "usage_metadata has no usable token counts (input 1.5, output null)",
    });
  });
});

describe("withDetails: only details that fit inside their totals", () => {
  it("cache reads and writes are kept when together they fit in the input (exactly, too), and dropped together when not", () => {
    expect(withDetails(exact(10, 0), { cacheRead: 4, cacheWrite: 6 })).toStrictEqual({ ...exact(10, 0), cacheRead: 4, cacheWrite: 6 });
    expect(withDetails(exact(10, 0), { cacheRead: 5, cacheWrite: 6 })).toStrictEqual(exact(10, 0));
    expect(withDetails(exact(10, 0), { cacheRead: 11 })).toStrictEqual(exact(10, 0));
    expect(withDetails(exact(10, 0), { cacheWrite: 11 })).toStrictEqual(exact(10, 0));
    expect(withDetails(exact(10, 0), { cacheRead: 10 })).toStrictEqual({ ...exact(10, 0), cacheRead: 10 });
    expect(withDetails(exact(10, 0), { cacheWrite: 10 })).toStrictEqual({ ...exact(10, 0), cacheWrite: 10 });
  });

  it("zero or absent details are left out, not set to 0 or undefined", () => {
    expect(withDetails(exact(10, 10), { cacheRead: 0, cacheWrite: 0, cacheWrite5m: 0, cacheWrite1h: 0, audioInput: 0, reasoning: 0, audioOutput: 0 })).toStrictEqual(
      exact(10, 10),
    );
    expect(withDetails(exact(10, 10), {})).toStrictEqual(exact(10, 10));
  });

  it("the TTL split is kept only when it accounts for every cache write, and only with writes", () => {
    expect(withDetails(exact(10, 0), { cacheWrite: 6, cacheWrite5m: 4, cacheWrite1h: 2 })).toStrictEqual({ ...exact(10, 0), cacheWrite: 6, cacheWrite5m: 4, cacheWrite1h: 2 });
    expect(withDetails(exact(10, 0), { cacheWrite: 6, cacheWrite5m: 6 })).toStrictEqual({ ...exact(10, 0), cacheWrite: 6, cacheWrite5m: 6 });
    expect(withDetails(exact(10, 0), { cacheWrite: 6, cacheWrite1h: 6 })).toStrictEqual({ ...exact(10, 0), cacheWrite: 6, cacheWrite1h: 6 });
    expect(withDetails(exact(10, 0), { cacheWrite: 6, cacheWrite5m: 4, cacheWrite1h: 1 })).toStrictEqual({ ...exact(10, 0), cacheWrite: 6 });
    expect(withDetails(exact(10, 0), { cacheWrite: 6, cacheWrite5m: 4, cacheWrite1h: 3 })).toStrictEqual({ ...exact(10, 0), cacheWrite: 6 });
    expect(withDetails(exact(10, 0), { cacheWrite5m: 4, cacheWrite1h: 2 })).toStrictEqual(exact(10, 0));
    // Writes that do not fit take their split with them.
    expect(withDetails(exact(5, 0), { cacheWrite: 6, cacheWrite5m: 6 })).toStrictEqual(exact(5, 0));
  });

  it("audio and reasoning: kept up to their side's total (exactly, too), dropped above it", () => {
    expect(withDetails(exact(10, 8), { audioInput: 10, reasoning: 8 })).toStrictEqual({ ...exact(10, 8), audioInput: 10, reasoning: 8 });
    expect(withDetails(exact(10, 8), { audioInput: 11, reasoning: 9, audioOutput: 9 })).toStrictEqual(exact(10, 8));
    expect(withDetails(exact(10, 8), { audioOutput: 8 })).toStrictEqual({ ...exact(10, 8), audioOutput: 8 });
    // Each side against its own total, not the other's.
    expect(withDetails(exact(3, 20), { audioInput: 5, reasoning: 15, audioOutput: 4 })).toStrictEqual({ ...exact(3, 20), reasoning: 15, audioOutput: 4 });
    expect(withDetails(exact(20, 3), { audioInput: 15, reasoning: 5, audioOutput: 4 })).toStrictEqual({ ...exact(20, 3), audioInput: 15 });
  });

  it("keeps the estimate flags and never carries a detail the input did not have", () => {
    const estimated: TokenUsage = { input: 4, output: 2, inputEstimated: true, outputEstimated: false, reasoning: 1 };
    expect(withDetails(estimated, {})).toStrictEqual({ input: 4, output: 2, inputEstimated: true, outputEstimated: false });
    expect(withDetails({ ...estimated, inputEstimated: false, outputEstimated: true }, {})).toStrictEqual({ input: 4, output: 2, inputEstimated: false, outputEstimated: true });
  });
});

describe("detailsOf", () => {
  it("gives back every detail of a usage, for re-applying to corrected totals", () => {
    const usage: TokenUsage = { ...exact(100, 50), cacheRead: 1, cacheWrite: 2, cacheWrite5m: 3, cacheWrite1h: 4, audioInput: 5, reasoning: 6, audioOutput: 7 };
    expect(detailsOf(usage)).toStrictEqual({ cacheRead: 1, cacheWrite: 2, cacheWrite5m: 3, cacheWrite1h: 4, audioInput: 5, reasoning: 6, audioOutput: 7 });
    expect(withDetails(exact(100, 50), detailsOf({ ...usage, cacheWrite5m: 1, cacheWrite1h: 1 }))).toStrictEqual({
      ...exact(100, 50),
      cacheRead: 1,
      cacheWrite: 2,
      cacheWrite5m: 1,
      cacheWrite1h: 1,
      audioInput: 5,
      reasoning: 6,
      audioOutput: 7,
    });
  });
});

describe("count: a non-negative safe integer, or its decimal string", () => {
  it("accepts 0, integers and whole floats, and decimal strings of them", () => {
    expect(count(0)).toBe(0);
    expect(count(12)).toBe(12);
    expect(count(3.0)).toBe(3);
    expect(count("12")).toBe(12);
    expect(count("0")).toBe(0);
    expect(count(Number.MAX_SAFE_INTEGER)).toBe(Number.MAX_SAFE_INTEGER);
  });

  it("refuses negatives, fractions, unsafe integers, and strings that are not only digits", () => {
    for (const value of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, "-1", "1.5", " 12", "12 ", "1e3", "", "x", null, undefined, true, 12n, {}]) {
      expect(count(value), String(value)).toBeUndefined();
    }
  });

  it("refuses values that only look like a number when turned into a string", () => {
    // String([7]) is "7" and Number([7]) is 7: only a real string may be parsed.
    expect(count([7])).toBeUndefined();
    expect(count({ toString: () => "5", valueOf: () => 5 })).toBeUndefined();
  });
});

describe("isRecord", () => {
  it("is true for plain objects only", () => {
    expect(isRecord({})).toBe(true);
    expect(isRecord({ a: 1 })).toBe(true);
    expect(isRecord(null)).toBe(false);
    expect(isRecord([])).toBe(false);
    expect(isRecord("x")).toBe(false);
    expect(isRecord(1)).toBe(false);
    expect(isRecord(undefined)).toBe(false);
  });
});
