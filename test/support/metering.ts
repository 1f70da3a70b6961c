/**
 * Shared setup for the integration tests: a handler that delivers into a MemorySink, and helpers that
 * find a run's two events and build the exact events a run must produce.
 */
import { randomUUID } from "node:crypto";
import { expect } from "vitest";
import { MeteringCallbackHandler, type CloudEvent } from "langchain-openmeter";
import { MemorySink, recordingLogger } from "./memory-sink";

export function meteringSetup(options: Record<string, unknown> = {}) {
  const sink = new MemorySink();
  const log = recordingLogger();
  const handler = new MeteringCallbackHandler({ client: sink, logger: log.logger, ...options });
  return { sink, handler, ...log };
}

export const newRunId = (): string => randomUUID();

/** The run ids behind the events, in the order their input events arrived. */
export function runIdsOf(events: readonly CloudEvent[]): string[] {
  return events.filter((e) => e.id.endsWith("-input")).map((e) => e.id.slice(0, -"-input".length));
}

export interface ExpectedRun {
  subject: string;
  input: number;
  output: number;
  model: string;
  provider: string;
  responseModel?: string;
  cached?: number;
  cacheWrite?: number;
  /** Of the cache writes, those with a 5-minute / 1-hour TTL. */
  cacheWrite5m?: number;
  cacheWrite1h?: number;
  audioInput?: number;
  reasoning?: number;
  audioOutput?: number;
  /** A call that did not finish. */
  status?: "aborted" | "error";
  inputEstimated?: boolean;
  outputEstimated?: boolean;
  /** The id the events derive from, when not the run id (a reused run id). */
  billingId?: string;
  /** User metadata expected in `data` (exactly: anything else there fails the assertion). */
  extra?: Record<string, unknown>;
}

/** The two events a run must produce, exactly (time is checked for shape only). */
export function expectedEvents(runId: string, run: ExpectedRun): [CloudEvent, CloudEvent] {
  const common = {
    model: run.model,
    provider: run.provider,
    ...(run.responseModel !== undefined ? { response_model: run.responseModel } : {}),
    ...(run.status !== undefined ? { status: run.status } : {}),
    ...run.extra,
  };
  const id = run.billingId ?? runId;
  const envelope = {
    specversion: "1.0",
    source: "langchain",
    type: "kong.llm_request",
    subject: run.subject,
    time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
  };
  return [
    {
      ...envelope,
      id: `${id}-input`,
      data: {
        type: "input",
        tokens: run.input,
        ...common,
        ...(run.cached !== undefined ? { cached_tokens: run.cached } : {}),
        ...(run.cacheWrite !== undefined ? { cache_write_tokens: run.cacheWrite } : {}),
        ...(run.cacheWrite5m !== undefined ? { cache_write_5m_tokens: run.cacheWrite5m } : {}),
        ...(run.cacheWrite1h !== undefined ? { cache_write_1h_tokens: run.cacheWrite1h } : {}),
        ...(run.audioInput !== undefined ? { audio_tokens: run.audioInput } : {}),
        ...(run.inputEstimated ? { estimated: true } : {}),
      },
    },
    {
      ...envelope,
      id: `${id}-output`,
      data: {
        type: "output",
        tokens: run.output,
        ...common,
        ...(run.reasoning !== undefined ? { reasoning_tokens: run.reasoning } : {}),
        ...(run.audioOutput !== undefined ? { audio_tokens: run.audioOutput } : {}),
        ...(run.outputEstimated ? { estimated: true } : {}),
      },
    },
  ] as [CloudEvent, CloudEvent];
}

/** The token events of one run, input first. */
export function eventsOfRun(events: readonly CloudEvent[], runId: string): CloudEvent[] {
  return events.filter((e) => e.id === `${runId}-input` || e.id === `${runId}-output`);
}

/** The server tool request event a run must produce. */
export function expectedToolEvent(
  runId: string,
  run: { subject: string; model: string; provider: string; responseModel?: string; tool: string; requests: number; extra?: Record<string, unknown> },
): CloudEvent {
  return {
    specversion: "1.0",
    id: `${runId}-tool-${run.tool}`,
    source: "langchain",
    type: "llm.server_tool_request",
    subject: run.subject,
    time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
    data: {
      tool: run.tool,
      requests: run.requests,
      model: run.model,
      provider: run.provider,
      ...(run.responseModel !== undefined ? { response_model: run.responseModel } : {}),
      ...run.extra,
    },
  } as CloudEvent;
}

/** Sum of `data.tokens` per subject and type. */
export function totalsBySubject(events: readonly CloudEvent[]): Record<string, { input: number; output: number }> {
  const totals: Record<string, { input: number; output: number }> = {};
  for (const event of events) {
    const data = event.data as { type: string; tokens: number };
    const entry = (totals[event.subject!] ??= { input: 0, output: 0 });
    if (data.type === "input") entry.input += data.tokens;
    else if (data.type === "output") entry.output += data.tokens;
    else throw new Error(`unexpected event type ${data.type}`);
  }
  return totals;
}
