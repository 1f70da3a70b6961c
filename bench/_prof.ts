import { randomUUID } from "node:crypto";
import { HumanMessage } from "@langchain/core/messages";
import { MeteringCallbackHandler, type CloudEvent } from "../src/index";
import { llmResult, realisticCallArgs } from "./lib/model";
let n = 0;
const sink = { enqueue: (e: CloudEvent | readonly CloudEvent[]) => { n++; }, flush: async () => {}, shutdown: async () => {} };
const handler = new MeteringCallbackHandler({ client: sink });
const args = realisticCallArgs();
const N = 300_000;
const ids = Array.from({ length: N }, () => randomUUID());
const msgs = [[new HumanMessage("x")]];
const results = Array.from({ length: 1000 }, () => llmResult());
for (let round = 0; round < 3; round++) {
  let tStart = 0, tEnd = 0;
  for (let i = 0; i < N; i++) {
    const runId = ids[i]!;
    const md = { ...args.metadata }, ep = { ...args.extraParams }, r = results[i % 1000]!;
    const a = performance.now();
    handler.handleChatModelStart(args.serialized, msgs, runId, undefined, ep, [], md);
    const b = performance.now();
    handler.handleLLMEnd(r as never, runId, undefined, undefined, {});
    const c = performance.now();
    tStart += b - a; tEnd += c - b;
  }
  console.log(`round ${round}: start ${(tStart / N * 1000).toFixed(2)} µs, end ${(tEnd / N * 1000).toFixed(2)} µs per call`);
}
