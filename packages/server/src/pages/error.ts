/** The error page: what went wrong, in words, and the identifiers support needs. Never a stack trace. */
import { html } from './html.ts';
import { page, type Page } from './layout.ts';

export interface ErrorPageInput {
  brand: string;
  title?: string;
  message: string;
  /** AADSTS number. */
  code?: number | undefined;
  error?: string | undefined;
  requestId: string;
  correlationId?: string | undefined;
  timestamp: string;
  status: number;
}

export function errorPage(input: ErrorPageInput): Page {
  return page({
    title: input.title ?? 'Sign-in error',
    brand: input.brand,
    status: input.status,
    body: html`<h1>${input.title ?? "Sorry, we couldn't sign you in"}</h1>
<div class="alert" role="alert"><p class="message">${input.code === undefined ? '' : `AADSTS${input.code}: `}${input.message}</p></div>
<dl class="details">
${input.error === undefined ? '' : html`<dt>Error</dt><dd>${input.error}</dd>`}
<dt>Request Id</dt><dd>${input.requestId}</dd>
${input.correlationId === undefined ? '' : html`<dt>Correlation Id</dt><dd>${input.correlationId}</dd>`}
<dt>Timestamp</dt><dd>${input.timestamp}</dd>
</dl>`,
  });
}
