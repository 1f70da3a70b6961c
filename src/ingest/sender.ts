import { type Clock, type ClockTimer } from "../clock";
import type { Batcher } from "./batcher";
import type { Batch, EventQueue, QueuedEvent } from "./queue";
import type { RetryingTransport } from "./retrying-transport";
import type { AttemptResult } from "./transport";

/**
 * - `healthy`: the last request was acknowledged (or none was made yet);
 * - `retrying`: requests are failing and being retried;
 * - `backing-off`: retries ran out (or the server asked to wait): nothing is sent until one probe
 *   request, after `retry.maxDelayMs` or the server's `Retry-After`, succeeds;
 * - `misconfigured`: the endpoint refuses our key or url (401, 403, 404, 3xx, a web page): with a
 *   disk log the events wait on disk and one probe a minute checks whether that changed.
 */
export type SenderState = "healthy" | "retrying" | "backing-off" | "misconfigured";

type Refused = Extract<AttemptResult, { kind: "refused" }>;
type Retryable = Extract<AttemptResult, { kind: "retryable" }>;

export interface SenderHooks {
  delivered(batch: Batch): void;
  /** Refused for good, and settled: count them now. */
  refused(events: readonly QueuedEvent[]): void;
  /** Report what was refused, once per batch sent, however it was split. */
  reportRefused(events: readonly QueuedEvent[], result: Refused): void;
  /** The endpoint refuses our configuration; the events stay queued (disk log only). Reported once per streak. */
  misconfigured(batch: Batch, result: Refused): void;
  stateChanged(state: SenderState, cause: Retryable | Refused | undefined): void;
  retried(): void;
  /** A request (and the halves it was split into) ended: counts and reports are up to date. */
  afterRequest(): void;
}

export interface SenderOptions {
  queue: EventQueue;
  transport: RetryingTransport;
  batcher: Batcher;
  clock: Clock;
  maxConcurrency: number;
  maxBatchSize: number;
  /** Wait after retries ran out before the probe (when the server gave no Retry-After). */
  backoffMs: number;
  /** Keep refused-for-configuration events queued (true for a disk log: the next process, fixed, sends them). */
  keepOnConfigurationProblem: boolean;
  hooks: SenderHooks;
}

/** How long a misconfigured endpoint is left alone before one probe asks again. */
export const MISCONFIGURED_PROBE_MS = 60_000;
/**
 * After this many events refused alone, with none delivered, the endpoint seems to refuse every
 * event: the rest of the batch waits instead of costing a request per event. Enough that a batch
 * holding a few bad events is sorted out exactly.
 */
const REFUSED_ALONE_LIMIT = 8;

/**
 * Takes batches from the queue and sends them, `maxConcurrency` at a time, through the retrying
 * transport; settles what was acknowledged or refused for good, releases the rest back to the queue.
 * A refused 400 or 413 batch is split in halves until the refused events stand alone.
 */
export class Sender {
  state: SenderState = "healthy";
  /**
   * The endpoint cannot take events now: retries ran out, or it refuses our configuration. (A server
   * that asked to wait with Retry-After is backing off too, but it said when: that is not unreachable.)
   */
  unreachable = false;
  #inFlight = 0;
  #eventsInFlight = 0;
  #probing = false;
  /** The wait under way is the server's Retry-After. */
  #retryAfterWait = false;
  #resumeTimer: ClockTimer | undefined;
  #stopped = false;
  /** Waits end by this time (shutdown with events only in memory); undefined: as long as asked. */
  #resumeBy: number | undefined;
  #cutOff = new AbortController();
  #idle: Array<() => void> = [];
  /** Misconfigured because every event sent alone was refused (400), not because of our key or url. */
  #refusingAll = false;

  constructor(readonly options: SenderOptions) {}

  /** Events in requests under way. */
  get eventsInFlight(): number {
    return this.#eventsInFlight;
  }

  /** Starts what may start now. Cheap to call often. */
  pump(): void {
    if (this.#stopped) return;
    const { queue, batcher, maxConcurrency, maxBatchSize } = this.options;
    if (this.state === "backing-off" || this.state === "misconfigured") {
      if (this.#probing || this.#resumeTimer !== undefined) return;
      // The wait is over (or was cut short): one probe, without retries.
      const batch = queue.take(maxBatchSize, { liveDue: true });
      if (batch === undefined) return;
      if (this.#retryAfterWait) this.options.hooks.retried();
      this.#retryAfterWait = false;
      this.#probing = true;
      this.#start(batch, 0);
      return;
    }
    while (this.#inFlight < maxConcurrency) {
      const liveDue = batcher.due(queue.ready);
      const batch = queue.take(maxBatchSize, { liveDue });
      if (batch === undefined) break;
      this.#start(batch);
    }
    batcher.taken(queue.ready);
  }

  /** A wait (backing off, misconfigured) that would run past `time` ends at it, the one under way included. */
  resumeBy(time: number): void {
    this.#resumeBy = time;
    // The wait under way is cut to end by `time` (the cap in #wait), not ended now.
    if (this.#resumeTimer !== undefined && this.#resumeAt > time) this.#wait(this.#resumeAt - this.options.clock.now());
  }

  /** Ends every request under way (their batches are released) and stops sending. */
  stop(): void {
    this.#stopped = true;
    this.#resumeTimer?.clear();
    this.#resumeTimer = undefined;
    this.#cutOff.abort();
  }

  /** Resolves when no request is under way. */
  idle(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #start(batch: Batch, retries?: number): void {
    this.#inFlight++;
    this.#eventsInFlight += batch.events.length;
    const size = batch.events.length;
    const tally: Tally = { delivered: 0, refusedAlone: 0, refused: [], result: undefined };
    void this.#deliver(batch, retries, tally)
      .catch(() => this.options.queue.release(batch)) // only a bug: keep the events
      .finally(() => {
        this.#inFlight--;
        this.#eventsInFlight -= size;
        if (tally.result !== undefined) this.options.hooks.reportRefused(tally.refused, tally.result);
        if (this.#inFlight === 0) for (const resolve of this.#idle.splice(0)) resolve();
        this.pump();
        this.options.hooks.afterRequest();
      });
  }

  /** Sends one batch (or its halves) to the end: every event is settled or released on the way. */
  async #deliver(batch: Batch, retries: number | undefined, tally: Tally): Promise<void> {
    const { queue, hooks, transport } = this.options;
    const result = await transport.send(body(batch), this.#cutOff.signal, retries);
    switch (result.kind) {
      case "delivered":
        tally.delivered += batch.events.length;
        this.#becomeHealthy();
        hooks.delivered(batch);
        queue.settle(batch);
        return;
      case "aborted":
        queue.release(batch);
        return;
      case "retryable":
        queue.release(batch);
        this.#backOff(result);
        return;
      case "refused":
        return this.#refused(batch, result, retries, tally);
    }
  }

  async #refused(batch: Batch, result: Refused, retries: number | undefined, tally: Tally): Promise<void> {
    const { queue, hooks, keepOnConfigurationProblem } = this.options;
    this.#probing = false;
    if (result.configuration && keepOnConfigurationProblem) {
      queue.release(batch);
      this.unreachable = true;
      this.#refusingAll = false;
      if (this.state !== "misconfigured") {
        this.#setState("misconfigured", result);
        hooks.misconfigured(batch, result);
      }
      this.#wait(MISCONFIGURED_PROBE_MS);
      return;
    }
    if (this.#refusingAll && result.status === 400) {
      // The probe of an endpoint that refused everything is refused too: nothing changed. Bisecting it
      // would refuse up to REFUSED_ALONE_LIMIT more events a minute that it may never have looked at.
      queue.release(batch);
      this.#wait(MISCONFIGURED_PROBE_MS);
      return;
    }
    // The endpoint answered about the events, so it is up and takes our key.
    this.#becomeHealthy();
    const splittable = (result.status === 400 || result.status === 413) && batch.events.length > 1;
    if (!splittable) {
      if (batch.events.length === 1 && result.status === 400) tally.refusedAlone++;
      this.#refuse(batch, result, tally);
      return;
    }
    // One invalid event fails a whole OpenMeter request (400), and a batch may be too large (413):
    // halves, until the refused events stand alone and the rest went through.
    const middle = Math.ceil(batch.events.length / 2);
    const halves = [batch.slice(0, middle), batch.slice(middle, batch.events.length)];
    for (const half of halves) {
      if (result.status === 400 && tally.refusedAlone >= REFUSED_ALONE_LIMIT && tally.delivered === 0 && this.state !== "misconfigured") {
        // Every event tried alone was refused and none went through: the endpoint seems to refuse
        // them all (another API flavour, a proxy). Bisecting on would cost a request per event, and
        // refusing the rest would lose events it never refused: they wait, as for a wrong key.
        this.#setState("misconfigured", result);
        this.#refusingAll = true;
        this.unreachable = true;
        this.options.hooks.misconfigured(half, {
          ...result,
          message: `${result.message}; every event sent alone was refused, so the endpoint seems to refuse them all: check url (the API it serves) and the events' shape`,
        });
        this.#wait(MISCONFIGURED_PROBE_MS);
      }
      // Stopped, or an earlier half found the endpoint down or refusing everything: the rest waits with the queue.
      if (this.#stopped || this.state === "backing-off" || this.state === "misconfigured") {
        queue.release(half);
        continue;
      }
      await this.#deliver(half, retries, tally);
    }
  }

  #refuse(batch: Batch, result: Refused, tally: Tally): void {
    tally.refused.push(...batch.events);
    tally.result = result;
    this.options.queue.settle(batch);
    this.options.hooks.refused(batch.events);
  }

  #becomeHealthy(): void {
    this.#probing = false;
    this.#refusingAll = false;
    this.unreachable = false;
    if (this.state !== "healthy") this.#setState("healthy", undefined);
  }

  /** Retries ran out, or the server asked to wait: nothing is sent until the probe after the wait. */
  #backOff(result: Retryable): void {
    this.#probing = false;
    // After the server's wait the batch goes again, which counts as a retry; after retries ran out, a probe does not.
    if (result.retryAfterMs !== undefined) this.#retryAfterWait = true;
    else this.unreachable = true;
    if (this.state !== "backing-off") this.#setState("backing-off", result);
    this.#wait(result.retryAfterMs ?? this.options.backoffMs);
  }

  #resumeAt = 0;
  #wait(ms: number): void {
    if (this.#stopped) return;
    const clock = this.options.clock;
    // A wait that would run past `resumeBy` ends at it instead: one more try before the deadline, not a storm.
    const resumeBy = this.#resumeBy;
    if (resumeBy !== undefined && clock.now() < resumeBy && clock.now() + ms > resumeBy) ms = resumeBy - clock.now();
    this.#resumeTimer?.clear();
    this.#resumeAt = clock.now() + ms;
    this.#resumeTimer = clock.setTimeout(() => {
      this.#resumeTimer = undefined;
      this.pump();
    }, ms);
  }

  /** A failed attempt that will be retried: the endpoint is not keeping up. */
  noteRetry(result: Retryable): void {
    this.options.hooks.retried();
    if (this.state === "healthy") this.#setState("retrying", result);
  }

  #setState(state: SenderState, cause: Retryable | Refused | undefined): void {
    this.state = state;
    this.options.hooks.stateChanged(state, cause);
  }
}

/** What one batch's delivery came to, across its halves. */
interface Tally {
  delivered: number;
  refusedAlone: number;
  refused: QueuedEvent[];
  /** The answer that refused them (the last one, when several did). */
  result: Refused | undefined;
}

/** The request body: the events' JSON, already serialised at enqueue, joined into one array. */
export function body(batch: Batch): string {
  let text = "[";
  const events = batch.events;
  for (let i = 0; i < events.length; i++) text += i === 0 ? events[i]!.json : `,${events[i]!.json}`;
  return `${text}]`;
}
