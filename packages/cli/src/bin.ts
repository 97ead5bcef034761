#!/usr/bin/env node
/**
 * `baton`: the command line. Each command parses its flags strictly (an unknown flag is an error,
 * not silently ignored) and has `--help`.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigurationError } from '@baton/core';
import { commands } from './commands.ts';
import type { Command } from './command.ts';

const USAGE = `baton — zero-trust API-to-API calls on behalf of a user

Usage: baton <command> [options]

Commands:
${Object.values(commands)
  .map((c) => `  ${c.name.padEnd(14)} ${c.summary}`)
  .join('\n')}

Run 'baton <command> --help' for a command's options.`;

function helpFor(command: Command): string {
  const lines = Object.entries(command.options).map(([name, option]) => {
    const flag = `--${name}${option.type === 'string' ? ` ${option.valueName ?? 'VALUE'}` : ''}`;
    const notes = [option.env !== undefined ? `env ${option.env}` : '', option.default !== undefined ? `default: ${String(option.default)}` : ''].filter(Boolean);
    return `  ${flag.padEnd(28)} ${option.description}${notes.length > 0 ? ` (${notes.join('; ')})` : ''}`;
  });
  return `Usage: baton ${command.name} [options]\n\n${command.summary}\n\nOptions:\n${lines.join('\n')}\n  ${'--help'.padEnd(28)} show this help`;
}

/** Flags win; an option without its flag comes from its environment variable, else its default. */
function withEnvironment(command: Command, flags: Record<string, string | boolean | undefined>, env: NodeJS.ProcessEnv): Record<string, string | boolean | undefined> {
  const values = { ...flags };
  for (const [key, option] of Object.entries(command.options)) {
    if (values[key] !== undefined) continue;
    const raw = option.env === undefined ? undefined : env[option.env];
    if (raw !== undefined && raw !== '') {
      if (option.type === 'string') values[key] = raw;
      else if (/^(1|true|yes|on)$/i.test(raw)) values[key] = true;
      else if (/^(0|false|no|off)$/i.test(raw)) values[key] = false;
      else throw new Error(`${option.env} must be 1 or 0 (true or false), not '${raw}'`);
    } else if (option.default !== undefined) {
      values[key] = option.default;
    }
  }
  return values;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return name === undefined ? 1 : 0;
  }
  // Two-word commands: `keys rotate`, `token issue`, `secret new`, `config check`.
  let command = commands[name];
  let args = rest;
  if (command === undefined && rest[0] !== undefined && !rest[0].startsWith('-')) {
    command = commands[`${name} ${rest[0]}`];
    args = rest.slice(1);
  }
  if (command === undefined) {
    process.stderr.write(`baton: unknown command '${[name, rest[0]].filter(Boolean).join(' ')}'\n\n${USAGE}\n`);
    return 2;
  }
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${helpFor(command)}\n`);
    return 0;
  }
  const options: ParseArgsConfig['options'] = {};
  for (const [key, option] of Object.entries(command.options)) options[key] = { type: option.type } as never;
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args, options, strict: true, allowPositionals: false }) as { values: Record<string, string | boolean | undefined> });
    values = withEnvironment(command, values, process.env);
  } catch (error) {
    process.stderr.write(`baton ${command.name}: ${(error as Error).message}\n\n${helpFor(command)}\n`);
    return 2;
  }
  return command.run(values);
}

main(process.argv.slice(2)).then(
  (code) => {
    // Exit explicitly: a cluster worker's IPC channel (and any stray handle) must not keep a
    // finished command alive. stdout/stderr are synchronous for files and pipes on POSIX.
    process.exit(code);
  },
  (error: unknown) => {
    if (error instanceof ConfigurationError) {
      process.stderr.write(`${error.message}\n`);
      process.exitCode = 1;
      return;
    }
    process.stderr.write(`baton: ${(error as Error).message ?? String(error)}\n`);
    process.exitCode = 1;
  },
);
