'use strict';
// The card form inside the vault's iframe (templates/capture/frame.html, served by vault/capture/pages.py).
//
// The shopper types the card here, on the vault's origin, and it is sent from here to POST /capture/<id>/card, which
// tokenizes it by the rules of POST /tokens. The page around the frame only hears the outcome, posted to the session's
// origin (the server wrote it into the page; nothing the parent says is listened to), never to '*'.
//
// What is checked here before anything is sent (complete number, Luhn, expiry not past, a name) only spares the
// shopper a round trip: the vault judges again (vault/rules.py), and its answer's field errors land on the same fields.
(function () {
    const root = document.getElementById('capture');
    const ORIGIN = root.dataset.origin;
    const framed = window.parent !== window;

    // The client secret rides in the fragment (capture.js puts it there): read it once, then drop it from the URL.
    let secret = '';
    try {
        secret = decodeURIComponent(location.hash.slice(1));
    } catch (error) {
        // Not a secret capture.js wrote: the vault will refuse the submission, as it refuses any wrong secret.
        secret = location.hash.slice(1);
    }
    if (location.hash) {
        history.replaceState(null, '', location.pathname + location.search);
    }

    function tell(message) {
        if (framed && ORIGIN) {
            window.parent.postMessage(message, ORIGIN);
        }
    }

    // The parent sizes the frame to the form (capture.js): told on load and whenever the form grows or shrinks.
    function reportHeight() {
        tell({type: 'vault.resize', height: Math.ceil(root.getBoundingClientRect().height)});
    }
    if (window.ResizeObserver) {
        new ResizeObserver(reportHeight).observe(root);
    }
    window.addEventListener('load', reportHeight);

    const announcer = document.getElementById('announce');
    function announce(text) {
        // Emptied first, so the same words twice are announced twice.
        announcer.textContent = '';
        window.setTimeout(function () { announcer.textContent = text; }, 50);
    }

    // A session the server already knows cannot take a card (expired, used, locked): the page says so, no form.
    if (root.dataset.errorName) {
        tell({type: 'vault.error', errorName: root.dataset.errorName, message: root.dataset.errorMessage});
        return;
    }

    const form = document.getElementById('card-form');
    const number = document.getElementById('card-number');
    const brandLabel = document.getElementById('card-brand');
    const expiry = document.getElementById('card-expiry');
    const name = document.getElementById('card-name');
    const save = document.getElementById('save');
    const formError = document.getElementById('form-error');
    const done = document.getElementById('done');
    const fields = {
        number: {input: number, error: document.getElementById('card-number-error'), label: 'Card number'},
        expiry: {input: expiry, error: document.getElementById('card-expiry-error'), label: 'Expiry date'},
        name: {input: name, error: document.getElementById('card-name-error'), label: 'Name on card'},
    };

    // ----------------------------------------------------------------------------------------------------------
    // Card numbers: the brand by its leading digits, for the label and the spacing only. The table follows
    // vault/cards.py (narrow ranges first); the vault decides the brand it stores.
    // ----------------------------------------------------------------------------------------------------------
    const BRANDS = [
        {code: 'AMEX', label: 'Amex', ranges: [[34, 34], [37, 37]], lengths: [15, 15], groups: [4, 6, 5]},
        {code: 'DINERS', label: 'Diners Club', ranges: [[300, 305], [3095, 3095], [36, 36], [38, 39]],
            lengths: [14, 19], groups: [4, 6, 4]},
        {code: 'JCB', label: 'JCB', ranges: [[3528, 3589]], lengths: [16, 19]},
        {code: 'DISCOVER', label: 'Discover', ranges: [[6011, 6011], [622126, 622925], [644, 649], [65, 65]],
            lengths: [16, 19]},
        {code: 'UNIONPAY', label: 'UnionPay', ranges: [[62, 62], [81, 81]], lengths: [16, 19]},
        {code: 'MASTERCARD', label: 'Mastercard', ranges: [[51, 55], [2221, 2720]], lengths: [16, 16]},
        {code: 'MAESTRO', label: 'Maestro', ranges: [[50, 50], [56, 58], [6304, 6304], [6390, 6390], [67, 67]],
            lengths: [12, 19]},
        {code: 'VISA', label: 'Visa', ranges: [[4, 4]], lengths: [13, 19]},
    ];
    const UNKNOWN = {code: '', label: '', lengths: [12, 19]};
    const LABELS = Object.fromEntries(BRANDS.map(function (brand) { return [brand.code, brand.label]; }));

    function brandOf(digits) {
        for (const brand of BRANDS) {
            for (const [low, high] of brand.ranges) {
                const width = String(low).length;
                const prefix = Number(digits.slice(0, width));
                if (digits.length >= width && prefix >= low && prefix <= high) {
                    return brand;
                }
            }
        }
        return UNKNOWN;
    }

    function groupsOf(digits, brand) {
        // Amex 4-6-5 and Diners' 14 digits 4-6-4; every other number in fours.
        const sizes = brand.groups && digits.length <= brand.groups.reduce(function (a, b) { return a + b; }, 0)
            ? brand.groups
            : [4, 4, 4, 4, 3];
        const parts = [];
        let at = 0;
        for (const size of sizes) {
            if (at >= digits.length) {
                break;
            }
            parts.push(digits.slice(at, at + size));
            at += size;
        }
        return parts.join(' ');
    }

    function luhnValid(digits) {
        let sum = 0;
        for (let i = 0; i < digits.length; i++) {
            let digit = Number(digits[digits.length - 1 - i]);
            if (i % 2 === 1) {
                digit *= 2;
                if (digit > 9) {
                    digit -= 9;
                }
            }
            sum += digit;
        }
        return sum % 10 === 0;
    }

    function digitsOf(value) {
        return value.replace(/\D/g, '');
    }

    // Reformats a field as it is typed, keeping the caret after the same number of digits it followed.
    function reformat(input, format) {
        const caret = input.selectionStart === null ? input.value.length : input.selectionStart;
        const digitsBefore = digitsOf(input.value.slice(0, caret)).length;
        const formatted = format(input.value);
        if (formatted === input.value) {
            return;
        }
        input.value = formatted;
        let position = 0;
        let seen = 0;
        while (position < formatted.length && seen < digitsBefore) {
            if (/\d/.test(formatted[position])) {
                seen++;
            }
            position++;
        }
        if (document.activeElement === input) {
            input.setSelectionRange(position, position);
        }
    }

    function formatNumber(value) {
        let digits = digitsOf(value);
        const brand = brandOf(digits);
        digits = digits.slice(0, brand.lengths[1]);
        return groupsOf(digits, brand);
    }

    function showBrand() {
        const brand = brandOf(digitsOf(number.value));
        brandLabel.textContent = brand.label;
        brandLabel.dataset.brand = brand.code;
    }

    // ----------------------------------------------------------------------------------------------------------
    // Expiry: MM/YY, the slash put in as the month is complete.
    // ----------------------------------------------------------------------------------------------------------
    let deleting = false;

    function formatExpiry(value) {
        let digits = digitsOf(value).slice(0, 4);
        if (digits.length === 1 && Number(digits) > 1) {
            digits = '0' + digits; // "4" can only be April
        }
        if (digits.length > 2 || (digits.length === 2 && !deleting)) {
            return digits.slice(0, 2) + '/' + digits.slice(2);
        }
        return digits;
    }

    // ----------------------------------------------------------------------------------------------------------
    // The checks before sending: the message of the first problem, or ''.
    // ----------------------------------------------------------------------------------------------------------
    function numberProblem() {
        const digits = digitsOf(number.value);
        if (!digits) {
            return 'Enter the card number';
        }
        if (digits.length < brandOf(digits).lengths[0]) {
            return 'The card number is incomplete';
        }
        if (!luhnValid(digits) || /^(\d)\1*$/.test(digits)) {
            return 'This card number is not valid';
        }
        return '';
    }

    function expiryParts() {
        const match = /^(\d{2})\/(\d{2})$/.exec(expiry.value.trim());
        return match ? {month: Number(match[1]), year: 2000 + Number(match[2])} : null;
    }

    function expiryProblem() {
        if (!expiry.value.trim()) {
            return 'Enter the expiry date';
        }
        const parts = expiryParts();
        if (!parts) {
            return 'The expiry date is incomplete: enter it as MM/YY';
        }
        if (parts.month < 1 || parts.month > 12) {
            return 'The expiry month must be 01 to 12';
        }
        const today = new Date();
        // A card is good until the end of its month.
        if (parts.year * 12 + parts.month < today.getFullYear() * 12 + today.getMonth() + 1) {
            return 'The expiry date is in the past';
        }
        return '';
    }

    function nameProblem() {
        return name.value.trim() ? '' : 'Enter the name on the card';
    }

    const problems = {number: numberProblem, expiry: expiryProblem, name: nameProblem};

    function describedBy(input, id, on) {
        const ids = (input.getAttribute('aria-describedby') || '').split(/\s+/).filter(function (each) {
            return each && each !== id;
        });
        if (on) {
            ids.push(id);
        }
        input.setAttribute('aria-describedby', ids.join(' '));
    }

    function setError(key, message) {
        const field = fields[key];
        field.error.textContent = message;
        field.error.hidden = !message;
        field.input.closest('.field').classList.toggle('invalid', Boolean(message));
        if (message) {
            field.input.setAttribute('aria-invalid', 'true');
        } else {
            field.input.removeAttribute('aria-invalid');
        }
        describedBy(field.input, field.error.id, Boolean(message));
    }

    function setFormError(message) {
        formError.textContent = message;
        formError.hidden = !message;
    }

    function check(key) {
        const message = problems[key]();
        setError(key, message);
        return message;
    }

    // ----------------------------------------------------------------------------------------------------------
    // Typing
    // ----------------------------------------------------------------------------------------------------------
    number.addEventListener('input', function () {
        reformat(number, formatNumber);
        showBrand();
        if (number.getAttribute('aria-invalid')) {
            check('number'); // a problem shown goes away as soon as it is mended
        }
    });
    expiry.addEventListener('beforeinput', function (event) {
        deleting = event.inputType.startsWith('delete');
    });
    expiry.addEventListener('input', function () {
        reformat(expiry, formatExpiry);
        if (expiry.getAttribute('aria-invalid')) {
            check('expiry');
        }
    });
    name.addEventListener('input', function () {
        if (name.getAttribute('aria-invalid')) {
            check('name');
        }
    });
    for (const key of Object.keys(fields)) {
        fields[key].input.addEventListener('blur', function () {
            // Judged when the shopper leaves a field they typed in, not while they are still typing.
            if (fields[key].input.value.trim()) {
                const message = check(key);
                if (message) {
                    announce(fields[key].label + ': ' + message);
                }
            }
        });
    }

    // ----------------------------------------------------------------------------------------------------------
    // Sending
    // ----------------------------------------------------------------------------------------------------------
    // Answers after which this session takes no card at all: the form goes, the reason stays.
    const FINAL = ['accessDenied', 'resourceNotFound', 'captureSessionExpired', 'captureSessionCompleted',
        'captureSessionLocked'];
    const FIELD_OF_PATH = [['$.cardNumber', 'number'], ['$.cardExpiryDate', 'expiry'], ['$.cardHolderName', 'name']];

    function sending(on) {
        save.disabled = on;
        save.textContent = on ? 'Saving card…' : 'Save card';
        form.setAttribute('aria-busy', on ? 'true' : 'false');
    }

    function forgetCard() {
        number.value = '';
        expiry.value = '';
        name.value = '';
        form.remove();
    }

    function finish(kind, text) {
        forgetCard();
        done.textContent = text;
        done.className = 'notice notice-' + kind;
        done.hidden = false;
        announce(text);
    }

    function succeeded(answer) {
        const card = answer.paymentInstrument || {};
        const lastFour = String(card.cardNumber || '').slice(-4);
        const brand = LABELS[card.brand] || '';
        finish('success', ['Card saved', [brand, lastFour ? '•••• ' + lastFour : ''].join(' ').trim()]
            .filter(Boolean).join(' · '));
        tell({
            type: 'vault.token',
            tokenId: answer.tokenId,
            href: answer.href,
            outcome: answer.outcome,
            paymentInstrument: card,
        });
    }

    function failed(answer) {
        const errorName = answer.errorName || 'internalErrorOccurred';
        const message = answer.message || 'The card could not be saved. Please try again.';
        tell({type: 'vault.error', errorName: errorName, message: message});
        if (FINAL.includes(errorName)) {
            finish('error', message);
            return;
        }
        const spoken = [];
        let general = '';
        for (const problem of answer.validationErrors || []) {
            const match = FIELD_OF_PATH.find(function (pair) { return (problem.jsonPath || '').startsWith(pair[0]); });
            if (match) {
                setError(match[1], problem.message);
                spoken.push(fields[match[1]].label + ': ' + problem.message);
            } else {
                general = general || problem.message;
            }
        }
        if (!spoken.length || general) {
            setFormError(general || message);
            spoken.push(general || message);
        }
        sending(false);
        const first = Object.keys(fields).find(function (key) { return fields[key].input.getAttribute('aria-invalid'); });
        if (first) {
            fields[first].input.focus();
        }
        announce(spoken.join('. '));
    }

    async function send() {
        const parts = expiryParts();
        const body = {
            clientSecret: secret,
            cardNumber: digitsOf(number.value),
            cardExpiryDate: {month: parts.month, year: parts.year},
            cardHolderName: name.value.trim(),
        };
        let response;
        let answer;
        try {
            response = await fetch(root.dataset.submitUrl, {
                method: 'POST',
                headers: {'Content-Type': 'application/json', 'Accept': 'application/json'},
                body: JSON.stringify(body),
                credentials: 'omit',
                cache: 'no-store',
                referrerPolicy: 'no-referrer',
            });
            answer = await response.json();
        } catch (error) {
            failed({
                errorName: 'networkError',
                message: 'The card could not be sent. Check your connection and try again.',
            });
            return;
        }
        if (answer && answer.type === 'vault.token') {
            succeeded(answer);
        } else {
            failed(answer || {});
        }
    }

    form.addEventListener('submit', function (event) {
        event.preventDefault();
        if (save.disabled) {
            return;
        }
        setFormError('');
        const found = [];
        for (const key of Object.keys(fields)) {
            const message = check(key);
            if (message) {
                found.push(key);
            }
        }
        if (found.length) {
            fields[found[0]].input.focus();
            announce(found.map(function (key) {
                return fields[key].label + ': ' + fields[key].error.textContent;
            }).join('. '));
            return;
        }
        if (!secret) {
            failed({errorName: 'accessDenied', message: 'This card form was opened without its key.'});
            return;
        }
        sending(true);
        send();
    });
})();
