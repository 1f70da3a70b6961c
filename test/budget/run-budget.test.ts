/**
 * Per-run budgets: one top-level invoke and everything beneath it (graph nodes, tools, models called
 * inside tools), with LangGraph agents driving the real ChatOpenAI against the OpenAI fake. A runaway
 * agent stops at the model call that would pass the budget; an agent can catch the error and answer
 * gracefully, or interrupt for a human.
 */
import { AIMessage, HumanMessage, type BaseMessage } from "@langchain/core/messages";
import type { RunnableConfig } from "@langchain/core/runnables";
import { tool } from "@langchain/core/tools";
import { Command, END, interrupt, MemorySaver, MessagesAnnotation, START, StateGraph } from "@langchain/langgraph";
import { createReactAgent } from "@langchain/langgraph/prebuilt";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import { BudgetExceededError, BudgetGuard, type BudgetGuardOptions } from "langchain-openmeter";
import { useProviderFake } from "../support/lifecycle.js";
import { recordingLogger } from "../support/memory-sink.js";
import { hasToolResult, startOpenAIServer, type OpenAIFake } from "../support/openai-server.js";
import { ask, billing, FEATURE, openai } from "./helpers";

let fake: OpenAIFake;
useProviderFake(startOpenAIServer, (started) => (fake = started));
beforeEach(() => void vi.spyOn(console, "error").mockImplementation(() => {}));
afterEach(() => void vi.restoreAllMocks());

const PER_CALL = { prompt_tokens: 200, completion_tokens: 50 };
const lookup = tool(async ({ query }: { query: string }) => `Nothing found for ${query}; try again.`, {
  name: "lookup",
  description: "Looks something up.",
  schema: z.object({ query: z.string() }),
});

/** An agent that never stops asking for the tool: the runaway a run budget is for. */
function runaway() {
  fake.respondWith(() => ({ toolCalls: [{ name: "lookup", arguments: { query: "more" } }], usage: PER_CALL }));
}

function newGuard(options: Partial<BudgetGuardOptions> = {}) {
  const log = recordingLogger();
  return { guard: new BudgetGuard({ runBudget: { maxTokens: 1500 }, logger: log.logger, ...options }), ...log };
}

describe("a run budget in a LangGraph agent loop", () => {
  it("a runaway ReAct agent stops at the model call that would pass maxTokens: 1,500 tokens, 250 billed and ~230 reserved per step, so 5 calls reach the provider", async () => {
    runaway();
    const { guard } = newGuard();
    const agent = createReactAgent({ llm: openai(fake, { maxTokens: 20 }), tools: [lookup] });

    const error = await agent.invoke({ messages: [new HumanMessage("Find it.")] }, { callbacks: [guard], recursionLimit: 100 }).catch((e: unknown) => e);

    expect(BudgetExceededError.is(error)).toBe(true);
    const stopped = error as BudgetExceededError;
    expect(stopped).toMatchObject({ source: "run", reason: "exhausted", budget: "tokens" });
    // Each step's worst case grows with the history; 5 × 250 used + the 6th's worst case > 1,500.
    expect(fake.requests).toHaveLength(5);
    expect(stopped.remaining).toBe(1500 - 5 * 250);
    expect(stopped.required).toBeGreaterThan(250);
    expect(stopped.message).toMatch(/^this run \(root [0-9a-f-]+\) may use 1,500 tokens and has 250 left \(1,250 used, 0 reserved\); this call could need \d+/);
    expect(guard.stats()).toMatchObject({ allowed: 5, blockedByRun: 1 });
  });

  it("the budget is per top-level run: the next invoke starts afresh, and metadata.runBudget sets one invoke's own limit", async () => {
    runaway();
    const { guard } = newGuard();
    const agent = createReactAgent({ llm: openai(fake, { maxTokens: 20 }), tools: [lookup] });
    const run = (config: Record<string, unknown> = {}) =>
      agent.invoke({ messages: [new HumanMessage("Find it.")] }, { callbacks: [guard], recursionLimit: 100, ...config }).catch((e: unknown) => e);
    await run();
    expect(fake.requests).toHaveLength(5);
    await run();
    expect(fake.requests).toHaveLength(10);
    await run({ metadata: { runBudget: { maxTokens: 600 } } });
    expect(fake.requests).toHaveLength(12);
  });

  it("a graceful final answer: the agent's model node catches BudgetExceededError and ends with its own message", async () => {
    runaway();
    const { guard } = newGuard({ runBudget: { maxTokens: 800 } });
    const model = openai(fake, { maxTokens: 20 }).bindTools([lookup]);
    const callModel = async (state: typeof MessagesAnnotation.State, config: RunnableConfig) => {
      try {
        return { messages: [await model.invoke(state.messages, config)] };
      } catch (error) {
        if (!BudgetExceededError.is(error)) throw error;
        return { messages: [new AIMessage(`I stopped here: this task reached its budget (${error.remaining} tokens left, the next step needed up to ${error.required}).`)] };
      }
    };
    const toolsNode = async (state: typeof MessagesAnnotation.State) => {
      const last = state.messages.at(-1) as AIMessage;
      return { messages: await Promise.all((last.tool_calls ?? []).map((call) => lookup.invoke(call))) };
    };
    const graph = new StateGraph(MessagesAnnotation)
      .addNode("agent", callModel)
      .addNode("tools", toolsNode)
      .addEdge(START, "agent")
      .addConditionalEdges("agent", (state) => ((state.messages.at(-1) as AIMessage).tool_calls?.length ? "tools" : END))
      .addEdge("tools", "agent")
      .compile();

    const state = await graph.invoke({ messages: [new HumanMessage("Find it.")] }, { callbacks: [guard], recursionLimit: 100 });

    expect(fake.requests).toHaveLength(3); // 3 × 250 = 750 of 800
    expect(state.messages.at(-1)?.content).toMatch(/^I stopped here: this task reached its budget \(50 tokens left, the next step needed up to \d+\)\.$/);
    expect(guard.stats()).toMatchObject({ allowed: 3, blockedByRun: 1 });
  });

  it("or an interrupt: the node asks a human, and the resumed invoke (a new top-level run, a new budget) finishes the task", async () => {
    fake.respondWith((request) =>
      request.body.messages.filter((m: { role: string }) => m.role === "tool").length >= 3
        ? { content: "Found it.", usage: PER_CALL }
        : { toolCalls: [{ name: "lookup", arguments: { query: "more" } }], usage: PER_CALL },
    );
    const { guard } = newGuard({ runBudget: { maxTokens: 800 } });
    const model = openai(fake, { maxTokens: 20 }).bindTools([lookup]);
    const callModel = async (state: typeof MessagesAnnotation.State, config: RunnableConfig) => {
      try {
        return { messages: [await model.invoke(state.messages, config)] };
      } catch (error) {
        if (!BudgetExceededError.is(error)) throw error;
        const answer = interrupt({ question: "This task reached its budget. Continue?", detail: error.message }) as string;
        if (answer !== "continue") return { messages: [new AIMessage("Stopped at the budget, as you asked.")] };
        return { messages: [await model.invoke(state.messages, config)] };
      }
    };
    const graph = new StateGraph(MessagesAnnotation)
      .addNode("agent", callModel)
      .addNode("tools", async (state: typeof MessagesAnnotation.State) => {
        const last = state.messages.at(-1) as AIMessage;
        return { messages: await Promise.all((last.tool_calls ?? []).map((call) => lookup.invoke(call))) };
      })
      .addEdge(START, "agent")
      .addConditionalEdges("agent", (state) => ((state.messages.at(-1) as AIMessage).tool_calls?.length ? "tools" : END))
      .addEdge("tools", "agent")
      .compile({ checkpointer: new MemorySaver() });
    const config = { callbacks: [guard], recursionLimit: 100, configurable: { thread_id: "t1" } };

    const paused = (await graph.invoke({ messages: [new HumanMessage("Find it.")] }, config)) as { __interrupt__?: Array<{ value: { question: string } }> };
    expect(paused.__interrupt__?.[0]?.value.question).toBe("This task reached its budget. Continue?");
    expect(fake.requests).toHaveLength(3);

    const done = await graph.invoke(new Command({ resume: "continue" }), config);
    expect((done.messages as BaseMessage[]).at(-1)?.content).toBe("Found it.");
    expect(fake.requests).toHaveLength(4);
  });
});

describe("what belongs to a run", () => {
  it("a model called inside a tool counts against the run that called the tool", async () => {
    const { guard } = newGuard({ runBudget: { maxTokens: 600 } });
    const inner = openai(fake, { maxTokens: 20 });
    const summarize = tool(async ({ text }: { text: string }, config) => String((await inner.invoke([new HumanMessage(`Summarize: ${text}`)], config)).content), {
      name: "summarize",
      description: "Summarizes a text.",
      schema: z.object({ text: z.string() }),
    });
    fake.respondWith((request) =>
      String(request.body.messages.at(-1)?.content ?? "").startsWith("Summarize")
        ? { content: "Short.", usage: PER_CALL }
        : hasToolResult(request)
          ? { content: "Done.", usage: PER_CALL }
          : { toolCalls: [{ name: "summarize", arguments: { text: "a long text" } }], usage: PER_CALL },
    );
    const agent = createReactAgent({ llm: openai(fake, { maxTokens: 150 }), tools: [summarize] });
    const error = await agent.invoke({ messages: [new HumanMessage("Please shorten a long text.")] }, { callbacks: [guard] }).catch((e: unknown) => e);
    // agent (250) → the tool's model (250) → agent: 100 left, and the third call needs 150 + its
    // prompt. Had the tool's call not counted, 350 would have been left and the third call would pass.
    expect(error).toMatchObject({ source: "run", reason: "exhausted", remaining: 100 });
    expect((error as BudgetExceededError).required).toBeLessThan(350);
    expect(fake.requests).toHaveLength(2);
  });

  it("a money budget (maxCost) counts each call's cost from per-token prices; a model without a price is stopped as unpriced", async () => {
    runaway();
    const prices = { "gpt-4o-mini": { input: 1e-6, output: 4e-6 } };
    const { guard } = newGuard({ runBudget: { maxCost: 0.0012 }, prices });
    const agent = createReactAgent({ llm: openai(fake, { maxTokens: 20 }), tools: [lookup] });
    const error = (await agent.invoke({ messages: [new HumanMessage("Find it.")] }, { callbacks: [guard], recursionLimit: 100 }).catch((e: unknown) => e)) as BudgetExceededError;
    // 200 × 1e-6 + 50 × 4e-6 = 0.0004 per call: 3 calls (0.0012) leave nothing for a 4th.
    expect(fake.requests).toHaveLength(3);
    expect(error).toMatchObject({ source: "run", budget: "cost", reason: "exhausted" });
    expect(error.remaining).toBeCloseTo(0, 12);
    expect(error.message).toMatch(/^this run \(root .*\) may cost 0\.0012 and has 0 left \(0\.0012 spent, 0 reserved\); this call could cost 0\.000\d+ \(model gpt-4o-mini/);

    const unpriced = newGuard({ runBudget: { maxCost: 1 }, prices });
    const other = await openai(fake, { model: "gpt-4.1" }).invoke(ask(), { callbacks: [unpriced.guard] }).catch((e: unknown) => e);
    expect(other).toMatchObject({ reason: "unpriced", source: "run" });
    expect((other as Error).message).toMatch(/`prices` has no price for model gpt-4\.1.*add prices\["gpt-4\.1"\] = \{ input, output \}/);
  });

  it("with the guard on the model only, it cannot see the agent's run: it says so once, and each call is budgeted alone", async () => {
    runaway();
    const { guard, warnings } = newGuard({ runBudget: { maxTokens: 600 } });
    const agent = createReactAgent({ llm: openai(fake, { maxTokens: 20, callbacks: [guard] }), tools: [lookup] });
    const error = await agent.invoke({ messages: [new HumanMessage("Find it.")] }, { recursionLimit: 12 }).catch((e: unknown) => e);
    expect(String(error)).toMatch(/Recursion limit of 12 reached/); // not stopped by the budget: 6 × 250 > 600
    expect(fake.requests).toHaveLength(6);
    expect(warnings.filter((w) => w.includes("pass the guard in the outermost invoke's `callbacks`"))).toHaveLength(1);
  });
});

describe("both budgets at once", () => {
  it("the customer's balance and the run's budget are both checked; whichever cannot cover the call stops it", async () => {
    runaway();
    const b = await billing({ grant: 100_000 });
    const guard = new BudgetGuard({ url: b.server.url, feature: FEATURE, clock: b.clock, logger: recordingLogger().logger, runBudget: { maxTokens: 1000 } });
    const agent = createReactAgent({ llm: openai(fake, { maxTokens: 20 }), tools: [lookup] });
    const error = await agent.invoke({ messages: [new HumanMessage("Find it.")] }, { callbacks: [guard], metadata: { subject: "acme" }, recursionLimit: 100 }).catch((e: unknown) => e);
    expect(error).toMatchObject({ source: "run", subject: "acme" });
    expect(fake.requests).toHaveLength(3); // 750 used; the 4th call's worst case passes 1,000
    expect((await guard.remaining("acme")).unsettled).toBe(3 * 250);

    await guard.close();
    await b.server.close();

    const small = await billing({ grant: 600 });
    const both = new BudgetGuard({ url: small.server.url, feature: FEATURE, clock: small.clock, logger: recordingLogger().logger, runBudget: { maxTokens: 100_000 } });
    const stopped = await agent.invoke({ messages: [new HumanMessage("Find it.")] }, { callbacks: [both], metadata: { subject: "acme" }, recursionLimit: 100 }).catch((e: unknown) => e);
    expect(stopped).toMatchObject({ source: "entitlement", reason: "exhausted", subject: "acme", feature: FEATURE });
    expect(fake.requests).toHaveLength(3 + 2); // 2 × 250 of 600; the third's worst case does not fit
    await both.close();
    await small.server.close();
  });
});
