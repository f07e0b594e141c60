#!/usr/bin/env python3
"""Search what a test run left behind for the card numbers and the keys it used; exit 1 if any is found.

    leak_scan.py [--numbers FILE]... [--keys FILE]... [--sources DIR]... PATH...

The card numbers are those listed one a line in each ``--numbers`` file (every number a process of the run
generated or checked, network token numbers among them, recorded by config/settings/test.py) and the card-number
literals of the test sources (``--sources``, default ``tests/``). A card number is 12 to 19 digits passing the Luhn
check, as the API takes it, but not a run of one digit: a fuzzer's ``000000000000`` passes the Luhn check too, and
would be "found" in every longer run of zeros. In the sources only numbers of a known brand count, since other digit
strings there (timestamps, ids) pass the Luhn check one time in ten.

Every file under each PATH is searched: logs, what `redis-cli monitor` saw go over the wire to the broker, database
dumps. A number counts when it stands alone or inside a longer run of digits, grouped by spaces or dashes or not, in
clear or inside base64 (a Celery message body is base64 of its JSON).

The keys are those listed in hex, one a line, in each ``--keys`` file (every key encryption key, data encryption
key and PIN the tests used, recorded as they met them, see TEST_KEY_MATERIAL_FILE in scripts/test.sh). A key counts
in any of the forms a program writes bytes in: raw, hex (either case), base64 (standard or URL-safe, padded or not),
a Python bytes literal (``b'\\x8f...'``, as ``repr`` or an f-string shows it), each also inside a longer value, and
inside base64 (a Celery body): a key at any offset of any base64-encoded value is found without decoding it, by the
three ways its bytes can fall on base64's 3-byte groups.

A hit is reported as ``file:line`` and the number's last four digits, or the first hex digits of the key's SHA-256,
never the number or key itself: this report is itself a log.
"""

import argparse
import ast
import base64
import binascii
import gc
import hashlib
import re
import sys
import warnings
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


def _layers(text: str) -> list[tuple[str, bool]]:
    """``text`` and what its base64 runs decode to: (text, found inside base64)."""
    return [(text, False), *((decoded, True) for decoded in _decoded(text, BASE64_DEPTH))]


def _numbers_in(layers: list[tuple[str, bool]], numbers: set[str]) -> Iterator[tuple[str, bool]]:
    for layer, encoded in layers:
        for run in DIGIT_RUN.findall(layer):
            for number in _numbers_in_run(run, numbers):
                yield number, encoded


def scan_text(text: str, numbers: set[str]) -> Iterator[tuple[str, bool]]:
    """Every (number, found inside base64) in ``text``."""
    return _numbers_in(_layers(text), numbers)


# ------------------------------------------------------------------------------------------------------------
# Keys
# ------------------------------------------------------------------------------------------------------------
# Shorter keys would be found by chance: 16 bytes are 128 bits (a PIN of 12 random bytes in hex is 24 bytes).
SHORTEST_KEY = 16
HEX_RUN = re.compile(r"[0-9A-Fa-f]{32,}")
# Both base64 alphabets at once.
KEY_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{20,}")
# A bytes literal as repr() writes it (in a JSON log line, its backslashes and quotes escaped once more).
BYTES_LITERAL = re.compile("|".join([r"b'(?:[^'\\\n]|\\.)*'", r'b"(?:[^"\\\n]|\\.)*"']))
JSON_ESCAPE = re.compile(r'\\(["\\/])')


@dataclass(frozen=True)
class KeyLeak:
    path: Path
    line: int
    key_id: str  # the first hex digits of the key's SHA-256: which key, nothing of it
    form: str  # raw, hex, base64, bytes literal
    encoded: bool  # found inside base64

    def __str__(self) -> str:
        where = " (inside base64)" if self.encoded else ""
        return f"{self.path}:{self.line}: a test key (SHA-256 {self.key_id}...) in {self.form}{where}"


class Patterns:
    """Fixed-length strings (or bytes) to find anywhere in a longer one, however many: each pattern's substrings of
    half its length are indexed, and only one position in every ``stride`` is looked up, since any occurrence of a
    pattern holds one of them at such a position. Thousands of keys cost what one does."""

    def __init__(self, length: int):
        self.length = length
        self.gram = length // 2
        self.stride = length - self.gram + 1
        self.grams: dict = {}

    def add(self, pattern, key: bytes) -> None:
        for offset in range(self.stride):
            self.grams.setdefault(pattern[offset : offset + self.gram], []).append((offset, pattern, key))

    def find(self, text) -> Iterator[tuple[int, bytes]]:
        """(where, key) of every pattern in ``text``."""
        for position in range(0, len(text) - self.gram + 1, self.stride):
            for offset, pattern, key in self.grams.get(text[position : position + self.gram], ()):
                start = position - offset
                if start >= 0 and text[start : start + self.length] == pattern:
                    yield start, key


class Keys:
    """Every searchable form of a set of keys."""

    def __init__(self, keys: Iterable[bytes] = ()):
        self.keys = set(keys)
        self.raw: dict[int, Patterns] = {}
        self.hex: dict[int, Patterns] = {}  # lower case
        self.base64: dict[int, Patterns] = {}
        # Indexing thousands of keys makes a million small tuples, none of them ever in a cycle: the garbage collector
        # would walk them all again at every collection (four times the work), so it waits.
        collecting = gc.isenabled()
        gc.disable()
        try:
            for key in self.keys:
                self._add(self.raw, key, key)
                self._add(self.hex, key.hex(), key)
                for signature in base64_signatures(key):
                    self._add(self.base64, signature, key)
        finally:
            if collecting:
                gc.enable()

    @staticmethod
    def _add(table: dict[int, Patterns], pattern, key: bytes) -> None:
        if len(pattern) not in table:
            table[len(pattern)] = Patterns(len(pattern))
        table[len(pattern)].add(pattern, key)

    def __bool__(self) -> bool:
        return bool(self.keys)

    @staticmethod
    def found(table: dict[int, Patterns], text) -> Iterator[tuple[int, bytes]]:
        for patterns in table.values():
            yield from patterns.find(text)


def base64_signatures(key: bytes) -> set[str]:
    """The base64 characters made by ``key``'s bits alone, wherever it starts in an encoded value: its bytes fall on
    base64's 3-byte groups in one of three ways, each giving a run of characters (the first and last, shared with the
    neighbouring bytes, left out). In both alphabets: the key's own base64, padded or not, holds one of them too."""
    signatures = set()
    for phase in range(3):
        encoded = base64.b64encode(bytes(phase) + key).decode()
        first = -(-8 * phase // 6)  # the first character whose six bits are all the key's
        last = 8 * (phase + len(key)) // 6  # one past the last
        signatures |= {encoded[first:last], encoded[first:last].translate(str.maketrans("+/", "-_"))}
    return signatures


def read_keys(path: Path) -> set[bytes]:
    keys = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            key = bytes.fromhex(line.strip())
        except ValueError:
            raise ValueError(f"{path}:{number}: not a key in hex") from None
        if len(key) < SHORTEST_KEY:
            raise ValueError(f"{path}:{number}: a key of {len(key)} bytes is too short to search for")
        keys.add(key)
    return keys


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:12]


def _bytes_literals(text: str) -> Iterator[bytes]:
    sources = {text, JSON_ESCAPE.sub(r"\1", text)} if "\\" in text else {text}
    for source in sources:
        for literal in BYTES_LITERAL.findall(source):
            try:
                with warnings.catch_warnings():  # a text that only looks like a literal may hold "\M" and the like
                    warnings.simplefilter("ignore")
                    value = ast.literal_eval(literal)
            except (SyntaxError, ValueError):
                continue
            if isinstance(value, bytes):
                yield value


def _keys_in(layers: list[tuple[str, bool]], keys: Keys) -> Iterator[tuple[bytes, str, bool]]:
    for layer, encoded in layers:
        if encoded and len(layer.encode("ascii", "ignore")) < 0.9 * len(layer):
            # Bytes, not text (most decodings of a run are, from the wrong alignment): a key's bytes at any offset of
            # them were found in the run itself, by its base64 signatures.
            continue
        for run in HEX_RUN.findall(layer):
            for _, key in keys.found(keys.hex, run.lower()):
                yield key, "hex", encoded
        for run in KEY_BASE64_RUN.findall(layer):
            for _, key in keys.found(keys.base64, run):
                yield key, "base64", encoded
        for value in _bytes_literals(layer):
            for _, key in keys.found(keys.raw, value):
                yield key, "bytes literal", encoded


def scan_keys_text(text: str, keys: Keys) -> Iterator[tuple[bytes, str, bool]]:
    """Every (key, form, found inside base64) in ``text`` but raw bytes (``scan_files`` searches whole files for
    those: raw bytes may hold a line break)."""
    return _keys_in(_layers(text), keys)


def scan_files(paths: Iterable[Path], numbers: set[str], keys: Keys | None = None) -> Iterator[Leak | KeyLeak]:
    keys = keys or Keys()
    for path in paths:
        if keys:
            data = path.read_bytes()
            for offset, key in dict.fromkeys(keys.found(keys.raw, data)):
                yield KeyLeak(path, data.count(b"\n", 0, offset) + 1, key_id(key), "raw", False)
        # latin-1 never fails: a binary file or a dump in another encoding still shows its ASCII digits.
        with open(path, encoding="latin-1") as lines:
            for line_number, line in enumerate(lines, start=1):
                layers = _layers(line)
                for number, encoded in dict.fromkeys(_numbers_in(layers, numbers)):
                    yield Leak(path, line_number, number[-4:], encoded)
                if keys:
                    for key, form, encoded in dict.fromkeys(_keys_in(layers, keys)):
                        yield KeyLeak(path, line_number, key_id(key), form, encoded)


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
        "--keys",
        action="append",
        type=Path,
        default=[],
        help="a file of keys in hex, one a line (repeatable; a missing file is an error)",
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
    keys: set[bytes] = set()
    for path in args.keys:
        if not path.is_file():
            parser.error(f"{path}: no such file (did the test run record its keys?)")
        try:
            keys |= read_keys(path)
        except ValueError as exc:
            parser.error(str(exc))
    for path in args.paths:
        if not path.exists():
            parser.error(f"{path}: no such file or directory (a capture the scan was told to search is missing)")
    files = files_under(args.paths)
    leaks = list(scan_files(files, numbers, Keys(keys)))
    for leak in leaks:
        print(f"leak_scan: {leak}", file=sys.stderr)
    size = sum(path.stat().st_size for path in files)
    verdict = f"{len(leaks)} LEAK(S)" if leaks else "no card number or key found"
    print(
        f"leak_scan: {len(numbers)} card numbers and {len(keys)} keys searched for in {len(files)} files "
        f"({size / 1e6:.1f} MB): {verdict}"
    )
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
