/**
 * Customers, features, metered entitlements and grants, with balances computed from the events the fake
 * stored, as OpenMeter's credit engine computes them (openmeterio/openmeter at 7e57a394):
 * - value: `openmeter/entitlement/metered/balance.go` `GetEntitlementBalance` (the query time is rounded up
 *   to the next full minute), `connector.go` `HasAccess` (`isSoftLimit || balance > 0`);
 * - burn-down: `openmeter/credit/engine/run.go` (`Run`, `runBetweenResets`, `burnDownGrants`): the period
 *   since the start of measurement is cut at every usage-period reset and, inside, into phases at each
 *   grant's `effectiveAt` and expiry (truncated to the minute, `grant.go` `getGrantActivityChanges`); each
 *   phase's usage plus the overage carried so far burns the active grants in priority order (lower number
 *   first, then earlier expiry, then earlier creation: `PrioritizeGrants`); a grant that becomes effective
 *   starts at its full amount, so usage before it is overage that the new grant pays off first;
 * - grants not active at the (rounded) query time are left out of the balance
 *   (`openmeter/credit/balance.go` `removeInactiveGrantsFromSnapshotAt`); a grant that becomes effective
 *   exactly at the query time has had no phase yet and counts 0 (the engine cuts phases in [from, until));
 * - resets: `openmeter/credit/engine/reset.go`: each grant active at the reset keeps
 *   `min(maxRolloverAmount, max(minRolloverAmount, balance))` (`grant.go` `RolloverBalance`); overage is
 *   dropped unless `preserveOverageAtReset`; usage counts from zero;
 * - usage periods: anchor + n × interval without month overflow (`pkg/timeutil/recurrence.go`,
 *   `pkg/datetime/datetime.go` `AddMonthsNoOverflow`), the first one starting at `measureUsageFrom`
 *   (truncated to the minute, `metered/connector.go` `BeforeCreate`); grant expiry uses Go's `AddDate`
 *   (`openmeter/credit/grant/expiration.go`), which does overflow (Jan 31 + 1 month = Mar 3);
 * - usage attribution: events whose subject is the customer's key or one of its usage-attribution
 *   subject keys (`openmeter/streaming/usageattribution.go` `GetValues`, `clickhouse/queryhelper.go`),
 *   through the feature's meter and its group-by filters (`metered/grant_owner_adapter.go`);
 * - grants: `effectiveAt` truncated to the minute and refused before the current usage period
 *   (`openmeter/credit/grant.go` `CreateGrant`; the API description says "ceiled", the code truncates);
 *   v2's `maxRolloverAmount` defaults to the amount, `priority` to 0
 *   (`openmeter/entitlement/driver/v2/mapping.go` `MapAPIGrantV2ToCreateGrantInput`).
 * Not modelled: recurring grants, `issueAfterReset`, manual resets, voided/deleted grants, boolean and
 * static entitlements, LATEST-meter limits, unit conversion.
 */
import type { Clock } from "../clock";
import { type Meter, MeterValidationError, toMs } from "./meters";
import type { StoredEvent } from "./types";

export type UsagePeriodInterval = "HOUR" | "DAY" | "WEEK" | "MONTH" | "YEAR";
export type ExpirationDuration = "HOUR" | "DAY" | "WEEK" | "MONTH" | "YEAR";

export interface CustomerInput {
  /** The customer's key (`customerIdOrKey` in v1/v2 paths). */
  key: string;
  /** A ULID; generated when absent. v3 (Konnect) paths take this id, not the key. */
  id?: string;
  /** Usage-attribution subject keys: events of these subjects (and of `key`) are the customer's usage. @default [] */
  subjectKeys?: readonly string[];
  /** @default key */
  name?: string;
}

export interface Customer {
  id: string;
  key: string;
  name: string;
  subjectKeys: readonly string[];
  createdAt: string;
}

export interface FeatureInput {
  /** Feature key: `^[a-z0-9]+(?:_[a-z0-9]+)*$`. */
  key: string;
  /** Meter slug the feature reads. */
  meter: string;
  /** Group-by filters on the meter (`meterGroupByFilters`), e.g. `{ type: "output" }`. @default {} */
  filter?: Record<string, string>;
}

export interface Feature {
  id: string;
  key: string;
  meter: string;
  filter: Readonly<Record<string, string>>;
}

export interface EntitlementInput {
  /** Customer key or id. */
  customer: string;
  /** Feature key; created on the fly when it does not exist and `meter` is given. */
  feature: string;
  /** Meter slug, to create the feature. */
  meter?: string;
  /** Group-by filters for a feature created here. */
  filter?: Record<string, string>;
  /** Soft limit: access stays granted at zero balance. @default false */
  isSoftLimit?: boolean;
  /** Usage period (required by OpenMeter for metered entitlements). @default { interval: "MONTH", anchor: measureUsageFrom } */
  usagePeriod?: { interval: UsagePeriodInterval; anchor?: Date | string };
  /** Start of measurement, truncated to the minute. @default now (server clock) */
  measureUsageFrom?: Date | string;
  /** Carry overage over a reset. @default false */
  preserveOverageAtReset?: boolean;
}

export interface Entitlement {
  id: string;
  customerId: string;
  featureKey: string;
  isSoftLimit: boolean;
  preserveOverageAtReset: boolean;
  usagePeriod: { interval: UsagePeriodInterval; anchor: string };
  measureUsageFrom: string;
  createdAt: string;
}

export interface GrantInput {
  /** Customer key or id. */
  customer: string;
  /** Feature key (or entitlement id). */
  feature: string;
  /** Positive amount. */
  amount: number;
  /** Truncated to the minute; not before the current usage period. @default now (server clock) */
  effectiveAt?: Date | string;
  /** Lower burns first. @default 0 (v2 API default) */
  priority?: number;
  /** Expiry relative to `effectiveAt`. @default undefined (never expires) */
  expiration?: { duration: ExpirationDuration; count: number };
  /** @default 0 */
  minRolloverAmount?: number;
  /** @default amount (v2 API default) */
  maxRolloverAmount?: number;
}

export interface Grant {
  id: string;
  entitlementId: string;
  amount: number;
  priority: number;
  effectiveAt: string;
  expiresAt?: string;
  expiration?: { duration: ExpirationDuration; count: number };
  minRolloverAmount: number;
  maxRolloverAmount: number;
  createdAt: string;
  updatedAt: string;
}

/** A metered entitlement's value, as v1 `GET .../entitlements/{featureKey}/value` returns it. */
export interface EntitlementValue {
  hasAccess: boolean;
  balance?: number;
  usage?: number;
  overage?: number;
  totalAvailableGrantAmount?: number;
  /** v2 only: closing balance per grant id. */
  grantBalances?: Record<string, number>;
}

/** A lookup that OpenMeter answers with a status (404 unknown customer, 400 invalid input, ...). */
export class EntitlementApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const FEATURE_KEY = /^[a-z0-9]+(?:_[a-z0-9]+)*$/;
const ULID = /^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$/;
const MINUTE = 60_000;

interface GrantState extends Grant {
  effectiveMs: number;
  expiresMs: number | undefined;
  createdMs: number;
  seq: number;
}

interface EntitlementState extends Entitlement {
  startMs: number;
  anchorMs: number;
  grants: GrantState[];
}

export interface EntitlementsContext {
  clock: Clock;
  meter(slug: string): Meter | undefined;
  stored(): readonly StoredEvent[];
}

/** The fake's customers, features, entitlements and grants. */
export class EntitlementStore {
  readonly #ctx: EntitlementsContext;
  readonly #customers = new Map<string, Customer>();
  readonly #features = new Map<string, Feature>();
  readonly #entitlements = new Map<string, EntitlementState>();
  #seq = 0;

  constructor(ctx: EntitlementsContext) {
    this.#ctx = ctx;
  }

  // ---- customers ------------------------------------------------------------------------------------

  addCustomer(input: CustomerInput): Customer {
    if (typeof input.key !== "string" || input.key === "" || input.key.length > 256) {
      throw new TypeError("customers.add: key must be a non-empty string of at most 256 characters");
    }
    if (this.findCustomer(input.key)) throw new EntitlementApiError(409, `key "${input.key}" is already used by an another customer in the namespace default`);
    const id = input.id ?? this.#ulid();
    if (!ULID.test(id)) throw new TypeError(`customers.add: id must be a ULID, got ${JSON.stringify(id)}`);
    const subjectKeys = [...(input.subjectKeys ?? [])];
    if (subjectKeys.some((s) => s === "")) throw new TypeError("customers.add: subject key cannot be empty");
    const customer: Customer = Object.freeze({
      id,
      key: input.key,
      name: input.name ?? input.key,
      subjectKeys: Object.freeze(subjectKeys),
      createdAt: this.#nowIso(),
    });
    this.#customers.set(id, customer);
    return customer;
  }

  listCustomers(): Customer[] {
    return [...this.#customers.values()];
  }

  /** By id or key (`openmeter/customer/adapter/customer.go`: `ID(x) OR Key(x)`). */
  findCustomer(idOrKey: string): Customer | undefined {
    const byId = this.#customers.get(idOrKey);
    if (byId) return byId;
    for (const customer of this.#customers.values()) if (customer.key === idOrKey) return customer;
    return undefined;
  }

  #customer(idOrKey: string): Customer {
    const customer = this.findCustomer(idOrKey);
    if (!customer) throw new EntitlementApiError(404, `customer with id or key ${idOrKey} not found in default namespace`);
    return customer;
  }

  // ---- features -------------------------------------------------------------------------------------

  addFeature(input: FeatureInput): Feature {
    if (!FEATURE_KEY.test(input.key) || input.key.length > 64) {
      throw new TypeError(`features.add: key ${JSON.stringify(input.key)} must match ^[a-z0-9]+(?:_[a-z0-9]+)*$`);
    }
    if (this.#features.has(input.key)) throw new EntitlementApiError(409, `feature ${input.key} already exists`);
    const meter = this.#ctx.meter(input.meter);
    if (!meter) throw new TypeError(`features.add: no meter ${JSON.stringify(input.meter)}`);
    for (const key of Object.keys(input.filter ?? {})) {
      if (meter.groupBy[key] === undefined) throw new TypeError(`features.add: meter ${meter.slug} has no group by ${JSON.stringify(key)}`);
    }
    const feature: Feature = Object.freeze({ id: this.#ulid(), key: input.key, meter: input.meter, filter: Object.freeze({ ...(input.filter ?? {}) }) });
    this.#features.set(feature.key, feature);
    return feature;
  }

  listFeatures(): Feature[] {
    return [...this.#features.values()];
  }

  // ---- entitlements ---------------------------------------------------------------------------------

  addEntitlement(input: EntitlementInput): Entitlement {
    const customer = this.#customer(input.customer);
    let feature = this.#features.get(input.feature);
    if (!feature) {
      if (input.meter === undefined) throw new EntitlementApiError(404, `feature ${input.feature} not found (pass meter to create it)`);
      feature = this.addFeature({ key: input.feature, meter: input.meter, ...(input.filter ? { filter: input.filter } : {}) });
    }
    for (const ent of this.#entitlements.values()) {
      if (ent.customerId === customer.id && ent.featureKey === feature.key) {
        throw new EntitlementApiError(409, `entitlement already exists for feature ${feature.key} and customer ${customer.key}`);
      }
    }
    const startMs = truncMinute(input.measureUsageFrom === undefined ? this.#ctx.clock.wallNow() : toMs(input.measureUsageFrom, "measureUsageFrom"));
    const interval = input.usagePeriod?.interval ?? "MONTH";
    if (!["HOUR", "DAY", "WEEK", "MONTH", "YEAR"].includes(interval)) throw new TypeError(`entitlements.add: unknown usage period interval ${String(interval)}`);
    const anchorMs = truncMinute(input.usagePeriod?.anchor === undefined ? startMs : toMs(input.usagePeriod.anchor, "usagePeriod.anchor"));
    const state: EntitlementState = {
      id: this.#ulid(),
      customerId: customer.id,
      featureKey: feature.key,
      isSoftLimit: input.isSoftLimit ?? false,
      preserveOverageAtReset: input.preserveOverageAtReset ?? false,
      usagePeriod: { interval, anchor: iso(anchorMs) },
      measureUsageFrom: iso(startMs),
      createdAt: this.#nowIso(),
      startMs,
      anchorMs,
      grants: [],
    };
    this.#entitlements.set(state.id, state);
    return publicEntitlement(state);
  }

  listEntitlements(): Entitlement[] {
    return [...this.#entitlements.values()].map(publicEntitlement);
  }

  /**
   * v2 `GET /api/v2/customers/{customerIdOrKey}/entitlements/{entitlementIdOrFeatureKey}`
   * (`EntitlementMeteredV2`): 404 for an unknown customer and for a customer without it.
   */
  entitlementV2(customer: string, idOrFeatureKey: string): Record<string, unknown> {
    const c = this.#customer(customer);
    const ent = this.#entitlementOf(c, idOrFeatureKey);
    if (!ent) throw new EntitlementApiError(404, `entitlement not found for feature ${idOrFeatureKey} and customer ${c.key}`);
    const feature = this.#features.get(ent.featureKey)!;
    const period = this.#periodAt(ent, this.#ctx.clock.wallNow());
    const iso8601 = { HOUR: "PT1H", DAY: "P1D", WEEK: "P1W", MONTH: "P1M", YEAR: "P1Y" }[ent.usagePeriod.interval];
    return {
      type: "metered",
      id: ent.id,
      featureKey: ent.featureKey,
      featureId: feature.id,
      customerId: c.id,
      customerKey: c.key,
      isSoftLimit: ent.isSoftLimit,
      preserveOverageAtReset: ent.preserveOverageAtReset,
      usagePeriod: { interval: ent.usagePeriod.interval, intervalISO: iso8601, anchor: ent.usagePeriod.anchor },
      currentUsagePeriod: { from: iso(period.from), to: iso(period.to) },
      lastReset: iso(period.from),
      measureUsageFrom: ent.measureUsageFrom,
      activeFrom: ent.createdAt,
      createdAt: ent.createdAt,
      updatedAt: ent.createdAt,
    };
  }

  #entitlementOf(customer: Customer, idOrFeatureKey: string): EntitlementState | undefined {
    const byId = this.#entitlements.get(idOrFeatureKey);
    if (byId && byId.customerId === customer.id) return byId;
    for (const ent of this.#entitlements.values()) {
      if (ent.customerId === customer.id && ent.featureKey === idOrFeatureKey) return ent;
    }
    return undefined;
  }

  // ---- grants -----------------------------------------------------------------------------------------

  addGrant(input: GrantInput): Grant {
    const customer = this.#customer(input.customer);
    const ent = this.#entitlementOf(customer, input.feature);
    if (!ent) throw new EntitlementApiError(404, `entitlement not found for feature ${input.feature} and customer ${customer.key}`);
    if (!(typeof input.amount === "number" && input.amount > 0)) throw new EntitlementApiError(400, "amount must be positive");
    const priority = input.priority ?? 0;
    if (!Number.isInteger(priority) || priority < 0 || priority > 255) throw new EntitlementApiError(400, "priority must be an integer of 0-255");
    const now = this.#ctx.clock.wallNow();
    const effectiveMs = truncMinute(input.effectiveAt === undefined ? now : toMs(input.effectiveAt, "effectiveAt"));
    const periodStart = this.#periodAt(ent, now).from;
    if (effectiveMs < periodStart) {
      throw new EntitlementApiError(400, `grant effective date ${iso(effectiveMs)} is before the current usage period ${iso(periodStart)}`);
    }
    let expiresMs: number | undefined;
    if (input.expiration) {
      const { duration, count } = input.expiration;
      if (!Number.isInteger(count) || count < 1 || count > 1000) throw new EntitlementApiError(400, "expiration count must be an integer of 1-1000");
      expiresMs = addExpiration(effectiveMs, duration, count);
    }
    const grant: GrantState = {
      id: this.#ulid(),
      entitlementId: ent.id,
      amount: input.amount,
      priority,
      effectiveAt: iso(effectiveMs),
      ...(expiresMs !== undefined ? { expiresAt: iso(expiresMs), expiration: { ...input.expiration! } } : {}),
      minRolloverAmount: input.minRolloverAmount ?? 0,
      maxRolloverAmount: input.maxRolloverAmount ?? input.amount,
      createdAt: iso(now),
      updatedAt: iso(now),
      effectiveMs,
      expiresMs,
      createdMs: now,
      seq: ++this.#seq,
    };
    ent.grants.push(grant);
    return publicGrant(grant);
  }

  listGrants(customer: string, feature: string): Grant[] {
    const ent = this.#entitlementOf(this.#customer(customer), feature);
    return ent ? ent.grants.map(publicGrant) : [];
  }

  // ---- values -----------------------------------------------------------------------------------------

  /**
   * The entitlement value at `at` (default now). Unknown customer: 404; a customer without that
   * entitlement: `{ hasAccess: false }` (`openmeter/customer/httpdriver/customer.go`
   * `GetCustomerEntitlementValue` maps the entitlement's NotFoundError to `NoAccessValue`).
   */
  value(customer: string, feature: string, at?: Date | string | number): EntitlementValue {
    const c = this.#customer(customer);
    const ent = this.#entitlementOf(c, feature);
    if (!ent) return { hasAccess: false };
    const atMs = at === undefined ? this.#ctx.clock.wallNow() : typeof at === "number" ? at : toMs(at, "time");
    const result = this.#run(ent, c, atMs);
    const grantBalances: Record<string, number> = {};
    for (const g of ent.grants) if (result.balances.has(g.id)) grantBalances[g.id] = result.balances.get(g.id)!;
    return {
      hasAccess: ent.isSoftLimit || result.balance > 0,
      balance: result.balance,
      usage: result.usage,
      overage: result.overage,
      totalAvailableGrantAmount: result.totalGrantUsage + result.balance,
      grantBalances,
    };
  }

  /** v3 `entitlement-access`: every entitlement of the customer (by id), sorted by feature key. */
  access(customerId: string, at?: number): Array<{ type: "metered"; feature_key: string; has_access: boolean }> {
    const c = this.#customers.get(customerId);
    if (!c) throw new EntitlementApiError(404, `customer with id ${customerId} not found in default namespace`);
    const items = [...this.#entitlements.values()]
      .filter((e) => e.customerId === c.id)
      .map((e) => ({ type: "metered" as const, feature_key: e.featureKey, has_access: this.value(c.id, e.featureKey, at).hasAccess }));
    return items.sort((a, b) => (a.feature_key < b.feature_key ? -1 : a.feature_key > b.feature_key ? 1 : 0));
  }

  clear(): void {
    this.#customers.clear();
    this.#features.clear();
    this.#entitlements.clear();
  }

  // ---- the engine ---------------------------------------------------------------------------------------

  #run(ent: EntitlementState, customer: Customer, atInput: number) {
    // GetEntitlementBalance: round up to the next full minute.
    const at = Math.max(Math.ceil(atInput / MINUTE) * MINUTE, ent.startMs);
    const feature = this.#features.get(ent.featureKey)!;
    const meter = this.#ctx.meter(feature.meter);
    if (!meter) throw new EntitlementApiError(500, `meter ${feature.meter} of feature ${feature.key} is gone`);
    const subjects = [customer.key, ...customer.subjectKeys];
    const rows = this.#ctx.stored();
    const queryUsage = (from: number, to: number): number => {
      if (to <= from) return 0;
      const result = meter.query(rows, {
        from: new Date(from),
        to: new Date(to),
        filterSubjectsOfCustomers: subjects,
        filterGroupBy: { ...feature.filter },
      });
      return result.data.reduce((sum, row) => sum + row.value, 0);
    };

    const resets = this.#resetsBetween(ent, ent.startMs, at);
    const times = [ent.startMs, ...resets, at];
    const balances = new Map<string, number>();
    let overage = 0;
    let usage = 0;
    let totalGrantUsage = 0;
    for (let p = 0; p + 1 < times.length; p++) {
      const from = times[p]!;
      const to = times[p + 1]!;
      const relevant = ent.grants.filter((g) => overlapsInclusive(g, from, to) || balances.has(g.id));
      // Phases: cut at activity changes inside [from, to).
      const cuts = new Set<number>();
      for (const g of relevant) {
        if (g.effectiveMs >= from && g.effectiveMs < to) cuts.add(truncMinute(g.effectiveMs));
        if (g.expiresMs !== undefined && g.expiresMs >= from && g.expiresMs < to) cuts.add(truncMinute(g.expiresMs));
      }
      const bounds = [from, ...[...cuts].filter((t) => t > from && t < to).sort((a, b) => a - b), to];
      for (let i = 0; i + 1 < bounds.length; i++) {
        const phaseFrom = bounds[i]!;
        const phaseTo = bounds[i + 1]!;
        const active: GrantState[] = [];
        for (const g of relevant) {
          if (activeAt(g, phaseFrom)) active.push(g);
          else balances.set(g.id, 0);
        }
        for (const g of active) if (g.effectiveMs === phaseFrom || !balances.has(g.id)) balances.set(g.id, g.amount);
        if (meter.aggregation === "LATEST") for (const g of active) balances.set(g.id, g.amount);
        const used = queryUsage(phaseFrom, phaseTo);
        usage += used;
        const burned = burn(balances, prioritize(active), used + overage);
        overage = burned.remaining;
        totalGrantUsage += burned.granted;
      }
      if (p + 2 < times.length) {
        // reset at `to`: roll over, then maybe burn the preserved overage.
        for (const g of relevant) {
          const b = balances.get(g.id) ?? 0;
          if (!activeAt(g, to)) continue;
          balances.set(g.id, Math.min(g.maxRolloverAmount, Math.max(g.minRolloverAmount, b)));
        }
        const startingOverage = ent.preserveOverageAtReset ? overage : 0;
        usage = 0;
        totalGrantUsage = 0;
        overage = startingOverage;
        if (startingOverage !== 0) {
          const burned = burn(balances, prioritize(relevant.filter((g) => activeAt(g, to))), startingOverage);
          overage = burned.remaining;
          totalGrantUsage = burned.granted;
        }
      }
    }
    // removeInactiveGrantsFromSnapshotAt (openmeter/credit/balance.go): grants not active at the query time go.
    for (const g of ent.grants) if (balances.has(g.id) && !activeAt(g, at)) balances.delete(g.id);
    let balance = 0;
    for (const v of balances.values()) balance += v;
    return { balance, usage, overage, totalGrantUsage, balances };
  }

  /** The usage period containing `at`: [from, to). The first one starts at `measureUsageFrom`. */
  #periodAt(ent: EntitlementState, at: number): { from: number; to: number } {
    let n = Math.floor((at - ent.anchorMs) / approxMs(ent.usagePeriod.interval)) - 1;
    while (addInterval(ent.anchorMs, ent.usagePeriod.interval, n + 1) <= at) n++;
    while (addInterval(ent.anchorMs, ent.usagePeriod.interval, n) > at) n--;
    const from = Math.max(addInterval(ent.anchorMs, ent.usagePeriod.interval, n), ent.startMs);
    return { from, to: addInterval(ent.anchorMs, ent.usagePeriod.interval, n + 1) };
  }

  /** Reset times in (from, to] (`engine.RunParams.Resets`: after the start, not after the end). */
  #resetsBetween(ent: EntitlementState, from: number, to: number): number[] {
    const out: number[] = [];
    let n = Math.floor((from - ent.anchorMs) / approxMs(ent.usagePeriod.interval)) - 1;
    while (addInterval(ent.anchorMs, ent.usagePeriod.interval, n) <= from) n++;
    for (let t = addInterval(ent.anchorMs, ent.usagePeriod.interval, n); t <= to; t = addInterval(ent.anchorMs, ent.usagePeriod.interval, ++n)) {
      out.push(t);
    }
    // A reset exactly at `to` is included: the engine then runs a zero-length last period, so a value
    // asked for in the last minute of a period (rounded up onto the reset) already shows the new period.
    return out;
  }

  #ulid(): string {
    return ulidAt(this.#ctx.clock.wallNow(), ++this.#seq);
  }

  #nowIso(): string {
    return iso(this.#ctx.clock.wallNow());
  }
}

function publicEntitlement(e: EntitlementState): Entitlement {
  return {
    id: e.id,
    customerId: e.customerId,
    featureKey: e.featureKey,
    isSoftLimit: e.isSoftLimit,
    preserveOverageAtReset: e.preserveOverageAtReset,
    usagePeriod: { ...e.usagePeriod },
    measureUsageFrom: e.measureUsageFrom,
    createdAt: e.createdAt,
  };
}

function publicGrant(g: GrantState): Grant {
  const { effectiveMs: _e, expiresMs: _x, createdMs: _c, seq: _s, ...rest } = g;
  return { ...rest };
}

function activeAt(g: GrantState, t: number): boolean {
  return t >= g.effectiveMs && (g.expiresMs === undefined || t < g.expiresMs);
}

/** `GetEffectivePeriod().Open().OverlapsInclusive(period)`. */
function overlapsInclusive(g: GrantState, from: number, to: number): boolean {
  const gTo = g.expiresMs ?? Number.POSITIVE_INFINITY;
  return g.effectiveMs <= to && gTo >= from;
}

/** `PrioritizeGrants`: priority, then expiry (none last), then creation. */
function prioritize(grants: readonly GrantState[]): GrantState[] {
  return [...grants].sort((a, b) => {
    if (a.priority !== b.priority) return a.priority - b.priority;
    if (a.expiresMs === undefined && b.expiresMs !== undefined) return 1;
    if (a.expiresMs !== undefined && b.expiresMs === undefined) return -1;
    if (a.expiresMs !== undefined && b.expiresMs !== undefined && a.expiresMs !== b.expiresMs) {
      return Math.floor(a.expiresMs / 1000) - Math.floor(b.expiresMs / 1000);
    }
    if (a.createdMs !== b.createdMs) return a.createdMs - b.createdMs;
    return a.seq - b.seq;
  });
}

/** `burnDownGrants`: returns what was left unburnt (overage) and what the grants covered. */
function burn(balances: Map<string, number>, prioritized: readonly GrantState[], usage: number): { remaining: number; granted: number } {
  let remaining = usage;
  let granted = 0;
  for (const g of prioritized) {
    const balance = balances.get(g.id) ?? 0;
    if (balance === 0) continue;
    if (balance <= remaining) {
      balances.set(g.id, 0);
      remaining -= balance;
      granted += balance;
    } else {
      balances.set(g.id, balance - remaining);
      granted += remaining;
      remaining = 0;
    }
  }
  return { remaining, granted };
}

function truncMinute(ms: number): number {
  return Math.floor(ms / MINUTE) * MINUTE;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function approxMs(interval: UsagePeriodInterval): number {
  return { HOUR: 3_600_000, DAY: 86_400_000, WEEK: 604_800_000, MONTH: 2_592_000_000, YEAR: 31_536_000_000 }[interval];
}

/** anchor + n × interval, months without overflow (`AddMonthsNoOverflow`). */
function addInterval(anchor: number, interval: UsagePeriodInterval, n: number): number {
  switch (interval) {
    case "HOUR":
      return anchor + n * 3_600_000;
    case "DAY":
      return anchor + n * 86_400_000;
    case "WEEK":
      return anchor + n * 604_800_000;
    case "MONTH":
      return addMonthsNoOverflow(anchor, n);
    case "YEAR":
      return addMonthsNoOverflow(anchor, 12 * n);
  }
}

function addMonthsNoOverflow(ms: number, months: number): number {
  const d = new Date(ms);
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth() + months;
  const lastDay = new Date(Date.UTC(y, m + 1, 0)).getUTCDate();
  const day = Math.min(d.getUTCDate(), lastDay);
  return Date.UTC(y, m, day, d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), d.getUTCMilliseconds());
}

/** Go `time.AddDate` (normalizes overflow) and `Add` for hours. */
function addExpiration(ms: number, duration: ExpirationDuration, count: number): number {
  const d = new Date(ms);
  switch (duration) {
    case "HOUR":
      return ms + count * 3_600_000;
    case "DAY":
      return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + count, d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds());
    case "WEEK":
      return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 7 * count, d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds());
    case "MONTH":
      return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + count, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds());
    case "YEAR":
      return Date.UTC(d.getUTCFullYear() + count, d.getUTCMonth(), d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds());
    default:
      throw new EntitlementApiError(400, `unknown expiration duration ${String(duration)}`);
  }
}

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** A ULID-shaped id: 10 characters of time, 16 of a counter (deterministic). */
export function ulidAt(ms: number, counter: number): string {
  let time = "";
  let t = Math.max(0, Math.floor(ms));
  for (let i = 0; i < 10; i++) {
    time = CROCKFORD[t % 32]! + time;
    t = Math.floor(t / 32);
  }
  let rest = "";
  let c = counter;
  for (let i = 0; i < 16; i++) {
    rest = CROCKFORD[c % 32]! + rest;
    c = Math.floor(c / 32);
  }
  return time + rest;
}

export { MeterValidationError };
