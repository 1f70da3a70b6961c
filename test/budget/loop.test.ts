/**
 * The whole control loop, with nothing stubbed between the parts: ChatOpenAI calls the OpenAI fake;
 * the real MeteringCallbackHandler and its IngestClient deliver the usage to the OpenMeter fake; the
 * fake burns the customer's grant down from the events it stored; the guard reads the balance back,
 * stops the call that would overspend, and lets calls through again once a grant is added over HTTP.
 * One TestClock drives delivery, refreshes and OpenMeter's clock.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { BudgetExceededError, MeteringCallbackHandler } from "langchain-openmeter";
import { settleOn } from "../support/clocked.js";
import { useProviderFake } from "../support/lifecycle.js";
import { recordingLogger } from "../support/memory-sink.js";
import { startOpenAIServer, type OpenAIFake } from "../support/openai-server.js";
import { ask, billing, FEATURE, guardFor, openai } from "./helpers";

let fake: OpenAIFake;
useProviderFake(startOpenAIServer, (started) => (fake = started));
beforeEach(() => void vi.spyOn(console, "error").mockImplementation(() => {}));
const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const close of cleanup.splice(0)) await close();
});

const PER_CALL = { prompt_tokens: 60, completion_tokens: 40 }; // 100 tokens billed per call

async function loop(grant: number, link = true) {
  const b = await billing({ grant });
  const metering = new MeteringCallbackHandler({ url: b.server.url, clock: b.clock, logger: recordingLogger().logger, handleSignals: false, flushOnExit: false });
  const g = guardFor(b, link ? { metering } : {});
  cleanup.push(() => g.guard.close(), () => settleOn(b.clock, metering.shutdown()), () => b.server.close());
  fake.respondWith(() => ({ content: "ok", usage: PER_CALL }));
  const model = openai(fake, { maxTokens: 150 });
  const call = () => model.invoke(ask(), { callbacks: [metering, g.guard], metadata: { subject: "acme" } });
  const deliver = () => settleOn(b.clock, metering.flush());
  return { ...b, ...g, metering, call, deliver };
}

describe("metering consumes the balance, the guard stops the next call, a grant lets it through", () => {
  it("1000 tokens, 100 billed per call, 163 reserved per call: 9 calls go through, the 10th is stopped, and a new grant reopens", async () => {
    const { server, clock, guard, call, deliver } = await loop(1000);
    const worst = (await guard.preview(ask(), { maxOutputTokens: 150 })).estimate.worstCaseTokens;
    expect(worst).toBe(163);

    for (let k = 0; k < 9; k++) {
      await call();
      await deliver();
      await clock.advance(20_000); // refreshes, and settleMs (15 s) passes: OpenMeter's balance alone counts
      expect(await guard.remaining("acme")).toMatchObject({ balance: 1000 - 100 * (k + 1), unsettled: 0, reserved: 0, available: 1000 - 100 * (k + 1) });
    }
    const error = await call().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BudgetExceededError);
    expect(error).toMatchObject({ reason: "exhausted", remaining: 100, required: 163 });
    expect(fake.requests).toHaveLength(9);
    expect(server.totals()).toEqual({ acme: { input: 540, output: 360 } });
    expect(server.entitlements.value("acme", FEATURE)).toMatchObject({ balance: 100, hasAccess: true });

    // The customer buys more: a grant through OpenMeter's API, picked up by the next refresh.
    const granted = await fetch(`${server.origin}/api/v2/customers/acme/entitlements/${FEATURE}/grants`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ amount: 500, effectiveAt: new Date(clock.wallNow()).toISOString() }),
    });
    expect(granted.status).toBe(201);
    await clock.advance(10_000);
    await call();
    expect(fake.requests).toHaveLength(10);
    expect(guard.stats()).toMatchObject({ allowed: 10, blocked: { exhausted: 1 } });
  });

  it("between refreshes this process's usage is subtracted at once; within settleMs of a read it may count twice (never zero times); after, once", async () => {
    const { clock, guard, call, deliver } = await loop(1000);
    await call();
    // Not delivered yet, no refresh yet: the balance read says 1000, the 100 metered here is subtracted.
    expect(await guard.remaining("acme")).toMatchObject({ balance: 1000, unsettled: 100, available: 900 });
    await deliver();
    await clock.advance(10_000); // a refresh 10 s after the call: OpenMeter has the events, and they are 10 s old
    expect(await guard.remaining("acme")).toMatchObject({ balance: 900, unsettled: 100, available: 800 });
    await clock.advance(10_000); // the next refresh: the call is 20 s old (> settleMs)
    expect(await guard.remaining("acme")).toMatchObject({ balance: 900, unsettled: 0, available: 900 });
  });

  it("while the metering handler cannot deliver, its usage stays subtracted past settleMs (with the `metering` link; without it, it would be forgotten)", async () => {
    for (const link of [true, false]) {
      const { server, clock, guard, call, metering } = await loop(1000, link);
      server.failNext(1000, { status: 503 });
      await call();
      await clock.advance(40_000); // retries fail; refreshes read 1000 (the events never arrived)
      expect(metering.stats().delivery?.state).not.toBe("healthy");
      expect(server.events).toHaveLength(0);
      expect((await guard.remaining("acme")).available).toBe(link ? 900 : 1000);
      await guard.close();
    }
  });
});
