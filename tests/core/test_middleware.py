"""The Content-Security-Policy of the pages a browser renders (core/middleware.py): the admin and the API docs run
only the scripts the product serves itself, load nothing from another origin, and cannot be framed. The API's JSON
answers are left exactly as they were.

admin_client is a superuser ("admin"); alice (the ``api`` fixture) is a merchant calling the API.
"""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.pci("6.2.4")


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {name: sources for name, *sources in (part.split() for part in policy.split(";") if part.strip())}


@pytest.mark.parametrize("path", ["/admin/login/", "/api/docs/"])
def test_a_page_for_the_browser_runs_only_scripts_of_its_own_origin(client, path):
    response = client.get(path)

    assert response.status_code == 200
    policy = directives(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]  # no inline script, no eval, no CDN
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"] and policy["form-action"] == ["'self'"]


def test_the_admins_pages_carry_the_policy_once_signed_in(admin_client):
    response = admin_client.get(reverse("admin:vault_token_changelist"))

    assert directives(response)["script-src"] == ["'self'"]


def test_an_api_answer_carries_no_policy(api):
    response = api.get("/tokens")

    assert response.status_code == 200
    assert "Content-Security-Policy" not in response
