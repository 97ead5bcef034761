#!/usr/bin/env node
/**
 * `baton`: the command line. Each command parses its flags strictly (an unknown flag is an error,
 * not silently ignored) and has `--help`.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigurationError } from '@baton/core';
import { commands } from './commands.ts';
import type { Command } from './command.ts';

const isAdmin = (c: Command) => c.name.startsWith('admin ');

const USAGE = `baton — zero-trust API-to-API calls on behalf of a user

Usage: baton <command> [options]

Commands:
${Object.values(commands)
  .filter((c) => !isAdmin(c))
  .map((c) => `  ${c.name.padEnd(14)} ${c.summary}`)
  .join('\n')}
  ${'admin …'.padEnd(14)} Change users, applications, consents, roles and policies of a running service (baton admin --help).

Run 'baton <command> --help' for a command's options.`;

const ADMIN_USAGE = `Usage: baton admin <command> [arguments] [options]

Calls the admin API of a running token service (docs/operations.md, "Admin API") as an application
holding Baton.Admin: --url, --tenant, --client-id and --client-secret (or BATON_URL, BATON_TENANT,
BATON_ADMIN_CLIENT_ID, BATON_ADMIN_CLIENT_SECRET); --json prints the API's JSON.

Commands:
${Object.values(commands)
  .filter(isAdmin)
  .map((c) => `  ${`${c.name.slice('admin '.length)} ${(c.positionals ?? []).join(' ')}`.trimEnd().padEnd(36)} ${c.summary}`)
  .join('\n')}`;

const usageLine = (command: Command) => `baton ${command.name}${(command.positionals ?? []).map((p) => ` ${p}`).join('')} [options]`;

function helpFor(command: Command): string {
  const lines = Object.entries(command.options).map(([name, option]) => {
    const flag = `--${name}${option.type === 'string' ? ` ${option.valueName ?? 'VALUE'}` : ''}`;
    const notes = [option.env !== undefined ? `env ${option.env}` : '', option.default !== undefined ? `default: ${String(option.default)}` : ''].filter(Boolean);
    return `  ${flag.padEnd(28)} ${option.description}${notes.length > 0 ? ` (${notes.join('; ')})` : ''}`;
  });
  return `Usage: ${usageLine(command)}\n\n${command.summary}\n\nOptions:\n${lines.join('\n')}\n  ${'--help'.padEnd(28)} show this help`;
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
  // Commands of several words (`keys rotate`, `admin users disable`): the longest that matches.
  let command: Command | undefined;
  let args = rest;
  const words = [name];
  for (const word of rest) {
    if (word.startsWith('-') || words.length >= 4) break;
    words.push(word);
  }
  for (let n = words.length; n >= 1 && command === undefined; n--) {
    command = commands[words.slice(0, n).join(' ')];
    if (command !== undefined) args = rest.slice(n - 1);
  }
  if (command === undefined && name === 'admin') {
    const help = rest.length === 0 || rest.includes('--help') || rest.includes('-h');
    if (help) {
      process.stdout.write(`${ADMIN_USAGE}\n`);
      return rest.length === 0 ? 1 : 0;
    }
    process.stderr.write(`baton: unknown command '${words.join(' ')}'\n\n${ADMIN_USAGE}\n`);
    return 2;
  }
  if (command === undefined) {
    process.stderr.write(`baton: unknown command '${[name, rest[0]].filter(Boolean).join(' ')}'\n\n${USAGE}\n`);
    return 2;
  }
  // After `--` every word is an argument (an id that starts with '-', a literal '--help').
  const end = args.indexOf('--');
  const flags = end < 0 ? args : args.slice(0, end);
  if (flags.includes('--help') || flags.includes('-h')) {
    process.stdout.write(`${helpFor(command)}\n`);
    return 0;
  }
  const options: ParseArgsConfig['options'] = {};
  for (const [key, option] of Object.entries(command.options)) options[key] = { type: option.type } as never;
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    const expected = command.positionals ?? [];
    ({ values, positionals } = parseArgs({ args, options, strict: true, allowPositionals: expected.length > 0 }) as { values: Record<string, string | boolean | undefined>; positionals: string[] });
    const variadic = expected.at(-1)?.endsWith('...') ?? false;
    if (positionals.length < expected.length || (!variadic && positionals.length > expected.length)) {
      throw new Error(`expects ${expected.join(' ')}${positionals.length > expected.length ? `, not ${positionals.length} arguments` : ''}`);
    }
    values = withEnvironment(command, values, process.env);
  } catch (error) {
    const unknownOption = (error as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && (command.positionals ?? []).length > 0;
    const hint = unknownOption ? `\n(an argument that starts with '-' goes after '--': baton ${command.name} -- ARG)` : '';
    process.stderr.write(`baton ${command.name}: ${(error as Error).message}${hint}\n\n${helpFor(command)}\n`);
    return 2;
  }
  return command.run(values, positionals);
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
