import type { AppendRefusal, Batch, EventQueue, PendingCounts, QueuedEvent } from "./queue";

/**
 * The queue without `spoolDir`: events in memory, lost if the process dies (the exit hooks report
 * them). `append` refuses past `memoryLimit`, which the client lifts while the endpoint keeps up.
 */
export class MemoryQueue implements EventQueue {
  readonly location = "memory";
  /** Released batches, taken again before anything newer. */
  readonly #again: QueuedEvent[][] = [];
  #ready: QueuedEvent[] = [];
  #head = 0;
  #againCount = 0;
  /** Batches taken and not yet settled or released (their slices, once split). */
  readonly #underWay = new UnderWay();

  append(events: readonly QueuedEvent[], { memoryLimit }: { memoryLimit: number }): AppendRefusal | undefined {
    if (this.#total() + events.length > memoryLimit) {
      return {
        events,
        kind: "queue-full",
        reason: `the in-memory queue holds ${this.#total()} events (maxQueueSize ${memoryLimit}) while the endpoint is failing, and no spoolDir is set; set spoolDir to keep them on disk, or raise maxQueueSize`,
      };
    }
    for (const event of events) this.#ready.push(event);
    return undefined;
  }

  get ready(): number {
    return this.#againCount + this.#ready.length - this.#head;
  }

  take(max: number, { liveDue }: { liveDue: boolean } = { liveDue: true }): Batch | undefined {
    const again = this.#again.shift();
    let events: QueuedEvent[];
    if (again !== undefined) {
      this.#againCount -= again.length;
      events = again;
    } else {
      if (!liveDue) return undefined;
      const available = this.#ready.length - this.#head;
      if (available <= 0 || max <= 0) return undefined;
      const end = this.#head + Math.min(max, available);
      events = this.#ready.slice(this.#head, end);
      this.#head = end;
      // Drop the taken front now and then, so the array does not grow without end.
      if (this.#head === this.#ready.length) {
        this.#ready = [];
        this.#head = 0;
      } else if (this.#head >= 4096 && this.#head * 2 >= this.#ready.length) {
        this.#ready = this.#ready.slice(this.#head);
        this.#head = 0;
      }
    }
    return this.#underWay.add(new MemoryBatch(events, this.#underWay));
  }

  settle(batch: Batch): void {
    this.#underWay.finish(batch as MemoryBatch);
  }

  release(batch: Batch): void {
    if (!this.#underWay.finish(batch as MemoryBatch)) return;
    this.#again.push(batch.events as QueuedEvent[]);
    this.#againCount += batch.events.length;
  }

  pending(): PendingCounts {
    return { memory: this.#total(), disk: 0 };
  }

  /** Everything it holds is held only in memory. */
  drainMemory(): QueuedEvent[] {
    const held = [...this.#underWay.events(), ...this.#again.flat(), ...this.#ready.slice(this.#head)];
    this.#underWay.clear();
    this.#again.length = 0;
    this.#againCount = 0;
    this.#ready = [];
    this.#head = 0;
    return held;
  }

  onReadable(): void {
    // Memory is always readable: nothing loads in the background.
  }

  close(): void {}

  #total(): number {
    return this.ready + this.#underWay.count;
  }
}

/** The batches under way, and how many events they carry. */
class UnderWay {
  readonly #batches = new Set<MemoryBatch>();
  count = 0;

  add(batch: MemoryBatch): MemoryBatch {
    this.#batches.add(batch);
    this.count += batch.events.length;
    return batch;
  }

  /** True the first time: a second settle or release of the same batch changes nothing. */
  finish(batch: MemoryBatch): boolean {
    if (!this.#batches.delete(batch)) return false;
    this.count -= batch.events.length;
    return true;
  }

  clear(): void {
    this.#batches.clear();
    this.count = 0;
  }

  *events(): Iterable<QueuedEvent> {
    for (const batch of this.#batches) yield* batch.events;
  }
}

/** Slicing hands the batch's events over to the slices: each is then settled or released on its own. */
class MemoryBatch implements Batch {
  constructor(
    readonly events: readonly QueuedEvent[],
    readonly owner: UnderWay,
  ) {}

  slice(start: number, end: number): Batch {
    this.owner.finish(this);
    return this.owner.add(new MemoryBatch(this.events.slice(start, end), this.owner));
  }
}
