import type { BenchResult } from "./env";
import { table } from "./stats";

/** One benchmark's section: tables, target checks, notes. Used on the terminal and in RESULTS.md. */
export function renderResult(r: BenchResult, heading = "##"): string {
  const out: string[] = [`${heading} ${r.title}`, ""];
  const params = Object.entries(r.params).map(([k, v]) => `${k}=${v}`).join(", ");
  if (params) out.push(`Parameters: ${params}`, "");
  for (const t of r.tables) {
    if (t.caption) out.push(t.caption, "");
    out.push(table(t.rows), "");
  }
  if (r.targets.length > 0) {
    out.push(
      table(r.targets.map((t) => ({ target: t.target, measured: t.measured, result: t.met ? "met" : "MISSED" }))),
      "",
    );
  }
  for (const n of r.notes) out.push(`- ${n}`);
  if (r.notes.length) out.push("");
  return out.join("\n");
}
