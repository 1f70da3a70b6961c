/**
 * Fault injection. Two kinds:
 * - the fake's own, outside OpenMeter's behaviour: scripted answers (`failNext`), modes (`hang`, `reset`,
 *   `down`) and timed outages, all on the server's clock;
 * - OpenMeter's own failure mode: a collector error in the middle of a batch (`failAfter`). The ingest
 *   service forwards events one at a time and returns at the first error (`openmeter/ingest/service.go`
 *   `IngestEvents`), so the events before it are in Kafka and will be stored, and the request is answered
 *   500 (`pkg/framework/transport/httptransport/handler.go` `encodeError`: an error no encoder claims is
 *   "internal server error", and `pkg/models/problem.go` drops the detail of a 500).
 */
import type { Clock, ClockTimer } from "../clock";
import type { ForwardFailure, OpenMeterServerMode, ScriptedResponse } from "./types";

export interface PendingForwardFailure {
  /** Index in the batch of the event whose forward fails (events before it are forwarded). */
  afterEvents: number;
  status: number;
}

export class Faults {
  readonly #clock: Clock;
  readonly #scripts: ScriptedResponse[] = [];
  readonly #forwardFailures: PendingForwardFailure[] = [];
  #mode: OpenMeterServerMode = "ok";
  #outageTimer: ClockTimer | undefined;
  #outageDone: (() => void) | undefined;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  get mode(): OpenMeterServerMode {
    return this.#mode;
  }

  get queuedScripts(): number {
    return this.#scripts.length;
  }

  get queuedForwardFailures(): number {
    return this.#forwardFailures.length;
  }

  failNext(count: number, response: ScriptedResponse): void {
    if (!Number.isInteger(count) || count < 0) throw new RangeError(`failNext: count must be a non-negative integer, got ${count}`);
    if (!Number.isInteger(response.status) || response.status < 100 || response.status > 599) {
      throw new RangeError(`failNext: status must be an HTTP status code, got ${response.status}`);
    }
    for (let i = 0; i < count; i++) this.#scripts.push(response);
  }

  takeScript(): ScriptedResponse | undefined {
    return this.#scripts.shift();
  }

  failAfter(events: number, failure: ForwardFailure = {}): void {
    if (!Number.isInteger(events) || events < 0) throw new RangeError(`failAfter: events must be a non-negative integer, got ${events}`);
    const status = failure.status ?? 500;
    if (!Number.isInteger(status) || status < 100 || status > 599) throw new RangeError(`failAfter: status must be an HTTP status code, got ${status}`);
    const times = failure.times ?? 1;
    if (!Number.isInteger(times) || times < 1) throw new RangeError(`failAfter: times must be a positive integer, got ${times}`);
    for (let i = 0; i < times; i++) this.#forwardFailures.push({ afterEvents: events, status });
  }

  /** The failure for a batch of `size` events, consumed only when it falls inside the batch. */
  takeForwardFailure(size: number): PendingForwardFailure | undefined {
    const next = this.#forwardFailures[0];
    if (next === undefined || next.afterEvents >= size) return undefined;
    return this.#forwardFailures.shift();
  }

  setMode(mode: OpenMeterServerMode): void {
    if (!["ok", "hang", "reset", "down"].includes(mode)) throw new TypeError(`setMode: unknown mode ${JSON.stringify(mode)}`);
    this.#endOutage();
    this.#mode = mode;
  }

  /** `down` for `ms` of the clock, then `ok`. Resolves when the server is back (or reset/closed). */
  outage(ms: number): Promise<void> {
    if (!(ms >= 0)) throw new RangeError(`outage: ms must be >= 0, got ${ms}`);
    this.setMode("down");
    return new Promise((resolve) => {
      this.#outageDone = resolve;
      this.#outageTimer = this.#clock.setTimeout(() => {
        this.#mode = "ok";
        this.#endOutage();
      }, ms);
    });
  }

  clear(): void {
    this.#scripts.length = 0;
    this.#forwardFailures.length = 0;
    this.setMode("ok");
  }

  close(): void {
    this.#endOutage();
  }

  #endOutage(): void {
    this.#outageTimer?.clear();
    this.#outageTimer = undefined;
    const done = this.#outageDone;
    this.#outageDone = undefined;
    done?.();
  }
}
