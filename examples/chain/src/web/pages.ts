/**
 * Tasks Web's pages. Server-rendered, escaped by `html` (the token service's own template, from @baton/server), no inline script or style: the CSP allows
 * only same-origin files (`/assets/app.css`, `/assets/app.js`, `/assets/chain.js`).
 */
import { html, type SafeHtml } from '@baton/server';
import type { Flash } from './sessions.ts';
import type { Task } from '../tasks/api.ts';

export interface DemoUser {
  username: string;
  displayName: string;
  password: string;
  /** Has a second factor (TOTP). */
  mfa: boolean;
  enabled: boolean;
  /** A tenant administrator (`roles: ["admin"]` in baton.json): may see every user's requests in the chain view. */
  admin: boolean;
}

export interface Viewer {
  name: string;
  username: string | undefined;
  oid: string;
  csrf: string;
}

export interface LayoutOptions {
  title: string;
  viewer?: Viewer | undefined;
  active?: 'tasks' | 'documents' | 'chain' | undefined;
  flash?: Flash | undefined;
  body: SafeHtml;
  wide?: boolean | undefined;
  scripts?: readonly string[] | undefined;
}

const ICON_CHECK = html`<svg viewBox="0 0 20 20" aria-hidden="true"><path d="M4 10.5l4 4 8-9" fill="none" stroke="currentColor" stroke-width="2.4" stroke-linecap="round" stroke-linejoin="round"/></svg>`;
const ICON_DOC = html`<svg viewBox="0 0 20 20" aria-hidden="true"><path d="M5 2.5h6.5L15.5 6.5V17a.5.5 0 0 1-.5.5H5a.5.5 0 0 1-.5-.5V3a.5.5 0 0 1 .5-.5z M11 2.5V7h4.5" fill="none" stroke="currentColor" stroke-width="1.5" stroke-linejoin="round"/></svg>`;
const ICON_X = html`<svg viewBox="0 0 20 20" aria-hidden="true"><path d="M5.5 5.5l9 9m0-9l-9 9" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round"/></svg>`;

function initial(name: string): string {
  return ([...name.trim()][0] ?? '?').toUpperCase();
}

export function layout(o: LayoutOptions): string {
  const nav = (key: NonNullable<LayoutOptions['active']>, href: string, label: string) =>
    html`<a href="${href}"${o.active === key ? html` class="active" aria-current="page"` : ''}>${label}</a>`;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>${o.title} · Tasks</title>
<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/assets/app.css">
${(o.scripts ?? []).map((src) => html`<script src="${src}" defer></script>`)}
</head>
<body>
<header class="topbar">
<div class="inner${o.wide ? ' wide' : ''}">
<a class="logo" href="/"><span class="mark">${ICON_CHECK}</span><span>Tasks</span><span class="tag">Client App</span></a>
<nav>${o.viewer ? [nav('tasks', '/', 'Tasks'), nav('documents', '/documents', 'Documents')] : ''}${nav('chain', '/chain', 'Chain view')}</nav>
${
  o.viewer
    ? html`<div class="me"><span class="avatar" aria-hidden="true">${initial(o.viewer.name)}</span><span class="who"><strong>${o.viewer.name}</strong><small>${o.viewer.username ?? ''}</small></span>
<form method="post" action="/signout"><input type="hidden" name="csrf" value="${o.viewer.csrf}"><button type="submit" class="ghost small">Sign out</button></form></div>`
    : html`<div class="me"><a class="button small" href="/signin">Sign in</a></div>`
}
</div>
</header>
<main class="container${o.wide ? ' wide' : ''}">
${o.flash ? flashBox(o.flash) : ''}
${o.body}
</main>
<footer class="foot${o.wide ? ' wide' : ''}"><span>Baton demo chain</span><span>Tasks Web → Tasks API → Docs API → Audit API</span></footer>
</body>
</html>
`.value;
}

function flashBox(flash: Flash): SafeHtml {
  return html`<div class="flash ${flash.tone}" role="${flash.tone === 'error' ? 'alert' : 'status'}"><span>${flash.text}</span>${
    flash.traceId ? html` <a href="/chain#r-${flash.traceId}">See it in the chain view →</a>` : ''
  }</div>`;
}

export function demoUsersBox(users: readonly DemoUser[], totpSecret: string | undefined): SafeHtml {
  if (users.length === 0) return html``;
  return html`<section class="card demo-users">
<h2>Demo accounts</h2>
<p class="muted">From <code>examples/chain/baton.json</code>. Local development only.</p>
<table class="plain">
<thead><tr><th>User</th><th>Password</th><th>Second factor</th></tr></thead>
<tbody>
${users.map(
  (u) => html`<tr${u.enabled ? '' : html` class="disabled"`}><td><strong>${u.displayName}</strong><br><code>${u.username}</code></td><td><code>${u.password}</code></td><td>${
    u.enabled ? (u.mfa ? html`TOTP — current code <code class="totp" data-user="${u.username}">······</code>` : 'none') : 'account disabled'
  }</td></tr>`,
)}
</tbody>
</table>
${totpSecret ? html`<p class="muted small">Alice's TOTP secret is <code>${totpSecret}</code> (add it to any authenticator app), or read the current code here.</p>` : ''}
</section>`;
}

export function landingPage(input: { users: readonly DemoUser[]; totpSecret: string | undefined; flash?: Flash | undefined }): string {
  return layout({
    title: 'Welcome',
    active: undefined,
    flash: input.flash,
    scripts: ['/assets/app.js'],
    body: html`<section class="hero">
<h1>Your tasks, your documents — and a token passed like a baton.</h1>
<p class="lead">Tasks Web signs you in through Baton, then calls the <strong>Tasks API</strong> with your token.
The Tasks API calls the <strong>Docs API</strong> on your behalf, and the Docs API records each change at the <strong>Audit API</strong> — every hop with a new token, addressed to the next API, still yours.</p>
<div class="actions"><a class="button primary large" href="/signin">Sign in with Baton</a><a class="button ghost large" href="/chain">Open the chain view</a></div>
</section>
<div class="chain-diagram" aria-hidden="true">
<span class="node web">Tasks Web<small>Client App</small></span><span class="arrow">→</span>
<span class="node api">Tasks API<small>Original API</small></span><span class="arrow">→</span>
<span class="node api">Docs API<small>Downstream API</small></span><span class="arrow">→</span>
<span class="node api">Audit API<small>third hop</small></span>
</div>
${demoUsersBox(input.users, input.totpSecret)}`,
  });
}

export function tasksPage(input: { viewer: Viewer; tasks: readonly Task[]; flash?: Flash | undefined; error?: Flash | undefined }): string {
  const { viewer, tasks } = input;
  const open = tasks.filter((t) => !t.done).length;
  return layout({
    title: 'Tasks',
    viewer,
    active: 'tasks',
    flash: input.flash,
    body: html`<section class="page-head">
<div><h1>Your tasks</h1><p class="muted">Kept by the Tasks API for <strong>${viewer.name}</strong>. ${open} open, ${tasks.length - open} done.</p></div>
</section>
${input.error ? flashBox(input.error) : ''}
<form class="card new-task" method="post" action="/tasks">
<input type="hidden" name="csrf" value="${viewer.csrf}">
<label class="sr-only" for="new-task-title">New task</label>
<input id="new-task-title" name="title" placeholder="What needs doing?" required maxlength="200" autocomplete="off">
<button type="submit" class="primary">Add task</button>
</form>
${
  input.error
    ? ''
    : tasks.length === 0
    ? html`<div class="empty card"><p><strong>No tasks yet.</strong></p><p class="muted">Add one above, then attach a document to it: that is the call that goes through all three APIs.</p></div>`
    : html`<ul class="tasks">${tasks.map((t) => taskItem(t, viewer.csrf))}</ul>`
}`,
  });
}

function taskItem(task: Task, csrf: string): SafeHtml {
  return html`<li class="task card${task.done ? ' done' : ''}" data-task="${task.id}">
<form method="post" action="/tasks/${task.id}/toggle" class="check-form"><input type="hidden" name="csrf" value="${csrf}"><input type="hidden" name="done" value="${task.done ? 'false' : 'true'}"><button type="submit" class="check${task.done ? ' on' : ''}" title="${task.done ? 'Mark as not done' : 'Mark as done'}" aria-label="${task.done ? 'Mark as not done' : 'Mark as done'}">${ICON_CHECK}</button></form>
<div class="task-body">
<div class="task-title">${task.title}</div>
${
  task.documents.length > 0
    ? html`<ul class="attachments">${task.documents.map((d) => html`<li><a href="/documents/${d.id}">${ICON_DOC}<span>${d.title}</span></a></li>`)}</ul>`
    : ''
}
<details class="attach">
<summary>Attach a document</summary>
<form method="post" action="/tasks/${task.id}/documents" class="stack">
<input type="hidden" name="csrf" value="${csrf}">
<label>Title<input name="title" required maxlength="200" autocomplete="off"></label>
<label>Content<textarea name="content" rows="4" maxlength="20000"></textarea></label>
<div class="row"><button type="submit" class="primary">Attach document</button><span class="hint">Creating a document needs <code>Docs.Write</code>; the tenant's policy asks for MFA first.</span></div>
</form>
</details>
</div>
<form method="post" action="/tasks/${task.id}/delete"><input type="hidden" name="csrf" value="${csrf}"><button type="submit" class="icon" title="Delete task" aria-label="Delete task">${ICON_X}</button></form>
</li>`;
}

export interface DocSummary {
  id: string;
  title: string;
  owner: string;
  /** The signed-in user owns it. */
  yours?: boolean;
  access: string[];
  shares: Array<{ username: string; access: string }>;
  createdAt?: string;
  content?: string;
}

export function documentsPage(input: { viewer: Viewer; documents: readonly DocSummary[]; flash?: Flash | undefined; error?: Flash | undefined }): string {
  return layout({
    title: 'Documents',
    viewer: input.viewer,
    active: 'documents',
    flash: input.flash,
    body: html`<section class="page-head"><div><h1>Documents</h1>
<p class="muted">What the Docs API lets <strong>${input.viewer.name}</strong> read: documents you own or that are shared with you. Tasks Web asks the Tasks API, which asks the Docs API on your behalf.</p></div></section>
${input.error ? flashBox(input.error) : ''}
${input.error ? '' : html`<div class="card">
${
  input.documents.length === 0
    ? html`<p class="muted">No documents you can read yet. Attach one to a task.</p>`
    : html`<table class="docs"><thead><tr><th>Title</th><th>Owner</th><th>Your access</th><th>Shared with</th></tr></thead><tbody>
${input.documents.map(
  (d) => html`<tr><td><a href="/documents/${d.id}">${ICON_DOC}<span>${d.title}</span></a></td><td>${d.owner}</td><td>${d.access.map((a) => html`<span class="pill">${a}</span>`)}</td><td>${
    d.shares.length === 0 ? html`<span class="muted">—</span>` : d.shares.map((s) => html`<span class="pill soft">${s.username} · ${s.access}</span>`)
  }</td></tr>`,
)}
</tbody></table>`
}
</div>`}
<form class="card open-doc" method="get" action="/documents/open">
<h2>Open a document by id</h2>
<p class="muted">Try an id that belongs to someone else: the Tasks API will ask, but the Docs API answers for <em>you</em>.</p>
<div class="row"><label class="sr-only" for="doc-id">Document id</label><input id="doc-id" name="id" required maxlength="64" placeholder="e.g. 3f0c…" autocomplete="off" spellcheck="false"><button type="submit">Open</button></div>
</form>`,
  });
}

export function documentPage(input: { viewer: Viewer; doc: DocSummary; isOwner: boolean; flash?: Flash | undefined }): string {
  const { doc, viewer } = input;
  return layout({
    title: doc.title,
    viewer,
    active: 'documents',
    flash: input.flash,
    body: html`<section class="page-head"><div><p class="crumbs"><a href="/documents">Documents</a> /</p><h1>${doc.title}</h1>
<p class="muted">Owner <strong>${doc.owner}</strong>${doc.createdAt ? html` · created ${new Date(doc.createdAt).toUTCString()}` : ''} · id <code class="doc-id">${doc.id}</code></p></div>
<div class="access">${doc.access.map((a) => html`<span class="pill">${a}</span>`)}</div></section>
<article class="card doc-content"><pre>${doc.content ?? ''}</pre></article>
<section class="card">
<h2>Shared with</h2>
${doc.shares.length === 0 ? html`<p class="muted">Nobody but the owner.</p>` : html`<ul class="shares">${doc.shares.map((s) => html`<li><code>${s.username}</code> <span class="pill soft">${s.access}</span></li>`)}</ul>`}
${
  input.isOwner
    ? html`<form method="post" action="/documents/${doc.id}/shares" class="row share-form">
<input type="hidden" name="csrf" value="${viewer.csrf}">
<label class="sr-only" for="share-user">Username</label><input id="share-user" name="username" type="email" required placeholder="bob@contoso.test" autocomplete="off">
<label class="sr-only" for="share-access">Access</label><select id="share-access" name="access"><option value="read">can read</option><option value="write">can change</option></select>
<button type="submit">Share</button></form>`
    : ''
}
</section>`,
  });
}

export function documentRefusedPage(input: { viewer: Viewer; id: string; status: number; description: string; traceId: string }): string {
  return layout({
    title: 'Document not available',
    viewer: input.viewer,
    active: 'documents',
    body: html`<section class="card refusal">
<p class="crumbs"><a href="/documents">Documents</a> /</p>
<h1>This document is not available to you</h1>
<p class="lead">${input.description}</p>
<p>The Tasks API asked the Docs API for document <code>${input.id}</code> <em>on your behalf</em>: with a token for the Docs API that still names you, <strong>${input.viewer.name}</strong>.
The Docs API allows what <em>you</em> may do, intersected with what the token's scope allows — and you have no access to this document. Whatever the Tasks API's code does, it cannot read it for you.</p>
<p><a class="button" href="/chain#r-${input.traceId}">See the decision in the chain view →</a></p>
</section>`,
  });
}

export function errorPage(input: { viewer?: Viewer | undefined; title: string; message: string; traceId?: string | undefined }): string {
  return layout({
    title: input.title,
    viewer: input.viewer,
    body: html`<section class="card refusal"><h1>${input.title}</h1><p class="lead">${input.message}</p>
<p class="actions"><a class="button" href="/">Back to your tasks</a>${input.traceId ? html`<a class="button ghost" href="/chain#r-${input.traceId}">See it in the chain view →</a>` : ''}</p></section>`,
  });
}

export interface ChainPageInput {
  viewer?: Viewer | undefined;
  csrf: string;
  antiPattern: boolean;
  users: readonly DemoUser[];
  totpSecret: string | undefined;
  /** `mine`: the viewer's own requests (and app-only ones); `all`: every user's (administrators only). */
  view: 'mine' | 'all';
  /** The viewer may switch to every user's requests. */
  admin: boolean;
  /** A trace UI's URL with `{traceId}` (BATON_TRACE_URL): each hop links to its trace there. */
  traceUrl?: string | undefined;
  /** Continuous access evaluation: whose sessions the "Revoke" button revokes (absent: no button). */
  revokeTarget?: { username: string; displayName: string } | undefined;
}

/** The "Revoke sessions" control (the demo admin calls the token service's admin API). */
function revokeControl(input: ChainPageInput): SafeHtml {
  const target = input.revokeTarget;
  if (target === undefined) return html``;
  const first = target.displayName.split(' ')[0] ?? target.displayName;
  return html`<div class="card control" id="revoke-card">
<div><h2>Continuous access evaluation</h2>
<p class="muted">The demo admin revokes ${target.displayName}’s sessions at the token service (admin API, as <code>baton admin users revoke-sessions ${target.username}</code> does). Each API hears it as a security event (OpenID SSF, CAEP <code>session-revoked</code>) and refuses the tokens issued before it with a claims challenge.</p>
<p class="small" id="revoke-status">—</p></div>
<form method="post" action="/chain/revoke-sessions" class="row"><input type="hidden" name="csrf" value="${input.csrf}"><button type="submit" id="revoke-sessions" class="danger">Revoke ${first}’s sessions</button></form>
</div>`;
}

/** The security events each API received (filled in live by chain.js). */
function signalsPanel(input: ChainPageInput): SafeHtml {
  if (input.revokeTarget === undefined) return html``;
  return html`<section class="card signals-panel" id="security-events"><h2>Security events received by each API</h2><p class="muted small">What each API's receiver accepted from the token service (Security Event Tokens, polled from its own stream): event type, subject, time received.</p><div id="signal-events"><p class="muted">—</p></div></section>`;
}

/** Whose requests the chain view lists, and the switch between the two views for an administrator. */
function chainScope(input: ChainPageInput): SafeHtml {
  if (input.viewer === undefined) return html`<p class="muted small scope-note" id="chain-scope">Sign in to see the requests made in your name.</p>`;
  const mine = html`Requests made in the name of <strong>${input.viewer.name}</strong>, and the app-only ones.`;
  if (!input.admin) return html`<p class="muted small scope-note" id="chain-scope">${mine}</p>`;
  return input.view === 'all'
    ? html`<p class="muted small scope-note" id="chain-scope">Every user's requests (administrator view). <a href="/chain">Show only mine</a></p>`
    : html`<p class="muted small scope-note" id="chain-scope">${mine} <a href="/chain?view=all">Show every user's (administrator)</a></p>`;
}

export function chainPage(input: ChainPageInput): string {
  return layout({
    title: 'Chain view',
    viewer: input.viewer,
    active: 'chain',
    wide: true,
    scripts: ['/assets/chain.js', '/assets/app.js'],
    body: html`<section class="page-head chain-head">
<div><h1>Chain view</h1>
<p class="muted">Every user action is one trace. For each hop: the token the API accepted (decoded, verified claims — never the token), and who decided it could exist: the token service's rule, or the refusal that stopped it. Updates live.</p></div>
<div class="live"><span class="dot" id="live-dot"></span><span id="live-text">connecting…</span></div>
</section>
<section class="controls">
<div class="card control${input.antiPattern ? ' danger-on' : ''}" id="anti-pattern-card">
<div><h2>Anti-pattern: the confused deputy</h2>
<p class="muted">When on, the Tasks API serves document requests with <em>its own</em> application identity instead of the user's (<code>obo.appToken()</code> inside a user's request). The SDK refuses it.</p></div>
<form method="post" action="/chain/anti-pattern" class="row">
<input type="hidden" name="csrf" value="${input.csrf}">
<input type="hidden" name="enabled" value="${input.antiPattern ? 'off' : 'on'}">
<span class="switch-state" id="anti-pattern-state">${input.antiPattern ? 'ON' : 'off'}</span>
<button type="submit" id="anti-pattern-toggle" class="${input.antiPattern ? 'danger' : ''}">${input.antiPattern ? 'Turn off' : 'Turn on'}</button>
</form>
</div>
<div class="card control">
<div><h2>Indexer (app-only)</h2>
<p class="muted">A background job with the application permission <code>Docs.ReadAll</code>: client credentials, no user — the legitimate app-only case, allowed on one Docs API route only.</p>
<p class="small" id="indexer-status">—</p></div>
<form method="post" action="/chain/indexer" class="row"><input type="hidden" name="csrf" value="${input.csrf}"><button type="submit" id="run-indexer">Run now</button></form>
</div>
${revokeControl(input)}
</section>
<div class="legend"><span class="pill ok">allowed</span><span class="pill bad">refused</span><span class="muted small">Hop = one HTTP call, shown with the token that crossed it. <code>act</code> nests one level per API that exchanged the token.</span>
<label class="small filter"><input type="checkbox" id="show-single"> Show single-hop requests</label></div>
${chainScope(input)}
<div id="requests" class="requests" aria-live="polite" data-view="${input.view}" data-signed-in="${input.viewer ? 'true' : 'false'}" data-trace-url="${input.traceUrl ?? ''}"><p class="muted empty-note">${input.viewer ? 'No requests yet. Add a task, then attach a document to it.' : 'Sign in to see the requests made in your name.'}</p></div>
<section class="card audit-panel"><h2>Audit API — latest entries</h2><p class="muted small">What the Audit API recorded, and on whose behalf (read from its store for this developer view).</p><div id="audit-entries"><p class="muted">—</p></div></section>
${signalsPanel(input)}
${demoUsersBox(input.users, input.totpSecret)}`,
  });
}
