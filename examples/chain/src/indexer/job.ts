/**
 * Indexer — the legitimate app-only case, beside the delegated path.
 *
 * A background job serves no user, so it acts as itself: client credentials, with the application
 * permission `Docs.ReadAll` an administrator assigned to it (`appRoleAssignments` in baton.json).
 * The Docs API lets such a token reach one route, `/index/documents`, and nothing else.
 *
 * `obo.appToken()` is called outside any user's request, so the SDK's confused-deputy check lets it
 * through — the same call that the Tasks API's anti-pattern switch makes inside one is refused.
 */
import { createOboClient, OboError } from '@baton/resource';
import { exampleLogger, type LineWriter } from '../log.ts';
import { silentNarrator, traceAction, type Narrator, type Trace } from '../trace.ts';

export const INDEXER = 'indexer';

export interface IndexerOptions {
  authority: string;
  ca?: string | undefined;
  clientSecret: string;
  docsUrl: string;
  /** Milliseconds between runs; 0 = only when asked (`runNow`). */
  intervalMs?: number | undefined;
  /** First run after this many milliseconds (default 3000; negative = none). */
  firstRunMs?: number | undefined;
  narrator?: Narrator | undefined;
  log?: LineWriter | undefined;
}

export interface IndexStatus {
  runs: number;
  lastRunAt: string | undefined;
  lastError: string | undefined;
  documents: number;
  /** Distinct words in the index. */
  words: number;
}

export interface Indexer {
  runNow(): Promise<IndexStatus>;
  status(): IndexStatus;
  /** Documents containing `word` (ids). */
  search(word: string): string[];
  close(): Promise<void>;
}

export function startIndexer(options: IndexerOptions): Indexer {
  const log = exampleLogger('indexer', options.log);
  const narrator = options.narrator ?? silentNarrator;
  const obo = createOboClient({
    authority: options.authority,
    clientId: INDEXER,
    credential: { clientSecret: options.clientSecret },
    ...(options.ca === undefined ? {} : { ca: options.ca }),
    logger: log,
  });
  const status: IndexStatus = { runs: 0, lastRunAt: undefined, lastError: undefined, documents: 0, words: 0 };
  let index = new Map<string, Set<string>>();
  let running: Promise<IndexStatus> | undefined;
  let closed = false;

  function run(): Promise<IndexStatus> {
    return traceAction('Indexer run', {}, (trace) => indexRun(trace));
  }

  async function indexRun(trace: Trace): Promise<IndexStatus> {
    narrator.begin(trace.traceId, { label: 'Index every document (background job)', actor: 'Indexer', kind: 'app-only' });
    try {
      // Client credentials: the indexer's own token, carrying its application permission.
      const { accessToken } = await obo.appToken(['api://docs/.default']);
      const res = await fetch(new URL('/index/documents', options.docsUrl), {
        headers: { authorization: `Bearer ${accessToken}`, traceparent: trace.traceparent },
        signal: AbortSignal.timeout(10_000),
      });
      if (!res.ok) throw new Error(`the Docs API answered ${res.status}`);
      const { documents } = (await res.json()) as { documents: Array<{ id: string; title: string; content: string }> };
      const next = new Map<string, Set<string>>();
      for (const doc of documents) {
        for (const word of `${doc.title} ${doc.content}`.toLowerCase().match(/[\p{L}\p{N}]{3,}/gu) ?? []) {
          let ids = next.get(word);
          if (ids === undefined) next.set(word, (ids = new Set()));
          ids.add(doc.id);
        }
      }
      index = next;
      Object.assign(status, { runs: status.runs + 1, lastRunAt: new Date().toISOString(), lastError: undefined, documents: documents.length, words: next.size });
      narrator.note(trace.traceId, `Indexed ${documents.length} document${documents.length === 1 ? '' : 's'} (${next.size} words) with the application permission Docs.ReadAll.`);
    } catch (error) {
      const why = error instanceof OboError ? `${error.error}: ${error.description}` : (error as Error).message;
      Object.assign(status, { runs: status.runs + 1, lastRunAt: new Date().toISOString(), lastError: why });
      narrator.note(trace.traceId, `Index run failed: ${why}`, 'error');
      log.warn('index run failed', { cause: why });
    } finally {
      narrator.finish(trace.traceId);
    }
    return { ...status };
  }

  const runNow = () => {
    if (closed) return Promise.resolve({ ...status });
    running ??= run().finally(() => {
      running = undefined;
    });
    return running;
  };

  const timers: NodeJS.Timeout[] = [];
  const first = options.firstRunMs ?? 3000;
  if (first >= 0) timers.push(setTimeout(() => void runNow(), first));
  if (options.intervalMs !== undefined && options.intervalMs > 0) timers.push(setInterval(() => void runNow(), options.intervalMs));
  for (const t of timers) t.unref();

  return {
    runNow,
    status: () => ({ ...status }),
    search: (word) => [...(index.get(word.toLowerCase()) ?? [])],
    async close() {
      closed = true;
      for (const t of timers) clearTimeout(t);
      await running?.catch(() => {});
      await obo.close();
    },
  };
}
