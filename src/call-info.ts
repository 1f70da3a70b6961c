/**
 * What LangChain's callbacks say about a model call, read the same way by the metering handler and
 * the budget guard: the model asked for, its provider, the tools it declared, and whether an error
 * was an abort.
 */

/** The requested model: LangChain's `ls_model_name`, else the invocation parameters' model. */
export function modelOf(metadata: Record<string, unknown> | undefined, extraParams: Record<string, unknown> | undefined): string | undefined {
  return stringOr(metadata?.ls_model_name) ?? invocationModel(extraParams);
}

export function invocationModel(extraParams: Record<string, unknown> | undefined): string | undefined {
  const params = extraParams?.invocation_params as Record<string, unknown> | undefined;
  return stringOr(params?.model) ?? stringOr(params?.model_name);
}

export function stringOr(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export function describeModel(model: string | undefined): string {
  return model ? `model ${model}` : "a model with no name";
}

/** The tools a call declared (the provider counts their definitions as input). */
export function toolsOf(extraParams: Record<string, unknown> | undefined): unknown {
  const params = extraParams?.invocation_params as Record<string, unknown> | undefined;
  return params?.tools ?? params?.functions;
}

/**
 * An abort, as the provider SDKs and LangChain name it (AbortError, ModelAbortError, APIUserAbortError,
 * an `AbortSignal.timeout()`'s TimeoutError). An abort with a reason of the user's own is thrown as that
 * reason, which no callback can tell from a failure: it is reported as `error`.
 */
export function isAbort(error: unknown): boolean {
  const { name, message } = (error ?? {}) as { name?: unknown; message?: unknown };
  return (
    (typeof name === "string" && /abort|^TimeoutError$/i.test(name)) ||
    (typeof message === "string" && /^(AbortError|Request was aborted|This operation was aborted)/.test(message))
  );
}

/** `ModelAbortError.partialOutput` (@langchain/core errors): the message aggregated before an abort. */
export function partialOutput(error: unknown): { usage_metadata?: unknown; content?: unknown } | undefined {
  const partial = (error as { partialOutput?: unknown } | null)?.partialOutput;
  return typeof partial === "object" && partial !== null ? (partial as { usage_metadata?: unknown; content?: unknown }) : undefined;
}
