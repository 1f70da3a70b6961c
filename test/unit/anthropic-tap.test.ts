/**
 * The Anthropic fetch tap (src/providers/anthropic-tap.ts): the bytes pass through unchanged, and the
 * usage of message_start and the last message_delta is recorded per message id, however the SSE
 * stream is cut into chunks.
 */
import { describe, expect, it } from "vitest";
import { AnthropicUsageTap } from "../../src/providers/anthropic-tap";

const encoder = new TextEncoder();
const sse = (event: string, data: unknown, eol = "\n") => `event: ${event}${eol}data: ${JSON.stringify(data)}${eol}${eol}`;
const start = (id: string, usage: Record<string, unknown>) => sse("message_start", { type: "message_start", message: { id, usage } });
const delta = (usage: Record<string, unknown>) => sse("message_delta", { type: "message_delta", usage });

/** A fetch answering with this body, cut into these pieces. */
function answering(pieces: Array<string | Uint8Array>, contentType = "text/event-stream; charset=utf-8"): typeof fetch {
  return (async () =>
    new Response(
      new ReadableStream<Uint8Array>({
        start(controller) {
          for (const piece of pieces) controller.enqueue(typeof piece === "string" ? encoder.encode(piece) : piece);
          controller.close();
        },
      }),
      { status: 200, statusText: "OK", headers: { "content-type": contentType, "x-request-id": "r1" } },
    )) as typeof fetch;
}

async function through(tap: AnthropicUsageTap, pieces: Array<string | Uint8Array>, contentType?: string) {
  const response = await tap.fetch(answering(pieces, contentType))("https://api.example/v1/messages");
  return { response, text: await response.text() };
}

describe("AnthropicUsageTap", () => {
  it("passes the stream through byte for byte, with status and headers, and records both usages", async () => {
    const tap = new AnthropicUsageTap();
    const body = start("msg_1", { input_tokens: 10, output_tokens: 1 }) + sse("content_block_delta", { delta: { text: "hi" } }) + delta({ output_tokens: 5, input_tokens: 12 });
    const { response, text } = await through(tap, [body]);
    expect(text).toBe(body);
    expect([response.status, response.statusText, response.headers.get("x-request-id")]).toStrictEqual([200, "OK", "r1"]);
    expect(tap.take("msg_1")).toStrictEqual({ start: { input_tokens: 10, output_tokens: 1 }, delta: { output_tokens: 5, input_tokens: 12 } });
    // Taken once.
    expect(tap.take("msg_1")).toBeUndefined();
    expect(tap.take(undefined)).toBeUndefined();
  });

  it("the last message_delta wins (each is cumulative)", async () => {
    const tap = new AnthropicUsageTap();
    await through(tap, [start("msg_1", { input_tokens: 1 }), delta({ output_tokens: 2 }), delta({ output_tokens: 7 })]);
    expect(tap.take("msg_1")).toStrictEqual({ start: { input_tokens: 1 }, delta: { output_tokens: 7 } });
  });

  it("events cut anywhere, CRLF line ends, and multi-byte characters split between chunks", async () => {
    const tap = new AnthropicUsageTap();
    const body = start("msg_é", { input_tokens: 3 }).replace(/\n/g, "\r\n") + delta({ output_tokens: 4 });
    const bytes = encoder.encode(body);
    const pieces: Uint8Array[] = [];
    for (let i = 0; i < bytes.length; i += 7) pieces.push(bytes.slice(i, i + 7));
    const { text } = await through(tap, pieces);
    expect(text).toBe(body);
    expect(tap.take("msg_é")).toStrictEqual({ start: { input_tokens: 3 }, delta: { output_tokens: 4 } });
  });

  it("a stream with CRLF line ends only", async () => {
    const tap = new AnthropicUsageTap();
    await through(tap, [start("msg_c", { input_tokens: 3 }).replace(/\n/g, "\r\n") + delta({ output_tokens: 4 }).replace(/\n/g, "\r\n")]);
    expect(tap.take("msg_c")).toStrictEqual({ start: { input_tokens: 3 }, delta: { output_tokens: 4 } });
  });

  it("a CRLF event and an LF event in one chunk are two events, taken in order", async () => {
    const tap = new AnthropicUsageTap();
    await through(tap, [start("msg_m", { input_tokens: 3 }).replace(/\n/g, "\r\n") + delta({ output_tokens: 4 })]);
    expect(tap.take("msg_m")).toStrictEqual({ start: { input_tokens: 3 }, delta: { output_tokens: 4 } });
    const other = new AnthropicUsageTap();
    await through(other, [start("msg_n", { input_tokens: 3 }) + delta({ output_tokens: 4 }).replace(/\n/g, "\r\n")]);
    expect(other.take("msg_n")).toStrictEqual({ start: { input_tokens: 3 }, delta: { output_tokens: 4 } });
  });

  it("a character split between two chunks is decoded whole", async () => {
    const tap = new AnthropicUsageTap();
    const bytes = encoder.encode(start("msg_ü", { input_tokens: 3 }));
    const at = bytes.indexOf(0xc3) + 1;
    const { text } = await through(tap, [bytes.slice(0, at), bytes.slice(at)]);
    expect(text).toBe(start("msg_ü", { input_tokens: 3 }));
    expect(tap.take("msg_ü")).toStrictEqual({ start: { input_tokens: 3 } });
  });

  it("id lines and comments in a block are not data", async () => {
    const tap = new AnthropicUsageTap();
    await through(tap, ['event: message_start\nid: 17\n: a comment\ndata: {"message":{"id":"msg_i","usage":{"input_tokens":2}}}\nretry: 100\n\n']);
    expect(tap.take("msg_i")).toStrictEqual({ start: { input_tokens: 2 } });
  });

  it("data split over several data: lines is joined", async () => {
    const tap = new AnthropicUsageTap();
    await through(tap, ['event: message_start\ndata: {"message": {"id": "msg_2",\ndata: "usage": {"input_tokens": 8}}}\n\n']);
    expect(tap.take("msg_2")).toStrictEqual({ start: { input_tokens: 8 } });
  });

  it("other events, and usages that are not records, are not recorded", async () => {
    const tap = new AnthropicUsageTap();
    await through(tap, [
      sse("ping", { usage: { output_tokens: 99 } }),
      start("msg_3", [1] as never),
      start("msg_3", null as never),
      sse("content_block_start", { message: { id: "msg_other" } }),
      delta("x" as never),
    ]);
    expect(tap.take("msg_3")).toStrictEqual({});
    expect(tap.take("msg_other")).toBeUndefined();
  });

  it("a message_delta before any message_start (no id) is not recorded; a start without a string id is not either", async () => {
    const tap = new AnthropicUsageTap();
    await through(tap, [sse("message_start", { message: { id: 5, usage: { input_tokens: 1 } } }), delta({ output_tokens: 3 })]);
    expect(tap.take("5")).toBeUndefined();
    expect(tap.take(5 as never)).toBeUndefined();
  });

  it("a broken data line costs the correction, never the stream", async () => {
    const tap = new AnthropicUsageTap();
    const body = "event: message_start\ndata: {not json\n\n" + delta({ output_tokens: 3 });
    const { text } = await through(tap, [body]);
    expect(text).toBe(body);
  });

  it("a response that is not an event stream (or has no body) is returned as it is", async () => {
    const tap = new AnthropicUsageTap();
    const json = new Response('{"id":"msg_9"}', { headers: { "content-type": "application/json" } });
    expect(await tap.fetch((async () => json) as typeof fetch)("u")).toBe(json);
    const empty = new Response(null, { status: 204, headers: { "content-type": "text/event-stream" } });
    expect(await tap.fetch((async () => empty) as typeof fetch)("u")).toBe(empty);
    const untyped = new Response("event: message_start\n\n");
    untyped.headers.delete("content-type");
    expect(await tap.fetch((async () => untyped) as typeof fetch)("u")).toBe(untyped);
  });

  it("passes the request on unchanged", async () => {
    const tap = new AnthropicUsageTap();
    const seen: unknown[] = [];
    const base = (async (input: unknown, init: unknown) => {
      seen.push(input, init);
      return new Response("ok");
    }) as typeof fetch;
    const init = { method: "POST", body: "{}" };
    await tap.fetch(base)("https://api.example/v1/messages", init);
    expect(seen).toStrictEqual(["https://api.example/v1/messages", init]);
  });

  it("remembers at most 1000 streams, forgetting the oldest first; a stream recorded again counts as new", async () => {
    const tap = new AnthropicUsageTap();
    for (let i = 0; i < 1001; i++) await through(tap, [start(`msg_${i}`, { input_tokens: i })]);
    // msg_1 is refreshed, so msg_2 is the oldest when the next one arrives.
    await through(tap, [start("msg_1", { input_tokens: 1 })]);
    await through(tap, [start("msg_1001", { input_tokens: 1001 })]);
    expect(tap.take("msg_0")).toBeUndefined();
    expect(tap.take("msg_2")).toBeUndefined();
    expect(tap.take("msg_1")).toStrictEqual({ start: { input_tokens: 1 } });
    expect(tap.take("msg_3")).toStrictEqual({ start: { input_tokens: 3 } });
    expect(tap.take("msg_1001")).toStrictEqual({ start: { input_tokens: 1001 } });
  });
});
