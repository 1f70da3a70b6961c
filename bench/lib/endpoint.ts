/** Starts and drives endpoint-child.ts: a loopback events endpoint in a separate process. */
import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

export interface EndpointStats {
  events: number;
  requests: number;
  rejected: number;
  unique: number;
  heapUsed: number;
}

export class Endpoint {
  #seq = 0;
  #pending = new Map<number, (v: unknown) => void>();
  private constructor(
    readonly url: string,
    readonly child: ChildProcess,
  ) {
    child.on("message", (m: { id?: number; result?: unknown }) => {
      if (m.id === undefined) return;
      this.#pending.get(m.id)?.(m.result);
      this.#pending.delete(m.id);
    });
  }

  static async start(options: { kind: "openmeter" | "sink"; delayMs?: number; track?: boolean }): Promise<Endpoint> {
    const child = fork(fileURLToPath(new URL("./endpoint-child.ts", import.meta.url)), {
      execArgv: ["--import", "tsx"],
      env: {
        ...process.env,
        BENCH_ENDPOINT_KIND: options.kind,
        BENCH_ENDPOINT_DELAY_MS: String(options.delayMs ?? 0),
        BENCH_ENDPOINT_TRACK: options.track ? "1" : "0",
      },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    const url = await new Promise<string>((resolve, reject) => {
      child.once("error", reject);
      child.once("exit", (code) => reject(new Error(`endpoint process exited with ${code}`)));
      child.on("message", (m: { ready?: string }) => m.ready && resolve(m.ready));
    });
    child.removeAllListeners("exit");
    return new Endpoint(url, child);
  }

  #call<T>(cmd: Record<string, unknown>): Promise<T> {
    const id = ++this.#seq;
    return new Promise<T>((resolve) => {
      this.#pending.set(id, resolve as (v: unknown) => void);
      this.child.send({ id, ...cmd });
    });
  }

  stats = () => this.#call<EndpointStats>({ cmd: "stats" });
  /** [event id, receive wall time (ms), event `time` as sent]; emptied by each call. */
  receipts = () => this.#call<Array<[string, number, string | undefined]>>({ cmd: "receipts" });
  reset = () => this.#call<null>({ cmd: "reset" });
  setDelay = (ms: number) => this.#call<null>({ cmd: "delay", ms });
  setDown = (down: boolean) => this.#call<null>({ cmd: "down", down });
  setTrack = (track: boolean) => this.#call<null>({ cmd: "track", track });

  /** Resolves once the endpoint has counted at least `count` events (since the last reset). */
  async waitForEvents(count: number, timeoutMs = 120_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while ((await this.stats()).events < count) {
      if (Date.now() > until) throw new Error(`endpoint: ${count} events not received within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once("exit", r));
    this.child.disconnect();
    await exited;
  }
}
