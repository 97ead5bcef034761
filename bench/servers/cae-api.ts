/**
 * One of the demo's APIs (examples/chain: Tasks, Docs or Audit) in its own process, started by the
 * demo's own `start*Api` with the `signals` option (its own SSF stream, poll or push), for the cae
 * section. Prints `{"ready": {"url"}}`; exits on SIGTERM or when stdin closes (deleting its stream).
 *
 * The launcher gives the API two things it can watch from outside, without touching the SDK:
 * - the API's OBO token cache (the `oboCache` option): a MemoryTokenCacheStore wrapped to note
 *   which entry was stored last and when an entry is deleted;
 * - the API's DPoP key (the `dpopKey` option), so this process can present the token the API holds
 *   for the next hop exactly as the API does (DPoP-bound), to ask that hop whether it still accepts it.
 *
 * Control commands (stdin, bench/servers/control.ts):
 *   arm -           hold the entry the OBO cache stored last (the token this API holds for the next
 *                   hop) → {"armed": true, "status": <the next hop's answer to it now>}
 *   watch <ms>      probe the next hop with the held token every PROBE_MS, and wait for the cache
 *                   entry's deletion, for at most <ms> → {"watched": true, "refusedAt": epoch ms |
 *                   null, "droppedAt": epoch ms | null}
 *   events -        → {"events": {"push"|"poll": <security events the API accepted that way>}}
 * The token itself never leaves this process (nor reaches a log).
 *
 * Options (JSON in argv[2]): { api, authority, ca, delivery, next? }.
 */
import { generateKeyPairSync } from 'node:crypto';
import { createDpopProver, MemoryTokenCacheStore, type CachedToken, type ReceivedEvent, type TokenCacheStore } from '@baton/resource';
import { startAuditApi } from '../../examples/chain/src/audit/api.ts';
import { startDocsApi } from '../../examples/chain/src/docs/api.ts';
import { startTasksApi } from '../../examples/chain/src/tasks/api.ts';
import type { RunningApi } from '../../examples/chain/src/common.ts';
import { stderrWriter } from '../../examples/chain/src/log.ts';
import { installControl } from './control.ts';

export interface CaeApiOptions {
  api: 'tasks' | 'docs' | 'audit';
  /** The tenant's authority (`https://localhost:<port>/contoso/v2.0`). */
  authority: string;
  ca: string;
  delivery: 'poll' | 'push';
  /** The next hop's base URL (Tasks → Docs, Docs → Audit). */
  next?: string;
}

/** How often the next hop is asked (ms): the resolution of the refusal time. */
export const PROBE_MS = 10;

const SECRETS = { tasks: 'tasks-api-demo-secret-for-local-use-only', docs: 'docs-api-demo-secret-for-local-use-only', audit: 'audit-api-demo-secret-for-local-use-only' } as const;

/** The API's OBO cache, observed: the key stored last, and when each key was deleted. */
class WatchedCache implements TokenCacheStore {
  readonly #inner = new MemoryTokenCacheStore();
  lastKey: string | undefined;
  readonly deletedAt = new Map<string, number>();
  get(key: string): Promise<CachedToken | undefined> {
    return this.#inner.get(key);
  }
  async set(key: string, value: CachedToken, ttlMs: number): Promise<void> {
    this.lastKey = key;
    this.deletedAt.delete(key);
    await this.#inner.set(key, value, ttlMs);
  }
  async delete(key: string): Promise<void> {
    this.deletedAt.set(key, Date.now());
    await this.#inner.delete(key);
  }
  peek(key: string): CachedToken | undefined {
    return this.#inner.peek(key);
  }
}

const options = JSON.parse(process.argv[2] ?? '{}') as CaeApiOptions;
const cache = new WatchedCache();
const dpopKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const prover = createDpopProver(dpopKey);
/** Security events the API accepted, by how they came. */
const events: Record<string, number> = {};
let api: RunningApi | undefined;
let held: { key: string; token: CachedToken } | undefined;

/** The next hop's answer to the held token: Docs `POST /documents {}`, Audit `POST /entries {}` — 400 when accepted (nothing is changed), 401 when refused. */
async function probeNext(): Promise<{ status: number; error: string | undefined }> {
  if (held === undefined || options.next === undefined) throw new Error('nothing armed');
  const url = new URL(options.api === 'tasks' ? '/documents' : '/entries', options.next).href;
  const { accessToken, tokenType } = held.token;
  const headers: Record<string, string> = { authorization: `${tokenType} ${accessToken}`, 'content-type': 'application/json' };
  if (tokenType === 'DPoP') headers.dpop = prover.prove('POST', url, { accessToken });
  const response = await fetch(url, { method: 'POST', headers, body: '{}', signal: AbortSignal.timeout(5000) });
  await response.body?.cancel();
  const error = /error="([^"]+)"/.exec(response.headers.get('www-authenticate') ?? '')?.[1];
  return { status: response.status, error };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

installControl(
  () => {
    void (async () => {
      try {
        await api?.close();
      } finally {
        process.exit(0);
      }
    })();
  },
  {
    async arm() {
      const key = cache.lastKey;
      const token = key === undefined ? undefined : cache.peek(key);
      if (key === undefined || token === undefined) throw new Error('the OBO cache holds no token');
      held = { key, token };
      return { armed: true, ...(await probeNext()) };
    },
    async watch(argument) {
      if (held === undefined) throw new Error('nothing armed');
      const until = Date.now() + Number(argument);
      let refusedAt: number | null = null;
      while (Date.now() < until && (refusedAt === null || !cache.deletedAt.has(held.key))) {
        if (refusedAt === null) {
          const answer = await probeNext();
          // The time the refusal arrived (an upper bound: the hop refused somewhat before).
          if (answer.status === 401 && answer.error === 'insufficient_claims') refusedAt = Date.now();
          else if (answer.status !== 400) throw new Error(`the next hop answered ${answer.status} ${answer.error ?? ''}`);
        }
        await sleep(PROBE_MS);
      }
      return { watched: true, refusedAt, droppedAt: cache.deletedAt.get(held.key) ?? null };
    },
    async events() {
      return { events: { ...events } };
    },
  },
);

async function main(): Promise<void> {
  const common = {
    authority: options.authority,
    ca: options.ca,
    clientSecret: SECRETS[options.api],
    log: stderrWriter,
    signals: { delivery: options.delivery, onEvent: (event: ReceivedEvent) => void (events[event.via] = (events[event.via] ?? 0) + 1) },
    oboCache: cache,
    dpopKey,
  };
  if (options.api === 'audit') api = await startAuditApi(common);
  else if (options.api === 'docs') api = await startDocsApi({ ...common, auditUrl: options.next as string });
  else api = await startTasksApi({ ...common, docsUrl: options.next as string });
  process.stdout.write(`${JSON.stringify({ ready: { url: api.url } })}\n`);
}

main().catch((error: Error) => {
  process.stdout.write(`${JSON.stringify({ error: error.stack ?? error.message })}\n`);
  process.exit(1);
});
