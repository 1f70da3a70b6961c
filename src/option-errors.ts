import { z } from "zod";

/** A value as an option error shows it: short, and never a whole secret. */
export function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
  if (typeof value === "function") return "a function";
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  return String(value);
}

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
