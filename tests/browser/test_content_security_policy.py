"""The Content-Security-Policy (core/middleware.py) in a real browser: the admin's pages and the API docs work under
it, and the browser refuses nothing they load (a refusal is a console message naming the policy).

bea is back-office staff (see conftest); alice is the merchant whose Visa ending in 1111 she looks up.
"""

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import log_in, open_list, result_row
from tests.conftest import VISA
from vault import services

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.pci("6.2.4")]


@pytest.fixture
def refused(page: Page) -> list[str]:
    """What the browser refused to load or run under the page's policy, as it says in the console."""
    messages = []
    page.on(
        "console", lambda message: messages.append(message.text) if "Content Security Policy" in message.text else None
    )
    return messages


def test_the_api_docs_run_swagger_ui_under_the_policy(page, refused):
    page.goto("/api/docs/")

    expect(page.locator(".swagger-ui .opblock-summary-path").filter(has_text="/tokens").first).to_be_visible()
    assert refused == []


def test_the_admins_pages_work_under_the_policy(page, refused, bea, alice):
    card = services.Card(number=VISA, holder_name="Sherlock Holmes", expiry_month=5, expiry_year=2035)
    token = services.card_tokenize(merchant=alice, card=card).token
    log_in(page, bea)

    open_list(page, "vault", "token")
    page.locator("#searchbar").fill("1111")
    page.locator("#searchbar").press("Enter")
    expect(page).to_have_url(f"{page.url.split('?')[0]}?q=1111")
    expect(result_row(page, token.token_id)).to_have_count(1)
    result_row(page, token.token_id).locator("input.action-select").check()  # the actions bar is the admin's script
    expect(page.locator(".action-counter")).to_contain_text("1 of 1 selected")
    page.get_by_role("link", name=token.token_id).click()
    expect(page.locator(".field-masked_card")).to_contain_text("4444********1111")
    page.goto("/admin/dashboard/")
    expect(page.locator("svg#chart-tokens-per-day")).to_be_visible()

    assert refused == []
