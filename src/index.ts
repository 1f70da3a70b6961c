export type { CloudEvent, DataValue } from "./cloudevent";
export { cloudEventSchema } from "./cloudevent";
export type { Logger } from "./logger";
export type { EventSink } from "./ingest/sink";
export { IngestClient } from "./ingest/client";
export type { IngestStats } from "./ingest/client";
export { IngestError } from "./ingest/errors";
export type { IngestErrorKind } from "./ingest/errors";
export {
  ingestOptionsSchema,
  ingestOptionsShape,
  parseIngestOptions,
  parseOptions,
  refineIngestOptions,
} from "./ingest/options";
export type { IngestOptions, ResolvedIngestOptions, RetryOptions } from "./ingest/options";
