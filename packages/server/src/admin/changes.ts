/**
 * The one way the admin API changes anything (and the seam issue 17's security events hang on):
 * `commitChange` reads the current record, checks `If-Match` against it, computes the new record
 * and its change event (admin/audit.ts: the record before and after, as the admin API shows it),
 * signs the security event SETs the change is (signals/transmitter.ts), and then writes the record,
 * the change event and the SETs in ONE store transaction (`Store.atomically`): a refused or failed
 * change writes none of them, a committed one all. The operator's log and the in-process feed
 * hear of the change after the commit.
 *
 * Every store write notifies the other instances (PostgreSQL NOTIFY, the SQLite change poller) and
 * this one, so their directory caches drop the tenant: a change is in force everywhere as soon as
 * that notification lands. Users are not cached: the next token request reads the stored user.
 *
 * Changes to one tenant are serialised within an instance, so two admin requests to one instance
 * cannot both pass `If-Match` against the same version. Across instances the check and the write
 * are two statements: two instances changing one record in the same instant can both pass
 * (documented in docs/operations.md).
 */
import { adminLogOf, type AdminChangeEvent, type AdminEntity } from './audit.ts';
import { checkIfMatch, etagOf, sameRecord, type AdminRequest } from './http.ts';
import { problems } from './problem.ts';
import type { AtomicWrite } from '../store/types.ts';
import { transmitterOf } from '../signals/transmitter.ts';

export interface ChangeSpec<R> {
  /** `<entity>.<verb>`, e.g. `user.disable`. */
  action: string;
  entity: AdminEntity;
  /** The record's id in the admin API as the request named it (for the 404 message; the log's unless `targetOf`). */
  target: string;
  /** The record's one id for the change log, when the request may name it several ways (a user: her `oid`). */
  targetOf?(record: R): string;
  /** What the 404 says when the record does not exist (`User 'alice@…'`). */
  describe: string;
  /**
   * `update`: the record must exist; `If-Match` required (428 without) when `ifMatch` is 'required',
   * checked when sent otherwise. `create`: it must not exist (409). `upsert`: either; `If-Match`
   * applies (as for `update`) only when the record exists.
   */
  kind: 'create' | 'update' | 'upsert';
  ifMatch?: 'required' | 'optional';
  load(): Promise<R | undefined>;
  /** The new record (undefined: delete it). May throw a problem (bad reference…): nothing is written. */
  next(current: R | undefined): R | undefined | Promise<R | undefined>;
  /** The one store write, as data (`{ op: 'putUser', args: [next] }`): `commitChange` runs it in the change's transaction. */
  write(next: R | undefined, current: R | undefined): AtomicWrite | Promise<AtomicWrite>;
  /** The record as the admin API shows it: never a secret, a hash or a seed. */
  present(record: R): unknown;
  /** The credential this change sets or removes (recorded in the change event; see `AdminChangeEvent.credential`). */
  credential?: AdminChangeEvent['credential'];
}

export interface ChangeResult<R> {
  record: R | undefined;
  /** The ETag of `record`. */
  etag: string | undefined;
  /** Undefined when nothing changed (disabling a disabled user): no write, no event. */
  event: AdminChangeEvent | undefined;
}

const queues = new WeakMap<object, Map<string, Promise<unknown>>>();

/** Runs `work` after every earlier change of this tenant on this instance has finished. */
function serialised<T>(req: AdminRequest, work: () => Promise<T>): Promise<T> {
  let perTenant = queues.get(req.ctx);
  if (perTenant === undefined) {
    perTenant = new Map();
    queues.set(req.ctx, perTenant);
  }
  const previous = perTenant.get(req.tenantId) ?? Promise.resolve();
  const run = previous.then(work, work);
  const settled = run.then(() => undefined, () => undefined);
  perTenant.set(req.tenantId, settled);
  settled.then(() => {
    if (perTenant.get(req.tenantId) === settled) perTenant.delete(req.tenantId);
  });
  return run;
}

export function commitChange<R>(req: AdminRequest, spec: ChangeSpec<R>): Promise<ChangeResult<R>> {
  return serialised(req, async () => {
    const current = await spec.load();
    if (spec.kind === 'create') {
      if (current !== undefined) throw problems.conflict(`${spec.describe} already exists.`);
    } else if (current !== undefined) {
      checkIfMatch(req.ifMatch, current, spec.ifMatch === 'required');
    } else if (spec.kind === 'update') {
      throw problems.notFound(spec.describe);
    }
    const next = await spec.next(current);
    if (next !== undefined && current !== undefined && sameRecord(next, current)) {
      return { record: current, etag: etagOf(current), event: undefined };
    }
    const write = await spec.write(next, current);
    const log = adminLogOf(req.ctx);
    const event = log.draft({
      tenant: req.tenantId,
      actor: req.actor,
      action: spec.action,
      entity: spec.entity,
      target: spec.targetOf?.((next ?? current)!) ?? spec.target,
      ...(current !== undefined ? { before: spec.present(current) } : {}),
      ...(next !== undefined ? { after: spec.present(next) } : {}),
      ...(spec.credential !== undefined ? { credential: spec.credential } : {}),
      requestId: req.requestId,
      ip: req.ip,
    });
    const transmitter = transmitterOf(req.ctx);
    const sets = await transmitter.setsOfChange(event);
    const writes: AtomicWrite[] = [
      write,
      { op: 'appendAdminEvent', args: [{ tenantId: event.tenant, id: event.id, at: Date.parse(event.time), entity: event.entity, target: event.target, event }] },
    ];
    if (sets.length > 0) writes.push({ op: 'queueSets', args: [sets] });
    await req.ctx.store.atomically(writes);
    log.told(event);
    transmitter.queued(sets);
    return { record: next, etag: next === undefined ? undefined : etagOf(next), event };
  });
}
