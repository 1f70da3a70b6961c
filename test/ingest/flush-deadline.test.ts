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
});
