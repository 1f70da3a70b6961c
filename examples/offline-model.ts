/**
 * An offline stand-in for a chat model, so the example runs with no account and no network.
 * Its answers are simple, but its token counts are real: it counts with OpenAI's o200k_base
 * tokenizer (bundled with js-tiktoken, nothing is downloaded), the way the API counts chat input,
 * and reports them as `usage_metadata` like any LangChain integration.
 */
import { BaseChatModel, type BaseChatModelParams } from "@langchain/core/language_models/chat_models";
import { AIMessage, AIMessageChunk, type BaseMessage, type UsageMetadata } from "@langchain/core/messages";
import { ChatGenerationChunk, type ChatResult } from "@langchain/core/outputs";
import type { CallbackManagerForLLMRun } from "@langchain/core/callbacks/manager";
import { Tiktoken } from "js-tiktoken/lite";
import o200k_base from "js-tiktoken/ranks/o200k_base";

// Built on first use: it takes a second and a half to build, and a run with a real model needs none.
let encoder: Tiktoken | undefined;
/**
 * OFFLINE_ROUGH_COUNTS=1 (for the tests of how the example ends, not for users): about 4 characters a
 * token, without building the tokenizer.
 */
const rough = process.env.OFFLINE_ROUGH_COUNTS === "1";
const tokenizer = () => (encoder ??= new Tiktoken(o200k_base));
const count = (text: string) => (rough ? Math.ceil(text.length / 4) : tokenizer().encode(text).length);

/** Tokens as OpenAI counts a chat request: each message costs 3 framing tokens, the reply 3 more. */
export function countChatTokens(messages: BaseMessage[]): number {
  let tokens = 3;
  for (const message of messages) tokens += 3 + count(`${message.getType()}\n${message.text}`);
  return tokens;
}

export function countTokens(text: string): number {
  return count(text);
}

/** The text cut to at most `maxTokens` tokens, as a model stops at its limit. */
function truncate(text: string, maxTokens: number): string {
  if (rough) return text.length <= maxTokens * 4 ? text : text.slice(0, maxTokens * 4);
  const tokens = tokenizer().encode(text);
  return tokens.length <= maxTokens ? text : tokenizer().decode(tokens.slice(0, maxTokens));
}

/** A few things it can really answer; everything else gets an honest canned reply. */
export function answer(question: string): string {
  const arithmetic = question.match(/(-?\d+(?:\.\d+)?)\s*([-+*/x×])\s*(-?\d+(?:\.\d+)?)/);
  if (arithmetic) {
    const [, a, op, b] = arithmetic;
    const x = Number(a);
    const y = Number(b);
    const result = op === "+" ? x + y : op === "-" ? x - y : op === "/" ? x / y : x * y;
    return `${a} ${op} ${b} = ${Number.isFinite(result) ? Number(result.toFixed(10)) : "undefined"}.`;
  }
  if (/^\s*(hi|hello|hey)\b/i.test(question)) return "Hello! I'm the offline stand-in model. Ask me some arithmetic.";
  const words = question.trim().split(/\s+/).filter(Boolean).length;
  return `I'm an offline stand-in, so I can't really answer that. Your question had ${words} word${words === 1 ? "" : "s"}; set OPENAI_API_KEY to talk to a real model.`;
}

export interface OfflineChatModelParams extends BaseChatModelParams {
  /** A pause before each streamed word, in ms (default 0): makes a slow answer, for tests that interrupt one. */
  wordDelayMs?: number;
  /** The most tokens an answer may have (default 64): reported as `max_tokens`, as real integrations do, and kept to. */
  maxTokens?: number;
}

export class OfflineChatModel extends BaseChatModel {
  static readonly modelName = "offline-stand-in";
  readonly wordDelayMs: number;
  readonly maxTokens: number;

  constructor({ wordDelayMs = 0, maxTokens = 64, ...params }: OfflineChatModelParams = {}) {
    super(params);
    this.wordDelayMs = wordDelayMs;
    this.maxTokens = maxTokens;
  }

  /** What a call is made with: a budget guard reads `max_tokens` from here to reserve the call's worst case. */
  override invocationParams(): Record<string, unknown> {
    return { model: OfflineChatModel.modelName, max_tokens: this.maxTokens };
  }

  _llmType(): string {
    return "offline";
  }

  override getLsParams(options: this["ParsedCallOptions"]) {
    return { ...super.getLsParams(options), ls_provider: "offline", ls_model_name: OfflineChatModel.modelName };
  }

  #reply(messages: BaseMessage[]) {
    const last = messages.filter((m) => m.getType() === "human").at(-1);
    const text = truncate(answer(last?.text ?? ""), this.maxTokens);
    const input = countChatTokens(messages);
    const output = countTokens(text);
    const usage: UsageMetadata = { input_tokens: input, output_tokens: output, total_tokens: input + output };
    return { text, usage };
  }

  async _generate(messages: BaseMessage[]): Promise<ChatResult> {
    const { text, usage } = this.#reply(messages);
    return { generations: [{ text, message: new AIMessage({ content: text, usage_metadata: usage }) }] };
  }

  /** Streams word by word, then a last chunk with the usage, as OpenAI's usage chunk does. */
  override async *_streamResponseChunks(
    messages: BaseMessage[],
    options: this["ParsedCallOptions"],
    runManager?: CallbackManagerForLLMRun,
  ): AsyncGenerator<ChatGenerationChunk> {
    const { text, usage } = this.#reply(messages);
    for (const piece of text.match(/\S+\s*/g) ?? []) {
      if (this.wordDelayMs > 0) await pause(this.wordDelayMs, options.signal);
      const chunk = new ChatGenerationChunk({ text: piece, message: new AIMessageChunk({ content: piece }) });
      yield chunk;
      await runManager?.handleLLMNewToken(piece, undefined, undefined, undefined, undefined, { chunk });
    }
    yield new ChatGenerationChunk({ text: "", message: new AIMessageChunk({ content: "", usage_metadata: usage }) });
  }
}

/** Waits `ms`, or rejects at once when `signal` aborts (as a real model's request would end). */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
