// The process-wide lifecycle registry, in this process (the child-process tests show the endings).
import { describe, expect, it, vi } from "vitest";
import { IngestClient } from "langchain-openmeter";

interface Registry {
  participants: Set<WeakRef<object>>;
  signalParticipants: Set<WeakRef<object>>;
  onBeforeExit: () => void;
  onExit: () => void;
  onSignal: (signal: NodeJS.Signals) => void;
}
const registry = () => (globalThis as Record<symbol, Registry | undefined>)[Symbol.for("langchain-openmeter.lifecycle.v1")];
const ours = (event: string, listener: unknown) => process.listeners(event as NodeJS.Signals).filter((l) => l === listener).length;
const quiet = { warn() {}, error() {} };

describe("the lifecycle registry", () => {
  it("one beforeExit, exit and signal listener each for any number of clients; signal listeners leave with the last client that wanted them", async () => {
    // Clients of other files in this worker may still be registered: count from what is there now.
    const before = registry()?.signalParticipants.size ?? 0;
    const clients = Array.from({ length: 20 }, () => new IngestClient({ url: "http://127.0.0.1:9/api/v1/events", logger: quiet }));
    const r = registry()!;
    expect(ours("beforeExit", r.onBeforeExit)).toBe(1);
    expect(ours("exit", r.onExit)).toBe(1);
    expect(ours("SIGTERM", r.onSignal)).toBe(1);
    expect(ours("SIGINT", r.onSignal)).toBe(1);
    expect(r.signalParticipants.size).toBe(before + 20);
    for (const client of clients) await client.shutdown();
    expect(r.signalParticipants.size).toBe(before);
    if (before === 0) {
      expect(ours("SIGTERM", r.onSignal)).toBe(0);
      expect(ours("SIGINT", r.onSignal)).toBe(0);
    }
  });

  it("a second copy of the library (another module instance, as ESM beside CommonJS) joins the same registry", async () => {
    const first = await import("../../src/ingest/lifecycle");
    vi.resetModules();
    const second = await import("../../src/ingest/lifecycle");
    expect(second).not.toBe(first);
    const a = { onExit: vi.fn() };
    const b = { onExit: vi.fn() };
    const leaveA = first.joinLifecycle(a, { signals: false });
    const leaveB = second.joinLifecycle(b, { signals: false });
    registry()!.onExit();
    expect(a.onExit).toHaveBeenCalledTimes(1);
    expect(b.onExit).toHaveBeenCalledTimes(1);
    leaveA();
    leaveB();
    registry()!.onExit();
    expect(a.onExit).toHaveBeenCalledTimes(1);
  });

  it("holds clients weakly: clients nobody references are collected without a shutdown", async () => {
    let clients: IngestClient[] | undefined = Array.from({ length: 20 }, () => new IngestClient({ url: "http://127.0.0.1:9/api/v1/events", handleSignals: false, logger: quiet }));
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

  it("a hook that throws does not stop the others", () => {
    const first = { onExit: () => { throw new Error("broken hook"); } };
    const second = { onExit: vi.fn() };
    return import("../../src/ingest/lifecycle").then(({ joinLifecycle }) => {
      const leave = [joinLifecycle(first, { signals: false }), joinLifecycle(second, { signals: false })];
      expect(() => registry()!.onExit()).not.toThrow();
      expect(second.onExit).toHaveBeenCalledTimes(1);
      for (const l of leave) l();
    });
  });
});
