/**
 * `application/x-www-form-urlencoded` bodies for the OAuth endpoints (RFC 6749 Appendix B).
 *
 * The only request body Baton parses. RFC 6749 §3.2 (token), RFC 7009 §2.1 (revocation), RFC 7662
 * §2.1 (introspection), OIDC Core §3.1.2.1 (authorize by POST), RFC 6750 §2.2 (a bearer token in
 * a body) and the sign-in forms all say form encoding; a JSON body is refused by the HTTP shell
 * (http/app.ts) before any handler runs, so no handler ever sees a value of a shape it did not
 * validate: every value {@link parseForm} produces is a string, every name appears once.
 *
 * RFC 6749 §3.1/§3.2: "Request and response parameters MUST NOT be included more than once."
 * A repeated parameter is refused here, in one place, so no handler can be confused about which
 * copy it sees (parameter-pollution attacks rely on two layers picking different copies).
 */
import { OAuthError, Entra, truncate } from '@baton/core';
import type { FastifyRequest } from 'fastify';

export type FormParams = Readonly<Record<string, string>>;

/** Forms made by {@link parseForm}: {@link formBody} trusts nothing else as a body. */
const parsedForms = new WeakSet<object>();
const EMPTY_FORM: FormParams = Object.freeze(Object.create(null) as Record<string, string>);

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
  parsedForms.add(params);
  return params;
}

/**
 * The form body of a request — the one way a handler reads a body. No body is an empty form; a
 * body not made by {@link parseForm} (a parser added to the shell by mistake, a JSON object, an
 * array) is refused as `invalid_request`, never handed on: a handler can rely on string values.
 */
export function formBody(request: FastifyRequest): FormParams {
  const body = request.body;
  if (body === undefined || body === null) return EMPTY_FORM;
  if (typeof body === 'object' && parsedForms.has(body)) return body as FormParams;
  throw new OAuthError('invalid_request', {
    description: "The request body must be sent as 'application/x-www-form-urlencoded'.",
    entraCodes: [Entra.malformedRequest],
  });
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
