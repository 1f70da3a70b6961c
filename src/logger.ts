/** Where the library reports what a person should know. Defaults to the console. */
export interface Logger {
  warn(message: string): void;
  error(message: string): void;
}

const PREFIX = "[langchain-openmeter]";

export const consoleLogger: Logger = {
  warn: (message) => console.warn(`${PREFIX} ${message}`),
  error: (message) => console.error(`${PREFIX} ${message}`),
};

/** Warns once per key: a misconfiguration repeated on every call would drown the user's own logs. */
export class OnceLogger {
  readonly #seen = new Set<string>();
  constructor(readonly logger: Logger) {}

  warnOnce(key: string, message: string): void {
    if (this.#seen.has(key)) return;
    this.#seen.add(key);
    this.logger.warn(message);
  }

  /** The next `warnOnce` with this key warns again (the condition ended, and may come back). */
  reset(key: string): void {
    this.#seen.delete(key);
  }
}
