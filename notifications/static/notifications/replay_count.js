'use strict';
// "Replay failed deliveries": keeps the count of what the window holds ("41 of 78 failed deliveries will be
// replayed") current as the operator changes the window. The page renders the same count when it loads; this asks
// the endpoint admin's replay-count view (JSON, staff only) for the new one, the latest answer winning.
document.addEventListener('DOMContentLoaded', function () {
    const count = document.getElementById('replay-count');
    const since = document.getElementById('id_since');
    const until = document.getElementById('id_until');
    if (!count || !since || !until) {
        return;
    }
    let asked = 0;
    let timer = null;

    function refresh() {
        const question = ++asked;
        const url = new URL(count.dataset.url, window.location.href);
        url.searchParams.set('since', since.value);
        url.searchParams.set('until', until.value);
        count.setAttribute('aria-busy', 'true');
        fetch(url, {credentials: 'same-origin', headers: {'Accept': 'application/json'}})
            .then(function (response) {
                return response.json().then(function (body) {
                    return {ok: response.ok, body: body};
                });
            })
            .then(function (answer) {
                if (question !== asked) {
                    return;  // a newer window was asked for meanwhile
                }
                count.textContent = answer.body.text;
                count.classList.toggle('nothing', !answer.ok || !answer.body.inWindow);
                count.removeAttribute('aria-busy');
            })
            .catch(function () {
                if (question === asked) {
                    count.textContent = 'The count could not be updated: it is checked again when you replay.';
                    count.removeAttribute('aria-busy');
                }
            });
    }

    function soon() {
        clearTimeout(timer);
        timer = setTimeout(refresh, 250);
    }

    since.addEventListener('input', soon);
    until.addEventListener('input', soon);
    since.addEventListener('change', soon);
    until.addEventListener('change', soon);
});
