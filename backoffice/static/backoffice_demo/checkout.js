'use strict';
// The demo checkout's own script (templates/demo/checkout.html): mounts the vault's card form with the session the
// page's server made, and shows what the form tells the page, as a merchant's checkout would. The card itself never
// reaches this page: only the token's id, its link and the masked card.
(function () {
    const box = document.getElementById('card-element');
    const result = document.getElementById('result');
    const pay = document.getElementById('place-order');
    let token = null;

    function show(kind, parts) {
        result.replaceChildren();
        for (const part of parts) {
            result.append(part);
        }
        result.className = 'result result-' + kind;
        result.hidden = false;
    }

    function code(text) {
        const element = document.createElement('code');
        element.id = 'token-id';
        element.textContent = text;
        return element;
    }

    window.VaultCapture.mount(box, {
        session: box.dataset.session,
        clientSecret: box.dataset.clientSecret,
        onToken: function (received) {
            token = received;
            show('success', ['Card saved as token ', code(received.tokenId), ' (' + received.outcome + ').']);
            pay.disabled = false;
        },
        onError: function (error) {
            show('error', [error.message + ' (' + error.errorName + ')']);
        },
    });

    pay.addEventListener('click', function () {
        if (!token) {
            return;
        }
        pay.disabled = true;
        pay.textContent = 'Order placed';
        show('success', [
            'Thank you! The shop\'s server would now charge token ', code(token.tokenId),
            ' through its payment provider (a forward, POST /forward).',
        ]);
    });
})();
