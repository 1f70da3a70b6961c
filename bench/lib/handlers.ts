import { BaseCallbackHandler } from "@langchain/core/callbacks/base";
import type { LLMResult } from "@langchain/core/outputs";

/** LangChain's floor: a handler that implements the hooks and does nothing. */
export class NoopHandler extends BaseCallbackHandler {
  name = "NoopHandler";
  override handleChatModelStart(): void {}
  override handleLLMEnd(): void {}
}

/**
 * The pattern metering tutorials show: in handleLLMEnd, read the usage and `await fetch()` it to the
 * events endpoint. It runs in LangChain's background queue (the default), so every POST holds up
 * every callback in the process. Charitably, both events of a call go in one request.
 */
export class NaiveFetchHandler extends BaseCallbackHandler {
  name = "NaiveFetchHandler";
  #subjects = new Map<string, string>();
  failures = 0;
  constructor(readonly url: string) {
    super();
  }

  override handleChatModelStart(
    _llm: unknown,
    _messages: unknown,
    runId: string,
    _parentRunId?: string,
    _extraParams?: unknown,
    _tags?: string[],
    metadata?: Record<string, unknown>,
  ): void {
    this.#subjects.set(runId, String(metadata?.subject ?? "unknown"));
  }

  override async handleLLMEnd(output: LLMResult, runId: string): Promise<void> {
    const subject = this.#subjects.get(runId) ?? "unknown";
    this.#subjects.delete(runId);
    const usage = (output.generations[0]?.[0] as { message?: { usage_metadata?: { input_tokens: number; output_tokens: number } } })
      ?.message?.usage_metadata;
    if (!usage) return;
    const time = new Date().toISOString();
    const base = { specversion: "1.0", source: "naive", type: "kong.llm_request", subject, time };
    const body = JSON.stringify([
      { ...base, id: `${runId}-input`, data: { type: "input", tokens: usage.input_tokens, model: "gpt-4o-mini" } },
      { ...base, id: `${runId}-output`, data: { type: "output", tokens: usage.output_tokens, model: "gpt-4o-mini" } },
    ]);
    const res = await fetch(this.url, { method: "POST", headers: { "content-type": "application/cloudevents-batch+json" }, body });
    await res.arrayBuffer();
    if (!res.ok) this.failures++;
  }
}
