/**
 * The rules: whether a call may go, given what is known of the customer's entitlement and of the
 * run's budget, and the message that says what to change when it may not. Pure functions of their
 * arguments; the guard (guard.ts) does the bookkeeping around them.
 */
import { describeModel } from "../call-info";
import type { CustomerState } from "./entitlements";
import type { BudgetExceededDetails, BudgetStopReason } from "./errors";
import { priceOf, worstCaseCost, type ModelPrices } from "./prices";
import type { RunAccount, RunLimits } from "./run-budget";

/** A call about to be made, as the rules see it. */
export interface Plan {
  runId: string;
  subject: string | undefined;
  model: string | undefined;
  provider: string | undefined;
  inputTokens: number;
  outputTokens: number;
  state: CustomerState | undefined;
  run: RunAccount | undefined;
  limits: RunLimits | undefined;
  root: string;
  ownRoot: boolean;
}

export type Decision = { allow: true; unchecked?: string; soft?: string } | { allow: false; message: string; details: BudgetExceededDetails };

export const ALLOW: Decision = Object.freeze({ allow: true });

/** What the entitlement rules need from the guard's options. */
export interface EntitlementRules {
  feature: string;
  /** Konnect v3: access only, no balance to reserve against. */
  accessOnly: boolean;
  firstCallTimeoutMs: number;
  onUnavailable: "allow" | "block";
  unknownCustomer: "allow" | "block";
  withoutEntitlement: "allow" | "block";
  /** The feature's units for so many tokens of a model. */
  units(input: number, output: number, model: string | undefined, provider: string | undefined): number;
}

export function checkEntitlement(plan: Plan, state: CustomerState, rules: EntitlementRules): Decision {
  // The common case first, with nothing allocated: a balance read, access, and room for the call.
  const reading = state.account.reading;
      if (state.status === "ready" && reading !== undefined && (reading.hasAccess || state.softLimit === true)) {
    const available = state.account.available();
    if (available === undefined || rules.accessOnly) return ALLOW;
    if (rules.units(plan.inputTokens, plan.outputTokens, plan.model, plan.provider) <= available) return ALLOW;
  }
  const feature = rules.feature;
  const who = `customer ${JSON.stringify(state.subject)}`;
  const base = { source: "entitlement" as const, subject: state.subject, feature, model: plan.model, runId: plan.runId, rootRunId: plan.root };
  const block = (reason: BudgetStopReason, message: string, extra: Partial<BudgetExceededDetails> = {}): Decision => ({
    allow: false,
    message,
    details: { ...base, reason, ...extra },
  });
  switch (state.status) {
    case "pending":
    case "unavailable": {
      const why = state.problem ?? `its first read did not answer within firstCallTimeoutMs (${rules.firstCallTimeoutMs} ms)`;
      if (rules.onUnavailable === "block") {
        return block("unavailable", `the entitlement \`${feature}\` of ${who} could not be read (${why}), and onUnavailable is "block": the call was not sent`);
      }
      return { allow: true, unchecked: `a model call for ${who} was let through without a balance to check: the entitlement \`${feature}\` could not be read (${why}); it is still metered (onUnavailable: "allow")` };
    }
    case "unknown_customer":
      if (rules.unknownCustomer === "allow") {
        return { allow: true, unchecked: `a model call for ${who}, whom OpenMeter does not know, was let through (unknownCustomer: "allow"): its usage is attributed to no customer until one has this key or subject` };
      }
      return block(
        "unknown_customer",
        `OpenMeter knows no ${who} (${state.problem ?? "404"}), so nobody would pay for this call: create the customer (its key or a usage-attribution subject key must be ${JSON.stringify(state.subject)}), map subjects with customerOf, or set unknownCustomer: "allow"`,
      );
    case "no_entitlement":
      if (rules.withoutEntitlement === "allow") {
        return { allow: true, unchecked: `a model call for ${who}, who has no entitlement \`${feature}\`, was let through (withoutEntitlement: "allow")` };
      }
      return block(
        "no_entitlement",
        `${who} has no entitlement \`${feature}\` (OpenMeter answers hasAccess: false), so the call was not sent: give the customer's plan a metered entitlement for \`${feature}\` (a soft limit for pay-as-you-go), or set withoutEntitlement: "allow"`,
      );
    case "ready":
      break;
  }
  const soft = state.softLimit === true;
  if (reading === undefined) return ALLOW; // not reached: a ready customer has a reading
  if (!reading.hasAccess && !soft) {
    return block("no_access", `OpenMeter says ${who} has no access to \`${feature}\` (its balance is used up): add a grant, or let the agent stop here`, {
      remaining: Math.max(0, state.account.available() ?? 0),
      required: rules.units(plan.inputTokens, plan.outputTokens, plan.model, plan.provider),
    });
  }
  const available = state.account.available();
  if (available === undefined || rules.accessOnly) return ALLOW;
  const required = rules.units(plan.inputTokens, plan.outputTokens, plan.model, plan.provider);
  if (required <= available) return ALLOW;
  const detail =
    `${fmt(available)} of \`${feature}\` left (balance ${fmt(reading.balance ?? 0)} at the last read, ${fmt(state.account.local)} metered here since, ` +
    `${fmt(state.account.reserved)} reserved by calls in flight); this call could need ${fmt(required)} (about ${fmt(plan.inputTokens)} prompt tokens + up to ${fmt(plan.outputTokens)} output)`;
  if (soft) return { allow: true, soft: `${who} is past its balance (soft limit, so the call goes through): ${detail}` };
  return block("exhausted", `${who} has ${detail}: shorten the prompt, lower the model's maxTokens, or add a grant`, { remaining: available, required });
}

export function checkRun(plan: Plan, limits: RunLimits, run: RunAccount | undefined, prices: ModelPrices | undefined): Decision | undefined {
  const base = { source: "run" as const, subject: plan.subject, model: plan.model, runId: plan.runId, rootRunId: plan.root };
  const usedTokens = run?.usedTokens ?? 0;
  const reservedTokens = run?.reservedTokens ?? 0;
  const worstTokens = plan.inputTokens + plan.outputTokens;
  if (limits.maxTokens !== undefined && usedTokens + reservedTokens + worstTokens > limits.maxTokens) {
    const left = limits.maxTokens - usedTokens - reservedTokens;
    return {
      allow: false,
      message:
        `this run (root ${plan.root}) may use ${fmt(limits.maxTokens)} tokens and has ${fmt(left)} left (${fmt(usedTokens)} used, ${fmt(reservedTokens)} reserved); ` +
        `this call could need ${fmt(worstTokens)} (about ${fmt(plan.inputTokens)} prompt tokens + up to ${fmt(plan.outputTokens)} output): let the agent wrap up, lower maxTokens, or raise runBudget.maxTokens`,
      details: { ...base, reason: "exhausted", budget: "tokens", remaining: left, required: worstTokens },
    };
  }
  if (limits.maxCost !== undefined) {
    const price = priceOf(prices, plan.model, plan.provider);
    if (price === undefined) {
      return {
        allow: false,
        message: `runBudget.maxCost is set but \`prices\` has no price for ${describeModel(plan.model)}, so this call cannot be counted: add prices[${JSON.stringify(plan.model ?? "<model>")}] = { input, output } (per token)`,
        details: { ...base, reason: "unpriced", budget: "cost" },
      };
    }
    const worstCost = worstCaseCost(price, plan.inputTokens, plan.outputTokens);
    const usedCost = run?.usedCost ?? 0;
    const reservedCost = run?.reservedCost ?? 0;
    if (usedCost + reservedCost + worstCost > limits.maxCost) {
      const left = limits.maxCost - usedCost - reservedCost;
      return {
        allow: false,
        message:
          `this run (root ${plan.root}) may cost ${money(limits.maxCost)} and has ${money(left)} left (${money(usedCost)} spent, ${money(reservedCost)} reserved); ` +
          `this call could cost ${money(worstCost)} (${describeModel(plan.model)}, about ${fmt(plan.inputTokens)} prompt tokens + up to ${fmt(plan.outputTokens)} output): ` +
          "let the agent wrap up, use a cheaper model, or raise runBudget.maxCost",
        details: { ...base, reason: "exhausted", budget: "cost", remaining: left, required: worstCost },
      };
    }
  }
  return undefined;
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

function money(n: number): string {
  return Number(n.toPrecision(6)).toString();
}
