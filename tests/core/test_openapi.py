from io import StringIO

import pytest
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


# ------------------------------------------------------------------------------------------------------------
# The schema tells what the API enforces (what Schemathesis holds it to, tests/project/test_fuzz_api.py)
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def schema(tmp_path_factory) -> dict:
    target = tmp_path_factory.mktemp("schema") / "schema.yaml"
    call_command("spectacular", "--file", str(target), stdout=StringIO())
    return yaml.safe_load(target.read_text())


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


def test_every_request_body_is_required_and_closed_to_unknown_fields(schema):
    components = schema["components"]["schemas"]
    for label, operation in operations(schema):
        if "requestBody" not in operation:
            continue
        assert operation["requestBody"]["required"] is True, label
        for content in operation["requestBody"]["content"].values():
            body = content["schema"]
            if "$ref" in body:
                assert components[body["$ref"].rsplit("/", 1)[1]]["additionalProperties"] is False, label


def test_every_path_id_has_the_pattern_of_its_alphabet_and_length(schema):
    for label, operation in operations(schema):
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                assert parameter["schema"]["pattern"].startswith("^[A-Za-z0-9_-]{1,"), (label, parameter)


def test_a_bare_string_body_has_the_bounds_of_its_field(schema):
    body = schema["paths"]["/tokens/{reference}/description"]["put"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"type": "string", "pattern": "^[^&<\\u0000]*$", "minLength": 1, "maxLength": 255}
    body = schema["paths"]["/tokens/{reference}/schemeTransactionReference"]["put"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["pattern"] == "^[a-zA-Z0-9 ]*$"


def test_listing_parameters_have_their_bounds(schema):
    for path in ("/tokens", "/events", "/network-tokens/batches/{batch_id}"):
        parameters = {p["name"]: p["schema"] for p in schema["paths"][path]["get"]["parameters"]}
        assert parameters["page"]["minimum"] == 1 and parameters["page"]["maximum"] == 1_000_000, path
        assert parameters["pageSize"]["minimum"] == 1 and parameters["pageSize"]["maximum"] >= 100, path


def test_get_tokens_answers_one_of_the_root_a_page_or_a_token(schema):
    answer = schema["paths"]["/tokens"]["get"]["responses"]["200"]["content"]["application/hal+json"]["schema"]
    shapes = schema["components"]["schemas"][answer["$ref"].rsplit("/", 1)[1]]["oneOf"]
    assert [shape["$ref"].rsplit("/", 1)[1] for shape in shapes] == ["RootOutput", "TokenListOutput", "TokenOutput"]


def test_the_correlation_header_has_its_bounds(schema):
    for path in ("/network-tokens", "/network-tokens/async"):
        (header,) = [p for p in schema["paths"][path]["post"]["parameters"] if p["name"] == "X-Correlation-Id"]
        assert header["required"] and header["schema"] == {"type": "string", "minLength": 1, "maxLength": 36}
