/**
 * Keeps tests off the internet.
 *
 * - `globalThis.fetch` (what the `openai` and `@anthropic-ai/sdk` clients, LangSmith and
 *   `@langchain/core`'s tokenizer loader use) passes loopback URLs through, answers
 *   `https://tiktoken.pages.dev/js/<encoding>.json` from js-tiktoken's bundled ranks (the file
 *   `@langchain/core/utils/tiktoken` downloads when ChatOpenAI estimates tokens, e.g. on
 *   `streaming: true` invoke), and rejects everything else at once, recording it.
 * - `net.Socket.prototype.connect` refuses non-loopback TCP connections too (for anything that
 *   bypasses fetch), recording them.
 *
 * Install it before constructing models: the SDK clients capture `fetch` when they are created.
 */
import net from "node:net";

export interface NetworkGuard {
  /** Non-loopback URLs / hosts something tried to reach (and was refused). */
  blocked: string[];
  /** Tokenizer files served from the bundled ranks instead of tiktoken.pages.dev. */
  tokenizerRequests: string[];
  restore(): void;
}

const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);
const TIKTOKEN = /^https:\/\/tiktoken\.pages\.dev\/js\/([a-z0-9_]+)\.json$/;

async function bundledRanks(encoding: string): Promise<unknown | undefined> {
  switch (encoding) {
    case "o200k_base":
      return (await import("js-tiktoken/ranks/o200k_base")).default;
    case "cl100k_base":
      return (await import("js-tiktoken/ranks/cl100k_base")).default;
    case "p50k_base":
      return (await import("js-tiktoken/ranks/p50k_base")).default;
    case "gpt2":
      return (await import("js-tiktoken/ranks/gpt2")).default;
    default:
      return undefined;
  }
}

export function guardNetwork(): NetworkGuard {
  const blocked: string[] = [];
  const tokenizerRequests: string[] = [];
  const originalFetch = globalThis.fetch;
  const originalConnect = net.Socket.prototype.connect;

  const guardedFetch: typeof fetch = async (input, init) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const parsed = new URL(url);
    if (LOOPBACK.has(parsed.hostname)) return originalFetch(input, init);
    const tiktoken = TIKTOKEN.exec(url);
    if (tiktoken?.[1]) {
      const ranks = await bundledRanks(tiktoken[1]);
      if (ranks) {
        tokenizerRequests.push(url);
        return new Response(JSON.stringify(ranks), { status: 200, headers: { "content-type": "application/json" } });
      }
    }
    blocked.push(url);
    throw new TypeError(`network access blocked in tests: ${url}`);
  };
  globalThis.fetch = guardedFetch;

  net.Socket.prototype.connect = function guardedConnect(this: net.Socket, ...args: unknown[]) {
    const first = args[0];
    const options = (Array.isArray(first) ? first[0] : first) as { host?: string; path?: string } | number | string;
    let host: string | undefined;
    if (typeof options === "object" && options !== null) {
      host = options.path !== undefined ? undefined : (options.host ?? "localhost");
    } else if (typeof options === "number") {
      host = typeof args[1] === "string" ? args[1] : "localhost";
    }
    if (host !== undefined && !LOOPBACK.has(host)) {
      blocked.push(`tcp://${host}`);
      throw new Error(`network access blocked in tests: tcp://${host}`);
    }
    return (originalConnect as (...a: unknown[]) => net.Socket).apply(this, args);
  } as typeof net.Socket.prototype.connect;

  return {
    blocked,
    tokenizerRequests,
    restore() {
      globalThis.fetch = originalFetch;
      net.Socket.prototype.connect = originalConnect;
    },
  };
}
