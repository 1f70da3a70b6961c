/**
 * LangChain's global background-callback queue (a p-queue with concurrency 1). `@langchain/core`
 * exports only awaitAllCallbacks/consumeCallback, so the module that owns the queue is loaded by
 * its file path; it is the same module instance the public entry points use (checked below).
 */
import { createRequire } from "node:module";
import { realpathSync } from "node:fs";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { consumeCallback } from "@langchain/core/callbacks/promises";

interface PQueueLike {
  size: number;
  pending: number;
  clear(): void;
  onIdle(): Promise<void>;
}

const require = createRequire(import.meta.url);
const coreDir = dirname(realpathSync(require.resolve("@langchain/core/package.json")));
const internal = (await import(pathToFileURL(join(coreDir, "dist/singletons/callbacks.js")).href)) as { getQueue(): PQueueLike };

export const callbackQueue: PQueueLike = internal.getQueue();

// Sanity check: a task added through the public API must show up in this queue.
{
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  void consumeCallback(() => gate, false);
  void consumeCallback(async () => {}, false);
  if (callbackQueue.pending + callbackQueue.size < 2) {
    throw new Error("bench: could not reach LangChain's callback queue (module instance mismatch)");
  }
  release();
  await callbackQueue.onIdle();
}

/** Tasks waiting plus the one running. */
export const queueDepth = (): number => callbackQueue.size + callbackQueue.pending;
