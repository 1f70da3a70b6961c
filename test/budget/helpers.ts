/**
 * Shared setup for the budget guard's tests: the real ChatOpenAI against the local OpenAI fake, the
 * OpenMeter fake serving entitlements (customers, a metered feature, grants), one TestClock for both
 * the guard and the fake, and a logger that records.
 */
import { HumanMessage } from "@langchain/core/messages";
import { ChatOpenAI } from "@langchain/openai";
import { BudgetGuard, type BudgetGuardOptions } from "langchain-openmeter";
import { startOpenMeterServer, TestClock, type OpenMeterServer, type OpenMeterServerOptions } from "langchain-openmeter/testing";
import { recordingLogger } from "../support/memory-sink";
import type { OpenAIFake } from "../support/openai-server";

/** 2026-05-05T10:00:00Z: minute-aligned, so grants and usage periods start exactly here. */
export const T0 = Date.UTC(2026, 4, 5, 10, 0, 0);
export const FEATURE = "llm_tokens";

export interface Billing {
  server: OpenMeterServer;
  clock: TestClock;
}

/** An OpenMeter fake with customer `acme` (and `globex`, without the entitlement), a metered `llm_tokens` entitlement and a grant. */
export async function billing(options: { grant?: number; isSoftLimit?: boolean; server?: OpenMeterServerOptions } = {}): Promise<Billing> {
  const clock = new TestClock({ wall: T0 });
  const server = await startOpenMeterServer({ clock, ...options.server });
  server.customers.add({ key: "acme" });
  server.customers.add({ key: "globex" });
  server.entitlements.add({ customer: "acme", feature: FEATURE, meter: "llm_tokens", usagePeriod: { interval: "MONTH" }, isSoftLimit: options.isSoftLimit ?? false });
  if (options.grant !== undefined) server.grants.add({ customer: "acme", feature: FEATURE, amount: options.grant });
  return { server, clock };
}

export function guardFor(b: Billing, options: Partial<BudgetGuardOptions> = {}) {
  const log = recordingLogger();
  const guard = new BudgetGuard({ url: b.server.url, feature: FEATURE, clock: b.clock, logger: log.logger, ...options });
  return { guard, ...log };
}

export const openai = (fake: OpenAIFake, fields: Record<string, unknown> = {}) =>
  new ChatOpenAI({ model: "gpt-4o-mini", apiKey: "test", maxRetries: 0, maxTokens: 100, configuration: { baseURL: fake.baseURL }, ...fields });

export const ask = (text = "What is 1+1?") => [new HumanMessage(text)];

/** The settled results of calls, split. */
export function outcomes<T>(results: PromiseSettledResult<T>[]) {
  return {
    fulfilled: results.filter((r): r is PromiseFulfilledResult<T> => r.status === "fulfilled").map((r) => r.value),
    rejected: results.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => r.reason as unknown),
  };
}
