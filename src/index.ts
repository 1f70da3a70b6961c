// LangChain hooks -> usage -> events -> ingest -> transport: the public surface of each layer.
export { MeteringCallbackHandler } from "./handler";
export type { MeteringCallbackHandlerOptions, MeteringStats } from "./handler";
export type { MeteringEventOptions } from "./handler-options";
export type { SubjectContext, SubjectResolver } from "./subject";
export type { CallStatus, ServerToolEvent, ServerToolEventData, TokenKind, UsageEvent, UsageEventData } from "./events";
export type { TokenEstimator } from "./estimate";
export type { UnbilledCall, UnbilledReason } from "./unbilled";
export type { CloudEvent, DataValue } from "./cloudevent";
export { cloudEventProblems } from "./cloudevent";
export { IngestClient } from "./ingest/client";
export type { IngestStats } from "./ingest/client";
export { IngestError } from "./ingest/errors";
export type { IngestErrorKind } from "./ingest/errors";
export type { IngestOptions, RetryOptions } from "./ingest/options";
export type { EventSink, FlushOptions } from "./ingest/sink";
export type { Logger } from "./logger";
export type { Clock, ClockTimer } from "./clock";
