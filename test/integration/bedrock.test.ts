/**
 * The metering handler on the real @langchain/aws ChatBedrockConverse against the local Bedrock fake
 * (Converse JSON, ConverseStream event-stream binary framing). Bedrock's inputTokens leaves cache reads
 * and writes out; @langchain/aws adds them back, so input is exact; writes are split by TTL.
 */
import { ChatBedrockConverse } from "@langchain/aws";
import { describe, expect, it } from "vitest";
import { bedrockClient, type BedrockFake, startBedrockServer } from "../support/bedrock-server.js";
import { useProviderFake } from "../support/lifecycle.js";
import { expectedEvents, meteringSetup, newRunId } from "../support/metering.js";

let fake: BedrockFake;
useProviderFake(startBedrockServer, (started) => (fake = started));

const MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const bedrock = (fields: Record<string, unknown> = {}) => new ChatBedrockConverse({ model: MODEL, region: "us-east-1", client: bedrockClient(fake), ...fields });
const base = { model: MODEL, provider: "amazon_bedrock" };
// The TTL split rides in the raw usage only (remove bedrockBill's cacheDetails reading and the first three fail).
const reply = { text: "Cached answers are cheaper.", inputTokens: 25, outputTokens: 40, cacheRead: 2000, cacheWrite5m: 300, cacheWrite1h: 500 };
const billed = { input: 2825, output: 40, cached: 2000, cacheWrite: 800, cacheWrite5m: 300, cacheWrite1h: 500 };

const drain = async (stream: AsyncIterable<unknown>) => {
  for await (const _ of stream) {
    // drain
  }
};

describe("ChatBedrockConverse + MeteringCallbackHandler", () => {
  it("Converse (invoke): cache reads and writes added to the input, writes by TTL", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue(reply);
    const runId = newRunId();
    await bedrock({ callbacks: [handler] }).invoke("Hi", { runId, metadata: { subject: "acme" } });
    await handler.flush();
    expect(fake.requests[0]?.path).toBe(`/model/${encodeURIComponent(MODEL)}/converse`);
    expect(fake.requests[0]?.reply.usage).toMatchObject({ inputTokens: 25, totalTokens: 2865 });
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, ...billed }));
  });

  it("ConverseStream (.stream()): the metadata event's usage, exact", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue(reply);
    const runId = newRunId();
    let text = "";
    for await (const chunk of await bedrock({ callbacks: [handler] }).stream("Hi", { runId, metadata: { subject: "acme" } })) text += chunk.text;
    await handler.flush();
    expect(fake.requests[0]?.stream).toBe(true);
    expect(text).toBe(reply.text);
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, ...billed }));
  });

  it("streaming: true invoke, split: disjoint buckets adding up to Bedrock's totalTokens", async () => {
    const { sink, handler } = meteringSetup({ splitTokenTypes: true });
    fake.enqueue(reply);
    await bedrock({ streaming: true, callbacks: [handler] }).invoke("Hi", { metadata: { subject: "acme" } });
    await handler.flush();
    expect(sink.events.map((e) => [e.data!.type, e.data!.tokens])).toEqual([
      ["input", 25],
      ["output", 40],
      ["cache_read", 2000],
      ["cache_write", 300],
      ["cache_write_1h", 500],
    ]);
    expect(sink.events.reduce((sum, e) => sum + (e.data!.tokens as number), 0)).toBe(fake.requests[0]!.reply.usage!.totalTokens);
  });

  it("no cache: exact as reported", async () => {
    const { sink, handler } = meteringSetup();
    fake.enqueue({ inputTokens: 12, outputTokens: 7 });
    const runId = newRunId();
    await drain(await bedrock({ callbacks: [handler] }).stream("Hi", { runId, metadata: { subject: "acme" } }));
    await handler.flush();
    expect(sink.events).toEqual(expectedEvents(runId, { subject: "acme", ...base, input: 12, output: 7 }));
  });
});
