"""Every read the vault API and admin make: scoped to a merchant, live tokens only unless said otherwise."""

import re
from datetime import date, datetime, time, timedelta
from urllib.parse import urlsplit

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from core.errors import NotFound, ResourceNotFound
from merchants.models import Merchant
from vault.crypto import configured_key_ring
from vault.models import TOKEN_ID_ALPHABET, TOKEN_ID_LENGTH, KeyCheck, Namespace, Token, TokenConflict

TOKEN_ID = re.compile(f"^[{TOKEN_ID_ALPHABET}]{{{TOKEN_ID_LENGTH}}}$")
HREF_PATH = re.compile(r"^(?:.*/)?tokens/([A-Za-z0-9_-]+)/?$")


def live_tokens(*, merchant: Merchant) -> QuerySet[Token]:
    return Token.objects.filter(merchant=merchant, deleted_at__isnull=True, expires_at__gt=timezone.now())


def token_get(*, merchant: Merchant, reference: str | None = None, token_id: str | None = None) -> Token:
    """The merchant's live token by href reference or tokenId; anything else (another merchant's, deleted,
    expired, unknown) is ResourceNotFound, so nobody can tell those cases apart."""
    lookup = {"reference": reference} if reference is not None else {"token_id": token_id}
    token = live_tokens(merchant=merchant).select_related("namespace").filter(**lookup).first()
    if token is None:
        raise ResourceNotFound("The token does not exist")
    return token


def token_named(value: str) -> dict[str, str] | None:
    """How a request names a token, as a lookup: ``{"token_id": …}`` for a tokenId, ``{"reference": …}`` for an
    href (``…/tokens/<reference>``); None when ``value`` is neither."""
    if TOKEN_ID.match(value):
        return {"token_id": value}
    match = HREF_PATH.match(urlsplit(value).path)
    return {"reference": match.group(1)} if match else None


def token_named_get(*, merchant: Merchant, value: str) -> Token:
    """The merchant's live token named by ``value`` (a tokenId or an href, ``token_named``), else NotFound."""
    lookup = token_named(value)
    if lookup is None:
        raise NotFound("The token does not exist")
    return token_get(merchant=merchant, **lookup)


def token_list(*, merchant: Merchant, namespace: str) -> QuerySet[Token]:
    tokens = live_tokens(merchant=merchant).filter(namespace__name=namespace).select_related("namespace")
    return tokens.order_by("pk")


def conflict_pending(*, token: Token) -> TokenConflict | None:
    return TokenConflict.objects.filter(token=token, expires_at__gt=timezone.now()).first()


def namespaces_with_counts() -> QuerySet[Namespace]:
    return Namespace.objects.select_related("merchant").annotate(
        card_count=Count("tokens", filter=Q(tokens__deleted_at__isnull=True, tokens__expires_at__gt=timezone.now()))
    )


def key_ring_problems() -> list[str]:
    """What keeps this process's keys from serving the cards stored: one sentence each, naming versions and
    settings, never key material; empty when all is well.

    The keys are compared with the check values stored with the data (``KeyCheck``, a table of a few rows: one query,
    never a scan of the cards): a version that holds data (recorded, not retired by ``rotate_keys``) but is not in
    ``VAULT_KEYS``, a version whose key differs from the one recorded for it, a fingerprint key that differs. Card
    operations refuse while there is any (``vault.keys.keys_verify``); nothing recorded yet (a new database) is
    no problem. Raises DatabaseError when the database cannot be read.
    """
    ring = configured_key_ring()
    problems = []
    for check in KeyCheck.objects.all():
        if check.purpose == KeyCheck.FINGERPRINT:
            if check.check_value != ring.fingerprint_check_value:
                problems.append(
                    "VAULT_FINGERPRINT_KEY differs from the one the data was written with: duplicate "
                    "tokens would follow"
                )
        elif check.version not in ring.versions:
            if check.retired_at is None:
                problems.append(f"key version {check.version} holds data but is not in VAULT_KEYS")
        elif check.check_value and check.check_value != ring.check_value(check.version):
            problems.append(f"key version {check.version} in VAULT_KEYS differs from the one the data was written with")
    return problems


# ------------------------------------------------------------------------------------------------------------
# The back-office dashboard: aggregates only, a fixed number of queries whatever the number of tokens
# ------------------------------------------------------------------------------------------------------------
def tokens_created_per_day(*, first_day: date, last_day: date) -> dict[date, int]:
    """Tokens created on each day from ``first_day`` to ``last_day`` included, in the current time zone, every day
    present (0 when none). Deleted tokens count: they were created. One GROUP BY query on the created_at index
    (COUNT(*), not of a column, so that PostgreSQL may answer from the index alone)."""
    zone = timezone.get_current_timezone()
    start = datetime.combine(first_day, time.min, tzinfo=zone)
    end = datetime.combine(last_day + timedelta(days=1), time.min, tzinfo=zone)
    rows = (
        Token.objects.filter(created_at__gte=start, created_at__lt=end)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(count=Count("*"))
        .order_by("day")
    )
    counts = {row["day"]: row["count"] for row in rows}
    days = (first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1))
    return {day: counts.get(day, 0) for day in days}
