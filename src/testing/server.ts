/**
 * A local OpenMeter for tests, benchmarks and examples: one node:http server that behaves like the real
 * one where money is at stake, with an inspection and fault-injection API on top.
 *
 * What it models, and from where (openmeterio/openmeter at 7e57a394 unless stated; details in each module):
 * - ingest (`ingest.ts`, `validate-event.ts`): v1 `POST /api/v1/events` → 204, v3 (Kong Konnect)
 *   `POST /v3/openmeter/events` → 202; validation as kin-openapi and cloudevents/sdk-go do it; events are
 *   forwarded one by one and a failure stops the batch with a 500 after the events before it were
 *   forwarded (`failAfter`); an event whose Kafka message passes `message.max.bytes` fails the same way;
 *   no body limit of its own (`gatewayLimitBytes` adds one, for a gateway in front);
 * - de-duplication (`dedupe.ts`): off by default; ingest-time (records the key before forwarding: #5118)
 *   and sink-side drivers, memory LRU or Redis TTL;
 * - the sink (`sink.ts`): time truncated to seconds, extensions dropped, `source` re-serialized by Go,
 *   events at or before the epoch dropped, repeats within a flush dropped;
 * - meters (`meters.ts`): definitions, `ParseEvent` errors, the meter query, and
 *   `GET /api/v1/meters/{meterIdOrSlug}/query`; `totals()` reads the LLM tokens meter;
 * - events list: `GET /api/v1/events` (newest first, with each event's validation errors);
 * - entitlements (`entitlements.ts`): customers, features, metered entitlements and grants;
 *   `GET /api/v1/customers/{customerIdOrKey}/entitlements/{featureKey}/value`,
 *   `GET /api/v2/customers/{customerIdOrKey}/entitlements/{entitlementIdOrFeatureKey}/value`,
 *   `GET /api/v2/customers/{customerIdOrKey}/entitlements/{entitlementIdOrFeatureKey}` (the entitlement, with `isSoftLimit`),
 *   `GET|POST /api/v2/customers/{customerIdOrKey}/entitlements/{entitlementIdOrFeatureKey}/grants`,
 *   v3 `GET /v3/openmeter/customers/{customerId}/entitlement-access`.
 * Beyond OpenMeter: optional bearer `apiKey` (401), 404/405 problems for other routes, scripted answers
 * (`failNext`), modes (`hang`, `reset`, `down`), `outage(ms)` and `delayMs`, all timed on `clock`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { systemClock, type Clock, type ClockTimer } from "../clock";
import { makeDeduplicator, QUICKSTART_EXPIRATION_MS, type Deduplicator } from "./dedupe";
import {
  EntitlementApiError,
  EntitlementStore,
  type Customer,
  type CustomerInput,
  type Entitlement,
  type EntitlementInput,
  type EntitlementValue,
  type Feature,
  type FeatureInput,
  type Grant,
  type GrantInput,
} from "./entitlements";
import { TestClock } from "./clock";
import { Faults } from "./faults";
import { decodeFirstJsonValue, Problem, problemBody, readBody, sendJson } from "./http";
import { countEvents, decodeIngestRequest, kafkaMessage } from "./ingest";
import {
  LLM_TOKENS_METER,
  Meter,
  MeterValidationError,
  type MeterDefinition,
  type MeterError,
  type MeterQueryParams,
  type MeterQueryResult,
  type WindowSize,
} from "./meters";
import { SinkWorker, type KafkaMessage } from "./sink";
import type {
  DedupeConfig,
  DroppedEvent,
  EventsListener,
  ForwardFailure,
  OpenMeterApi,
  OpenMeterServerMode,
  OpenMeterServerOptions,
  ReceivedEvent,
  RequestRecord,
  ScriptedResponse,
  StoredEvent,
  TokenTotals,
} from "./types";
import { parseOpenMeterTime } from "./validate-event";

const EVENTS_PATH: Record<OpenMeterApi, string> = { v1: "/api/v1/events", v3: "/v3/openmeter/events" };
const SUCCESS: Record<OpenMeterApi, number> = { v1: 204, v3: 202 };
const DEFAULT_KAFKA_MAX_MESSAGE_BYTES = 1_000_000;
const FEATURE_KEY = /^[a-z0-9]+(?:_[a-z0-9]+)*$/;
const ULID = /^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$/;

interface Waiter {
  count: number;
  resolve: (events: readonly ReceivedEvent[]) => void;
  reject: (error: Error) => void;
  timer: ClockTimer;
}

/** Meters of the server. */
export interface MeterRegistry {
  /** Defines a meter (throws on an invalid definition, as OpenMeter answers 400). */
  add(definition: MeterDefinition): Meter;
  get(slug: string): Meter | undefined;
  list(): Meter[];
  /** OpenMeter's meter query over the stored events. */
  query(slug: string, params?: MeterQueryParams): MeterQueryResult;
  /** `ParseEvent` errors of the stored events this meter reads (what the events list shows). */
  errors(slug: string): MeterError<StoredEvent>[];
}

export class OpenMeterServer {
  /** Which API this server mirrors. */
  readonly api: OpenMeterApi;
  /** `http://host:port` */
  readonly origin: string;
  /** The full events URL to configure a client with. */
  readonly url: string;
  /** The bearer token the server requires, if any. */
  readonly apiKey: string | undefined;
  /** De-duplication in effect (`{}` when off). */
  readonly dedupe: Readonly<DedupeConfig>;
  /** The gateway body limit, if any. */
  readonly gatewayLimitBytes: number | undefined;
  /** librdkafka `message.max.bytes` of this server. */
  readonly kafkaMaxMessageBytes: number;
  /** The clock the server runs on. */
  readonly clock: Clock;
  /** Latency added before every answer, in ms of the clock. */
  delayMs: number;

  /** Meters: define, query, list errors. */
  readonly meters: MeterRegistry;
  /** Customers (usage attribution by key and subject keys). */
  readonly customers: {
    add(input: CustomerInput): Customer;
    get(idOrKey: string): Customer | undefined;
    list(): Customer[];
  };
  /** Features: a meter, optionally filtered by its group-by values. */
  readonly features: { add(input: FeatureInput): Feature; list(): Feature[] };
  /** Metered entitlements and their values. */
  readonly entitlements: {
    add(input: EntitlementInput): Entitlement;
    list(): Entitlement[];
    /** The value as v1 returns it (v2 adds `grantBalances`); throws `EntitlementApiError` (404) for an unknown customer. */
    value(customer: string, feature: string, at?: Date | string): EntitlementValue;
  };
  /** Grants of an entitlement. */
  readonly grants: { add(input: GrantInput): Grant; list(customer: string, feature: string): Grant[] };

  readonly #server: Server;
  readonly #initialDelayMs: number;
  readonly #faults: Faults;
  readonly #ingestDedupe: Deduplicator | undefined;
  readonly #sinkDedupe: Deduplicator | undefined;
  readonly #sink: SinkWorker;
  readonly #meters = new Map<string, Meter>();
  readonly #entitlementStore: EntitlementStore;
  /** Stored events as sent, and the same as stored: parallel arrays. */
  readonly #storedReceived: ReceivedEvent[] = [];
  readonly #storedRows: StoredEvent[] = [];
  readonly #forwarded: ReceivedEvent[] = [];
  readonly #lost: ReceivedEvent[] = [];
  readonly #dropped: DroppedEvent[] = [];
  readonly #requests: RequestRecord[] = [];
  readonly #forwardedKeys = new Set<string>();
  /** Keys ingest de-duplication recorded for events whose forward then failed (#5118). */
  readonly #claimedNotForwarded = new Set<string>();
  readonly #listeners = new Set<EventsListener>();
  readonly #waiters = new Set<Waiter>();
  readonly #timers = new Set<ClockTimer>();
  readonly #held = new WeakMap<ServerResponse, () => void>();
  #duplicates = 0;
  #requestSeq = 0;
  #closed: Promise<void> | undefined;

  /** @internal Use `startOpenMeterServer()`. */
  constructor(server: Server, options: OpenMeterServerOptions & { api: OpenMeterApi; clock: Clock; dedupeConfig: DedupeConfig }) {
    this.#server = server;
    this.api = options.api;
    this.clock = options.clock;
    this.apiKey = options.apiKey;
    this.dedupe = Object.freeze({ ...options.dedupeConfig });
    this.gatewayLimitBytes = options.gatewayLimitBytes ?? options.maxBodyBytes;
    this.kafkaMaxMessageBytes = options.kafkaMaxMessageBytes ?? DEFAULT_KAFKA_MAX_MESSAGE_BYTES;
    this.delayMs = options.delayMs ?? 0;
    this.#initialDelayMs = this.delayMs;
    this.#faults = new Faults(this.clock);
    this.#ingestDedupe = makeDeduplicator(options.dedupeConfig.ingest, this.clock);
    this.#sinkDedupe = makeDeduplicator(options.dedupeConfig.sink, this.clock);
    this.#sink = new SinkWorker({
      clock: this.clock,
      deduplicator: this.#sinkDedupe,
      batching: options.sinkBatching === false ? undefined : options.sinkBatching,
      callbacks: {
        stored: (messages) => this.#onStored(messages),
        dropped: (dropped) => this.#dropped.push(dropped),
      },
    });
    for (const definition of options.meters ?? [LLM_TOKENS_METER]) this.#addMeter(definition);
    this.#entitlementStore = new EntitlementStore({
      clock: this.clock,
      meter: (slug) => this.#meters.get(slug),
      stored: () => this.#storedRows,
    });
    const store = this.#entitlementStore;
    this.meters = {
      add: (definition) => this.#addMeter(definition),
      get: (slug) => this.#meters.get(slug),
      list: () => [...this.#meters.values()],
      query: (slug, params) => this.#meter(slug).query(this.storedEvents, params),
      errors: (slug) => {
        const meter = this.#meter(slug);
        return this.storedEvents.flatMap((event) => {
          if (!meter.reads(event)) return [];
          const error = meter.parseError(event.data);
          return error === undefined ? [] : [{ meter: meter.slug, event, error }];
        });
      },
    };
    this.customers = { add: (i) => store.addCustomer(i), get: (k) => store.findCustomer(k), list: () => store.listCustomers() };
    this.features = { add: (i) => store.addFeature(i), list: () => store.listFeatures() };
    this.entitlements = {
      add: (i) => store.addEntitlement(i),
      list: () => store.listEntitlements(),
      value: (customer, feature, at) => store.value(customer, feature, at),
    };
    this.grants = { add: (i) => store.addGrant(i), list: (c, f) => store.listGrants(c, f) };

    const address = server.address() as AddressInfo;
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
    this.origin = `http://${host}:${address.port}`;
    this.url = `${this.origin}${EVENTS_PATH[this.api]}`;
    server.on("request", (req, res) => {
      this.#holdClock(res);
      this.#handle(req, res).finally(() => this.#releaseClock(res)).catch((error: unknown) => {
        // Only reachable through a bug here; answer rather than leave the client hanging.
        process.emitWarning(`OpenMeter test server: internal error: ${(error as Error)?.stack ?? String(error)}`);
        if (!res.headersSent && !res.destroyed) this.#sendProblem(res, new Problem(500, `test server error: ${String(error)}`, [], {}, true));
      });
    });
  }

  // ---- inspection ---------------------------------------------------------------------------------------

  /** Events OpenMeter stored (after de-duplication and sink drops), as sent, in order. Emptied by `reset()`. */
  get events(): readonly ReceivedEvent[] {
    return this.#storedReceived;
  }

  /** The same events as OpenMeter stores them (whole-second time, Go-serialized source, no extensions). */
  get storedEvents(): readonly StoredEvent[] {
    return this.#storedRows;
  }

  /** Events produced to Kafka (answered as part of a 2xx or before a 5xx), before sink processing. */
  get forwarded(): readonly ReceivedEvent[] {
    return this.#forwarded;
  }

  /**
   * Events answered 2xx but never stored because ingest de-duplication had recorded their key before a
   * forward that failed (OpenMeter issue #5118): what a retry loses there.
   */
  get lost(): readonly ReceivedEvent[] {
    return this.#lost;
  }

  /** Events the sink dropped after a 2xx, with OpenMeter's reason. */
  get dropped(): readonly DroppedEvent[] {
    return this.#dropped;
  }

  /** Every request to the server, in arrival order. Emptied by `reset()`. */
  get requests(): readonly RequestRecord[] {
    return this.#requests;
  }

  /**
   * Events that arrived again with a `source` + `id` already forwarded: a re-send. Counted whether
   * de-duplication dropped them or they were stored twice, so a test can prove nothing was re-sent.
   */
  get duplicates(): number {
    return this.#duplicates;
  }

  get mode(): OpenMeterServerMode {
    return this.#faults.mode;
  }

  /** Scripted responses still queued by `failNext()`. */
  get queuedFailures(): number {
    return this.#faults.queuedScripts;
  }

  /** Forwarding failures still queued by `failAfter()`. */
  get queuedForwardFailures(): number {
    return this.#faults.queuedForwardFailures;
  }

  /** Messages the sink holds but has not stored yet (only with `sinkBatching`). */
  get pendingInSink(): number {
    return this.#sink.pending;
  }

  /** @deprecated Use `gatewayLimitBytes`. */
  get maxBodyBytes(): number | undefined {
    return this.gatewayLimitBytes;
  }

  /**
   * Sum of tokens per subject and `data.type`, read through the LLM tokens meter (`llm_tokens`): events of
   * another CloudEvent type, and values that are missing, null or not numbers, count nothing; a missing
   * `data.type` is "" (as OpenMeter's group-by).
   */
  totals(): TokenTotals {
    const meter = this.#meters.get(LLM_TOKENS_METER.slug);
    if (!meter) throw new Error(`totals(): this server has no ${LLM_TOKENS_METER.slug} meter (define it or use meters.query())`);
    const totals: TokenTotals = {};
    for (const row of meter.query(this.storedEvents, { groupBy: ["subject", "type"] }).data) {
      const perSubject = (totals[row.subject ?? ""] ??= {});
      perSubject[row.groupBy.type ?? ""] = row.value;
    }
    return totals;
  }

  /**
   * Resolves with the stored events once at least `count` are stored; rejects after `timeoutMs` of the
   * server's clock (default 5000) with a message saying how many arrived and what the last answer was.
   */
  waitForEvents(count: number, timeoutMs = 5000): Promise<readonly ReceivedEvent[]> {
    if (this.#storedReceived.length >= count) return Promise.resolve(this.events.slice());
    if (this.#closed) return Promise.reject(new Error("waitForEvents: the OpenMeter test server is closed"));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        count,
        resolve,
        reject,
        timer: this.clock.setTimeout(() => {
          this.#waiters.delete(waiter);
          const last = this.#requests.at(-1);
          const lastText = last
            ? `last request: ${last.method} ${last.path} -> ${last.status ?? "no answer"} (${last.outcome})`
            : "no requests arrived";
          reject(
            new Error(
              `waitForEvents: expected at least ${count} events within ${timeoutMs} ms, got ` +
                `${this.#storedReceived.length} (${this.#requests.length} requests, ${this.#duplicates} duplicates; ${lastText})`,
            ),
          );
        }, timeoutMs),
      };
      this.#waiters.add(waiter);
    });
  }

  /** Calls `listener` with each batch of newly stored events. Returns an unsubscribe function. */
  onEvents(listener: EventsListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  // ---- faults -------------------------------------------------------------------------------------------

  /**
   * Answers the next `count` events requests with `response` instead of processing them (after any
   * already queued). Nothing from those requests is recorded. Path/method errors, `down`, `hang` and
   * `reset` take precedence and do not consume the queue.
   */
  failNext(count: number, response: ScriptedResponse): void {
    this.#faults.failNext(count, response);
  }

  /**
   * Makes the forward of the event at index `events` of the next batch that has more than `events` events
   * fail: the events before it are forwarded (and will be stored), the rest are not, and the request is
   * answered `failure.status` (500, as OpenMeter answers a producer error). With ingest de-duplication on,
   * the failed event's key is already recorded, so its retry is answered 2xx and lost (#5118).
   */
  failAfter(events: number, failure?: ForwardFailure): void {
    this.#faults.failAfter(events, failure);
  }

  /** Switches how the server behaves (all routes); cancels a running `outage()`. */
  setMode(mode: OpenMeterServerMode): void {
    this.#faults.setMode(mode);
  }

  /** `down` for `ms` of the server's clock, then `ok`. Resolves when the server is back (or reset/closed). */
  outage(ms: number): Promise<void> {
    return this.#faults.outage(ms);
  }

  /** Stores what the sink buffers now (with `sinkBatching`), as its timer would. */
  flushSink(): void {
    this.#sink.flush();
  }

  /**
   * Forgets events (stored, forwarded, lost, dropped), requests, duplicates and de-duplication state,
   * drops queued failures, and returns mode and `delayMs` to their start values. Meters, customers,
   * features, entitlements and grants, listeners and waiters stay.
   */
  reset(): void {
    this.#storedReceived.length = 0;
    this.#storedRows.length = 0;
    this.#forwarded.length = 0;
    this.#lost.length = 0;
    this.#dropped.length = 0;
    this.#requests.length = 0;
    this.#forwardedKeys.clear();
    this.#claimedNotForwarded.clear();
    this.#ingestDedupe?.clear();
    this.#sinkDedupe?.clear();
    this.#sink.clear();
    this.#duplicates = 0;
    this.#faults.clear();
    this.delayMs = this.#initialDelayMs;
  }

  /** Stops listening and destroys open connections (hanging requests included). Idempotent. */
  close(): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      this.#faults.close();
      this.#sink.close();
      for (const timer of this.#timers) timer.clear();
      this.#timers.clear();
      for (const waiter of this.#waiters) {
        waiter.timer.clear();
        waiter.reject(new Error("waitForEvents: the OpenMeter test server was closed"));
      }
      this.#waiters.clear();
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
    return this.#closed;
  }

  // ---- internals ----------------------------------------------------------------------------------------

  #addMeter(definition: MeterDefinition): Meter {
    if (this.#meters.has(definition.slug)) throw new MeterValidationError(`meter ${definition.slug} already exists`);
    const meter = new Meter(definition);
    this.#meters.set(meter.slug, meter);
    return meter;
  }

  #meter(slug: string): Meter {
    const meter = this.#meters.get(slug);
    if (!meter) throw new MeterValidationError(`meter not found: ${slug}`);
    return meter;
  }

  #onStored(messages: readonly KafkaMessage[]): void {
    const events = messages.map((m) => m.event);
    for (const m of messages) {
      this.#storedReceived.push(m.event);
      this.#storedRows.push(m.stored);
    }
    for (const listener of this.#listeners) {
      try {
        listener(events, messages.at(-1)!.request);
      } catch (error) {
        process.emitWarning(`OpenMeter test server: an onEvents listener threw: ${String(error)}`);
      }
    }
    for (const waiter of this.#waiters) {
      if (this.#storedReceived.length >= waiter.count) {
        waiter.timer.clear();
        this.#waiters.delete(waiter);
        waiter.resolve(this.events.slice());
      }
    }
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const record: RequestRecord = {
      method: req.method ?? "",
      path: req.url ?? "",
      status: null,
      outcome: "rejected",
      contentType: req.headers["content-type"] ?? null,
      authorization: req.headers.authorization !== undefined,
      body: "",
      eventCount: 0,
      accepted: 0,
      duplicates: 0,
      time: new Date(this.clock.wallNow()),
    };
    this.#requests.push(record);
    const url = new URL(req.url ?? "/", "http://localhost");
    const pathname = url.pathname;
    const isEvents = pathname === EVENTS_PATH[this.api];
    const route = isEvents ? undefined : this.#route(req.method ?? "", pathname);
    if (!isEvents && route === undefined) {
      req.resume();
      return this.#answerProblem(res, record, new Problem(404, `no route for ${pathname}; events go to ${EVENTS_PATH[this.api]}`));
    }
    if (isEvents && req.method !== "POST" && !(this.api === "v1" && req.method === "GET")) {
      req.resume();
      res.setHeader("Allow", this.api === "v1" ? "GET, POST" : "POST");
      return this.#answerProblem(res, record, new Problem(405, `method ${req.method} is not allowed; use POST`));
    }
    if (route === "method") {
      req.resume();
      return this.#answerProblem(res, record, new Problem(405, `method ${req.method} is not allowed on ${pathname}`));
    }

    if (this.#faults.mode === "reset") {
      record.outcome = "reset";
      req.socket.resetAndDestroy();
      return;
    }
    // A gateway's limit is checked on the bytes as they arrive; OpenMeter itself reads everything.
    const body = await readBody(req, this.gatewayLimitBytes);
    if (body === undefined) return; // the client went away mid-body
    record.body = body.text;
    if (this.#faults.mode === "hang") {
      record.outcome = "hang";
      this.#releaseClock(res);
      return; // never answer; close() or the client's abort ends it
    }
    if (this.#faults.mode === "down") {
      record.outcome = "down";
      record.eventCount = isEvents ? countEvents(body.text) : 0;
      return this.#answerProblem(res, record, new Problem(503, "the service is temporarily unavailable"), "down");
    }
    if (isEvents && req.method === "POST") {
      const script = this.#faults.takeScript();
      if (script) {
        record.outcome = "scripted";
        record.eventCount = countEvents(body.text);
        return this.#answerScripted(res, record, script);
      }
    }
    const auth = this.#checkAuth(req);
    if (auth) return this.#answerProblem(res, record, auth);
    if (body.tooLarge) {
      res.setHeader("Connection", "close");
      return this.#answerProblem(res, record, new Problem(413, `request body of ${body.bytes} bytes exceeds the gateway limit of ${this.gatewayLimitBytes} bytes`));
    }
    if (isEvents && req.method === "POST") return this.#ingest(res, record, body.text);
    if (isEvents) return this.#listEvents(res, record, url);
    return this.#serveRoute(res, record, req.method ?? "", pathname, url, body.text);
  }

  /** `undefined`: no such route; `"method"`: the path exists with other methods; otherwise a route name. */
  #route(method: string, pathname: string): string | undefined {
    const match = (pattern: RegExp, methods: string[], name: string) => (pattern.test(pathname) ? (methods.includes(method) ? name : "method") : undefined);
    if (this.api === "v1") {
      return (
        match(/^\/api\/v1\/meters\/[^/]+\/query$/, ["GET"], "meterQuery") ??
        match(/^\/api\/v1\/customers\/[^/]+\/entitlements\/[^/]+\/value$/, ["GET"], "valueV1") ??
        match(/^\/api\/v2\/customers\/[^/]+\/entitlements\/[^/]+\/value$/, ["GET"], "valueV2") ??
        match(/^\/api\/v2\/customers\/[^/]+\/entitlements\/[^/]+$/, ["GET"], "entitlementV2") ??
        match(/^\/api\/v2\/customers\/[^/]+\/entitlements\/[^/]+\/grants$/, ["GET", "POST"], "grantsV2")
      );
    }
    return match(/^\/v3\/openmeter\/customers\/[^/]+\/entitlement-access$/, ["GET"], "accessV3");
  }

  // ---- ingest -------------------------------------------------------------------------------------------

  async #ingest(res: ServerResponse, record: RequestRecord, text: string): Promise<void> {
    const decoded = decodeIngestRequest(this.api, record.contentType, text, (n) => (record.eventCount = n));
    if (decoded instanceof Problem) return this.#answerProblem(res, record, decoded);

    const failure = this.#faults.takeForwardFailure(decoded.events.length);
    let failureUsed = false;
    const now = this.clock.wallNow();
    let failedStatus: number | undefined;
    let failedDetail = "";
    {
      for (let index = 0; index < decoded.events.length; index++) {
        const { raw, decoded: event } = decoded.events[index]!;
        const received = receivedFrom(raw, now);
        const timeMs = event.timeMs ?? now;
        const message = kafkaMessage(event, timeMs, now);
        const resent = this.#forwardedKeys.has(message.key);
        // DeduplicatingCollector: IsUnique records the key, then forwards; a duplicate is a silent success.
        if (this.#ingestDedupe && !this.#ingestDedupe.isUnique(message.key)) {
          if (resent) {
            record.duplicates++;
            this.#duplicates++;
          } else if (this.#claimedNotForwarded.has(message.key)) {
            this.#lost.push(received);
          }
          continue;
        }
        // The injected producer error hits the first forward at or after the chosen index (a duplicate
        // dropped by ingest de-duplication never reaches the producer).
        if (failure && !failureUsed && index >= failure.afterEvents) {
          failureUsed = true;
          if (this.#ingestDedupe) this.#claimedNotForwarded.add(message.key);
          failedStatus = failure.status;
          failedDetail = `forwarding event to collector: injected failure at event ${index} of ${decoded.events.length}`;
          break;
        }
        if (event.dataError !== undefined) {
          if (this.#ingestDedupe) this.#claimedNotForwarded.add(message.key);
          failedStatus = 500;
          failedDetail = `forwarding event to collector: ${event.dataError} (event ${index})`;
          break;
        }
        if (message.bytes > this.kafkaMaxMessageBytes) {
          if (this.#ingestDedupe) this.#claimedNotForwarded.add(message.key);
          failedStatus = 500;
          failedDetail =
            `forwarding event to collector: producing kafka message: Broker: Message size too large ` +
            `(event ${index}: ~${message.bytes} bytes > message.max.bytes ${this.kafkaMaxMessageBytes})`;
          break;
        }
        if (resent) {
          record.duplicates++;
          this.#duplicates++;
        }
        this.#forwardedKeys.add(message.key);
        this.#claimedNotForwarded.delete(message.key);
        this.#forwarded.push(received);
        record.accepted++;
        this.#sink.consume({ event: received, stored: message.stored, key: message.key, request: record });
      }
      record.outcome = failedStatus === undefined ? "accepted" : "failed";
      this.#sink.endOfRequest();
    }
    if (failedStatus !== undefined) {
      return this.#answerProblem(res, record, new Problem(failedStatus, failedDetail), "failed");
    }
    await this.#delay(res);
    record.status = SUCCESS[this.api];
    if (!res.destroyed) res.writeHead(record.status, { "Content-Length": "0" }).end();
  }

  /**
   * v1 `GET /api/v1/events` (`listEvents` in `api/openapi.yaml`): newest first; `id` and `subject` match
   * partially; `from`/`to` (event time, inclusive) with `from` defaulting to 72 hours ago; `limit` 1-100 (100).
   */
  async #listEvents(res: ServerResponse, record: RequestRecord, url: URL): Promise<void> {
    const id = url.searchParams.get("id");
    const subject = url.searchParams.get("subject");
    const bounds: Record<"from" | "to", number | undefined> = { from: this.clock.wallNow() - 72 * 3_600_000, to: undefined };
    for (const name of ["from", "to"] as const) {
      const value = url.searchParams.get(name);
      if (value === null) continue;
      const parsed = parseOpenMeterTime(value);
      if ("problem" in parsed) return this.#answerProblem(res, record, new Problem(400, `parameter "${name}" in query has an error: ${parsed.problem}`));
      bounds[name] = parsed.ms;
    }
    const limitText = url.searchParams.get("limit");
    const limit = limitText === null ? 100 : Number(limitText);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
      return this.#answerProblem(res, record, new Problem(400, `parameter "limit" in query has an error: number must be between 1 and 100`));
    }
    const rows = this.storedEvents
      .filter(
        (e) =>
          (id === null || e.id.includes(id)) &&
          (subject === null || e.subject.includes(subject)) &&
          (bounds.from === undefined || e.timeSeconds * 1000 >= bounds.from) &&
          (bounds.to === undefined || e.timeSeconds * 1000 <= bounds.to),
      )
      .slice()
      .sort((a, b) => b.timeSeconds - a.timeSeconds)
      .slice(0, limit);
    const body = rows.map((e) => {
      const errors = this.#validationErrors(e);
      const customer = this.#entitlementStore.listCustomers().find((c) => c.key === e.subject || c.subjectKeys.includes(e.subject));
      return {
        event: { id: e.id, source: e.source, specversion: e.specversion, type: e.type, subject: e.subject, time: e.time, ...(e.data !== undefined ? { data: e.data } : {}) },
        ...(customer ? { customerId: customer.id } : {}),
        ...(errors.length > 0 ? { validationError: errors.join("\n") } : {}),
        ingestedAt: e.ingestedAt,
        storedAt: e.storedAt,
      };
    });
    return this.#answerJson(res, record, 200, body);
  }

  /** `meterevent/adapter/event.go` `validateEvents`. */
  #validationErrors(event: StoredEvent): string[] {
    const errors: string[] = [];
    let matched = false;
    for (const meter of this.#meters.values()) {
      if (event.type !== meter.eventType) continue;
      matched = true;
      const error = meter.parseError(event.data);
      if (error) errors.push(error);
    }
    if (!matched) errors.push(`no meter found for event type: ${event.type}`);
    const customers = this.#entitlementStore.listCustomers();
    if (!customers.some((c) => c.key === event.subject || c.subjectKeys.includes(event.subject))) {
      errors.push(`no customer found for event subject: ${event.subject}`);
    }
    return errors;
  }

  // ---- other routes -------------------------------------------------------------------------------------

  async #serveRoute(res: ServerResponse, record: RequestRecord, method: string, pathname: string, url: URL, text: string): Promise<void> {
    record.outcome = "accepted";
    const parts = pathname.split("/").map((p) => safeDecode(p));
    try {
      if (this.api === "v1" && parts[3] === "meters") return await this.#meterQuery(res, record, parts[4]!, url);
      if (this.api === "v3") return await this.#accessV3(res, record, parts[4]!);
      const version = parts[2]!;
      const customer = parts[4]!;
      const feature = parts[6]!;
      const what = parts[7];
      if (customer === "" || customer.length > 256) {
        return this.#answerProblem(res, record, new Problem(400, `parameter "customerIdOrKey" in path has an error: doesn't match any schema`));
      }
      const featurePattern = version === "v1" ? FEATURE_KEY : new RegExp(`${FEATURE_KEY.source}|${ULID.source}`);
      if (feature.length > 64 || !featurePattern.test(feature)) {
        const name = version === "v1" ? "featureKey" : "entitlementIdOrFeatureKey";
        return this.#answerProblem(res, record, new Problem(400, `parameter "${name}" in path has an error: string doesn't match the regular expression "${featurePattern.source}"`));
      }
      if (what === undefined) return this.#answerJson(res, record, 200, this.#entitlementStore.entitlementV2(customer, feature));
      if (what === "value") {
        const timeText = url.searchParams.get("time");
        let at: number | undefined;
        if (timeText !== null) {
          const parsed = parseOpenMeterTime(timeText);
          if ("problem" in parsed) return this.#answerProblem(res, record, new Problem(400, `parameter "time" in query has an error: ${parsed.problem}`));
          at = parsed.ms;
        }
        const value = this.#entitlementStore.value(customer, feature, at);
        if (version === "v1") {
          const { grantBalances: _omit, ...v1 } = value;
          return this.#answerJson(res, record, 200, v1);
        }
        // EntitlementValueV2: every field `omitempty`, so `hasAccess: false` is left out
        // (`openmeter/customer/httpdriver/apimapping.go`).
        const { hasAccess, ...rest } = value;
        return this.#answerJson(res, record, 200, hasAccess ? { hasAccess, ...rest } : rest);
      }
      // grants (v2)
      if (method === "GET") return this.#answerJson(res, record, 200, { items: this.#entitlementStore.listGrants(customer, feature), page: 1, pageSize: 100, totalCount: this.#entitlementStore.listGrants(customer, feature).length });
      const parsedBody = decodeFirstJsonValue(text);
      if ("error" in parsedBody) return this.#answerProblem(res, record, new Problem(400, `request body has an error: failed to decode request body: ${parsedBody.error}`));
      const input = grantInputProblem(parsedBody.value);
      if (typeof input === "string") return this.#answerProblem(res, record, new Problem(400, `request body has an error: doesn't match schema #/components/schemas/EntitlementGrantCreateInputV2: ${input}`));
      const grant = this.#entitlementStore.addGrant({ customer, feature, ...input });
      return this.#answerJson(res, record, 201, grant);
    } catch (error) {
      if (error instanceof EntitlementApiError) return this.#answerProblem(res, record, new Problem(error.status, error.message));
      if (error instanceof MeterValidationError) return this.#answerProblem(res, record, new Problem(/not found/.test(error.message) ? 404 : 400, error.message));
      throw error;
    }
  }

  /**
   * v1 `GET /api/v1/meters/{meterIdOrSlug}/query` (`openmeter/meter/httphandler/query.go`, `mapping.go`):
   * from, to, windowSize, windowTimeZone (UTC only), subject, groupBy, filterGroupBy[key]; filterCustomerId
   * filters by the customers' subjects but, unlike OpenMeter, adds no customer_id grouping.
   */
  async #meterQuery(res: ServerResponse, record: RequestRecord, slug: string, url: URL): Promise<void> {
    if (slug.length > 64 || !/^[a-z0-9]+(?:_[a-z0-9]+)*$|^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$/.test(slug)) {
      return this.#answerProblem(res, record, new Problem(400, `parameter "meterIdOrSlug" in path has an error: string doesn't match the regular expression`));
    }
    const meter = this.#meters.get(slug);
    if (!meter) return this.#answerProblem(res, record, new Problem(404, `meter not found: ${slug}`));
    const q = url.searchParams;
    const params: MeterQueryParams = {};
    for (const name of ["from", "to"] as const) {
      const value = q.get(name);
      if (value === null) continue;
      const parsed = parseOpenMeterTime(value);
      if ("problem" in parsed) return this.#answerProblem(res, record, new Problem(400, `parameter "${name}" in query has an error: ${parsed.problem}`));
      params[name] = new Date(parsed.ms);
    }
    const windowSize = q.get("windowSize");
    if (windowSize !== null) {
      if (!["MINUTE", "HOUR", "DAY", "MONTH"].includes(windowSize)) {
        return this.#answerProblem(res, record, new Problem(400, `parameter "windowSize" in query has an error: value is not one of the allowed values ["MINUTE","HOUR","DAY","MONTH"]`));
      }
      params.windowSize = windowSize as WindowSize;
    }
    const tz = q.get("windowTimeZone");
    if (tz !== null) params.windowTimeZone = tz;
    if (q.getAll("subject").length > 0) params.subject = q.getAll("subject");
    if (q.getAll("groupBy").length > 0) params.groupBy = q.getAll("groupBy");
    const filterGroupBy: Record<string, string> = {};
    for (const [key, value] of q.entries()) {
      const m = /^filterGroupBy\[(.+)\]$/.exec(key);
      if (m) filterGroupBy[m[1]!] = value;
    }
    if (Object.keys(filterGroupBy).length > 0) params.filterGroupBy = filterGroupBy;
    const customerIds = q.getAll("filterCustomerId");
    if (customerIds.length > 0) {
      const subjects: string[] = [];
      for (const id of customerIds) {
        const c = this.#entitlementStore.findCustomer(id);
        if (!c) return this.#answerProblem(res, record, new Problem(404, `customer with id or key ${id} not found in default namespace`));
        subjects.push(c.key, ...c.subjectKeys);
      }
      params.filterSubjectsOfCustomers = subjects;
    }
    const result = meter.query(this.storedEvents, params);
    return this.#answerJson(res, record, 200, result);
  }

  /** v3 `GET /v3/openmeter/customers/{customerId}/entitlement-access` (`api/v3/handlers/customers/entitlementaccess/list.go`). */
  async #accessV3(res: ServerResponse, record: RequestRecord, customerId: string): Promise<void> {
    // The path parameter is a ULID; a failed path validation is answered 404 (`oasmiddleware/hook.go`).
    if (!ULID.test(customerId)) return this.#answerProblem(res, record, new Problem(404, `customerId ${JSON.stringify(customerId)} is not a ULID: entity not found`));
    return this.#answerJson(res, record, 200, { data: this.#entitlementStore.access(customerId) });
  }

  #checkAuth(req: IncomingMessage): Problem | undefined {
    if (this.apiKey === undefined) return undefined;
    const header = req.headers.authorization;
    const challenge = { "WWW-Authenticate": "Bearer" };
    if (header === undefined) return new Problem(401, "missing Authorization header (expected a Bearer token)", [], challenge);
    const match = /^Bearer\s+(.+)$/i.exec(header);
    if (!match) return new Problem(401, "the Authorization header must use the Bearer scheme", [], challenge);
    if (match[1]?.trim() !== this.apiKey) return new Problem(401, "invalid API token", [], challenge);
    return undefined;
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
      body = JSON.stringify(script.body ?? problemBody(this.api, new Problem(script.status, detail), this.#instance()));
      headers["Content-Type"] = script.contentType ?? "application/problem+json";
      record.detail = detail;
    } else if (script.contentType !== undefined) {
      headers["Content-Type"] = script.contentType;
    }
    headers["Content-Length"] = String(Buffer.byteLength(body));
    await this.#delay(res);
    record.status = script.status;
    if (!res.destroyed) res.writeHead(script.status, headers).end(body);
  }

  async #answerJson(res: ServerResponse, record: RequestRecord, status: number, body: unknown): Promise<void> {
    await this.#delay(res);
    record.status = status;
    if (!res.destroyed) sendJson(res, status, body);
  }

  async #answerProblem(res: ServerResponse, record: RequestRecord, problem: Problem, outcome: RequestRecord["outcome"] = "rejected"): Promise<void> {
    record.outcome = outcome;
    record.detail = problem.detail;
    await this.#delay(res);
    record.status = problem.status;
    if (!res.destroyed) this.#sendProblem(res, problem);
  }

  #sendProblem(res: ServerResponse, problem: Problem): void {
    const body = JSON.stringify(problemBody(this.api, problem, this.#instance()));
    res.writeHead(problem.status, {
      "Content-Type": "application/problem+json",
      "Content-Length": String(Buffer.byteLength(body)),
      ...problem.headers,
    });
    res.end(body);
  }

  #instance(): string {
    return `urn:request:local/${String(++this.#requestSeq).padStart(6, "0")}`;
  }

  /**
   * On a TestClock, time stands still from a request's arrival until it is answered: the server is
   * instant in clock time, as a test means it, however slowly the loaded machine runs it. A request
   * that waits on the clock (`delayMs`, `hang`) lets go of it.
   */
  #holdClock(res: ServerResponse): void {
    if (!(this.clock instanceof TestClock)) return;
    let release!: () => void;
    this.clock.hold(new Promise<void>((resolve) => (release = resolve)));
    this.#held.set(res, release);
    res.once("close", () => this.#releaseClock(res));
  }

  #releaseClock(res: ServerResponse): void {
    this.#held.get(res)?.();
    this.#held.delete(res);
  }

  #delay(res: ServerResponse): Promise<void> {
    const ms = this.delayMs;
    if (!(ms > 0)) return Promise.resolve();
    this.#releaseClock(res);
    return new Promise((resolve) => {
      const timer = this.clock.setTimeout(() => {
        this.#timers.delete(timer);
        resolve();
      }, ms);
      this.#timers.add(timer);
    });
  }
}

/** The event as sent: null optional attributes removed, `time` filled in with the receive time. */
function receivedFrom(raw: Record<string, unknown>, nowMs: number): ReceivedEvent {
  const copy: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(raw)) if (value !== null) copy[name] = value;
  copy.time ??= new Date(nowMs).toISOString();
  return copy as unknown as ReceivedEvent;
}

function safeDecode(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

/** `EntitlementGrantCreateInputV2` as kin-openapi checks it; returns the grant fields or the first error. */
function grantInputProblem(body: unknown): Omit<GrantInput, "customer" | "feature"> | string {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return "value must be an object";
  const b = body as Record<string, unknown>;
  if (!("amount" in b)) return `property "amount" is missing`;
  if (!("effectiveAt" in b)) return `property "effectiveAt" is missing`;
  if (typeof b.amount !== "number") return `Error at "/amount": value must be a number`;
  if (b.amount < 0) return `Error at "/amount": number must be at least 0`;
  if (typeof b.effectiveAt !== "string") return `Error at "/effectiveAt": value must be a string`;
  const effective = parseOpenMeterTime(b.effectiveAt);
  if ("problem" in effective) return `Error at "/effectiveAt": ${effective.problem}`;
  const out: Omit<GrantInput, "customer" | "feature"> = { amount: b.amount, effectiveAt: new Date(effective.ms) };
  if (b.priority !== undefined) {
    if (!Number.isInteger(b.priority) || (b.priority as number) < 1 || (b.priority as number) > 255) return `Error at "/priority": integer of 1-255 expected`;
    out.priority = b.priority as number;
  }
  for (const name of ["minRolloverAmount", "maxRolloverAmount"] as const) {
    if (b[name] === undefined) continue;
    if (typeof b[name] !== "number") return `Error at "/${name}": value must be a number`;
    out[name] = b[name] as number;
  }
  if (b.expiration !== undefined) {
    const e = b.expiration as Record<string, unknown>;
    if (typeof e !== "object" || e === null) return `Error at "/expiration": value must be an object`;
    if (!["HOUR", "DAY", "WEEK", "MONTH", "YEAR"].includes(e.duration as string)) return `Error at "/expiration/duration": value is not one of the allowed values`;
    if (!Number.isInteger(e.count) || (e.count as number) < 1 || (e.count as number) > 1000) return `Error at "/expiration/count": integer of 1-1000 expected`;
    out.expiration = { duration: e.duration as "HOUR", count: e.count as number };
  }
  return out;
}

function resolveDedupe(option: OpenMeterServerOptions["dedupe"]): DedupeConfig {
  if (option === undefined || option === false) return {};
  if (option === true) return { sink: { driver: "redis", expirationMs: QUICKSTART_EXPIRATION_MS } };
  return { ...option };
}

/** Starts a local OpenMeter on `host:port` (default 127.0.0.1, a free port). */
export async function startOpenMeterServer(options: OpenMeterServerOptions = {}): Promise<OpenMeterServer> {
  const api = options.api ?? "v1";
  if (api !== "v1" && api !== "v3") throw new TypeError(`startOpenMeterServer: api must be "v1" or "v3", got ${JSON.stringify(api)}`);
  const limit = options.gatewayLimitBytes ?? options.maxBodyBytes;
  if (limit !== undefined && !(limit > 0)) throw new RangeError(`startOpenMeterServer: gatewayLimitBytes must be positive, got ${limit}`);
  if (options.kafkaMaxMessageBytes !== undefined && !(options.kafkaMaxMessageBytes > 0)) {
    throw new RangeError(`startOpenMeterServer: kafkaMaxMessageBytes must be positive, got ${options.kafkaMaxMessageBytes}`);
  }
  const dedupeConfig = resolveDedupe(options.dedupe);
  const clock = options.clock ?? systemClock;
  const server = createServer();
  const host = options.host ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  try {
    return new OpenMeterServer(server, { ...options, api, clock, dedupeConfig });
  } catch (error) {
    server.close();
    throw error;
  }
}
