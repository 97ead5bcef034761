/** RP-initiated logout pages: confirmation (when the request cannot prove which client asked) and the result. */
import { html } from './html.ts';
import { csrfField, page, type Page } from './layout.ts';

export function logoutConfirmPage(input: { brand: string; username: string | undefined; action: string; csrf: string; hidden: Record<string, string>; formTargets?: readonly string[] }): Page {
  return page({
    title: 'Sign out',
    brand: input.brand,
    formTargets: input.formTargets,
    body: html`<h1>Sign out?</h1>
<p class="lead">${input.username === undefined ? 'Sign out of your account on this device.' : html`You are signed in as <strong>${input.username}</strong>.`}</p>
<form method="post" action="${input.action}">
${csrfField(input.csrf)}
${Object.entries(input.hidden).map(([name, value]) => html`<input type="hidden" name="${name}" value="${value}">`)}
<div class="actions stack"><button type="submit" class="primary block" autofocus>Sign out</button></div>
</form>`,
  });
}

export function signedOutPage(input: { brand: string }): Page {
  return page({
    title: 'Signed out',
    brand: input.brand,
    body: html`<h1>You signed out of your account</h1>
<p class="lead">It's a good idea to close all browser windows.</p>`,
  });
}
