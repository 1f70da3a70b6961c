/**
 * What `flush()` waits for. Every event belongs to the epoch that was current when it entered the
 * queue (or, for events taken over from another owner, when their segment was taken over); a flush
 * closes the current epoch and waits until no event of it or of an earlier one is left. Events of
 * later epochs do not hold it up, so a flush ends even while new calls keep coming.
 */
export class FlushTracker {
  #epoch = 0;
  #addedSinceMark = false;
  /** Events still in the queue, per epoch; epochs with none are removed. */
  readonly #open = new Map<number, number>();

  /** The epoch new events belong to. */
  get epoch(): number {
    return this.#epoch;
  }

  add(epoch: number, count: number): void {
    if (count <= 0) return;
    this.#open.set(epoch, (this.#open.get(epoch) ?? 0) + count);
    if (epoch === this.#epoch) this.#addedSinceMark = true;
  }

  /** `count` events of `epoch` left the queue (delivered, refused, dropped, handed over). */
  done(epoch: number, count: number): void {
    const left = (this.#open.get(epoch) ?? 0) - count;
    if (left > 0) this.#open.set(epoch, left);
    else this.#open.delete(epoch);
  }

  /** Closes the current epoch (only if something entered it) and returns it: flush waits for it and all before it. */
  mark(): number {
    const mark = this.#epoch;
    if (this.#addedSinceMark) {
      this.#epoch++;
      this.#addedSinceMark = false;
    }
    return mark;
  }

  /** Whether nothing of `mark` or earlier is left; `unreadEpoch` is the oldest epoch of segments not read yet. */
  isDone(mark: number, unreadEpoch: number | undefined): boolean {
    if (unreadEpoch !== undefined && unreadEpoch <= mark) return false;
    for (const epoch of this.#open.keys()) if (epoch <= mark) return false;
    return true;
  }
}
