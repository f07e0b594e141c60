'use strict';
// The dashboard's live part, fetched again without a reload: every 30 s and on the Refresh button. The server sends
// the part as HTML (templates/admin/dashboard/live.html, staff only), which replaces the one on the page; a file of
// its own, since the Content-Security-Policy runs no inline script.
//
// Every request extends the staff session (15 idle minutes), so the timer only runs while someone is using the page:
// after IDLE_MS without a key, a click, a scroll or a pointer move it pauses, and the session may end as it should.
// The Refresh button always works.
(function () {
    const IDLE_MS = 10 * 60 * 1000;
    const bar = document.getElementById('dashboard-refresh-bar');
    if (!bar) {
        return;
    }
    const button = document.getElementById('dashboard-refresh');
    const updated = document.getElementById('dashboard-updated');
    const state = document.getElementById('dashboard-refresh-state');
    const url = bar.dataset.liveUrl;
    const every = Number(bar.dataset.refreshSeconds) * 1000;
    let lastActivity = Date.now();
    let busy = false;

    ['keydown', 'pointerdown', 'pointermove', 'scroll', 'focus'].forEach(function (name) {
        window.addEventListener(name, function () { lastActivity = Date.now(); }, {passive: true});
    });

    function refresh() {
        if (busy) {
            return;
        }
        busy = true;
        button.disabled = true;
        state.textContent = 'refreshing…';
        fetch(url, {credentials: 'same-origin', cache: 'no-store', headers: {'Accept': 'text/html'}})
            .then(function (response) {
                // A session that ended answers with the login page (a redirect): say so rather than show it here.
                if (response.redirected || !response.ok) {
                    const reason = response.redirected ? 'signed out: reload the page to sign in' : 'HTTP ' + response.status;
                    throw new Error(reason);
                }
                return response.text();
            })
            .then(function (html) {
                const template = document.createElement('template');
                template.innerHTML = html.trim();
                const fresh = template.content.getElementById('dashboard-live');
                const current = document.getElementById('dashboard-live');
                if (!fresh || !current) {
                    throw new Error('unexpected answer');
                }
                current.replaceWith(fresh);
                updated.textContent = 'updated ' + fresh.dataset.updated;
                state.textContent = '';
            })
            .catch(function (error) {
                state.textContent = 'could not refresh (' + error.message + ')';
            })
            .finally(function () {
                busy = false;
                button.disabled = false;
            });
    }

    button.addEventListener('click', refresh);
    window.setInterval(function () {
        if (document.hidden) {
            return;
        }
        if (Date.now() - lastActivity > IDLE_MS) {
            state.textContent = 'paused after 10 min without activity: press Refresh';
            return;
        }
        refresh();
    }, every);
}());
