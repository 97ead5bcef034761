/**
 * The Docs API's authorization rule, as a pure function: what a caller may do with a document is
 * the *intersection* of what the user may do (owner, or shared with them) and what the token's
 * delegated scopes allow the calling application to do for them.
 *
 * This is the seed document's point about effective permissions: the Tasks API can call the Docs
 * API, but it only ever holds bob's token when it acts for bob, and bob's own access to alice's
 * document is empty — so the intersection is empty, whatever the Tasks API's code does.
 */

export type Access = 'read' | 'write';

export interface Share {
  /** The user it is shared with, by username (lower case) within the document's tenant. */
  username: string;
  access: Access;
}

export interface DocumentAcl {
  tid: string;
  ownerOid: string;
  shares: readonly Share[];
}

export interface Caller {
  tid: string | undefined;
  oid: string;
  username: string | undefined;
  /** Delegated scopes of the token (`scp`). */
  scopes: readonly string[];
}

export interface Effective {
  read: boolean;
  write: boolean;
  /** What the user may do, why, and what the token allows: for the chain view and error messages. */
  user: Access[];
  userWhy: string;
  delegated: Access[];
}

/** Delegated scope → what it lets an application do for the user. `Docs.Write` does not imply read. */
export const SCOPE_ACCESS: Readonly<Record<string, readonly Access[]>> = {
  'Docs.Read': ['read'],
  'Docs.Write': ['write'],
};

export function userAccess(doc: DocumentAcl, caller: Caller): { access: Access[]; why: string } {
  if (caller.tid === undefined || caller.tid !== doc.tid) return { access: [], why: 'the document belongs to another tenant' };
  if (caller.oid === doc.ownerOid) return { access: ['read', 'write'], why: 'owner' };
  const username = caller.username?.toLowerCase();
  const share = username === undefined ? undefined : doc.shares.find((s) => s.username === username);
  if (share === undefined) return { access: [], why: 'not the owner and not shared with this user' };
  return { access: share.access === 'write' ? ['read', 'write'] : ['read'], why: `shared with this user (${share.access})` };
}

export function delegatedAccess(scopes: readonly string[]): Access[] {
  const access = new Set<Access>();
  for (const scope of scopes) for (const a of SCOPE_ACCESS[scope] ?? []) access.add(a);
  return [...access].sort();
}

/** User's access ∩ delegated scope. */
export function effectiveAccess(doc: DocumentAcl, caller: Caller): Effective {
  const user = userAccess(doc, caller);
  const delegated = delegatedAccess(caller.scopes);
  return {
    read: user.access.includes('read') && delegated.includes('read'),
    write: user.access.includes('write') && delegated.includes('write'),
    user: user.access,
    userWhy: user.why,
    delegated,
  };
}

/** One line for people: `user: none (not shared with this user) ∩ token: read = none`. */
export function explain(e: Effective): string {
  const list = (a: readonly string[]) => (a.length === 0 ? 'none' : a.join('+'));
  const result = [e.read ? 'read' : '', e.write ? 'write' : ''].filter(Boolean);
  return `user: ${list(e.user)} (${e.userWhy}) ∩ token scopes: ${list(e.delegated)} = ${list(result)}`;
}
