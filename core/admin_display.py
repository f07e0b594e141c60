"""How every admin page shows what it shows: one set of status labels, one date format with a relative time beside it,
card expiries as the card prints them, merchants by a short name, counts in words.

The apps map their own states to a label (``status_label``) with one of four tones, so "Healthy", "Active" and
"Succeeded" look alike everywhere, and so do "Failing", "Expired" and "Dead letter". Their colours are
core/static/backoffice/backoffice.css's, which every admin page loads (templates/admin/base_site.html).
"""

from datetime import UTC, datetime, timedelta

from django.utils import timezone
from django.utils.html import format_html

# A label's tone: what a reader should feel, whatever the object.
GOOD = "good"  # working as it should: Active, Healthy, Succeeded
WARNING = "warning"  # needs a look soon, or is on its way: Expiring, Retrying, Pending, Suspended
BAD = "bad"  # something is wrong: Failing, Dead letter, Expired, Failed
QUIET = "quiet"  # finished or switched off on purpose: Deleted, Disabled, Dismissed
TONES = (GOOD, WARNING, BAD, QUIET)

DATE_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
MERCHANT_NAME_LENGTH = 22
NOTHING = "—"


def status_label(text: str, tone: str):
    """A coloured label: ``<span class="status status-<tone>">text</span>``."""
    if tone not in TONES:
        raise ValueError(f"unknown tone {tone!r}")
    return format_html('<span class="status status-{}">{}</span>', tone, text)


def when_shown(moment: datetime | None) -> str:
    """One format everywhere, with seconds, in UTC: ``2026-12-02 07:22:34 UTC``."""
    if moment is None:
        return NOTHING
    return moment.astimezone(UTC).strftime(DATE_FORMAT)


def relative(moment: datetime, now: datetime | None = None) -> str:
    """How far ``moment`` is from now, as a person says it: "just now", "3 min ago", "in 22 min", "5 h ago",
    "in 3 days"."""
    delta = moment - (now or timezone.now())
    seconds = abs(delta.total_seconds())
    if seconds < 45:
        return "just now"
    minutes, hours, days = seconds / 60, seconds / 3_600, seconds / 86_400
    if minutes < 90:
        span = f"{max(1, round(minutes))} min"
    elif hours < 36:
        span = f"{round(hours)} h"
    elif days < 365:
        span = counted(round(days), "day")
    else:
        span = counted(round(days / 365), "year")
    return f"in {span}" if delta > timedelta(0) else f"{span} ago"


def moment_shown(moment: datetime | None, now: datetime | None = None):
    """A date as every admin page shows it: the UTC time, and how long ago (or in how long) it is.

    ``<time datetime="…">2026-12-02 07:22:34 UTC</time> <span class="relative">(3 h ago)</span>``.
    """
    if moment is None:
        return NOTHING
    return format_html(
        '<time datetime="{}">{}</time> <span class="relative">({})</span>',
        moment.isoformat(),
        when_shown(moment),
        relative(moment, now),
    )


def merchant_shown(merchant):
    """A merchant as a list cell: a short name, the whole name and the id on hover."""
    if merchant is None:
        return NOTHING
    name = merchant.name
    short = name if len(name) <= MERCHANT_NAME_LENGTH else name[: MERCHANT_NAME_LENGTH - 1].rstrip() + "…"
    return format_html('<span class="merchant" title="{} ({})">{}</span>', name, merchant.public_id, short)


def expiry_shown(month: int | None, year: int | None) -> str:
    """A card's or a network token's expiry as the card shows it: ``05/2035``."""
    return f"{month:02d}/{year}" if month and year else NOTHING


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """``1 token``, ``3 tokens``, ``0 deliveries`` (give ``plural`` when adding an s is wrong)."""
    return f"{count:,} {singular if count == 1 else plural or singular + 's'}"
