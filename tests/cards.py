"""Test card numbers made to order: Luhn-valid, in a given BIN, with a given last-four suffix.

The simulators decide by the last four digits (``…0002`` declines, ``…0036`` needs a step-up), and the issuer
registry by the first six, so tests need numbers that are valid cards with both ends chosen. None of them is a real
card: they are generated, and the public test cards in ``tests.conftest`` stay the ones the seeds name.
"""

import random

from networks.tsp.base import DECLINE_SUFFIX, STEP_UP_SUFFIX
from vault.cards import luhn_check_digit, luhn_valid

SPECIAL_SUFFIXES = (DECLINE_SUFFIX, STEP_UP_SUFFIX)


def card_number(prefix: str, *, length: int = 16, suffix: str = "", rng: random.Random | None = None) -> str:
    """A Luhn-valid number of ``length`` digits starting with ``prefix`` and ending with ``suffix``.

    Without a suffix the check digit is computed; with one, a digit just before the suffix is chosen so the whole
    number passes (changing one digit walks the Luhn sum through all ten residues, doubled position or not).
    """
    rng = rng or random.Random()
    middle = length - len(prefix) - len(suffix)
    if not suffix:
        body = prefix + "".join(rng.choice("0123456789") for _ in range(middle - 1))
        return body + luhn_check_digit(body)
    if middle < 1:
        raise ValueError("no room for the digit that makes the number Luhn-valid")
    head = prefix + "".join(rng.choice("0123456789") for _ in range(middle - 1))
    for digit in "0123456789":
        candidate = head + digit + suffix
        if luhn_valid(candidate):
            return candidate
    raise AssertionError("unreachable")


def distinct_card_numbers(prefix: str, count: int, *, length: int = 16, seed: int = 0) -> list[str]:
    """``count`` different Luhn-valid numbers in ``prefix`` that the simulators approve (no decline or step-up
    suffix), reproducible from ``seed``."""
    rng = random.Random(f"{prefix}:{length}:{seed}")
    numbers: set[str] = set()
    while len(numbers) < count:
        number = card_number(prefix, length=length, rng=rng)
        if not number.endswith(SPECIAL_SUFFIXES):
            numbers.add(number)
    return sorted(numbers)


def declining_card(prefix: str = "400000", *, length: int = 16) -> str:
    """A card its issuer refuses to tokenize (``tokenizationDeclined``)."""
    return card_number(prefix, length=length, suffix=DECLINE_SUFFIX, rng=random.Random(prefix))


def step_up_card(prefix: str = "400000", *, length: int = 16) -> str:
    """A card whose issuer wants a step-up: its network token is created INACTIVE."""
    return card_number(prefix, length=length, suffix=STEP_UP_SUFFIX, rng=random.Random(prefix))
