/**
 * Guessing limits for passwords and one-time codes, per account and per client IP, shared by every
 * instance through the store (no in-memory counters: a second instance must not reset them).
 *
 * Fixed windows of {@link THROTTLE.windowSeconds}. Each failure claims the next free slot
 * `window:n` with `store.useOnce` (atomic across instances); when the slots are full the key is
 * locked until the window ends. "Is it locked?" is asked without writing anything that lasts: a
 * `useOnce` probe of the last slot with an expiry of *now* records nothing live, and reports
 * whether a live claim is already there.
 *
 * The account key is a hash of (tenant, lower-cased username) whether or not such a user exists,
 * so locking out "nobody@contoso.test" behaves exactly like locking out a real account: the
 * lockout tells an attacker nothing about which usernames exist.
 */
import { createHash } from 'node:crypto';
import type { ServerContext } from './context.ts';

export const THROTTLE = {
  /** Failed passwords (or codes) per account per window before the account is locked. */
  accountFailures: 5,
  /** Failed passwords per client IP per window, across all accounts (password spraying). */
  ipFailures: 20,
  windowSeconds: 15 * 60,
} as const;

export type ThrottleScope = 'password' | 'mfa';

export interface ThrottleKeys {
  tenantId: string;
  /** Lower-cased username (password) or oid (mfa). */
  account: string;
  ip: string;
}

interface Counter {
  namespace: string;
  limit: number;
}

function counters(scope: ThrottleScope, keys: ThrottleKeys): Counter[] {
  const digest = (value: string) => createHash('sha256').update(value).digest('base64url');
  const list: Counter[] = [{ namespace: `throttle:${scope}:account:${digest(`${keys.tenantId}|${keys.account}`)}`, limit: THROTTLE.accountFailures }];
  if (scope === 'password') list.push({ namespace: `throttle:password:ip:${digest(keys.ip)}`, limit: THROTTLE.ipFailures });
  return list;
}

function window(now: number): { id: number; end: number } {
  const id = Math.floor(now / THROTTLE.windowSeconds);
  return { id, end: (id + 1) * THROTTLE.windowSeconds };
}

/** Whether the account or the IP has used up its failures in the current window. */
export async function isLocked(ctx: ServerContext, scope: ThrottleScope, keys: ThrottleKeys): Promise<boolean> {
  const now = ctx.now();
  const { id } = window(now);
  for (const counter of counters(scope, keys)) {
    // A probe that expires now: free → recorded as already expired (nothing live); taken → false.
    const free = await ctx.store.useOnce(counter.namespace, `${id}:${counter.limit - 1}`, now, now);
    if (!free) return true;
  }
  return false;
}

/** Records a failure; returns whether the account or IP is now locked. */
export async function recordFailure(ctx: ServerContext, scope: ThrottleScope, keys: ThrottleKeys): Promise<boolean> {
  const now = ctx.now();
  const { id, end } = window(now);
  let locked = false;
  for (const counter of counters(scope, keys)) {
    let claimed = false;
    for (let n = 0; n < counter.limit; n++) {
      if (await ctx.store.useOnce(counter.namespace, `${id}:${n}`, end, now)) {
        claimed = true;
        if (n === counter.limit - 1) locked = true;
        break;
      }
    }
    if (!claimed) locked = true;
  }
  return locked;
}

/**
 * A fixed-window rate limit shared by every instance through the store: at most `limit` admissions
 * per `windowSeconds` for `key` (hashed: it is often a client address). Answers `undefined` when
 * admitted (and counts it), or the seconds until the window ends. A caller already over the limit
 * costs one store call (a probe of the last slot), not `limit`: a flood cannot multiply its own
 * weight on the store.
 */
export async function admitWindow(ctx: ServerContext, namespace: string, key: string, limit: number, windowSeconds: number): Promise<number | undefined> {
  const now = ctx.now();
  const id = Math.floor(now / windowSeconds);
  const end = (id + 1) * windowSeconds;
  const wait = Math.max(1, end - now);
  const counter = `rate:${namespace}:${createHash('sha256').update(key).digest('base64url')}`;
  if (!(await ctx.store.useOnce(counter, `${id}:${limit - 1}`, now, now))) return wait;
  for (let n = 0; n < limit; n++) if (await ctx.store.useOnce(counter, `${id}:${n}`, end, now)) return undefined;
  return wait;
}
