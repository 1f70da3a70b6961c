/**
 * The budget guard with the real ChatOpenAI against the local OpenAI fake, and the customer's
 * entitlement served by the OpenMeter fake: a stopped call never reaches the provider (counted at
 * the fake), reservations hold under concurrency, and every way a read can go is decided as the
 * README says.
 */
import { BaseCallbackHandler } from "@langchain/core/callbacks/base";
import { HumanMessage } from "@langchain/core/messages";
import { RunnableLambda } from "@langchain/core/runnables";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { BudgetExceededError, BudgetGuard, MeteringCallbackHandler } from "langchain-openmeter";
import { MemorySink, recordingLogger } from "../support/memory-sink.js";
import { useProviderFake } from "../support/lifecycle.js";
import { startOpenAIServer, type OpenAIFake } from "../support/openai-server.js";
import { ask, billing, FEATURE, guardFor, openai, outcomes, T0, type Billing } from "./helpers";

let fake: OpenAIFake;
useProviderFake(startOpenAIServer, (started) => (fake = started));

// LangChain logs every error a raiseError handler throws ("Error in handler BudgetGuard, handleLLMStart: …").
let consoleErrors: string[];
beforeEach(() => {
  consoleErrors = [];
  vi.spyOn(console, "error").mockImplementation((...args: unknown[]) => void consoleErrors.push(args.map(String).join(" ")));
});
const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const close of cleanup.splice(0)) await close();
});

async function setup(options: Parameters<typeof billing>[0] = {}, guardOptions: Parameters<typeof guardFor>[1] = {}) {
  const b = await billing(options);
  const g = guardFor(b, guardOptions);
  cleanup.push(() => g.guard.close(), () => b.server.close());
  return { ...b, ...g };
}

const valueReads = (b: Billing) => b.server.requests.filter((r) => r.path.endsWith(`/entitlements/${FEATURE}/value`)).length;
const acme = { metadata: { subject: "acme" } };

describe("concurrent calls reserve their worst case", () => {
  for (const warm of [false, true]) {
    it(`50 calls at once against a balance that covers 10: exactly 10 reach the provider (${warm ? "warm cache" : "first calls of a new customer, sharing one read"})`, async () => {
      const b = await billing();
      const { guard } = guardFor(b);
      cleanup.push(() => guard.close(), () => b.server.close());
      const worst = (await guard.preview(ask(), { maxOutputTokens: 100 })).estimate.worstCaseTokens;
      // Room for 10 worst cases and most of an 11th.
      b.server.grants.add({ customer: "acme", feature: FEATURE, amount: 10 * worst + worst - 1 });
      if (warm) await guard.refresh("acme");
      const model = openai(fake, { maxTokens: 100 });

      const results = outcomes(await Promise.allSettled(Array.from({ length: 50 }, () => model.invoke(ask(), { callbacks: [guard], ...acme }))));

      expect(fake.requests).toHaveLength(10);
      expect(results.fulfilled).toHaveLength(10);
      expect(results.rejected).toHaveLength(40);
      expect(results.rejected.every((e) => BudgetExceededError.is(e) && e.reason === "exhausted")).toBe(true);
      expect(valueReads(b)).toBe(1); // one read for all 50
      expect(guard.stats()).toMatchObject({ checked: 50, allowed: 10, blocked: { exhausted: 40 }, open: 0 });
      // LangChain's own line for each stopped call (documented in the README).
      expect(consoleErrors.filter((line) => line.startsWith("Error in handler BudgetGuard, handleLLMStart: BudgetExceededError"))).toHaveLength(40);
    });
  }

  it("the error says who, what is left and what the call needed, and survives a chain around the model", async () => {
    const { server, guard } = await setup();
    const worst = (await guard.preview(ask(), { maxOutputTokens: 100 })).estimate.worstCaseTokens;
    server.grants.add({ customer: "acme", feature: FEATURE, amount: worst - 1 });
    const chain = RunnableLambda.from((text: string) => [new HumanMessage(text)]).pipe(openai(fake, { maxTokens: 100 }));

    const error = await chain.invoke("What is 1+1?", { callbacks: [guard], ...acme }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(BudgetExceededError);
    expect(error).toMatchObject({
      name: "BudgetExceededError",
      source: "entitlement",
      reason: "exhausted",
      subject: "acme",
      feature: FEATURE,
      remaining: worst - 1,
      required: worst,
      model: "gpt-4o-mini",
    });
    expect((error as Error).message).toBe(
      `customer "acme" has ${worst - 1} of \`llm_tokens\` left (balance ${worst - 1} at the last read, 0 metered here since, 0 reserved by calls in flight); ` +
        `this call could need ${worst} (about ${worst - 100} prompt tokens + up to 100 output): shorten the prompt, lower the model's maxTokens, or add a grant`,
    );
    expect(fake.requests).toHaveLength(0);
  });

  it("stream() and batch() are stopped before any request too", async () => {
    const { guard } = await setup({ grant: 50 });
    const model = openai(fake, { maxTokens: 100 });
    const streamed = await (async () => {
      for await (const _ of await model.stream(ask(), { callbacks: [guard], ...acme })) void _;
    })().catch((e: unknown) => e);
    const batched = await model.batch([ask(), ask()], { callbacks: [guard], ...acme }).catch((e: unknown) => e);
    expect(BudgetExceededError.is(streamed)).toBe(true);
    expect(BudgetExceededError.is(batched)).toBe(true);
    expect(fake.requests).toHaveLength(0);
  });

  it("a reservation is settled with the provider's usage: the next call sees the tokens metered here, not the worst case", async () => {
    const { guard } = await setup({ grant: 1000 });
    fake.respondWith(() => ({ content: "2", usage: { prompt_tokens: 30, completion_tokens: 20 } }));
    await openai(fake).invoke(ask(), { callbacks: [guard], ...acme });
    expect(await guard.remaining("acme")).toMatchObject({ balance: 1000, unsettled: 50, reserved: 0, available: 950 });
  });
});

describe("beside the metering handler", () => {
  it("a stopped call is neither billed nor left open: stats().blocked counts it and shutdown() does not wait for it", async () => {
    const { guard } = await setup({ grant: 50 });
    const sink = new MemorySink();
    const metering = new MeteringCallbackHandler({ client: sink, logger: recordingLogger().logger, handleSignals: false });
    // Both orders: the metering handler before the guard, and after it.
    for (const callbacks of [[metering, guard], [guard, metering]]) {
      await expect(openai(fake).invoke(ask(), { callbacks, ...acme })).rejects.toBeInstanceOf(BudgetExceededError);
    }
    await metering.flush();
    expect(metering.stats()).toMatchObject({ blocked: 2, open: 0, metered: 0 });
    expect(sink.events).toEqual([]);
    const started = performance.now();
    await metering.shutdown();
    expect(performance.now() - started).toBeLessThan(1000); // not the drain's time-out for a run that never ends
  });
});

describe("soft limits", () => {
  it("past a soft limit the call goes through, with one warning and then counts", async () => {
    const { guard, warnings } = await setup({ grant: 20, isSoftLimit: true });
    const model = openai(fake);
    for (let i = 0; i < 3; i++) await model.invoke(ask(), { callbacks: [guard], ...acme });
    expect(fake.requests).toHaveLength(3);
    expect(guard.stats()).toMatchObject({ softLimitOverruns: 3, blocked: { exhausted: 0 } });
    expect(warnings.filter((w) => w.includes("soft limit"))).toHaveLength(1);
    expect(warnings[0]).toMatch(/^customer "acme" is past its balance \(soft limit, so the call goes through\): -?\d+ of `llm_tokens` left/);
    expect((await guard.remaining("acme")).softLimit).toBe(true);
  });

  it("the soft limit is read from the entitlement (isSoftLimit), not guessed from a positive balance", async () => {
    const hard = await setup({ grant: 20 });
    await expect(openai(fake).invoke(ask(), { callbacks: [hard.guard], ...acme })).rejects.toMatchObject({ reason: "exhausted" });
    expect(hard.server.requests.some((r) => r.path === `/api/v2/customers/acme/entitlements/${FEATURE}`)).toBe(true);
    expect((await hard.guard.remaining("acme")).softLimit).toBe(false);
  });
});

describe("when OpenMeter cannot be read", () => {
  it("fail open (default): a new customer's calls go through and are still metered; told once, then counted", async () => {
    const { server, clock, guard, warnings } = await setup({ grant: 1000 });
    server.setMode("down");
    const sink = new MemorySink();
    const metering = new MeteringCallbackHandler({ client: sink, logger: recordingLogger().logger, handleSignals: false });
    const model = openai(fake);
    for (let i = 0; i < 3; i++) await model.invoke(ask(), { callbacks: [metering, guard], ...acme });
    await metering.flush();

    expect(fake.requests).toHaveLength(3);
    expect(sink.events).toHaveLength(6); // metering records every call
    expect(guard.stats()).toMatchObject({ unchecked: 3, allowed: 3, failedReads: 1 });
    const told = warnings.filter((w) => /could not read|without a balance/.test(w));
    expect(told).toEqual([
      expect.stringMatching(/^could not read the entitlement `llm_tokens` of customer "acme": GET http:\/\/127\.0\.0\.1:\d+\/api\/v1\/customers\/acme\/entitlements\/llm_tokens\/value answered 503 .*no balance is known for it yet/),
      expect.stringMatching(/^a model call for customer "acme" was let through without a balance to check: .*onUnavailable: "allow"/),
    ]);
    await clock.advance(60_000); // the digest's summary
    expect(warnings.at(-1)).toMatch(/since the last summary .*2× model calls let through without a balance to check/);
    await metering.shutdown();
  });

  it("fail closed (onUnavailable: block): the call is stopped with reason unavailable, before the provider", async () => {
    const { server, guard } = await setup({ grant: 1000 }, { onUnavailable: "block" });
    server.setMode("down");
    const error = await openai(fake).invoke(ask(), { callbacks: [guard], ...acme }).catch((e: unknown) => e);
    expect(error).toMatchObject({ reason: "unavailable", source: "entitlement", subject: "acme" });
    expect((error as Error).message).toMatch(/could not be read \(GET .* answered 503.*\), and onUnavailable is "block": the call was not sent/);
    expect(fake.requests).toHaveLength(0);
  });

  it("a hanging endpoint holds a new customer's first call for firstCallTimeoutMs (on the clock), then onUnavailable decides", async () => {
    const { server, clock, guard } = await setup({ grant: 1000 }, { firstCallTimeoutMs: 500, onUnavailable: "block" });
    server.setMode("hang");
    const call = openai(fake).invoke(ask(), { callbacks: [guard], ...acme });
    let settled = false;
    void call.catch(() => (settled = true));
    await clock.advance(499);
    expect(settled).toBe(false);
    await clock.advance(1);
    await expect(call).rejects.toMatchObject({ reason: "unavailable" });
    expect((await call.catch((e: Error) => e.message)) as string).toMatch(/first read did not answer within firstCallTimeoutMs \(500 ms\)/);
  });

  it("with a balance already read, an outage keeps it in use and this process's usage keeps being subtracted: the customer is still stopped at the limit", async () => {
    const { server, clock, guard } = await setup({ grant: 400 });
    fake.respondWith(() => ({ content: "ok", usage: { prompt_tokens: 100, completion_tokens: 100 } }));
    const model = openai(fake, { maxTokens: 100 });
    await model.invoke(ask(), { callbacks: [guard], ...acme }); // reads 400, uses 200
    server.setMode("down");
    await clock.advance(60_000); // refreshes fail; nothing was delivered to OpenMeter (no metering here)
    await expect(model.invoke(ask(), { callbacks: [guard], ...acme })).resolves.toBeDefined(); // 200 left, needs ~113
    await expect(model.invoke(ask(), { callbacks: [guard], ...acme })).rejects.toMatchObject({ reason: "exhausted", remaining: 0 });
    expect(fake.requests).toHaveLength(2);
    expect(guard.stats().unchecked).toBe(0);
  });

  it("reads answer again: the recovery is told, and the customer is checked again", async () => {
    const { server, clock, guard, warnings } = await setup({ grant: 1000 });
    server.setMode("down");
    await openai(fake).invoke(ask(), { callbacks: [guard], ...acme });
    server.setMode("ok");
    await clock.advance(10_000); // the next refresh
    expect(warnings.at(-1)).toMatch(/^entitlement reads answer again \(http:\/\/127\.0\.0\.1:\d+\) after 1 failed read:/);
    expect(await guard.remaining("acme")).toMatchObject({ status: "ready", balance: 1000 });
  });
});

describe("customers OpenMeter does not know, and customers without the entitlement", () => {
  it("an unknown customer is stopped (nobody would pay); unknownCustomer: allow lets it through unchecked", async () => {
    const strict = await setup({ grant: 1000 });
    const error = await openai(fake).invoke(ask(), { callbacks: [strict.guard], metadata: { subject: "nobody" } }).catch((e: unknown) => e);
    expect(error).toMatchObject({ reason: "unknown_customer", subject: "nobody" });
    expect((error as Error).message).toMatch(/^OpenMeter knows no customer "nobody" \(GET .*\/customers\/nobody\/entitlements\/llm_tokens\/value answered 404 .*\), so nobody would pay for this call: create the customer/);
    const lenient = await setup({ grant: 1000 }, { unknownCustomer: "allow" });
    await openai(fake).invoke(ask(), { callbacks: [lenient.guard], metadata: { subject: "nobody" } });
    expect(fake.requests).toHaveLength(1);
    expect(lenient.guard.stats()).toMatchObject({ unchecked: 1 });
  });

  it("a customer without the entitlement (hasAccess: false, no balance) is stopped; withoutEntitlement: allow lets it through", async () => {
    const strict = await setup({ grant: 1000 });
    await expect(openai(fake).invoke(ask(), { callbacks: [strict.guard], metadata: { subject: "globex" } })).rejects.toMatchObject({ reason: "no_entitlement" });
    const lenient = await setup({ grant: 1000 }, { withoutEntitlement: "allow" });
    await openai(fake).invoke(ask(), { callbacks: [lenient.guard], metadata: { subject: "globex" } });
    expect(fake.requests).toHaveLength(1);
  });

  it("a call without a subject is not checked against an entitlement (told once); a later customer created in OpenMeter is picked up by the refresh", async () => {
    const { server, clock, guard, warnings } = await setup({ grant: 1000 });
    await openai(fake).invoke(ask(), { callbacks: [guard] });
    expect(guard.stats().noSubject).toBe(1);
    expect(warnings[0]).toMatch(/^a model call had no subject, so it was not checked against customers' entitlements/);

    await expect(openai(fake).invoke(ask(), { callbacks: [guard], metadata: { subject: "initech" } })).rejects.toMatchObject({ reason: "unknown_customer" });
    server.customers.add({ key: "initech" });
    server.entitlements.add({ customer: "initech", feature: FEATURE });
    server.grants.add({ customer: "initech", feature: FEATURE, amount: 500 });
    await clock.advance(10_000);
    await openai(fake).invoke(ask(), { callbacks: [guard], metadata: { subject: "initech" } });
    expect(fake.requests).toHaveLength(2);
  });
});

describe("reads in the background", () => {
  it("a new customer's first call waits for one read; later calls read nothing; the refresh runs on the interval only while the customer is in use", async () => {
    const { server, clock, guard } = await setup({ grant: 10_000 });
    const model = openai(fake);
    await model.invoke(ask(), { callbacks: [guard], ...acme });
    expect(valueReads({ server, clock })).toBe(1);
    for (let i = 0; i < 5; i++) await model.invoke(ask(), { callbacks: [guard], ...acme });
    expect(valueReads({ server, clock })).toBe(1);
    await clock.advance(10_000);
    expect(valueReads({ server, clock })).toBe(2);
    await clock.advance(10 * 60_000); // idle: refreshes stop after the active window (60 s)
    const afterIdle = valueReads({ server, clock });
    expect(afterIdle).toBeLessThanOrEqual(2 + 6);
    await clock.advance(10 * 60_000);
    expect(valueReads({ server, clock })).toBe(afterIdle);
  });

  it("usage of other processes and new grants arrive with the next refresh, without a call waiting", async () => {
    const { server, clock, guard } = await setup({ grant: 300 });
    const model = openai(fake, { maxTokens: 100 });
    await model.invoke(ask(), { callbacks: [guard], ...acme });
    // Another process spent the rest; the fake stores its events.
    await fetch(server.url, {
      method: "POST",
      headers: { "content-type": "application/cloudevents-batch+json" },
      body: JSON.stringify([{ specversion: "1.0", id: "other-1", source: "elsewhere", type: "kong.llm_request", subject: "acme", time: new Date(clock.wallNow()).toISOString(), data: { type: "input", tokens: 300 } }]),
    });
    await clock.advance(10_000);
    await expect(model.invoke(ask(), { callbacks: [guard], ...acme })).rejects.toMatchObject({ reason: "no_access" });
    server.grants.add({ customer: "acme", feature: FEATURE, amount: 1000 });
    await clock.advance(10_000);
    await model.invoke(ask(), { callbacks: [guard], ...acme });
    expect(fake.requests).toHaveLength(2);
  });
});

describe("APIs", () => {
  it("v2 value endpoint (hasAccess left out when false)", async () => {
    const { server, guard } = await setup({ grant: 50 }, { api: "v2" });
    await expect(openai(fake).invoke(ask(), { callbacks: [guard], ...acme })).rejects.toMatchObject({ reason: "exhausted", remaining: 50 });
    await expect(openai(fake).invoke(ask(), { callbacks: [guard], metadata: { subject: "globex" } })).rejects.toMatchObject({ reason: "no_entitlement" });
    expect(server.requests.some((r) => r.path === `/api/v2/customers/acme/entitlements/${FEATURE}/value`)).toBe(true);
  });

  it("Konnect v3 entitlement-access (by customer id, access only): has_access false stops calls; true lets them through whatever their size", async () => {
    const clock = new (await import("langchain-openmeter/testing")).TestClock({ wall: T0 });
    const server = await (await import("langchain-openmeter/testing")).startOpenMeterServer({ api: "v3", clock });
    const acmeCustomer = server.customers.add({ key: "acme" });
    const globex = server.customers.add({ key: "globex" });
    for (const customer of ["acme", "globex"]) server.entitlements.add({ customer, feature: FEATURE, meter: customer === "acme" ? "llm_tokens" : undefined });
    server.grants.add({ customer: "acme", feature: FEATURE, amount: 10 }); // less than one call's worst case
    const ids: Record<string, string> = { acme: acmeCustomer.id, globex: globex.id };
    const guard = new BudgetGuard({ url: server.url, feature: FEATURE, clock, logger: recordingLogger().logger, customerOf: (subject) => ids[subject]! });
    cleanup.push(() => guard.close(), () => server.close());

    await openai(fake).invoke(ask(), { callbacks: [guard], ...acme });
    await expect(openai(fake).invoke(ask(), { callbacks: [guard], metadata: { subject: "globex" } })).rejects.toMatchObject({ reason: "no_access" });
    expect(fake.requests).toHaveLength(1);
    expect(server.requests.map((r) => r.path)).toEqual(expect.arrayContaining([`/v3/openmeter/customers/${acmeCustomer.id}/entitlement-access`]));
  });

  it("v3 without customerOf: a subject that is not a ULID is unreadable, and the message says to pass customerOf", async () => {
    const clock = new (await import("langchain-openmeter/testing")).TestClock({ wall: T0 });
    const server = await (await import("langchain-openmeter/testing")).startOpenMeterServer({ api: "v3", clock });
    const guard = new BudgetGuard({ url: server.url, feature: FEATURE, clock, logger: recordingLogger().logger, onUnavailable: "block" });
    cleanup.push(() => guard.close(), () => server.close());
    const error = await openai(fake).invoke(ask(), { callbacks: [guard], ...acme }).catch((e: Error) => e);
    expect((error as Error).message).toMatch(/takes the customer's id \(a ULID\), and subject "acme" is not one: pass `customerOf/);
  });

  it("a bearer token is sent, a 401 says to check apiKey, and the key appears in no message", async () => {
    const { server, guard, warnings } = await setup({ grant: 1000, server: { apiKey: "om-secret-key-123" } }, { apiKey: "wrong-secret-key-456" });
    await openai(fake).invoke(ask(), { callbacks: [guard], ...acme }); // fail open by default: the call goes through
    expect(fake.requests).toHaveLength(1);
    expect(server.requests.every((r) => r.authorization)).toBe(true);
    expect(warnings[0]).toMatch(/answered 401 .*: check apiKey/);
    expect(warnings.join("\n")).not.toMatch(/secret-key/);
    expect(consoleErrors.join("\n")).not.toMatch(/secret-key/);
  });
});

describe("finding the customer", () => {
  it("as the metering handler does: configurable[subjectKey], resolveSubject, defaultSubject", async () => {
    const { guard } = await setup({ grant: 50 }, { subjectKey: "customer" });
    await expect(openai(fake).invoke(ask(), { callbacks: [guard], configurable: { customer: "acme" } })).rejects.toMatchObject({ subject: "acme", reason: "exhausted" });
    const resolved = await setup({ grant: 50 }, { resolveSubject: ({ tags }) => tags.find((t) => t.startsWith("customer:"))?.slice(9) });
    await expect(openai(fake).invoke(ask(), { callbacks: [resolved.guard], tags: ["customer:acme"] })).rejects.toMatchObject({ subject: "acme" });
    const fallback = await setup({ grant: 50 }, { defaultSubject: "acme" });
    await expect(openai(fake).invoke(ask(), { callbacks: [fallback.guard] })).rejects.toMatchObject({ subject: "acme" });
    expect(fake.requests).toHaveLength(0);
  });
});

describe("calls that never end, closing, what counts", () => {
  it("a call stopped by another handler after the guard reserved it never ends: its reservation is held, then counted at its worst case after runTimeoutMs", async () => {
    const { clock, guard } = await setup({ grant: 10_000 }, { runTimeoutMs: 5000 });
    await guard.refresh("acme");
    const other = BaseCallbackHandler.fromMethods({
      handleChatModelStart() {
        throw new Error("another handler says no");
      },
    });
    Object.assign(other, { raiseError: true, awaitHandlers: true });
    await expect(openai(fake, { maxTokens: 100 }).invoke(ask(), { callbacks: [guard, other], ...acme })).rejects.toThrow("another handler says no");
    const worst = (await guard.preview(ask(), { maxOutputTokens: 100 })).estimate.worstCaseTokens;
    expect(await guard.remaining("acme")).toMatchObject({ reserved: worst, unsettled: 0 });
    await clock.advance(5000);
    expect(await guard.remaining("acme")).toMatchObject({ reserved: 0, unsettled: worst, available: 10_000 - worst });
    expect(guard.stats().open).toBe(0);
  });

  it("countUsage: a feature over output tokens only counts what the call may output and did output", async () => {
    const { guard } = await setup({ grant: 99 }, { countUsage: "output" });
    fake.respondWith(() => ({ content: "ok", usage: { prompt_tokens: 500, completion_tokens: 30 } }));
    await openai(fake, { maxTokens: 99 }).invoke(ask(), { callbacks: [guard], ...acme }); // 99 output at worst: fits
    expect(await guard.remaining("acme")).toMatchObject({ unsettled: 30, available: 69 });
    await expect(openai(fake, { maxTokens: 99 }).invoke(ask(), { callbacks: [guard], ...acme })).rejects.toMatchObject({ required: 99, remaining: 69 });
  });

  it("after close() calls are let through unchecked (told once), and no refresh runs", async () => {
    const { server, clock, guard, warnings } = await setup({ grant: 10 });
    await guard.close();
    await openai(fake).invoke(ask(), { callbacks: [guard], ...acme });
    await openai(fake).invoke(ask(), { callbacks: [guard], ...acme });
    expect(fake.requests).toHaveLength(2);
    expect(warnings.filter((w) => w.includes("after the budget guard was closed"))).toHaveLength(1);
    await clock.advance(60_000);
    expect(valueReads({ server, clock })).toBe(0);
  });
});

describe("options", () => {
  it("say what to change", () => {
    expect(() => new BudgetGuard({})).toThrow("BudgetGuard: nothing to guard: set `feature` (and `url`) for customers' entitlements, or `runBudget` for per-run limits");
    expect(() => new BudgetGuard({ feature: "llm_tokens" })).toThrow(/`feature` needs `url`/);
    expect(() => new BudgetGuard({ url: "http://x", feature: "LLM-tokens" })).toThrow(/`feature` must be a feature key/);
    expect(() => new BudgetGuard({ runBudget: { maxCost: 1 } })).toThrow(/`runBudget.maxCost` needs `prices`/);
    expect(() => new BudgetGuard({ runBudget: { maxTokens: 1.5 } })).toThrow(/`runBudget.maxTokens` must be a whole number/);
    expect(() => new BudgetGuard({ runBudget: { maxTokens: 10 }, prices: { m: { input: 1 } } as never })).toThrow(/`prices\["m"\]` needs `output`/);
    expect(() => new BudgetGuard({ runBudget: { maxTokens: 10 }, refreshIntervalMs: 10 })).toThrow(/`refreshIntervalMs` must be at least 1000/);
    expect(() => new BudgetGuard({ runBudget: { maxTokens: 10 }, refreshIntervalMz: 10 } as never)).toThrow(/unknown option `refreshIntervalMz` \(did you mean `refreshIntervalMs`\?\)/);
    expect(() => new BudgetGuard({ url: "http://x", apiKey: "sk-very-secret", feature: "llm_tokens", api: "v4" as never })).toThrow(/`api` must be "v1", "v2" or "v3"/);
    expect(() => new BudgetGuard({ url: "http://x", apiKey: "sk-very-secret", feature: "llm_tokens", logger: "sk-very-secret" as never })).not.toThrow(/sk-very-secret/);
  });
});
