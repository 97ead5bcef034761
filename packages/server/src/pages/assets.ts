/** The pages' stylesheet, form_post script and icon, served as same-origin files (the CSP allows nothing inline). */
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { ASSET_PATHS } from './layout.ts';

const css = readFileSync(new URL('./signin.css', import.meta.url), 'utf8');
const script = readFileSync(new URL('./form-post-submit.js', import.meta.url), 'utf8');
/** The pages' icon: a baton passed between two hands, in the pages' accent colour. Inline here, so no file has to ship beside the code. */
const favicon =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="8" fill="#2557d6"/>' +
  '<path d="M9 23L23 9" stroke="#fff" stroke-width="4.5" stroke-linecap="round"/><circle cx="9" cy="23" r="3" fill="#e8eefc"/><circle cx="23" cy="9" r="3" fill="#e8eefc"/></svg>';
const etag = (text: string) => `"${createHash('sha256').update(text).digest('base64url').slice(0, 16)}"`;

export function assetRoutes(app: FastifyInstance): void {
  const serve = (path: string, text: string, type: string) => {
    const tag = etag(text);
    app.get(path, async (request, reply) => {
      reply.header('cache-control', 'public, max-age=3600').header('etag', tag).header('cross-origin-resource-policy', 'same-origin');
      if (request.headers['if-none-match'] === tag) return reply.code(304).send();
      return reply.type(type).send(text);
    });
  };
  serve(ASSET_PATHS.css, css, 'text/css; charset=utf-8');
  serve(ASSET_PATHS.formPostScript, script, 'text/javascript; charset=utf-8');
  serve(ASSET_PATHS.favicon, favicon, 'image/svg+xml');
  // Browsers ask for /favicon.ico on their own (and for JSON or the JWKS opened in a tab): answer it instead of a 404.
  app.get('/favicon.ico', async (_request, reply) => reply.code(301).header('cache-control', 'public, max-age=86400').header('location', ASSET_PATHS.favicon).send());
}
