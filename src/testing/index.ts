export {
  type OpenMeterServer,
  startOpenMeterServer,
  type EventsListener,
  type OpenMeterApi,
  type OpenMeterServerMode,
  type OpenMeterServerOptions,
  type ReceivedEvent,
  type RequestOutcome,
  type RequestRecord,
  type ScriptedResponse,
  type TokenTotals,
} from "./openmeter-server";
export { TestClock } from "./clock";
