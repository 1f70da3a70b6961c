/**
 * msw handlers served over a real loopback socket. msw intercepts fetch and http.request, but the
 * ingest client's undici Pool opens its own sockets, which msw never sees. So this node:http server
 * turns each incoming request into a WHATWG Request, resolves it with msw's `getResponse` against the
 * given handlers, and writes the Response back: tests describe the endpoint in msw's DSL while the
 * client still goes through real TCP, keep-alive and timeouts.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { getResponse, type RequestHandler } from "msw";
import type { SeenRequest } from "../ingest/helpers";
import { listenOnLoopback } from "./http";

export interface MswEndpoint {
  /** origin + "/api/v1/events" */
  url: string;
  /** e.g. "http://127.0.0.1:54321" */
  origin: string;
  /** Every request received, in arrival order (recorded before the handlers run). */
  requests: SeenRequest[];
  /** Stops listening and drops every connection, idle keep-alive and hung ones included. */
  close(): Promise<void>;
}

export async function startMswEndpoint(...handlers: RequestHandler[]): Promise<MswEndpoint> {
  const requests: SeenRequest[] = [];
  const serve = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks);
    const method = req.method ?? "GET";
    requests.push({ method, path: req.url ?? "", headers: req.headers, body: raw.toString("utf8"), at: performance.now() });

    const headers = new Headers();
    for (let i = 0; i < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i]!, req.rawHeaders[i + 1]!);
    const request = new Request(new URL(req.url ?? "/", `http://${req.headers.host}`), {
      method,
      headers,
      body: method === "GET" || method === "HEAD" ? undefined : raw,
    });

    let response: Response | undefined;
    try {
      response = await getResponse(handlers, request);
    } catch (error) {
      // A handler threw: answer like msw's setupServer does, with a 500 naming the error.
      response = new Response(`msw handler threw: ${String(error)}`, { status: 500 });
    }
    // The client gave up or close() ran while a handler was pending (e.g. `await delay("infinite")`).
    if (res.destroyed) return;
    if (!response) {
      res.writeHead(501, { "content-type": "text/plain" }).end(`no msw handler matched ${method} ${req.url}`);
    } else if (response.type === "error") {
      // HttpResponse.error() is a network error: reset the connection (TCP RST) with no answer.
      req.socket.resetAndDestroy();
    } else {
      const body = Buffer.from(await response.arrayBuffer());
      // Raw [name, value, ...] pairs; Headers iteration keeps each Set-Cookie separate.
      const out = [...response.headers].flat();
      res.writeHead(response.status, response.statusText || undefined, out);
      res.end(body);
    }
  };
  // A request cut off mid-body (the client aborted) ends here, not as an unhandled rejection.
  const server = createServer((req, res) => void serve(req, res).catch(() => res.destroy()));
  const { origin, close } = await listenOnLoopback(server);
  return { url: `${origin}/api/v1/events`, origin, requests, close };
}
