/**
 * Meters as OpenMeter defines, validates, parses and queries them (openmeterio/openmeter at 7e57a394):
 * - definition rules: `openmeter/meter/meter.go` `Validate`, `validateMeterAggregation`,
 *   `validateMeterGroupBy`; slugs as the v1 API's `meterIdOrSlug` pattern (`api/openapi.yaml`);
 * - per-event validation, shown as an event's validation error in the events list:
 *   `openmeter/meter/parse.go` `ParseEvent` (with `openmeter/meterevent/adapter/event.go`
 *   `validateEvents`): a missing, null or unparsable value property is an error; numeric strings
 *   count (`strconv.ParseFloat`); a missing group-by key is "";
 * - the query: `openmeter/streaming/clickhouse/meter_query.go` `toSQL`: rows of the meter's event type
 *   only; the value is `toFloat64OrNull(JSON_VALUE(data, path))`, so an invalid value counts as nothing
 *   (NULL), and a group whose values are all NULL is no row (`scanRows` skips `!value.Valid`); group-by
 *   values are `JSON_VALUE` strings ("" when missing); `time >= from` and `time < to` in whole seconds
 *   (the API description calls `to` inclusive; the SQL is exclusive); without a window the row spans
 *   `from`/`to` when given (`connector.go` `QueryMeter`), else the minutes of the first and last event.
 *
 * Where ClickHouse and Go could differ on an exotic numeric string ("0x1p-2", " 12"), the fake follows
 * Go's `ParseEvent` for both the errors and the query: not confirmed against ClickHouse.
 */

export type MeterAggregation = "SUM" | "COUNT" | "AVG" | "MIN" | "MAX" | "UNIQUE_COUNT" | "LATEST";
export type WindowSize = "MINUTE" | "HOUR" | "DAY" | "MONTH";

/** A meter, as `POST /api/v1/meters` or the server config's `meters:` takes it. */
export interface MeterDefinition {
  /** Meter key: lower-case letters, digits and single underscores (`^[a-z0-9]+(?:_[a-z0-9]+)*$`). */
  slug: string;
  /** CloudEvents `type` the meter reads; events of any other type are not metered. */
  eventType: string;
  aggregation: MeterAggregation;
  /** JSONPath of the value in `data`, e.g. `$.tokens`; required unless `COUNT`, not allowed with it. */
  valueProperty?: string;
  /** Dimension name → JSONPath in `data`, e.g. `{ model: "$.model" }`. */
  groupBy?: Record<string, string>;
  /** Ignore events before this time (`eventFrom`). */
  eventFrom?: Date | string;
}

/**
 * The LLM tokens meter this library's events are made for: type `kong.llm_request`, SUM of
 * `$.tokens`, grouped by `type`, `model` and `provider` (Kong Konnect's "LLM Tokens" meter template filters on
 * that type; DESIGN.md).
 */
export const LLM_TOKENS_METER: MeterDefinition = Object.freeze({
  slug: "llm_tokens",
  eventType: "kong.llm_request",
  aggregation: "SUM",
  valueProperty: "$.tokens",
  groupBy: Object.freeze({ type: "$.type", model: "$.model", provider: "$.provider" }),
}) as MeterDefinition;

const SLUG = /^[a-z0-9]+(?:_[a-z0-9]+)*$/;
const GROUP_BY_KEY = /^[a-zA-Z_][0-9a-zA-Z_]*$/;
const AGGREGATIONS: readonly MeterAggregation[] = ["SUM", "COUNT", "AVG", "MIN", "MAX", "UNIQUE_COUNT", "LATEST"];

/** A stored row the meter reads (the subset of `StoredEvent` it needs). */
export interface MeterRow {
  type: string;
  subject: string;
  timeSeconds: number;
  data: unknown;
}

/** What `ParseEvent` found wrong with one event for one meter. */
export interface MeterError<Row extends MeterRow = MeterRow> {
  meter: string;
  event: Row;
  /** OpenMeter's message, e.g. `invalid event: missing value property: "$.tokens"`. */
  error: string;
}

export interface MeterQueryParams {
  /** Inclusive start (whole seconds). */
  from?: Date | string;
  /** Exclusive end (whole seconds). */
  to?: Date | string;
  windowSize?: WindowSize;
  /** Only `"UTC"` in the fake. @default "UTC" */
  windowTimeZone?: string;
  /** Filter by subjects; also groups by subject (`toQueryParamsFromRequest`). */
  subject?: readonly string[];
  /** Dimensions to group by: meter group-by keys or `subject`. */
  groupBy?: readonly string[];
  /** Exact-match filters on group-by keys (`filterGroupBy`; several values mean any of them). */
  filterGroupBy?: Record<string, string | readonly string[]>;
  /** @internal Subjects of the customers a `filterCustomerId` resolved to. */
  filterSubjectsOfCustomers?: readonly string[];
}

export interface MeterQueryRow {
  value: number;
  windowStart: string;
  windowEnd: string;
  /** The subject when grouped by subject, else null. */
  subject: string | null;
  groupBy: Record<string, string | null>;
}

export interface MeterQueryResult {
  from?: string;
  to?: string;
  windowSize?: WindowSize;
  data: MeterQueryRow[];
}

/** A validation problem in a definition or a query: the HTTP layer answers 400. */
export class MeterValidationError extends Error {}

// ---------------------------------------------------------------------------------------------------
// JSONPath: `$`, `.key`, `['key']` / `["key"]`, `[n]` — what oliveagle/jsonpath and ClickHouse's JSON_VALUE
// both read. Anything else is refused at definition time (the fake's limit, not OpenMeter's).

type PathStep = { key: string } | { index: number };

export function compileJsonPath(path: string): PathStep[] {
  if (!path.startsWith("$")) throw new MeterValidationError(`JSONPath ${JSON.stringify(path)} must start with $`);
  const steps: PathStep[] = [];
  let rest = path.slice(1);
  while (rest !== "") {
    let m: RegExpExecArray | null;
    if ((m = /^\.([^.[\]]+)/.exec(rest))) steps.push({ key: m[1]! });
    else if ((m = /^\[(\d+)\]/.exec(rest))) steps.push({ index: Number(m[1]) });
    else if ((m = /^\['([^']*)'\]/.exec(rest)) || (m = /^\["([^"]*)"\]/.exec(rest))) steps.push({ key: m[1]! });
    else throw new MeterValidationError(`JSONPath ${JSON.stringify(path)}: the fake reads only $.key, ['key'] and [n] steps`);
    rest = rest.slice(m[0].length);
  }
  return steps;
}

function lookup(data: unknown, steps: readonly PathStep[]): { found: boolean; value: unknown } {
  let current = data;
  for (const step of steps) {
    if ("key" in step) {
      if (typeof current !== "object" || current === null || Array.isArray(current) || !(step.key in current)) {
        return { found: false, value: undefined };
      }
      current = (current as Record<string, unknown>)[step.key];
    } else {
      if (!Array.isArray(current) || step.index >= current.length) return { found: false, value: undefined };
      current = current[step.index];
    }
  }
  return { found: true, value: current };
}

/** ClickHouse `JSON_VALUE`: a scalar as text, "" when missing or not a scalar, "null" for null. */
function jsonValue(data: unknown, steps: readonly PathStep[]): string {
  const { found, value } = lookup(data, steps);
  if (!found) return "";
  if (value === null) return "null";
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return "";
}

/**
 * Go `strconv.ParseFloat(s, 64)`: decimal and hexadecimal (with a `p` exponent) forms, `inf`, `infinity`,
 * `nan`; out of range is an error. `undefined` when it fails.
 */
export function goParseFloat(s: string): number | undefined {
  if (/^[+-]?(inf|infinity)$/i.test(s)) return s.startsWith("-") ? -Infinity : Infinity;
  if (/^[+-]?nan$/i.test(s)) return NaN;
  if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) {
    const n = Number(s);
    return Number.isFinite(n) ? n : undefined; // ErrRange
  }
  const hex = /^([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?[pP]([+-]?\d+)$/.exec(s);
  if (hex && (hex[2]! + (hex[3] ?? "")).length > 0) {
    const mantissa = parseInt(hex[2]! || "0", 16) + (hex[3] ? parseInt(hex[3], 16) / 16 ** hex[3].length : 0);
    const n = mantissa * 2 ** Number(hex[4]) * (hex[1] === "-" ? -1 : 1);
    return Number.isFinite(n) ? n : undefined;
  }
  return undefined;
}

/** Go's `fmt.Sprintf("%v", x)` for a decoded JSON value (group-by values in `ParseEvent`). */
function goSprintV(value: unknown): string {
  if (value === null || value === undefined) return "<nil>";
  if (typeof value === "string") return value;
  if (typeof value === "boolean") return String(value);
  if (typeof value === "number") return goFormatG(value);
  return JSON.stringify(value);
}

/** strconv.FormatFloat(f, 'g', -1, 64): %e when the exponent is < -4 or >= 6 (shortest form: Go src/strconv/ftoa.go). */
function goFormatG(value: number): string {
  if (value === 0) return Object.is(value, -0) ? "-0" : "0";
  const [mantissa, e] = value.toExponential().split("e") as [string, string];
  const exp = Number(e);
  if (exp < -4 || exp >= 6) return `${mantissa}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  return String(value);
}

// ---------------------------------------------------------------------------------------------------

/** A meter the fake keeps: its definition, compiled paths and queries over stored rows. */
export class Meter {
  readonly slug: string;
  readonly eventType: string;
  readonly aggregation: MeterAggregation;
  readonly valueProperty: string | undefined;
  readonly groupBy: Readonly<Record<string, string>>;
  readonly eventFromSeconds: number | undefined;
  readonly #valueSteps: PathStep[] | undefined;
  readonly #groupSteps: Map<string, PathStep[]>;

  constructor(definition: MeterDefinition) {
    validateMeterDefinition(definition);
    this.slug = definition.slug;
    this.eventType = definition.eventType;
    this.aggregation = definition.aggregation;
    this.valueProperty = definition.valueProperty;
    this.groupBy = Object.freeze({ ...(definition.groupBy ?? {}) });
    this.eventFromSeconds = definition.eventFrom === undefined ? undefined : Math.floor(toMs(definition.eventFrom, "eventFrom") / 1000);
    this.#valueSteps = definition.valueProperty === undefined ? undefined : compileJsonPath(definition.valueProperty);
    this.#groupSteps = new Map(Object.entries(this.groupBy).map(([key, path]) => [key, compileJsonPath(path)]));
  }

  /** The definition, as given. */
  get definition(): MeterDefinition {
    return {
      slug: this.slug,
      eventType: this.eventType,
      aggregation: this.aggregation,
      ...(this.valueProperty !== undefined ? { valueProperty: this.valueProperty } : {}),
      groupBy: { ...this.groupBy },
    };
  }

  /** `ParseEvent`: the error OpenMeter shows for this event, or undefined when it is valid. */
  parseError(data: unknown): string | undefined {
    if (this.aggregation === "COUNT") return undefined;
    if (data === undefined || data === null) return "invalid event: null and missing value property";
    const { found, value } = lookup(data, this.#valueSteps ?? []);
    if (!found) return `invalid event: missing value property: ${JSON.stringify(this.valueProperty)}`;
    if (value === null) return "invalid event: value cannot be null";
    if (this.aggregation === "UNIQUE_COUNT") return undefined;
    if (typeof value === "string") {
      const n = goParseFloat(value);
      if (n === undefined) return `invalid event: value cannot be parsed as float64: ${value}`;
      if (Number.isNaN(n)) return "invalid event: value cannot be NaN";
      if (!Number.isFinite(n)) return "invalid event: value cannot be infinity";
      return undefined;
    }
    if (typeof value === "number") return undefined;
    return `invalid event: unsupported value property type: ${goTypeName(value)}`;
  }

  /** `ParseEvent`'s group-by values (Go `%v`): "" for a missing key, "<nil>" for null. */
  parsedGroupBy(data: unknown): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [key, steps] of this.#groupSteps) {
      const { found, value } = lookup(data, steps);
      out[key] = found ? goSprintV(value) : "";
    }
    return out;
  }

  /** The numeric value the query aggregates, or undefined (NULL). */
  valueOf(data: unknown): number | undefined {
    if (this.parseError(data) !== undefined) return undefined;
    const { value } = lookup(data, this.#valueSteps ?? []);
    return typeof value === "number" ? value : goParseFloat(String(value));
  }

  /** Whether a stored row is one this meter reads. */
  reads(row: MeterRow): boolean {
    return row.type === this.eventType && (this.eventFromSeconds === undefined || row.timeSeconds >= this.eventFromSeconds);
  }

  /** OpenMeter's meter query over `rows`. */
  query(rows: readonly MeterRow[], params: MeterQueryParams = {}): MeterQueryResult {
    const fromMs = params.from === undefined ? undefined : toMs(params.from, "from");
    const toMsValue = params.to === undefined ? undefined : toMs(params.to, "to");
    if (fromMs !== undefined && toMsValue !== undefined) {
      if (fromMs === toMsValue) throw new MeterValidationError("from and to cannot be equal");
      if (fromMs > toMsValue) throw new MeterValidationError("from must be before to");
    }
    if (params.windowTimeZone !== undefined && params.windowTimeZone !== "UTC") {
      throw new MeterValidationError(`windowTimeZone ${JSON.stringify(params.windowTimeZone)}: the fake supports UTC only`);
    }
    if (params.windowSize !== undefined && !["MINUTE", "HOUR", "DAY", "MONTH"].includes(params.windowSize)) {
      throw new MeterValidationError(`invalid window size: ${String(params.windowSize)}`);
    }
    const groupBy: string[] = [];
    for (const key of params.groupBy ?? []) {
      if (key !== "subject" && this.groupBy[key] === undefined) throw new MeterValidationError(`invalid group by: ${key}`);
      if (!groupBy.includes(key)) groupBy.push(key);
    }
    const subjects = params.subject ?? [];
    if (subjects.length > 0 && !groupBy.includes("subject")) groupBy.push("subject");
    const filters: Array<[PathStep[], readonly string[]]> = [];
    for (const [key, values] of Object.entries(params.filterGroupBy ?? {})) {
      const steps = this.#groupSteps.get(key);
      if (!steps) throw new MeterValidationError(`invalid group by filter: ${key}`);
      const list = typeof values === "string" ? [values] : values;
      if (list.length > 0) filters.push([steps, list]);
    }
    const fromSeconds = maxDefined(
      fromMs === undefined ? undefined : Math.floor(fromMs / 1000),
      this.eventFromSeconds,
    );
    const toSeconds = toMsValue === undefined ? undefined : Math.floor(toMsValue / 1000);

    const selected = rows.filter(
      (row) =>
        row.type === this.eventType &&
        (params.filterSubjectsOfCustomers === undefined || params.filterSubjectsOfCustomers.includes(row.subject)) &&
        (subjects.length === 0 || subjects.includes(row.subject)) &&
        (fromSeconds === undefined || row.timeSeconds >= fromSeconds) &&
        (toSeconds === undefined || row.timeSeconds < toSeconds) &&
        filters.every(([steps, values]) => values.includes(jsonValue(row.data, steps))),
    );

    const groups = new Map<string, { windowStart: number; subject: string | null; groupBy: Record<string, string>; rows: MeterRow[] }>();
    for (const row of selected) {
      const dims: Record<string, string> = {};
      for (const key of groupBy) if (key !== "subject") dims[key] = jsonValue(row.data, this.#groupSteps.get(key)!);
      const subject = groupBy.includes("subject") ? row.subject : null;
      const windowStart = params.windowSize === undefined ? 0 : windowStartOf(row.timeSeconds, params.windowSize);
      const key = JSON.stringify([windowStart, subject, dims]);
      let group = groups.get(key);
      if (!group) groups.set(key, (group = { windowStart, subject, groupBy: dims, rows: [] }));
      group.rows.push(row);
    }
    // No GROUP BY at all: one row even over no events (an aggregate over an empty set).
    if (groups.size === 0 && groupBy.length === 0 && params.windowSize === undefined) {
      groups.set("empty", { windowStart: 0, subject: null, groupBy: {}, rows: [] });
    }

    const data: MeterQueryRow[] = [];
    for (const group of groups.values()) {
      const value = this.#aggregate(group.rows);
      if (value === undefined) continue; // NULL: scanRows skips the row
      let windowStart: number;
      let windowEnd: number;
      if (params.windowSize !== undefined) {
        windowStart = group.windowStart;
        windowEnd = windowEndOf(windowStart, params.windowSize);
      } else {
        const times = group.rows.map((r) => r.timeSeconds);
        const min = times.length ? Math.min(...times) : 0;
        const max = times.length ? Math.max(...times) : 0;
        windowStart = fromMs !== undefined ? fromMs / 1000 : Math.floor(min / 60) * 60;
        windowEnd = toMsValue !== undefined ? toMsValue / 1000 : Math.floor(max / 60) * 60 + 60;
      }
      const dims: Record<string, string | null> = {};
      for (const key of groupBy) if (key !== "subject") dims[key] = group.groupBy[key] ?? null;
      data.push({
        value,
        windowStart: new Date(windowStart * 1000).toISOString(),
        windowEnd: new Date(windowEnd * 1000).toISOString(),
        subject: group.subject,
        groupBy: dims,
      });
    }
    data.sort((a, b) => (a.windowStart < b.windowStart ? -1 : a.windowStart > b.windowStart ? 1 : 0) || compareRows(a, b));
    return {
      ...(params.from !== undefined ? { from: new Date(fromMs!).toISOString() } : {}),
      ...(params.to !== undefined ? { to: new Date(toMsValue!).toISOString() } : {}),
      ...(params.windowSize !== undefined ? { windowSize: params.windowSize } : {}),
      data,
    };
  }

  #aggregate(rows: readonly MeterRow[]): number | undefined {
    if (this.aggregation === "COUNT") return rows.length;
    if (this.aggregation === "UNIQUE_COUNT") {
      const steps = this.#valueSteps ?? [];
      const values = new Set(rows.map((r) => jsonValue(r.data, steps)).filter((v) => v !== "null"));
      return rows.length === 0 ? undefined : values.size;
    }
    const values: Array<{ value: number; time: number }> = [];
    for (const row of rows) {
      const value = this.valueOf(row.data);
      if (value !== undefined) values.push({ value, time: row.timeSeconds });
    }
    if (values.length === 0) return undefined;
    switch (this.aggregation) {
      case "SUM":
        return values.reduce((sum, v) => sum + v.value, 0);
      case "AVG":
        return values.reduce((sum, v) => sum + v.value, 0) / values.length;
      case "MIN":
        return Math.min(...values.map((v) => v.value));
      case "MAX":
        return Math.max(...values.map((v) => v.value));
      case "LATEST": {
        let latest = values[0]!;
        for (const v of values) if (v.time >= latest.time) latest = v;
        return latest.value;
      }
      default:
        return undefined;
    }
  }
}

function compareRows(a: MeterQueryRow, b: MeterQueryRow): number {
  const ka = JSON.stringify([a.subject, a.groupBy]);
  const kb = JSON.stringify([b.subject, b.groupBy]);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

function maxDefined(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.max(a, b);
}

function windowStartOf(seconds: number, size: WindowSize): number {
  switch (size) {
    case "MINUTE":
      return Math.floor(seconds / 60) * 60;
    case "HOUR":
      return Math.floor(seconds / 3600) * 3600;
    case "DAY":
      return Math.floor(seconds / 86400) * 86400;
    case "MONTH": {
      const d = new Date(seconds * 1000);
      return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1) / 1000;
    }
  }
}

function windowEndOf(start: number, size: WindowSize): number {
  switch (size) {
    case "MINUTE":
      return start + 60;
    case "HOUR":
      return start + 3600;
    case "DAY":
      return start + 86400;
    case "MONTH": {
      const d = new Date(start * 1000);
      return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) / 1000;
    }
  }
}

function goTypeName(value: unknown): string {
  if (typeof value === "boolean") return "bool";
  if (Array.isArray(value)) return "[]interface {}";
  if (typeof value === "object" && value !== null) return "map[string]interface {}";
  return typeof value;
}

export function toMs(value: Date | string, name: string): number {
  const ms = value instanceof Date ? value.getTime() : Date.parse(value);
  if (!Number.isFinite(ms)) throw new MeterValidationError(`${name} must be a date-time, got ${JSON.stringify(String(value))}`);
  return ms;
}

/** `Meter.Validate` and friends, as errors thrown on definition. */
export function validateMeterDefinition(d: MeterDefinition): void {
  const problems: string[] = [];
  if (typeof d.slug !== "string" || !SLUG.test(d.slug) || d.slug.length > 64) {
    problems.push(`meter key ${JSON.stringify(d.slug)} must match ^[a-z0-9]+(?:_[a-z0-9]+)*$ (at most 64 characters)`);
  }
  if (typeof d.eventType !== "string" || d.eventType === "") problems.push("meter event type is required");
  if (!AGGREGATIONS.includes(d.aggregation)) problems.push(`meter aggregation must be one of ${AGGREGATIONS.join(", ")}`);
  if (d.aggregation === "COUNT") {
    if (d.valueProperty !== undefined) problems.push("meter value property is not allowed when the aggregation is count");
  } else if (d.valueProperty === undefined) {
    problems.push("meter value property is required when the aggregation is not count");
  } else if (d.valueProperty === "") {
    problems.push("meter value property cannot be empty when the aggregation is not count");
  } else if (!d.valueProperty.startsWith("$")) {
    problems.push("meter value property must start with $");
  }
  for (const [key, path] of Object.entries(d.groupBy ?? {})) {
    if (!path.startsWith("$")) problems.push(`meter group by value must start with $ for key ${key}`);
    if (key.trim() === "") problems.push("meter group by key cannot be empty");
    else if (!GROUP_BY_KEY.test(key)) problems.push(`meter group by key ${key} is invalid, only alphanumeric and underscore characters are allowed`);
    if (d.valueProperty !== undefined && path === d.valueProperty) problems.push(`meter group by value ${key} cannot be the same as value property`);
  }
  if (problems.length > 0) throw new MeterValidationError(`invalid meter ${JSON.stringify(d.slug)}: ${problems.join("; ")}`);
  if (d.valueProperty !== undefined) compileJsonPath(d.valueProperty);
  for (const path of Object.values(d.groupBy ?? {})) compileJsonPath(path);
}
