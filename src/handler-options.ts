import { z } from "zod";
import type { Clock } from "./clock";
import type { TokenEstimator } from "./estimate";
import type { EventSink } from "./ingest/sink";
import type { Logger } from "./logger";
import type { MetadataPolicy } from "./metadata";
import { ingestOptionsShape, refineIngestOptions, type IngestOptions } from "./ingest/options";
import { parseOptions } from "./option-errors";
import { sourceProblem } from "./cloudevent";
import { checkSubject, type SubjectResolver } from "./subject";
import type { UnbilledCall } from "./unbilled";

/** What the handler itself decides: how runs become events. Delivery options go to the ingest client. */
export interface MeteringEventOptions {
  /** CloudEvents `source`; OpenMeter de-duplicates on source + id. @default "langchain" */
  source?: string;
  /** CloudEvents `type` the token meter filters on (Konnect's LLM Tokens template's). @default "kong.llm_request" */
  eventType?: string;
  /**
   * Invoke-metadata key that holds the customer; `configurable[subjectKey]` counts when the metadata names none.
   * @default "subject"
   */
  subjectKey?: string;
  /** Subject for runs that name none. @default none: such runs are not billed (and reported) */
  defaultSubject?: string;
  /** Computes the subject from a run's metadata and tags; falls back to `subjectKey`, then `defaultSubject`. @default none */
  resolveSubject?: SubjectResolver;
  /**
   * Which invoke-metadata keys travel into `data` (and so to the billing vendor): `true` every flat
   * user value except LangChain's own keys, a list for exactly those keys, `false` for none.
   * @default true
   */
  includeMetadata?: MetadataPolicy;
  /**
   * Send disjoint token buckets named after OpenMeter's LLM-cost token types (`input`, `output`,
   * `cache_read`, `cache_write`, `reasoning`, plus `cache_write_1h`, `input_audio`, `output_audio`)
   * instead of one input and one output event; they add up to the same total.
   * @default false
   */
  splitTokenTypes?: boolean;
  /** @deprecated Renamed `splitTokenTypes` (its `data.type` values are now OpenMeter's token types). */
  splitCachedInput?: never;
  /**
   * CloudEvents `type` of the events for server tool requests (web search, ...), billed per request:
   * a type of their own, so a SUM-of-tokens meter never counts them.
   * @default "llm.server_tool_request"
   */
  serverToolEventType?: string;
  /**
   * Settle a run not heard from for this long: an abandoned stream is billed as aborted (estimated
   * where the provider sent no usage), a run with nothing to bill is reported to `onUnbilled`.
   * @default 3600000 (1 hour)
   */
  runTimeoutMs?: number;
  /** Called for every model call that produced no event, with the reason. Must not throw. @default none */
  onUnbilled?: (call: UnbilledCall) => void;
  /**
   * A warning is told in full once; its repeats are counted and summarised at most this often.
   * @default 60000
   */
  warningIntervalMs?: number;
  /**
   * Counts the tokens of a text, for the estimates of calls the provider billed but never reported
   * (an aborted stream). @default about 4 characters a token
   */
  estimateTokens?: TokenEstimator;
  /** Time source for the run and warning timers (a `TestClock` in tests). @default the system clock */
  clock?: Clock;
  /** Where warnings go. @default the console */
  logger?: Logger;
  /** Deliver through this sink (an `IngestClient` you share, or your own) instead of creating one. @default a new IngestClient */
  client?: EventSink;
}

const nonEmptyString = (name: string) =>
  z.string({ error: `\`${name}\` must be a string` }).trim().min(1, { error: `\`${name}\` must not be empty` });

const isFunction = (value: unknown) => typeof value === "function";

export const meteringEventOptionsShape = {
  // OpenMeter parses `source` with Go's url.Parse and refuses the whole batch when it fails.
  source: nonEmptyString("source")
    .superRefine((value, context) => {
      const problem = sourceProblem(value);
      if (problem) context.addIssue({ code: "custom", message: problem });
    })
    .default("langchain"),
  eventType: nonEmptyString("eventType").default("kong.llm_request"),
  subjectKey: nonEmptyString("subjectKey").default("subject"),
  // Held to the rules a subject from metadata must pass: it is sent on every call that names none.
  defaultSubject: nonEmptyString("defaultSubject")
    .superRefine((value, context) => {
      const checked = checkSubject(value);
      if (checked && !checked.ok) context.addIssue({ code: "custom", message: `\`defaultSubject\` is refused: ${checked.reason}` });
    })
    .optional(),
  resolveSubject: z
    .custom<SubjectResolver>(isFunction, { error: "`resolveSubject` must be a function (context) => subject" })
    .optional(),
  includeMetadata: z
    .union([z.boolean(), z.array(z.string().min(1, { error: "`includeMetadata` keys must be non-empty strings" }))], {
      error: "`includeMetadata` must be true, false, or a list of metadata keys",
    })
    .default(true),
  splitTokenTypes: z.boolean({ error: "`splitTokenTypes` must be true or false" }).default(false),
  // Renamed with the bucket names (input_cached is now cache_read): say so rather than "unknown option".
  splitCachedInput: z
    .custom<never>(() => false, {
      error: "`splitCachedInput` was renamed `splitTokenTypes` (the split `data.type` values are now OpenMeter's: cache_read, cache_write, ...)",
    })
    .optional(),
  serverToolEventType: nonEmptyString("serverToolEventType").default("llm.server_tool_request"),
  onUnbilled: z.custom<(call: UnbilledCall) => void>(isFunction, { error: "`onUnbilled` must be a function (call) => void" }).optional(),
  warningIntervalMs: z
    .number({ error: "`warningIntervalMs` must be a number of milliseconds" })
    .int({ error: "`warningIntervalMs` must be a whole number of milliseconds" })
    .min(1000, { error: "`warningIntervalMs` must be at least 1000" })
    .default(60_000),
  estimateTokens: z
    .custom<TokenEstimator>(isFunction, { error: "`estimateTokens` must be a function (text) => number of tokens" })
    .optional(),
  clock: z
    .custom<Clock>(
      (value) =>
        typeof value === "object" &&
        value !== null &&
        ["now", "wallNow", "setTimeout"].every((method) => isFunction((value as Record<string, unknown>)[method])),
      { error: "`clock` must have now(), wallNow() and setTimeout() methods (systemClock, or a TestClock in tests)" },
    )
    .optional(),
  runTimeoutMs: z
    .number({ error: "`runTimeoutMs` must be a number of milliseconds" })
    .int({ error: "`runTimeoutMs` must be a whole number of milliseconds" })
    .min(1000, { error: "`runTimeoutMs` must be at least 1000 (runs are forgotten after this long)" })
    .default(3_600_000),
  logger: z
    .custom<Logger>(
      (value) => typeof value === "object" && value !== null && isFunction((value as Logger).warn) && isFunction((value as Logger).error),
      { error: "`logger` must have warn(message) and error(message) methods" },
    )
    .optional(),
  client: z
    .custom<EventSink>(
      (value) =>
        typeof value === "object" &&
        value !== null &&
        ["enqueue", "flush", "shutdown"].every((method) => isFunction((value as Record<string, unknown>)[method])),
      { error: "`client` must have enqueue(), flush() and shutdown() methods (an IngestClient, for example)" },
    )
    .optional(),
};

const eventOptionsSchema = z.strictObject(meteringEventOptionsShape);
// Without `client` the handler builds its own ingest client, so the ingest options are its too.
const ownClientSchema = z.strictObject({ ...ingestOptionsShape, ...meteringEventOptionsShape }).superRefine(refineIngestOptions);

export type ResolvedEventOptions = z.output<typeof eventOptionsSchema>;

const INGEST_OPTION_NAMES = Object.keys(ingestOptionsShape);
/** Ingest options the handler uses itself, so they are allowed beside `client` too. */
const SHARED_OPTION_NAMES = ["logger", "clock", "shutdownTimeoutMs", "handleSignals"];
const sharedSchema = z.object({
  clock: ingestOptionsShape.clock,
  shutdownTimeoutMs: ingestOptionsShape.shutdownTimeoutMs,
  handleSignals: ingestOptionsShape.handleSignals,
});

/** What the handler itself needs of the process's lifecycle. */
export interface LifecycleSettings {
  clock: Clock | undefined;
  shutdownTimeoutMs: number;
  handleSignals: boolean;
}

/**
 * Validates the handler's options; throws one TypeError naming every option to fix. Returns the
 * handler's own options, and the ingest client's when the handler is to create one.
 */
export function parseHandlerOptions(options: Record<string, unknown>): {
  events: ResolvedEventOptions;
  ingest: IngestOptions | undefined;
  lifecycle: LifecycleSettings;
} {
  const label = "MeteringCallbackHandler";
  if (options.client === undefined) {
    const parsed = parseOptions(ownClientSchema, options, label);
    const ingest = Object.fromEntries(Object.entries(options).filter(([key]) => INGEST_OPTION_NAMES.includes(key)));
    return {
      events: parseOptions(eventOptionsSchema, pick(parsed, meteringEventOptionsShape), label),
      ingest: ingest as unknown as IngestOptions,
      lifecycle: { clock: parsed.clock, shutdownTimeoutMs: parsed.shutdownTimeoutMs, handleSignals: parsed.handleSignals },
    };
  }
  const stray = Object.keys(options).filter((key) => INGEST_OPTION_NAMES.includes(key) && !SHARED_OPTION_NAMES.includes(key));
  if (stray.length > 0) {
    throw new TypeError(
      `${label}: ${stray.map((key) => `\`${key}\``).join(", ")} configure the ingest client this handler would create, ` +
        "but `client` was given: set them on that client instead",
    );
  }
  // logger and clock are the handler's own options too; the rest of the shared ones are lifecycle only.
  const events = parseOptions(eventOptionsSchema, omit(options, ["shutdownTimeoutMs", "handleSignals"]), label);
  const shared = parseOptions(sharedSchema, pick(options, sharedSchema.shape), label);
  return { events, ingest: undefined, lifecycle: { clock: shared.clock, shutdownTimeoutMs: shared.shutdownTimeoutMs, handleSignals: shared.handleSignals } };
}

function pick(values: Record<string, unknown>, shape: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(values).filter(([key]) => key in shape));
}

function omit(values: Record<string, unknown>, keys: readonly string[]): Record<string, unknown> {
  return Object.fromEntries(Object.entries(values).filter(([key]) => !keys.includes(key)));
}
