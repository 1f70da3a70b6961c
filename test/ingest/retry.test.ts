import { describe, expect, it } from "vitest";
import { MAX_RETRY_AFTER_MS, parseRetryAfter } from "../../src/ingest/retry-after";
import { RetryingTransport } from "../../src/ingest/retrying-transport";
import type { AttemptResult, Transport } from "../../src/ingest/transport";

describe("parseRetryAfter", () => {
  const now = Date.parse("2026-05-05T15:26:47.000Z");
  it("reads delta-seconds", () => {
    expect(parseRetryAfter("3", now)).toBe(3000);
    expect(parseRetryAfter(" 0 ", now)).toBe(0);
  });
  it("reads an HTTP date against the wall time it is given", () => {
    expect(parseRetryAfter("Tue, 05 May 2026 15:26:52 GMT", now)).toBe(5000);
    expect(parseRetryAfter("Tue, 05 May 2026 15:26:52 GMT", now + 2000)).toBe(3000);
  });
  it("treats a date in the past as now", () => {
    expect(parseRetryAfter("Tue, 05 May 2026 15:00:00 GMT", now)).toBe(0);
  });
  it("caps at five minutes, for delta-seconds and dates", () => {
    expect(MAX_RETRY_AFTER_MS).toBe(5 * 60_000);
    expect(parseRetryAfter("3600", now)).toBe(300_000);
    expect(parseRetryAfter("300", now)).toBe(300_000);
    expect(parseRetryAfter("299", now)).toBe(299_000);
    expect(parseRetryAfter("Wed, 06 May 2026 15:26:47 GMT", now)).toBe(300_000);
  });
  it("takes the first of repeated headers", () => {
    expect(parseRetryAfter(["2", "9"], now)).toBe(2000);
  });
  it("ignores what it cannot read, so the normal backoff applies", () => {
    // An ISO 8601 time is not an HTTP date (RFC 9110 §10.2.3), though Date.parse reads it.
    for (const value of [undefined, "", "   ", "soon", "-5", "1.5", "5s", "2026-05-05T15:26:52Z"]) {
      expect(parseRetryAfter(value, now)).toBeUndefined();
    }
    expect(parseRetryAfter([], now)).toBeUndefined();
  });
});

type Retryable = Extract<AttemptResult, { kind: "retryable" }>;
const retryable = (status: number | undefined, retryAfterMs?: number): Retryable => ({
  kind: "retryable",
  status,
  detail: undefined,
  message: `answered ${status}`,
  retryAfterMs,
});
const refused: AttemptResult = { kind: "refused", status: 400, detail: "bad", message: "answered 400", configuration: false };
const delivered: AttemptResult = { kind: "delivered", status: 204 };

/** A transport that answers each attempt with the next scripted result (the last one repeats), recording the signals it got. */
function scripted(...results: Array<AttemptResult | (() => never)>) {
  const attempts: AbortSignal[] = [];
  const transport = {
    async send(_body: string, signal?: AbortSignal): Promise<AttemptResult> {
      attempts.push(signal!);
      const next = results[Math.min(attempts.length - 1, results.length - 1)]!;
      return typeof next === "function" ? next() : next;
    },
  } as unknown as Transport;
  return { transport, attempts };
}

// Real p-retry delays of a millisecond: the retry loop itself is what is tested here.
const policy = { retries: 3, minDelayMs: 1, maxDelayMs: 1 };

describe("RetryingTransport", () => {
  it("returns a success at once, after one attempt", async () => {
    const { transport, attempts } = scripted(delivered);
    const retried: Retryable[] = [];
    expect(await new RetryingTransport(transport, policy, (r) => retried.push(r)).send("[]", new AbortController().signal)).toEqual(delivered);
    expect(attempts).toHaveLength(1);
    expect(retried).toEqual([]);
  });

  it("retries retryable answers and returns the success that follows", async () => {
    const { transport, attempts } = scripted(retryable(503), retryable(undefined), delivered);
    const retried: Retryable[] = [];
    expect(await new RetryingTransport(transport, policy, (r) => retried.push(r)).send("[]", new AbortController().signal)).toEqual(delivered);
    expect(attempts).toHaveLength(3);
    expect(retried.map((r) => r.status)).toEqual([503, undefined]);
  });

  it("after `retries` retries, returns the last answer; onRetry is called once per retry, not after the last attempt", async () => {
    const { transport, attempts } = scripted(retryable(500), retryable(502), retryable(503));
    const retried: Retryable[] = [];
    const result = await new RetryingTransport(transport, policy, (r) => retried.push(r)).send("[]", new AbortController().signal);
    expect(attempts).toHaveLength(4);
    expect(result).toEqual(retryable(503));
    expect(retried.map((r) => r.status)).toEqual([500, 502, 503]);
  });

  it("a `retries` argument overrides the policy: 0 is a single attempt (the probe after a backoff)", async () => {
    const { transport, attempts } = scripted(retryable(503));
    const retried: Retryable[] = [];
    expect(await new RetryingTransport(transport, policy, (r) => retried.push(r)).send("[]", new AbortController().signal, 0)).toEqual(retryable(503));
    expect(attempts).toHaveLength(1);
    expect(retried).toEqual([]);
  });

  it("a refusal is returned at once: retrying cannot change it", async () => {
    const { transport, attempts } = scripted(retryable(503), refused, delivered);
    expect(await new RetryingTransport(transport, policy).send("[]", new AbortController().signal)).toEqual(refused);
    expect(attempts).toHaveLength(2);
  });

  it("an answer with Retry-After goes back to the caller at once, not retried here and not counted as a retry", async () => {
    const { transport, attempts } = scripted(retryable(429, 120_000), delivered);
    const retried: Retryable[] = [];
    expect(await new RetryingTransport(transport, policy, (r) => retried.push(r)).send("[]", new AbortController().signal)).toEqual(retryable(429, 120_000));
    expect(attempts).toHaveLength(1);
    expect(retried).toEqual([]);
  });

  it("an abort during the wait between attempts ends it at once with `aborted`, without another attempt", async () => {
    const { transport, attempts } = scripted(retryable(503));
    const controller = new AbortController();
    // A minute between attempts: only the abort can end this quickly.
    const sending = new RetryingTransport(transport, { retries: 3, minDelayMs: 60_000, maxDelayMs: 60_000 }, () => controller.abort()).send("[]", controller.signal);
    const started = performance.now();
    expect(await sending).toEqual({ kind: "aborted" });
    expect(performance.now() - started).toBeLessThan(1000);
    expect(attempts).toHaveLength(1);
  });

  it("hands its signal to every attempt, so an abort also ends the request under way", async () => {
    const { transport, attempts } = scripted(retryable(503), delivered);
    const controller = new AbortController();
    await new RetryingTransport(transport, policy).send("[]", controller.signal);
    expect(attempts).toHaveLength(2);
    for (const signal of attempts) expect(signal).toBe(controller.signal);
  });

  it("a transport that throws (a bug) keeps the events: the result is retryable, not a refusal", async () => {
    const { transport, attempts } = scripted(() => {
      throw new Error("boom");
    });
    const result = await new RetryingTransport(transport, policy).send("[]", new AbortController().signal);
    expect(result).toMatchObject({ kind: "retryable", message: "unexpected error: Error: boom" });
    expect(attempts).toHaveLength(1);
  });
});
