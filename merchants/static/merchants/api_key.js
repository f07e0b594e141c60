'use strict';
// The "copy your key now" page: each Copy button puts its key on the clipboard and says so. A browser that gives no
// clipboard (a page not served over HTTPS, a refused permission) gets the key selected instead, to copy by hand.
(function () {
    function selectWhole(element) {
        const range = document.createRange();
        range.selectNodeContents(element);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
    }

    function say(button, text, copied) {
        const status = button.closest('.api-key').querySelector('.api-key-status');
        status.textContent = text;
        status.classList.toggle('copied', copied);
        button.classList.toggle('copied', copied);
        button.textContent = copied ? 'Copied' : 'Copy';
    }

    async function copy(button) {
        const key = document.getElementById(button.dataset.copy);
        try {
            if (!navigator.clipboard) {
                throw new Error('no clipboard');
            }
            await navigator.clipboard.writeText(key.textContent.trim());
            say(button, 'Copied to the clipboard. Paste it into the secret store now.', true);
        } catch (error) {
            selectWhole(key);
            say(button, 'Copying is not allowed here: the key is selected, press Ctrl+C (⌘C on a Mac).', false);
        }
    }

    document.addEventListener('DOMContentLoaded', function () {
        for (const button of document.querySelectorAll('button.api-key-copy')) {
            button.addEventListener('click', function () { copy(button); });
        }
        for (const key of document.querySelectorAll('.api-key-value')) {
            key.addEventListener('focus', function () { selectWhole(key); });
        }
    });
})();
