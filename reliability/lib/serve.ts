/**
 * Starts a real `baton serve` as a child process (the CLI, the demo configuration, a throwaway
 * data directory, loopback only) for the reliability runs: fuzzing, faults, soak. Its stderr is
 * kept, so a run can check that the server logged no unexpected error.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ROOT = new URL('../../', import.meta.url).pathname;
export const BIN = join(ROOT, 'packages/cli/src/bin.ts');
export const CONFIG = join(ROOT, 'examples/chain/baton.json');

export interface Served {
  url: string;
  dataDir: string;
  child: ChildProcess;
  /** Everything the server wrote to stderr so far. */
  log(): string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export interface ServeOptions {
  dataDir?: string;
  /** Configuration file (default: the demo's, examples/chain/baton.json). */
  config?: string;
  port?: number;
  /** Extra `baton serve` flags (`--store postgres://…`). */
  args?: string[];
  env?: NodeJS.ProcessEnv;
}

/** Spawns `baton serve --dev` and resolves once it printed `ready <url>`. */
export async function serve(options: ServeOptions = {}): Promise<Served> {
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'baton-reliability-')));
  const child = spawn(
    process.execPath,
    [BIN, 'serve', '--config', options.config ?? CONFIG, '--data', dataDir, '--port', String(options.port ?? 0), '--host', '127.0.0.1', '--dev', ...(options.args ?? [])],
    { env: { ...process.env, BATON_KEK: undefined, BATON_LOG_LEVEL: process.env.BATON_LOG_LEVEL ?? 'warn', ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    if (stderr.length > 4_000_000) stderr = stderr.slice(-2_000_000);
  });
  const url = await new Promise<string>((resolve, reject) => {
    let stdout = '';
    const timer = setTimeout(() => reject(new Error(`baton serve did not start in 60 s:\n${stderr}`)), 60_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /ready (\S+)/.exec(stdout);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`baton serve exited with ${code}:\n${stderr}`));
    });
  });
  return {
    url,
    dataDir,
    child,
    log: () => stderr,
    stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
      return new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.kill(signal);
      });
    },
  };
}

/** A delegated access token from `baton token issue` against a served data directory. */
export async function issueUserToken(served: Served, user = 'alice@contoso.test'): Promise<string> {
  const child = spawn(
    process.execPath,
    [BIN, 'token', 'issue', '--config', CONFIG, '--data', served.dataDir, '--tenant', 'contoso', '--issuer-base', served.url, '--user', user, '--client', 'tasks-web', '--scope', 'api://tasks/Tasks.ReadWrite'],
    { env: { ...process.env, BATON_KEK: undefined }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  if (code !== 0) throw new Error(`baton token issue failed: ${err}`);
  return out.trim();
}

export const SECRETS: Record<string, string> = Object.fromEntries(['indexer', 'tasks-api', 'docs-api', 'audit-api', 'reports-api'].map((id) => [id, `${id}-demo-secret-for-local-use-only`]));
