/**
 * A PostgreSQL server of a run's own (never the shared one on 5432): `initdb` into a temporary
 * directory as the `postgres` user, then `postgres -D <dir> -p <free port>` on loopback, with its
 * socket in that directory. It can be stopped (SIGINT: PostgreSQL's fast shutdown, which ends every
 * session and rolls back what was in flight) and started again on the same port and data, as an
 * operator's restart does. Needs root (to run as `postgres`) and PostgreSQL's server binaries.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chown, mkdtemp, readdir, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { freePort } from '../../packages/server/test/free-port.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The newest installed PostgreSQL's binaries directory, or undefined when there is none. */
export async function postgresBinaries(): Promise<string | undefined> {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = (await readdir(root)).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  for (const version of versions) if (existsSync(join(root, version, 'bin/postgres'))) return join(root, version, 'bin');
  return undefined;
}

function postgresUser(): { uid: number; gid: number } {
  return { uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()) };
}

export class OwnPostgres {
  readonly dir: string;
  readonly port: number;
  readonly #bin: string;
  readonly #user: { uid: number; gid: number };
  #child: ChildProcess | undefined;
  #log = '';

  private constructor(dir: string, port: number, bin: string, user: { uid: number; gid: number }) {
    this.dir = dir;
    this.port = port;
    this.#bin = bin;
    this.#user = user;
  }

  /** `postgres://postgres@127.0.0.1:<port>/postgres` (trust authentication, loopback only). */
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  /** Everything the server logged (stderr), across restarts. */
  log(): string {
    return this.#log;
  }

  /** initdb into a fresh temporary directory and start the server. */
  static async create(): Promise<OwnPostgres> {
    const bin = await postgresBinaries();
    if (bin === undefined) throw new Error('PostgreSQL server binaries not found under /usr/lib/postgresql');
    const user = postgresUser();
    const dir = await mkdtemp(join(tmpdir(), 'baton-own-pg-'));
    await chown(dir, user.uid, user.gid);
    const data = join(dir, 'data');
    execFileSync(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '--no-instructions', '-E', 'UTF8'], { ...user, cwd: dir, env: { PATH: process.env.PATH, LANG: 'C.UTF-8' }, stdio: 'ignore' });
    const server = new OwnPostgres(dir, await freePort(), bin, user);
    await server.start();
    return server;
  }

  /** Starts the server on its data directory and port; resolves once it accepts connections. */
  start(): Promise<void> {
    if (this.#child !== undefined) return Promise.resolve();
    const child = spawn(
      join(this.#bin, 'postgres'),
      ['-D', join(this.dir, 'data'), '-p', String(this.port), '-k', this.dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=100', '-c', 'fsync=off'],
      { ...this.#user, cwd: this.dir, env: { PATH: process.env.PATH, LANG: 'C.UTF-8' }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    this.#child = child;
    return new Promise((resolve, reject) => {
      let seen = '';
      const timer = setTimeout(() => reject(new Error(`postgres did not start in 60 s:\n${seen}`)), 60_000);
      child.stderr!.on('data', (chunk: Buffer) => {
        const text = chunk.toString();
        this.#log += text;
        seen += text;
        if (/ready to accept connections/.test(seen)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        if (this.#child === child) this.#child = undefined;
        reject(new Error(`postgres exited (${code ?? signal}) before it was ready:\n${seen}`));
      });
    });
  }

  /** Stops the server: SIGINT is PostgreSQL's fast shutdown. Resolves once the process is gone. */
  async stop(signal: NodeJS.Signals = 'SIGINT'): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await exited;
    this.#child = undefined;
  }

  /** Stops the server and removes its directory. */
  async destroy(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}
