/**
 * Event validation as OpenMeter's ingest endpoints do it (v1 and v3 event schemas), returning every
 * problem found rather than throwing, so the server can name the event index and attribute.
 */

/** One problem with one event. `field` is the attribute name (or "" for the event as a whole). */
export interface EventIssue {
  index: number;
  field: string;
  reason: string;
  rule: "required" | "type" | "min_length" | "format" | "enum" | "unknown_attribute";
}

const REQUIRED = ["id", "source", "specversion", "type", "subject"] as const;
const OPTIONAL = ["time", "data", "datacontenttype", "dataschema"] as const;
const KNOWN = new Set<string>([...REQUIRED, ...OPTIONAL]);
/** CloudEvents 1.0: extension attribute names are lower-case ASCII letters and digits. */
const EXTENSION_NAME = /^[a-z0-9]+$/;
const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|([+-])(\d{2}):(\d{2}))$/;

/** True for an RFC 3339 date-time with a valid calendar date, clock time and offset. */
export function isRfc3339(value: string): boolean {
  const m = RFC3339.exec(value);
  if (!m) return false;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  if (month < 1 || month > 12 || day < 1) return false;
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (day > daysInMonth) return false;
  // 60 allows a leap second, as RFC 3339 does.
  if (hour > 23 || minute > 59 || second > 60) return false;
  if (m[9] !== undefined && (Number(m[10]) > 23 || Number(m[11]) > 59)) return false;
  return true;
}

function isAbsoluteUri(value: string): boolean {
  try {
    new URL(value);
    return true;
  } catch {
    return false;
  }
}

/**
 * Checks one event. `strict` (v3) rejects attributes outside the CloudEvents set OpenMeter models
 * (`additionalProperties: false`); otherwise (v1) they are CloudEvents extensions, which must have
 * lower-case alphanumeric names and string, number or boolean values.
 */
export function validateEvent(event: unknown, index: number, strict: boolean): EventIssue[] {
  const issues: EventIssue[] = [];
  const issue = (field: string, rule: EventIssue["rule"], reason: string) =>
    issues.push({ index, field, rule, reason });

  if (typeof event !== "object" || event === null || Array.isArray(event)) {
    issue("", "type", "must be a JSON object");
    return issues;
  }
  const e = event as Record<string, unknown>;

  for (const name of REQUIRED) {
    const value = e[name];
    if (value === undefined || value === null) issue(name, "required", "is required");
    else if (typeof value !== "string") issue(name, "type", "must be a string");
    else if (value.length === 0) issue(name, "min_length", "must not be empty");
  }
  if (typeof e.specversion === "string" && e.specversion !== "" && e.specversion !== "1.0") {
    issue("specversion", "enum", `must be "1.0" (got ${JSON.stringify(e.specversion)})`);
  }

  const time = e.time;
  if (time !== undefined && time !== null) {
    if (typeof time !== "string") issue("time", "type", "must be an RFC 3339 date-time string");
    else if (!isRfc3339(time)) issue("time", "format", `must be an RFC 3339 date-time (got ${JSON.stringify(time)})`);
  }

  const data = e.data;
  if (data !== undefined && data !== null && (typeof data !== "object" || Array.isArray(data))) {
    issue("data", "type", "must be a JSON object");
  }

  const dct = e.datacontenttype;
  if (dct !== undefined && dct !== null && dct !== "application/json") {
    issue("datacontenttype", "enum", `must be "application/json" (got ${JSON.stringify(dct)})`);
  }

  const schema = e.dataschema;
  if (schema !== undefined && schema !== null) {
    if (typeof schema !== "string" || !isAbsoluteUri(schema)) issue("dataschema", "format", "must be a URI");
  }

  for (const [name, value] of Object.entries(e)) {
    if (KNOWN.has(name)) continue;
    if (strict) {
      issue(name, "unknown_attribute", "is not an allowed attribute (put extra values inside `data`)");
    } else if (!EXTENSION_NAME.test(name)) {
      issue(name, "format", "is not a valid CloudEvents extension name (lower-case letters and digits only)");
    } else if (value !== null && !["string", "number", "boolean"].includes(typeof value)) {
      issue(name, "type", "extension attributes must be a string, number or boolean");
    }
  }
  return issues;
}

/** `[1].subject: must not be empty` — the form used in problem details. */
export function describeIssue(issue: EventIssue): string {
  return `event[${issue.index}]${issue.field ? `.${issue.field}` : ""}: ${issue.reason}`;
}
