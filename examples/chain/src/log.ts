/**
 * A small logger for the example apps, shaped like the resource SDK's `Logger`. Lines are
 * `name: message key=value`; callers pass ids and names, never a token or a secret.
 */
import type { Logger } from '@baton/resource';

export type LineWriter = (line: string) => void;

export const stderrWriter: LineWriter = (line) => process.stderr.write(`${line}\n`);

/** Drops everything (tests). */
export const silentWriter: LineWriter = () => {};

export function exampleLogger(name: string, write: LineWriter = stderrWriter): Logger & { error(message: string, fields?: Record<string, unknown>): void } {
  const line = (level: string, message: string, fields?: Record<string, unknown>) => {
    const extra = Object.entries(fields ?? {})
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(' ');
    write(`${name}: ${level === 'info' ? '' : `${level}: `}${message}${extra ? ` ${extra}` : ''}`);
  };
  return {
    info: (message, fields) => line('info', message, fields),
    warn: (message, fields) => line('warning', message, fields),
    error: (message, fields) => line('error', message, fields),
  };
}

/** What `exampleLogger` returns. */
export type ExampleLogger = ReturnType<typeof exampleLogger>;
