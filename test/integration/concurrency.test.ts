/**
 * Many calls at once through the real integrations: every run is billed exactly once, to its own
 * subject, with its own usage; the totals per subject equal the sum of what the fake served.
 */
import { ChatAnthropic } from "@langchain/anthropic";
import { ChatOpenAI } from "@langchain/openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AnthropicFake, startAnthropicServer } from "../support/anthropic-server.js";
import { guardNetwork, type NetworkGuard } from "../support/network.js";
import { type OpenAIFake, startOpenAIServer } from "../support/openai-server.js";
import { eventsOfRun, expectedEvents, meteringSetup, newRunId, totalsBySubject } from "../support/metering.js";

let guard: NetworkGuard;
let openaiFake: OpenAIFake;
let anthropicFake: AnthropicFake;
beforeAll(async () => {
  guard = guardNetwork();
  openaiFake = await startOpenAIServer();
  anthropicFake = await startAnthropicServer();
});
afterAll(async () => {
  await openaiFake.close();
  await anthropicFake.close();
  guard.restore();
  expect(guard.blocked).toEqual([]);
});

/** Call number i's scripted usage, recovered by the fake from the prompt "call <i>". */
const callNumber = (messages: Array<{ content?: unknown }>): number => {
  const text = JSON.stringify(messages.at(-1)?.content);
  const match = /call (\d+)/.exec(text);
  if (!match) throw new Error(`no call number in ${text}`);
  return Number(match[1]);
};

describe("concurrency", () => {
  it("400 concurrent ChatOpenAI calls (invoke and .stream()) across 20 subjects: exact totals per subject, no duplicate ids", async () => {
    const CALLS = 400;
    const SUBJECTS = 20;
    const subjectOf = (i: number) => `customer-${String(i % SUBJECTS).padStart(2, "0")}`;
    const scripted = (i: number) => ({
      prompt_tokens: 100 + i,
      completion_tokens: 1 + ((i * 7) % 50),
      cached: i % 3 === 0 ? 64 : 0,
    });
    openaiFake.respondWith((request) => {
      const i = callNumber(request.body.messages);
      const u = scripted(i);
      return {
        usage: { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, prompt_tokens_details: { cached_tokens: u.cached } },
        // Interleave answers (and stream chunks) so runs end out of order.
        delayMs: (i * 13) % 7,
        chunkDelayMs: i % 2,
      };
    });

    const { sink, handler } = meteringSetup();
    const model = new ChatOpenAI({
      model: "gpt-4o-mini",
      apiKey: "test",
      maxRetries: 0,
      configuration: { baseURL: openaiFake.baseURL },
      callbacks: [handler],
    });
    const runIds = Array.from({ length: CALLS }, () => newRunId());
    await Promise.all(
      runIds.map(async (runId, i) => {
        const config = { runId, metadata: { subject: subjectOf(i), call: i } };
        if (i % 4 === 3) {
          for await (const _ of await model.stream(`call ${i}`, config)) {
            // drain
          }
        } else {
          await model.invoke(`call ${i}`, config);
        }
      }),
    );
    await handler.flush();

    expect(openaiFake.requests).toHaveLength(CALLS);
    expect(sink.events).toHaveLength(2 * CALLS);
    expect(new Set(sink.events.map((e) => e.id)).size).toBe(2 * CALLS);
    expect(handler.stats()).toMatchObject({ metered: CALLS, open: 0, failed: 0, missingUsage: 0, missingSubject: 0 });

    // Each run: exactly its own usage and subject.
    runIds.forEach((runId, i) => {
      const u = scripted(i);
      expect(eventsOfRun(sink.events, runId)).toEqual(
        expectedEvents(runId, {
          subject: subjectOf(i),
          model: "gpt-4o-mini",
          provider: "openai",
          responseModel: "gpt-4o-mini-2024-07-18",
          input: u.prompt_tokens,
          output: u.completion_tokens,
          ...(u.cached ? { cached: u.cached } : {}),
          extra: { call: i },
        }),
      );
    });

    // Totals per subject: the sum of what was scripted for that subject, exactly.
    const expected: Record<string, { input: number; output: number }> = {};
    for (let i = 0; i < CALLS; i++) {
      const entry = (expected[subjectOf(i)] ??= { input: 0, output: 0 });
      entry.input += scripted(i).prompt_tokens;
      entry.output += scripted(i).completion_tokens;
    }
    expect(Object.keys(expected)).toHaveLength(SUBJECTS);
    expect(totalsBySubject(sink.events)).toEqual(expected);
    // And the same totals from what the fake actually served.
    const served: Record<string, { input: number; output: number }> = {};
    for (const request of openaiFake.requests) {
      const i = callNumber(request.body.messages);
      const entry = (served[subjectOf(i)] ??= { input: 0, output: 0 });
      entry.input += request.reply.usage!.prompt_tokens;
      entry.output += request.reply.usage!.completion_tokens;
    }
    expect(totalsBySubject(sink.events)).toEqual(served);
  });

  it("100 concurrent ChatAnthropic streams: each run's over-count corrected on its own (message_delta's count billed)", async () => {
    const CALLS = 100;
    const subjectOf = (i: number) => `tenant-${i % 10}`;
    const scripted = (i: number) => ({ input_tokens: 20 + i, output_tokens: 5 + (i % 17), start: 1 + (i % 4) });
    anthropicFake.respondWith((request) => {
      const i = callNumber(request.body.messages);
      const u = scripted(i);
      return {
        text: `answer number ${i} in a few words`,
        usage: { input_tokens: u.input_tokens, output_tokens: u.output_tokens },
        startOutputTokens: u.start,
        messageDeltaUsage: i % 2 === 0 ? "cumulative" : "output_only",
        chunkDelayMs: i % 3,
      };
    });
    const { sink, handler } = meteringSetup();
    const model = new ChatAnthropic({
      model: "claude-sonnet-4-5-20250929",
      apiKey: "test",
      maxRetries: 0,
      anthropicApiUrl: anthropicFake.baseURL,
      callbacks: [handler],
    });
    const runIds = Array.from({ length: CALLS }, () => newRunId());
    await Promise.all(
      runIds.map(async (runId, i) => {
        for await (const _ of await model.stream(`call ${i}`, { runId, metadata: { subject: subjectOf(i) } })) {
          // drain
        }
      }),
    );
    await handler.flush();

    expect(sink.events).toHaveLength(2 * CALLS);
    expect(new Set(sink.events.map((e) => e.id)).size).toBe(2 * CALLS);
    runIds.forEach((runId, i) => {
      const u = scripted(i);
      expect(eventsOfRun(sink.events, runId)).toEqual(
        expectedEvents(runId, {
          subject: subjectOf(i),
          model: "claude-sonnet-4-5-20250929",
          provider: "anthropic",
          input: u.input_tokens,
          output: u.output_tokens,
        }),
      );
    });
    expect(handler.stats()).toMatchObject({ metered: CALLS, open: 0 });
  });
});
