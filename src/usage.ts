import type { LLMResult } from "@langchain/core/outputs";

/** Token counts for one model run, as the provider reported them. */
export interface TokenUsage {
  /** All input tokens, cache reads and writes included (LangChain's convention for every provider). */
  input: number;
  output: number;
  /** Input tokens read from the provider's prompt cache (part of `input`). */
  cacheRead?: number;
  /** Input tokens written to the provider's prompt cache (part of `input`). */
  cacheWrite?: number;
  /** Reasoning tokens (part of `output`). */
  reasoning?: number;
  /** True when the counts are LangChain's estimate, not the provider's report. */
  estimated: boolean;
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

function fromUsageMetadata(usage: Record<string, unknown>): UsageResult {
  const counts = inputAndOutput(usage.input_tokens, usage.output_tokens, usage.total_tokens);
  if (counts === undefined) return invalid("usage_metadata", usage.input_tokens, usage.output_tokens);
  const [input, output] = counts;
  const inputDetails = isRecord(usage.input_token_details) ? usage.input_token_details : {};
  const outputDetails = isRecord(usage.output_token_details) ? usage.output_token_details : {};
  return {
    ok: true,
    where: "usage_metadata",
    usage: withDetails(
      { input, output, estimated: false },
      count(inputDetails.cache_read),
      count(inputDetails.cache_creation),
      count(outputDetails.reasoning),
    ),
  };
}

function fromTokenUsage(
  usage: Record<string, unknown>,
  where: "tokenUsage" | "estimatedTokenUsage",
): UsageResult {
  const counts = inputAndOutput(
    usage.promptTokens ?? usage.prompt_tokens ?? usage.input_tokens,
    usage.completionTokens ?? usage.completion_tokens ?? usage.output_tokens,
    usage.totalTokens ?? usage.total_tokens,
  );
  if (counts === undefined) return invalid(`llmOutput.${where}`, usage.promptTokens, usage.completionTokens);
  const [input, output] = counts;
  return { ok: true, where, usage: { input, output, estimated: where === "estimatedTokenUsage" } };
}

/** Details are kept only when they fit inside the totals they are part of. */
function withDetails(
  usage: TokenUsage,
  cacheRead: number | undefined,
  cacheWrite: number | undefined,
  reasoning: number | undefined,
): TokenUsage {
  if ((cacheRead ?? 0) + (cacheWrite ?? 0) <= usage.input) {
    if (cacheRead) usage.cacheRead = cacheRead;
    if (cacheWrite) usage.cacheWrite = cacheWrite;
  }
  if (reasoning && reasoning <= usage.output) usage.reasoning = reasoning;
  return usage;
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
function count(value: unknown): number | undefined {
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

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
