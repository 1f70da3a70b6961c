import { MeteringCallbackHandler, type CloudEvent } from "../src/index";
import { InstantChatModel } from "./lib/model";
import { NoopHandler } from "./lib/handlers";
import { Endpoint } from "./lib/endpoint";
import { summarize } from "./lib/stats";
const endpoint = await Endpoint.start({ kind: "openmeter", delayMs: 20 });
const sink = { enqueue: (_e: CloudEvent | readonly CloudEvent[]) => {}, flush: async () => {}, shutdown: async () => {} };
const variants: Record<string, InstantChatModel> = {
  noop: new InstantChatModel({ callbacks: [new NoopHandler()] }),
  "metering+nullsink": new InstantChatModel({ callbacks: [new MeteringCallbackHandler({ client: sink })] }),
  "metering+client": new InstantChatModel({ callbacks: [new MeteringCallbackHandler({ url: endpoint.url })] }),
};
const only = process.env.ONLY;
const samples: Record<string, number[]> = {};
for (let r = 0; r < 12; r++) for (const [k, m] of Object.entries(variants)) {
  if (only && k !== only) continue;
  const s = (samples[k] ??= []);
  for (let i = 0; i < 2000; i++) { const t = performance.now(); await m.invoke("hi", { metadata: { subject: "acme", tier: "pro" } }); if (r > 1) s.push((performance.now() - t) * 1000); }
}
for (const [k, s] of Object.entries(samples)) { const x = summarize(s); console.log(k, x.median.toFixed(1), x.mean.toFixed(1), x.p99.toFixed(0)); }
await endpoint.close(); process.exit(0);
