/**
 * A local, in-process OpenMeter-compatible events endpoint for tests, benchmarks and examples.
 *
 * It speaks OpenMeter's ingest wire behaviour over real sockets (node:http, no dependencies):
 * - v1 (`api: "v1"`, default): `POST /api/v1/events`, 204 on success. The Content-Type must be
 *   exactly `application/cloudevents+json` (one event), `application/cloudevents-batch+json` (an
 *   array) or `application/json` (either); anything else, even with a `; charset=utf-8` parameter,
 *   gets 400 (not 415). Unknown top-level attributes are CloudEvents extensions and are kept.
 * - v3 (`api: "v3"`, what Kong Konnect serves): `POST /v3/openmeter/events`, 202 on success.
 *   Media-type parameters are ignored; an unsupported media type gets 400, the only client error
 *   the v3 description documents besides 401/403. Unknown top-level attributes are rejected.
 * - Every event needs non-empty string `id`, `source`, `specversion` ("1.0"), `type`, `subject`;
 *   optional attributes may be null; `time` must be RFC 3339 and is set to the receive time when
 *   missing; `data` must be an object; `datacontenttype` may only be `application/json`.
 *   One invalid event rejects the whole request: 400 `application/problem+json` naming the event
 *   index and attribute. Malformed JSON is a 400 problem too.
 * - De-duplication on `source` + `id` (on by default, as a deployment with OpenMeter's de-duplicator
 *   enabled; `dedupe: false` is a bare self-hosted server): duplicates are dropped silently and the
 *   request still succeeds.
 * Beyond OpenMeter: optional bearer `apiKey` (401), a body limit (413), 404/405 for other paths and
 * methods, an inspection API (`events`, `requests`, `totals()`, `waitForEvents()`, `onEvents()`) and
 * fault injection (`failNext()`, `setMode()`, `outage()`, `delayMs`) to prove retries and
 * loss-freedom. Scripted failures, outages, hangs and resets never record events.
 */
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { CloudEvent } from "../cloudevent";
import { describeIssue, validateEvent, type EventIssue } from "./validate-event";

export type OpenMeterApi = "v1" | "v3";

/**
 * - `ok`: behave like OpenMeter.
 * - `hang`: read the request, never answer (the client must time out).
 * - `reset`: destroy the connection (TCP reset) as soon as a request arrives.
 * - `down`: answer 503 problem+json to every events request.
 */
export type OpenMeterServerMode = "ok" | "hang" | "reset" | "down";

export interface OpenMeterServerOptions {
  /** Which ingest API to mirror. Default `"v1"`. */
  api?: OpenMeterApi;
  /** Default `"127.0.0.1"`. */
  host?: string;
  /** Default `0` (a free port). */
  port?: number;
  /** When set, requests need `Authorization: Bearer <apiKey>` or get 401. Default: no auth. */
  apiKey?: string;
  /** Drop events whose `source` + `id` was already accepted. Default `true`. */
  dedupe?: boolean;
  /**
   * Largest request body accepted; larger ones get 413. Default 1 MiB (1_048_576 bytes): OpenMeter
   * documents no limit, and 1 MiB is a common proxy default, so a client that fits here fits there.
   */
  maxBodyBytes?: number;
  /** Latency added before every answer, in ms. Default `0`. Settable later via `server.delayMs`. */
  delayMs?: number;
}

/** An event as stored: what was sent, with null optional attributes removed and `time` filled in. */
export interface ReceivedEvent extends CloudEvent {
  /** As sent, or the receive time when the event had none. */
  time: string;
  datacontenttype?: "application/json";
  dataschema?: string;
}

export type RequestOutcome =
  | "accepted" // 2xx, events recorded (duplicates dropped when dedupe is on)
  | "rejected" // 4xx from OpenMeter's own rules: auth, size, content type, JSON, validation, path, method
  | "scripted" // answered from the failNext() queue
  | "down" // 503 because of setMode("down") / outage()
  | "hang" // never answered
  | "reset"; // connection destroyed

export interface RequestRecord {
  method: string;
  /** Path and query, as requested. */
  path: string;
  /** Status sent, or `null` when the request was never answered (hang, reset, or server closed). */
  status: number | null;
  outcome: RequestOutcome;
  /** The Content-Type header as sent, or `null`. */
  contentType: string | null;
  /** Whether an Authorization header was present (its value is never recorded). */
  authorization: boolean;
  /** Events in the body when it could be parsed (1 for a single event), else 0. */
  eventCount: number;
  /** Events newly recorded by this request (after de-duplication). */
  accepted: number;
  /** Events in this request that were already seen (dropped when dedupe is on). */
  duplicates: number;
  /** Problem detail for an error answer. */
  detail?: string;
  /** When the request arrived. */
  time: Date;
}

export interface ScriptedResponse {
  /** HTTP status to answer with, e.g. 503, 429, 400, 401 or 200. */
  status: number;
  /** `Retry-After` header value: seconds (number or string) or an HTTP date. */
  retryAfter?: number | string;
  /**
   * Response body. A string is sent as is; an object as JSON. Default: a problem+json body for
   * status >= 400, empty otherwise.
   */
  body?: string | object;
  /** Default: `application/problem+json` for the default/object body, `text/plain` for a string. */
  contentType?: string;
  /** Extra response headers. */
  headers?: Record<string, string>;
}

export type EventsListener = (events: readonly ReceivedEvent[], request: RequestRecord) => void;

/** Sum of `data.tokens` per subject, then per `data.type`: `{ acme: { input: 120, output: 30 } }`. */
export type TokenTotals = Record<string, Record<string, number>>;

const CONTENT_TYPES = [
  "application/cloudevents+json",
  "application/cloudevents-batch+json",
  "application/json",
] as const;
type IngestContentType = (typeof CONTENT_TYPES)[number];

const PATHS: Record<OpenMeterApi, string> = { v1: "/api/v1/events", v3: "/v3/openmeter/events" };
const SUCCESS: Record<OpenMeterApi, number> = { v1: 204, v3: 202 };
const DEFAULT_MAX_BODY = 1024 * 1024;

interface Waiter {
  count: number;
  resolve: (events: readonly ReceivedEvent[]) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

class Problem {
  constructor(
    readonly status: number,
    readonly detail: string,
    readonly issues: readonly EventIssue[] = [],
  ) {}
}

export class OpenMeterServer {
  /** Which API this server mirrors. */
  readonly api: OpenMeterApi;
  /** `http://host:port` */
  readonly origin: string;
  /** The full events URL to configure a client with. */
  readonly url: string;
  /** Set while `true`; see `OpenMeterServerOptions.dedupe`. */
  readonly dedupe: boolean;
  readonly maxBodyBytes: number;
  /** Latency added before every answer, in ms. */
  delayMs: number;

  readonly #server: Server;
  readonly #apiKey: string | undefined;
  readonly #initialDelayMs: number;
  readonly #events: ReceivedEvent[] = [];
  readonly #requests: RequestRecord[] = [];
  readonly #seen = new Set<string>();
  readonly #scripts: ScriptedResponse[] = [];
  readonly #listeners = new Set<EventsListener>();
  readonly #waiters = new Set<Waiter>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #duplicates = 0;
  #mode: OpenMeterServerMode = "ok";
  #outageTimer: NodeJS.Timeout | undefined;
  #outageDone: (() => void) | undefined;
  #requestSeq = 0;
  #closed: Promise<void> | undefined;

  /** @internal Use `startOpenMeterServer()`. */
  constructor(
    server: Server,
    options: { api: OpenMeterApi; dedupe: boolean; maxBodyBytes: number; delayMs: number; apiKey?: string },
  ) {
    this.#server = server;
    this.api = options.api;
    this.dedupe = options.dedupe;
    this.maxBodyBytes = options.maxBodyBytes;
    this.delayMs = options.delayMs;
    this.#initialDelayMs = options.delayMs;
    this.#apiKey = options.apiKey;
    const address = server.address() as AddressInfo;
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
    this.origin = `http://${host}:${address.port}`;
    this.url = `${this.origin}${PATHS[this.api]}`;
    server.on("request", (req, res) => {
      this.#handle(req, res).catch((error: unknown) => {
        // Only reachable through a bug here; answer rather than leave the client hanging.
        if (!res.headersSent && !res.destroyed) {
          this.#sendProblem(res, new Problem(500, `test server error: ${String(error)}`));
        }
      });
    });
  }

  /** Accepted unique events (all events when dedupe is off), in arrival order. Emptied by `reset()`. */
  get events(): readonly ReceivedEvent[] {
    return this.#events;
  }

  /** Every request to the server, in arrival order. Emptied by `reset()`. */
  get requests(): readonly RequestRecord[] {
    return this.#requests;
  }

  /**
   * Events that arrived again with a `source` + `id` already seen: dropped when dedupe is on, kept
   * (and counted here, so a test can prove nothing was re-sent) when it is off.
   */
  get duplicates(): number {
    return this.#duplicates;
  }

  get mode(): OpenMeterServerMode {
    return this.#mode;
  }

  /** Scripted responses still queued by `failNext()`. */
  get queuedFailures(): number {
    return this.#scripts.length;
  }

  /** Sum of numeric `data.tokens` per subject and `data.type` ("unknown" when absent). */
  totals(): TokenTotals {
    const totals: TokenTotals = {};
    for (const event of this.#events) {
      const tokens = event.data?.tokens;
      if (typeof tokens !== "number" || !Number.isFinite(tokens)) continue;
      const type = typeof event.data?.type === "string" ? event.data.type : "unknown";
      const perSubject = (totals[event.subject] ??= {});
      perSubject[type] = (perSubject[type] ?? 0) + tokens;
    }
    return totals;
  }

  /**
   * Resolves with the events once at least `count` unique events have been recorded; rejects after
   * `timeoutMs` (default 5000) with a message saying how many arrived and what the last answer was.
   */
  waitForEvents(count: number, timeoutMs = 5000): Promise<readonly ReceivedEvent[]> {
    if (this.#events.length >= count) return Promise.resolve(this.#events.slice());
    if (this.#closed) return Promise.reject(new Error("waitForEvents: the OpenMeter test server is closed"));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        count,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters.delete(waiter);
          const last = this.#requests.at(-1);
          const lastText = last
            ? `last request: ${last.method} ${last.path} -> ${last.status ?? "no answer"} (${last.outcome})`
            : "no requests arrived";
          reject(
            new Error(
              `waitForEvents: expected at least ${count} events within ${timeoutMs} ms, got ` +
                `${this.#events.length} (${this.#requests.length} requests, ${this.#duplicates} duplicates; ${lastText})`,
            ),
          );
        }, timeoutMs),
      };
      this.#waiters.add(waiter);
    });
  }

  /** Calls `listener` with each accepted batch of newly recorded events. Returns an unsubscribe function. */
  onEvents(listener: EventsListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Answers the next `count` events requests with `response` instead of processing them (after
   * any already queued). Nothing from those requests is recorded. Path/method errors, `down`,
   * `hang` and `reset` take precedence and do not consume the queue.
   */
  failNext(count: number, response: ScriptedResponse): void {
    if (!Number.isInteger(count) || count < 0) throw new RangeError(`failNext: count must be a non-negative integer, got ${count}`);
    if (!Number.isInteger(response.status) || response.status < 100 || response.status > 599) {
      throw new RangeError(`failNext: status must be an HTTP status code, got ${response.status}`);
    }
    for (let i = 0; i < count; i++) this.#scripts.push(response);
  }

  /** Switches how the events endpoint behaves; cancels a running `outage()`. */
  setMode(mode: OpenMeterServerMode): void {
    this.#endOutage();
    this.#mode = mode;
  }

  /** `down` for `ms`, then `ok`. The promise resolves when the server is back (or reset/closed). */
  outage(ms: number): Promise<void> {
    this.setMode("down");
    return new Promise((resolve) => {
      this.#outageDone = resolve;
      this.#outageTimer = setTimeout(() => {
        this.#mode = "ok";
        this.#endOutage();
      }, ms);
    });
  }

  /**
   * Forgets events, requests, duplicates and de-duplication state, drops queued failures, and
   * returns mode and `delayMs` to their start values. Listeners and waiters stay.
   */
  reset(): void {
    this.#events.length = 0;
    this.#requests.length = 0;
    this.#seen.clear();
    this.#scripts.length = 0;
    this.#duplicates = 0;
    this.setMode("ok");
    this.delayMs = this.#initialDelayMs;
  }

  /** Stops listening and destroys open connections (hanging requests included). Idempotent. */
  close(): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      this.#endOutage();
      for (const timer of this.#timers) clearTimeout(timer);
      this.#timers.clear();
      for (const waiter of this.#waiters) {
        clearTimeout(waiter.timer);
        waiter.reject(new Error("waitForEvents: the OpenMeter test server was closed"));
      }
      this.#waiters.clear();
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
    return this.#closed;
  }

  #endOutage(): void {
    if (this.#outageTimer) clearTimeout(this.#outageTimer);
    this.#outageTimer = undefined;
    const done = this.#outageDone;
    this.#outageDone = undefined;
    done?.();
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const record: RequestRecord = {
      method: req.method ?? "",
      path: req.url ?? "",
      status: null,
      outcome: "rejected",
      contentType: req.headers["content-type"] ?? null,
      authorization: req.headers.authorization !== undefined,
      eventCount: 0,
      accepted: 0,
      duplicates: 0,
      time: new Date(),
    };
    this.#requests.push(record);
    const pathname = (req.url ?? "").split("?")[0];

    if (pathname !== PATHS[this.api]) {
      req.resume();
      return this.#answerProblem(res, record, new Problem(404, `no route for ${pathname}; events go to ${PATHS[this.api]}`));
    }
    if (req.method !== "POST") {
      req.resume();
      res.setHeader("Allow", "POST");
      return this.#answerProblem(res, record, new Problem(405, `method ${req.method} is not allowed; use POST`));
    }

    if (this.#mode === "reset") {
      record.outcome = "reset";
      req.socket.resetAndDestroy();
      return;
    }

    const body = await readBody(req, this.maxBodyBytes);
    if (body === undefined) return; // the client went away mid-body

    if (this.#mode === "hang") {
      record.outcome = "hang";
      return; // never answer; close() or the client's abort ends it
    }
    if (this.#mode === "down") {
      record.outcome = "down";
      record.eventCount = countEvents(body.text);
      return this.#answerProblem(res, record, new Problem(503, "the service is temporarily unavailable"), "down");
    }
    const script = this.#scripts.shift();
    if (script) {
      record.outcome = "scripted";
      record.eventCount = countEvents(body.text);
      return this.#answerScripted(res, record, script);
    }

    let problem: Problem | undefined;
    let events: ReceivedEvent[] = [];
    const auth = this.#checkAuth(req);
    if (auth) problem = auth;
    else if (body.tooLarge) {
      problem = new Problem(413, `request body exceeds ${this.maxBodyBytes} bytes`);
      res.setHeader("Connection", "close");
    } else {
      const parsed = this.#parse(record, body.text);
      if (parsed instanceof Problem) problem = parsed;
      else events = parsed;
    }
    if (problem) return this.#answerProblem(res, record, problem);

    const fresh: ReceivedEvent[] = [];
    for (const event of events) {
      const key = `${event.source}\u0000${event.id}`;
      if (this.#seen.has(key)) {
        record.duplicates++;
        this.#duplicates++;
        if (this.dedupe) continue;
      }
      this.#seen.add(key);
      fresh.push(event);
    }
    record.accepted = fresh.length;
    record.outcome = "accepted";
    this.#events.push(...fresh);
    await this.#delay();
    record.status = SUCCESS[this.api];
    if (!res.destroyed) res.writeHead(record.status, { "Content-Length": "0" }).end();
    this.#publish(fresh, record);
  }

  #checkAuth(req: IncomingMessage): Problem | undefined {
    if (this.#apiKey === undefined) return undefined;
    const header = req.headers.authorization;
    if (header === undefined) return new Problem(401, "missing Authorization header (expected a Bearer token)");
    const match = /^Bearer\s+(.+)$/i.exec(header);
    if (!match) return new Problem(401, "the Authorization header must use the Bearer scheme");
    if (match[1]?.trim() !== this.#apiKey) return new Problem(401, "invalid API token");
    return undefined;
  }

  /** Content type, JSON, shape and event checks; sets `record.eventCount` once the JSON parses. */
  #parse(record: RequestRecord, text: string): Problem | ReceivedEvent[] {
    const mediaType = this.#mediaType(record.contentType);
    if (mediaType instanceof Problem) return mediaType;
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      return new Problem(400, `malformed JSON in request body: ${(error as Error).message}`);
    }
    let list: unknown[];
    if (Array.isArray(json)) {
      if (mediaType === "application/cloudevents+json") {
        return new Problem(400, "application/cloudevents+json carries one event; send an array as application/cloudevents-batch+json");
      }
      list = json;
    } else {
      if (mediaType === "application/cloudevents-batch+json") {
        return new Problem(400, "application/cloudevents-batch+json must carry a JSON array of events");
      }
      list = [json];
    }
    record.eventCount = list.length;
    const issues = list.flatMap((event, index) => validateEvent(event, index, this.api === "v3"));
    if (issues.length > 0) {
      const shown = issues.slice(0, 10).map(describeIssue).join("; ");
      const more = issues.length > 10 ? `; and ${issues.length - 10} more` : "";
      return new Problem(400, `invalid event: ${shown}${more}`, issues);
    }
    const time = record.time.toISOString();
    return list.map((event) => {
      const copy: Record<string, unknown> = {};
      for (const [name, value] of Object.entries(event as Record<string, unknown>)) {
        if (value !== null) copy[name] = value;
      }
      copy.time ??= time;
      return copy as unknown as ReceivedEvent;
    });
  }

  #mediaType(contentType: string | null): IngestContentType | Problem {
    const allowed = `expected one of ${CONTENT_TYPES.join(", ")}`;
    if (contentType === null) return new Problem(400, `missing Content-Type header; ${allowed}`);
    // v1 compares the header exactly; v3 parses the media type and ignores parameters.
    const candidate = this.api === "v1" ? contentType : (contentType.split(";")[0] ?? "").trim().toLowerCase();
    const found = CONTENT_TYPES.find((type) => type === candidate);
    if (found) return found;
    return new Problem(400, `unsupported Content-Type ${JSON.stringify(contentType)}; ${allowed}` +
      (this.api === "v1" && contentType.includes(";") ? " (exactly, without parameters)" : ""));
  }

  #publish(events: readonly ReceivedEvent[], record: RequestRecord): void {
    if (events.length > 0) {
      for (const listener of this.#listeners) {
        try {
          listener(events, record);
        } catch (error) {
          process.emitWarning(`OpenMeter test server: an onEvents listener threw: ${String(error)}`);
        }
      }
    }
    for (const waiter of this.#waiters) {
      if (this.#events.length >= waiter.count) {
        clearTimeout(waiter.timer);
        this.#waiters.delete(waiter);
        waiter.resolve(this.#events.slice());
      }
    }
  }

  async #answerScripted(res: ServerResponse, record: RequestRecord, script: ScriptedResponse): Promise<void> {
    const headers: Record<string, string> = { ...script.headers };
    if (script.retryAfter !== undefined) headers["Retry-After"] = String(script.retryAfter);
    let body = "";
    if (typeof script.body === "string") {
      body = script.body;
      headers["Content-Type"] = script.contentType ?? "text/plain; charset=utf-8";
    } else if (script.body !== undefined || script.status >= 400) {
      const detail = `scripted ${script.status} response`;
      body = JSON.stringify(script.body ?? this.#problemBody(new Problem(script.status, detail)));
      headers["Content-Type"] = script.contentType ?? "application/problem+json";
      record.detail = detail;
    } else if (script.contentType !== undefined) {
      headers["Content-Type"] = script.contentType;
    }
    headers["Content-Length"] = String(Buffer.byteLength(body));
    await this.#delay();
    record.status = script.status;
    if (!res.destroyed) res.writeHead(script.status, headers).end(body);
  }

  async #answerProblem(
    res: ServerResponse,
    record: RequestRecord,
    problem: Problem,
    outcome: RequestOutcome = "rejected",
  ): Promise<void> {
    record.outcome = outcome;
    record.detail = problem.detail;
    await this.#delay();
    record.status = problem.status;
    if (!res.destroyed) this.#sendProblem(res, problem);
  }

  #sendProblem(res: ServerResponse, problem: Problem): void {
    const body = JSON.stringify(this.#problemBody(problem));
    res.writeHead(problem.status, {
      "Content-Type": "application/problem+json",
      "Content-Length": String(Buffer.byteLength(body)),
      ...(problem.status === 401 ? { "WWW-Authenticate": "Bearer" } : {}),
    });
    res.end(body);
  }

  #problemBody(problem: Problem): Record<string, unknown> {
    const title = STATUS_CODES[problem.status] ?? "Error";
    const instance = `urn:request:local/${++this.#requestSeq}`;
    if (this.api === "v1") {
      return { type: "about:blank", title, status: problem.status, detail: problem.detail, instance };
    }
    const body: Record<string, unknown> = {
      type: `https://httpstatuses.com/${problem.status}`,
      title,
      status: problem.status,
      detail: problem.detail,
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

  #delay(): Promise<void> {
    const ms = this.delayMs;
    if (!(ms > 0)) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        resolve();
      }, ms);
      this.#timers.add(timer);
    });
  }
}

/** Reads the body, keeping at most `limit` bytes; `undefined` when the client aborted. */
function readBody(req: IncomingMessage, limit: number): Promise<{ text: string; tooLarge: boolean } | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        tooLarge = true;
        chunks.length = 0;
      } else {
        chunks.push(chunk);
      }
    });
    req.on("end", () => resolve({ text: tooLarge ? "" : Buffer.concat(chunks).toString("utf8"), tooLarge }));
    // After "end" these change nothing; before it, the client went away mid-body.
    req.on("error", () => resolve(undefined));
    req.on("close", () => resolve(undefined));
  });
}

function countEvents(text: string): number {
  try {
    const json: unknown = JSON.parse(text);
    return Array.isArray(json) ? json.length : typeof json === "object" && json !== null ? 1 : 0;
  } catch {
    return 0;
  }
}

/** Starts an OpenMeter-compatible events endpoint on `host:port` (default 127.0.0.1, a free port). */
export async function startOpenMeterServer(options: OpenMeterServerOptions = {}): Promise<OpenMeterServer> {
  const api = options.api ?? "v1";
  if (api !== "v1" && api !== "v3") throw new TypeError(`startOpenMeterServer: api must be "v1" or "v3", got ${JSON.stringify(api)}`);
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY;
  if (!(maxBodyBytes > 0)) throw new RangeError(`startOpenMeterServer: maxBodyBytes must be positive, got ${maxBodyBytes}`);
  const server = createServer();
  const host = options.host ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return new OpenMeterServer(server, {
    api,
    dedupe: options.dedupe ?? true,
    maxBodyBytes,
    delayMs: options.delayMs ?? 0,
    ...(options.apiKey !== undefined ? { apiKey: options.apiKey } : {}),
  });
}
