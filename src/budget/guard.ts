/**
 * The budget guard: a callback handler that stops a model call before it is sent when the call could
 * overspend, by raising a `BudgetExceededError` from the model's start callback.
 *
 * Why a callback stops the call: a handler built with `raiseError: true` is awaited inline
 * (`awaitHandlers` follows `raiseError` in @langchain/core's BaseCallbackHandler), and
 * CallbackManager.handleChatModelStart / handleLLMStart rethrow its error; the chat model awaits
 * those before `_generate` or `_streamResponseChunks` is called, so no request leaves. LangChain
 * then fires no end or error callback for that run (the metering handler is told through
 * blocked-runs.ts), and logs one line, "Error in handler BudgetGuard, handleLLMStart: …".
 *
 * Per call: the worst case (prompt estimate + maximum output) is checked against the customer's
 * balance (entitlements.ts, reservations.ts) and the run's budget (run-budget.ts), reserved in the
 * same synchronous step, and settled with the call's usage, read as the metering handler reads it
 * (usage.ts), when it ends.
 */
import { BaseCallbackHandler } from "@langchain/core/callbacks/base";
import type { Serialized } from "@langchain/core/load/serializable";
import type { BaseMessage, BaseMessageLike } from "@langchain/core/messages";
import { coerceMessageLikeToMessage } from "@langchain/core/messages";
import type { LLMResult } from "@langchain/core/outputs";
import { markRunBlocked } from "../blocked-runs";
import { describeModel, errorMessage, isAbort, modelOf, stringOr, toolsOf } from "../call-info";
import { systemClock, type Clock } from "../clock";
import type { SentPrompt } from "../estimate";
import { installLangChainHooks, METERING_HOOKS, type MeteringHooks } from "../langchain-hooks";
import { consoleLogger } from "../logger";
import { RunRegistry } from "../runs";
import { SubjectResolution } from "../subject-resolution";
import { WarningDigest } from "../unbilled";
import { extractUsage, fromUsageMetadata, type TokenUsage } from "../usage";
import { ALLOW, checkEntitlement, checkRun, type Decision, type EntitlementRules, type Plan } from "./decide";
import { EntitlementCache, type CustomerState, type EntitlementStatus } from "./entitlements";
import { BudgetExceededError, type BudgetStopReason } from "./errors";
import { counterFor, DEFAULT_MAX_OUTPUT_TOKENS, outputLimit, PromptEstimator, type CallEstimate } from "./estimate";
import { EntitlementClient } from "./openmeter-client";
import { parseBudgetGuardOptions, parseRunLimits, type BudgetGuardOptions, type CallUsage, type ResolvedBudgetGuardOptions } from "./options";
import { priceOf, usageCost, worstCaseCost, type ModelPrice } from "./prices";
import { RunBudgets, type RunAccount, type RunLimits } from "./run-budget";

/** A call between its start and its end, with what it reserved. */
interface GuardedCall {
  seenAt: number;
  readonly subject: string | undefined;
  readonly model: string | undefined;
  readonly provider: string | undefined;
  readonly inputTokens: number;
  /** Its maximum output (all completions). */
  readonly outputTokens: number;
  /** The customer's account it reserved `units` in. */
  readonly customer: CustomerState | undefined;
  readonly units: number;
  readonly run: RunAccount | undefined;
  readonly runTokens: number;
  readonly runCost: number;
  readonly price: ModelPrice | undefined;
  /** The call is its own top-level run. */
  readonly ownRoot: boolean;
  streamedChars: number;
}

/** What the guard did, for `stats()`. */
export interface BudgetGuardStats {
  /** Model calls checked. */
  checked: number;
  /** Calls let through. */
  allowed: number;
  /** Calls stopped, by reason. */
  blocked: Record<BudgetStopReason, number>;
  /** Of the calls stopped, those stopped by a run budget. */
  blockedByRun: number;
  /** Calls let through without a balance to check: unreadable entitlement (`onUnavailable: "allow"`), or `unknownCustomer` / `withoutEntitlement` `"allow"`. */
  unchecked: number;
  /** Calls let through past the balance because the entitlement has a soft limit. */
  softLimitOverruns: number;
  /** Calls without a subject (not checked against an entitlement). */
  noSubject: number;
  /** Calls in flight. */
  open: number;
  /** Entitlement reads that answered, and that failed. */
  reads: number;
  failedReads: number;
  /** Customers whose entitlement is cached. */
  customers: number;
}

/** A customer's balance as the guard sees it now. */
export interface CustomerBudget {
  subject: string;
  feature: string;
  status: EntitlementStatus;
  /** OpenMeter's `hasAccess` at the last read. */
  hasAccess: boolean | undefined;
  /** OpenMeter's balance at the last read (undefined for access-only entitlements and Konnect v3). */
  balance: number | undefined;
  /** Metered by this process and not in that balance yet. */
  unsettled: number;
  /** Reserved by this process's calls in flight. */
  reserved: number;
  /** balance − unsettled − reserved: what the next call may use. */
  available: number | undefined;
  softLimit: boolean | undefined;
  /** Why the last read failed, or what OpenMeter said of an unknown customer. */
  problem: string | undefined;
}

/** What `preview()` says about a call that has not been made. */
export interface BudgetPreview {
  /** The call's size, counted as the guard counts it on the call path. */
  estimate: CallEstimate;
  /** Whether the guard would let it through now. */
  allowed: boolean;
  /** Why not, when it would not. */
  reason?: BudgetStopReason;
  /** The message the guard would raise. */
  message?: string;
  /** The customer's balance, when a subject and a feature are given. */
  customer?: CustomerBudget;
}

/** What preview() is told about the call. */
export interface PreviewOptions {
  /** The customer. @default none (no entitlement is checked) */
  subject?: string;
  /** The model's name, for prices. @default none */
  model?: string;
  /** The call's output limit. @default the guard's defaultMaxOutputTokens */
  maxOutputTokens?: number;
  /** Tool definitions sent with the call. @default none */
  tools?: unknown;
  /** Limits of the run it would belong to. @default the guard's runBudget */
  runBudget?: RunLimits;
}

const REASONS: readonly BudgetStopReason[] = ["exhausted", "no_access", "no_entitlement", "unknown_customer", "unavailable", "unpriced"];

/**
 * Stops a model call before it is sent when it could overspend: the customer's metered entitlement in
 * OpenMeter (or Konnect), the run's own token or money budget, or both. Raises `BudgetExceededError`.
 *
 * @example
 * const guard = new BudgetGuard({ url: process.env.API_URL, apiKey: process.env.API_KEY, feature: "llm_tokens" });
 * await agent.invoke(input, { callbacks: [metering, guard], metadata: { subject: "acme" } });
 */
export class BudgetGuard extends BaseCallbackHandler {
  name = "BudgetGuard";
  readonly #options: ResolvedBudgetGuardOptions;
  readonly #clock: Clock;
  readonly #warnings: WarningDigest;
  readonly #subjects: SubjectResolution;
  readonly #prompts: PromptEstimator;
  readonly #client: EntitlementClient | undefined;
  readonly #entitlements: EntitlementCache | undefined;
  readonly #runs: RunBudgets;
  readonly #calls: RunRegistry<GuardedCall>;
  readonly #count: (usage: CallUsage) => number;
  readonly #stats = { checked: 0, allowed: 0, blockedByRun: 0, unchecked: 0, softLimitOverruns: 0, noSubject: 0 };
  readonly #blocked = Object.fromEntries(REASONS.map((reason) => [reason, 0])) as Record<BudgetStopReason, number>;
  #closed = false;

  constructor(options: BudgetGuardOptions) {
    // raiseError makes LangChain await this handler inline and rethrow what it throws: the only way
    // a callback can stop the call. Retriever and custom events are never needed.
    super({ raiseError: true, ignoreRetriever: true, ignoreCustomEvent: true });
    const o = parseBudgetGuardOptions(options);
    this.#options = o;
    this.#clock = o.clock ?? systemClock;
    this.#warnings = new WarningDigest(o.logger ?? consoleLogger, this.#clock, o.warningIntervalMs);
    this.#subjects = new SubjectResolution(o, (key, message, summary) => this.#warnings.warn(key, message, summary));
    this.#prompts = new PromptEstimator(counterFor(o.estimateTokens));
    this.#count = usageCounter(o.countUsage, this.#warnings);
    this.#runs = new RunBudgets(this.#clock, o.runTimeoutMs);
    this.#calls = new RunRegistry<GuardedCall>(o.runTimeoutMs, this.#clock, (runId, call) => this.#expire(runId, call));
    if (o.feature !== undefined && o.url !== undefined) {
      this.#client = new EntitlementClient({ url: o.url, apiKey: o.apiKey, api: o.api, feature: o.feature, timeoutMs: o.requestTimeoutMs, clock: this.#clock });
      const metering = o.metering;
      this.#entitlements = new EntitlementCache(this.#client, {
        refreshIntervalMs: o.refreshIntervalMs,
        firstCallTimeoutMs: o.firstCallTimeoutMs,
        settleMs: o.settleMs,
        customerOf: o.customerOf,
        clock: this.#clock,
        warnings: this.#warnings,
        holdLocal: () => deliveryTroubled(metering),
      });
    }
    // Shares the metering handler's hooks: `configurable: { subject }` reaches this handler's metadata too.
    const hooks: MeteringHooks = {
      subjectKey: this.#subjects.subjectKey,
      unmeteredStreamEvents: (model) =>
        this.#warnings.warn(
          `streamEvents:${model}`,
          `model.streamEvents() without \`version\` was called on ${describeModel(model)}: LangChain runs it without callbacks, so the budget guard cannot check it. ` +
            'Pass `{ version: "v2" }`, or use .stream() or .invoke().',
          "model.streamEvents() calls without `version` (not checked)",
        ),
    };
    Object.defineProperty(this, METERING_HOOKS, { value: hooks });
    installLangChainHooks();
  }

  /** One guard holds one set of accounts: LangChain's copies must share it. */
  override copy(): this {
    return this;
  }

  // ---- LangChain hooks. Only the start hooks throw (on purpose); the rest never do.

  override handleChatModelStart(
    _llm: Serialized,
    messages: BaseMessage[][],
    runId: string,
    parentRunId?: string,
    extraParams?: Record<string, unknown>,
    tags?: string[],
    metadata?: Record<string, unknown>,
  ): void | Promise<void> {
    return this.#start(runId, parentRunId, extraParams, tags, metadata, { messages: messages?.[0], tools: toolsOf(extraParams) });
  }

  override handleLLMStart(
    _llm: Serialized,
    prompts: string[],
    runId: string,
    parentRunId?: string,
    extraParams?: Record<string, unknown>,
    tags?: string[],
    metadata?: Record<string, unknown>,
  ): void | Promise<void> {
    return this.#start(runId, parentRunId, extraParams, tags, metadata, { prompts, tools: toolsOf(extraParams) });
  }

  override handleLLMNewToken(token: string, _idx: unknown, runId: string): void {
    const call = this.#calls.touch(runId);
    if (call !== undefined && typeof token === "string") call.streamedChars += token.length;
  }

  override handleLLMEnd(output: LLMResult, runId: string, _parentRunId?: string, _tags?: string[], extraParams?: Record<string, unknown>): void {
    try {
      const taken = this.#calls.take(runId);
      if (taken === undefined || taken.late) return; // not checked here, or already settled when it expired
      const call = taken.entry;
      if (extraParams?.cached === true) return this.#settle(runId, call, ZERO);
      const result = extractUsage(output);
      this.#settle(runId, call, result.ok ? result.usage : this.#estimatedUsage(call, outputChars(output)));
    } catch (error) {
      this.#warnings.logger.error(`budget guard: could not settle run ${runId}: ${errorMessage(error)}`);
    }
  }

  override handleLLMError(error: unknown, runId: string): void {
    try {
      const taken = this.#calls.take(runId);
      if (taken === undefined || taken.late) return;
      const call = taken.entry;
      // What the provider billed, where it said (an abort's partial message), else an estimate when
      // output had started (or the call was aborted: it may have been billed); nothing for a call
      // that failed before the provider answered.
      const partial = (error as { partialOutput?: { usage_metadata?: unknown } } | null)?.partialOutput?.usage_metadata;
      const reported = typeof partial === "object" && partial !== null ? fromUsageMetadata(partial as Record<string, unknown>) : undefined;
      if (reported?.ok) return this.#settle(runId, call, reported.usage);
      this.#settle(runId, call, call.streamedChars > 0 || isAbort(error) ? this.#estimatedUsage(call, call.streamedChars) : ZERO);
    } catch (caught) {
      this.#warnings.logger.error(`budget guard: could not settle failed run ${runId}: ${errorMessage(caught)}`);
    }
  }

  // Typed as declared; LangChain really calls it as (chain, inputs, runId, parentRunId, tags, metadata, ...).
  override handleChainStart(_chain: Serialized, _inputs: unknown, runId: string, parentRunId?: string): void {
    this.#runs.started(runId, parentRunId);
  }

  override handleChainEnd(_outputs: unknown, runId: string): void {
    this.#runEnded(runId);
  }

  override handleChainError(_error: unknown, runId: string): void {
    this.#runEnded(runId);
  }

  override handleToolStart(_tool: Serialized, _input: string, runId: string, parentRunId?: string): void {
    this.#runs.started(runId, parentRunId);
  }

  override handleToolEnd(_output: unknown, runId: string): void {
    this.#runEnded(runId);
  }

  override handleToolError(_error: unknown, runId: string): void {
    this.#runEnded(runId);
  }

  // ---- Public API

  /** A customer's balance as the guard sees it (its first read is waited for, at most `firstCallTimeoutMs`). */
  async remaining(subject: string): Promise<CustomerBudget> {
    const cache = this.#requireEntitlements("remaining()");
    const state = cache.customer(subject);
    if (state.status === "pending") await cache.waitForFirstRead(state);
    return this.#describeCustomer(state);
  }

  /**
   * The preview: what a call would send and could use, and whether the guard would let it through
   * now, with the message it would raise. Nothing is reserved.
   */
  async preview(input: string | readonly BaseMessageLike[], options: PreviewOptions = {}): Promise<BudgetPreview> {
    const messages = typeof input === "string" ? [coerceMessageLikeToMessage(["human", input])] : input.map((m) => coerceMessageLikeToMessage(m));
    const inputTokens = this.#prompts.tokens({ messages, tools: options.tools });
    const maxOutputTokens = options.maxOutputTokens ?? this.#options.defaultMaxOutputTokens;
    const estimate: CallEstimate = { model: options.model, inputTokens, maxOutputTokens, worstCaseTokens: inputTokens + maxOutputTokens };
    const price = priceOf(this.#options.prices, options.model, undefined);
    if (price !== undefined) {
      const cost = { input: worstCaseCost(price, inputTokens, 0), maxOutput: worstCaseCost(price, 0, maxOutputTokens), worstCase: 0 };
      cost.worstCase = cost.input + cost.maxOutput;
      estimate.cost = cost;
    }
    let state: CustomerState | undefined;
    if (options.subject !== undefined && this.#entitlements !== undefined) {
      state = this.#entitlements.customer(options.subject);
      if (state.status === "pending") await this.#entitlements.waitForFirstRead(state);
    }
    const limits = options.runBudget ?? this.#options.runBudget;
    const plan: Plan = {
      runId: "preview",
      subject: options.subject,
      model: options.model,
      provider: undefined,
      inputTokens,
      outputTokens: maxOutputTokens,
      state,
      run: undefined,
      limits,
      root: "preview",
      ownRoot: true,
    };
    const decision = this.#decide(plan);
    const preview: BudgetPreview = { estimate, allowed: decision.allow };
    if (!decision.allow) {
      preview.reason = decision.details.reason;
      preview.message = decision.message;
    }
    if (state !== undefined) preview.customer = this.#describeCustomer(state);
    return preview;
  }

  /** Reads entitlements now instead of at the next interval: one customer's, or every cached one. */
  refresh(subject?: string): Promise<void> {
    return this.#requireEntitlements("refresh()").refresh(subject);
  }

  /** What the guard did. */
  stats(): BudgetGuardStats {
    const reads = this.#entitlements?.stats() ?? { reads: 0, failedReads: 0, customers: 0 };
    return { ...this.#stats, allowed: this.#stats.allowed, blocked: { ...this.#blocked }, open: this.#calls.size, ...reads };
  }

  /** Stops the background reads and closes their connections. Later calls are let through unchecked (and told). Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#entitlements?.close();
    this.#warnings.flush();
    await this.#client?.close();
  }

  // ---- Internals

  #start(
    runId: string,
    parentRunId: string | undefined,
    extraParams: Record<string, unknown> | undefined,
    tags: string[] | undefined,
    metadata: Record<string, unknown> | undefined,
    sent: SentPrompt,
  ): void | Promise<void> {
    if (this.#closed) {
      this.#warnings.warn("closed", "a model call started after the budget guard was closed: it was not checked (create a new guard)", "model calls after close() (not checked)");
      return;
    }
    const plan = this.#plan(runId, parentRunId, extraParams, tags, metadata, sent);
    // Only a customer new to this process waits, for its first read (bounded by firstCallTimeoutMs).
    if (plan.state?.status === "pending") return this.#entitlements!.waitForFirstRead(plan.state).then(() => this.#admit(plan));
    this.#admit(plan);
  }

  #plan(
    runId: string,
    parentRunId: string | undefined,
    extraParams: Record<string, unknown> | undefined,
    tags: string[] | undefined,
    metadata: Record<string, unknown> | undefined,
    sent: SentPrompt,
  ): Plan {
    const model = modelOf(metadata, extraParams);
    const provider = stringOr(metadata?.ls_provider);
    const subject = this.#subjects.resolve(metadata, tags, runId, parentRunId);
    const inputTokens = this.#prompts.tokens(sent);
    const limit = outputLimit(extraParams, metadata);
    const outputTokens = (limit.maxTokens ?? this.#options.defaultMaxOutputTokens ?? DEFAULT_MAX_OUTPUT_TOKENS) * limit.completions;
    let state: CustomerState | undefined;
    if (this.#entitlements !== undefined) {
      if (subject !== undefined) state = this.#entitlements.customer(subject);
      else {
        this.#stats.noSubject++;
        this.#warnings.warn(
          "no-subject",
          `a model call had no subject, so it was not checked against customers' entitlements (run budgets still apply). ` +
            `Pass the customer as \`metadata: { ${this.#subjects.subjectKey}: "<customer id>" }\`, or set \`defaultSubject\` or \`resolveSubject\` (as for the metering handler).`,
          "model calls without a subject (not checked against an entitlement)",
        );
      }
    }
    const { root, seen: parentSeen } = this.#runs.rootOf(runId, parentRunId);
    // No parent, yet LangGraph's metadata: a graph ran it, with no callbacks the guard could see.
    const seen = parentSeen && !(parentRunId === undefined && typeof metadata?.langgraph_node === "string");
    let limits = this.#options.runBudget;
    const own = metadata?.runBudget;
    if (own !== undefined) {
      const parsed = parseRunLimits(own);
      if ("limits" in parsed) limits = parsed.limits;
      else this.#warnings.warn(`runBudget:${parsed.problem}`, `metadata.runBudget was ignored: ${parsed.problem}`, "metadata.runBudget values ignored");
    }
    if (limits !== undefined && !seen) {
      this.#warnings.warn(
        "unseen-parent",
        "a model call ran inside a chain or graph the budget guard did not see start, so its run budget counts from that chain (or from the call alone), " +
          "not from the outermost invoke(): pass the guard in the outermost invoke's `callbacks` (not only on the model) to budget whole agent runs",
        "model calls whose run the guard could not see (run budget counted per parent)",
      );
    }
    return { runId, subject, model, provider, inputTokens, outputTokens, state, run: undefined, limits, root, ownRoot: root === runId };
  }

  /** Checks and reserves in one synchronous step: calls started together see each other's reservations. */
  #admit(plan: Plan): void {
    this.#stats.checked++;
    if (plan.limits !== undefined) plan.run = this.#runs.account(plan.root, plan.limits);
    const decision = this.#decide(plan);
    if (!decision.allow) {
      this.#blocked[decision.details.reason]++;
      if (decision.details.source === "run") this.#stats.blockedByRun++;
      if (plan.ownRoot) this.#runs.modelRootEnded(plan.root);
      markRunBlocked(plan.runId);
      throw new BudgetExceededError(decision.message, decision.details);
    }
    this.#stats.allowed++;
    if (decision.unchecked !== undefined) {
      this.#stats.unchecked++;
      this.#warnings.warn("unchecked", decision.unchecked, "model calls let through without a balance to check");
    }
    if (decision.soft !== undefined) {
      this.#stats.softLimitOverruns++;
      this.#warnings.warn(`soft:${plan.subject}`, decision.soft, "model calls let through past a soft limit");
    }
    const state = plan.state;
    const units = state !== undefined && this.#entitlements?.api !== "v3" ? this.#units(plan.inputTokens, plan.outputTokens, plan.model, plan.provider) : 0;
    if (state !== undefined) state.account.reserve(units);
    const run = plan.run;
    const price = priceOf(this.#options.prices, plan.model, plan.provider);
    const runTokens = run !== undefined ? plan.inputTokens + plan.outputTokens : 0;
    const runCost = run?.limits.maxCost !== undefined && price !== undefined ? worstCaseCost(price, plan.inputTokens, plan.outputTokens) : 0;
    if (run !== undefined) {
      run.reservedTokens += runTokens;
      run.reservedCost += runCost;
      run.open.add(plan.runId);
    }
    this.#calls.set(plan.runId, {
      seenAt: this.#clock.now(),
      subject: plan.subject,
      model: plan.model,
      provider: plan.provider,
      inputTokens: plan.inputTokens,
      outputTokens: plan.outputTokens,
      customer: state,
      units,
      run,
      runTokens,
      runCost,
      price,
      ownRoot: plan.ownRoot,
      streamedChars: 0,
    });
  }

  #decide(plan: Plan): Decision {
    const entitlement = plan.state !== undefined ? checkEntitlement(plan, plan.state, this.#rules()) : ALLOW;
    if (!entitlement.allow) return entitlement;
    const run = plan.limits !== undefined ? checkRun(plan, plan.limits, plan.run, this.#options.prices) : undefined;
    return run ?? entitlement;
  }

  #rulesCache: EntitlementRules | undefined;
  #rules(): EntitlementRules {
    const entitlements = this.#entitlements!;
    const o = this.#options;
    this.#rulesCache ??= {
      feature: entitlements.feature,
      accessOnly: entitlements.api === "v3",
      firstCallTimeoutMs: o.firstCallTimeoutMs,
      onUnavailable: o.onUnavailable,
      unknownCustomer: o.unknownCustomer,
      withoutEntitlement: o.withoutEntitlement,
      units: (input, output, model, provider) => this.#units(input, output, model, provider),
    };
    return this.#rulesCache;
  }

  /** A call ended: its reservation goes, its usage counts (as metered now). */
  #settle(runId: string, call: GuardedCall, usage: TokenUsage): void {
    if (call.customer !== undefined) {
      call.customer.account.release(call.units);
      if (this.#entitlements?.api !== "v3") call.customer.account.record(this.#clock.wallNow(), this.#units(usage.input, usage.output, call.model, call.provider));
    }
    const run = call.run;
    if (run !== undefined) {
      run.reservedTokens = Math.max(0, run.reservedTokens - call.runTokens);
      run.reservedCost = Math.max(0, run.reservedCost - call.runCost);
      run.usedTokens += usage.input + usage.output;
      if (call.price !== undefined) run.usedCost += usageCost(call.price, usage);
      run.open.delete(runId);
      if (call.ownRoot) this.#runs.modelRootEnded(run.rootRunId);
    }
  }

  /** A call not heard from for runTimeoutMs (its end never came): counted as its worst case. */
  #expire(runId: string, call: GuardedCall): void {
    this.#settle(runId, call, { input: call.inputTokens, output: call.outputTokens, inputEstimated: true, outputEstimated: true });
  }

  /** A chain or tool ended; a root's calls still open (their end never came) are settled at their worst case. */
  #runEnded(runId: string): void {
    const account = this.#runs.ended(runId);
    if (account === undefined || account.open.size === 0) return;
    for (const open of [...account.open]) {
      const taken = this.#calls.take(open);
      if (taken !== undefined && !taken.late) this.#expire(open, taken.entry);
    }
  }

  #estimatedUsage(call: GuardedCall, outputChars: number): TokenUsage {
    return { input: call.inputTokens, output: Math.ceil(outputChars / 4), inputEstimated: true, outputEstimated: true };
  }

  #units(input: number, output: number, model: string | undefined, provider: string | undefined): number {
    switch (this.#options.countUsage) {
      case "total":
        return input + output;
      case "input":
        return input;
      case "output":
        return output;
      default:
        return this.#count({ input, output, model, provider });
    }
  }

  #describeCustomer(state: CustomerState): CustomerBudget {
    const reading = state.account.reading;
    return {
      subject: state.subject,
      feature: this.#entitlements!.feature,
      status: state.status,
      hasAccess: reading?.hasAccess,
      balance: reading?.balance,
      unsettled: state.account.local,
      reserved: state.account.reserved,
      available: state.account.available(),
      softLimit: state.softLimit,
      problem: state.problem,
    };
  }

  #requireEntitlements(what: string): EntitlementCache {
    if (this.#entitlements === undefined) throw new TypeError(`BudgetGuard.${what} needs an entitlement to read: set \`url\` and \`feature\``);
    return this.#entitlements;
  }
}


const ZERO: TokenUsage = { input: 0, output: 0, inputEstimated: false, outputEstimated: false };

function usageCounter(setting: ResolvedBudgetGuardOptions["countUsage"], warnings: WarningDigest): (usage: CallUsage) => number {
  if (setting === "total") return (u) => u.input + u.output;
  if (setting === "input") return (u) => u.input;
  if (setting === "output") return (u) => u.output;
  return (usage) => {
    try {
      const units = setting(usage);
      if (typeof units === "number" && Number.isFinite(units) && units >= 0) return units;
      warnings.warn("countUsage:value", `countUsage returned ${String(units)}, not a number >= 0: input + output tokens were counted instead`, "countUsage results replaced by input + output");
    } catch (error) {
      warnings.warn("countUsage:throw", `countUsage threw (${errorMessage(error)}): input + output tokens were counted instead`, "countUsage results replaced by input + output");
    }
    return usage.input + usage.output;
  };
}

function deliveryTroubled(metering: { stats(): { delivery?: { state: string } | undefined } } | undefined): boolean {
  if (metering === undefined) return false;
  try {
    const state = metering.stats().delivery?.state;
    return state !== undefined && state !== "healthy";
  } catch {
    return false;
  }
}

function outputChars(output: LLMResult): number {
  let chars = 0;
  for (const batch of output?.generations ?? []) for (const generation of batch ?? []) chars += typeof generation?.text === "string" ? generation.text.length : 0;
  return chars;
}
