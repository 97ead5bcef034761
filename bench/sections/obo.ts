/**
 * On-Behalf-Of exchanges per second: tasks-api (client_secret_basic) exchanges user tokens it
 * received from tasks-web (`aud` tasks-api, `scp` Tasks.ReadWrite) for `api://docs/Docs.Read`, in
 * Microsoft's form (`jwt-bearer`, `requested_token_use=on_behalf_of`), over HTTPS with keep-alive.
 * 256 distinct user tokens rotate, so nothing the server might remember per token helps it.
 * oidc-provider's client_credentials runs beside it, rounds alternating (the 1.5× target), and so
 * does the same exchange DPoP-bound (RFC 9449): each request carries a fresh proof of tasks-api's
 * key, made by the load generator, and gets a token bound to it — the cost of DPoP next to bearer
 * in the same run (one extra signature verification is the floor).
 *
 * Skipped, with the server's answer as the reason, while one exchange does not succeed (the grant
 * not there yet, or broken).
 */
import { runInterleaved, valid, type LoadResult } from '../lib/load.ts';
import { auditDurations, basic, decodeJwt, injectRate, probe, profiledWindow, startBaton, startPeer, type BatonServer } from '../lib/servers.ts';
import { skipped, type BenchContext, type Section, type SectionResult } from '../lib/types.ts';
import { generateKeyPairSync } from 'node:crypto';
import { createDpopProver } from '@baton/core';
import { loadNote, loadSpec } from './token.ts';

export const OBO_VS_CRYPTO_TARGET = 0.7;
export const OBO_VS_PEER_TARGET = 1.5;
const ASSERTIONS = 256;

export const oboBody = (assertion: string, scope = 'api://docs/Docs.Read') =>
  `grant_type=${encodeURIComponent('urn:ietf:params:oauth:grant-type:jwt-bearer')}&requested_token_use=on_behalf_of&assertion=${assertion}&scope=${encodeURIComponent(scope)}`;
export const OBO_HEADERS = { authorization: basic('tasks-api', 'tasks-api-demo-secret-for-local-use-only') };

/** One exchange outside the load; `undefined` when it worked, else why not. */
export async function probeExchange(server: BatonServer): Promise<string | undefined> {
  const url = `${server.ready.url}/contoso/oauth2/v2.0/token`;
  const answer = await probe(url, oboBody(server.assertions[0] as string), { 'content-type': 'application/x-www-form-urlencoded', ...OBO_HEADERS }, server.ready.ca);
  const body = typeof answer.body === 'object' ? answer.body : {};
  const jwt = decodeJwt(body.access_token);
  if (answer.status === 200 && jwt && jwt.payload.aud !== undefined) return undefined;
  const why = typeof answer.body === 'string' ? answer.body.slice(0, 200) : `${String(body.error)}: ${String(body.error_description ?? '').slice(0, 240)}`;
  return `one OBO exchange did not succeed (HTTP ${answer.status}, ${why})`;
}

/** One DPoP-bound exchange outside the load; `undefined` when it worked (a DPoP token bound to the key), else why not. */
async function probeDpopExchange(server: BatonServer, proof: string): Promise<string | undefined> {
  const url = `${server.ready.url}/contoso/oauth2/v2.0/token`;
  const answer = await probe(url, oboBody(server.assertions[1] as string), { 'content-type': 'application/x-www-form-urlencoded', ...OBO_HEADERS, dpop: proof }, server.ready.ca);
  const body = typeof answer.body === 'object' ? answer.body : {};
  const jwt = decodeJwt(body.access_token);
  if (answer.status === 200 && body.token_type === 'DPoP' && (jwt?.payload.cnf as { jkt?: string } | undefined)?.jkt !== undefined) return undefined;
  return `the DPoP-bound variant is skipped: one DPoP exchange did not succeed (HTTP ${answer.status}, ${String(body.error)}: ${String(body.error_description ?? '').slice(0, 200)})`;
}

export const oboSection: Section = {
  name: 'obo',
  title: 'Token service: On-Behalf-Of exchanges (HTTPS, keep-alive)',
  async run(ctx: BenchContext): Promise<SectionResult> {
    const [server, peer] = await Promise.all([startBaton(ctx, 'baton-obo', { store: 'sqlite', assertions: ASSERTIONS }), startPeer(ctx)]);
    try {
      const problem = await probeExchange(server);
      if (problem) return skipped('obo', problem);
      const url = `${server.ready.url}/contoso/oauth2/v2.0/token`;
      const spec = loadSpec(ctx, url, OBO_HEADERS, server.assertions.map((a) => oboBody(a)), server.pid);
      // The peer's client_credentials again, in alternation with the exchanges: the OBO/peer ratio
      // compares rounds taken under the same conditions.
      const peerBody = `grant_type=client_credentials&scope=${encodeURIComponent(peer.ready.scope)}&resource=${encodeURIComponent(peer.ready.resource)}`;
      const peerSpec = loadSpec(ctx, `${peer.ready.url}/token`, { authorization: basic(peer.ready.clientId, peer.ready.clientSecret) }, [peerBody], peer.pid);
      // The ceiling: the same server, transport and form, verify + sign, nothing else (bench/servers/baton.ts).
      const ceilingSpec = loadSpec(ctx, `${server.ready.url}/bench/verify-sign`, OBO_HEADERS, server.assertions.map((a) => oboBody(a)), server.pid);
      // The same exchanges, DPoP-bound: a fresh proof per request (single use, iat now).
      // The proof names the token endpoint as clients address it: the issuer's base (localhost).
      const htu = `${server.ready.publicUrl}/contoso/oauth2/v2.0/token`;
      const prover = createDpopProver(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
      const dpopSpec = { ...spec, requests: spec.requests.map((r) => ({ ...r, fresh: () => ({ dpop: prover.prove('POST', htu) }) })) };
      const dpopProblem = await probeDpopExchange(server, prover.prove('POST', htu));
      if (dpopProblem) ctx.log(`obo: ${dpopProblem}`);
      ctx.log('obo: Baton On-Behalf-Of | oidc-provider client_credentials | verify+sign ceiling | DPoP-bound On-Behalf-Of, rounds interleaved');
      const [result, peerResult, ceiling, dpopResult] = (await runInterleaved(dpopProblem ? [spec, peerSpec, ceilingSpec] : [spec, peerSpec, ceilingSpec, dpopSpec])) as [LoadResult, LoadResult, LoadResult, LoadResult | undefined];
      ctx.shared.obo = valid(result, (r) => r.rps);
      ctx.shared.verifySignCeiling = valid(ceiling, (r) => r.rps);
      ctx.shared.peerClientCredentialsForObo = valid(peerResult, (r) => r.rps);

      const bound = ctx.shared.cryptoVerifySign === undefined ? undefined : ctx.shared.cryptoVerifySign * ctx.serviceCores;
      const section: SectionResult = {
        name: 'obo',
        status: 'ran',
        rows: [
          { section: 'obo', measure: 'Baton On-Behalf-Of exchange', rate: result.rps, p50: result.p50, p99: result.p99, note: loadNote(result, `${ASSERTIONS} user tokens rotated`) },
          { section: 'obo', measure: 'oidc-provider client_credentials (paired)', rate: peerResult.rps, p50: peerResult.p50, p99: peerResult.p99, note: loadNote(peerResult) },
          {
            section: 'obo',
            measure: 'ceiling: HTTPS + form + ES256 verify + sign',
            rate: ceiling.rps,
            p50: ceiling.p50,
            p99: ceiling.p99,
            note: loadNote(ceiling, 'same server, bench-only route: no client auth, decision, store or log'),
          },
        ],
        data: { result, peer: peerResult, ceiling, assertions: ASSERTIONS, crypto_bound_for_service_cores: bound },
        profiles: [],
      };
      if (dpopResult !== undefined) {
        const ratio = dpopResult.rps / result.rps;
        ctx.shared.oboDpop = valid(dpopResult, (r) => r.rps);
        section.rows.push({
          section: 'obo',
          measure: 'Baton On-Behalf-Of exchange, DPoP-bound',
          rate: dpopResult.rps,
          p50: dpopResult.p50,
          p99: dpopResult.p99,
          note: loadNote(dpopResult, `${ratio.toFixed(2)}× the bearer exchange (proof verify + jti write per request; proofs made by the load generator)`),
        });
        section.data.dpop = dpopResult;
        section.data.dpop_vs_bearer = ratio;
      } else {
        section.data.dpop_skipped = dpopProblem;
      }
      // Where the time per exchange goes: inside the grant handler (the audit event's durationMs),
      // through Fastify without the network (app.inject), and over HTTPS under load.
      const handler = await auditDurations(server.logPath);
      const inject = await injectRate(server, '/contoso/oauth2/v2.0/token', OBO_HEADERS, server.assertions.slice(0, 64).map((a) => oboBody(a)), Math.max(1000, ctx.roundSeconds * 500));
      section.rows.push({ section: 'obo', measure: 'Baton OBO via app.inject, 1 at a time', rate: inject, p50: 1000 / inject, note: 'Fastify + handler; no TLS, socket or HTTP parser' });
      if (handler) section.rows.push({ section: 'obo', measure: 'Baton OBO inside the grant handler', p50: handler.p50, p99: handler.p99, note: `audit durationMs of ${handler.count.toLocaleString('en-US')} exchanges under load; includes the wait for the crypto thread pool (32 requests in flight)` });
      section.data.inject = inject;
      section.data.handler = handler;
      const missed = (bound !== undefined && result.rps / bound < OBO_VS_CRYPTO_TARGET) || result.rps / peerResult.rps < OBO_VS_PEER_TARGET;
      if (ctx.profile === 'always' || (ctx.profile === 'auto' && missed)) {
        ctx.log('obo: profiling');
        section.profiles.push({ title: 'Baton On-Behalf-Of under load', ...(await profiledWindow(ctx, server, spec, 'baton-obo')) });
        // The DPoP-bound exchange too (fresh proofs): where its extra time per request goes.
        if (dpopResult !== undefined) section.profiles.push({ title: 'Baton On-Behalf-Of under load, DPoP-bound', ...(await profiledWindow(ctx, server, dpopSpec, 'baton-obo-dpop')) });
      }
      return section;
    } finally {
      await Promise.all([server.stop(), peer.stop()]);
    }
  },
};
