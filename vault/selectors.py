"""Every read the vault API and admin make: scoped to a merchant, live tokens only unless said otherwise."""

import re
from datetime import date, datetime, time, timedelta
from urllib.parse import urlsplit

from django.db.models import Case, Count, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import TruncDate
from django.utils import timezone

from core.errors import NotFound, ResourceNotFound
from merchants.models import Merchant
from vault import keys
from vault.models import TOKEN_ID_ALPHABET, TOKEN_ID_LENGTH, DataKey, Namespace, Token, TokenConflict

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
    """What keeps this process's keys from serving the values stored (``vault.keys.keys_problems``): one sentence
    each, never key material; empty when all is well. For ``/healthz``: the stored keys (a table of a few rows) read,
    and the fingerprint key and the active DEK unwrapped the first time only."""
    return keys.keys_problems()


def data_keys() -> QuerySet[DataKey]:
    """Every stored key, with ``active_version`` (the version new data is encrypted under) and ``values`` (how many
    encrypted values are under it: cards, network token numbers, secrets; 0 for the fingerprint key).

    The values are counted first, with one GROUP BY per encrypted table: with no index on ``key_version`` (every
    tokenize would pay for one), a scan of each, which the admin's page of keys can afford and a request could not
    (see ``vault.admin.keys`` for its cost on 100,000 tokens). Counting per key instead, in a subquery for each row,
    scanned each table once per key.
    """
    counts: dict[int, int] = {}
    for model in keys.encrypted_models():
        rows = (
            model.objects.filter(**{f"{model.encrypted_field}__isnull": False})
            .values_list("key_version")
            .annotate(count=Count("*"))
            .order_by()
        )
        for version, count in rows:
            counts[version] = counts.get(version, 0) + count
    active = (
        DataKey.objects.filter(purpose=DataKey.ENCRYPTION, retired_at__isnull=True)
        .order_by("-version")
        .values("version")[:1]
    )
    values = Case(*(When(version=version, then=Value(count)) for version, count in counts.items()), default=Value(0))
    return DataKey.objects.annotate(active_version=Subquery(active), values=values)


def data_key_state(row: DataKey, *, active: int | None) -> str:
    """``active`` (the DEK new data is encrypted under, and the fingerprint key), ``decrypt-only`` (an older DEK still
    holding data), ``retired`` (holding none), or ``not wrapped`` (a key of VAULT_KEYS awaiting migrate_keys_to_kek)."""
    if row.retired_at is not None:
        return "retired"
    if not row.is_wrapped:
        return "not wrapped"
    if row.purpose == DataKey.FINGERPRINT or row.version == active:
        return "active"
    return "decrypt-only"


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
