/**
 * How far the estimates are from real counts: the hot path's fastTokenEstimate against js-tiktoken's
 * o200k_base (GPT-4o's tokenizer), and both against what the OpenAI fake reports as prompt_tokens for
 * the same requests sent by the real ChatOpenAI. Plus the preview (`estimate()`): each integration's
 * output limit read from its own invocation parameters, completions, tools and prices.
 */
import { readFileSync } from "node:fs";
import { AIMessage, HumanMessage, SystemMessage } from "@langchain/core/messages";
import { ChatAnthropic } from "@langchain/anthropic";
import { ChatBedrockConverse } from "@langchain/aws";
import { ChatGoogleGenerativeAI } from "@langchain/google-genai";
import { ChatMistralAI } from "@langchain/mistralai";
import { ChatOllama } from "@langchain/ollama";
import { ChatOpenAI } from "@langchain/openai";
import { describe, expect, it } from "vitest";
import { BudgetGuard, estimate, fastTokenEstimate } from "langchain-openmeter";
import { o200kTokenCount, outputLimit } from "../../src/budget/estimate";
import { useProviderFake } from "../support/lifecycle.js";
import { recordingLogger } from "../support/memory-sink.js";
import { startOpenAIServer, type OpenAIFake } from "../support/openai-server.js";

let fake: OpenAIFake;
useProviderFake(startOpenAIServer, (started) => (fake = started));

const corpus: Record<string, string> = {
  prose: "You are a helpful, concise assistant. What is the capital of France? Please answer in one sentence, and explain briefly why it became the capital historically.",
  code: readFileSync(new URL("../../src/budget/reservations.ts", import.meta.url), "utf8").slice(0, 4000),
  json: JSON.stringify({ city: "Paris", temperature: 21.5, conditions: ["sunny", "windy"], forecast: [{ day: "Mon", high: 24, low: 15 }] }),
  yaml: "paths:\n  /api/v1/events:\n    post:\n      operationId: ingestEvents\n      responses:\n        '204':\n          description: No Content\n",
  german: "Die Hauptstadt von Frankreich ist Paris. Sie liegt an der Seine und ist für ihre Museen bekannt.",
  russian: "Столица Франции — Париж. Он расположен на Сене и известен своими музеями и искусством.",
  chinese: "法国的首都是巴黎。它位于塞纳河畔，以博物馆和艺术闻名于世。",
  japanese: "フランスの首都はパリです。セーヌ川沿いにあり、美術館で有名です。",
  emoji: "Great job! 🎉🎉 Let's celebrate 🥳 with cake 🍰 and coffee ☕.",
  ids: Array.from({ length: 10 }, (_, i) => `0195f7a2-${i}abc-7def-8123-4567890abcde`).join(" "),
  base64: Buffer.from(readFileSync(new URL("../../src/clock.ts", import.meta.url))).toString("base64").slice(0, 1200),
};

describe("fastTokenEstimate (the guard's default on the call path) against o200k_base", () => {
  const ratio = (text: string) => fastTokenEstimate(text) / o200kTokenCount(text);

  it("lands within 0.9x-1.3x of o200k for prose, code, JSON, YAML, German, Russian, CJK and emoji (chars/4 falls to 0.3x on CJK)", () => {
    // Measured at this commit: prose 1.06, code 1.10, json 1.11, yaml 1.25, german 1.15, russian 1.13,
    // chinese 1.16, japanese 1.19, emoji 1.05; chars/4 gives json 0.78, chinese 0.32, japanese 0.30.
    for (const name of ["prose", "code", "json", "yaml", "german", "russian", "chinese", "japanese", "emoji"]) {
      const r = ratio(corpus[name]!);
      expect(r, `${name}: ${r.toFixed(2)}x`).toBeGreaterThanOrEqual(0.9);
      expect(r, `${name}: ${r.toFixed(2)}x`).toBeLessThanOrEqual(1.3);
    }
    expect(Math.ceil(corpus.chinese!.length / 4) / o200kTokenCount(corpus.chinese!)).toBeLessThan(0.4);
  });

  it("undercounts random identifiers and base64 (measured 0.91x and 0.61x): such prompts should use estimateTokens: \"o200k_base\"", () => {
    for (const name of ["ids", "base64"]) {
      const r = ratio(corpus[name]!);
      expect(r, `${name}: ${r.toFixed(2)}x`).toBeGreaterThanOrEqual(0.6);
      expect(r, `${name}: ${r.toFixed(2)}x`).toBeLessThan(1);
    }
  });

  it("counts nothing for nothing, and grows with the text", () => {
    expect(fastTokenEstimate("")).toBe(0);
    expect(fastTokenEstimate("hello")).toBe(1);
    expect(fastTokenEstimate("hello world")).toBe(2);
    expect(fastTokenEstimate("hello world ".repeat(100))).toBeGreaterThan(fastTokenEstimate("hello world ".repeat(10)) * 9);
  });
});

describe("estimates against the OpenAI fake's prompt_tokens for the same requests (real ChatOpenAI)", () => {
  it("both estimates are 0.5x-1.1x of the fake's count, and the reserved worst case covers every call the fake billed", async () => {
    // The fake counts 3 + Σ(4 + ceil(len(JSON of the message) / 4)): the JSON envelope of each message
    // ({"role":"user","content":…}) counts as text, so on short messages it runs well above a tokenizer.
    // Measured at this commit, fast / o200k / fake: greeting 9 / 9 / 16 (0.56x), question 30 / 29 / 45
    // (0.67x), conversation 56 / 60 / 83 (0.67x, 0.72x), a 4,000-character module 1,078 / 981 / 1,042
    // (1.03x, 0.94x). The maximum output is what makes the worst case cover the bill.
    const prompts = {
      greeting: [new HumanMessage("Hello!")],
      question: [new SystemMessage("You are a helpful, concise assistant."), new HumanMessage("What is the capital of France, and why?")],
      conversation: [
        new SystemMessage("You are a helpful, concise assistant."),
        new HumanMessage("What is 12 times 7?"),
        new AIMessage("12 times 7 is 84."),
        new HumanMessage("And divided by 4? Explain the steps, please, as to a child."),
      ],
      code: [new HumanMessage(`Review this module:\n\n${corpus.code}`)],
    };
    const guard = new BudgetGuard({ runBudget: { maxTokens: 1_000_000 }, logger: recordingLogger().logger });
    const model = new ChatOpenAI({ model: "gpt-4o-mini", apiKey: "test", maxRetries: 0, maxTokens: 50, configuration: { baseURL: fake.baseURL } });
    for (const [name, messages] of Object.entries(prompts)) {
      fake.requests.length = 0;
      await model.invoke(messages, { callbacks: [guard] });
      const billed = fake.requests[0]!.reply.usage!;
      const fast = await guard.preview(messages, { maxOutputTokens: 50 });
      const exact = estimate(messages, { maxOutputTokens: 50 });
      for (const [what, value] of [["fast", fast.estimate.inputTokens], ["o200k", exact.inputTokens]] as const) {
        const r = value / billed.prompt_tokens;
        expect(r, `${name} ${what}: ${value} vs ${billed.prompt_tokens}`).toBeGreaterThanOrEqual(0.5);
        expect(r, `${name} ${what}: ${value} vs ${billed.prompt_tokens}`).toBeLessThanOrEqual(1.1);
      }
      expect(fast.estimate.worstCaseTokens, name).toBeGreaterThanOrEqual(billed.total_tokens);
    }
    await guard.close();
  });
});

describe("estimate(): the preview", () => {
  it("input tokens (o200k, with OpenAI's framing), the maximum output, the worst case, and the cost from per-token prices", () => {
    const messages = [new SystemMessage("Be brief."), new HumanMessage("What is 1+1?")];
    const preview = estimate(messages, { model: "gpt-4o-mini", maxOutputTokens: 200, prices: { "gpt-4o-mini": { input: 0.15e-6, output: 0.6e-6 } } });
    const text = o200kTokenCount("Be brief.") + o200kTokenCount("What is 1+1?");
    expect(preview).toEqual({
      model: "gpt-4o-mini",
      inputTokens: 3 + 2 * 4 + text,
      maxOutputTokens: 200,
      worstCaseTokens: 3 + 2 * 4 + text + 200,
      cost: { input: (11 + text) * 0.15e-6, maxOutput: 200 * 0.6e-6, worstCase: (11 + text) * 0.15e-6 + 200 * 0.6e-6 },
    });
    expect(estimate("What is 1+1?").cost).toBeUndefined(); // no prices, no cost
    expect(estimate("What is 1+1?").maxOutputTokens).toBe(4096); // no limit anywhere: the default
  });

  it("reads each integration's own output limit and completions from the model (the same parameters the guard reads at the call)", () => {
    const cases: Array<[string, { invocationParams(): unknown }, number]> = [
      ["ChatOpenAI max_tokens, n: 2", new ChatOpenAI({ model: "gpt-4o-mini", apiKey: "x", maxTokens: 256, n: 2 }), 512],
      ["ChatOpenAI reasoning model: max_completion_tokens", new ChatOpenAI({ model: "o4-mini", apiKey: "x", maxTokens: 300 }), 300],
      ["ChatOpenAI Responses API: max_output_tokens", new ChatOpenAI({ model: "gpt-4o-mini", apiKey: "x", maxTokens: 111, useResponsesApi: true }), 111],
      ["ChatAnthropic's default max_tokens", new ChatAnthropic({ model: "claude-sonnet-4-5", apiKey: "x" }), 16384],
      ["ChatGoogleGenerativeAI generationConfig.maxOutputTokens", new ChatGoogleGenerativeAI({ model: "gemini-2.5-flash", apiKey: "x", maxOutputTokens: 640 }), 640],
      ["ChatMistralAI maxTokens", new ChatMistralAI({ model: "mistral-small", apiKey: "x", maxTokens: 700 }), 700],
      ["ChatOllama options.num_predict", new ChatOllama({ model: "llama3", numPredict: 800 }), 800],
      [
        "ChatBedrockConverse inferenceConfig.maxTokens",
        new ChatBedrockConverse({ model: "anthropic.claude-3", region: "us-east-1", credentials: { accessKeyId: "a", secretAccessKey: "b" }, maxTokens: 900 }),
        900,
      ],
    ];
    for (const [name, model, expected] of cases) {
      expect(estimate("hi", { model: model as never }).maxOutputTokens, name).toBe(expected);
      const limit = outputLimit({ invocation_params: model.invocationParams() }, undefined);
      expect((limit.maxTokens ?? 0) * limit.completions, name).toBe(expected);
    }
    // No limit set (ChatOpenAI's default): the call can run to the model's own maximum; 4096 is assumed.
    expect(estimate("hi", { model: new ChatOpenAI({ model: "gpt-4o-mini", apiKey: "x" }) as never }).maxOutputTokens).toBe(4096);
    expect(outputLimit(undefined, { ls_max_tokens: 333 })).toEqual({ maxTokens: 333, completions: 1 });
  });

  it("tool definitions count as input; cache and reasoning prices raise the worst case only when dearer", () => {
    const tools = [{ type: "function", function: { name: "get_weather", description: "Weather for a city", parameters: { type: "object", properties: { city: { type: "string" } } } } }];
    expect(estimate("hi", { tools }).inputTokens).toBe(estimate("hi").inputTokens + o200kTokenCount(JSON.stringify(tools)));
    const prices = { m: { input: 1, output: 2, cacheWrite: 1.25, reasoning: 2 } };
    expect(estimate("hi", { model: "m", maxOutputTokens: 10, prices }).cost).toMatchObject({ maxOutput: 20, input: estimate("hi").inputTokens * 1.25 });
  });
});
