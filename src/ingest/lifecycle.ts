/**
 * The process's ending, shared by every client and handler, and by every copy of the library loaded
 * in the process (an ESM and a CommonJS copy each have their own module state, so the registry lives
 * on `globalThis` under a registered symbol): one listener per event, however many clients there are.
 *
 * - `beforeExit` (the program ran out of work): participants deliver what they hold, within their
 *   time bound; the I/O keeps the process alive meanwhile.
 * - SIGTERM / SIGINT: participants shut down within their bound; then, when nobody else listens for
 *   the signal, it is raised again so the process ends as that signal ends it. A program with its own
 *   listener keeps control: the library never ends a process that has other listeners. A second
 *   signal while shutting down is raised again at once, after the synchronous `exit` part.
 * - `exit` (process.exit(), an uncaught exception, the natural end): synchronous only, participants
 *   let go of their files and say what they leave behind.
 *
 * Participants are held weakly: a client nobody references any more (and whose timers are done) can
 * be collected without a shutdown.
 */
export interface LifecycleParticipant {
  beforeExit?(): void;
  onSignal?(signal: NodeJS.Signals): Promise<void>;
  onExit?(): void;
}

interface Registry {
  readonly version: 1;
  readonly participants: Set<WeakRef<LifecycleParticipant>>;
  readonly signalParticipants: Set<WeakRef<LifecycleParticipant>>;
  signalling: boolean;
  installed: boolean;
  signalsInstalled: boolean;
  readonly onBeforeExit: () => void;
  readonly onExit: () => void;
  readonly onSignal: (signal: NodeJS.Signals) => void;
}

import { constants as osConstants } from "node:os";

const KEY = Symbol.for("langchain-openmeter.lifecycle.v1");
const SIGNALS = ["SIGTERM", "SIGINT"] as const;

function live(refs: Set<WeakRef<LifecycleParticipant>>): LifecycleParticipant[] {
  const participants: LifecycleParticipant[] = [];
  for (const ref of refs) {
    const participant = ref.deref();
    if (participant) participants.push(participant);
    else refs.delete(ref);
  }
  return participants;
}

function each(participants: LifecycleParticipant[], call: (participant: LifecycleParticipant) => void): void {
  for (const participant of participants) {
    try {
      call(participant);
    } catch {
      // A hook must never turn an ending into a crash.
    }
  }
}

function createRegistry(): Registry {
  const registry: Registry = {
    version: 1,
    participants: new Set(),
    signalParticipants: new Set(),
    signalling: false,
    installed: false,
    signalsInstalled: false,
    onBeforeExit: () => each(live(registry.participants), (p) => p.beforeExit?.()),
    onExit: () => each(live(registry.participants), (p) => p.onExit?.()),
    onSignal: (signal) => {
      if (registry.signalling) {
        // The user wants out now. A signal ends the process without an `exit` event: the synchronous
        // part (letting go of files, saying what is left) runs here instead.
        registry.onExit();
        return reraise(registry, signal);
      }
      registry.signalling = true;
      const endings = live(registry.signalParticipants).map((p) => p.onSignal?.(signal).catch(() => undefined));
      void Promise.allSettled(endings).then(() => reraise(registry, signal));
    },
  };
  return registry;
}

function reraise(registry: Registry, signal: NodeJS.Signals): void {
  for (const s of SIGNALS) process.removeListener(s, registry.onSignal);
  registry.signalsInstalled = false;
  // Someone else listens: the signal is theirs to act on (they were called by the same emit).
  if (process.listenerCount(signal) !== 0) return;
  // As pid 1 (a container without an init) the kernel ignores a signal it has no handler for: the
  // process would live on after a SIGTERM. End it as the signal would end any other process.
  if (process.pid === 1) process.exit(128 + (osConstants.signals[signal] ?? 15));
  process.kill(process.pid, signal);
}

function registry(): Registry {
  const holder = globalThis as { [KEY]?: Registry };
  holder[KEY] ??= createRegistry();
  return holder[KEY];
}

/**
 * Registers a participant; returns the function that removes it. The caller keeps `participant`
 * referenced for as long as it wants the hooks (only a weak reference is kept here).
 */
export function joinLifecycle(participant: LifecycleParticipant, options: { signals: boolean }): () => void {
  const r = registry();
  const ref = new WeakRef(participant);
  r.participants.add(ref);
  if (!r.installed) {
    r.installed = true;
    process.on("beforeExit", r.onBeforeExit);
    process.on("exit", r.onExit);
  }
  if (options.signals) {
    r.signalParticipants.add(ref);
    if (!r.signalsInstalled && !r.signalling) {
      r.signalsInstalled = true;
      for (const s of SIGNALS) process.on(s, r.onSignal);
    }
  }
  return () => {
    r.participants.delete(ref);
    if (r.signalParticipants.delete(ref) && r.signalParticipants.size === 0 && r.signalsInstalled && !r.signalling) {
      for (const s of SIGNALS) process.removeListener(s, r.onSignal);
      r.signalsInstalled = false;
    }
  };
}
