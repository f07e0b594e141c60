"""The one error contract (DESIGN.md, "Errors"): every failure of the API answers

    {"errorName", "message", "validationErrors"?: [{"errorName", "message", "jsonPath"}]}

and a rejected card number is never echoed back nor written to the logs (DESIGN.md, "Security model").

alice (the ``api`` fixture) is the merchant whose requests are refused here; anonymous clients have no key at all.
"""

import copy
import io
import json
import logging
import sqlite3
import sys
from datetime import timedelta

import psycopg
import pytest
from django.db import OperationalError
from django.utils import timezone
from rest_framework.exceptions import ErrorDetail
from rest_framework.test import APIClient

from core.errors import VALIDATION_MESSAGES, validation_errors
from core.logging import PAN_LIKE, RedactCardNumbersFilter, StructuredFormatter, redact
from tests.conftest import SHERLOCK, VISA, path_of, text_without_request_id

REMOVE = object()
ERROR_KEYS = {"errorName", "message", "validationErrors", "requestId"}
ITEM_KEYS = {"errorName", "message", "jsonPath"}


# ------------------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------------------
def body_with(**changes) -> dict:
    """The seed's body with dotted paths replaced (``REMOVE`` deletes): ``paymentInstrument.cardExpiryDate.month``."""
    body = copy.deepcopy(SHERLOCK)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        target = body
        for parent in parents:
            target = target[parent]
        if value is REMOVE:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return body


def error_of(response, status: int, name: str) -> dict:
    """Assert the shared error shape, the status and the top-level name; return the body."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert "json" in response["Content-Type"], response["Content-Type"]
    body = response.json()
    assert set(body) <= ERROR_KEYS and {"errorName", "message", "requestId"} <= set(body), body
    assert body["errorName"] == name, body
    assert isinstance(body["message"], str) and body["message"], body
    for item in body.get("validationErrors", []):
        assert set(item) == ITEM_KEYS, item
        assert all(isinstance(item[key], str) and item[key] for key in ITEM_KEYS), item
    return body


def validation_errors_of(response) -> list[tuple[str, str]]:
    body = error_of(response, 400, "bodyDoesNotMatchSchema")
    assert body.get("validationErrors"), body
    return [(item["errorName"], item["jsonPath"]) for item in body["validationErrors"]]


def assert_single_validation_error(response, name: str, path: str) -> None:
    assert validation_errors_of(response) == [(name, path)]


def past_month() -> dict:
    first_of_this_month = timezone.now().date().replace(day=1)
    last_month = first_of_this_month - timedelta(days=1)
    return {"month": last_month.month, "year": last_month.year}


@pytest.fixture
def console_log():
    """What the product's configured log handlers (those carrying the redaction filter) write during the test."""
    stream = io.StringIO()
    handlers = [
        handler
        for handler in logging.getLogger().handlers
        if isinstance(handler, logging.StreamHandler)
        and any(isinstance(f, RedactCardNumbersFilter) for f in handler.filters)
    ]
    assert handlers, "the root logger has no handler with RedactCardNumbersFilter: LOGGING is not applied"
    previous = [handler.setStream(stream) for handler in handlers]
    try:
        yield stream
    finally:
        for handler, old in zip(handlers, previous, strict=True):
            handler.setStream(old)


# ------------------------------------------------------------------------------------------------------------
# POST /tokens validation: one case a line, the exact validation name and JSON path
# ------------------------------------------------------------------------------------------------------------
INSTRUMENT = "$.paymentInstrument"

VALIDATION_CASES = [
    # id, changes, errorName, jsonPath
    (
        "pan-failing-luhn",
        {"paymentInstrument.cardNumber": "4444333322221112"},
        "panFailedLuhnCheck",
        f"{INSTRUMENT}.cardNumber",
    ),
    ("pan-too-short", {"paymentInstrument.cardNumber": "44443333222"}, "stringIsTooShort", f"{INSTRUMENT}.cardNumber"),
    (
        "pan-too-long",
        {"paymentInstrument.cardNumber": "44443333222211110000"},
        "stringIsTooLong",
        f"{INSTRUMENT}.cardNumber",
    ),
    (
        "pan-not-digits",
        {"paymentInstrument.cardNumber": "44443333abcd1111"},
        "stringFailedRegexCheck",
        f"{INSTRUMENT}.cardNumber",
    ),
    ("pan-as-integer", {"paymentInstrument.cardNumber": int(VISA)}, "fieldMustBeString", f"{INSTRUMENT}.cardNumber"),
    ("pan-null", {"paymentInstrument.cardNumber": None}, "fieldIsNull", f"{INSTRUMENT}.cardNumber"),
    ("pan-empty", {"paymentInstrument.cardNumber": ""}, "fieldIsEmpty", f"{INSTRUMENT}.cardNumber"),
    ("payment-instrument-missing", {"paymentInstrument": REMOVE}, "fieldIsMissing", INSTRUMENT),
    ("payment-instrument-a-string", {"paymentInstrument": "card/front"}, "fieldMustBeObject", INSTRUMENT),
    ("payment-instrument-null", {"paymentInstrument": None}, "fieldIsNull", INSTRUMENT),
    (
        "card-holder-name-missing",
        {"paymentInstrument.cardHolderName": REMOVE},
        "fieldIsMissing",
        f"{INSTRUMENT}.cardHolderName",
    ),
    (
        "card-holder-name-null",
        {"paymentInstrument.cardHolderName": None},
        "fieldIsNull",
        f"{INSTRUMENT}.cardHolderName",
    ),
    (
        "card-holder-name-empty",
        {"paymentInstrument.cardHolderName": ""},
        "fieldIsEmpty",
        f"{INSTRUMENT}.cardHolderName",
    ),
    (
        "card-holder-name-a-number",
        {"paymentInstrument.cardHolderName": 42},
        "fieldMustBeString",
        f"{INSTRUMENT}.cardHolderName",
    ),
    ("unknown-top-level-field", {"colour": "red"}, "unrecognizedField", "$.colour"),
    ("unknown-instrument-field", {"paymentInstrument.cvv": "987"}, "unrecognizedField", f"{INSTRUMENT}.cvv"),
    (
        "unknown-address-field",
        {"paymentInstrument.billingAddress.country": "GB"},
        "unrecognizedField",
        f"{INSTRUMENT}.billingAddress.country",
    ),
    (
        "unknown-expiry-field",
        {"paymentInstrument.cardExpiryDate.day": 1},
        "unrecognizedField",
        f"{INSTRUMENT}.cardExpiryDate.day",
    ),
    ("type-wrong", {"paymentInstrument.type": "card/plain"}, "fieldHasInvalidValue", f"{INSTRUMENT}.type"),
    ("type-missing", {"paymentInstrument.type": REMOVE}, "fieldIsMissing", f"{INSTRUMENT}.type"),
    ("expiry-missing", {"paymentInstrument.cardExpiryDate": REMOVE}, "fieldIsMissing", f"{INSTRUMENT}.cardExpiryDate"),
    (
        "expiry-a-string",
        {"paymentInstrument.cardExpiryDate": "05/35"},
        "fieldMustBeObject",
        f"{INSTRUMENT}.cardExpiryDate",
    ),
    (
        "expiry-year-missing",
        {"paymentInstrument.cardExpiryDate.year": REMOVE},
        "fieldIsMissing",
        f"{INSTRUMENT}.cardExpiryDate.year",
    ),
    (
        "month-a-string",
        {"paymentInstrument.cardExpiryDate.month": "5"},
        "fieldMustBeInteger",
        f"{INSTRUMENT}.cardExpiryDate.month",
    ),
    (
        "month-a-boolean",
        {"paymentInstrument.cardExpiryDate.month": True},
        "fieldMustBeInteger",
        f"{INSTRUMENT}.cardExpiryDate.month",
    ),
    (
        "month-a-float",
        {"paymentInstrument.cardExpiryDate.month": 5.5},
        "fieldMustBeInteger",
        f"{INSTRUMENT}.cardExpiryDate.month",
    ),
    (
        "month-13",
        {"paymentInstrument.cardExpiryDate.month": 13},
        "integerIsTooLarge",
        f"{INSTRUMENT}.cardExpiryDate.month",
    ),
    (
        "month-0",
        {"paymentInstrument.cardExpiryDate.month": 0},
        "integerIsTooSmall",
        f"{INSTRUMENT}.cardExpiryDate.month",
    ),
    (
        "year-a-string",
        {"paymentInstrument.cardExpiryDate.year": "2035"},
        "fieldMustBeInteger",
        f"{INSTRUMENT}.cardExpiryDate.year",
    ),
    ("description-with-ampersand", {"description": "Fish & Chips"}, "stringFailedRegexCheck", "$.description"),
    ("description-with-less-than", {"description": "a <b>bold</b> token"}, "stringFailedRegexCheck", "$.description"),
    ("description-256-chars", {"description": "d" * 256}, "stringIsTooLong", "$.description"),
    ("description-empty", {"description": ""}, "fieldIsEmpty", "$.description"),
    ("namespace-65-chars", {"namespace": "n" * 65}, "stringIsTooLong", "$.namespace"),
    ("namespace-empty", {"namespace": ""}, "fieldIsEmpty", "$.namespace"),
    (
        "scheme-reference-with-dash",
        {"schemeTransactionReference": "abc-123"},
        "stringFailedRegexCheck",
        "$.schemeTransactionReference",
    ),
    (
        "scheme-reference-57-chars",
        {"schemeTransactionReference": "s" * 57},
        "stringIsTooLong",
        "$.schemeTransactionReference",
    ),
    ("token-expiry-not-a-date", {"tokenExpiryDateTime": "yesterday"}, "dateHasInvalidFormat", "$.tokenExpiryDateTime"),
    (
        "billing-address-postal-code-missing",
        {"paymentInstrument.billingAddress.postalCode": REMOVE},
        "fieldIsMissing",
        f"{INSTRUMENT}.billingAddress.postalCode",
    ),
    (
        "billing-address-a-string",
        {"paymentInstrument.billingAddress": "221B Baker Street"},
        "fieldMustBeObject",
        f"{INSTRUMENT}.billingAddress",
    ),
]


@pytest.mark.parametrize(
    "changes, name, path", [case[1:] for case in VALIDATION_CASES], ids=[case[0] for case in VALIDATION_CASES]
)
def test_it_names_each_invalid_field_with_its_json_path(tokenize, changes, name, path):
    assert_single_validation_error(tokenize(body_with(**changes)), name, path)


# The contract names the path but not the validation name of these business-rule checks (a date in the past,
# an unknown country): any of the contract's names that fits is acceptable.
RULE_NAMES = {"fieldHasInvalidValue", "dateIsInThePast", "stringFailedRegexCheck"}


def test_it_refuses_a_card_expiry_date_in_the_past(tokenize):
    response = tokenize(body_with(**{"paymentInstrument.cardExpiryDate": past_month()}))
    [(name, path)] = validation_errors_of(response)
    assert path == f"{INSTRUMENT}.cardExpiryDate"
    assert name in RULE_NAMES


def test_it_refuses_a_token_expiry_in_the_past(tokenize):
    past = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    [(name, path)] = validation_errors_of(tokenize(body_with(tokenExpiryDateTime=past)))
    assert path == "$.tokenExpiryDateTime"
    assert name in RULE_NAMES


@pytest.mark.parametrize("country", ["XX", "gb", "GBR", "G"])
def test_it_refuses_a_country_code_that_is_not_iso_alpha_2(tokenize, country):
    response = tokenize(body_with(**{"paymentInstrument.billingAddress.countryCode": country}))
    [(name, path)] = validation_errors_of(response)
    assert path == f"{INSTRUMENT}.billingAddress.countryCode"
    assert name in RULE_NAMES | {"stringIsTooShort", "stringIsTooLong"}


def test_it_accepts_the_longest_allowed_strings(tokenize):
    # The boundaries just inside the limits, so the "too long" cases above are not refusing everything.
    response = tokenize(
        body_with(description="d" * 255, namespace="n" * 64, schemeTransactionReference="S 1" * 18 + "ab")
    )
    assert response.status_code == 201, response.json()


def test_it_lists_every_error_of_a_body_at_once(tokenize):
    body = body_with(
        **{
            "paymentInstrument.cardNumber": "4444333322221112",
            "paymentInstrument.cardExpiryDate.month": 13,
            "paymentInstrument.cardHolderName": REMOVE,
            "paymentInstrument.cvv": "987",
            "description": "Fish & Chips",
            "colour": "red",
        }
    )
    assert sorted(validation_errors_of(tokenize(body))) == sorted(
        [
            ("panFailedLuhnCheck", f"{INSTRUMENT}.cardNumber"),
            ("integerIsTooLarge", f"{INSTRUMENT}.cardExpiryDate.month"),
            ("fieldIsMissing", f"{INSTRUMENT}.cardHolderName"),
            ("unrecognizedField", f"{INSTRUMENT}.cvv"),
            ("stringFailedRegexCheck", "$.description"),
            ("unrecognizedField", "$.colour"),
        ]
    )


@pytest.mark.parametrize(
    "body", [[], ["paymentInstrument"], "card", 42], ids=["empty-array", "array", "string", "number"]
)
def test_it_refuses_a_body_that_is_not_an_object(tokenize, body):
    assert_single_validation_error(tokenize(body), "fieldMustBeObject", "$")


def test_it_never_echoes_the_rejected_value_in_validation_messages(tokenize):
    body = body_with(**{"paymentInstrument.cvv": "987", "paymentInstrument.cardHolderName": 9876543})
    response = tokenize(body)
    assert validation_errors_of(response)
    assert "987" not in text_without_request_id(response)


# ------------------------------------------------------------------------------------------------------------
# A rejected card number is never echoed back, nor logged
# ------------------------------------------------------------------------------------------------------------
REJECTED_NUMBERS = {
    "failing-luhn": "4444333322221112",
    "too-long": "44443333222211110000",
    "not-digits": "4444333322221111x",
    "grouped-with-spaces": "4444 3333 2222 1112",
}


@pytest.mark.parametrize("number", REJECTED_NUMBERS.values(), ids=REJECTED_NUMBERS.keys())
def test_it_never_echoes_a_rejected_card_number(tokenize, number):
    response = tokenize(body_with(**{"paymentInstrument.cardNumber": number}))
    [(_, path)] = validation_errors_of(response)
    assert path == f"{INSTRUMENT}.cardNumber"
    digits = "".join(ch for ch in number if ch.isdigit())
    text = text_without_request_id(response)
    assert number not in text
    assert digits not in text
    assert digits[-4:] + '"' not in text and digits[:6] not in text  # not even partly, as a mask would


@pytest.mark.parametrize("number", REJECTED_NUMBERS.values(), ids=REJECTED_NUMBERS.keys())
def test_it_never_logs_a_rejected_card_number(tokenize, caplog, console_log, number):
    caplog.set_level(logging.DEBUG)
    response = tokenize(body_with(**{"paymentInstrument.cardNumber": number}))
    assert response.status_code == 400
    digits = "".join(ch for ch in number if ch.isdigit())
    logged = (
        caplog.text
        + console_log.getvalue()
        + "".join(record.getMessage() + (record.exc_text or "") for record in caplog.records)
    )
    assert number not in logged
    assert digits not in logged


def test_it_never_echoes_a_card_number_from_a_malformed_body(api):
    response = api.post("/tokens", data='{"cardNumber": "4444333322221111", ', content_type="application/json")
    error_of(response, 400, "bodyIsNotJson")
    assert VISA.encode() not in response.content


# ------------------------------------------------------------------------------------------------------------
# Top-level errors
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data",
    ["{not json", "{'single': 'quotes'}", '{"a": 1}}', b"\xff\xfe\x00"],
    ids=["unquoted", "single-quotes", "trailing-brace", "not-utf8"],
)
def test_it_refuses_a_body_that_is_not_json(api, data):
    body = error_of(api.post("/tokens", data=data, content_type="application/json"), 400, "bodyIsNotJson")
    assert "validationErrors" not in body


@pytest.mark.parametrize("data", ["", "   \n"], ids=["empty", "whitespace"])
def test_it_refuses_an_empty_json_body(api, data):
    body = error_of(api.post("/tokens", data=data, content_type="application/json"), 400, "bodyIsEmpty")
    assert "validationErrors" not in body


def test_it_refuses_a_body_that_is_not_json_by_content_type(api):
    response = api.post("/tokens", data=json.dumps(SHERLOCK), content_type="text/plain")
    error_of(response, 415, "unsupportedContentType")


def test_it_refuses_a_form_encoded_body(api):
    response = api.post("/tokens", data="description=x", content_type="application/x-www-form-urlencoded")
    error_of(response, 415, "unsupportedContentType")


@pytest.mark.parametrize("path", ["/nope", "/tokens/x/y/z", "/token", "/tokens/", "/api/nope"])
def test_it_answers_endpoint_not_found_in_json_without_credentials(path):
    error_of(APIClient().get(path), 404, "endpointNotFound")


@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_it_answers_endpoint_not_found_to_a_merchant_whatever_the_method(api, method):
    error_of(getattr(api, method)("/nope"), 404, "endpointNotFound")


@pytest.mark.parametrize("method", ["patch", "put", "delete"])
def test_it_refuses_a_method_the_tokens_resource_does_not_have(api, method):
    error_of(getattr(api, method)("/tokens", {}, format="json"), 405, "methodNotAllowed")


def test_it_refuses_a_method_a_token_does_not_have(api, tokenize):
    path = path_of(tokenize().json()["tokenPaymentInstrument"]["href"])
    error_of(api.post(path, {}, format="json"), 405, "methodNotAllowed")
    error_of(api.patch(path, {}, format="json"), 405, "methodNotAllowed")


def test_it_answers_resource_not_found_for_an_unknown_token(api):
    error_of(api.get("/tokens/unknownreference"), 404, "resourceNotFound")
    error_of(api.delete("/tokens/unknownreference"), 404, "resourceNotFound")
    error_of(api.get("/tokens/unknownreference/conflicts"), 404, "resourceNotFound")
    error_of(api.put("/tokens/unknownreference/description", "x", format="json"), 404, "resourceNotFound")


def test_it_answers_resource_not_found_for_an_unknown_token_id(api):
    error_of(api.get("/tokens", {"tokenId": "0000000000000000000"}), 404, "resourceNotFound")


# ------------------------------------------------------------------------------------------------------------
# 500: no detail out, a redacted log line in
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture
def exploding_tokenize(monkeypatch):
    """card_tokenize fails the way a bug would, with a card number in its exception message."""

    def explode(**kwargs):
        raise RuntimeError(f"boom {VISA}")

    monkeypatch.setattr("vault.services.card_tokenize", explode)


def test_it_answers_an_unexpected_error_with_a_bare_500(api, exploding_tokenize):
    api.raise_request_exception = False
    response = api.post("/tokens", SHERLOCK, format="json")
    body = error_of(response, 500, "internalErrorOccurred")
    assert set(body) == {"errorName", "message", "requestId"}
    text = response.content.decode()
    for leak in ("boom", VISA, "Traceback", "RuntimeError", 'File "'):
        assert leak not in text


def failing_database(monkeypatch, cause: Exception):
    """card_tokenize fails as Django's database wrapper does: its OperationalError raised from the driver's."""

    def explode(**kwargs):
        raise OperationalError(str(cause)) from cause

    monkeypatch.setattr("vault.services.card_tokenize", explode)


@pytest.mark.parametrize(
    "cause",
    [
        psycopg.OperationalError("connection failed: Connection refused"),  # PostgreSQL down: no SQLSTATE
        sqlite3.OperationalError("database is locked"),
    ],
    ids=["postgresql-down", "sqlite-busy"],
)
def test_it_answers_503_with_retry_after_while_the_database_is_out_of_reach(api, monkeypatch, cause):
    failing_database(monkeypatch, cause)
    response = api.post("/tokens", SHERLOCK, format="json")
    assert set(error_of(response, 503, "serviceUnavailable")) == {"errorName", "message", "requestId"}
    assert response["Retry-After"] == "1"
    assert "Connection refused" not in response.content.decode() and "locked" not in response.content.decode()


def test_it_answers_a_database_bug_with_a_bare_500_not_a_503(api, monkeypatch):
    api.raise_request_exception = False
    failing_database(monkeypatch, sqlite3.OperationalError("no such table: vault_token"))
    response = api.post("/tokens", SHERLOCK, format="json")
    error_of(response, 500, "internalErrorOccurred")
    assert "Retry-After" not in response


def test_it_logs_an_unexpected_error_with_the_card_number_redacted(api, exploding_tokenize, caplog, console_log):
    api.raise_request_exception = False
    caplog.set_level(logging.DEBUG)
    assert api.post("/tokens", SHERLOCK, format="json").status_code == 500

    errors = [record for record in caplog.records if record.levelno >= logging.ERROR and record.exc_info]
    assert errors, "the unexpected error was not logged with its traceback"
    for record in errors:
        assert VISA not in record.getMessage()
        assert record.exc_text and "boom" in record.exc_text and "[REDACTED]" in record.exc_text
        assert VISA not in record.exc_text
    assert VISA not in caplog.text

    written = console_log.getvalue()
    assert "boom [REDACTED]" in written
    assert VISA not in written
    lines = [json.loads(line) for line in written.splitlines() if line.strip()]
    assert any(line["level"] == "ERROR" and "exc" in line for line in lines)


# ------------------------------------------------------------------------------------------------------------
# Redaction itself
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        VISA,
        "123456789012",  # 12 digits, the shortest card number
        "4444333322221111000",  # 19 digits, the longest
        "4444 3333 2222 1111",
        "4444-3333-2222-1111",
        "3782 822463 10005",  # Amex grouping 4-6-5
        "card=4444333322221111;",
        "4444333322221112",  # redacted whether or not it passes Luhn
    ],
)
def test_it_redacts_card_number_looking_digit_runs(text):
    digits = "".join(ch for ch in text if ch.isdigit())
    redacted = redact(f"before {text} after")
    assert "[REDACTED]" in redacted
    assert digits[-12:] not in redacted.replace(" ", "").replace("-", "")
    assert redacted.startswith("before ") and redacted.endswith(" after")


@pytest.mark.parametrize(
    "text",
    [
        "2026",
        "year 2026, month 05",
        "12345678901",  # 11 digits
        "order 42 of 2026-05-17",
        "05/2035",
        "127.0.0.1:8000",
    ],
)
def test_it_leaves_short_numbers_alone(text):
    assert redact(text) == text


def test_it_redacts_two_card_numbers_in_one_line():
    assert redact(f"{VISA} and 5555555555554444") == "[REDACTED] and [REDACTED]"


def test_it_redacts_a_card_number_next_to_a_short_number():
    assert redact(f"{VISA} 2026") == "[REDACTED] 2026"
    # A short group after a grouped number may be swallowed too: over-redaction is fine, a leak is not.
    assert "1111" not in redact("4444 3333 2222 1111 05")


def test_the_pan_pattern_does_not_match_across_other_separators():
    assert not PAN_LIKE.search("4444.3333.22")


def _record_with_card_number() -> logging.LogRecord:
    try:
        raise RuntimeError(f"boom {VISA}")
    except RuntimeError:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        "vault",
        logging.ERROR,
        __file__,
        1,
        "tokenizing %s for %s",
        (VISA, "alice"),
        exc_info,
        sinfo=f"stack with {VISA}",
    )


def test_the_log_filter_redacts_message_arguments_traceback_and_stack():
    record = _record_with_card_number()
    assert RedactCardNumbersFilter().filter(record) is True
    assert record.getMessage() == "tokenizing [REDACTED] for alice"
    assert "boom [REDACTED]" in record.exc_text and VISA not in record.exc_text
    assert VISA not in record.stack_info
    # Whichever handler formats the record next sees only the redacted text.
    assert VISA not in logging.Formatter().format(record)


def test_the_structured_formatter_writes_one_redacted_json_line():
    line = StructuredFormatter().format(_record_with_card_number())
    assert "\n" not in line
    data = json.loads(line)
    assert data["level"] == "ERROR" and data["logger"] == "vault"
    assert data["message"] == "tokenizing [REDACTED] for alice"
    assert "boom [REDACTED]" in data["exc"]
    assert VISA not in line


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("null_characters_not_allowed", "stringFailedRegexCheck"),  # the schema's strings exclude NUL by a pattern
        ("surrogate_characters_not_allowed", "fieldHasInvalidValue"),
    ],
)
def test_drf_refusals_of_characters_have_our_names_and_messages(code, name):
    """Every name the API answers is one of ours, never a DRF code."""
    detail = {"description": [ErrorDetail("Null characters are not allowed.", code=code)]}

    assert validation_errors(detail) == [
        {"errorName": name, "message": VALIDATION_MESSAGES[name], "jsonPath": "$.description"}
    ]
