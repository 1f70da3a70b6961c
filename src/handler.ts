import { BaseCallbackHandler } from "@langchain/core/callbacks/base";
import { awaitAllCallbacks } from "@langchain/core/callbacks/promises";
import type { Serialized } from "@langchain/core/load/serializable";
import type { BaseMessage, UsageMetadata } from "@langchain/core/messages";
import type { ChatGenerationChunk, GenerationChunk, LLMResult } from "@langchain/core/outputs";
import { buildUsageEvents, RESERVED_DATA_KEYS, type UsageEvent } from "./events";
import { parseHandlerOptions, type MeteringEventOptions, type ResolvedEventOptions } from "./handler-options";
import { IngestClient, type IngestStats } from "./ingest/client";
import { IngestError } from "./ingest/errors";
import { RunWatch } from "./drain";
import { joinLifecycle } from "./ingest/lifecycle";
import { type Clock, type ClockTimer, systemClock } from "./clock";
import type { IngestOptions } from "./ingest/options";
import type { EventSink, FlushOptions } from "./ingest/sink";
import { consoleLogger, OnceLogger } from "./logger";
import { selectMetadata, type SkippedValue } from "./metadata";
import { RunRegistry } from "./runs";
import { correctStreamedUsage, streamEventsOverCount, StreamUsageTracker } from "./stream-usage";
import { checkSubject, type SubjectCheck } from "./subject";
import { extractUsage } from "./usage";

/** After a call inside a chain the handler cannot see ends, how long shutdown waits for the run's next call. */
const QUIET_AFTER_INVISIBLE_RUN_MS = 1000;

/** The handler's options: how runs become events, and (unless `client` is given) the ingest client's. */
export type MeteringCallbackHandlerOptions = MeteringEventOptions & Partial<IngestOptions>;

/** A model run between its start and end callbacks: what the end callback no longer carries. */
interface ModelRun {
  seenAt: number;
  readonly subject: string;
  readonly metadata: Record<string, unknown> | undefined;
  readonly model: string | undefined;
  readonly provider: string | undefined;
  /** Inside a chain this handler does not see: another call of the same run may follow it. */
  readonly invisibleParent: boolean;
  stream?: StreamUsageTracker;
}

/** What the handler did, for `stats()`. */
export interface MeteringStats {
  /** Model runs whose usage became events. */
  metered: number;
  /** Runs not billed because no subject could be found. */
  missingSubject: number;
  /** Runs that ended without usable token counts. */
  missingUsage: number;
  /** LangChain cache hits (nothing billed: they cost nothing). */
  cacheHits: number;
  /** Runs that failed (nothing billed). */
  failed: number;
  /** Runs forgotten after `runTimeoutMs` without an end. */
  abandoned: number;
  /** Runs that ended after being forgotten (billed all the same, while still remembered). */
  lateEnds: number;
  /** Runs currently between start and end. */
  open: number;
  /** What the ingest client did with the events, when the client counts (an `IngestClient` does). */
  delivery?: IngestStats;
}

/**
 * Meters every LangChain model call: at the end of each run it reads the provider's token usage and
 * hands an input and an output CloudEvent to the ingest client. It does no I/O and never throws into
 * the user's call; delivery, batching and retries belong to the client.
 *
 * @example
 * const handler = new MeteringCallbackHandler({ url: process.env.OPENMETER_URL, apiKey: process.env.OPENMETER_API_KEY });
 * const model = new ChatOpenAI({ model: "gpt-4o-mini", callbacks: [handler] });
 * await model.invoke("Hello", { metadata: { subject: "acme" } });
 * await handler.flush();
 */
export class MeteringCallbackHandler extends BaseCallbackHandler {
  name = "MeteringCallbackHandler";
  /** Where events go: the `IngestClient` created from the options, or the `client` passed in. */
  readonly client: EventSink;

  readonly #options: ResolvedEventOptions;
  /** A client passed in belongs to the caller: shutdown() flushes it but leaves it running. */
  readonly #ownsClient: boolean;
  readonly #warnings: OnceLogger;
  readonly #models: RunRegistry<ModelRun>;
  readonly #stats = { metered: 0, missingSubject: 0, missingUsage: 0, cacheHits: 0, failed: 0, abandoned: 0, lateEnds: 0 };
  /** Later starts are not metered (shutdown finished draining). */
  #closed = false;
  #clientClosed = false;
  #shutdown: Promise<void> | undefined;
  readonly #clock: Clock;
  readonly #shutdownTimeoutMs: number;
  /** What still runs, for shutdown's drain. */
  readonly #watch: RunWatch;
  readonly #signalParticipant = { onSignal: () => this.shutdown() };
  #leaveLifecycle: (() => void) | undefined;
  readonly #onError: ((error: IngestError) => void) | undefined;

  constructor(options: MeteringCallbackHandlerOptions);
  constructor(url: string, apiKey?: string, options?: Omit<MeteringCallbackHandlerOptions, "url" | "apiKey">);
  constructor(
    urlOrOptions: string | MeteringCallbackHandlerOptions,
    apiKey?: string,
    rest?: Omit<MeteringCallbackHandlerOptions, "url" | "apiKey">,
  ) {
    // Never raise into the user's call. Whether LangChain runs the hooks in the background is the
    // user's choice (LANGCHAIN_CALLBACKS_BACKGROUND): they are cheap and synchronous either way.
    super({
      raiseError: false,
      // Only model runs matter. LangChain already hands an enclosing run's metadata (the subject)
      // down to every child run, and each ignored kind spares a task per run on its shared queue.
      // Chain runs are watched (start and end only) so that shutdown knows a run under way may
      // still call a model; agent, retriever and custom events are never needed.
      ignoreAgent: true,
      ignoreRetriever: true,
      ignoreCustomEvent: true,
    });

    const { events, ingest, lifecycle } = parseHandlerOptions(normaliseArguments(urlOrOptions, apiKey, rest));
    this.#options = events;
    const logger = events.logger ?? consoleLogger;
    this.#warnings = new OnceLogger(logger);
    this.#ownsClient = events.client === undefined;
    this.#onError = ingest?.onError;
    this.#clock = lifecycle.clock ?? systemClock;
    this.#shutdownTimeoutMs = lifecycle.shutdownTimeoutMs;
    this.#watch = new RunWatch(this.#clock, events.runTimeoutMs, QUIET_AFTER_INVISIBLE_RUN_MS);
    // On SIGTERM/SIGINT the handler, not its client, shuts down: calls under way are waited for and billed.
    this.client = events.client ?? new IngestClient({ ...(ingest as IngestOptions), handleSignals: false });
    if (lifecycle.handleSignals) this.#leaveLifecycle = joinLifecycle(this.#signalParticipant, { signals: true });

    this.#models = new RunRegistry(this.#options.runTimeoutMs);
    streamEventsOverCount(); // reads a package.json once, here: callbacks do no I/O
  }

  /** One handler owns one client: LangChain's copies must share it, not build another. */
  override copy(): this {
    return this;
  }

  // ---- LangChain hooks: no I/O, no throw; everything here runs on LangChain's shared callback queue.

  override handleChatModelStart(
    _llm: Serialized,
    _messages: BaseMessage[][],
    runId: string,
    parentRunId?: string,
    extraParams?: Record<string, unknown>,
    tags?: string[],
    metadata?: Record<string, unknown>,
  ): void {
    this.#startModelRun(runId, parentRunId, extraParams, tags, metadata);
  }

  override handleLLMStart(
    _llm: Serialized,
    _prompts: string[],
    runId: string,
    parentRunId?: string,
    extraParams?: Record<string, unknown>,
    tags?: string[],
    metadata?: Record<string, unknown>,
  ): void {
    this.#startModelRun(runId, parentRunId, extraParams, tags, metadata);
  }

  override handleLLMNewToken(
    _token: string,
    _idx: unknown,
    runId: string,
    _parentRunId?: string,
    _tags?: string[],
    fields?: { chunk?: ChatGenerationChunk | GenerationChunk },
  ): void {
    const run = this.#models.touch(runId);
    if (run?.stream === undefined) return;
    const message = (fields?.chunk as ChatGenerationChunk | undefined)?.message as { usage_metadata?: UsageMetadata } | undefined;
    if (message?.usage_metadata !== undefined) run.stream.observeChunk(message.usage_metadata);
  }

  // Typed structurally: @langchain/core added this hook (and its event type) in 1.2; older cores never call it.
  override handleChatModelStreamEvent(event: { event: string; usage?: Partial<UsageMetadata> }, runId: string): void {
    this.#models.touch(runId)?.stream?.observeEvent(event);
  }

  override handleLLMEnd(
    output: LLMResult,
    runId: string,
    _parentRunId?: string,
    _tags?: string[],
    extraParams?: Record<string, unknown>,
  ): void {
    try {
      const taken = this.#models.take(runId);
      if (taken === undefined) return; // not started through this handler, or no subject: already reported
      this.#watch.modelEnded(taken.entry.invisibleParent);
      const run = taken.entry;
      if (taken.late) {
        this.#stats.lateEnds++;
        this.#warnings.warnOnce(
          "late",
          `a model call ran longer than runTimeoutMs (${this.#options.runTimeoutMs} ms) and was billed when it ended; ` +
            "raise runTimeoutMs above your longest calls (runs forgotten longer ago cannot be billed)",
        );
      }
      if (extraParams?.cached === true) {
        this.#stats.cacheHits++;
        return;
      }
      const result = extractUsage(output);
      if (!result.ok) {
        this.#stats.missingUsage++;
        this.#warnings.warnOnce(
          `usage:${result.problem}:${run.model}`,
          `${result.detail} for ${run.model ? `model ${run.model}` : "a model with no name"} (run ${runId}): nothing was billed for this call. ` +
            "Enable usage reporting in the model's options (for example `streamUsage: true`).",
        );
        return;
      }
      const usage = run.stream ? correctStreamedUsage(result.usage, run.stream) : result.usage;
      if (usage.estimated) {
        this.#warnings.warnOnce(
          `estimated:${run.model}`,
          `${run.model ? `model ${run.model}` : "a model with no name"} reported no usage; LangChain's estimate was billed and flagged \`estimated: true\``,
        );
      }
      const responseModel = servedModel(output);
      const events = buildUsageEvents(
        {
          runId,
          subject: run.subject,
          time: this.#now(),
          usage,
          model: run.model,
          provider: run.provider,
          responseModel: responseModel !== run.model ? responseModel : undefined,
          extra: selectMetadata(run.metadata, this.#options.includeMetadata, this.#options.subjectKey, RESERVED_DATA_KEYS, this.#onSkippedMetadata),
        },
        this.#options, // source, eventType, splitCachedInput
      );
      this.#deliver(events);
      this.#stats.metered++;
    } catch (error) {
      this.#warnings.logger.error(`could not meter run ${runId}: ${errorMessage(error)}`);
    }
  }

  override handleLLMError(_error: unknown, runId: string): void {
    const taken = this.#models.take(runId);
    if (taken === undefined) return;
    this.#stats.failed++;
    this.#watch.modelEnded(taken.entry.invisibleParent);
  }

  // Typed loosely: LangChain really calls it as (chain, inputs, runId, parentRunId, tags, metadata, ...).
  override handleChainStart(_chain: Serialized, _inputs: unknown, runId: string): void {
    this.#watch.chainStarted(runId);
  }

  override handleChainEnd(_outputs: unknown, runId: string): void {
    this.#watch.chainEnded(runId);
  }

  override handleChainError(_error: unknown, runId: string): void {
    this.#watch.chainEnded(runId);
  }

  readonly #onSkippedMetadata = ({ key, reason }: SkippedValue): void =>
    this.#warnings.warnOnce(`metadata:${key}`, `metadata \`${key}\` was not copied into events: ${reason}`);

  #lastMs = 0;
  #lastIso = "";
  /** The ISO time of now, formatted once per millisecond however many calls end in it. */
  #now(): string {
    const ms = Date.now();
    if (ms !== this.#lastMs) {
      this.#lastMs = ms;
      this.#lastIso = new Date(ms).toISOString();
    }
    return this.#lastIso;
  }

  // Most calls in a row are for the same customer: check a subject once, not on every call.
  #lastSubject: unknown;
  #lastCheck: SubjectCheck | undefined;
  #checkSubject(candidate: unknown): SubjectCheck | undefined {
    if (candidate !== this.#lastSubject || typeof candidate === "object") {
      this.#lastSubject = candidate;
      this.#lastCheck = checkSubject(candidate);
    }
    return this.#lastCheck;
  }

  /** Hands events to the client; a client this handler already shut down gets them reported instead. */
  #deliver(events: UsageEvent[]): void {
    if (!this.#clientClosed) {
      try {
        this.client.enqueue(events);
        return;
      } catch (cause) {
        // The client was shut down under us (by its owner, or a signal): report, do not lose silently.
        return this.#refuse(events, `the ingest client refused them (${errorMessage(cause)})`);
      }
    }
    this.#refuse(events, "the call was still running when shutdown() finished");
  }

  #refuse(events: UsageEvent[], why: string): void {
    const error = new IngestError(
      `${events.length} events of a model call were not delivered: ${why} ` +
        `(${events.map((event) => `${event.id} ${event.subject} ${String(event.data?.tokens)}`).join(", ")})`,
      { kind: "refused", events },
    );
    this.#warnings.logger.error(error.message);
    try {
      this.#onError?.(error);
    } catch {
      // onError's own failure must not reach the user's call.
    }
  }

  // ---- Public API

  /**
   * Waits for LangChain's background callbacks (so the last `invoke()` is seen), then for the client
   * to deliver or spool everything queued.
   */
  async flush(options?: FlushOptions): Promise<void> {
    const timeoutMs = options?.timeoutMs;
    if (timeoutMs === undefined) {
      await awaitAllCallbacks();
      return this.client.flush();
    }
    // The deadline covers LangChain's queue too: another handler may be slow.
    const deadline = this.#clock.now() + timeoutMs;
    await this.#within(awaitAllCallbacks(), deadline);
    await this.client.flush({ timeoutMs: Math.max(0, deadline - this.#clock.now()) });
  }

  /**
   * Flushes, then stops: later runs are not metered, and a client this handler created refuses
   * later events (a client passed in as `client` is flushed but left running for its owner).
   * Idempotent.
   */
  shutdown(): Promise<void> {
    this.#shutdown ??= this.#doShutdown();
    return this.#shutdown;
  }

  async #doShutdown(): Promise<void> {
    this.#leaveLifecycle?.();
    const deadline = this.#clock.now() + this.#shutdownTimeoutMs;
    // Calls that returned before now may still have their callbacks waiting in LangChain's queue
    // (behind a slow handler). Calls under way, and the calls they start meanwhile (the next step of
    // an agent run), are still billable: starts stay open until the runs end or the deadline passes.
    await this.#within(awaitAllCallbacks(), deadline);
    await this.#watch.drained(() => this.#models.size, deadline);
    await this.#within(awaitAllCallbacks(), deadline);
    this.#closed = true;
    const left = Math.max(0, deadline - this.#clock.now());
    if (this.#ownsClient) {
      this.#clientClosed = true;
      await this.client.shutdown({ timeoutMs: left });
    } else {
      await this.client.flush({ timeoutMs: left });
    }
  }

  /** `promise`, or the deadline on the handler's clock, whichever comes first. */
  async #within(promise: Promise<unknown>, deadline: number): Promise<void> {
    let timer: ClockTimer | undefined;
    const late = new Promise<void>((resolve) => (timer = this.#clock.setTimeout(resolve, Math.max(0, deadline - this.#clock.now()))));
    await Promise.race([promise, late]);
    timer?.clear();
  }



  /** What the handler did, and (`delivery`) what its ingest client did with the events. */
  stats(): MeteringStats {
    const delivery = (this.client as Partial<IngestClient>).stats?.();
    return { ...this.#stats, open: this.#models.size, ...(delivery ? { delivery } : {}) };
  }

  // ---- Internals

  #startModelRun(
    runId: string,
    parentRunId: string | undefined,
    extraParams: Record<string, unknown> | undefined,
    tags: string[] | undefined,
    metadata: Record<string, unknown> | undefined,
  ): void {
    if (this.#closed) {
      this.#warnings.warnOnce("closed", "a model call started after shutdown() was not metered: create a new handler");
      return;
    }
    try {
      const subject = this.#resolveSubject(metadata, tags, runId, parentRunId);
      if (subject === undefined) return;
      const provider = stringOr(metadata?.ls_provider);
      const now = performance.now();
      this.#stats.abandoned += this.#models.sweep(now);
      const run: ModelRun = {
        seenAt: now,
        subject,
        metadata,
        model: stringOr(metadata?.ls_model_name) ?? invocationModel(extraParams),
        provider,
        invisibleParent: this.#watch.hasInvisibleParent(parentRunId),
      };
      this.#watch.modelStarted();
      if (provider === "anthropic") run.stream = new StreamUsageTracker();
      this.#models.set(runId, run);
    } catch (error) {
      this.#warnings.logger.error(`could not start metering run ${runId}: ${errorMessage(error)}`);
    }
  }

  #resolveSubject(
    metadata: Record<string, unknown> | undefined,
    tags: string[] | undefined,
    runId: string,
    parentRunId: string | undefined,
  ): string | undefined {
    const { subjectKey, resolveSubject, defaultSubject } = this.#options;
    // The resolver first; what it leaves undecided or gets wrong falls back to the metadata key.
    if (resolveSubject) {
      let resolved: unknown;
      try {
        resolved = resolveSubject({ metadata: metadata ?? {}, tags: tags ?? [], runId, parentRunId });
      } catch (error) {
        this.#warnings.warnOnce("resolveSubject:throw", `\`resolveSubject\` threw (${errorMessage(error)}); falling back to metadata.${subjectKey}`);
      }
      const checked = this.#checkSubject(resolved);
      if (checked?.ok) return checked.subject;
      if (checked) this.#warnings.warnOnce(`subject:resolver:${checked.reason}`, `the subject from resolveSubject was refused: ${checked.reason}`);
    }
    const checked = this.#checkSubject(metadata?.[subjectKey]);
    if (checked?.ok) return checked.subject;
    if (checked) this.#warnings.warnOnce(`subject:${checked.reason}`, `the subject from metadata.${subjectKey} was refused: ${checked.reason}`);
    if (defaultSubject !== undefined) return defaultSubject;
    this.#stats.missingSubject++;
    this.#warnings.warnOnce(
      "subject:missing",
      `a model call had no subject, so it was not billed. Pass the customer as \`metadata: { ${subjectKey}: "<customer id>" }\` ` +
        "in the invoke config (or in a parent chain's config), or set `defaultSubject` or `resolveSubject`.",
    );
    return undefined;
  }
}

function normaliseArguments(
  urlOrOptions: unknown,
  apiKey: unknown,
  rest: unknown,
): Record<string, unknown> {
  if (typeof urlOrOptions === "string") {
    if (apiKey !== undefined && typeof apiKey !== "string") {
      throw new TypeError(`MeteringCallbackHandler: \`apiKey\` (second argument) must be a string, got ${typeof apiKey}`);
    }
    if (rest !== undefined && (typeof rest !== "object" || rest === null)) {
      throw new TypeError("MeteringCallbackHandler: the third argument must be an options object");
    }
    // Which one would win is a guess the user did not ask for; a billing endpoint must not be one.
    const twice = ["url", "apiKey"].filter((key) => rest !== undefined && (rest as Record<string, unknown>)[key] !== undefined);
    if (twice.length > 0) {
      throw new TypeError(
        `MeteringCallbackHandler: ${twice.map((key) => `\`${key}\``).join(" and ")} was given twice (as an argument and in the options): pass it once`,
      );
    }
    return { ...(rest as object), url: urlOrOptions, ...(apiKey !== undefined ? { apiKey } : {}) };
  }
  if (typeof urlOrOptions !== "object" || urlOrOptions === null || Array.isArray(urlOrOptions)) {
    throw new TypeError(
      "MeteringCallbackHandler: pass an options object ({ url, apiKey, ... }) or (url, apiKey), " +
        `got ${urlOrOptions === null ? "null" : typeof urlOrOptions}`,
    );
  }
  return { ...(urlOrOptions as Record<string, unknown>) };
}

/** The model the provider says it served (a dated snapshot, often), from the first generation. */
function servedModel(output: LLMResult): string | undefined {
  const generation = output?.generations?.[0]?.[0] as
    | { message?: { response_metadata?: Record<string, unknown> }; generationInfo?: Record<string, unknown> }
    | undefined;
  const metadata = generation?.message?.response_metadata;
  // LangGraph's "messages" stream mode leaves it in generationInfo only.
  return (
    stringOr(metadata?.model_name) ??
    stringOr(metadata?.model) ??
    stringOr(generation?.generationInfo?.model_name) ??
    stringOr(generation?.generationInfo?.model)
  );
}

function invocationModel(extraParams: Record<string, unknown> | undefined): string | undefined {
  const params = extraParams?.invocation_params as Record<string, unknown> | undefined;
  return stringOr(params?.model) ?? stringOr(params?.model_name);
}

function stringOr(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
