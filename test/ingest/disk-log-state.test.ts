// The write-ahead log's state after each step: which files are on disk, what the ledger says, what is
// cached, read back, held in memory or handed over. disk-log.test.ts shows the log's promises end to
// end; this file pins the steps between (found by mutation testing, see docs/mutation.md).
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { describe, expect, it } from "vitest";
import { READ_RETRY_MS } from "../../src/ingest/disk-log/disk-log";
import { LOCK_FILE } from "../../src/ingest/disk-log/lease";
import { encodeAcks, encodeRecords } from "../../src/ingest/disk-log/records";
import type { Batch, QueuedEvent } from "../../src/ingest/queue";
import { TestClock } from "../../src/testing/clock";
import { until } from "../support/clocked";
import { drain, event, events, nextRead, open, segmentsIn, spoolDir } from "./disk-log-kit";

const recordBytes = (e: QueuedEvent) => Buffer.byteLength(encodeRecords([e.json]));
const ids = (batch: Batch | undefined) => batch?.events.map((e) => e.id);
const lines = (path: string) => readFileSync(path, "utf8").split("\n").filter((line) => line !== "");
const withEpoch = (e: QueuedEvent, epoch: number): QueuedEvent => ({ ...e, epoch });

/** A released owner's directory (no lock) holding one segment per group of events, written by hand. */
function releasedOwner(dir: string, ownerId: string, groups: QueuedEvent[][]): string {
  const owner = join(dir, ownerId);
  mkdirSync(owner, { recursive: true });
  groups.forEach((group, i) => writeFileSync(join(owner, `${String(i + 1).padStart(8, "0")}.log`), encodeRecords(group.map((e) => e.json))));
  return owner;
}

describe("segments", () => {
  it("a segment takes records up to exactly segmentBytes; the next record starts a new one", () => {
    const all = events(3);
    const { log } = open(spoolDir(), new TestClock(), { segmentBytes: 2 * recordBytes(all[0]!) });
    for (const e of all) log.append([e], { memoryLimit: 0 });
    const files = segmentsIn(log.ownerDir!).sort();
    expect(files.map((name) => lines(join(log.ownerDir!, name)).length)).toEqual([2, 1]);
  });

  it("a call of another flush epoch starts a new segment", () => {
    const { log } = open(spoolDir());
    log.append([event()], { memoryLimit: 0 });
    log.append([event()], { memoryLimit: 0 });
    log.append([withEpoch(event(), 1)], { memoryLimit: 0 });
    const files = segmentsIn(log.ownerDir!).sort();
    expect(files.map((name) => lines(join(log.ownerDir!, name)).length)).toEqual([2, 1]);
  });

  it("a record exactly as long as maxBytes fits; the next is held in memory", () => {
    const first = event();
    const { log } = open(spoolDir(), new TestClock(), { maxBytes: recordBytes(first) });
    expect(log.append([first], { memoryLimit: 10 })).toBeUndefined();
    expect(log.append([event()], { memoryLimit: 10 })).toBeUndefined();
    expect(log.pending()).toEqual({ memory: 1, disk: 1 });
    expect(log.bytes).toBe(recordBytes(first));
  });

  it("at cacheLimit the segment is sealed and the next kept on disk only; once the cache is taken, new segments are cached again", async () => {
    const { log } = open(spoolDir(), new TestClock(), { cacheLimit: 3 });
    const cached = events(3);
    log.append(cached, { memoryLimit: 0 }); // the cache is full: this segment is sealed
    const onDisk = event("on-disk");
    log.append([onDisk], { memoryLimit: 0 });
    expect(segmentsIn(log.ownerDir!)).toHaveLength(2);
    expect(ids(log.take(10))).toEqual(cached.map((e) => e.id));
    const read = nextRead(log);
    expect(log.take(10)).toBeUndefined(); // on disk only: read back first
    await read;
    expect(ids(log.take(10))).toEqual(["on-disk"]);
    const later = event("later");
    log.append([later], { memoryLimit: 0 });
    expect(ids(log.take(10))).toEqual(["later"]); // cached again: no read needed
  });

  it("events read back from disk count against cacheLimit: the segment after them is kept on disk only", async () => {
    const { log } = open(spoolDir(), new TestClock(), { cacheLimit: 3 });
    log.append(events(3), { memoryLimit: 0 }); // cached; the cache is full
    const onDisk = events(3);
    log.append(onDisk, { memoryLimit: 0 }); // on disk only
    log.settle(log.take(10)!);
    const read = nextRead(log);
    expect(log.take(10)).toBeUndefined();
    await read; // three events in memory again
    log.append([event("after-read")], { memoryLimit: 0 });
    expect(ids(log.take(10))).toEqual(onDisk.map((e) => e.id));
    expect(log.take(10)).toBeUndefined(); // "after-read" was written to disk only: it is read first
    expect((await drain(log)).sort()).toEqual(["after-read"]);
  });

  it("events appended while their segment is read back go to a new segment and are delivered too", async () => {
    const { log } = open(spoolDir(), new TestClock(), { cacheLimit: 2 });
    const all = [...events(2), event("uncached")];
    log.append(all.slice(0, 2), { memoryLimit: 0 });
    log.append(all.slice(2), { memoryLimit: 0 });
    log.settle(log.take(10)!);
    const read = nextRead(log);
    expect(log.take(10)).toBeUndefined(); // starts reading the active segment: it is sealed first
    const during = event("during-read");
    log.append([during], { memoryLimit: 0 });
    await read;
    expect((await drain(log)).sort()).toEqual(["during-read", "uncached"]);
    expect(log.pending()).toEqual({ memory: 0, disk: 0 });
  });
});

describe("write failures", () => {
  it("a name in the way of the next segment: write-failed once, the events held in memory; write-recovered once on the next good write", () => {
    const { log, problems } = open(spoolDir());
    log.append([event("a")], { memoryLimit: 10 }); // segment 1
    writeFileSync(join(log.ownerDir!, "00000002.log"), "");
    writeFileSync(join(log.ownerDir!, "00000003.log"), "");
    log.append([withEpoch(event("b"), 1)], { memoryLimit: 10 }); // segment 2 is taken: EEXIST
    log.append([withEpoch(event("c"), 1)], { memoryLimit: 10 }); // segment 3 too
    expect(problems).toEqual([{ kind: "write-failed", error: expect.objectContaining({ code: "EEXIST" }) }]);
    log.append([withEpoch(event("d"), 1)], { memoryLimit: 10 }); // segment 4
    log.append([withEpoch(event("e"), 1)], { memoryLimit: 10 });
    expect(problems.map((p) => p.kind)).toEqual(["write-failed", "write-recovered"]);
    expect(log.pending()).toEqual({ memory: 2, disk: 3 });
    expect(log.ready).toBe(5);
  });

  it("a batch held in memory (the disk refused it) is released to memory and taken again, and settles there", () => {
    const { log } = open(spoolDir(), new TestClock(), { maxBytes: 1 });
    const held = events(2);
    log.append(held, { memoryLimit: 10 });
    const batch = log.take(10)!;
    log.release(batch);
    expect(log.ready).toBe(2);
    const again = log.take(10)!;
    expect(ids(again)).toEqual(held.map((e) => e.id));
    log.settle(again);
    expect(log.pending()).toEqual({ memory: 0, disk: 0 });
    expect(log.drainMemory()).toEqual([]);
  });

  it("drainMemory hands back what only memory holds and leaves the disk alone", () => {
    const first = event();
    const { log } = open(spoolDir(), new TestClock(), { maxBytes: recordBytes(first) });
    log.append([first], { memoryLimit: 10 });
    const held = events(2);
    log.append(held, { memoryLimit: 10 });
    expect(log.drainMemory().map((e) => e.id)).toEqual(held.map((e) => e.id));
    expect(log.pending()).toEqual({ memory: 0, disk: 1 });
  });
});

describe("a spool directory removed under the log", () => {
  it("is noticed by an append at most every 100 ms: appends in between still go to the removed file", async () => {
    const clock = new TestClock();
    const { log, problems } = open(spoolDir(), clock);
    const before = log.ownerDir!;
    log.append([event("a")], { memoryLimit: 0 }); // looks at the file now; next look at 100 ms
    rmSync(before, { recursive: true, force: true });
    await clock.advance(50);
    log.append([event("b")], { memoryLimit: 0 });
    expect(problems).toEqual([]);
    await clock.advance(50);
    log.append([event("c")], { memoryLimit: 0 });
    expect(problems).toEqual([{ kind: "directory-removed", heldInMemory: 2, lost: 0 }]);
    expect(log.ownerDir).not.toBe(before);
    expect(log.pending()).toEqual({ memory: 2, disk: 1 });
  });

  it("before the first append: the segment cannot be opened, a new owner directory is made and the events written there", () => {
    const { log, problems } = open(spoolDir());
    const before = log.ownerDir!;
    rmSync(before, { recursive: true, force: true });
    expect(log.append(events(2), { memoryLimit: 0 })).toBeUndefined();
    expect(problems).toEqual([{ kind: "directory-removed", heldInMemory: 0, lost: 0 }]);
    expect(log.ownerDir).not.toBe(before);
    expect(segmentsIn(log.ownerDir!)).toHaveLength(1);
    expect(log.pending()).toEqual({ memory: 0, disk: 2 });
  });

  it("batches under way and released ones come back to memory: nothing is lost", async () => {
    const clock = new TestClock();
    const { log, problems } = open(spoolDir(), clock);
    const all = events(5);
    log.append(all, { memoryLimit: 0 });
    const released = log.take(1)!;
    log.release(released); // waiting to be taken again
    const again = log.take(1)!; // that one is under way again
    const underWay = log.take(2)!;
    log.release(again);
    rmSync(log.ownerDir!, { recursive: true, force: true });
    await clock.advance(100);
    log.append([event("after")], { memoryLimit: 0 });
    // Untaken (2) and released (1) are held in memory at once; the batch under way (2) when it comes back.
    expect(problems).toEqual([{ kind: "directory-removed", heldInMemory: 3, lost: 0 }]);
    expect(log.pending()).toEqual({ memory: 5, disk: 1 });
    log.release(underWay);
    expect(log.pending()).toEqual({ memory: 5, disk: 1 });
    expect(log.ready).toBe(6);
    expect((await drain(log)).sort()).toEqual([...all.map((e) => e.id), "after"].sort());
    expect(log.lost).toBe(0);
  });
});

describe("a lease lost to another owner", () => {
  it("a batch under way stays counted on disk until it comes back; then it is handed over, not taken again", async () => {
    const dir = spoolDir();
    const clock = new TestClock();
    const { log, problems, gone } = open(dir, clock);
    log.append(events(3), { memoryLimit: 0 });
    const batch = log.take(2)!;
    mkdirSync(join(dir, "0000000zz-0123456789ab"));
    renameSync(log.ownerDir!, join(dir, "0000000zz-0123456789ab", basename(log.ownerDir!)));
    await clock.advance(200); // a renewal finds the directory gone
    expect(problems).toEqual([{ kind: "lease-lost", handedOver: 1 }]);
    expect(log.pending()).toEqual({ memory: 0, disk: 2 });
    log.release(batch);
    expect(log.handedOver).toBe(3);
    expect(gone).toEqual([1, 2]);
    expect(log.pending()).toEqual({ memory: 0, disk: 0 });
    expect(log.take(10)).toBeUndefined();
    expect(log.ready).toBe(0);
  });
});

describe("the ledger and deletion", () => {
  it("settling appends the done indexes as ranges; the segment and ledger go once all are done", async () => {
    const { log } = open(spoolDir());
    log.append(events(10), { memoryLimit: 0 });
    const [segment] = segmentsIn(log.ownerDir!);
    const ledger = join(log.ownerDir!, segment!.replace(/\.log$/, ".ack"));
    const a = log.take(4)!;
    const b = log.take(3)!;
    const c = log.take(3)!;
    log.settle(a);
    log.settle(c);
    expect(lines(ledger)).toEqual(["0+4", "7+3"]);
    log.settle(b);
    await until(() => readdirSync(log.ownerDir!).length === 1, "the segment's deletion");
    expect(readdirSync(log.ownerDir!)).toEqual([LOCK_FILE]);
    expect(log.bytes).toBe(0);
  });

  it("under a directory whose name holds '.log', each ledger is still written next to its segment", () => {
    const dir = join(spoolDir(), "billing.log.d");
    const { log } = open(dir);
    log.append(events(4), { memoryLimit: 0 });
    log.settle(log.take(2)!);
    expect(readdirSync(log.ownerDir!).sort()).toEqual(["00000001.ack", "00000001.log", LOCK_FILE]);
  });

  it("every segment is deleted once done, sealed ones as well as the active one; one with records under way stays", async () => {
    const all = events(8);
    const { log } = open(spoolDir(), new TestClock(), { segmentBytes: 2 * recordBytes(all[0]!) });
    for (const e of all) log.append([e], { memoryLimit: 0 });
    expect(segmentsIn(log.ownerDir!)).toHaveLength(4);
    const first = log.take(1)!;
    const rest: Batch[] = [];
    for (let batch = log.take(10); batch; batch = log.take(10)) rest.push(batch);
    for (const batch of rest) log.settle(batch);
    await until(() => segmentsIn(log.ownerDir!).length === 1, "the done segments' deletion");
    expect(segmentsIn(log.ownerDir!)).toEqual(["00000001.log"]);
    expect(log.bytes).toBe(2 * recordBytes(all[0]!));
    log.settle(first);
    await until(() => segmentsIn(log.ownerDir!).length === 0, "the last segment's deletion");
    expect(log.bytes).toBe(0);
  });

  it("a take after everything was taken gives nothing, not an empty batch", () => {
    const { log } = open(spoolDir());
    log.append(events(3), { memoryLimit: 0 });
    expect(log.take(2)!.events).toHaveLength(2);
    expect(log.take(2)!.events).toHaveLength(1);
    expect(log.take(2)).toBeUndefined();
  });
});

describe("taking over: what is read when", () => {
  it("the first taken-over segment is read at once, the next when the first is taken; unread() says what is left", async () => {
    const dir = spoolDir();
    const groups = [events(3), events(3), events(3)];
    const owner = releasedOwner(dir, "000000001-0123456789ab", groups);
    const sizes = groups.map((group) => Buffer.byteLength(encodeRecords(group.map((e) => e.json))));
    const { log, problems, recovered } = open(dir, new TestClock(), { epoch: () => 7 });
    const firstRead = nextRead(log);
    await log.adopt();
    expect(problems).toEqual([
      { kind: "adopted", owners: [{ dir: join(log.ownerDir!, "000000001-0123456789ab"), ownerId: "000000001-0123456789ab", released: true }], segments: 3, bytes: sizes[0]! + sizes[1]! + sizes[2]! },
    ]);
    expect(existsSync(owner)).toBe(false);
    await firstRead;
    expect(log.recovered).toBe(3);
    expect(log.unread()).toEqual({ segments: 2, bytes: sizes[1]! + sizes[2]!, epoch: 7 });
    expect(log.pending()).toEqual({ memory: 0, disk: 3 });

    const secondRead = nextRead(log);
    expect(ids(log.take(10))).toEqual(groups[0]!.map((e) => e.id));
    await secondRead; // read ahead: fewer than 1,000 events were left in memory
    expect(log.recovered).toBe(6);
    expect(log.unread()).toEqual({ segments: 1, bytes: sizes[2]!, epoch: 7 });
    expect(log.ready).toBe(0); // taken-over events are not this log's own
    expect(recovered.map((e) => e.epoch)).toEqual(Array(6).fill(7));
  });

  it("unread() gives the oldest flush epoch among the segments not read yet", async () => {
    const dir = spoolDir();
    let epoch = 5;
    const { log } = open(dir, new TestClock(), { epoch: () => epoch });
    releasedOwner(dir, "000000001-0123456789ab", [events(1), events(1), events(1)]);
    let read = nextRead(log);
    await log.adopt();
    await read; // the first of three read; two left at epoch 5
    epoch = 9;
    releasedOwner(dir, "000000002-0123456789ab", [events(1)]);
    read = nextRead(log);
    await log.adopt(); // reads the second of the first owner's
    await read;
    expect(log.unread()).toMatchObject({ segments: 2, epoch: 5 });
  });

  it("an owner directory with no segments is removed at once", async () => {
    const dir = spoolDir();
    const empty = join(dir, "000000001-0123456789ab");
    mkdirSync(empty);
    const { log, problems } = open(dir);
    await log.adopt();
    expect(problems).toEqual([{ kind: "adopted", owners: [expect.objectContaining({ ownerId: "000000001-0123456789ab" })], segments: 0, bytes: 0 }]);
    expect(readdirSync(log.ownerDir!)).toEqual([LOCK_FILE]);
  });

  it("a segment its ledger marks done in full (a crash before its deletion) recovers nothing and is removed with its owner directory", async () => {
    const dir = spoolDir();
    const owner = releasedOwner(dir, "000000001-0123456789ab", [events(3)]);
    writeFileSync(join(owner, "00000001.ack"), encodeAcks([0, 1, 2]));
    const { log, recoveredCalls } = open(dir);
    await log.adopt();
    await until(() => readdirSync(log.ownerDir!).length === 1, "the done owner's removal");
    expect(readdirSync(log.ownerDir!)).toEqual([LOCK_FILE]);
    expect(recoveredCalls).toEqual([]);
    expect(log.recovered).toBe(0);
    expect(log.bytes).toBe(0);
  });

  it("an adopted owner's directory is removed once its last segment is done, not before", async () => {
    const dir = spoolDir();
    releasedOwner(dir, "000000001-0123456789ab", [events(2), events(2)]);
    const { log } = open(dir);
    await log.adopt();
    const adopted = join(log.ownerDir!, "000000001-0123456789ab");
    await until(() => log.recovered >= 2, "the first segment read back");
    const first = log.take(10)!;
    log.settle(first);
    await until(() => readdirSync(adopted).length === 1, "the first segment's deletion, its ledger too");
    expect(readdirSync(adopted)).toEqual(["00000002.log"]);
    expect(await drain(log)).toHaveLength(2);
    await until(() => !existsSync(adopted), "the adopted directory's removal");
    expect(readdirSync(log.ownerDir!)).toEqual([LOCK_FILE]);
  });

  it("of two adopted owners, the one delivered first has its directory removed while the other's is still read", async () => {
    const dir = spoolDir();
    releasedOwner(dir, "000000001-0123456789ab", [events(2)]);
    releasedOwner(dir, "000000002-0123456789ab", [events(2), events(2)]);
    const { log } = open(dir, new TestClock(), {});
    await log.adopt();
    const first = join(log.ownerDir!, "000000001-0123456789ab");
    const second = join(log.ownerDir!, "000000002-0123456789ab");
    await until(() => log.recovered >= 2, "the first owner's segment read back");
    const batch = log.take(10)!;
    expect(batch.events).toHaveLength(2);
    log.settle(batch);
    await until(() => !existsSync(first), "the first owner's directory removal");
    expect(existsSync(second)).toBe(true);
    expect(await drain(log)).toHaveLength(4);
    await until(() => !existsSync(second), "the second owner's directory removal");
  });

  it("a corrupt record is written to the ledger once reported: the next owner does not report it again", async () => {
    const dir = spoolDir();
    const owner = releasedOwner(dir, "000000001-0123456789ab", [[event("good-1"), event("bad"), event("good-2")]]);
    const path = join(owner, "00000001.log");
    writeFileSync(path, readFileSync(path, "utf8").replace('"id":"bad"', '"id":"bat"'));
    const second = open(dir);
    const read = nextRead(second.log);
    await second.log.adopt();
    await read;
    expect(second.problems.map((p) => p.kind)).toEqual(["adopted", "corrupt"]);
    expect(second.log.corrupt).toBe(1);
    expect(second.gone).toEqual([]); // never counted in by this log: nothing to take out
    second.log.close(); // before sending anything

    const third = open(dir);
    const again = nextRead(third.log);
    await third.log.adopt();
    await again;
    expect(third.problems.map((p) => p.kind)).toEqual(["adopted"]);
    expect(await drain(third.log)).toEqual(["good-1", "good-2"]);
  });

  it("a corrupt record of its own segment, read back from disk, is reported and taken out of the counts", async () => {
    const { log, problems, gone } = open(spoolDir(), new TestClock(), { cacheLimit: 1 });
    log.append([event("cached")], { memoryLimit: 0 });
    log.append([event("ok"), event("flipped")], { memoryLimit: 0 }); // on disk only
    const [, second] = segmentsIn(log.ownerDir!).sort();
    const path = join(log.ownerDir!, second!);
    writeFileSync(path, readFileSync(path, "utf8").replace('"id":"flipped"', '"id":"flopped"'));
    expect(log.ready).toBe(3);
    expect((await drain(log)).sort()).toEqual(["cached", "ok"]);
    expect(problems.map((p) => p.kind)).toEqual(["corrupt"]);
    expect(gone).toEqual([1]);
    expect(log.ready).toBe(0);
    expect(log.pending()).toEqual({ memory: 0, disk: 0 });
  });

  it("a segment whose ledger cannot be read is reported and not sent (sending could bill acknowledged events twice)", async () => {
    const dir = spoolDir();
    const owner = releasedOwner(dir, "000000001-0123456789ab", [events(2)]);
    mkdirSync(join(owner, "00000001.ack")); // reading it fails with EISDIR
    const { log, problems } = open(dir);
    const read = nextRead(log);
    await log.adopt();
    await read;
    expect(problems.map((p) => p.kind)).toEqual(["adopted", "io"]);
    expect(problems[1]).toMatchObject({ action: expect.stringContaining("00000001.log") });
    expect(log.take(10)).toBeUndefined();
    expect(log.recovered).toBe(0);
  });

  it("a segment that cannot be read is said once and tried again every READ_RETRY_MS on the clock, not on every take; the next segment is read meanwhile", async () => {
    const dir = spoolDir();
    const [first, second] = [events(2), events(2)];
    const owner = releasedOwner(dir, "000000001-0123456789ab", [first, second]);
    mkdirSync(join(owner, "00000001.ack")); // the first segment's ledger cannot be read: EISDIR
    const clock = new TestClock();
    const { log, problems } = open(dir, clock);
    await log.adopt();
    // Takes again and again (as a sender does after every answer): the second segment, and no read loop.
    expect((await drain(log)).sort()).toEqual(second.map((e) => e.id).sort());
    expect(problems.map((p) => p.kind)).toEqual(["adopted", "io"]);
    // Tried again after READ_RETRY_MS, failing again: not said again, and tried once more later.
    await clock.advance(READ_RETRY_MS);
    expect(await drain(log)).toEqual([]);
    expect(problems.map((p) => p.kind)).toEqual(["adopted", "io"]);
    rmSync(join(log.ownerDir!, "000000001-0123456789ab", "00000001.ack"), { recursive: true });
    await clock.advance(READ_RETRY_MS - 1);
    expect(await drain(log)).toEqual([]);
    // No take from here on: the log's own timer reads it again, and says so (onReadable).
    let read = false;
    void nextRead(log).then(() => (read = true));
    await clock.advance(1);
    await until(() => read, "the read at READ_RETRY_MS");
    expect((await drain(log)).sort()).toEqual(first.map((e) => e.id).sort());
    expect(problems.map((p) => p.kind)).toEqual(["adopted", "io"]);
    expect(log.pending()).toEqual({ memory: 0, disk: 0 });
  });

  it("a dead owner beside a released one: both are read after two renewal intervals; released ones alone at once", async () => {
    const wall = 2_000_000_000;
    /** The delays the log asks its clock for (the lease's renewals are leaseMs / 5 = 200 ms). */
    class RecordingClock extends TestClock {
      readonly delays: number[] = [];
      override setTimeout(callback: () => void, ms: number) {
        this.delays.push(ms);
        return super.setTimeout(callback, ms);
      }
    }
    const adoptWith = async (dead: boolean) => {
      const dir = spoolDir();
      releasedOwner(dir, "000000001-0123456789ab", [events(1)]);
      if (dead) {
        const owner = releasedOwner(dir, "000000002-0123456789ab", [events(1)]);
        writeFileSync(join(owner, LOCK_FILE), "");
        utimesSync(join(owner, LOCK_FILE), (wall - 5000) / 1000, (wall - 5000) / 1000);
      }
      const clock = new RecordingClock({ wall });
      const { log } = open(dir, clock);
      await clock.advanceUntil(log.adopt());
      expect(await drain(log)).toHaveLength(dead ? 2 : 1);
      return clock.delays.filter((ms) => ms !== 200);
    };
    expect(await adoptWith(true)).toEqual([400]);
    expect(await adoptWith(false)).toEqual([]);
  });
});

describe("closing", () => {
  // Counted synchronously from start to end, so nothing else in the process opens or closes a file in between.
  const fds = () => readdirSync("/proc/self/fd").length;

  it.skipIf(!existsSync("/proc/self/fd"))("close closes every segment and ledger file it holds; a done segment's files are closed at once", () => {
    const before = fds();
    const { log } = open(spoolDir(), new TestClock(), { segmentBytes: 600 });
    for (const e of events(6)) log.append([e], { memoryLimit: 0 });
    const batch = log.take(2)!;
    log.settle(batch); // a ledger file is open now
    expect(fds()).toBeGreaterThan(before);
    log.close();
    expect(fds()).toBe(before);

    const { log: other } = open(spoolDir());
    const opened = fds();
    other.append(events(2), { memoryLimit: 0 });
    other.settle(other.take(1)!);
    expect(fds()).toBe(opened + 2); // the segment and its ledger
    other.settle(other.take(1)!); // done: deleted, both closed
    expect(fds()).toBe(opened);
    other.close();
  });

  it("with everything delivered, close removes the owner directory; with records left, it keeps them and drops the lock", () => {
    const dir = spoolDir();
    const done = open(dir);
    done.log.append(events(2), { memoryLimit: 0 });
    done.log.settle(done.log.take(10)!);
    done.log.close();
    expect(existsSync(done.log.ownerDir!)).toBe(false);

    const left = open(dir);
    left.log.append(events(2), { memoryLimit: 0 });
    left.log.settle(left.log.take(1)!);
    left.log.close();
    expect(readdirSync(left.log.ownerDir!).sort()).toEqual(["00000001.ack", "00000001.log"]);
  });

  it("with a taken-over segment still unread, close keeps the owner directory", async () => {
    const dir = spoolDir();
    releasedOwner(dir, "000000001-0123456789ab", [events(1), events(1)]);
    const { log } = open(dir);
    await log.adopt();
    log.close();
    expect(readdirSync(log.ownerDir!)).toEqual(["000000001-0123456789ab"]);
  });

  it("a closed log takes nothing over, and a second close changes nothing", async () => {
    const dir = spoolDir();
    const other = releasedOwner(dir, "000000001-0123456789ab", [events(1)]);
    const { log, problems } = open(dir);
    log.append(events(1), { memoryLimit: 0 });
    log.close();
    log.close();
    await log.adopt();
    expect(problems).toEqual([]);
    expect(existsSync(other)).toBe(true);
    expect(readdirSync(log.ownerDir!)).toEqual(["00000001.log"]);
    expect(statSync(join(log.ownerDir!, "00000001.log")).size).toBeGreaterThan(0);
  });
});
