"""How a rate limit is written: DRF's throttle rates, ``N/second``, ``N/minute``, ``N/hour`` or ``N/day``.

Plain Python, with no Django import: the settings check theirs at start-up with it, and the merchant's fields use it
as their validator. N is at most 9,999: DRF keeps the time of each call of the window, and the cache reads and writes
that list on every call.
"""

import re

RATE = re.compile(r"[1-9][0-9]{0,3}/(second|minute|hour|day)")
RATE_HELP = "N/second, N/minute, N/hour or N/day, N from 1 to 9999"


def is_rate(value: str) -> bool:
    return RATE.fullmatch(value) is not None
