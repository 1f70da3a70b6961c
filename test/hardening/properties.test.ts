/**
 * Property-based tests (fast-check) for usage extraction and event building: whatever usage shape a
 * provider reports, the events are valid CloudEvents with non-negative integer tokens that add up to
 * exactly the reported input + output; and a shape with no usable counts yields no event and a warning.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { cloudEventSchema, MeteringCallbackHandler, type CloudEvent } from "langchain-openmeter";
import { isPlainValidEvent } from "../../src/cloudevent";
import { buildEvents } from "../../src/events";
import { extractUsage } from "../../src/usage";
import { MemorySink, recordingLogger } from "../support/memory-sink";

const count = fc.nat({ max: 2_000_000_000 });
/** A count as providers send it: a number, now and then a whole float or a decimal string. */
const sent = (n: number) => fc.constantFrom<unknown>(n, n + 0.0, String(n));
const countAsSent = count.chain((n) => sent(n).map((raw) => ({ n, raw })));

/** A detail value: usually a count, sometimes garbage a provider might put there (ignored). */
const detail = fc.oneof(
  { weight: 4, arbitrary: count.map((n) => n as unknown) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(-1, 1.5, Number.NaN, "x", null, undefined, {}) },
);

interface Reported {
  /** The LLMResult handed to handleLLMEnd. */
  output: unknown;
  input: number;
  outputTokens: number;
  estimated: boolean;
}

const usageMetadata: fc.Arbitrary<Reported> = fc
  .record({
    input: countAsSent,
    output: countAsSent,
    total: fc.option(count, { nil: undefined }),
    inputDetails: fc.option(fc.record({ cache_read: detail, cache_creation: detail, audio: detail }, { requiredKeys: [] }), { nil: undefined }),
    outputDetails: fc.option(fc.record({ reasoning: detail, audio: detail }, { requiredKeys: [] }), { nil: undefined }),
    n: fc.integer({ min: 1, max: 3 }),
    llmOutputToo: fc.boolean(),
  })
  .map(({ input, output, total, inputDetails, outputDetails, n, llmOutputToo }) => {
    const usage = {
      input_tokens: input.raw,
      output_tokens: output.raw,
      total_tokens: total ?? input.n + output.n,
      ...(inputDetails ? { input_token_details: inputDetails } : {}),
      ...(outputDetails ? { output_token_details: outputDetails } : {}),
    };
    // n > 1: every generation carries the same object. llmOutput may carry other numbers (ignored).
    const generations = [Array.from({ length: n }, () => ({ text: "", message: { usage_metadata: usage } }))];
    const llmOutput = llmOutputToo ? { tokenUsage: { promptTokens: 1, completionTokens: 1, totalTokens: 2 } } : undefined;
    return { output: { generations, llmOutput }, input: input.n, outputTokens: output.n, estimated: false };
  });

const tokenUsage: fc.Arbitrary<Reported> = fc
  .record({ input: countAsSent, output: countAsSent, estimated: fc.boolean(), snake: fc.boolean() })
  .map(({ input, output, estimated, snake }) => {
    const counts = snake
      ? { prompt_tokens: input.raw, completion_tokens: output.raw }
      : { promptTokens: input.raw, completionTokens: output.raw, totalTokens: input.n + output.n };
    const llmOutput = estimated ? { estimatedTokenUsage: counts } : { tokenUsage: counts };
    return { output: { generations: [[{ text: "" }]], llmOutput }, input: input.n, outputTokens: output.n, estimated };
  });

const validReport = fc.oneof(usageMetadata, tokenUsage);

/** A value that is no token count. */
const notACount = fc.oneof(
  fc.integer({ max: -1 }),
  fc.double({ noInteger: true }),
  fc.constantFrom<unknown>(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 2 ** 53, null, undefined, true, {}, [], "", " 1", "1e3", "-1", "ten"),
  fc.string().filter((s) => !/^\d+$/.test(s)),
  fc.bigInt().map((b) => b as unknown),
);

/** Shapes with no usable counts: one side (or both) is garbage, or there is no usage at all. */
const invalidReport = fc.oneof(
  fc
    .record({ input: fc.oneof(count.map((n) => n as unknown), notACount), output: notACount, swap: fc.boolean() })
    .map(({ input, output, swap }) => ({
      generations: [[{ text: "", message: { usage_metadata: swap ? { input_tokens: output, output_tokens: input } : { input_tokens: input, output_tokens: output } } }]],
    })),
  fc.record({ input: notACount, output: fc.oneof(count.map((n) => n as unknown), notACount) }).map(({ input, output }) => ({
    generations: [[{ text: "" }]],
    llmOutput: { tokenUsage: { promptTokens: input, completionTokens: output } },
  })),
  fc.constantFrom<unknown>(
    undefined,
    null,
    {},
    { generations: [] },
    { generations: [[]] },
    { generations: "x" },
    { generations: [[{ text: "" }]], llmOutput: { usage: { input_tokens: 1, output_tokens: 1 } } },
    { generations: [[{ text: "", message: { usage_metadata: "10 tokens" } }]] },
    { generations: [[{ text: "", message: { usage_metadata: [1, 2] } }]] },
  ),
);

const settings = fc.record({
  source: fc.constantFrom("langchain", "my-app"),
  eventType: fc.constant("kong.llm_request"),
  splitTokenTypes: fc.boolean(),
  serverToolEventType: fc.constant("llm.server_tool_request"),
});

const OUTPUT_SIDE = new Set(["output", "reasoning", "output_audio"]);

function checkEvents(events: CloudEvent[], reported: Reported): void {
  for (const event of events) {
    expect(cloudEventSchema.safeParse(event).success).toBe(true);
    const tokens = event.data!.tokens as number;
    expect(Number.isSafeInteger(tokens) && tokens >= 0).toBe(true);
    expect(() => JSON.parse(JSON.stringify(event))).not.toThrow();
  }
  expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
  const sum = events.reduce((total, e) => total + (e.data!.tokens as number), 0);
  expect(sum).toBe(reported.input + reported.outputTokens);
  // Split or not, the output side (output, and split out: reasoning, output audio) is the reported output.
  const outputSide = events.filter((e) => OUTPUT_SIDE.has(e.data!.type as string)).reduce((total, e) => total + (e.data!.tokens as number), 0);
  expect(outputSide).toBe(reported.outputTokens);
  expect(events.every((e) => (e.data!.estimated === true) === reported.estimated)).toBe(true);
}

describe("usage extraction and event building (properties)", () => {
  it("any valid report: valid CloudEvents, non-negative integer tokens, sum = input + output (split or not)", () => {
    fc.assert(
      fc.property(validReport, settings, (reported, eventSettings) => {
        const result = extractUsage(reported.output as never);
        expect(result.ok).toBe(true);
        if (!result.ok) return;
        const events = buildEvents({ billingId: "r-1", subject: "acme", time: new Date(0).toISOString(), usage: result.usage, model: "m" }, eventSettings);
        checkEvents(events, reported);
      }),
      { numRuns: 500 },
    );
  });

  it("any report with no usable counts: extraction says so (never throws, never invents numbers)", () => {
    fc.assert(
      fc.property(invalidReport, (output) => {
        const result = extractUsage(output as never);
        expect(result.ok).toBe(false);
      }),
      { numRuns: 500 },
    );
  });
});

describe("through the handler's callbacks (properties)", () => {
  it("valid reports: what reaches the sink is exactly the report, with and without splitTokenTypes", () => {
    for (const splitTokenTypes of [false, true]) {
      const sink = new MemorySink();
      const log = recordingLogger();
      const handler = new MeteringCallbackHandler({ client: sink, logger: log.logger, splitTokenTypes });
      let i = 0;
      fc.assert(
        fc.property(validReport, (reported) => {
          sink.events.length = 0;
          const runId = `run-${i++}`;
          handler.handleChatModelStart({} as never, [], runId, undefined, {}, [], { subject: "acme", ls_model_name: "m", ls_provider: "p" });
          handler.handleLLMEnd(reported.output as never, runId);
          checkEvents(sink.events, reported);
          expect(sink.events.every((e) => e.id.startsWith(`${runId}-`))).toBe(true);
        }),
        { numRuns: 300 },
      );
      expect(log.errors).toEqual([]);
      expect(handler.stats().open).toBe(0);
      void handler.shutdown();
    }
  });

  it("invalid reports: no event, one warning, the run is freed", () => {
    const sink = new MemorySink();
    const log = recordingLogger();
    const handler = new MeteringCallbackHandler({ client: sink, logger: log.logger });
    let i = 0;
    fc.assert(
      fc.property(invalidReport, (output) => {
        const runId = `bad-${i++}`;
        const before = log.warnings.length;
        // A model name per run: the handler warns once per model and problem.
        handler.handleChatModelStart({} as never, [], runId, undefined, {}, [], { subject: "acme", ls_model_name: `model-${runId}` });
        expect(() => handler.handleLLMEnd(output as never, runId)).not.toThrow();
        expect(sink.events).toEqual([]);
        expect(log.warnings.length - before).toBe(1);
        expect(log.warnings.at(-1)).toMatch(/nothing was billed for this call/);
      }),
      { numRuns: 300 },
    );
    expect(log.errors).toEqual([]);
    expect(handler.stats()).toMatchObject({ open: 0, metered: 0, missingUsage: i });
    void handler.shutdown();
  });
});

describe("isPlainValidEvent, the client's fast path before zod", () => {
  const attribute = fc.oneof(fc.string(), fc.constant(""), fc.integer(), fc.constant(null), fc.constant(undefined));
  // Mostly valid, each field sometimes not: an invalid field then has to be caught on its own.
  const mostly = <T, U>(valid: fc.Arbitrary<T>, other: fc.Arbitrary<U>) =>
    fc.oneof({ arbitrary: valid, weight: 6 }, { arbitrary: other, weight: 1 });
  const time = mostly(
    fc.date({ min: new Date("1970-01-01"), max: new Date("2100-01-01"), noInvalidDate: true }).map((d) => d.toISOString()),
    fc.oneof(
      fc.constantFrom("2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z", "2026-02-28T24:00:00Z", "2026-02-28T10:00:00+05:30", "yesterday", "2023-02-29T00:00:00Z"),
      attribute,
    ),
  );
  const event = fc.record(
    {
      specversion: mostly(fc.constant("1.0"), fc.oneof(fc.constant("0.3"), attribute)),
      id: mostly(fc.string({ minLength: 1 }), attribute),
      source: mostly(fc.string({ minLength: 1 }), attribute),
      type: mostly(fc.string({ minLength: 1 }), attribute),
      subject: mostly(fc.string({ minLength: 1 }), attribute),
      time,
      data: mostly(fc.dictionary(fc.string(), fc.jsonValue()), fc.oneof(fc.constant(null), fc.array(fc.integer()), attribute)),
      datacontenttype: fc.oneof(fc.constant("application/json"), attribute),
      extra: attribute,
    },
    { requiredKeys: ["specversion", "id", "source", "type", "subject"] },
  );

  it("never accepts what cloudEventSchema refuses", () => {
    fc.assert(
      fc.property(event, (candidate) => {
        if (isPlainValidEvent(candidate)) expect(cloudEventSchema.safeParse(candidate).success).toBe(true);
      }),
      { numRuns: 5000 },
    );
  });

  it("refuses data that is not a plain object (a Map, a Date, a class instance) as the schema does", () => {
    const base = { specversion: "1.0", id: "a", source: "s", type: "t", subject: "x" };
    for (const data of [new Date(), new Map([["a", 1]]), new (class Usage { tokens = 1 })()]) {
      expect(isPlainValidEvent({ ...base, data })).toBe(false);
      expect(cloudEventSchema.safeParse({ ...base, data }).success).toBe(false);
    }
    expect(isPlainValidEvent({ ...base, data: Object.create(null) })).toBe(true);
  });

  it("accepts the events the handler builds", () => {
    const built = { specversion: "1.0", id: "r-input", source: "langchain", type: "kong.llm_request", subject: "acme", time: new Date().toISOString(), data: { type: "input", tokens: 1 } };
    expect(isPlainValidEvent(built)).toBe(true);
  });
});
