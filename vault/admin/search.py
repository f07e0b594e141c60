"""What a clerk types in the token list's search box, read the way they mean it.

A masked number as every page shows it (``4761********5989``, with spaces or dots, or the network pages'
``476173…5989``) is its BIN and last four (and, with stars, its length); four digits are a last four, six a BIN; four
characters or more of the tokenId alphabet are the start of a tokenId; anything else, and any word, may be the name
of a merchant. Each reading is a query an index answers: equality, or for the start of a tokenId a range,
``token_id >= 'X' AND token_id < 'Y'`` (``token_id_range``). A ``LIKE 'X%'`` alone uses the tokenId's b-tree only
under the "C" collation, and PostgreSQL servers here run C.UTF-8: the range is what the index answers, the
``startswith`` beside it keeps the match exact whatever the collation. A merchant's name is looked up in the small
merchant table first, then its tokens by their merchant's index.

Full card numbers never get here: ``core.admin.RefusesCardNumbersInSearch`` refuses them before any query.
"""

import re
from dataclasses import dataclass

from django.db.models import Q, QuerySet

from merchants.models import Merchant
from vault.models import TOKEN_ID_ALPHABET, TOKEN_ID_LENGTH, Token

SEPARATORS = re.compile(r"[\s.\-]+")
MASKED_NUMBER = re.compile(r"^(?P<bin>\d{4,8})(?P<mask>\*+|•+|[xX]+|…)(?P<last_four>\d{4})$")
TOKEN_ID_PREFIX = re.compile(f"^[{TOKEN_ID_ALPHABET}]{{4,{TOKEN_ID_LENGTH}}}$")


def token_id_range(prefix: str) -> Q:
    """Every tokenId starting with ``prefix``, as bounds a b-tree answers in any collation: from the prefix itself to
    the prefix with its last character that can grow grown by one in the tokenId alphabet (which every collation
    orders alike: digits, then capitals), ``7ABZ`` → ``7AC``. A prefix of Z's only has no upper bound."""
    for end in range(len(prefix) - 1, -1, -1):
        position = TOKEN_ID_ALPHABET.find(prefix[end])
        if 0 <= position < len(TOKEN_ID_ALPHABET) - 1:
            return Q(token_id__gte=prefix, token_id__lt=prefix[:end] + TOKEN_ID_ALPHABET[position + 1])
    return Q(token_id__gte=prefix)


@dataclass(frozen=True)
class TokenSearch:
    """The readings of one search term; each that applies is a way to find a token (they are or-ed)."""

    term: str
    masked: tuple[str, str, int | None] | None = None  # (first digits, last four, number length when known)
    last_four: str | None = None
    bin: str | None = None
    token_id: str | None = None  # a prefix, or the whole tokenId
    merchant_name: str | None = None

    @classmethod
    def read(cls, term: str) -> "TokenSearch":
        term = term.strip()
        compact = SEPARATORS.sub("", term).upper()
        if masked := MASKED_NUMBER.match(compact):
            mask = masked["mask"]
            length = len(masked["bin"]) + len(mask) + 4 if mask[0] != "…" else None
            return cls(term, masked=(masked["bin"], masked["last_four"], length))
        return cls(
            term,
            last_four=compact if re.fullmatch(r"\d{4}", compact) else None,
            bin=compact if re.fullmatch(r"\d{6}", compact) else None,
            token_id=compact if TOKEN_ID_PREFIX.match(compact) else None,
            merchant_name=term if not compact.isdigit() else None,
        )

    def readings(self) -> list[str]:
        """How the term was read, in words, for the page that found nothing."""
        said = []
        if self.masked:
            first, last_four, length = self.masked
            said.append(
                f"a masked card number: starting {first}, ending {last_four}" + (f", {length} digits" if length else "")
            )
        if self.last_four:
            said.append(f"the last four digits {self.last_four}")
        if self.bin:
            said.append(f"the BIN {self.bin}")
        if self.token_id:
            whole = len(self.token_id) == TOKEN_ID_LENGTH
            said.append(f"the tokenId {self.token_id}" if whole else f"a tokenId starting {self.token_id}")
        if self.merchant_name:
            said.append(f"a merchant whose name contains “{self.merchant_name}”")
        return said

    def filter(self, tokens: QuerySet[Token]) -> QuerySet[Token]:
        """``tokens`` that any reading of the term finds; none when the term can be read no way."""
        found = Q(pk__in=[])
        if self.masked:
            first, last_four, length = self.masked
            masked = Q(last_four=last_four, bin__startswith=first[:6])
            found |= masked & Q(pan_length=length) if length else masked
        if self.last_four:
            found |= Q(last_four=self.last_four)
        if self.bin:
            found |= Q(bin=self.bin)
        if self.token_id:
            whole = len(self.token_id) == TOKEN_ID_LENGTH
            found |= (
                Q(token_id=self.token_id)
                if whole
                else token_id_range(self.token_id) & Q(token_id__startswith=self.token_id)
            )
        if self.merchant_name:
            merchants = Merchant.objects.filter(Q(name__icontains=self.merchant_name) | Q(public_id=self.merchant_name))
            found |= Q(merchant_id__in=list(merchants.values_list("pk", flat=True)[:50]))
        return tokens.filter(found)
