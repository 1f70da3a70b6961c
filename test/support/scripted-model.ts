import { BaseChatModel, type BaseChatModelParams } from "@langchain/core/language_models/chat_models";
import { AIMessage, AIMessageChunk, type BaseMessage, type UsageMetadata } from "@langchain/core/messages";
import { ChatGenerationChunk, type ChatResult } from "@langchain/core/outputs";
import type { CallbackManagerForLLMRun } from "@langchain/core/callbacks/manager";

/** What one call of the scripted model answers. */
export interface ScriptedAnswer {
  text?: string;
  usage?: UsageMetadata | Record<string, unknown>;
  llmOutput?: Record<string, unknown>;
  /** Generations per run (n > 1): each carries the same usage object, as real integrations do. */
  n?: number;
  responseModel?: string;
  /** Usage per streamed chunk, for `.stream()`. */
  streamUsage?: UsageMetadata[];
  fail?: string;
  /** How long the call takes. */
  delayMs?: number;
}

/**
 * A chat model for unit tests: answers from a script, reports whatever usage the test wants, and
 * identifies itself to LangChain like a real integration (ls_provider, ls_model_name).
 */
export class ScriptedChatModel extends BaseChatModel {
  calls = 0;
  constructor(
    readonly script: (call: number, messages: BaseMessage[]) => ScriptedAnswer,
    readonly modelName = "scripted-1",
    readonly providerName = "scripted",
    params: BaseChatModelParams = {},
  ) {
    super(params);
  }

  _llmType(): string {
    return "scripted";
  }

  override getLsParams(options: this["ParsedCallOptions"]) {
    return { ...super.getLsParams(options), ls_provider: this.providerName, ls_model_name: this.modelName };
  }

  async _generate(messages: BaseMessage[]): Promise<ChatResult> {
    const answer = this.script(this.calls++, messages);
    if (answer.delayMs) await new Promise((resolve) => setTimeout(resolve, answer.delayMs));
    if (answer.fail) throw new Error(answer.fail);
    const generations = Array.from({ length: answer.n ?? 1 }, (_, i) => {
      const text = `${answer.text ?? "ok"}${i > 0 ? ` #${i}` : ""}`;
      return {
        text,
        message: new AIMessage({
          content: text,
          usage_metadata: answer.usage as UsageMetadata | undefined,
          response_metadata: answer.responseModel ? { model_name: answer.responseModel } : {},
        }),
      };
    });
    return { generations, llmOutput: answer.llmOutput };
  }

  override async *_streamResponseChunks(
    messages: BaseMessage[],
    _options: this["ParsedCallOptions"],
    runManager?: CallbackManagerForLLMRun,
  ): AsyncGenerator<ChatGenerationChunk> {
    const answer = this.script(this.calls++, messages);
    if (answer.fail) throw new Error(answer.fail);
    for (const [i, usage] of (answer.streamUsage ?? []).entries()) {
      const text = i === 0 ? "" : `t${i}`;
      const chunk = new ChatGenerationChunk({ text, message: new AIMessageChunk({ content: text, usage_metadata: usage }) });
      await runManager?.handleLLMNewToken(text, undefined, undefined, undefined, undefined, { chunk });
      yield chunk;
    }
  }
}

export const usage = (
  input: number,
  output: number,
  details: { cacheRead?: number; cacheWrite?: number; reasoning?: number } = {},
): UsageMetadata => ({
  input_tokens: input,
  output_tokens: output,
  total_tokens: input + output,
  ...(details.cacheRead !== undefined || details.cacheWrite !== undefined
    ? { input_token_details: { cache_read: details.cacheRead ?? 0, cache_creation: details.cacheWrite ?? 0 } }
    : {}),
  ...(details.reasoning !== undefined ? { output_token_details: { reasoning: details.reasoning } } : {}),
});
