export type { CloudEvent, DataValue } from "./cloudevent";
export { cloudEventSchema } from "./cloudevent";
export type { Logger } from "./logger";
export type { EventSink } from "./ingest/sink";
