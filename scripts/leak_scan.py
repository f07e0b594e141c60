#!/usr/bin/env python3
"""Search what a test run left behind for the card numbers it used; exit 1 if any is found.

    leak_scan.py [--numbers FILE]... [--sources DIR]... PATH...

The card numbers are those listed one a line in each ``--numbers`` file (every number a process of the run
generated or checked, network token numbers among them, recorded by config/settings/test.py) and the card-number
literals of the test sources (``--sources``, default ``tests/``). A card number is 12 to 19 digits passing the Luhn
check, as the API takes it, but not a run of one digit: a fuzzer's ``000000000000`` passes the Luhn check too, and
would be "found" in every longer run of zeros. In the sources only numbers of a known brand count, since other digit
strings there (timestamps, ids) pass the Luhn check one time in ten.

Every file under each PATH is searched: logs, what `redis-cli monitor` saw go over the wire to the broker, database
dumps. A number counts when it stands alone or inside a longer run of digits, grouped by spaces or dashes or not, in
clear or inside base64 (a Celery message body is base64 of its JSON).

A hit is reported as ``file:line`` and the number's last four digits, never the number itself: this report is
itself a log.
"""

import argparse
import base64
import binascii
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vault.cards import brand_of, luhn_valid  # noqa: E402  (pure functions, no Django)

SHORTEST, LONGEST = 12, 19
# Digits, possibly grouped by single spaces or dashes as people write card numbers.
DIGIT_RUN = re.compile(r"\d(?:[ -]?\d){11,}")
# Long enough to hold a card number once decoded (19 digits are 28 characters of base64); the padding is optional
# because a line may cut a body anywhere.
BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{24,}={0,2}")
# A body may wrap another (kombu's envelope, then a payload): look that deep.
BASE64_DEPTH = 2


@dataclass(frozen=True)
class Leak:
    path: Path
    line: int
    last_four: str
    encoded: bool  # found inside base64

    def __str__(self) -> str:
        where = " (base64-encoded)" if self.encoded else ""
        return f"{self.path}:{self.line}: a test card number ending in {self.last_four}{where}"


def is_card_number(text: str) -> bool:
    return text.isdigit() and SHORTEST <= len(text) <= LONGEST and luhn_valid(text) and len(set(text)) > 1


def card_numbers_in(text: str) -> set[str]:
    """The card numbers of a known brand standing alone in ``text`` (a run of 20 digits is no card number)."""
    return {
        run for run in re.findall(r"(?<!\d)\d{12,19}(?!\d)", text) if is_card_number(run) and brand_of(run) != "UNKNOWN"
    }


def card_numbers_in_sources(directories: Iterable[Path]) -> set[str]:
    numbers: set[str] = set()
    for directory in directories:
        for path in sorted(Path(directory).rglob("*.py")):
            numbers |= card_numbers_in(path.read_text(encoding="utf-8", errors="replace"))
    return numbers


def read_numbers(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if is_card_number(line.strip())}


def _numbers_in_run(run: str, numbers: set[str]) -> Iterator[str]:
    digits = re.sub(r"[ -]", "", run)
    for length in range(SHORTEST, min(LONGEST, len(digits)) + 1):
        for start in range(len(digits) - length + 1):
            if digits[start : start + length] in numbers:
                yield digits[start : start + length]


def _decoded(text: str, depth: int) -> Iterator[str]:
    if depth == 0:
        return
    for run in BASE64_RUN.findall(text):
        if run.isdigit():
            continue
        run = run.rstrip("=")
        # A run cut by the line (or glued to neighbouring text) still decodes from each of the four alignments.
        for shift in range(4):
            chunk = run[shift:]
            chunk = chunk[: len(chunk) - len(chunk) % 4]
            if len(chunk) < 20:
                continue
            try:
                decoded = base64.b64decode(chunk, validate=True).decode("latin-1")
            except (binascii.Error, ValueError):
                continue
            yield decoded
            yield from _decoded(decoded, depth - 1)


def scan_text(text: str, numbers: set[str]) -> Iterator[tuple[str, bool]]:
    """Every (number, found inside base64) in ``text``."""
    for run in DIGIT_RUN.findall(text):
        for number in _numbers_in_run(run, numbers):
            yield number, False
    for decoded in _decoded(text, BASE64_DEPTH):
        for run in DIGIT_RUN.findall(decoded):
            for number in _numbers_in_run(run, numbers):
                yield number, True


def scan_files(paths: Iterable[Path], numbers: set[str]) -> Iterator[Leak]:
    for path in paths:
        # latin-1 never fails: a binary file or a dump in another encoding still shows its ASCII digits.
        with open(path, encoding="latin-1") as lines:
            for line_number, line in enumerate(lines, start=1):
                for number, encoded in dict.fromkeys(scan_text(line, numbers)):
                    yield Leak(path, line_number, number[-4:], encoded)


def files_under(paths: Iterable[Path]) -> list[Path]:
    found = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            found.append(path)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="files or directories to search")
    parser.add_argument(
        "--numbers",
        action="append",
        type=Path,
        default=[],
        help="a file of card numbers, one a line (repeatable; a missing file is an error)",
    )
    parser.add_argument(
        "--sources",
        action="append",
        type=Path,
        help="test sources whose card-number literals are searched for (default tests/)",
    )
    args = parser.parse_args(argv)

    numbers = card_numbers_in_sources(args.sources or [ROOT / "tests"])
    for path in args.numbers:
        if not path.is_file():
            parser.error(f"{path}: no such file (did the test run record its card numbers?)")
        numbers |= read_numbers(path)
    for path in args.paths:
        if not path.exists():
            parser.error(f"{path}: no such file or directory (a capture the scan was told to search is missing)")
    files = files_under(args.paths)
    leaks = list(scan_files(files, numbers))
    for leak in leaks:
        print(f"leak_scan: {leak}", file=sys.stderr)
    size = sum(path.stat().st_size for path in files)
    verdict = f"{len(leaks)} LEAK(S)" if leaks else "no card number found"
    print(f"leak_scan: {len(numbers)} card numbers searched for in {len(files)} files ({size / 1e6:.1f} MB): {verdict}")
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
