import { z } from "zod";

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

const nonEmpty = (name: string) =>
  z.string({ error: `\`${name}\` must be a string` }).min(1, { error: `\`${name}\` must not be empty` });

/** What OpenMeter accepts; checked before an event is queued so one bad event cannot fail a batch. */
export const cloudEventSchema = z
  .object({
    specversion: z.literal("1.0", { error: "`specversion` must be \"1.0\"" }),
    id: nonEmpty("id"),
    source: nonEmpty("source"),
    type: nonEmpty("type"),
    subject: nonEmpty("subject"),
    // OpenMeter's schema lets every optional attribute be null.
    time: z.iso.datetime({ offset: true, error: "`time` must be an RFC 3339 date-time" }).nullish(),
    datacontenttype: z.literal("application/json", { error: "`datacontenttype` must be \"application/json\"" }).nullish(),
    dataschema: z.url({ error: "`dataschema` must be an absolute URI" }).nullish(),
    data: z.record(z.string(), z.unknown(), { error: "`data` must be a JSON object" }).nullish(),
  })
  // OpenMeter's v3 API rejects any other top-level attribute.
  .strict();
