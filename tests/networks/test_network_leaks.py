"""No card number and no network token number in any answer, log record or webhook of the network-token paths.

alice is the merchant, with the default scopes (her cryptograms carry no token number). What is queued goes to the
shared broker stub (tests/conftest.py): the broker is outside the product.
"""

import logging

from networks.models import NetworkToken
from notifications.models import Event
from tests.conftest import AMEX, MASTERCARD, VISA
from vault.keys import key_ring


def test_no_card_or_token_number_reaches_a_log_record_an_answer_or_an_event(
    api, alice, caplog, broker, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.DEBUG)
    answers = []
    with django_capture_on_commit_callbacks(execute=True):
        for number, extra in ((VISA, {}), (MASTERCARD, {}), (AMEX, {"email": "holmes@example.com"})):
            card = {"cardNumber": number, "cardExpiryDate": {"month": 5, "year": 2035}}
            for path in ("/network-tokens", "/network-tokens/async"):
                answers.append(
                    api.post(path, {"card": card, **extra}, format="json", HTTP_X_CORRELATION_ID="leak-check")
                )
        declined = {"cardNumber": "4000000000000002", "cardExpiryDate": {"month": 5, "year": 2035}}
        answers.append(api.post("/network-tokens", {"card": declined}, format="json", HTTP_X_CORRELATION_ID="d"))
    assert sorted(a.status_code for a in answers) == [201, 201, 201, 202, 202, 202, 422]

    secrets = {VISA, MASTERCARD, AMEX, "4000000000000002"}
    for token in NetworkToken.objects.all():
        secrets.add(
            key_ring().decrypt(token.key_version, token.dpan_ciphertext, associated_data=token.associated_data())
        )
        answers.append(api.get(f"/network-tokens/{token.token_id}"))
        answers.append(api.post(f"/network-tokens/{token.token_id}/cryptograms"))
    assert len(secrets) == 7

    texts = [answer.content.decode() for answer in answers]
    texts += [record.getMessage() + (record.exc_text or "") for record in caplog.records]
    texts += [str(event.data) for event in Event.objects.all()]
    texts += [str(args) for _, args in broker.sent]  # ids only
    assert Event.objects.filter(type="network_token.created").count() == 3
    for text in texts:
        for secret in secrets:
            assert secret not in text
