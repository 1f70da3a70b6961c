import { z } from "zod";
import type { Logger } from "../logger";
import type { IngestError } from "./errors";

const LOOPBACK_HOSTS = new Set(["localhost", "[::1]", "::1"]);

/** Loopback hosts may skip the API key: a local OpenMeter usually runs without auth. */
export function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK_HOSTS.has(hostname) || /^127(\.\d{1,3}){3}$/.test(hostname);
}

function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
  if (typeof value === "function") return "a function";
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  return String(value);
}

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

export const retryOptionsSchema = z
  .strictObject({
    retries: int("retry.retries", 0, 10),
    minDelayMs: int("retry.minDelayMs", 0, 200),
    maxDelayMs: int("retry.maxDelayMs", 0, 30_000),
  })
  .refine((r) => r.maxDelayMs >= r.minDelayMs, {
    error: "`retry.maxDelayMs` must be >= `retry.minDelayMs`",
  });

/**
 * The ingest options as a zod shape, so a wrapper (the metering handler) can spread it into its own
 * strict object and run {@link refineIngestOptions} on the result.
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
  maxBatchSize: int("maxBatchSize", 1, 100),
  flushIntervalMs: int("flushIntervalMs", 0, 1000),
  maxQueueSize: int("maxQueueSize", 1, 10_000),
  maxConcurrency: int("maxConcurrency", 1, 4),
  timeoutMs: int("timeoutMs", 1, 10_000),
  retry: retryOptionsSchema.default({ retries: 10, minDelayMs: 200, maxDelayMs: 30_000 }),
  spoolDir: z
    .custom<string>((v) => typeof v === "string" && v.length > 0, {
      error: (issue) => `\`spoolDir\` must be a directory path, got ${describe(issue.input)}`,
    })
    .optional(),
  onError: z
    .custom<(error: IngestError) => void>((v) => typeof v === "function", {
      error: (issue) => `\`onError\` must be a function (error: IngestError) => void, got ${describe(issue.input)}`,
    })
    .optional(),
  logger: z
    .custom<Logger>(
      (v) =>
        typeof v === "object" &&
        v !== null &&
        typeof (v as Logger).warn === "function" &&
        typeof (v as Logger).error === "function",
      { error: "`logger` must be an object with warn(message) and error(message) functions" },
    )
    .optional(),
  flushOnExit: bool("flushOnExit", true),
  handleSignals: bool("handleSignals", false),
};

/**
 * What is allowed but probably wrong about a url, one warning each. Not errors: proxies and gateways
 * may serve the events endpoint at another path, and a private network may carry plain http.
 */
export function urlWarnings(url: string): string[] {
  const u = new URL(url);
  const warnings: string[] = [];
  if (!u.pathname.endsWith("/events")) {
    warnings.push(
      `url ${safeUrl(url)} does not end in /events: OpenMeter serves /api/v1/events, Konnect /v3/openmeter/events; ` +
        "if nothing arrives, check url (a proxy that maps another path is fine)",
    );
  }
  if (u.protocol === "http:" && !isLoopbackHost(u.hostname)) {
    warnings.push(
      `url ${safeUrl(url)} uses http:// to ${u.hostname}: the API key and usage travel unencrypted; use https:// unless this network is private`,
    );
  }
  return warnings;
}

/** Checks that need several options at once; reuse it on any schema built from the shape. */
export function refineIngestOptions(value: { url: string; apiKey?: string | undefined }, ctx: z.RefinementCtx): void {
  if (value.apiKey !== undefined) return;
  let host: string;
  try {
    host = new URL(value.url).hostname;
  } catch {
    return; // `url` reports its own problem
  }
  if (!isLoopbackHost(host)) {
    ctx.addIssue({
      code: "custom",
      path: ["apiKey"],
      message: `\`apiKey\` is required for ${host} (it is missing or empty): only loopback URLs (localhost, 127.0.0.1, ::1) may omit it`,
    });
  }
}

export const ingestOptionsSchema = z.strictObject(ingestOptionsShape).superRefine(refineIngestOptions);

/** What the user passes. */
export type IngestOptions = z.input<typeof ingestOptionsSchema>;
/** With defaults filled in. */
export type ResolvedIngestOptions = z.output<typeof ingestOptionsSchema>;
export type RetryOptions = z.output<typeof retryOptionsSchema>;

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}

function closest(key: string, allowed: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestScore = Infinity;
  for (const candidate of allowed) {
    const lower = candidate.toLowerCase();
    const score = lower.startsWith(key.toLowerCase()) || key.toLowerCase().startsWith(lower) ? 1 : editDistance(key.toLowerCase(), lower);
    if (score < bestScore) {
      bestScore = score;
      best = candidate;
    }
  }
  return bestScore <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

function shapeKeys(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let s: unknown = schema;
  for (const key of path) {
    s = unwrapObject(s)?.shape[key as string];
  }
  const obj = unwrapObject(s);
  return obj ? Object.keys(obj.shape) : [];
}

function unwrapObject(s: unknown): z.ZodObject | undefined {
  for (let i = 0; i < 8 && s; i++) {
    if (s instanceof z.ZodObject) return s;
    const def = (s as { _zod?: { def?: { innerType?: unknown; in?: unknown; schema?: unknown } } })._zod?.def;
    s = def?.innerType ?? def?.in ?? def?.schema;
  }
  return undefined;
}

/** One line per problem, each naming the option and what is allowed. */
export function formatOptionIssues(schema: z.ZodType, error: z.ZodError, input?: unknown): string[] {
  const lines: string[] = [];
  for (const issue of error.issues) {
    if (issue.code === "unrecognized_keys") {
      const allowed = shapeKeys(schema, issue.path);
      const prefix = issue.path.length ? `${issue.path.join(".")}.` : "";
      for (const key of issue.keys) {
        const hint = closest(key, allowed);
        lines.push(
          `unknown option \`${prefix}${key}\`${hint ? ` (did you mean \`${prefix}${hint}\`?)` : ""}; allowed: ${allowed.join(", ")}`,
        );
      }
    } else if (issue.code === "invalid_type" && issue.path.length === 0) {
      lines.push(`options must be an object, got ${describe(input)}`);
    } else if (issue.code === "invalid_type" && issue.path.length > 0 && issue.expected === "object") {
      lines.push(`\`${issue.path.join(".")}\` must be an object`);
    } else {
      lines.push(issue.message);
    }
  }
  return lines;
}

/** Parses options with any schema, throwing one TypeError that lists every problem. */
export function parseOptions<S extends z.ZodType>(schema: S, input: unknown, label: string): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  // The key passed to the wrong option would be echoed as that option's bad value.
  const apiKey = (input as { apiKey?: unknown } | null)?.apiKey;
  const lines = formatOptionIssues(schema, result.error, input).map((line) =>
    typeof apiKey === "string" && apiKey.length >= 8 ? line.split(apiKey).join("[redacted]") : line,
  );
  throw new TypeError(
    lines.length === 1 ? `${label}: ${lines[0]}` : `${label}: ${lines.length} problems:\n- ${lines.join("\n- ")}`,
  );
}

export function parseIngestOptions(input: unknown): ResolvedIngestOptions {
  return parseOptions(ingestOptionsSchema, input, "Invalid IngestClient options");
}
