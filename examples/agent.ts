/**
 * The example agent: chat on standard input, every answer metered per customer.
 *
 *   npm start                               interactive, with the offline stand-in model
 *   echo "What is 1+1?" | npm start         one answer, then the invoice preview
 *   OPENAI_API_KEY=... npm start            a real model (MODEL, default gpt-4o-mini)
 *   API_URL=... API_KEY=... npm start       events to Konnect or OpenMeter instead of the local endpoint
 *
 * Each event is printed as it is handed to the ingest client; at the end (end of input, Ctrl-D or
 * Ctrl-C) everything is flushed and an invoice preview is printed.
 */
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { awaitAllCallbacks } from "@langchain/core/callbacks/promises";
import type { BaseChatModel } from "@langchain/core/language_models/chat_models";
import { AIMessage, HumanMessage, SystemMessage, type BaseMessage } from "@langchain/core/messages";
import { IngestClient, MeteringCallbackHandler, type CloudEvent, type EventSink } from "langchain-openmeter";
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

async function main(): Promise<void> {
  const model = await createModel();
  const { url, apiKey, localServer } = await meteringEndpoint();

  // Print each event as the handler hands it over, then pass it on to the real ingest client.
  const client = new IngestClient({ url, ...(apiKey ? { apiKey } : {}) });
  const handedOver: Totals = new Map();
  // Lines wait until the streamed answer is complete, so they do not cut into it.
  const eventLines: string[] = [];
  const printEvents = () => {
    for (const line of eventLines.splice(0)) console.log(line);
  };
  const printingClient: EventSink = {
    enqueue(events) {
      for (const event of ([] as CloudEvent[]).concat(events as CloudEvent[])) {
        eventLines.push(`  ingesting event ${JSON.stringify(event)}`);
        addToTotals(handedOver, event);
      }
      client.enqueue(events);
    },
    flush: () => client.flush(),
    shutdown: () => client.shutdown(),
  };
  const handler = new MeteringCallbackHandler({ client: printingClient });

  const history: BaseMessage[] = [new SystemMessage("You are a helpful, concise assistant.")];
  const interactive = process.stdin.isTTY === true;
  const lines = createInterface({ input: process.stdin, output: process.stdout, terminal: interactive });
  let finishing: Promise<void> | undefined;
  const finish = () =>
    (finishing ??= (async () => {
      lines.close();
      await handler.shutdown(); // waits for LangChain's callbacks, then delivers everything queued
      await client.shutdown();
      printEvents();
      const stats = client.stats();
      console.log(`\nDelivered ${stats.sent} events in ${stats.batches} request(s) to ${localServer ? "the local endpoint" : url}.`);
      const totals = localServer ? totalsFrom(localServer) : handedOver;
      console.log(`\n${formatInvoice(totals, prices)}`);
      await localServer?.close();
    })());
  lines.on("SIGINT", () => void finish());

  if (interactive) {
    console.log("Type a prompt and press Enter; Ctrl-D (or Ctrl-C) ends and prints the invoice preview.");
    lines.setPrompt("You: ");
    lines.prompt();
  }
  let asked = 0;
  // Lines are answered one at a time, in order, also when a whole file is piped in.
  for await (const line of lines) {
    const question = line.trim();
    if (question === "") {
      if (interactive) lines.prompt();
      continue;
    }
    asked++;
    history.push(new HumanMessage(question));
    process.stdout.write(interactive ? "AI: " : `You: ${question}\nAI: `);
    let reply = "";
    try {
      for await (const chunk of await model.stream(history, { callbacks: [handler], metadata: { subject } })) {
        const text = chunk.text;
        reply += text;
        process.stdout.write(text);
      }
    } catch (error) {
      process.stdout.write(`[the model failed: ${error instanceof Error ? error.message : String(error)}]`);
    }
    process.stdout.write("\n");
    history.push(new AIMessage(reply));
    await awaitAllCallbacks(); // so this answer's events print before the next prompt
    printEvents();
    if (interactive) lines.prompt();
  }
  if (asked === 0 && !interactive) console.log('No prompts on standard input: pipe some in, e.g. echo "What is 1+1?" | npm start');
  await finish();
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
  return new OfflineChatModel();
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
