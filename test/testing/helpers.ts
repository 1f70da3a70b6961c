/** Shared helpers for the tests of the OpenMeter fake. */
import { afterEach, expect } from "vitest";
import { startOpenMeterServer, type OpenMeterServer, type OpenMeterServerOptions } from "langchain-openmeter/testing";

export const BATCH = "application/cloudevents-batch+json";
export const SINGLE = "application/cloudevents+json";
export const JSON_TYPE = "application/json";

const servers: OpenMeterServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

export async function start(options?: OpenMeterServerOptions): Promise<OpenMeterServer> {
  const server = await startOpenMeterServer(options);
  servers.push(server);
  return server;
}

export function event(n: number, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    specversion: "1.0",
    id: `run-${n}-input`,
    source: "langchain",
    type: "kong.llm_request",
    subject: "acme",
    time: "2026-05-05T15:26:47.000Z",
    data: { type: "input", tokens: 10, model: "gpt-4o-mini", provider: "openai" },
    ...overrides,
  };
}

export interface PostOptions {
  contentType?: string | null;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  method?: string;
  url?: string;
}

export function post(server: OpenMeterServer, body: unknown, options: PostOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { ...options.headers };
  const contentType = options.contentType === undefined ? BATCH : options.contentType;
  if (contentType !== null) headers["content-type"] = contentType;
  return fetch(options.url ?? server.url, {
    method: options.method ?? "POST",
    headers,
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...(options.signal ? { signal: options.signal } : {}),
  });
}

export async function problemOf(response: Response): Promise<{ type: string; title: string; status: number; detail?: string; [k: string]: unknown }> {
  expect(response.headers.get("content-type")).toBe("application/problem+json");
  return (await response.json()) as { type: string; title: string; status: number; detail?: string };
}

export async function getJson(server: OpenMeterServer, path: string): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`${server.origin}${path}`);
  const text = await response.text();
  return { status: response.status, body: text === "" ? undefined : (JSON.parse(text) as unknown) };
}

/** Polls a condition on the event loop (for requests the fake never answers). */
export async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
