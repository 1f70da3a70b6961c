import { BaseChatModel, type BaseChatModelParams } from "@langchain/core/language_models/chat_models";
import { AIMessage, type BaseMessage } from "@langchain/core/messages";
import type { ChatResult } from "@langchain/core/outputs";

/**
 * A chat model that answers at once and reports usage the way real integrations do
 * (usage_metadata with details, response model, ls_provider / ls_model_name), so every cost
 * measured around it is LangChain's and the handlers'.
 */
export class InstantChatModel extends BaseChatModel {
  calls = 0;
  constructor(params: BaseChatModelParams = {}) {
    super(params);
  }

  _llmType(): string {
    return "instant";
  }

  override getLsParams(options: this["ParsedCallOptions"]) {
    return { ...super.getLsParams(options), ls_provider: "openai", ls_model_name: "gpt-4o-mini" };
  }

  async _generate(_messages: BaseMessage[]): Promise<ChatResult> {
    this.calls++;
    return { generations: llmResult().generations[0]!, llmOutput: {} };
  }
}

/** Realistic arguments for driving a handler's callbacks directly (what LangChain passes for one call). */
export function realisticCallArgs(model = new InstantChatModel()) {
  const serialized = model.toJSON();
  const extraParams = { invocation_params: { model: "gpt-4o-mini" }, batch_size: 1 };
  const metadata = { subject: "acme", tier: "pro", ls_provider: "openai", ls_model_name: "gpt-4o-mini", ls_model_type: "chat" };
  return { serialized, extraParams, metadata };
}

/** A fresh LLMResult as LangChain builds one at the end of a call (new objects every time, as in real use). */
export function llmResult() {
  return {
    generations: [
      [
        {
          text: "ok",
          message: new AIMessage({
            content: "ok",
            usage_metadata: {
              input_tokens: 120,
              output_tokens: 30,
              total_tokens: 150,
              input_token_details: { cache_read: 100 },
              output_token_details: { reasoning: 10 },
            },
            response_metadata: { model_name: "gpt-4o-mini-2024-07-18" },
          }),
        },
      ],
    ],
    llmOutput: {},
  };
}
