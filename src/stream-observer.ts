import type { UsageMetadata } from "@langchain/core/messages";

/** A stream event as `handleChatModelStreamEvent` receives it (typed structurally: @langchain/core 1.2+). */
export interface ObservedStreamEvent {
  event: string;
  id?: string;
  usage?: Partial<UsageMetadata>;
  name?: string;
  payload?: unknown;
  delta?: unknown;
}

/** A streamed chunk as `handleLLMNewToken` receives it in `fields.chunk` (typed structurally). */
interface ObservedChunk {
  generationInfo?: Record<string, unknown>;
  message?: {
    id?: unknown;
    usage_metadata?: UsageMetadata;
    response_metadata?: Record<string, unknown>;
    additional_kwargs?: Record<string, unknown>;
    tool_call_chunks?: Array<{ args?: unknown }>;
  };
}

/**
 * What a run's stream showed along the way: the evidence corrections and estimates are made from.
 * LangChain folds the chunks into one message at the end, summing what it should not (cumulative
 * counts, model names); the parts are only visible here. Cheap per chunk: counters and first values.
 */
export class StreamObserver {
  /** `handleLLMNewToken` calls (a non-streamed call of some integrations makes one too). */
  chunks = 0;
  /** Of those, the ones that carried the chunk itself (a stream's, not a bare token). */
  chunkObjects = 0;
  /** Characters received (text, tool arguments, reasoning), for an estimate of an unfinished call. */
  receivedChars = 0;
  /** The received text itself, kept only when a custom token estimator needs it. */
  readonly received: string[] | undefined;
  /** Usage of the first chunk that had any (Anthropic's `message_start`). */
  firstUsage: UsageMetadata | undefined;
  /** Usage of the last chunk that had any (Anthropic's last `message_delta`: cumulative). */
  lastUsage: UsageMetadata | undefined;
  /** How many chunks carried usage, and the sum of their output counts (what LangChain reports). */
  usageChunks = 0;
  outputSum = 0;
  /** `response_metadata.usage` of the first chunk with one (Anthropic: message_start's raw usage). */
  firstRawUsage: Record<string, unknown> | undefined;
  /** The served model as the first chunk naming it said, before LangChain concatenates it. */
  model: string | undefined;
  /** The provider's message id (Anthropic `msg_…`, OpenAI `chatcmpl-…`). */
  messageId: string | undefined;
  /** A chunk said the generation finished (a stop reason arrived). */
  finished = false;

  // The content-block stream-events protocol (`handleChatModelStreamEvent`).
  events = 0;
  startEventUsage: Partial<UsageMetadata> | undefined;
  /** The last two `usage` snapshots, newest last. */
  usageSnapshots: Array<Partial<UsageMetadata>> = [];
  finishEventUsage: Partial<UsageMetadata> | undefined;

  constructor(keepText: boolean) {
    this.received = keepText ? [] : undefined;
  }

  get seenAnything(): boolean {
    return this.chunks > 0 || this.events > 0;
  }

  /** The run streamed chunks or stream events, as opposed to announcing a finished answer's text. */
  get streamed(): boolean {
    return this.chunkObjects > 0 || this.events > 0;
  }

  observeChunk(token: string, chunk: ObservedChunk | undefined): void {
    this.chunks++;
    this.#receive(token);
    const message = chunk?.message;
    if (message === undefined) return;
    this.chunkObjects++;
    for (const toolCall of message.tool_call_chunks ?? []) if (typeof toolCall.args === "string") this.#receive(toolCall.args);
    const usage = message.usage_metadata;
    if (usage !== undefined) {
      this.firstUsage ??= usage;
      this.lastUsage = usage;
      this.usageChunks++;
      this.outputSum += usage.output_tokens ?? 0;
    }
    const metadata = message.response_metadata;
    const rawUsage = metadata?.usage;
    if (this.firstRawUsage === undefined && isRecord(rawUsage) && Object.keys(rawUsage).length > 0) this.firstRawUsage = rawUsage;
    this.model ??=
      nonEmpty(metadata?.model_name) ??
      nonEmpty(metadata?.model) ??
      nonEmpty(chunk?.generationInfo?.model_name) ??
      nonEmpty(chunk?.generationInfo?.model) ??
      nonEmpty(message.additional_kwargs?.model); // Anthropic: message_start's message fields
    if (this.messageId === undefined && typeof message.id === "string" && !message.id.startsWith("run-")) this.messageId = message.id;
    if (
      message.additional_kwargs?.stop_reason != null ||
      chunk?.generationInfo?.finish_reason != null ||
      chunk?.generationInfo?.finishReason != null ||
      metadata?.finish_reason != null
    ) {
      this.finished = true;
    }
  }

  observeEvent(event: ObservedStreamEvent): void {
    this.events++;
    switch (event.event) {
      case "message-start":
        this.startEventUsage = event.usage;
        if (this.messageId === undefined && typeof event.id === "string" && !event.id.startsWith("run-")) this.messageId = event.id;
        break;
      case "usage":
        if (event.usage) this.usageSnapshots = [...this.usageSnapshots.slice(-1), event.usage];
        break;
      case "message-finish":
        this.finishEventUsage = event.usage;
        this.finished = true;
        break;
      case "provider":
        // @langchain/anthropic passes message_start's model on as a provider event.
        if (event.name === "message_start" && isRecord(event.payload)) this.model ??= nonEmpty(event.payload.model);
        break;
      case "content-block-delta":
        // Text and reasoning deltas are increments; a block-delta's `fields.args` is the whole so far.
        const delta = (event.delta ?? {}) as { text?: unknown; reasoning?: unknown };
        this.#receive(typeof delta.text === "string" ? delta.text : typeof delta.reasoning === "string" ? delta.reasoning : "");
        break;
    }
  }

  #receive(text: string): void {
    if (text.length === 0) return;
    this.receivedChars += text.length;
    this.received?.push(text);
  }
}

function nonEmpty(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
