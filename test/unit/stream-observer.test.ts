/**
 * The stream observer (src/stream-observer.ts): what each chunk and stream event leaves behind, the
 * evidence the Anthropic correction and the estimates of unfinished calls are made from.
 */
import { describe, expect, it } from "vitest";
import { StreamObserver } from "../../src/stream-observer";

type Chunk = Parameters<StreamObserver["observeChunk"]>[1];
const usage = (input_tokens: number, output_tokens: number) => ({ input_tokens, output_tokens, total_tokens: input_tokens + output_tokens });

describe("StreamObserver: chunks", () => {
  it("starts empty: nothing seen, nothing streamed, nothing finished", () => {
    const stream = new StreamObserver(false);
    expect(stream.seenAnything).toBe(false);
    expect(stream.streamed).toBe(false);
    expect(stream.finished).toBe(false);
    expect(stream.received).toBeUndefined();
    expect(new StreamObserver(true).received).toStrictEqual([]);
  });

  it("a bare token is seen but is not a stream; a chunk object is both", () => {
    const stream = new StreamObserver(false);
    stream.observeChunk("hello", undefined);
    expect([stream.chunks, stream.chunkObjects, stream.seenAnything, stream.streamed]).toStrictEqual([1, 0, true, false]);
    stream.observeChunk("", {});
    expect([stream.chunks, stream.chunkObjects, stream.streamed]).toStrictEqual([2, 0, false]);
    stream.observeChunk("", { message: {} });
    expect([stream.chunks, stream.chunkObjects, stream.streamed]).toStrictEqual([3, 1, true]);
  });

  it("counts received characters of text and string tool arguments; keeps the text only when asked", () => {
    const counting = new StreamObserver(false);
    const keeping = new StreamObserver(true);
    for (const stream of [counting, keeping]) {
      stream.observeChunk("abc", { message: { tool_call_chunks: [{ args: '{"q":' }, { args: { not: "a string" } }, {}] } });
      stream.observeChunk("", { message: { tool_call_chunks: [{ args: '"x"}' }] } });
      stream.observeChunk("de", undefined);
    }
    expect(counting.receivedChars).toBe(3 + 5 + 4 + 2);
    expect(counting.received).toBeUndefined();
    expect(keeping.receivedChars).toBe(14);
    expect(keeping.received).toStrictEqual(["abc", '{"q":', '"x"}', "de"]);
  });

  it("usage: the first and the last chunk with any, how many, and the sum of their outputs", () => {
    const stream = new StreamObserver(false);
    const first = usage(10, 1);
    const last = usage(0, 7);
    stream.observeChunk("", { message: { usage_metadata: first } });
    stream.observeChunk("", { message: {} });
    stream.observeChunk("", { message: { usage_metadata: { input_tokens: 0 } as never } });
    stream.observeChunk("", { message: { usage_metadata: last } });
    expect(stream.firstUsage).toBe(first);
    expect(stream.lastUsage).toBe(last);
    expect(stream.usageChunks).toBe(3);
    expect(stream.outputSum).toBe(8);
  });

  it("firstRawUsage: the first non-empty response_metadata.usage record", () => {
    const stream = new StreamObserver(false);
    const raw = { input_tokens: 3, cache_creation: { ephemeral_1h_input_tokens: 2 } };
    stream.observeChunk("", { message: { response_metadata: { usage: {} } } });
    stream.observeChunk("", { message: { response_metadata: { usage: [1] } } });
    stream.observeChunk("", { message: { response_metadata: { usage: null } } });
    expect(stream.firstRawUsage).toBeUndefined();
    stream.observeChunk("", { message: { response_metadata: { usage: raw } } });
    stream.observeChunk("", { message: { response_metadata: { usage: { input_tokens: 9 } } } });
    expect(stream.firstRawUsage).toBe(raw);
  });

  it("the served model: the first chunk naming one, from the first field that names it", () => {
    const named = (chunk: Chunk) => {
      const stream = new StreamObserver(false);
      stream.observeChunk("", chunk);
      return stream.model;
    };
    expect(named({ message: { response_metadata: { model_name: "a", model: "b" }, additional_kwargs: { model: "e" } }, generationInfo: { model_name: "c", model: "d" } })).toBe("a");
    expect(named({ message: { response_metadata: { model_name: "", model: "b" } }, generationInfo: { model_name: "c" } })).toBe("b");
    expect(named({ message: { response_metadata: { model: "" } }, generationInfo: { model_name: "c", model: "d" } })).toBe("c");
    expect(named({ message: {}, generationInfo: { model_name: "", model: "d" } })).toBe("d");
    expect(named({ message: { additional_kwargs: { model: "e" } }, generationInfo: { model: "" } })).toBe("e");
    expect(named({ message: { additional_kwargs: { model: 5 } } })).toBeUndefined();
    const stream = new StreamObserver(false);
    stream.observeChunk("", { message: {} });
    stream.observeChunk("", { message: { response_metadata: { model_name: "first" } } });
    stream.observeChunk("", { message: { response_metadata: { model_name: "second" } } });
    expect(stream.model).toBe("first");
  });

  it("the message id: the first string that is the provider's, not LangChain's run-… placeholder", () => {
    const stream = new StreamObserver(false);
    stream.observeChunk("", { message: { id: 7 } });
    stream.observeChunk("", { message: { id: "run-123" } });
    expect(stream.messageId).toBeUndefined();
    stream.observeChunk("", { message: { id: "msg_1" } });
    stream.observeChunk("", { message: { id: "msg_2" } });
    expect(stream.messageId).toBe("msg_1");
    // "run-" only as a prefix marks the placeholder.
    const other = new StreamObserver(false);
    other.observeChunk("", { message: { id: "chatcmpl-run-1" } });
    expect(other.messageId).toBe("chatcmpl-run-1");
  });

  it("finished: a stop reason or finish reason in any of the places integrations put one; null is none", () => {
    const finishes = (chunk: Chunk) => {
      const stream = new StreamObserver(false);
      stream.observeChunk("", chunk);
      return stream.finished;
    };
    expect(finishes({ message: { additional_kwargs: { stop_reason: "end_turn" } } })).toBe(true);
    expect(finishes({ message: {}, generationInfo: { finish_reason: "stop" } })).toBe(true);
    expect(finishes({ message: {}, generationInfo: { finishReason: "STOP" } })).toBe(true);
    expect(finishes({ message: { response_metadata: { finish_reason: "length" } } })).toBe(true);
    expect(finishes({ message: { additional_kwargs: { stop_reason: null }, response_metadata: { finish_reason: null } }, generationInfo: { finish_reason: null, finishReason: null } })).toBe(
      false,
    );
    expect(finishes({ message: { additional_kwargs: {}, response_metadata: {} }, generationInfo: {} })).toBe(false);
  });
});

describe("StreamObserver: stream events", () => {
  it("counts every event; any event makes the run seen and streamed", () => {
    const stream = new StreamObserver(false);
    stream.observeEvent({ event: "something-new" });
    expect([stream.events, stream.seenAnything, stream.streamed, stream.chunks]).toStrictEqual([1, true, true, 0]);
  });

  it("message-start: its usage, and its id unless a placeholder or already known", () => {
    const stream = new StreamObserver(false);
    const start = usage(10, 3);
    stream.observeEvent({ event: "message-start", id: "run-9", usage: start });
    expect(stream.startEventUsage).toBe(start);
    expect(stream.messageId).toBeUndefined();
    stream.observeEvent({ event: "message-start", id: "msg_1" });
    expect(stream.messageId).toBe("msg_1");
    expect(stream.startEventUsage).toBeUndefined();
    stream.observeEvent({ event: "message-start", id: "msg_2" });
    expect(stream.messageId).toBe("msg_1");
    const numeric = new StreamObserver(false);
    numeric.observeEvent({ event: "message-start", id: 5 as never });
    expect(numeric.messageId).toBeUndefined();
  });

  it("usage: the last two snapshots, newest last; an event without usage changes nothing", () => {
    const stream = new StreamObserver(false);
    const [a, b, c] = [usage(1, 1), usage(1, 2), usage(1, 3)];
    stream.observeEvent({ event: "usage", usage: a });
    expect(stream.usageSnapshots).toStrictEqual([a]);
    stream.observeEvent({ event: "usage", usage: b });
    stream.observeEvent({ event: "usage" });
    expect(stream.usageSnapshots).toStrictEqual([a, b]);
    stream.observeEvent({ event: "usage", usage: c });
    expect(stream.usageSnapshots).toStrictEqual([b, c]);
    expect(stream.finished).toBe(false);
  });

  it("message-finish: its usage, and the stream finished", () => {
    const stream = new StreamObserver(false);
    const finish = usage(10, 7);
    stream.observeEvent({ event: "message-finish", usage: finish });
    expect(stream.finishEventUsage).toBe(finish);
    expect(stream.finished).toBe(true);
  });

  it("provider message_start: the model it names, first one kept", () => {
    const stream = new StreamObserver(false);
    stream.observeEvent({ event: "provider", name: "message_delta", payload: { model: "not-this" } });
    stream.observeEvent({ event: "provider", name: "message_start", payload: "x" });
    stream.observeEvent({ event: "provider", name: "message_start", payload: { model: "" } });
    expect(stream.model).toBeUndefined();
    stream.observeEvent({ event: "provider", name: "message_start", payload: { model: "claude-x-20250101" } });
    stream.observeEvent({ event: "provider", name: "message_start", payload: { model: "other" } });
    expect(stream.model).toBe("claude-x-20250101");
  });

  it("content-block-delta: text or reasoning increments are received; other deltas are not", () => {
    const stream = new StreamObserver(true);
    stream.observeEvent({ event: "content-block-delta", delta: { text: "Hello" } });
    stream.observeEvent({ event: "content-block-delta", delta: { reasoning: "think" } });
    stream.observeEvent({ event: "content-block-delta", delta: { text: 5, reasoning: "r" } });
    stream.observeEvent({ event: "content-block-delta", delta: { fields: { args: "{}" } } });
    stream.observeEvent({ event: "content-block-delta" });
    expect(stream.received).toStrictEqual(["Hello", "think", "r"]);
    expect(stream.receivedChars).toBe(11);
  });

  it("other events leave usage, model and text alone", () => {
    const stream = new StreamObserver(true);
    stream.observeEvent({ event: "content-block-start", usage: usage(1, 1), delta: { text: "x" }, name: "message_start", payload: { model: "m" }, id: "msg_1" });
    expect([stream.startEventUsage, stream.finishEventUsage, stream.usageSnapshots, stream.model, stream.messageId, stream.received, stream.finished]).toStrictEqual([
      undefined,
      undefined,
      [],
      undefined,
      undefined,
      [],
      false,
    ]);
  });
});
