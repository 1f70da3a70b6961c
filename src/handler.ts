import { BaseCallbackHandler } from "@langchain/core/callbacks/base";
import { awaitAllCallbacks } from "@langchain/core/callbacks/promises";
import type { Serialized } from "@langchain/core/load/serializable";
import type { BaseMessage } from "@langchain/core/messages";
import type { ChatGenerationChunk, GenerationChunk, LLMResult } from "@langchain/core/outputs";
import { type Clock, type ClockTimer, systemClock } from "./clock";
import type { CloudEvent } from "./cloudevent";
import { roughTokenEstimate, type SentPrompt, type TokenEstimator } from "./estimate";
import { buildEvents, type CallStatus, RESERVED_DATA_KEYS } from "./events";
import { parseHandlerOptions, type MeteringEventOptions, type ResolvedEventOptions } from "./handler-options";
import { ENQUEUE_OWNED, IngestClient, type IngestStats } from "./ingest/client";
import { IngestError } from "./ingest/errors";
import { onRunBlocked, wasRunBlocked } from "./blocked-runs";
import { RunWatch } from "./drain";
import { joinLifecycle } from "./ingest/lifecycle";
import type { IngestOptions } from "./ingest/options";
import type { EventSink, FlushOptions } from "./ingest/sink";
import { installLangChainHooks, METERING_HOOKS, type MeteringHooks } from "./langchain-hooks";
import { consoleLogger } from "./logger";
import { selectMetadata, type SkippedValue } from "./metadata";
import { AnthropicUsageTap } from "./providers/anthropic-tap";
import { type Bill, billFor } from "./providers";
import { RunRegistry } from "./runs";
import { type ObservedStreamEvent, StreamObserver } from "./stream-observer";
import { describeModel, errorMessage, invocationModel, isAbort, partialOutput, stringOr, toolsOf } from "./call-info";
import { checkSubject } from "./subject";
import { SubjectResolution } from "./subject-resolution";
import { type UnbilledCall, type UnbilledReason, WarningDigest } from "./unbilled";
import { unfinishedBill } from "./unfinished";
import { extractUsage } from "./usage";

/** After a call inside a chain the handler cannot see ends, how long shutdown waits for the run's next call. */
const QUIET_AFTER_INVISIBLE_RUN_MS = 1000;

/** The handler's options: how runs become events, and (unless `client` is given) the ingest client's. */
export type MeteringCallbackHandlerOptions = MeteringEventOptions & Partial<IngestOptions>;

/** A model run between its start and end callbacks: what the end callback no longer carries. */
interface ModelRun {
  seenAt: number;
  /** The id its events derive from: the run id, suffixed when the run id was used before. */
  readonly billingId: string;
  readonly subject: string;
  readonly metadata: Record<string, unknown> | undefined;
  readonly model: string | undefined;
  readonly provider: string | undefined;
  /** Inside a chain this handler does not see: another call of the same run may follow it. */
  readonly invisibleParent: boolean;
  /** What was sent, kept by reference for an estimate if the call never reports its usage. */
  readonly sent: SentPrompt;
  readonly stream: StreamObserver;
  /** Billed as aborted when it expired: a late end must not bill it again. */
  settled?: boolean;
}

/** Ended run ids remembered to recognise one passed again (its events would share ids). */
const RECENT_RUN_IDS = 10_000;

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
  /** Runs that failed before the provider sent anything (nothing billed). */
  failed: number;
  /** Runs that did not finish but were billed (aborted, broken or abandoned streams): `data.status` is set. */
  unfinished: number;
  /** Runs that never ended and showed nothing to bill after `runTimeoutMs` (reported to `onUnbilled`). */
  abandoned: number;
  /** `model.streamEvents()` calls without `version`: LangChain ran them without callbacks (not billed). */
  unsupportedPath: number;
  /** Runs whose run id was used by an earlier run (billed under a suffixed id). */
  duplicateRunIds: number;
  /** Runs that ended after being forgotten (billed all the same, while still remembered). */
  lateEnds: number;
  /** Model calls a budget guard stopped before they were sent (nothing to bill). */
  blocked: number;
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
  readonly #warnings: WarningDigest;
  readonly #clock: Clock;
  readonly #estimate: TokenEstimator;
  readonly #subjects: SubjectResolution;
  readonly #models: RunRegistry<ModelRun>;
  readonly #tap = new AnthropicUsageTap();
  /** Run ids of ended runs, oldest first, and how often each was used. */
  readonly #recentRunIds = new Map<string, number>();
  readonly #stats = {
    metered: 0,
    missingSubject: 0,
    missingUsage: 0,
    cacheHits: 0,
    failed: 0,
    unfinished: 0,
    abandoned: 0,
    unsupportedPath: 0,
    duplicateRunIds: 0,
    lateEnds: 0,
    blocked: 0,
  };
  /** Told by a budget guard of a call it stopped: no end will come for it (blocked-runs.ts). */
  readonly #blockedListener = { blocked: (runId: string) => this.#blockedRun(runId) };
  /** Later starts are not metered (shutdown finished draining). */
  #closed = false;
  #clientClosed = false;
  #shutdown: Promise<void> | undefined;
  readonly #shutdownTimeoutMs: number;
  /** What still runs, for shutdown's drain. */
  readonly #watch: RunWatch;
  readonly #flushOnExit: boolean;
  // Held here: the lifecycle keeps only a weak reference.
  readonly #lifecycleParticipant = {
    onSignal: () => this.shutdown(),
    beforeExit: () => {
      if (this.#flushOnExit && this.#shutdown === undefined) void this.shutdown();
    },
  };
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
    this.#clock = lifecycle.clock ?? events.clock ?? systemClock;
    this.#estimate = events.estimateTokens ?? roughTokenEstimate;
    this.#warnings = new WarningDigest(logger, this.#clock, events.warningIntervalMs);
    this.#subjects = new SubjectResolution(events, (key, message, summary) => this.#warnings.warn(key, message, summary));
    this.#ownsClient = events.client === undefined;
    this.#onError = ingest?.onError;
    this.#shutdownTimeoutMs = lifecycle.shutdownTimeoutMs;
    this.#watch = new RunWatch(this.#clock, events.runTimeoutMs, QUIET_AFTER_INVISIBLE_RUN_MS);
    // On SIGTERM/SIGINT and at the program's end the handler, not its client, shuts down: calls under
    // way are waited for and billed, streams left unread are settled, then the client delivers.
    this.client = events.client ?? new IngestClient({ ...(ingest as IngestOptions), handleSignals: false, flushOnExit: false });
    this.#flushOnExit = this.#ownsClient && (ingest?.flushOnExit ?? true);
    if (lifecycle.handleSignals || this.#flushOnExit) {
      this.#leaveLifecycle = joinLifecycle(this.#lifecycleParticipant, { signals: lifecycle.handleSignals });
    }

    this.#models = new RunRegistry<ModelRun>(this.#options.runTimeoutMs, this.#clock, (runId, run) => {
      this.#watch.modelEnded(run.invisibleParent);
      this.#settle(runId, run, "expired");
    });
    const hooks: MeteringHooks = {
      subjectKey: this.#options.subjectKey,
      unmeteredStreamEvents: (model, metadata) => this.#unmeteredStreamEvents(model, metadata),
    };
    Object.defineProperty(this, METERING_HOOKS, { value: hooks });
    installLangChainHooks();
    onRunBlocked(this.#blockedListener);
  }

  /** One handler owns one client: LangChain's copies must share it, not build another. */
  override copy(): this {
    return this;
  }

  // ---- LangChain hooks: no I/O, no throw; everything here runs on LangChain's shared callback queue.

  override handleChatModelStart(
    _llm: Serialized,
    messages: BaseMessage[][],
    runId: string,
    parentRunId?: string,
    extraParams?: Record<string, unknown>,
    tags?: string[],
    metadata?: Record<string, unknown>,
  ): void {
    // One run per message list: LangChain calls this once per run with that run's list.
    this.#startModelRun(runId, parentRunId, extraParams, tags, metadata, { messages: messages?.[0], tools: toolsOf(extraParams) });
  }

  override handleLLMStart(
    _llm: Serialized,
    prompts: string[],
    runId: string,
    parentRunId?: string,
    extraParams?: Record<string, unknown>,
    tags?: string[],
    metadata?: Record<string, unknown>,
  ): void {
    this.#startModelRun(runId, parentRunId, extraParams, tags, metadata, { prompts, tools: toolsOf(extraParams) });
  }

  override handleLLMNewToken(
    token: string,
    _idx: unknown,
    runId: string,
    _parentRunId?: string,
    _tags?: string[],
    fields?: { chunk?: ChatGenerationChunk | GenerationChunk },
  ): void {
    try {
      this.#models.touch(runId)?.stream.observeChunk(typeof token === "string" ? token : "", fields?.chunk as never);
    } catch (error) {
      this.#warnings.logger.error(`could not observe a chunk of run ${runId}: ${errorMessage(error)}`);
    }
  }

  // Typed structurally: @langchain/core added this hook (and its event type) in 1.2; older cores never call it.
  override handleChatModelStreamEvent(event: ObservedStreamEvent, runId: string): void {
    try {
      this.#models.touch(runId)?.stream.observeEvent(event);
    } catch (error) {
      this.#warnings.logger.error(`could not observe a stream event of run ${runId}: ${errorMessage(error)}`);
    }
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
      this.#ended(runId);
      if (taken.late) {
        if (run.settled) {
          this.#warnings.warn(
            `late-settled:${runId}`,
            `model call ${runId} ended after runTimeoutMs (${this.#options.runTimeoutMs} ms) without news, when it had already been billed as aborted: ` +
              "its final usage was not billed again. Raise runTimeoutMs above the longest pause of your streams.",
            "model calls ended after they had been billed as abandoned (raise runTimeoutMs)",
          );
          return;
        }
        this.#stats.lateEnds++;
        this.#warnings.warn(
          "late",
          `a model call ran longer than runTimeoutMs (${this.#options.runTimeoutMs} ms) and was billed when it ended; ` +
            "raise runTimeoutMs above your longest calls (runs forgotten longer ago cannot be billed)",
          "model calls ran longer than runTimeoutMs (billed when they ended)",
        );
      }
      if (extraParams?.cached === true) {
        this.#stats.cacheHits++;
        this.#unbilled(runId, run, "cache_hit", "LangChain answered from its cache: the call cost nothing");
        return;
      }
      const result = extractUsage(output);
      if (!result.ok) {
        // Chunks arrived but no final usage and no stop reason: the stream was cut short, and the
        // integration ended the run as if it had finished (it billed what it had generated).
        if (run.stream.streamed && !run.stream.finished && this.#billUnfinished(runId, run, "aborted")) return;
        this.#stats.missingUsage++;
        const message =
          `${result.detail} for ${describeModel(run.model)} (run ${runId}): nothing was billed for this call. ` +
          "Enable usage reporting in the model's options (for example `streamUsage: true`).";
        this.#warnings.warn(`usage:${result.problem}:${run.model}`, message, "model calls reported no usage and were not billed");
        this.#unbilled(runId, run, "no_usage", message);
        return;
      }
      const bill = billFor(run.provider, result.usage, { output, stream: run.stream, sent: run.sent, tapped: this.#tap.take(run.stream.messageId) }, this.#estimate);
      if (result.where === "estimatedTokenUsage") {
        bill.notes.push(`${describeModel(run.model)} reported no usage; LangChain's estimate was billed and flagged \`estimated: true\``);
      }
      this.#bill(runId, run, bill);
    } catch (error) {
      this.#warnings.logger.error(`could not meter run ${runId}: ${errorMessage(error)}`);
    }
  }

  override handleLLMError(error: unknown, runId: string, _parentRunId?: string, _tags?: string[], extraParams?: Record<string, unknown>): void {
    try {
      const taken = this.#models.take(runId);
      if (taken === undefined) return;
      this.#watch.modelEnded(taken.entry.invisibleParent);
      this.#ended(runId);
      if (taken.late && taken.entry.settled) return;
      const status: CallStatus = isAbort(error) ? "aborted" : "error";
      if (extraParams?.cached !== true && this.#billUnfinished(runId, taken.entry, status, partialOutput(error))) return;
      this.#stats.failed++;
      this.#unbilled(
        runId,
        taken.entry,
        "failed",
        `model call ${runId} (${describeModel(taken.entry.model)}) ${status === "aborted" ? "was aborted" : "failed"} before any output reached LangChain (${errorMessage(error)}): nothing was billed`,
      );
    } catch (caught) {
      this.#warnings.logger.error(`could not meter failed run ${runId}: ${errorMessage(caught)}`);
    }
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
    this.#warnings.warn(`metadata:${key}`, `metadata \`${key}\` was not copied into events: ${reason}`, `metadata \`${key}\` left out of events (${reason})`);

  // NaN equals no time: the first call formats, even at a wall time of 0 (a TestClock({ wall: 0 })).
  #lastMs = Number.NaN;
  #lastIso = "";
  /** The ISO time of now, formatted once per millisecond however many calls end in it. */
  #now(): string {
    const ms = this.#clock.wallNow();
    if (ms !== this.#lastMs) {
      this.#lastMs = ms;
      this.#lastIso = new Date(ms).toISOString();
    }
    return this.#lastIso;
  }

  /** Turns a bill into events and hands them over; tells the user what was estimated. */
  #bill(runId: string, run: ModelRun, bill: Bill): void {
    const events = buildEvents(
      {
        billingId: run.billingId,
        subject: run.subject,
        time: this.#now(),
        usage: bill.usage,
        model: run.model,
        provider: run.provider,
        responseModel: bill.responseModel !== run.model ? bill.responseModel : undefined,
        status: bill.status,
        serverTools: bill.serverTools,
        serverToolsEstimated: bill.serverToolsEstimated,
        extra: selectMetadata(run.metadata, this.#options.includeMetadata, this.#options.subjectKey, RESERVED_DATA_KEYS, this.#onSkippedMetadata),
      },
      this.#options, // source, eventType, splitTokenTypes, serverToolEventType
    );
    for (const note of bill.notes) this.#warnings.warn(`note:${run.model}:${note}`, `${note} (${describeModel(run.model)}, run ${runId})`, note);
    this.#deliver(events);
    if (bill.status !== undefined) this.#stats.unfinished++;
    else this.#stats.metered++;
  }

  /** Bills a call that did not finish, if anything shows the provider answered; true when billed. */
  #billUnfinished(runId: string, run: ModelRun, status: CallStatus, partial?: { usage_metadata?: unknown; content?: unknown }): boolean {
    const bill = unfinishedBill({ stream: run.stream, sent: run.sent, status, partial }, this.#estimate);
    if (bill === undefined) return false;
    this.#bill(runId, run, bill);
    return true;
  }

  /**
   * At the end of shutdown's drain: a stream still open (left unread, a `break` out of model.stream(),
   * or past the deadline) is billed as aborted from what it sent and received, now or never. A call
   * that showed nothing stays: if it ends later, its events are reported as refused, with the events.
   */
  #settleOpenRuns(): void {
    for (const [runId, run] of this.#models.removeIf((open) => open.stream.seenAnything)) {
      this.#watch.modelEnded(run.invisibleParent);
      this.#settle(runId, run, "shutdown");
    }
    this.#warnings.flush();
  }

  /**
   * Runs shutdown's drain waits for: all open ones but streams that went quiet (a `break` out of
   * model.stream() leaves its run open for ever; a call still generating keeps sending chunks).
   */
  #activeRuns(): number {
    const now = this.#clock.now();
    let active = 0;
    for (const run of this.#models.values()) if (!(run.stream.seenAnything && now - run.seenAt >= QUIET_AFTER_INVISIBLE_RUN_MS)) active++;
    return active;
  }

  /** A run that expired (no news for runTimeoutMs) or was still open at shutdown. */
  #settle(runId: string, run: ModelRun, why: "expired" | "shutdown"): void {
    try {
      const when = why === "expired" ? `had no news for runTimeoutMs (${this.#options.runTimeoutMs} ms)` : "was still open when shutdown() finished waiting";
      if (this.#billUnfinished(runId, run, "aborted")) {
        run.settled = true;
        this.#warnings.warn(
          `settled:${run.model}`,
          `model call ${runId} (${describeModel(run.model)}) ${when}, as an abandoned stream does (a \`break\` out of model.stream()): ` +
            "billed as aborted from what it sent and received",
          "abandoned streams billed as aborted",
        );
        return;
      }
      this.#stats.abandoned++;
      const message =
        `model call ${runId} (${describeModel(run.model)}) ${when} and showed nothing to bill: it was not billed ` +
        "(if it ends later it is billed then; raise runTimeoutMs above your longest calls)";
      this.#warnings.warn(`abandoned:${run.model}`, message, "model calls abandoned with nothing to bill");
      this.#unbilled(runId, run, "abandoned", message);
    } catch (error) {
      this.#warnings.logger.error(`could not settle run ${runId}: ${errorMessage(error)}`);
    }
  }

  /** A budget guard stopped a call this handler had seen start: it was never sent, and no end will come. */
  #blockedRun(runId: string): void {
    const taken = this.#models.take(runId);
    if (taken === undefined || taken.late) return;
    this.#watch.modelEnded(taken.entry.invisibleParent);
    this.#stats.blocked++;
  }

  /** Tells `onUnbilled` about a call that produced no event (the caller tells the logger, where it should). */
  #unbilled(runId: string | undefined, run: Partial<Pick<ModelRun, "model" | "provider" | "subject">>, reason: UnbilledReason, message: string): void {
    const onUnbilled = this.#options.onUnbilled;
    if (onUnbilled === undefined) return;
    const call: UnbilledCall = { reason, message };
    if (runId !== undefined) call.runId = runId;
    if (run.model !== undefined) call.model = run.model;
    if (run.provider !== undefined) call.provider = run.provider;
    if (run.subject !== undefined) call.subject = run.subject;
    try {
      onUnbilled(call);
    } catch (error) {
      this.#warnings.logger.error(`onUnbilled threw (${errorMessage(error)}): it must not throw`);
    }
  }

  #unmeteredStreamEvents(model: string | undefined, metadata: Record<string, unknown> | undefined): void {
    this.#stats.unsupportedPath++;
    const checked = checkSubject(metadata?.[this.#options.subjectKey]);
    const message =
      `model.streamEvents() without \`version\` was called on ${describeModel(model)}: LangChain runs it without callbacks, so it is not billed. ` +
      'Pass `{ version: "v2" }`, or use .stream() or .invoke().';
    this.#warnings.warn(`streamEvents:${model}`, message, "model.streamEvents() calls without `version` (not billed)");
    const onUnbilled = this.#options.onUnbilled;
    if (onUnbilled === undefined) return;
    try {
      onUnbilled({ reason: "unsupported_path", message, ...(model !== undefined ? { model } : {}), ...(checked?.ok ? { subject: checked.subject } : {}) });
    } catch (error) {
      this.#warnings.logger.error(`onUnbilled threw (${errorMessage(error)}): it must not throw`);
    }
  }

  /** Remembers an ended run id (bounded), to recognise it if it is passed again. */
  #ended(runId: string): void {
    const uses = this.#recentRunIds.get(runId) ?? 0;
    this.#recentRunIds.delete(runId);
    this.#recentRunIds.set(flattened(runId), uses === 0 ? 1 : uses);
    if (this.#recentRunIds.size > RECENT_RUN_IDS) this.#recentRunIds.delete(this.#recentRunIds.keys().next().value as string);
  }

  /**
   * The id a run's events derive from. A run id seen before (the user passed the same `runId` to two
   * calls) would give the second call the first one's event ids, and de-duplication downstream would
   * drop it: the second use is billed under `<runId>~2` instead, and the user told.
   */
  #billingId(runId: string): string {
    const previous = this.#recentRunIds.get(runId) ?? 0;
    if (previous === 0) return runId;
    const use = previous + 1;
    this.#recentRunIds.set(runId, use);
    this.#stats.duplicateRunIds++;
    this.#warnings.warn(
      `duplicate-run-id:${runId}`,
      `run id ${runId} was passed to more than one model call: its events would share ids and be de-duplicated as one downstream, ` +
        `so this call is billed as ${runId}~${use}. Pass a fresh \`runId\` to every call (or none).`,
      "run ids passed to more than one model call (billed under suffixed ids)",
    );
    return `${runId}~${use}`;
  }

  /** Hands events to the client; a client this handler already shut down gets them reported instead. */
  #deliver(events: CloudEvent[]): void {
    if (!this.#clientClosed) {
      try {
        const owned = (this.client as Partial<Record<typeof ENQUEUE_OWNED, (events: readonly CloudEvent[]) => void>>)[ENQUEUE_OWNED];
        if (owned) owned.call(this.client, events);
        else this.client.enqueue(events);
        return;
      } catch (cause) {
        // The client was shut down under us (by its owner, or a signal): report, do not lose silently.
        return this.#refuse(events, `the ingest client refused them (${errorMessage(cause)})`);
      }
    }
    this.#refuse(events, "the call was still running when shutdown() finished");
  }

  #refuse(events: CloudEvent[], why: string): void {
    const error = new IngestError(
      `${events.length} events of a model call were not delivered: ${why} ` +
        `(${events.map((event) => `${event.id} ${event.subject} ${String(event.data?.tokens ?? event.data?.requests)}`).join(", ")})`,
      { kind: "refused", events },
    );
    this.#warnings.logger.error(error.message);
    try {
      this.#onError?.(error);
    } catch {
      // onError's own failure must not reach the user's call.
    }
  }

  /**
   * A `fetch` for `@anthropic-ai/sdk` that reads each streamed call's final usage on the wire, where
   * `@langchain/anthropic` drops it (after a server tool the input is otherwise flagged estimated):
   * `new ChatAnthropic({ model, clientOptions: { fetch: handler.anthropicFetch() } })`.
   */
  anthropicFetch(base?: typeof fetch): typeof fetch {
    return this.#tap.fetch(base);
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
    await this.#watch.drained(() => this.#activeRuns(), deadline);
    await this.#within(awaitAllCallbacks(), deadline);
    this.#closed = true;
    // What is still open now is past the deadline, or a stream nobody reads any more: billed from
    // what it sent and received (flagged estimated), or said unbilled.
    this.#settleOpenRuns();
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
    sent: SentPrompt,
  ): void {
    const model = stringOr(metadata?.ls_model_name) ?? invocationModel(extraParams);
    const provider = stringOr(metadata?.ls_provider);
    if (this.#closed) {
      const message = `a model call started after shutdown() was not metered (run ${runId}, ${describeModel(model)}): create a new handler`;
      this.#warnings.warn("closed", message, "model calls started after shutdown() (not metered)");
      this.#unbilled(runId, { model, provider }, "after_shutdown", message);
      return;
    }
    try {
      if (wasRunBlocked(runId)) {
        this.#stats.blocked++;
        return;
      }
      if (this.#models.has(runId)) {
        // Two calls under one run id at once: their callbacks cannot be told apart, so one bill.
        this.#stats.duplicateRunIds++;
        this.#warnings.warn(
          `duplicate-open-run-id:${runId}`,
          `run id ${runId} was started again while a call under it is still running: LangChain's callbacks cannot tell the two apart, ` +
            "so they are billed as one. Pass a fresh `runId` to every call (or none).",
          "run ids started twice at once (billed as one call)",
        );
        return;
      }
      const subject = this.#resolveSubject(metadata, tags, runId, parentRunId, model, provider);
      if (subject === undefined) return;
      const run: ModelRun = {
        seenAt: this.#clock.now(),
        billingId: this.#billingId(runId),
        subject,
        metadata,
        model,
        provider,
        invisibleParent: this.#watch.hasInvisibleParent(parentRunId),
        sent,
        stream: new StreamObserver(this.#options.estimateTokens !== undefined),
      };
      this.#watch.modelStarted();
      this.#models.set(runId, run);
    } catch (error) {
      this.#warnings.logger.error(`could not start metering run ${runId}: ${errorMessage(error)}`);
    }
  }

  /** The run's customer (subject-resolution.ts); a run with none is reported unbilled. */
  #resolveSubject(
    metadata: Record<string, unknown> | undefined,
    tags: string[] | undefined,
    runId: string,
    parentRunId: string | undefined,
    model: string | undefined,
    provider: string | undefined,
  ): string | undefined {
    const subject = this.#subjects.resolve(metadata, tags, runId, parentRunId);
    if (subject !== undefined) return subject;
    const { subjectKey } = this.#options;
    this.#stats.missingSubject++;
    const message =
      `a model call had no subject, so it was not billed. Pass the customer as \`metadata: { ${subjectKey}: "<customer id>" }\` ` +
      `(or \`configurable: { ${subjectKey}: … }\`) in the invoke config (or in a parent chain's config), or set \`defaultSubject\` or \`resolveSubject\`.`;
    this.#warnings.warn("subject:missing", message, "model calls had no subject and were not billed");
    this.#unbilled(runId, { model, provider }, "no_subject", message);
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

/**
 * The same string, stored flat. Run ids built by concatenation (`crypto.randomUUID()`, the `uuid`
 * package) are trees of a dozen pieces in V8, about 540 bytes each; the 10,000 remembered ones took
 * 5 MB. Converting to a number makes V8 flatten the string in place (128 bytes).
 */
function flattened(text: string): string {
  Number(text);
  return text;
}
