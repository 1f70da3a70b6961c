import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { IngestClient, type CloudEvent } from "langchain-openmeter";
import { startOpenMeterServer } from "langchain-openmeter/testing";
import { makeEvents, recorder } from "./helpers";

// The one-minute outage, in real time and with the client's default retry settings: the other
// outage tests shrink the settings so seconds stand for minutes; this one checks the defaults
// themselves carry a minute of 503s without losing or doubling anything. It takes about 1.5 minutes
// and runs beside the other test files.

const cleanup: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

it("a 60-second outage under steady traffic, default retries and a spool: every event exactly once, none sent twice", async () => {
  const server = await startOpenMeterServer();
  const dir = mkdtempSync(join(tmpdir(), "om-outage-"));
  const rec = recorder();
  const client = new IngestClient({ url: server.url, spoolDir: dir, flushOnExit: false, logger: rec.logger, onError: rec.onError });
  cleanup.push(
    () => rmSync(dir, { recursive: true, force: true }),
    () => server.close(),
    () => client.shutdown(),
  );

  const outage = server.outage(60_000);
  const events: CloudEvent[] = [];
  // Two calls' worth of events every half second, through the outage and a little after it.
  const traffic = (async () => {
    for (let tick = 0; tick < 130; tick++) {
      const batch = makeEvents(4);
      events.push(...batch);
      client.enqueue(batch);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  })();
  await outage;
  await traffic;
  await client.flush();
  await client.shutdown();

  const ids = server.events.map((e) => e.id);
  expect([...ids].sort()).toEqual(events.map((e) => e.id).sort());
  expect(server.duplicates).toBe(0); // nothing was sent twice, so even an endpoint without de-duplication bills right
  expect(server.requests.filter((r) => r.outcome === "down").length).toBeGreaterThan(10);
  expect(client.stats()).toMatchObject({ failed: 0, dropped: 0, inFlight: 0, queueDepth: 0 });
  expect(rec.errors).toEqual([]);
  expect(readdirSync(dir)).toEqual([]);
}, 240_000);
