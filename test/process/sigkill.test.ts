// The durability contract with spoolDir: once enqueue returned, a call's events survive a SIGKILL at
// any later moment and the next process that opens the spool delivers them, with the same ids.
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { IngestError } from "langchain-openmeter";
import { type OpenMeterServer, startOpenMeterServer } from "langchain-openmeter/testing";
import { type Bundles, bundle, callIds, restartAndDeliver, start, tempDir } from "./support";

let bundles: Bundles;
let server: OpenMeterServer;
beforeAll(async () => {
  bundles = await bundle();
  server = await startOpenMeterServer();
});
afterAll(async () => {
  bundles.remove();
  await server.close();
});

const segmentsLeft = (dir: string): string[] =>
  readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((name) => name.endsWith(".log")).map((name) => join(dir, name));

type Moment = "delivering" | "outage-retrying" | "writing" | "replaying";

/**
 * One trial: a producer is killed at a moment of the given kind; the next process delivers. Returns
 * what the endpoint got for this trial's ids.
 */
async function trial(moment: Moment, n: number) {
  const prefix = `${moment}-${n}`;
  const spool = tempDir("om-kill-");
  try {
    // A short lease where the killed producer must take over an earlier one's backlog while it runs.
    const lease = moment === "replaying" ? "150" : "60000";
    const base = { URL: `${server.url}?trial=${prefix}`, SPOOL: spool.dir, PREFIX: prefix, LEASE_MS: lease, FLUSH_MS: "5", BATCH: "10" };
    // A different moment in every trial (in bursts of 200 calls per event-loop turn while writing).
    const killAfter = moment === "writing" ? 300 * (n + 1) : 5 + ((n * 7919) % 60);
    let extraPrefix: string | undefined;
    if (moment === "replaying") {
      // A backlog left by an earlier process, which the killed one is delivering when it dies.
      extraPrefix = `${prefix}-backlog`;
      const earlier = start(bundles.producer, { ...base, PREFIX: extraPrefix, CALLS: "120", AFTER: "hold", RETRIES: "0" });
      await earlier.waitFor((c) => c.lines.includes("produced"), "the backlog to be written");
      earlier.child.kill("SIGKILL");
      await earlier.exited;
    }
    const producer = start(bundles.producer, {
      ...base,
      CALLS: moment === "writing" ? "4000" : "200",
      PER_TICK: moment === "writing" ? "200" : "1",
      AFTER: "hold",
      RETRIES: moment === "outage-retrying" ? "50" : "3",
    });
    if (moment === "replaying") {
      await producer.waitFor((c) => c.handed.length >= 5 && server.events.some((e) => e.id.startsWith(`${extraPrefix}-`)), "the backlog to be under way");
    } else {
      await producer.waitFor((c) => c.handed.length >= killAfter, `${killAfter} calls to be handed over`);
    }
    producer.child.kill("SIGKILL");
    expect((await producer.exited).signal).toBe("SIGKILL");
    const handed = callIds(prefix, producer.handed);
    return { prefix, handed, extraPrefix, spoolDir: spool.dir, cleanup: spool.remove };
  } catch (error) {
    spool.remove();
    throw error;
  }
}

describe("SIGKILL with spoolDir, 20 trials at different moments", () => {
  const moments: Moment[] = ["delivering", "outage-retrying", "writing", "replaying"];
  for (const moment of moments) {
    it(`killed while ${moment}: every handed-over event is delivered by the next process, with its own id, and the spool ends empty`, async () => {
      for (let n = 0; n < 5; n++) {
        if (moment === "outage-retrying") server.setMode("down");
        const result = await trial(moment, n);
        try {
          server.setMode("ok");
          const reports: IngestError[] = [];
          const stats = await restartAndDeliver(result.spoolDir, server.url, { onError: (error) => void reports.push(error) });
          const received = server.events.filter((e) => e.id.startsWith(`${result.prefix}-`)).map((e) => e.id);
          const receivedSet = new Set(received);
          expect(result.handed.length).toBeGreaterThan(0);
          expect(result.handed.filter((id) => !receivedSet.has(id))).toEqual([]);
          // No new ids: everything received was produced by this trial's programs.
          expect(received.every((id) => /^[a-z-]+-\d+(-backlog)?-\d+-(input|output)$/.test(id))).toBe(true);
          expect(stats.enqueued + stats.recovered).toBe(stats.delivered + stats.refused + stats.dropped + stats.handedOver + stats.pending.memory + stats.pending.disk);
          expect(stats.pending).toEqual({ memory: 0, disk: 0 });
          // A SIGKILL can land inside the write(2) of a call still being handed over (Linux checks for
          // a fatal signal between pages), tearing that call's last record: it was never handed over,
          // and it is reported with its bytes, not billed. Nothing else is dropped.
          const torn = reports.filter((e) => e.kind === "corrupt");
          expect(reports.filter((e) => e.kind !== "corrupt")).toEqual([]);
          expect(torn.map((e) => e.message.match(/: (record \d+ \(bytes \d+-\d+\): .*)$/)?.[1]?.replace(/\d+/g, "N"))).toEqual(
            torn.map(() => "record N (bytes N-N): the record has no end (torn by a crash or power loss mid-write)"),
          );
          expect(stats.dropped).toBe(torn.length);
          expect(torn.length).toBeLessThanOrEqual(1);
          expect(segmentsLeft(result.spoolDir)).toEqual([]);
          if (result.extraPrefix) {
            const backlog = server.events.filter((e) => e.id.startsWith(`${result.extraPrefix}-`));
            expect(new Set(backlog.map((e) => e.id)).size).toBe(240);
            // A replay killed half-way is resent from its ledger: at most the requests that were in
            // flight at the kill (4 of 10 events) come twice, not the segment (all 240 are in one).
            expect(backlog.length - 240).toBeLessThanOrEqual(40);
          }
        } finally {
          result.cleanup();
        }
      }
    });
  }
});
