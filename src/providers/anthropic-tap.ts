/**
 * An opt-in fetch wrapper for `@anthropic-ai/sdk` that reads the usage of streamed Messages on the
 * wire, below LangChain. `@langchain/anthropic` 1.5 drops `message_delta`'s usage except
 * `output_tokens` (`_makeMessageChunkFromAnthropicEvent` in dist/utils/message_outputs.js), yet that
 * usage is cumulative and authoritative: after a server tool ran, its `input_tokens` and cache counts
 * exceed `message_start`'s, and `server_tool_use` counts the requests (`MessageDeltaUsage` in
 * @anthropic-ai/sdk 0.122 resources/messages/messages.d.ts: "The cumulative number of input tokens").
 *
 *   new ChatAnthropic({ model, clientOptions: { fetch: handler.anthropicFetch() } })
 *
 * The bytes pass through unchanged; only `message_start` and `message_delta` data lines are parsed.
 */

/** The usage fields the tap keeps, as Anthropic sends them. */
export interface TappedUsage {
  /** `message_start.message.usage`. */
  start?: Record<string, unknown>;
  /** The last `message_delta.usage` (cumulative). */
  delta?: Record<string, unknown>;
}

/** Streams remembered at once; a stream's usage is taken when its run ends. */
const MAX_REMEMBERED = 1000;

export class AnthropicUsageTap {
  readonly #byMessage = new Map<string, TappedUsage>();

  /** The recorded usage of a message, removed from the tap. */
  take(messageId: string | undefined): TappedUsage | undefined {
    if (messageId === undefined) return undefined;
    const tapped = this.#byMessage.get(messageId);
    this.#byMessage.delete(messageId);
    return tapped;
  }

  /** A fetch that records the usage of every Messages stream it carries. */
  fetch(base: typeof fetch = globalThis.fetch): typeof fetch {
    const tapped = async (input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]): Promise<Response> => {
      const response = await base(input, init);
      const contentType = response.headers.get("content-type") ?? "";
      if (!contentType.includes("text/event-stream") || response.body === null) return response;
      const parser = new SseUsageParser((messageId, usage) => this.#record(messageId, usage));
      const body = response.body.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, controller) {
            controller.enqueue(chunk);
            try {
              parser.push(chunk);
            } catch {
              // A parse problem costs the correction, never the user's stream.
            }
          },
        }),
      );
      return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
    };
    return tapped as typeof fetch;
  }

  #record(messageId: string, usage: TappedUsage): void {
    this.#byMessage.delete(messageId);
    this.#byMessage.set(messageId, usage);
    if (this.#byMessage.size > MAX_REMEMBERED) this.#byMessage.delete(this.#byMessage.keys().next().value as string);
  }
}

/** Incremental SSE parsing of the two usage-bearing Anthropic events (named events: `event:` + `data:`). */
class SseUsageParser {
  readonly #decoder = new TextDecoder();
  #buffer = "";
  #messageId: string | undefined;
  readonly #usage: TappedUsage = {};

  constructor(readonly onUsage: (messageId: string, usage: TappedUsage) => void) {}

  push(bytes: Uint8Array): void {
    this.#buffer += this.#decoder.decode(bytes, { stream: true });
    for (let end = this.#boundary(); end !== -1; end = this.#boundary()) {
      const block = this.#buffer.slice(0, end);
      this.#buffer = this.#buffer.slice(end).replace(/^(\r?\n){2}/, "");
      this.#onBlock(block);
    }
  }

  #boundary(): number {
    const lf = this.#buffer.indexOf("\n\n");
    const crlf = this.#buffer.indexOf("\r\n\r\n");
    return lf === -1 ? crlf : crlf === -1 ? lf : Math.min(lf, crlf);
  }

  #onBlock(block: string): void {
    let event = "";
    let data = "";
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data += line.slice(5).trim();
    }
    if (event !== "message_start" && event !== "message_delta") return;
    const parsed = JSON.parse(data) as { message?: { id?: unknown; usage?: unknown }; usage?: unknown };
    if (event === "message_start") {
      if (typeof parsed.message?.id === "string") this.#messageId = parsed.message.id;
      if (isRecord(parsed.message?.usage)) this.#usage.start = parsed.message.usage;
    } else if (isRecord(parsed.usage)) {
      this.#usage.delta = parsed.usage;
    }
    if (this.#messageId !== undefined) this.onUsage(this.#messageId, { ...this.#usage });
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
