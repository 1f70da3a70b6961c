/** What a subject resolver sees: the run's metadata (parents' merged in) and tags. */
export interface SubjectContext {
  metadata: Readonly<Record<string, unknown>>;
  tags: readonly string[];
  runId: string;
  parentRunId?: string;
}

export type SubjectResolver = (context: SubjectContext) => string | number | undefined | null;

export const MAX_SUBJECT_LENGTH = 256;

export type SubjectCheck = { ok: true; subject: string } | { ok: false; reason: string };

/**
 * Normalises a subject candidate. Numbers are accepted (customer ids often are) as their decimal
 * form; strings are trimmed; control and invisible characters and over-long values are refused, since they would
 * never match a customer's subject key on the billing side.
 */
export function checkSubject(value: unknown): SubjectCheck | undefined {
  if (value === undefined || value === null) return undefined;
  let subject: string;
  if (typeof value === "string") subject = value.trim();
  else if (typeof value === "number" && Number.isFinite(value)) subject = String(value);
  else if (typeof value === "bigint") subject = value.toString();
  else if (typeof value === "number") return { ok: false, reason: `it is ${value}, not a finite number` };
  else return { ok: false, reason: `it is a ${typeof value}, not a string` };
  if (subject === "") return { ok: false, reason: "it is empty" };
  if (subject.length > MAX_SUBJECT_LENGTH) {
    return { ok: false, reason: `it is longer than ${MAX_SUBJECT_LENGTH} characters` };
  }
  // Controls (C0, DEL, C1) and invisible format characters (zero-width, bidi overrides, soft hyphen):
  // a subject holding one looks right in every log yet matches no customer's subject key.
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f\p{Cf}]/u.test(subject)) return { ok: false, reason: "it contains control or invisible characters" };
  return { ok: true, subject };
}
