// The write-ahead log's parts one by one: the owner lease, finding things in a spool directory, the
// record and ledger formats. Each rule here is one a wrong answer would cost events or bill them twice.
import { mkdirSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Clock } from "../../src/clock";
import { adoptOwners, isOwnerId, LOCK_FILE, OwnerLease, SpoolDirError, TAKEN_PREFIX, wasTaken } from "../../src/ingest/disk-log/lease";
import { encodeAcks, encodeRecords, IndexSet, parseSegment } from "../../src/ingest/disk-log/records";
import { findDir, findSegments, idOf } from "../../src/ingest/disk-log/scan";
import { TestClock } from "../../src/testing/clock";
import { spoolDir } from "./disk-log-kit";

const WALL = 2_000_000_000; // a whole second, so file times set in seconds compare exactly
const LEASE_MS = 1000;

/** A clock whose timers never fire: no renewal runs unless the test calls it. */
function stoppedClock(wall = WALL): Clock & { move(ms: number): void } {
  let now = 0;
  return {
    now: () => now,
    wallNow: () => wall + now,
    setTimeout: () => ({ clear() {}, ref() {}, unref() {} }),
    move(ms) {
      now += ms;
    },
  };
}

const lease = (dir: string, clock: Clock = stoppedClock(), onLost = () => {}) => new OwnerLease(dir, { clock, leaseMs: LEASE_MS, onLost });
const mtime = (path: string) => statSync(path).mtimeMs;
const setMtime = (path: string, wallMs: number) => utimesSync(path, wallMs / 1000, wallMs / 1000);

describe("the owner lease", () => {
  it("confirm renews the lock only once half the lease has passed since the last renewal", () => {
    const clock = stoppedClock();
    clock.move(10_000); // the lease is taken at 10 s on the monotonic clock, not at 0
    const own = lease(spoolDir(), clock);
    const lock = join(own.dir, LOCK_FILE);
    setMtime(lock, WALL - 60_000);
    clock.move(499);
    expect(own.confirm()).toBe(true);
    expect(mtime(lock)).toBe(WALL - 60_000);
    clock.move(1);
    expect(own.confirm()).toBe(true);
    expect(mtime(lock)).toBe(WALL + 10_500);
  });

  it("a released lease confirms and renews nothing, and a second release changes nothing", () => {
    const dir = spoolDir();
    const own = lease(dir);
    own.release(false);
    expect(own.held).toBe(false);
    expect(own.confirm()).toBe(false);
    expect(own.renew()).toBe(false);
    expect(readdirSync(own.dir)).toEqual([]); // the lock is gone, the directory kept
    writeFileSync(join(own.dir, LOCK_FILE), "someone else's\n");
    own.release(true);
    expect(readFileSync(join(own.dir, LOCK_FILE), "utf8")).toBe("someone else's\n");
  });

  it("release(true) removes the directory only when nothing is left in it", () => {
    const dir = spoolDir();
    const empty = lease(dir);
    empty.release(true);
    expect(readdirSync(dir)).not.toContain(empty.id);
    const kept = lease(dir);
    writeFileSync(join(kept.dir, "00000001.log"), "x");
    kept.release(true);
    expect(readdirSync(kept.dir)).toEqual(["00000001.log"]);
  });

  it("a renewal that finds the directory moved loses the lease once: onLost is called once, renewals stop", async () => {
    const dir = spoolDir();
    const clock = new TestClock({ wall: WALL });
    let lost = 0;
    const own = lease(dir, clock, () => lost++);
    mkdirSync(join(dir, "taker"));
    (await import("node:fs")).renameSync(own.dir, join(dir, "taker", own.id));
    expect(own.renew()).toBe(false); // the renewal that finds it gone says so itself
    expect(lost).toBe(1);
    await clock.advance(5 * LEASE_MS);
    expect(lost).toBe(1);
    expect(own.held).toBe(false);
    expect(own.renew()).toBe(false);
    expect(lost).toBe(1);
  });

  it("a spool directory that cannot be made is a SpoolDirError naming it, with the cause", () => {
    const dir = spoolDir();
    const file = join(dir, "a-file");
    writeFileSync(file, "");
    let thrown: unknown;
    try {
      lease(file);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(SpoolDirError);
    expect((thrown as Error).message).toContain(`spoolDir ${file} cannot be used`);
    expect((thrown as Error & { cause: NodeJS.ErrnoException }).cause.code).toMatch(/^(EEXIST|ENOTDIR)$/);
  });

  it("owner ids are 9 base-36 digits of the creation time, a dash and 12 hex digits, nothing around them", () => {
    const own = lease(spoolDir());
    expect(isOwnerId(own.id)).toBe(true);
    expect(own.id.slice(0, 9)).toBe(WALL.toString(36).padStart(9, "0"));
    for (const name of [`x${own.id}`, `${own.id}x`, "00000001.log", ".taken-000000001-0123456789ab"]) expect(isOwnerId(name)).toBe(false);
  });
});

describe("adopting other owners", () => {
  const owner = (dir: string, id: string, lockAgeMs?: number) => {
    mkdirSync(join(dir, id));
    if (lockAgeMs !== undefined) {
      writeFileSync(join(dir, id, LOCK_FILE), "");
      setMtime(join(dir, id, LOCK_FILE), WALL - lockAgeMs);
    }
    return join(dir, id);
  };

  it("takes released and dead owners, oldest first; leaves the live one; leaves a tombstone for each", async () => {
    const dir = spoolDir();
    const clock = stoppedClock();
    const own = lease(dir, clock);
    owner(dir, "000000003-0123456789ab"); // released
    owner(dir, "000000001-0123456789ab", LEASE_MS); // dead: exactly a lease old
    owner(dir, "000000002-0123456789ab", LEASE_MS - 1); // alive
    const adopted = await adoptOwners(dir, own, clock, LEASE_MS);
    expect(adopted).toEqual([
      { dir: join(own.dir, "000000001-0123456789ab"), ownerId: "000000001-0123456789ab", released: false },
      { dir: join(own.dir, "000000003-0123456789ab"), ownerId: "000000003-0123456789ab", released: true },
    ]);
    expect(readdirSync(join(own.dir, "000000001-0123456789ab"))).toEqual([]); // its stale lock went with it
    expect(readdirSync(dir).sort()).toEqual([".taken-000000001-0123456789ab", ".taken-000000003-0123456789ab", "000000002-0123456789ab", own.id].sort());
    expect(readFileSync(join(dir, `${TAKEN_PREFIX}000000001-0123456789ab`), "utf8")).toBe(`${own.id}\n`);
    expect(wasTaken(dir, "000000001-0123456789ab")).toBe(true);
    expect(wasTaken(dir, "000000002-0123456789ab")).toBe(false);
  });

  it("a released lease takes nothing, and nobody takes itself", async () => {
    const dir = spoolDir();
    const clock = stoppedClock();
    const own = lease(dir, clock);
    setMtime(join(own.dir, LOCK_FILE), WALL - 10 * LEASE_MS); // looks dead to itself
    expect(await adoptOwners(dir, own, clock, LEASE_MS)).toEqual([]);
    owner(dir, "000000001-0123456789ab");
    own.release(false);
    expect(await adoptOwners(dir, own, clock, LEASE_MS)).toEqual([]);
    expect(readdirSync(dir)).toContain("000000001-0123456789ab");
  });

  it("removes half-made owners older than a lease and tombstones older than ten; leaves younger ones and other names alone", async () => {
    const dir = spoolDir();
    const clock = stoppedClock();
    const own = lease(dir, clock);
    const made = (name: string, ageMs: number) => {
      mkdirSync(join(dir, name));
      writeFileSync(join(dir, name, "x"), "");
      setMtime(join(dir, name), WALL - ageMs);
    };
    made(".new-old", LEASE_MS + 1);
    made(".new-exactly", LEASE_MS); // not older than a lease: kept
    made(".new-young", LEASE_MS - 1);
    made(".taken-old", 10 * LEASE_MS + 1);
    made(".taken-young", 10 * LEASE_MS - 1);
    made("notes", 100 * LEASE_MS);
    expect(await adoptOwners(dir, own, clock, LEASE_MS)).toEqual([]);
    expect(readdirSync(dir).sort()).toEqual([".new-exactly", ".new-young", ".taken-young", "notes", own.id].sort());
  });

  it("an owner directory it cannot move into its own (a name in the way) fails the adoption, it is not skipped in silence", async () => {
    const dir = spoolDir();
    const clock = stoppedClock();
    const own = lease(dir, clock);
    owner(dir, "000000001-0123456789ab");
    mkdirSync(join(own.dir, "000000001-0123456789ab", "in-the-way"), { recursive: true });
    await expect(adoptOwners(dir, own, clock, LEASE_MS)).rejects.toMatchObject({ code: expect.stringMatching(/^(ENOTEMPTY|EEXIST)$/) });
  });

  it("a file named like an owner is left alone (its lock cannot be read)", async () => {
    const dir = spoolDir();
    const clock = stoppedClock();
    const own = lease(dir, clock);
    writeFileSync(join(dir, "000000001-0123456789ab"), "");
    expect(await adoptOwners(dir, own, clock, LEASE_MS)).toEqual([]);
    expect(readdirSync(dir).sort()).toEqual(["000000001-0123456789ab", own.id].sort());
  });

  it("a spool path that is a file fails the adoption (ENOTDIR), it is not taken for an empty spool", async () => {
    const dir = spoolDir();
    const clock = stoppedClock();
    const own = lease(dir, clock);
    writeFileSync(join(dir, "a-file"), "");
    await expect(adoptOwners(join(dir, "a-file"), own, clock, LEASE_MS)).rejects.toMatchObject({ code: "ENOTDIR" });
  });

  it("a spool directory that is gone has nobody to adopt", async () => {
    const dir = spoolDir();
    const clock = stoppedClock();
    const own = lease(dir, clock);
    expect(await adoptOwners(join(dir, "missing"), own, clock, LEASE_MS)).toEqual([]);
  });
});

describe("finding things in a spool directory", () => {
  it("findDir looks for a directory by name down to the given depth, and never at files", () => {
    const root = spoolDir();
    mkdirSync(join(root, "a", "b", "c", "target"), { recursive: true });
    writeFileSync(join(root, "file-target"), "");
    expect(findDir(root, "target", 3)).toBe(true);
    expect(findDir(root, "target", 2)).toBe(false);
    expect(findDir(root, "b", 1)).toBe(true);
    expect(findDir(root, "a", 0)).toBe(true);
    expect(findDir(root, "file-target", 3)).toBe(false);
    expect(findDir(join(root, "missing"), "a", 3)).toBe(false);
  });

  it("idOf is the event's id when it is a string, and nothing otherwise", () => {
    expect(idOf('{"id":"e-1"}')).toBe("e-1");
    expect(idOf('{"id":5}')).toBeUndefined();
    expect(idOf("null")).toBeUndefined();
    expect(idOf("{not json")).toBeUndefined();
  });

  it("findSegments lists segments oldest first, nested owners before its own; drops ledgers without a segment; ignores other names", async () => {
    const dir = spoolDir();
    const nested = join(dir, "000000001-0123456789ab");
    mkdirSync(nested);
    for (const name of ["00000002.log", "00000010.log", "00000001.log"]) writeFileSync(join(dir, name), "12");
    writeFileSync(join(dir, "00000001.ack"), "0+1\n");
    writeFileSync(join(dir, "00000003.ack"), "0+1\n"); // its segment was deleted: a leftover
    writeFileSync(join(nested, "00000005.log"), "1");
    for (const name of ["x00000004.log", "00000004.log.bak", "0000004.log", "notes.txt"]) writeFileSync(join(dir, name), "");
    mkdirSync(join(dir, "00000009.log")); // not a file
    const found = await findSegments(dir);
    expect(found).toEqual([
      { path: join(nested, "00000005.log"), ownerDir: nested, size: 1 },
      { path: join(dir, "00000001.log"), ownerDir: dir, size: 2 },
      { path: join(dir, "00000002.log"), ownerDir: dir, size: 2 },
      { path: join(dir, "00000010.log"), ownerDir: dir, size: 2 },
    ]);
    expect(readdirSync(dir)).not.toContain("00000003.ack");
    expect(readdirSync(dir)).toContain("00000001.ack");
    expect(await findSegments(join(dir, "missing"))).toEqual([]);
  });
});

describe("the record and ledger formats", () => {
  it("a line too short for a checksum, or without the space after it, is not a record; a 10-byte line with a wrong checksum is a mismatch", () => {
    const good = encodeRecords(["x"]); // `<8 hex> x\n`: the shortest record, 10 bytes before the newline
    const wrong = `${good.slice(0, 7)}${good[7] === "0" ? "1" : "0"}${good.slice(8)}`;
    const text = `short\n0123456789abcdef\n01234567 \n${wrong}${good}`;
    const parsed = parseSegment(Buffer.from(text), IndexSet.parse(""));
    expect(parsed.corrupt.map((record) => [record.index, record.reason])).toEqual([
      [0, "not a record (no checksum)"],
      [1, "not a record (no checksum)"],
      [2, "not a record (no checksum)"],
      [3, "checksum mismatch (the bytes changed after they were written)"],
    ]);
    expect(parsed.records.map((record) => [record.index, record.json])).toEqual([[4, "x"]]);
  });

  it("records the ledger marks done are counted, not returned", () => {
    const text = encodeRecords(["a", "b", "c", "d"]);
    const parsed = parseSegment(Buffer.from(text), IndexSet.parse("1+2\n"));
    expect(parsed).toMatchObject({ count: 4, acknowledged: 2 });
    expect(parsed.records.map((record) => record.json)).toEqual(["a", "d"]);
  });

  it("the ledger writes each run of consecutive indexes as one range", () => {
    expect(encodeAcks([7, 0, 1, 2, 5, 6])).toBe("0+3\n5+3\n");
    expect(encodeAcks([])).toBe("");
  });

  it("a ledger line is <first>+<count> with whole numbers and nothing around them", () => {
    const done = IndexSet.parse("10+20\nx3+1\n4+1x\n 6+1\n");
    expect([9, 10, 29, 30, 3, 4, 6].map((i) => done.has(i))).toEqual([false, true, true, false, false, false, false]);
  });
});
