/**
 * Anthropic Messages, through `@langchain/anthropic`. What Anthropic bills (`Usage` and
 * `MessageDeltaUsage` in @anthropic-ai/sdk 0.122, resources/messages/messages.d.ts):
 * - input = `input_tokens` + `cache_creation_input_tokens` + `cache_read_input_tokens` (LangChain sums
 *   them into `input_tokens`); `cache_creation` splits the writes by TTL, and 1-hour writes are priced
 *   at 2x input against 1.25x for 5-minute ones, so the split is kept;
 * - output = `output_tokens`, thinking included (`output_tokens_details.thinking_tokens` is a part of it);
 * - `server_tool_use.web_search_requests` / `web_fetch_requests`: billed per request;
 * - streamed, `message_delta.usage` is cumulative and final: its `output_tokens` includes
 *   `message_start`'s, and after a server tool its input and cache counts exceed `message_start`'s.
 *
 * What `@langchain/anthropic` 1.5.11 reports instead (dist/utils/message_outputs.js,
 * dist/utils/stream_events.js): streamed output = message_start's count + every message_delta's
 * cumulative count, and message_delta's input, cache and server-tool counts are dropped.
 */
import { estimateOutput, type TokenEstimator } from "../estimate";
import { count, detailsOf, withDetails, type TokenUsage } from "../usage";
import { type Bill, type CallEvidence, firstMessage, isRecord, nonEmpty, responseMetadata } from "./evidence";

/** Server tools Anthropic counts in `server_tool_use` (`ServerToolUsage`): `<name>_requests`. */
const COUNTED_SERVER_TOOLS = ["web_search", "web_fetch"];

export function anthropicBill(usage: TokenUsage, evidence: CallEvidence, estimator: TokenEstimator): Bill {
  const { stream, tapped } = evidence;
  const message = firstMessage(evidence.output);
  const metadata = responseMetadata(evidence.output);
  const bill: Bill = { usage, notes: [] };
  bill.responseModel = stream.model ?? nonEmpty(metadata.model) ?? nonEmpty(isRecord(message?.additional_kwargs) ? message.additional_kwargs.model : undefined);

  if (tapped?.delta !== undefined) return fromTapped(bill, usage, tapped.start, tapped.delta);

  if (stream.chunks === 0 && stream.events === 0) {
    // invoke: the whole raw Usage is in response_metadata.usage.
    const raw = isRecord(metadata.usage) ? metadata.usage : {};
    bill.usage = withTtl(usage, raw.cache_creation);
    const thinking = count(isRecord(raw.output_tokens_details) ? raw.output_tokens_details.thinking_tokens : undefined);
    if (thinking !== undefined) bill.usage = withDetails(bill.usage, { ...detailsOf(bill.usage), reasoning: thinking });
    bill.serverTools = serverToolCounts(raw.server_tool_use);
    return bill;
  }

  // Streamed: message_start's raw usage (cache TTLs) rode along on the first chunk.
  bill.usage = withTtl(usage, (stream.firstRawUsage ?? (isRecord(metadata.usage) ? metadata.usage : {})).cache_creation);
  // A message_delta (a stop reason, or a second usage chunk) marks a stream Anthropic finished.
  if (!stream.finished && stream.usageChunks < 2) {
    // No message_delta arrived: the stream was cut short (an abort the integration swallowed).
    // message_start's input is exact; the output is what was received, estimated.
    bill.status = "aborted";
    bill.usage = {
      ...bill.usage,
      output: Math.max(bill.usage.output, estimateOutput(stream.receivedChars, stream.received, estimator)),
      outputEstimated: true,
    };
    delete bill.usage.reasoning;
    bill.notes.push("the stream ended before Anthropic's final usage (message_delta) arrived: output estimated");
  } else {
    bill.usage = { ...bill.usage, output: streamedOutput(bill.usage.output, evidence) };
  }
  // Server tool requests are recoverable from the content: one server_tool_use block per request.
  const blocks = serverToolBlocks(message?.content);
  if (Object.keys(blocks).length > 0) {
    bill.serverTools = blocks;
    // Their results were fed back to the model as input, counted only in message_delta's usage.
    bill.usage = { ...bill.usage, inputEstimated: true };
    bill.notes.push(
      "a server tool ran in an Anthropic stream, whose final input count @langchain/anthropic drops: input is message_start's count, " +
        "flagged estimated (pass `clientOptions: { fetch: handler.anthropicFetch() }` to ChatAnthropic for the exact count)",
    );
  }
  return bill;
}

/**
 * The streamed output Anthropic billed: message_delta's cumulative count. On the chunk path each
 * chunk carries its own count, so the last one is the answer, provided the reported total is
 * LangChain's sum of the parts (the over-count's signature). On the stream-events path the parts
 * are running sums (start + every delta so far): the last delta is the last increment.
 */
function streamedOutput(reported: number, { stream }: CallEvidence): number {
  if (stream.usageChunks >= 2 && reported === stream.outputSum && stream.lastUsage !== undefined && reported > stream.lastUsage.output_tokens) {
    return stream.lastUsage.output_tokens;
  }
  // The running sum starts at message_start's count (0 or none included): with several deltas it over-counts all the same.
  const [previous, last] = stream.usageSnapshots.length >= 2 ? stream.usageSnapshots : [stream.startEventUsage, stream.usageSnapshots[0]];
  const finish = stream.finishEventUsage?.output_tokens;
  if (stream.chunks === 0 && last?.output_tokens !== undefined && previous?.output_tokens !== undefined) {
    if (reported === finish && reported === last.output_tokens && last.output_tokens > previous.output_tokens) {
      return last.output_tokens - previous.output_tokens;
    }
  }
  return reported;
}

function fromTapped(bill: Bill, reported: TokenUsage, start: Record<string, unknown> | undefined, delta: Record<string, unknown>): Bill {
  // message_delta's counts are cumulative; a null one was not restated, so message_start's holds.
  const field = (name: string) => count(delta[name]) ?? count(start?.[name]) ?? 0;
  const cacheWrite = field("cache_creation_input_tokens");
  const cacheRead = field("cache_read_input_tokens");
  const input = field("input_tokens") + cacheWrite + cacheRead;
  const output = count(delta.output_tokens) ?? reported.output;
  const thinking = count(isRecord(delta.output_tokens_details) ? delta.output_tokens_details.thinking_tokens : undefined);
  let usage = withDetails({ input, output, inputEstimated: false, outputEstimated: false }, { cacheRead, cacheWrite, reasoning: thinking });
  usage = withTtl(usage, start?.cache_creation);
  bill.usage = usage;
  bill.serverTools = serverToolCounts(delta.server_tool_use ?? start?.server_tool_use);
  return bill;
}

/** Adds the 5-minute / 1-hour split of the cache writes (kept only when it accounts for all of them). */
function withTtl(usage: TokenUsage, cacheCreation: unknown): TokenUsage {
  if (!isRecord(cacheCreation)) return usage;
  return withDetails(usage, {
    ...detailsOf(usage),
    cacheWrite5m: count(cacheCreation.ephemeral_5m_input_tokens),
    cacheWrite1h: count(cacheCreation.ephemeral_1h_input_tokens),
  });
}

function serverToolCounts(serverToolUse: unknown): Record<string, number> | undefined {
  if (!isRecord(serverToolUse)) return undefined;
  const counts: Record<string, number> = {};
  for (const [key, value] of Object.entries(serverToolUse)) {
    const n = count(value);
    if (key.endsWith("_requests") && n) counts[key.slice(0, -"_requests".length)] = n;
  }
  return Object.keys(counts).length > 0 ? counts : undefined;
}

/** server_tool_use blocks (chunk path) or server_tool_call blocks (standard v1 content), by tool. */
function serverToolBlocks(content: unknown): Record<string, number> {
  const counts: Record<string, number> = {};
  if (!Array.isArray(content)) return counts;
  for (const block of content) {
    if (!isRecord(block) || (block.type !== "server_tool_use" && block.type !== "server_tool_call")) continue;
    const name = nonEmpty(block.name);
    if (name !== undefined && COUNTED_SERVER_TOOLS.includes(name)) counts[name] = (counts[name] ?? 0) + 1;
  }
  return counts;
}
