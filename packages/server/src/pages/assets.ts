/** The pages' stylesheet and form_post script, served as same-origin files (the CSP allows nothing inline). */
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { ASSET_PATHS } from './layout.ts';

const css = readFileSync(new URL('./signin.css', import.meta.url), 'utf8');
const script = readFileSync(new URL('./form-post-submit.js', import.meta.url), 'utf8');
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
}
