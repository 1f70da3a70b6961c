/** Sums metered tokens per subject and prints them the way a billing platform's invoice preview does. */
import type { CloudEvent } from "langchain-openmeter";

export interface Prices {
  /** Price of one input token. */
  input: number;
  /** Price of one output token. */
  output: number;
  currency: string;
}

export type Totals = Map<string, { input: number; output: number }>;

export function addToTotals(totals: Totals, event: CloudEvent): void {
  const data = event.data as { type?: string; tokens?: number } | undefined;
  if (typeof data?.tokens !== "number") return;
  const line = totals.get(event.subject) ?? { input: 0, output: 0 };
  if (data.type === "output") line.output += data.tokens;
  else line.input += data.tokens; // input, and cached input when split out
  totals.set(event.subject, line);
}

export function formatInvoice(totals: Totals, prices: Prices): string {
  if (totals.size === 0) return "Invoice preview: no metered usage.";
  const money = (amount: number) => `${prices.currency}${amount.toFixed(6)}`;
  const unit = (price: number) => `${prices.currency}${decimal(price)}`;
  const table: string[][] = [];
  for (const [subject, { input, output }] of totals) {
    // Each line is rounded as shown, and the total is the sum of the lines, as an invoice does.
    const inputAmount = roundMicro(input * prices.input);
    const outputAmount = roundMicro(output * prices.output);
    table.push(
      [`Invoice preview for subject "${subject}"`],
      ["", "tokens", "unit price", "amount"],
      ["Input tokens", input.toLocaleString("en-US"), unit(prices.input), money(inputAmount)],
      ["Output tokens", output.toLocaleString("en-US"), unit(prices.output), money(outputAmount)],
      ["Total", "", "", money(roundMicro(inputAmount + outputAmount))],
    );
  }
  const widths = [14, 10, 14, 12];
  return table
    .map((cells) =>
      cells.length === 1
        ? cells[0]!
        : "  " + cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join(" "),
    )
    .join("\n");
}

/** 0.00000015 rather than 1.5e-7: prices are per single token and tiny. */
function decimal(value: number): string {
  return value.toFixed(12).replace(/\.?0+$/, "");
}

function roundMicro(amount: number): number {
  return Math.round(amount * 1e6) / 1e6;
}
