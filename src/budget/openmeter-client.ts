/**
 * Reads a customer's entitlement from OpenMeter (api/openapi.yaml at 7e57a394) or Kong Konnect
 * (api/v3/openapi.yaml):
 * - v1 `GET /api/v1/customers/{customerIdOrKey}/entitlements/{featureKey}/value` and v2
 *   `GET /api/v2/customers/{customerIdOrKey}/entitlements/{entitlementIdOrFeatureKey}/value`
 *   (`EntitlementValue`: `hasAccess`, and for metered entitlements `balance`, `usage`, `overage`; v2
 *   leaves `hasAccess` out when it is false). A known customer without the entitlement answers 200
 *   `{ hasAccess: false }` with no balance; an unknown customer 404.
 * - `isSoftLimit` is not part of the value: it is read once per customer from v2
 *   `GET /api/v2/customers/{customerIdOrKey}/entitlements/{entitlementIdOrFeatureKey}` (`EntitlementMeteredV2`).
 * - v3 `GET /openmeter/customers/{customerId}/entitlement-access` (Konnect): every entitlement of the
 *   customer (by ULID) with `has_access` only, no balance.
 * Never throws: every ending is a `Reading`. The API key only ever travels in the Authorization header.
 */
import { Pool } from "undici";
import type { Clock } from "../clock";

export type EntitlementApi = "v1" | "v2" | "v3";

/** What one read said. */
export type Reading =
  | { kind: "value"; hasAccess: boolean; balance: number | undefined }
  | { kind: "no_entitlement" }
  | { kind: "unknown_customer"; message: string }
  | { kind: "failed"; message: string; status?: number | undefined; configuration: boolean };

export interface EntitlementClientOptions {
  url: string;
  apiKey?: string | undefined;
  api?: EntitlementApi | undefined;
  feature: string;
  /** One deadline per request, on `clock`. */
  timeoutMs: number;
  clock: Clock;
}

const MAX_BODY = 64 * 1024;

/** Where the entitlement API lives, from the URL the user gave (an events URL or the API's base). */
export function entitlementEndpoint(url: string, api?: EntitlementApi): { origin: string; prefix: string; api: EntitlementApi } {
  const parsed = new URL(url);
  let path = parsed.pathname.replace(/\/+$/, "");
  let detected: EntitlementApi = "v1";
  if (/\/api\/v1\/events$/.test(path)) path = path.slice(0, -"/api/v1/events".length);
  else if (/\/openmeter\/events$/.test(path)) {
    path = path.slice(0, -"/openmeter/events".length);
    detected = "v3";
  } else if (/\/v3$/.test(path)) detected = "v3";
  const chosen = api ?? detected;
  if (chosen === "v3" && !/\/v3$/.test(path)) path += "/v3";
  if (chosen !== "v3" && /\/v3$/.test(path)) path = path.replace(/\/(api\/)?v3$/, "");
  return { origin: parsed.origin, prefix: path, api: chosen };
}

export class EntitlementClient {
  readonly api: EntitlementApi;
  readonly feature: string;
  /** The base shown in messages: no credentials, no query. */
  readonly shownBase: string;
  readonly #pool: Pool;
  readonly #prefix: string;
  readonly #headers: Record<string, string>;
  readonly #timeoutMs: number;
  readonly #clock: Clock;
  readonly #apiKey: string | undefined;

  constructor(options: EntitlementClientOptions) {
    const endpoint = entitlementEndpoint(options.url, options.api);
    this.api = endpoint.api;
    this.feature = options.feature;
    this.#prefix = endpoint.prefix;
    this.shownBase = `${endpoint.origin}${endpoint.prefix}`;
    this.#timeoutMs = options.timeoutMs;
    this.#clock = options.clock;
    this.#apiKey = options.apiKey;
    this.#headers = { accept: "application/json", "user-agent": "langchain-openmeter" };
    if (options.apiKey) this.#headers.authorization = `Bearer ${options.apiKey}`;
    const backstop = options.timeoutMs + 1000;
    this.#pool = new Pool(endpoint.origin, { connections: 8, connectTimeout: backstop, headersTimeout: backstop, bodyTimeout: backstop });
  }

  /** The entitlement's value now (v1/v2), or its access (v3; `customer` is then the customer's id). */
  async read(customer: string): Promise<Reading> {
    if (this.api === "v3") return this.#access(customer);
    const path = `${this.#prefix}/api/${this.api}/customers/${encodeURIComponent(customer)}/entitlements/${encodeURIComponent(this.feature)}/value`;
    const answer = await this.#get(path);
    if ("failed" in answer) return answer.failed;
    if (answer.status === 404) return { kind: "unknown_customer", message: this.#describe(path, answer) };
    if (answer.status !== 200) return this.#failure(path, answer);
    const body = answer.body as { hasAccess?: unknown; balance?: unknown } | undefined;
    if (typeof body !== "object" || body === null) return { kind: "failed", message: `GET ${this.shownBase}${path.slice(this.#prefix.length)} answered 200 without a JSON object`, configuration: true };
    const balance = typeof body.balance === "number" && Number.isFinite(body.balance) ? body.balance : undefined;
    // v2 omits hasAccess when false; a value with neither access nor balance is "no such entitlement".
    const hasAccess = body.hasAccess === true;
    if (!hasAccess && balance === undefined) return { kind: "no_entitlement" };
    return { kind: "value", hasAccess, balance };
  }

  /** Whether the metered entitlement has a soft limit (v2 entitlement), or undefined when it cannot be read. */
  async softLimit(customer: string): Promise<boolean | undefined> {
    if (this.api === "v3") return undefined;
    const path = `${this.#prefix}/api/v2/customers/${encodeURIComponent(customer)}/entitlements/${encodeURIComponent(this.feature)}`;
    const answer = await this.#get(path);
    if ("failed" in answer || answer.status !== 200) return undefined;
    const soft = (answer.body as { isSoftLimit?: unknown } | undefined)?.isSoftLimit;
    return soft === true ? true : soft === false || soft === undefined ? false : undefined;
  }

  async #access(customerId: string): Promise<Reading> {
    const path = `${this.#prefix}/openmeter/customers/${encodeURIComponent(customerId)}/entitlement-access`;
    const answer = await this.#get(path);
    if ("failed" in answer) return answer.failed;
    if (answer.status === 404) return { kind: "unknown_customer", message: this.#describe(path, answer) };
    if (answer.status !== 200) return this.#failure(path, answer);
    const data = (answer.body as { data?: unknown } | undefined)?.data;
    if (!Array.isArray(data)) return { kind: "failed", message: `GET ${this.shownBase}${path.slice(this.#prefix.length)} answered 200 without a data list`, configuration: true };
    const item = data.find((entry) => (entry as { feature_key?: unknown } | null)?.feature_key === this.feature) as { has_access?: unknown } | undefined;
    if (item === undefined) return { kind: "no_entitlement" };
    return { kind: "value", hasAccess: item.has_access === true, balance: undefined };
  }

  async #get(path: string): Promise<{ status: number; body: unknown; detail: string | undefined } | { failed: Reading }> {
    const deadline = new AbortController();
    const timer = this.#clock.setTimeout(() => deadline.abort(), this.#timeoutMs);
    const shown = `GET ${this.shownBase}${path.slice(this.#prefix.length)}`;
    try {
      const request = this.#pool.request({ path, method: "GET", headers: this.#headers, signal: deadline.signal });
      this.#clock.io?.(request);
      const res = await request;
      let text = "";
      for await (const chunk of res.body) {
        text += String(chunk);
        if (text.length > MAX_BODY) {
          res.body.destroy();
          break;
        }
      }
      let body: unknown;
      try {
        body = text === "" ? undefined : JSON.parse(text);
      } catch {
        body = undefined;
      }
      const detail = typeof (body as { detail?: unknown } | undefined)?.detail === "string" ? this.#redact((body as { detail: string }).detail).slice(0, 300) : undefined;
      return { status: res.statusCode, body, detail };
    } catch (error) {
      const why = deadline.signal.aborted ? `no answer within ${this.#timeoutMs} ms` : networkReason(error);
      return { failed: { kind: "failed", message: this.#redact(`${shown}: ${why}`), configuration: false } };
    } finally {
      timer.clear();
    }
  }

  #failure(path: string, answer: { status: number; detail: string | undefined }): Reading {
    const configuration = answer.status === 400 || answer.status === 401 || answer.status === 403;
    const hint =
      answer.status === 401 || answer.status === 403
        ? ": check apiKey (it needs read access to entitlements)"
        : answer.status === 400
          ? `: check feature (${JSON.stringify(this.feature)}) and url`
          : "";
    return { kind: "failed", status: answer.status, message: `${this.#describe(path, answer)}${hint}`, configuration };
  }

  #describe(path: string, answer: { status: number; detail: string | undefined }): string {
    return `GET ${this.shownBase}${path.slice(this.#prefix.length)} answered ${answer.status}${answer.detail ? ` (${answer.detail})` : ""}`;
  }

  #redact(text: string): string {
    return this.#apiKey ? text.split(this.#apiKey).join("[redacted]") : text;
  }

  /** Ends the connections; a read under way ends as failed (its answer would no longer be used). */
  close(): Promise<void> {
    return this.#pool.destroy();
  }
}

function networkReason(error: unknown): string {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  const cause = (error as { cause?: { code?: unknown; message?: unknown } } | null)?.cause;
  const name = typeof code === "string" ? code : typeof cause?.code === "string" ? cause.code : undefined;
  const text = typeof message === "string" ? message : String(error);
  return name && !text.includes(name) ? `${name} ${text}` : text;
}
