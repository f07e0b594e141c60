"""Checking a row: the card rules of ``POST /tokens`` (``vault.rules``), the same error names and messages, one
problem per column. What is the file's own: the expiry date written ``MM/YYYY`` or ``MM/YY``, the external
reference, and a row whose card number sits in another column too (a file whose columns slid), which is refused so
that no number reaches a column kept or written in clear. Another card number in a column kept in clear (the holder
name, an address line, the namespace) is refused by the rules themselves, as the API refuses it
(``fieldContainsCardNumber``).
"""

from dataclasses import dataclass
from datetime import date

from vault import rules
from vault.importing.reading import EXPIRY, HOLDER, NUMBER, REFERENCE, Layout

EXTERNAL_REFERENCE = rules.Bounds(1, 255)


@dataclass(slots=True)
class Row:
    """A valid row; once prepared (``preparing.Preparer``), also the columns of the token it becomes if its card is
    new, and of that token's ``token.created`` event. The number is dropped as soon as it is encrypted and
    fingerprinted."""

    line: int
    reference: str
    number: str | None
    holder: str
    month: int
    year: int
    address: dict | None
    namespace: str | None
    token: dict | None = None
    event: dict | None = None


@dataclass(slots=True)
class Reject:
    line: int
    reference: str
    problems: list[tuple[str, str, str]]  # (column, errorName, message)


def problem(column: str, broken: rules.RuleBroken) -> tuple[str, str, str]:
    return column, broken.name, broken.message


def _checked(problems: list, column: str, rule, *args, **kwargs):
    """``rule(*args, **kwargs)``, or None with its refusal added to ``problems`` under ``column``."""
    try:
        return rule(*args, **kwargs)
    except rules.RuleBroken as broken:
        problems.append(problem(column, broken))
        return None


def expiry_of(text: str, *, today: date) -> tuple[int, int]:
    """``MM/YYYY`` or ``MM/YY`` → (month, year), judged by ``rules.expiry``; raises RuleBroken."""
    if not text:
        raise rules.RuleBroken("fieldIsEmpty")
    month_text, slash, year_text = text.partition("/")
    if (
        not slash
        or not month_text.isascii()
        or not month_text.isdigit()
        or not year_text.isascii()
        or not year_text.isdigit()
        or len(month_text) > 2
        or len(year_text) not in (2, 4)
    ):
        raise rules.RuleBroken("dateHasInvalidFormat", "The expiry date must look like MM/YYYY or MM/YY")
    year = int(year_text) + (2000 if len(year_text) == 2 else 0)
    return rules.expiry(int(month_text), year, today=today)


def row_of(cells: list[str], layout: Layout, line: int, *, today: date) -> Row | Reject:
    """The row ``cells`` make at ``line``, or what is wrong with it (every column's first problem)."""
    if len(cells) != layout.width:
        return Reject(
            line,
            cells[layout.reference] if len(cells) > layout.reference else "",
            [
                ("", "rowHasWrongNumberOfColumns", f"The row has {len(cells)} columns, the header {layout.width}"),
            ],
        )
    problems: list[tuple[str, str, str]] = []
    reference, number, holder = cells[layout.reference], cells[layout.number], cells[layout.holder]
    _checked(problems, REFERENCE, rules.text, reference, EXTERNAL_REFERENCE)
    _checked(problems, NUMBER, rules.card_number, number)
    expiry = _checked(problems, EXPIRY, expiry_of, cells[layout.expiry], today=today)
    _checked(problems, HOLDER, rules.holder_name, holder)
    address = None
    if layout.address:
        lines = {name: cells[index] for name, index in layout.address if cells[index]}
        if lines:
            address, broken_lines = rules.billing_address(lines)
            problems.extend(problem(name, broken) for name, broken in broken_lines)
    namespace = None
    if layout.namespace is not None:
        namespace = cells[layout.namespace] or None  # an empty cell: no namespace
        if namespace is not None:
            _checked(problems, layout.namespace_column, rules.namespace, namespace)
    if number and len(number) >= rules.CARD_NUMBER.min_length:
        # A file whose columns slid: the number must not reach a column kept or written in clear. Said in place of
        # what the rules found in that column (a card number, that very one): one problem a column.
        slid = {name for name, index in layout.others if number in cells[index]}
        problems = [found for found in problems if found[0] not in slid]
        problems.extend(
            (name, "fieldHasInvalidValue", "The column holds the card number")
            for name, _ in layout.others
            if name in slid
        )
    if problems:
        return Reject(line, reference, problems)
    return Row(line, reference, number, holder, expiry[0], expiry[1], address, namespace)
