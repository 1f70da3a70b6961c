/**
 * Every budget mode of the README, runnable offline: `npx tsx examples/budgets.ts`.
 * A local OpenMeter-compatible endpoint plays the billing side (customers, a metered entitlement,
 * grants, balances burnt down by the events it receives) and an offline model answers with real
 * token counts; each section prints what the guard let through and what it stopped.
 */
import { AIMessage, HumanMessage } from "@langchain/core/messages";
import { END, MessagesAnnotation, START, StateGraph } from "@langchain/langgraph";
import { BudgetExceededError, BudgetGuard, estimate, MeteringCallbackHandler } from "langchain-openmeter";
import { startOpenMeterServer } from "langchain-openmeter/testing";
import { OfflineChatModel } from "./offline-model";

const quiet = { warn: () => {}, error: () => {} };
// LangChain logs each error a handler raises ("Error in handler BudgetGuard, …"); this example prints its own lines.
const consoleError = console.error;
console.error = (...args: unknown[]) => (typeof args[0] === "string" && args[0].startsWith("Error in handler BudgetGuard") ? undefined : consoleError(...args));

async function main() {
  const model = new OfflineChatModel({ maxTokens: 64 });

  // Per customer, from OpenMeter's entitlements (beside the metering handler).
  {
    const server = await startOpenMeterServer();
    server.customers.add({ key: "acme" });
    server.entitlements.add({ customer: "acme", feature: "llm_tokens", meter: "llm_tokens" });
    server.grants.add({ customer: "acme", feature: "llm_tokens", amount: 150 });
    const metering = new MeteringCallbackHandler({ url: server.url, logger: quiet });
    const guard = new BudgetGuard({ url: server.url, feature: "llm_tokens", metering, logger: quiet });
    console.log("\n## Per customer (OpenMeter entitlement, a grant of 150 tokens)");
    for (let i = 1; i <= 6; i++) {
      try {
        const answer = await model.invoke(`What is ${i}+${i}?`, { callbacks: [metering, guard], metadata: { subject: "acme" } });
        console.log(`  call ${i}: answered "${answer.text}"`);
      } catch (error) {
        if (!BudgetExceededError.is(error)) throw error;
        console.log(`  call ${i}: stopped (${error.reason}): ${error.message}`);
      }
    }
    await metering.flush();
    console.log(`  OpenMeter's balance now: ${server.entitlements.value("acme", "llm_tokens").balance} tokens`);
    server.grants.add({ customer: "acme", feature: "llm_tokens", amount: 1000 });
    await guard.refresh("acme"); // the next background refresh would do the same
    const answer = await model.invoke("What is 9+9?", { callbacks: [metering, guard], metadata: { subject: "acme" } });
    console.log(`  after a new grant: answered "${answer.text}"`);
    await metering.shutdown();
    await guard.close();
    await server.close();
  }

  // Kong Konnect (v3 entitlement-access): access only, by the customer's id.
  {
    const server = await startOpenMeterServer({ api: "v3" });
    const acme = server.customers.add({ key: "acme" });
    const globex = server.customers.add({ key: "globex" });
    server.entitlements.add({ customer: "acme", feature: "llm_tokens", meter: "llm_tokens" });
    server.entitlements.add({ customer: "globex", feature: "llm_tokens" });
    server.grants.add({ customer: "acme", feature: "llm_tokens", amount: 1000 });
    const ids: Record<string, string> = { acme: acme.id, globex: globex.id };
    const guard = new BudgetGuard({ url: server.url, feature: "llm_tokens", customerOf: (subject) => ids[subject]!, logger: quiet });
    console.log("\n## Konnect v3 (access only: acme has a grant, globex none)");
    for (const subject of ["acme", "globex"]) {
      try {
        await model.invoke("What is 2+2?", { callbacks: [guard], metadata: { subject } });
        console.log(`  ${subject}: answered`);
      } catch (error) {
        if (!BudgetExceededError.is(error)) throw error;
        console.log(`  ${subject}: stopped (${error.reason})`);
      }
    }
    await guard.close();
    await server.close();
  }

  // Per agent run: a token budget for each top-level invoke; the agent answers gracefully when it is reached.
  {
    const guard = new BudgetGuard({ runBudget: { maxTokens: 600 }, logger: quiet });
    let steps = 0;
    const agent = new StateGraph(MessagesAnnotation)
      .addNode("agent", async (state, config) => {
        try {
          steps++;
          return { messages: [await model.invoke([...state.messages, new HumanMessage(`Step ${steps}: what is ${steps}*3?`)], config)] };
        } catch (error) {
          if (!BudgetExceededError.is(error)) throw error;
          return { messages: [new AIMessage(`Stopping here: this task used its budget (${error.remaining} tokens left, the next step could need ${error.required}).`)] };
        }
      })
      .addEdge(START, "agent")
      // A runaway loop: it never decides it is done; only the budget ends it.
      .addConditionalEdges("agent", (state) => (String(state.messages.at(-1)?.content).startsWith("Stopping here") ? END : "agent"))
      .compile();
    const state = await agent.invoke({ messages: [new HumanMessage("Keep multiplying.")] }, { callbacks: [guard], recursionLimit: 100 });
    console.log("\n## Per run (maxTokens 600)");
    console.log(`  ${steps - 1} model calls, then: ${state.messages.at(-1)?.content}`);
    steps = 0;
    const again = await agent.invoke({ messages: [new HumanMessage("Keep multiplying.")] }, { callbacks: [guard], recursionLimit: 100, metadata: { runBudget: { maxTokens: 300 } } });
    console.log(`  a new invoke with metadata.runBudget { maxTokens: 300 }: ${steps - 1} model calls, then: ${again.messages.at(-1)?.content}`);
    await guard.close();
  }

  // Money: a cost budget per run from per-token prices.
  {
    const prices = { "offline-stand-in": { input: 0.15e-6, output: 0.6e-6 } };
    const guard = new BudgetGuard({ runBudget: { maxCost: 0.0001 }, prices, logger: quiet });
    console.log("\n## Money (maxCost 0.0001 per run, prices per token)");
    try {
      await model.invoke("What is 7*6?", { callbacks: [guard] });
      console.log("  a short call: answered");
      await model.invoke("What is 7*6?", { callbacks: [guard], metadata: { runBudget: { maxCost: 0.00003 } } });
    } catch (error) {
      if (!BudgetExceededError.is(error)) throw error;
      console.log(`  with metadata.runBudget { maxCost: 0.00003 }: stopped (${error.budget}): ${error.message}`);
    }
    await guard.close();
  }

  // Preview: what a call would send and could cost, before it is made.
  {
    const prices = { "gpt-4o-mini": { input: 0.15e-6, output: 0.6e-6 } };
    const preview = estimate([new HumanMessage("Summarise the attached contract in three bullet points.")], { model: "gpt-4o-mini", maxOutputTokens: 500, prices });
    console.log("\n## Preview");
    console.log(`  estimate(): ${preview.inputTokens} input tokens, up to ${preview.worstCaseTokens} in all, at most $${preview.cost!.worstCase.toFixed(6)}`);
    const server = await startOpenMeterServer();
    server.customers.add({ key: "acme" });
    server.entitlements.add({ customer: "acme", feature: "llm_tokens", meter: "llm_tokens" });
    server.grants.add({ customer: "acme", feature: "llm_tokens", amount: 400 });
    const guard = new BudgetGuard({ url: server.url, feature: "llm_tokens", logger: quiet });
    const check = await guard.preview("Summarise the attached contract in three bullet points.", { subject: "acme", maxOutputTokens: 500 });
    console.log(`  guard.preview(): allowed ${check.allowed}${check.reason ? ` (${check.reason})` : ""}; acme has ${check.customer?.available} tokens available`);
    await guard.close();
    await server.close();
  }
}

main().catch((error) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
