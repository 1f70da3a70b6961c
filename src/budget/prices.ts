/**
 * Prices per token, for money budgets and cost previews. The fields follow OpenMeter's LLM-cost
 * pricing (`LLMCostModelPricing` in api/v3/openapi.yaml: input, output, cache read, cache write and
 * reasoning, each per token); the unit is yours (dollars, cents, credits), as long as every price and
 * every `maxCost` use the same one.
 */
import type { TokenUsage } from "../usage";

/** A model's price per token. */
export interface ModelPrice {
  /** Per input token (cache reads and writes use this unless priced below). */
  input: number;
  /** Per output token (reasoning uses this unless priced below). */
  output: number;
  /** Per input token read from the provider's cache. @default input */
  cacheRead?: number;
  /** Per input token written to the provider's cache. @default input */
  cacheWrite?: number;
  /** Per reasoning (thinking) output token. @default output */
  reasoning?: number;
}

/** Prices by model name (the model you ask for, as the events' `data.model`), or a function that looks one up. */
export type ModelPrices = Readonly<Record<string, ModelPrice>> | ((model: string | undefined, provider: string | undefined) => ModelPrice | undefined);

export function priceOf(prices: ModelPrices | undefined, model: string | undefined, provider: string | undefined): ModelPrice | undefined {
  if (prices === undefined) return undefined;
  if (typeof prices === "function") return prices(model, provider);
  return model !== undefined && Object.hasOwn(prices, model) ? prices[model] : undefined;
}

/** The most a call can cost: every estimated input token at the input price, every possible output token at the dearest output price. */
export function worstCaseCost(price: ModelPrice, inputTokens: number, outputTokens: number): number {
  const input = Math.max(price.input, price.cacheRead ?? 0, price.cacheWrite ?? 0);
  const output = Math.max(price.output, price.reasoning ?? 0);
  return inputTokens * input + outputTokens * output;
}

/** What a finished call cost, detail by detail: cache reads and writes and reasoning at their own prices where given. */
export function usageCost(price: ModelPrice, usage: TokenUsage): number {
  const cacheRead = usage.cacheRead ?? 0;
  const cacheWrite = usage.cacheWrite ?? 0;
  const reasoning = usage.reasoning ?? 0;
  return (
    (usage.input - cacheRead - cacheWrite) * price.input +
    cacheRead * (price.cacheRead ?? price.input) +
    cacheWrite * (price.cacheWrite ?? price.input) +
    (usage.output - reasoning) * price.output +
    reasoning * (price.reasoning ?? price.output)
  );
}

/** A price as options validation sees it: every given field a finite number >= 0. */
export function priceProblem(price: unknown): string | undefined {
  if (typeof price !== "object" || price === null) return "must be an object { input, output } of prices per token";
  const record = price as Record<string, unknown>;
  for (const field of ["input", "output"]) {
    if (record[field] === undefined) return `needs \`${field}\` (price per token)`;
  }
  for (const field of ["input", "output", "cacheRead", "cacheWrite", "reasoning"]) {
    const value = record[field];
    if (value !== undefined && !(typeof value === "number" && Number.isFinite(value) && value >= 0)) {
      return `\`${field}\` must be a number >= 0 (price per token), got ${String(value)}`;
    }
  }
  const unknown = Object.keys(record).filter((key) => !["input", "output", "cacheRead", "cacheWrite", "reasoning"].includes(key));
  if (unknown.length > 0) return `has unknown field${unknown.length > 1 ? "s" : ""} ${unknown.map((k) => `\`${k}\``).join(", ")} (allowed: input, output, cacheRead, cacheWrite, reasoning)`;
  return undefined;
}
