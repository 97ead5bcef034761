/**
 * The targets of issue 7 as ratios measured in the same run, and the tables (Markdown, so the
 * terminal output pastes into docs/performance.md as is).
 */
import { OBSERVE_MAX_COST } from '../sections/observe.ts';
import { CAE_TARGET_MS } from '../sections/cae.ts';
import { fmtMs, fmtNumber, fmtRatio } from './stats.ts';
import type { BenchContext, Row, SectionResult, Shared } from './types.ts';

/** A section ran but left no figure: its load answered errors, and a rate of errors is not a result. */
const NO_FIGURE = 'no valid figure: the load answered errors (see the notes)';

export interface Target {
  id: string;
  description: string;
  /** `≥ 3×`, `≤ 0.5 ms`. */
  required: string;
  measured: string;
  value: number | undefined;
  status: 'PASS' | 'MISS' | 'n/a';
  /** How the ratio was formed, or why it could not be. */
  basis: string;
}

function ratioTarget(id: string, description: string, min: number, numerator: number | undefined, denominator: number | undefined, basis: string, missing: string): Target {
  if (numerator === undefined || denominator === undefined || !(denominator > 0)) {
    return { id, description, required: `≥ ${min}×`, measured: '—', value: undefined, status: 'n/a', basis: missing };
  }
  const value = numerator / denominator;
  return { id, description, required: `≥ ${min}×`, measured: fmtRatio(value), value, status: value >= min ? 'PASS' : 'MISS', basis };
}

export function evaluateTargets(shared: Shared, ctx: Pick<BenchContext, 'serviceCores'>, sections: Map<string, SectionResult>): Target[] {
  const why = (name: string, fallback: string) => {
    const s = sections.get(name);
    if (!s) return `section '${name}' not selected in this run`;
    if (s.status !== 'ran') return `${name} ${s.status}: ${s.reason ?? ''}`;
    return fallback;
  };
  const bound = shared.cryptoVerifySign === undefined ? undefined : shared.cryptoVerifySign * ctx.serviceCores;
  const targets: Target[] = [
    ratioTarget(
      'client-credentials-vs-peer',
      'client_credentials: Baton / oidc-provider',
      3,
      shared.batonClientCredentials,
      shared.peerClientCredentials,
      `${fmtNumber(shared.batonClientCredentials)} / ${fmtNumber(shared.peerClientCredentials)} req/s (rounds paired)`,
      why('token', NO_FIGURE),
    ),
    ratioTarget(
      'obo-vs-crypto-bound',
      `OBO / crypto bound (verify+sign/s × ${ctx.serviceCores} core${ctx.serviceCores > 1 ? 's' : ''})`,
      0.7,
      shared.obo,
      bound,
      `${fmtNumber(shared.obo)} / ${fmtNumber(bound)} per s`,
      shared.obo === undefined ? why('obo', NO_FIGURE) : why('crypto', NO_FIGURE),
    ),
    ratioTarget(
      'obo-vs-peer-client-credentials',
      'OBO (Baton) / client_credentials (oidc-provider)',
      1.5,
      shared.obo,
      shared.peerClientCredentialsForObo ?? shared.peerClientCredentials,
      `${fmtNumber(shared.obo)} / ${fmtNumber(shared.peerClientCredentialsForObo ?? shared.peerClientCredentials)} req/s (rounds paired)`,
      shared.obo === undefined ? why('obo', NO_FIGURE) : why('token', NO_FIGURE),
    ),
    ratioTarget('guard-cold-vs-raw', 'guard cold (unique tokens) / raw node:crypto verify', 0.8, shared.guardCold, shared.rawVerify, `${fmtNumber(shared.guardCold)} / ${fmtNumber(shared.rawVerify)} per s`, why('guard', NO_FIGURE)),
    ratioTarget('guard-cached-vs-jose', 'guard cached (same token) / jose.jwtVerify', 20, shared.guardCached, shared.jose, `${fmtNumber(shared.guardCached)} / ${fmtNumber(shared.jose)} per s`, why('guard', NO_FIGURE)),
  ];
  targets.push(
    ratioTarget(
      'observe-cost',
      `client_credentials with observability on (${shared.observeOnName ?? 'metrics'}) / off, as 1 / (1 + CPU per request cost via app.inject)`,
      1 - OBSERVE_MAX_COST,
      shared.observeInjectCost === undefined ? undefined : 1 / (1 + shared.observeInjectCost),
      1,
      `CPU per request ${shared.observeInjectCost === undefined ? '—' : `${shared.observeInjectCost >= 0 ? '+' : ''}${(shared.observeInjectCost * 100).toFixed(1)} %`} vs off (median of paired app.inject batches; the same for another off process: ${shared.observeInjectNoise === undefined ? '—' : `${shared.observeInjectNoise >= 0 ? '+' : ''}${(shared.observeInjectNoise * 100).toFixed(1)} %`}); HTTPS req/s ratio ${shared.observeRatio === undefined ? '—' : `${(shared.observeRatio * 100).toFixed(1)} %`} (median of per-round paired ratios, ${fmtNumber(shared.observeOn)} / ${fmtNumber(shared.observeOff)} req/s)`,
      why('observe', NO_FIGURE),
    ),
  );
  const chain = shared.chainOverheadMs;
  targets.push(
    chain === undefined
      ? { id: 'chain-overhead', description: 'chain: warm-cache overhead per hop at p50', required: '≤ 0.5 ms', measured: '—', value: undefined, status: 'n/a', basis: why('chain', NO_FIGURE) }
      : { id: 'chain-overhead', description: 'chain: warm-cache overhead per hop at p50', required: '≤ 0.5 ms', measured: fmtMs(chain), value: chain, status: chain <= 0.5 ? 'PASS' : 'MISS', basis: 'p50(auth on, OBO cache warm) − p50(auth off), per hop' },
  );
  for (const engine of ['sqlite', 'postgres']) {
    const s = shared.state?.[engine];
    const description = `state (${engine}): OBO p50 latency, 10^6 / 10^3 grants`;
    if (s?.small === undefined || s.large === undefined) {
      const reason = sections.get('state')?.data[`${engine}_skipped`];
      targets.push({ id: `state-${engine}`, description, required: '≤ 1.2×', measured: '—', value: undefined, status: 'n/a', basis: typeof reason === 'string' ? reason : why('state', NO_FIGURE) });
      continue;
    }
    const value = s.large / s.small;
    targets.push({
      id: `state-${engine}`,
      description: `state (${engine}): OBO p50 latency, ${s.largeN?.toExponential(0).replace('e+', '×10^')} / ${s.smallN?.toExponential(0).replace('e+', '×10^')} grants`,
      required: '≤ 1.2×',
      measured: fmtRatio(value),
      value,
      status: value <= 1.2 ? 'PASS' : 'MISS',
      basis: `${fmtMs(s.large)} / ${fmtMs(s.small)} at 1 connection`,
    });
  }
  const cae = shared.cae;
  const caeWorst = cae?.push === undefined || cae.poll === undefined ? undefined : Math.max(cae.push, cae.poll);
  targets.push(
    caeWorst === undefined
      ? { id: 'cae', description: 'CAE: revocation reaches every hop ≤ 2 s p99', required: '≤ 2 s', measured: '—', value: undefined, status: 'n/a', basis: why('cae', NO_FIGURE) }
      : {
          id: 'cae',
          description: 'CAE: revocation reaches every hop ≤ 2 s p99',
          required: '≤ 2 s',
          measured: fmtMs(caeWorst),
          value: caeWorst,
          status: caeWorst <= CAE_TARGET_MS ? 'PASS' : 'MISS',
          basis: `p99 push ${fmtMs(cae?.push)}, poll ${fmtMs(cae?.poll)}: disable → every hop refuses and both OBO caches dropped`,
        },
  );
  return targets;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] as number)).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

export function resultsTable(results: SectionResult[]): string {
  const rows: string[][] = [];
  for (const section of results) {
    if (section.status !== 'ran') {
      rows.push([section.name, section.status, '', '', '', section.reason ?? '']);
      continue;
    }
    for (const row of section.rows as Row[]) {
      rows.push([row.section, row.measure, fmtNumber(row.rate), fmtMs(row.p50), fmtMs(row.p99), row.note ?? '']);
    }
  }
  return table(['section', 'measure', 'per second', 'p50', 'p99', 'notes'], rows);
}

export function targetsTable(targets: Target[]): string {
  return table(
    ['target', 'required', 'measured', 'result', 'basis'],
    targets.map((t) => [t.description, t.required, t.measured, t.status, t.basis]),
  );
}

/**
 * How far each token-service figure is from what the transport allows: the bench-only routes that
 * do a grant's crypto and nothing else, on the same server (bench/servers/baton.ts). Context for the
 * targets, not targets: a ratio to the crypto bound or to a peer cannot exceed what the ceiling
 * itself reaches.
 */
export function ceilingTable(shared: Shared, ctx: Pick<BenchContext, 'serviceCores'>): string {
  const bound = shared.cryptoVerifySign === undefined ? undefined : shared.cryptoVerifySign * ctx.serviceCores;
  const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || !(b > 0) ? '—' : fmtRatio(a / b));
  const rows: string[][] = [
    ['sign-only ceiling / oidc-provider client_credentials', ratio(shared.signCeiling, shared.peerClientCredentials), `${fmtNumber(shared.signCeiling)} / ${fmtNumber(shared.peerClientCredentials)} req/s: the most a 3× target can find on this transport`],
    ['Baton client_credentials / sign-only ceiling', ratio(shared.batonClientCredentials, shared.signCeiling), `${fmtNumber(shared.batonClientCredentials)} / ${fmtNumber(shared.signCeiling)} req/s: the share left after Baton's own work`],
    ['verify+sign ceiling / crypto bound', ratio(shared.verifySignCeiling, bound), `${fmtNumber(shared.verifySignCeiling)} / ${fmtNumber(bound)} per s: the most an OBO/bound target can find on this transport`],
    ['verify+sign ceiling / oidc-provider client_credentials', ratio(shared.verifySignCeiling, shared.peerClientCredentialsForObo ?? shared.peerClientCredentials), `${fmtNumber(shared.verifySignCeiling)} / ${fmtNumber(shared.peerClientCredentialsForObo ?? shared.peerClientCredentials)} req/s`],
    ['Baton OBO / verify+sign ceiling', ratio(shared.obo, shared.verifySignCeiling), `${fmtNumber(shared.obo)} / ${fmtNumber(shared.verifySignCeiling)} req/s: the share left after Baton's own work`],
  ];
  return table(['ceiling (HTTPS + the grant\'s crypto only, same server)', 'ratio', 'basis'], rows);
}
