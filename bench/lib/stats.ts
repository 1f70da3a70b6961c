/** Small statistics and formatting helpers shared by the benchmarks. */

export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function sortedCopy(values: ArrayLike<number>): Float64Array {
  return Float64Array.from(values as ArrayLike<number>).sort();
}

export interface Summary {
  n: number;
  p25: number;
  median: number;
  p75: number;
  p99: number;
  max: number;
  mean: number;
}

export function summarize(values: ArrayLike<number>): Summary {
  const s = sortedCopy(values);
  let sum = 0;
  for (let i = 0; i < s.length; i++) sum += s[i]!;
  return { n: s.length, p25: percentile(s, 25), median: percentile(s, 50), p75: percentile(s, 75), p99: percentile(s, 99), max: s.length ? s[s.length - 1]! : NaN, mean: sum / s.length };
}

/** Fixed-point with a sensible number of digits for the magnitude. */
export function fmt(value: number, digits?: number): string {
  if (!Number.isFinite(value)) return "n/a";
  const abs = Math.abs(value);
  const d = digits ?? (abs >= 1000 ? 0 : abs >= 100 ? 0 : abs >= 10 ? 1 : 2);
  return value.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
}

export function ratio(value: number, base: number): string {
  if (!Number.isFinite(value) || !Number.isFinite(base) || base === 0) return "n/a";
  return `${fmt(value / base, value / base >= 100 ? 0 : 2)}x`;
}

export const MB = 1024 * 1024;
export const mb = (bytes: number): string => `${fmt(bytes / MB, 1)} MB`;

export type Row = Record<string, string>;

/** A Markdown table; it is also readable on a terminal. */
export function table(rows: Row[]): string {
  if (rows.length === 0) return "(no rows)";
  const headers = Object.keys(rows[0]!);
  const widths = headers.map((h) => Math.max(h.length, ...rows.map((r) => (r[h] ?? "").length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [line(headers), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.map((r) => line(headers.map((h) => r[h] ?? "")))].join("\n");
}
