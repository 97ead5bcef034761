/**
 * Starts a real `baton serve` as a child process (the CLI, the demo's configuration, a throwaway
 * data directory, loopback only) for the reliability runs: fuzzing, faults, soak. Its stderr is
 * kept, so a run can check that the server logged no unexpected error.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../packages/server/test/free-port.ts';

export const ROOT = new URL('../../', import.meta.url).pathname;

/** Writes a run's JSON report to reliability/results/ (created if missing: it is not in a fresh clone) and returns its path. */
export async function writeReport(kind: 'fuzz' | 'faults' | 'soak', report: unknown, date = new Date()): Promise<string> {
  const dir = join(ROOT, 'reliability/results');
  await mkdir(dir, { recursive: true });
  const file = join(dir, `${kind}-${date.toISOString().slice(0, 19).replace(/[:T]/g, '-')}.json`);
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
  return file;
}
export const BIN = join(ROOT, 'packages/cli/src/bin.ts');
/** The demo's configuration, examples/chain/baton.json. */
export const DEMO_CONFIG = join(ROOT, 'examples/chain/baton.json');

/**
 * What the runs serve: the demo's configuration plus Tasks Web's tenant-wide consent on the Tasks
 * API, so that `baton token issue` can mint users' tokens for it (the demo asks each user on a
 * consent page instead). Written once per process to a temporary file.
 */
export const CONFIG = await (async () => {
  const config = JSON.parse(await readFile(DEMO_CONFIG, 'utf8'));
  for (const tenant of config.tenants) tenant.consents.push({ client: 'tasks-web', resource: 'api://tasks', scopes: ['Tasks.ReadWrite'], for: 'all' });
  const file = join(await mkdtemp(join(tmpdir(), 'baton-reliability-config-')), 'baton.json');
  await writeFile(file, JSON.stringify(config, null, 2));
  return file;
})();

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
  /** Configuration file (default: {@link CONFIG}, the demo's plus one consent). */
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

/**
 * A delegated access token from `baton token issue` against a served data directory (or, with
 * `--store` in `args`, its database; `env` then carries the instances' BATON_KEK).
 */
export async function issueUserToken(served: Served, user = 'alice@contoso.test', options: { args?: string[]; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  const child = spawn(
    process.execPath,
    [BIN, 'token', 'issue', '--config', CONFIG, '--data', served.dataDir, '--tenant', 'contoso', '--issuer-base', served.url, '--user', user, '--client', 'tasks-web', '--scope', 'api://tasks/Tasks.ReadWrite', ...(options.args ?? [])],
    { env: { ...process.env, BATON_KEK: undefined, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] },
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

/** One of several instances: `served.url` is the shared public URL, `base` where this one listens. */
export interface Instance {
  served: Served;
  base: string;
}

/**
 * `count` instances of `baton serve` on one database and one key-encryption key, behind one public
 * URL (the first instance's address stands for the load balancer's), as docs/operations.md says to
 * run several. Started one after the other (each applies the configuration). With `tls`, each makes
 * its own dev CA, and this process trusts them all.
 */
export async function serveInstances(store: string, options: { count?: number; tls?: boolean } = {}): Promise<{ publicUrl: string; env: NodeJS.ProcessEnv; instances: Instance[] }> {
  const ports: number[] = [];
  for (let i = 0; i < (options.count ?? 2); i++) ports.push(await freePort());
  const scheme = options.tls ? 'https' : 'http';
  const publicUrl = `${scheme}://127.0.0.1:${ports[0]}`;
  const env = { BATON_KEK: randomBytes(32).toString('base64') };
  const instances: Instance[] = [];
  const cas: string[] = [];
  for (const port of ports) {
    const served = await serve({ port, args: [...(options.tls ? ['--tls-dev'] : []), '--store', store, '--public-url', publicUrl], env });
    instances.push({ served, base: `${scheme}://127.0.0.1:${port}` });
    if (options.tls) {
      cas.push(await readFile(join(served.dataDir, 'tls/ca.pem'), 'utf8'));
      tls.setDefaultCACertificates([...tls.getCACertificates('default'), ...cas]);
    }
  }
  return { publicUrl, env, instances };
}
