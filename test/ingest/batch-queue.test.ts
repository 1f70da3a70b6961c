import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BatchQueue } from "../../src/ingest/batch-queue";

describe("BatchQueue", () => {
  it("hands out batches of at most batchSize, in order, and says when a batch fills", () => {
    const queue = new BatchQueue<number>(3);
    expect([1, 2, 3, 4].map((n) => queue.push(n))).toEqual([false, false, true, false]);
    expect(queue.depth).toBe(4);
    expect(queue.peek()).toEqual([1, 2, 3]);
    expect(queue.take()).toEqual([1, 2, 3]);
    expect(queue.take()).toEqual([4]);
    expect(queue.take()).toBeUndefined();
    expect(queue.depth).toBe(0);
    queue.push(5);
    expect(queue.take()).toEqual([5]); // a fresh batch after the queue ran empty
  });

  it("any interleaving of pushes and takes keeps every item once, in order, with a true depth", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.array(fc.integer({ min: 0, max: 40 }), { maxLength: 200 }), (size, steps) => {
        const queue = new BatchQueue<number>(size);
        const taken: number[] = [];
        let next = 0;
        for (const step of steps) {
          if (step % 3 === 0) {
            const batch = queue.take();
            if (batch) {
              expect(batch.length).toBeLessThanOrEqual(size);
              taken.push(...batch);
            }
          } else for (let i = 0; i < step; i++) queue.push(next++);
          expect(queue.depth).toBe(next - taken.length);
        }
        for (let batch = queue.take(); batch; batch = queue.take()) taken.push(...batch);
        expect(taken).toEqual(Array.from({ length: next }, (_, i) => i));
      }),
      { numRuns: 500 },
    );
  });

  it("a deep queue (100,000 single-event batches, compacted on the way) gives every item back in order", () => {
    const queue = new BatchQueue<number>(1);
    for (let i = 0; i < 100_000; i++) queue.push(i);
    let expected = 0;
    for (let batch = queue.take(); batch; batch = queue.take()) expect(batch).toEqual([expected++]);
    expect(expected).toBe(100_000);
    expect(queue.depth).toBe(0);
  });
});
