/** What the numbers were measured on: they mean little without it. */
import { execFileSync } from 'node:child_process';
import { cpus, platform, release, totalmem } from 'node:os';

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  date: string;
  commit: string | undefined;
  /** The working tree had uncommitted changes (numbers are of the tree, not of `commit`). */
  dirty: boolean | undefined;
}

function git(args: string[]): string | undefined {
  try {
    return execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

export function describeMachine(): Machine {
  const status = git(['status', '--porcelain']);
  return {
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    // cpus(), not availableParallelism(): the latter shrinks to 1 once this process is pinned.
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    os: `${platform()} ${release()}`,
    node: process.version,
    date: new Date().toISOString(),
    commit: git(['rev-parse', '--short=12', 'HEAD']),
    dirty: status === undefined ? undefined : status.length > 0,
  };
}
