/**
 * Proof replay records on SQLite (`Store.useProofOnce`): the one-time values' claim of a
 * `used_once` row, on a connection of its own to the same file, opened with `synchronous=NORMAL`.
 * Under WAL that commit returns once its frames are in the WAL, without the fsync a `FULL` commit
 * waits for (about 0.7–0.9 ms on the bench machine's disk, against 15–30 µs without): a process
 * crash loses nothing, and only an OS crash or power loss can undo the records written since the
 * WAL's last fsync. The file stays consistent either way. The claim is still one statement under
 * the file's write lock, so exactly one connection of any process wins a `jti`.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import type { ProofReplayPart } from '../parts.ts';
import { claimOnce, prepareUseOnce } from './one-time.ts';

export class SqliteProofReplay implements ProofReplayPart {
  readonly #useOnce: StatementSync;

  /** @param db the replay connection (`openDatabase(path, …, 'normal')`), or the store's own for `:memory:`. */
  constructor(db: DatabaseSync) {
    this.#useOnce = prepareUseOnce(db);
  }

  async useProofOnce(namespace: string, id: string, expiresAt: number, now: number): Promise<boolean> {
    return claimOnce(this.#useOnce, namespace, id, expiresAt, now);
  }
}
