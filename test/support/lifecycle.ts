import { afterAll, afterEach, beforeAll, expect } from "vitest";
import { guardNetwork, type NetworkGuard } from "./network.js";

interface ProviderFake {
  close(): Promise<void>;
  requests: unknown[];
  respondWith(responder: () => object): void;
  /** Lets streams the fake holds part-way go on. */
  release?(): void;
}

/**
 * One provider fake per test file: the network guard first (only loopback may be reached), the fake
 * started once, its script and request log reset after each test, and at the end a check that
 * nothing tried to leave the machine.
 */
export function useProviderFake<F extends ProviderFake>(start: () => Promise<F>, assign: (fake: F) => void): void {
  let guard: NetworkGuard;
  let fake: F;
  beforeAll(async () => {
    guard = guardNetwork();
    fake = await start();
    assign(fake);
  });
  afterEach(() => {
    fake.release?.();
    fake.requests.length = 0;
    fake.respondWith(() => ({}));
  });
  afterAll(async () => {
    await fake.close();
    guard.restore();
    expect(guard.blocked).toEqual([]);
  });
}
