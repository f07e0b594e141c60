"""Every admin page of a seeded vault, read as its HTML: no full card number, no network token number, anywhere."""

from io import StringIO

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.urls import reverse

from networks.models import NetworkToken, ProvisioningRequest
from vault.keys import key_ring
from vault.models import Token


@pytest.fixture
def seeded(db):
    """The demo data set (what it queues stays with the shared broker stub)."""
    call_command("seed_demo", "--tokens", "120", "--seed", "7", stdout=StringIO(), stderr=StringIO())


def secrets_in_the_vault() -> set[str]:
    ring = key_ring()
    numbers = {
        ring.decrypt(row.key_version, getattr(row, model.encrypted_field), associated_data=row.associated_data())
        for model in (Token, NetworkToken, ProvisioningRequest)
        for row in model.objects.exclude(**{f"{model.encrypted_field}__isnull": True})
    }
    return {number.split("|")[0] for number in numbers}  # a request's card: "number|month|year|holder"


def admin_pages() -> list[str]:
    """Every registered model's list and the change pages of its first rows, and the dashboard with its live part."""
    pages = [reverse("admin:index"), reverse("admin-dashboard"), reverse("admin-dashboard-live")]
    for model in admin.site._registry:
        app, name = model._meta.app_label, model._meta.model_name
        pages.append(reverse(f"admin:{app}_{name}_changelist"))
        pages += [
            reverse(f"admin:{app}_{name}_change", args=[pk]) for pk in model.objects.values_list("pk", flat=True)[:5]
        ]
    return pages


@pytest.mark.pci("3.4.1")
def test_no_admin_page_of_a_seeded_vault_shows_a_full_card_or_token_number(seeded, admin_client):
    secrets = secrets_in_the_vault()
    assert len(secrets) > 100  # the demo data set holds cards and network tokens to find
    pages = admin_pages()
    assert len(pages) > 40
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        leaked = [secret for secret in secrets if secret in html]
        assert not leaked, f"{url} shows a full card or token number"
