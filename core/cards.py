"""What every app must know of card numbers: their lengths, the Luhn check, and whether a free text holds one. Pure
functions, no I/O. The vault's own facts (brands, masking, countries) are ``vault.cards``, built on these.
``masked_card_numbers`` masks what ``holds_card_number`` finds, in text that leaves the vault (a payment provider's
answer to a forward).

A free-text field (a description, a namespace, a holder name, an account id, a correlation id) is stored and shown
back in clear, so none may hold a card number (DESIGN.md, "Security model"). What counts as one, written the ways
people write a card:

- 12 to 19 digits that pass the Luhn check and are not one digit repeated (``000000000000`` passes the Luhn check
  and is no card): what ``POST /tokens`` would take as a card number;
- as one run of digits (letters may touch it: ``SHOPPER4444333322221111`` holds one), or in groups joined by single
  spaces (``4444 3333 2222 1111``, ``3782 822463 10005``), or by single dashes when the dashed groups stand alone
  (``4444-3333-2222-1111``). Dashes inside a longer word join nothing: the groups of a UUID
  (``9b2e0c4a-1007-4123-8123-a3f5c2d1e0b9``) would make a random UUID correlation id look like a card once in 194,
  against once in 2,649 (its last group alone) as it is;
- anywhere among the groups: "Order 12345 4444 3333 2222 1111" holds one. A run of more than 19 digits is none.
"""

import re

LENGTH_RANGE = (12, 19)

# Digits in groups joined by single dashes, touching no other word character or dash; else digits in groups joined by
# single spaces (a single group included).
WRITTEN_NUMBER = re.compile(r"(?<![\w-])[0-9]+(?:-[0-9]+)+(?![\w-])|[0-9]+(?: [0-9]+)*")
GROUP_SEPARATOR = re.compile(r"[ -]")
DIGIT = re.compile(r"[0-9]")

# For each digit character, the digit itself and the digit doubled less 9 above 9 (what the Luhn check adds for
# every second digit from the right), as byte values.
_PLAIN = bytes.maketrans(b"0123456789", bytes(range(10)))
_DOUBLED = bytes.maketrans(b"0123456789", bytes((0, 2, 4, 6, 8, 1, 3, 5, 7, 9)))


def luhn_valid(number: str) -> bool:
    """``number`` (digits) passes the Luhn check. Sums of translated bytes rather than a loop a digit: it runs for
    every card of an import."""
    digits = number.encode()[::-1]
    return (sum(digits[::2].translate(_PLAIN)) + sum(digits[1::2].translate(_DOUBLED))) % 10 == 0


def one_digit_repeated(digits: str) -> bool:
    return len(set(digits)) == 1


def is_card_number(digits: str) -> bool:
    """``digits`` (ASCII digits) could be a card's number: 12 to 19 of them, passing the Luhn check, not one digit
    repeated."""
    return LENGTH_RANGE[0] <= len(digits) <= LENGTH_RANGE[1] and luhn_valid(digits) and not one_digit_repeated(digits)


def holds_card_number(text: str) -> bool:
    """``text`` holds a card number as people write one (see the module's docstring).

    Every run of consecutive groups is tried, but none of more than 19 digits: linear in the length of the text."""
    if len(DIGIT.findall(text)) < LENGTH_RANGE[0]:  # most text: a fraction of a microsecond
        return False
    for written in WRITTEN_NUMBER.finditer(text):
        groups = GROUP_SEPARATOR.split(written.group())
        for start in range(len(groups)):
            digits = ""
            for end in range(start, len(groups)):
                digits += groups[end]
                if len(digits) > LENGTH_RANGE[1]:
                    break
                if is_card_number(digits):
                    return True
    return False


def masked_card_numbers(text: str, *, also: tuple[str, ...] = ()) -> str:
    """``text`` with every card number in it masked as every answer shows one: its first four and last four digits
    kept, the digits between starred, the separators of a number written in groups kept (``4444 **** **** 1111``).

    A card number is what ``holds_card_number`` finds. The numbers in ``also`` (the forwarded card's number, its
    network token's) are masked wherever they stand, inside a longer run of digits too, where the scan would not
    see them: a provider may echo a card number glued to a reference."""
    for number in also:
        if number and number in text:
            text = text.replace(number, _masked_digits(number))
    if len(DIGIT.findall(text)) < LENGTH_RANGE[0]:
        return text
    return WRITTEN_NUMBER.sub(_masked_written, text)


def _masked_digits(digits: str) -> str:
    return digits[:4] + "*" * (len(digits) - 8) + digits[-4:]


def _masked_written(written: re.Match) -> str:
    """A written number (digit groups and their separators) with each card number among its groups masked; the first
    one found from the left wins, and the search goes on after it."""
    parts = re.split(r"([ -])", written.group())  # groups at even indexes, separators between
    groups = parts[::2]
    start = 0
    while start < len(groups):
        digits, end = "", start
        while end < len(groups) and len(digits + groups[end]) <= LENGTH_RANGE[1]:
            digits += groups[end]
            if is_card_number(digits):
                _mask_groups(groups, start, end)
                start = end
                break
            end += 1
        start += 1
    parts[::2] = groups
    return "".join(parts)


def _mask_groups(groups: list[str], first: int, last: int) -> None:
    """Star the digits of ``groups[first:last + 1]`` but the first four and the last four of them all."""
    total = sum(len(group) for group in groups[first : last + 1])
    seen = 0
    for index in range(first, last + 1):
        group = groups[index]
        groups[index] = "".join(
            digit if seen + at < 4 or seen + at >= total - 4 else "*" for at, digit in enumerate(group)
        )
        seen += len(group)
