'use strict';
// capture.js: the vault's card form on a merchant's page (GET /capture.js; DESIGN "Card capture in the browser").
//
//     <div id="card"></div>
//     <script src="https://vault.example/capture.js"></script>
//     <script>
//       VaultCapture.mount(document.getElementById('card'), {
//         session: 'cs_…', clientSecret: '…',              // from POST /capture-sessions, by the merchant's server
//         onToken: function (token) { … token.tokenId … },  // optional
//         onError: function (error) { … error.errorName … } // optional
//       });
//     </script>
//
// The form lives in an iframe on the vault's own origin, so the card number is typed into, and sent from, a document
// the merchant's page cannot read: the page only ever learns the token. The client secret travels in the iframe's
// URL fragment, which a browser never sends to a server, so it is in no access log and no Referer.
//
// The frame answers with a `message` event posted to the session's origin only: {type: 'vault.token', tokenId, href,
// outcome, paymentInstrument} or {type: 'vault.error', errorName, message}; the page may listen for it itself or
// pass the callbacks above. `vault.resize` {height} lets the frame fit its form. Any message is trusted only when it
// comes from the vault's origin and from the frame this script drew; nothing is passed on to anyone else.
//
// Hand-written, no dependency and no build step: the file served is this file.
(function () {
    const script = document.currentScript;
    if (!script || !script.src) {
        throw new Error('capture.js must be loaded with <script src="…/capture.js">');
    }
    // The vault is wherever this script came from: the frame is drawn from there and only it is listened to.
    const VAULT_ORIGIN = new URL(script.src, document.baseURI).origin;
    const SESSION_ID = /^cs_[A-Za-z0-9_-]+$/;
    const MAX_HEIGHT = 2000;

    function mount(element, options) {
        const target = typeof element === 'string' ? document.querySelector(element) : element;
        if (!target || !target.appendChild) {
            throw new Error('VaultCapture.mount: the first argument must be an element (or a selector of one)');
        }
        const settings = options || {};
        if (typeof settings.session !== 'string' || !SESSION_ID.test(settings.session)) {
            throw new Error('VaultCapture.mount: `session` must be the id of a capture session (cs_…)');
        }
        if (typeof settings.clientSecret !== 'string' || !settings.clientSecret) {
            throw new Error('VaultCapture.mount: `clientSecret` must be the session\'s client secret');
        }

        const frame = document.createElement('iframe');
        frame.src = VAULT_ORIGIN + '/capture/' + encodeURIComponent(settings.session) + '#' +
            encodeURIComponent(settings.clientSecret);
        frame.title = 'Card details';
        frame.referrerPolicy = 'no-referrer';
        // Sized for the form until the frame says how tall it is.
        frame.style.cssText = 'display:block;width:100%;min-width:260px;height:330px;border:0;overflow:hidden;' +
            'background:transparent;color-scheme:normal;';

        function listener(event) {
            if (event.origin !== VAULT_ORIGIN || event.source !== frame.contentWindow) {
                return;
            }
            const data = event.data;
            if (!data || typeof data !== 'object') {
                return;
            }
            if (data.type === 'vault.resize') {
                const height = Number(data.height);
                if (Number.isFinite(height) && height > 0) {
                    frame.style.height = Math.ceil(Math.min(height, MAX_HEIGHT)) + 'px';
                }
            } else if (data.type === 'vault.token' && typeof settings.onToken === 'function') {
                settings.onToken({
                    type: data.type,
                    tokenId: data.tokenId,
                    href: data.href,
                    outcome: data.outcome,
                    paymentInstrument: data.paymentInstrument,
                });
            } else if (data.type === 'vault.error' && typeof settings.onError === 'function') {
                settings.onError({type: data.type, errorName: data.errorName, message: data.message});
            }
        }

        window.addEventListener('message', listener);
        target.appendChild(frame);
        return {
            frame: frame,
            unmount: function () {
                window.removeEventListener('message', listener);
                frame.remove();
            },
        };
    }

    window.VaultCapture = Object.freeze({mount: mount, origin: VAULT_ORIGIN});
})();
