"""Bulk import of cards from another provider: ``manage.py import_cards`` and ``vault.importing`` (issue 6, "Bulk
import of existing cards").

Actors (tests/conftest.py): alice is the merchant migrating her cards; bob is another merchant, whose vault must stay
untouched by alice's import. Card numbers are made up (tests/cards.py): Luhn-valid, in a BIN, never real.
"""

import csv
import gc
import io
import json
import random
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from core.errors import validation_errors
from notifications import services as notification_services
from notifications.models import Delivery, Event, WebhookEndpoint
from tests.cards import distinct_card_numbers
from tests.conftest import AMEX, MASTERCARD, VISA, card_request
from vault import importing, services
from vault.api.serializers import TokenCreateInput
from vault.events import token_event
from vault.importing import checking, reading
from vault.keys import key_ring
from vault.models import Namespace, Token

HEADER = [
    "externalReference",
    "cardNumber",
    "expiryDate",
    "cardHolderName",
    "address1",
    "postalCode",
    "city",
    "countryCode",
]
ADDRESS = ["221B Baker Street", "NW1 6XE", "London", "GB"]
FUTURE = f"05/{timezone.now().year + 3}"


# ------------------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------------------
def write_csv(path: Path, rows, header=HEADER) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def sample_rows(count: int, *, prefix: str = "411111", seed: int = 0, start: int = 0):
    """``count`` rows of distinct made-up cards from the BIN ``prefix``, references cust-<n>."""
    numbers = distinct_card_numbers(prefix, count, seed=seed)
    random.Random(seed).shuffle(numbers)
    return [[f"cust-{start + i}", number, FUTURE, "Ada Lovelace", *ADDRESS] for i, number in enumerate(numbers)]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def run_import(source: Path, merchant, *args) -> tuple[str, str]:
    """``manage.py import_cards`` as an operator runs it; returns what it printed (stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    call_command("import_cards", str(source), "--merchant", merchant.public_id, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def detokenized(token: Token) -> str:
    return key_ring().decrypt(token.key_version, token.pan_ciphertext, associated_data=token.associated_data())


def mapping_of(path: Path) -> dict[str, str]:
    """externalReference → tokenId, failing on a reference listed twice."""
    lines = read_csv(path)
    mapping = {line["externalReference"]: line["tokenId"] for line in lines}
    assert len(mapping) == len(lines), "a reference is listed twice"
    return mapping


# ------------------------------------------------------------------------------------------------------------
# Importing
# ------------------------------------------------------------------------------------------------------------
def test_it_imports_a_small_csv_into_tokens_that_decrypt_to_the_right_numbers(alice, tmp_path):
    rows = [
        ["ref-visa", VISA, FUTURE, "Sherlock Holmes", *ADDRESS],
        ["ref-mc", MASTERCARD, "11/39", "Mycroft Holmes", "", "", "", ""],
        ["ref-amex", AMEX, "1/2040", "Irene Adler", "Briony Lodge", "NW8", "London", "GB"],
    ]
    source = write_csv(tmp_path / "cards.csv", rows)

    out, _ = run_import(source, alice)

    mapping = read_csv(tmp_path / "cards.mapping.csv")
    assert [line["externalReference"] for line in mapping] == ["ref-visa", "ref-mc", "ref-amex"]
    tokens = {line["externalReference"]: Token.objects.get(token_id=line["tokenId"]) for line in mapping}
    for line in mapping:
        assert line["href"] == f"http://testserver/tokens/{tokens[line['externalReference']].reference}"
    visa, mastercard, amex = tokens["ref-visa"], tokens["ref-mc"], tokens["ref-amex"]
    assert [detokenized(t) for t in (visa, mastercard, amex)] == [VISA, MASTERCARD, AMEX]
    assert (visa.masked_number, visa.bin, visa.last_four, visa.brand) == ("4444********1111", "444433", "1111", "VISA")
    assert (mastercard.masked_number, mastercard.brand) == ("5555********4444", "MASTERCARD")
    assert (amex.masked_number, amex.brand) == ("3782*******0005", "AMEX")
    assert (visa.card_holder_name, visa.expiry_month) == ("Sherlock Holmes", 5)
    assert visa.expiry_year == timezone.now().year + 3
    assert (mastercard.expiry_month, mastercard.expiry_year, mastercard.billing_address) == (11, 2039, None)
    assert amex.billing_address == {
        "address1": "Briony Lodge",
        "postalCode": "NW8",
        "city": "London",
        "countryCode": "GB",
    }
    assert visa.description == "Visa card ending 1111"
    assert visa.merchant == alice and visa.namespace is None
    assert visa.expires_at > timezone.now() + services.default_lifetime() - timedelta(minutes=1)
    assert "Rows read: 3; imported: 3; reused: 0; rejected: 0" in out
    assert "Import complete." in out


def test_an_imported_token_answers_on_the_api_like_any_other(alice, api, tmp_path):
    source = write_csv(tmp_path / "cards.csv", [["ref-1", VISA, FUTURE, "Sherlock Holmes", *ADDRESS]])
    run_import(source, alice)
    token_id = mapping_of(tmp_path / "cards.mapping.csv")["ref-1"]

    answer = api.get(f"/tokens?tokenId={token_id}")
    again = api.post(
        "/tokens",
        card_request(
            cardNumber=VISA,
            cardHolderName="Sherlock Holmes",
            cardExpiryDate={"month": 5, "year": timezone.now().year + 3},
            billingAddress={
                "address1": "221B Baker Street",
                "postalCode": "NW1 6XE",
                "city": "London",
                "countryCode": "GB",
            },
        ),
        format="json",
    )

    assert answer.status_code == 200
    assert answer.json()["paymentInstrument"]["cardNumber"] == "4444********1111"
    assert again.status_code == 200 and again.json()["tokenId"] == token_id


def test_bad_rows_land_in_the_reject_file_with_line_and_reason_and_no_card_number_anywhere(alice, tmp_path):
    luhn_bad = VISA[:-1] + "2"
    short = "44443333222"
    rows = [
        ["ok-1", VISA, FUTURE, "Sherlock Holmes", *ADDRESS],  # line 2
        ["luhn", luhn_bad, FUTURE, "A", *ADDRESS],  # 3
        ["short", short, FUTURE, "A", *ADDRESS],  # 4
        ["spaces", "4444 3333 2222 1111", FUTURE, "A", *ADDRESS],  # 5
        ["past", MASTERCARD, "01/2020", "A", *ADDRESS],  # 6
        ["format", MASTERCARD, "2031-05", "A", *ADDRESS],  # 7
        ["month", MASTERCARD, "13/2031", "A", *ADDRESS],  # 8
        ["holder", MASTERCARD, FUTURE, "", *ADDRESS],  # 9
        ["long-holder", MASTERCARD, FUTURE, "x" * 256, *ADDRESS],  # 10
        ["country", MASTERCARD, FUTURE, "A", "1 Road", "N1", "London", "XX"],  # 11
        ["no-address1", MASTERCARD, FUTURE, "A", "", "N1", "London", "GB"],  # 12
        [AMEX, FUTURE, "A"],  # 13: columns slid, the number in the reference column
        ["slid", AMEX, FUTURE, AMEX, *ADDRESS],  # 14: the number in the holder column too
        ["", AMEX, FUTURE, "A", *ADDRESS],  # 15: no reference
    ]
    source = write_csv(tmp_path / "cards.csv", rows)

    out, err = run_import(source, alice)

    rejects = read_csv(tmp_path / "cards.rejects.csv")
    reasons = {(int(r["line"]), r["externalReference"], r["field"], r["reason"]) for r in rejects}
    assert reasons == {
        (3, "luhn", "cardNumber", "panFailedLuhnCheck"),
        (4, "short", "cardNumber", "stringIsTooShort"),
        (5, "spaces", "cardNumber", "stringFailedRegexCheck"),
        (6, "past", "expiryDate", "fieldHasInvalidValue"),
        (7, "format", "expiryDate", "dateHasInvalidFormat"),
        (8, "month", "expiryDate", "integerIsTooLarge"),
        (9, "holder", "cardHolderName", "fieldIsEmpty"),
        (10, "long-holder", "cardHolderName", "stringIsTooLong"),
        (11, "country", "countryCode", "fieldHasInvalidValue"),
        (12, "no-address1", "address1", "fieldIsMissing"),
        (13, "[REDACTED]", "", "rowHasWrongNumberOfColumns"),
        (14, "slid", "cardHolderName", "fieldHasInvalidValue"),
        (15, "", "externalReference", "fieldIsEmpty"),
    }
    assert all(r["message"] for r in rejects)
    assert Token.objects.filter(merchant=alice).count() == 1
    assert list(mapping_of(tmp_path / "cards.mapping.csv")) == ["ok-1"]
    assert "rejected: 13" in out
    outputs = "".join(path.read_text() for path in tmp_path.iterdir() if path.name != "cards.csv") + out + err
    for number in (VISA, luhn_bad, short, MASTERCARD, AMEX, "4444 3333 2222 1111"):
        assert number not in outputs
    for digits in (VISA[:12], MASTERCARD[:12], AMEX[:12]):
        assert digits not in outputs


def test_a_row_that_is_not_csv_utf8_or_has_a_nul_is_rejected_and_the_rest_imported(alice, tmp_path):
    ok = f"ok-1,{VISA},{FUTURE},Sherlock Holmes,,,,\n".encode()
    source = tmp_path / "cards.csv"
    source.write_bytes(
        ",".join(HEADER).encode()
        + b"\r\n"
        + b"latin,5555555555554444,"
        + FUTURE.encode()
        + b",Jos\xe9,,,,\n"  # 2: not UTF-8
        + b"nul,5555555555554444,"
        + FUTURE.encode()
        + b",Jo\x00e,,,,\n"  # 3
        + b"\n"  # 4: blank, skipped
        + b"quote,5555555555554444,"
        + FUTURE.encode()
        + b',"Jo"e,,,,\n'  # 5: text after a closing quote
        + ok  # 6
    )

    out, _ = run_import(source, alice)

    rejects = {(int(r["line"]), r["reason"]) for r in read_csv(tmp_path / "cards.rejects.csv")}
    assert rejects == {(2, "rowIsNotUtf8"), (3, "fieldHasInvalidValue"), (5, "rowIsNotValidCsv")}
    assert list(mapping_of(tmp_path / "cards.mapping.csv")) == ["ok-1"]
    assert "Rows read: 4; imported: 1; reused: 0; rejected: 3" in out


def test_free_text_with_tabs_backslashes_newlines_and_accents_is_stored_as_written(alice, tmp_path):
    holder = 'Zoë "Tab\there" Back\\slash\nNewline ☕'
    address = ["Rue de l'Église 1\t", "75001", "Paris \\ Île-de-France", "FR"]
    source = write_csv(
        tmp_path / "cards.csv", [["ref-1", VISA, FUTURE, holder, *address, "Café\tNo 1"]], header=[*HEADER, "ns"]
    )

    run_import(source, alice, "--namespace-column", "ns")

    token = Token.objects.get(token_id=mapping_of(tmp_path / "cards.mapping.csv")["ref-1"])
    assert token.card_holder_name == holder
    assert token.billing_address == {
        "address1": address[0],
        "postalCode": "75001",
        "city": address[2],
        "countryCode": "FR",
    }
    assert token.namespace.name == "Café\tNo 1"
    assert Event.objects.get(data__tokenId=token.token_id).data["namespace"] == "Café\tNo 1"
    assert detokenized(token) == VISA


def test_a_spreadsheet_export_with_a_byte_order_mark_crlf_and_loose_header_case_imports(alice, tmp_path):
    source = tmp_path / "cards.csv"
    source.write_bytes(
        (
            "\ufeff externalreference ,CARDNUMBER,expirydate,CardHolderName\r\n"
            f"ref-1,{VISA},{FUTURE},Sherlock Holmes\r\n"
        ).encode()
    )

    out, _ = run_import(source, alice)

    assert "imported: 1" in out
    assert list(mapping_of(tmp_path / "cards.mapping.csv")) == ["ref-1"]


@pytest.mark.parametrize(
    "number",
    [
        VISA[:-1] + "2",
        "44443333222",
        "44443333222211110000",
        "4444-3333-2222-1111",
        "４４４４３３３３２２２２１１１１",
        "",
    ],
)
def test_the_import_refuses_a_card_number_exactly_as_the_api_does(number):
    api = _api_error_names(card_request(cardNumber=number))
    assert api == {p[1] for p in _import_problems(number=number)}


@pytest.mark.parametrize(
    "month, year, text",
    [
        (1, 2020, "01/2020"),
        (13, 2031, "13/2031"),
        (0, 2031, "00/2031"),
        (1, 1999, "01/1999"),
        (1, 2100, "01/2100"),
        (12, 2099, "12/2099"),
    ],
)
def test_the_import_judges_an_expiry_date_exactly_as_the_api_does(month, year, text):
    api = _api_error_names(card_request(cardExpiryDate={"month": month, "year": year}))
    assert api == {p[1] for p in _import_problems(expiry=text)}


@pytest.mark.parametrize(
    "changes",
    [
        {"cardHolderName": ""},
        {"cardHolderName": "x" * 256},
        {"cardHolderName": "x" * 255},
        {"cardHolderName": " "},
        {"countryCode": "XX"},
        {"countryCode": "G"},
        {"countryCode": "GBR"},
        {"countryCode": "gb"},
        {"address1": None},
        {"postalCode": None},
        {"city": None},
        {"countryCode": None},
        {"address1": "x" * 81},
        {"address2": "x" * 81},
        {"address3": "x" * 80},
        {"postalCode": "x" * 16},
        {"city": "x" * 51},
        {"state": "x" * 31},
        {"state": "x" * 30},
    ],
)
def test_the_import_judges_holder_and_address_exactly_as_the_api_does(changes):
    address = {
        "address1": "221B Baker Street",
        "address2": "Marylebone",
        "address3": "Westminster",
        "postalCode": "NW1 6XE",
        "city": "London",
        "state": "Greater London",
        "countryCode": "GB",
    }
    holder = changes.get("cardHolderName", "Sherlock Holmes")
    for name, value in changes.items():
        if name != "cardHolderName":
            address[name] = value
    address = {name: value for name, value in address.items() if value is not None}
    api = _api_error_names(card_request(cardHolderName=holder, billingAddress=address))
    assert api == {p[1] for p in _import_problems(holder=holder, address=address)}


def _api_error_names(body: dict) -> set[str]:
    serializer = TokenCreateInput(data=body)
    return set() if serializer.is_valid() else {e["errorName"] for e in validation_errors(serializer.errors)}


def _import_problems(*, number=VISA, expiry=FUTURE, holder="Sherlock Holmes", address=None) -> list:
    header = ["externalReference", "cardNumber", "expiryDate", "cardHolderName", *importing.ADDRESS_COLUMNS]
    layout = reading.layout_of(header, None)
    cells = ["ref", number, expiry, holder, *((address or {}).get(name, "") for name in importing.ADDRESS_COLUMNS)]
    checked = checking.row_of(cells, layout, 2, today=timezone.now().date())
    return checked.problems if isinstance(checked, checking.Reject) else []


# ------------------------------------------------------------------------------------------------------------
# Identity: duplicates, namespaces
# ------------------------------------------------------------------------------------------------------------
def test_duplicates_within_the_file_and_against_the_vault_reuse_the_token(alice, bob, tmp_path):
    already = services.card_tokenize(merchant=alice, card=services.Card(VISA, "Sherlock Holmes", 5, 2035)).token
    bobs = services.card_tokenize(merchant=bob, card=services.Card(MASTERCARD, "Bob", 5, 2035)).token
    rows = [
        ["a-1", VISA, FUTURE, "Sherlock Holmes", *ADDRESS],  # in alice's vault already
        ["a-2", MASTERCARD, FUTURE, "Mycroft Holmes", *ADDRESS],  # in bob's vault only: new for alice
        ["a-3", MASTERCARD, FUTURE, "Mycroft Holmes", *ADDRESS],  # same batch
        ["a-4", AMEX, FUTURE, "Irene Adler", *ADDRESS],
        ["a-5", AMEX, "06/2040", "Irene Adler", *ADDRESS],  # next batch, details differ: stored ones kept
        ["a-6", VISA, FUTURE, "Sherlock Holmes", *ADDRESS],
    ]
    source = write_csv(tmp_path / "cards.csv", rows)

    out, _ = run_import(source, alice, "--batch-size", "4")

    mapping = mapping_of(tmp_path / "cards.mapping.csv")
    assert mapping["a-1"] == mapping["a-6"] == already.token_id
    assert mapping["a-2"] == mapping["a-3"] != bobs.token_id
    assert mapping["a-4"] == mapping["a-5"]
    assert Token.objects.filter(merchant=alice).count() == 3
    assert Token.objects.filter(merchant=bob).count() == 1
    amex = Token.objects.get(token_id=mapping["a-4"])
    assert (amex.expiry_month, amex.expiry_year) == (5, timezone.now().year + 3)
    assert "Rows read: 6; imported: 2; reused: 4; rejected: 0" in out
    # a-1 and a-6 differ from the vault's (expiry, address); a-5 from a-4's.
    assert "3 reused row(s) differed" in out


def test_new_cards_skip_the_lookup_and_a_batch_holding_a_stored_card_is_stored_again_with_it(alice, tmp_path):
    # A migration's cards are new: looking each batch up first would cost a fifth of the import. A batch holding a
    # card alice's vault has already is refused by the unique constraint, rolled back and stored with its lookup;
    # the batch after it is looked up first, until one meets no stored card.
    done = []
    first = sample_rows(4, prefix="453211", seed=21)
    importing.cards_import(
        merchant=alice, source=write_csv(tmp_path / "first.csv", first), batch_size=5, on_batch=done.append
    )
    assert [batch.looked_up for batch in done] == [False]
    done.clear()
    old = {row[0]: row for row in first}
    new = iter(sample_rows(21, prefix="520000", seed=22, start=100))
    batches = [
        [next(new) for _ in range(5)],
        [next(new) for _ in range(5)],
        [next(new), old["cust-0"], next(new), old["cust-1"], next(new)],  # refused, then looked up
        [old["cust-2"], next(new), next(new), next(new), old["cust-3"]],  # looked up first
        [next(new) for _ in range(5)],  # looked up first: finds none
    ]
    rows = [row for batch in batches for row in batch]

    result = importing.cards_import(
        merchant=alice, source=write_csv(tmp_path / "second.csv", rows), batch_size=5, on_batch=done.append
    )

    assert [batch.looked_up for batch in done] == [False, False, True, True, True]
    reused = [batch.counts.reused for batch in done]
    assert [now - before for before, now in zip([0, *reused], reused, strict=False)] == [0, 0, 2, 2, 0]
    assert (result.counts.imported, result.counts.reused) == (21, 4)
    first_mapping, mapping = mapping_of(tmp_path / "first.mapping.csv"), mapping_of(tmp_path / "second.mapping.csv")
    assert all(mapping[reference] == first_mapping[reference] for reference in old)
    assert Token.objects.filter(merchant=alice).count() == 25
    assert Event.objects.filter(merchant=alice, type="token.created").count() == 25


def test_an_expired_token_in_the_vault_is_replaced_as_the_api_replaces_it(alice, tmp_path):
    old = services.card_tokenize(merchant=alice, card=services.Card(VISA, "Sherlock Holmes", 5, 2035)).token
    Token.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    source = write_csv(tmp_path / "cards.csv", [["ref-1", VISA, FUTURE, "Sherlock Holmes", *ADDRESS]])

    run_import(source, alice)

    old.refresh_from_db()
    assert old.deleted_at is not None and old.deleted_reason == "expired"
    new = Token.objects.get(token_id=mapping_of(tmp_path / "cards.mapping.csv")["ref-1"])
    assert new.pk != old.pk and detokenized(new) == VISA


def test_the_namespace_column_works_and_the_17th_card_in_a_namespace_is_rejected(alice, tmp_path):
    numbers = distinct_card_numbers("520000", 18, seed=3)
    services.card_tokenize(merchant=alice, card=services.Card(numbers[0], "Watson", 5, 2035), namespace="shopper-1")
    rows = [[f"s1-{i}", number, FUTURE, "Watson", "shopper-1"] for i, number in enumerate(numbers[1:17], start=1)]
    rows += [
        ["s1-0", numbers[0], FUTURE, "Watson", "shopper-1"],  # already stored: reused, not refused
        ["s2-0", numbers[1], FUTURE, "Watson", "shopper-2"],  # the same card in another namespace: its own token
        ["none-0", numbers[1], FUTURE, "Watson", ""],  # and without a namespace: another one
        ["s1-again", numbers[1], FUTURE, "Watson", "shopper-1"],
    ]
    source = write_csv(
        tmp_path / "cards.csv",
        rows,
        header=["externalReference", "cardNumber", "expiryDate", "cardHolderName", "shopper"],
    )

    out, _ = run_import(source, alice, "--namespace-column", "shopper", "--batch-size", "7")

    rejects = read_csv(tmp_path / "cards.rejects.csv")
    assert [(r["line"], r["externalReference"], r["field"], r["reason"]) for r in rejects] == [
        ("17", "s1-16", "shopper", "namespaceCardLimitReached"),  # the 17th distinct card of shopper-1
    ]
    mapping = mapping_of(tmp_path / "cards.mapping.csv")
    shopper_1 = Namespace.objects.get(merchant=alice, name="shopper-1")
    assert Token.objects.filter(namespace=shopper_1, deleted_at__isnull=True).count() == 16
    assert Token.objects.get(token_id=mapping["s2-0"]).namespace.name == "shopper-2"
    assert Token.objects.get(token_id=mapping["none-0"]).namespace is None
    assert len({mapping["s1-1"], mapping["s2-0"], mapping["none-0"]}) == 3
    assert mapping["s1-again"] == mapping["s1-1"]
    assert "rejected: 1" in out


def test_a_namespace_column_needs_the_option_and_an_unknown_column_stops_the_import(alice, tmp_path):
    source = write_csv(
        tmp_path / "cards.csv",
        [["r", VISA, FUTURE, "A", "shopper-1"]],
        header=["externalReference", "cardNumber", "expiryDate", "cardHolderName", "shopper"],
    )
    with pytest.raises(CommandError, match="unknown column.*shopper.*--namespace-column"):
        run_import(source, alice)
    missing = write_csv(
        tmp_path / "missing.csv", [["r", VISA, "A"]], header=["externalReference", "cardNumber", "cardHolderName"]
    )
    with pytest.raises(CommandError, match="missing column.*expiryDate"):
        run_import(missing, alice)
    assert not Token.objects.exists()


def test_the_help_names_every_column_the_file_may_have():
    from vault.management.commands.import_cards import Command

    for name in (*importing.REQUIRED_COLUMNS, *importing.ADDRESS_COLUMNS, "--namespace-column", "MM/YYYY", "MM/YY"):
        assert name in Command.help


# ------------------------------------------------------------------------------------------------------------
# Resuming
# ------------------------------------------------------------------------------------------------------------
class Interrupted(Exception):
    pass


def interrupt_after(batches: int):
    def on_batch(done: importing.BatchDone):
        if done.number == batches:
            raise Interrupted

    return on_batch


def test_an_interrupted_import_rerun_finishes_with_one_token_per_card_and_a_complete_mapping(alice, tmp_path):
    rows = sample_rows(50)
    rows[40] = ["dup-of-3", rows[3][1], FUTURE, "Ada Lovelace", *ADDRESS]  # a later batch meets an earlier card
    rows[45][1] = rows[45][1][:-1] + str((int(rows[45][1][-1]) + 1) % 10)  # Luhn fails
    source = write_csv(tmp_path / "cards.csv", rows)

    with pytest.raises(Interrupted):
        importing.cards_import(merchant=alice, source=source, batch_size=20, on_batch=interrupt_after(1))
    assert Token.objects.filter(merchant=alice).count() == 20
    assert len(mapping_of(tmp_path / "cards.mapping.csv")) == 20
    out, _ = run_import(source, alice, "--batch-size", "20")

    assert "Resumed at line 22." in out
    assert "Rows read: 50; imported: 48; reused: 1; rejected: 1" in out
    mapping = mapping_of(tmp_path / "cards.mapping.csv")
    assert list(mapping) == [row[0] for i, row in enumerate(rows) if i != 45]
    assert mapping["dup-of-3"] == mapping["cust-3"]
    assert Token.objects.filter(merchant=alice).count() == 48
    for row in rows[:5] + rows[25:30]:
        assert detokenized(Token.objects.get(token_id=mapping[row[0]])) == row[1]
    assert [int(r["line"]) for r in read_csv(tmp_path / "cards.rejects.csv")] == [47]
    assert Event.objects.filter(merchant=alice, type="token.created").count() == 48


def test_a_crash_between_a_commit_and_its_checkpoint_stores_nothing_twice(alice, tmp_path):
    rows = sample_rows(30, seed=5)
    source = write_csv(tmp_path / "cards.csv", rows)
    checkpoint = tmp_path / "cards.csv.progress"
    with pytest.raises(Interrupted):
        importing.cards_import(merchant=alice, source=source, batch_size=10, on_batch=interrupt_after(1))
    after_the_first_batch = checkpoint.read_bytes()
    with pytest.raises(Interrupted):
        importing.cards_import(merchant=alice, source=source, batch_size=10, on_batch=interrupt_after(1))
    # A crash after the second batch committed and wrote its mapping lines, before its checkpoint replaced the first.
    checkpoint.write_bytes(after_the_first_batch)
    assert Token.objects.filter(merchant=alice).count() == 20  # two batches committed, one checkpointed
    assert len(read_csv(tmp_path / "cards.mapping.csv")) == 20  # the second's lines were written, then truncated

    result = importing.cards_import(merchant=alice, source=source, batch_size=10)

    assert result.complete and result.resumed_at_line == 12
    assert Token.objects.filter(merchant=alice).count() == 30
    mapping = mapping_of(tmp_path / "cards.mapping.csv")
    assert list(mapping) == [row[0] for row in rows]
    # The redone batch's cards were in the vault already: counted as reused, never stored twice.
    assert (result.counts.imported, result.counts.reused) == (20, 10)


def test_a_finished_import_rerun_does_nothing_and_restart_maps_the_same_tokens(alice, tmp_path):
    source = write_csv(tmp_path / "cards.csv", sample_rows(5))
    run_import(source, alice)
    before = mapping_of(tmp_path / "cards.mapping.csv")

    out, _ = run_import(source, alice)
    assert "This file was imported already" in out
    assert mapping_of(tmp_path / "cards.mapping.csv") == before
    out, _ = run_import(source, alice, "--restart")

    assert "imported: 0; reused: 5" in out
    assert mapping_of(tmp_path / "cards.mapping.csv") == before
    assert Token.objects.filter(merchant=alice).count() == 5


def test_a_changed_file_or_another_merchant_does_not_resume_the_checkpoint(alice, bob, tmp_path):
    source = write_csv(tmp_path / "cards.csv", sample_rows(6))
    with pytest.raises(Interrupted):
        importing.cards_import(merchant=alice, source=source, batch_size=2, on_batch=interrupt_after(1))

    with pytest.raises(CommandError, match="being imported for merchant"):
        run_import(source, bob)
    write_csv(source, sample_rows(7))
    with pytest.raises(CommandError, match="changed since its import began"):
        run_import(source, alice)
    assert not Token.objects.filter(merchant=bob).exists()


def test_outputs_left_by_another_import_are_not_overwritten(alice, tmp_path):
    source = write_csv(tmp_path / "cards.csv", sample_rows(2))
    (tmp_path / "cards.mapping.csv").write_text("externalReference,tokenId,href\nold,TOKEN,href\n")

    with pytest.raises(CommandError, match="exists and there is no import"):
        run_import(source, alice)
    assert "old,TOKEN" in (tmp_path / "cards.mapping.csv").read_text()


# ------------------------------------------------------------------------------------------------------------
# Events
# ------------------------------------------------------------------------------------------------------------
def test_token_created_events_are_written_for_new_tokens_only_as_token_event_writes_them(alice, tmp_path):
    already = services.card_tokenize(merchant=alice, card=services.Card(VISA, "Sherlock Holmes", 5, 2035)).token
    source = write_csv(
        tmp_path / "cards.csv",
        [
            ["ref-1", VISA, FUTURE, "Sherlock Holmes", *ADDRESS],
            ["ref-2", MASTERCARD, FUTURE, "Mycroft Holmes", *ADDRESS, "club"],
        ],
        header=[*HEADER, "ns"],
    )
    events_before = set(Event.objects.values_list("pk", flat=True))

    run_import(source, alice, "--namespace-column", "ns")

    created = Event.objects.exclude(pk__in=events_before)
    assert created.count() == 1
    event = created.get()
    token = Token.objects.select_related("merchant", "namespace").get(
        token_id=mapping_of(tmp_path / "cards.mapping.csv")["ref-2"]
    )
    assert event.type == "token.created" and event.merchant == alice
    assert not Event.objects.filter(data__tokenId=already.token_id).exclude(pk__in=events_before).exists()
    token_event(token, "token.created")  # what the API would have written for the same token
    assert Event.objects.latest("pk").data == event.data
    assert "5555" + "*" * 8 + "4444" in json.dumps(event.data) and MASTERCARD not in json.dumps(event.data)


def test_the_import_writes_events_only_and_the_dispatcher_makes_their_deliveries(
    alice, tmp_path, broker, django_capture_on_commit_callbacks
):
    endpoint = WebhookEndpoint.objects.create(merchant=alice, url="https://example.com/hook")
    WebhookEndpoint.objects.create(merchant=alice, url="https://example.com/other", event_types=["token.deleted"])
    source = write_csv(tmp_path / "cards.csv", sample_rows(5))

    run_import(source, alice, "--batch-size", "2")

    events = Event.objects.filter(merchant=alice, type="token.created")
    assert events.count() == 5
    assert not Delivery.objects.filter(event__merchant=alice).exists()
    assert broker.deliveries == []
    with django_capture_on_commit_callbacks(execute=True):
        notification_services.events_fan_out()  # what a worker does once the import's batches commit

    deliveries = Delivery.objects.filter(event__merchant=alice)
    assert deliveries.count() == 5 and {d.endpoint for d in deliveries} == {endpoint}
    assert {d.event_id for d in deliveries} == set(events.values_list("pk", flat=True))
    assert sorted(broker.deliveries) == sorted(d.pk for d in deliveries)


# ------------------------------------------------------------------------------------------------------------
# Memory and shape
# ------------------------------------------------------------------------------------------------------------
def test_memory_stays_flat_whatever_the_size_of_the_file(alice, tmp_path):
    # Ten times the rows; kept small because tracemalloc slows every allocation of the ORM's bulk insert on SQLite.
    # The small file's five batches give the reader fewer chances to run its full way ahead (on a loaded machine one
    # small import peaked at 1.67 MB where the large peaked at 2.58 MB: the reader's two batches, not a growth with
    # the file): its batches are stored more slowly still, and it is imported twice, its larger peak kept.
    smalls = [write_csv(tmp_path / f"{p}.csv", sample_rows(1_000, prefix=p, seed=1)) for p in ("453201", "453204")]
    large = write_csv(tmp_path / "large.csv", sample_rows(10_000, prefix="453202", seed=2))
    warm = write_csv(tmp_path / "warm.csv", sample_rows(600, prefix="453203", seed=3))
    importing.cards_import(merchant=alice, source=warm, batch_size=200)  # caches of the ORM and drivers

    def slow_database(seconds: float):
        # The worst case for memory: storing is slower than reading, so the reader runs its full way ahead.
        return lambda done: time.sleep(seconds)

    peaks = {}
    for name, source, pause in (("small", smalls[0], 0.2), ("small", smalls[1], 0.2), ("large", large, 0.03)):
        gc.collect()
        tracemalloc.start()
        result = importing.cards_import(merchant=alice, source=source, batch_size=200, on_batch=slow_database(pause))
        peaks[name] = max(peaks.get(name, 0), tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert result.complete

    assert Token.objects.filter(merchant=alice).count() == 12_600
    assert peaks["large"] < 1.5 * peaks["small"], peaks


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_batches_are_stored_two_at_a_time_and_rows_are_mapped_in_file_order(alice, tmp_path):
    # Outside a transaction, as the command runs, PostgreSQL stores two batches at once on two connections.
    rows = sample_rows(40, prefix="453211", seed=5)
    source = write_csv(tmp_path / "cards.csv", rows)

    result = importing.cards_import(merchant=alice, source=source, batch_size=5)

    assert result.connections == 2
    assert result.counts.imported == 40
    lines = read_csv(tmp_path / "cards.mapping.csv")
    assert [line["externalReference"] for line in lines] == [row[0] for row in rows]
    tokens = {token.token_id: token for token in Token.objects.filter(merchant=alice)}
    assert all(detokenized(tokens[line["tokenId"]]) == row[1] for line, row in zip(lines, rows, strict=True))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_card_repeated_in_the_next_batch_keeps_the_earlier_rows_token_and_details(alice, tmp_path):
    # Each batch of five repeats the cards of the batch before it under another holder name. Were the two batches
    # stored at once, the later one could commit first and its holder win; the earlier row in the file must.
    cards = sample_rows(30, prefix="453211", seed=7)
    rows = []
    for start in range(0, 30, 5):
        rows += cards[start : start + 5]
        rows += [[f"again-{row[0]}", row[1], row[2], "Charles Babbage", *row[4:]] for row in cards[start : start + 5]]
    source = write_csv(tmp_path / "cards.csv", rows)

    result = importing.cards_import(merchant=alice, source=source, batch_size=5)

    assert (result.counts.imported, result.counts.reused) == (30, 30)
    assert Token.objects.filter(merchant=alice).count() == 30
    lines = read_csv(tmp_path / "cards.mapping.csv")
    assert [line["externalReference"] for line in lines] == [row[0] for row in rows]
    mapping = {line["externalReference"]: line["tokenId"] for line in lines}
    assert all(mapping[f"again-{row[0]}"] == mapping[row[0]] for row in cards)
    for row in cards:
        token = Token.objects.get(token_id=mapping[row[0]])
        assert (detokenized(token), token.card_holder_name) == (row[1], "Ada Lovelace")


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_large_import_tells_postgresqls_planner_how_many_cards_the_merchant_now_holds(alice, tmp_path):
    # A new merchant has no statistics yet: the planner would believe alice holds next to no tokens and look each
    # batch up by reading all of hers through the merchant index, every batch slower than the last. The import
    # refreshes the statistics as its cards double (from 30 here, not 10,000, to keep the test small).
    source = write_csv(tmp_path / "cards.csv", sample_rows(100, prefix="453211", seed=11))

    importing.cards_import(merchant=alice, source=source, batch_size=10, analyze_from=30)

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) SELECT * FROM vault_token WHERE merchant_id = %s", [alice.pk])
        [[plan]] = cursor.fetchone()
    # Last refreshed at 60 cards (after 30): the planner counts at least those.
    assert plan["Plan"]["Plan Rows"] >= 60, plan


def test_an_imported_token_holds_what_the_apis_tokenize_writes_in_every_column(alice, bob, tmp_path):
    # bob tokenizes the card through the service the API calls; alice imports it. Every column the model has (a
    # column added later included) must be written alike, but the token's own ids, key material and times.
    made = services.card_tokenize(
        merchant=bob,
        card=services.Card(
            VISA,
            "Sherlock Holmes",
            5,
            2035,
            {"address1": "221B Baker Street", "postalCode": "NW1 6XE", "city": "London", "countryCode": "GB"},
        ),
    ).token
    source = write_csv(tmp_path / "cards.csv", [["ref-1", VISA, "05/2035", "Sherlock Holmes", *ADDRESS]])

    run_import(source, alice)

    imported = Token.objects.get(token_id=mapping_of(tmp_path / "cards.mapping.csv")["ref-1"])
    made.refresh_from_db()
    own = {
        "id",
        "merchant",
        "token_id",
        "reference",
        "fingerprint",
        "pan_ciphertext",
        "expires_at",
        "created_at",
        "updated_at",
    }
    for field in Token._meta.concrete_fields:
        if field.name not in own:
            assert getattr(imported, field.attname) == getattr(made, field.attname), field.name
    assert imported.network_token_id == "" and imported.deleted_at is None
    assert imported.updated_at == imported.created_at
