/**
 * The handler in the process's ending (src/handler.ts with src/ingest/lifecycle.ts), in this process:
 * the handler, not the client it creates, joins the lifecycle registry; the program's end and a
 * signal shut it down. The child-process tests (test/process/) show the real endings; these show
 * who is called, with process.kill stubbed so a re-raised signal is observed, not delivered.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { MeteringCallbackHandler } from "langchain-openmeter";
import { TestClock } from "langchain-openmeter/testing";
import { until } from "./support/clocked";
import { MemorySink, recordingLogger } from "./support/memory-sink";

interface Registry {
  signalling: boolean;
  signalsInstalled: boolean;
  participants: Set<WeakRef<object>>;
  signalParticipants: Set<WeakRef<object>>;
  onBeforeExit: () => void;
  onSignal: (signal: NodeJS.Signals) => void;
}
const registry = () => (globalThis as Record<symbol, Registry | undefined>)[Symbol.for("langchain-openmeter.lifecycle.v1")];
const live = (refs: Set<WeakRef<object>> | undefined) => [...(refs ?? [])].map((ref) => ref.deref()).filter((p) => p !== undefined);
const URL = "http://127.0.0.1:9/api/v1/events";

const made: Array<{ h: MeteringCallbackHandler; clock: TestClock }> = [];
function handler(options: Record<string, unknown> = {}) {
  const clock = new TestClock();
  // Nothing listens at port 9: a queued event is refused at once, not retried, and shutdown is short.
  const h = new MeteringCallbackHandler({ url: URL, logger: recordingLogger().logger, clock, retry: { retries: 0 }, shutdownTimeoutMs: 100, onError: () => {}, ...options });
  made.push({ h, clock });
  return h;
}
afterEach(async () => {
  for (const { h, clock } of made.splice(0)) await clock.advanceUntil(h.shutdown());
});

describe("the handler in the process's ending", () => {
  it("with its own client, the handler takes the signals: the client it creates joins for the exit hook only", () => {
    const participants = live(registry()?.participants).length;
    const signalParticipants = live(registry()?.signalParticipants).length;
    handler();
    expect(live(registry()!.participants).length).toBe(participants + 2);
    expect(live(registry()!.signalParticipants).length).toBe(signalParticipants + 1);
  });

  it("the program's end does not shut the handler's client down behind the handler's back", () => {
    const h = handler({ handleSignals: false, flushOnExit: false });
    h.client.enqueue({ specversion: "1.0", id: "e1", source: "app", type: "tokens", subject: "acme", time: "2026-01-01T00:00:00Z", data: { tokens: 1 } });
    const spies = [vi.spyOn(h, "shutdown"), vi.spyOn(h.client, "shutdown")];
    registry()!.onBeforeExit();
    expect(spies.map((s) => s.mock.calls.length)).toStrictEqual([0, 0]);
  });

  it("the program's end (beforeExit) shuts a handler with its own client down, once", async () => {
    const h = handler({ handleSignals: false });
    const shutdown = vi.spyOn(h, "shutdown");
    registry()!.onBeforeExit();
    registry()!.onBeforeExit();
    expect(shutdown).toHaveBeenCalledTimes(1);
    await h.shutdown();
    // Shut down, it has left the registry.
    expect(live(registry()!.participants)).not.toContain(h);
  });

  it("with flushOnExit false, or with a client passed in, the program's end leaves the handler alone", () => {
    const noFlush = handler({ handleSignals: false, flushOnExit: false });
    const passedIn = new MeteringCallbackHandler({ client: new MemorySink(), logger: recordingLogger().logger, handleSignals: false });
    made.push({ h: passedIn, clock: new TestClock() });
    const spies = [vi.spyOn(noFlush, "shutdown"), vi.spyOn(passedIn, "shutdown")];
    registry()?.onBeforeExit();
    expect(spies.map((s) => s.mock.calls.length)).toStrictEqual([0, 0]);
    expect(live(registry()?.participants)).not.toContain(noFlush);
    expect(live(registry()?.participants)).not.toContain(passedIn);
  });

  it("with handleSignals (the default) a signal shuts the handler down; without, it is not a signal participant", async () => {
    const signalParticipants = live(registry()?.signalParticipants).length;
    const withSignals = handler({ flushOnExit: false });
    const without = handler({ handleSignals: false });
    expect(live(registry()!.signalParticipants).length).toBe(signalParticipants + 1);
    const spies = [vi.spyOn(withSignals, "shutdown"), vi.spyOn(without, "shutdown")];
    const r = registry()!;
    const kill = vi.spyOn(process, "kill").mockImplementation(() => true);
    const own = () => {};
    process.on("SIGTERM", own);
    try {
      r.onSignal("SIGTERM");
      expect(spies.map((s) => s.mock.calls.length)).toStrictEqual([1, 0]);
      await spies[0]!.mock.results[0]!.value;
      // The signal is raised again once the participants are done: here, with a listener of our own, it is not.
      await until(() => !r.signalsInstalled, "the library to leave the signal to our listener");
      expect(kill).not.toHaveBeenCalled();
    } finally {
      process.removeListener("SIGTERM", own);
      r.signalling = false;
      kill.mockRestore();
    }
  });
});

describe("what the handler asks of LangChain", () => {
  it("never raises into the user's call; ignores agent, retriever and custom events; watches models and chains", () => {
    const h = new MeteringCallbackHandler({ client: new MemorySink(), logger: recordingLogger().logger });
    expect([h.name, h.raiseError, h.ignoreAgent, h.ignoreRetriever, h.ignoreCustomEvent, h.ignoreLLM, h.ignoreChain]).toStrictEqual([
      "MeteringCallbackHandler",
      false,
      true,
      true,
      true,
      false,
      false,
    ]);
  });

  it("LangChain's copies of the handler are the handler itself (one handler, one client)", () => {
    const h = new MeteringCallbackHandler({ client: new MemorySink(), logger: recordingLogger().logger });
    expect(h.copy()).toBe(h);
  });
});
