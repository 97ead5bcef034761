// Tasks Web: shows the demo users' current TOTP codes (local development only), refreshed each few seconds.
(() => {
  'use strict';
  const slots = document.querySelectorAll('code.totp[data-user]');
  if (slots.length === 0) return;
  async function refresh() {
    try {
      const res = await fetch('/demo/totp', { headers: { accept: 'application/json' }, cache: 'no-store' });
      if (!res.ok) return;
      const codes = await res.json();
      for (const slot of slots) {
        const entry = codes[slot.dataset.user];
        if (!entry) continue;
        slot.textContent = `${entry.code.slice(0, 3)} ${entry.code.slice(3)}`;
        slot.title = `valid for ${entry.remaining} more seconds`;
      }
    } catch {
      // Tasks Web stopped: keep the last code.
    }
  }
  refresh();
  setInterval(refresh, 5000);
})();
