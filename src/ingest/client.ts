import { statfsSync } from "node:fs";
import { type CloudEvent, cloudEventProblems } from "../cloudevent";
import { type Clock, type ClockTimer, systemClock } from "../clock";
import { consoleLogger, type Logger } from "../logger";
import { Batcher } from "./batcher";
import { DiskLog, type DiskProblem } from "./disk-log/disk-log";
import { IngestError, type IngestErrorKind } from "./errors";
import { FlushTracker } from "./flush-tracker";
import { joinLifecycle } from "./lifecycle";
import { MemoryQueue } from "./memory-queue";
import { type IngestOptions, parseIngestOptions, type ResolvedIngestOptions, urlNotes } from "./options";
import type { EventQueue, QueuedEvent } from "./queue";
import { RetryingTransport } from "./retrying-transport";
import { Sender, type SenderState } from "./sender";
import { OwnedEvent, serializeEvent } from "./serialize";
import type { EventSink, FlushOptions } from "./sink";
import { redact, Transport } from "./transport";

/** The handler's way in for the events it built itself (see `IngestClient[ENQUEUE_OWNED]`). */
export const ENQUEUE_OWNED = Symbol("langchain-openmeter.enqueueOwned");

/**
 * What the client did, since it was created. The counts add up, in every configuration:
 * `enqueued + recovered = delivered + refused + dropped + handedOver + pending.memory + pending.disk`.
 */
export interface IngestStats {
  /** Events handed to `enqueue` (valid or not). */
  enqueued: number;
  /** Events found in the spool of a process that ended or died, taken over by this client. */
  recovered: number;
  /** Events the endpoint acknowledged (2xx). */
  delivered: number;
  /** Events refused for good and reported: by the endpoint (400, 401 without a spool, ...) or invalid at `enqueue`. */
  refused: number;
  /** Events that could be held nowhere (memory and disk full) or were corrupt in the spool; reported. */
  dropped: number;
  /** Events another process took over (this client's spool lease lapsed); that process delivers them. */
  handedOver: number;
  /** Events waiting: held only in memory, or written ahead to the spool. Those in requests under way included. */
  pending: { memory: number; disk: number };
  /** Spool segments of other processes taken over but not read yet: their events are counted once read. */
  unread: { segments: number; bytes: number };
  /** Events in requests under way. */
  inFlight: number;
  /** Requests the endpoint acknowledged. */
  batches: number;
  /** Requests retried. */
  retries: number;
  /** How delivery is going: `healthy`, `retrying`, `backing-off`, `misconfigured`, or `closed` once `shutdown()` was called (or the process exits). */
  state: SenderState | "closed";
}

/**
 * Batched, retrying, durable delivery of CloudEvents to an OpenMeter-compatible endpoint. A small
 * facade over its parts: serialisation at `enqueue`, a queue (memory, or the write-ahead log in
 * `spoolDir`), a batcher that says when a batch is due, a sender over a retrying transport, and the
 * process's lifecycle hooks. `enqueue` is synchronous and does no network I/O.
 */
export class IngestClient implements EventSink {
  readonly #options: ResolvedIngestOptions;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #transport: Transport;
  readonly #queue: EventQueue;
  readonly #log: DiskLog | undefined;
  readonly #tracker = new FlushTracker();
  readonly #batcher: Batcher;
  readonly #sender: Sender;
  readonly #started: Promise<void>;
  readonly #leaveLifecycle: () => void;
  // Held here: the lifecycle keeps only a weak reference.
  readonly #participant = {
    beforeExit: () => this.#beforeExit(),
    onSignal: () => this.shutdown(),
    onExit: () => this.#onExit(),
  };
  /** `untilDone`: wait through an outage too (shutdown, when events are held only in memory). */
  readonly #flushWaiters = new Set<{ mark: number; untilDone: boolean; resolve: () => void }>();
  #adoptTimer: ClockTimer | undefined;
  #closed = false;
  #shutdown: Promise<void> | undefined;
  #deferred: Map<IngestErrorKind, { what: string; reasons: Set<string>; events: CloudEvent[] }> | undefined;
  readonly #counts = { enqueued: 0, delivered: 0, refused: 0, dropped: 0, batches: 0, retries: 0 };

  constructor(options: IngestOptions) {
    this.#options = parseIngestOptions(options);
    const opts = this.#options;
    this.#clock = opts.clock ?? systemClock;
    const logger = opts.logger ?? consoleLogger;
    // A throwing logger must not break delivery; the key never reaches it.
    this.#logger = {
      warn: (m) => {
        try {
          logger.warn(redact(m, opts.apiKey));
        } catch {}
      },
      error: (m) => {
        try {
          logger.error(redact(m, opts.apiKey));
        } catch {}
      },
    };
    for (const note of urlNotes(opts.url, opts.apiKey)) this.#logger.warn(note);

    this.#transport = new Transport({ url: opts.url, apiKey: opts.apiKey, timeoutMs: opts.timeoutMs, connections: opts.maxConcurrency, clock: this.#clock });
    if (opts.spoolDir !== undefined) {
      this.#log = new DiskLog({
        dir: opts.spoolDir,
        clock: this.#clock,
        leaseMs: opts.spoolLeaseMs,
        maxBytes: opts.maxSpoolBytes,
        segmentBytes: SEGMENT_BYTES,
        fsync: opts.spoolFsync,
        cacheLimit: opts.maxQueueSize,
        epoch: () => this.#tracker.epoch,
        onRecovered: (events, epoch) => this.#tracker.add(epoch, events.length),
        onGone: (count, epoch) => this.#tracker.done(epoch, count),
        onProblem: (problem) => this.#diskProblem(problem),
      });
      this.#queue = this.#log;
      this.#warnIfLowOnDisk(opts.spoolDir, opts.maxSpoolBytes);
      this.#log.onReadable(() => this.#pump());
    } else {
      this.#queue = new MemoryQueue();
    }
    this.#batcher = new Batcher(this.#clock, opts.maxBatchSize, opts.flushIntervalMs, () => this.#pump());
    const retrying = new RetryingTransport(this.#transport, opts.retry, (result) => this.#sender.noteRetry(result));
    this.#sender = new Sender({
      queue: this.#queue,
      transport: retrying,
      batcher: this.#batcher,
      clock: this.#clock,
      maxConcurrency: opts.maxConcurrency,
      maxBatchSize: opts.maxBatchSize,
      backoffMs: opts.retry.maxDelayMs,
      keepOnConfigurationProblem: this.#log !== undefined,
      hooks: {
        delivered: (batch) => {
          this.#counts.delivered += batch.events.length;
          this.#counts.batches++;
          this.#done(batch.events);
        },
        refused: (events) => {
          this.#counts.refused += events.length;
          this.#done(events);
        },
        reportRefused: (events, result) => {
          // Splitting cannot help one event: "lower maxBatchSize" would send the user the wrong way.
          const message =
            result.status === 413 && events.length === 1
              ? `1 event not ingested: alone it is larger (${Buffer.byteLength(events[0]!.json)} bytes) than the endpoint accepts (413); make its \`data\` smaller${result.detail ? `: ${result.detail}` : ""}`
              : `${events.length} event(s) not ingested: ${result.message}`;
          this.#report("rejected", message, parseAll(events), { status: result.status, detail: result.detail });
        },
        afterRequest: () => this.#checkFlushes(),
        misconfigured: (batch, result) => {
          this.#report(
            "rejected",
            `${result.message}; the events wait in ${this.#queue.location} and are sent once this is fixed (one request a minute checks; a restart with the fix sends them at once)`,
            [],
            { status: result.status, detail: result.detail },
          );
        },
        stateChanged: (state, cause) => this.#stateChanged(state, cause),
        retried: () => void this.#counts.retries++,
      },
    });
    this.#leaveLifecycle = joinLifecycle(this.#participant, { signals: opts.handleSignals });
    this.#started = this.#log ? this.#adopt() : Promise.resolve();
  }

  /**
   * Queues events. Synchronous: each event is checked and serialised here (a later change to the
   * object changes nothing), and with `spoolDir` written to the log before this returns. Events that
   * are invalid or cannot be held are reported through `onError`, never thrown. Throws after `shutdown()`.
   */
  enqueue(events: CloudEvent | readonly CloudEvent[]): void {
    this.#enqueue((Array.isArray(events) ? events : [events]) as readonly unknown[], false);
  }

  /**
   * For the metering handler's own events (fresh objects nobody else holds): checked the same way,
   * serialised when first needed instead of here (see `OwnedEvent`). Internal.
   */
  [ENQUEUE_OWNED](events: readonly CloudEvent[]): void {
    this.#enqueue(events, true);
  }

  #enqueue(list: readonly unknown[], owned: boolean): void {
    if (this.#closed) {
      throw new Error("IngestClient was shut down: enqueue() is refused after shutdown(); create a new client to send more events");
    }
    const epoch = this.#tracker.epoch;
    let queued: QueuedEvent[] | undefined;
    for (const event of list) {
      this.#counts.enqueued++;
      const serialized = owned && cloudEventProblems(event).length === 0 ? { ok: true as const, event: new OwnedEvent(event as CloudEvent, epoch) } : serializeEvent(event, epoch);
      if (serialized.ok) (queued ??= []).push(serialized.event);
      else {
        this.#counts.refused++;
        this.#defer("invalid-event", "invalid event(s) not queued", serialized.reason, [event as CloudEvent]);
      }
    }
    if (queued === undefined) return;
    this.#tracker.add(epoch, queued.length);
    // While the endpoint keeps up, a burst is held whole: the events exist already, and dropping them loses revenue.
    const memoryLimit = this.#sender.state === "healthy" ? Number.POSITIVE_INFINITY : this.#options.maxQueueSize;
    const refusal = this.#queue.append(queued, { memoryLimit });
    if (refusal !== undefined) {
      this.#counts.dropped += queued.length;
      this.#tracker.done(epoch, queued.length);
      this.#defer(refusal.kind, "event(s) could not be held", refusal.reason, parseAll(refusal.events));
      return;
    }
    this.#batcher.appended(this.#queue.ready);
  }

  /**
   * Resolves when every event enqueued before the call (and the spool of a previous process, taken
   * over at start) was delivered or refused and reported, or when the endpoint cannot be reached
   * now (retries ran out: the events wait, on disk with `spoolDir`), when `shutdown()` ends (at once
   * when called after it), or after `timeoutMs`. Never rejects.
   */
  async flush(options?: FlushOptions): Promise<void> {
    const deadline = options?.timeoutMs === undefined ? undefined : this.#clock.now() + options.timeoutMs;
    // Nothing is delivered once the client is closed: wait for the (bounded) shutdown to end, no longer.
    if (this.#closed) return this.#within(this.#shutdown ?? Promise.resolve(), deadline);
    await this.#within(this.#started, deadline);
    const mark = this.#tracker.mark();
    this.#batcher.force();
    await this.#within(this.#flushed(mark), deadline);
  }

  /**
   * Delivers what it can within `shutdownTimeoutMs`, then stops: requests still under way are cut off
   * (their events stay queued), timers end, and later `enqueue()` calls throw. What is left is said
   * once: with `spoolDir` it waits on disk for the next process; without, it is reported through
   * `onError` (kind `undelivered`) with the events. Idempotent.
   */
  shutdown(options?: FlushOptions): Promise<void> {
    this.#shutdown ??= this.#doShutdown(options?.timeoutMs ?? this.#options.shutdownTimeoutMs);
    return this.#shutdown;
  }

  /** What the client did; see `IngestStats` for how the counts add up. */
  stats(): IngestStats {
    const pending = this.#queue.pending();
    const unread = this.#log?.unread() ?? { segments: 0, bytes: 0 };
    return {
      ...this.#counts,
      recovered: this.#log?.recovered ?? 0,
      dropped: this.#counts.dropped + (this.#log?.corrupt ?? 0) + (this.#log?.lost ?? 0),
      handedOver: this.#log?.handedOver ?? 0,
      pending,
      unread: { segments: unread.segments, bytes: unread.bytes },
      inFlight: this.#sender.eventsInFlight,
      state: this.#closed ? "closed" : this.#sender.state,
    };
  }

  // --- internals ------------------------------------------------------------------------------

  #pump(): void {
    this.#sender.pump();
    this.#checkFlushes();
  }

  #done(events: readonly QueuedEvent[]): void {
    for (const event of events) this.#tracker.done(event.epoch, 1);
  }

  #flushed(mark: number, untilDone = false): Promise<void> {
    return new Promise((resolve) => {
      const waiter = { mark, untilDone, resolve };
      this.#flushWaiters.add(waiter);
      this.#checkFlushes();
    });
  }

  #checkFlushes(): void {
    if (this.#flushWaiters.size === 0) return;
    const unreachable = this.#sender.unreachable;
    const unreadEpoch = this.#log?.unread().epoch;
    for (const waiter of this.#flushWaiters) {
      if ((unreachable && !waiter.untilDone) || this.#tracker.isDone(waiter.mark, unreadEpoch)) {
        this.#flushWaiters.delete(waiter);
        waiter.resolve();
      }
    }
  }

  /** `promise`, or the deadline (on the injected clock), whichever comes first. */
  async #within(promise: Promise<void>, deadline: number | undefined): Promise<void> {
    if (deadline === undefined) return promise;
    let timer: ClockTimer | undefined;
    const late = new Promise<void>((resolve) => (timer = this.#clock.setTimeout(resolve, Math.max(0, deadline - this.#clock.now()))));
    await Promise.race([promise, late]);
    timer?.clear();
  }

  async #doShutdown(timeoutMs: number): Promise<void> {
    this.#closed = true;
    const deadline = this.#clock.now() + timeoutMs;
    this.#adoptTimer?.clear();
    try {
      await this.#within(this.#started, deadline);
      // Events held only in memory are lost if this gives up: keep trying through an outage until the
      // deadline, and let the sender's waits end early enough for one more probe before it.
      const inMemoryOnly = this.#queue.pending().memory > 0;
      if (inMemoryOnly) this.#sender.resumeBy(deadline - Math.min(this.#options.timeoutMs, timeoutMs / 2));
      const mark = this.#tracker.mark();
      this.#batcher.force();
      const keepAlive = this.#clock.setTimeout(() => {}, Math.max(0, deadline - this.#clock.now()));
      keepAlive.ref(); // the bounded drain is the process's work now
      await this.#within(this.#flushed(mark, inMemoryOnly), deadline);
      keepAlive.clear();
    } finally {
      this.#sender.stop();
      this.#batcher.stop();
      await this.#sender.idle();
      this.#leaveLifecycle();
      this.#sayWhatIsLeft();
      this.#queue.close();
      // Nothing more will be delivered: a flush() still waiting (its events were reported or left on disk) ends too.
      for (const waiter of this.#flushWaiters) waiter.resolve();
      this.#flushWaiters.clear();
      await this.#transport.close();
    }
  }

  #beforeExit(): void {
    if (!this.#options.flushOnExit || this.#closed) return;
    const pending = this.#queue.pending();
    const unread = this.#log?.unread().segments ?? 0;
    if (pending.memory === 0 && pending.disk === 0 && unread === 0) return;
    // With a spool and an endpoint that cannot be reached, the events wait on disk: do not hold the exit.
    if (this.#log !== undefined && this.#sender.state !== "healthy" && this.#sender.state !== "retrying") return;
    void this.shutdown();
  }

  /** process.exit(), an uncaught exception, or the end: synchronous only. */
  #onExit(): void {
    // A shutdown under way ends here too: the process will not wait for it to say what is left.
    this.#closed = true;
    this.#sender.stop();
    this.#sayWhatIsLeft();
    this.#queue.close();
  }

  #leftSaid = false;
  /** Says, once, what is left and where. */
  #sayWhatIsLeft(): void {
    if (this.#leftSaid) return;
    this.#leftSaid = true;
    this.#flushDeferred();
    const pending = this.#queue.pending();
    const inMemory = this.#queue.drainMemory();
    const unread = this.#log?.unread().segments ?? 0;
    if (pending.disk > 0 || unread > 0) {
      const kept = [pending.disk > 0 ? `${pending.disk} event(s) not delivered yet` : "", unread > 0 ? `${unread} spool segment(s) taken over and not read yet` : ""];
      this.#logger.warn(
        `${kept.filter((part) => part !== "").join(" and ")} are kept in ${this.#log!.ownerDir ?? this.#queue.location}: ` +
          `the next process that opens spoolDir ${this.#queue.location} delivers them`,
      );
    }
    if (inMemory.length > 0) {
      this.#counts.dropped += inMemory.length;
      this.#report(
        "undelivered",
        `${inMemory.length} event(s) were not delivered and are lost with this process: ` +
          `${this.#log === undefined ? "set spoolDir to keep them on disk for the next run" : "the spool could not take them"}`,
        parseAll(inMemory),
        {},
        true,
      );
    }
  }

  async #adopt(): Promise<void> {
    await this.#log!.adopt();
    if (this.#closed) return;
    // Dead owners appear later too (another container): look again every lease.
    this.#adoptTimer = this.#clock.setTimeout(() => void this.#adopt(), this.#options.spoolLeaseMs);
    // What it took over is sent once read: the log says so (onReadable), which pumps.
  }

  #stateChanged(state: SenderState, cause: { message: string; status?: number | undefined; retryAfterMs?: number | undefined } | undefined): void {
    const where = this.#log ? `on disk in ${this.#queue.location}` : "in memory";
    // A flapping endpoint changes state often: each kind of warning, for each kind of failure, at most once a minute.
    const now = this.#clock.now();
    const failure = cause && "status" in cause ? String(cause.status ?? "network") : "";
    const due = (kind: string) => {
      const key = `${kind}:${failure}`;
      if (now - (this.#lastWarnings.get(key) ?? Number.NEGATIVE_INFINITY) < STATE_WARNING_INTERVAL_MS) return false;
      this.#lastWarnings.set(key, now);
      return true;
    };
    if (state === "retrying" && due("retrying")) {
      this.#logger.warn(`${cause?.message ?? "delivery is failing"}; retrying (events are kept ${where})`);
    }
    if (state === "backing-off" && cause && due("backing-off")) {
      const retryAfterMs = "retryAfterMs" in cause ? cause.retryAfterMs : undefined;
      this.#logger.warn(
        retryAfterMs !== undefined
          ? `${cause.message}; the server asked to wait ${duration(retryAfterMs)} (Retry-After), and the events wait ${where} until then`
          : `${cause.message}; retries ran out, so one request every ${duration(this.#options.retry.maxDelayMs)} ` +
              `checks whether the endpoint is back (events are kept ${where})`,
      );
    }
    // Flushes are checked after the request that changed the state (its reports are out by then).
  }
  /** When each kind of delivery warning was last given, per kind of failure. */
  readonly #lastWarnings = new Map<string, number>();

  #diskProblem(problem: DiskProblem): void {
    switch (problem.kind) {
      case "corrupt": {
        const ranges = problem.records.slice(0, 5).map((r) => `record ${r.index} (bytes ${r.start}-${r.end}): ${r.reason}`);
        this.#report(
          "corrupt",
          `${problem.records.length} record(s) in ${problem.file} are corrupt and were not sent: ${ranges.join("; ")}${problem.records.length > 5 ? "; …" : ""}`,
          [],
          {},
          true,
        );
        return;
      }
      case "write-failed":
        this.#logger.warn(`could not write the spool in ${this.#queue.location} (${problem.error.message}): events are held in memory until it works again`);
        return;
      case "write-recovered":
        this.#logger.warn(`the spool in ${this.#queue.location} can be written again`);
        return;
      case "lease-lost":
        this.#logger.error(
          `another process took over this client's spool (its lease was not renewed for spoolLeaseMs: was the event loop blocked?); ` +
            `it delivers the ${problem.handedOver} event(s) it holds`,
        );
        return;
      case "directory-removed":
        this.#report(
          "spool-write",
          `the spool directory ${this.#queue.location} was removed while in use: ${problem.heldInMemory} event(s) written before are held in memory only now` +
            `${problem.lost > 0 ? `, and ${problem.lost} that were only on disk are lost` : ""}; later events go to a new directory`,
          [],
          {},
          true,
        );
        return;
      case "adopted":
        if (problem.segments > 0) {
          this.#logger.warn(`delivering ${problem.segments} spool segment(s) (${problem.bytes} bytes) left in ${this.#queue.location} by ${problem.owners.length} earlier process(es)`);
        }
        return;
      case "io":
        this.#logger.warn(`${problem.action} failed: ${problem.error.message}; trying again later`);
        return;
    }
  }

  #warnIfLowOnDisk(dir: string, maxBytes: number): void {
    try {
      const fs = statfsSync(dir);
      const free = fs.bavail * fs.bsize;
      if (free < maxBytes) {
        this.#logger.warn(`spoolDir ${dir} has ${Math.floor(free / 1024 ** 2)} MiB free, less than maxSpoolBytes (${Math.floor(maxBytes / 1024 ** 2)} MiB): an outage may fill it`);
      }
    } catch {
      // statfs is a courtesy; the write-ahead itself reports a full disk.
    }
  }

  /**
   * Refusals inside `enqueue` (LangChain's callback): reported once per turn and kind, all events
   * together, each distinct reason named (up to a few).
   */
  #defer(kind: IngestErrorKind, what: string, reason: string, events: CloudEvent[]): void {
    if (this.#deferred === undefined) {
      this.#deferred = new Map();
      setImmediate(() => this.#flushDeferred());
    }
    const entry = this.#deferred.get(kind) ?? { what, reasons: new Set<string>(), events: [] };
    this.#deferred.set(kind, entry);
    entry.reasons.add(reason);
    entry.events.push(...events);
  }

  #flushDeferred(): void {
    const deferred = this.#deferred;
    this.#deferred = undefined;
    if (deferred === undefined) return;
    for (const [kind, { what, reasons, events }] of deferred) {
      const shown = [...reasons].slice(0, 5);
      const more = reasons.size > shown.length ? `; and ${reasons.size - shown.length} more reason(s)` : "";
      this.#report(kind, `${events.length} ${what}: ${shown.join("; ")}${more}`, events, {}, kind !== "invalid-event");
    }
  }

  /** onError when set, else the logger; `warn` adds a warning too (for events lost for good). */
  #report(
    kind: IngestErrorKind,
    message: string,
    events: CloudEvent[],
    extra: { status?: number | undefined; detail?: string | undefined },
    warn = false,
  ): void {
    const error = new IngestError(redact(message, this.#options.apiKey), {
      kind,
      events,
      status: extra.status,
      detail: extra.detail,
    });
    const onError = this.#options.onError;
    if (onError === undefined) return this.#logger.error(error.message);
    try {
      onError(error);
    } catch (thrown) {
      this.#logger.error(`onError threw: ${String(thrown)}`);
    }
    if (warn) this.#logger.warn(error.message);
  }
}

function duration(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 100) / 10} s`;
}

/** The least time between two warnings about delivery failing. */
const STATE_WARNING_INTERVAL_MS = 60_000;

/** Segments are rotated at this size: small enough that a lost ledger costs little, large enough to be few. */
const SEGMENT_BYTES = 1024 * 1024;

function parseAll(events: readonly QueuedEvent[]): CloudEvent[] {
  return events.map((event) => (event instanceof OwnedEvent ? event.event : (JSON.parse(event.json) as CloudEvent)));
}
