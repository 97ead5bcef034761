/**
 * How PostgreSQL instances tell each other that registrations changed: writers send `pg_notify`
 * on one channel in the writing statement or transaction (see `connection.ts`), and each store
 * keeps one dedicated LISTEN connection (`InvalidationListener`) that hands other instances'
 * changes to its `onInvalidate` listeners, and re-establishes itself when it drops.
 */
import { Client } from 'pg';
import type { Notification } from 'pg';
import type { InvalidationListeners } from '../listeners.ts';
import { json } from '../rows.ts';
import type { Invalidation } from '../types.ts';

/** The NOTIFY channel. One per database: the payload names the schema, listeners filter on it. */
export const INVALIDATION_CHANNEL = 'baton_invalidate';

/** PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; beyond this we send `tenantId: '*'`. */
const MAX_PAYLOAD_BYTES = 7000;

const ENTITIES: ReadonlySet<string> = new Set<Invalidation['entity']>([
  'tenant',
  'user',
  'application',
  'consent',
  'roleAssignment',
  'policy',
  'signingKey',
  '*',
]);

interface NotifyPayload {
  schema: string;
  source: string;
  tenantId: string;
  entity: Invalidation['entity'];
}

/** Who is talking: the schema (listeners of other schemas ignore it) and this instance's id. */
export interface NotifySource {
  schema: string;
  /** Tells our own notifications apart: they were emitted locally when the write returned. */
  source: string;
}

/** The NOTIFY payload announcing `change`. */
export function notifyPayload(from: NotifySource, change: Invalidation): string {
  const payload: NotifyPayload = { schema: from.schema, source: from.source, ...change };
  const text = json(payload);
  // A 10 KB tenant id must not turn into a failed write: say "some tenant" instead.
  return Buffer.byteLength(text) <= MAX_PAYLOAD_BYTES ? text : json({ ...payload, tenantId: '*' });
}

export interface InvalidationListenerOptions {
  connectionString: string;
  connectionTimeoutMillis: number;
  /** Longest wait between attempts to re-establish the LISTEN connection. */
  maxReconnectDelayMs: number;
  onError: (error: Error) => void;
}

/** The LISTEN connection of one store instance. */
export class InvalidationListener {
  readonly #options: InvalidationListenerOptions;
  readonly #from: NotifySource;
  readonly #listeners: InvalidationListeners;
  #client: Client | undefined;
  #listening: Promise<void> | undefined;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #reconnectDelayMs = 0;
  #closed = false;

  constructor(options: InvalidationListenerOptions, from: NotifySource, listeners: InvalidationListeners) {
    this.#options = options;
    this.#from = from;
    this.#listeners = listeners;
  }

  /** Connects and LISTENs, once; a failed attempt may be retried by calling again. */
  start(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#listening ??= this.#connect().catch((error: unknown) => {
      this.#listening = undefined;
      throw error;
    });
    return this.#listening;
  }

  /** Starts listening, retrying in the background when that fails. */
  ensureStarted(): void {
    this.start().catch(() => this.#scheduleReconnect());
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#reconnectTimer !== undefined) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    const client = this.#client;
    this.#client = undefined;
    await client?.end();
  }

  async #connect(): Promise<void> {
    const client = new Client({
      connectionString: this.#options.connectionString,
      // The schema in the name lets an operator (or a test) find this instance's listener.
      application_name: `baton-listener:${this.#from.schema}`,
      connectionTimeoutMillis: this.#options.connectionTimeoutMillis,
    });
    client.on('notification', (message) => this.#onNotification(message));
    client.on('error', (error) => this.#lost(client, error));
    client.on('end', () => this.#lost(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${INVALIDATION_CHANNEL}`);
    } catch (error) {
      client.removeAllListeners('end');
      await client.end().catch(() => {});
      throw error;
    }
    if (this.#closed) {
      await client.end().catch(() => {});
      return;
    }
    this.#client = client;
    this.#reconnectDelayMs = 0;
  }

  #lost(client: Client, error?: Error): void {
    if (error !== undefined) this.#options.onError(error);
    if (this.#closed || client !== this.#client) return;
    this.#client = undefined;
    this.#listening = undefined;
    client.end().catch(() => {});
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#reconnectTimer !== undefined) return;
    this.#reconnectDelayMs = Math.min(Math.max(this.#reconnectDelayMs * 2, 100), this.#options.maxReconnectDelayMs);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      this.start().then(
        // Whatever was notified while we were away is lost: every cache must start over.
        () => this.#listeners.emit({ tenantId: '*', entity: '*' }),
        (error: unknown) => {
          if (error instanceof Error) this.#options.onError(error);
          this.#scheduleReconnect();
        },
      );
    }, this.#reconnectDelayMs);
    // Reconnecting is no reason to keep a process alive that has nothing else to do.
    this.#reconnectTimer.unref();
  }

  #onNotification(message: Notification): void {
    if (message.channel !== INVALIDATION_CHANNEL) return;
    let payload: Partial<NotifyPayload>;
    try {
      payload = JSON.parse(message.payload ?? '') as Partial<NotifyPayload>;
    } catch {
      // Not ours to read, but on our channel: dropping every cache is the safe reading.
      this.#listeners.emit({ tenantId: '*', entity: '*' });
      return;
    }
    if (payload.schema !== this.#from.schema || payload.source === this.#from.source) return;
    const entity = typeof payload.entity === 'string' && ENTITIES.has(payload.entity) ? payload.entity : '*';
    const tenantId = typeof payload.tenantId === 'string' ? payload.tenantId : '*';
    this.#listeners.emit({ tenantId, entity });
  }
}
