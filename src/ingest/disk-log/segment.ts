/**
 * One segment of the write-ahead log as the log holds it in memory (its file, counts and cache), and
 * a batch taken from it. The file format is in records.ts; what the counts must always say is in the
 * design note of disk-log.ts.
 */
import { closeSync, fsyncSync, openSync, unlinkSync } from "node:fs";
import type { Batch, QueuedEvent } from "../queue";

export interface Entry {
  index: number;
  event: QueuedEvent;
}

export class Segment {
  fd: number | undefined;
  ackFd: number | undefined;
  count = 0;
  bytes = 0;
  /** Records done: acknowledged, refused, corrupt, or acknowledged before this process read the file. */
  settled = 0;
  underWay = 0;
  sealed: boolean;
  /** Untaken records in memory, from `cursor`; undefined while they are only on disk. */
  cache: Entry[] | undefined;
  cursor = 0;
  loading = false;
  /** When a failed read may be tried again (clock time); 0: it never failed, or it was read since. */
  retryAt = 0;
  /** Still counted by this log (false once its lease was lost). */
  live = true;
  /** Its directory was removed while in use: its batches under way are held in memory if they come back. */
  removed = false;

  constructor(
    readonly path: string,
    /** The owner directory it lives in (this client's, or an adopted one). */
    readonly ownerDir: string,
    /** Appended by this log (counted by `enqueue`), or taken over from another owner. */
    readonly own: boolean,
    readonly epoch: number,
    cached: boolean,
  ) {
    this.sealed = !own;
    this.cache = cached ? [] : undefined;
  }

  get ackPath(): string {
    return this.path.replace(/\.log$/, ".ack");
  }

  get untaken(): number {
    return this.cache === undefined ? 0 : this.cache.length - this.cursor;
  }
}

export class DiskBatch implements Batch {
  constructor(
    readonly segment: Segment,
    readonly entries: readonly Entry[],
    readonly events: readonly QueuedEvent[],
    readonly owner: Set<DiskBatch>,
  ) {}

  slice(start: number, end: number): Batch {
    if (this.owner.delete(this)) this.segment.underWay -= this.entries.length;
    const entries = this.entries.slice(start, end);
    const part = new DiskBatch(this.segment, entries, this.events.slice(start, end), this.owner);
    this.owner.add(part);
    this.segment.underWay += entries.length;
    return part;
  }
}


export function closeFd(segment: Segment, which: "fd" | "ackFd"): void {
  const fd = segment[which];
  if (fd === undefined) return;
  segment[which] = undefined;
  try {
    closeSync(fd);
  } catch {
    // Closing cannot fail in a way that matters here.
  }
}

export function tryUnlink(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone.
  }
}

export function syncDirectory(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
