import { z } from "zod";
import type { Clock } from "../clock";
import type { TokenEstimator } from "../estimate";
import { meteringEventOptionsShape } from "../handler-options";
import type { Logger } from "../logger";
import { parseOptions } from "../option-errors";
import type { SubjectResolver } from "../subject";
import type { EntitlementApi } from "./openmeter-client";
import { priceProblem, type ModelPrices } from "./prices";
import type { RunLimits } from "./run-budget";

/** A finished or planned call's tokens, as `countUsage` sees them. */
export interface CallUsage {
  /** Input tokens (cache reads and writes included). */
  input: number;
  /** Output tokens (reasoning included). */
  output: number;
  /** The model asked for. */
  model: string | undefined;
  /** LangChain's `ls_provider`. */
  provider: string | undefined;
}

/** Something whose delivery the guard can watch: a `MeteringCallbackHandler` (its `stats().delivery`). */
export interface DeliveryWatch {
  stats(): { delivery?: { state: string } | undefined };
}

/** The budget guard's options: a customer's entitlement in OpenMeter, per-run budgets, or both. */
export interface BudgetGuardOptions {
  // ---- the customer's entitlement (leave `feature` out for run budgets only)
  /**
   * Where OpenMeter is: the events URL you give the metering handler (`…/api/v1/events`,
   * Konnect's `…/v3/openmeter/events`) or the API's base (`http://localhost:8888`, `https://us.api.konghq.com/v3`).
   * @default none (required with `feature`)
   */
  url?: string;
  /** Bearer token with read access to entitlements (OpenMeter Cloud or Konnect). @default none */
  apiKey?: string;
  /** Key of the customers' metered entitlement's feature (e.g. `llm_tokens`). @default none: no entitlement is checked */
  feature?: string;
  /** Which API: the v1 or v2 value endpoint, or Konnect's v3 `entitlement-access` (access only, no balance). @default "v3" for a `/v3` URL, else "v1" */
  api?: EntitlementApi;
  /** The customer id or key OpenMeter knows for a subject (v3 takes the customer's ULID). @default the subject itself */
  customerOf?: (subject: string) => string | Promise<string>;
  /** How many of the feature's units a call uses: `total` (input + output), `input`, `output`, or a function. @default "total" */
  countUsage?: "total" | "input" | "output" | ((usage: CallUsage) => number);
  /** How often each customer in use is read again, in the background. @default 10000 */
  refreshIntervalMs?: number;
  /** How long a new customer's first call waits for its first read before `onUnavailable` decides. @default 1000 */
  firstCallTimeoutMs?: number;
  /** Deadline of one read. @default 5000 */
  requestTimeoutMs?: number;
  /** How long metered usage takes to show in OpenMeter's balance (delivery + ingest): until then it is subtracted here. @default 15000 */
  settleMs?: number;
  /** A customer whose entitlement cannot be read (no balance known yet): `allow` lets the call through (it is still metered), `block` stops it. @default "allow" */
  onUnavailable?: "allow" | "block";
  /** OpenMeter knows no such customer (404): `block` stops the call (nobody would pay for it), `allow` lets it through. @default "block" */
  unknownCustomer?: "block" | "allow";
  /** The customer has no entitlement for `feature` (OpenMeter answers `hasAccess: false`): `block` or `allow`. @default "block" */
  withoutEntitlement?: "block" | "allow";
  /** The metering handler: while its delivery is not healthy, usage it could not deliver stays subtracted here. @default none */
  metering?: DeliveryWatch;

  // ---- per run
  /** Limits for every top-level run (the outermost invoke); `metadata: { runBudget: { … } }` sets them per invoke. @default none */
  runBudget?: RunLimits;
  /** Prices per token by model, for `maxCost` and cost previews. @default none */
  prices?: ModelPrices;

  // ---- estimating a call before it is made
  /** Output reserved for a call whose model sets no `maxTokens`. @default 4096 */
  defaultMaxOutputTokens?: number;
  /** How prompts are counted on the call path: `fast` (a one-pass estimate), `o200k_base` (exact, slower), or your counter. @default "fast" */
  estimateTokens?: "fast" | "o200k_base" | TokenEstimator;

  // ---- shared with MeteringCallbackHandler (give both the same)
  /** Invoke-metadata key that holds the customer; `configurable[subjectKey]` counts too. @default "subject" */
  subjectKey?: string;
  /** Subject for runs that name none. @default none: such calls are not checked against an entitlement */
  defaultSubject?: string;
  /** Computes the subject from a run's metadata and tags. @default none */
  resolveSubject?: SubjectResolver;
  /** Forget a call (settling its reservation as spent) or a run not heard from for this long. @default 3600000 */
  runTimeoutMs?: number;
  /** A warning is told once; its repeats are counted and summarised at most this often. @default 60000 */
  warningIntervalMs?: number;
  /** Time source for timers and reads (a `TestClock` in tests). @default the system clock */
  clock?: Clock;
  /** Where warnings go. @default the console */
  logger?: Logger;
}

const isFunction = (value: unknown) => typeof value === "function";
const ms = (name: string, min: number, def: number) =>
  z
    .number({ error: `\`${name}\` must be a number of milliseconds` })
    .int({ error: `\`${name}\` must be a whole number of milliseconds` })
    .min(min, { error: `\`${name}\` must be at least ${min}` })
    .default(def);
const limit = (name: string, integer: boolean) => {
  const base = z.number({ error: `\`runBudget.${name}\` must be a number` });
  return (integer ? base.int({ error: `\`runBudget.${name}\` must be a whole number of tokens` }) : base)
    .refine((n) => Number.isFinite(n) && n >= 0, { error: `\`runBudget.${name}\` must be 0 or more` })
    .optional();
};

export const runLimitsSchema = z.strictObject(
  { maxTokens: limit("maxTokens", true), maxCost: limit("maxCost", false) },
  { error: "`runBudget` must be an object { maxTokens?, maxCost? }" },
);

const schema = z
  .strictObject({
    url: z
      .string({ error: "`url` must be a string" })
      .refine((value) => URL.canParse(value) && /^https?:$/.test(new URL(value).protocol), {
        error: "`url` must be an http(s) URL: OpenMeter's base or the events URL (…/api/v1/events, …/v3/openmeter/events)",
      })
      .optional(),
    apiKey: z
      .preprocess((v) => (typeof v === "string" && v.trim() === "" ? undefined : v), z.string({ error: "`apiKey` must be a string" }).trim())
      .optional(),
    feature: z
      .string({ error: "`feature` must be a feature key string" })
      .regex(/^[a-z0-9]+(?:_[a-z0-9]+)*$/, { error: "`feature` must be a feature key: lowercase letters, digits and single underscores (^[a-z0-9]+(?:_[a-z0-9]+)*$)" })
      .max(64, { error: "`feature` must be at most 64 characters" })
      .optional(),
    api: z.enum(["v1", "v2", "v3"], { error: '`api` must be "v1", "v2" or "v3"' }).optional(),
    customerOf: z.custom<(subject: string) => string | Promise<string>>(isFunction, { error: "`customerOf` must be a function (subject) => customer id or key" }).optional(),
    countUsage: z
      .union([z.enum(["total", "input", "output"]), z.custom<(usage: CallUsage) => number>(isFunction)], {
        error: '`countUsage` must be "total", "input", "output" or a function (usage) => units',
      })
      .default("total"),
    refreshIntervalMs: ms("refreshIntervalMs", 1000, 10_000),
    firstCallTimeoutMs: ms("firstCallTimeoutMs", 0, 1000),
    requestTimeoutMs: ms("requestTimeoutMs", 100, 5000),
    settleMs: ms("settleMs", 0, 15_000),
    onUnavailable: z.enum(["allow", "block"], { error: '`onUnavailable` must be "allow" or "block"' }).default("allow"),
    unknownCustomer: z.enum(["block", "allow"], { error: '`unknownCustomer` must be "block" or "allow"' }).default("block"),
    withoutEntitlement: z.enum(["block", "allow"], { error: '`withoutEntitlement` must be "block" or "allow"' }).default("block"),
    metering: z
      .custom<DeliveryWatch>((v) => typeof v === "object" && v !== null && isFunction((v as DeliveryWatch).stats), {
        error: "`metering` must be the MeteringCallbackHandler (something with stats())",
      })
      .optional(),
    runBudget: runLimitsSchema.optional(),
    prices: z
      .union<[z.ZodType<ModelPrices>, z.ZodType<ModelPrices>]>([
        z.custom<ModelPrices>(isFunction),
        z.custom<ModelPrices>((v) => typeof v === "object" && v !== null && !Array.isArray(v)).superRefine((prices, context) => {
          for (const [model, price] of Object.entries(prices as Record<string, unknown>)) {
            const problem = priceProblem(price);
            if (problem) context.addIssue({ code: "custom", message: `\`prices[${JSON.stringify(model)}]\` ${problem}` });
          }
        }),
      ], { error: "`prices` must be { [model]: { input, output } } (per token) or a function (model, provider) => price" })
      .optional(),
    defaultMaxOutputTokens: z
      .number({ error: "`defaultMaxOutputTokens` must be a number of tokens" })
      .int({ error: "`defaultMaxOutputTokens` must be a whole number" })
      .min(1, { error: "`defaultMaxOutputTokens` must be at least 1" })
      .default(4096),
    estimateTokens: z
      .union([z.enum(["fast", "o200k_base"]), z.custom<TokenEstimator>(isFunction)], {
        error: '`estimateTokens` must be "fast", "o200k_base" or a function (text) => tokens',
      })
      .default("fast"),
    subjectKey: meteringEventOptionsShape.subjectKey,
    defaultSubject: meteringEventOptionsShape.defaultSubject,
    resolveSubject: meteringEventOptionsShape.resolveSubject,
    runTimeoutMs: meteringEventOptionsShape.runTimeoutMs,
    warningIntervalMs: meteringEventOptionsShape.warningIntervalMs,
    clock: meteringEventOptionsShape.clock,
    logger: meteringEventOptionsShape.logger,
  })
  .superRefine((options, context) => {
    if (options.feature !== undefined && options.url === undefined) {
      context.addIssue({ code: "custom", message: "`feature` needs `url`: where OpenMeter (or Konnect) answers for the customers' entitlements" });
    }
    if (options.url !== undefined && options.feature === undefined) {
      context.addIssue({ code: "custom", message: "`url` is set but `feature` is not: name the metered entitlement's feature key (e.g. `llm_tokens`)" });
    }
    if (options.feature === undefined && options.runBudget === undefined) {
      context.addIssue({ code: "custom", message: "nothing to guard: set `feature` (and `url`) for customers' entitlements, or `runBudget` for per-run limits" });
    }
    if (options.runBudget?.maxCost !== undefined && options.prices === undefined) {
      context.addIssue({ code: "custom", message: "`runBudget.maxCost` needs `prices` (per token, by model) to count costs" });
    }
  });

export type ResolvedBudgetGuardOptions = z.output<typeof schema>;

export function parseBudgetGuardOptions(options: unknown): ResolvedBudgetGuardOptions {
  return parseOptions(schema, options, "BudgetGuard");
}

/** Per-invoke limits from `metadata.runBudget`, or a problem to tell. */
export function parseRunLimits(value: unknown): { limits: RunLimits } | { problem: string } {
  const result = runLimitsSchema.safeParse(value);
  if (result.success) return { limits: result.data };
  return { problem: result.error.issues.map((issue) => issue.message).join("; ") };
}
