/**
 * Each customer's entitlement, cached and kept fresh in the background, so that a call waits on the
 * network only when its customer is new to this process (and then at most `firstCallTimeoutMs`).
 *
 * - One read per customer at a time: calls that arrive while one is under way share it.
 * - One timer for all customers, every `refreshIntervalMs`, on the injected clock (it never keeps the
 *   process alive); it refreshes the customers used lately and stops when none is. A customer idle
 *   for an hour with nothing in flight and nothing unsettled is forgotten.
 * - A read that fails keeps the last reading in use (and this process's usage keeps being
 *   subtracted from it); a customer with no reading yet is `unavailable`, which the guard lets
 *   through or stops as `onUnavailable` says. Failures are told once, then counted; the recovery is told.
 */
import type { Clock, ClockTimer } from "../clock";
import type { WarningDigest } from "../unbilled";
import type { EntitlementClient, Reading } from "./openmeter-client";
import { BalanceAccount } from "./reservations";

/** Where a customer stands, as far as the last read could tell. */
export type EntitlementStatus = "pending" | "ready" | "no_entitlement" | "unknown_customer" | "unavailable";

export interface CustomerState {
  readonly subject: string;
  readonly account: BalanceAccount;
  status: EntitlementStatus;
  /** The entitlement's `isSoftLimit`, once read (or inferred from `hasAccess` at a zero balance). */
  softLimit: boolean | undefined;
  /** Why the last read failed, or what it said of an unknown customer. */
  problem: string | undefined;
  /** `clock.now()` of the last call for this customer. */
  lastUsed: number;
  /** `clock.now()` of the last read that answered. */
  lastReadAt: number | undefined;
  /** `clock.now()` when the last read was started (answered or not). */
  lastAttemptAt: number;
  /** The first read, which the customer's first calls wait for (bounded). */
  readonly firstRead: Promise<void>;
  /** The read under way, if any. */
  reading: Promise<void> | undefined;
  customerId: string | undefined;
}

export interface EntitlementCacheOptions {
  refreshIntervalMs: number;
  firstCallTimeoutMs: number;
  settleMs: number;
  /** Maps a subject to the customer id or key the API takes. */
  customerOf: ((subject: string) => string | Promise<string>) | undefined;
  clock: Clock;
  warnings: WarningDigest;
  /** True while this process's metered usage may not be reaching OpenMeter (its delivery is not healthy). */
  holdLocal: () => boolean;
}

export interface EntitlementReadStats {
  /** Reads that answered (any status). */
  reads: number;
  /** Reads that failed (network, time-out, 5xx, 401...). */
  failedReads: number;
  /** Customers known now. */
  customers: number;
}

const ULID = /^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$/;
const EVICT_AFTER_MS = 3_600_000;
const MAX_CONCURRENT_READS = 8;

export class EntitlementCache {
  readonly #client: EntitlementClient;
  readonly #options: EntitlementCacheOptions;
  readonly #customers = new Map<string, CustomerState>();
  #timer: ClockTimer | undefined;
  #inFlight = 0;
  readonly #queue: Array<() => void> = [];
  #reads = 0;
  #failedReads = 0;
  /** Failed reads since the last one that answered (a streak), for the recovery message. */
  #failing = 0;
  #closed = false;

  constructor(client: EntitlementClient, options: EntitlementCacheOptions) {
    this.#client = client;
    this.#options = options;
  }

  get feature(): string {
    return this.#client.feature;
  }

  get api(): string {
    return this.#client.api;
  }

  /** The customer's state, created (and its first read started) when new. */
  customer(subject: string): CustomerState {
    const now = this.#options.clock.now();
    let state = this.#customers.get(subject);
    if (state === undefined) {
      let resolveFirst!: () => void;
      const firstRead = new Promise<void>((resolve) => (resolveFirst = resolve));
      state = {
        subject,
        account: new BalanceAccount(this.#options.settleMs),
        status: "pending",
        softLimit: undefined,
        problem: undefined,
        lastUsed: now,
        lastReadAt: undefined,
        lastAttemptAt: now,
        firstRead,
        reading: undefined,
        customerId: undefined,
      };
      this.#customers.set(subject, state);
      void this.#read(state).then(resolveFirst);
    } else {
      state.lastUsed = now;
      // Back after a pause (the timer had stopped): refresh now, in the background. A customer whose
      // reads fail is tried again at the refresh interval, not on every call.
      if (state.reading === undefined && now - state.lastAttemptAt >= this.#options.refreshIntervalMs) void this.#read(state);
    }
    this.#schedule();
    return state;
  }

  /** Resolves when the customer's first read has answered or failed, or after `firstCallTimeoutMs`. */
  waitForFirstRead(state: CustomerState): Promise<void> {
    let timer: ClockTimer | undefined;
    const late = new Promise<void>((resolve) => (timer = this.#options.clock.setTimeout(resolve, this.#options.firstCallTimeoutMs)));
    return Promise.race([state.firstRead, late]).finally(() => timer?.clear());
  }

  /** Reads now: one customer, or every one known. */
  async refresh(subject?: string): Promise<void> {
    const states = subject === undefined ? [...this.#customers.values()] : [this.customer(subject)];
    await Promise.all(states.map((state) => state.reading ?? this.#read(state)));
  }

  known(subject: string): CustomerState | undefined {
    return this.#customers.get(subject);
  }

  stats(): EntitlementReadStats {
    return { reads: this.#reads, failedReads: this.#failedReads, customers: this.#customers.size };
  }

  close(): void {
    this.#closed = true;
    this.#timer?.clear();
    this.#timer = undefined;
  }

  #read(state: CustomerState): Promise<void> {
    state.reading ??= this.#slot(() => this.#doRead(state)).finally(() => (state.reading = undefined));
    return state.reading;
  }

  /** At most MAX_CONCURRENT_READS at once: a thousand customers refreshed together queue, not stampede. */
  async #slot(work: () => Promise<void>): Promise<void> {
    if (this.#inFlight >= MAX_CONCURRENT_READS) await new Promise<void>((resolve) => this.#queue.push(resolve));
    this.#inFlight++;
    try {
      await work();
    } finally {
      this.#inFlight--;
      this.#queue.shift()?.();
    }
  }

  async #doRead(state: CustomerState): Promise<void> {
    const { clock } = this.#options;
    const requestedAt = clock.wallNow();
    state.lastAttemptAt = clock.now();
    let customer: string;
    try {
      customer = state.customerId ?? (await this.#customerOf(state.subject));
      state.customerId = customer;
    } catch (error) {
      return this.#failed(state, { kind: "failed", message: error instanceof Error ? error.message : String(error), configuration: true });
    }
    const [reading, softLimit] = await Promise.all([
      this.#client.read(customer),
      state.softLimit === undefined ? this.#client.softLimit(customer) : Promise.resolve(state.softLimit),
    ]);
    if (this.#closed) return; // closed meanwhile: the answer is no longer used
    if (reading.kind === "failed") return this.#failed(state, reading);
    this.#reads++;
    state.lastReadAt = clock.now();
    if (this.#failing > 0) {
      this.#options.warnings.logger.warn(
        `entitlement reads answer again (${this.#client.shownBase}) after ${this.#failing} failed read${this.#failing === 1 ? "" : "s"}: customers' balances are current again`,
      );
      this.#failing = 0;
    }
    state.problem = undefined;
    if (reading.kind === "unknown_customer") {
      state.status = "unknown_customer";
      state.problem = reading.message;
      return;
    }
    if (reading.kind === "no_entitlement") {
      state.status = "no_entitlement";
      return;
    }
    // A hard limit has access only while the balance is positive (OpenMeter's HasAccess:
    // isSoftLimit || balance > 0): access at a zero balance means a soft limit.
    if (softLimit !== undefined) state.softLimit = softLimit;
    else if (reading.hasAccess && reading.balance === 0) state.softLimit = true;
    state.account.apply(
      { requestedAt, hasAccess: reading.hasAccess, balance: reading.balance, softLimit: state.softLimit === true },
      this.#options.holdLocal(),
    );
    state.status = "ready";
  }

  #failed(state: CustomerState, reading: Extract<Reading, { kind: "failed" }>): void {
    this.#failedReads++;
    this.#failing++;
    state.problem = reading.message;
    if (state.status === "pending") state.status = "unavailable";
    const using = state.status === "ready" ? "the last balance read stays in use" : "no balance is known for it yet";
    this.#options.warnings.warn(
      "entitlement:read-failed",
      `could not read the entitlement \`${this.#client.feature}\` of customer ${JSON.stringify(state.subject)}: ${reading.message} (${using}; ` +
        `later failures are counted and summarised)`,
      "entitlement reads failed",
    );
  }

  async #customerOf(subject: string): Promise<string> {
    const map = this.#options.customerOf;
    if (map !== undefined) {
      const id = await map(subject);
      if (typeof id !== "string" || id === "") throw new Error(`customerOf(${JSON.stringify(subject)}) returned ${JSON.stringify(id)}, not a customer id or key`);
      return id;
    }
    if (this.#client.api === "v3" && !ULID.test(subject)) {
      throw new Error(
        `Konnect's v3 entitlement-access takes the customer's id (a ULID), and subject ${JSON.stringify(subject)} is not one: ` +
          "pass `customerOf: (subject) => customerId` (the id Konnect returned when the customer was created)",
      );
    }
    return subject;
  }

  /** Keeps the refresh timer running while some customer was used within the active window. */
  #schedule(): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = this.#options.clock.setTimeout(() => this.#tick(), this.#options.refreshIntervalMs);
  }

  #tick(): void {
    this.#timer = undefined;
    const now = this.#options.clock.now();
    const activeWindow = Math.max(60_000, 6 * this.#options.refreshIntervalMs);
    let active = false;
    for (const [subject, state] of this.#customers) {
      const idle = now - state.lastUsed;
      if (idle <= activeWindow) {
        active = true;
        if (state.reading === undefined) void this.#read(state);
      } else if (idle > EVICT_AFTER_MS && state.reading === undefined && state.account.idle) {
        this.#customers.delete(subject);
      }
    }
    if (active) this.#schedule();
  }
}
