/**
 * TOTP (RFC 6238) second factor through `otpauth`: SHA-1, 6 digits, 30-second steps, one step of
 * clock drift either way. Each accepted step is recorded per user (`store.useOnce`), so a code
 * seen over a shoulder or replayed from a log cannot be used a second time (RFC 6238 §5.2).
 *
 * The secret is stored encrypted under the KEK with AAD `totp|{tenant}|{oid}` (see config/load.ts);
 * it is decrypted only here, for the duration of one check.
 */
import { Secret, TOTP } from 'otpauth';
import type { User } from '@baton/core';
import type { ServerContext } from '../context.ts';

const PERIOD = 30;
const DIGITS = 6;
const WINDOW = 1;

export type TotpResult = 'ok' | 'invalid' | 'replayed';

/** Normalises what a user typed ("123 456") to digits, or undefined when it cannot be a code. */
export function normaliseCode(input: string): string | undefined {
  const digits = input.replace(/[\s-]/g, '');
  return new RegExp(`^[0-9]{${DIGITS}}$`).test(digits) ? digits : undefined;
}

export async function verifyTotp(ctx: ServerContext, user: User, input: string): Promise<TotpResult> {
  if (user.totpSecret === undefined) return 'invalid';
  const code = normaliseCode(input);
  if (code === undefined) return 'invalid';
  let secret: Secret;
  try {
    secret = Secret.fromBase32(ctx.kek.decrypt(user.totpSecret, `totp|${user.tenantId}|${user.oid}`).toString('utf8'));
  } catch {
    return 'invalid';
  }
  const now = ctx.now();
  const timestamp = now * 1000;
  const delta = TOTP.validate({ token: code, secret, algorithm: 'SHA1', digits: DIGITS, period: PERIOD, timestamp, window: WINDOW });
  if (delta === null) return 'invalid';
  const step = TOTP.counter({ period: PERIOD, timestamp }) + delta;
  // Remember the step until it can no longer validate (its end plus the drift window).
  const fresh = await ctx.store.useOnce(`totp:${user.tenantId}:${user.oid}`, String(step), (step + 1 + WINDOW) * PERIOD + PERIOD, now);
  return fresh ? 'ok' : 'replayed';
}
