/**
 * Process exit hooks shared by every client: one listener per event however many clients exist,
 * so ten clients do not trip Node's MaxListenersExceededWarning. Participants are held weakly: a
 * client nobody references any more (and with nothing pending, or its timers would hold it) can be
 * collected even if it was never shut down.
 */
export interface ExitParticipant {
  /** Called on `beforeExit`; starts delivering pending events (the I/O keeps the process alive). */
  beforeExit?: (() => void) | undefined;
  /** Called on SIGTERM/SIGINT; the signal is re-raised once every participant's promise settled. */
  onSignal?: (() => Promise<void>) | undefined;
}

const SIGNALS = ["SIGTERM", "SIGINT"] as const;
const exitParticipants = new Set<WeakRef<ExitParticipant>>();
const signalParticipants = new Set<WeakRef<ExitParticipant>>();

function live(refs: Set<WeakRef<ExitParticipant>>): ExitParticipant[] {
  const participants: ExitParticipant[] = [];
  for (const ref of refs) {
    const participant = ref.deref();
    if (participant) participants.push(participant);
    else refs.delete(ref);
  }
  return participants;
}
let signalling = false;

function onBeforeExit(): void {
  for (const p of live(exitParticipants)) {
    try {
      p.beforeExit?.();
    } catch {
      // A hook must never turn a clean exit into a crash.
    }
  }
}

function onSignal(signal: NodeJS.Signals): void {
  if (signalling) {
    // Second signal while flushing: the user wants out now.
    reraise(signal);
    return;
  }
  signalling = true;
  const pending = live(signalParticipants).map((p) => p.onSignal?.().catch(() => undefined));
  void Promise.allSettled(pending).then(() => reraise(signal));
}

function reraise(signal: NodeJS.Signals): void {
  for (const s of SIGNALS) process.removeListener(s, onSignal);
  // If the application listens too, the signal is theirs to act on; re-raising would call them twice.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

/**
 * Registers hooks; returns the function that removes them. The caller must keep `participant`
 * referenced for as long as it wants the hooks (only a weak reference is kept here).
 */
export function registerExitHooks(
  participant: ExitParticipant,
  { flushOnExit, handleSignals }: { flushOnExit: boolean; handleSignals: boolean },
): () => void {
  const ref = new WeakRef(participant);
  if (flushOnExit) {
    if (exitParticipants.size === 0) process.on("beforeExit", onBeforeExit);
    exitParticipants.add(ref);
  }
  if (handleSignals) {
    if (signalParticipants.size === 0) for (const s of SIGNALS) process.on(s, onSignal);
    signalParticipants.add(ref);
  }
  return () => {
    if (exitParticipants.delete(ref) && exitParticipants.size === 0) {
      process.removeListener("beforeExit", onBeforeExit);
    }
    if (signalParticipants.delete(ref) && signalParticipants.size === 0 && !signalling) {
      for (const s of SIGNALS) process.removeListener(s, onSignal);
    }
  };
}
