// What the transport makes of an answer it does not deliver on: the detail it reads from the body
// (problem+json keys, a web page's text, nothing for an empty body), the advice per status, which
// refusals a corrected configuration would fix. Written against the transport's survivors (docs/mutation.md).
import type { IncomingHttpHeaders } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { TestClock } from "langchain-openmeter/testing";
import { isConfigurationProblem, Transport } from "../../src/ingest/transport";
import { startPlainServer } from "./helpers";

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

/** One send against a server that answers `status` with `body` and `headers`. */
async function answer(status: number, body = "", headers: IncomingHttpHeaders = {}) {
  const server = await startPlainServer((_req, res) => res.writeHead(status, headers as Record<string, string>).end(body));
  cleanup.push(() => server.close());
  const transport = new Transport({ url: server.url, timeoutMs: 5000, connections: 1, clock: new TestClock({ ioWaitMs: 0 }) });
  cleanup.push(() => transport.close());
  const result = await transport.send("[]");
  return { result, server, detail: "detail" in result ? result.detail : undefined, message: "message" in result ? result.message : "" };
}

const json = { "content-type": "application/problem+json" };

describe("the detail read from an error answer", () => {
  it("problem+json: detail first, then title, message, error; blank ones are skipped", async () => {
    expect((await answer(400, JSON.stringify({ title: "T", detail: "D" }), json)).detail).toBe("D");
    expect((await answer(400, JSON.stringify({ title: "T", detail: "  " }), json)).detail).toBe("T");
    expect((await answer(400, JSON.stringify({ message: "M", error: "E" }), json)).detail).toBe("M");
    expect((await answer(400, JSON.stringify({ error: "E", detail: 5 }), json)).detail).toBe("E");
  });

  it("JSON without any of those keys, or JSON sent as text, is shown as its text", async () => {
    expect((await answer(400, '{"code":7}', json)).detail).toBe('{"code":7}');
    expect((await answer(400, '{"detail":"D"}', { "content-type": "text/plain" })).detail).toBe('{"detail":"D"}');
  });

  it("an empty or blank body gives no detail, and the message ends without one", async () => {
    for (const body of ["", "  \n "]) {
      const { detail, message } = await answer(400, body);
      expect(detail).toBeUndefined();
      expect(message).toMatch(/the events were not ingested$/);
    }
  });

  it("a web page is shown as its title and text, scripts, styles and the head left out", async () => {
    const page = "<html><head><title> Sign in </title><style>p{}</style></head><body><p>Please&nbsp;sign in</p><script>go()</script></body></html>";
    expect((await answer(502, page, { "content-type": "text/html" })).detail).toBe("Sign in: Please sign in");
    // A title the text repeats is not said twice.
    expect((await answer(502, "<html><head><title>Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>", { "content-type": "text/html" })).detail).toBe("Bad Gateway");
    // Text with a "<" that opens no tag is text.
    expect((await answer(400, "a < b and 1<2")).detail).toBe("a < b and 1<2");
  });

  it("a long body is cut to 200 characters and marked; exactly 200 is shown whole", async () => {
    expect((await answer(400, "x".repeat(5000))).detail).toBe(`${"x".repeat(200)}…`);
    expect((await answer(400, "y".repeat(200))).detail).toBe("y".repeat(200));
  });
});

describe("the advice for each refusal", () => {
  it("a redirect names where it points, when it says; redirects are not followed", async () => {
    const { result, message, server } = await answer(302, "", { location: "/elsewhere?token=secret" });
    expect(result).toMatchObject({ kind: "refused", status: 302, configuration: true });
    expect(message).toBe(`${server.url} answered 302 (redirect to ${server.origin}/elsewhere); redirects are not followed: check url, it must be the final events URL`);
    expect((await answer(300)).message).toMatch(/answered 300 \(redirect\); redirects are not followed/);
  });

  it("401 says to check apiKey; 413 for a batch says to lower maxBatchSize", async () => {
    expect((await answer(401)).message).toMatch(/answered 401 \(unauthorized\): check apiKey$/);
    expect((await answer(413)).message).toMatch(/answered 413 \(payload too large\): lower maxBatchSize$/);
  });

  it("every request says who sends it (user-agent)", async () => {
    const { server } = await answer(204);
    expect(server.requests[0]!.headers["user-agent"]).toBe("langchain-openmeter");
  });
});

describe("isConfigurationProblem", () => {
  it("a missing answer, 401, 403, 404 and every redirect are configuration; other refusals are not", () => {
    for (const status of [undefined, 401, 403, 404, 300, 302, 399]) expect(isConfigurationProblem(status)).toBe(true);
    for (const status of [299, 400, 402, 405, 413, 415, 422, 400]) expect(isConfigurationProblem(status)).toBe(false);
  });
});
