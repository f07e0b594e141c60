"""Key custody in the back office: the data encryption keys (DEKs) and the fingerprint key, for superusers only.

Each key shows its name (version), state, when it was made, how many encrypted values are under it, its check value
and the KEK it is wrapped under: never any key material, wrapped or not. Three actions, each with a confirmation
page, each calling ``vault.keys`` with the superuser as the actor, which writes the change and its audit row:

- **Start a new DEK now** (on the active DEK): new data goes under a new version from every process's next look at
  the keys (``keys.dek.create``); what is stored stays under the older one until it is re-encrypted.
- **Re-encrypt to the current DEK** (on an older DEK): ``keys_rotate`` runs in the request for at most
  ``REENCRYPT_SECONDS`` (the web server cuts a request at 30 s), batch by batch, and says how many values are left:
  a run stopped there loses nothing, and the next one (or ``manage.py rotate_keys``, with its progress bar, for a
  large table) goes on from there. Run in the request rather than queued: nothing is left waiting for a worker, and
  the page says what was done.
- **Re-wrap under the current KEK** (on a key wrapped under another): ``kek_rotate``, seconds whatever the number of
  cards.

The number of values under each key is counted exactly, one GROUP BY scan of each encrypted table per page
(``vault.selectors.data_keys``: no index on ``key_version``, which every tokenize would pay for). Measured with
100,000 tokens under two DEK versions: about 60 ms on PostgreSQL and 50 ms on SQLite; a subquery per key instead took
1.4 s on PostgreSQL. Linear in the tokens (some 6 s at 10 million), on a page for superusers only.
"""

import time

from django.conf import settings
from django.contrib import admin, messages

from core.admin import ConfirmsActions, ObjectActions, ReadOnlyAdmin, staff_actor
from core.admin_display import BAD, GOOD, NOTHING, QUIET, WARNING, moment_shown, status_label
from vault import keys, selectors
from vault.crypto import KeysUnavailable
from vault.kek import kek_provider
from vault.models import DataKey

REENCRYPT_SECONDS = 20.0
STATE_TONES = {"active": GOOD, "decrypt-only": WARNING, "retired": QUIET, "not wrapped": BAD}


@admin.register(DataKey)
class DataKeyAdmin(ObjectActions, ConfirmsActions, ReadOnlyAdmin):
    """Looked at and acted on by superusers alone; never added, edited or deleted here."""

    list_display = ["name", "state", "created_at_shown", "values_shown", "check_value", "kek_id"]
    list_display_links = ["name"]
    ordering = ["purpose", "-version"]
    actions = ["start_new_dek", "reencrypt", "rewrap"]
    object_actions = {
        "start_new_dek": "Start a new DEK now",
        "reencrypt": "Re-encrypt to the current DEK",
        "rewrap": "Re-wrap under the current KEK",
    }
    fields = [
        "name",
        "state",
        "created_at_shown",
        "period_started_at_shown",
        "retired_at_shown",
        "values_shown",
        "check_value",
        "kek_id",
    ]
    readonly_fields = fields
    empty_hint = "The first card operation stores the first keys."

    def get_queryset(self, request):
        return selectors.data_keys()

    # Key custody is the superusers' business: nobody else sees the keys, whatever permissions they hold.
    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_superuser_permission(self, request):
        return request.user.is_superuser

    def object_action_applies(self, obj, name):
        state = self._state(obj)
        if name == "start_new_dek":
            return obj.purpose == DataKey.ENCRYPTION and state == "active"
        if name == "reencrypt":
            return state in ("decrypt-only", "not wrapped") and obj.purpose == DataKey.ENCRYPTION
        return obj.is_wrapped and obj.kek_id != kek_provider().current_kek_id()

    @staticmethod
    def _wrapping(key: DataKey, current: str) -> str:
        if not key.is_wrapped:
            return "not wrapped yet (manage.py migrate_keys_to_kek wraps it)"
        return f"already under {current}" if key.kek_id == current else f"wrapped under {key.kek_id}"

    @staticmethod
    def _state(obj) -> str:
        return selectors.data_key_state(obj, active=obj.active_version)

    @admin.display(description="key", ordering="version")
    def name(self, obj):
        return str(obj)

    @admin.display(description="state")
    def state(self, obj):
        state = self._state(obj)
        return status_label(state.capitalize(), STATE_TONES[state])

    @admin.display(description="created", ordering="created_at")
    def created_at_shown(self, obj):
        return moment_shown(obj.created_at)

    @admin.display(description="cryptoperiod from")
    def period_started_at_shown(self, obj):
        return moment_shown(obj.period_started_at)

    @admin.display(description="retired")
    def retired_at_shown(self, obj):
        return moment_shown(obj.retired_at)

    @admin.display(description="values under it", ordering="values")
    def values_shown(self, obj):
        return NOTHING if obj.purpose == DataKey.FINGERPRINT else f"{obj.values:,}"

    # --------------------------------------------------------------------------------------------------------
    # Actions
    # --------------------------------------------------------------------------------------------------------
    def _applying(self, queryset, name: str) -> tuple[list, list]:
        keys_shown = list(queryset)
        return [key for key in keys_shown if self.object_action_applies(key, name)], keys_shown

    @admin.action(description="Start a new DEK now", permissions=["superuser"])
    def start_new_dek(self, request, queryset):
        applying, shown = self._applying(queryset, "start_new_dek")
        if not request.POST.get("post"):
            return self.confirm(
                request,
                shown,
                action="start_new_dek",
                title="Start a new data encryption key",
                submit="Start a new DEK",
                intro="A new DEK is made and wrapped under the current KEK; every server encrypts new data under it "
                f"within {settings.VAULT_KEY_CHECK_SECONDS:g} s. What is stored stays under the older one until "
                "it is re-encrypted (that key's page, or manage.py rotate_keys).",
                rows=[(key, "the active DEK" if key in applying else "not the active DEK") for key in shown],
            )
        if not applying:
            self.message_user(request, "None of these is the active DEK: nothing was done.", messages.WARNING)
            return None
        try:
            version = keys.dek_create(actor=staff_actor(request))
        except KeysUnavailable as exc:
            self.message_user(request, f"No new DEK: {exc}", messages.ERROR)
            return None
        self.message_user(request, f"Started data encryption key version {version}.", messages.SUCCESS)
        return None

    @admin.action(description="Re-encrypt to the current DEK", permissions=["superuser"])
    def reencrypt(self, request, queryset):
        applying, shown = self._applying(queryset, "reencrypt")
        if not request.POST.get("post"):
            return self.confirm(
                request,
                shown,
                action="reencrypt",
                title="Re-encrypt to the current data encryption key",
                submit="Re-encrypt",
                intro="Every encrypted value under an older DEK (these and any other) is decrypted and encrypted again "
                f"under the active one, in batches, for at most {REENCRYPT_SECONDS:g} s; the API keeps serving. "
                "Keys left with nothing are retired. What is left is moved by the next run, or by manage.py "
                "rotate_keys for a large table.",
                rows=[
                    (key, f"{key.values:,} value(s) under it" if key in applying else "not an older DEK: nothing to do")
                    for key in shown
                ],
            )
        deadline = time.monotonic() + REENCRYPT_SECONDS
        try:
            rotation = keys.keys_rotate(should_stop=lambda: time.monotonic() >= deadline, actor=staff_actor(request))
        except KeysUnavailable as exc:
            self.message_user(request, f"Nothing more was re-encrypted: {exc}", messages.ERROR)
            return None
        retired = f"; retired key version(s) {', '.join(map(str, rotation.retired))}" if rotation.retired else ""
        if rotation.finished:
            self.message_user(request, f"Re-encrypted {rotation.rotated:,} value(s){retired}.", messages.SUCCESS)
        else:
            left = keys.values_on_other_versions(keys.key_ring().active_version)
            self.message_user(
                request,
                f"Re-encrypted {rotation.rotated:,} value(s) in {REENCRYPT_SECONDS:g} s; {left:,} left: run it again, "
                "or manage.py rotate_keys.",
                messages.WARNING,
            )
        return None

    @admin.action(description="Re-wrap under the current KEK", permissions=["superuser"])
    def rewrap(self, request, queryset):
        applying, shown = self._applying(queryset, "rewrap")
        current = kek_provider().current_kek_id()
        if not request.POST.get("post"):
            return self.confirm(
                request,
                shown,
                action="rewrap",
                title="Re-wrap under the current key encryption key",
                submit="Re-wrap",
                intro=f"Every key wrapped under another KEK (these and any other) is unwrapped and wrapped again under "
                f"{current}. No card is touched. The old KEK may then be destroyed, once no backup you keep holds "
                "keys wrapped under it.",
                rows=[(key, self._wrapping(key, current)) for key in shown],
            )
        try:
            rotation = keys.kek_rotate(actor=staff_actor(request))
        except KeysUnavailable as exc:
            self.message_user(request, f"Not every key was re-wrapped: {exc}", messages.ERROR)
            return None
        self.message_user(
            request, f"Re-wrapped {len(rotation.rewrapped)} key(s) under {rotation.to_kek}.", messages.SUCCESS
        )
        return None
