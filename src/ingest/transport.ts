import { Pool } from "undici";
import { PermanentError, TransientError } from "./errors";
import { safeUrl } from "./options";
import { parseRetryAfter } from "./retry";

/** Exactly this, no parameters: OpenMeter v1 compares the header verbatim and answers 400 otherwise. */
export const BATCH_CONTENT_TYPE = "application/cloudevents-batch+json";

const MAX_ERROR_BODY = 16 * 1024;
const SNIPPET_LENGTH = 200;

export interface TransportOptions {
  url: string;
  apiKey?: string | undefined;
  timeoutMs: number;
  connections: number;
}

/** Replaces every occurrence of the secret; servers and proxies sometimes echo headers back. */
export function redact(text: string, secret: string | undefined): string {
  return secret ? text.split(secret).join("[redacted]") : text;
}

/** One request per batch over one keep-alive pool. Resolves on 2xx, throws TransientError or PermanentError. */
export class Transport {
  readonly #pool: Pool;
  readonly #path: string;
  readonly #headers: Record<string, string>;
  readonly #shownUrl: string;

  constructor(readonly options: TransportOptions) {
    const url = new URL(options.url);
    this.#path = `${url.pathname}${url.search}`;
    this.#shownUrl = safeUrl(options.url);
    this.#headers = { "content-type": BATCH_CONTENT_TYPE, "user-agent": "langchain-openmeter" };
    if (options.apiKey) this.#headers.authorization = `Bearer ${options.apiKey}`;
    this.#pool = new Pool(url.origin, {
      connections: options.connections,
      pipelining: 1,
      connectTimeout: options.timeoutMs,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
    });
  }

  /** `signal` ends the request early (a flush deadline); that counts as a network error. */
  async send(body: string, signal?: AbortSignal): Promise<void> {
    let res: Awaited<ReturnType<Pool["request"]>>;
    try {
      res = await this.#pool.request({ path: this.#path, method: "POST", headers: this.#headers, body, signal });
    } catch (error) {
      const code = (error as { code?: string }).code;
      const message = error instanceof Error ? error.message : String(error);
      if (code === "UND_ERR_INVALID_ARG") {
        // Refused before anything was sent (a header undici will not write): retrying cannot help.
        throw new PermanentError(this.#redact(`could not send to ${this.#shownUrl}: ${message}`), undefined, undefined);
      }
      // Still retried (DNS and listeners come back), but a typo in the url looks just like this: say so.
      const hint =
        code === "ENOTFOUND" || code === "EAI_AGAIN"
          ? " (check url: its host name does not resolve)"
          : code === "ECONNREFUSED"
            ? " (check url: nothing listens at that host and port)"
            : "";
      throw new TransientError(
        this.#redact(`network error sending to ${this.#shownUrl}: ${code ? `${code} ` : ""}${message}${hint}`),
        undefined,
        undefined,
        undefined,
        { cause: error },
      );
    }
    const status = res.statusCode;
    if (status >= 200 && status < 300 && /text\/html/i.test(String(res.headers["content-type"] ?? ""))) {
      // OpenMeter answers 2xx with no body or JSON: a web page is a proxy, login or app page, and the events went nowhere.
      const page = await readDetail(res).catch(() => undefined);
      const shown = page === undefined ? undefined : this.#redact(page);
      throw new PermanentError(
        `${this.#shownUrl} answered ${status} with an HTML page, not OpenMeter: the events were not ingested; ` +
          `check url (a proxy or login page may be in the way)${shown ? `: ${shown}` : ""}`,
        status,
        shown,
      );
    }
    if (status >= 200 && status < 300) {
      // Drain so the socket goes back to the pool; a body read error after a 2xx does not undo delivery.
      await res.body.dump().catch(() => undefined);
      return;
    }
    const detail = await readDetail(res).catch(() => undefined);
    const shownDetail = detail === undefined ? undefined : this.#redact(detail);
    const suffix = shownDetail ? `: ${shownDetail}` : "";
    if (status === 408 || status === 429 || (status >= 500 && status < 600)) {
      const retryAfterMs = parseRetryAfter(res.headers["retry-after"]);
      throw new TransientError(`${this.#shownUrl} answered ${status}${suffix}`, status, shownDetail, retryAfterMs);
    }
    throw new PermanentError(this.#permanentMessage(status, res.headers.location) + suffix, status, shownDetail);
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

async function readDetail(res: Awaited<ReturnType<Pool["request"]>>): Promise<string | undefined> {
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
