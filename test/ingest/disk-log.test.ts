// The write-ahead log on its own: bytes on disk, the ledger, leases and taking over other owners.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { describe, expect, it } from "vitest";
import type { DiskProblem } from "../../src/ingest/disk-log/disk-log";
import { LOCK_FILE } from "../../src/ingest/disk-log/lease";
import { encodeAcks, encodeRecords, IndexSet, parseSegment } from "../../src/ingest/disk-log/records";
import type { Batch, QueuedEvent } from "../../src/ingest/queue";
import { TestClock } from "../../src/testing/clock";
import { drain, event, events, open, segmentsIn, spoolDir } from "./disk-log-kit";

describe("records", () => {
  it("a segment line is the CRC-32 of the JSON, a space, the JSON, a newline; parsing gives the JSON back", () => {
    const text = encodeRecords(['{"id":"a"}', '{"id":"b"}']);
    expect(text).toMatch(/^[0-9a-f]{8} \{"id":"a"\}\n[0-9a-f]{8} \{"id":"b"\}\n$/);
    const parsed = parseSegment(Buffer.from(text), IndexSet.parse(""));
    const firstEnd = text.indexOf("\n") + 1;
    expect(parsed.records).toEqual([
      { index: 0, json: '{"id":"a"}', start: 0, end: firstEnd },
      { index: 1, json: '{"id":"b"}', start: firstEnd, end: text.length },
    ]);
    expect(parsed.count).toBe(2);
  });

  it("a changed digit fails the checksum and is reported with its byte range", () => {
    const text = encodeRecords(['{"tokens":100}', '{"tokens":7}']);
    const flipped = text.replace('"tokens":100', '"tokens":900');
    const parsed = parseSegment(Buffer.from(flipped), IndexSet.parse(""));
    expect(parsed.records.map((r) => r.json)).toEqual(['{"tokens":7}']);
    const firstLine = flipped.indexOf("\n") + 1;
    expect(parsed.corrupt).toEqual([{ index: 0, start: 0, end: firstLine, reason: expect.stringContaining("checksum") }]);
  });

  it("a last line without its newline (a torn write) is corrupt, not billed", () => {
    const text = encodeRecords(['{"id":"a"}', '{"id":"b"}']).slice(0, -3);
    const parsed = parseSegment(Buffer.from(text), IndexSet.parse(""));
    expect(parsed.records.map((r) => r.index)).toEqual([0]);
    expect(parsed.corrupt).toHaveLength(1);
    expect(parsed.corrupt[0]!.reason).toMatch(/no end/);
  });

  it("the ledger writes consecutive indexes as ranges and the parser reads them back; unreadable lines are ignored", () => {
    const ledger = encodeAcks([5, 1, 2, 3, 9]);
    expect(ledger).toBe("1+3\n5+1\n9+1\n");
    const done = IndexSet.parse(`${ledger}garbage\n12+`);
    expect([0, 1, 2, 3, 4, 5, 9, 12].map((i) => done.has(i))).toEqual([false, true, true, true, false, true, true, false]);
  });
});

describe("appending", () => {
  it("the records are in the segment file when append returns, before any send", () => {
    const dir = spoolDir();
    const { log } = open(dir);
    const batch = events(3);
    expect(log.append(batch, { memoryLimit: 0 })).toBeUndefined();
    const owner = log.ownerDir!;
    const [segment] = segmentsIn(owner);
    const parsed = parseSegment(readFileSync(join(owner, segment!)), IndexSet.parse(""));
    expect(parsed.records.map((r) => r.json)).toEqual(batch.map((e) => e.json));
    expect(log.pending()).toEqual({ memory: 0, disk: 3 });
  });

  it("a segment and its ledger are deleted once every record was settled; the owner keeps only its lock", async () => {
    const dir = spoolDir();
    const { log } = open(dir);
    log.append(events(120), { memoryLimit: 0 });
    const ids = await drain(log);
    expect(ids).toHaveLength(120);
    await new Promise((resolve) => setTimeout(resolve, 20)); // deletion is asynchronous
    expect(readdirSync(log.ownerDir!)).toEqual([LOCK_FILE]);
    expect(log.pending()).toEqual({ memory: 0, disk: 0 });
    expect(log.bytes).toBe(0);
  });

  it("rotates segments at segmentBytes and keeps their order", async () => {
    const dir = spoolDir();
    const { log } = open(dir, new TestClock(), { segmentBytes: 2048 });
    const all = events(60);
    for (const e of all) log.append([e], { memoryLimit: 0 });
    expect(segmentsIn(log.ownerDir!).length).toBeGreaterThan(3);
    expect(await drain(log, 7)).toEqual(all.map((e) => e.id));
  });

  it("released batches are taken again before newer events", () => {
    const dir = spoolDir();
    const { log } = open(dir);
    const all = events(4);
    log.append(all, { memoryLimit: 0 });
    const first = log.take(2, { liveDue: true })!;
    log.release(first);
    expect(log.take(10, { liveDue: true })!.events.map((e) => e.id)).toEqual(all.slice(0, 2).map((e) => e.id));
    expect(log.take(10, { liveDue: true })!.events.map((e) => e.id)).toEqual(all.slice(2).map((e) => e.id));
  });

  it("past maxBytes, events are held in memory; past the memory limit too, append hands them back", () => {
    const dir = spoolDir();
    const { log } = open(dir, new TestClock(), { maxBytes: 1000 });
    const fits = events(4); // about 170 bytes each with the checksum
    expect(log.append(fits, { memoryLimit: 8 })).toBeUndefined();
    expect(log.pending()).toEqual({ memory: 0, disk: 4 });
    const overflow = events(6);
    expect(log.append(overflow, { memoryLimit: 8 })).toBeUndefined();
    expect(log.pending()).toEqual({ memory: 6, disk: 4 });
    const refused = log.append(events(3), { memoryLimit: 8 });
    expect(refused?.kind).toBe("spool-full");
    expect(refused?.reason).toMatch(/maxSpoolBytes \(1000 bytes\).*maxQueueSize 8/);
    expect(refused?.events).toHaveLength(3);
  });

  it("beyond cacheLimit the segments stay on disk only and are read back when their turn comes", async () => {
    const dir = spoolDir();
    const { log } = open(dir, new TestClock(), { cacheLimit: 20, segmentBytes: 1024 });
    const all = events(200);
    for (const e of all) log.append([e], { memoryLimit: 0 });
    const ids = await drain(log, 10);
    expect(ids.sort()).toEqual(all.map((e) => e.id).sort());
  });
});

describe("restart: taking over what a previous owner left", () => {
  it("a released owner (it closed normally) is taken over at once; acknowledged records are not sent again", async () => {
    const dir = spoolDir();
    const first = open(dir);
    const all = events(10);
    first.log.append(all, { memoryLimit: 0 });
    const sent = first.log.take(4, { liveDue: true })!;
    first.log.settle(sent); // acknowledged and written to the ledger
    first.log.take(3, { liveDue: true }); // in flight when the process ends: not acknowledged
    first.log.close();
    expect(existsSync(join(first.log.ownerDir!, LOCK_FILE))).toBe(false);

    const second = open(dir);
    await second.log.adopt(); // no grace: the lock is gone, the owner ended normally
    const ids = await drain(second.log);
    expect(ids).toEqual(all.slice(4).map((e) => e.id));
    expect(second.recovered.map((e) => e.id)).toEqual(all.slice(4).map((e) => e.id));
    expect(second.log.recovered).toBe(6);
  });

  it("a dead owner (its lock not renewed) is taken over only once the lease has run out", async () => {
    const dir = spoolDir();
    const deadClock = new TestClock({ wall: 1_000_000 });
    const dead = open(dir, deadClock);
    dead.log.append(events(5), { memoryLimit: 0 });
    // The dead owner's clock stops: its lock keeps the mtime of its last renewal.

    const soon = open(dir, new TestClock({ wall: 1_000_000 + 500 }));
    await soon.log.adopt();
    expect(soon.log.unread().segments).toBe(0);
    expect(existsSync(dead.log.ownerDir!)).toBe(true);

    const clock = new TestClock({ wall: 1_000_000 + 1500 });
    const later = open(dir, clock);
    const started = clock.now();
    await clock.advanceUntil(later.log.adopt()); // with the grace before reading a dead owner's segments
    expect(clock.now() - started).toBeGreaterThanOrEqual(400);
    expect(await drain(later.log)).toHaveLength(5);
    expect(existsSync(dead.log.ownerDir!)).toBe(false);
  });

  it("of two owners taking over the same dead one at once, exactly one gets its segments", async () => {
    const dir = spoolDir();
    const dead = open(dir, new TestClock({ wall: 1_000_000 }));
    dead.log.append(events(8), { memoryLimit: 0 });
    dead.log.close(); // released: both may take it at once

    const a = open(dir);
    const b = open(dir);
    await Promise.all([a.log.adopt(), b.log.adopt()]);
    const [idsA, idsB] = await Promise.all([drain(a.log), drain(b.log)]);
    expect(idsA.length + idsB.length).toBe(8);
    expect(Math.min(idsA.length, idsB.length)).toBe(0);
  });

  it("a live owner is left alone, its renewals keep its lock fresh", async () => {
    const dir = spoolDir();
    const clock = new TestClock({ wall: 2_000_000 });
    const live = open(dir, clock);
    live.log.append(events(3), { memoryLimit: 0 });
    await clock.advance(5000); // five leases long, renewed every 200 ms
    const other = open(dir, new TestClock({ wall: clock.wallNow() }));
    await other.log.adopt();
    expect(other.log.unread().segments).toBe(0);
    expect(live.log.pending().disk).toBe(3);
  });

  it("a corrupt record of a taken-over segment is reported with its file and byte range and never sent", async () => {
    const dir = spoolDir();
    const first = open(dir);
    first.log.append([event("good-1", 100), event("bad", 100), event("good-2", 100)], { memoryLimit: 0 });
    first.log.close();
    const [segment] = segmentsIn(first.log.ownerDir!);
    const path = join(first.log.ownerDir!, segment!);
    const bytes = readFileSync(path, "utf8");
    const at = bytes.indexOf('"id":"bad"');
    writeFileSync(path, bytes.slice(0, at) + bytes.slice(at).replace('"tokens":100', '"tokens":900'));

    const second = open(dir);
    await second.log.adopt();
    expect(await drain(second.log)).toEqual(["good-1", "good-2"]);
    const corrupt = second.problems.find((p) => p.kind === "corrupt");
    expect(corrupt).toMatchObject({ kind: "corrupt", records: [{ index: 1, reason: expect.stringContaining("checksum") }] });
    expect((corrupt as Extract<DiskProblem, { kind: "corrupt" }>).file).toContain(segment!);
    expect(second.log.corrupt).toBe(1);
  });

  it("owners it had taken over in turn are found inside a released owner and delivered first", async () => {
    const dir = spoolDir();
    const oldest = open(dir);
    oldest.log.append([event("oldest")], { memoryLimit: 0 });
    oldest.log.close();
    const middle = open(dir);
    await middle.log.adopt(); // takes `oldest` into its own directory, then ends before sending
    middle.log.append([event("middle")], { memoryLimit: 0 });
    middle.log.close();
    const last = open(dir);
    await last.log.adopt();
    expect(await drain(last.log)).toEqual(["oldest", "middle"]);
  });

  it("an owner whose directory was taken while its event loop was blocked confirms its lease before writing, and writes elsewhere", () => {
    const dir = spoolDir();
    // A clock whose timers never fire: the owner's event loop is blocked, so no renewal runs.
    let now = 0;
    const blocked = { now: () => now, wallNow: () => 1_000_000 + now, setTimeout: () => ({ clear() {}, ref() {}, unref() {} }) };
    const { log, problems } = open(dir, blocked);
    log.append(events(2), { memoryLimit: 0 });
    const before = log.ownerDir!;
    // What another owner's takeover does: our directory moves into theirs.
    mkdirSync(join(dir, "0000000zz-0123456789ab"));
    const taken = join(dir, "0000000zz-0123456789ab", basename(before));
    renameSync(before, taken);
    now += 600; // more than half the lease since the last renewal
    expect(log.append([event("after")], { memoryLimit: 0 })).toBeUndefined();
    expect(problems.map((p) => p.kind)).toContain("lease-lost");
    expect(log.ownerDir).not.toBe(before);
    const idsIn = (owner: string) =>
      segmentsIn(owner).flatMap((name) => parseSegment(readFileSync(join(owner, name)), IndexSet.parse("")).records.map((r) => (JSON.parse(r.json) as { id: string }).id));
    expect(idsIn(taken)).toHaveLength(2);
    expect(idsIn(taken)).not.toContain("after");
    expect(idsIn(log.ownerDir!)).toEqual(["after"]);
    expect(log.handedOver).toBe(2);
    expect(statSync(join(log.ownerDir!, LOCK_FILE)).isFile()).toBe(true);
  });

  it("a renewal that finds its directory gone gives up the lease: the segments are the new owner's", async () => {
    const dir = spoolDir();
    const clock = new TestClock();
    const { log, problems } = open(dir, clock);
    log.append(events(2), { memoryLimit: 0 });
    mkdirSync(join(dir, "0000000zz-0123456789ab"));
    renameSync(log.ownerDir!, join(dir, "0000000zz-0123456789ab", basename(log.ownerDir!)));
    await clock.advance(250); // one renewal interval (leaseMs / 5)
    expect(problems.map((p) => p.kind)).toEqual(["lease-lost"]);
    expect(log.pending()).toEqual({ memory: 0, disk: 0 });
    expect(log.handedOver).toBe(2);
  });

  it("a spool directory removed while in use (a tmp cleaner): what is in memory is kept there, later writes go to a new directory", async () => {
    const dir = spoolDir();
    const clock = new TestClock();
    const { log, problems } = open(dir, clock);
    const first = events(3);
    log.append(first, { memoryLimit: 0 });
    rmSync(dir, { recursive: true, force: true });
    await clock.advance(100); // an append looks at its file's link count every 100 ms
    const later = [event("after-removal")];
    expect(log.append(later, { memoryLimit: 0 })).toBeUndefined();
    expect(problems).toContainEqual({ kind: "directory-removed", heldInMemory: 3, lost: 0 });
    expect(log.pending()).toEqual({ memory: 3, disk: 1 });
    expect(segmentsIn(log.ownerDir!)).toHaveLength(1);
    const ids: string[] = [];
    for (let batch = log.take(10, { liveDue: true }); batch; batch = log.take(10, { liveDue: true })) {
      ids.push(...batch.events.map((e) => e.id));
      log.settle(batch);
    }
    expect(ids.sort()).toEqual([...first, ...later].map((e) => e.id).sort());
  });

  it("a removed directory costs the events that were only on disk: counted as lost and said", async () => {
    const dir = spoolDir();
    const clock = new TestClock();
    const { log, problems } = open(dir, clock, { cacheLimit: 2, segmentBytes: 400 });
    log.append(events(2), { memoryLimit: 0 }); // cached, then the cache is full
    log.append(events(2), { memoryLimit: 0 }); // on disk only
    rmSync(dir, { recursive: true, force: true });
    await clock.advance(100);
    log.append([event("next")], { memoryLimit: 0 });
    expect(problems).toContainEqual({ kind: "directory-removed", heldInMemory: 2, lost: 2 });
    expect(log.lost).toBe(2);
  });
});

describe("batches", () => {
  it("slices of a refused batch are settled and released on their own", async () => {
    const dir = spoolDir();
    const { log } = open(dir);
    const all = events(6);
    log.append(all, { memoryLimit: 0 });
    const batch = log.take(6, { liveDue: true }) as Batch;
    const [a, b] = [batch.slice(0, 3), batch.slice(3, 6)];
    log.settle(a);
    log.release(b);
    expect(log.pending().disk).toBe(3);
    expect(log.take(6, { liveDue: true })!.events.map((e) => e.id)).toEqual(all.slice(3).map((e) => e.id));
  });
});

describe("counts under any sequence of operations", () => {
  it("ready is what was appended and not taken (released batches count again); pending.disk what was appended and not settled", async () => {
    const fc = (await import("fast-check")).default;
    const op = fc.oneof(
      fc.record({ kind: fc.constant("append" as const), n: fc.integer({ min: 1, max: 5 }) }),
      fc.record({ kind: fc.constant("take" as const), n: fc.integer({ min: 1, max: 7 }) }),
      fc.record({ kind: fc.constantFrom("settle" as const, "release" as const), pick: fc.nat() }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 40 }), async (ops) => {
        const dir = spoolDir();
        const { log } = open(dir, new TestClock(), { segmentBytes: 600, cacheLimit: 1000 });
        const taken: Batch[] = [];
        let ready = 0;
        let pending = 0;
        for (const o of ops) {
          if (o.kind === "append") {
            log.append(events(o.n), { memoryLimit: 0 });
            ready += o.n;
            pending += o.n;
          } else if (o.kind === "take") {
            const batch = log.take(o.n, { liveDue: true });
            if (batch) {
              taken.push(batch);
              ready -= batch.events.length;
            }
          } else if (taken.length > 0) {
            const [batch] = taken.splice(o.pick % taken.length, 1);
            if (o.kind === "settle") {
              log.settle(batch!);
              pending -= batch!.events.length;
            } else {
              log.release(batch!);
              ready += batch!.events.length;
            }
          }
          expect(log.ready).toBe(ready);
          expect(log.pending().disk).toBe(pending);
        }
        log.close();
      }),
      { numRuns: 60 },
    );
  });
});
