/**
 * How much a call can use before it is made: its prompt's tokens (estimated) and the most it may
 * generate (its `maxTokens`, read from the invocation parameters the integration reports). The
 * guard reserves that worst case; `estimate()` shows it, with the cost where prices are known.
 *
 * Two token counters:
 * - `o200k_base` counts exactly as OpenAI's GPT-4o family does, with js-tiktoken's bundled ranks (no
 *   download). It is loaded on first use (about a second and tens of MB) and costs tens of µs per
 *   hundred characters, so it is the preview's default, not the hot path's;
 * - `fastTokenEstimate` walks the text once, counting words, digit groups, punctuation and non-Latin
 *   characters. Against o200k_base (test/budget/estimate.test.ts) it lands within 1.05-1.25x for
 *   prose, code, JSON, YAML, German, Cyrillic, CJK and emoji, and under for random ids (0.9x) and
 *   base64 (0.6x), where chars/4 falls to 0.3x on CJK and 0.4x on ids; it costs a few µs per thousand
 *   characters (bench/budget.ts), and each message is counted once (an agent's history repeats the
 *   same message objects from call to call).
 */
import { createRequire } from "node:module";
import { coerceMessageLikeToMessage, type BaseMessage, type BaseMessageLike } from "@langchain/core/messages";
import { estimateMessage, estimateTools, PROMPT_OVERHEAD_TOKENS, type SentPrompt, type TokenEstimator } from "../estimate";
import { priceOf, worstCaseCost, type ModelPrices } from "./prices";

/** Output a call may generate when neither the call nor the model says. */
export const DEFAULT_MAX_OUTPUT_TOKENS = 4096;

/**
 * A fast, slightly generous token estimate for o200k/cl100k-style tokenizers: about one token per
 * short word (long words and camelCase parts count more), one per three digits, about one per
 * punctuation mark, one per CJK character, one per three other non-Latin letters, two per emoji.
 */
export const fastTokenEstimate: TokenEstimator = (text) => {
  let tokens = 0;
  let word = 0; // letters of the current word part
  let digits = 0;
  let other = 0; // two-byte UTF-8 letters (accented Latin, Cyrillic, Greek, Arabic, Hebrew)
  let previous = 0; // 1 lower, 2 upper, 3 digit, 4 space, 5 newline, 6 punctuation, 7 two-byte, 8 other
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 97 && c <= 122) {
      if (previous !== 1 && previous !== 2) {
        tokens += wordTokens(word) + Math.ceil(digits / 3) + Math.ceil(other / 3);
        word = digits = other = 0;
      }
      word++;
      previous = 1;
      continue;
    }
    if (c >= 65 && c <= 90) {
      // An upper-case letter after a lower-case one starts a new part (camelCase).
      if (previous !== 2) {
        tokens += wordTokens(word) + Math.ceil(digits / 3) + Math.ceil(other / 3);
        word = digits = other = 0;
      }
      word++;
      previous = 2;
      continue;
    }
    tokens += wordTokens(word);
    word = 0;
    if (c >= 48 && c <= 57) {
      tokens += Math.ceil(other / 3);
      other = 0;
      digits++;
      previous = 3;
      continue;
    }
    tokens += Math.ceil(digits / 3);
    digits = 0;
    if (c === 32) {
      // A space joins the next word; runs of spaces (indentation) merge into few tokens.
      if (previous === 4) tokens += 0.1;
      previous = 4;
      continue;
    }
    if (c < 128) {
      tokens += Math.ceil(other / 3);
      other = 0;
      if (c === 10 || c === 13) {
        if (previous !== 5) tokens += 1;
        previous = 5;
      } else {
        // Punctuation after punctuation often merges (`});`, `://`, `": "`).
        tokens += previous === 6 ? 0.25 : 1;
        previous = 6;
      }
      continue;
    }
    if (c < 0x800) {
      other++;
      previous = 7;
      continue;
    }
    tokens += Math.ceil(other / 3);
    other = 0;
    if (c >= 0xd800 && c < 0xdc00) {
      tokens += 2; // a character outside the BMP (emoji): its surrogate pair
      i++;
    } else {
      tokens += 1;
    }
    previous = 8;
  }
  tokens += wordTokens(word) + Math.ceil(digits / 3) + Math.ceil(other / 3);
  return Math.ceil(tokens);
};

function wordTokens(letters: number): number {
  return letters === 0 ? 0 : letters <= 8 ? 1 : 1 + Math.ceil((letters - 8) / 5);
}

let o200k: TokenEstimator | undefined;

/** Exact o200k_base counts (GPT-4o, GPT-4.1, o-series), from js-tiktoken's bundled ranks; loaded on first use. */
export function o200kTokenCount(text: string): number {
  o200k ??= loadO200k();
  return o200k(text);
}

function loadO200k(): TokenEstimator {
  // Loaded lazily and synchronously: the ranks are megabytes that only estimate() and the
  // `estimateTokens: "o200k_base"` option need.
  const require = createRequire(import.meta.url);
  const { Tiktoken } = require("js-tiktoken/lite") as typeof import("js-tiktoken/lite");
  const ranksModule = require("js-tiktoken/ranks/o200k_base") as { default?: unknown };
  const ranks = (ranksModule.default ?? ranksModule) as ConstructorParameters<typeof Tiktoken>[0];
  const encoder = new Tiktoken(ranks);
  return (text) => encoder.encode(text, "all").length;
}

/** How the guard or `estimate()` counts tokens: a name, or your own counter. */
export type TokenCounter = "fast" | "o200k_base" | TokenEstimator;

export function counterFor(counter: TokenCounter): TokenEstimator {
  if (counter === "fast") return fastTokenEstimate;
  if (counter === "o200k_base") return o200kTokenCount;
  return counter;
}

/** Messages shorter than this (characters) are counted at every call rather than remembered. */
const SHORT_MESSAGE = 256;

/**
 * Prompt tokens of a call, each message counted once per counter: an agent sends its history again
 * on every call, and the message objects are the same ones (LangChain passes them through).
 */
export class PromptEstimator {
  readonly #count: TokenEstimator;
  readonly #seen = new WeakMap<object, { content: unknown; tokens: number }>();

  constructor(counter: TokenEstimator) {
    this.#count = counter;
  }

  tokens(sent: SentPrompt): number {
    let tokens = PROMPT_OVERHEAD_TOKENS;
    for (const message of sent.messages ?? []) tokens += this.#message(message);
    for (const prompt of sent.prompts ?? []) tokens += this.#count(prompt);
    return tokens + estimateTools(sent.tools, this.#count);
  }

  #message(message: unknown): number {
    if (typeof message !== "object" || message === null) return estimateMessage(message, this.#count);
    const content = (message as { content?: unknown }).content;
    // A short text is counted faster than it is looked up (and a one-off message would only fill the cache).
    if (typeof content === "string" && content.length < SHORT_MESSAGE) return estimateMessage(message, this.#count);
    const known = this.#seen.get(message);
    // The same object with the same content (a message changed in place is counted again).
    if (known !== undefined && known.content === content) return known.tokens;
    const tokens = estimateMessage(message, this.#count);
    this.#seen.set(message, { content, tokens });
    return tokens;
  }
}

/** The most a call may generate, from its invocation parameters: per completion and how many completions. */
export interface OutputLimit {
  /** Undefined when the call sets no limit. */
  maxTokens: number | undefined;
  completions: number;
}

/**
 * Reads the output limit each integration puts in its invocation parameters: OpenAI
 * `max_completion_tokens` / `max_tokens` (chat completions) and `max_output_tokens` (Responses),
 * Anthropic `max_tokens`, Google `maxOutputTokens`, Mistral `maxTokens`, Bedrock
 * `inferenceConfig.maxTokens`, Ollama `options.num_predict`; then LangSmith's `ls_max_tokens`.
 * Completions: `n`, `numCompletions`, `candidateCount`.
 */
export function outputLimit(extraParams: Record<string, unknown> | undefined, metadata: Record<string, unknown> | undefined): OutputLimit {
  const params = record(extraParams?.invocation_params);
  const generation = record(params?.generationConfig);
  const maxTokens =
    positive(params?.max_completion_tokens) ??
    positive(params?.max_tokens) ??
    positive(params?.max_output_tokens) ??
    positive(params?.maxOutputTokens) ??
    positive(generation?.maxOutputTokens) ??
    positive(params?.maxTokens) ??
    positive(record(params?.inferenceConfig)?.maxTokens) ??
    positive(record(params?.options)?.num_predict) ??
    positive(metadata?.ls_max_tokens);
  const completions = positive(params?.n) ?? positive(params?.numCompletions) ?? positive(params?.candidateCount) ?? positive(generation?.candidateCount) ?? 1;
  return { maxTokens, completions };
}

function record(value: unknown): Record<string, unknown> | undefined {
  return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : undefined;
}

function positive(value: unknown): number | undefined {
  return typeof value === "number" && Number.isFinite(value) && value > 0 ? Math.ceil(value) : undefined;
}

// ---- the preview

/** What `estimate()` needs to know about the call. */
export interface EstimateOptions {
  /** The model: its name (to find its price), or the chat model itself (its name and `maxTokens` are read from it). @default none */
  model?: string | { invocationParams?: (options?: never) => unknown; model?: unknown; modelName?: unknown };
  /** The most the call may generate. @default the model's own limit, else 4096 */
  maxOutputTokens?: number;
  /** Completions asked for (`n`). @default 1 */
  completions?: number;
  /** Tool definitions sent with the call (the provider counts them as input). @default none */
  tools?: unknown;
  /** Prices per token by model, for the cost. @default none (no cost) */
  prices?: ModelPrices;
  /** How to count tokens. @default "o200k_base" (exact for OpenAI's current models, approximate for others) */
  tokenizer?: TokenCounter;
}

/** A call's size before it is made. */
export interface CallEstimate {
  /** The model the estimate is for, when known. */
  model: string | undefined;
  /** Estimated prompt tokens (messages, their framing, tool definitions). */
  inputTokens: number;
  /** The most it may generate (all completions). */
  maxOutputTokens: number;
  /** inputTokens + maxOutputTokens: what the guard reserves for it. */
  worstCaseTokens: number;
  /** In the prices' unit, when the model has a price: the prompt's cost, the output's at most, and both. */
  cost?: { input: number; maxOutput: number; worstCase: number };
}

/**
 * The preview: how many tokens a call would send, how many it could use at worst, and what that
 * could cost. No network, no model call.
 *
 * @example
 * const preview = estimate([new HumanMessage(question)], { model: chatModel, prices: { "gpt-4o-mini": { input: 0.15e-6, output: 0.6e-6 } } });
 * if (preview.cost && preview.cost.worstCase > 0.01) askTheUserFirst();
 */
export function estimate(input: string | readonly BaseMessageLike[], options: EstimateOptions = {}): CallEstimate {
  const messages: BaseMessage[] = typeof input === "string" ? [coerceMessageLikeToMessage(["human", input])] : input.map((m) => coerceMessageLikeToMessage(m));
  const counter = counterFor(options.tokenizer ?? "o200k_base");
  const { name, limit } = describeModel(options.model);
  const inputTokens = new PromptEstimator(counter).tokens({ messages, tools: options.tools });
  const perCompletion = options.maxOutputTokens ?? limit.maxTokens ?? DEFAULT_MAX_OUTPUT_TOKENS;
  const maxOutputTokens = perCompletion * (options.completions ?? limit.completions);
  const result: CallEstimate = { model: name, inputTokens, maxOutputTokens, worstCaseTokens: inputTokens + maxOutputTokens };
  const price = priceOf(options.prices, name, undefined);
  if (price !== undefined) {
    const inputCost = worstCaseCost(price, inputTokens, 0);
    const outputCost = worstCaseCost(price, 0, maxOutputTokens);
    result.cost = { input: inputCost, maxOutput: outputCost, worstCase: inputCost + outputCost };
  }
  return result;
}

function describeModel(model: EstimateOptions["model"]): { name: string | undefined; limit: OutputLimit } {
  if (model === undefined || typeof model === "string") return { name: model, limit: { maxTokens: undefined, completions: 1 } };
  let params: unknown;
  try {
    params = model.invocationParams?.();
  } catch {
    params = undefined;
  }
  const name = typeof model.model === "string" ? model.model : typeof model.modelName === "string" ? model.modelName : undefined;
  return { name, limit: outputLimit({ invocation_params: params }, undefined) };
}
