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
