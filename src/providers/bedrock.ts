/**
 * Amazon Bedrock Converse through `@langchain/aws` 1.4: `inputTokens` leaves cache reads and writes
 * out and the integration adds them back (dist/utils/message_outputs.js), so the counts are exact.
 * `TokenUsage.cacheDetails` splits the writes by TTL, "5m" and "1h" (@aws-sdk/client-bedrock-runtime
 * dist-types/models/models_0.d.ts `CacheDetail`), priced apart; it rides in response_metadata
 * (`usage` on Converse, `metadata.usage` on ConverseStream).
 */
import { count, detailsOf, withDetails, type TokenUsage } from "../usage";
import { type Bill, type CallEvidence, isRecord, responseMetadata } from "./evidence";

export function bedrockBill(usage: TokenUsage, evidence: CallEvidence): Bill {
  const metadata = responseMetadata(evidence.output);
  const raw = isRecord(metadata.usage) ? metadata.usage : isRecord(metadata.metadata) && isRecord(metadata.metadata.usage) ? metadata.metadata.usage : {};
  const bill: Bill = { usage, notes: [] };
  if (!Array.isArray(raw.cacheDetails)) return bill;
  let fiveMinutes = 0;
  let oneHour = 0;
  for (const detail of raw.cacheDetails) {
    if (!isRecord(detail)) continue;
    if (detail.ttl === "5m") fiveMinutes += count(detail.inputTokens) ?? 0;
    else if (detail.ttl === "1h") oneHour += count(detail.inputTokens) ?? 0;
  }
  bill.usage = withDetails(usage, { ...detailsOf(usage), cacheWrite5m: fiveMinutes, cacheWrite1h: oneHour });
  return bill;
}
