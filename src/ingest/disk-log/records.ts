/**
 * The bytes of a segment and of its acknowledgement ledger.
 *
 * Segment: one record per event, one line per record: `<crc32 of the JSON, 8 hex digits> <event JSON>\n`.
 * JSON.stringify never writes a raw newline, so a line is exactly one record; the checksum catches a
 * flipped digit or a torn write, and such a record is reported with its byte range, never billed.
 * A record's index is its line number in the segment (from 0).
 *
 * Ledger (`<segment>.ack`): the indexes acknowledged or refused for good, as lines of
 * `<first>+<count>\n`. It only ever says "these are done", so a ledger line lost in a crash means a
 * batch is sent again (de-duplicated downstream by its ids), never that an event is skipped; an
 * unreadable ledger line is ignored for the same reason.
 */
import { crc32 } from "node:zlib";

/** The lines of a segment for these events, ready for one write. */
export function encodeRecords(jsons: readonly string[]): string {
  let text = "";
  for (const json of jsons) text += `${checksum(json)} ${json}\n`;
  return text;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** The CRC-32 as 8 hex digits (a table, not toString(16).padStart: this runs per event). */
function checksum(json: string): string {
  const c = crc32(json);
  return HEX[c >>> 24]! + HEX[(c >>> 16) & 0xff]! + HEX[(c >>> 8) & 0xff]! + HEX[c & 0xff]!;
}

export interface SegmentRecord {
  index: number;
  json: string;
  /** Byte offsets of the line in the segment file, end exclusive. */
  start: number;
  end: number;
}

export interface CorruptRecord {
  index: number;
  /** Byte offsets in the segment file, end exclusive. */
  start: number;
  end: number;
  reason: string;
}

export interface ParsedSegment {
  /** Valid records not yet acknowledged, in order. */
  records: SegmentRecord[];
  corrupt: CorruptRecord[];
  /** Records (lines) in the file, valid or not, acknowledged or not. */
  count: number;
  /** Of `count`: already acknowledged according to the ledger. */
  acknowledged: number;
}

/** Reads a segment's bytes, leaving out what the ledger says is done. */
export function parseSegment(bytes: Buffer, done: IndexSet): ParsedSegment {
  const parsed: ParsedSegment = { records: [], corrupt: [], count: 0, acknowledged: 0 };
  let start = 0;
  while (start < bytes.length) {
    const newline = bytes.indexOf(0x0a, start);
    const end = newline === -1 ? bytes.length : newline + 1;
    const index = parsed.count++;
    if (done.has(index)) parsed.acknowledged++;
    else if (newline === -1) parsed.corrupt.push({ index, start, end, reason: "the record has no end (torn by a crash or power loss mid-write)" });
    else {
      const line = bytes.toString("utf8", start, newline);
      const reason = checkLine(line);
      if (reason === undefined) parsed.records.push({ index, json: line.slice(9), start, end });
      else parsed.corrupt.push({ index, start, end, reason });
    }
    start = end;
  }
  return parsed;
}

function checkLine(line: string): string | undefined {
  if (line.length < 10 || line[8] !== " ") return "not a record (no checksum)";
  const json = line.slice(9);
  if (checksum(json) !== line.slice(0, 8)) return "checksum mismatch (the bytes changed after they were written)";
  return undefined;
}

/** The ledger line(s) for these indexes: consecutive ones as one range. */
export function encodeAcks(indexes: readonly number[]): string {
  const sorted = [...indexes].sort((a, b) => a - b);
  let text = "";
  for (let i = 0; i < sorted.length; ) {
    const first = sorted[i]!;
    let count = 1;
    while (i + count < sorted.length && sorted[i + count] === first + count) count++;
    text += `${first}+${count}\n`;
    i += count;
  }
  return text;
}

/** Indexes a ledger marks as done. */
export class IndexSet {
  readonly #ranges: Array<[number, number]> = [];

  static parse(text: string): IndexSet {
    const set = new IndexSet();
    for (const line of text.split("\n")) {
      const match = /^(\d+)\+(\d+)$/.exec(line);
      if (match) set.#ranges.push([Number(match[1]), Number(match[2])]);
    }
    return set;
  }

  has(index: number): boolean {
    for (const [first, count] of this.#ranges) if (index >= first && index < first + count) return true;
    return false;
  }
}
