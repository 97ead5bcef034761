/**
 * `application/x-www-form-urlencoded` bodies for the OAuth endpoints (RFC 6749 Appendix B).
 *
 * RFC 6749 §3.1/§3.2: "Request and response parameters MUST NOT be included more than once."
 * A repeated parameter is refused here, in one place, so no handler can be confused about which
 * copy it sees (parameter-pollution attacks rely on two layers picking different copies).
 */
import { OAuthError, Entra, truncate } from '@baton/core';

export type FormParams = Readonly<Record<string, string>>;

/** The largest form body accepted (DESIGN: oversized input gets a clear error). */
export const MAX_FORM_BYTES = 64 * 1024;

export function parseForm(body: string): FormParams {
  const params: Record<string, string> = Object.create(null);
  // URLSearchParams decodes '+' as space and percent-escapes as UTF-8, as Appendix B requires.
  let search: URLSearchParams;
  try {
    search = new URLSearchParams(body);
  } catch {
    throw new OAuthError('invalid_request', { description: 'The request body is not a valid form encoding.', entraCodes: [Entra.malformedRequest] });
  }
  for (const [name, value] of search) {
    if (name === '') continue;
    if (Object.prototype.hasOwnProperty.call(params, name)) {
      throw new OAuthError('invalid_request', {
        description: `The parameter '${truncate(name, 64)}' is included more than once.`,
        entraCodes: [Entra.duplicateParameter],
      });
    }
    if (value.includes('\u0000')) {
      throw new OAuthError('invalid_request', { description: `The parameter '${truncate(name, 64)}' contains a NUL character.`, entraCodes: [Entra.malformedRequest] });
    }
    params[name] = value;
  }
  return params;
}

/** A required, non-empty parameter. */
export function requireParam(params: FormParams, name: string): string {
  const value = params[name];
  if (value === undefined || value === '') {
    throw new OAuthError('invalid_request', {
      description: `The request body must contain the '${name}' parameter.`,
      entraCodes: [Entra.malformedRequest],
    });
  }
  return value;
}
