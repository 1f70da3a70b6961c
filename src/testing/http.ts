/**
 * HTTP plumbing shared by the fake's routes: reading bodies, Go-like JSON decoding and problem bodies.
 *
 * - JSON: Go's `json.NewDecoder(r).Decode(&v)` reads the first JSON value and ignores what follows
 *   (both kin-openapi's body decoder, `openmeter/server/router/router.go` `jsonBodyDecoder`, and the ingest
 *   handler, `openmeter/ingest/httpdriver/ingest.go`, decode that way), and refuses a number that does not
 *   fit a float64 (`1e400`).
 * - Problems: v1 answers RFC 7807 `{type: "about:blank", title, status, detail, instance}` with no detail
 *   for a 500 (`pkg/models/problem.go` `NewStatusProblem`); v3 answers Kong's AIP-style problems
 *   (`api/v3/apierrors`), modelled here with `invalid_parameters` on a 400.
 */
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from "node:http";
import type { EventIssue } from "./validate-event";

/** A problem to answer with. */
export class Problem {
  constructor(
    readonly status: number,
    readonly detail: string,
    readonly issues: readonly EventIssue[] = [],
    readonly headers: Record<string, string> = {},
    /** The fake's own 500 (a bug here) keeps its detail; OpenMeter's 500s have none. */
    readonly keepDetail = false,
  ) {}
}

/** Reads the body whole; `tooLarge` when it passed `limit` bytes (the rest is read and thrown away). `undefined`: the client went away. */
export function readBody(req: IncomingMessage, limit: number | undefined): Promise<{ text: string; bytes: number; tooLarge: boolean } | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (limit !== undefined && size > limit) {
        tooLarge = true;
        chunks.length = 0;
      } else if (!tooLarge) {
        chunks.push(chunk);
      }
    });
    req.on("end", () => resolve({ text: tooLarge ? "" : Buffer.concat(chunks).toString("utf8"), bytes: size, tooLarge }));
    req.on("error", () => resolve(undefined));
    req.on("close", () => resolve(undefined));
  });
}

/** Go `json.Decoder.Decode` into `interface{}`: the first value, trailing data ignored. */
export function decodeFirstJsonValue(text: string): { value: unknown } | { error: string } {
  const end = endOfFirstValue(text);
  if (end === undefined) {
    return { error: text.trim() === "" ? "EOF" : "unexpected EOF" };
  }
  try {
    let overflow = false;
    const value = JSON.parse(text.slice(0, end), (_key, v: unknown) => {
      if (typeof v === "number" && !Number.isFinite(v)) overflow = true;
      return v;
    }) as unknown;
    if (overflow) return { error: "json: cannot unmarshal number into Go value of type float64" };
    return { value };
  } catch (error) {
    return { error: (error as Error).message };
  }
}

/** Index just past the first JSON value (a light scan; JSON.parse judges the value itself). */
function endOfFirstValue(text: string): number | undefined {
  let i = 0;
  while (i < text.length && /\s/.test(text[i]!)) i++;
  if (i >= text.length) return undefined;
  const start = text[i]!;
  if (start === "{" || start === "[") {
    let depth = 0;
    let inString = false;
    for (; i < text.length; i++) {
      const c = text[i]!;
      if (inString) {
        if (c === "\\") i++;
        else if (c === '"') inString = false;
        continue;
      }
      if (c === '"') inString = true;
      else if (c === "{" || c === "[") depth++;
      else if (c === "}" || c === "]") {
        depth--;
        if (depth === 0) return i + 1;
      }
    }
    return undefined;
  }
  if (start === '"') {
    for (i++; i < text.length; i++) {
      if (text[i] === "\\") i++;
      else if (text[i] === '"') return i + 1;
    }
    return undefined;
  }
  const m = /^[^\s,\]}]+/.exec(text.slice(i));
  return m ? i + m[0].length : undefined;
}

export function problemBody(api: "v1" | "v3", problem: Problem, instance: string): Record<string, unknown> {
  const title = STATUS_CODES[problem.status] ?? "Error";
  if (api === "v1") {
    return {
      type: "about:blank",
      title,
      status: problem.status,
      // NewStatusProblem: a 500 carries no detail.
      ...((problem.status === 500 && !problem.keepDetail) || problem.detail === "" ? {} : { detail: problem.detail }),
      instance,
    };
  }
  const body: Record<string, unknown> = {
    type: `https://httpstatuses.com/${problem.status}`,
    title,
    status: problem.status,
    ...((problem.status === 500 && !problem.keepDetail) || problem.detail === "" ? {} : { detail: problem.detail }),
    instance,
  };
  if (problem.status === 400) {
    body.invalid_parameters =
      problem.issues.length > 0
        ? problem.issues.map((issue) => ({
            field: `[${issue.index}]${issue.field ? `.${issue.field}` : ""}`,
            rule: issue.rule,
            reason: issue.reason,
            source: "body",
          }))
        : [{ field: "body", reason: problem.detail, source: "body" }];
  }
  return body;
}

export function sendJson(res: ServerResponse, status: number, body: unknown, contentType = "application/json"): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": contentType, "Content-Length": String(Buffer.byteLength(text)) });
  res.end(text);
}
