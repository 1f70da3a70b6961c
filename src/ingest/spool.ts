import { createReadStream } from "node:fs";
import { mkdir, open, readdir, rename, stat, unlink } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { CloudEvent } from "../cloudevent";

export const SPOOL_FILE = "events.jsonl";
const CLAIMED = /^events\.(\d+)\.\d+\.[a-z0-9]+\.replaying$/;
/** Lets a writer that opened the file just before our rename finish its single write. */
const CLAIM_GRACE_MS = 100;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

const code = (error: unknown) => (error as NodeJS.ErrnoException).code;

export interface ReadResult {
  events: number;
  /** Lines that were not JSON objects: torn by a crash mid-write, or corrupted. */
  skipped: number;
}

/** Files this process has claimed, whichever client's Spool claimed them (several may share a directory). */
const claimedHere = new Set<string>();

/**
 * A durable, append-only JSONL file of events that could not be delivered. Safe for several processes:
 * every append is one write(2) of whole lines to a file opened with O_APPEND (atomic on local
 * file systems), and a replay first claims the file by renaming it, so no two processes replay it.
 */
export class Spool {
  readonly file: string;
  #dirReady: Promise<unknown> | undefined;
  #seq = 0;

  readonly dir: string;

  constructor(dir: string) {
    // Absolute, so two clients naming one directory two ways share one set of claims.
    this.dir = resolve(dir);
    this.file = join(this.dir, SPOOL_FILE);
  }

  /** Appends events as whole lines in a single write. Rejects on any failure (nothing partial is reported as written). */
  async append(events: readonly CloudEvent[]): Promise<void> {
    if (events.length === 0) return;
    // The leading newline ends a line torn by a writer that crashed mid-write, so it cannot swallow ours.
    const buf = Buffer.from(`\n${events.map((e) => JSON.stringify(e)).join("\n")}\n`, "utf8");
    const handle = await this.#openForAppend();
    try {
      const { bytesWritten } = await handle.write(buf, 0, buf.length);
      if (bytesWritten !== buf.length) throw new Error(`short write to ${this.file} (${bytesWritten} of ${buf.length} bytes)`);
    } finally {
      await handle.close();
    }
  }

  async #openForAppend() {
    for (let attempt = 0; ; attempt++) {
      this.#dirReady ??= mkdir(this.dir, { recursive: true }).catch((error: unknown) => {
        this.#dirReady = undefined;
        throw error;
      });
      await this.#dirReady;
      try {
        return await open(this.file, "a", 0o600);
      } catch (error) {
        // The directory went away since it was made (a tmp cleaner, a redeploy): make it again, once.
        if (code(error) !== "ENOENT" || attempt > 0) throw error;
        this.#dirReady = undefined;
      }
    }
  }

  /** True when the directory holds a spool file or a claimed file left by a dead process. */
  async hasPending(): Promise<boolean> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return false;
    }
    return names.some((n) => n === SPOOL_FILE || this.#isStaleClaim(n));
  }

  #isStaleClaim(name: string): boolean {
    const match = CLAIMED.exec(name);
    if (!match || claimedHere.has(join(this.dir, name))) return false;
    const pid = Number(match[1]);
    // Our own pid on a file this process did not claim means a previous process with the same pid (containers).
    return pid === process.pid || !isAlive(pid);
  }

  #claimName(): string {
    return join(this.dir, `events.${process.pid}.${Date.now()}.${(this.#seq++).toString(36)}${Math.random().toString(36).slice(2, 8)}.replaying`);
  }

  /** Atomically takes the spool file and any files claimed by dead processes; returns the claimed paths. */
  async claim(): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (error) {
      if (code(error) === "ENOENT") return [];
      throw error;
    }
    const claimed: string[] = [];
    let waitForWriters = false;
    for (const name of names) {
      if (name !== SPOOL_FILE && !this.#isStaleClaim(name)) continue;
      const target = this.#claimName();
      try {
        await rename(join(this.dir, name), target);
      } catch (error) {
        if (code(error) === "ENOENT") continue; // another process claimed it first
        throw error;
      }
      if (name === SPOOL_FILE) waitForWriters = true;
      claimedHere.add(target);
      claimed.push(target);
    }
    if (waitForWriters) await new Promise((resolve) => setTimeout(resolve, CLAIM_GRACE_MS));
    return claimed;
  }

  /**
   * Streams a claimed file in batches; `onBatch` is awaited (backpressure). Blank lines are ignored,
   * unreadable lines skipped and counted. Each time it reaches the end, it hands over the partial
   * batch, awaits `settle` (the caller's sends under way), and reads on if the file grew meanwhile:
   * a writer that opened the file before the claim may still add lines. Lines are split as bytes
   * and decoded whole, so a character is never cut in two.
   */
  async read(
    path: string,
    batchSize: number,
    onBatch: (events: CloudEvent[]) => Promise<void>,
    settle: () => Promise<unknown> = async () => {},
  ): Promise<ReadResult> {
    const result: ReadResult = { events: 0, skipped: 0 };
    let batch: CloudEvent[] = [];
    let rest: Buffer = Buffer.alloc(0);
    let offset = 0;
    const handOver = async () => {
      if (batch.length === 0) return;
      const full = batch;
      batch = [];
      await onBatch(full);
    };
    const take = async (bytes: Buffer) => {
      const line = bytes.toString("utf8");
      if (line.trim() === "") return;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        result.skipped++;
        return;
      }
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        result.skipped++;
        return;
      }
      batch.push(value as CloudEvent);
      result.events++;
      if (batch.length >= batchSize) await handOver();
    };
    for (;;) {
      let size = (await stat(path)).size;
      if (size <= offset) {
        await handOver();
        await settle();
        size = (await stat(path)).size;
        if (size <= offset) break;
      }
      for await (const chunk of createReadStream(path, { start: offset, end: size - 1 })) {
        const data = rest.length > 0 ? Buffer.concat([rest, chunk as Buffer]) : (chunk as Buffer);
        let start = 0;
        for (let newline = data.indexOf(0x0a); newline !== -1; newline = data.indexOf(0x0a, start)) {
          await take(data.subarray(start, newline));
          start = newline + 1;
        }
        rest = data.subarray(start);
      }
      offset = size;
    }
    // A last line without newline, once the file stopped growing: whole if it parses, torn otherwise.
    await take(rest);
    await handOver();
    return result;
  }

  async remove(path: string): Promise<void> {
    try {
      await unlink(path);
    } catch (error) {
      if (code(error) !== "ENOENT") throw error;
    } finally {
      claimedHere.delete(path);
    }
  }

  /** Gives a claimed file back to the spool when it cannot be processed now (e.g. read error). */
  release(path: string): void {
    claimedHere.delete(path);
  }

}
