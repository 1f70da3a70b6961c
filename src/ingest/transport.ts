import { Pool } from "undici";
import { type Clock, systemClock } from "../clock";
import { safeUrl } from "./options";
import { parseRetryAfter } from "./retry-after";

/** Exactly this, no parameters: OpenMeter v1 compares the header verbatim and answers 400 otherwise. */
export const BATCH_CONTENT_TYPE = "application/cloudevents-batch+json";

const MAX_ERROR_BODY = 16 * 1024;
const SNIPPET_LENGTH = 200;

export interface TransportOptions {
  url: string;
  apiKey?: string | undefined;
  /** One deadline for the whole request: connecting, sending, the answer's headers and its body. */
  timeoutMs: number;
  connections: number;
  clock?: Clock;
}

/**
 * How one request ended. Modelled on the OTLP exporter's result union: the caller decides what to
 * do next from `kind` alone.
 * - `delivered`: a 2xx (OpenMeter v1 answers 204, v3 and Konnect 202).
 * - `refused`: an answer that retrying cannot change (most 4xx, 3xx, a 2xx web page); `configuration`
 *   when the key, url or a proxy is at fault rather than the events (401, 403, 404, 3xx, HTML).
 * - `retryable`: a network error, the deadline, 408, 429 or 5xx; `retryAfterMs` when the server said when.
 * - `aborted`: the caller's signal ended it (shutdown's deadline): nothing is known about delivery.
 */
export type AttemptResult =
  | { kind: "delivered"; status: number }
  | { kind: "refused"; status: number | undefined; detail: string | undefined; message: string; configuration: boolean }
  | { kind: "retryable"; status: number | undefined; detail: string | undefined; message: string; retryAfterMs: number | undefined }
  | { kind: "aborted" };

/** Replaces every occurrence of the secret; servers and proxies sometimes echo headers back. */
export function redact(text: string, secret: string | undefined): string {
  return secret ? text.split(secret).join("[redacted]") : text;
}

type Response = Awaited<ReturnType<Pool["request"]>>;

/** One POST per batch over one keep-alive pool. Never throws: every ending is an `AttemptResult`. */
export class Transport {
  readonly #pool: Pool;
  readonly #path: string;
  readonly #headers: Record<string, string>;
  readonly #shownUrl: string;
  readonly #clock: Clock;

  constructor(readonly options: TransportOptions) {
    const url = new URL(options.url);
    this.#path = `${url.pathname}${url.search}`;
    this.#shownUrl = safeUrl(options.url);
    this.#clock = options.clock ?? systemClock;
    this.#headers = { "content-type": BATCH_CONTENT_TYPE, "user-agent": "langchain-openmeter" };
    if (options.apiKey) this.#headers.authorization = `Bearer ${options.apiKey}`;
    // Our own deadline (on the injected clock) bounds each request; undici's timers are only a backstop.
    const backstop = options.timeoutMs + 1000;
    this.#pool = new Pool(url.origin, {
      connections: options.connections,
      pipelining: 1,
      connectTimeout: backstop,
      headersTimeout: backstop,
      bodyTimeout: backstop,
    });
  }

  async send(body: string, signal?: AbortSignal): Promise<AttemptResult> {
    if (signal?.aborted) return { kind: "aborted" };
    // One controller per request, ended by the deadline or by the caller's signal. (Not AbortSignal.any:
    // on Node 20 each call leaves a WeakRef on the long-lived caller's signal, a leak per request.)
    const deadline = new AbortController();
    const both = new AbortController();
    const cutOff = () => both.abort();
    signal?.addEventListener("abort", cutOff, { once: true });
    const deadlineTimer = this.#clock.setTimeout(() => {
      deadline.abort();
      both.abort();
    }, this.options.timeoutMs);
    const timer = {
      clear: () => {
        deadlineTimer.clear();
        signal?.removeEventListener("abort", cutOff);
      },
    };
    let res: Response;
    try {
      const request = this.#pool.request({ path: this.#path, method: "POST", headers: this.#headers, body, signal: both.signal });
      this.#clock.io?.(request);
      res = await request;
    } catch (error) {
      timer.clear();
      if (signal?.aborted) return { kind: "aborted" };
      if (deadline.signal.aborted) return this.#timedOut("before the answer's headers arrived");
      return this.#networkError(error);
    }
    const status = res.statusCode;
    if (status >= 200 && status < 300 && !/text\/html/i.test(String(res.headers["content-type"] ?? ""))) {
      // Delivered once the status is in: the body (OpenMeter sends none) is drained in the background,
      // within the same deadline, so the socket can go back to the pool.
      void res.body.dump().catch(() => undefined).finally(() => timer.clear());
      return { kind: "delivered", status };
    }
    let detail: string | undefined;
    try {
      detail = await readDetail(res);
    } catch {
      if (signal?.aborted) return { kind: "aborted" };
      if (deadline.signal.aborted && status >= 200 && status < 300) detail = undefined;
      else if (deadline.signal.aborted) return this.#timedOut(`while reading a ${status} answer`);
    } finally {
      timer.clear();
    }
    const shownDetail = detail === undefined ? undefined : this.#redact(detail);
    const suffix = shownDetail ? `: ${shownDetail}` : "";
    if (status >= 200 && status < 300) {
      // OpenMeter answers 2xx with no body or JSON: a web page is a proxy, login or app page, and the events went nowhere.
      return {
        kind: "refused",
        status,
        detail: shownDetail,
        configuration: true,
        message: `${this.#shownUrl} answered ${status} with an HTML page, not OpenMeter: the events were not ingested; check url (a proxy or login page may be in the way)${suffix}`,
      };
    }
    if (status === 408 || status === 429 || (status >= 500 && status < 600)) {
      return {
        kind: "retryable",
        status,
        detail: shownDetail,
        retryAfterMs: parseRetryAfter(res.headers["retry-after"], this.#clock.wallNow()),
        message: `${this.#shownUrl} answered ${status}${suffix}`,
      };
    }
    return {
      kind: "refused",
      status,
      detail: shownDetail,
      configuration: isConfigurationProblem(status),
      message: this.#permanentMessage(status, res.headers.location) + suffix,
    };
  }

  #timedOut(when: string): AttemptResult {
    return {
      kind: "retryable",
      status: undefined,
      detail: undefined,
      retryAfterMs: undefined,
      message: `${this.#shownUrl} did not answer within timeoutMs (${this.options.timeoutMs} ms), ${when}`,
    };
  }

  #networkError(error: unknown): AttemptResult {
    const code = (error as { code?: string }).code;
    const message = error instanceof Error ? error.message : String(error);
    if (code === "UND_ERR_INVALID_ARG") {
      // Refused before anything was sent (a header undici will not write): retrying cannot help.
      return {
        kind: "refused",
        status: undefined,
        detail: undefined,
        configuration: true,
        message: this.#redact(`could not send to ${this.#shownUrl}: ${message}`),
      };
    }
    // Still retried (DNS and listeners come back), but a typo in the url looks just like this: say so.
    const hint =
      code === "ENOTFOUND" || code === "EAI_AGAIN"
        ? " (check url: its host name does not resolve)"
        : code === "ECONNREFUSED"
          ? " (check url: nothing listens at that host and port)"
          : "";
    return {
      kind: "retryable",
      status: undefined,
      detail: undefined,
      retryAfterMs: undefined,
      message: this.#redact(`network error sending to ${this.#shownUrl}: ${code ? `${code} ` : ""}${message}${hint}`),
    };
  }

  #permanentMessage(status: number, location: string | string[] | undefined): string {
    const at = `${this.#shownUrl} answered ${status}`;
    if (status >= 300 && status < 400) {
      let to = "";
      try {
        if (typeof location === "string") to = ` to ${safeUrl(new URL(location, this.options.url).toString())}`;
      } catch {
        // An unreadable Location changes nothing about the advice.
      }
      return `${at} (redirect${to}); redirects are not followed: check url, it must be the final events URL`;
    }
    switch (status) {
      case 400:
        return `${at}: the endpoint rejected the batch, the events were not ingested`;
      case 401:
        return `${at} (unauthorized): check apiKey`;
      case 403:
        return `${at} (forbidden): check apiKey and that it may ingest events`;
      case 404:
        return `${at} (not found): check url: OpenMeter's events path ends in /events (e.g. /api/v1/events or /v3/openmeter/events)`;
      case 413:
        return `${at} (payload too large): lower maxBatchSize`;
      case 415:
        return `${at} (unsupported media type): check url points at an OpenMeter events endpoint`;
      default:
        return `${at}: not retried`;
    }
  }

  #redact(text: string): string {
    return redact(text, this.options.apiKey);
  }

  async close(): Promise<void> {
    await this.#pool.close().catch(() => undefined);
  }
}

/** Refusals that a corrected key, url or proxy would turn into deliveries. */
export function isConfigurationProblem(status: number | undefined): boolean {
  return status === undefined || status === 401 || status === 403 || status === 404 || (status >= 300 && status < 400);
}

async function readDetail(res: Response): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    const buf = chunk as Buffer;
    chunks.push(buf);
    size += buf.length;
    if (size >= MAX_ERROR_BODY) {
      res.body.destroy();
      break;
    }
  }
  const text = Buffer.concat(chunks).toString("utf8").slice(0, MAX_ERROR_BODY);
  if (text.trim() === "") return undefined;
  const type = String(res.headers["content-type"] ?? "");
  if (/json/i.test(type)) {
    try {
      const problem = JSON.parse(text) as Record<string, unknown>;
      for (const key of ["detail", "title", "message", "error"]) {
        const value = problem[key];
        if (typeof value === "string" && value.trim() !== "") return snippet(value, 500);
      }
    } catch {
      // Falls through to a snippet of the raw text.
    }
  }
  return snippet(htmlToText(text), SNIPPET_LENGTH);
}

function htmlToText(text: string): string {
  if (!/<[a-z!][\s\S]*>/i.test(text)) return text;
  const title = /<title[^>]*>([\s\S]*?)<\/title>/i.exec(text)?.[1];
  const body = text
    .replace(/<(script|style|head)[\s\S]*?<\/\1>/gi, " ")
    .replace(/<[^>]+>/g, " ")
    .replace(/&nbsp;/g, " ");
  return title && !body.includes(title.trim()) ? `${title.trim()}: ${body}` : body;
}

function snippet(text: string, max: number): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}
