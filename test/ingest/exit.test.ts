import { describe, expect, it } from "vitest";
import { IngestClient } from "langchain-openmeter";

describe("exit hooks", () => {
  it("share one beforeExit listener across clients and hold clients only weakly", async () => {
    const before = process.listenerCount("beforeExit");
    let clients: IngestClient[] | undefined = Array.from({ length: 20 }, () => new IngestClient({ url: "http://127.0.0.1:9/api/v1/events" }));
    expect(process.listenerCount("beforeExit")).toBeLessThanOrEqual(before + 1);

    const refs = clients.map((client) => new WeakRef(client));
    clients = undefined;
    const gc = (globalThis as { gc?: () => void }).gc;
    expect(gc, "vitest.config.ts runs tests with --expose-gc").toBeTypeOf("function");
    for (let i = 0; i < 10 && refs.some((ref) => ref.deref()); i++) {
      await new Promise((resolve) => setImmediate(resolve));
      gc!();
    }
    expect(refs.filter((ref) => ref.deref()).length).toBe(0);
  });
});
