/**
 * Budgets for one agent run: the outermost `invoke()` and everything beneath it (chains, graph
 * nodes, tools, the models they call). LangChain tells a callback each run's parent, so the guard
 * watches chain and tool starts to find the root of a model call; the root's budget reserves each
 * call's worst case (tokens, and cost where prices are given) the way the customer's balance does,
 * and it is freed when the root run ends.
 *
 * The guard must be in the outermost invoke's `callbacks` to see the chains; on the model alone it
 * sees none, and each model call's parent (unknown to it) stands for the run.
 */
import type { Clock } from "../clock";

/** Limits for one top-level run. */
export interface RunLimits {
  /** Tokens (input + output) the whole run may use. @default no limit */
  maxTokens?: number;
  /** What the whole run may cost, in the unit of `prices`. @default no limit */
  maxCost?: number;
}

/** One run's account. */
export interface RunAccount {
  readonly rootRunId: string;
  readonly limits: RunLimits;
  usedTokens: number;
  reservedTokens: number;
  usedCost: number;
  reservedCost: number;
  /** Model calls of this run still open (to settle them if the run ends before they do). */
  readonly open: Set<string>;
  /** `clock.now()` when a call of it last started. */
  touchedAt: number;
}

interface TreeNode {
  root: string;
  seenAt: number;
}

/** How many runs the tree holds before it forgets the oldest (runs that never ended). */
const MAX_NODES = 50_000;
/** How many run accounts before those idle longer than the time-out are swept. */
const MAX_ACCOUNTS = 10_000;

export class RunBudgets {
  readonly #nodes = new Map<string, TreeNode>();
  readonly #accounts = new Map<string, RunAccount>();

  constructor(
    readonly clock: Clock,
    readonly ttlMs: number,
  ) {}

  /** A chain or tool run started: remember its root (its parent's root, or itself). */
  started(runId: string, parentRunId: string | undefined): string {
    const root = parentRunId === undefined ? runId : (this.#nodes.get(parentRunId)?.root ?? parentRunId);
    this.#nodes.set(runId, { root, seenAt: this.clock.now() });
    if (this.#nodes.size > MAX_NODES) this.#sweep();
    return root;
  }

  /** The root a model call belongs to; `seen` says whether its parent is a run the guard saw start. */
  rootOf(runId: string, parentRunId: string | undefined): { root: string; seen: boolean } {
    if (parentRunId === undefined) return { root: runId, seen: true };
    const node = this.#nodes.get(parentRunId);
    return node !== undefined ? { root: node.root, seen: true } : { root: parentRunId, seen: false };
  }

  /** The account of a root run, created with `limits` on first use. */
  account(root: string, limits: RunLimits): RunAccount {
    const now = this.clock.now();
    let account = this.#accounts.get(root);
    if (account === undefined) {
      account = { rootRunId: root, limits, usedTokens: 0, reservedTokens: 0, usedCost: 0, reservedCost: 0, open: new Set(), touchedAt: now };
      this.#accounts.set(root, account);
      if (this.#accounts.size > MAX_ACCOUNTS) this.#sweep();
    }
    account.touchedAt = now;
    return account;
  }

  /** A chain or tool run ended; when it was a root, its account is handed back (to settle what is left open) and forgotten. */
  ended(runId: string): RunAccount | undefined {
    const node = this.#nodes.get(runId);
    this.#nodes.delete(runId);
    if (node === undefined || node.root !== runId) return undefined;
    const account = this.#accounts.get(runId);
    this.#accounts.delete(runId);
    return account;
  }

  /** A model call that was its own root ended: its run is over. */
  modelRootEnded(root: string): void {
    const account = this.#accounts.get(root);
    if (account !== undefined && account.open.size === 0) this.#accounts.delete(root);
  }

  get size(): number {
    return this.#accounts.size;
  }

  /**
   * Forgets runs not heard of for the time-out: chains that never ended, and the accounts of parents
   * the guard never saw (their end is never seen either).
   */
  #sweep(): void {
    const before = this.clock.now() - this.ttlMs;
    for (const [runId, node] of this.#nodes) if (node.seenAt < before) this.#nodes.delete(runId);
    for (const [root, account] of this.#accounts) if (account.touchedAt < before && account.open.size === 0) this.#accounts.delete(root);
    // Still too many (a burst of runs that never end): drop the oldest half.
    if (this.#nodes.size > MAX_NODES) {
      let drop = this.#nodes.size - MAX_NODES / 2;
      for (const runId of this.#nodes.keys()) {
        if (drop-- <= 0) break;
        this.#nodes.delete(runId);
      }
    }
  }
}
