"""The card rules: what a card's details must be before the vault stores them, with the API's error names and
messages. ``POST /tokens`` (its serializers), the bulk import and browser capture all call these, so a value is
judged the same wherever it comes from.

Each rule takes a decoded value and returns it, or raises ``RuleBroken`` with the first problem: ``name`` is the
error name of ``POST /tokens`` (``errorName``), ``message`` its message. Messages never quote the value: it may be
a card number. The bounds below are the ones the OpenAPI schema publishes (the serializers declare them from here,
so DRF's length validators and ``text`` say the same thing).
"""

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.utils import timezone

from core.cards import LENGTH_RANGE, holds_card_number, one_digit_repeated
from core.errors import VALIDATION_MESSAGES
from vault import cards


class RuleBroken(ValueError):
    """A value a card rule refuses: ``name`` (the API's ``errorName``) and ``message``, which never holds the value."""

    def __init__(self, name: str, message: str = ""):
        self.name = name
        self.message = message or VALIDATION_MESSAGES[name]
        super().__init__(self.message)


@dataclass(frozen=True)
class Bounds:
    """How long a string may be, in characters; an empty string is ``fieldIsEmpty`` whatever ``min_length``."""

    min_length: int
    max_length: int


CARD_NUMBER = Bounds(*LENGTH_RANGE)  # digits
DESCRIPTION = Bounds(1, 255)
HOLDER_NAME = Bounds(1, 255)
SCHEME_REFERENCE = Bounds(1, 56)
NAMESPACE = Bounds(1, 64)
COUNTRY_CODE = Bounds(2, 2)
# A billing address's lines, in the order the vault stores them, and their bounds.
ADDRESS_LINES = {
    "address1": Bounds(1, 80),
    "address2": Bounds(1, 80),
    "address3": Bounds(1, 80),
    "postalCode": Bounds(1, 15),
    "city": Bounds(1, 50),
    "state": Bounds(1, 30),
    "countryCode": COUNTRY_CODE,
}
# The lines an address may leave out (one left out of a request for a stored card keeps the stored line).
OPTIONAL_ADDRESS_LINES = ("address2", "address3", "state")
REQUIRED_ADDRESS_LINES = tuple(name for name in ADDRESS_LINES if name not in OPTIONAL_ADDRESS_LINES)
EXPIRY_MONTHS = (1, 12)
EXPIRY_YEARS = (2000, 2099)

DIGITS = re.compile(r"[0-9]+")
DESCRIPTION_FORBIDDEN = re.compile(r"[&<]")
SCHEME_REFERENCE_ALLOWED = re.compile(r"[a-zA-Z0-9 ]*")


def text(value: str, bounds: Bounds) -> str:
    """``value`` within ``bounds`` (``fieldIsEmpty``, ``stringIsTooShort``, ``stringIsTooLong``)."""
    if not value:
        raise RuleBroken("fieldIsEmpty")
    if len(value) < bounds.min_length:
        raise RuleBroken("stringIsTooShort")
    if len(value) > bounds.max_length:
        raise RuleBroken("stringIsTooLong")
    return value


def card_number(value: str) -> str:
    """12 to 19 ASCII digits passing the Luhn check, not one digit repeated (``000000000000`` passes the check)."""
    if not value:
        raise RuleBroken("fieldIsEmpty")
    if not DIGITS.fullmatch(value):
        raise RuleBroken("stringFailedRegexCheck", "The card number must be digits only")
    if len(value) < CARD_NUMBER.min_length:
        raise RuleBroken("stringIsTooShort", f"The card number must have at least {CARD_NUMBER.min_length} digits")
    if len(value) > CARD_NUMBER.max_length:
        raise RuleBroken("stringIsTooLong", f"The card number must have at most {CARD_NUMBER.max_length} digits")
    if not cards.luhn_valid(value):
        raise RuleBroken("panFailedLuhnCheck")
    if one_digit_repeated(value):
        raise RuleBroken("fieldHasInvalidValue", "The card number is one digit repeated: no card has such a number")
    return value


def no_card_number(value: str) -> str:
    """Free text, which the vault keeps and shows back in clear: no card number in it (``core.cards``). Checked after
    the length, so that an over-long value is never scanned."""
    if holds_card_number(value):
        raise RuleBroken("fieldContainsCardNumber")
    return value


def description_characters(value: str) -> str:
    """No ``&`` nor ``<`` (checked before the length)."""
    if DESCRIPTION_FORBIDDEN.search(value):
        raise RuleBroken("stringFailedRegexCheck", "The description must not contain '&' or '<'")
    return value


def description(value: str) -> str:
    return no_card_number(text(description_characters(value), DESCRIPTION))


def scheme_reference_characters(value: str) -> str:
    """Letters, digits and spaces only (checked before the length)."""
    if not SCHEME_REFERENCE_ALLOWED.fullmatch(value):
        raise RuleBroken("stringFailedRegexCheck", "Only letters, digits and spaces are allowed")
    return value


def scheme_reference(value: str) -> str:
    return no_card_number(text(scheme_reference_characters(value), SCHEME_REFERENCE))


def holder_name(value: str) -> str:
    return no_card_number(text(value, HOLDER_NAME))


def namespace(value: str) -> str:
    return no_card_number(text(value, NAMESPACE))


def namespace_has_room(cards_held: int) -> None:
    """A namespace holds at most ``NAMESPACE_CARD_LIMIT`` distinct cards: one holding ``cards_held`` takes one more
    only below that."""
    limit = settings.NAMESPACE_CARD_LIMIT
    if cards_held >= limit:
        raise RuleBroken(
            "namespaceCardLimitReached", f"The namespace already holds {limit} cards, the most it can hold"
        )


def country_code_known(value: str) -> str:
    """An ISO 3166-1 alpha-2 code (checked after the length)."""
    if value not in cards.COUNTRY_CODES:
        raise RuleBroken("fieldHasInvalidValue", "The country code must be an ISO 3166-1 alpha-2 code, e.g. GB")
    return value


def address_line(name: str, value: str) -> str:
    """One line of a billing address (``name`` as in ``ADDRESS_LINES``)."""
    text(value, ADDRESS_LINES[name])
    return country_code_known(value) if name == "countryCode" else no_card_number(value)


def billing_address(lines: dict[str, str]) -> tuple[dict[str, str], list[tuple[str, RuleBroken]]]:
    """A billing address from its lines given (an absent line is not in ``lines``): the address in the vault's order
    of lines, and the problems of every line, by line name (a required line missing: ``fieldIsMissing``)."""
    problems = []
    for name in ADDRESS_LINES:
        if name not in lines:
            if name in REQUIRED_ADDRESS_LINES:
                problems.append((name, RuleBroken("fieldIsMissing")))
            continue
        try:
            address_line(name, lines[name])
        except RuleBroken as broken:
            problems.append((name, broken))
    return {name: lines[name] for name in ADDRESS_LINES if name in lines}, problems


def expiry_month(value: int) -> int:
    return _within(value, EXPIRY_MONTHS)


def expiry_year(value: int) -> int:
    return _within(value, EXPIRY_YEARS)


def _within(value: int, bounds: tuple[int, int]) -> int:
    if value < bounds[0]:
        raise RuleBroken("integerIsTooSmall")
    if value > bounds[1]:
        raise RuleBroken("integerIsTooLarge")
    return value


def expiry_not_past(month: int, year: int, *, today: date | None = None) -> tuple[int, int]:
    """A card expires at the end of its month: this month is not past."""
    today = today or timezone.now().date()
    if (year, month) < (today.year, today.month):
        raise RuleBroken("fieldHasInvalidValue", "The card expiry date is in the past")
    return month, year


def expiry(month: int, year: int, *, today: date | None = None) -> tuple[int, int]:
    """A card's expiry date: month 1-12, year 2000-2099, not in the past."""
    return expiry_not_past(expiry_month(month), expiry_year(year), today=today)


def token_expiry(value: datetime, lifetime: timedelta, *, now: datetime | None = None) -> datetime:
    """A token's expiry as asked: in the future, and no later than ``lifetime`` from now (the environment's default
    lifetime, ``vault.services.default_lifetime``: a token lives no longer than one made without asking)."""
    now = now or timezone.now()
    if value <= now:
        raise RuleBroken("fieldHasInvalidValue", "The token expiry date/time must be in the future")
    if value > now + lifetime:
        raise RuleBroken(
            "fieldHasInvalidValue",
            f"The token expiry date/time must be at most {lifetime.days} days from now (the default token lifetime)",
        )
    return value
