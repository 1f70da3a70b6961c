/**
 * The example agent: chat on standard input, every answer metered per customer.
 *
 *   npm start                               interactive, with the offline stand-in model
 *   echo "What is 1+1?" | npm start         one answer, then the invoice preview
 *   OPENAI_API_KEY=... npm start            a real model (MODEL, default gpt-4o-mini)
 *   API_URL=... API_KEY=... npm start       events to Konnect or OpenMeter instead of the local endpoint
 *
 * Offline, the local endpoint also plays OpenMeter's entitlements: the customer gets a small grant
 * (GRANT_TOKENS, default 300) and a budget guard stops any call that could overspend it, before the
 * model is called, with a message instead of an answer. With API_URL, set BUDGET_FEATURE to the key of
 * your customers' metered entitlement to guard calls the same way.
 *
 * Each event is printed as it is handed to the ingest client; at the end (end of input, Ctrl-D,
 * Ctrl-C, SIGINT or SIGTERM) everything is flushed and an invoice preview is printed, once.
 * Ctrl-C during an answer aborts it (the provider bills what it generated, so the aborted call is
 * metered too, with `status: "aborted"` and `estimated: true` where counts are estimated). Delivery at
 * exit waits at most 10 s; what did not get through is listed, and the exit code is then 1.
 */
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { awaitAllCallbacks } from "@langchain/core/callbacks/promises";
import type { BaseChatModel } from "@langchain/core/language_models/chat_models";
import { AIMessage, HumanMessage, SystemMessage, type BaseMessage, type UsageMetadata } from "@langchain/core/messages";
import { BudgetExceededError, BudgetGuard, IngestClient, MeteringCallbackHandler, type CloudEvent, type EventSink } from "langchain-openmeter";
import { startOpenMeterServer, type OpenMeterServer } from "langchain-openmeter/testing";
import { addToTotals, formatInvoice, type Totals } from "./invoice";
import { OfflineChatModel } from "./offline-model";

// Variables from a .env file beside package.json, if there is one (see .env.example).
if (existsSync(".env")) process.loadEnvFile(".env");
const env = process.env;
const subject = env.SUBJECT || "acme";
const prices = {
  input: priceFrom("INPUT_PRICE", 0.00000015),
  output: priceFrom("OUTPUT_PRICE", 0.0000006),
  currency: "$",
};

/**
 * How long the exit waits for the endpoint to take the last events before it gives up and says so.
 * DELIVERY_DEADLINE_MS (for tests, not for users) shortens it.
 */
const DELIVERY_DEADLINE_MS = Number(env.DELIVERY_DEADLINE_MS) || 10_000;
/** The offline customer's grant, in tokens of the `llm_tokens` feature. */
const GRANT_TOKENS = tokensFrom("GRANT_TOKENS", 300);
const FEATURE = "llm_tokens";

async function main(): Promise<void> {
  const model = await createModel();
  const { url, apiKey, localServer } = await meteringEndpoint();

  // Print each event as the handler hands it over, then pass it on to the real ingest client.
  // The client's warnings still reach the console; the last one also says, at exit, why events were not delivered.
  let lastProblem: string | undefined;
  const logger = {
    warn: (message: string) => {
      lastProblem = message;
      console.warn(`[langchain-openmeter] ${message}`);
    },
    error: (message: string) => {
      lastProblem = message;
      console.error(`[langchain-openmeter] ${message}`);
    },
  };
  // This program ends itself on Ctrl-C and SIGTERM (below), after delivering: the client need not.
  const client = new IngestClient({ url, ...(apiKey ? { apiKey } : {}), logger, handleSignals: false });
  const handedOver: Totals = new Map();
  // Lines wait until the streamed answer is complete, so they do not cut into it.
  const eventLines: string[] = [];
  const printEvents = () => {
    for (const line of eventLines.splice(0)) console.log(line);
  };
  const printingClient: EventSink & Pick<IngestClient, "stats"> = {
    enqueue(events) {
      for (const event of ([] as CloudEvent[]).concat(events as CloudEvent[])) {
        eventLines.push(`  ingesting event ${JSON.stringify(event)}`);
        addToTotals(handedOver, event);
      }
      client.enqueue(events);
    },
    flush: (options) => client.flush(options),
    shutdown: (options) => client.shutdown(options),
    stats: () => client.stats(), // so handler.stats().delivery says what was delivered
  };
  const handler = new MeteringCallbackHandler({ client: printingClient });
  const guard = createGuard(url, apiKey, localServer, handler);
  const callbacks = guard ? [handler, guard] : [handler];

  const history: BaseMessage[] = [new SystemMessage("You are a helpful, concise assistant.")];
  const interactive = process.stdin.isTTY === true;
  const lines = createInterface({ input: process.stdin, output: process.stdout, terminal: interactive });

  // Ending: the first Ctrl-C (or SIGINT/SIGTERM, or the end of input) stops taking prompts and aborts
  // the answer under way; the loop below then ends and the exit path runs, once. Another Ctrl-C while
  // that path waits for delivery gives up waiting (it still says what was not delivered); any other
  // second Ctrl-C exits at once.
  let stopReason: string | undefined;
  let finishing = false;
  let answering: AbortController | undefined;
  let giveUp: ((reason: string) => void) | undefined;
  const gaveUp = new Promise<string>((resolve) => (giveUp = resolve));
  const stop = (reason: string) => {
    if (stopReason !== undefined) {
      if (!finishing || giveUp === undefined) process.exit(130);
      giveUp(reason);
      giveUp = undefined;
      return;
    }
    stopReason = reason;
    // No reason of our own: an AbortError is what tells the metering handler the call was aborted, not failed.
    if (answering) answering.abort();
    else if (interactive) process.stdout.write("\n"); // the cursor is after "You: "
    lines.close();
  };
  lines.on("SIGINT", () => stop("Ctrl-C")); // at a terminal, readline turns Ctrl-C into this event, not a signal
  process.on("SIGINT", () => stop("Ctrl-C")); // piped (or a Ctrl-C once readline is closed)
  process.on("SIGTERM", () => stop("SIGTERM"));
  const ask = () => {
    if (stopReason === undefined) lines.prompt();
  };

  if (interactive) {
    console.log("Type a prompt and press Enter; Ctrl-D (or Ctrl-C) ends and prints the invoice preview.");
    lines.setPrompt("You: ");
    ask();
  }
  let asked = 0;
  // Lines are answered one at a time, in order, also when a whole file is piped in.
  for await (const line of lines) {
    if (stopReason !== undefined) break;
    const question = line.trim();
    if (question === "") {
      if (interactive) ask();
      continue;
    }
    asked++;
    history.push(new HumanMessage(question));
    process.stdout.write(interactive ? "AI: " : `You: ${question}\nAI: `);
    let reply = "";
    let reported: UsageMetadata | undefined;
    let answered = true;
    answering = new AbortController();
    try {
      const stream = await model.stream(history, { callbacks, metadata: { subject }, signal: answering.signal });
      for await (const chunk of stream) {
        reply += chunk.text;
        reported = chunk.usage_metadata ?? reported;
        process.stdout.write(chunk.text);
      }
    } catch (error) {
      if (BudgetExceededError.is(error)) {
        // Stopped before the model was called: nothing was sent, nothing is billed, the question stays unanswered.
        process.stdout.write(`[not answered: ${error.message}. The model was not called.]`);
        history.pop();
        answered = false;
      } else if (answering.signal.aborted) process.stdout.write(`\n${abortNote(stopReason ?? "Ctrl-C", reported)}`);
      else process.stdout.write(`[the model failed: ${error instanceof Error ? error.message : String(error)}]`);
    }
    answering = undefined;
    process.stdout.write("\n");
    if (answered) history.push(new AIMessage(reply));
    await awaitAllCallbacks(); // so this answer's events print before the next prompt
    printEvents();
    if (stopReason !== undefined) break;
    if (interactive) ask();
  }
  stopReason ??= "end of input";
  finishing = true;
  if (asked === 0 && !interactive) console.log('No prompts on standard input: pipe some in, e.g. echo "What is 1+1?" | npm start');

  // Deliver what is left, with a deadline: an unreachable endpoint must not hold the exit for minutes of retries.
  await awaitAllCallbacks();
  printEvents();
  const pending = () => {
    const delivery = handler.stats().delivery;
    return delivery ? delivery.pending.memory + delivery.pending.disk : 0;
  };
  const flushed = handler.flush({ timeoutMs: DELIVERY_DEADLINE_MS }).then(() => "flushed" as const);
  // Said only when delivery takes a moment, so the usual run (delivered in milliseconds) stays quiet.
  let notice: NodeJS.Timeout | undefined = setTimeout(() => {
    notice = undefined;
    const count = pending();
    if (count > 0) console.log(`\ndelivering ${count} events… (Ctrl-C to give up)`);
  }, 500);
  const outcome = await Promise.race([flushed, gaveUp]);
  clearTimeout(notice);

  const delivery = handler.stats().delivery!;
  const undelivered = delivery.pending.memory + delivery.pending.disk + delivery.refused + delivery.dropped;
  const where = localServer ? "the local endpoint" : url;
  if (undelivered === 0) {
    // Everything is delivered: a clean shutdown is quick.
    await handler.shutdown();
    await client.shutdown();
    console.log(`\nDelivered ${delivery.delivered} events in ${delivery.batches} request(s) to ${where}.`);
  } else {
    // Not shut down: that would wait for the retries all over again. The process exits below instead.
    const why =
      outcome !== "flushed"
        ? `gave up by ${outcome}`
        : delivery.state === "backing-off"
          ? "retries ran out"
          : `gave up after ${DELIVERY_DEADLINE_MS / 1000} s`;
    console.log(`\nDelivered ${delivery.delivered} of ${delivery.enqueued} events to ${where}.`);
    console.log(`not delivered: ${undelivered} events (${describeProblem(lastProblem)}; ${why})`);
  }
  const totals = localServer ? totalsFrom(localServer) : handedOver;
  console.log(`\n${formatInvoice(totals, prices)}`);
  if (guard) {
    const left = await guard.remaining(subject);
    const blocked = Object.values(guard.stats().blocked).reduce((sum, n) => sum + n, 0);
    if (left.available !== undefined) {
      console.log(`\nBudget: ${subject} has ${Math.max(0, Math.round(left.available))} tokens of ${FEATURE} left${localServer ? ` of a ${GRANT_TOKENS}-token grant` : ""}; ${blocked} call(s) stopped before the model.`);
    }
    await guard.close();
  }
  if (undelivered > 0) {
    console.log(`  (${undelivered} of these events were not delivered: the billing platform has not seen them and will not bill them)`);
    // Undelivered usage is lost metering: say so in the exit code too.
    process.exit(1);
  }
  await localServer?.close();
  // Nothing is left to wait for; stdin may still be open (a pipe whose writer lives on), so leave now.
  process.exit(0);
}

/** What the user learns about an answer cut off by Ctrl-C or a signal. */
function abortNote(reason: string, reported: UsageMetadata | undefined): string {
  const usage = reported
    ? `the provider had reported ${reported.input_tokens} input tokens; the call is metered as aborted, its output estimated from what arrived`
    : 'the provider reported no usage before the abort; the call is metered as aborted (status "aborted"), estimated from what was sent and received';
  return `[answer stopped by ${reason}: ${usage}]`;
}

/** The ingest client's last warning, phrased for the exit summary. */
function describeProblem(message: string | undefined): string {
  if (message === undefined) return "the endpoint did not answer in time";
  const text = message.replace(/; retr(ying|ies ran out).*$/, "");
  return /^network error/.test(text) ? `endpoint unreachable: ${text}` : text;
}

/**
 * The budget guard: offline, against the local endpoint's entitlement (the customer, a metered
 * `llm_tokens` feature and a small grant are created here); with API_URL, only when BUDGET_FEATURE names
 * your entitlement's feature.
 */
function createGuard(url: string, apiKey: string | undefined, localServer: OpenMeterServer | undefined, handler: MeteringCallbackHandler): BudgetGuard | undefined {
  let feature = env.BUDGET_FEATURE || undefined;
  if (localServer) {
    feature = FEATURE;
    localServer.customers.add({ key: subject });
    localServer.entitlements.add({ customer: subject, feature, meter: "llm_tokens" });
    localServer.grants.add({ customer: subject, feature, amount: GRANT_TOKENS });
    console.log(`Customer ${subject} has a grant of ${GRANT_TOKENS} tokens (${feature}); a budget guard stops any call that could overspend it.`);
  }
  if (feature === undefined) return undefined;
  // LangChain logs each error a handler raises ("Error in handler BudgetGuard, …"); this chat prints its own message instead.
  const consoleError = console.error;
  console.error = (...args: unknown[]) => {
    if (typeof args[0] === "string" && args[0].startsWith("Error in handler BudgetGuard")) return;
    consoleError(...args);
  };
  return new BudgetGuard({ url, ...(apiKey ? { apiKey } : {}), feature, metering: handler });
}

async function createModel(): Promise<BaseChatModel> {
  if (env.OPENAI_API_KEY) {
    const { ChatOpenAI } = await import("@langchain/openai");
    const name = env.MODEL || "gpt-4o-mini";
    console.log(`Model: ${name} (OpenAI). Metering subject: ${subject}.`);
    return new ChatOpenAI({ model: name, streamUsage: true });
  }
  console.log(
    `Model: ${OfflineChatModel.modelName}, an offline stand-in (set OPENAI_API_KEY for a real model). ` +
      `Its token counts are real (o200k_base tokenizer). Metering subject: ${subject}.`,
  );
  // OFFLINE_DELAY_MS (for tests, not for users): a pause per streamed word, so an answer is still
  // coming when a test presses Ctrl-C or sends a signal.
  return new OfflineChatModel({ wordDelayMs: Number(env.OFFLINE_DELAY_MS) || 0 });
}

async function meteringEndpoint(): Promise<{ url: string; apiKey?: string; localServer?: OpenMeterServer }> {
  if (env.API_URL) {
    console.log(`Metering to ${env.API_URL}.`);
    return { url: env.API_URL, apiKey: env.API_KEY };
  }
  const localServer = await startOpenMeterServer();
  console.log(`Metering to a local OpenMeter-compatible endpoint at ${localServer.url} (set API_URL to send elsewhere).`);
  return { url: localServer.url, localServer };
}

/** What the endpoint actually received (after de-duplication), as invoice totals. */
function totalsFrom(server: OpenMeterServer): Totals {
  const totals: Totals = new Map();
  for (const event of server.events) addToTotals(totals, event);
  return totals;
}

function tokensFrom(name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const tokens = Number(raw);
  if (!Number.isInteger(tokens) || tokens <= 0) {
    console.error(`${name} must be a whole number of tokens above 0, got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return tokens;
}

function priceFrom(name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const price = Number(raw);
  if (!Number.isFinite(price) || price < 0) {
    console.error(`${name} must be a non-negative number (price per token), got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return price;
}

main().catch((error) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
