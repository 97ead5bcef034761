/**
 * The frame every sign-in page shares, and the headers that go with it.
 *
 * Content-Security-Policy: nothing inline, nothing from elsewhere. Styles and the one script
 * (form_post auto-submit) are same-origin files; `frame-ancestors 'none'` stops clickjacking of
 * the Accept button; `form-action` lists this origin plus, for pages that end in the client, the
 * client's redirect URI origin (browsers apply form-action to the redirect after a form POST).
 */
import type { FastifyReply } from 'fastify';
import { html, raw, type SafeHtml } from './html.ts';

export const ASSET_PATHS = {
  css: '/assets/baton/signin.css',
  formPostScript: '/assets/baton/form-post.js',
  favicon: '/assets/baton/favicon.svg',
} as const;

export interface PageOptions {
  title: string;
  /** The tenant's display name, shown as the brand. */
  brand: string;
  body: SafeHtml;
  /** Extra `form-action` sources (the client's redirect URI origin). */
  formTargets?: readonly string[] | undefined;
  /** Load the form_post auto-submit script. */
  autoSubmit?: boolean | undefined;
  status?: number | undefined;
  /** Extra `img-src` sources (an https origin: a self-registered client's logo on the consent page). */
  imageSources?: readonly string[] | undefined;
}

/** What every page with an interaction form is given: the brand, where the form posts, its CSRF token, where the browser may be sent next. */
export interface FormPageInput {
  /** The tenant's display name. */
  brand: string;
  /** The form's POST path. */
  action: string;
  csrf: string;
  /** Extra `form-action` sources (the client's redirect URI origin). */
  formTargets?: readonly string[];
}

export interface Page {
  status: number;
  body: string;
  csp: string;
}

export function page(options: PageOptions): Page {
  const initial = (options.brand.trim()[0] ?? 'B').toUpperCase();
  const document = html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="robots" content="noindex, nofollow">
<title>${options.title} · ${options.brand}</title>
<link rel="icon" href="${ASSET_PATHS.favicon}" type="image/svg+xml">
<link rel="stylesheet" href="${ASSET_PATHS.css}">
${options.autoSubmit ? html`<script src="${ASSET_PATHS.formPostScript}" defer></script>` : ''}
</head>
<body>
<main>
<div class="card">
<div class="brand"><span class="mark" aria-hidden="true">${initial}</span><span>${options.brand}</span></div>
${options.body}
</div>
</main>
<footer><span>${options.brand}</span><span>Secured by Baton</span></footer>
</body>
</html>
`;
  const formAction = ["'self'", ...(options.formTargets ?? [])].join(' ');
  const csp = [
    "default-src 'none'",
    "style-src 'self'",
    `script-src ${options.autoSubmit ? "'self'" : "'none'"}`,
    ["img-src 'self' data:", ...(options.imageSources ?? [])].join(' '),
    `form-action ${formAction}`,
    "frame-ancestors 'none'",
    "base-uri 'none'",
  ].join('; ');
  return { status: options.status ?? 200, body: document.value, csp };
}

/** Sends a page with its security headers; never cached (pages carry CSRF tokens and codes). */
export function sendPage(reply: FastifyReply, rendered: Page): FastifyReply {
  return reply
    .code(rendered.status)
    .header('content-security-policy', rendered.csp)
    .header('cache-control', 'no-store')
    .header('pragma', 'no-cache')
    .header('x-frame-options', 'DENY')
    .header('cross-origin-opener-policy', 'same-origin')
    .type('text/html; charset=utf-8')
    .send(rendered.body);
}

/** A hidden CSRF field. */
export function csrfField(token: string): SafeHtml {
  return html`<input type="hidden" name="csrf_token" value="${token}">`;
}

/** First letter of a name, for an avatar. */
export function initialOf(name: string): string {
  const first = [...name.trim()][0];
  return first === undefined ? '?' : first.toUpperCase();
}

export { raw };
