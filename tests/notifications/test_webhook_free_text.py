"""No card number in a webhook endpoint's description (issue 17, finding 8): it is stored and shown back in clear,
in the API and to operators, so a card number there is refused with 400 ``fieldContainsCardNumber`` at
``$.description``, never echoed.

alice (the ``api`` fixture) is the merchant registering endpoints.
"""

import pytest

from notifications.models import WebhookEndpoint
from tests.conftest import MASTERCARD, VISA_2

HOOK = "http://127.0.0.1:9/hook"


def refusal(response) -> list[tuple[str, str]]:
    assert response.status_code == 400, (response.status_code, response.content[:300])
    body = response.json()
    assert body["errorName"] == "bodyDoesNotMatchSchema", body
    return [(item["errorName"], item["jsonPath"]) for item in body["validationErrors"]]


@pytest.mark.pci("3.5.1")
@pytest.mark.parametrize(
    "description",
    [f"Orders of card {VISA_2}", "5555-5555-5555-4444", "5555 5555 5555 4444"],
    ids=["in a sentence", "dashes", "spaces"],  # never the number: test ids are written to logs and captures
)
def test_an_endpoint_description_holding_a_card_number_is_refused(api, description):
    response = api.post("/webhook-endpoints", {"url": HOOK, "description": description}, format="json")

    assert refusal(response) == [("fieldContainsCardNumber", "$.description")]
    assert VISA_2 not in response.content.decode() and MASTERCARD[:12] not in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.pci("3.5.1")
def test_a_description_update_holding_a_card_number_is_refused_and_the_old_one_kept(api):
    endpoint = api.post("/webhook-endpoints", {"url": HOOK, "description": "Orders"}, format="json").json()

    response = api.patch(f"/webhook-endpoints/{endpoint['id']}", {"description": f"card {VISA_2}"}, format="json")

    assert refusal(response) == [("fieldContainsCardNumber", "$.description")]
    assert WebhookEndpoint.objects.get().description == "Orders"


@pytest.mark.parametrize("description", ["", "Orders of 2035-05-01", "Shop 1234 5678 9012"])
def test_a_description_without_a_card_number_is_kept(api, description):
    response = api.post("/webhook-endpoints", {"url": HOOK, "description": description}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["description"] == description
