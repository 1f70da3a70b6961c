/**
 * Hardening: the API key appears nowhere a person or a log collector could read it. Every failure of
 * the other hardening files is provoked here with one key, everything the library emits is collected
 * (log lines, thrown errors with their stacks and `cause` chains, onError reports inspected and
 * JSON-serialized, events, the spool file, stats), and the collection is searched for the key.
 */
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { IngestClient, IngestError, MeteringCallbackHandler } from "langchain-openmeter";
import { makeEvents, startPlainServer } from "../ingest/helpers";
import { ScriptedChatModel, usage } from "../support/scripted-model";

const KEY = "om_sk_live_S3CR3T_9f8e7d6c5b4a";
const KONNECT = "https://us.api.konghq.com/v3/openmeter/events";

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

/** Everything the library lets out, as text. */
class Collector {
  readonly texts: string[] = [];
  readonly logger = { warn: (m: string) => void this.texts.push(m), error: (m: string) => void this.texts.push(m) };
  readonly errors: IngestError[] = [];
  readonly onError = (error: IngestError) => {
    this.errors.push(error);
    this.addError(error);
  };

  addError(error: unknown): void {
    this.texts.push(String(error), inspect(error, { depth: 20, showHidden: true }));
    try {
      this.texts.push(JSON.stringify(error), JSON.stringify({ ...(error as object) }));
    } catch {}
    for (let e: unknown = error, depth = 0; e instanceof Error && depth < 10; e = e.cause, depth++) {
      this.texts.push(e.message, e.stack ?? "", JSON.stringify(Object.entries(e)));
    }
  }

  thrownBy(fn: () => unknown): void {
    try {
      fn();
    } catch (error) {
      this.addError(error);
      return;
    }
    throw new Error("expected a throw");
  }

  all(): string {
    return this.texts.join("\n");
  }
}

describe("the API key never leaks", () => {
  it("from construction errors, whatever the mistake", () => {
    const out = new Collector();
    out.thrownBy(() => new MeteringCallbackHandler(KEY, KONNECT)); // arguments swapped
    out.thrownBy(() => new MeteringCallbackHandler({ url: KEY, apiKey: KEY })); // the key in url by mistake
    out.thrownBy(() => new MeteringCallbackHandler({ url: `${KEY}/events` }));
    out.thrownBy(() => new MeteringCallbackHandler({ url: `https://x:${KEY}@host.example/events?key=${KEY}&x=1`, apiKey: KEY, maxBatchSize: 0 }));
    out.thrownBy(() => new MeteringCallbackHandler({ url: `ftp://x:${KEY}@host.example/events` }));
    out.thrownBy(() => new MeteringCallbackHandler(KONNECT, KEY, { apiKey: KEY } as never));
    out.thrownBy(() => new MeteringCallbackHandler({ url: KONNECT, apiKey: [KEY] as never }));
    out.thrownBy(() => new MeteringCallbackHandler({ url: KONNECT, apiKey: KEY, timeoutMs: KEY as never }));
    out.thrownBy(() => new MeteringCallbackHandler({ url: KONNECT, apiKey: KEY, spoolDir: { KEY } as never }));
    out.thrownBy(() => new MeteringCallbackHandler({ url: KONNECT, apiKey: KEY, source: KEY.repeat(0), defaultSubject: 5 as never }));
    out.thrownBy(() => new IngestClient({ url: KONNECT, apiKey: KEY, flushIntervalMs: KEY } as never));
    out.thrownBy(() => new IngestClient({ url: KEY } as never));
    expect(out.texts.length).toBeGreaterThan(20);
    expect(out.all()).not.toContain(KEY);
  });

  it("from every delivery failure, even when the server echoes the Authorization header back", async () => {
    const out = new Collector();
    const dir = mkdtempSync(join(tmpdir(), "om-secrets-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    // Each request gets the next failure; every body repeats the header it was sent.
    const failures = [
      (auth: string) => [503, "text/plain", `upstream saw ${auth}`],
      (auth: string) => [401, "application/problem+json", JSON.stringify({ title: "Unauthorized", detail: `bad token ${auth}` })],
      (auth: string) => [200, "text/html", `<html><title>${auth}</title><body>login ${auth}</body></html>`],
      (auth: string) => [301, "text/plain", `moved ${auth}`],
      (auth: string) => [400, "application/json", `{"message":"invalid ${auth}"}`],
      (auth: string) => [413, "text/plain", `too big ${auth}`],
      (auth: string) => [429, "text/html", `<p>slow down ${auth}</p>`],
    ] as const;
    const server = await startPlainServer((req, res, _body, i) => {
      const auth = String(req.headers.authorization);
      if (i === failures.length) return void res.socket?.destroy(); // a reset
      if (i > failures.length) return; // then hang
      const [status, type, body] = failures[i]!(auth);
      res.writeHead(status as number, { "content-type": type as string, "x-echo": auth, location: `https://u:${KEY}@elsewhere.example/?k=${KEY}` }).end(body);
    });
    cleanup.push(() => server.close());

    const handler = new MeteringCallbackHandler(server.url, KEY, {
      logger: out.logger,
      onError: out.onError,
      flushOnExit: false,
      // One event per request, so every scripted failure meets a request of its own (no splitting).
      maxBatchSize: 1,
      maxConcurrency: 1,
      timeoutMs: 150,
      retry: { retries: 0, minDelayMs: 1, maxDelayMs: 5 },
    });
    cleanup.push(() => handler.shutdown());
    const model = new ScriptedChatModel(() => ({ usage: usage(10, 5) }), "m", "p", { callbacks: [handler] });
    for (let i = 0; i < failures.length + 2; i++) {
      await model.invoke("x", { metadata: { subject: "acme", note: "no secrets here" } });
      await handler.flush();
    }
    // The same client's transport with a spool on a full disk, and an invalid event.
    const spooling = new IngestClient({
      url: server.url,
      apiKey: KEY,
      spoolDir: dir,
      flushOnExit: false,
      timeoutMs: 150,
      retry: { retries: 0 },
      logger: out.logger,
      onError: out.onError,
    });
    cleanup.push(() => spooling.shutdown());
    await spooling.replaySpool();
    symlinkSync("/dev/full", join(dir, "events.jsonl"));
    spooling.enqueue([...makeEvents(1), { ...makeEvents(1)[0]!, subject: "" }]);
    await spooling.flush();

    expect(server.requests.length).toBeGreaterThanOrEqual(failures.length + 1);
    expect(server.requests.every((r) => r.headers.authorization === `Bearer ${KEY}`)).toBe(true);
    const kinds = new Set(out.errors.map((e) => e.kind));
    for (const kind of ["rejected", "retries-exhausted", "invalid-event", "spool"]) expect(kinds).toContain(kind);
    const statuses = new Set(out.errors.map((e) => e.status));
    for (const status of [503, 401, 200, 301, 400, 413, 429]) expect(statuses).toContain(status);
    out.texts.push(JSON.stringify(handler.stats()), JSON.stringify(spooling.stats()));
    expect(out.all()).toContain("[redacted]");
    expect(out.all()).not.toContain(KEY);
    // Events carry no key either.
    expect(JSON.stringify(out.errors.flatMap((e) => e.events))).not.toContain(KEY);
  });

  it("from the spool file and the events themselves", async () => {
    const dir = mkdtempSync(join(tmpdir(), "om-secrets-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const server = await startPlainServer((_req, res) => res.writeHead(503).end());
    cleanup.push(() => server.close());
    const out = new Collector();
    const handler = new MeteringCallbackHandler(server.url, KEY, {
      spoolDir: dir,
      flushOnExit: false,
      retry: { retries: 0 },
      logger: out.logger,
      onError: out.onError,
    });
    cleanup.push(() => handler.shutdown());
    const model = new ScriptedChatModel(() => ({ usage: usage(3, 4) }), "m", "p", { callbacks: [handler] });
    await model.invoke("x", { metadata: { subject: "acme" } });
    await handler.flush();
    const spooled = readFileSync(join(dir, "events.jsonl"), "utf8");
    expect(spooled).toContain("-input");
    expect(spooled + out.all()).not.toContain(KEY);
  });
});
