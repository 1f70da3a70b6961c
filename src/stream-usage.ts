import { createRequire } from "node:module";
import type { UsageMetadata } from "@langchain/core/messages";
import type { TokenUsage } from "./usage";

/**
 * Watches the usage a streamed Anthropic run reports along the way, to undo a known over-count.
 *
 * `@langchain/anthropic` adds `message_start`'s `output_tokens` (usually 1) to `message_delta`'s
 * final, cumulative `output_tokens`, so a streamed call reports more output than Anthropic billed.
 * It does so on both of LangChain's streaming paths:
 * - chunks (`.stream()`, `streaming: true`, LangGraph's "messages" mode): each chunk's usage comes
 *   through `handleLLMNewToken`; the last one holds the true count;
 * - stream events (`handleChatModelStreamEvent`, e.g. LangGraph `streamEvents` v3): `message-start`
 *   carries the start count and `message-finish` the inflated sum.
 */
export class StreamUsageTracker {
  chunks = 0;
  chunkOutputSum = 0;
  lastChunkOutput = 0;
  startEventOutput: number | undefined;
  finishEventOutput: number | undefined;

  observeChunk(usage: UsageMetadata): void {
    this.chunks++;
    this.chunkOutputSum += usage.output_tokens ?? 0;
    this.lastChunkOutput = usage.output_tokens ?? 0;
  }

  observeEvent(event: { event: string; usage?: Partial<UsageMetadata> }): void {
    const output = event.usage?.output_tokens;
    if (typeof output !== "number") return;
    if (event.event === "message-start") this.startEventOutput = output;
    else if (event.event === "message-finish" || event.event === "usage") this.finishEventOutput = output;
  }
}

/**
 * Returns the usage with the streamed output corrected where the over-count is shown to be present;
 * anything else is left as reported, so a fixed integration is never under-billed.
 */
export function correctStreamedUsage(usage: TokenUsage, stream: StreamUsageTracker): TokenUsage {
  const output = trueOutput(usage.output, stream);
  if (output === usage.output) return usage;
  const corrected: TokenUsage = { ...usage, output };
  if (corrected.reasoning !== undefined && corrected.reasoning > output) delete corrected.reasoning;
  return corrected;
}

function trueOutput(reported: number, stream: StreamUsageTracker): number {
  // Chunks: the reported count is the sum of all chunks, and the last chunk alone is the true count.
  if (stream.chunks >= 2 && reported === stream.chunkOutputSum && reported > stream.lastChunkOutput) {
    return stream.lastChunkOutput;
  }
  // Stream events: the parts are not visible, so the correction holds only for releases known to sum.
  const start = stream.startEventOutput;
  if (stream.chunks === 0 && start !== undefined && start > 0 && reported === stream.finishEventOutput && reported > start) {
    if (streamEventsOverCount()) return reported - start;
  }
  return reported;
}

let overCounts: boolean | undefined;

/**
 * Whether the installed `@langchain/anthropic` is a release verified to add `message_start`'s output to
 * the final count on the stream-events path (1.x up to 1.5.11, the newest checked). A newer or
 * unknown release is left alone: over-billing by a token beats under-billing if it was fixed.
 */
export function streamEventsOverCount(): boolean {
  if (overCounts === undefined) {
    overCounts = false;
    try {
      const version: unknown = anthropicPackage()?.version;
      const [major, minor, patch] = String(version).split(/[.-]/).map(Number);
      overCounts = major === 1 && (minor! < 5 || (minor === 5 && patch! <= 11));
    } catch {
      overCounts = false;
    }
  }
  return overCounts;
}

/** The user's @langchain/anthropic: resolved from this package, else (pnpm, bundles) from the app. */
function anthropicPackage(): { version?: unknown } | undefined {
  for (const base of [import.meta.url, `${process.cwd()}/package.json`]) {
    try {
      return createRequire(base)("@langchain/anthropic/package.json");
    } catch {
      // Try the next place.
    }
  }
  return undefined;
}
