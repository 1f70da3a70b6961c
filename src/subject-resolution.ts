import { checkSubject, type SubjectCheck, type SubjectResolver } from "./subject";

/** How a run's customer is found: the handler's and the budget guard's options of the same names. */
export interface SubjectSettings {
  /** Invoke-metadata key that holds the customer (LangChain hooks copy `configurable[subjectKey]` there). */
  subjectKey: string;
  /** Computes the subject from a run's metadata and tags; consulted first. */
  resolveSubject?: SubjectResolver | undefined;
  /** Subject for runs that name none. */
  defaultSubject?: string | undefined;
}

/** Told about a subject that was refused or a resolver that threw: `key` identifies the problem for a once-only warning. */
export type SubjectWarn = (key: string, message: string, summary: string) => void;

/**
 * The run's customer, found the same way by every handler of this package: `resolveSubject` first,
 * then `metadata[subjectKey]` (which `configurable[subjectKey]` fills when the metadata names none,
 * see langchain-hooks.ts), then `defaultSubject`. Undefined when none is found: what that means
 * (not billed, not checked) is the caller's to say.
 */
export class SubjectResolution {
  readonly #settings: SubjectSettings;
  readonly #warn: SubjectWarn;
  // Most calls in a row are for the same customer: check a subject once, not on every call.
  #lastSubject: unknown;
  #lastCheck: SubjectCheck | undefined;

  constructor(settings: SubjectSettings, warn: SubjectWarn) {
    this.#settings = settings;
    this.#warn = warn;
  }

  get subjectKey(): string {
    return this.#settings.subjectKey;
  }

  resolve(metadata: Record<string, unknown> | undefined, tags: string[] | undefined, runId: string, parentRunId: string | undefined): string | undefined {
    const { subjectKey, resolveSubject, defaultSubject } = this.#settings;
    // The resolver first; what it leaves undecided or gets wrong falls back to the metadata key.
    if (resolveSubject) {
      let resolved: unknown;
      try {
        resolved = resolveSubject({ metadata: metadata ?? {}, tags: tags ?? [], runId, parentRunId });
      } catch (error) {
        this.#warn(
          "resolveSubject:throw",
          `\`resolveSubject\` threw (${error instanceof Error ? error.message : String(error)}); falling back to metadata.${subjectKey}`,
          "`resolveSubject` threw (fell back to the metadata)",
        );
      }
      const checked = this.#check(resolved);
      if (checked?.ok) return checked.subject;
      if (checked) {
        this.#warn(`subject:resolver:${checked.reason}`, `the subject from resolveSubject was refused: ${checked.reason}`, `subjects from resolveSubject refused (${checked.reason})`);
      }
    }
    const checked = this.#check(metadata?.[subjectKey]);
    if (checked?.ok) return checked.subject;
    if (checked) {
      this.#warn(`subject:${checked.reason}`, `the subject from metadata.${subjectKey} was refused: ${checked.reason}`, `subjects from metadata.${subjectKey} refused (${checked.reason})`);
    }
    return defaultSubject;
  }

  #check(candidate: unknown): SubjectCheck | undefined {
    if (candidate !== this.#lastSubject || typeof candidate === "object") {
      this.#lastSubject = candidate;
      this.#lastCheck = checkSubject(candidate);
    }
    return this.#lastCheck;
  }
}
