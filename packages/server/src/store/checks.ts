/**
 * The argument checks both store engines run before any SQL, and the key-rotation rules they
 * apply inside their transaction. A caller's mistake is a TypeError with the same message on
 * either engine (the contract suite asserts it).
 */
import type { Policy, SigningKeyRecord } from '@baton/core';
import type { Store } from './types.ts';

/** `limit` is undefined when absent; each engine spells "no limit" its own way. */
export function checkPaging(options: { limit?: number; offset?: number } | undefined): { limit: number | undefined; offset: number } {
  const limit = options?.limit;
  const offset = options?.offset ?? 0;
  if (limit !== undefined && !(Number.isSafeInteger(limit) && limit >= 0)) throw new TypeError('listUsers: limit must be a non-negative integer');
  if (!(Number.isSafeInteger(offset) && offset >= 0)) throw new TypeError('listUsers: offset must be a non-negative integer');
  return { limit, offset };
}

export function checkPolicies(tenantId: string, policies: readonly Policy[]): void {
  for (const policy of policies) {
    // A policy filed under another tenant would silently apply here; refuse the mix-up.
    if (policy.tenantId !== tenantId) throw new TypeError('replacePolicies: every policy must belong to tenantId');
  }
}

export type RotateArgs = Parameters<Store['rotateSigningKey']>[0];

export function checkRotation(args: RotateArgs): void {
  if (args.next.tenantId !== args.tenantId) throw new TypeError('rotateSigningKey: next.tenantId must equal tenantId');
  if (args.next.alg !== args.alg) throw new TypeError('rotateSigningKey: next.alg must equal alg');
  if (args.next.kid === args.promoteKid) throw new TypeError('rotateSigningKey: next.kid must differ from promoteKid');
  if (args.expectCurrentKid === args.promoteKid) throw new TypeError('rotateSigningKey: promoteKid is already the expected current key');
  if (!(Number.isFinite(args.retireGraceSeconds) && args.retireGraceSeconds >= 0)) {
    throw new TypeError('rotateSigningKey: retireGraceSeconds must be a non-negative number');
  }
}

/**
 * Inside a rotation, once the expected current key matched: `promote` is the stored key named
 * `args.promoteKid` (undefined when there is none). Throws TypeError for an unknown kid or one of
 * another alg; whether it is a `next` key is the caller's compare-and-set.
 */
export function checkPromote(promote: SigningKeyRecord | undefined, args: RotateArgs): asserts promote is SigningKeyRecord {
  if (promote === undefined) throw new TypeError(`rotateSigningKey: no key ${args.promoteKid} in this tenant`);
  if (promote.alg !== args.alg) throw new TypeError(`rotateSigningKey: key ${args.promoteKid} is not an ${args.alg} key`);
}

/** The current key as it is stored once a rotation retires it. */
export function retiredKey(current: SigningKeyRecord, args: RotateArgs): SigningKeyRecord {
  return { ...current, status: 'retired', retiredAt: args.now, removeAfter: args.now + args.retireGraceSeconds };
}

/** At most this many registrations are removed by one sweep (the next sweep takes the rest). */
export const SWEEP_BATCH = 500;
