/**
 * Token estimates for calls the provider billed but never reported (an aborted stream, a stream that
 * broke): the events carry `estimated: true`, so a plan can price or exclude them.
 */

/** Counts the tokens of a text. */
export type TokenEstimator = (text: string) => number;

/**
 * About four characters a token: OpenAI's rule of thumb for English text, and no tokenizer to ship.
 * Pass `estimateTokens` (a real tokenizer, e.g. js-tiktoken) where closer estimates matter.
 */
export const roughTokenEstimate: TokenEstimator = (text) => Math.ceil(text.length / 4);

/** Per message and per prompt, what chat formats add around the text (OpenAI's documented overhead). */
const PER_MESSAGE = 4;
const PER_PROMPT = 3;

/** What a run sent, kept by reference from its start callback (LangChain holds it anyway). */
export interface SentPrompt {
  messages?: readonly unknown[];
  prompts?: readonly string[];
  /** Tool definitions from the invocation parameters: the provider counts them as input. */
  tools?: unknown;
}

/** Estimated input tokens of what was sent. */
export function estimateInput(sent: SentPrompt, estimator: TokenEstimator): number {
  let tokens = PER_PROMPT;
  for (const message of sent.messages ?? []) tokens += estimateMessage(message, estimator);
  for (const prompt of sent.prompts ?? []) tokens += estimator(prompt);
  tokens += estimateTools(sent.tools, estimator);
  return tokens;
}

/** Estimated tokens of one chat message: its text (tool calls included) and the format's framing. */
export function estimateMessage(message: unknown, estimator: TokenEstimator): number {
  return PER_MESSAGE + estimator(messageText(message));
}

/** Estimated tokens of the tool definitions sent with a call (0 for none). */
export function estimateTools(tools: unknown, estimator: TokenEstimator): number {
  return tools !== undefined && tools !== null ? estimator(safeJson(tools)) : 0;
}

/** What every chat prompt costs besides its messages. */
export const PROMPT_OVERHEAD_TOKENS = PER_PROMPT;

/** Estimated output tokens of what was received. */
export function estimateOutput(receivedChars: number, received: readonly string[] | undefined, estimator: TokenEstimator): number {
  // Without a custom estimator only the character count was kept: the rough estimate needs no more.
  return received !== undefined ? estimator(received.join("")) : Math.ceil(receivedChars / 4);
}

function messageText(message: unknown): string {
  if (typeof message !== "object" || message === null) return String(message ?? "");
  const { content, tool_calls: toolCalls } = message as { content?: unknown; tool_calls?: unknown };
  let text = typeof content === "string" ? content : contentText(content);
  if (Array.isArray(toolCalls) && toolCalls.length > 0) text += safeJson(toolCalls);
  return text;
}

function contentText(content: unknown): string {
  if (!Array.isArray(content)) return "";
  let text = "";
  for (const block of content) {
    if (typeof block === "string") text += block;
    else if (typeof block === "object" && block !== null) {
      const { text: blockText, input, thinking } = block as { text?: unknown; input?: unknown; thinking?: unknown };
      if (typeof blockText === "string") text += blockText;
      if (typeof thinking === "string") text += thinking;
      if (input !== undefined) text += safeJson(input);
    }
  }
  return text;
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? "";
  } catch {
    return "";
  }
}
