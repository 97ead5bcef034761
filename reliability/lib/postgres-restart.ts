/**
 * The PostgreSQL restart fault: two `baton serve` instances (the real CLI) on a PostgreSQL of the
 * run's own, load running through both, and the database stopped (fast shutdown) and started again.
 * Used by `npm run faults -- postgres-restart` (longer, with figures) and by
 * test/faults-postgres.test.ts (shorter, asserting the same figures).
 *
 * What is asked of Baton:
 * - while the database is down, a request that needs it fails fast: `503 temporarily_unavailable`
 *   with `Retry-After`, never a 500, never a hang (every request is bounded by `requestTimeoutMs`);
 * - once the database is back, each instance serves again (`/readyz` and a real grant), timed;
 * - nothing is lost or usable twice: a code or refresh token issued before the outage and not used
 *   works exactly once after it (also when a redemption was refused with a 503 during it), a refresh
 *   token rotated before the outage is still refused as a replay, and every refresh family of the
 *   load keeps working from the last token the client was given.
 */
import { rm } from 'node:fs/promises';
import { serveInstances, SECRETS, type Instance } from './serve.ts';
import { OwnPostgres } from './postgres.ts';
import { Browser, BOB, authorizeUrl, pkce, runFlow, webParams, WEB } from '../../packages/server/test/signin-kit.ts';

export interface PostgresRestartOptions {
  /** Load before the stop, with the database down, and after it is back (seconds). */
  loadBeforeSeconds: number;
  outageSeconds: number;
  loadAfterSeconds: number;
  /** Concurrent clients of the load (each alternates the two instances). */
  workers: number;
  /** Codes and refresh families issued before the outage and checked after it (each kind). */
  held: number;
  /** A request slower than this counts as hung (it is aborted a little later). */
  requestTimeoutMs: number;
}

export interface Answer {
  status: number;
  error?: string | undefined;
  errorCodes?: number[] | undefined;
  retryAfter?: string | null | undefined;
  body: Record<string, unknown>;
  ms: number;
}

type Kind = 'client_credentials' | 'refresh_token' | 'authorization_code' | 'readyz';

export interface PostgresRestartFigures {
  [name: string]: number | string | boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** POST a form (or GET when `body` is undefined); a request still unanswered after `timeoutMs` is aborted and reported as status 0. */
async function call(url: string, body: Record<string, string> | undefined, timeoutMs: number, headers: Record<string, string> = {}): Promise<Answer> {
  const started = performance.now();
  try {
    const response = await fetch(url, {
      method: body === undefined ? 'GET' : 'POST',
      headers: body === undefined ? headers : { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      ...(body === undefined ? {} : { body: new URLSearchParams(body).toString() }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await response.text();
    let parsed: Record<string, unknown> = {};
    try {
      parsed = JSON.parse(text) as Record<string, unknown>;
    } catch {
      parsed = { text: text.slice(0, 200) };
    }
    return {
      status: response.status,
      error: typeof parsed.error === 'string' ? parsed.error : undefined,
      errorCodes: Array.isArray(parsed.error_codes) ? (parsed.error_codes as number[]) : undefined,
      retryAfter: response.headers.get('retry-after'),
      body: parsed,
      ms: performance.now() - started,
    };
  } catch (error) {
    return { status: 0, error: (error as Error).name, body: { message: (error as Error).message }, ms: performance.now() - started };
  }
}

/** A 503 the way the issue asks for it: `temporarily_unavailable` with a Retry-After. */
function failedFast(answer: Answer): boolean {
  return answer.status === 503 && answer.error === 'temporarily_unavailable' && answer.retryAfter !== null && answer.retryAfter !== undefined;
}

interface Held {
  code: string;
  verifier: string;
}

export async function postgresRestart(options: PostgresRestartOptions): Promise<PostgresRestartFigures> {
  const database = await OwnPostgres.create();
  const instances: Instance[] = [];
  try {
    return await run(database, instances, options);
  } finally {
    for (const instance of instances) {
      await instance.served.stop();
      await rm(instance.served.dataDir, { recursive: true, force: true });
    }
    await database.destroy();
  }
}

async function run(database: OwnPostgres, instances: Instance[], options: PostgresRestartOptions): Promise<PostgresRestartFigures> {
  const started = await serveInstances(database.url, { tls: true });
  instances.push(...started.instances);
  const publicUrl = started.publicUrl;
  const [a, b] = instances as [Instance, Instance];
  const timeout = options.requestTimeoutMs;
  const abortAfter = timeout + 5_000;
  const token = (instance: Instance, body: Record<string, string>, headers?: Record<string, string>) => call(`${instance.base}/contoso/oauth2/v2.0/token`, body, abortAfter, headers);
  const refresh = (instance: Instance, refreshToken: string) => token(instance, { grant_type: 'refresh_token', client_id: WEB.clientId, refresh_token: refreshToken });
  const redeem = (instance: Instance, held: Held) => token(instance, { grant_type: 'authorization_code', client_id: WEB.clientId, redirect_uri: WEB.redirectUri, code: held.code, code_verifier: held.verifier });
  const indexer = { authorization: `Basic ${Buffer.from(`indexer:${SECRETS.indexer}`).toString('base64')}` };
  const clientCredentials = (instance: Instance) => token(instance, { grant_type: 'client_credentials', scope: 'api://docs/.default' }, indexer);

  // Codes from one sign-in and SSO (a code per authorize request), on the public URL.
  const browser = new Browser();
  const server = { url: publicUrl } as never;
  const newCode = async (): Promise<Held> => {
    const { verifier, challenge } = pkce();
    const flow = await runFlow(browser, server, authorizeUrl(server, webParams(challenge)), { user: BOB });
    const code = flow.params?.code;
    if (code === undefined) throw new Error(`no code (pages: ${flow.seen.join(', ')}): ${flow.hop.body.slice(0, 300)}`);
    return { code, verifier };
  };
  const newFamily = async (instance: Instance): Promise<string> => {
    const answer = await redeem(instance, await newCode());
    if (answer.status !== 200) throw new Error(`code redemption before the outage: ${answer.status} ${JSON.stringify(answer.body)}`);
    return answer.body.refresh_token as string;
  };

  // Held across the outage: unused codes, unused refresh tokens, and refresh tokens rotated once (replays).
  const heldCodes: Held[] = [];
  const heldUnused: string[] = [];
  const heldRotated: Array<{ old: string; current: string }> = [];
  for (let i = 0; i < options.held; i++) {
    heldCodes.push(await newCode());
    heldUnused.push(await newFamily(instances[i % 2]!));
    const old = await newFamily(instances[i % 2]!);
    const rotated = await refresh(instances[(i + 1) % 2]!, old);
    if (rotated.status !== 200) throw new Error(`rotation before the outage: ${rotated.status} ${JSON.stringify(rotated.body)}`);
    heldRotated.push({ old, current: rotated.body.refresh_token as string });
  }

  // The load: each worker owns a refresh family and redeems codes from a pool, and asks for
  // client-credentials tokens, alternating the instances.
  const codePool: Held[] = [];
  for (let i = 0; i < options.workers * 4; i++) codePool.push(await newCode());
  const families = await Promise.all(Array.from({ length: options.workers }, (_, i) => newFamily(instances[i % 2]!).then((t) => ({ token: t, inDoubt: false }))));
  const redeemedCodes: Held[] = [];
  const counts: Record<string, number> = {};
  const violations: string[] = [];
  let phase: 'before' | 'down' | 'back' = 'before';
  let slowest = 0;
  let slowestDuringOutage = 0;
  const firstGrantBack: number[] = [-1, -1];
  let backAt = 0;
  const note = (kind: Kind, instance: number, answer: Answer) => {
    const outcome = answer.status === 200 ? 'ok' : failedFast(answer) ? 'failed_fast' : answer.status === 0 ? 'no_answer' : `${answer.status}_${answer.error ?? ''}`;
    counts[`${phase}:${kind}:${outcome}`] = (counts[`${phase}:${kind}:${outcome}`] ?? 0) + 1;
    slowest = Math.max(slowest, answer.ms);
    if (phase === 'down') slowestDuringOutage = Math.max(slowestDuringOutage, answer.ms);
    if (answer.status !== 200 && !failedFast(answer)) violations.push(`${phase} ${kind} on ${instance}: ${answer.status} ${JSON.stringify(answer.body).slice(0, 200)}`);
    else if (answer.ms > timeout) violations.push(`${phase} ${kind} on ${instance}: answered after ${Math.round(answer.ms)} ms`);
    if (phase === 'back' && answer.status === 200 && kind !== 'client_credentials' && kind !== 'readyz' && firstGrantBack[instance]! < 0) {
      firstGrantBack[instance] = performance.now() - backAt;
    }
  };
  let stop = false;
  const worker = async (w: number) => {
    const family = families[w]!;
    for (let round = 0; !stop; round++) {
      const i = (w + round) % 2;
      const instance = instances[i]!;
      family.inDoubt = true;
      const refreshed = await refresh(instance, family.token);
      note('refresh_token', i, refreshed);
      if (refreshed.status === 200) family.token = refreshed.body.refresh_token as string;
      // A 503 did nothing: the same token is still the one to use. No answer at all: in doubt.
      family.inDoubt = refreshed.status === 0;
      if (family.inDoubt) return;
      // Codes are redeemed once the database is stopped (refused, kept) and after it is back.
      const held = phase === 'before' ? undefined : codePool.shift();
      if (held !== undefined) {
        const redeemed = await redeem(instances[1 - i]!, held);
        note('authorization_code', 1 - i, redeemed);
        if (redeemed.status === 200) redeemedCodes.push(held);
        else codePool.push(held); // refused with a 503: must still work later
      }
      note('client_credentials', i, await clientCredentials(instance));
      await sleep(phase === 'down' ? 100 : 20);
    }
  };
  const loops = Array.from({ length: options.workers }, (_, w) => worker(w));

  await sleep(options.loadBeforeSeconds * 1000);
  phase = 'down';
  const stoppingAt = performance.now();
  await database.stop('SIGINT');
  const stopMs = Math.round(performance.now() - stoppingAt);
  // With the database certainly down: a held code and a held unused refresh token are refused
  // with a 503 (and must still work once afterwards), on each instance; readiness says so too.
  const probes: Answer[] = [];
  for (const [i, instance] of instances.entries()) {
    probes.push(await redeem(instance, heldCodes[i % heldCodes.length]!));
    probes.push(await refresh(instance, heldUnused[i % heldUnused.length]!));
  }
  const readyDown = await Promise.all(instances.map((instance) => call(`${instance.base}/readyz`, undefined, abortAfter)));
  probes.forEach((answer, n) => note(n % 2 === 0 ? 'authorization_code' : 'refresh_token', Math.floor(n / 2), answer));
  await sleep(Math.max(0, options.outageSeconds * 1000 - (performance.now() - stoppingAt)));
  const outageMs = Math.round(performance.now() - stoppingAt);
  await database.start();
  backAt = performance.now();
  phase = 'back';
  // Readiness of each instance, polled until it answers 200.
  const readyBack = await Promise.all(
    instances.map(async (instance) => {
      while (performance.now() - backAt < 60_000) {
        const answer = await call(`${instance.base}/readyz`, undefined, abortAfter);
        if (answer.status === 200) return performance.now() - backAt;
        await sleep(50);
      }
      return -1;
    }),
  );
  await sleep(options.loadAfterSeconds * 1000);
  stop = true;
  await Promise.all(loops);
  phase = 'back';

  // Nothing lost, nothing usable twice.
  let grantsLost = 0;
  let usableTwice = 0;
  const lostSamples: string[] = [];
  const lost = (what: string, answer: Answer) => {
    grantsLost++;
    if (lostSamples.length < 5) lostSamples.push(`${what}: ${answer.status} ${JSON.stringify(answer.body).slice(0, 160)}`);
  };
  const refusedAsReplay = (answer: Answer, code: number) => answer.status === 400 && answer.error === 'invalid_grant' && answer.errorCodes?.includes(code) === true;
  for (const [n, held] of [...heldCodes, ...codePool].entries()) {
    const first = await redeem(instances[n % 2]!, held);
    if (first.status !== 200) lost('code held across the outage', first);
    const second = await redeem(instances[(n + 1) % 2]!, held);
    if (!refusedAsReplay(second, 54005)) usableTwice++;
  }
  for (const held of redeemedCodes.slice(0, 20)) if (!refusedAsReplay(await redeem(a, held), 54005)) usableTwice++;
  for (const [n, held] of heldUnused.entries()) {
    const first = await refresh(instances[(n + 1) % 2]!, held);
    if (first.status !== 200) lost('refresh token held across the outage', first);
    if (!refusedAsReplay(await refresh(instances[n % 2]!, held), 70000)) usableTwice++;
  }
  for (const held of heldRotated) {
    if (!refusedAsReplay(await refresh(b, held.old), 70000)) usableTwice++;
    // The replay revoked the family: the newer token is refused too.
    if ((await refresh(a, held.current)).status === 200) usableTwice++;
  }
  const judged = families.filter((f) => !f.inDoubt);
  for (const family of judged) {
    const answer = await refresh(a, family.token);
    if (answer.status !== 200) lost('refresh family of the load', answer);
  }

  const sum = (pattern: RegExp) => Object.entries(counts).reduce((total, [key, n]) => total + (pattern.test(key) ? n : 0), 0);
  const requests = sum(/./);
  const figures: PostgresRestartFigures = {
    instances: 2,
    requests,
    requestsBeforeStop: sum(/^before:/),
    requestsWhileDown: sum(/^down:/),
    requestsAfterBack: sum(/^back:/),
    failedFast503WhileDown: sum(/^down:.*:failed_fast$/),
    answered200WhileDown: sum(/^down:.*:ok$/),
    failedFast503AfterBack: sum(/^back:.*:failed_fast$/),
    failedBeforeStop: sum(/^before:/) - sum(/^before:.*:ok$/),
    violations: violations.length,
    probesWhileDownAll503: probes.every(failedFast),
    readyzWhileDown: readyDown.map((r) => r.status).join('/'),
    slowestAnswerMs: Math.round(slowest),
    slowestAnswerWhileDownMs: Math.round(slowestDuringOutage),
    postgresStopMs: stopMs,
    outageMs,
    readyAfterBackMs: readyBack.map((ms) => Math.round(ms)).join('/'),
    firstGrantAfterBackMs: firstGrantBack.map((ms) => Math.round(ms)).join('/'),
    recoveredWithinMs: Math.round(Math.max(...readyBack, ...firstGrantBack)),
    codesHeld: heldCodes.length + codePool.length,
    codesRedeemedUnderLoad: redeemedCodes.length,
    refreshHeldUnused: heldUnused.length,
    refreshHeldRotated: heldRotated.length,
    loadFamiliesJudged: judged.length,
    loadFamiliesInDoubt: families.length - judged.length,
    grantsLost,
    usableTwice,
    serverErrorLogLines: instances.reduce((n, i) => n + (i.served.log().match(/"level":(50|60)/g)?.length ?? 0), 0),
    ...(violations.length ? { violationSamples: violations.slice(0, 5).join(' | ') } : {}),
    ...(lostSamples.length ? { lostSamples: lostSamples.join(' | ') } : {}),
  };
  figures.ok =
    violations.length === 0 &&
    figures.probesWhileDownAll503 === true &&
    !firstGrantBack.includes(-1) &&
    !readyBack.includes(-1) &&
    grantsLost === 0 &&
    usableTwice === 0 &&
    (figures.failedFast503WhileDown as number) > 0;
  return figures;
}
