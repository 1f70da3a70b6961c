import type { LLMResult } from "@langchain/core/outputs";
import type { CallStatus } from "../events";
import type { SentPrompt } from "../estimate";
import type { StreamObserver } from "../stream-observer";
import type { TokenUsage } from "../usage";
import type { TappedUsage } from "./anthropic-tap";

/** Everything a run showed about its cost, for the provider's corrections. */
export interface CallEvidence {
  /** What `handleLLMEnd` received. */
  output: LLMResult;
  /** What the stream showed along the way (empty for a call that did not stream). */
  stream: StreamObserver;
  /** What was sent (for the tools it declared). */
  sent: SentPrompt;
  /** The raw stream usage a provider fetch hook recorded, when the user wired one in. */
  tapped?: TappedUsage;
}

/** What a run is billed: the corrected usage and what else it cost. */
export interface Bill {
  usage: TokenUsage;
  /** Requests per server tool (`web_search: 2`). */
  serverTools?: Record<string, number>;
  serverToolsEstimated?: boolean;
  /** Set when the call did not finish although it ended (a stream cut short). */
  status?: CallStatus;
  /** The served model, when the provider named one. */
  responseModel?: string;
  /** What the user should know about this bill (an estimate, and why). */
  notes: string[];
}

/** The first generation's message, where integrations put the provider's raw metadata. */
export function firstMessage(output: LLMResult): Record<string, unknown> | undefined {
  const generation = output?.generations?.[0]?.[0] as { message?: Record<string, unknown> } | undefined;
  return generation?.message;
}

export function responseMetadata(output: LLMResult): Record<string, unknown> {
  const metadata = firstMessage(output)?.response_metadata;
  return isRecord(metadata) ? metadata : {};
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function nonEmpty(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}
