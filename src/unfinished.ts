/**
 * The bill of a call that did not finish but that the provider charged: an aborted or broken stream,
 * an abort LangChain reports with the partial message. The provider's own counts are used where it
 * sent any (Anthropic's `message_start` carries the whole input, Gemini's chunks their deltas); the
 * rest is estimated from what was sent and received, and flagged.
 */
import type { CallStatus } from "./events";
import { estimateInput, estimateOutput, type SentPrompt, type TokenEstimator } from "./estimate";
import type { Bill } from "./providers";
import type { StreamObserver } from "./stream-observer";
import { count, fromUsageMetadata, withDetails, type TokenUsage } from "./usage";

export interface UnfinishedCall {
  stream: StreamObserver;
  sent: SentPrompt;
  status: CallStatus;
  /** `ModelAbortError.partialOutput`: the message aggregated before the abort, where core kept it. */
  partial?: { usage_metadata?: unknown; content?: unknown };
}

/** The bill, or undefined when nothing shows the provider began to answer (then it billed nothing). */
export function unfinishedBill(call: UnfinishedCall, estimator: TokenEstimator): Bill | undefined {
  const { stream, sent, status, partial } = call;
  const partialUsage = typeof partial?.usage_metadata === "object" && partial.usage_metadata !== null ? partial.usage_metadata : undefined;
  if (!stream.seenAnything && partialUsage === undefined && !hasContent(partial?.content)) return undefined;

  const reported = partialUsage ?? stream.firstUsage ?? stream.startEventUsage;
  const read = reported !== undefined ? fromUsageMetadata({ output_tokens: 0, ...reported } as Record<string, unknown>) : undefined;
  const providerInput = read?.ok ? read.usage.input : 0;
  const received = estimateOutput(stream.receivedChars, stream.received, estimator);
  const providerOutput = count(stream.lastUsage?.output_tokens) ?? 0;

  let usage: TokenUsage = {
    input: providerInput > 0 ? providerInput : estimateInput(sent, estimator),
    output: Math.max(received, providerOutput),
    inputEstimated: !(providerInput > 0),
    // The provider may have generated more than reached the client before the stream stopped.
    outputEstimated: true,
  };
  if (read?.ok && providerInput > 0) usage = withDetails(usage, { cacheRead: read.usage.cacheRead, cacheWrite: read.usage.cacheWrite });
  const notes = [
    `a call that did not finish (${status}) was billed from ${usage.inputEstimated ? "estimates" : "the provider's input count and an output estimate"}, flagged \`estimated: true\``,
  ];
  return { usage, status, responseModel: stream.model, notes };
}

function hasContent(content: unknown): boolean {
  return (typeof content === "string" && content.length > 0) || (Array.isArray(content) && content.length > 0);
}
