/**
 * Two things no callback can see, seen where LangChain separates a model call's config:
 * - `configurable: { subject }` (a LangGraph habit): @langchain/core 1.4 hands callbacks the metadata
 *   but never the `configurable` (runnables/config.js `ensureConfig` copies only `configurable.model`
 *   into metadata; LangGraph 1.7 only `thread_id` and its kin, pregel/utils/config.js), and runs
 *   callbacks with the async context cleared (singletons/callbacks.js `consumeCallback`);
 * - `model.streamEvents(input)` without `version`: core 1.4 streams it with no callback manager at all
 *   (language_models/chat_models.js `streamEvents`), so no handler hears of the call.
 *
 * Installed once, by the first handler, on the @langchain/core this package resolves (a peer
 * dependency: the application's own copy). Both wrappers call the original and change nothing for a
 * call that no MeteringCallbackHandler meters.
 */
import { BaseChatModel } from "@langchain/core/language_models/chat_models";
import { BaseLLM } from "@langchain/core/language_models/llms";

/** How a handler makes itself known to the wrappers (a symbol, so copies of this package agree). */
export const METERING_HOOKS = Symbol.for("langchain-openmeter.hooks");

export interface MeteringHooks {
  /** The metadata key that holds the subject: copied from `configurable` when metadata lacks it. */
  readonly subjectKey: string;
  /** A call this handler would meter is being streamed where no callback will see it. */
  unmeteredStreamEvents(model: string | undefined, metadata: Record<string, unknown> | undefined): void;
}

const INSTALLED = Symbol.for("langchain-openmeter.hooks-installed");
const STREAM_EVENTS_WRAPPED = Symbol.for("langchain-openmeter.stream-events-wrapped");

type Separate = (this: unknown, options?: Record<string, unknown>) => [Record<string, unknown>, Record<string, unknown>];
type StreamEvents = (this: unknown, input: unknown, options?: Record<string, unknown>, streamOptions?: unknown) => unknown;

export function installLangChainHooks(): void {
  for (const base of [BaseChatModel, BaseLLM]) {
    const proto = base.prototype as unknown as Record<PropertyKey, unknown>;
    if (proto[INSTALLED] === true || typeof proto._separateRunnableConfigFromCallOptionsCompat !== "function") continue;
    proto[INSTALLED] = true;
    const separate = proto._separateRunnableConfigFromCallOptionsCompat as Separate;
    proto._separateRunnableConfigFromCallOptionsCompat = function (this: unknown, options?: Record<string, unknown>) {
      const separated = separate.call(this, options);
      try {
        copyConfigurableSubject(this, separated[0]);
      } catch {
        // Metering must never break the call it meters.
      }
      return separated;
    };
  }
  const chat = BaseChatModel.prototype as unknown as Record<PropertyKey, unknown>;
  const streamEvents = chat.streamEvents as StreamEvents;
  // Only where the call is really made without callbacks: a core that passes them needs no warning.
  if (chat[STREAM_EVENTS_WRAPPED] !== true && callsWithoutCallbacks(streamEvents)) {
    chat[STREAM_EVENTS_WRAPPED] = true;
    chat.streamEvents = function (this: unknown, input: unknown, options?: Record<string, unknown>, streamOptions?: unknown) {
      if (options?.version !== "v1" && options?.version !== "v2") {
        try {
          const metadata = options?.metadata as Record<string, unknown> | undefined;
          for (const hooks of meteringHooks(options?.callbacks, (this as { callbacks?: unknown }).callbacks)) {
            hooks.unmeteredStreamEvents(modelName(this), metadata);
          }
        } catch {
          // As above.
        }
      }
      return streamEvents.call(this, input, options, streamOptions);
    };
  }
}

/** `streamEvents` as @langchain/core 1.4 wrote it: `this._streamChatModelEvents(messages, callOptions)`, no run manager. */
function callsWithoutCallbacks(method: StreamEvents): boolean {
  return /_streamChatModelEvents\(\s*[\w$]+\s*,\s*[\w$]+\s*\)/.test(Function.prototype.toString.call(method));
}

/**
 * `configurable[subjectKey]` becomes `metadata[subjectKey]` when the metadata names no subject: what
 * core does for `configurable.model`, for the handlers that meter this call.
 */
function copyConfigurableSubject(model: unknown, config: Record<string, unknown>): void {
  const configurable = config.configurable as Record<string, unknown> | undefined;
  if (typeof configurable !== "object" || configurable === null) return;
  for (const hooks of meteringHooks(config.callbacks, (model as { callbacks?: unknown }).callbacks)) {
    const value = configurable[hooks.subjectKey];
    const metadata = (config.metadata ?? {}) as Record<string, unknown>;
    if ((typeof value === "string" || typeof value === "number") && metadata[hooks.subjectKey] === undefined) {
      config.metadata = { ...metadata, [hooks.subjectKey]: value };
    }
  }
}

/** The metering handlers among a call's and a model's callbacks (arrays of handlers or a CallbackManager). */
function* meteringHooks(...sources: unknown[]): Generator<MeteringHooks> {
  const seen = new Set<unknown>();
  for (const source of sources) {
    const handlers = Array.isArray(source) ? source : (source as { handlers?: unknown } | undefined)?.handlers;
    if (!Array.isArray(handlers)) continue;
    for (const handler of handlers) {
      const hooks = (handler as Record<PropertyKey, unknown> | null)?.[METERING_HOOKS] as MeteringHooks | undefined;
      if (hooks === undefined || seen.has(hooks)) continue;
      seen.add(hooks);
      yield hooks;
    }
  }
}

function modelName(model: unknown): string | undefined {
  const { model: name, modelName: legacy } = (model ?? {}) as { model?: unknown; modelName?: unknown };
  return typeof name === "string" ? name : typeof legacy === "string" ? legacy : undefined;
}
