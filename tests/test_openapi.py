from io import StringIO

import yaml
from django.core.management import call_command


def test_the_schema_builds_without_warnings_and_describes_every_token_endpoint(tmp_path):
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target), stdout=StringIO())
    schema = yaml.safe_load(target.read_text())
    paths = schema["paths"]
    assert {"post", "get"} <= set(paths["/tokens"])
    for detail in ("description", "cardHolderName", "cardExpiryDate", "billingAddress", "schemeTransactionReference"):
        assert "put" in paths[f"/tokens/{{reference}}/{detail}"]
    assert {"get", "put"} <= set(paths["/tokens/{reference}/conflicts"])
    assert "post" in paths["/tokens/{reference}/detokenize"]
    create = paths["/tokens"]["post"]
    assert {"200", "201", "409", "400", "401"} <= set(create["responses"])
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"


def test_the_schema_and_docs_are_served(client):
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200
