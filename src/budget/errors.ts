/**
 * The one error the budget guard raises into a call: thrown from the model's start callback, before
 * any request leaves for the provider, so an agent can catch it and degrade (a smaller model, less
 * context, fewer tools) or stop with an answer of its own.
 */

/** Which budget stopped the call: the customer's entitlement in OpenMeter, or this agent run's own budget. */
export type BudgetSource = "entitlement" | "run";

/**
 * Why the call was stopped:
 * - `exhausted`: its worst case does not fit in what is left (calls in flight reserve theirs first);
 * - `no_access`: OpenMeter says the customer has no access (`hasAccess: false`; Konnect's `has_access`);
 * - `no_entitlement`: the customer exists but has no entitlement for the feature (`withoutEntitlement: "block"`);
 * - `unknown_customer`: OpenMeter knows no such customer (`unknownCustomer: "block"`);
 * - `unavailable`: the entitlement could not be read and `onUnavailable` is `"block"`;
 * - `unpriced`: a run has a money budget (`maxCost`) and `prices` has no price for the call's model.
 */
export type BudgetStopReason = "exhausted" | "no_access" | "no_entitlement" | "unknown_customer" | "unavailable" | "unpriced";

/** What a `BudgetExceededError` carries besides its message. */
export interface BudgetExceededDetails {
  source: BudgetSource;
  reason: BudgetStopReason;
  /** The customer, when one was found for the call. */
  subject?: string | undefined;
  /** The entitlement's feature key (`source: "entitlement"`). */
  feature?: string | undefined;
  /** Which run budget (`source: "run"`): `tokens` (maxTokens) or `cost` (maxCost). */
  budget?: "tokens" | "cost" | undefined;
  /** What is left, after the calls in flight reserved theirs: the feature's units, tokens, or your price unit. */
  remaining?: number | undefined;
  /** What this call could need at worst, in the same unit: estimated prompt plus its maximum output. */
  required?: number | undefined;
  /** The model the call was for. */
  model?: string | undefined;
  /** LangChain's run id of the stopped call. */
  runId?: string | undefined;
  /** The outermost run it belongs to (the run budget's run). */
  rootRunId?: string | undefined;
}

const BRAND = Symbol.for("langchain-openmeter.budget-exceeded");

/**
 * A model call was stopped before it was made. Catch it around `invoke()` (or in a LangGraph node)
 * to answer differently; `BudgetExceededError.is(error)` also recognises one thrown by another copy
 * of this package.
 */
export class BudgetExceededError extends Error implements BudgetExceededDetails {
  override name = "BudgetExceededError";
  readonly source: BudgetSource;
  readonly reason: BudgetStopReason;
  readonly subject: string | undefined;
  readonly feature: string | undefined;
  readonly budget: "tokens" | "cost" | undefined;
  readonly remaining: number | undefined;
  readonly required: number | undefined;
  readonly model: string | undefined;
  readonly runId: string | undefined;
  readonly rootRunId: string | undefined;

  constructor(message: string, details: BudgetExceededDetails) {
    super(message);
    this.source = details.source;
    this.reason = details.reason;
    this.subject = details.subject;
    this.feature = details.feature;
    this.budget = details.budget;
    this.remaining = details.remaining;
    this.required = details.required;
    this.model = details.model;
    this.runId = details.runId;
    this.rootRunId = details.rootRunId;
    Object.defineProperty(this, BRAND, { value: true });
  }

  /** True for a BudgetExceededError, also one from another copy of this package (where `instanceof` fails). */
  static is(error: unknown): error is BudgetExceededError {
    return typeof error === "object" && error !== null && (error as Record<symbol, unknown>)[BRAND] === true;
  }
}
