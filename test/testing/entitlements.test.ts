/**
 * Metered entitlements against OpenMeter's code (openmeterio/openmeter at 7e57a394):
 * `openmeter/entitlement/metered/balance.go` (query time rounded up to the minute), `connector.go`
 * (`HasAccess`), `openmeter/credit/engine/run.go` and `grant.go` (burn-down order and phases), `reset.go`
 * (rollover), `openmeter/credit/grant.go` (`CreateGrant`: minute truncation, no grant before the period),
 * `openmeter/credit/grant/expiration.go` (Go `AddDate`), `pkg/timeutil/recurrence.go` with
 * `pkg/datetime/datetime.go` (usage periods without month overflow), `openmeter/streaming/usageattribution.go`
 * (customer key + subject keys), `openmeter/customer/httpdriver/customer.go` and `apimapping.go` (v1/v2 values),
 * `openmeter/entitlement/driver/v2/` (v2 grants), `api/v3/handlers/customers/entitlementaccess/list.go` (v3).
 */
import { describe, expect, it } from "vitest";
import { TestClock, type OpenMeterServer } from "langchain-openmeter/testing";
import { event, getJson, post, start } from "./helpers";

const T0 = Date.UTC(2026, 4, 5, 10, 0, 0); // 2026-05-05T10:00:00Z
const at = (minutes: number, seconds = 0) => new Date(T0 + minutes * 60_000 + seconds * 1000).toISOString();

function usage(n: number, tokens: number, options: { subject?: string; type?: string; time?: string } = {}) {
  return event(n, {
    id: `u-${n}`,
    subject: options.subject ?? "acme",
    time: options.time ?? at(0, 30),
    data: { type: options.type ?? "input", tokens, model: "m", provider: "p" },
  });
}

async function setup(options: { isSoftLimit?: boolean; filter?: Record<string, string> } = {}): Promise<{ server: OpenMeterServer; clock: TestClock }> {
  const clock = new TestClock({ wall: T0 });
  const server = await start({ clock });
  server.customers.add({ key: "acme", subjectKeys: ["acme-bot"] });
  server.customers.add({ key: "globex" });
  server.entitlements.add({
    customer: "acme",
    feature: "tokens",
    meter: "llm_tokens",
    usagePeriod: { interval: "MONTH" },
    ...(options.isSoftLimit !== undefined ? { isSoftLimit: options.isSoftLimit } : {}),
    ...(options.filter ? { filter: options.filter } : {}),
  });
  return { server, clock };
}

describe("balance from ingested events", () => {
  it("counts the customer's key and subject keys, not other subjects, against the grant", async () => {
    const { server, clock } = await setup();
    server.grants.add({ customer: "acme", feature: "tokens", amount: 1000 });
    await post(server, [usage(1, 300), usage(2, 200, { subject: "acme-bot" }), usage(3, 999, { subject: "globex" })]);
    await clock.advance(60_000);
    expect(server.entitlements.value("acme", "tokens")).toEqual({
      hasAccess: true,
      balance: 500,
      usage: 500,
      overage: 0,
      totalAvailableGrantAmount: 1000,
      grantBalances: { [server.grants.list("acme", "tokens")[0]!.id]: 500 },
    });
  });

  it("at zero balance hasAccess is false, and usage beyond the grants is overage", async () => {
    const { server } = await setup();
    server.grants.add({ customer: "acme", feature: "tokens", amount: 100 });
    await post(server, [usage(1, 130)]);
    expect(server.entitlements.value("acme", "tokens", at(1))).toMatchObject({ hasAccess: false, balance: 0, usage: 130, overage: 30 });
  });

  it("a soft limit keeps access at zero balance (HasAccess: isSoftLimit || balance > 0)", async () => {
    const { server } = await setup({ isSoftLimit: true });
    server.grants.add({ customer: "acme", feature: "tokens", amount: 100 });
    await post(server, [usage(1, 130)]);
    expect(server.entitlements.value("acme", "tokens", at(1))).toMatchObject({ hasAccess: true, balance: 0, overage: 30 });
  });

  it("the feature's group-by filter selects what counts (meterGroupByFilters)", async () => {
    const { server } = await setup({ filter: { type: "output" } });
    server.grants.add({ customer: "acme", feature: "tokens", amount: 100 });
    await post(server, [usage(1, 40, { type: "input" }), usage(2, 25, { type: "output" })]);
    expect(server.entitlements.value("acme", "tokens", at(1))).toMatchObject({ balance: 75, usage: 25 });
  });

  it("events of another type or with a non-numeric value do not consume the balance", async () => {
    const { server } = await setup();
    server.grants.add({ customer: "acme", feature: "tokens", amount: 100 });
    await post(server, [usage(1, 10), event(2, { id: "x", type: "other", time: at(0, 30), data: { tokens: 50 } }), event(3, { id: "y", time: at(0, 30), data: { tokens: "lots" } })]);
    expect(server.entitlements.value("acme", "tokens", at(1))).toMatchObject({ balance: 90, usage: 10 });
  });

  it("counts usage up to the value's time only: an event 30 s ahead of the server clock is not usage yet", async () => {
    const { server, clock } = await setup();
    server.grants.add({ customer: "acme", feature: "tokens", amount: 100 });
    await post(server, [usage(1, 10)]); // at 10:00:30, the clock is at 10:00:00
    expect(server.entitlements.value("acme", "tokens")).toMatchObject({ usage: 0, balance: 100 });
    await clock.advance(1000);
    expect(server.entitlements.value("acme", "tokens")).toMatchObject({ usage: 10, balance: 90 }); // 10:00:01 rounds up to 10:01
  });

  it("the value time is rounded up to the next full minute, so later usage in that minute already counts", async () => {
    const { server } = await setup();
    server.grants.add({ customer: "acme", feature: "tokens", amount: 100 });
    await post(server, [usage(1, 10, { time: at(5, 50) })]);
    expect(server.entitlements.value("acme", "tokens", at(5, 10))).toMatchObject({ usage: 10 });
    expect(server.entitlements.value("acme", "tokens", at(5, 0))).toMatchObject({ usage: 0 });
  });
});

describe("grants", () => {
  it("burn lower priority numbers first, then the earlier expiry", async () => {
    const { server } = await setup();
    const late = server.grants.add({ customer: "acme", feature: "tokens", amount: 100, priority: 1 });
    const first = server.grants.add({ customer: "acme", feature: "tokens", amount: 100, priority: 0 });
    const soon = server.grants.add({ customer: "acme", feature: "tokens", amount: 100, priority: 1, expiration: { duration: "DAY", count: 1 } });
    await post(server, [usage(1, 150)]);
    expect(server.entitlements.value("acme", "tokens", at(1)).grantBalances).toEqual({ [late.id]: 100, [first.id]: 0, [soon.id]: 50 });
  });

  it("a grant added after usage first pays off the overage (usage + overage burns each phase)", async () => {
    const { server, clock } = await setup();
    server.grants.add({ customer: "acme", feature: "tokens", amount: 100 });
    await post(server, [usage(1, 300)]);
    expect(server.entitlements.value("acme", "tokens", at(1))).toMatchObject({ balance: 0, overage: 200, hasAccess: false });
    await clock.advance(10 * 60_000 + 1000); // a value asked at 10:10:01 is computed up to 10:11
    server.grants.add({ customer: "acme", feature: "tokens", amount: 500 }); // effective 10:10
    expect(server.entitlements.value("acme", "tokens")).toMatchObject({ balance: 300, overage: 0, usage: 300, hasAccess: true, totalAvailableGrantAmount: 600 });
  });

  it("a grant effective exactly at the (minute-aligned) query time has had no burn phase yet and counts 0", async () => {
    const { server, clock } = await setup();
    await clock.advance(5 * 60_000);
    const grant = server.grants.add({ customer: "acme", feature: "tokens", amount: 100 }); // effective 10:05:00
    // engine/run.go cuts phases in [from, until): at 10:05:00 the grant never became active in a phase.
    expect(server.entitlements.value("acme", "tokens")).toMatchObject({ balance: 0, hasAccess: false, grantBalances: { [grant.id]: 0 } });
    await clock.advance(1);
    expect(server.entitlements.value("acme", "tokens")).toMatchObject({ balance: 100, hasAccess: true });
  });

  it("an expired grant's balance is gone", async () => {
    const { server, clock } = await setup();
    server.grants.add({ customer: "acme", feature: "tokens", amount: 100, expiration: { duration: "HOUR", count: 1 } });
    await post(server, [usage(1, 30)]);
    expect(server.entitlements.value("acme", "tokens", at(1))).toMatchObject({ balance: 70, hasAccess: true });
    await clock.advance(60 * 60_000);
    expect(server.entitlements.value("acme", "tokens")).toMatchObject({ balance: 0, hasAccess: false, usage: 30 });
  });

  it("effectiveAt is truncated to the minute, and a grant before the current usage period is refused", async () => {
    const { server } = await setup();
    expect(server.grants.add({ customer: "acme", feature: "tokens", amount: 1, effectiveAt: at(3, 59) }).effectiveAt).toBe(at(3));
    expect(() => server.grants.add({ customer: "acme", feature: "tokens", amount: 1, effectiveAt: at(-1) })).toThrow(/before the current usage period/);
    expect(() => server.grants.add({ customer: "acme", feature: "tokens", amount: 0 })).toThrow(/amount must be positive/);
  });

  it("expiration by months uses Go's AddDate, which overflows: Jan 31 + 1 month expires on Mar 3", async () => {
    const clock = new TestClock({ wall: Date.UTC(2026, 0, 31) });
    const server = await start({ clock });
    server.customers.add({ key: "acme" });
    server.entitlements.add({ customer: "acme", feature: "tokens", meter: "llm_tokens", usagePeriod: { interval: "YEAR" } });
    const grant = server.grants.add({ customer: "acme", feature: "tokens", amount: 1, expiration: { duration: "MONTH", count: 1 } });
    expect(grant.expiresAt).toBe("2026-03-03T00:00:00.000Z");
  });
});

describe("usage periods", () => {
  it("a reset starts usage from zero; v2 grants roll over their balance (maxRolloverAmount defaults to the amount), a 0 cap drops it", async () => {
    const clock = new TestClock({ wall: Date.UTC(2026, 4, 5, 0, 0) });
    const server = await start({ clock });
    server.customers.add({ key: "acme" });
    server.entitlements.add({ customer: "acme", feature: "tokens", meter: "llm_tokens", usagePeriod: { interval: "DAY" } });
    server.grants.add({ customer: "acme", feature: "tokens", amount: 100 });
    server.grants.add({ customer: "acme", feature: "tokens", amount: 50, priority: 5, maxRolloverAmount: 0 });
    await post(server, [usage(1, 30, { time: "2026-05-05T12:00:00Z" })]);
    const nextDay = "2026-05-06T06:00:00Z";
    expect(server.entitlements.value("acme", "tokens", nextDay)).toMatchObject({ usage: 0, balance: 70, overage: 0 });
  });

  it("monthly periods do not overflow: anchored on Jan 31, the next reset is Feb 28, not Mar 3", async () => {
    const clock = new TestClock({ wall: Date.UTC(2026, 0, 31) });
    const server = await start({ clock });
    server.customers.add({ key: "acme" });
    server.entitlements.add({ customer: "acme", feature: "tokens", meter: "llm_tokens", usagePeriod: { interval: "MONTH" } });
    server.grants.add({ customer: "acme", feature: "tokens", amount: 1000 });
    await post(server, [usage(1, 100, { time: "2026-02-27T12:00:00Z" }), usage(2, 10, { time: "2026-02-28T12:00:00Z" })]);
    expect(server.entitlements.value("acme", "tokens", "2026-02-28T13:00:00Z")).toMatchObject({ usage: 10, balance: 890 });
  });
});

describe("HTTP: v1 and v2 entitlement values, v2 grants", () => {
  it("v1 GET /api/v1/customers/{customerIdOrKey}/entitlements/{featureKey}/value answers the metered value", async () => {
    const { server, clock } = await setup();
    server.grants.add({ customer: "acme", feature: "tokens", amount: 100 });
    await post(server, [usage(1, 40)]);
    await clock.advance(60_000); // the value is for now; the event is 30 s after the start
    const customer = server.customers.get("acme")!;
    for (const idOrKey of ["acme", customer.id]) {
      const { status, body } = await getJson(server, `/api/v1/customers/${idOrKey}/entitlements/tokens/value`);
      expect(status).toBe(200);
      expect(body).toEqual({ hasAccess: true, balance: 60, usage: 40, overage: 0, totalAvailableGrantAmount: 100 });
    }
    const past = await getJson(server, `/api/v1/customers/acme/entitlements/tokens/value?time=${encodeURIComponent(at(0))}`);
    expect(past.body).toMatchObject({ usage: 0, balance: 100 });
  });

  it("v1: an unknown customer is 404; a known one without the entitlement is 200 hasAccess false; a bad feature key is 400", async () => {
    const { server } = await setup();
    expect((await getJson(server, "/api/v1/customers/nobody/entitlements/tokens/value")).status).toBe(404);
    expect(await getJson(server, "/api/v1/customers/globex/entitlements/tokens/value")).toEqual({ status: 200, body: { hasAccess: false } });
    expect(await getJson(server, "/api/v1/customers/acme/entitlements/nothing_here/value")).toEqual({ status: 200, body: { hasAccess: false } });
    expect((await getJson(server, "/api/v1/customers/acme/entitlements/Bad-Key/value")).status).toBe(400);
    expect((await getJson(server, "/api/v1/customers/acme/entitlements/tokens/value?time=yesterday")).status).toBe(400);
  });

  it("v2 value omits hasAccess when it is false (EntitlementValueV2 `omitempty`) and adds grantBalances", async () => {
    const { server, clock } = await setup();
    const grant = server.grants.add({ customer: "acme", feature: "tokens", amount: 10 });
    await post(server, [usage(1, 10)]);
    await clock.advance(60_000);
    expect(await getJson(server, "/api/v2/customers/acme/entitlements/tokens/value")).toEqual({
      status: 200,
      body: { balance: 0, usage: 10, overage: 0, totalAvailableGrantAmount: 10, grantBalances: { [grant.id]: 0 } },
    });
    expect((await getJson(server, "/api/v2/customers/globex/entitlements/tokens/value")).body).toEqual({});
  });

  it("v2 POST .../grants creates a grant (201) that the value counts at once; errors are 400 and 404", async () => {
    const { server } = await setup();
    const create = (customer: string, body: unknown) =>
      fetch(`${server.origin}/api/v2/customers/${customer}/entitlements/tokens/grants`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const created = await create("acme", { amount: 250, effectiveAt: at(0, 45), priority: 3 });
    expect(created.status).toBe(201);
    expect(await created.json()).toMatchObject({ amount: 250, priority: 3, effectiveAt: at(0), maxRolloverAmount: 250, minRolloverAmount: 0, entitlementId: expect.any(String), id: expect.any(String) });
    expect(server.entitlements.value("acme", "tokens")).toMatchObject({ balance: 250, hasAccess: true });
    expect((await create("acme", { effectiveAt: at(0) })).status).toBe(400); // amount is required
    expect((await create("acme", { amount: 0, effectiveAt: at(0) })).status).toBe(400); // must be positive
    expect((await create("acme", { amount: 1, effectiveAt: "2026-05-01T00:00:00Z" })).status).toBe(400); // before the period
    expect((await create("nobody", { amount: 1, effectiveAt: at(0) })).status).toBe(404);
    expect((await create("globex", { amount: 1, effectiveAt: at(0) })).status).toBe(404); // no such entitlement
    const list = await getJson(server, "/api/v2/customers/acme/entitlements/tokens/grants");
    expect((list.body as { items: unknown[] }).items).toHaveLength(1);
  });
});

describe("HTTP: v3 (Kong Konnect) entitlement access", () => {
  it("GET /v3/openmeter/customers/{customerId}/entitlement-access lists has_access per feature; it takes the customer id, not the key", async () => {
    const clock = new TestClock({ wall: T0 });
    const server = await start({ api: "v3", clock });
    const acme = server.customers.add({ key: "acme" });
    server.entitlements.add({ customer: "acme", feature: "tokens", meter: "llm_tokens" });
    server.entitlements.add({ customer: "acme", feature: "output_tokens", meter: "llm_tokens", filter: { type: "output" } });
    server.grants.add({ customer: "acme", feature: "tokens", amount: 5 });
    expect(await getJson(server, `/v3/openmeter/customers/${acme.id}/entitlement-access`)).toEqual({
      status: 200,
      body: {
        data: [
          { type: "metered", feature_key: "output_tokens", has_access: false },
          { type: "metered", feature_key: "tokens", has_access: true },
        ],
      },
    });
    expect((await getJson(server, "/v3/openmeter/customers/acme/entitlement-access")).status).toBe(404); // not a ULID
    expect((await getJson(server, "/v3/openmeter/customers/01G65Z755AFWAKHE12NY0CQ9FH/entitlement-access")).status).toBe(404);
  });
});

describe("HTTP: v2 entitlement (isSoftLimit is not part of the value)", () => {
  it("GET /api/v2/customers/{customerIdOrKey}/entitlements/{featureKey} answers EntitlementMeteredV2 with isSoftLimit; 404 without one", async () => {
    const { server } = await setup({ isSoftLimit: true });
    const acme = server.customers.get("acme")!;
    const { status, body } = await getJson(server, "/api/v2/customers/acme/entitlements/tokens");
    expect(status).toBe(200);
    expect(body).toMatchObject({
      type: "metered",
      featureKey: "tokens",
      customerId: acme.id,
      customerKey: "acme",
      isSoftLimit: true,
      usagePeriod: { interval: "MONTH", intervalISO: "P1M", anchor: at(0) },
      currentUsagePeriod: { from: at(0), to: "2026-06-05T10:00:00.000Z" },
      measureUsageFrom: at(0),
    });
    expect((await getJson(server, "/api/v2/customers/globex/entitlements/tokens")).status).toBe(404); // no such entitlement
    expect((await getJson(server, "/api/v2/customers/nobody/entitlements/tokens")).status).toBe(404);
    const hard = await setup();
    expect((await getJson(hard.server, "/api/v2/customers/acme/entitlements/tokens")).body).toMatchObject({ isSoftLimit: false });
  });
});
