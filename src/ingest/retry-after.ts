/**
 * The longest a server's Retry-After is waited out. The server's word beats our backoff (retrying
 * sooner only spends attempts), but one misconfigured header must not park delivery for hours.
 */
export const MAX_RETRY_AFTER_MS = 5 * 60_000;

/**
 * Retry-After as milliseconds to wait, from delta-seconds or an HTTP date, capped at
 * `MAX_RETRY_AFTER_MS`. Undefined when absent or unreadable, so the normal backoff applies.
 */
export function parseRetryAfter(value: string | string[] | undefined, wallNow: number): number | undefined {
  const raw = Array.isArray(value) ? value[0] : value;
  if (raw === undefined) return undefined;
  const text = raw.trim();
  let ms: number;
  if (/^\d+$/.test(text)) {
    ms = Number(text) * 1000;
  } else {
    // An HTTP date always names the day and month; Date.parse alone would take "-5" as a year.
    if (!/[a-z]{3}/i.test(text)) return undefined;
    const at = Date.parse(text);
    if (Number.isNaN(at)) return undefined;
    ms = at - wallNow;
  }
  return Math.min(Math.max(0, ms), MAX_RETRY_AFTER_MS);
}
