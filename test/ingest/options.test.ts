import { describe, expect, it } from "vitest";
import { z } from "zod";
import { IngestClient } from "langchain-openmeter";
import { ingestOptionsShape, parseIngestOptions, parseOptions, refineIngestOptions } from "../../src/ingest/options";

const url = "http://127.0.0.1:8888/api/v1/events";
const message = (input: unknown) => {
  try {
    parseIngestOptions(input);
  } catch (error) {
    expect(error).toBeInstanceOf(TypeError);
    return (error as Error).message;
  }
  throw new Error("expected the options to be rejected");
};

describe("ingest options", () => {
  it("fills in the documented defaults", () => {
    expect(parseIngestOptions({ url })).toEqual({
      url,
      maxBatchSize: 100,
      flushIntervalMs: 1000,
      maxQueueSize: 10_000,
      maxConcurrency: 4,
      timeoutMs: 10_000,
      retry: { retries: 10, minDelayMs: 200, maxDelayMs: 30_000 },
      flushOnExit: true,
      handleSignals: false,
    });
  });

  it("fills in retry defaults field by field", () => {
    expect(parseIngestOptions({ url, retry: { retries: 2 } }).retry).toEqual({ retries: 2, minDelayMs: 200, maxDelayMs: 30_000 });
  });

  it("names the option and what is allowed for a bad url", () => {
    // A string that is no URL is not echoed: it may be the API key (arguments swapped).
    expect(message({ url: "foo" })).toContain("`url` must be an absolute http(s) URL, got a string that is not a URL (not shown");
    expect(message({ url: "/api/v1/events" })).toContain('got the relative path "/api/v1/events"');
    expect(message({ url: "ftp://host/events" })).toContain("`url` must be an absolute http(s) URL");
    expect(message({})).toContain("`url` is required");
  });

  it("requires apiKey except for loopback hosts", () => {
    expect(message({ url: "https://us.api.konghq.com/v3/openmeter/events" })).toContain("`apiKey` is required for us.api.konghq.com");
    for (const host of ["127.0.0.1", "localhost", "[::1]"]) {
      expect(() => parseIngestOptions({ url: `http://${host}:8888/api/v1/events` })).not.toThrow();
    }
    expect(() => parseIngestOptions({ url: "https://eu.api.konghq.com/v3/openmeter/events", apiKey: "kpat_x" })).not.toThrow();
  });

  it("reports unknown keys (typos) with a suggestion, including nested retry keys", () => {
    const text = message({ url, flushInterval: 5, retry: { minDelay: 3 } });
    expect(text).toContain("unknown option `flushInterval` (did you mean `flushIntervalMs`?)");
    expect(text).toContain("unknown option `retry.minDelay` (did you mean `retry.minDelayMs`?)");
    expect(text).toContain("allowed: url, apiKey,");
  });

  it("lists every problem at once", () => {
    const text = message({ url, maxBatchSize: 0, timeoutMs: "10s", onError: "log", logger: {} });
    expect(text).toContain("`maxBatchSize` must be an integer >= 1, got 0");
    expect(text).toContain('`timeoutMs` must be an integer >= 1, got "10s"');
    expect(text).toContain("`onError` must be a function");
    expect(text).toContain("`logger` must be an object with warn(message) and error(message) functions");
  });

  it("never echoes the apiKey value, even when it is invalid", () => {
    const text = message({ url: "https://x.example/events", apiKey: ["sk-secret-123"] });
    expect(text).toContain("`apiKey` must be a non-empty string");
    expect(text).not.toContain("sk-secret-123");
  });

  it("checks retry delays against each other", () => {
    expect(message({ url, retry: { minDelayMs: 500, maxDelayMs: 100 } })).toContain("`retry.maxDelayMs` must be >= `retry.minDelayMs`");
  });

  it("rejects a non-object", () => {
    expect(message("http://x")).toContain('options must be an object, got "http://x"');
  });

  it("the constructor validates too", () => {
    expect(() => new IngestClient({ url: "nope" } as never)).toThrow(/`url` must be an absolute http\(s\) URL/);
  });

  it("exports a shape a wrapper can extend with its own options", () => {
    const schema = z.strictObject({ ...ingestOptionsShape, source: z.string().default("langchain") }).superRefine(refineIngestOptions);
    expect(parseOptions(schema, { url }, "Handler").source).toBe("langchain");
    expect(() => parseOptions(schema, { url, sorce: "x" }, "Invalid handler options")).toThrow(
      "unknown option `sorce` (did you mean `source`?)",
    );
    expect(() => parseOptions(schema, { url: "https://x.example/events" }, "Invalid handler options")).toThrow("`apiKey` is required");
  });
});
