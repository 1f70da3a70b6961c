/**
 * The queue with `spoolDir`: a write-ahead log. Design note, read before changing anything here.
 *
 * Invariants
 * 1. Written before counted. `append` writes a call's events as one `write(2)` to the current segment
 *    before it returns, so once LangChain's callback has run they survive a SIGKILL at any later moment.
 * 2. Deleted only when done. A segment file is deleted once every record in it was acknowledged by the
 *    endpoint (2xx) or refused and reported; until then it stays, whatever the process does.
 * 3. Done is written down. Settling a batch appends its record indexes to the segment's ledger
 *    (`records.ts`), so a process that dies half-way through a segment costs at most the batches that
 *    were in flight a second time, not the segment.
 * 4. One writer per file. Each client writes only in its own owner directory, held by a lease
 *    (`lease.ts`); the segments of released and dead owners are taken over by rename and delivered
 *    like its own, oldest first, after the live events that are due.
 * 5. Nothing dropped in silence. When the disk refuses (full, `maxSpoolBytes`, an I/O error) the
 *    events are held in memory instead, up to the memory limit, and what cannot be held either is
 *    handed back to the caller, which reports it with the events.
 *
 * Memory: the records of a segment are kept in memory while it is written, as long as fewer than
 * `cacheLimit` events are cached; later segments are read back from disk when their turn comes
 * (one at a time). Released batches go to the front and are taken again first. A segment whose read
 * fails is tried again after `READ_RETRY_MS`, not on every take; the segments after it are read meanwhile.
 */
import { existsSync, fdatasyncSync, fstatSync, ftruncateSync, openSync, rmSync, writeSync } from "node:fs";
import { readFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import { type Clock, type ClockTimer, delay } from "../../clock";
import { MemoryQueue } from "../memory-queue";
import type { AppendRefusal, Batch, EventQueue, PendingCounts, QueuedEvent } from "../queue";
import { adoptOwners, type AdoptedOwner, OwnerLease, wasTaken } from "./lease";
import { type CorruptRecord, encodeAcks, encodeRecords, IndexSet, parseSegment } from "./records";
import { findDir, findSegments, idOf } from "./scan";
import { closeFd, DiskBatch, type Entry, Segment, syncDirectory, tryUnlink } from "./segment";

/**
 * How often an append checks that its segment file still has a name (a removed directory). Appends in
 * between go to the removed file: those kept in memory are held there when it is found, the others lost and said.
 */
const NLINK_CHECK_MS = 100;

/**
 * A segment that could not be read (an I/O error, a ledger that is not a file) is tried again after
 * this long, not on the next take: every take would read it again, in a loop, and the segments after
 * it would wait behind it.
 */
export const READ_RETRY_MS = 5000;

/** Loaded-but-untaken events below which the next segment on disk is read in. */
const LOAD_LOW_WATER = 1000;

export type DiskProblem =
  | { kind: "corrupt"; file: string; records: CorruptRecord[] }
  | { kind: "write-failed"; error: Error }
  | { kind: "write-recovered" }
  | { kind: "lease-lost"; handedOver: number }
  | { kind: "directory-removed"; heldInMemory: number; lost: number }
  | { kind: "adopted"; owners: AdoptedOwner[]; segments: number; bytes: number }
  | { kind: "io"; action: string; error: Error };

export interface DiskLogOptions {
  dir: string;
  clock: Clock;
  leaseMs: number;
  maxBytes: number;
  segmentBytes: number;
  fsync: boolean;
  /** At most this many untaken events are kept in memory; the rest is read back from disk. */
  cacheLimit: number;
  /** Events read back from another owner's segments (not counted by `enqueue`). */
  onRecovered: (events: QueuedEvent[], epoch: number) => void;
  /** Events that left the log without being sent: corrupt records, or taken over by another owner. */
  onGone: (count: number, epoch: number) => void;
  onProblem: (problem: DiskProblem) => void;
  /** The flush epoch to stamp on adopted segments (see `FlushTracker`). */
  epoch: () => number;
}

export class DiskLog implements EventQueue {
  readonly location: string;
  readonly #options: DiskLogOptions;
  #lease: OwnerLease | undefined;
  /** This log's own segments, oldest first; the last may be open for appends. */
  #own: Segment[] = [];
  /** Segments taken over from other owners, oldest first. */
  #backlog: Segment[] = [];
  #active: Segment | undefined;
  #nextSeq = 1;
  /** Bytes of every segment still on disk (own and adopted): what `maxBytes` bounds. */
  #bytes = 0;
  /** Untaken events in memory (segment caches). */
  #memoryReady = 0;
  /** Batches taken and not yet settled or released. */
  readonly #underWay = new Set<DiskBatch>();
  readonly #again: DiskBatch[] = [];
  /** Where events go while the disk refuses them. */
  readonly #volatile = new MemoryQueue();
  #writeFailing = false;
  #nextLinkCheck = 0;
  /** Own records not taken yet (in a cache, or on disk only). */
  #ownUntaken = 0;
  /** Events in `#again`. */
  #againEvents = 0;
  #loadingAny = false;
  #readable: Array<() => void> = [];
  /** Set while a segment waits to be read again (see READ_RETRY_MS). */
  #retryTimer: ClockTimer | undefined;
  #closed = false;
  readonly #pendingDeletes = new Set<string>();
  /** Adopted owner directories whose segments are all done, still to be removed. */
  readonly #finishedOwnerDirs = new Set<string>();

  /** Events taken over from other owners (valid and corrupt), once read. */
  recovered = 0;
  /** Records of taken-over segments that failed their checksum: reported, never sent. */
  corrupt = 0;
  /** Events another owner took over from this one (its lease was lost). */
  handedOver = 0;
  /** Events that were only on disk when the spool directory was removed under this log. */
  lost = 0;

  /** Creates the owner directory synchronously: an unusable `spoolDir` throws a `SpoolDirError` here. */
  constructor(options: DiskLogOptions) {
    this.#options = options;
    this.#lease = this.#newLease();
    this.location = options.dir;
  }

  get ownerDir(): string | undefined {
    return this.#lease?.dir;
  }

  // --- the queue ------------------------------------------------------------------------------

  append(events: readonly QueuedEvent[], options: { memoryLimit: number }): AppendRefusal | undefined {
    if (events.length === 0) return undefined;
    const failure = this.#write(events);
    if (failure === undefined) {
      if (this.#writeFailing) {
        this.#writeFailing = false;
        this.#options.onProblem({ kind: "write-recovered" });
      }
      return undefined;
    }
    const refused = this.#volatile.append(events, options);
    if (refused === undefined) return undefined;
    return { events, kind: failure.kind, reason: `${failure.reason}, and the in-memory queue is full too (maxQueueSize ${options.memoryLimit})` };
  }

  /** The one write; undefined when the events are on disk, else why not (they are not). */
  #write(events: readonly QueuedEvent[]): { kind: "spool-full" | "spool-write"; reason: string } | undefined {
    const lease = this.#lease;
    if (lease === undefined || !lease.confirm()) {
      if (this.#lease === lease) return { kind: "spool-write", reason: `the spool directory ${this.location} could not be used` };
      return this.#write(events); // the lease was lost and a new one taken: write there
    }
    // Encoded once: the length is the buffer's, and write(2) takes the same bytes.
    const bytes = Buffer.from(encodeRecords(events.map((event) => event.json)));
    const length = bytes.length;
    if (this.#bytes + length > this.#options.maxBytes) {
      return { kind: "spool-full", reason: `the spool in ${this.location} reached maxSpoolBytes (${this.#options.maxBytes} bytes) while the endpoint was failing` };
    }
    let segment: Segment;
    try {
      segment = this.#segmentFor(length, events[0]!.epoch);
      // A segment file removed under us (its directory deleted) would take the bytes and keep nothing.
      // Looked at every NLINK_CHECK_MS, not per write: the check costs as much as the write.
      if (this.#options.clock.now() >= this.#nextLinkCheck) {
        this.#nextLinkCheck = this.#options.clock.now() + NLINK_CHECK_MS;
        if (fstatSync(segment.fd!).nlink === 0) {
          this.#leaseLost();
          return this.#write(events);
        }
      }
      const written = writeSync(segment.fd!, bytes);
      if (written !== length) {
        ftruncateSync(segment.fd!, segment.bytes); // no half record may stay in front of the next one
        throw Object.assign(new Error(`ENOSPC: no space left on the device (wrote ${written} of ${length} bytes; undone)`), { code: "ENOSPC" });
      }
      if (this.#options.fsync) fdatasyncSync(segment.fd!);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT" && this.#lease !== undefined && !existsSync(this.#lease.dir)) {
        this.#leaseLost(); // the directory went away under us
        return this.#write(events);
      }
      if (!this.#writeFailing) {
        this.#writeFailing = true;
        this.#options.onProblem({ kind: "write-failed", error: error as Error });
      }
      // The segment may be in a bad state (a failed truncate): start a new one next time.
      this.#seal();
      return { kind: "spool-write", reason: `writing the spool in ${this.location} failed (${(error as Error).message})` };
    }
    const first = segment.count;
    segment.count += events.length;
    segment.bytes += length;
    this.#bytes += length;
    this.#ownUntaken += events.length;
    if (segment.cache !== undefined) {
      for (let i = 0; i < events.length; i++) segment.cache.push({ index: first + i, event: events[i]! });
      this.#memoryReady += events.length;
      // Past the cache limit the next segment is kept on disk only.
      if (this.#memoryReady >= this.#options.cacheLimit) this.#seal();
    }
    return undefined;
  }

  /** The segment to append to: the active one, unless it is full or of an older flush epoch. */
  #segmentFor(length: number, epoch: number): Segment {
    const active = this.#active;
    // A record larger than segmentBytes goes alone into a new segment: the active one is never empty here.
    if (active !== undefined && active.epoch === epoch && active.bytes + length <= this.#options.segmentBytes) return active;
    this.#seal();
    const dir = this.#lease!.dir;
    const seq = this.#nextSeq++;
    const path = join(dir, `${String(seq).padStart(8, "0")}.log`);
    // One epoch per segment, so records read back from disk carry the epoch they were counted in.
    const segment = new Segment(path, dir, true, epoch, this.#memoryReady < this.#options.cacheLimit);
    segment.fd = openSync(path, "wx", 0o600);
    if (this.#options.fsync) syncDirectory(dir);
    this.#own.push(segment);
    this.#active = segment;
    return segment;
  }

  /** No more appends to the active segment: it may now be read back, and deleted once done. */
  #seal(): void {
    const active = this.#active;
    if (active === undefined) return;
    this.#active = undefined;
    active.sealed = true;
    closeFd(active, "fd");
    if (active.settled === active.count && active.underWay === 0) this.#delete(active);
  }

  /** Live events not under way: O(1), the batcher asks on every append. */
  get ready(): number {
    return this.#volatile.ready + this.#againEvents + this.#ownUntaken;
  }

  take(max: number, options: { liveDue: boolean } = { liveDue: true }): Batch | undefined {
    const again = this.#again.shift();
    if (again !== undefined) {
      this.#againEvents -= again.entries.length;
      this.#underWay.add(again);
      again.segment.underWay += again.entries.length;
      return again;
    }
    if (options.liveDue) {
      const volatile = this.#volatile.take(max);
      if (volatile !== undefined) return volatile;
      const live = this.#takeFrom(this.#own, max);
      if (live !== undefined) return live;
    }
    return this.#takeFrom(this.#backlog, max);
  }

  #takeFrom(segments: Segment[], max: number): Batch | undefined {
    for (const segment of segments) {
      if (segment.cache === undefined) {
        if (segment.count - segment.settled - segment.underWay > 0 || !segment.own) this.#load(segment);
        continue;
      }
      if (segment.untaken === 0) continue;
      const entries = segment.cache.slice(segment.cursor, segment.cursor + max);
      segment.cursor += entries.length;
      this.#memoryReady -= entries.length;
      if (segment.own) this.#ownUntaken -= entries.length;
      if (segment.cursor === segment.cache.length) {
        segment.cache.length = 0; // every entry now lives in its batch
        segment.cursor = 0;
      }
      if (this.#memoryReady < LOAD_LOW_WATER) this.#loadNext();
      const batch = new DiskBatch(segment, entries, entries.map((entry) => entry.event), this.#underWay);
      this.#underWay.add(batch);
      segment.underWay += entries.length;
      return batch;
    }
    return undefined;
  }

  settle(batch: Batch): void {
    if (!(batch instanceof DiskBatch)) return this.#volatile.settle(batch);
    if (!this.#underWay.delete(batch)) return;
    const segment = batch.segment;
    segment.underWay -= batch.entries.length;
    if (!segment.live) return;
    this.#writeAck(segment, batch.entries);
    segment.settled += batch.entries.length;
    if (segment.settled === segment.count && segment.underWay === 0) {
      if (segment === this.#active) this.#seal();
      else if (segment.sealed) this.#delete(segment);
    }
  }

  release(batch: Batch): void {
    if (!(batch instanceof DiskBatch)) return this.#volatile.release(batch);
    if (!this.#underWay.delete(batch)) return;
    batch.segment.underWay -= batch.entries.length;
    if (batch.segment.removed) {
      this.#volatile.append(batch.events, { memoryLimit: Number.POSITIVE_INFINITY });
      return;
    }
    if (!batch.segment.live) {
      this.handedOver += batch.entries.length;
      this.#options.onGone(batch.entries.length, batch.segment.epoch);
      return;
    }
    this.#again.push(batch);
    this.#againEvents += batch.entries.length;
  }

  pending(): PendingCounts {
    let disk = 0;
    for (const segment of [...this.#own, ...this.#backlog]) {
      if (!segment.own && segment.cache === undefined) continue; // not read yet: not counted yet
      disk += segment.count - segment.settled;
    }
    let memory = this.#volatile.pending().memory;
    for (const batch of this.#underWay) {
      if (batch.segment.removed) memory += batch.entries.length;
      else if (!batch.segment.live) disk += batch.entries.length;
    }
    return { memory, disk };
  }

  /** Taken-over segments not read yet, and the oldest flush epoch among them. */
  unread(): { segments: number; bytes: number; epoch: number | undefined } {
    let bytes = 0;
    let epoch: number | undefined;
    let segments = 0;
    for (const segment of this.#backlog) {
      if (segment.cache !== undefined) continue;
      segments++;
      bytes += segment.bytes;
      epoch = epoch === undefined ? segment.epoch : Math.min(epoch, segment.epoch);
    }
    return { segments, bytes, epoch };
  }

  /** The events the disk refused, held in memory instead. */
  drainMemory(): QueuedEvent[] {
    return this.#volatile.drainMemory();
  }

  /** Bytes of segments on disk. */
  get bytes(): number {
    return this.#bytes;
  }

  onReadable(listener: () => void): void {
    this.#readable.push(listener);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#retryTimer?.clear();
    for (const segment of [...this.#own, ...this.#backlog]) {
      closeFd(segment, "fd");
      closeFd(segment, "ackFd");
    }
    // Deletions under way finish here: a done segment left behind would only be read and dropped later.
    for (const path of this.#pendingDeletes) for (const file of [path, path.replace(/\.log$/, ".ack")]) tryUnlink(file);
    for (const dir of this.#finishedOwnerDirs) rmSync(dir, { recursive: true, force: true });
    const empty = this.#own.every((segment) => segment.settled === segment.count) && this.#backlog.length === 0;
    this.#lease?.release(empty);
  }

  // --- taking over other owners ---------------------------------------------------------------

  /**
   * Takes over released and dead owners' segments. Dead ones are read only after two renewal
   * intervals (see lease.ts). Never rejects: problems are reported.
   */
  async adopt(): Promise<void> {
    const lease = this.#lease;
    if (lease === undefined || this.#closed) return;
    let owners: AdoptedOwner[];
    try {
      owners = await adoptOwners(this.#options.dir, lease, this.#options.clock, this.#options.leaseMs);
    } catch (error) {
      this.#options.onProblem({ kind: "io", action: `looking for other owners' segments in ${this.location}`, error: error as Error });
      return;
    }
    if (owners.length === 0) return;
    if (owners.some((owner) => !owner.released)) await delay(this.#options.clock, (2 * this.#options.leaseMs) / 5);
    const epoch = this.#options.epoch();
    let bytes = 0;
    let count = 0;
    for (const owner of owners) {
      const found = await findSegments(owner.dir);
      for (const { path, ownerDir, size } of found) {
        const segment = new Segment(path, ownerDir, false, epoch, false);
        segment.bytes = size;
        this.#bytes += size;
        bytes += size;
        count++;
        this.#backlog.push(segment);
      }
      if (found.length === 0) rmSync(owner.dir, { recursive: true, force: true });
    }
    this.#options.onProblem({ kind: "adopted", owners, segments: count, bytes });
    if (count > 0) this.#loadNext();
  }

  #loadNext(): void {
    if (this.#loadingAny) return;
    const now = this.#options.clock.now();
    const next = [...this.#own, ...this.#backlog].find(
      (segment) => segment.cache === undefined && !segment.loading && segment.retryAt <= now && (segment.sealed || segment !== this.#active),
    );
    if (next !== undefined && (next.own ? next.count - next.settled - next.underWay > 0 : true)) this.#load(next);
  }

  #load(segment: Segment): void {
    if (segment.loading || this.#loadingAny || this.#closed || segment.retryAt > this.#options.clock.now()) return;
    if (segment === this.#active) this.#seal();
    segment.loading = true;
    this.#loadingAny = true;
    void this.#read(segment).finally(() => {
      segment.loading = false;
      this.#loadingAny = false;
      for (const listener of this.#readable) listener();
    });
  }

  /** A timer for the earliest segment waiting to be read again. */
  #scheduleRetry(): void {
    if (this.#retryTimer !== undefined || this.#closed) return;
    const now = this.#options.clock.now();
    const due = [...this.#own, ...this.#backlog].filter((segment) => segment.cache === undefined && segment.retryAt > now).map((segment) => segment.retryAt);
    if (due.length === 0) return;
    this.#retryTimer = this.#options.clock.setTimeout(() => {
      this.#retryTimer = undefined;
      this.#loadNext();
      this.#scheduleRetry();
    }, Math.min(...due) - now);
  }

  async #read(segment: Segment): Promise<void> {
    let bytes: Buffer;
    let acks = "";
    try {
      bytes = await readFile(segment.path);
      acks = await readFile(segment.ackPath, "utf8").catch((error: unknown) => {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return "";
        throw error;
      });
    } catch (error) {
      // Said once per segment; it stays unread and is tried again after READ_RETRY_MS.
      if (segment.retryAt === 0) this.#options.onProblem({ kind: "io", action: `reading ${segment.path}`, error: error as Error });
      segment.retryAt = this.#options.clock.now() + READ_RETRY_MS;
      this.#scheduleRetry();
      return;
    }
    segment.retryAt = 0;
    const parsed = parseSegment(bytes, IndexSet.parse(acks));
    const entries: Entry[] = [];
    const corrupt = [...parsed.corrupt];
    for (const record of parsed.records) {
      const id = idOf(record.json);
      if (id === undefined) corrupt.push({ index: record.index, start: record.start, end: record.end, reason: "not a JSON event (its checksum holds: it was written so)" });
      else entries.push({ index: record.index, event: { id, json: record.json, epoch: segment.epoch } });
    }
    if (!segment.own) {
      segment.count = parsed.count;
      this.recovered += entries.length + corrupt.length;
      if (entries.length > 0) this.#options.onRecovered(entries.map((entry) => entry.event), segment.epoch);
    }
    segment.settled = parsed.count - entries.length;
    if (corrupt.length > 0) {
      this.corrupt += corrupt.length;
      // Only this log's own records were counted in (at enqueue); a taken-over segment's corrupt ones never were.
      if (segment.own) {
        this.#options.onGone(corrupt.length, segment.epoch);
        this.#ownUntaken -= corrupt.length;
      }
      this.#options.onProblem({ kind: "corrupt", file: segment.path, records: corrupt });
      this.#writeAck(segment, corrupt.map((record) => ({ index: record.index }) as Entry)); // reported once, not on every read
    }
    segment.cache = entries;
    segment.cursor = 0;
    this.#memoryReady += entries.length;
    if (segment.settled === segment.count && segment.underWay === 0) this.#delete(segment);
  }

  // --- files ----------------------------------------------------------------------------------

  #writeAck(segment: Segment, entries: readonly Pick<Entry, "index">[]): void {
    try {
      segment.ackFd ??= openSync(segment.ackPath, "a", 0o600);
      writeSync(segment.ackFd, encodeAcks(entries.map((entry) => entry.index)));
    } catch {
      // Not fatal: without the ledger line the batch is sent once more after a crash, never lost.
    }
  }

  #delete(segment: Segment): void {
    closeFd(segment, "fd");
    closeFd(segment, "ackFd");
    const list = segment.own ? this.#own : this.#backlog;
    const at = list.indexOf(segment);
    if (at !== -1) list.splice(at, 1);
    this.#bytes -= segment.bytes;
    segment.live = false;
    this.#pendingDeletes.add(segment.path);
    const ownerDir = segment.ownerDir;
    const finishedDir = !segment.own && !this.#backlog.some((other) => other.ownerDir === ownerDir);
    if (finishedDir) this.#finishedOwnerDirs.add(ownerDir);
    void (async () => {
      // The segment first: a ledger without its segment is harmless, a segment without its ledger is sent again.
      await unlink(segment.path).catch(() => undefined);
      await unlink(segment.ackPath).catch(() => undefined);
      this.#pendingDeletes.delete(segment.path);
      if (finishedDir && !this.#closed) {
        rmSync(ownerDir, { recursive: true, force: true });
        this.#finishedOwnerDirs.delete(ownerDir);
      }
    })();
  }

  #newLease(): OwnerLease {
    return new OwnerLease(this.#options.dir, {
      clock: this.#options.clock,
      leaseMs: this.#options.leaseMs,
      onLost: () => this.#leaseLost(),
    });
  }

  /**
   * The lease is gone: another owner took this one's directory (its segments are that owner's to
   * deliver now), or the directory was removed (a tmp cleaner, an operator): then what is still in
   * memory is kept there, not durable any more, and what was only on disk is lost and reported.
   */
  #leaseLost(): void {
    const id = this.#lease?.id;
    const taken = id !== undefined && (wasTaken(this.#options.dir, id) || findDir(this.#options.dir, id, 3));
    const segments = [...this.#own, ...this.#backlog];
    let handedOver = 0;
    let heldInMemory = 0;
    let lost = 0;
    for (const segment of segments) {
      segment.live = false;
      closeFd(segment, "fd");
      closeFd(segment, "ackFd");
      if (!segment.own && segment.cache === undefined) continue; // never read: never counted
      // Not settled and not under way: untaken, or released (in `#again`).
      const left = segment.count - segment.settled - segment.underWay;
      if (taken) {
        handedOver += left;
        this.#options.onGone(left, segment.epoch);
      } else if (segment.cache !== undefined) {
        segment.removed = true;
        const entries = segment.cache.slice(segment.cursor);
        for (const batch of this.#again) if (batch.segment === segment) entries.push(...batch.entries);
        this.#volatile.append(entries.map((entry) => entry.event), { memoryLimit: Number.POSITIVE_INFINITY });
        heldInMemory += entries.length;
      } else {
        segment.removed = true;
        lost += left;
        this.#options.onGone(left, segment.epoch);
      }
    }
    this.#again.length = 0;
    this.#againEvents = 0;
    this.#ownUntaken = 0;
    this.handedOver += handedOver;
    this.lost += lost;
    this.#own = [];
    this.#backlog = [];
    this.#active = undefined;
    this.#bytes = 0;
    this.#memoryReady = 0;
    try {
      this.#lease = this.#newLease();
    } catch {
      this.#lease = undefined; // appends fall back to memory, reported as write failures
    }
    this.#options.onProblem(taken ? { kind: "lease-lost", handedOver } : { kind: "directory-removed", heldInMemory, lost });
  }
}

