import { BaseCallbackHandler } from "@langchain/core/callbacks/base";
import type { LLMResult } from "@langchain/core/outputs";

/**
 * LangChain's floor: a handler that implements the model hooks and does nothing. It does not set
 * `ignoreChain`, so inside a chain LangChain still queues a task per chain start and end for it
 * (the hook is looked up and missing); pass `{ ignoreChain: true }` for the floor of a handler that
 * asks for model runs only.
 */
export class NoopHandler extends BaseCallbackHandler {
  name = "NoopHandler";
  constructor(input?: { ignoreChain?: boolean }) {
    super(input);
  }
  override handleChatModelStart(): void {}
  override handleLLMEnd(): void {}
}

/** The floor of a handler that watches chains as MeteringCallbackHandler does: chain hooks as no-ops. */
export class NoopChainHandler extends NoopHandler {
  override name = "NoopChainHandler";
  override handleChainStart(): void {}
  override handleChainEnd(): void {}
  override handleChainError(): void {}
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
