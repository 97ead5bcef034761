/**
 * Server processes for the load sections: each server runs in its own process (so the load
 * generator never shares its event loop), optionally pinned to its own CPU with `taskset`, and is
 * stopped — SIGTERM, then SIGKILL — when the section ends or the bench exits for any reason.
 *
 * Protocol with a server script (bench/servers/*.ts): it receives its options as JSON in argv[2],
 * prints exactly one JSON line `{"ready": {...}}` on stdout when it listens (or `{"error": "..."}`),
 * writes its logs to stderr (sent to a file here), and exits when its stdin closes or on SIGTERM.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { availableParallelism } from 'node:os';

const running = new Set<ChildProcess>();
let hooked = false;

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  const killAll = () => {
    for (const child of running) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  };
  process.on('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      killAll();
      process.exit(130);
    });
  }
}

let tasksetAvailable: boolean | undefined;
function hasTaskset(): boolean {
  if (tasksetAvailable === undefined) {
    try {
      execFileSync('taskset', ['-V'], { stdio: 'ignore' });
      tasksetAvailable = true;
    } catch {
      tasksetAvailable = false;
    }
  }
  return tasksetAvailable;
}

/**
 * CPU placement: with two or more cores and `taskset`, the load generator (this process) keeps
 * CPU 0 and every server gets CPU 1, so the server under test has exactly one core, whoever it is.
 */
export interface Placement {
  pinned: boolean;
  loadCpu: number | undefined;
  serverCpu: number | undefined;
  why: string;
}

export function placeProcesses(wantPin: boolean): Placement {
  const cores = availableParallelism();
  if (!wantPin) return { pinned: false, loadCpu: undefined, serverCpu: undefined, why: 'not pinned (--no-pin): server and load generator share every core' };
  if (cores < 2) return { pinned: false, loadCpu: undefined, serverCpu: undefined, why: 'not pinned: one core only' };
  if (!hasTaskset()) return { pinned: false, loadCpu: undefined, serverCpu: undefined, why: 'not pinned: taskset not found' };
  try {
    // -a: every thread of this process (libuv pool, GC helpers), not only the main one.
    execFileSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
  } catch (error) {
    return { pinned: false, loadCpu: undefined, serverCpu: undefined, why: `not pinned: taskset failed (${(error as Error).message})` };
  }
  return { pinned: true, loadCpu: 0, serverCpu: 1, why: 'load generator on CPU 0, the server under test on CPU 1 (taskset)' };
}

export interface ServerHandle<T> {
  ready: T;
  pid: number;
  /**
   * Sends a control line (see bench/servers/control.ts) and resolves with the next message that has
   * the property `expect`.
   */
  command(line: string, expect: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Stops the process (SIGTERM, SIGKILL after `graceMs`) and waits for it to exit. */
  stop(graceMs?: number): Promise<void>;
  /** Path of the file receiving the server's stderr. */
  logPath: string;
}

export interface SpawnOptions {
  script: string;
  /** Passed as JSON in argv[2] (bench/servers/*.ts)... */
  options?: unknown;
  /** ...or these arguments instead (another program, e.g. the `baton` CLI). */
  args?: string[];
  /** Recognises the ready line of a program that does not print `{"ready": ...}`. */
  parseReady?: (line: string) => unknown;
  /** Extra flags for node, e.g. `--cpu-prof`. */
  nodeArgs?: string[];
  /** A CPU number or a `taskset` list (`0,1`). */
  cpu?: number | string | undefined;
  logPath: string;
  /** Milliseconds to wait for the ready line. */
  timeoutMs: number;
  env?: NodeJS.ProcessEnv;
}

/** Starts a server script and resolves with what it printed as ready. */
export async function spawnServer<T>(spawnOptions: SpawnOptions): Promise<ServerHandle<T>> {
  hookExit();
  const nodeArgv = [...(spawnOptions.nodeArgs ?? []), spawnOptions.script, ...(spawnOptions.args ?? [JSON.stringify(spawnOptions.options ?? {})])];
  const [executable, args] =
    spawnOptions.cpu !== undefined ? ['taskset', ['-c', String(spawnOptions.cpu), process.execPath, ...nodeArgv]] : [process.execPath, nodeArgv];
  const logFd = openSync(spawnOptions.logPath, 'a');
  const child = spawn(executable as string, args as string[], {
    stdio: ['pipe', 'pipe', logFd],
    env: { ...process.env, ...spawnOptions.env },
  });
  closeSync(logFd);
  running.add(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  exited.then(() => running.delete(child));

  const stop = async (graceMs = 10_000) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  };

  const tail = () => {
    try {
      return readFileSync(spawnOptions.logPath, 'utf8').split('\n').slice(-15).join('\n');
    } catch {
      return '';
    }
  };

  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const waiting: { expect: string; resolve: (message: Record<string, unknown>) => void }[] = [];
  lines.on('line', (line) => {
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(line);
    } catch {
      return;
    }
    const index = waiting.findIndex((w) => w.expect in message || 'error' in message);
    if (index >= 0) waiting.splice(index, 1)[0]?.resolve(message);
  });
  const command = (line: string, expect: string, timeoutMs = 60_000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${spawnOptions.script}: no '${expect}' answer to '${line}' within ${timeoutMs} ms`)), timeoutMs);
      waiting.push({
        expect,
        resolve: (message) => {
          clearTimeout(timer);
          if (typeof message.error === 'string') reject(new Error(message.error));
          else resolve(message);
        },
      });
      child.stdin?.write(`${line}\n`);
    });

  const ready = await new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${spawnOptions.script} was not ready after ${spawnOptions.timeoutMs} ms\n${tail()}`)), spawnOptions.timeoutMs);
    lines.on('line', (line) => {
      if (spawnOptions.parseReady) {
        const ready = spawnOptions.parseReady(line);
        if (ready !== undefined) {
          clearTimeout(timer);
          resolve(ready as T);
        }
        return;
      }
      let message: { ready?: T; error?: string };
      try {
        message = JSON.parse(line);
      } catch {
        return;
      }
      if (message.error !== undefined) {
        clearTimeout(timer);
        reject(new Error(`${spawnOptions.script}: ${message.error}\n${tail()}`));
      } else if (message.ready !== undefined) {
        clearTimeout(timer);
        resolve(message.ready);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${spawnOptions.script} exited (${code ?? signal}) before it was ready\n${tail()}`));
    });
  }).catch(async (error: Error) => {
    await stop(2000);
    throw error;
  });
  return { ready, pid: child.pid as number, command, stop, logPath: spawnOptions.logPath };
}

function ownCpuSeconds(pid: number): number | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ');
    if (!fields) return undefined;
    // After the command: state is field 3 → index 0; utime = field 14 → index 11, stime → 12.
    const ticks = Number(fields[11]) + Number(fields[12]);
    return ticks / 100; // USER_HZ is 100 on Linux
  } catch {
    return undefined;
  }
}

function childrenOf(pid: number): number[] {
  const children: number[] = [];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (text) children.push(...text.split(' ').map(Number));
    }
  } catch {
    // gone, or not Linux
  }
  return children;
}

/**
 * CPU time (user + system, seconds) a process and its live descendants (cluster workers) have
 * used so far, from /proc (Linux).
 */
export function cpuSecondsOf(pid: number): number | undefined {
  const own = ownCpuSeconds(pid);
  if (own === undefined) return undefined;
  let total = own;
  for (const child of childrenOf(pid)) total += cpuSecondsOf(child) ?? 0;
  return total;
}
