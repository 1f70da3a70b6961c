/**
 * OpenMeter's de-duplicators (openmeterio/openmeter at 7e57a394):
 * - the key is `<namespace>-<source>-<id>` (`openmeter/dedupe/dedupe.go` `Item.Key`), a plain
 *   concatenation: source "a-b" + id "c" and source "a" + id "b-c" are the same key;
 * - `memory` (`openmeter/dedupe/memorydedupe/memorydedupe.go`): a hashicorp/golang-lru cache of `size`
 *   keys; `IsUnique` is `ContainsOrAdd` and `CheckUnique` is `Contains`, neither of which refreshes a key,
 *   while `Set` is `Add`, which does;
 * - `redis` (`openmeter/dedupe/redisdedupe/redisdedupe.go`): `SET key "" NX` with the expiration as TTL;
 *   an existing key keeps its first TTL.
 * Defaults (`app/config/dedupe.go` `ConfigureDedupe`, `app/config/sink.go` `ConfigureSink`,
 * `pkg/redis` `Configure`): off, memory driver of 128 keys, Redis expiration 24 h.
 */
import type { Clock } from "../clock";
import type { DedupeDriver } from "./types";

/** OpenMeter's self-hosted namespace. */
export const NAMESPACE = "default";

/** `Item.Key()`: `fmt.Sprintf("%s-%s-%s", namespace, source, id)`. */
export function dedupeKey(source: string, id: string, namespace = NAMESPACE): string {
  return `${namespace}-${source}-${id}`;
}

export const DEFAULT_MEMORY_SIZE = 128;
export const DEFAULT_REDIS_EXPIRATION_MS = 24 * 60 * 60 * 1000;
/** `quickstart/config.yaml`: `sink.dedupe` on Redis with `expiration: 768h # 32d`. */
export const QUICKSTART_EXPIRATION_MS = 768 * 60 * 60 * 1000;

export interface Deduplicator {
  /** `IsUnique`: checks and records in one step (ingest-time de-duplication). */
  isUnique(key: string): boolean;
  /** `CheckUnique`: checks without recording. */
  checkUnique(key: string): boolean;
  /** `Set`: records (the sink, after storing). */
  set(keys: readonly string[]): void;
  clear(): void;
}

/** hashicorp/golang-lru `simplelru`: recency moves only on `Add`. */
export class MemoryDeduplicator implements Deduplicator {
  readonly #size: number;
  readonly #keys = new Map<string, true>();

  constructor(size = DEFAULT_MEMORY_SIZE) {
    // memorydedupe.NewDeduplicator: size < 1 means 1024.
    this.#size = size < 1 ? 1024 : size;
  }

  isUnique(key: string): boolean {
    if (this.#keys.has(key)) return false;
    this.#add(key);
    return true;
  }

  checkUnique(key: string): boolean {
    return !this.#keys.has(key);
  }

  set(keys: readonly string[]): void {
    for (const key of keys) this.#add(key);
  }

  clear(): void {
    this.#keys.clear();
  }

  #add(key: string): void {
    this.#keys.delete(key);
    this.#keys.set(key, true);
    while (this.#keys.size > this.#size) {
      const oldest = this.#keys.keys().next().value as string;
      this.#keys.delete(oldest);
    }
  }
}

/** Redis `SET NX` with a TTL, on the server's monotonic clock. */
export class RedisDeduplicator implements Deduplicator {
  readonly #expirationMs: number;
  readonly #clock: Clock;
  readonly #expiry = new Map<string, number>();

  constructor(clock: Clock, expirationMs = DEFAULT_REDIS_EXPIRATION_MS) {
    this.#clock = clock;
    this.#expirationMs = expirationMs;
  }

  isUnique(key: string): boolean {
    if (!this.checkUnique(key)) return false;
    this.#expiry.set(key, this.#deadline());
    return true;
  }

  checkUnique(key: string): boolean {
    const until = this.#expiry.get(key);
    if (until === undefined) return true;
    if (until <= this.#clock.now()) {
      this.#expiry.delete(key);
      return true;
    }
    return false;
  }

  set(keys: readonly string[]): void {
    for (const key of keys) if (this.checkUnique(key)) this.#expiry.set(key, this.#deadline());
  }

  clear(): void {
    this.#expiry.clear();
  }

  #deadline(): number {
    // go-redis SetArgs with TTL 0 sets no expiry.
    return this.#expirationMs > 0 ? this.#clock.now() + this.#expirationMs : Number.POSITIVE_INFINITY;
  }
}

export function makeDeduplicator(driver: DedupeDriver | undefined, clock: Clock): Deduplicator | undefined {
  if (driver === undefined) return undefined;
  if (driver.driver === "memory") return new MemoryDeduplicator(driver.size ?? DEFAULT_MEMORY_SIZE);
  if (driver.driver === "redis") return new RedisDeduplicator(clock, driver.expirationMs ?? DEFAULT_REDIS_EXPIRATION_MS);
  throw new TypeError(`dedupe: unknown driver ${JSON.stringify((driver as { driver: unknown }).driver)} (memory or redis)`);
}
