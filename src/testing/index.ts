/**
 * `langchain-openmeter/testing`: a local OpenMeter that behaves like the real one where billing is at
 * stake (validation, partial ingest, de-duplication, meters, entitlements), and a clock for tests.
 */
export { OpenMeterServer, startOpenMeterServer, type MeterRegistry } from "./server";
export type {
  DedupeConfig,
  DedupeDriver,
  DroppedEvent,
  EventsListener,
  ForwardFailure,
  OpenMeterApi,
  OpenMeterServerMode,
  OpenMeterServerOptions,
  ReceivedEvent,
  RequestOutcome,
  RequestRecord,
  ScriptedResponse,
  SinkBatchingOptions,
  StoredEvent,
  TokenTotals,
} from "./types";
export {
  LLM_TOKENS_METER,
  Meter,
  MeterValidationError,
  type MeterAggregation,
  type MeterDefinition,
  type MeterError,
  type MeterQueryParams,
  type MeterQueryResult,
  type MeterQueryRow,
  type WindowSize,
} from "./meters";
export {
  EntitlementApiError,
  type Customer,
  type CustomerInput,
  type Entitlement,
  type EntitlementInput,
  type EntitlementValue,
  type ExpirationDuration,
  type Feature,
  type FeatureInput,
  type Grant,
  type GrantInput,
  type UsagePeriodInterval,
} from "./entitlements";
export { dedupeKey, DEFAULT_MEMORY_SIZE, DEFAULT_REDIS_EXPIRATION_MS, QUICKSTART_EXPIRATION_MS } from "./dedupe";
export { TestClock } from "./clock";
