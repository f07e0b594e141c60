"""What every app calls a card number in free text (``core.cards``; issue 17, findings 8 and 14): 12 to 19 digits
passing the Luhn check, not one digit repeated, written as one run or in groups the way people write a card.

Free-text fields of the API and of the bulk import refuse such text (tests/vault/test_card_rules.py and the apps'
tests); these cases pin down what counts.
"""

import pytest

from core.cards import holds_card_number, is_card_number
from tests.conftest import AMEX, DINERS, MASTERCARD, VISA

HOLDS = {
    "a bare number": VISA,
    "in a sentence": f"Card {MASTERCARD} on file",
    "against letters": f"SHOPPER{VISA}X",
    "after punctuation": f"ref:{VISA}.",
    "in groups of four": "4444 3333 2222 1111",
    "in groups of four with dashes": "card 4444-3333-2222-1111, expires 05/35",
    "amex as printed": "3782 822463 10005",
    "diners as printed": "3622 720627 1667",
    "after another number": "Order 12345 4444 3333 2222 1111",
    "twelve digits": "Maestro 675964982648",
    "nineteen digits": "4000000000000000006",
}

DOES_NOT_HOLD = {
    "failing the luhn check": "4444333322221112",
    "eleven digits": "44443333222",
    "twenty digits": VISA + "0000",
    "one digit repeated": "000000000000",
    "one digit repeated in groups": "0000 0000 0000 0000",
    "a name": "Sherlock Holmes",
    "the seed's namespace": "SHOPPER_ID_1234567890",
    "a date and time": "2035-05-01T12:00:00Z",
    "an address": "221B Baker Street, Flat 12",
    # Its middle groups (1007 4123 8123) pass the Luhn check: dashes inside a longer dashed word join nothing.
    "a uuid": "9b2e0c4a-1007-4123-8123-a3f5c2d1e0b9",
    "groups joined by two spaces": "4444  3333  2222  1111",
    "groups joined by a dash and a space": "4444- 3333 -2222 - 1111",
}


@pytest.mark.pci("3.5.1")
@pytest.mark.parametrize("text", HOLDS.values(), ids=HOLDS.keys())
def test_it_finds_a_card_number_in_text(text):
    assert holds_card_number(text)


@pytest.mark.parametrize("text", DOES_NOT_HOLD.values(), ids=DOES_NOT_HOLD.keys())
def test_it_finds_none_in_text_without_one(text):
    assert not holds_card_number(text)


@pytest.mark.parametrize("number", [VISA, MASTERCARD, AMEX, DINERS])
def test_the_public_test_cards_are_card_numbers(number):
    assert is_card_number(number)


@pytest.mark.parametrize(
    "digits", ["0" * 12, "0" * 19, "8" * 12, "8" * 16, "6" * 13, "2" * 17, "4" * 17], ids=lambda d: f"{d[0]}x{len(d)}"
)
def test_one_digit_repeated_passes_the_luhn_check_and_is_no_card_number(digits):
    assert not is_card_number(digits)


def test_a_long_text_of_digit_groups_is_checked_in_linear_time():
    # Every window of groups is tried, but none longer than 19 digits: 100,000 groups take milliseconds.
    assert not holds_card_number("1 " * 100_000)
