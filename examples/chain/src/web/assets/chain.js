// The chain view: renders the requests the server streams (Server-Sent Events), newest first.
// Built with DOM APIs and textContent only: no HTML strings, nothing from the stream is parsed as markup.
(() => {
  'use strict';

  const list = document.getElementById('requests');
  if (!list) return;
  const liveDot = document.getElementById('live-dot');
  const liveText = document.getElementById('live-text');
  // Single-hop requests (a page load: Tasks Web → Tasks API and back) are hidden unless asked for:
  // the requests worth looking at are the ones that travel.
  const showSingle = document.getElementById('show-single');
  const signedIn = list.dataset.signedIn === 'true';
  // A trace UI's URL with {traceId} (BATON_TRACE_URL), or none: each hop then shows its trace id only.
  const traceUrl = list.dataset.traceUrl || '';
  const requests = new Map();
  let names = {};
  let focus = location.hash.startsWith('#r-') ? location.hash.slice(3) : undefined;
  const linked = focus;

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (value === undefined || value === null || value === false) continue;
        if (key === 'class') node.className = value;
        else if (key === 'text') node.textContent = String(value);
        else node.setAttribute(key, String(value));
      }
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const name = (id) => names[id] || id;
  const time = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });
  const list_ = (value) => (Array.isArray(value) ? value : typeof value === 'string' ? value.split(' ').filter(Boolean) : []);
  const short = (value) => {
    const s = String(value);
    return s.length > 22 ? `${s.slice(0, 10)}…${s.slice(-8)}` : s;
  };

  function actNode(act) {
    if (!act || typeof act !== 'object') return el('span', { text: String(act) });
    const who = act.client_id || act.sub;
    const box = el('div', { class: 'act', title: act.sub ? `sub: ${act.sub}` : undefined }, el('span', { class: 'muted', text: 'act → ' }), el('span', { class: 'actor-name', text: who }));
    if (act.act) box.append(actNode(act.act));
    return box;
  }

  function claimRow(label, value) {
    return el('tr', null, el('th', { text: label }), el('td', null, value));
  }

  function claimsTable(token) {
    const rows = [];
    const text = (v, full) => el('span', { text: short(v), title: full ? String(v) : undefined });
    if (token.aud !== undefined) rows.push(claimRow('aud', el('span', { text: Array.isArray(token.aud) ? token.aud.join(' ') : token.aud })));
    if (token.sub !== undefined) rows.push(claimRow('sub', text(token.sub, true)));
    if (token.oid !== undefined) rows.push(claimRow('oid', text(token.oid, true)));
    if (token.tid !== undefined) rows.push(claimRow('tid', text(token.tid, true)));
    if (token.azp !== undefined) rows.push(claimRow('azp', el('strong', { text: token.azp })));
    if (token.scp !== undefined) rows.push(claimRow('scp', el('div', { class: 'claim-list' }, list_(token.scp).map((s) => el('span', { text: s })))));
    if (token.roles !== undefined) rows.push(claimRow('roles', el('div', { class: 'claim-list' }, list_(token.roles).map((s) => el('span', { text: s })))));
    if (token.idtyp !== undefined) rows.push(claimRow('idtyp', el('span', { text: token.idtyp })));
    if (token.amr !== undefined) rows.push(claimRow('amr', el('div', { class: 'claim-list' }, list_(token.amr).map((s) => el('span', { text: s })))));
    if (token.acr !== undefined) rows.push(claimRow('acr', el('span', { text: token.acr })));
    const noAct = token.idtyp === 'app' ? '— (app-only: no user, nothing delegated)' : '— (first hop: no API has exchanged it)';
    rows.push(claimRow('act', token.act === undefined ? el('span', { class: 'muted', text: noAct }) : actNode(token.act)));
    if (token.preferred_username !== undefined) rows.push(claimRow('user', el('span', { text: token.preferred_username })));
    // DPoP (RFC 9449): the key this hop's token is bound to; each hop's holder proves its own.
    const jkt = token.cnf && typeof token.cnf.jkt === 'string' ? token.cnf.jkt : undefined;
    rows.push(claimRow('cnf.jkt', jkt === undefined ? el('span', { class: 'muted', text: '— (bearer token: not sender-constrained)' }) : text(jkt, true)));
    // RFC 8693 may_act: who the token's API lets exchange it (its delegation.mayAct), next to the key.
    const mayAct = (Array.isArray(token.may_act) ? token.may_act : token.may_act ? [token.may_act] : []).map((p) => (p && (p.client_id || p.sub)) || String(p));
    rows.push(claimRow('may_act', mayAct.length === 0 ? el('span', { class: 'muted', text: '— (its API names no middle tier)' }) : el('div', { class: 'claim-list' }, mayAct.map((who) => el('span', { text: who })))));
    return el('table', { class: 'claims' }, el('tbody', null, rows));
  }

  function decisionNode(d) {
    if (!d) return null;
    const who = d.by === 'token-service' ? 'Token service' : d.by === 'sdk' ? 'Resource SDK' : 'API';
    const verdict = d.outcome === 'allow' ? 'allowed' : d.outcome === 'error' ? 'failed' : 'refused';
    return el(
      'div',
      { class: `decision ${d.outcome}${d.cached ? ' cached' : ''}` },
      el('div', { class: 'who' }, `${who} · ${verdict}`, el('span', { class: 'rule', text: d.rule })),
      el('p', { text: d.summary }),
      d.description ? el('div', { class: 'desc', text: d.description }) : null,
    );
  }

  /** The hop's trace: a link into the trace UI when one is configured, else the id (hover for all of it). */
  function traceNode(traceId) {
    if (!/^[0-9a-f]{32}$/.test(traceId)) return null;
    const text = `trace ${traceId.slice(0, 8)}…`;
    return traceUrl
      ? el('a', { class: 'trace-link', href: traceUrl.replace('{traceId}', traceId), target: '_blank', rel: 'noopener noreferrer', title: `Open trace ${traceId}`, 'data-trace-id': traceId, text })
      : el('small', { class: 'trace-link', title: `W3C trace id ${traceId}`, 'data-trace-id': traceId, text });
  }

  function hopNode(hop, index, traceId) {
    const refused = hop.outcome === 'refused';
    const route =
      hop.kind === 'call'
        ? `${hop.method} ${hop.path}`
        : hop.decision && hop.decision.by === 'sdk'
          ? 'app-only token refused in-process — no call was made'
          : 'token exchange refused — no call was made';
    return el(
      'section',
      { class: `hop ${hop.kind} ${refused ? 'refused' : 'ok'}`, 'data-from': hop.from, 'data-to': hop.to, 'data-hop': index + 1 },
      el(
        'div',
        { class: 'hop-title' },
        el('div', { class: 'route' }, `${name(hop.from)} → ${name(hop.to)}`, el('small', { text: route })),
        el('span', { class: 'status', text: hop.kind === 'call' ? String(hop.status) : 'refused' }),
      ),
      traceNode(traceId),
      decisionNode(hop.decision),
      hop.reason ? el('p', { class: 'reason', text: hop.reason }) : null,
      hop.token ? claimsTable(hop.token) : hop.kind === 'call' ? el('p', { class: 'no-token', text: 'No token accepted.' }) : null,
    );
  }

  function requestNode(r) {
    const calls = r.hops.filter((h) => h.kind === 'call').length;
    const outcome = r.outcome === 'refused' ? el('span', { class: 'pill bad', text: 'refused' }) : r.outcome === 'ok' ? el('span', { class: 'pill ok', text: 'ok' }) : el('span', { class: 'pill soft', text: 'in progress' });
    const kind = r.kind === 'app-only' ? el('span', { class: 'pill warn', text: 'app-only' }) : r.kind === 'delegated' ? el('span', { class: 'pill baton', text: 'on behalf of a user' }) : null;
    const hops = el('div', { class: 'hops' });
    r.hops.forEach((hop, i) => {
      if (i > 0) hops.append(el('div', { class: 'hop-arrow', 'aria-hidden': 'true', text: '→' }));
      hops.append(hopNode(hop, i, r.id));
    });
    if (r.hops.length === 0) hops.append(el('p', { class: 'muted small', text: 'No API has answered yet.' }));
    const card = el(
      'article',
      { class: `request ${r.outcome}`, id: `r-${r.id}`, 'data-calls': calls, 'data-outcome': r.outcome },
      el(
        'header',
        { class: 'request-head' },
        el('span', { class: 'time', text: time(r.startedAt) }),
        el('span', { class: 'label', text: r.label }),
        el('span', { class: 'actor', text: `· ${r.actor}` }),
        el('span', { class: 'spacer' }),
        kind,
        el('span', { class: 'pill soft', text: `${calls} hop${calls === 1 ? '' : 's'}` }),
        outcome,
      ),
      r.notes.length > 0 ? el('ul', { class: 'notes' }, r.notes.map((n) => el('li', { class: n.tone, text: n.text }))) : null,
      // A plain one-hop read is folded: the interesting requests are the ones that travel.
      isQuiet(r) ? folded(r.id, hops) : hops,
    );
    if (isQuiet(r)) card.classList.add('is-quiet');
    return card;
  }

  const unfolded = new Set();
  function folded(id, content) {
    const details = el('details', { class: 'quiet', open: unfolded.has(id) }, el('summary', { text: 'Show the hop and its token' }), content);
    details.addEventListener('toggle', () => (details.open ? unfolded.add(id) : unfolded.delete(id)));
    return details;
  }

  function isQuiet(r) {
    return r.outcome !== 'refused' && r.hops.filter((h) => h.kind === 'call').length <= 1 && r.kind !== 'app-only';
  }

  function render() {
    // Newest first; a request linked to (#r-…) is shown even when it is a single hop.
    const sorted = [...requests.values()].sort((a, b) => b.startedAt - a.startedAt).slice(0, 40);
    const hide = !(showSingle && showSingle.checked);
    const nodes = sorted.filter((r) => !(hide && isQuiet(r) && r.id !== linked)).map((r) => {
      const node = requestNode(r);
      if (r.fresh) node.classList.add('fresh');
      r.fresh = false;
      return node;
    });
    if (nodes.length === 0) nodes.push(el('p', { class: 'muted empty-note', text: !signedIn ? 'Sign in to see the requests made in your name.' : hide && sorted.length > 0 ? 'Only single-hop requests so far (hidden: tick “Show single-hop requests”).' : 'No requests yet. Add a task, then attach a document to it.' }));
    list.replaceChildren(...nodes);
    if (focus && requests.has(focus)) {
      const target = document.getElementById(`r-${focus}`);
      if (target) {
        target.scrollIntoView({ block: 'start' });
        target.classList.add('fresh');
        focus = undefined;
      }
    }
  }

  function renderState(state) {
    if (!state) return;
    const card = document.getElementById('anti-pattern-card');
    const stateText = document.getElementById('anti-pattern-state');
    const toggle = document.getElementById('anti-pattern-toggle');
    if (card && stateText && toggle) {
      card.classList.toggle('danger-on', state.antiPattern);
      stateText.textContent = state.antiPattern ? 'ON' : 'off';
      toggle.textContent = state.antiPattern ? 'Turn off' : 'Turn on';
      toggle.classList.toggle('danger', state.antiPattern);
      const input = toggle.form && toggle.form.querySelector('input[name="enabled"]');
      if (input) input.value = state.antiPattern ? 'off' : 'on';
    }
    const indexer = document.getElementById('indexer-status');
    if (indexer && state.indexer) {
      const s = state.indexer;
      indexer.textContent = s.lastRunAt
        ? `Last run ${new Date(s.lastRunAt).toLocaleTimeString([], { hour12: false })}: ${s.lastError ? `failed — ${s.lastError}` : `${s.documents} document${s.documents === 1 ? '' : 's'}, ${s.words} words indexed`} (${s.runs} run${s.runs === 1 ? '' : 's'}).`
        : 'Not run yet.';
    }
    if (state.signals) renderSignals(state.signals);
    const audit = document.getElementById('audit-entries');
    if (audit && Array.isArray(state.audit)) {
      if (state.audit.length === 0) {
        audit.replaceChildren(el('p', { class: 'muted', text: 'Nothing recorded yet. Attach a document to a task.' }));
      } else {
        audit.replaceChildren(
          el(
            'table',
            { class: 'audit' },
            el('thead', null, el('tr', null, ['Time', 'User', 'Action', 'Document', 'Acted (act chain)'].map((h) => el('th', { text: h })))),
            el(
              'tbody',
              null,
              state.audit.map((e) =>
                el(
                  'tr',
                  null,
                  el('td', { text: new Date(e.time).toLocaleTimeString([], { hour12: false }) }),
                  el('td', { text: e.user }),
                  el('td', null, el('code', { text: e.action })),
                  el('td', { text: e.details ? `${e.title} (${e.details})` : e.title }),
                  el('td', { text: (e.via.length > 0 ? e.via : [e.client]).map(name).join(' ← ') }),
                ),
              ),
            ),
          ),
        );
      }
    }
  }

  // Continuous access evaluation: the last revocation pressed, and the security events per API.
  function renderSignals(signals) {
    const status = document.getElementById('revoke-status');
    if (status && signals.revoke) {
      status.textContent = `${time(signals.revoke.at)}: ${signals.revoke.text}`;
      status.className = `small ${signals.revoke.outcome === 'ok' ? 'ok-text' : 'bad-text'}`;
    }
    const box = document.getElementById('signal-events');
    if (!box) return;
    const events = Array.isArray(signals.events) ? signals.events : [];
    const subject = (e) => (e.subject ? `${e.user ? `${e.user} — ` : ''}${e.subject.kind} ${short(e.subject.value)}` : '—');
    box.replaceChildren(
      el(
        'div',
        { class: 'signal-apis' },
        (signals.receivers || []).map((api) => {
          const mine = events.filter((e) => e.api === api);
          return el(
            'div',
            { class: 'signal-api', 'data-api': api },
            el('h3', { text: name(api) }),
            mine.length === 0
              ? el('p', { class: 'muted small', text: signedIn ? 'No event received yet.' : 'Sign in to see the events about you.' })
              : el(
                  'table',
                  { class: 'audit' },
                  el('thead', null, el('tr', null, ['Event', 'Subject', 'Received'].map((h) => el('th', { text: h })))),
                  el(
                    'tbody',
                    null,
                    mine.map((e) =>
                      el(
                        'tr',
                        { class: 'signal', 'data-type': e.type, title: e.typeUri },
                        el('td', null, el('code', { text: e.type })),
                        el('td', { text: subject(e) }),
                        el('td', { text: `${time(e.receivedAt)} (${e.via})` }),
                      ),
                    ),
                  ),
                ),
          );
        }),
      ),
    );
  }

  function connect() {
    const source = new EventSource(list.dataset.view === 'all' ? '/chain/events?view=all' : '/chain/events');
    source.addEventListener('open', () => {
      liveDot && liveDot.classList.add('on');
      if (liveText) liveText.textContent = 'live';
    });
    source.addEventListener('error', () => {
      liveDot && liveDot.classList.remove('on');
      if (liveText) liveText.textContent = 'reconnecting…';
    });
    source.addEventListener('snapshot', (event) => {
      const data = JSON.parse(event.data);
      names = data.names || {};
      requests.clear();
      for (const r of data.requests) requests.set(r.id, r);
      renderState(data.state);
      render();
      document.body.dataset.chainReady = 'true';
    });
    source.addEventListener('request', (event) => {
      const r = JSON.parse(event.data);
      r.fresh = true;
      requests.set(r.id, r);
      render();
    });
    source.addEventListener('state', (event) => renderState(JSON.parse(event.data)));
  }

  if (showSingle) {
    showSingle.checked = localStorage.getItem('chain.showSingleHop') === '1';
    showSingle.addEventListener('change', () => {
      localStorage.setItem('chain.showSingleHop', showSingle.checked ? '1' : '0');
      render();
    });
  }
  connect();
})();
