/**
 * Model runs a budget guard stopped in their start callback. LangChain then fires no end or error
 * callback for them, so a metering handler that saw (or will see) the same start must not wait for
 * one: it would hold shutdown's drain and report the call abandoned an hour later. Handlers run in
 * any order (the guard inline, the metering handler on LangChain's background queue), so both sides
 * are covered: a start that comes after the block finds the run here; a start that came before is
 * told through `onRunBlocked`.
 *
 * Process-wide (on a global symbol), so that two copies of this package agree.
 */
const KEY = Symbol.for("langchain-openmeter.blocked-runs");
/** How many blocked run ids are remembered (a start arrives within moments of its block). */
const REMEMBERED = 10_000;

interface Registry {
  ids: Set<string>;
  listeners: Set<WeakRef<{ blocked(runId: string): void }>>;
}

function registry(): Registry {
  const global = globalThis as { [KEY]?: Registry };
  return (global[KEY] ??= { ids: new Set(), listeners: new Set() });
}

/** A guard stopped this run before it was sent. */
export function markRunBlocked(runId: string): void {
  const { ids, listeners } = registry();
  ids.add(runId);
  if (ids.size > REMEMBERED) ids.delete(ids.values().next().value as string);
  for (const ref of listeners) {
    const listener = ref.deref();
    if (listener === undefined) listeners.delete(ref);
    else {
      try {
        listener.blocked(runId);
      } catch {
        // A listener's failure must not change what the guard raises.
      }
    }
  }
}

export function wasRunBlocked(runId: string): boolean {
  const { ids } = registry();
  return ids.size > 0 && ids.has(runId);
}

/** Tells `listener` of every run blocked from now on; held weakly, so a handler no longer used is not kept alive. */
export function onRunBlocked(listener: { blocked(runId: string): void }): void {
  registry().listeners.add(new WeakRef(listener));
}
