/**
 * Metadata selection (src/metadata.ts) and subject checks (src/subject.ts), value by value: what rides
 * into an event's `data`, what is left out silently, and what is left out with a reason told.
 */
import { describe, expect, it } from "vitest";
import { isLangChainKey, MAX_METADATA_STRING, selectMetadata, type SkippedValue } from "../../src/metadata";
import { checkSubject } from "../../src/subject";

const reserved = new Set(["type", "tokens"]);
function select(metadata: Record<string, unknown> | undefined, policy: boolean | string[] = true) {
  const skipped: SkippedValue[] = [];
  const selected = selectMetadata(metadata, policy, "subject", reserved, (s) => skipped.push(s));
  return { selected, skipped };
}

describe("isLangChainKey", () => {
  it("LangChain's and LangGraph's bookkeeping keys, by name", () => {
    for (const key of ["versions", "checkpoint_ns", "checkpoint_id", "thread_id", "run_id", "run_name", "timeoutMs", "assistant_id", "graph_id", "task_id", "run_attempt"]) {
      expect(isLangChainKey(key), key).toBe(true);
    }
  });

  it("and by prefix at the start of the key only", () => {
    for (const key of ["ls_provider", "lc_agent_name", "langgraph_node", "__pregel_task"]) expect(isLangChainKey(key), key).toBe(true);
    for (const key of ["team", "my_ls_key", "x__y", "class_lc_", "not_langgraph_step", "ls", "versions2", "Versions"]) expect(isLangChainKey(key), key).toBe(false);
  });
});

describe("selectMetadata", () => {
  it("nothing to select: undefined, not an empty object", () => {
    expect(select(undefined).selected).toBeUndefined();
    expect(select({}).selected).toBeUndefined();
    expect(select({ ls_provider: "openai", subject: "acme", obj: {} }).selected).toBeUndefined();
    expect(select({ team: "x" }, false).selected).toBeUndefined();
    expect(select({ team: "x" }, []).selected).toBeUndefined();
  });

  it("every user key with true; LangChain's keys and the subject key stay out", () => {
    expect(select({ team: "x", ls_provider: "openai", thread_id: "t", subject: "acme", tier: 2 }).selected).toStrictEqual({ team: "x", tier: 2 });
  });

  it("with a list, exactly those keys, LangChain's too, but never the subject key", () => {
    const { selected } = select({ team: "x", thread_id: "t", ls_provider: "openai", subject: "acme", other: 1 }, ["thread_id", "team", "subject", "absent"]);
    expect(selected).toStrictEqual({ thread_id: "t", team: "x" });
  });

  it("flat values: strings, booleans, finite numbers and null as they are; bigints and dates as strings", () => {
    const { selected, skipped } = select({
      s: "x",
      t: true,
      f: false,
      n: 1.5,
      zero: 0,
      nil: null,
      big: 12n,
      date: new Date("2025-01-02T03:04:05.678Z"),
    });
    expect(selected).toStrictEqual({ s: "x", t: true, f: false, n: 1.5, zero: 0, nil: null, big: "12", date: "2025-01-02T03:04:05.678Z" });
    expect(skipped).toStrictEqual([]);
  });

  it("values a meter cannot group by are left out without a warning", () => {
    const { selected, skipped } = select({
      keep: "k",
      nan: Number.NaN,
      inf: Number.POSITIVE_INFINITY,
      badDate: new Date("nope"),
      obj: { a: 1 },
      arr: [1],
      fn: () => 1,
      sym: Symbol("s"),
      undef: undefined,
    });
    expect(selected).toStrictEqual({ keep: "k" });
    expect(skipped).toStrictEqual([]);
  });

  it("a key the event sets itself is refused with a reason, with true and with a list", () => {
    expect(select({ tokens: 999, team: "x" })).toStrictEqual({
      selected: { team: "x" },
      skipped: [{ key: "tokens", reason: "the event sets a field of that name itself" }],
    });
    expect(select({ type: "input" }, ["type"]).skipped).toStrictEqual([{ key: "type", reason: "the event sets a field of that name itself" }]);
  });

  it(`strings up to ${MAX_METADATA_STRING} characters ride along; longer ones are refused with the limit`, () => {
    expect(MAX_METADATA_STRING).toBe(1024);
    const { selected, skipped } = select({ edge: "a".repeat(1024), long: "b".repeat(1025) });
    expect(selected).toStrictEqual({ edge: "a".repeat(1024) });
    expect(skipped).toStrictEqual([{ key: "long", reason: "its string is longer than 1024 characters" }]);
  });

  it("a getter that throws costs its own key only, and says what it threw", () => {
    const metadata = { team: "x" } as Record<string, unknown>;
    Object.defineProperty(metadata, "bad", { enumerable: true, get: () => { throw new Error("no access"); } });
    Object.defineProperty(metadata, "worse", { enumerable: true, get: () => { throw "plain"; } });
    expect(select(metadata)).toStrictEqual({
      selected: { team: "x" },
      skipped: [
        { key: "bad", reason: "reading it threw (no access)" },
        { key: "worse", reason: "reading it threw (plain)" },
      ],
    });
  });

  it("works without an onSkip callback", () => {
    expect(selectMetadata({ tokens: 1, long: "x".repeat(2000), team: "x" }, true, "subject", reserved)).toStrictEqual({ team: "x" });
    const throwing = { team: "x" } as Record<string, unknown>;
    Object.defineProperty(throwing, "bad", { enumerable: true, get: () => { throw new Error("no access"); } });
    expect(selectMetadata(throwing, true, "subject", reserved)).toStrictEqual({ team: "x" });
  });
});

describe("checkSubject", () => {
  it("undefined and null mean no subject here (the next source is asked), not a refused one", () => {
    expect(checkSubject(undefined)).toBeUndefined();
    expect(checkSubject(null)).toBeUndefined();
  });

  it("strings trimmed, numbers and bigints in decimal", () => {
    expect(checkSubject(" acme ")).toStrictEqual({ ok: true, subject: "acme" });
    expect(checkSubject(4711)).toStrictEqual({ ok: true, subject: "4711" });
    expect(checkSubject(0)).toStrictEqual({ ok: true, subject: "0" });
    expect(checkSubject(12n)).toStrictEqual({ ok: true, subject: "12" });
  });

  it("refusals say why", () => {
    expect(checkSubject(Number.NaN)).toStrictEqual({ ok: false, reason: "it is NaN, not a finite number" });
    expect(checkSubject(true)).toStrictEqual({ ok: false, reason: "it is a boolean, not a string" });
    expect(checkSubject({})).toStrictEqual({ ok: false, reason: "it is a object, not a string" });
    expect(checkSubject("  ")).toStrictEqual({ ok: false, reason: "it is empty" });
    expect(checkSubject("a".repeat(257))).toStrictEqual({ ok: false, reason: "it is longer than 256 characters" });
    expect(checkSubject("a".repeat(256))).toStrictEqual({ ok: true, subject: "a".repeat(256) });
    expect(checkSubject("a\u200bb")).toStrictEqual({ ok: false, reason: "it contains control or invisible characters" });
  });
});
