/**
 * Token service, `client_credentials`: Baton vs oidc-provider, each alone on the server CPU, over
 * HTTPS with keep-alive, `client_secret_basic`, ES256 JWT access tokens for one API.
 *
 * Both servers run pinned to the same CPU, and are loaded in turn, never together: their rounds
 * alternate (peer, Baton, Baton's /healthz floor; again...), so anything else the machine does
 * during the run weighs on both alike. Each answer is checked once before the load (status 200, an
 * ES256 token).
 */
import { runInterleaved, valid, type LoadResult, type LoadSpec } from '../lib/load.ts';
import { basic, decodeJwt, injectRate, probe, profiledWindow, startBaton, startPeer } from '../lib/servers.ts';
import type { BenchContext, Row, Section, SectionResult } from '../lib/types.ts';

export const CLIENT_CREDENTIALS_TARGET = 3;

function checkToken(label: string, status: number, body: unknown): void {
  const access = typeof body === 'object' && body !== null ? (body as Record<string, unknown>).access_token : undefined;
  const jwt = decodeJwt(access);
  if (status !== 200 || !jwt) throw new Error(`${label}: the probe request failed (${status}): ${JSON.stringify(body).slice(0, 300)}`);
  if (jwt.header.alg !== 'ES256') throw new Error(`${label}: the token is signed ${String(jwt.header.alg)}, not ES256`);
}

export function loadSpec(ctx: BenchContext, url: string, headers: Record<string, string>, bodies: string[], pid: number): LoadSpec {
  return {
    url,
    servername: 'localhost',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    requests: bodies.map((body) => ({ body })),
    connections: ctx.connections,
    warmupSeconds: ctx.warmupSeconds,
    rounds: ctx.rounds,
    roundSeconds: ctx.roundSeconds,
    serverPid: pid,
  };
}

/** The notes of a load row: failures first, else where the CPU went. */
export function loadNote(result: LoadResult, extra = ''): string {
  const f = failures(result.failures);
  if (f) return f;
  const parts = [];
  if (result.serverCores !== undefined) parts.push(`server ${result.serverCores.toFixed(2)} cores`);
  // One core cannot drive more: the rate is the load generator's, the server had room to spare.
  if (result.loadCores !== undefined && result.loadCores >= 0.9 && (result.serverCores ?? 1) < 0.9) parts.push('load generator saturated: a lower bound');
  if (result.otherCores !== undefined && result.otherCores >= 0.05) parts.push(`other processes ${result.otherCores.toFixed(2)} cores`);
  if (extra) parts.push(extra);
  return parts.join('; ');
}

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

export const tokenSection: Section = {
  name: 'token',
  title: 'Token service: client_credentials (HTTPS, keep-alive)',
  async run(ctx: BenchContext): Promise<SectionResult> {
    const rows: Row[] = [];
    const data: Record<string, unknown> = {};
    const profiles: SectionResult['profiles'] = [];
    const [peer, baton] = await Promise.all([startPeer(ctx), startBaton(ctx, 'baton-client-credentials', { store: 'sqlite', assertions: 1 })]);
    try {
      // — the peer —
      const peerBody = `grant_type=client_credentials&scope=${encodeURIComponent(peer.ready.scope)}&resource=${encodeURIComponent(peer.ready.resource)}`;
      const peerHeaders = { authorization: basic(peer.ready.clientId, peer.ready.clientSecret) };
      const peerUrl = `${peer.ready.url}/token`;
      const peerAnswer = await probe(peerUrl, peerBody, { ...FORM, ...peerHeaders }, peer.ready.ca);
      checkToken('oidc-provider', peerAnswer.status, peerAnswer.body);
      // — Baton —
      const body = `grant_type=client_credentials&scope=${encodeURIComponent('api://docs/.default')}`;
      const headers = { authorization: basic('indexer', 'indexer-demo-secret-for-local-use-only') };
      const url = `${baton.ready.url}/contoso/oauth2/v2.0/token`;
      const answer = await probe(url, body, { ...FORM, ...headers }, baton.ready.ca);
      checkToken('Baton', answer.status, answer.body);

      const spec = loadSpec(ctx, url, headers, [body], baton.pid);
      // The floor under any endpoint of this server: TLS, HTTP/1.1 parsing, Fastify routing and
      // hooks, a small JSON answer — no crypto, no store.
      const floorSpec: LoadSpec = { ...loadSpec(ctx, `${baton.ready.url}/healthz`, {}, [''], baton.pid), method: 'GET', headers: {} };
      // The ceiling: the same server, transport and form, one signature, nothing else (bench/servers/baton.ts).
      const ceilingSpec = loadSpec(ctx, `${baton.ready.url}/bench/sign`, headers, [body], baton.pid);
      ctx.log('token: oidc-provider client_credentials | Baton client_credentials | Baton GET /healthz | sign-only ceiling, rounds interleaved');
      const [peerResult, result, floor, ceiling] = (await runInterleaved([loadSpec(ctx, peerUrl, peerHeaders, [peerBody], peer.pid), spec, floorSpec, ceilingSpec])) as [
        LoadResult,
        LoadResult,
        LoadResult,
        LoadResult,
      ];

      ctx.shared.peerClientCredentials = valid(peerResult, (r) => r.rps);
      ctx.shared.batonClientCredentials = valid(result, (r) => r.rps);
      ctx.shared.transportFloor = valid(floor, (r) => r.rps);
      ctx.shared.signCeiling = valid(ceiling, (r) => r.rps);
      data.signCeiling = ceiling;
      data.peer = peerResult;
      data.baton = result;
      data.batonHealthz = floor;
      rows.push({ section: 'token', measure: 'oidc-provider client_credentials', rate: peerResult.rps, p50: peerResult.p50, p99: peerResult.p99, note: loadNote(peerResult) });
      rows.push({ section: 'token', measure: 'Baton client_credentials', rate: result.rps, p50: result.p50, p99: result.p99, note: loadNote(result) });
      rows.push({ section: 'token', measure: 'Baton GET /healthz (HTTPS + Fastify floor)', rate: floor.rps, p50: floor.p50, p99: floor.p99, note: loadNote(floor, 'no crypto, no store') });
      rows.push({
        section: 'token',
        measure: 'ceiling: HTTPS + form + one ES256 signature',
        rate: ceiling.rps,
        p50: ceiling.p50,
        p99: ceiling.p99,
        note: loadNote(ceiling, 'same server, bench-only route: no client auth, decision, store or log'),
      });

      const inject = await injectRate(baton, '/contoso/oauth2/v2.0/token', headers, [body], Math.max(1000, ctx.roundSeconds * 500));
      data.batonInject = inject;
      rows.push({ section: 'token', measure: 'Baton client_credentials via app.inject, 1 at a time', rate: inject, p50: 1000 / inject, note: 'Fastify + handler; no TLS, socket or HTTP parser' });

      const missed = result.rps / peerResult.rps < CLIENT_CREDENTIALS_TARGET;
      if (ctx.profile === 'always' || (ctx.profile === 'auto' && missed)) {
        ctx.log('token: profiling Baton client_credentials');
        const profiled = await profiledWindow(ctx, baton, spec, 'baton-client-credentials');
        profiles.push({ title: 'Baton client_credentials under load', ...profiled });
      }
    } finally {
      await Promise.all([peer.stop(), baton.stop()]);
    }
    return { name: 'token', status: 'ran', rows, data, profiles };
  },
};

export function failures(f: Record<string, number>): string {
  const entries = Object.entries(f);
  return entries.length ? `INVALID: ${entries.map(([k, v]) => `${v}× ${k}`).join(', ')}` : '';
}
