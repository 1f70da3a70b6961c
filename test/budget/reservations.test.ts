/**
 * The accounting invariant of src/budget/reservations.ts, by the numbers: available = B − L − R, where
 * L is what this process metered since `requestedAt − settleMs` of the reading in use.
 */
import { describe, expect, it } from "vitest";
import { BalanceAccount, type ServerReading } from "../../src/budget/reservations";

const T = Date.UTC(2026, 4, 5, 10, 0, 0);
const read = (requestedAt: number, balance: number, extra: Partial<ServerReading> = {}): ServerReading => ({
  requestedAt,
  hasAccess: balance > 0,
  balance,
  softLimit: false,
  ...extra,
});

describe("BalanceAccount", () => {
  it("no reading, no balance: available is undefined, but reservations and usage are kept for when one arrives", () => {
    const account = new BalanceAccount(15_000);
    account.reserve(100);
    account.record(T, 40);
    expect(account.available()).toBeUndefined();
    account.apply(read(T + 1000, 1000));
    expect(account.available()).toBe(1000 - 40 - 100);
  });

  it("reservations count until released; a release never makes R negative", () => {
    const account = new BalanceAccount(15_000);
    account.apply(read(T, 1000));
    account.reserve(300);
    account.reserve(200);
    expect(account.available()).toBe(500);
    account.release(300);
    expect(account.available()).toBe(800);
    account.release(1000);
    expect(account.reserved).toBe(0);
    expect(account.available()).toBe(1000);
  });

  it("usage metered within settleMs before a reading's request stays subtracted; older usage is left to OpenMeter's balance", () => {
    const account = new BalanceAccount(15_000);
    account.apply(read(T, 1000));
    account.record(T + 1_000, 100); // metered at 10:00:01
    account.record(T + 20_000, 50); // metered at 10:00:20
    expect(account.available()).toBe(850);
    // A read requested at 10:00:30: the 100 (29 s old) is in its balance, the 50 (10 s old) may not be.
    account.apply(read(T + 30_000, 880));
    expect(account.local).toBe(50);
    expect(account.available()).toBe(830);
    // 15 s after the 50 was metered, the next read contains it; nothing is subtracted twice any more.
    account.apply(read(T + 36_000, 850));
    expect(account.local).toBe(0);
    expect(account.available()).toBe(850);
  });

  it("a unit is never in neither: whatever OpenMeter has not counted yet is still subtracted", () => {
    const account = new BalanceAccount(15_000);
    account.apply(read(T, 1000));
    account.record(T + 5_000, 100);
    // The event is still on its way (batched, or in OpenMeter's ingest): the read does not show it.
    account.apply(read(T + 10_000, 1000));
    expect(account.available()).toBe(900);
    account.apply(read(T + 19_999, 1000));
    expect(account.available()).toBe(900);
  });

  it("within settleMs a unit OpenMeter already counted is subtracted twice (the conservative side), and only then", () => {
    const account = new BalanceAccount(15_000);
    account.apply(read(T, 1000));
    account.record(T + 5_000, 100);
    account.apply(read(T + 10_000, 900)); // delivered fast: already in the balance
    expect(account.available()).toBe(800);
    account.apply(read(T + 21_000, 900)); // the entry's whole second lies settleMs before the request
    expect(account.available()).toBe(900);
  });

  it("an answer requested before the reading in use is ignored (an overtaken refresh does not bring usage back or time back)", () => {
    const account = new BalanceAccount(15_000);
    account.record(T + 1_000, 100);
    expect(account.apply(read(T + 60_000, 700))).toBe(true);
    expect(account.local).toBe(0);
    expect(account.apply(read(T + 30_000, 900))).toBe(false);
    expect(account.reading?.balance).toBe(700);
    expect(account.available()).toBe(700);
  });

  it("while delivery is in trouble (holdLocal), a new balance is taken but nothing leaves L", () => {
    const account = new BalanceAccount(15_000);
    account.record(T + 1_000, 100);
    account.apply(read(T + 60_000, 1000), true);
    expect(account.available()).toBe(900);
    account.apply(read(T + 70_000, 1000), false);
    expect(account.available()).toBe(1000);
  });

  it("usage of one second is merged into one entry, and leaves only once all of that second is settleMs old", () => {
    const account = new BalanceAccount(1_000);
    for (let i = 0; i < 1000; i++) account.record(T + 200 + (i % 700), 1);
    expect(account.local).toBe(1000);
    account.apply(read(T + 1_999, 0));
    expect(account.local).toBe(1000); // the second [10:00:00, 10:00:01) ends 1 ms after the line
    account.apply(read(T + 2_000, 0));
    expect(account.local).toBe(0);
  });

  it("more usage than reserved drives available below zero (a call without maxTokens ran long)", () => {
    const account = new BalanceAccount(15_000);
    account.apply(read(T, 100));
    account.reserve(80);
    account.release(80);
    account.record(T + 1000, 250);
    expect(account.available()).toBe(-150);
  });
});
