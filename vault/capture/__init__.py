"""Card capture in the browser: the shopper types the card into a form the vault serves, and the card goes from the
shopper's browser to the vault; the merchant's page and servers only ever see the token (DESIGN.md, "Card capture
in the browser").

Why an iframe: a form drawn by the merchant's page is the merchant's code, which could read every key typed into it
(and so would have to be PCI-assessed like a card form of its own). The form lives in a page of the vault's origin,
framed by the merchant's page: the browser's same-origin policy keeps the page out of it, and the card is posted to
the vault by the frame itself. The page learns the outcome from a ``message`` event sent to its origin only. The
frame page's ``Content-Security-Policy: frame-ancestors <origin>`` lets only the session's origin frame it.

Why a session, and a secret: the browser holds no API key (anything in a page is public), so the merchant's server,
which does, opens a capture session (``capture_session_create``) and hands the page its id and its client secret.
The id names the session, in the frame's URL; the secret proves that a submission comes from the page the merchant
gave it to. Only the secret's SHA-256 is stored, and a submitted one is compared in constant time.

What a session promises (``capture_session_submit``):

- one origin, checked when the session is made: https, or http for ``localhost`` and ``127.0.0.1`` where loopback is
  allowed (``WEBHOOK_ALLOW_LOOPBACK``), and nothing but scheme, host and port;
- one card: the card is tokenized by ``vault.services.card_tokenize`` for the session's merchant, in its namespace,
  with its description, exactly as ``POST /tokens`` does it (201, 200 or 409; the namespace's limit; the
  ``token.created`` event and its webhooks), its details judged first by the card rules of ``POST /tokens``
  (``vault.rules``). A second card is refused, also when two arrive at once: the session's row is locked;
- ``CAPTURE_SESSION_LIFETIME_SECONDS`` (15 minutes) to do it;
- at most 5 failed submissions (a wrong client secret, a card its rules refuse); then none is taken, not even the
  right one. Each failure is written even though its request fails, and a wrong secret is audited as a failed
  authentication;
- rate limits: see ``throttling``.

Neither the card number nor the secret is kept in the session, logged or put in an exception.
"""

from vault.capture.selectors import capture_session_get, capture_session_list, capture_session_of
from vault.capture.services import (
    ValuesRefused,
    capture_card_problems,
    capture_origin_normalise,
    capture_session_create,
    capture_session_submit,
)

__all__ = [
    "ValuesRefused",
    "capture_card_problems",
    "capture_origin_normalise",
    "capture_session_create",
    "capture_session_get",
    "capture_session_list",
    "capture_session_of",
    "capture_session_submit",
]
