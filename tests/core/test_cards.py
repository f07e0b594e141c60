"""What every app calls a card number in free text (``core.cards``; issue 17, findings 8 and 14): 12 to 19 digits
passing the Luhn check, not one digit repeated, written as one run or in groups the way people write a card.

Free-text fields of the API and of the bulk import refuse such text (tests/vault/test_card_rules.py and the apps'
tests); these cases pin down what counts.
"""

import pytest

from core.cards import holds_card_number, is_card_number, masked_card_numbers
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


# ------------------------------------------------------------------------------------------------------------
# Masking what a payment provider answers a forward (vault.forwarding): what the scan finds, masked as every answer
# masks a card, first four and last four.
# ------------------------------------------------------------------------------------------------------------
MASKED = {
    "a bare number": (VISA, "4444********1111"),
    "in a sentence": (f"Card {MASTERCARD} on file", "Card 5555********4444 on file"),
    "in json": (f'{{"pan":"{VISA}","amount":1000}}', '{"pan":"4444********1111","amount":1000}'),
    "against letters": (f"SHOPPER{VISA}X", "SHOPPER4444********1111X"),
    "in groups of four": ("4444 3333 2222 1111", "4444 **** **** 1111"),
    "with dashes": ("card 4444-3333-2222-1111, expires 05/35", "card 4444-****-****-1111, expires 05/35"),
    "amex as printed": ("3782 822463 10005", "3782 ****** *0005"),
    "after another number": ("Order 12345 4444 3333 2222 1111", "Order 12345 4444 **** **** 1111"),
    "two of them": (f"{VISA} {AMEX}", "4444********1111 3782*******0005"),
}

UNMASKED = {
    "failing the luhn check": "4444333322221112",
    "eleven digits": "44443333222",
    "twenty digits": VISA + "0000",
    "one digit repeated": "000000000000",
    "a uuid": "9b2e0c4a-1007-4123-8123-a3f5c2d1e0b9",
    "an amount and a date": '{"amount": 123456, "created": "2035-05-01T12:00:00Z"}',
}


@pytest.mark.pci("3.4.1")
@pytest.mark.parametrize(("text", "masked"), MASKED.values(), ids=MASKED.keys())
def test_it_masks_every_card_number_in_text(text, masked):
    assert masked_card_numbers(text) == masked


@pytest.mark.parametrize("text", UNMASKED.values(), ids=UNMASKED.keys())
def test_it_leaves_text_without_a_card_number_as_it_is(text):
    assert masked_card_numbers(text) == text


def test_it_masks_the_numbers_it_is_told_of_inside_longer_runs_of_digits():
    # Twenty-two digits are no card number to the scan; the forwarded card's number inside them still is.
    text = f"ref 00{VISA}0000"
    assert masked_card_numbers(text) == text
    assert masked_card_numbers(text, also=(VISA,)) == "ref 004444********11110000"


def test_masking_a_long_text_of_digit_groups_takes_linear_time():
    assert masked_card_numbers("1 " * 100_000) == "1 " * 100_000
