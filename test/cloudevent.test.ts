import { describe, expect, it } from "vitest";
import { cloudEventProblems } from "langchain-openmeter";
import { sourceProblem } from "../src/cloudevent";

describe("cloudEventProblems", () => {
  const event = {
    specversion: "1.0",
    id: "run-1-input",
    source: "langchain",
    type: "kong.llm_request",
    subject: "acme",
    time: "2026-05-05T15:26:47.000Z",
    data: { type: "input", tokens: 12 },
  };

  it("finds nothing wrong with an event OpenMeter accepts", () => {
    expect(cloudEventProblems(event)).toEqual([]);
  });

  it("names the attribute of an empty subject", () => {
    expect(cloudEventProblems({ ...event, subject: "" })).toEqual(["`subject` must not be empty"]);
  });

  it("refuses top-level attributes OpenMeter's v3 schema does not allow", () => {
    expect(cloudEventProblems({ ...event, tier: "pro" })).toHaveLength(1);
  });

  it("refuses a time that is not RFC 3339", () => {
    expect(cloudEventProblems({ ...event, time: "yesterday" })).toEqual(["`time` must be an RFC 3339 date-time"]);
  });

  it("refuses a source that Go's url.Parse refuses (OpenMeter would refuse the whole batch), naming the character", () => {
    const problems = cloudEventProblems({ ...event, source: "my_app:prod" });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^`source` contains ":" at position 7/);
  });
});

describe("cloudEventProblems: what OpenMeter also accepts", () => {
  const base = { specversion: "1.0", id: "e-1", source: "s", type: "t", subject: "acme" };
  it("accepts datacontenttype, dataschema and null optional attributes", () => {
    for (const extra of [
      { datacontenttype: "application/json" },
      { dataschema: "https://example.com/schema.json" },
      { time: null, data: null, datacontenttype: null, dataschema: null },
      {},
    ]) {
      expect(cloudEventProblems({ ...base, ...extra }), JSON.stringify(extra)).toEqual([]);
    }
  });
  it("refuses a datacontenttype other than application/json", () => {
    expect(cloudEventProblems({ ...base, datacontenttype: "text/plain" })).toEqual(['`datacontenttype` must be "application/json"']);
  });
});

describe("sourceProblem", () => {
  it.each([
    ["my_app:prod", /contains ":" at position 7 in its first path segment/],
    ["1app:prod", /contains ":" at position 5/],
    ["50%off", /invalid percent-escape "%of" at position 3/],
    [":x", /starts with ":"/],
    ["my app", /whitespace at position 2/],
  ])("refuses %j and says where", (source, message) => {
    expect(sourceProblem(source)).toMatch(message);
  });

  it.each(["langchain", "my-app/agents", "urn:acme:billing", "https://acme.example/agents"])("accepts %j", (source) => {
    expect(sourceProblem(source)).toBeUndefined();
  });
});
