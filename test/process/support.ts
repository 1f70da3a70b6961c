// Child processes for the durability tests: the producer program bundled once per test file (so a
// child starts in tens of milliseconds), spawned with an environment, its stdout read line by line.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { IngestClient, type IngestOptions, type IngestStats } from "langchain-openmeter";
import { TestClock } from "langchain-openmeter/testing";

const root = fileURLToPath(new URL("../..", import.meta.url));

export interface Bundles {
  producer: string;
  /** The library as a CommonJS bundle: a second, separate copy when loaded beside the producer's. */
  cjsLibrary: string;
  remove(): void;
}

export async function bundle(): Promise<Bundles> {
  const dir = mkdtempSync(join(tmpdir(), "om-bundle-"));
  const producer = join(dir, "producer.mjs");
  const cjsLibrary = join(dir, "library.cjs");
  const common = { bundle: true, platform: "node" as const, target: "node20", logLevel: "silent" as const, absWorkingDir: root };
  await Promise.all([
    build({
      ...common,
      entryPoints: ["test/process/fixtures/producer.ts"],
      format: "esm",
      outfile: producer,
      // undici and zod are CommonJS inside an ES module bundle: give them a require.
      banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
    }),
    build({ ...common, entryPoints: ["src/index.ts"], format: "cjs", outfile: cjsLibrary }),
  ]);
  return { producer, cjsLibrary, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface Child {
  child: ChildProcess;
  /** Call numbers the child said it handed over (enqueue had returned). */
  handed: number[];
  lines: string[];
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves once `check` holds for the lines seen so far. */
  waitFor(check: (child: Child) => boolean, what: string, timeoutMs?: number): Promise<void>;
}

/** Runs `script` with node, or `command` with `args` (e.g. node under unshare) when given. */
export function start(script: string, env: Record<string, string>, args?: string[]): Child {
  const [command, argv] = args === undefined ? [process.execPath, [script]] : [script, args];
  const child = spawn(command, argv, { cwd: root, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  const handed: number[] = [];
  const waiters = new Set<() => void>();
  let buffered = "";
  child.stdout!.on("data", (chunk: Buffer) => {
    buffered += chunk.toString("utf8");
    const parts = buffered.split("\n");
    buffered = parts.pop() ?? "";
    for (const line of parts) {
      lines.push(line);
      if (line.startsWith("handed ")) handed.push(Number(line.slice(7)));
    }
    for (const waiter of waiters) waiter();
  });
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => {
      for (const waiter of waiters) waiter();
      resolve({ code, signal });
    }),
  );
  const self: Child = {
    child,
    handed,
    lines,
    stderr: () => stderr,
    exited,
    waitFor: (check, what, timeoutMs = 15_000) =>
      new Promise<void>((resolve, reject) => {
        const test = () => {
          if (check(self)) {
            waiters.delete(test);
            clearTimeout(timer);
            clearInterval(poll);
            resolve();
          } else if (child.exitCode !== null || child.signalCode !== null) {
            waiters.delete(test);
            clearTimeout(timer);
            clearInterval(poll);
            reject(new Error(`the child ended before ${what}; stderr: ${stderr.slice(-2000)}`));
          }
        };
        // Conditions on things outside the child (what the endpoint received) are polled too.
        const poll = setInterval(test, 5);
        const timer = setTimeout(() => {
          clearInterval(poll);
          waiters.delete(test);
          reject(new Error(`timed out waiting for ${what}; lines: ${lines.slice(-5).join(" | ")}; stderr: ${stderr.slice(-2000)}`));
        }, timeoutMs);
        waiters.add(test);
        test();
      }),
  };
  return self;
}

/** The ids of a call's two events. */
export const callIds = (prefix: string, calls: Iterable<number>) => [...calls].flatMap((n) => [`${prefix}-${n}-input`, `${prefix}-${n}-output`]);

export function tempDir(prefix: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * The process that opens the spool next, here in the test process: its clock is ten minutes ahead, so
 * the lease of a killed owner has run out at once; the grace before reading a dead owner's segments
 * passes on the test clock. Resolves with the client's stats after it delivered everything.
 */
export async function restartAndDeliver(spoolDir: string, url: string, options: Partial<IngestOptions> = {}): Promise<IngestStats> {
  const clock = new TestClock({ wall: Date.now() + 600_000 });
  const client = new IngestClient({ url, spoolDir, clock, handleSignals: false, flushOnExit: false, logger: { warn() {}, error() {} }, ...options });
  await clock.advanceUntil(client.flush());
  const stats = client.stats();
  await clock.advanceUntil(client.shutdown());
  return stats;
}
