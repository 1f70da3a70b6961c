/**
 * Calls that did not finish (src/unfinished.ts) and the warning digest (src/unbilled.ts): which
 * counts are the provider's and which are estimated, and how repeated warnings are told.
 */
import { describe, expect, it } from "vitest";
import { TestClock } from "../../src/testing/clock";
import { roughTokenEstimate } from "../../src/estimate";
import { StreamObserver } from "../../src/stream-observer";
import { WarningDigest } from "../../src/unbilled";
import { unfinishedBill } from "../../src/unfinished";

const um = (input_tokens: number, output_tokens: number, details?: Record<string, number>) => ({
  input_tokens,
  output_tokens,
  total_tokens: input_tokens + output_tokens,
  ...(details ? { input_token_details: details } : {}),
});
const sent = { messages: [{ content: "a".repeat(20) }] };
/** The rough estimate of `sent`: 3 per prompt + 4 per message + 20 characters / 4. */
const SENT_ESTIMATE = 3 + 4 + 5;

describe("unfinishedBill", () => {
  it("nothing shows the provider began to answer: no bill", () => {
    const stream = new StreamObserver(false);
    expect(unfinishedBill({ stream, sent, status: "aborted" }, roughTokenEstimate)).toBeUndefined();
    expect(unfinishedBill({ stream, sent, status: "error", partial: { usage_metadata: null, content: "" } }, roughTokenEstimate)).toBeUndefined();
    expect(unfinishedBill({ stream, sent, status: "error", partial: { content: [] } }, roughTokenEstimate)).toBeUndefined();
    expect(unfinishedBill({ stream, sent, status: "error", partial: { content: 5 } }, roughTokenEstimate)).toBeUndefined();
  });

  it("only text seen: both sides estimated from what was sent and received", () => {
    const stream = new StreamObserver(false);
    stream.observeChunk("x".repeat(9), { message: {} });
    expect(unfinishedBill({ stream, sent, status: "aborted" }, roughTokenEstimate)).toStrictEqual({
      usage: { input: SENT_ESTIMATE, output: 3, inputEstimated: true, outputEstimated: true },
      status: "aborted",
      responseModel: undefined,
      notes: ["a call that did not finish (aborted) was billed from estimates, flagged `estimated: true`"],
    });
  });

  it("message_start's input is the provider's, with its cache counts; the output estimated, at least the provider's last count", () => {
    const stream = new StreamObserver(false);
    stream.observeChunk("", { message: { usage_metadata: um(50, 1, { cache_read: 10, cache_creation: 20 }), response_metadata: { model_name: "m-1" } } });
    stream.observeChunk("abcd", { message: {} });
    stream.observeChunk("", { message: { usage_metadata: um(0, 6) } });
    expect(unfinishedBill({ stream, sent, status: "error" }, roughTokenEstimate)).toStrictEqual({
      usage: { input: 50, output: 6, inputEstimated: false, outputEstimated: true, cacheRead: 10, cacheWrite: 20 },
      status: "error",
      responseModel: "m-1",
      notes: ["a call that did not finish (error) was billed from the provider's input count and an output estimate, flagged `estimated: true`"],
    });
  });

  it("the received estimate wins over a smaller provider count", () => {
    const stream = new StreamObserver(false);
    stream.observeChunk("", { message: { usage_metadata: um(50, 1) } });
    stream.observeChunk("x".repeat(40), { message: {} });
    expect(unfinishedBill({ stream, sent, status: "aborted" }, roughTokenEstimate)?.usage).toStrictEqual({ input: 50, output: 10, inputEstimated: false, outputEstimated: true });
  });

  it("a reported input of 0 (or an unreadable report) is estimated, and its details dropped", () => {
    const stream = new StreamObserver(false);
    stream.observeChunk("", { message: { usage_metadata: um(0, 2, { cache_read: 1 }) } });
    expect(unfinishedBill({ stream, sent, status: "aborted" }, roughTokenEstimate)?.usage).toStrictEqual({ input: SENT_ESTIMATE, output: 2, inputEstimated: true, outputEstimated: true });
    const garbled = new StreamObserver(false);
    garbled.observeChunk("ab", { message: { usage_metadata: { input_tokens: "lots" } as never } });
    expect(unfinishedBill({ stream: garbled, sent, status: "aborted" }, roughTokenEstimate)?.usage).toStrictEqual({ input: SENT_ESTIMATE, output: 1, inputEstimated: true, outputEstimated: true });
  });

  it("a report without output_tokens still gives its input (message_start as the stream events carry it)", () => {
    const stream = new StreamObserver(false);
    stream.observeEvent({ event: "message-start", usage: { input_tokens: 30 } });
    stream.observeEvent({ event: "content-block-delta", delta: { text: "abcdefgh" } });
    expect(unfinishedBill({ stream, sent, status: "aborted" }, roughTokenEstimate)?.usage).toStrictEqual({ input: 30, output: 2, inputEstimated: false, outputEstimated: true });
  });

  it("where the reports are: the partial message first, then the first chunk's usage, then message-start's", () => {
    const stream = new StreamObserver(false);
    stream.observeEvent({ event: "message-start", usage: { input_tokens: 30 } });
    stream.observeChunk("", { message: { usage_metadata: um(20, 0) } });
    expect(unfinishedBill({ stream, sent, status: "aborted", partial: { usage_metadata: um(10, 0) } }, roughTokenEstimate)?.usage.input).toBe(10);
    expect(unfinishedBill({ stream, sent, status: "aborted" }, roughTokenEstimate)?.usage.input).toBe(20);
  });

  it("an abort's partial message alone (nothing streamed) is enough: its usage, or its content", () => {
    const none = new StreamObserver(false);
    expect(unfinishedBill({ stream: none, sent, status: "aborted", partial: { usage_metadata: um(40, 0) } }, roughTokenEstimate)?.usage).toStrictEqual({
      input: 40,
      output: 0,
      inputEstimated: false,
      outputEstimated: true,
    });
    expect(unfinishedBill({ stream: none, sent, status: "aborted", partial: { content: "partial answer" } }, roughTokenEstimate)?.usage.input).toBe(SENT_ESTIMATE);
    expect(unfinishedBill({ stream: none, sent, status: "aborted", partial: { content: [{ type: "text" }] } }, roughTokenEstimate)?.usage.input).toBe(SENT_ESTIMATE);
  });

  it("a custom estimator counts the received text itself", () => {
    const stream = new StreamObserver(true);
    stream.observeChunk("one two three", { message: {} });
    const words = (text: string) => text.split(/\s+/).filter(Boolean).length;
    expect(unfinishedBill({ stream, sent: { prompts: ["a b"] }, status: "aborted" }, words)?.usage).toStrictEqual({ input: 3 + 2, output: 3, inputEstimated: true, outputEstimated: true });
  });
});

describe("WarningDigest", () => {
  function digest(intervalMs = 60_000) {
    const clock = new TestClock();
    const warnings: string[] = [];
    const logger = { warn: (m: string) => void warnings.push(m), error: () => {} };
    return { clock, warnings, digest: new WarningDigest(logger, clock, intervalMs) };
  }

  it("tells each key in full once, then counts repeats under their summary and tells the counts after intervalMs", async () => {
    const { clock, warnings, digest: d } = digest(1000);
    d.warn("a", "A in full", "A");
    d.warn("a", "A again", "A");
    d.warn("a", "A again", "A");
    d.warn("b", "B in full", "B");
    d.warn("b", "B again", "B");
    expect(warnings).toStrictEqual(["A in full", "B in full"]);
    expect(clock.pendingTimers).toBe(1);
    await clock.advance(999);
    expect(warnings).toHaveLength(2);
    await clock.advance(1);
    expect(warnings).toStrictEqual(["A in full", "B in full", "since the last summary (every 1000 ms): 2× A; 1× B"]);
    expect(clock.pendingTimers).toBe(0);
  });

  it("without a summary the message is the summary; keys sharing a summary are counted together", async () => {
    const { clock, warnings, digest: d } = digest(10);
    d.warn("k", "same message");
    d.warn("k", "same message");
    d.warn("x:1", "first x", "x problems");
    d.warn("x:2", "second x", "x problems");
    d.warn("x:1", "first x", "x problems");
    d.warn("x:2", "second x", "x problems");
    await clock.advance(10);
    expect(warnings).toStrictEqual(["same message", "first x", "second x", "since the last summary (every 10 ms): 1× same message; 2× x problems"]);
  });

  it("flush tells the pending counts now and stops the timer; with nothing pending it says nothing", async () => {
    const { clock, warnings, digest: d } = digest(1000);
    d.flush();
    expect(warnings).toStrictEqual([]);
    d.warn("a", "A");
    d.warn("a", "A");
    d.flush();
    expect(warnings).toStrictEqual(["A", "since the last summary (every 1000 ms): 1× A"]);
    expect(clock.pendingTimers).toBe(0);
    await clock.advance(5000);
    expect(warnings).toHaveLength(2);
    // A new repeat starts a new timer.
    d.warn("a", "A");
    expect(clock.pendingTimers).toBe(1);
    await clock.advance(1000);
    expect(warnings.at(-1)).toBe("since the last summary (every 1000 ms): 1× A");
  });
});
