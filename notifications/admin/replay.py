"""Replaying an endpoint's failed deliveries: the window form, its default, its count, and where the result is seen.

The window defaults to when the endpoint started failing (``selectors.replay_window_start``), so the form replays
what the operator came for without being touched. The count of what the window holds ("41 of 78 failed deliveries
will be replayed") is rendered with the form, and kept current as the window changes by
notifications/static/notifications/replay_count.js, which asks ``replay_count_view`` (JSON, same text). A window
holding nothing is refused: a replay of nothing is not a success.
"""

from datetime import datetime, timedelta
from urllib.parse import urlencode

from django import forms
from django.urls import reverse
from django.utils import timezone

from core.admin_display import counted, when_shown
from notifications import selectors
from notifications.models import WebhookEndpoint

MINUTE_FORMAT = "%Y-%m-%dT%H:%M"


class ReplayWindowForm(forms.Form):
    """When the events happened whose failed deliveries are replayed; ``count_text`` says how many that is."""

    since = forms.DateTimeField(
        label="Events from", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format=MINUTE_FORMAT)
    )
    until = forms.DateTimeField(
        label="Events until", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format=MINUTE_FORMAT)
    )

    class Media:
        js = ["notifications/replay_count.js"]

    def __init__(self, *args, endpoints: list[WebhookEndpoint], count_url: str = "", **kwargs):
        now = timezone.now()
        starts = [selectors.replay_window_start(endpoint=endpoint, now=now) for endpoint in endpoints]
        # The form shows minutes: the window starts at the minute the failures did and ends at the next whole
        # minute, so it holds the first failure and what failed just now.
        since = min(starts, default=now - timedelta(hours=24)).replace(second=0, microsecond=0)
        until = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
        super().__init__(*args, initial={"since": since, "until": until}, **kwargs)
        self.endpoints, self.count_url = endpoints, count_url
        zone = timezone.get_current_timezone_name()
        self.fields["since"].help_text = f"{zone}, when the event happened (not when it was last attempted). " + (
            default_reason(endpoints[0]) if len(endpoints) == 1 else "Starts when the first of these began failing."
        )
        self.fields["until"].help_text = f"{zone}, included."

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("since") and cleaned.get("until") and cleaned["since"] > cleaned["until"]:
            raise forms.ValidationError("The window ends before it starts.")
        return cleaned

    def window(self) -> tuple[datetime, datetime]:
        """The window asked for when the form is valid, else the one it shows by default."""
        if self.is_bound and self.is_valid():
            return self.cleaned_data["since"], self.cleaned_data["until"]
        return self.initial["since"], self.initial["until"]

    def counts(self) -> dict:
        since, until = self.window()
        return selectors.replayable_count(endpoints=self.endpoints, since=since, until=until)

    @property
    def count_text(self) -> str:
        return count_text(self.counts())


def default_reason(endpoint: WebhookEndpoint) -> str:
    if endpoint.failing_since is not None:
        return f"Starts when the endpoint began failing, {when_shown(endpoint.failing_since)}."
    return "Starts at its oldest failed delivery's event (the last 24 hours when it has none)."


def count_text(counts: dict) -> str:
    """ "41 of 78 failed deliveries will be replayed." """
    failed = counted(counts["failed"], "failed delivery", "failed deliveries")
    if not counts["failed"]:
        return "There is no failed delivery to replay."
    if not counts["in_window"]:
        return f"None of the {failed} has its event in this window: nothing would be replayed."
    return f"{counts['in_window']:,} of {failed} will be replayed."


def count_url(endpoints: list[WebhookEndpoint]) -> str:
    """Where the form's script asks for the count: the endpoints' ids ride along, the window is the script's."""
    path = reverse("admin:notifications_webhookendpoint_replay_count")
    return f"{path}?{urlencode([('endpoint', endpoint.pk) for endpoint in endpoints])}"


def replayed_url(endpoints: list[WebhookEndpoint], *, since: datetime, until: datetime, at: datetime) -> str:
    """The deliveries list showing what a replay at ``at`` took: the endpoints' deliveries whose event is in the
    window and that changed since (a replayed delivery is written at the replay and at each attempt after it; a
    delivery that had succeeded before is not). Ids-free, so the link keeps working whatever comes after."""
    ids = [endpoint.pk for endpoint in endpoints]
    endpoint_filter = (
        {"endpoint__id__exact": ids[0]} if len(ids) == 1 else {"endpoint__id__in": ",".join(map(str, ids))}
    )
    query = {
        **endpoint_filter,
        "event__created_at__gte": since.isoformat(),
        "event__created_at__lte": until.isoformat(),
        "updated_at__gte": at.replace(microsecond=0).isoformat(),
    }
    return f"{reverse('admin:notifications_delivery_changelist')}?{urlencode(query)}"
