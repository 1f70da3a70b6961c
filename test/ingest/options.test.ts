import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { IngestClient, MeteringCallbackHandler } from "langchain-openmeter";
import { TestClock } from "langchain-openmeter/testing";
import { ingestOptionsShape, parseIngestOptions, refineIngestOptions, urlNotes } from "../../src/ingest/options";
import { parseOptions } from "../../src/option-errors";

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

const open: Array<{ shutdown(): Promise<void> }> = [];
afterEach(async () => {
  while (open.length) await open.pop()!.shutdown();
});

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
      maxSpoolBytes: 1024 ** 3,
      spoolFsync: false,
      spoolLeaseMs: 10_000,
      shutdownTimeoutMs: 5000,
      flushOnExit: true,
      handleSignals: true,
    });
  });

  it("fills in retry defaults field by field", () => {
    expect(parseIngestOptions({ url, retry: { retries: 2 } }).retry).toEqual({ retries: 2, minDelayMs: 200, maxDelayMs: 30_000 });
    expect(parseIngestOptions({ url, retry: { maxDelayMs: 500 } }).retry).toEqual({ retries: 10, minDelayMs: 200, maxDelayMs: 500 });
  });

  it("names the option and what is allowed for a bad url", () => {
    // A string that is no URL is not echoed: it may be the API key (arguments swapped).
    expect(message({ url: "foo" })).toContain("`url` must be an absolute http(s) URL, got a string that is not a URL (not shown");
    expect(message({ url: "/api/v1/events" })).toContain('got the relative path "/api/v1/events"');
    expect(message({ url: "ftp://host/events" })).toContain('`url` must be an absolute http(s) URL, got "ftp://host/events"'); // a URL, only the wrong kind: shown
    expect(message({})).toContain("`url` is required");
  });

  it("requires apiKey only for Konnect and OpenMeter Cloud hosts", () => {
    for (const host of ["us.api.konghq.com", "eu.api.konghq.com", "openmeter.cloud", "api.openmeter.cloud"]) {
      expect(message({ url: `https://${host}/v3/openmeter/events` })).toContain(
        `\`apiKey\` is required for ${host} (it is missing or empty): Konnect and OpenMeter Cloud answer 401 without one`,
      );
    }
    // Self-hosted OpenMeter without authentication: loopback, a service name, any other host.
    for (const other of [
      "http://127.0.0.1:8888/api/v1/events",
      "http://localhost:8888/api/v1/events",
      "http://[::1]:8888/api/v1/events",
      "http://openmeter:8888/api/v1/events",
      "https://metering.example.com/api/v1/events",
      // Names that only look hosted.
      "https://konghq.com.example.net/v3/openmeter/events",
      "https://notkonghq.com/v3/openmeter/events",
    ]) {
      expect(parseIngestOptions({ url: other }).apiKey).toBeUndefined();
    }
    expect(parseIngestOptions({ url: "https://eu.api.konghq.com/v3/openmeter/events", apiKey: "kpat_x" }).apiKey).toBe("kpat_x");
  });

  it("reports unknown keys (typos) with a suggestion, including nested retry keys", () => {
    const text = message({ url, flushInterval: 5, retry: { minDelay: 3 } });
    expect(text).toContain("unknown option `flushInterval` (did you mean `flushIntervalMs`?)");
    expect(text).toContain("unknown option `retry.minDelay` (did you mean `retry.minDelayMs`?)");
    expect(text).toContain("allowed: url, apiKey,");
  });

  it("lists every problem at once", () => {
    const text = message({ url, maxBatchSize: 0, timeoutMs: "10s", onError: "log", logger: {} });
    expect(text).toMatch(/4 problems/);
    expect(text).toContain("`maxBatchSize` must be an integer >= 1, got 0");
    expect(text).toContain('`timeoutMs` must be an integer >= 1, got "10s"');
    expect(text).toContain("`onError` must be a function");
    expect(text).toContain("`logger` must be an object with warn(message) and error(message) functions");
  });

  it("checks the spool, shutdown and clock options", () => {
    const text = message({ url, maxSpoolBytes: 65_535, spoolFsync: "yes", spoolLeaseMs: 99, shutdownTimeoutMs: -1, clock: {} });
    expect(text).toContain("`maxSpoolBytes` must be an integer >= 65536, got 65535");
    expect(text).toContain('`spoolFsync` must be true or false, got "yes"');
    expect(text).toContain("`spoolLeaseMs` must be an integer >= 100, got 99");
    expect(text).toContain("`shutdownTimeoutMs` must be an integer >= 0, got -1");
    expect(text).toContain("`clock` must have now(), wallNow() and setTimeout()");
    expect(message({ url, spoolDir: "  " })).toContain('`spoolDir` must be a directory path, got "  "');
    expect(message({ url, spoolDir: 5 })).toContain("`spoolDir` must be a directory path, got 5");
    const clock = new TestClock();
    expect(parseIngestOptions({ url, maxSpoolBytes: 65_536, spoolFsync: true, spoolLeaseMs: 100, shutdownTimeoutMs: 0, clock })).toMatchObject({
      maxSpoolBytes: 65_536,
      spoolFsync: true,
      spoolLeaseMs: 100,
      shutdownTimeoutMs: 0,
      clock,
    });
  });

  it("a logger needs both warn and error; a clock needs all three methods; neither may be null", () => {
    const fn = () => {};
    for (const logger of [{ warn: fn }, { error: fn }, null, Object.assign(() => {}, { warn: fn, error: fn })]) {
      expect(message({ url, logger })).toContain("`logger` must be an object with warn(message) and error(message) functions");
    }
    for (const clock of [{ now: fn, wallNow: fn }, { now: fn, setTimeout: fn }, { wallNow: fn, setTimeout: fn }, null]) {
      expect(message({ url, clock })).toContain("`clock` must have now(), wallNow() and setTimeout()");
    }
    expect(parseIngestOptions({ url, logger: { warn: fn, error: fn } }).logger).toBeDefined();
  });

  it("url must be a string (a URL object is refused, as the type says), with a host", () => {
    expect(message({ url: new URL(url) })).toContain("`url` must be an absolute http(s) URL");
    expect(message({ url: "   " })).toContain("`url` must be an absolute http(s) URL, got an empty string");
    expect(message({ url: "https://user:pw@[bad/events" })).toContain("a string that is not a URL (not shown");
  });

  it("every numeric and boolean option names itself in its message", () => {
    const text = message({ url, retry: { retries: -1, minDelayMs: -1, maxDelayMs: -1 }, flushOnExit: "no", handleSignals: 1 });
    expect(text).toContain("`retry.retries` must be an integer >= 0, got -1");
    expect(text).toContain("`retry.minDelayMs` must be an integer >= 0, got -1");
    expect(text).toContain("`retry.maxDelayMs` must be an integer >= 0, got -1");
    expect(text).toContain('`flushOnExit` must be true or false, got "no"');
    expect(text).toContain("`handleSignals` must be true or false, got 1");
    expect(text).toMatch(/^Invalid IngestClient options/);
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
    expect(() => parseOptions(schema, { url, sorce: "x" }, "Invalid handler options")).toThrow("unknown option `sorce` (did you mean `source`?)");
    expect(() => parseOptions(schema, { url: "https://us.api.konghq.com/v3/openmeter/events" }, "Invalid handler options")).toThrow("`apiKey` is required");
    expect(parseOptions(schema, { url: "https://x.example/events" }, "Invalid handler options").apiKey).toBeUndefined();
  });
});

describe("notes about a url", () => {
  it("loopback is localhost, [::1] and 127.x.x.x only: no note there; a look-alike host gets one", () => {
    for (const host of ["localhost", "[::1]", "127.0.0.1", "127.10.200.3"]) expect(urlNotes(`http://${host}:8888/api/v1/events`, undefined)).toEqual([]);
    // (A host that ends in a number must be a whole IPv4 address to parse at all: "x127.0.0.1" is no URL.)
    for (const host of ["127.0.0.1.example.com", "localhost.example.com", "127.0.0.1.nip.io"]) {
      expect(urlNotes(`http://${host}:8888/api/v1/events`, undefined)).toEqual([expect.stringContaining(`without an apiKey and without TLS`)]);
    }
  });

  it("a url not ending in /events gets the note naming the usual paths and that a proxy is fine", () => {
    expect(urlNotes("http://127.0.0.1:8888/ingest", undefined)).toEqual([
      "url http://127.0.0.1:8888/ingest does not end in /events: OpenMeter serves /api/v1/events, Konnect /v3/openmeter/events; if nothing arrives, check url (a proxy that maps another path is fine)",
    ]);
  });

  it("plain http to a host that is not loopback, without a key: one note that nothing is encrypted or authenticated", () => {
    expect(urlNotes("http://openmeter:8888/api/v1/events", undefined)).toEqual([
      "sending to http://openmeter:8888/api/v1/events without an apiKey and without TLS: fine for a self-hosted OpenMeter on a private network, otherwise set apiKey and use https://",
    ]);
    // With a key, the note is about the key travelling unencrypted instead.
    const withKey = urlNotes("http://openmeter:8888/api/v1/events", "om_key");
    expect(withKey).toHaveLength(1);
    expect(withKey[0]).toMatch(/uses http:\/\/ to openmeter: the API key and usage travel unencrypted/);
    for (const quiet of ["http://127.0.0.1:8888/api/v1/events", "http://localhost:8888/api/v1/events", "http://[::1]:8888/api/v1/events", "https://openmeter.example/api/v1/events"]) {
      expect(urlNotes(quiet, undefined)).toEqual([]);
    }
  });

  it("the note is said once, when the client is made, by the client and by a handler that makes one", () => {
    const warnings: string[] = [];
    const logger = { warn: (m: string) => void warnings.push(m), error: (m: string) => void warnings.push(m) };
    const client = new IngestClient({ url: "http://openmeter:8888/api/v1/events", logger, flushOnExit: false, handleSignals: false });
    open.push(client);
    expect(warnings.filter((w) => w.includes("without an apiKey and without TLS"))).toHaveLength(1);
    const handler = new MeteringCallbackHandler({ url: "http://openmeter:8888/api/v1/events", logger, flushOnExit: false, handleSignals: false });
    open.push(handler);
    expect(warnings.filter((w) => w.includes("without an apiKey and without TLS"))).toHaveLength(2);
    expect(warnings).toHaveLength(2);
  });
});

describe("handleSignals", () => {
  it("defaults to true: a client joins the signal participants until shutdown(); false never does", async () => {
    // Other files in this worker may hold clients too: count this test's own participants.
    const registry = () => (globalThis as Record<symbol, { signalParticipants: Set<WeakRef<object>> } | undefined>)[Symbol.for("langchain-openmeter.lifecycle.v1")];
    const signalParticipants = () => registry()?.signalParticipants.size ?? 0;
    const before = signalParticipants();
    const quiet = new IngestClient({ url, flushOnExit: false, handleSignals: false });
    expect(signalParticipants()).toBe(before);
    const listening = new IngestClient({ url, flushOnExit: false });
    expect(signalParticipants()).toBe(before + 1);
    expect(process.listenerCount("SIGTERM")).toBeGreaterThanOrEqual(1);
    expect(process.listenerCount("SIGINT")).toBeGreaterThanOrEqual(1);
    await listening.shutdown();
    expect(signalParticipants()).toBe(before);
    if (before === 0) {
      expect(process.listenerCount("SIGTERM")).toBe(0);
      expect(process.listenerCount("SIGINT")).toBe(0);
    }
    await quiet.shutdown();
  });
});
