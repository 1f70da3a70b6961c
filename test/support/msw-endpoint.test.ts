/** The msw-over-a-socket adapter the ingest transport tests rely on (see msw-endpoint.ts). */
import { delay, http, HttpResponse } from "msw";
import { afterEach, describe, expect, it } from "vitest";
import { startMswEndpoint, type MswEndpoint } from "./msw-endpoint";

const open: MswEndpoint[] = [];
afterEach(async () => {
  while (open.length) await open.pop()!.close();
});
async function start(...handlers: Parameters<typeof startMswEndpoint>) {
  const endpoint = await startMswEndpoint(...handlers);
  open.push(endpoint);
  return endpoint;
}

describe("startMswEndpoint", () => {
  it("hands the handler the request, records it, and writes status, headers and body back", async () => {
    let seen: { url: string; method: string; auth: string | null; body: string } | undefined;
    const endpoint = await start(
      http.post("*/api/v1/events", async ({ request }) => {
        seen = { url: request.url, method: request.method, auth: request.headers.get("authorization"), body: await request.text() };
        return HttpResponse.json(
          { title: "Nope", detail: "bad batch" },
          { status: 422, headers: { "content-type": "application/problem+json", "retry-after": "7", "set-cookie": "a=1" } },
        );
      }),
    );
    const response = await fetch(`${endpoint.url}?tenant=a`, { method: "POST", headers: { authorization: "Bearer k" }, body: "[1,2]" });
    expect(response.status).toBe(422);
    expect(response.headers.get("content-type")).toBe("application/problem+json");
    expect(response.headers.get("retry-after")).toBe("7");
    expect(response.headers.getSetCookie()).toEqual(["a=1"]);
    expect(await response.json()).toEqual({ title: "Nope", detail: "bad batch" });
    expect(seen).toEqual({ url: `${endpoint.url}?tenant=a`, method: "POST", auth: "Bearer k", body: "[1,2]" });
    expect(endpoint.requests).toHaveLength(1);
    expect(endpoint.requests[0]).toMatchObject({ method: "POST", path: "/api/v1/events?tenant=a", body: "[1,2]" });
    expect(endpoint.requests[0]!.headers.authorization).toBe("Bearer k");
    expect(typeof endpoint.requests[0]!.at).toBe("number");
  });

  it("answers 204 with no body", async () => {
    const endpoint = await start(http.post("*/api/v1/events", () => new HttpResponse(null, { status: 204 })));
    const response = await fetch(endpoint.url, { method: "POST", body: "[]" });
    expect(response.status).toBe(204);
    expect(await response.text()).toBe("");
  });

  it("HttpResponse.error() resets the connection: the client sees a network error, not a status", async () => {
    const endpoint = await start(http.post("*/api/v1/events", () => HttpResponse.error()));
    const failure = await fetch(endpoint.url, { method: "POST", body: "[]" }).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(TypeError);
    expect(String((failure as TypeError).cause)).toMatch(/ECONNRESET/);
    expect(endpoint.requests).toHaveLength(1);
  });

  it("answers 501 naming the request when no handler matches", async () => {
    const endpoint = await start(http.post("*/api/v1/events", () => new HttpResponse(null, { status: 204 })));
    const response = await fetch(`${endpoint.origin}/elsewhere`, { method: "PUT", body: "x" });
    expect(response.status).toBe(501);
    expect(await response.text()).toBe("no msw handler matched PUT /elsewhere");
  });

  it("answers 500 naming the error when a handler throws", async () => {
    const endpoint = await start(http.post("*/api/v1/events", () => { throw new Error("boom"); }));
    const response = await fetch(endpoint.url, { method: "POST", body: "[]" });
    expect(response.status).toBe(500);
    expect(await response.text()).toMatch(/boom/);
  });

  it("close() does not wait for a handler parked in delay('infinite'); the client's request fails", async () => {
    const endpoint = await startMswEndpoint(http.post("*/api/v1/events", async () => {
      await delay("infinite");
      return new HttpResponse(null, { status: 204 });
    }));
    const pending = fetch(endpoint.url, { method: "POST", body: "[]" }).catch((e: unknown) => e);
    while (endpoint.requests.length === 0) await new Promise((r) => setTimeout(r, 5));
    const started = performance.now();
    await endpoint.close();
    expect(performance.now() - started).toBeLessThan(1000);
    expect(await pending).toBeInstanceOf(TypeError);
  });
});
