import { cloudEventSchema } from "./cloudevent-schema";
import { uriReferenceProblem } from "./uri-reference";

/** Values that may travel in an event's `data`: flat primitives only, so a meter can group by them. */
export type DataValue = string | number | boolean | null;

/**
 * A CloudEvents 1.0 event as OpenMeter ingests it. Only the attributes OpenMeter's v3 schema
 * allows are present (it rejects unknown top-level attributes): everything else goes in `data`.
 */
export interface CloudEvent<Data extends Record<string, unknown> = Record<string, unknown>> {
  specversion: "1.0";
  /** Stable for a given usage record: OpenMeter de-duplicates on `source` + `id`. */
  id: string;
  source: string;
  type: string;
  /** The paying customer (OpenMeter's subject key). */
  subject: string;
  /** RFC 3339. OpenMeter sets the time of receipt when it is missing. */
  time?: string | null;
  /** Only `application/json` is accepted by OpenMeter. */
  datacontenttype?: "application/json" | null;
  dataschema?: string | null;
  data?: Data | null;
}

const ATTRIBUTES = new Set(["specversion", "id", "source", "type", "subject", "time", "data", "datacontenttype", "dataschema"]);
const RFC3339 = /^(\d{4})-(\d\d)-(\d\d)T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d+)?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$/;

function isPlainObject(value: object): boolean {
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

/** The last time found valid: the events of a batch mostly share a few (the handler stamps per millisecond). */
let lastValidTime = "";

/** A real calendar day, as the schema requires ("2026-02-30" is not). */
function isRfc3339(time: string): boolean {
  if (time === lastValidTime) return true;
  const match = RFC3339.exec(time);
  if (!match) return false;
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const valid = month >= 1 && month <= 12 && day >= 1 && day <= new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (valid) lastValidTime = time;
  return valid;
}

/**
 * The common case of `cloudEventSchema`, checked without zod: an event the schema accepts, in the
 * shape the handler builds. False means "ask the schema" (which also explains what is wrong), so
 * this may be stricter than the schema, never looser.
 */
export function isPlainValidEvent(event: unknown): event is CloudEvent {
  if (typeof event !== "object" || event === null) return false;
  const e = event as Record<string, unknown>;
  if (e.specversion !== "1.0") return false;
  for (const key of ["id", "source", "type", "subject"] as const) {
    const value = e[key];
    if (typeof value !== "string" || value.length === 0) return false;
  }
  const { time, data } = e;
  if (time !== undefined && (typeof time !== "string" || !isRfc3339(time))) return false;
  // A plain object only: a Map, Date or class instance serialises to something else than it holds.
  if (data !== undefined && (typeof data !== "object" || data === null || !isPlainObject(data))) return false;
  if (e.datacontenttype !== undefined || e.dataschema !== undefined) return false;
  for (const key in e) if (!ATTRIBUTES.has(key)) return false;
  return true;
}

/**
 * What is wrong with an event for OpenMeter, one line per problem; empty when it would be accepted.
 * `IngestClient` checks every event with it at `enqueue` (an invalid event is reported, never sent).
 */
export function cloudEventProblems(event: unknown): string[] {
  if (isPlainValidEvent(event)) {
    const problem = eventSourceProblem((event as CloudEvent).source);
    return problem === undefined ? [] : [problem];
  }
  const parsed = cloudEventSchema.safeParse(event);
  if (!parsed.success) return parsed.error.issues.map((issue) => issue.message);
  const problem = eventSourceProblem(parsed.data.source);
  return problem === undefined ? [] : [problem];
}

/**
 * Why OpenMeter would refuse `source`, as an option error, or undefined. OpenMeter parses it with
 * Go's url.Parse (a failure refuses the whole batch); whitespace, which Go lets through, is refused
 * too: in a billing source it is a typo, and OpenMeter would store it escaped (`my%20app`).
 */
export function sourceProblem(source: string): string | undefined {
  const space = /\s/.exec(source);
  if (space) return `\`source\` contains a space or other whitespace at position ${space.index}: use a URI-reference such as "langchain" or "my-app/agents"`;
  const problem = uriReferenceProblem(source);
  return problem === undefined ? undefined : `\`source\` ${problem}; OpenMeter would refuse every batch with it`;
}

let lastGoodSource = "";
/** `sourceProblem`, remembered for the last good value: the events of a client mostly share one source. */
export function eventSourceProblem(source: string): string | undefined {
  if (source === lastGoodSource) return undefined;
  const problem = sourceProblem(source);
  if (problem === undefined) lastGoodSource = source;
  return problem;
}
