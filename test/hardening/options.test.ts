/**
 * Hardening: bad and unusual options, for both constructor forms. Each test is a row of
 * docs/hardening.md; the outcome is a clear TypeError at construction or a warning at construction.
 */
import { afterEach, describe, expect, it } from "vitest";
import { IngestClient, MeteringCallbackHandler } from "langchain-openmeter";
import { TestClock } from "langchain-openmeter/testing";
import { settleOn, until } from "../support/clocked";
import { startPlainServer } from "../ingest/helpers";
import { MemorySink, recordingLogger } from "../support/memory-sink";
import { ScriptedChatModel, usage } from "../support/scripted-model";

const LOCAL = "http://127.0.0.1:8888/api/v1/events";
const KONNECT = "https://us.api.konghq.com/v3/openmeter/events";
const KEY = "kpat_hardening_0a1b2c3d4e5f";

const open: Array<{ shutdown(): Promise<void> }> = [];
afterEach(async () => {
  while (open.length) await open.pop()!.shutdown();
});

/** Builds a handler that creates its own client; returns what it logged. */
function build(...args: unknown[]) {
  const log = recordingLogger();
  const last = args.length === 1 ? 0 : 2;
  args[last] = { flushOnExit: false, handleSignals: false, logger: log.logger, ...(args[last] as object) };
  const handler = new (MeteringCallbackHandler as unknown as new (...a: unknown[]) => MeteringCallbackHandler)(...args);
  open.push(handler);
  return { handler, ...log };
}

function thrown(fn: () => unknown): TypeError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(TypeError);
    return error as TypeError;
  }
  throw new Error("expected a TypeError");
}

describe("url", () => {
  it("missing: names `url` and shows what a full events URL looks like", () => {
    const error = thrown(() => new MeteringCallbackHandler({ apiKey: KEY } as never));
    expect(error.message).toMatch(/`url` is required: the full events URL, e\.g\. http:\/\/localhost:8888\/api\/v1\/events/);
  });

  it("relative path: says it must be absolute and shows the path back", () => {
    const error = thrown(() => new MeteringCallbackHandler({ url: "/api/v1/events" }));
    expect(error.message).toMatch(/`url` must be an absolute http\(s\) URL.*"\/api\/v1\/events"/);
  });

  it("without a scheme (localhost:8888/api/v1/events): refused, naming the protocol problem", () => {
    const error = thrown(() => new MeteringCallbackHandler({ url: "localhost:8888/api/v1/events" }));
    expect(error.message).toMatch(/`url` must be an absolute http\(s\) URL/);
  });

  it("empty string (an unset environment variable): refused at construction", () => {
    expect(() => new MeteringCallbackHandler({ url: "" })).toThrow(/`url`/);
    expect(() => new MeteringCallbackHandler("")).toThrow(/`url`/);
  });

  it("a path that does not end in /events: accepted (proxies differ) with one warning naming the usual paths", async () => {
    const { warnings } = build({ url: "http://127.0.0.1:8888/api/v1" });
    expect(warnings.filter((w) => w.includes("/events"))).toHaveLength(1);
    expect(warnings[0]).toMatch(/url .*\/api\/v1.* does not end in \/events.*\/api\/v1\/events.*\/v3\/openmeter\/events/);
    // The usual paths are quiet.
    expect(build({ url: LOCAL }).warnings).toEqual([]);
    expect(build({ url: KONNECT, apiKey: KEY }).warnings).toEqual([]);
  });

  it("http:// to a host that is not loopback: accepted with one warning that the key travels unencrypted", () => {
    const { warnings } = build({ url: "http://openmeter.internal:8888/api/v1/events", apiKey: KEY });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/http:\/\/.*openmeter\.internal.*unencrypted.*https:\/\//);
    expect(warnings[0]).not.toContain(KEY);
    for (const url of [LOCAL, "http://localhost:1/api/v1/events", "http://[::1]:1/api/v1/events"]) {
      expect(build({ url }).warnings).toEqual([]);
    }
  });

  it("http:// to a host that is not loopback, without a key (a self-hosted OpenMeter): accepted with one note, none on loopback", () => {
    const { warnings } = build({ url: "http://openmeter:8888/api/v1/events" });
    expect(warnings).toEqual([
      "sending to http://openmeter:8888/api/v1/events without an apiKey and without TLS: fine for a self-hosted OpenMeter on a private network, otherwise set apiKey and use https://",
    ]);
    expect(build({ url: LOCAL }).warnings).toEqual([]);
    expect(build({ url: "https://openmeter.example/api/v1/events" }).warnings).toEqual([]);
  });

  it("credentials and query in the url are never shown back in a message", () => {
    const error = thrown(() => new MeteringCallbackHandler({ url: `ftp://user:${KEY}@host.example/events?token=${KEY}` }));
    expect(error.message).toMatch(/`url` must be an absolute http\(s\) URL/);
    expect(error.message).not.toContain(KEY);
  });
});

describe("apiKey", () => {
  it("missing for Konnect or OpenMeter Cloud: names the host and that it answers 401 without one", () => {
    expect(() => new MeteringCallbackHandler({ url: KONNECT })).toThrow(
      /`apiKey` is required for us\.api\.konghq\.com \(it is missing or empty\): Konnect and OpenMeter Cloud answer 401 without one/,
    );
    expect(() => new MeteringCallbackHandler({ url: "https://openmeter.cloud/api/v1/events" })).toThrow(/`apiKey` is required for openmeter\.cloud/);
  });

  it("missing for any other host (a self-hosted OpenMeter without authentication): accepted", () => {
    const { handler } = build({ url: "https://metering.example.com/api/v1/events" });
    expect(handler.client).toBeInstanceOf(IngestClient);
  });

  it("empty string (an unset .env variable): as if left out: required for Konnect, and on loopback no Authorization header is sent", async () => {
    expect(() => new MeteringCallbackHandler({ url: KONNECT, apiKey: "" })).toThrow(/`apiKey` is required for us\.api\.konghq\.com \(it is missing or empty\)/);
    expect(() => new MeteringCallbackHandler(KONNECT, " ")).toThrow(/`apiKey` is required for us\.api\.konghq\.com/);
    const server = await startPlainServer((_req, res) => void res.writeHead(204).end());
    const clock = new TestClock();
    const { handler } = build({ url: server.url, apiKey: "", clock });
    const model = new ScriptedChatModel(() => ({ usage: usage(2, 1) }), "m", "p", { callbacks: [handler] });
    await model.invoke("x", { metadata: { subject: "acme" } });
    await settleOn(clock, handler.flush());
    expect(server.requests).toHaveLength(1);
    expect(server.requests[0]!.headers.authorization).toBeUndefined();
    expect(handler.stats().delivery).toMatchObject({ delivered: 2 });
    await server.close();
  });

  it("not a string (a number, an object): refused without echoing the value", () => {
    const asNumber = thrown(() => new MeteringCallbackHandler({ url: KONNECT, apiKey: 123456789 as never }));
    expect(asNumber.message).toMatch(/`apiKey` must be a non-empty string/);
    expect(asNumber.message).not.toContain("123456789");
    expect(() => new MeteringCallbackHandler(KONNECT, 123456789 as never)).toThrow(/`apiKey` \(second argument\) must be a string, got number/);
  });
});

describe("batching and timing numbers", () => {
  const cases: Array<[string, unknown, RegExp]> = [
    ["maxBatchSize", 0, /`maxBatchSize` must be an integer >= 1, got 0/],
    ["maxBatchSize", -5, /`maxBatchSize` must be an integer >= 1, got -5/],
    ["maxBatchSize", 2.5, /`maxBatchSize` must be an integer >= 1, got 2\.5/],
    ["maxQueueSize", 0, /`maxQueueSize` must be an integer >= 1, got 0/],
    ["flushIntervalMs", -1, /`flushIntervalMs` must be an integer >= 0, got -1/],
    ["flushIntervalMs", Number.NaN, /`flushIntervalMs` must be an integer >= 0, got NaN/],
    ["timeoutMs", 0, /`timeoutMs` must be an integer >= 1, got 0/],
    ["timeoutMs", Number.POSITIVE_INFINITY, /`timeoutMs` must be an integer >= 1, got Infinity/],
    ["maxConcurrency", 0, /`maxConcurrency` must be an integer >= 1, got 0/],
    ["maxSpoolBytes", 1024, /`maxSpoolBytes` must be an integer >= 65536, got 1024/],
    ["spoolLeaseMs", 50, /`spoolLeaseMs` must be an integer >= 100, got 50/],
    ["shutdownTimeoutMs", -1, /`shutdownTimeoutMs` must be an integer >= 0, got -1/],
    ["shutdownTimeoutMs", 1.5, /`shutdownTimeoutMs` must be an integer >= 0, got 1\.5/],
    ["runTimeoutMs", 0, /`runTimeoutMs` must be at least 1000/],
    ["runTimeoutMs", -1, /`runTimeoutMs` must be at least 1000/],
  ];
  for (const [name, value, expected] of cases) {
    it(`${name}: ${String(value)} is refused, naming the option and the allowed range`, () => {
      expect(() => new MeteringCallbackHandler({ url: LOCAL, [name]: value })).toThrow(expected);
    });
  }

  it("negative retry numbers are refused with their dotted name", () => {
    expect(() => new MeteringCallbackHandler({ url: LOCAL, retry: { retries: -1 } })).toThrow(/`retry\.retries` must be an integer >= 0, got -1/);
  });

  it("flushIntervalMs: 0 is allowed: a partial batch goes out without the clock moving on", async () => {
    const server = await startPlainServer((_req, res) => void res.writeHead(204).end());
    for (const flushIntervalMs of [0, 1]) {
      const clock = new TestClock();
      const client = new IngestClient({ url: server.url, clock, flushIntervalMs, flushOnExit: false, handleSignals: false });
      open.push({ shutdown: () => settleOn(clock, client.shutdown()).then(() => undefined) });
      client.enqueue({ specversion: "1.0", id: `x-${flushIntervalMs}`, source: "s", type: "t", subject: "acme" });
      expect(client.stats().pending.memory).toBe(1);
      await clock.advance(0);
      if (flushIntervalMs === 0) {
        await until(() => client.stats().delivered === 1, "the partial batch");
        expect(client.stats().pending.memory).toBe(0);
      } else {
        expect(client.stats()).toMatchObject({ delivered: 0, pending: { memory: 1, disk: 0 } });
      }
    }
    expect(server.requests).toHaveLength(1);
    await server.close();
  });
});

describe("unknown options (typos)", () => {
  const typos: Array<[string, string]> = [
    ["apikey", "apiKey"],
    ["api_key", "apiKey"],
    ["flushInterval", "flushIntervalMs"],
    ["batchSize", "maxBatchSize"],
    ["spoolDirectory", "spoolDir"],
    ["subject_key", "subjectKey"],
    ["timeout", "timeoutMs"],
  ];
  for (const [typo, meant] of typos) {
    it(`\`${typo}\` is refused with "did you mean \`${meant}\`?"`, () => {
      expect(() => new MeteringCallbackHandler({ url: LOCAL, [typo]: 1 } as never)).toThrow(`unknown option \`${typo}\` (did you mean \`${meant}\`?)`);
    });
  }

  it("a name nothing resembles is refused with the list of allowed names, and every problem comes at once", () => {
    const error = thrown(() => new MeteringCallbackHandler({ url: LOCAL, zzzzzz: 1, maxBatchSize: 0 } as never));
    expect(error.message).toMatch(/2 problems/);
    expect(error.message).toMatch(/unknown option `zzzzzz`; allowed: url, apiKey, /);
    expect(error.message).toMatch(/`maxBatchSize` must be an integer >= 1/);
  });

  it("with `client`, ingest options are refused with a pointer to the client; the handler's own lifecycle options are allowed", () => {
    expect(() => new MeteringCallbackHandler({ client: new MemorySink(), maxBatchSize: 10 } as never)).toThrow(
      /`maxBatchSize` configure the ingest client this handler would create, but `client` was given/,
    );
    expect(() => new MeteringCallbackHandler({ client: new MemorySink(), spoolDir: "/tmp/x" } as never)).toThrow(/`spoolDir` configure the ingest client/);
    const handler = new MeteringCallbackHandler({ client: new MemorySink(), clock: new TestClock(), shutdownTimeoutMs: 100, handleSignals: false });
    open.push(handler);
    expect(handler.client).toBeInstanceOf(MemorySink);
    expect(() => new MeteringCallbackHandler({ client: new MemorySink(), shutdownTimeoutMs: -1 })).toThrow(/`shutdownTimeoutMs` must be an integer >= 0, got -1/);
  });
});

describe("constructor forms with wrong types", () => {
  it("no argument, null, an array, a number: one message naming both forms", () => {
    for (const bad of [undefined, null, [], 42, true]) {
      expect(() => new MeteringCallbackHandler(bad as never)).toThrow(/pass an options object \(\{ url, apiKey, \.\.\. \}\) or \(url, apiKey\)/);
    }
  });

  it("(url, apiKey, options) with options that are not an object", () => {
    expect(() => new MeteringCallbackHandler(LOCAL, undefined, "fast" as never)).toThrow(/the third argument must be an options object/);
    expect(() => new MeteringCallbackHandler(LOCAL, undefined, null as never)).toThrow(/the third argument must be an options object/);
  });

  it("(url, apiKey, options) with url or apiKey in options too: refused instead of silently picking one", () => {
    expect(() => new MeteringCallbackHandler(LOCAL, KEY, { url: "http://127.0.0.1:2/api/v1/events" } as never)).toThrow(
      /`url` was given twice/,
    );
    const error = thrown(() => new MeteringCallbackHandler(LOCAL, KEY, { apiKey: "other" } as never));
    expect(error.message).toMatch(/`apiKey` was given twice/);
    expect(error.message).not.toContain(KEY);
  });

  it("(url, apiKey, options) works like the object form", () => {
    const { handler, warnings } = build(LOCAL, KEY, { maxBatchSize: 5 });
    expect(handler.client).toBeInstanceOf(IngestClient);
    expect(warnings).toEqual([]);
  });

  it("swapped (apiKey, url): refused, and the key is not shown in the message", () => {
    const error = thrown(() => new MeteringCallbackHandler(KEY, KONNECT));
    expect(error.message).toMatch(/`url` must be an absolute http\(s\) URL/);
    expect(error.message).toMatch(/swapped/);
    expect(error.message).not.toContain(KEY);
    const inObject = thrown(() => new MeteringCallbackHandler({ url: KEY, apiKey: KONNECT }));
    expect(inObject.message).not.toContain(KEY);
  });

  it("handler options of the wrong type name the option and what it must be", () => {
    const client = new MemorySink();
    expect(() => new MeteringCallbackHandler({ client, splitTokenTypes: "yes" as never })).toThrow("`splitTokenTypes` must be true or false");
    expect(() => new MeteringCallbackHandler({ client, resolveSubject: "subject" as never })).toThrow(/`resolveSubject` must be a function/);
    expect(() => new MeteringCallbackHandler({ client, logger: console.log as never })).toThrow(/`logger` must have warn\(message\) and error\(message\)/);
    expect(() => new MeteringCallbackHandler({ client, defaultSubject: "   " })).toThrow("`defaultSubject` must not be empty");
    // The same rules as a subject from metadata: it is sent on every call that names none.
    expect(() => new MeteringCallbackHandler({ client, defaultSubject: "a\u0001b" })).toThrow("`defaultSubject` is refused: it contains control or invisible characters");
    expect(() => new MeteringCallbackHandler({ client, defaultSubject: "x".repeat(300) })).toThrow("`defaultSubject` is refused: it is longer than 256 characters");
    expect(() => new MeteringCallbackHandler({ client, includeMetadata: [""] })).toThrow("`includeMetadata` keys must be non-empty strings");
  });
});
