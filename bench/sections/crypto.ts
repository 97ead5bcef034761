/**
 * The crypto bound: what one core can do with `node:crypto` and the key type the token service
 * signs with (ECDSA P-256 / ES256, a `KeyObject`, IEEE P1363 signatures as JWS wants), on input the
 * size of a real access token. A `client_credentials` grant costs one signature; an On-Behalf-Of
 * exchange one verification (the assertion) plus one signature (the new token), so verify+sign
 * per second is the ceiling an exchange rate is compared with.
 *
 * Tight loops on this thread (pinned to the load generator's CPU when pinning is on; nothing else
 * of ours runs at the time). Measured the fastest way node:crypto allows (bench/lib/ecdsa.ts) and,
 * beside it, the way packages/core called it before it switched to bare keys.
 */
import { generateKeyPairSync } from 'node:crypto';
import { asCoreDoesToday, fastest, selfCheck } from '../lib/ecdsa.ts';
import { createSigner } from '@baton/core';
import { median, opsPerSecondSync } from '../lib/stats.ts';
import type { BenchContext, Section, SectionResult } from '../lib/types.ts';

/** Claims of the size and shape of a Baton delegated access token after one exchange. */
export function sampleClaims(now = Math.floor(Date.now() / 1000), i = 0): Record<string, unknown> {
  return {
    aud: 'api://docs',
    iss: 'https://localhost:8443/contoso/v2.0',
    iat: now,
    nbf: now,
    exp: now + 3600,
    sub: 'QmZ3dGp6c1VxN0lYb0JtTmh3cWZ4d2JqY2x3',
    oid: '5b0f6c1e-3c55-4a84-9a7e-1d1f0a4e2c11',
    tid: '8e2b3a4c-8f0a-4f57-a0b5-6b2f1b7c9d10',
    azp: 'tasks-api',
    client_id: 'tasks-api',
    scp: 'Docs.Read',
    amr: ['pwd'],
    acr: '1',
    auth_time: now - 60,
    act: { sub: 'tasks-api', client_id: 'tasks-api' },
    uti: `uti${i.toString(36).padStart(19, '0')}`,
    jti: `${i.toString(16).padStart(8, '0')}-7c2e-4b0e-9f1a-3d5c6b7a8e9f`,
    ver: '2.0',
  };
}

export const cryptoSection: Section = {
  name: 'crypto',
  title: 'Crypto bound (node:crypto ES256, one core)',
  async run(ctx: BenchContext): Promise<SectionResult> {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    selfCheck(privateKey, publicKey);
    const token = createSigner(privateKey, 'bench', 'ES256').sign(sampleClaims(), 'at+jwt');
    const dot = token.lastIndexOf('.');
    const input = Buffer.from(token.slice(0, dot));
    const signature = Buffer.from(token.slice(dot + 1), 'base64url');
    const fast = fastest(privateKey, publicKey);
    const today = asCoreDoesToday(privateKey, publicKey);
    if (!fast.verify(input, signature) || !today.verify(input, signature)) throw new Error('crypto self-check failed');

    const ms = ctx.roundSeconds * 200; // these loops settle at once
    const rounds = Math.max(5, ctx.rounds);
    const loops: Record<string, () => unknown> = {
      sign: () => fast.sign(input),
      verify: () => fast.verify(input, signature),
      verifySign: () => {
        fast.verify(input, signature);
        fast.sign(input);
      },
      todaySign: () => today.sign(input),
      todayVerifySign: () => {
        today.verify(input, signature);
        today.sign(input);
      },
    };
    for (const fn of Object.values(loops)) opsPerSecondSync(fn, 200); // warm-up (JIT, OpenSSL tables)
    // Interleaved rounds: a moment of contention hits every loop alike.
    const values: Record<string, number[]> = Object.fromEntries(Object.keys(loops).map((k) => [k, []]));
    for (let i = 0; i < rounds; i++) for (const [name, fn] of Object.entries(loops)) values[name]?.push(opsPerSecondSync(fn, ms, 16));
    const m = (name: string) => median(values[name] as number[]);
    ctx.shared.cryptoSign = m('sign');
    ctx.shared.cryptoVerify = m('verify');
    ctx.shared.cryptoVerifySign = m('verifySign');
    const note = `${input.length}-byte signing input; KeyObject passed bare, DER↔P1363 in JS`;
    const todayNote = "{ key, dsaEncoding: 'ieee-p1363' }, as core/jws.ts called it before the bare-key change";
    return {
      name: 'crypto',
      status: 'ran',
      rows: [
        { section: 'crypto', measure: 'ES256 sign / s (1 core)', rate: m('sign'), note },
        { section: 'crypto', measure: 'ES256 verify / s (1 core)', rate: m('verify'), note },
        { section: 'crypto', measure: 'ES256 verify + sign / s (1 core)', rate: m('verifySign'), note: 'the ceiling of one OBO exchange' },
        { section: 'crypto', measure: 'ES256 sign / s, with an options object (core before 15:45)', rate: m('todaySign'), note: todayNote },
        { section: 'crypto', measure: 'ES256 verify + sign / s, with an options object (core before 15:45)', rate: m('todayVerifySign'), note: todayNote },
      ],
      data: { signingInputBytes: input.length, rounds: values },
      profiles: [],
    };
  },
};
