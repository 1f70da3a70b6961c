import { afterEach, describe, expect, it } from "vitest";
import { IngestClient } from "langchain-openmeter";
import { TestClock } from "langchain-openmeter/testing";
import { settleOn } from "../support/clocked";
import { startPlainServer } from "./helpers";

const event = { specversion: "1.0", id: "e-1", source: "s", type: "t", subject: "acme", data: { tokens: 1 } } as const;

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

/** Sends one event with `apiKey` to a loopback endpoint; returns the Authorization headers it saw and the client. */
async function sendWith(apiKey: string | undefined) {
  const server = await startPlainServer((_req, res) => void res.writeHead(204).end());
  cleanup.push(() => server.close());
  const clock = new TestClock();
  const warnings: string[] = [];
  const client = new IngestClient({
    url: server.url,
    ...(apiKey === undefined ? {} : { apiKey }),
    clock,
    flushOnExit: false,
    handleSignals: false,
    logger: { warn: (m) => void warnings.push(m), error: (m) => void warnings.push(m) },
  });
  client.enqueue(event);
  await settleOn(clock, client.shutdown());
  return { seen: server.requests.map((r) => r.headers.authorization), client, warnings };
}

describe("apiKey as it comes from files and secrets", () => {
  it("drops a trailing newline, so the key works", async () => {
    const { seen, client } = await sendWith("om_key123\n");
    expect(seen).toEqual(["Bearer om_key123"]);
    expect(client.stats()).toMatchObject({ delivered: 1, retries: 0 });
  });

  it("an empty or blank key (an unset variable in a .env file) means no key: no Authorization header, delivered", async () => {
    for (const apiKey of ["", "  ", "\n"]) {
      const { seen, client, warnings } = await sendWith(apiKey);
      expect(seen).toEqual([undefined]);
      expect(client.stats().delivered).toBe(1);
      expect(warnings).toEqual([]);
    }
  });

  it("refuses a key with inner whitespace or control characters at construction, without echoing it", () => {
    for (const apiKey of ["om key", "om\u0000key", "om\nkey", "ключ"]) {
      let message = "";
      try {
        new IngestClient({ url: "https://openmeter.cloud/api/v1/events", apiKey, handleSignals: false, flushOnExit: false });
      } catch (error) {
        message = (error as Error).message;
      }
      expect(message).toMatch(/`apiKey` contains spaces, control or non-ASCII characters/);
      expect(message).not.toContain(apiKey);
    }
  });
});
