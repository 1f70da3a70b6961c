import { appendFileSync, closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { spawnSync } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { IngestClient } from "langchain-openmeter";
import { Spool } from "../../src/ingest/spool";
import { bodyIds, makeEvents, recorder, startPlainServer } from "./helpers";

const cleanup: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "om-spool-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function until(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > timeoutMs) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * A server that can be switched between down (503) and up, recording the ids it acknowledges.
 * With `delayMs` it answers (and records) that much later: a slow endpoint with no de-duplication.
 */
async function switchable(up = true, delayMs = 0) {
  const state = { up, accepted: [] as string[] };
  const server = await startPlainServer((_req, res, body) => {
    if (!state.up) return void res.writeHead(503).end();
    const accept = () => {
      state.accepted.push(...bodyIds(body));
      res.writeHead(204).end();
    };
    if (delayMs > 0) setTimeout(accept, delayMs);
    else accept();
  });
  cleanup.push(() => server.close());
  return { server, state };
}

/** A spool file holding these events, as a previous run left it. */
function spoolWith(dir: string, events: ReturnType<typeof makeEvents>): void {
  writeFileSync(join(dir, "events.jsonl"), events.map((e) => JSON.stringify(e)).join("\n") + "\n");
}

function client(url: string, spoolDir: string, extra: Record<string, unknown> = {}) {
  const rec = recorder();
  const c = new IngestClient({
    url,
    spoolDir,
    retry: { retries: 2, minDelayMs: 1, maxDelayMs: 5 },
    flushOnExit: false,
    logger: rec.logger,
    onError: rec.onError,
    ...extra,
  });
  cleanup.push(() => c.shutdown());
  return { client: c, rec };
}

const spoolLines = (dir: string) =>
  readFileSync(join(dir, "events.jsonl"), "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "");

/** Ids in every file of the spool directory, the spool file and claimed files alike. */
const allSpooledIds = (dir: string) =>
  readdirSync(dir).flatMap((name) =>
    readFileSync(join(dir, name), "utf8")
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => (JSON.parse(l) as { id: string }).id),
  );

describe("spool", () => {
  it("keeps events whose retries ran out, and replays them with their ids", async () => {
    const dir = tempDir();
    const { server, state } = await switchable(false);
    const { client: c, rec } = client(server.url, dir);
    const events = makeEvents(5);
    c.enqueue(events);
    await c.flush();
    expect(c.stats()).toMatchObject({ spooled: 5, failed: 0, dropped: 0, sent: 0 });
    expect(rec.errors).toEqual([]);
    expect(spoolLines(dir).map((l) => JSON.parse(l))).toEqual(events);

    state.up = true;
    expect(await c.replaySpool()).toBe(5);
    expect(state.accepted).toEqual(events.map((e) => e.id));
    expect(c.stats()).toMatchObject({ replayed: 5, sent: 5 });
    expect(readdirSync(dir)).toEqual([]);
  });

  it("takes the queue's overflow instead of dropping it", async () => {
    const dir = tempDir();
    const { server, state } = await switchable();
    const { client: c } = client(server.url, dir, { maxQueueSize: 3 });
    const events = makeEvents(7);
    c.enqueue(events);
    await c.flush();
    expect(c.stats()).toMatchObject({ sent: 3, spooled: 4, dropped: 0 });
    await c.replaySpool();
    expect(state.accepted.sort()).toEqual(events.map((e) => e.id).sort());
  });

  it("replays on construction, in the background", async () => {
    const dir = tempDir();
    const events = makeEvents(4);
    spoolWith(dir, events);
    const { server, state } = await switchable();
    const { client: c } = client(server.url, dir);
    expect(c.stats().replayed).toBe(0); // the constructor did not block on the file
    await until(() => state.accepted.length === 4);
    expect(state.accepted).toEqual(events.map((e) => e.id));
    await c.shutdown();
    expect(readdirSync(dir)).toEqual([]);
    void server;
  });

  it("heals by itself: after an outage, the next successful send replays the spool", async () => {
    const dir = tempDir();
    const { server, state } = await switchable(false);
    const { client: c } = client(server.url, dir);
    const early = makeEvents(6);
    c.enqueue(early);
    await c.flush();
    expect(c.stats().spooled).toBe(6);
    state.up = true;
    const late = makeEvents(1);
    c.enqueue(late);
    await c.flush();
    await until(() => state.accepted.length === 7);
    expect(state.accepted.sort()).toEqual([...early, ...late].map((e) => e.id).sort());
    void server;
  });

  it("tolerates a torn last line: replays the whole lines, warns once with the count", async () => {
    const dir = tempDir();
    const events = makeEvents(3);
    const torn = JSON.stringify(makeEvents(1)[0]).slice(0, 40);
    writeFileSync(join(dir, "events.jsonl"), `${events.map((e) => JSON.stringify(e)).join("\n")}\n${torn}`);
    const { server, state } = await switchable();
    const { client: c, rec } = client(server.url, dir);
    await c.replaySpool();
    await until(() => state.accepted.length === 3);
    expect(state.accepted).toEqual(events.map((e) => e.id));
    const warnings = rec.warnings.filter((w) => w.includes("unreadable"));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/skipped 1 unreadable line/);
    void server;
  });

  it("skips corrupted lines, and reports events that are not CloudEvents", async () => {
    const dir = tempDir();
    const [a, b, c2] = makeEvents(3);
    const notAnEvent = { hello: "world" };
    writeFileSync(
      join(dir, "events.jsonl"),
      [JSON.stringify(a), "\u0000\u0000garbage{", JSON.stringify(b), "[1,2]", JSON.stringify(notAnEvent), "", JSON.stringify(c2)].join("\n") + "\n",
    );
    const { server, state } = await switchable();
    const { client: c, rec } = client(server.url, dir);
    await c.replaySpool();
    await until(() => state.accepted.length === 3);
    expect(state.accepted).toEqual([a!.id, b!.id, c2!.id]);
    expect(rec.warnings.filter((w) => w.includes("unreadable"))).toEqual([expect.stringMatching(/skipped 2 unreadable lines?/)]);
    expect(rec.errors.map((e) => e.kind)).toEqual(["invalid-event"]);
    void server;
  });

  it("an unwritable spool directory: the events are counted as dropped and reported, nothing crashes", async () => {
    const base = tempDir();
    const file = join(base, "not-a-dir");
    writeFileSync(file, "");
    const { server } = await switchable(false);
    const { client: c, rec } = client(server.url, join(file, "spool"));
    const events = makeEvents(2);
    c.enqueue(events);
    await c.flush();
    expect(c.stats()).toMatchObject({ dropped: 2, spooled: 0 });
    const spoolErrors = rec.errors.filter((e) => e.kind === "spool" && e.events.length > 0);
    expect(spoolErrors).toHaveLength(1);
    expect(spoolErrors[0]!.events).toEqual(events);
    expect(spoolErrors[0]!.message).toMatch(/could not write the spool.*check spoolDir/);
    expect(rec.warnings.some((w) => w.includes("2 event(s) lost"))).toBe(true);
  });

  it("shutdown during an outage spools at once instead of sitting out the backoff", async () => {
    const dir = tempDir();
    const { server } = await switchable(false);
    const { client: c } = client(server.url, dir, { retry: { retries: 10, minDelayMs: 60_000, maxDelayMs: 60_000 } });
    c.enqueue(makeEvents(3));
    await until(() => server.requests.length >= 1);
    await c.shutdown(); // would hang past the test timeout if it waited for the 60 s backoff
    expect(c.stats()).toMatchObject({ spooled: 3, inFlight: 0 });
    // At shutdown the spool gets one more try; its probe fails, so the events stay in the (claimed) file.
    expect(allSpooledIds(dir)).toHaveLength(3);
  });

  it("two clients replaying the same directory never send the same file twice", async () => {
    const dir = tempDir();
    const events = makeEvents(50);
    spoolWith(dir, events);
    const { server, state } = await switchable();
    const a = client(server.url, dir, { maxBatchSize: 5 }).client;
    const b = client(server.url, dir, { maxBatchSize: 5 }).client;
    const [na, nb] = await Promise.all([a.replaySpool(), b.replaySpool()]);
    await Promise.all([a.flush(), b.flush()]);
    await until(() => state.accepted.length >= 50);
    expect(state.accepted.sort()).toEqual(events.map((e) => e.id).sort());
    expect(a.stats().replayed + b.stats().replayed).toBe(50);
    void na;
    void nb;
    void server;
  });

  it("picks up files claimed by a dead process, and leaves a live process's claim alone", async () => {
    const dir = tempDir();
    const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
    const deadPid = Number(dead.stdout);
    const orphan = makeEvents(2);
    const busy = makeEvents(2);
    writeFileSync(join(dir, `events.${deadPid}.1700000000000.a1.replaying`), orphan.map((e) => JSON.stringify(e)).join("\n") + "\n");
    const liveClaim = join(dir, `events.${process.ppid}.1700000000000.b2.replaying`);
    writeFileSync(liveClaim, busy.map((e) => JSON.stringify(e)).join("\n") + "\n");
    const { server, state } = await switchable();
    const { client: c } = client(server.url, dir);
    await c.replaySpool();
    await until(() => state.accepted.length >= 2);
    await c.flush();
    expect(state.accepted.sort()).toEqual(orphan.map((e) => e.id).sort());
    expect(existsSync(liveClaim)).toBe(true);
    void server;
  });
  it("two clients of one process sharing spoolDir: a claim under way is not taken again by the other", async () => {
    const dir = tempDir();
    const events = makeEvents(60);
    spoolWith(dir, events);
    // A slow endpoint with no de-duplication: a second replay of the same file would double-bill.
    const { server, state } = await switchable(true, 100);
    const a = client(server.url, dir, { maxBatchSize: 10, maxConcurrency: 1 });
    await until(() => state.accepted.length >= 10); // a's replay is under way
    const b = client(server.url, dir, { maxBatchSize: 10, maxConcurrency: 1 });
    await b.client.replaySpool();
    await until(() => state.accepted.length >= 60);
    await Promise.all([a.client.shutdown(), b.client.shutdown()]);
    expect(state.accepted.sort()).toEqual(events.map((e) => e.id).sort());
    expect([...a.rec.errors, ...b.rec.errors]).toEqual([]);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("a writer that opened the file before the claim and writes while its events are sent: the late lines are delivered, not deleted", async () => {
    const dir = tempDir();
    const early = makeEvents(3);
    const late = makeEvents(2);
    writeFileSync(join(dir, "events.jsonl"), "\n" + early.map((e) => JSON.stringify(e)).join("\n") + "\n");
    const { server, state } = await switchable(true, 300); // delivery outlasts the claim's grace
    const fd = openSync(join(dir, "events.jsonl"), "a"); // another process's writer, opened before the claim
    const { client: c } = client(server.url, dir);
    await until(() => server.requests.length >= 1); // claimed, read, and being delivered
    writeSync(fd, "\n" + late.map((e) => JSON.stringify(e)).join("\n") + "\n");
    closeSync(fd);
    await until(() => state.accepted.length >= 5);
    await c.shutdown();
    expect(state.accepted.sort()).toEqual([...early, ...late].map((e) => e.id).sort());
    expect(readdirSync(dir)).toEqual([]);
  });

  it("a spool directory removed while running (a tmp cleaner) is made again, nothing dropped", async () => {
    const dir = join(tempDir(), "spool");
    const { server } = await switchable(false);
    const { client: c, rec } = client(server.url, dir, { retry: { retries: 0, minDelayMs: 1, maxDelayMs: 1 } });
    c.enqueue(makeEvents(2));
    await c.flush();
    expect(spoolLines(dir)).toHaveLength(2);
    rmSync(dir, { recursive: true, force: true });
    c.enqueue(makeEvents(3));
    await c.flush();
    expect(c.stats()).toMatchObject({ spooled: 5, dropped: 0 });
    expect(spoolLines(dir)).toHaveLength(3);
    expect(rec.errors.filter((e) => e.kind === "spool")).toEqual([]);
  });

  it("a line whose bytes straddle two reads (a write seen half done) keeps every character", async () => {
    const dir = tempDir();
    const file = join(dir, "x.replaying");
    const [a, b] = makeEvents(2).map((e) => ({ ...e, subject: "café-münchen" }));
    const second = Buffer.from(JSON.stringify(b) + "\n");
    const cut = second.indexOf(Buffer.from("é")) + 1; // inside the two bytes of "é"
    writeFileSync(file, Buffer.concat([Buffer.from(JSON.stringify(a) + "\n"), second.subarray(0, cut)]));
    const subjects: string[] = [];
    const result = await new Spool(dir).read(file, 1, async (batch) => {
      subjects.push(...batch.map((e) => e.subject!));
      if (subjects.length === 1) appendFileSync(file, second.subarray(cut)); // the rest of the write lands
    });
    expect(subjects).toEqual(["café-münchen", "café-münchen"]);
    expect(result).toMatchObject({ events: 2, skipped: 0 });
  });
  it("what overflowed into the spool while the endpoint was healthy is delivered at shutdown, not left on disk", async () => {
    const dir = tempDir();
    const { server, state } = await switchable();
    const { client: c } = client(server.url, dir, { maxQueueSize: 100 });
    const events = makeEvents(150);
    c.enqueue(events); // a burst: 50 overflow into the spool
    await c.shutdown();
    expect(state.accepted.sort()).toEqual(events.map((e) => e.id).sort());
    expect(c.stats()).toMatchObject({ spooled: 50, replayed: 50, sent: 150 });
    expect(readdirSync(dir)).toEqual([]);
  });

  it("an idle process replays the spool by itself once the endpoint is back (no new traffic needed)", async () => {
    const dir = tempDir();
    const { server, state } = await switchable(false);
    const { client: c } = client(server.url, dir, { retry: { retries: 0, minDelayMs: 1, maxDelayMs: 1 } });
    const events = makeEvents(4);
    c.enqueue(events);
    await c.flush();
    expect(c.stats().spooled).toBe(4);
    state.up = true;
    await until(() => state.accepted.length === 4, 15_000); // the replay timer's first try comes after 5 s
    expect(state.accepted.sort()).toEqual(events.map((e) => e.id).sort());
    await until(() => readdirSync(dir).length === 0);
  }, 20_000);

  it("a replay while the endpoint is still down costs one request and leaves the file as it is", async () => {
    const dir = tempDir();
    const events = makeEvents(30);
    spoolWith(dir, events);
    const { server, state } = await switchable(false);
    const { client: c, rec } = client(server.url, dir, { maxBatchSize: 10, retry: { retries: 5, minDelayMs: 1, maxDelayMs: 1 } });
    await until(() => server.requests.length >= 1); // the replay at construction probes
    expect(await c.replaySpool()).toBe(0); // and so does one on demand
    expect(server.requests).toHaveLength(2);
    expect(c.stats()).toMatchObject({ replayed: 0, spooled: 0, retries: 0, sent: 0 });
    expect(allSpooledIds(dir).sort()).toEqual(events.map((e) => e.id).sort()); // nothing copied, nothing lost
    expect(rec.errors).toEqual([]);

    state.up = true;
    expect(await c.replaySpool()).toBe(30);
    expect(state.accepted.sort()).toEqual(events.map((e) => e.id).sort());
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe("replay", () => {
  it("flush() during a replay's probe still waits for what it was asked to deliver", async () => {
    const dir = tempDir();
    spoolWith(dir, makeEvents(1));
    const { server, state } = await switchable(true, 500);
    const { client: c } = client(server.url, dir, { maxConcurrency: 1 });
    await until(() => server.requests.length === 1); // the probe of the spool is under way
    const fresh = makeEvents(1);
    c.enqueue(fresh);
    await c.flush();
    expect(state.accepted).toContain(fresh[0]!.id);
    expect(c.stats()).toMatchObject({ queueDepth: 0, inFlight: 0 });
  });

  it("after a failed probe, live successes do not probe again before the wait (here Retry-After) is over", async () => {
    const dir = tempDir();
    spoolWith(dir, makeEvents(3, "old"));
    // Spooled events meet a rate limit; live ones go through.
    const server = await startPlainServer((_req, res, body) => {
      if (bodyIds(body).some((id) => id.startsWith("old"))) res.writeHead(429, { "retry-after": "60" }).end();
      else res.writeHead(204).end();
    });
    cleanup.push(() => server.close());
    const { client: c } = client(server.url, dir, { flushIntervalMs: 10 });
    await until(() => server.requests.length === 1);
    for (let i = 0; i < 20; i++) {
      c.enqueue(makeEvents(1));
      await c.flush(); // a live success each time
    }
    const probes = server.requests.filter((r) => bodyIds(r.body).some((id) => id.startsWith("old")));
    expect(probes).toHaveLength(1);
    expect(c.stats().sent).toBe(20);
  });

  it("one directory named two ways by two clients of one process: nothing sent twice", async () => {
    const dir = tempDir();
    const events = makeEvents(40);
    spoolWith(dir, events);
    const { server, state } = await switchable(true, 50);
    const a = client(server.url, dir, { maxBatchSize: 5, maxConcurrency: 1 });
    await until(() => state.accepted.length >= 5);
    const b = client(server.url, relative(process.cwd(), dir), { maxBatchSize: 5, maxConcurrency: 1 });
    await b.client.replaySpool();
    await until(() => state.accepted.length >= 40);
    await Promise.all([a.client.shutdown(), b.client.shutdown()]);
    expect(state.accepted.sort()).toEqual(events.map((e) => e.id).sort());
  });

  it("shutdown during an outage costs no extra probe: the spooled events simply wait for the next start", async () => {
    const dir = tempDir();
    const { server } = await switchable(false);
    const { client: c } = client(server.url, dir, { retry: { retries: 0, minDelayMs: 1, maxDelayMs: 1 } });
    c.enqueue(makeEvents(4));
    await c.flush();
    const before = server.requests.length;
    await c.shutdown();
    expect(server.requests).toHaveLength(before);
    expect(allSpooledIds(dir)).toHaveLength(4);
  });

  it("a long backlog at shutdown: replays send for a few seconds, then hand the rest back; nothing lost", async () => {
    const dir = tempDir();
    const events = makeEvents(4000);
    spoolWith(dir, events);
    const { server, state } = await switchable(true, 100); // 10 events a request, 4 at once: the backlog would take 10 s
    const { client: c } = client(server.url, dir, { maxBatchSize: 10 });
    await until(() => state.accepted.length > 0);
    await c.shutdown();
    // Sending it all would take 10 s: shutdown stopped after its 5 s and handed the rest back.
    const kept = allSpooledIds(dir);
    expect(kept.length).toBeGreaterThan(0);
    expect(new Set([...state.accepted, ...kept])).toEqual(new Set(events.map((e) => e.id)));
  }, 20_000);

  it("events that are not valid are reported once when they would be spooled, and never written there", async () => {
    const dir = tempDir();
    const { server } = await switchable(false);
    const { client: c, rec } = client(server.url, dir, { maxQueueSize: 1, retry: { retries: 0, minDelayMs: 1, maxDelayMs: 1 } });
    const [good, other] = makeEvents(2);
    c.enqueue([good!, { ...other!, data: { n: 1n } } as never]); // the second overflows into the spool
    await c.flush();
    await c.replaySpool(); // the endpoint is down: the probe fails, the file stays
    expect(rec.errors.filter((e) => e.kind === "invalid-event").map((e) => e.events.length)).toEqual([1]);
    expect(allSpooledIds(dir)).toEqual([good!.id]);
  });

  it("a wrong key at replay: reported once, the spool left untouched for a restart with the right key", async () => {
    const dir = tempDir();
    const events = makeEvents(30);
    spoolWith(dir, events);
    const server = await startPlainServer((_req, res) => res.writeHead(401, { "content-type": "application/problem+json" }).end('{"detail":"bad token"}'));
    cleanup.push(() => server.close());
    const { client: c, rec } = client(server.url, dir, { maxBatchSize: 10 });
    await until(() => server.requests.length === 1);
    await c.flush();
    expect(server.requests).toHaveLength(1); // one probe, not a request per batch
    expect(rec.errors.map((e) => [e.kind, e.status])).toEqual([["rejected", 401]]);
    expect(rec.errors[0]!.message).toMatch(/replaying the spool: .*check apiKey.*its events stay there/);
    expect(allSpooledIds(dir).sort()).toEqual(events.map((e) => e.id).sort());
    expect(c.stats()).toMatchObject({ replayed: 0, failed: 0, spooled: 0 });
  });

  it("a last line still being written when the reader reaches it is read whole once the writer finishes", async () => {
    const dir = tempDir();
    const file = join(dir, "x.replaying");
    const [a, b] = makeEvents(2);
    const second = Buffer.from(JSON.stringify(b) + "\n");
    writeFileSync(file, Buffer.concat([Buffer.from(JSON.stringify(a) + "\n"), second.subarray(0, 20)]));
    const ids: string[] = [];
    let settled = 0;
    const result = await new Spool(dir).read(
      file,
      10,
      async (batch) => void ids.push(...batch.map((e) => e.id)),
      async () => {
        if (settled++ === 0) appendFileSync(file, second.subarray(20)); // the writer finishes while sends settle
      },
    );
    expect(ids).toEqual([a!.id, b!.id]);
    expect(result).toEqual({ events: 2, skipped: 0 });
  });
});
