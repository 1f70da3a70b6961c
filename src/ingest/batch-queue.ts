/**
 * Events waiting to be sent, kept as batches of at most `batchSize` so that taking the next batch
 * is O(1) whatever the depth (an array's shift() copies the rest: quadratic at small batch sizes).
 */
export class BatchQueue<T> {
  #batches: T[][] = [];
  #head = 0;
  #depth = 0;

  constructor(readonly batchSize: number) {}

  /** Events queued. */
  get depth(): number {
    return this.#depth;
  }

  /** Adds one event; true when it filled its batch. */
  push(item: T): boolean {
    let tail = this.#batches[this.#batches.length - 1];
    // take() empties the array when it takes the last batch, so a tail here is never one under way.
    if (tail === undefined || tail.length >= this.batchSize) {
      tail = [];
      this.#batches.push(tail);
    }
    tail.push(item);
    this.#depth++;
    return tail.length === this.batchSize;
  }

  /** The next batch, left in place. */
  peek(): readonly T[] | undefined {
    return this.#batches[this.#head];
  }

  /** Removes and returns the next batch. */
  take(): T[] | undefined {
    const batch = this.#batches[this.#head];
    if (batch === undefined) return undefined;
    this.#batches[this.#head++] = undefined as never;
    this.#depth -= batch.length;
    // Drop the taken slots now and then, so the array does not grow without end.
    if (this.#head === this.#batches.length) {
      this.#batches = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#batches.length) {
      this.#batches = this.#batches.slice(this.#head);
      this.#head = 0;
    }
    return batch;
  }
}
