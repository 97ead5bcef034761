/** The shapes every section shares. */
import type { Placement } from './proc.ts';
import type { ProfileSummary } from './profile.ts';

export interface Row {
  section: string;
  measure: string;
  /** Operations or requests per second. */
  rate?: number | undefined;
  /** Milliseconds. */
  p50?: number | undefined;
  p99?: number | undefined;
  note?: string | undefined;
}

export interface SectionResult {
  name: string;
  status: 'ran' | 'skipped' | 'failed';
  /** Why it was skipped or failed. */
  reason?: string;
  rows: Row[];
  /** Raw figures for latest.json (rounds, server CPU, seeding times...). */
  data: Record<string, unknown>;
  profiles: { title: string; file?: string; summary: ProfileSummary }[];
  seconds?: number;
}

/** Figures later sections and the targets need, filled in as sections run. */
export interface Shared {
  cryptoSign?: number;
  cryptoVerify?: number;
  cryptoVerifySign?: number;
  batonClientCredentials?: number;
  peerClientCredentials?: number;
  /** GET /healthz on the Baton server: TLS + HTTP + Fastify alone. */
  transportFloor?: number;
  /** Bench-only routes of the Baton server: HTTPS + form + the grant's crypto, nothing else. */
  signCeiling?: number;
  verifySignCeiling?: number;
  obo?: number;
  /** The same exchanges DPoP-bound (a fresh proof per request), in the same interleaved rounds. */
  oboDpop?: number;
  /** oidc-provider client_credentials measured in alternation with the OBO rounds. */
  peerClientCredentialsForObo?: number;
  guardCold?: number;
  guardCached?: number;
  rawVerify?: number;
  jose?: number;
  chainOverheadMs?: number;
  /** client_credentials req/s with observability off, and with the judged variant on (sections/observe.ts). */
  observeOff?: number;
  observeOn?: number;
  observeOnName?: string;
  /** The judged variant's median paired per-round ratio to off (sections/observe.ts). */
  observeRatio?: number;
  /** The judged variant's CPU per request through app.inject against off's, minus 1 (median of paired batches): what the target judges. */
  observeInjectCost?: number;
  /** The same for `off-again` (the baseline's configuration in another process): the method's noise. */
  observeInjectNoise?: number;
  /** p50 OBO latency by engine and grant count. */
  state?: Record<string, { small?: number; large?: number; smallN?: number; largeN?: number }>;
  /** CAE: p99 ms from a user's disabling until every hop refuses and the OBO caches dropped, per delivery. */
  cae?: { push?: number | undefined; poll?: number | undefined };
}

export interface BenchContext {
  quick: boolean;
  warmupSeconds: number;
  rounds: number;
  roundSeconds: number;
  connections: number;
  placement: Placement;
  /** CPUs the server under test may use (1 when pinned). */
  serviceCores: number;
  tmpDir: string;
  resultsDir: string;
  profile: 'auto' | 'always' | 'never';
  pgUrl: string;
  shared: Shared;
  log(message: string): void;
}

export interface Section {
  name: string;
  title: string;
  run(ctx: BenchContext): Promise<SectionResult>;
}

export function skipped(name: string, reason: string, data: Record<string, unknown> = {}): SectionResult {
  return { name, status: 'skipped', reason, rows: [], data, profiles: [] };
}
