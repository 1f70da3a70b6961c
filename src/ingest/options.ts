import { z } from "zod";
import type { Clock } from "../clock";
import type { Logger } from "../logger";
import { describe, parseOptions } from "../option-errors";
import type { IngestError } from "./errors";

/** How one request is retried before the client backs off. */
export interface RetryOptions {
  /** Retries of one request (network error, time-out, 408, 429, 5xx) before the client backs off. @default 10 */
  retries?: number;
  /** The first wait between retries; it doubles after each (with jitter). @default 200 */
  minDelayMs?: number;
  /** The longest wait between retries, and the wait before one probe request once retries ran out. @default 30000 */
  maxDelayMs?: number;
}

/** Options of an `IngestClient` (and of the client a `MeteringCallbackHandler` creates). */
export interface IngestOptions {
  /** The full events URL, e.g. `http://localhost:8888/api/v1/events` or `https://us.api.konghq.com/v3/openmeter/events`. */
  url: string;
  /** Bearer token. Leave it out for an endpoint without authentication (a self-hosted OpenMeter). Never logged. */
  apiKey?: string;
  /** One deadline per request, from connecting to the last byte of the answer. @default 10000 */
  timeoutMs?: number;
  /** Events per request. @default 100 */
  maxBatchSize?: number;
  /** Longest a live event waits for its batch to fill before it is sent. @default 1000 */
  flushIntervalMs?: number;
  /**
   * Events held in memory while the endpoint is failing (beyond it they are reported through `onError`,
   * with the events); with `spoolDir`, events kept in memory besides the disk. Never a limit while the
   * endpoint keeps up. @default 10000
   */
  maxQueueSize?: number;
  /** Requests in flight at once. @default 4 */
  maxConcurrency?: number;
  /** Retries of one request; a partial object keeps the other defaults. */
  retry?: RetryOptions;
  /**
   * Directory of the write-ahead log: every event is written there before `enqueue` returns and
   * deleted once the endpoint acknowledged it. Events of a process that died are delivered by the next
   * one that opens the directory. @default undefined (events are held in memory only)
   */
  spoolDir?: string;
  /** Disk the spool may use; beyond it events are held in memory, then reported. @default 1073741824 (1 GiB) */
  maxSpoolBytes?: number;
  /**
   * `fdatasync` every append, so events also survive a power loss or a kernel crash (a process crash
   * is survived without it). Costs a disk flush per model call. @default false
   */
  spoolFsync?: boolean;
  /** How long a dead process's spool waits before another process takes it over. @default 10000 */
  spoolLeaseMs?: number;
  /** The longest `shutdown()`, a signal or the end of the program wait to deliver what is left. @default 5000 */
  shutdownTimeoutMs?: number;
  /** Deliver what is left when the program runs out of work (`beforeExit`). @default true */
  flushOnExit?: boolean;
  /**
   * On SIGTERM and SIGINT, deliver (or leave on disk) what is left within `shutdownTimeoutMs`, then let
   * the signal end the process, unless the program listens for it too (then the program decides). @default true
   */
  handleSignals?: boolean;
  /** Called with every event that could not be delivered or held, and why. @default undefined (the logger says it) */
  onError?: (error: IngestError) => void;
  /** Where warnings go. @default the console */
  logger?: Logger;
  /** Time for every timer and deadline; tests pass a `TestClock`. @default the system clock */
  clock?: Clock;
}

const LOOPBACK_HOSTS = new Set(["localhost", "[::1]", "::1"]);

/** Loopback hosts: plain http there is fine and needs no note. */
export function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK_HOSTS.has(hostname) || /^127(\.\d{1,3}){3}$/.test(hostname);
}

/** Hosted endpoints that always need a key: leaving it out can only end in 401. */
const HOSTED = /(^|\.)(konghq\.com|openmeter\.cloud)$/i;

/** Drops user:password and query from a URL before it is shown to anyone. */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = "";
    u.password = "";
    u.search = "";
    return u.toString();
  } catch {
    return "(invalid url)";
  }
}

const int = (name: string, min: number, def: number) =>
  z
    .custom<number>((v) => typeof v === "number" && Number.isInteger(v) && v >= min, {
      error: (issue) => `\`${name}\` must be an integer >= ${min}, got ${describe(issue.input)}`,
    })
    .default(def);

const bool = (name: string, def: boolean) =>
  z
    .custom<boolean>((v) => typeof v === "boolean", {
      error: (issue) => `\`${name}\` must be true or false, got ${describe(issue.input)}`,
    })
    .default(def);

const isFunction = (value: unknown) => typeof value === "function";

const url = z.custom<string>(
  (v) => {
    if (typeof v !== "string") return false;
    try {
      const u = new URL(v);
      return (u.protocol === "http:" || u.protocol === "https:") && u.hostname !== "";
    } catch {
      return false;
    }
  },
  {
    error: (issue) =>
      issue.input === undefined
        ? "`url` is required: the full events URL, e.g. http://localhost:8888/api/v1/events or https://us.api.konghq.com/v3/openmeter/events"
        : `\`url\` must be an absolute http(s) URL, got ${shownUrl(issue.input)}`,
  },
);

/**
 * What a bad `url` is shown as. A string that is no URL at all is not echoed: with the arguments
 * swapped, or the wrong environment variable, it is the API key.
 */
function shownUrl(input: unknown): string {
  if (typeof input !== "string") return describe(input);
  if (input.trim() === "") return "an empty string";
  if (/^\.{0,2}\//.test(input)) return `the relative path ${describe(input.split(/[?#]/)[0])}`;
  const safe = safeUrl(input);
  if (safe !== "(invalid url)") return describe(safe);
  return "a string that is not a URL (not shown, in case it is a secret: are `url` and `apiKey` swapped?)";
}

const retrySchema = z
  .strictObject({
    retries: int("retry.retries", 0, 10),
    minDelayMs: int("retry.minDelayMs", 0, 200),
    maxDelayMs: int("retry.maxDelayMs", 0, 30_000),
  })
  .refine((r) => r.maxDelayMs >= r.minDelayMs, { error: "`retry.maxDelayMs` must be >= `retry.minDelayMs`" });

/**
 * The ingest options as a zod shape, so a wrapper (the metering handler) can spread it into its own
 * strict object and run `refineIngestOptions` on the result.
 */
export const ingestOptionsShape = {
  url,
  // The key is never echoed back, not even in a validation message.
  // A key read from a file or a secret often ends in a newline: surrounding whitespace is dropped.
  // Anything else that cannot travel in an HTTP header is refused here, not after minutes of retries.
  // An empty value (an unset variable in a .env file) means no key, as leaving it out does.
  apiKey: z.preprocess(
    (v) => (typeof v === "string" && v.trim() === "" ? undefined : v),
    z
      .custom<string>((v) => typeof v === "string", { error: "`apiKey` must be a non-empty string" })
      .transform((key) => key.trim())
      .refine((key) => /^[\x21-\x7e]+$/.test(key), {
        error: "`apiKey` contains spaces, control or non-ASCII characters: check it was copied whole and alone",
      })
      .optional(),
  ),
  timeoutMs: int("timeoutMs", 1, 10_000),
  maxBatchSize: int("maxBatchSize", 1, 100),
  flushIntervalMs: int("flushIntervalMs", 0, 1000),
  maxQueueSize: int("maxQueueSize", 1, 10_000),
  maxConcurrency: int("maxConcurrency", 1, 4),
  retry: retrySchema.default({ retries: 10, minDelayMs: 200, maxDelayMs: 30_000 }),
  spoolDir: z
    .custom<string>((v) => typeof v === "string" && v.trim().length > 0, {
      error: (issue) => `\`spoolDir\` must be a directory path, got ${describe(issue.input)}`,
    })
    .optional(),
  maxSpoolBytes: int("maxSpoolBytes", 65_536, 1024 ** 3),
  spoolFsync: bool("spoolFsync", false),
  spoolLeaseMs: int("spoolLeaseMs", 100, 10_000),
  shutdownTimeoutMs: int("shutdownTimeoutMs", 0, 5000),
  flushOnExit: bool("flushOnExit", true),
  handleSignals: bool("handleSignals", true),
  onError: z
    .custom<(error: IngestError) => void>(isFunction, {
      error: (issue) => `\`onError\` must be a function (error: IngestError) => void, got ${describe(issue.input)}`,
    })
    .optional(),
  logger: z
    .custom<Logger>(
      (v) => typeof v === "object" && v !== null && isFunction((v as Logger).warn) && isFunction((v as Logger).error),
      { error: "`logger` must be an object with warn(message) and error(message) functions" },
    )
    .optional(),
  clock: z
    .custom<Clock>(
      (v) => typeof v === "object" && v !== null && ["now", "wallNow", "setTimeout"].every((m) => isFunction((v as Record<string, unknown>)[m])),
      { error: "`clock` must have now(), wallNow() and setTimeout() (the system clock, or a TestClock)" },
    )
    .optional(),
};

/** Checks that need several options at once; reuse it on any schema built from the shape. */
export function refineIngestOptions(value: { url: string; apiKey?: string | undefined }, ctx: z.RefinementCtx): void {
  if (value.apiKey !== undefined) return;
  let host: string;
  try {
    host = new URL(value.url).hostname;
  } catch {
    return; // `url` reports its own problem
  }
  if (HOSTED.test(host)) {
    ctx.addIssue({
      code: "custom",
      path: ["apiKey"],
      message: `\`apiKey\` is required for ${host} (it is missing or empty): Konnect and OpenMeter Cloud answer 401 without one`,
    });
  }
}

const ingestOptionsSchema = z.strictObject(ingestOptionsShape).superRefine(refineIngestOptions);

/** With defaults filled in. Internal: the published types are the hand-written ones above. */
export type ResolvedIngestOptions = z.output<typeof ingestOptionsSchema>;

export function parseIngestOptions(input: unknown): ResolvedIngestOptions {
  return parseOptions(ingestOptionsSchema, input, "Invalid IngestClient options");
}

/**
 * What is allowed but probably wrong about a url, or worth knowing, one note each. Not errors:
 * proxies may serve the events endpoint at another path, and a private network may carry plain http.
 */
export function urlNotes(url: string, apiKey: string | undefined): string[] {
  const u = new URL(url);
  const notes: string[] = [];
  if (!u.pathname.endsWith("/events")) {
    notes.push(
      `url ${safeUrl(url)} does not end in /events: OpenMeter serves /api/v1/events, Konnect /v3/openmeter/events; ` +
        "if nothing arrives, check url (a proxy that maps another path is fine)",
    );
  }
  const plain = u.protocol === "http:" && !isLoopbackHost(u.hostname);
  if (plain && apiKey !== undefined) {
    notes.push(`url ${safeUrl(url)} uses http:// to ${u.hostname}: the API key and usage travel unencrypted; use https:// unless this network is private`);
  } else if (plain) {
    notes.push(`sending to ${safeUrl(url)} without an apiKey and without TLS: fine for a self-hosted OpenMeter on a private network, otherwise set apiKey and use https://`);
  }
  return notes;
}
