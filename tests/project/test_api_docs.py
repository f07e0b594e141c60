"""The interactive API docs (/api/docs/) are served by the product: Swagger UI's pinned files from the installed
drf-spectacular-sidecar, its start-up script from the docs' own address, nothing from a CDN or any other host (the
page runs on the admin's origin, where a script from elsewhere could act as the signed-in staff user)."""

import re

import pytest

pytestmark = pytest.mark.pci("6.2.4")


def assets_of(html: str) -> list[str]:
    return [asset.replace("&amp;", "&") for asset in re.findall(r'(?:src|href)="([^"]*)"', html)]


def test_the_docs_page_loads_nothing_from_another_host(client):
    page = client.get("/api/docs/")

    assert page.status_code == 200
    assets = assets_of(page.content.decode())
    assert {asset.rsplit("/", 1)[-1] for asset in assets} >= {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "favicon-32x32.png",
    }
    for asset in assets:
        assert asset.startswith("/") and not asset.startswith("//"), asset
    assert all(asset.startswith("/static/drf_spectacular_sidecar/") for asset in assets if "swagger-ui" in asset)


def test_the_docs_start_up_script_is_served_from_the_docs_address_and_names_no_other_host(client):
    page = client.get("/api/docs/").content.decode()
    [script] = [asset for asset in assets_of(page) if asset.startswith("/api/docs/")]

    response = client.get(script)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    code = response.content.decode()
    assert "SwaggerUIBundle(" in code and '"/api/schema/"' in code
    assert "http://" not in code and "https://" not in code
    # Swagger UI's default would send the schema's address to validator.swagger.io for a badge.
    assert '"validatorUrl": null' in code
