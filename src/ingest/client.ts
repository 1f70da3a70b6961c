import pRetry, { AbortError } from "p-retry";
import { type CloudEvent, cloudEventSchema, isPlainValidEvent } from "../cloudevent";
import { consoleLogger, type Logger, OnceLogger } from "../logger";
import { IngestError, type IngestErrorKind, PermanentError, TransientError } from "./errors";
import { registerExitHooks } from "./exit";
import { type IngestOptions, parseIngestOptions, type ResolvedIngestOptions, urlWarnings } from "./options";
import { retryDelay } from "./retry";
import type { EventSink, FlushOptions } from "./sink";
import { BatchQueue } from "./batch-queue";
import { Spool } from "./spool";
import { redact, Transport } from "./transport";

/** Counters since the client was created. Event counts unless the name says batches. */
export interface IngestStats {
  /** Events accepted by `enqueue`. */
  enqueued: number;
  /** Events the endpoint acknowledged with a 2xx (replayed ones included). */
  sent: number;
  /** Requests the endpoint acknowledged with a 2xx. */
  batches: number;
  /** Retried requests. */
  retries: number;
  /** Events given up on: rejected by the endpoint, invalid, or out of retries with no spool. */
  failed: number;
  /** Events written to the spool. */
  spooled: number;
  /** Events read back from the spool and handed to delivery. */
  replayed: number;
  /** Events lost: queue full with no spool, or the spool could not be written. */
  dropped: number;
  /** Events in requests under way or waiting to retry. */
  inFlight: number;
  /** Events queued in memory, not yet in a request. */
  queueDepth: number;
}

interface Sleep {
  timer: NodeJS.Timeout;
  wake(): void;
}

/**
 * Batched, retrying, durable delivery of CloudEvents to an OpenMeter-compatible endpoint.
 * `enqueue` is synchronous and does no I/O; everything else happens in the background.
 */
export class IngestClient implements EventSink {
  readonly #opts: ResolvedIngestOptions;
  readonly #logger: Logger;
  readonly #once: OnceLogger;
  readonly #transport: Transport;
  readonly #spool: Spool | undefined;
  readonly #unregister: () => void;
  // Held here: the exit hooks keep only a weak reference, so an abandoned idle client can be collected.
  readonly #exitParticipant = { beforeExit: () => this.#onBeforeExit(), onSignal: () => this.shutdown() };

  readonly #queue: BatchQueue<CloudEvent>;
  #queuedTotal = 0;
  #dispatchedTotal = 0;
  /** Partial batches may go out while fewer than this many events were dispatched (flush). */
  #partialUntil = 0;
  #due = false;
  #timer: NodeJS.Timeout | undefined;
  #pumpScheduled = false;

  #overflow: CloudEvent[] = [];
  #overflowScheduled = false;

  #inFlightBatches = 0;
  #slotWaiters: Array<() => void> = [];
  readonly #tasks = new Set<Promise<unknown>>();
  readonly #spoolWrites = new Set<Promise<void>>();
  readonly #sleeps = new Set<Sleep>();
  #draining = 0;
  #exitFlushing = false;
  #outage = false;

  #replaying: Promise<number> | undefined;
  /** Events were spooled that no replay has picked up yet. */
  #spoolDirty = false;
  #spoolWriteFailures = 0;
  /** Retries the spool while nothing else would (an idle process after an outage); unref'd. */
  #replayTimer: NodeJS.Timeout | undefined;
  #replayBackoffMs = REPLAY_FIRST_DELAY_MS;
  /** After a failed probe, live successes do not start a replay before this (`performance.now()`). */
  #replayNotBefore = 0;
  /** A replay sends what it reads until then, and hands the rest back to the spool file after. */
  #replaySendUntil = Number.POSITIVE_INFINITY;
  #exitReplayTried = false;

  /** enqueue() refuses from here on (shutdown began). */
  #closed = false;
  /** Delivery is over: no replay starts. */
  #stopped = false;
  #shutdown: Promise<void> | undefined;
  /** Aborted when a flush deadline passes, to end requests under way. */
  #cutOff = new AbortController();

  readonly #stats = { enqueued: 0, sent: 0, batches: 0, retries: 0, failed: 0, spooled: 0, replayed: 0, dropped: 0, inFlight: 0 };

  constructor(options: IngestOptions) {
    this.#opts = parseIngestOptions(options);
    this.#queue = new BatchQueue(this.#opts.maxBatchSize);
    const logger = this.#opts.logger ?? consoleLogger;
    // A throwing logger must not break delivery.
    this.#logger = {
      warn: (m) => {
        try {
          logger.warn(this.#redact(m));
        } catch {}
      },
      error: (m) => {
        try {
          logger.error(this.#redact(m));
        } catch {}
      },
    };
    this.#once = new OnceLogger(this.#logger);
    for (const warning of urlWarnings(this.#opts.url)) this.#logger.warn(warning);
    this.#transport = new Transport({
      url: this.#opts.url,
      apiKey: this.#opts.apiKey,
      timeoutMs: this.#opts.timeoutMs,
      connections: this.#opts.maxConcurrency,
    });
    this.#spool = this.#opts.spoolDir === undefined ? undefined : new Spool(this.#opts.spoolDir);
    this.#unregister = registerExitHooks(this.#exitParticipant, {
      flushOnExit: this.#opts.flushOnExit,
      handleSignals: this.#opts.handleSignals,
    });
    if (this.#spool) void this.replaySpool();
  }

  /** Queues events. Synchronous and O(1) per event: no validation, no I/O. Throws after `shutdown()`. */
  enqueue(events: CloudEvent | readonly CloudEvent[]): void {
    if (this.#closed) {
      throw new Error("IngestClient was shut down: enqueue() is refused after shutdown(); create a new client to send more events");
    }
    const list = (Array.isArray(events) ? events : [events]) as readonly CloudEvent[];
    let full = false;
    for (const event of list) {
      this.#stats.enqueued++;
      if (this.#queue.depth >= this.#opts.maxQueueSize) {
        this.#overflow.push(event);
        continue;
      }
      if (this.#queue.push(event)) full = true;
      this.#queuedTotal++;
    }
    if (this.#overflow.length > 0 && !this.#overflowScheduled) {
      this.#overflowScheduled = true;
      setImmediate(() => void this.#handleOverflow());
    }
    if (full) this.#schedulePump();
    else if (this.#timer === undefined && !this.#due && this.#queue.depth > 0) this.#armTimer();
  }

  /**
   * Resolves when everything enqueued before the call was delivered, failed for good, or spooled.
   * Never rejects. With `timeoutMs` it resolves by then at the latest (serverless functions must
   * return): what is still failing goes to the spool if there is one (allow one request time-out
   * for that), else it stays queued and keeps being retried.
   */
  async flush(options?: FlushOptions): Promise<void> {
    const timeoutMs = options?.timeoutMs;
    if (timeoutMs === undefined) return this.#flushAll();
    const done = this.#flushAll();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<true>((resolve) => (timer = setTimeout(resolve, timeoutMs, true)));
    const timedOut = await Promise.race([done.then(() => false), late]);
    clearTimeout(timer);
    if (timedOut && this.#spool) {
      // Past the deadline: requests under way are cut off and everything still pending goes to the
      // spool at once (a cut-off request may have arrived: the replay's ids make that safe).
      const cutOff = this.#cutOff;
      this.#beginDrain();
      cutOff.abort();
      try {
        await done;
      } finally {
        this.#endDrain();
        if (this.#cutOff === cutOff) this.#cutOff = new AbortController();
      }
    }
  }

  async #flushAll(): Promise<void> {
    try {
      const target = this.#queuedTotal;
      this.#partialUntil = Math.max(this.#partialUntil, target);
      this.#pump();
      for (let idle = 0; this.#dispatchedTotal < target; ) {
        const before = this.#dispatchedTotal;
        if (this.#tasks.size > 0) await Promise.race(this.#tasks);
        // A slot can be between a finished task and the replay batch it was handed to: let that settle.
        else await new Promise((resolve) => setImmediate(resolve));
        this.#pump();
        idle = this.#dispatchedTotal === before && this.#tasks.size === 0 ? idle + 1 : 0;
        if (idle > 100) throw new Error(`${target - this.#dispatchedTotal} event(s) could not be dispatched`);
      }
      await this.#handleOverflow();
      // Every event from before the call is now in one of these (spool writes of a batch happen inside its task).
      await Promise.allSettled([...this.#tasks, ...this.#spoolWrites]);
    } catch (error) {
      this.#logger.error(`flush failed unexpectedly: ${String(error)}`);
    }
  }

  /** Flushes (events still failing go to the spool at once when one is configured), stops timers, closes connections. Idempotent. */
  shutdown(): Promise<void> {
    this.#shutdown ??= this.#doShutdown();
    return this.#shutdown;
  }

  async #doShutdown(): Promise<void> {
    this.#closed = true;
    this.#beginDrain();
    try {
      await this.#flushWithReplay();
    } finally {
      this.#stopped = true;
      this.#replaySendUntil = Number.NEGATIVE_INFINITY;
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = undefined;
      if (this.#replayTimer) clearTimeout(this.#replayTimer);
      this.#replayTimer = undefined;
      this.#unregister();
      await this.#transport.close();
      this.#endDrain();
    }
  }

  /**
   * Replays the spool: claims the spool file (and files left claimed by dead processes), sends their
   * events with their original ids, and deletes each file once its events were delivered or re-spooled.
   * Resolves with the number of events read (0 after shutdown). Never rejects.
   */
  replaySpool(): Promise<number> {
    if (this.#closed) return Promise.resolve(0);
    return this.#replay();
  }

  #replay(): Promise<number> {
    if (!this.#spool || this.#stopped) return Promise.resolve(0);
    // A pass already under way may have claimed before the latest events were spooled: run another after it.
    const previous = this.#replaying;
    const run = (previous ?? Promise.resolve(0)).then(() => this.#doReplay());
    const tracked = run.finally(() => {
      if (this.#replaying !== tracked) return;
      this.#replaying = undefined;
      // Events spooled while this pass ran wait for the next one: start it now if delivery works.
      if (!this.#outage) this.#afterSuccess();
    });
    this.#replaying = tracked;
    return previous ? previous.then((n) => tracked.then((m) => n + m)) : tracked;
  }

  stats(): IngestStats {
    return { ...this.#stats, queueDepth: this.#queue.depth };
  }

  // --- batching -------------------------------------------------------------------------------

  #armTimer(): void {
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#due = true;
      this.#pump();
    }, this.#opts.flushIntervalMs);
    this.#timer.unref();
  }

  #schedulePump(): void {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    setImmediate(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  #pump(): void {
    while (this.#inFlightBatches < this.#opts.maxConcurrency && this.#hasReadyBatch()) {
      const batch = this.#queue.take()!;
      this.#dispatchedTotal += batch.length;
      this.#inFlightBatches++;
      this.#startTask(batch);
    }
    if (this.#queue.depth === 0) this.#due = false;
    else if (this.#timer === undefined && !this.#due) this.#armTimer();
  }

  #hasReadyBatch(): boolean {
    const first = this.#queue.peek();
    return first !== undefined && (first.length >= this.#opts.maxBatchSize || this.#due || this.#dispatchedTotal < this.#partialUntil);
  }

  /** The caller holds a slot. A `probe` is one request without retries (see #deliver). */
  #startTask(events: CloudEvent[], probe = false): Promise<ProbeOutcome> {
    const task = this.#deliver(events, probe).finally(() => {
      this.#tasks.delete(task);
      this.#releaseSlot();
    });
    this.#tasks.add(task);
    return task;
  }

  #acquireSlot(): Promise<void> {
    if (this.#inFlightBatches < this.#opts.maxConcurrency) {
      this.#inFlightBatches++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#slotWaiters.push(resolve));
  }

  #releaseSlot(): void {
    // Live events first: a long replay must not hold back fresh usage.
    if (this.#hasReadyBatch()) {
      this.#inFlightBatches--;
      this.#pump();
      return;
    }
    const waiter = this.#slotWaiters.shift();
    if (waiter) waiter(); // the slot passes to the waiter
    else {
      this.#inFlightBatches--;
      this.#pump();
    }
  }

  // --- delivery -------------------------------------------------------------------------------

  /**
   * Never rejects. A batch is sent with retries, and what cannot be delivered is spooled or reported.
   * A `probe` (a replay's first batch, still in its spool file) is sent once: when the endpoint is
   * down or misconfigured the outcome says so and the batch is left to its file.
   */
  async #deliver(batch: CloudEvent[], probe: boolean): Promise<ProbeOutcome> {
    try {
      const { events, body } = this.#prepare(batch);
      if (events.length === 0) return "handled";
      this.#stats.inFlight += events.length;
      try {
        if (probe) return await this.#sendOnce(events, body);
        await this.#sendSplitting(events, body);
        return "handled";
      } finally {
        this.#stats.inFlight -= events.length;
      }
    } catch (error) {
      // Only a bug gets here; keep the events rather than lose them silently.
      this.#logger.error(`unexpected error delivering ${batch.length} event(s): ${String(error)}`);
      if (probe) return "retry-later"; // they are still in their spool file
      await this.#spoolOrFail(batch, error);
      return "handled";
    }
  }

  async #sendOnce(events: CloudEvent[], body: string): Promise<ProbeOutcome> {
    try {
      await this.#transport.send(body, this.#cutOff.signal);
    } catch (error) {
      if (error instanceof PermanentError && !isConfigurationProblem(error.status)) {
        await this.#narrow(events, body, error); // these events refused, not us: as for any batch
        return "handled";
      }
      this.#outage = true;
      if (error instanceof PermanentError) {
        // A wrong key or url: retrying before a restart with a fixed configuration only repeats this.
        this.#report(this.#error("rejected", `replaying the spool: ${error.message}; its events stay there`, [], error));
        return "misconfigured";
      }
      const wait = Math.max(REPLAY_FIRST_DELAY_MS, error instanceof TransientError ? (error.retryAfterMs ?? 0) : 0);
      this.#replayNotBefore = performance.now() + wait;
      return "retry-later";
    }
    this.#recordSent(events.length);
    return "handled";
  }

  /** Validation happens here, off the enqueue path; one bad event must not fail its whole batch. */
  #prepare(batch: CloudEvent[]): { events: CloudEvent[]; body: string } {
    let events: CloudEvent[] = [];
    const invalid: CloudEvent[] = [];
    const problems: string[] = [];
    for (const event of batch) {
      if (isPlainValidEvent(event)) {
        events.push(event);
        continue;
      }
      const result = cloudEventSchema.safeParse(event);
      if (result.success) events.push(event);
      else {
        invalid.push(event);
        if (problems.length < 3) problems.push(result.error.issues.map((i) => i.message).join(", "));
      }
    }
    let body: string;
    try {
      body = JSON.stringify(events);
    } catch {
      // Something in `data` JSON cannot hold (a BigInt, a cycle): find the culprits.
      const ok: CloudEvent[] = [];
      for (const event of events) {
        try {
          JSON.stringify(event);
          ok.push(event);
        } catch (error) {
          invalid.push(event);
          if (problems.length < 3) problems.push(`\`data\` is not JSON-serializable (${(error as Error).message})`);
        }
      }
      events = ok;
      body = JSON.stringify(events);
    }
    if (invalid.length > 0) {
      this.#stats.failed += invalid.length;
      this.#report(
        new IngestError(
          `${invalid.length} invalid event(s) left out of the batch and not sent: ${problems.join("; ")}`,
          { kind: "invalid-event", events: invalid },
        ),
      );
    }
    return { events, body };
  }

  async #sendSplitting(events: CloudEvent[], body: string): Promise<void> {
    const rejected = await this.#attempt(events, body);
    if (rejected) await this.#narrow(events, body, rejected);
  }

  /** Sends with retries; returns the error when the endpoint refused the events for good. */
  async #attempt(events: CloudEvent[], body: string): Promise<PermanentError | undefined> {
    try {
      await this.#sendWithRetry(body);
      this.#recordSent(events.length);
      return undefined;
    } catch (error) {
      if (error instanceof PermanentError) return error;
      await this.#spoolOrFail(events, error);
      return undefined;
    }
  }

  #recordSent(events: number): void {
    this.#stats.sent += events;
    this.#stats.batches++;
    this.#outage = false;
    this.#afterSuccess();
  }

  /**
   * A refused batch is split where that can save events: a 413 until the parts fit; a 400 (one
   * invalid event fails the whole request) until each refused event is alone, reported together.
   */
  async #narrow(events: CloudEvent[], body: string, error: PermanentError): Promise<void> {
    if (events.length > 1 && error.status === 413) {
      for (const half of halves(events)) await this.#sendSplitting(half, JSON.stringify(half));
      return;
    }
    if (events.length > 1 && error.status === 400) {
      const refused: CloudEvent[] = [];
      await this.#isolateRefused(events, refused, { delivered: 0, refusedAlone: 0 });
      if (refused.length > 0) await this.#reject(refused, JSON.stringify(refused), error);
      return;
    }
    await this.#reject(events, body, error);
  }

  /**
   * Halves a batch the endpoint refused with 400 until every refused event is alone. When nothing
   * has gone through and several events were refused on their own, the endpoint is refusing them
   * all: the rest is given up without a request each.
   */
  async #isolateRefused(events: CloudEvent[], refused: CloudEvent[], tally: { delivered: number; refusedAlone: number }): Promise<void> {
    for (const part of halves(events)) {
      if (part.length === 0) continue;
      if (tally.refusedAlone >= 3 && tally.delivered === 0) {
        refused.push(...part);
        continue;
      }
      const partBody = JSON.stringify(part);
      const partError = await this.#attempt(part, partBody);
      if (partError === undefined) tally.delivered += part.length;
      else if (partError.status !== 400) await this.#narrow(part, partBody, partError);
      else if (part.length === 1) {
        tally.refusedAlone++;
        refused.push(...part);
      } else await this.#isolateRefused(part, refused, tally);
    }
  }

  /**
   * Reports events the endpoint refused. When the cause is the configuration (key, url, a proxy in
   * the way) and a spool is set, they are kept there too: fixed and restarted, the client replays them.
   */
  async #reject(events: CloudEvent[], body: string, error: PermanentError): Promise<void> {
    const keep = this.#spool !== undefined && isConfigurationProblem(error.status);
    // Splitting cannot help one event: "lower maxBatchSize" would send the user the wrong way.
    const message =
      error.status === 413 && events.length === 1
        ? `1 event not ingested: alone it is larger (${Buffer.byteLength(body)} bytes) than the endpoint accepts (413); make its \`data\` smaller${error.detail ? `: ${error.detail}` : ""}`
        : `${events.length} event(s) not ingested: ${error.message}${keep ? "; they are kept in the spool and replayed once this is fixed and the client restarts" : ""}`;
    if (!keep) this.#stats.failed += events.length;
    this.#report(this.#error("rejected", message, events, error));
    if (keep) await this.#toSpool(events, false);
  }

  async #sendWithRetry(body: string): Promise<void> {
    const retry = this.#opts.retry;
    await pRetry(
      async () => {
        try {
          await this.#transport.send(body, this.#cutOff.signal);
        } catch (error) {
          throw error instanceof PermanentError ? new AbortError(error) : error;
        }
      },
      {
        retries: retry.retries,
        // Delays are ours (Retry-After, jitter, drain): p-retry only counts attempts.
        minTimeout: 0,
        factor: 1,
        shouldRetry: ({ error }) => error instanceof TransientError,
        onFailedAttempt: async ({ error, attemptNumber, retriesLeft }) => {
          if (!(error instanceof TransientError)) return;
          if (!this.#outage) {
            this.#outage = true;
            this.#logger.warn(`${error.message}; retrying (events are kept)`);
          }
          if (retriesLeft <= 0) return;
          // Shutting down with a spool: spool now instead of holding the process through the backoff.
          if (this.#draining > 0 && this.#spool) throw error;
          this.#stats.retries++;
          if (!(await this.#sleep(retryDelay(attemptNumber, retry, error.retryAfterMs)))) throw error;
        },
      },
    );
  }

  /** Resolves true after `ms`, or false when woken early because the client is draining into the spool. */
  #sleep(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const sleep: Sleep = {
        timer: setTimeout(() => {
          this.#sleeps.delete(sleep);
          resolve(true);
        }, ms),
        wake: () => {
          clearTimeout(sleep.timer);
          this.#sleeps.delete(sleep);
          resolve(false);
        },
      };
      // An idle wait must not keep the process alive; `beforeExit` takes over (see #onBeforeExit).
      if (this.#draining === 0) sleep.timer.unref();
      this.#sleeps.add(sleep);
    });
  }

  /** From now on, waits keep the process alive, or end at once when a spool can take the events. */
  #beginDrain(): void {
    this.#draining++;
    for (const sleep of [...this.#sleeps]) {
      if (this.#spool) sleep.wake();
      else sleep.timer.ref();
    }
  }

  #endDrain(): void {
    this.#draining = Math.max(0, this.#draining - 1);
    if (this.#draining === 0) for (const sleep of this.#sleeps) sleep.timer.unref();
  }

  /**
   * Flushes, lets a replay under way finish, gives what this process spooled one more replay (its
   * first batch probes the endpoint, so a down endpoint costs one request), then flushes again.
   */
  async #flushWithReplay(): Promise<void> {
    // A long backlog must not hold the exit: past this, replays hand what they read back to the spool.
    this.#replaySendUntil = performance.now() + REPLAY_AT_EXIT_MS;
    try {
      await this.flush();
      await this.#replaying?.catch(() => 0);
      if (this.#spoolDirty && !this.#outage) {
        this.#spoolDirty = false;
        await this.#replay();
      }
      await this.flush();
    } finally {
      if (!this.#stopped) this.#replaySendUntil = Number.POSITIVE_INFINITY;
    }
  }

  #onBeforeExit(): void {
    if (this.#closed || this.#exitFlushing) return;
    // Events spooled during this run get one pass at exit, not more: a down endpoint would re-spool them, and loop.
    const replayDue = this.#spoolDirty && !this.#exitReplayTried;
    const pending =
      replayDue ||
      this.#queue.depth > 0 ||
      this.#tasks.size > 0 ||
      this.#overflow.length > 0 ||
      this.#spoolWrites.size > 0 ||
      this.#replaying !== undefined;
    if (!pending) return;
    this.#exitReplayTried = true;
    this.#exitFlushing = true;
    this.#beginDrain();
    void this.#flushWithReplay().finally(() => {
      this.#exitFlushing = false;
      this.#endDrain();
    });
  }

  #afterSuccess(): void {
    if (this.#spool && this.#spoolDirty && this.#replaying === undefined && !this.#closed && performance.now() >= this.#replayNotBefore) {
      this.#spoolDirty = false;
      void this.#replay();
    }
  }

  /** Spooled events wait for a live success, the next start, or this timer, whichever comes first. */
  #scheduleReplay(): void {
    if (this.#replayTimer !== undefined || this.#closed || !this.#spool) return;
    this.#replayTimer = setTimeout(() => {
      this.#replayTimer = undefined;
      // A pass under way starts the next one when needed; shutdown() gives the spool its own last pass.
      if (this.#replaying !== undefined || this.#closed) return;
      this.#spoolDirty = false;
      void this.#replay();
    }, this.#replayBackoffMs);
    this.#replayTimer.unref();
    this.#replayBackoffMs = Math.min(this.#replayBackoffMs * 2, REPLAY_MAX_DELAY_MS);
  }

  /** The spool could not be emptied now: keep it marked, and try again later. */
  #replayLater(): void {
    this.#spoolDirty = true;
    this.#scheduleReplay();
  }

  // --- spool ----------------------------------------------------------------------------------

  async #spoolOrFail(events: CloudEvent[], error: unknown): Promise<void> {
    if (this.#spool) {
      await this.#toSpool(events);
      return;
    }
    this.#stats.failed += events.length;
    const reason = error instanceof Error ? error.message : String(error);
    this.#report(
      this.#error(
        "retries-exhausted",
        `${events.length} event(s) not delivered after ${this.#opts.retry.retries} retries: ${reason}; set spoolDir to keep undeliverable events on disk`,
        events,
        error,
      ),
      true, // lost for good: a warning too, after "retrying (events are kept)"
    );
  }

  /** Never rejects: a spool that cannot be written counts the events as dropped and reports them. */
  #toSpool(batch: CloudEvent[], replaySoon = true): Promise<void> {
    const spool = this.#spool;
    if (!spool || batch.length === 0) return Promise.resolve();
    // Only valid events are kept: an invalid one (overflow is not validated yet) is reported once,
    // here, instead of on every replay; one that JSON cannot hold would fail the whole write.
    const { events } = this.#prepare(batch);
    if (events.length === 0) return Promise.resolve();
    const write: Promise<void> = spool
      .append(events)
      .then(
        () => {
          this.#stats.spooled += events.length;
          if (replaySoon) this.#replayLater();
          this.#once.warnOnce("spooled", `events that could not be delivered now are kept in ${spool.file} and will be replayed`);
        },
        (error: unknown) => {
          this.#spoolWriteFailures++;
          this.#stats.dropped += events.length;
          const err = this.#error(
            "spool",
            `${events.length} event(s) lost: could not write the spool ${spool.file}: ${(error as Error).message ?? String(error)}; check spoolDir is a writable directory with free space`,
            events,
            error,
          );
          this.#report(err, true);
        },
      )
      .finally(() => this.#spoolWrites.delete(write));
    this.#spoolWrites.add(write);
    return write;
  }

  #handleOverflow(): Promise<void> {
    this.#overflowScheduled = false;
    const events = this.#overflow;
    if (events.length === 0) return Promise.resolve();
    this.#overflow = [];
    if (this.#spool) {
      this.#once.warnOnce("overflow", `the queue is full (maxQueueSize ${this.#opts.maxQueueSize}): overflowing events go to the spool`);
      return this.#toSpool(events);
    }
    this.#stats.dropped += events.length;
    this.#report(
      this.#error(
        "queue-full",
        `${events.length} event(s) dropped: the queue is full (maxQueueSize ${this.#opts.maxQueueSize}) and no spoolDir is set; raise maxQueueSize or set spoolDir`,
        events,
      ),
      true,
    );
    return Promise.resolve();
  }

  async #doReplay(): Promise<number> {
    const spool = this.#spool;
    if (!spool) return 0;
    let files: string[];
    try {
      files = await spool.claim();
    } catch (error) {
      this.#report(this.#error("spool", `could not read the spool in ${spool.dir}: ${(error as Error).message}`, [], error), true);
      return 0;
    }
    let total = 0;
    let skipped = 0;
    for (const [index, file] of files.entries()) {
      const tasks: Promise<unknown>[] = [];
      const failuresBefore = this.#spoolWriteFailures;
      let probed = false;
      try {
        const onBatch = async (batch: CloudEvent[]) => {
          this.#stats.replayed += batch.length;
          if (performance.now() > this.#replaySendUntil) {
            await this.#toSpool(batch); // shutting down: hand the rest back to the spool file
            return;
          }
          await this.#acquireSlot();
          if (probed) {
            tasks.push(this.#startTask(batch));
            return;
          }
          // The first batch goes alone, once: if the endpoint is still down, the file stays as it is.
          probed = true;
          const outcome = await this.#startTask(batch, true);
          if (outcome !== "handled") {
            this.#stats.replayed -= batch.length; // still in the file, read again next time
            throw new ReplayStopped(outcome);
          }
        };
        // The batches under way settle before the file is taken as complete: a writer that opened it
        // before the claim may add lines meanwhile, and they are read too.
        const result = await spool.read(file, this.#opts.maxBatchSize, onBatch, () => Promise.allSettled(tasks));
        await Promise.allSettled(tasks);
        await Promise.allSettled([...this.#spoolWrites]);
        if (this.#spoolWriteFailures !== failuresBefore) {
          // Some events could not be re-spooled: keep the file (ids make a second replay safe).
          spool.release(file);
          this.#logger.warn(`kept ${file} for a later replay: some of its events could not be re-spooled`);
          continue;
        }
        await spool.remove(file);
        total += result.events;
        skipped += result.skipped;
      } catch (error) {
        await Promise.allSettled(tasks);
        if (error instanceof ReplayStopped) {
          // Endpoint down or misconfigured: this file and the ones after it wait, untouched.
          for (const kept of files.slice(index)) spool.release(kept);
          if (error.outcome === "retry-later") this.#replayLater();
          break;
        }
        spool.release(file);
        this.#replayLater();
        this.#report(this.#error("spool", `could not replay ${file}: ${(error as Error).message}; it is kept and retried later`, [], error), true);
      }
    }
    if (skipped > 0) {
      this.#logger.warn(`skipped ${skipped} unreadable line(s) while replaying the spool in ${spool.dir} (torn by a crash mid-write, or corrupted)`);
    }
    if (total > 0) this.#replayBackoffMs = REPLAY_FIRST_DELAY_MS;
    return total;
  }

  // --- reporting ------------------------------------------------------------------------------

  #redact(text: string): string {
    return redact(text, this.#opts.apiKey);
  }

  #error(kind: IngestErrorKind, message: string, events: CloudEvent[], cause?: unknown): IngestError {
    const status = cause instanceof PermanentError || cause instanceof TransientError ? cause.status : undefined;
    const detail = cause instanceof PermanentError || cause instanceof TransientError ? cause.detail : undefined;
    return new IngestError(this.#redact(message), { kind, events, status, detail, cause });
  }

  /** onError when set, else the logger; `warn` adds a warning too (for events lost for good). */
  #report(error: IngestError, warn = false): void {
    const onError = this.#opts.onError;
    if (onError) {
      try {
        onError(error);
      } catch (thrown) {
        this.#logger.error(`onError threw: ${String(thrown)}`);
      }
      if (warn) this.#logger.warn(error.message);
    } else {
      this.#logger.error(error.message);
    }
  }
}

/** First wait before the spool is retried on a timer; doubled after each try, up to the maximum. */
const REPLAY_FIRST_DELAY_MS = 5_000;
const REPLAY_MAX_DELAY_MS = 5 * 60_000;
/** How long replays may send at shutdown or exit before handing the rest back to the spool. */
const REPLAY_AT_EXIT_MS = 5_000;

/**
 * How a delivery ended, for a replay's probe: handled (delivered, or refused and reported: go on),
 * the endpoint down (try later), or refusing our key or url (wait for a fixed configuration).
 */
type ProbeOutcome = "handled" | "retry-later" | "misconfigured";

/** A replay's probe found the endpoint down or refusing us: the pass stops, its files stay as they are. */
class ReplayStopped extends Error {
  constructor(readonly outcome: Exclude<ProbeOutcome, "handled">) {
    super(outcome);
  }
}

function halves<T>(items: T[]): [T[], T[]] {
  const mid = Math.ceil(items.length / 2);
  return [items.slice(0, mid), items.slice(mid)];
}

/** Refusals that a corrected key, url or proxy would turn into deliveries. */
function isConfigurationProblem(status: number | undefined): boolean {
  return status === undefined || status === 401 || status === 403 || status === 404 || (status >= 200 && status < 400);
}
