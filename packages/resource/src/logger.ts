/** Where the SDK reports what an operator should see (retries, deliberate app-only calls). Never given a token. */
export interface Logger {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
}

/** Writes one JSON line to stderr per event. */
export const consoleLogger: Logger = {
  info: (message, fields) => console.info(JSON.stringify({ level: 'info', msg: message, ...fields })),
  warn: (message, fields) => console.warn(JSON.stringify({ level: 'warn', msg: message, ...fields })),
};
