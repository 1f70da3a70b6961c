import { describe, expect, it } from "vitest";
import { cloudEventSchema } from "langchain-openmeter";

describe("cloudEventSchema", () => {
  const event = {
    specversion: "1.0",
    id: "run-1-input",
    source: "langchain",
    type: "kong.llm_request",
    subject: "acme",
    time: "2026-05-05T15:26:47.000Z",
    data: { type: "input", tokens: 12 },
  };

  it("accepts an event OpenMeter accepts", () => {
    expect(cloudEventSchema.safeParse(event).success).toBe(true);
  });

  it("rejects an empty subject, naming the attribute", () => {
    const result = cloudEventSchema.safeParse({ ...event, subject: "" });
    expect(result.success).toBe(false);
    expect(result.error?.issues[0]?.message).toBe("`subject` must not be empty");
  });

  it("rejects top-level attributes OpenMeter's v3 schema does not allow", () => {
    expect(cloudEventSchema.safeParse({ ...event, tier: "pro" }).success).toBe(false);
  });

  it("rejects a time that is not RFC 3339", () => {
    expect(cloudEventSchema.safeParse({ ...event, time: "yesterday" }).success).toBe(false);
  });
});

describe("cloudEventSchema: what OpenMeter also accepts", () => {
  const base = { specversion: "1.0", id: "e-1", source: "s", type: "t", subject: "acme" };
  it("accepts datacontenttype, dataschema and null optional attributes", () => {
    for (const extra of [
      { datacontenttype: "application/json" },
      { dataschema: "https://example.com/schema.json" },
      { time: null, data: null, datacontenttype: null, dataschema: null },
      {},
    ]) {
      expect(cloudEventSchema.safeParse({ ...base, ...extra }).success, JSON.stringify(extra)).toBe(true);
    }
  });
  it("rejects a datacontenttype other than application/json", () => {
    expect(cloudEventSchema.safeParse({ ...base, datacontenttype: "text/plain" }).success).toBe(false);
  });
});
