import { BaseCallbackHandler } from "@langchain/core/callbacks/base";
import { awaitAllCallbacks } from "@langchain/core/callbacks/promises";
import type { Serialized } from "@langchain/core/load/serializable";
import type { ChatModelStreamEvent } from "@langchain/core/language_models/event";
import type { BaseMessage, UsageMetadata } from "@langchain/core/messages";
import type { ChatGenerationChunk, GenerationChunk, LLMResult } from "@langchain/core/outputs";
import type { ChainValues } from "@langchain/core/utils/types";
import { buildUsageEvents, RESERVED_DATA_KEYS, type EventSettings } from "./events";
import { parseHandlerOptions, type MeteringEventOptions, type ResolvedEventOptions } from "./handler-options";
import { IngestClient } from "./ingest/client";
import type { IngestOptions } from "./ingest/options";
import type { EventSink } from "./ingest/sink";
import { consoleLogger, OnceLogger } from "./logger";
import { selectMetadata } from "./metadata";
import { RunRegistry } from "./runs";
import { correctStreamedUsage, StreamUsageTracker } from "./stream-usage";
import { checkSubject, type SubjectContext } from "./subject";
import { extractUsage } from "./usage";

export type MeteringCallbackHandlerOptions = MeteringEventOptions & Partial<IngestOptions>;

/** A model run between its start and end callbacks: what the end callback no longer carries. */
interface ModelRun {
  readonly storedAt: number;
  readonly subject: string;
  readonly metadata: Record<string, unknown> | undefined;
  readonly model: string | undefined;
  readonly provider: string | undefined;
  stream?: StreamUsageTracker;
}

/** A chain or tool run, kept so a model run beneath it can find the subject its ancestors carry. */
interface ParentRun {
  readonly storedAt: number;
  readonly parentRunId: string | undefined;
  readonly metadata: Record<string, unknown> | undefined;
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
  /** Runs currently between start and end. */
  open: number;
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
  readonly #settings: EventSettings;
  readonly #warnings: OnceLogger;
  readonly #models: RunRegistry<ModelRun>;
  readonly #parents: RunRegistry<ParentRun>;
  readonly #sweeper: NodeJS.Timeout;
  readonly #stats = { metered: 0, missingSubject: 0, missingUsage: 0, cacheHits: 0, failed: 0, abandoned: 0 };
  #closed = false;

  constructor(options: MeteringCallbackHandlerOptions);
  constructor(url: string, apiKey?: string, options?: Omit<MeteringCallbackHandlerOptions, "url" | "apiKey">);
  constructor(
    urlOrOptions: string | MeteringCallbackHandlerOptions,
    apiKey?: string,
    rest?: Omit<MeteringCallbackHandlerOptions, "url" | "apiKey">,
  ) {
    super({ raiseError: false });
    // A metering handler must never delay the user's call: let LangChain run it in the background.
    this.awaitHandlers = false;

    const { events, ingest } = parseHandlerOptions(normaliseArguments(urlOrOptions, apiKey, rest));
    this.#options = events;
    const logger = events.logger ?? consoleLogger;
    this.#warnings = new OnceLogger(logger);
    this.#ownsClient = events.client === undefined;
    this.client = events.client ?? new IngestClient(ingest as IngestOptions);

    this.#settings = {
      source: this.#options.source,
      eventType: this.#options.eventType,
      splitCachedInput: this.#options.splitCachedInput,
    };
    this.#models = new RunRegistry(this.#options.runTimeoutMs);
    this.#parents = new RunRegistry(this.#options.runTimeoutMs);
    this.#sweeper = setInterval(() => this.#sweep(), Math.min(this.#options.runTimeoutMs, 60_000));
    this.#sweeper.unref();
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
    const run = this.#models.get(runId);
    if (run?.stream === undefined) return;
    const message = (fields?.chunk as ChatGenerationChunk | undefined)?.message as { usage_metadata?: UsageMetadata } | undefined;
    if (message?.usage_metadata !== undefined) run.stream.observeChunk(message.usage_metadata);
  }

  override handleChatModelStreamEvent(event: ChatModelStreamEvent, runId: string): void {
    this.#models.get(runId)?.stream?.observeEvent(event);
  }

  override handleLLMEnd(
    output: LLMResult,
    runId: string,
    _parentRunId?: string,
    _tags?: string[],
    extraParams?: Record<string, unknown>,
  ): void {
    try {
      const run = this.#models.take(runId);
      if (run === undefined) return; // not started through this handler, or no subject: already reported
      if (extraParams?.cached === true) {
        this.#stats.cacheHits++;
        return;
      }
      const result = extractUsage(output);
      if (!result.ok) {
        this.#stats.missingUsage++;
        this.#warnings.warnOnce(
          `usage:${result.problem}:${run.model}`,
          `${result.detail} for model ${run.model ?? "(unknown)"} (run ${runId}): nothing was billed for this call. ` +
            "Enable usage reporting in the model's options (for example `streamUsage: true`).",
        );
        return;
      }
      const usage = run.stream ? correctStreamedUsage(result.usage, run.stream) : result.usage;
      if (usage.estimated) {
        this.#warnings.warnOnce(
          `estimated:${run.model}`,
          `model ${run.model ?? "(unknown)"} reported no usage; LangChain's estimate was billed and flagged \`estimated: true\``,
        );
      }
      const responseModel = servedModel(output);
      const events = buildUsageEvents(
        {
          runId,
          subject: run.subject,
          time: new Date().toISOString(),
          usage,
          model: run.model,
          provider: run.provider,
          responseModel: responseModel !== run.model ? responseModel : undefined,
          extra: selectMetadata(run.metadata, this.#options.includeMetadata, this.#options.subjectKey, RESERVED_DATA_KEYS, ({ key, reason }) =>
            this.#warnings.warnOnce(`metadata:${key}`, `metadata \`${key}\` was not copied into events: ${reason}`),
          ),
        },
        this.#settings,
      );
      this.client.enqueue(events);
      this.#stats.metered++;
    } catch (error) {
      this.#warnings.logger.error(`could not meter run ${runId}: ${errorMessage(error)}`);
    }
  }

  override handleLLMError(_error: unknown, runId: string): void {
    if (this.#models.take(runId) !== undefined) this.#stats.failed++;
  }

  override handleChainStart(
    _chain: Serialized,
    _inputs: ChainValues,
    runId: string,
    // LangChain passes the parent run id here, whatever the declared signature says.
    parentRunId?: unknown,
    _tags?: string[],
    metadata?: Record<string, unknown>,
  ): void {
    this.#parents.set(runId, {
      storedAt: performance.now(),
      parentRunId: typeof parentRunId === "string" ? parentRunId : undefined,
      metadata,
    });
  }

  override handleChainEnd(_outputs: ChainValues, runId: string): void {
    this.#parents.delete(runId);
  }

  override handleChainError(_error: unknown, runId: string): void {
    this.#parents.delete(runId);
  }

  override handleToolStart(
    _tool: Serialized,
    _input: string,
    runId: string,
    parentRunId?: string,
    _tags?: string[],
    metadata?: Record<string, unknown>,
  ): void {
    this.#parents.set(runId, { storedAt: performance.now(), parentRunId, metadata });
  }

  override handleToolEnd(_output: unknown, runId: string): void {
    this.#parents.delete(runId);
  }

  override handleToolError(_error: unknown, runId: string): void {
    this.#parents.delete(runId);
  }

  // ---- Public API

  /**
   * Waits for LangChain's background callbacks (so the last `invoke()` is seen), then for the client
   * to deliver or spool everything queued.
   */
  async flush(): Promise<void> {
    await awaitAllCallbacks();
    await this.client.flush();
  }

  /**
   * Flushes, then stops: later runs are not metered, and a client this handler created refuses
   * later events (a client passed in as `client` is flushed but left running for its owner).
   * Idempotent.
   */
  async shutdown(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sweeper);
    await awaitAllCallbacks();
    if (this.#ownsClient) await this.client.shutdown();
    else await this.client.flush();
    this.#models.clear();
    this.#parents.clear();
  }

  stats(): MeteringStats {
    return { ...this.#stats, open: this.#models.size };
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
      const merged = this.#withAncestors(metadata, parentRunId);
      const subject = this.#resolveSubject({ metadata: merged ?? {}, tags: tags ?? [], runId, parentRunId });
      if (subject === undefined) return;
      const provider = stringOr(merged?.ls_provider);
      const run: ModelRun = {
        storedAt: performance.now(),
        subject,
        metadata: merged,
        model: stringOr(merged?.ls_model_name) ?? invocationModel(extraParams),
        provider,
      };
      if (provider === "anthropic") run.stream = new StreamUsageTracker();
      this.#models.set(runId, run);
    } catch (error) {
      this.#warnings.logger.error(`could not start metering run ${runId}: ${errorMessage(error)}`);
    }
  }

  /** Metadata of the run, under that of its chain and tool ancestors (the nearest wins). */
  #withAncestors(
    metadata: Record<string, unknown> | undefined,
    parentRunId: string | undefined,
  ): Record<string, unknown> | undefined {
    let merged = metadata;
    for (let parent = this.#parents.get(parentRunId), depth = 0; parent && depth < 100; depth++) {
      if (parent.metadata) merged = { ...parent.metadata, ...merged };
      parent = this.#parents.get(parent.parentRunId);
    }
    return merged;
  }

  #resolveSubject(context: SubjectContext): string | undefined {
    const { subjectKey, resolveSubject, defaultSubject } = this.#options;
    let candidate: unknown;
    let origin = `metadata.${subjectKey}`;
    try {
      candidate = resolveSubject?.(context);
      if (candidate !== undefined && candidate !== null) origin = "resolveSubject";
    } catch (error) {
      this.#warnings.warnOnce("resolveSubject:throw", `\`resolveSubject\` threw (${errorMessage(error)}); falling back to metadata.${subjectKey}`);
    }
    candidate ??= context.metadata[subjectKey];
    const checked = checkSubject(candidate);
    if (checked?.ok) return checked.subject;
    if (checked && !checked.ok) {
      this.#warnings.warnOnce(`subject:${checked.reason}`, `the subject from ${origin} was refused: ${checked.reason}`);
    }
    if (defaultSubject !== undefined) return defaultSubject;
    this.#stats.missingSubject++;
    this.#warnings.warnOnce(
      "subject:missing",
      `a model call had no subject, so it was not billed. Pass the customer as \`metadata: { ${subjectKey}: "<customer id>" }\` ` +
        "in the invoke config (or in a parent chain's config), or set `defaultSubject` or `resolveSubject`.",
    );
    return undefined;
  }

  #sweep(): void {
    this.#stats.abandoned += this.#models.sweep();
    this.#parents.sweep();
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
