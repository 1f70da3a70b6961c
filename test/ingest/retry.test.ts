import { describe, expect, it } from "vitest";
import { backoffDelay, MAX_RETRY_AFTER_MS, parseRetryAfter, retryDelay } from "../../src/ingest/retry";

const retry = { retries: 10, minDelayMs: 200, maxDelayMs: 30_000 };

describe("Retry-After", () => {
  const now = Date.parse("2026-05-05T15:26:47.000Z");
  it("reads delta-seconds", () => {
    expect(parseRetryAfter("3", 30_000, now)).toBe(3000);
    expect(parseRetryAfter(" 0 ", 30_000, now)).toBe(0);
  });
  it("reads an HTTP date", () => {
    expect(parseRetryAfter("Tue, 05 May 2026 15:26:52 GMT", 30_000, now)).toBe(5000);
  });
  it("treats a date in the past as now", () => {
    expect(parseRetryAfter("Tue, 05 May 2026 15:00:00 GMT", 30_000, now)).toBe(0);
  });
  it("caps at the maximum delay, five minutes unless told otherwise", () => {
    expect(parseRetryAfter("3600", 30_000, now)).toBe(30_000);
    expect(parseRetryAfter("Wed, 06 May 2026 15:26:47 GMT", 30_000, now)).toBe(30_000);
    expect(parseRetryAfter("3600", undefined, now)).toBe(MAX_RETRY_AFTER_MS);
    expect(MAX_RETRY_AFTER_MS).toBe(300_000);
  });
  it("ignores what it cannot read", () => {
    expect(parseRetryAfter(undefined, 30_000, now)).toBeUndefined();
    expect(parseRetryAfter("", 30_000, now)).toBeUndefined();
    expect(parseRetryAfter("soon", 30_000, now)).toBeUndefined();
    expect(parseRetryAfter("-5", 30_000, now)).toBeUndefined();
  });
});

describe("backoff", () => {
  it("grows exponentially within [half, full] of the step, capped", () => {
    expect(backoffDelay(1, retry, () => 0)).toBe(100);
    expect(backoffDelay(1, retry, () => 1)).toBe(200);
    expect(backoffDelay(3, retry, () => 1)).toBe(800);
    expect(backoffDelay(30, retry, () => 1)).toBe(30_000);
    expect(backoffDelay(30, retry, () => 0)).toBe(15_000);
  });
  it("prefers Retry-After, even beyond maxDelayMs (which bounds only the backoff)", () => {
    expect(retryDelay(1, retry, 5000)).toBe(5000);
    expect(retryDelay(1, { ...retry, maxDelayMs: 1000 }, 120_000)).toBe(120_000);
    expect(retryDelay(1, { ...retry, maxDelayMs: 1000 }, undefined)).toBeLessThanOrEqual(200);
  });
});
