// handler.shutdown(): model calls under way, and the calls a run under way still makes while
// shutdown drains (the next step of an agent), are billed; the drain is bounded on the clock.
import { RunnableLambda } from "@langchain/core/runnables";
import { awaitAllCallbacks } from "@langchain/core/callbacks/promises";
import { describe, expect, it } from "vitest";
import { MeteringCallbackHandler } from "langchain-openmeter";
import { TestClock } from "langchain-openmeter/testing";
import { MemorySink, recordingLogger } from "./support/memory-sink";
import { ScriptedChatModel, usage } from "./support/scripted-model";

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

function setup() {
  const sink = new MemorySink();
  const clock = new TestClock();
  const log = recordingLogger();
  const handler = new MeteringCallbackHandler({ client: sink, clock, shutdownTimeoutMs: 5000, handleSignals: false, logger: log.logger });
  return { sink, clock, handler, log };
}

const tokens = (sink: MemorySink) => sink.events.map((e) => `${e.data?.type}:${e.data?.tokens}`);

describe("handler.shutdown()", () => {
  it("with nothing running, ends at once, without the clock moving", async () => {
    const { handler, clock } = setup();
    await handler.shutdown();
    expect(clock.now()).toBe(0);
  });

  it("an agent run under way (the handler in the invoke config): its next model call, started while shutdown drains, is billed", async () => {
    const { sink, handler } = setup();
    const model = new ScriptedChatModel((call) => ({ usage: usage(10 + call, 1) }));
    const betweenSteps = gate();
    const toolDone = gate();
    const agent = RunnableLambda.from(async (input: string, config) => {
      await model.invoke(`${input} 1`, config);
      betweenSteps.open();
      await toolDone.opened; // a tool runs between the two model calls
      await model.invoke(`${input} 2`, config);
      return "done";
    });
    const run = agent.invoke("task", { callbacks: [handler], metadata: { subject: "acme" } });
    await betweenSteps.opened;
    let finished = false;
    const stopping = handler.shutdown().then(() => (finished = true));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(finished).toBe(false); // the run is still open: another call may come
    toolDone.open();
    await run;
    await stopping;
    expect(tokens(sink)).toEqual(["input:10", "output:1", "input:11", "output:1"]);
    expect(sink.events.every((e) => e.subject === "acme")).toBe(true);
  });

  it("the handler on the model only (the chain is invisible): a next call within the quiet second is billed", async () => {
    const { sink, handler, clock } = setup();
    const model = new ScriptedChatModel((call) => ({ usage: usage(20 + call, 2) }), "m", "p", { callbacks: [handler] });
    const betweenSteps = gate();
    const toolDone = gate();
    const chain = RunnableLambda.from(async (_: string, config) => {
      await model.invoke("1", config);
      betweenSteps.open();
      await toolDone.opened;
      await model.invoke("2", config);
    });
    const run = chain.invoke("x", { metadata: { subject: "acme" } });
    await betweenSteps.opened;
    // The first call's callbacks may still wait in LangChain's process-wide queue (under load): the
    // scenario is a shutdown that starts after the handler saw that call end.
    await awaitAllCallbacks();
    const stopping = handler.shutdown();
    await clock.advance(900);
    toolDone.open();
    await run;
    // The second call's callbacks wait in LangChain's process-wide queue, maybe behind another file's:
    // they reach the handler in real time, before the test moves the clock past the quiet second.
    await awaitAllCallbacks();
    await clock.advanceUntil(stopping);
    expect(tokens(sink)).toEqual(["input:20", "output:2", "input:21", "output:2"]);
  });

  it("a call that starts after shutdown finished is not metered, and the user is told", async () => {
    const { sink, handler, log } = setup();
    const model = new ScriptedChatModel(() => ({ usage: usage(1, 1) }));
    await handler.shutdown();
    await model.invoke("late", { callbacks: [handler], metadata: { subject: "acme" } });
    expect(sink.events).toEqual([]);
    expect(log.warnings.some((w) => /started after shutdown\(\) was not metered/.test(w))).toBe(true);
  });

  it("a run that never ends holds shutdown only until shutdownTimeoutMs on the clock", async () => {
    const { handler, clock } = setup();
    const never = new Promise<void>(() => {});
    const chain = RunnableLambda.from(async () => {
      await never;
    });
    void chain.invoke("x", { callbacks: [handler], metadata: { subject: "acme" } });
    await new Promise((resolve) => setTimeout(resolve, 10));
    let finished = false;
    const stopping = handler.shutdown().then(() => (finished = true));
    await clock.advance(4999);
    expect(finished).toBe(false);
    await clock.advance(1);
    await stopping;
    expect(finished).toBe(true);
  });
});
