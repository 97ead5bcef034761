/**
 * What a `baton` command is: its name, one-line summary, strictly parsed options and what it runs.
 * A module of its own so command files (dev.ts, token-issue.ts) and the command table
 * (commands.ts) depend on it, never on each other: no import cycle.
 */

export interface OptionSpec {
  type: 'string' | 'boolean';
  description: string;
  valueName?: string;
  default?: string | boolean;
  /**
   * The environment variable that gives this option when the flag is absent (flags win; then the
   * variable; then the default). A boolean variable is `1`/`true` or `0`/`false`.
   */
  env?: string;
}

export interface Command {
  name: string;
  summary: string;
  options: Record<string, OptionSpec>;
  /**
   * Names of the arguments after the command's words (`USER`, `CLIENT_ID`); the last may end in
   * `...` to take one or more. Absent: the command takes no arguments.
   */
  positionals?: readonly string[];
  /** The exit code. */
  run(values: Record<string, string | boolean | undefined>, args?: string[]): Promise<number>;
}
