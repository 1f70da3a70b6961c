import type { LLMResult } from "@langchain/core/outputs";

/**
 * Token counts for one model run, as the provider billed them. Every detail is part of a total:
 * cache reads, cache writes and audio input are part of `input`; reasoning and audio output of `output`.
 */
export interface TokenUsage {
  /** All input tokens, cache reads and writes included (LangChain's convention for every provider). */
  input: number;
  /** All output tokens, reasoning (thinking) included. */
  output: number;
  /** Input tokens read from the provider's prompt cache. */
  cacheRead?: number;
  /** Input tokens written to the provider's prompt cache, whatever their time to live. */
  cacheWrite?: number;
  /** Of `cacheWrite`, those written for 5 minutes (Anthropic, Bedrock), when the provider says. */
  cacheWrite5m?: number;
  /** Of `cacheWrite`, those written for 1 hour (priced higher than 5-minute writes), when the provider says. */
  cacheWrite1h?: number;
  /** Input tokens that were audio (priced apart from text). */
  audioInput?: number;
  /** Reasoning / thinking output tokens. */
  reasoning?: number;
  /** Output tokens that were audio (priced apart from text). */
  audioOutput?: number;
  /** The input count is an estimate, not the provider's report. */
  inputEstimated: boolean;
  /** The output count is an estimate, not the provider's report. */
  outputEstimated: boolean;
}

/** Why a run's usage could not be read: each is a warning for the user, never an exception. */
export type UsageProblem = "missing" | "invalid";

export type UsageResult =
  | { ok: true; usage: TokenUsage; where: "usage_metadata" | "tokenUsage" | "estimatedTokenUsage" }
  | { ok: false; problem: UsageProblem; detail: string };

/**
 * Reads a run's token usage from LangChain's `LLMResult`, preferring the provider's own report:
 * `usage_metadata` on the message, then `llmOutput.tokenUsage`, then `llmOutput.estimatedTokenUsage`.
 * Usage is taken once per run: with `n > 1` every generation carries the same object.
 */
export function extractUsage(output: LLMResult | undefined): UsageResult {
  const fromMessage = findUsageMetadata(output?.generations);
  if (fromMessage !== undefined) return fromUsageMetadata(fromMessage);

  const llmOutput = isRecord(output?.llmOutput) ? output.llmOutput : undefined;
  if (isRecord(llmOutput?.tokenUsage)) return fromTokenUsage(llmOutput.tokenUsage, "tokenUsage");
  if (isRecord(llmOutput?.estimatedTokenUsage)) {
    return fromTokenUsage(llmOutput.estimatedTokenUsage, "estimatedTokenUsage");
  }
  return { ok: false, problem: "missing", detail: "the model reported no token usage" };
}

function findUsageMetadata(generations: unknown): Record<string, unknown> | undefined {
  if (!Array.isArray(generations)) return undefined;
  for (const batch of generations) {
    if (!Array.isArray(batch)) continue;
    for (const generation of batch) {
      const usage = generation?.message?.usage_metadata;
      if (isRecord(usage)) return usage;
    }
  }
  return undefined;
}

/** Reads LangChain's `UsageMetadata` (input_tokens, output_tokens, total_tokens and their details). */
export function fromUsageMetadata(usage: Record<string, unknown>): UsageResult {
  const counts = inputAndOutput(usage.input_tokens, usage.output_tokens, usage.total_tokens);
  if (counts === undefined) return invalid("usage_metadata", usage.input_tokens, usage.output_tokens);
  const [input, output] = counts;
  const inputDetails = isRecord(usage.input_token_details) ? usage.input_token_details : {};
  const outputDetails = isRecord(usage.output_token_details) ? usage.output_token_details : {};
  return {
    ok: true,
    where: "usage_metadata",
    usage: withDetails(
      { input, output, inputEstimated: false, outputEstimated: false },
      {
        cacheRead: count(inputDetails.cache_read),
        cacheWrite: count(inputDetails.cache_creation),
        // Anthropic-style TTL details, where an integration passes them on.
        cacheWrite5m: count(inputDetails.ephemeral_5m_input_tokens),
        cacheWrite1h: count(inputDetails.ephemeral_1h_input_tokens),
        audioInput: count(inputDetails.audio),
        reasoning: count(outputDetails.reasoning),
        audioOutput: count(outputDetails.audio),
      },
    ),
  };
}

function fromTokenUsage(usage: Record<string, unknown>, where: "tokenUsage" | "estimatedTokenUsage"): UsageResult {
  const counts = inputAndOutput(
    usage.promptTokens ?? usage.prompt_tokens ?? usage.input_tokens,
    usage.completionTokens ?? usage.completion_tokens ?? usage.output_tokens,
    usage.totalTokens ?? usage.total_tokens,
  );
  if (counts === undefined) return invalid(`llmOutput.${where}`, usage.promptTokens, usage.completionTokens);
  const [input, output] = counts;
  const estimated = where === "estimatedTokenUsage";
  return { ok: true, where, usage: { input, output, inputEstimated: estimated, outputEstimated: estimated } };
}

export type UsageDetails = Partial<
  Pick<TokenUsage, "cacheRead" | "cacheWrite" | "cacheWrite5m" | "cacheWrite1h" | "audioInput" | "reasoning" | "audioOutput">
>;

/**
 * Sets the details that fit inside the totals they are part of, and drops the rest: a detail larger
 * than its total is a report we cannot trust, and it must never move tokens between prices.
 */
export function withDetails(usage: TokenUsage, details: UsageDetails): TokenUsage {
  const result: TokenUsage = { input: usage.input, output: usage.output, inputEstimated: usage.inputEstimated, outputEstimated: usage.outputEstimated };
  const { cacheRead, cacheWrite, cacheWrite5m, cacheWrite1h, audioInput, reasoning, audioOutput } = details;
  if ((cacheRead ?? 0) + (cacheWrite ?? 0) <= usage.input) {
    if (cacheRead) result.cacheRead = cacheRead;
    if (cacheWrite) {
      result.cacheWrite = cacheWrite;
      // The TTL split counts only when it accounts for every write.
      if ((cacheWrite5m ?? 0) + (cacheWrite1h ?? 0) === cacheWrite) {
        if (cacheWrite5m) result.cacheWrite5m = cacheWrite5m;
        if (cacheWrite1h) result.cacheWrite1h = cacheWrite1h;
      }
    }
  }
  if (audioInput && audioInput <= usage.input) result.audioInput = audioInput;
  if (reasoning && reasoning <= usage.output) result.reasoning = reasoning;
  if (audioOutput && audioOutput <= usage.output) result.audioOutput = audioOutput;
  return result;
}

/** The details of a usage, for re-applying them to corrected totals. */
export function detailsOf(usage: TokenUsage): UsageDetails {
  const { cacheRead, cacheWrite, cacheWrite5m, cacheWrite1h, audioInput, reasoning, audioOutput } = usage;
  return { cacheRead, cacheWrite, cacheWrite5m, cacheWrite1h, audioInput, reasoning, audioOutput };
}

/**
 * Both counts, or undefined. A count left out beside a total is the total's remainder:
 * `@langchain/openai` drops counts of 0 (`completion_tokens: 0` leaves no `output_tokens`), and
 * the input of such a call must still be billed. A value that is present but no count is never guessed.
 */
function inputAndOutput(rawInput: unknown, rawOutput: unknown, rawTotal: unknown): [number, number] | undefined {
  let input = count(rawInput);
  let output = count(rawOutput);
  const total = count(rawTotal);
  if (input !== undefined && output === undefined && rawOutput == null && total !== undefined && total >= input) output = total - input;
  else if (output !== undefined && input === undefined && rawInput == null && total !== undefined && total >= output) input = total - output;
  return input === undefined || output === undefined ? undefined : [input, output];
}

/** A token count is a non-negative safe integer; a decimal string of one is accepted too. */
export function count(value: unknown): number | undefined {
  const n = typeof value === "string" && /^\d+$/.test(value) ? Number(value) : value;
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

function invalid(where: string, input: unknown, output: unknown): UsageResult {
  return {
    ok: false,
    problem: "invalid",
    detail: `${where} has no usable token counts (input ${describe(input)}, output ${describe(output)})`,
  };
}

function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value.slice(0, 40));
  if (typeof value === "bigint") return `${value}n`;
  return String(value);
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
