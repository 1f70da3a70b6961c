/**
 * The provider corrections (src/providers/*.ts) on the evidence a run leaves: the integration tests
 * drive them through real LangChain integrations; these pin each rule and its edges directly.
 */
import type { LLMResult } from "@langchain/core/outputs";
import { describe, expect, it } from "vitest";
import { roughTokenEstimate } from "../../src/estimate";
import { anthropicBill } from "../../src/providers/anthropic";
import { bedrockBill } from "../../src/providers/bedrock";
import type { CallEvidence } from "../../src/providers/evidence";
import { googleBill } from "../../src/providers/google";
import { billFor } from "../../src/providers/index";
import { openAIBill } from "../../src/providers/openai";
import { StreamObserver } from "../../src/stream-observer";
import type { TokenUsage } from "../../src/usage";

const exact = (input: number, output: number, details: Partial<TokenUsage> = {}): TokenUsage => ({ input, output, inputEstimated: false, outputEstimated: false, ...details });
const um = (input_tokens: number, output_tokens: number) => ({ input_tokens, output_tokens, total_tokens: input_tokens + output_tokens });

interface Generation {
  message?: Record<string, unknown>;
  generationInfo?: Record<string, unknown>;
}
const output = (generation: Generation = { message: {} }): LLMResult => ({ generations: [[{ text: "", ...generation } as never]] });
function evidence(parts: { output?: LLMResult; stream?: StreamObserver; tools?: unknown; tapped?: CallEvidence["tapped"] } = {}): CallEvidence {
  return { output: parts.output ?? output(), stream: parts.stream ?? new StreamObserver(false), sent: { tools: parts.tools }, ...(parts.tapped ? { tapped: parts.tapped } : {}) };
}
/** An Anthropic chunk stream as @langchain/anthropic emits it: message_start's usage, text, then message_delta's. */
function anthropicChunks(start: { input: number; output: number }, text: string[], delta?: { output: number }, raw: Record<string, unknown> = {}): StreamObserver {
  const stream = new StreamObserver(false);
  stream.observeChunk("", { message: { id: "msg_1", usage_metadata: um(start.input, start.output), response_metadata: { usage: { input_tokens: start.input, output_tokens: start.output, ...raw } } } });
  for (const t of text) stream.observeChunk(t, { message: {} });
  if (delta) stream.observeChunk("", { message: { usage_metadata: um(0, delta.output), additional_kwargs: { stop_reason: "end_turn" } } });
  return stream;
}

describe("anthropicBill: invoke (no chunks, no stream events)", () => {
  it("keeps the usage, adds the TTL split, thinking as reasoning and server tool requests from the raw usage", () => {
    const raw = {
      input_tokens: 10,
      cache_creation: { ephemeral_5m_input_tokens: 20, ephemeral_1h_input_tokens: 30 },
      output_tokens_details: { thinking_tokens: 4 },
      server_tool_use: { web_search_requests: 2, web_fetch_requests: 0, other: 5 },
    };
    const bill = anthropicBill(exact(60, 9, { cacheWrite: 50 }), evidence({ output: output({ message: { response_metadata: { usage: raw, model: "claude-1" } } }) }), roughTokenEstimate);
    expect(bill).toStrictEqual({
      usage: exact(60, 9, { cacheWrite: 50, cacheWrite5m: 20, cacheWrite1h: 30, reasoning: 4 }),
      notes: [],
      responseModel: "claude-1",
      serverTools: { web_search: 2 },
    });
  });

  it("without a raw usage: the usage as reported, no server tools", () => {
    const bill = anthropicBill(exact(5, 6), evidence({ output: output({ message: { response_metadata: { usage: "x" } } }) }), roughTokenEstimate);
    expect(bill).toStrictEqual({ usage: exact(5, 6), notes: [], responseModel: undefined, serverTools: undefined });
    const noTools = anthropicBill(exact(5, 6), evidence({ output: output({ message: { response_metadata: { usage: { server_tool_use: { web_search_requests: 0 } } } } }) }), roughTokenEstimate);
    expect(noTools.serverTools).toBeUndefined();
    const notRecord = anthropicBill(exact(5, 6), evidence({ output: output({ message: { response_metadata: { usage: { server_tool_use: [3], output_tokens_details: 4, cache_creation: 7 } } } }) }), roughTokenEstimate);
    expect(notRecord).toStrictEqual({ usage: exact(5, 6), notes: [], responseModel: undefined, serverTools: undefined });
  });

  it("the served model: the stream's, then response_metadata.model, then additional_kwargs.model", () => {
    const served = (generation: Generation, stream?: StreamObserver) => anthropicBill(exact(1, 1), evidence({ output: output(generation), stream }), roughTokenEstimate).responseModel;
    expect(served({ message: { response_metadata: { model: "a" }, additional_kwargs: { model: "b" } } })).toBe("a");
    expect(served({ message: { response_metadata: { model: "" }, additional_kwargs: { model: "b" } } })).toBe("b");
    expect(served({ message: { additional_kwargs: "b" } })).toBeUndefined();
    const stream = new StreamObserver(false);
    stream.observeEvent({ event: "provider", name: "message_start", payload: { model: "s" } });
    stream.observeEvent({ event: "message-finish", usage: um(1, 1) });
    expect(served({ message: { response_metadata: { model: "a" } } }, stream)).toBe("s");
  });
});

describe("anthropicBill: streamed chunks", () => {
  it("undoes LangChain's sum of message_start's output and message_delta's cumulative count", () => {
    const stream = anthropicChunks({ input: 10, output: 1 }, ["Hel", "lo"], { output: 5 });
    // LangChain reports 1 + 5.
    const bill = anthropicBill(exact(10, 6), evidence({ stream }), roughTokenEstimate);
    expect(bill).toStrictEqual({ usage: exact(10, 5), notes: [], responseModel: undefined });
  });

  it("leaves the count alone where it is not LangChain's sum, or the last chunk's is not smaller", () => {
    const stream = anthropicChunks({ input: 10, output: 1 }, ["x"], { output: 5 });
    expect(anthropicBill(exact(10, 7), evidence({ stream }), roughTokenEstimate).usage.output).toBe(7);
    const zeroStart = anthropicChunks({ input: 10, output: 0 }, ["x"], { output: 5 });
    expect(anthropicBill(exact(10, 5), evidence({ stream: zeroStart }), roughTokenEstimate).usage.output).toBe(5);
  });

  it("a single usage chunk with a stop reason is finished as reported, not aborted", () => {
    const stream = new StreamObserver(false);
    stream.observeChunk("hi", { message: { usage_metadata: um(10, 4), additional_kwargs: { stop_reason: "end_turn" } } });
    expect(anthropicBill(exact(10, 4), evidence({ stream }), roughTokenEstimate)).toStrictEqual({ usage: exact(10, 4), notes: [], responseModel: undefined });
  });

  it("two usage chunks without a stop reason: message_delta arrived, so finished", () => {
    const stream = new StreamObserver(false);
    stream.observeChunk("", { message: { usage_metadata: um(10, 1) } });
    stream.observeChunk("", { message: { usage_metadata: um(0, 5) } });
    const bill = anthropicBill(exact(10, 6), evidence({ stream }), roughTokenEstimate);
    expect(bill.status).toBeUndefined();
    expect(bill.usage).toStrictEqual(exact(10, 5));
  });

  it("no message_delta: aborted, message_start's input exact, the output the larger of reported and received, estimated, no reasoning", () => {
    const stream = anthropicChunks({ input: 10, output: 1 }, ["a".repeat(40)]);
    const bill = anthropicBill(exact(10, 1, { reasoning: 1 }), evidence({ stream }), roughTokenEstimate);
    expect(bill).toStrictEqual({
      usage: { input: 10, output: 10, inputEstimated: false, outputEstimated: true },
      status: "aborted",
      notes: ["the stream ended before Anthropic's final usage (message_delta) arrived: output estimated"],
      responseModel: undefined,
    });
    const little = anthropicChunks({ input: 10, output: 3 }, ["ab"]);
    expect(anthropicBill(exact(10, 3), evidence({ stream: little }), roughTokenEstimate).usage.output).toBe(3);
  });

  it("the estimate of an aborted stream uses the custom estimator on the received text", () => {
    const stream = new StreamObserver(true);
    stream.observeChunk("", { message: { usage_metadata: um(10, 1) } });
    stream.observeChunk("four words of text", { message: {} });
    const bill = anthropicBill(exact(10, 1), evidence({ stream }), (text) => text.split(" ").length * 10);
    expect(bill.usage.output).toBe(40);
  });

  it("the TTL split from message_start's raw usage on the first chunk, else from the final response_metadata", () => {
    const cache_creation = { ephemeral_5m_input_tokens: 2, ephemeral_1h_input_tokens: 3 };
    const stream = anthropicChunks({ input: 10, output: 1 }, ["x"], { output: 5 }, { cache_creation });
    const bill = anthropicBill(exact(15, 6, { cacheWrite: 5 }), evidence({ stream, output: output({ message: { response_metadata: { usage: { cache_creation: { ephemeral_5m_input_tokens: 5 } } } } }) }), roughTokenEstimate);
    expect(bill.usage).toStrictEqual(exact(15, 5, { cacheWrite: 5, cacheWrite5m: 2, cacheWrite1h: 3 }));
    const bare = new StreamObserver(false);
    bare.observeChunk("", { message: { usage_metadata: um(15, 1) } });
    bare.observeChunk("", { message: { usage_metadata: um(0, 5), additional_kwargs: { stop_reason: "end_turn" } } });
    const fromEnd = anthropicBill(exact(15, 6, { cacheWrite: 5 }), evidence({ stream: bare, output: output({ message: { response_metadata: { usage: { cache_creation } } } }) }), roughTokenEstimate);
    expect(fromEnd.usage).toStrictEqual(exact(15, 5, { cacheWrite: 5, cacheWrite5m: 2, cacheWrite1h: 3 }));
    const none = anthropicBill(exact(15, 6, { cacheWrite: 5 }), evidence({ stream: anthropicChunks({ input: 15, output: 1 }, [], { output: 5 }), output: output({ message: { response_metadata: { usage: 3 } } }) }), roughTokenEstimate);
    expect(none.usage).toStrictEqual(exact(15, 5, { cacheWrite: 5 }));
  });

  it("server tool blocks in the content: requests counted per counted tool, input flagged estimated with a note", () => {
    const stream = anthropicChunks({ input: 10, output: 1 }, ["x"], { output: 5 });
    const content = [
      { type: "server_tool_use", name: "web_search" },
      { type: "server_tool_use", name: "web_search" },
      { type: "server_tool_call", name: "web_fetch" },
      { type: "server_tool_use", name: "code_execution" },
      { type: "server_tool_use", name: "" },
      { type: "tool_use", name: "web_search" },
      "text",
      null,
    ];
    const bill = anthropicBill(exact(10, 6), evidence({ stream, output: output({ message: { content } }) }), roughTokenEstimate);
    expect(bill.serverTools).toStrictEqual({ web_search: 2, web_fetch: 1 });
    expect(bill.usage).toStrictEqual({ input: 10, output: 5, inputEstimated: true, outputEstimated: false });
    expect(bill.notes).toStrictEqual([
      "a server tool ran in an Anthropic stream, whose final input count @langchain/anthropic drops: input is message_start's count, " +
        "flagged estimated (pass `clientOptions: { fetch: handler.anthropicFetch() }` to ChatAnthropic for the exact count)",
    ]);
    const none = anthropicBill(exact(10, 6), evidence({ stream, output: output({ message: { content: [{ type: "server_tool_use", name: "code_execution" }] } }) }), roughTokenEstimate);
    expect([none.serverTools, none.usage.inputEstimated, none.notes]).toStrictEqual([undefined, false, []]);
    const text = anthropicBill(exact(10, 6), evidence({ stream, output: output({ message: { content: "plain" } }) }), roughTokenEstimate);
    expect(text.serverTools).toBeUndefined();
  });
});

describe("output with no generations (a provider that answered nothing LangChain could read)", () => {
  const empty = { generations: [] } as never;
  it("every correction reads it without throwing and bills the usage as reported", () => {
    const stream = anthropicChunks({ input: 10, output: 1 }, ["x"], { output: 5 });
    expect(anthropicBill(exact(10, 6), evidence({ output: empty, stream }), roughTokenEstimate).usage).toStrictEqual(exact(10, 5));
    expect(anthropicBill(exact(1, 1), evidence({ output: empty }), roughTokenEstimate).usage).toStrictEqual(exact(1, 1));
    expect(googleBill(exact(1, 1), evidence({ output: empty })).usage).toStrictEqual(exact(1, 1));
    expect(openAIBill(exact(1, 1), evidence({ output: empty }))).toStrictEqual({ usage: exact(1, 1), notes: [] });
    expect(bedrockBill(exact(1, 1), evidence({ output: empty })).usage).toStrictEqual(exact(1, 1));
    expect(billFor("other", exact(1, 1), evidence({ output: empty }), roughTokenEstimate)).toStrictEqual({ usage: exact(1, 1), notes: [], responseModel: undefined });
    expect(billFor("other", exact(1, 1), evidence({ output: { generations: [[]] } as never }), roughTokenEstimate).responseModel).toBeUndefined();
  });

  it("a model name that is not a string is no model name", () => {
    const bill = anthropicBill(exact(1, 1), evidence({ output: output({ message: { response_metadata: { model: 5 }, additional_kwargs: { model: 6 } } }) }), roughTokenEstimate);
    expect(bill.responseModel).toBeUndefined();
  });
});

describe("anthropicBill: the stream-events protocol", () => {
  /** Stream events as @langchain/anthropic emits them: running sums (start + every delta so far). */
  function anthropicEvents(start: number, deltas: number[], finish = true): StreamObserver {
    const stream = new StreamObserver(false);
    stream.observeEvent({ event: "message-start", id: "msg_1", usage: um(10, start) });
    let running = start;
    for (const delta of deltas) {
      running += delta;
      stream.observeEvent({ event: "usage", usage: um(10, running) });
    }
    if (finish) stream.observeEvent({ event: "message-finish", usage: um(10, running) });
    return stream;
  }

  it("the last increment is the billed output: one delta", () => {
    // start 3, message_delta cumulative 9: LangChain reports 3 + 9 = 12.
    expect(anthropicBill(exact(10, 12), evidence({ stream: anthropicEvents(3, [9]) }), roughTokenEstimate).usage.output).toBe(9);
  });

  it("the last increment is the billed output: several deltas", () => {
    // start 3, message_delta cumulative 5 then 9: running sums 8, then 17; reported 17.
    expect(anthropicBill(exact(10, 17), evidence({ stream: anthropicEvents(3, [5, 9]) }), roughTokenEstimate).usage.output).toBe(9);
  });

  it("message_start with no output (0, or no usage at all) and several deltas: still the last increment, not the running sum", () => {
    // start 0, message_delta cumulative 5 then 9: running sums 5, then 14; reported 14, billed 9.
    expect(anthropicBill(exact(10, 14), evidence({ stream: anthropicEvents(0, [5, 9]) }), roughTokenEstimate).usage.output).toBe(9);
    expect(anthropicBill(exact(10, 9), evidence({ stream: anthropicEvents(0, [9]) }), roughTokenEstimate).usage.output).toBe(9);
    // Without message_start's usage, @langchain/anthropic starts the running sum at the first delta.
    const noStartUsage = new StreamObserver(false);
    noStartUsage.observeEvent({ event: "message-start", id: "msg_1" });
    noStartUsage.observeEvent({ event: "usage", usage: um(10, 5) });
    noStartUsage.observeEvent({ event: "usage", usage: um(10, 14) });
    noStartUsage.observeEvent({ event: "message-finish", usage: um(10, 14) });
    expect(anthropicBill(exact(10, 14), evidence({ stream: noStartUsage }), roughTokenEstimate).usage.output).toBe(9);
  });

  it("left as reported when the report is not the running sum, or nothing grew", () => {
    expect(anthropicBill(exact(10, 11), evidence({ stream: anthropicEvents(3, [9]) }), roughTokenEstimate).usage.output).toBe(11);
    const flat = new StreamObserver(false);
    flat.observeEvent({ event: "message-start", usage: um(10, 3) });
    flat.observeEvent({ event: "usage", usage: um(10, 3) });
    flat.observeEvent({ event: "message-finish", usage: um(10, 3) });
    expect(anthropicBill(exact(10, 3), evidence({ stream: flat }), roughTokenEstimate).usage.output).toBe(3);
    // A finish that disagrees with the last snapshot.
    const odd = anthropicEvents(3, [9], false);
    odd.observeEvent({ event: "message-finish", usage: um(10, 13) });
    // (a report equal to the finish but not to the last snapshot)
    expect(anthropicBill(exact(10, 13), evidence({ stream: odd }), roughTokenEstimate).usage.output).toBe(13);
    expect(anthropicBill(exact(10, 12), evidence({ stream: odd }), roughTokenEstimate).usage.output).toBe(12);
  });

  it("not on the chunk path: chunks with the same numbers are not corrected this way", () => {
    const stream = anthropicEvents(3, [9]);
    stream.observeChunk("x", undefined);
    expect(anthropicBill(exact(10, 12), evidence({ stream }), roughTokenEstimate).usage.output).toBe(12);
  });

  it("a message-start without usage, or no snapshot: as reported", () => {
    const noStart = new StreamObserver(false);
    noStart.observeEvent({ event: "message-start" });
    noStart.observeEvent({ event: "usage", usage: um(10, 9) });
    noStart.observeEvent({ event: "message-finish", usage: um(10, 9) });
    expect(anthropicBill(exact(10, 9), evidence({ stream: noStart }), roughTokenEstimate).usage.output).toBe(9);
    const noSnapshot = new StreamObserver(false);
    noSnapshot.observeEvent({ event: "message-start", usage: um(10, 3) });
    noSnapshot.observeEvent({ event: "message-finish", usage: um(10, 3) });
    expect(anthropicBill(exact(10, 3), evidence({ stream: noSnapshot }), roughTokenEstimate).usage.output).toBe(3);
    const noOutputs = new StreamObserver(false);
    noOutputs.observeEvent({ event: "message-start", usage: um(10, 3) });
    noOutputs.observeEvent({ event: "usage", usage: { input_tokens: 10 } });
    noOutputs.observeEvent({ event: "message-finish", usage: um(10, 3) });
    expect(anthropicBill(exact(10, 3), evidence({ stream: noOutputs }), roughTokenEstimate).usage.output).toBe(3);
  });
});

describe("anthropicBill: with the fetch tap", () => {
  it("message_delta's cumulative counts, message_start's where the delta does not restate them", () => {
    const tapped = {
      start: { input_tokens: 5, cache_read_input_tokens: 7, cache_creation_input_tokens: 3, cache_creation: { ephemeral_5m_input_tokens: 1, ephemeral_1h_input_tokens: 2 } },
      delta: { input_tokens: 20, cache_read_input_tokens: null, output_tokens: 9, output_tokens_details: { thinking_tokens: 4 }, server_tool_use: { web_search_requests: 3 } },
    };
    const bill = anthropicBill(exact(15, 10), evidence({ tapped, output: output({ message: { response_metadata: { model: "m" } } }) }), roughTokenEstimate);
    expect(bill).toStrictEqual({
      usage: exact(30, 9, { cacheRead: 7, cacheWrite: 3, cacheWrite5m: 1, cacheWrite1h: 2, reasoning: 4 }),
      notes: [],
      responseModel: "m",
      serverTools: { web_search: 3 },
    });
  });

  it("without a start, missing counts are 0 and the output falls back to the reported one; server tools from message_start", () => {
    expect(anthropicBill(exact(15, 10), evidence({ tapped: { delta: { input_tokens: 12 } } }), roughTokenEstimate)).toStrictEqual({
      usage: exact(12, 10),
      notes: [],
      responseModel: undefined,
      serverTools: undefined,
    });
    const startTools = anthropicBill(exact(1, 1), evidence({ tapped: { start: { server_tool_use: { web_fetch_requests: 2 } }, delta: { output_tokens: 1 } } }), roughTokenEstimate);
    expect(startTools.serverTools).toStrictEqual({ web_fetch: 2 });
  });

  it("a tap without a delta (the stream never got one) is not used", () => {
    const stream = anthropicChunks({ input: 10, output: 1 }, ["x"], { output: 5 });
    const bill = anthropicBill(exact(10, 6), evidence({ stream, tapped: { start: { input_tokens: 99 } } }), roughTokenEstimate);
    expect(bill.usage).toStrictEqual(exact(10, 5));
  });
});

describe("googleBill", () => {
  const gemini = (usage_metadata: unknown, chunks = 0, tools?: unknown) => {
    const stream = new StreamObserver(false);
    for (let i = 0; i < chunks; i++) stream.observeChunk("t", { message: {} });
    return evidence({ output: output({ message: { usage_metadata } }), stream, tools });
  };

  it("total above input + output: the gap is thinking, billed as output and reasoning", () => {
    expect(googleBill(exact(10, 5), gemini({ total_tokens: 18 }))).toStrictEqual({ usage: exact(10, 8, { reasoning: 3 }), notes: [] });
  });

  it("invoke (no chunks): the cache count is the provider's own, kept as reported", () => {
    expect(googleBill(exact(10, 5, { cacheRead: 3 }), gemini({ total_tokens: 15, input_token_details: { cache_read: 3 } }))).toStrictEqual({ usage: exact(10, 5, { cacheRead: 3 }), notes: [] });
  });

  it("with a built-in tool and no gap: no note, nothing estimated", () => {
    expect(googleBill(exact(10, 5), gemini({ total_tokens: 15 }, 0, [{ googleSearch: {} }]))).toStrictEqual({ usage: exact(10, 5), notes: [] });
  });

  it("a tool entry that declares functions and a built-in tool is a built-in tool", () => {
    expect(googleBill(exact(10, 5), gemini({ total_tokens: 18 }, 0, [{ functionDeclarations: [], googleSearch: {} }])).usage.outputEstimated).toBe(true);
  });

  it("no gap, a negative gap, or no numeric total: as reported", () => {
    expect(googleBill(exact(10, 5), gemini({ total_tokens: 15 }))).toStrictEqual({ usage: exact(10, 5), notes: [] });
    expect(googleBill(exact(10, 5), gemini({ total_tokens: 12 }))).toStrictEqual({ usage: exact(10, 5), notes: [] });
    expect(googleBill(exact(10, 5), gemini({ total_tokens: "18" }))).toStrictEqual({ usage: exact(10, 5), notes: [] });
    expect(googleBill(exact(10, 5), gemini(undefined))).toStrictEqual({ usage: exact(10, 5), notes: [] });
  });

  it("with a built-in tool the gap is output, flagged estimated, with a note; function declarations alone are no built-in tool", () => {
    const bill = googleBill(exact(10, 5), gemini({ total_tokens: 18 }, 0, [{ functionDeclarations: [] }, { googleSearch: {} }]));
    expect(bill).toStrictEqual({
      usage: { input: 10, output: 8, inputEstimated: false, outputEstimated: true },
      notes: [
        "Gemini's total exceeds input + output by thinking and tool-use prompt tokens, which no callback tells apart with a built-in tool: billed as output, flagged estimated",
      ],
    });
    expect(googleBill(exact(10, 5), gemini({ total_tokens: 18 }, 0, [{ functionDeclarations: [] }, "x"]))).toStrictEqual({ usage: exact(10, 8, { reasoning: 3 }), notes: [] });
    expect(googleBill(exact(10, 5), gemini({ total_tokens: 18 }, 0, { googleSearch: {} }))).toStrictEqual({ usage: exact(10, 8, { reasoning: 3 }), notes: [] });
  });

  it("streamed: the cache count LangChain summed over the chunks is divided back, when it divides", () => {
    const summed = { total_tokens: 15, input_token_details: { cache_read: 12 } };
    expect(googleBill(exact(10, 5), gemini(summed, 3))).toStrictEqual({ usage: exact(10, 5, { cacheRead: 4 }), notes: [] });
    expect(googleBill(exact(10, 5), gemini(summed, 2))).toStrictEqual({ usage: exact(10, 5, { cacheRead: 6 }), notes: [] });
    expect(googleBill(exact(10, 5), gemini(summed, 5))).toStrictEqual({ usage: exact(10, 5), notes: [] });
    // One chunk (or invoke): the count is the provider's own, kept as reported.
    expect(googleBill(exact(10, 5, { cacheRead: 3 }), gemini({ total_tokens: 15, input_token_details: { cache_read: 3 } }, 1))).toStrictEqual({ usage: exact(10, 5, { cacheRead: 3 }), notes: [] });
    expect(googleBill(exact(10, 5), gemini({ total_tokens: 15, input_token_details: 12 }, 3))).toStrictEqual({ usage: exact(10, 5), notes: [] });
  });

  it("keeps the input's estimate flag", () => {
    expect(googleBill({ ...exact(10, 5), inputEstimated: true }, gemini({ total_tokens: 15 })).usage.inputEstimated).toBe(true);
  });
});

describe("bedrockBill", () => {
  const converse = (response_metadata: Record<string, unknown>) => evidence({ output: output({ message: { response_metadata } }) });

  it("sums cacheDetails by TTL from usage (Converse) or metadata.usage (ConverseStream)", () => {
    const cacheDetails = [
      { ttl: "5m", inputTokens: 4 },
      { ttl: "1h", inputTokens: 6 },
      { ttl: "5m", inputTokens: 1 },
      { ttl: "1d", inputTokens: 100 },
      { ttl: "1h", inputTokens: "x" },
      null,
    ];
    const usage = exact(20, 1, { cacheWrite: 11 });
    expect(bedrockBill(usage, converse({ usage: { cacheDetails } }))).toStrictEqual({ usage: exact(20, 1, { cacheWrite: 11, cacheWrite5m: 5, cacheWrite1h: 6 }), notes: [] });
    expect(bedrockBill(usage, converse({ metadata: { usage: { cacheDetails } } }))).toStrictEqual({ usage: exact(20, 1, { cacheWrite: 11, cacheWrite5m: 5, cacheWrite1h: 6 }), notes: [] });
  });

  it("no cacheDetails list: the usage as reported", () => {
    const usage = exact(20, 1, { cacheWrite: 11 });
    for (const metadata of [{}, { usage: { cacheDetails: "5m" } }, { metadata: "x" }, { metadata: { usage: 5 } }, { usage: [] }]) {
      expect(bedrockBill(usage, converse(metadata)).usage).toBe(usage);
    }
  });
});

describe("openAIBill: hosted tools billed per call", () => {
  it("counts web_search_call and file_search_call items once per id, from response_metadata.output", () => {
    const items = [
      { type: "web_search_call", id: "ws_1" },
      { type: "web_search_call", id: "ws_1" },
      { type: "web_search_call", id: "ws_2" },
      { type: "file_search_call", id: "fs_1" },
      { type: "message", id: "m_1" },
      { type: "file_search_call" },
      { type: "file_search_call" },
      "x",
      null,
    ];
    expect(openAIBill(exact(1, 1), evidence({ output: output({ message: { response_metadata: { output: items } } }) }))).toStrictEqual({
      usage: exact(1, 1),
      notes: [],
      serverTools: { web_search: 2, file_search: 3 },
    });
  });

  it("falls back to additional_kwargs.tool_outputs; none: no serverTools", () => {
    const bill = openAIBill(exact(1, 1), evidence({ output: output({ message: { additional_kwargs: { tool_outputs: [{ type: "web_search_call", id: "a" }] } } }) }));
    expect(bill.serverTools).toStrictEqual({ web_search: 1 });
    expect(openAIBill(exact(1, 1), evidence({ output: output({ message: { response_metadata: { output: [{ type: "message" }] } } }) }))).toStrictEqual({ usage: exact(1, 1), notes: [] });
    expect(openAIBill(exact(1, 1), evidence({ output: output({ message: { additional_kwargs: { tool_outputs: "x" } } }) }))).toStrictEqual({ usage: exact(1, 1), notes: [] });
    expect(openAIBill(exact(1, 1), evidence({ output: output({ message: { additional_kwargs: 5 } }) }))).toStrictEqual({ usage: exact(1, 1), notes: [] });
  });
});

describe("billFor", () => {
  const toolItems = { response_metadata: { output: [{ type: "web_search_call", id: "w" }] } };

  it("routes each ls_provider to its correction", () => {
    expect(billFor("openai", exact(1, 1), evidence({ output: output({ message: toolItems }) }), roughTokenEstimate).serverTools).toStrictEqual({ web_search: 1 });
    expect(billFor("azure", exact(1, 1), evidence({ output: output({ message: toolItems }) }), roughTokenEstimate).serverTools).toStrictEqual({ web_search: 1 });
    expect(billFor("google_genai", exact(1, 1), evidence({ output: output({ message: { usage_metadata: { total_tokens: 5 } } }) }), roughTokenEstimate).usage).toStrictEqual(
      exact(1, 4, { reasoning: 3 }),
    );
    expect(
      billFor("amazon_bedrock", exact(5, 1, { cacheWrite: 2 }), evidence({ output: output({ message: { response_metadata: { usage: { cacheDetails: [{ ttl: "1h", inputTokens: 2 }] } } } }) }), roughTokenEstimate)
        .usage,
    ).toStrictEqual(exact(5, 1, { cacheWrite: 2, cacheWrite1h: 2 }));
    expect(billFor("anthropic", exact(1, 1), evidence({ output: output({ message: { response_metadata: { usage: { server_tool_use: { web_search_requests: 1 } } } } }) }), roughTokenEstimate).serverTools).toStrictEqual({
      web_search: 1,
    });
  });

  it("any other provider: the usage as reported, nothing else", () => {
    const mixed = output({ message: { ...toolItems, usage_metadata: { total_tokens: 9 } } });
    for (const provider of ["mistralai", undefined]) {
      expect(billFor(provider, exact(1, 1), evidence({ output: mixed }), roughTokenEstimate)).toStrictEqual({ usage: exact(1, 1), notes: [], responseModel: undefined });
    }
  });

  it("the served model: the stream's first, then model_name, model, and generationInfo's", () => {
    const served = (generation: Generation, stream?: StreamObserver) => billFor("other", exact(1, 1), evidence({ output: output(generation), stream }), roughTokenEstimate).responseModel;
    expect(served({ message: { response_metadata: { model_name: "a", model: "b" } }, generationInfo: { model_name: "c", model: "d" } })).toBe("a");
    expect(served({ message: { response_metadata: { model_name: "", model: "b" } }, generationInfo: { model_name: "c" } })).toBe("b");
    expect(served({ message: { response_metadata: "x" }, generationInfo: { model_name: "c", model: "d" } })).toBe("c");
    expect(served({ message: {}, generationInfo: { model_name: "", model: "d" } })).toBe("d");
    expect(served({ generationInfo: { model: "d" } })).toBe("d");
    const stream = new StreamObserver(false);
    stream.observeChunk("", { message: { response_metadata: { model_name: "s" } } });
    expect(served({ message: { response_metadata: { model_name: "a" } } }, stream)).toBe("s");
    // A correction's own served model is kept.
    expect(billFor("anthropic", exact(1, 1), evidence({ output: output({ message: { response_metadata: { model: "x", model_name: "y" } } }) }), roughTokenEstimate).responseModel).toBe("x");
  });
});
