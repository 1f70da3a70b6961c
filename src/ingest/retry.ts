import type { RetryOptions } from "./options";

/**
 * The longest a server's Retry-After is waited out. The server's word beats our backoff (retrying
 * sooner only spends attempts), but one misconfigured header must not park delivery for hours.
 */
export const MAX_RETRY_AFTER_MS = 5 * 60_000;

/**
 * Retry-After as milliseconds to wait, from delta-seconds or an HTTP date, capped at `maxMs`.
 * Undefined when absent or unreadable, so the normal backoff applies.
 */
export function parseRetryAfter(value: string | string[] | undefined, maxMs = MAX_RETRY_AFTER_MS, now = Date.now()): number | undefined {
  const raw = Array.isArray(value) ? value[0] : value;
  if (raw === undefined) return undefined;
  const text = raw.trim();
  if (text === "") return undefined;
  let ms: number;
  if (/^\d+$/.test(text)) {
    ms = Number(text) * 1000;
  } else {
    // An HTTP date always names the day and month; Date.parse alone would take "-5" as a year.
    if (!/[a-z]{3}/i.test(text)) return undefined;
    const at = Date.parse(text);
    if (Number.isNaN(at)) return undefined;
    ms = at - now;
  }
  return Math.min(Math.max(0, ms), maxMs);
}

/**
 * Exponential backoff with "equal jitter" (half fixed, half random), so many clients recovering from
 * the same outage do not retry in lock-step, yet no retry comes immediately.
 * `attempt` is 1 for the wait after the first failure.
 */
export function backoffDelay(attempt: number, retry: RetryOptions, random = Math.random): number {
  const exp = Math.min(retry.maxDelayMs, retry.minDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp / 2 + (random() * exp) / 2);
}

/**
 * The wait before the next attempt: the server's Retry-After when it gave one (already capped at
 * MAX_RETRY_AFTER_MS, and not at `maxDelayMs`, which bounds only our own backoff), else the backoff.
 */
export function retryDelay(attempt: number, retry: RetryOptions, retryAfterMs: number | undefined): number {
  return retryAfterMs ?? backoffDelay(attempt, retry);
}
