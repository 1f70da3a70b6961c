/**
 * Who owns which part of a spool directory.
 *
 * Every writer (one client instance) is an *owner* with a random id and a directory of its own,
 * `<spoolDir>/<ownerId>/`, holding its segments and a lock file, `owner.lock`, whose mtime the owner
 * renews every `leaseMs / 5`. Nobody but the owner writes in an owner directory. An owner is:
 * - alive while its lock is younger than `leaseMs`;
 * - released when its lock is gone (it removed it at exit: its segments may be taken at once);
 * - dead when its lock is older than `leaseMs` (SIGKILL, OOM kill, a lost node).
 * Pids are never consulted: they repeat between containers that share a volume, and two copies of
 * the library in one process (ESM and CommonJS) share one.
 *
 * Taking over (adopting) a released or dead owner is one `rename` of its directory into the
 * adopter's own: atomic, so of two adopters exactly one wins and the other sees ENOENT. A live owner
 * that only looked dead (its event loop was blocked longer than the lease) cannot lose a write to
 * this: before each append it confirms its lease, renewing it when the last renewal is older than
 * half the lease, and a renewal fails (ENOENT) once its directory was moved. An adopter waits two
 * renewal intervals after taking a dead (not released) owner before it reads the segments, so even
 * a write that raced the rename (a wall clock that jumped) is in the file by then.
 *
 * An owner directory is created under a temporary name with its lock inside and renamed into place,
 * so a visible owner directory without a lock is always a released one.
 */
import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync, unlinkSync, utimesSync, writeSync } from "node:fs";
import { readdir, rename, stat, unlink, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import type { Clock, ClockTimer } from "../../clock";

export const LOCK_FILE = "owner.lock";
/** Owner ids sort by creation time: `<ms, base 36, 9 digits>-<12 hex>`. */
const OWNER_ID = /^[0-9a-z]{9}-[0-9a-f]{12}$/;
const TEMP_PREFIX = ".new-";
/**
 * `<spoolDir>/.taken-<ownerId>`, left by the owner that took it over, so that a live owner whose lease
 * lapsed can tell "taken over" (its events are delivered by the taker) from "directory removed" (a
 * tmp cleaner: its events are at risk), even after the taker delivered and removed everything.
 */
export const TAKEN_PREFIX = ".taken-";

export function isOwnerId(name: string): boolean {
  return OWNER_ID.test(name);
}

function newOwnerId(wallNow: number): string {
  return `${Math.floor(wallNow).toString(36).padStart(9, "0")}-${randomBytes(6).toString("hex")}`;
}

const code = (error: unknown) => (error as NodeJS.ErrnoException | undefined)?.code;

/** A spool directory that cannot be used, with the directory and what to change in the message. */
export class SpoolDirError extends Error {
  override readonly name = "SpoolDirError";
}

export interface LeaseOptions {
  clock: Clock;
  /** An owner whose lock was not renewed for this long is taken to be dead. */
  leaseMs: number;
  /** Called once when the lease was lost: another owner took this directory over. */
  onLost: () => void;
}

/** This client's claim on its own directory. */
export class OwnerLease {
  readonly id: string;
  readonly dir: string;
  readonly #lock: string;
  readonly #clock: Clock;
  readonly #leaseMs: number;
  readonly #onLost: () => void;
  #renewedAt: number;
  #timer: ClockTimer | undefined;
  #state: "held" | "lost" | "released" = "held";

  /** Creates the owner directory and its lock, synchronously: a directory that cannot be used throws here. */
  constructor(spoolDir: string, options: LeaseOptions) {
    this.#clock = options.clock;
    this.#leaseMs = options.leaseMs;
    this.#onLost = options.onLost;
    const root = resolve(spoolDir);
    this.id = newOwnerId(this.#clock.wallNow());
    this.dir = join(root, this.id);
    this.#lock = join(this.dir, LOCK_FILE);
    const temp = join(root, `${TEMP_PREFIX}${this.id}`);
    try {
      mkdirSync(root, { recursive: true });
      mkdirSync(temp);
      const fd = openSync(join(temp, LOCK_FILE), "wx", 0o600);
      try {
        writeSync(fd, `${JSON.stringify({ pid: process.pid, host: hostname(), started: new Date(this.#clock.wallNow()).toISOString() })}\n`);
      } finally {
        closeSync(fd);
      }
      renameSync(temp, this.dir);
    } catch (error) {
      try {
        rmSync(temp, { recursive: true, force: true });
      } catch {
        // Nothing was made (a file is in the way): nothing to clean.
      }
      throw new SpoolDirError(
        `spoolDir ${root} cannot be used: ${(error as Error).message}; give a directory this process can create and write (on a disk that outlives the process)`,
        { cause: error },
      );
    }
    this.#renewedAt = this.#clock.now();
    this.#touch();
    this.#schedule();
  }

  get held(): boolean {
    return this.#state === "held";
  }

  /**
   * Before a write: true while the lease is held. Renews first when the last renewal is older than
   * half the lease (the owner may have been paused long enough for another to take it over).
   */
  confirm(): boolean {
    if (this.#state !== "held") return false;
    if (this.#clock.now() - this.#renewedAt < this.#leaseMs / 2) return true;
    return this.renew();
  }

  /** Renews the lock's mtime; false (and onLost, once) when the directory is no longer ours. */
  renew(): boolean {
    if (this.#state !== "held") return false;
    try {
      this.#touch();
      this.#renewedAt = this.#clock.now();
      return true;
    } catch (error) {
      if (code(error) !== "ENOENT") return true; // a passing I/O error: the next renewal tries again
      this.#state = "lost";
      this.#timer?.clear();
      this.#onLost();
      return false;
    }
  }

  /** Gives the directory up (process exit, shutdown): the next owner may take its segments at once. Synchronous. */
  release(removeDir: boolean): void {
    if (this.#state !== "held") return;
    this.#state = "released";
    this.#timer?.clear();
    try {
      unlinkSync(this.#lock);
      if (removeDir && readdirSync(this.dir).length === 0) rmSync(this.dir, { recursive: true, force: true });
    } catch {
      // Already gone, or taken: nothing of ours is left to give up.
    }
  }

  #touch(): void {
    const now = new Date(this.#clock.wallNow());
    utimesSync(this.#lock, now, now);
  }

  #schedule(): void {
    this.#timer = this.#clock.setTimeout(() => {
      if (this.renew()) this.#schedule();
    }, this.#leaseMs / 5);
  }
}

export interface AdoptedOwner {
  /** The directory, now inside the adopter's own. */
  dir: string;
  /** The owner it came from. */
  ownerId: string;
  /** It ended normally (no lock); otherwise it was found dead. */
  released: boolean;
}

/**
 * Takes every released or dead owner in `spoolDir` into `own`: one rename each. Returns what it took,
 * oldest owner first. Leftovers of an interrupted owner creation (`.new-*`) older than the lease are removed.
 */
export async function adoptOwners(spoolDir: string, own: OwnerLease, clock: Clock, leaseMs: number): Promise<AdoptedOwner[]> {
  const root = resolve(spoolDir);
  let names: string[];
  try {
    names = await readdir(root);
  } catch (error) {
    if (code(error) === "ENOENT") return [];
    throw error;
  }
  const adopted: AdoptedOwner[] = [];
  for (const name of names.sort()) {
    if (name === own.id || !own.held) continue;
    const path = join(root, name);
    if (name.startsWith(TEMP_PREFIX)) {
      await removeIfOlder(path, clock.wallNow() - leaseMs);
      continue;
    }
    if (name.startsWith(TAKEN_PREFIX)) {
      await removeIfOlder(path, clock.wallNow() - 10 * leaseMs);
      continue;
    }
    if (!isOwnerId(name)) continue;
    const lock = await stat(join(path, LOCK_FILE)).catch((error: unknown) => (code(error) === "ENOENT" ? null : undefined));
    if (lock === undefined) continue; // unreadable: leave it alone
    if (lock !== null && clock.wallNow() - lock.mtimeMs < leaseMs) continue; // alive
    const target = join(own.dir, name);
    try {
      await rename(path, target);
    } catch (error) {
      if (code(error) === "ENOENT") continue; // another owner took it first
      throw error;
    }
    // It is ours now: its lock (if any) says nothing any more, and must not be mistaken for a live owner's.
    await unlink(join(target, LOCK_FILE)).catch(() => undefined);
    await writeFile(join(root, `${TAKEN_PREFIX}${name}`), `${own.id}\n`).catch(() => undefined);
    adopted.push({ dir: target, ownerId: name, released: lock === null });
  }
  return adopted;
}

async function removeIfOlder(path: string, before: number): Promise<void> {
  try {
    if ((await stat(path)).mtimeMs < before) rmSync(path, { recursive: true, force: true });
  } catch {
    // Gone already.
  }
}

/** Whether another owner says it took `ownerId` over (see TAKEN_PREFIX). */
export function wasTaken(spoolDir: string, ownerId: string): boolean {
  return exists(join(resolve(spoolDir), `${TAKEN_PREFIX}${ownerId}`));
}

/** Whether a path exists (synchronous; exit paths use it). */
export function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}
