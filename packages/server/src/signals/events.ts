/**
 * Which security events a change is (issue 17), as pure functions of the admin change log's events
 * (admin/audit.ts): the records before and after, as the admin API shows them, and the change's
 * instant. The transmitter (transmitter.ts) turns each into one SET per interested stream.
 *
 * | change | event |
 * |---|---|
 * | user disabled (`user.disable`, or `enabled: false` in an update) | CAEP `session-revoked` + RISC `account-disabled` |
 * | user enabled again | RISC `account-enabled` |
 * | sessions revoked (`user.revoke-sessions`) | CAEP `session-revoked` |
 * | one session ended (sign-out, `/logout`) | CAEP `session-revoked` about that session (`sid`) |
 * | password set (`user.update` with `password`) | CAEP `credential-change` (`password`, `update`) |
 * | MFA reset (`user.reset-mfa`) | CAEP `credential-change` (`app`: the TOTP authenticator; `update`, or `delete` without a new seed) |
 * | a user's consent revoked, wholly or one scope | CAEP `token-claims-change` (`scp` now granted to that client on that API) |
 * | a user's app role assignment removed, wholly or one role | CAEP `token-claims-change` (`roles` now held on that API) |
 * | an application's secret revoked or rotated without grace, a client key removed | CAEP `credential-change` about the application (`password`: its shared secret; `x509`: a public key) |
 * | a conditional-access policy created or changed (not only loosened) through the admin API | CAEP `assurance-level-change` about the users it names (`users`), or about the tenant when it names none |
 *
 * A session revocation's time is the revocation edge the token service itself enforces: every token
 * issued (`iat`) before `event_timestamp` is void (core `predatesRevocation`).
 */
import type { AdminChangeEvent } from '../admin/audit.ts';
import type { z } from 'zod';
import type { PolicyConfig } from '../config/schema.ts';

export const CAEP = 'https://schemas.openid.net/secevent/caep/event-type/';
export const RISC = 'https://schemas.openid.net/secevent/risc/event-type/';
export const SSF = 'https://schemas.openid.net/secevent/ssf/event-type/';

export const EVENT_TYPES = {
  sessionRevoked: `${CAEP}session-revoked`,
  credentialChange: `${CAEP}credential-change`,
  tokenClaimsChange: `${CAEP}token-claims-change`,
  accountDisabled: `${RISC}account-disabled`,
  accountEnabled: `${RISC}account-enabled`,
  assuranceLevelChange: `${CAEP}assurance-level-change`,
  verification: `${SSF}verification`,
  streamUpdated: `${SSF}stream-updated`,
} as const;

/** The event types a stream may request (verification and stream-updated are always delivered). */
export const SUPPORTED_EVENTS: readonly string[] = [
  EVENT_TYPES.sessionRevoked,
  EVENT_TYPES.credentialChange,
  EVENT_TYPES.tokenClaimsChange,
  EVENT_TYPES.accountDisabled,
  EVENT_TYPES.accountEnabled,
  EVENT_TYPES.assuranceLevelChange,
];

/** Who an event is about, before it is written in a stream's subject format. */
export type EventSubject =
  | { kind: 'user'; oid: string; email?: string | undefined; sid?: string | undefined }
  | { kind: 'application'; clientId: string }
  /** The whole tenant (`sub_id` with the `tenant` member alone): every user's sessions. */
  | { kind: 'tenant' };

export interface SecurityEvent {
  type: string;
  subject: EventSubject;
  /** The event's members (CAEP/RISC), `event_timestamp` included where the profile has it. */
  payload: Record<string, unknown>;
}

type CredentialChange = NonNullable<AdminChangeEvent['credential']>;

interface ShownUser {
  id: string;
  email?: string;
  enabled: boolean;
  sessionsRevokedBefore?: string;
}

interface ShownConsent {
  client: string;
  resource: string;
  principal: string;
  scopes: string[];
}

interface ShownAssignment {
  principalType: 'application' | 'user';
  principal: string;
  resource: string;
  roles: string[];
}

interface ShownApplication {
  clientId: string;
  secrets: { id: string }[];
  keys: { kid: string }[];
}

const seconds = (iso: string | undefined): number | undefined => (iso === undefined ? undefined : Math.floor(Date.parse(iso) / 1000));

/** `session-revoked` about a user (all her sessions) or one session of hers. */
export function sessionRevoked(user: { oid: string; email?: string | undefined; sid?: string | undefined }, edge: number, initiating: 'admin' | 'user', reason: string): SecurityEvent {
  return {
    type: EVENT_TYPES.sessionRevoked,
    subject: { kind: 'user', oid: user.oid, email: user.email, sid: user.sid },
    payload: { event_timestamp: edge, initiating_entity: initiating, [initiating === 'admin' ? 'reason_admin' : 'reason_user']: { en: reason } },
  };
}

function userEvents(change: AdminChangeEvent, at: number, credential: CredentialChange | undefined): SecurityEvent[] {
  const before = change.before as ShownUser | undefined;
  const after = change.after as ShownUser | undefined;
  if (after === undefined) return [];
  const user = { oid: after.id, email: after.email };
  const subject = { kind: 'user' as const, ...user };
  const events: SecurityEvent[] = [];
  const revokedBefore = seconds(after.sessionsRevokedBefore);
  if (before !== undefined && before.enabled && !after.enabled) {
    // Everything issued up to and including this second is void, as for revoke-sessions.
    events.push(sessionRevoked(user, at + 1, 'admin', 'The user was disabled.'));
    events.push({ type: EVENT_TYPES.accountDisabled, subject, payload: { event_timestamp: at } });
  } else if (before !== undefined && !before.enabled && after.enabled) {
    events.push({ type: EVENT_TYPES.accountEnabled, subject, payload: { event_timestamp: at } });
  }
  if (revokedBefore !== undefined && revokedBefore !== seconds(before?.sessionsRevokedBefore)) {
    events.push(sessionRevoked(user, revokedBefore, 'admin', "The user's sessions were revoked."));
  }
  if (credential !== undefined && before !== undefined) {
    const [credentialType, changeType] = credential === 'password' ? ['password', 'update'] : credential === 'mfa-set' ? ['app', 'update'] : ['app', 'delete'];
    events.push({ type: EVENT_TYPES.credentialChange, subject, payload: { event_timestamp: at, credential_type: credentialType, change_type: changeType, initiating_entity: 'admin' } });
  }
  return events;
}

function consentEvents(change: AdminChangeEvent, at: number): SecurityEvent[] {
  const before = change.before as ShownConsent | undefined;
  if (before === undefined || before.principal === 'all') return [];
  const after = change.after as ShownConsent | undefined;
  const left = after?.scopes ?? [];
  if (left.length >= before.scopes.length) return [];
  return [
    {
      type: EVENT_TYPES.tokenClaimsChange,
      subject: { kind: 'user', oid: before.principal },
      payload: { event_timestamp: at, initiating_entity: 'admin', claims: { azp: before.client, aud: before.resource, scp: left.join(' ') } },
    },
  ];
}

function assignmentEvents(change: AdminChangeEvent, at: number): SecurityEvent[] {
  const before = change.before as ShownAssignment | undefined;
  if (before === undefined || before.principalType !== 'user') return [];
  const after = change.after as ShownAssignment | undefined;
  const left = after?.roles ?? [];
  if (left.length >= before.roles.length) return [];
  return [
    {
      type: EVENT_TYPES.tokenClaimsChange,
      subject: { kind: 'user', oid: before.principal },
      payload: { event_timestamp: at, initiating_entity: 'admin', claims: { aud: before.resource, roles: left } },
    },
  ];
}

function applicationEvents(change: AdminChangeEvent, at: number): SecurityEvent[] {
  const before = change.before as ShownApplication | undefined;
  const after = change.after as ShownApplication | undefined;
  if (before === undefined || after === undefined) return [];
  const subject = { kind: 'application' as const, clientId: after.clientId };
  const events: SecurityEvent[] = [];
  const secretsLeft = new Set(after.secrets.map((s) => s.id));
  if (before.secrets.some((s) => !secretsLeft.has(s.id))) {
    events.push({ type: EVENT_TYPES.credentialChange, subject, payload: { event_timestamp: at, credential_type: 'password', change_type: 'revoke', initiating_entity: 'admin' } });
  }
  const keysLeft = new Set(after.keys.map((k) => k.kid));
  if (before.keys.some((k) => !keysLeft.has(k.kid))) {
    events.push({ type: EVENT_TYPES.credentialChange, subject, payload: { event_timestamp: at, credential_type: 'x509', change_type: 'revoke', initiating_entity: 'admin' } });
  }
  return events;
}

/** A policy as an admin change shows it before and after: the configuration's shape. */
type ShownPolicy = z.infer<typeof PolicyConfig>;

const sameList = (a: readonly string[] | undefined, b: readonly string[] | undefined) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

/**
 * Whether `after` can refuse no session that `before` let through: the same resources, scopes,
 * clients and users, and requirements only dropped or relaxed (mfa, block or ipRanges removed, a
 * longer or no maxAuthAgeSeconds). Anything else may leave existing sessions short.
 */
function onlyLoosens(before: ShownPolicy, after: ShownPolicy): boolean {
  if (!sameList(before.resources, after.resources) || !sameList(before.scopes, after.scopes) || !sameList(before.clients, after.clients) || !sameList(before.users, after.users)) return false;
  const b = before.require;
  const a = after.require;
  if (a.mfa && !b.mfa) return false;
  if (a.block && !b.block) return false;
  if (a.ipRanges !== undefined && !sameList(a.ipRanges, b.ipRanges)) return false;
  if (a.maxAuthAgeSeconds !== undefined && (b.maxAuthAgeSeconds === undefined || a.maxAuthAgeSeconds < b.maxAuthAgeSeconds)) return false;
  return true;
}

/**
 * A policy created or changed so that sessions which met the tenant's policies may no longer:
 * `assurance-level-change` (CAEP) about each user the policy names, or about the tenant when it
 * names none (sessions are not indexed by user, so "whose sessions fall short" is not cheap to
 * know: the receiver re-evaluates them all). MFA newly required is said in RFC 8176 terms (`pwd` →
 * `mfa`); other requirements as the policy kind now required (`block`, `freshness`, `ip`) in
 * Baton's namespace.
 */
function policyEvents(change: AdminChangeEvent, at: number): SecurityEvent[] {
  const after = change.after as ShownPolicy | undefined;
  if (after === undefined) return [];
  const before = change.before as ShownPolicy | undefined;
  if (before !== undefined && onlyLoosens(before, after)) return [];
  const r = after.require;
  const mfa = r.mfa === true && !before?.require.mfa;
  const level = r.block ? 'block' : r.mfa ? 'mfa' : r.maxAuthAgeSeconds !== undefined ? 'freshness' : 'ip';
  const payload = {
    event_timestamp: at,
    initiating_entity: 'admin',
    namespace: mfa ? 'RFC8176' : 'urn:baton:conditional-access',
    current_level: level,
    ...(mfa ? { previous_level: 'pwd' } : {}),
    change_direction: 'increase',
    reason_admin: { en: `Conditional-access policy '${after.name.slice(0, 128)}' now requires more of a session.` },
  };
  const subjects: EventSubject[] = after.users !== undefined && after.users.length > 0 ? after.users.map((oid) => ({ kind: 'user' as const, oid })) : [{ kind: 'tenant' }];
  return subjects.map((subject) => ({ type: EVENT_TYPES.assuranceLevelChange, subject, payload }));
}

/**
 * The security events an admin change is; none for most (a new user, a changed display name).
 * `at` is the change's instant in the token service's clock (epoch seconds).
 */
export function securityEventsOf(change: AdminChangeEvent, at: number): SecurityEvent[] {
  switch (change.entity) {
    case 'user':
      return userEvents(change, at, change.credential);
    case 'consent':
      return consentEvents(change, at);
    case 'roleAssignment':
      return assignmentEvents(change, at);
    case 'application':
      return applicationEvents(change, at);
    case 'policy':
      return policyEvents(change, at);
    default:
      return [];
  }
}
