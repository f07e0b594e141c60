"""The expressions of a forward (vault.forwarding.expressions): what counts as one, where an error points, and how a
value is escaped for where it lands. Pure functions: the forwards themselves are tests/vault/test_forward.py."""

import json
from urllib.parse import parse_qs, unquote
from xml.etree import ElementTree

import pytest

from core.errors import BodyDoesNotMatchSchema
from tests.conftest import VISA
from vault.forwarding.expressions import (
    Expression,
    body_escape,
    request_fill,
    request_template,
    request_template_check,
    template_parse,
)

# A holder name that breaks every format it is pasted into unescaped.
AWKWARD = 'O\'Brien & "Sons" <ltd> a=b+c/d?e#f\\g'
VALUES = {"card.number": VISA, "card.holderName": AWKWARD, "card.expiryMonth": "05"}


def errors_of(raised: pytest.ExceptionInfo) -> list[tuple[str, str]]:
    return [(error["errorName"], error["jsonPath"]) for error in raised.value.validation_errors]


def test_it_cuts_a_template_into_text_and_expressions():
    template, errors = template_parse('{"n": "{{card.number}}", "m": "{{  card.expiryMonth }}"}', json_path="$.body")
    assert errors == []
    assert template.parts == (
        '{"n": "',
        Expression("card.number", 7),
        '", "m": "',
        Expression("card.expiryMonth", 31),
        '"}',
    )


@pytest.mark.parametrize(
    "name",
    [
        "card.number",
        "card.expiryYear2",
        "card.billingAddress.postalCode",
        "networkToken.cryptogram",
        "networkToken.eci",
        "destination.credentials.api_key",
        "destination.credentials.X-Secret",
    ],
)
def test_it_knows_every_expression_of_the_design(name):
    assert template_parse(f"{{{{ {name} }}}}", json_path="$.body")[1] == []


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{{ card.cvv }}", "expressionIsUnknown"),
        ("{{ card.billingAddress.planet }}", "expressionIsUnknown"),
        ("{{ destination.credentials. }}", "expressionIsMalformed"),
        ("{{ networkToken.dpan }}", "expressionIsUnknown"),
        ("{{ card.number", "expressionIsMalformed"),
        ("{{ }}", "expressionIsMalformed"),
        ("{{ card number }}", "expressionIsMalformed"),
        ("{{ card.number | upper }}", "expressionIsMalformed"),
        ("{{card}}", "expressionIsMalformed"),
    ],
)
def test_it_refuses_a_malformed_or_unknown_expression(text, error):
    assert [e["errorName"] for e in template_parse(text, json_path="$.body")[1]] == [error]


def test_an_error_names_where_the_expression_is_and_never_what_it_says():
    with pytest.raises(BodyDoesNotMatchSchema) as raised:
        request_template(
            path="/pay/{{ card.pin }}",
            headers={"X-Api-Key": "{{ destination.credentials", "Accept": "application/json"},
            body=f"{{{{ {VISA} }}}} {{{{ card.number }}}}",
        )
    assert errors_of(raised) == [
        ("expressionIsUnknown", "$.path"),
        ("expressionIsMalformed", "$.headers.X-Api-Key"),
        ("expressionIsMalformed", "$.body"),
    ]
    assert raised.value.validation_errors[0]["message"] == "The expression at character 5 is not one the vault knows"
    assert VISA not in json.dumps(raised.value.as_dict())


def test_it_refuses_credentials_the_destination_lacks_and_network_tokens_the_request_did_not_name():
    template = request_template(
        path="",
        headers={"Authorization": "Bearer {{ destination.credentials.apiKey }}"},
        body="{{ destination.credentials.secret }} {{ networkToken.cryptogram }}",
    )
    request_template_check(template, credential_names=["apiKey", "secret"], has_network_token=True)
    with pytest.raises(BodyDoesNotMatchSchema) as raised:
        request_template_check(template, credential_names=["apiKey", "secret"], has_network_token=False)
    assert errors_of(raised) == [("networkTokenIsMissing", "$.body")]
    with pytest.raises(BodyDoesNotMatchSchema) as raised:
        request_template_check(template, credential_names=[], has_network_token=True)
    assert errors_of(raised) == [("credentialIsUnknown", "$.headers.Authorization"), ("credentialIsUnknown", "$.body")]


def filled(body: str, content_type: str | None) -> str:
    headers = {"Content-Type": content_type} if content_type else {}
    return request_fill(request_template(path="", headers=headers, body=body), VALUES).body


def test_a_value_in_a_json_body_stays_inside_its_string():
    body = filled('{"name": "{{ card.holderName }}", "pan": "{{ card.number }}"}', "application/json; charset=utf-8")
    assert json.loads(body) == {"name": AWKWARD, "pan": VISA}


def test_a_value_in_a_form_body_stays_one_value():
    body = filled("name={{ card.holderName }}&pan={{ card.number }}", "application/x-www-form-urlencoded")
    assert parse_qs(body) == {"name": [AWKWARD], "pan": [VISA]}


@pytest.mark.parametrize("content_type", ["application/xml", "text/xml", "application/soap+xml"])
def test_a_value_in_an_xml_body_stays_text_or_attribute(content_type):
    body = filled('<card holder="{{ card.holderName }}"><name>{{ card.holderName }}</name></card>', content_type)
    card = ElementTree.fromstring(body)
    assert card.get("holder") == AWKWARD
    assert card.find("name").text == AWKWARD


@pytest.mark.parametrize("content_type", ["text/plain", None])
def test_a_value_in_any_other_body_goes_as_it_is(content_type):
    assert filled("{{ card.holderName }}:{{ card.expiryMonth }}", content_type) == f"{AWKWARD}:05"
    assert body_escape("TEXT/PLAIN")("a&b") == "a&b"


def test_a_value_in_the_path_is_one_segment():
    template = request_template(path="/cards/{{ card.holderName }}/pay", headers={}, body="")
    path = request_fill(template, VALUES).path
    assert path.count("/") == 3 and "?" not in path and "#" not in path
    assert unquote(path.split("/")[2]) == AWKWARD


def test_a_header_value_goes_as_it_is_but_never_with_a_line_break():
    template = request_template(path="", headers={"X-Holder": "{{ card.holderName }}"}, body="")
    assert request_fill(template, VALUES).headers == {"X-Holder": AWKWARD}
    with pytest.raises(BodyDoesNotMatchSchema) as raised:
        request_fill(template, {**VALUES, "card.holderName": "Eve\r\nX-Injected: 1"})
    assert errors_of(raised) == [("headerValueIsInvalid", "$.headers.X-Holder")]


def test_the_filled_request_shows_nothing_of_the_card():
    template = request_template(path="", headers={}, body="{{ card.number }}")
    assert VISA not in repr(request_fill(template, VALUES))
