/** Finding things in a spool directory: segments below an owner, an owner's directory, an event's id. */
import { type Dirent, readdirSync } from "node:fs";
import { readdir, stat, unlink } from "node:fs/promises";
import { join } from "node:path";

const SEGMENT = /^(\d{8})\.log$/;

/** Whether a directory named `name` is somewhere below `root` (an owner that took ours nests it). */
export function findDir(root: string, name: string, depth: number): boolean {
  if (depth < 0) return false;
  let entries: Dirent[];
  try {
    entries = readdirSync(root, { withFileTypes: true });
  } catch {
    return false;
  }
  for (const entry of entries) {
    if (!entry.isDirectory()) continue;
    if (entry.name === name) return true;
    if (findDir(join(root, entry.name), name, depth - 1)) return true;
  }
  return false;
}

export function idOf(json: string): string | undefined {
  try {
    const value = JSON.parse(json) as { id?: unknown };
    return typeof value?.id === "string" ? value.id : undefined;
  } catch {
    return undefined;
  }
}

/** Every segment below an adopted owner directory (owners it had adopted in turn included), oldest first. */
export async function findSegments(dir: string): Promise<Array<{ path: string; ownerDir: string; size: number }>> {
  const found: Array<{ path: string; ownerDir: string; size: number }> = [];
  let names: string[];
  try {
    names = (await readdir(dir)).sort();
  } catch {
    return found;
  }
  // Owners it had adopted are older than its own segments.
  for (const name of names) {
    const path = join(dir, name);
    if (SEGMENT.test(name)) continue;
    if (/\.ack$/.test(name)) {
      if (!names.includes(name.replace(/\.ack$/, ".log"))) await unlink(path).catch(() => undefined);
      continue;
    }
    const info = await stat(path).catch(() => undefined);
    if (info?.isDirectory()) found.push(...(await findSegments(path)));
  }
  for (const name of names) {
    if (!SEGMENT.test(name)) continue;
    const path = join(dir, name);
    const info = await stat(path).catch(() => undefined);
    if (info?.isFile()) found.push({ path, ownerDir: dir, size: info.size });
  }
  return found;
}
