/**
 * A callback handler that records what LangChain hands to callbacks (the same arguments the metering
 * handler will see), for tests that check what reaches `handleLLMEnd` / `handleLLMError`.
 */
import { BaseCallbackHandler } from "@langchain/core/callbacks/base";
import type { LLMResult } from "@langchain/core/outputs";

export interface CapturedEnd {
  runId: string;
  output: LLMResult;
}

export class CaptureHandler extends BaseCallbackHandler {
  name = "capture";
  starts: Array<{ runId: string; kind: "chat" | "llm" }> = [];
  ends: CapturedEnd[] = [];
  errors: Array<{ runId: string; error: unknown }> = [];

  override handleChatModelStart(_llm: unknown, _messages: unknown, runId: string): void {
    this.starts.push({ runId, kind: "chat" });
  }

  override handleLLMStart(_llm: unknown, _prompts: unknown, runId: string): void {
    this.starts.push({ runId, kind: "llm" });
  }

  override handleLLMEnd(output: LLMResult, runId: string): void {
    this.ends.push({ runId, output });
  }

  override handleLLMError(error: unknown, runId: string): void {
    this.errors.push({ runId, error });
  }
}

/** `generations[0][0].message.usage_metadata` of a captured end, if any. */
export function endUsage(end: CapturedEnd | undefined): unknown {
  const generation = end?.output.generations[0]?.[0] as { message?: { usage_metadata?: unknown } } | undefined;
  return generation?.message?.usage_metadata;
}
