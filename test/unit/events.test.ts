/**
 * Event building (src/events.ts): the exact CloudEvents one run's usage becomes, in both modes, with
 * the details, flags and ids a meter and de-duplication depend on.
 */
import { describe, expect, it } from "vitest";
import { buildEvents, RESERVED_DATA_KEYS, tokenBuckets, type EventSettings, type UsageRecord } from "../../src/events";
import type { TokenUsage } from "../../src/usage";

const settings: EventSettings = { source: "app", eventType: "tokens", splitTokenTypes: false, serverToolEventType: "tool-requests" };
const split: EventSettings = { ...settings, splitTokenTypes: true };
const exact = (input: number, output: number, details: Partial<TokenUsage> = {}): TokenUsage => ({
  input,
  output,
  inputEstimated: false,
  outputEstimated: false,
  ...details,
});
const record = (usage: TokenUsage, more: Partial<UsageRecord> = {}): UsageRecord => ({
  billingId: "run-1",
  subject: "acme",
  time: "2025-01-02T03:04:05.678Z",
  usage,
  ...more,
});
const kinds = (events: ReturnType<typeof buildEvents>) => events.map((e) => [e.data!.type ?? e.data!.tool, e.data!.tokens ?? e.data!.requests]);

describe("buildEvents: input and output", () => {
  it("two events, whole envelope, ids derived from the billing id", () => {
    expect(buildEvents(record(exact(10, 5)), settings)).toStrictEqual([
      { specversion: "1.0", id: "run-1-input", source: "app", type: "tokens", subject: "acme", time: "2025-01-02T03:04:05.678Z", data: { type: "input", tokens: 10 } },
      { specversion: "1.0", id: "run-1-output", source: "app", type: "tokens", subject: "acme", time: "2025-01-02T03:04:05.678Z", data: { type: "output", tokens: 5 } },
    ]);
  });

  it("each detail rides on its own side's event; zero details are left out", () => {
    const usage = exact(100, 50, { cacheRead: 10, cacheWrite: 30, cacheWrite5m: 20, cacheWrite1h: 10, audioInput: 5, reasoning: 7, audioOutput: 3 });
    const [input, output] = buildEvents(record(usage), settings);
    expect(input!.data).toStrictEqual({
      type: "input",
      tokens: 100,
      cached_tokens: 10,
      cache_write_tokens: 30,
      cache_write_5m_tokens: 20,
      cache_write_1h_tokens: 10,
      audio_tokens: 5,
    });
    expect(output!.data).toStrictEqual({ type: "output", tokens: 50, reasoning_tokens: 7, audio_tokens: 3 });
    const zeros = buildEvents(record(exact(1, 1, { cacheRead: 0, reasoning: 0, audioInput: 0, audioOutput: 0 })), settings);
    expect(zeros.map((e) => e.data)).toStrictEqual([
      { type: "input", tokens: 1 },
      { type: "output", tokens: 1 },
    ]);
  });

  it("the call's description, status and the user's metadata ride on every event; estimated only on the estimated side", () => {
    const events = buildEvents(
      record(exact(3, 4, { inputEstimated: false, outputEstimated: true }), {
        model: "m",
        provider: "p",
        responseModel: "m-2025",
        status: "aborted",
        extra: { team: "x", tier: 2 },
      }),
      settings,
    );
    expect(events.map((e) => e.data)).toStrictEqual([
      { type: "input", tokens: 3, model: "m", provider: "p", response_model: "m-2025", status: "aborted", team: "x", tier: 2 },
      { type: "output", tokens: 4, model: "m", provider: "p", response_model: "m-2025", status: "aborted", estimated: true, team: "x", tier: 2 },
    ]);
    const inputEstimated = buildEvents(record(exact(3, 4, { inputEstimated: true })), settings);
    expect(inputEstimated.map((e) => e.data!.estimated)).toStrictEqual([true, undefined]);
    expect("estimated" in inputEstimated[1]!.data!).toBe(false);
  });

  it("a call without model, provider, status or metadata has none of those fields", () => {
    const [input] = buildEvents(record(exact(3, 4)), settings);
    expect(Object.keys(input!.data!)).toStrictEqual(["type", "tokens"]);
  });
});

describe("buildEvents: split token types", () => {
  it("disjoint buckets that add up to input + output, with kind-derived ids", () => {
    const usage = exact(100, 50, { cacheRead: 10, cacheWrite: 30, cacheWrite1h: 10, cacheWrite5m: 20, audioInput: 5, reasoning: 7, audioOutput: 3 });
    const events = buildEvents(record(usage), split);
    expect(kinds(events)).toStrictEqual([
      ["input", 55],
      ["output", 40],
      ["cache_read", 10],
      ["cache_write", 20],
      ["cache_write_1h", 10],
      ["input_audio", 5],
      ["reasoning", 7],
      ["output_audio", 3],
    ]);
    expect(events.map((e) => e.id)).toStrictEqual([
      "run-1-input",
      "run-1-output",
      "run-1-cache_read",
      "run-1-cache_write",
      "run-1-cache_write_1h",
      "run-1-input_audio",
      "run-1-reasoning",
      "run-1-output_audio",
    ]);
    // Split events carry no detail fields: the buckets are the details.
    expect(events[0]!.data).toStrictEqual({ type: "input", tokens: 55 });
  });

  it("estimated follows each bucket's side, for every kind of bucket", () => {
    const usage = { input: 100, output: 50, cacheRead: 10, cacheWrite: 30, cacheWrite1h: 10, audioInput: 5, reasoning: 7, audioOutput: 3 };
    const inputSide = buildEvents(record({ ...usage, inputEstimated: true, outputEstimated: false }), split);
    expect(inputSide.map((e) => [e.data!.type, e.data!.estimated])).toStrictEqual([
      ["input", true],
      ["output", undefined],
      ["cache_read", true],
      ["cache_write", true],
      ["cache_write_1h", true],
      ["input_audio", true],
      ["reasoning", undefined],
      ["output_audio", undefined],
    ]);
    const outputSide = buildEvents(record({ ...usage, inputEstimated: false, outputEstimated: true }), split);
    expect(outputSide.filter((e) => e.data!.estimated).map((e) => e.data!.type)).toStrictEqual(["output", "reasoning", "output_audio"]);
  });

  it("estimated follows each bucket's side", () => {
    const events = buildEvents(record(exact(10, 10, { cacheRead: 2, reasoning: 3, outputEstimated: true })), split);
    expect(events.map((e) => [e.data!.type, e.data!.estimated])).toStrictEqual([
      ["input", undefined],
      ["output", true],
      ["cache_read", undefined],
      ["reasoning", true],
    ]);
  });
});

describe("tokenBuckets", () => {
  it("input and output always, even at 0; other buckets only when non-zero", () => {
    expect(tokenBuckets(exact(0, 0))).toStrictEqual([
      { kind: "input", tokens: 0, side: "input" },
      { kind: "output", tokens: 0, side: "output" },
    ]);
    expect(tokenBuckets(exact(5, 0, { cacheRead: 5 })).map((b) => b.kind)).toStrictEqual(["input", "output", "cache_read"]);
  });

  it("audio is split out when it fits beside the cache counts (exactly, too), and stays in input or output when it does not", () => {
    expect(tokenBuckets(exact(10, 0, { cacheRead: 3, cacheWrite: 3, audioInput: 4 })).map((b) => [b.kind, b.tokens])).toStrictEqual([
      ["input", 0],
      ["output", 0],
      ["cache_read", 3],
      ["cache_write", 3],
      ["input_audio", 4],
    ]);
    expect(tokenBuckets(exact(10, 0, { cacheRead: 3, cacheWrite: 3, audioInput: 5 })).map((b) => [b.kind, b.tokens])).toStrictEqual([
      ["input", 4],
      ["output", 0],
      ["cache_read", 3],
      ["cache_write", 3],
    ]);
    expect(tokenBuckets(exact(0, 10, { reasoning: 6, audioOutput: 4 })).map((b) => [b.kind, b.tokens])).toStrictEqual([
      ["input", 0],
      ["output", 0],
      ["reasoning", 6],
      ["output_audio", 4],
    ]);
    expect(tokenBuckets(exact(0, 10, { reasoning: 6, audioOutput: 5 })).map((b) => [b.kind, b.tokens])).toStrictEqual([
      ["input", 0],
      ["output", 4],
      ["reasoning", 6],
    ]);
  });

  it("1-hour writes are their own bucket, the rest of the writes stay cache_write", () => {
    expect(tokenBuckets(exact(10, 0, { cacheWrite: 6, cacheWrite1h: 6 })).map((b) => [b.kind, b.tokens, b.side])).toStrictEqual([
      ["input", 4, "input"],
      ["output", 0, "output"],
      ["cache_write_1h", 6, "input"],
    ]);
  });
});

describe("buildEvents: server tools", () => {
  it("one event per tool with requests, of the server tool type, after the token events; a tool at 0 sends nothing", () => {
    const events = buildEvents(
      record(exact(1, 1), { serverTools: { web_search: 3, web_fetch: 0, file_search: 1 }, model: "m", provider: "p", responseModel: "m-1", extra: { team: "x" } }),
      settings,
    );
    expect(events.slice(2)).toStrictEqual([
      {
        specversion: "1.0",
        id: "run-1-tool-web_search",
        source: "app",
        type: "tool-requests",
        subject: "acme",
        time: "2025-01-02T03:04:05.678Z",
        data: { tool: "web_search", requests: 3, model: "m", provider: "p", response_model: "m-1", team: "x" },
      },
      {
        specversion: "1.0",
        id: "run-1-tool-file_search",
        source: "app",
        type: "tool-requests",
        subject: "acme",
        time: "2025-01-02T03:04:05.678Z",
        data: { tool: "file_search", requests: 1, model: "m", provider: "p", response_model: "m-1", team: "x" },
      },
    ]);
  });

  it("status and estimated ride on server tool events when the call says so", () => {
    const events = buildEvents(record(exact(1, 1), { serverTools: { web_search: 2 }, status: "error", serverToolsEstimated: true }), settings);
    expect(events[2]!.data).toStrictEqual({ tool: "web_search", requests: 2, status: "error", estimated: true });
    const exactCount = buildEvents(record(exact(1, 1), { serverTools: { web_search: 2 }, serverToolsEstimated: false }), settings);
    expect(exactCount[2]!.data).toStrictEqual({ tool: "web_search", requests: 2 });
  });
});

describe("RESERVED_DATA_KEYS", () => {
  it("holds every data field the events set themselves, so user metadata can never shadow one", () => {
    const usage = exact(100, 50, { cacheRead: 10, cacheWrite: 30, cacheWrite5m: 20, cacheWrite1h: 10, audioInput: 5, reasoning: 7, audioOutput: 3, inputEstimated: true, outputEstimated: true });
    const full = record(usage, { model: "m", provider: "p", responseModel: "r", status: "aborted", serverTools: { web_search: 1 }, serverToolsEstimated: true });
    const fields = new Set([...buildEvents(full, settings), ...buildEvents(full, split)].flatMap((e) => Object.keys(e.data!)));
    expect([...fields].sort()).toStrictEqual([...RESERVED_DATA_KEYS].sort());
  });
});
