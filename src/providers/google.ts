/**
 * Gemini through `@langchain/google-genai` 2.3 (dist/utils/common.js `convertUsageMetadata`):
 * `output_tokens = candidatesTokenCount`, leaving out `thoughtsTokenCount`, which Google bills as
 * output ("Output price (including thinking tokens)", ai.google.dev/gemini-api/docs/pricing); its
 * `total_tokens = totalTokenCount` does include them. Streamed (dist/chat_models.js
 * `_streamResponseChunks`), input and output are per-chunk deltas that sum to the totals, but the
 * absolute `cachedContentTokenCount` rides on every chunk and LangChain sums it. The raw
 * `usageMetadata` reaches no callback, so both are corrected from what does arrive.
 */
import { count, detailsOf, withDetails, type TokenUsage } from "../usage";
import { type Bill, type CallEvidence, firstMessage, isRecord } from "./evidence";

export function googleBill(usage: TokenUsage, evidence: CallEvidence): Bill {
  const bill: Bill = { usage, notes: [] };
  const reported = firstMessage(evidence.output)?.usage_metadata;
  const total = isRecord(reported) && typeof reported.total_tokens === "number" ? reported.total_tokens : undefined;

  let details = detailsOf(usage);
  // Every streamed chunk carried the same absolute cache count, and LangChain added them up: the sum
  // (often larger than the input, so already dropped from `usage`) is the count times the chunks,
  // each chunk being one handleLLMNewToken call. Should an integration stop summing, a sum that
  // happens to divide would understate the detail, never the input: those tokens stay billed.
  const inputDetails = isRecord(reported) && isRecord(reported.input_token_details) ? reported.input_token_details : {};
  const summed = count(inputDetails.cache_read);
  const chunks = evidence.stream.chunks;
  if (chunks >= 2 && summed !== undefined && summed % chunks === 0) details = { ...details, cacheRead: summed / chunks };

  let { input, output, outputEstimated } = usage;
  // totalTokenCount = prompt + candidates + thoughts + tool-use prompt: what is left over beside
  // input and output is the thinking, unless a built-in tool (Search, code execution) may have
  // added a tool-use prompt to it. Then it is billed as output and flagged estimated.
  const gap = total !== undefined ? total - input - output : 0;
  if (gap > 0) {
    output += gap;
    if (usesBuiltInTool(evidence.sent.tools)) {
      outputEstimated = true;
      bill.notes.push(
        "Gemini's total exceeds input + output by thinking and tool-use prompt tokens, which no callback tells apart with a built-in tool: billed as output, flagged estimated",
      );
    } else {
      details = { ...details, reasoning: gap };
    }
  }
  bill.usage = withDetails({ input, output, inputEstimated: usage.inputEstimated, outputEstimated }, details);
  return bill;
}

/** Gemini's built-in tools are tool entries other than `functionDeclarations`. */
function usesBuiltInTool(tools: unknown): boolean {
  return Array.isArray(tools) && tools.some((tool) => isRecord(tool) && Object.keys(tool).some((key) => key !== "functionDeclarations"));
}
