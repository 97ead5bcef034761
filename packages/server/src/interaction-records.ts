/**
 * Interactions: an authorization request (or an admin-consent request) waiting for the user,
 * stored (kind `interaction`) so any instance can serve the next page.
 *
 * An interaction is bound to the browser that started it by a path-scoped cookie whose SHA-256 the
 * record keeps: a sign-in link forwarded to someone else does not open (login CSRF / session
 * fixation). Every form on its pages carries a synchronizer CSRF token kept in the record and
 * compared in constant time.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { OAuthError, Entra, type AuthorizeRequest } from '@baton/core';
import type { ServerContext } from './context.ts';
import type { EphemeralRecord } from './store/types.ts';
import { INTERACTION_COOKIE, clearCookie, readCookie, setCookie } from './cookies.ts';

/** A sign-in page stays usable this long (Entra's flow token lifetime is of the same order). */
export const INTERACTION_LIFETIME_SECONDS = 30 * 60;

export interface AdminConsentRequest {
  clientId: string;
  redirectUri?: string | undefined;
  state?: string | undefined;
  /** Limit to one API's permissions (`scope=api://docs/.default`); all of the client's requiredAccess otherwise. */
  resource?: string | undefined;
}

export interface InteractionPayload {
  kind: 'authorize' | 'adminconsent';
  request?: AuthorizeRequest | undefined;
  adminConsent?: AdminConsentRequest | undefined;
  /** SHA-256 of the browser-binding cookie. */
  binding: string;
  csrf: string;
  /** The session whose password was entered during this interaction (it counts as a fresh sign-in). */
  sid?: string | undefined;
  /** The user asked to use another account (account picker): ignore the existing session. */
  forceLogin?: boolean | undefined;
  accountSelected: boolean;
  consentAccepted: boolean;
  /** The username last typed, to fill the form again after an error. */
  username?: string | undefined;
}

export type Interaction = EphemeralRecord<InteractionPayload>;

export function interactionPath(tenantId: string, id: string): string {
  return `/${tenantId}/oauth2/v2.0/interaction/${id}`;
}

const sha256 = (value: string) => createHash('sha256').update(value).digest('base64url');

/** Stores a new interaction and sets its browser-binding cookie. Returns the interaction. */
export async function startInteraction(
  ctx: ServerContext,
  reply: FastifyReply,
  tenantId: string,
  init: Pick<InteractionPayload, 'kind' | 'request' | 'adminConsent'>,
): Promise<Interaction> {
  const now = ctx.now();
  const id = randomBytes(32).toString('base64url');
  const binding = randomBytes(32).toString('base64url');
  const record: Interaction = {
    kind: 'interaction',
    id,
    tenantId,
    payload: { ...init, binding: sha256(binding), csrf: randomBytes(32).toString('base64url'), accountSelected: false, consentAccepted: false },
    expiresAt: now + INTERACTION_LIFETIME_SECONDS,
    createdAt: now,
  };
  await ctx.store.putEphemeral(record);
  setCookie(reply, INTERACTION_COOKIE, binding, { path: interactionPath(tenantId, id), maxAge: INTERACTION_LIFETIME_SECONDS });
  return record;
}

function expired(): OAuthError {
  return new OAuthError('invalid_request', {
    status: 400,
    description: 'This sign-in page has expired or was opened in another browser. Go back to the application and sign in again.',
    entraCodes: [Entra.flowExpired],
  });
}

/** Loads an interaction for this browser, or throws the "expired" error (shown as a page). */
export async function loadInteraction(ctx: ServerContext, request: FastifyRequest, tenantId: string, id: string): Promise<Interaction> {
  if (!/^[A-Za-z0-9_-]{43}$/.test(id)) throw expired();
  const record = await ctx.store.getEphemeral<InteractionPayload>('interaction', id, ctx.now());
  if (record === undefined || record.tenantId !== tenantId) throw expired();
  const cookie = readCookie(request, INTERACTION_COOKIE);
  if (cookie === undefined || !constantTimeEqual(sha256(cookie), record.payload.binding)) throw expired();
  return record;
}

export async function saveInteraction(ctx: ServerContext, interaction: Interaction): Promise<void> {
  await ctx.store.putEphemeral(interaction);
}

/** Ends an interaction: the record is deleted and the cookie cleared, so its pages cannot be replayed. */
export async function finishInteraction(ctx: ServerContext, reply: FastifyReply, interaction: Interaction): Promise<void> {
  await ctx.store.deleteEphemeral('interaction', interaction.id);
  clearCookie(reply, INTERACTION_COOKIE, interactionPath(interaction.tenantId, interaction.id));
}

/** Refuses a form without the interaction's CSRF token (403, nothing written). */
export function checkCsrf(interaction: Interaction, form: Readonly<Record<string, string>>): void {
  const token = form.csrf_token;
  if (token === undefined || !constantTimeEqual(token, interaction.payload.csrf)) {
    throw new OAuthError('access_denied', {
      status: 403,
      description: 'The form was not submitted from this sign-in page (missing or wrong CSRF token). Reload the page and try again.',
      entraCodes: [Entra.malformedRequest],
    });
  }
}

export function constantTimeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
