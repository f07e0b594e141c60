"""The move from ``VAULT_KEYS``: the keys of the environment wrapped under the KEK. See ``vault.keys``."""

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from core.audit import SYSTEM, Actor, audit_record
from vault.crypto import (
    KeyRingMismatch,
    KeysUnreachable,
    check_value,
)
from vault.kek import KekUnavailable, kek_provider
from vault.keys.ring import FINGERPRINT_DIFFERS, _token_pk_now, key_ring_refresh, legacy_keys
from vault.models import DataKey


# ------------------------------------------------------------------------------------------------------------
# The move from VAULT_KEYS
# ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyMigration:
    wrapped: list[str]  # the keys wrapped now, by name
    already: list[str]  # the keys found wrapped already
    kek: str


def keys_migrate_to_kek(*, actor: Actor = SYSTEM) -> KeyMigration:
    """Wrap the keys of ``VAULT_KEYS`` and ``VAULT_FINGERPRINT_KEY`` under the current KEK, each stored with the
    version and check value the data was written with: no encrypted row changes, every value still decrypts and
    every fingerprint stays what it was. Idempotent: a key wrapped already is left as it is.

    Checks everything before it writes anything, in one transaction: every stored key not wrapped yet and not
    retired must be in those variables, under the same check value, and ``VAULT_ACTIVE_KEY_VERSION``, when set, must
    be the newest stored version (a rotation between VAULT_KEYS versions is finished first, with rotate_keys).
    Raises KeyRingMismatch naming what differs, KeysUnreachable when the KEK provider cannot wrap now. The cryptoperiod
    of the active DEK starts now. Audited (``keys.migrate_to_kek``). Safe while the API serves: processes still on
    VAULT_KEYS go on with the same keys, and processes on the KEK read the wrapped ones.
    """
    legacy = legacy_keys()
    wrapped, already, problems = [], [], []
    with transaction.atomic():
        rows = list(DataKey.objects.select_for_update().order_by("pk"))
        fingerprint = next((row for row in rows if row.purpose == DataKey.FINGERPRINT), None)
        encryption = {row.version: row for row in rows if row.purpose == DataKey.ENCRYPTION}
        live = [version for version, row in encryption.items() if row.retired_at is None]
        if legacy.active_version is not None and live and legacy.active_version != max(live):
            problems.append(
                f"VAULT_ACTIVE_KEY_VERSION is {legacy.active_version} but version {max(live)} holds the newest data: "
                "finish the rotation first (rotate_keys), then migrate"
            )
        plan: list[tuple[DataKey, bytes]] = []
        for version, row in sorted(encryption.items()):
            key = legacy.keys.get(version)
            if row.is_wrapped:
                already.append(str(row))
            elif key is None:
                if row.retired_at is None:
                    problems.append(f"key version {version} holds data but is not in VAULT_KEYS")
            elif row.check_value and row.check_value != check_value(key):
                problems.append(f"key version {version} in VAULT_KEYS differs from the one the data was written with")
            else:
                plan.append((row, key))
        if fingerprint is not None and fingerprint.is_wrapped:
            already.append(str(fingerprint))
        elif fingerprint is not None or encryption:
            if legacy.fingerprint_key is None:
                problems.append("VAULT_FINGERPRINT_KEY is not set: the cards' fingerprints were made with it")
            elif fingerprint is not None and fingerprint.check_value != check_value(legacy.fingerprint_key):
                problems.append(FINGERPRINT_DIFFERS)
            else:
                plan.append((fingerprint or DataKey(purpose=DataKey.FINGERPRINT), legacy.fingerprint_key))
        if problems:
            raise KeyRingMismatch(problems)
        now, token_pk = timezone.now(), _token_pk_now()
        for row, key in plan:
            try:
                row.kek_id, row.wrapped_key = kek_provider().wrap(key)
            except KekUnavailable as exc:
                raise KeysUnreachable(str(exc)) from None
            row.check_value = check_value(key)
            if row.purpose == DataKey.ENCRYPTION:
                row.period_started_at, row.token_pk_at_start = now, token_pk
            row.save()
            wrapped.append(str(row))
        migration = KeyMigration(wrapped=wrapped, already=already, kek=kek_provider().current_kek_id())
        if wrapped:
            audit_record(actor=actor, action="keys.migrate_to_kek", detail={"keys": wrapped, "kek": migration.kek})
    key_ring_refresh()
    return migration
