// The spool's disk misbehaving: full, read-only, corrupted. A small tmpfs is mounted when the tests run
// as root (CI does); elsewhere those tests are skipped with a message.
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IngestClient, type IngestError } from "langchain-openmeter";
import { type OpenMeterServer, startOpenMeterServer, TestClock } from "langchain-openmeter/testing";
import { restartAndDeliver, tempDir } from "./support";

const isRoot = process.getuid?.() === 0;
function canMount(): boolean {
  if (!isRoot) return false;
  const probe = tempDir("om-mount-probe-");
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", probe.dir], { stdio: "ignore" });
    execFileSync("umount", [probe.dir], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  } finally {
    probe.remove();
  }
}
const mountable = canMount();
if (!mountable) console.warn("skipping the full and read-only disk tests: they mount a small tmpfs, which needs root");

let server: OpenMeterServer;
beforeAll(async () => {
  server = await startOpenMeterServer({ dedupe: false });
});
afterAll(() => server.close());

function mountTmpfs(options: string): { dir: string; remove(): void } {
  const t = tempDir("om-tmpfs-");
  execFileSync("mount", ["-t", "tmpfs", "-o", options, "tmpfs", t.dir]);
  return {
    dir: t.dir,
    remove: () => {
      execFileSync("umount", [t.dir]);
      t.remove();
    },
  };
}

const event = (id: string) => ({
  specversion: "1.0" as const,
  id,
  source: "langchain",
  type: "kong.llm_request",
  subject: "acme",
  data: { type: "input", tokens: 10, padding: "x".repeat(200) },
});

describe.runIf(mountable)("a disk that refuses", () => {
  it("a full disk: events that do not fit are held in memory, and all are delivered once the endpoint is back", async () => {
    const disk = mountTmpfs("size=48k");
    try {
      server.setMode("down");
      const clock = new TestClock();
      const warnings: string[] = [];
      const errors: IngestError[] = [];
      const client = new IngestClient({
        url: server.url,
        spoolDir: disk.dir,
        clock,
        handleSignals: false,
        flushOnExit: false,
        retry: { retries: 0, minDelayMs: 1, maxDelayMs: 1 },
        maxQueueSize: 1000,
        logger: { warn: (m) => warnings.push(m), error: (m) => warnings.push(m) },
        onError: (e) => errors.push(e),
      });
      const ids = Array.from({ length: 400 }, (_, i) => `full-${i}`); // about 120 KB: more than the disk holds
      for (const id of ids) client.enqueue(event(id));
      const held = client.stats();
      expect(held.pending.disk).toBeGreaterThan(0);
      expect(held.pending.memory).toBeGreaterThan(0);
      expect(held.pending.disk + held.pending.memory).toBe(400);
      expect(warnings.some((w) => /could not write the spool .*ENOSPC.*held in memory/.test(w)), warnings.join("\n")).toBe(true);
      server.setMode("ok");
      await clock.advanceUntil(client.flush());
      expect(new Set(server.events.filter((e) => e.id.startsWith("full-")).map((e) => e.id)).size).toBe(400);
      expect(client.stats()).toMatchObject({ delivered: 400, dropped: 0, pending: { memory: 0, disk: 0 } });
      expect(errors).toEqual([]);
      await clock.advanceUntil(client.shutdown());
    } finally {
      server.setMode("ok");
      disk.remove();
    }
  });

  it("a read-only spool directory is refused when the client is built, with an error naming it", () => {
    const disk = mountTmpfs("size=64k,ro");
    try {
      expect(() => new IngestClient({ url: server.url, spoolDir: disk.dir, handleSignals: false, flushOnExit: false })).toThrow(
        new RegExp(`spoolDir ${disk.dir.replace(/[/.]/g, "\\$&")} cannot be used: .*read-only`),
      );
    } finally {
      disk.remove();
    }
  });
});

describe("a corrupted segment", () => {
  it("the corrupt record is reported with its file and byte range and never billed; the others are delivered", async () => {
    const spool = tempDir("om-corrupt-");
    try {
      server.setMode("down");
      const clock = new TestClock();
      const first = new IngestClient({ url: server.url, spoolDir: spool.dir, clock, handleSignals: false, flushOnExit: false, retry: { retries: 0, minDelayMs: 1, maxDelayMs: 1 }, logger: { warn() {}, error() {} } });
      for (const id of ["c-1", "c-2", "c-3"]) first.enqueue({ ...event(id), data: { type: "input", tokens: 100 } });
      await clock.advanceUntil(first.shutdown());
      const files = readdirSync(spool.dir, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".log"));
      expect(files).toHaveLength(1);
      const path = join(spool.dir, files[0]!);
      const text = readFileSync(path, "utf8");
      const at = text.indexOf('"id":"c-2"');
      writeFileSync(path, text.slice(0, at) + text.slice(at).replace('"tokens":100', '"tokens":900')); // a flipped digit
      server.setMode("ok");
      const errors: IngestError[] = [];
      const stats = await restartAndDeliver(spool.dir, server.url, { onError: (e) => errors.push(e) });
      expect(server.events.filter((e) => e.id.startsWith("c-")).map((e) => e.id).sort()).toEqual(["c-1", "c-3"]);
      expect(errors).toHaveLength(1);
      expect(errors[0]!.kind).toBe("corrupt");
      expect(errors[0]!.message).toMatch(new RegExp(`1 record\\(s\\) in .*${files[0]!.split("/").pop()} are corrupt and were not sent: record 1 \\(bytes \\d+-\\d+\\): checksum mismatch`));
      expect(stats).toMatchObject({ recovered: 3, delivered: 2, dropped: 1, pending: { memory: 0, disk: 0 } });
    } finally {
      server.setMode("ok");
      spool.remove();
    }
  });

  it("a directory that is not an owner's is left alone", async () => {
    const spool = tempDir("om-foreign-");
    try {
      mkdirSync(join(spool.dir, "backups"));
      writeFileSync(join(spool.dir, "backups", "00000001.log"), "not ours\n");
      const stats = await restartAndDeliver(spool.dir, server.url);
      expect(stats.recovered).toBe(0);
      expect(readFileSync(join(spool.dir, "backups", "00000001.log"), "utf8")).toBe("not ours\n");
    } finally {
      spool.remove();
    }
  });
});
