import type { TokenEstimator } from "../estimate";
import type { TokenUsage } from "../usage";
import { anthropicBill } from "./anthropic";
import { bedrockBill } from "./bedrock";
import { type Bill, type CallEvidence, firstMessage, isRecord, nonEmpty } from "./evidence";
import { googleBill } from "./google";
import { openAIBill } from "./openai";

export type { Bill, CallEvidence } from "./evidence";

/**
 * The bill of a finished run: LangChain's usage, corrected where the provider's integration is known
 * to report numbers other than the provider bills, from what the provider itself sent. Keyed by
 * LangChain's `ls_provider`; every other provider's usage is taken as reported.
 */
export function billFor(provider: string | undefined, usage: TokenUsage, evidence: CallEvidence, estimator: TokenEstimator): Bill {
  let bill: Bill;
  switch (provider) {
    case "anthropic":
      bill = anthropicBill(usage, evidence, estimator);
      break;
    case "google_genai":
      bill = googleBill(usage, evidence);
      break;
    case "openai":
    case "azure":
      bill = openAIBill(usage, evidence);
      break;
    case "amazon_bedrock":
      bill = bedrockBill(usage, evidence);
      break;
    default:
      bill = { usage, notes: [] };
  }
  // The first chunk that named the model, before LangChain concatenates the names of n > 1 choices.
  bill.responseModel ??= evidence.stream.model ?? servedModel(evidence);
  return bill;
}

/** The model the provider says it served (a dated snapshot, often), from the first generation. */
function servedModel({ output }: CallEvidence): string | undefined {
  const message = firstMessage(output);
  const metadata = isRecord(message?.response_metadata) ? message.response_metadata : undefined;
  const info = (output?.generations?.[0]?.[0] as { generationInfo?: Record<string, unknown> } | undefined)?.generationInfo;
  // LangGraph's "messages" stream mode leaves it in generationInfo only.
  return nonEmpty(metadata?.model_name) ?? nonEmpty(metadata?.model) ?? nonEmpty(info?.model_name) ?? nonEmpty(info?.model);
}
