/**
 * The admin change log: one event per change made through the admin API, saying who (the admin
 * application, by client id and service principal), what (`user.disable`, `application.secret.add`…),
 * on which record, and the record before and after, as the admin API shows it (never a password, a
 * secret, a hash or a TOTP seed: the representations in this folder have none).
 *
 * Every event is stored with the change itself, in its transaction (admin/changes.ts: the admin
 * API's `GET …/events` reads it back), and, once committed, goes like the exchange audit
 * (audit.ts) to the operator's log (pino, level info, `audit: 'admin_change'`) and to an
 * in-process feed.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { ServerContext } from '../context.ts';
import { EventFeed } from '../event-feed.ts';

export type AdminEntity = 'user' | 'application' | 'consent' | 'roleAssignment' | 'policy';

export interface AdminActor {
  /** The admin application's client id (`azp`). */
  clientId: string;
  /** Its service principal (`oid` of the app-only token). */
  servicePrincipalId: string;
}

export interface AdminChangeEvent {
  seq: number;
  /** Unique across instances (the log's key for this change). */
  id: string;
  /** ISO 8601 instant of the change. */
  time: string;
  tenant: string;
  actor: AdminActor;
  /** `<entity>.<verb>`: `user.create`, `user.disable`, `application.secret.revoke`, `consent.grant`… */
  action: string;
  entity: AdminEntity;
  /** The record's id in the admin API (`oid`, client id, consent id, policy name…). */
  target: string;
  /** The record as the admin API showed it before the change (absent for a creation). */
  before?: unknown;
  /** After the change (absent for a deletion). */
  after?: unknown;
  /**
   * The credential the change set or removed, which `before`/`after` cannot show (they never hold
   * a password or a TOTP seed): what the security event transmitter (signals/) needs to tell.
   */
  credential?: 'password' | 'mfa-set' | 'mfa-removed';
  /** The request's id (also in the operator log's request lines). */
  requestId: string;
  ip?: string | undefined;
}

export type AdminChangeInput = Omit<AdminChangeEvent, 'seq' | 'id' | 'time'>;

export const ADMIN_LOG_BUFFER_SIZE = 200;

export class AdminLog extends EventFeed<AdminChangeEvent> {
  readonly #log: Logger;

  constructor(log: Logger, capacity = ADMIN_LOG_BUFFER_SIZE) {
    super(capacity, (error) => log.warn({ err: error.message }, 'admin change subscriber failed'));
    this.#log = log;
  }

  /** The event of a change about to be written, told to no one yet (`commitChange` stores it with the change). */
  draft(input: AdminChangeInput): AdminChangeEvent {
    return Object.freeze({ seq: this.nextSeq(), id: randomUUID(), time: new Date().toISOString(), ...input });
  }

  /** Logs and publishes an event whose change was committed. */
  told(event: AdminChangeEvent): void {
    this.#log.info({ audit: 'admin_change', event }, `admin change ${event.action} ${event.target} by ${event.actor.clientId}`);
    this.publish(event);
  }

  record(input: AdminChangeInput): AdminChangeEvent {
    const event = this.draft(input);
    this.told(event);
    return event;
  }
}

const logs = new WeakMap<ServerContext, AdminLog>();

/** The admin change log of the server `ctx` belongs to, created on first use. */
export function adminLogOf(ctx: ServerContext): AdminLog {
  let log = logs.get(ctx);
  if (log === undefined) {
    log = new AdminLog(ctx.log);
    logs.set(ctx, log);
  }
  return log;
}
