"""Facts about card numbers: Luhn, brand by IIN range, masking. Pure functions, no I/O.

The Luhn check itself is ``core.cards``' (every app judges free text with it); the vault's callers call it from here,
as they always have.
"""

import functools

from core.cards import luhn_valid

# Longest prefixes first within each brand; brands are tried in this order so that the narrower ranges (Discover's
# slice of 622, Maestro's 6759) win over the broader ones that contain them.
_BRAND_RANGES: list[tuple[str, list[tuple[int, int]]]] = [
    ("AMEX", [(34, 34), (37, 37)]),
    ("DINERS", [(300, 305), (3095, 3095), (36, 36), (38, 39)]),
    ("JCB", [(3528, 3589)]),
    ("DISCOVER", [(6011, 6011), (622126, 622925), (644, 649), (65, 65)]),
    ("UNIONPAY", [(62, 62), (81, 81)]),
    ("MASTERCARD", [(51, 55), (2221, 2720)]),
    ("MAESTRO", [(50, 50), (56, 58), (6304, 6304), (6390, 6390), (67, 67)]),
    ("VISA", [(4, 4)]),
]


def luhn_check_digit(partial: str) -> str:
    """The digit that makes ``partial + digit`` pass the Luhn check."""
    for digit in "0123456789":
        if luhn_valid(partial + digit):
            return digit
    raise AssertionError("unreachable")


def brand_of(number: str) -> str:
    return _brand_of_prefix(number[:6])  # no range is longer than six digits: the BIN decides


@functools.lru_cache(maxsize=4096)
def _brand_of_prefix(prefix: str) -> str:
    """Cached: every tokenize asks, and an import asks for each of its cards."""
    for brand, ranges in _BRAND_RANGES:
        for low, high in ranges:
            width = len(str(low))
            if len(prefix) >= width and low <= int(prefix[:width]) <= high:
                return brand
    return "UNKNOWN"


def mask(number: str) -> str:
    """``4444********1111``: first four and last four digits, the rest starred."""
    return number[:4] + "*" * (len(number) - 8) + number[-4:]


# ISO 3166-1 alpha-2, officially assigned codes.
COUNTRY_CODES = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ
    CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO
    FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE
    JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO
    MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW
    PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM
    TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
    """.split()  # noqa: SIM905 - a table of 249 codes reads best as one
)
