// The process-wide lifecycle registry, in this process (the child-process tests show the endings).
import { describe, expect, it, vi } from "vitest";
import { IngestClient } from "langchain-openmeter";

interface Registry {
  signalling: boolean;
  signalsInstalled: boolean;
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
    // The registry lets go of the collected ones the next time it looks (here: the program's end).
    const r = registry()!;
    const held = r.participants.size;
    expect(held).toBeGreaterThanOrEqual(20);
    r.onBeforeExit();
    expect(r.participants.size).toBe(held - 20);
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

  describe("signals, emitted in this process (process.kill stubbed: the re-raise is observed, not done)", () => {
    /** Runs `body` with only the library's signal listeners installed, then puts the process back as it was. */
    async function withSignals(body: (r: Registry, kill: ReturnType<typeof vi.spyOn>) => Promise<void>) {
      const saved = Object.fromEntries(["SIGTERM", "SIGINT"].map((s) => [s, process.listeners(s as NodeJS.Signals)]));
      for (const s of ["SIGTERM", "SIGINT"]) process.removeAllListeners(s);
      const kill = vi.spyOn(process, "kill").mockImplementation(() => true);
      const { joinLifecycle } = await import("../../src/ingest/lifecycle");
      const probe = { onExit() {} };
      const leave = joinLifecycle(probe, { signals: false });
      const r = registry()!;
      try {
        await body(r, kill);
      } finally {
        leave();
        r.signalling = false;
        for (const s of ["SIGTERM", "SIGINT"] as const) {
          process.removeListener(s, r.onSignal);
          for (const listener of saved[s]!) process.on(s, listener as () => void);
        }
        r.signalsInstalled = false;
        kill.mockRestore();
      }
    }
    const turns = async () => {
      for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
    };

    it("a signal shuts down the participants that asked for signals, then re-raises it when nobody else listens", async () => {
      await withSignals(async (r, kill) => {
        const { joinLifecycle } = await import("../../src/ingest/lifecycle");
        const wanted = { onSignal: vi.fn(async () => {}) };
        const notWanted = { onSignal: vi.fn(async () => {}) };
        const leave = [joinLifecycle(wanted, { signals: true }), joinLifecycle(notWanted, { signals: false })];
        expect(ours("SIGTERM", r.onSignal)).toBe(1);
        expect(ours("SIGINT", r.onSignal)).toBe(1);
        process.emit("SIGTERM", "SIGTERM");
        expect(wanted.onSignal).toHaveBeenCalledWith("SIGTERM");
        expect(notWanted.onSignal).not.toHaveBeenCalled();
        expect(kill).not.toHaveBeenCalled();
        await turns();
        expect(kill).toHaveBeenCalledWith(process.pid, "SIGTERM");
        expect(ours("SIGTERM", r.onSignal)).toBe(0);
        expect(ours("SIGINT", r.onSignal)).toBe(0);
        expect(r.signalsInstalled).toBe(false);
        for (const l of leave) l();
      });
    });

    it("a program with its own listener keeps control: the signal is not raised again", async () => {
      await withSignals(async (_r, kill) => {
        const { joinLifecycle } = await import("../../src/ingest/lifecycle");
        const own = vi.fn();
        process.on("SIGINT", own);
        const failing = { onSignal: vi.fn(async () => Promise.reject(new Error("shutdown failed"))) };
        const leave = joinLifecycle(failing, { signals: true });
        process.emit("SIGINT", "SIGINT");
        await turns();
        expect(own).toHaveBeenCalledTimes(1);
        expect(failing.onSignal).toHaveBeenCalledWith("SIGINT");
        expect(kill).not.toHaveBeenCalled();
        process.removeListener("SIGINT", own);
        leave();
      });
    });

    it("a second signal while shutting down runs the exit hooks and re-raises at once", async () => {
      await withSignals(async (r, kill) => {
        const { joinLifecycle } = await import("../../src/ingest/lifecycle");
        const slow = { onSignal: vi.fn(() => new Promise<void>(() => {})), onExit: vi.fn() };
        const leave = joinLifecycle(slow, { signals: true });
        process.emit("SIGTERM", "SIGTERM");
        await turns();
        expect(kill).not.toHaveBeenCalled();
        expect(r.signalling).toBe(true);
        // While signalling, a new participant that wants signals installs nothing.
        const late = { onSignal: vi.fn(async () => {}) };
        const leaveLate = joinLifecycle(late, { signals: true });
        expect(ours("SIGINT", r.onSignal)).toBe(1);
        process.emit("SIGINT", "SIGINT");
        expect(slow.onExit).toHaveBeenCalledTimes(1);
        expect(slow.onSignal).toHaveBeenCalledTimes(1);
        expect(late.onSignal).not.toHaveBeenCalled();
        expect(kill).toHaveBeenCalledWith(process.pid, "SIGINT");
        expect(ours("SIGTERM", r.onSignal)).toBe(0);
        expect(ours("SIGINT", r.onSignal)).toBe(0);
        // Leaving while signalling removes nothing more and installs nothing.
        leaveLate();
        leave();
        expect(r.signalsInstalled).toBe(false);
      });
    });

    it("beforeExit reaches every participant, with or without signals", async () => {
      await withSignals(async (r) => {
        const { joinLifecycle } = await import("../../src/ingest/lifecycle");
        const a = { beforeExit: vi.fn() };
        const b = { beforeExit: vi.fn() };
        const leave = [joinLifecycle(a, { signals: true }), joinLifecycle(b, { signals: false })];
        r.onBeforeExit();
        expect([a.beforeExit.mock.calls.length, b.beforeExit.mock.calls.length]).toStrictEqual([1, 1]);
        for (const l of leave) l();
        r.onBeforeExit();
        expect(a.beforeExit).toHaveBeenCalledTimes(1);
      });
    });

    it("the signal listeners stay while any participant still wants signals", async () => {
      await withSignals(async (r) => {
        const { joinLifecycle } = await import("../../src/ingest/lifecycle");
        const leaveA = joinLifecycle({}, { signals: true });
        const keep = {};
        const leaveB = joinLifecycle(keep, { signals: true });
        const leaveC = joinLifecycle({}, { signals: false });
        leaveA();
        leaveC();
        expect(ours("SIGTERM", r.onSignal)).toBe(1);
        leaveB();
        expect(ours("SIGTERM", r.onSignal)).toBe(0);
        // Leaving twice is harmless.
        leaveB();
        expect(r.signalsInstalled).toBe(false);
      });
    });
  });
});
