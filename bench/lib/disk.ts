/** What a spool directory holds on disk: every file below it, with its size. */
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";

export interface DiskListing {
  /** Bytes of every file below the directory. */
  bytes: number;
  /** Bytes of segment files (`*.log`) and their ledgers (`*.ack`): the events themselves. */
  segmentBytes: number;
  files: Array<{ path: string; bytes: number }>;
}

export function listDir(dir: string): DiskListing {
  const listing: DiskListing = { bytes: 0, segmentBytes: 0, files: [] };
  const walk = (at: string) => {
    let names: string[];
    try {
      names = readdirSync(at);
    } catch {
      return; // removed while we looked
    }
    for (const name of names) {
      const path = join(at, name);
      let info;
      try {
        info = statSync(path);
      } catch {
        continue;
      }
      if (info.isDirectory()) walk(path);
      else {
        listing.bytes += info.size;
        if (/\.(log|ack)$/.test(name)) listing.segmentBytes += info.size;
        listing.files.push({ path: relative(dir, path), bytes: info.size });
      }
    }
  };
  walk(dir);
  return listing;
}

/** Bytes of every file below `dir`. */
export const dirBytes = (dir: string): number => listDir(dir).bytes;
