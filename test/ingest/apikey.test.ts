import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { IngestClient } from "langchain-openmeter";

const event = { specversion: "1.0", id: "e-1", source: "s", type: "t", subject: "acme", data: { tokens: 1 } } as const;

describe("apiKey as it comes from files and secrets", () => {
  it("drops a trailing newline, so the key works", async () => {
    const seen: Array<string | undefined> = [];
    const server = createServer((req, res) => {
      seen.push(req.headers.authorization);
      req.resume().on("end", () => res.writeHead(204).end());
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    const client = new IngestClient({ url: `http://127.0.0.1:${port}/api/v1/events`, apiKey: "om_key123\n", flushOnExit: false });
    client.enqueue(event);
    await client.shutdown();
    expect(seen).toEqual(["Bearer om_key123"]);
    expect(client.stats()).toMatchObject({ sent: 1, retries: 0 });
    server.close();
  });

  it("refuses a key with inner whitespace or control characters at construction, without echoing it", () => {
    for (const apiKey of ["om key", "om\u0000key", "om\nkey", "ключ"]) {
      let message = "";
      try {
        new IngestClient({ url: "https://openmeter.cloud/api/v1/events", apiKey });
      } catch (error) {
        message = (error as Error).message;
      }
      expect(message).toMatch(/`apiKey` contains spaces, control or non-ASCII characters/);
      expect(message).not.toContain(apiKey);
    }
  });
});
