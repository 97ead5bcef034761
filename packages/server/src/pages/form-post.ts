/**
 * OAuth 2.0 Form Post Response Mode: an HTML page that POSTs the response to the client's
 * redirect URI. The auto-submit script is a same-origin file (CSP `script-src 'self'`); without
 * script the user presses Continue.
 */
import { html } from './html.ts';
import { page, type Page } from './layout.ts';

export function formPostPage(input: { brand: string; action: string; params: Record<string, string>; formTarget: string | undefined }): Page {
  return page({
    title: 'Continue',
    brand: input.brand,
    autoSubmit: true,
    formTargets: input.formTarget === undefined ? [] : [input.formTarget],
    body: html`<h1>Returning to the application…</h1>
<p class="lead">If nothing happens, press Continue.</p>
<form method="post" action="${input.action}" id="response">
${Object.entries(input.params).map(([name, value]) => html`<input type="hidden" name="${name}" value="${value}">`)}
<div class="actions stack"><button type="submit" class="primary block" autofocus>Continue</button></div>
</form>`,
  });
}
