import { z } from "zod";

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

