/**
 * The resource SDK's guard: verified requests per second, in process (no HTTP: the guard's cost is
 * what is measured), one call at a time as a request handler makes them, beside:
 * - raw verify: split the JWS and verify with a bare `KeyObject` (bench/lib/ecdsa.ts) — the floor
 *   any JWT verifier pays (no JSON, no claims); and the same the way packages/core called it before it switched to bare keys;
 * - `jose.jwtVerify` with a `CryptoKey` imported once (jose's fastest path: WebCrypto);
 * - `express-oauth2-jwt-bearer`'s `auth()` middleware (Auth0's; jose inside, JWKS fetched once over
 *   HTTP and cached), called with a minimal Express-like request.
 *
 * Cold: a pool of 20 000 distinct tokens (twice the guard's default cache), cycled, so every call
 * verifies a token the guard has not remembered. Cached: the same token every time. The guard and
 * express-oauth2-jwt-bearer fetch the same JWKS from a local HTTP server on 127.0.0.1.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateKeyPairSync, type JsonWebKey } from 'node:crypto';
import { asCoreDoesToday, fastest, type Es256 } from '../lib/ecdsa.ts';
import { Session } from 'node:inspector/promises';
import { createSigner } from '@baton/core';
import { median, opsPerSecondAsync, opsPerSecondSync } from '../lib/stats.ts';
import { summarise, type CpuProfile } from '../lib/profile.ts';
import { skipped, type BenchContext, type Row, type Section, type SectionResult } from '../lib/types.ts';
import { sampleClaims } from './crypto.ts';

export const GUARD_COLD_TARGET = 0.8;
export const GUARD_CACHED_TARGET = 20;
const ISSUER = 'https://localhost:8443/contoso/v2.0';
const AUDIENCE = 'api://tasks';

interface GuardLike {
  verify(authorization: string): Promise<{ userId: string }>;
  ready(): Promise<void>;
}

type CreateGuard = (options: Record<string, unknown>) => GuardLike;

async function loadCreateGuard(): Promise<CreateGuard | string> {
  try {
    const sdk = (await import('@baton/resource')) as Record<string, unknown>;
    return typeof sdk.createGuard === 'function' ? (sdk.createGuard as CreateGuard) : '@baton/resource does not export createGuard yet';
  } catch (error) {
    return `@baton/resource cannot be loaded (${(error as Error).message.split('\n')[0]})`;
  }
}

function jwksServer(jwk: JsonWebKey): Promise<{ url: string; server: Server }> {
  const body = JSON.stringify({ keys: [jwk] });
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=600' });
    res.end(body);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/keys`, server })));
}

/** An Express request as much as `express-oauth2-jwt-bearer` reads of it. */
function expressRequest(authorization: string): Record<string, unknown> {
  const headers = { authorization, host: 'localhost' };
  return {
    headers,
    query: {},
    body: undefined,
    method: 'GET',
    protocol: 'https',
    url: '/tasks',
    originalUrl: '/tasks',
    socket: { remoteAddress: '127.0.0.1' },
    get: (name: string) => (headers as Record<string, string>)[name.toLowerCase()],
    is: () => false,
  };
}

export const guardSection: Section = {
  name: 'guard',
  title: 'Resource SDK guard: verified requests/s (in process, one core)',
  async run(ctx: BenchContext): Promise<SectionResult> {
    const createGuard = await loadCreateGuard();
    if (typeof createGuard === 'string') return skipped('guard', createGuard);

    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const kid = 'bench-guard-1';
    const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' };
    const jwks = await jwksServer(jwk);
    try {
      const signer = createSigner(privateKey, kid, 'ES256');
      const now = Math.floor(Date.now() / 1000);
      const poolSize = 20_000;
      ctx.log(`guard: minting ${poolSize} tokens`);
      const tokens: string[] = [];
      for (let i = 0; i < poolSize; i++) tokens.push(signer.sign({ ...sampleClaims(now, i), aud: AUDIENCE, iss: ISSUER, azp: 'tasks-web', client_id: 'tasks-web', scp: 'Tasks.ReadWrite', act: undefined }, 'at+jwt'));
      const headers = tokens.map((t) => `Bearer ${t}`);
      const one = headers[0] as string;

      // — contenders —
      // The floor any JWT verifier pays: split, decode the signature, verify — no JSON, no claims.
      const fast = fastest(privateKey, publicKey);
      const today = asCoreDoesToday(privateKey, publicKey);
      const rawWith = (es: Es256) => (token: string) => {
        const dot = token.lastIndexOf('.');
        return es.verify(Buffer.from(token.slice(0, dot)), Buffer.from(token.slice(dot + 1), 'base64url'));
      };
      const raw = rawWith(fast);
      const rawToday = rawWith(today);
      const guard = createGuard({ issuer: ISSUER, jwksUri: jwks.url, audience: AUDIENCE });
      await guard.ready();
      const jose = await import('jose');
      const cryptoKey = await jose.importJWK(jwk as Parameters<typeof jose.importJWK>[0], 'ES256');
      const joseOptions = { issuer: ISSUER, audience: AUDIENCE, algorithms: ['ES256'], typ: 'at+jwt' };
      // Imported by a computed name: its type declarations augment Express's global Request with an
      // `auth` property that conflicts with @baton/resource/express's, and the bench is type-checked
      // in the same program as the SDK.
      const auth0Package = 'express-oauth2-jwt-bearer';
      const { auth } = (await import(auth0Package)) as { auth: (options: Record<string, unknown>) => unknown };
      const middleware = auth({ issuer: ISSUER, jwksUri: jwks.url, audience: AUDIENCE, tokenSigningAlg: 'ES256' }) as unknown as (
        req: Record<string, unknown>,
        res: unknown,
        next: (error?: unknown) => void,
      ) => Promise<void>;
      const express = (authorization: string) =>
        new Promise<void>((resolve, reject) => {
          void middleware(expressRequest(authorization), {}, (error?: unknown) => (error ? reject(error) : resolve()));
        });

      // Each accepts a good token before anything is timed.
      if (!raw(tokens[0] as string)) throw new Error('raw verify rejected a valid token');
      if ((await guard.verify(one)).userId === undefined) throw new Error('the guard returned no user');
      await jose.jwtVerify(tokens[0] as string, cryptoKey, joseOptions);
      await express(one);

      const ms = Math.max(500, ctx.roundSeconds * 250);
      const rounds = Math.max(3, ctx.rounds);
      let i = 0;
      const next = () => {
        i = i + 1 === poolSize ? 0 : i + 1;
        return i;
      };
      const contenders: { key: string; measure: string; note: string; sync?: () => unknown; async?: () => Promise<unknown> }[] = [
        { key: 'raw', measure: 'raw node:crypto verify (ES256)', note: 'split + verify, no JSON or claims; KeyObject bare', sync: () => raw(tokens[next()] as string) },
        { key: 'rawToday', measure: 'raw verify, with an options object (core before 15:45)', note: "{ key, dsaEncoding: 'ieee-p1363' }", sync: () => rawToday(tokens[next()] as string) },
        { key: 'guardCold', measure: 'Baton guard, cold (unique tokens)', note: `${poolSize} distinct tokens cycled`, async: () => guard.verify(headers[next()] as string) },
        { key: 'guardCached', measure: 'Baton guard, cached (same token)', note: 'verified-token cache hit', async: () => guard.verify(one) },
        { key: 'jose', measure: 'jose.jwtVerify (CryptoKey)', note: 'WebCrypto; no cache (cold = cached)', async: () => jose.jwtVerify(tokens[next()] as string, cryptoKey, joseOptions) },
        { key: 'express', measure: 'express-oauth2-jwt-bearer auth()', note: 'jose inside; no cache (cold = cached)', async: () => express(headers[next()] as string) },
      ];
      const figures: Record<string, { median: number; rounds: number[] }> = {};
      const rows: Row[] = [];
      for (const c of contenders) {
        ctx.log(`guard: ${c.measure}`);
        const values: number[] = [];
        if (c.sync) opsPerSecondSync(c.sync, 200);
        else await opsPerSecondAsync(c.async as () => Promise<unknown>, 200);
        for (let r = 0; r < rounds; r++) values.push(c.sync ? opsPerSecondSync(c.sync, ms, 16) : await opsPerSecondAsync(c.async as () => Promise<unknown>, ms, 16));
        figures[c.key] = { median: median(values), rounds: values };
        rows.push({ section: 'guard', measure: c.measure, rate: median(values), note: c.note });
      }
      ctx.shared.rawVerify = figures.raw?.median;
      ctx.shared.guardCold = figures.guardCold?.median;
      ctx.shared.guardCached = figures.guardCached?.median;
      ctx.shared.jose = figures.jose?.median;

      const result: SectionResult = { name: 'guard', status: 'ran', rows, data: { poolSize, figures }, profiles: [] };
      const coldMissed = (figures.guardCold?.median ?? 0) / (figures.raw?.median ?? 1) < GUARD_COLD_TARGET;
      const cachedMissed = (figures.guardCached?.median ?? 0) / (figures.jose?.median ?? 1) < GUARD_CACHED_TARGET;
      if (ctx.profile === 'always' || (ctx.profile === 'auto' && (coldMissed || cachedMissed))) {
        for (const [key, fn, title] of [
          ['cold', () => guard.verify(headers[next()] as string), 'guard cold (in process)'],
          ['cached', () => guard.verify(one), 'guard cached (in process)'],
        ] as const) {
          if (ctx.profile === 'auto' && (key === 'cold' ? !coldMissed : !cachedMissed)) continue;
          ctx.log(`guard: profiling ${key}`);
          const session = new Session();
          session.connect();
          await session.post('Profiler.enable');
          await session.post('Profiler.setSamplingInterval', { interval: 100 });
          await session.post('Profiler.start');
          await opsPerSecondAsync(fn, 2000);
          const { profile } = await session.post('Profiler.stop');
          session.disconnect();
          result.profiles.push({ title, summary: summarise(profile as unknown as CpuProfile, 30) });
        }
      }
      return result;
    } finally {
      jwks.server.close();
      jwks.server.closeAllConnections();
    }
  },
};
