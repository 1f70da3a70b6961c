import { mkdtempSync, readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { IngestClient } from "langchain-openmeter";
import { startOpenMeterServer, type OpenMeterServer } from "langchain-openmeter/testing";

const events = (n: number) =>
  Array.from({ length: n }, (_, i) => ({ specversion: "1.0" as const, id: `e-${i}`, source: "s", type: "t", subject: "acme", data: { tokens: 1 } }));
const quiet = { warn() {}, error() {} };
let server: OpenMeterServer;
afterEach(async () => server?.close());

describe("flush({ timeoutMs }) during an outage", () => {
  it("returns by the deadline and hands what is still failing to the spool", async () => {
    server = await startOpenMeterServer();
    server.setMode("down");
    const spoolDir = mkdtempSync(join(tmpdir(), "lcom-deadline-"));
    const client = new IngestClient({ url: server.url, spoolDir, logger: quiet, flushOnExit: false });
    client.enqueue(events(5));
    // Without the deadline this would sit out ten retries of an endpoint that never recovers.
    await client.flush({ timeoutMs: 300 });
    expect(client.stats()).toMatchObject({ spooled: 5, sent: 0, inFlight: 0 });
    const lines = readdirSync(spoolDir).flatMap((file) => readFileSync(join(spoolDir, file), "utf8").split("\n").filter(Boolean));
    expect(lines.map((line) => JSON.parse(line).id).sort()).toEqual(["e-0", "e-1", "e-2", "e-3", "e-4"]);

    server.setMode("ok");
    expect(await client.replaySpool()).toBe(5);
    await client.shutdown();
    expect(server.events.map((e) => e.id).sort()).toEqual(["e-0", "e-1", "e-2", "e-3", "e-4"]);
  });

  it("without a spool, returns by the deadline and keeps retrying in the background", async () => {
    server = await startOpenMeterServer();
    server.setMode("down");
    const client = new IngestClient({ url: server.url, logger: quiet, flushOnExit: false, retry: { retries: 50, minDelayMs: 50, maxDelayMs: 100 } });
    client.enqueue(events(3));
    await client.flush({ timeoutMs: 200 });
    expect(client.stats()).toMatchObject({ sent: 0, inFlight: 3 });
    server.setMode("ok");
    await client.flush();
    expect(client.stats()).toMatchObject({ sent: 3, failed: 0 });
    await client.shutdown();
  });

  it("cuts off requests under way at the deadline and spools everything pending (a hanging endpoint)", async () => {
    server = await startOpenMeterServer();
    server.setMode("hang");
    const spoolDir = mkdtempSync(join(tmpdir(), "lcom-deadline-hang-"));
    // A request time-out far beyond the test's own: only the cut-off can end this flush in time.
    const client = new IngestClient({ url: server.url, spoolDir, timeoutMs: 120_000, maxBatchSize: 1, logger: quiet, flushOnExit: false });
    client.enqueue(events(8));
    await client.flush({ timeoutMs: 200 });
    expect(client.stats()).toMatchObject({ spooled: 8, inFlight: 0, queueDepth: 0, sent: 0 });

    server.setMode("ok");
    expect(await client.replaySpool()).toBe(8);
    await client.shutdown();
    expect(server.events.map((e) => e.id).sort()).toEqual(events(8).map((e) => e.id).sort());
  });
});

describe("handler.flush({ timeoutMs })", () => {
  it("keeps its deadline while another handler holds LangChain's callback queue", async () => {
    const { BaseCallbackHandler } = await import("@langchain/core/callbacks/base");
    const { MeteringCallbackHandler } = await import("langchain-openmeter");
    const { ScriptedChatModel, usage } = await import("../support/scripted-model");
    server = await startOpenMeterServer();
    class SlowHandler extends BaseCallbackHandler {
      name = "SlowHandler";
      release!: () => void;
      readonly held = new Promise<void>((resolve) => (this.release = resolve));
      override async handleLLMEnd() {
        await this.held;
      }
    }
    const slow = new SlowHandler();
    const handler = new MeteringCallbackHandler({ url: server.url, logger: quiet, flushOnExit: false });
    const model = new ScriptedChatModel(() => ({ usage: usage(1, 2) }), "m", "p", { callbacks: [slow, handler] });
    await model.invoke("x", { metadata: { subject: "acme" } });
    // Without the deadline covering LangChain's queue, this would wait for the slow handler forever.
    await handler.flush({ timeoutMs: 200 });
    slow.release();
    await handler.flush();
    expect(server.totals()).toEqual({ acme: { input: 1, output: 2 } });
    await handler.shutdown();
  });
});
