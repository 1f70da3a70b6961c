/**
 * Every option group of the README, runnable offline: `npx tsx examples/options.ts`.
 * Each section meters one call to a local OpenMeter-compatible endpoint and prints what arrived.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AIMessage } from "@langchain/core/messages";
import { FakeListChatModel } from "@langchain/core/utils/testing";
import { IngestClient, MeteringCallbackHandler, type IngestError } from "langchain-openmeter";
import { startOpenMeterServer, type OpenMeterServer } from "langchain-openmeter/testing";
import { OfflineChatModel } from "./offline-model";

/** A model whose usage includes prompt-cache reads, as Anthropic and OpenAI report them. */
class CachedModel extends FakeListChatModel {
  constructor() {
    super({ responses: ["cached answer"] });
  }
  override getLsParams(options: this["ParsedCallOptions"]) {
    return { ...super.getLsParams(options), ls_provider: "example", ls_model_name: "cached-model" };
  }
  override async _generate(...args: Parameters<FakeListChatModel["_generate"]>) {
    const result = await super._generate(...args);
    const message = result.generations[0]!.message as AIMessage;
    message.usage_metadata = { input_tokens: 1200, output_tokens: 40, total_tokens: 1240, input_token_details: { cache_read: 1000 } };
    return result;
  }
}

const quiet = { warn: () => {}, error: () => {} };
const show = (title: string, server: OpenMeterServer) =>
  console.log(`\n## ${title}\n${server.events.map((e) => `  ${e.subject} ${e.source} ${e.type} ${JSON.stringify(e.data)}`).join("\n")}`);

async function main() {
  const model = new OfflineChatModel();

  // Connection: url, apiKey, timeoutMs (an endpoint without auth needs no apiKey: see the README).
  {
    const server = await startOpenMeterServer({ apiKey: "om_example_key" });
    const handler = new MeteringCallbackHandler({ url: server.url, apiKey: "om_example_key", timeoutMs: 5000 });
    await model.invoke("What is 2+2?", { callbacks: [handler], metadata: { subject: "acme" } });
    await handler.shutdown();
    show("Connection", server);
    await server.close();
  }

  // Events: source, eventType, includeMetadata, splitTokenTypes.
  {
    const server = await startOpenMeterServer();
    const handler = new MeteringCallbackHandler({
      url: server.url,
      source: "support-bot",
      eventType: "llm.tokens",
      includeMetadata: ["tier"],
      splitTokenTypes: true,
    });
    await new CachedModel().invoke("hi", { callbacks: [handler], metadata: { subject: "acme", tier: "pro", internal: "not sent" } });
    await handler.shutdown();
    show("Events (source and type set; only `tier` copied from metadata; 1200 input tokens split into 200 uncached + 1000 cached)", server);
    await server.close();
  }

  // Subject: subjectKey, defaultSubject, resolveSubject.
  {
    const server = await startOpenMeterServer();
    const handler = new MeteringCallbackHandler({
      url: server.url,
      subjectKey: "customerId",
      defaultSubject: "internal",
      resolveSubject: ({ tags }) => tags.find((tag) => tag.startsWith("customer:"))?.slice("customer:".length),
    });
    await model.invoke("a", { callbacks: [handler], metadata: { customerId: "globex" } });
    await model.invoke("b", { callbacks: [handler], tags: ["customer:initech"] });
    await model.invoke("c", { callbacks: [handler] });
    await handler.shutdown();
    show("Subject (globex from metadata.customerId, initech from resolveSubject, internal from defaultSubject)", server);
    await server.close();
  }

  // Batching and retries: two 503s with Retry-After, then delivered once.
  {
    const server = await startOpenMeterServer();
    server.failNext(2, { status: 503, retryAfter: 1 });
    const handler = new MeteringCallbackHandler({
      url: server.url,
      maxBatchSize: 500,
      flushIntervalMs: 250,
      retry: { retries: 5, minDelayMs: 100, maxDelayMs: 2000 },
      logger: quiet,
    });
    await model.invoke("What is 3*3?", { callbacks: [handler], metadata: { subject: "acme" } });
    await handler.shutdown();
    const answers = server.requests.map((r) => r.status).join(", ");
    show(`Batching and retries (${server.requests.length} requests, answered ${answers}; Retry-After honoured)`, server);
    await server.close();
  }

  // Durability: spoolDir, maxSpoolBytes, spoolFsync, spoolLeaseMs. The endpoint is down; the events
  // wait on disk, and the next client that opens the directory delivers them.
  {
    const server = await startOpenMeterServer();
    server.setMode("down");
    const spoolDir = mkdtempSync(join(tmpdir(), "metering-spool-"));
    const handler = new MeteringCallbackHandler({
      url: server.url,
      spoolDir,
      maxSpoolBytes: 64 * 1024 ** 2,
      spoolFsync: false,
      spoolLeaseMs: 10_000,
      logger: quiet,
      retry: { retries: 1, minDelayMs: 50, maxDelayMs: 100 },
    });
    await model.invoke("What is 5-1?", { callbacks: [handler], metadata: { subject: "acme" } });
    await handler.shutdown();
    console.log(`\n## Durability\n  endpoint down: ${handler.stats().delivery?.pending.disk} events wait on disk in ${spoolDir}`);
    server.setMode("ok");
    const next = new IngestClient({ url: server.url, spoolDir, logger: quiet });
    await next.flush();
    console.log(`  endpoint back: the next client delivered ${next.stats().recovered} events left by the first, and the endpoint received:`);
    await next.shutdown();
    for (const e of server.events) console.log(`  ${e.subject} ${e.source} ${e.type} ${JSON.stringify(e.data)}`);
    await server.close();
  }

  // Lifecycle: shutdownTimeoutMs, handleSignals, flushOnExit. A hanging endpoint holds shutdown() for
  // 300 ms at most; without a spool, what is left is handed to onError with the events.
  {
    const server = await startOpenMeterServer();
    server.setMode("hang");
    const started = performance.now();
    const handler = new MeteringCallbackHandler({
      url: server.url,
      shutdownTimeoutMs: 300,
      handleSignals: true,
      flushOnExit: true,
      logger: quiet,
      onError: (error: IngestError) => console.log(`  onError(kind ${error.kind}): ${error.events.length} events, ${error.events.map((e) => e.data?.type).join(" and ")}`),
    });
    await model.invoke("What is 6*7?", { callbacks: [handler], metadata: { subject: "acme" } });
    console.log("\n## Lifecycle");
    await handler.shutdown();
    console.log(`  shutdown() gave up after ${(Math.round((performance.now() - started) / 100) / 10).toFixed(1)} s, as shutdownTimeoutMs says`);
    await server.close();
  }

  // Errors: onError receives what could not be delivered, with the status and the server's message.
  {
    const server = await startOpenMeterServer({ apiKey: "right-key" });
    const handler = new MeteringCallbackHandler({
      url: server.url,
      apiKey: "wrong-key",
      logger: quiet,
      onError: (error: IngestError) => console.log(`\n## Errors\n  onError(kind ${error.kind}, status ${error.status}): ${error.message}`),
    });
    await model.invoke("hi", { callbacks: [handler], metadata: { subject: "acme" } });
    await handler.shutdown();
    await server.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
