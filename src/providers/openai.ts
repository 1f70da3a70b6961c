/**
 * OpenAI through `@langchain/openai` 1.4. Token counts arrive exact on both APIs: Chat Completions
 * (`CompletionUsage`: cached and audio input, reasoning and audio output, openai/resources/completions.d.ts)
 * and Responses (`ResponseUsage` on `response.completed` / `response.incomplete`,
 * openai/resources/responses/responses.d.ts). What no token count holds is the hosted tools OpenAI bills
 * per call: each `web_search_call` / `file_search_call` output item of a Responses call is one call
 * ("Web search: $10 / 1k calls", "File search: $2.50 / 1k calls", platform.openai.com/docs/pricing).
 */
import type { TokenUsage } from "../usage";
import { type Bill, type CallEvidence, firstMessage, isRecord, responseMetadata } from "./evidence";

const PER_CALL_TOOLS: Record<string, string> = { web_search_call: "web_search", file_search_call: "file_search" };

export function openAIBill(usage: TokenUsage, evidence: CallEvidence): Bill {
  const bill: Bill = { usage, notes: [] };
  // The Responses API's output items: response_metadata.output (from the response, or from
  // response.completed when streamed); each hosted tool call is also in additional_kwargs.tool_outputs.
  const metadata = responseMetadata(evidence.output);
  const kwargs = firstMessage(evidence.output)?.additional_kwargs;
  const items = Array.isArray(metadata.output) ? metadata.output : isRecord(kwargs) && Array.isArray(kwargs.tool_outputs) ? kwargs.tool_outputs : [];
  const counts: Record<string, number> = {};
  const seen = new Set<unknown>();
  for (const item of items) {
    if (!isRecord(item)) continue;
    const tool = PER_CALL_TOOLS[String(item.type)];
    // Streamed, an item may be listed more than once as it progresses: count each id once.
    if (tool === undefined || (item.id !== undefined && seen.has(item.id))) continue;
    seen.add(item.id);
    counts[tool] = (counts[tool] ?? 0) + 1;
  }
  if (Object.keys(counts).length > 0) bill.serverTools = counts;
  return bill;
}
