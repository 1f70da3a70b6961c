/**
 * The accounting of one customer's balance in this process: what OpenMeter last said, what this
 * process metered since, and what the calls in flight may still use.
 *
 * Design note: the invariant
 * --------------------------
 * Let a refresh g be a value read from OpenMeter, requested at wall time S(g) (our clock), answering
 * balance B(g): the grants minus every event OpenMeter had stored by then. Then
 *
 *     available = B(g) − L(g) − R
 *
 * - R: the reserved worst case (estimated prompt + maximum output) of every call in flight. A call
 *   reserves before it is let through and gives the reservation back when it ends, in one
 *   synchronous step with the check: JavaScript runs one callback at a time, so N calls started at
 *   once see each other's reservations and at most `available / worst case` of them pass. A call that
 *   used more than it reserved (no `maxTokens`) makes `available` negative and stops the next ones.
 * - L(g): what this process metered (each ended call's usage, as the metering handler bills it) at or
 *   after S(g) − settleMs. Events metered earlier are taken to be in B(g): delivery (batched, ~1 s)
 *   plus OpenMeter's ingest lag must fit in settleMs. While the metering handler says its delivery is
 *   not healthy (`holdLocal`), nothing leaves L: usage stuck in a retry queue is never in B(g).
 *
 * So every unit this process metered is counted in B(g) or in L(g), never in neither: nothing is
 * forgotten while it is in flight or waiting to be ingested. A unit is counted in both only when it
 * reached OpenMeter within settleMs before S(g): the price of never forgetting, bounded by settleMs
 * worth of this process's own usage, and undone as soon as a later refresh finds it settleMs old.
 * OpenMeter cannot say which of our events it has counted (a balance is one number), so no scheme
 * that reads balances can both never forget and never double-count; this one errs, briefly and
 * boundedly, on the side that does not overspend.
 *
 * Refreshes answer out of order sometimes (a slow one overtaken by a newer one): an answer requested
 * before the one in use is ignored, so L never grows back and B never goes back in time.
 * Other processes' usage is in B(g) once they delivered it: each process subtracts only its own.
 */

/** What OpenMeter said about the customer's entitlement at one refresh. */
export interface ServerReading {
  /** Wall time (ms) the request was sent: its generation. */
  requestedAt: number;
  /** OpenMeter's `hasAccess`. */
  hasAccess: boolean;
  /** OpenMeter's `balance`; undefined when the entitlement has none (access-only: boolean, static, or Konnect v3). */
  balance: number | undefined;
  /** The entitlement's `isSoftLimit`: the customer keeps access beyond the balance. */
  softLimit: boolean;
}

interface LocalEntry {
  /** Wall time (ms) the call ended (whole seconds: entries of one second are merged). */
  at: number;
  units: number;
}

/** One customer's balance as this process sees it. */
export class BalanceAccount {
  /** The refresh in use, if any arrived yet. */
  reading: ServerReading | undefined;
  #entries: LocalEntry[] = [];
  #local = 0;
  #reserved = 0;

  constructor(readonly settleMs: number) {}

  /** Units metered by this process that the reading in use does not contain (L). */
  get local(): number {
    return this.#local;
  }

  /** Worst cases reserved by the calls in flight (R). */
  get reserved(): number {
    return this.#reserved;
  }

  /** B − L − R; undefined while there is no balance to count against. */
  available(): number | undefined {
    const balance = this.reading?.balance;
    return balance === undefined ? undefined : balance - this.#local - this.#reserved;
  }

  reserve(units: number): void {
    this.#reserved += units;
  }

  release(units: number): void {
    this.#reserved = Math.max(0, this.#reserved - units);
  }

  /** A call ended having used `units`, metered at wall time `at`. */
  record(at: number, units: number): void {
    if (!(units > 0)) return;
    const second = Math.floor(at / 1000) * 1000;
    const last = this.#entries.at(-1);
    if (last !== undefined && last.at === second) last.units += units;
    else this.#entries.push({ at: second, units });
    this.#local += units;
  }

  /**
   * Takes a newer reading: local usage metered before `requestedAt − settleMs` is now counted by
   * OpenMeter and leaves L (unless `holdLocal`). Returns false (and changes nothing) for a reading
   * requested before the one in use.
   */
  apply(reading: ServerReading, holdLocal = false): boolean {
    if (this.reading !== undefined && reading.requestedAt < this.reading.requestedAt) return false;
    this.reading = reading;
    if (holdLocal) return true;
    const settledBefore = reading.requestedAt - this.settleMs;
    // Entries are merged per whole second, so `at` is the start of its second: an entry leaves
    // only when all of its second lies before the line.
    let kept = 0;
    let local = 0;
    for (const entry of this.#entries) {
      if (entry.at + 1000 <= settledBefore) continue;
      this.#entries[kept++] = entry;
      local += entry.units;
    }
    this.#entries.length = kept;
    this.#local = local;
    return true;
  }

  /** Nothing in flight and nothing this process metered that OpenMeter may not have yet. */
  get idle(): boolean {
    return this.#reserved === 0 && this.#local === 0;
  }
}
