"""Rotation: values moved to the active DEK, emptied versions retired, and keys re-wrapped under a new KEK. See
``vault.keys``."""

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import DatabaseError, transaction
from django.utils import timezone

from core.audit import SYSTEM, Actor, audit_record
from vault.crypto import (
    KeyRingMismatch,
    KeysUnreachable,
)
from vault.kek import KekUnavailable, kek_provider
from vault.keys.ring import _key_of, _Mismatch, dek_create, encrypted_models, key_ring, key_ring_refresh
from vault.models import DataKey


# ------------------------------------------------------------------------------------------------------------
# Rotation: values to the active DEK, retirement of emptied versions
# ------------------------------------------------------------------------------------------------------------
def key_versions_retire(*, active: int) -> list[int]:
    """Mark retired every DEK version but ``active`` that no encrypted value is under any more, and return them. Its
    wrapped key stays, with the backups made under it (and a process that still encrypted under it, before its
    next look, would still read what it wrote: ``keys_rotate`` run again moves that too).

    Looks each candidate up in every encrypted table, a scan where none is left: ``rotate_keys``'s business, never a
    request's.
    """
    retired = []
    for row in DataKey.objects.filter(purpose=DataKey.ENCRYPTION, retired_at__isnull=True).exclude(version=active):
        in_use = any(
            model.objects.filter(key_version=row.version, **{f"{model.encrypted_field}__isnull": False}).exists()
            for model in encrypted_models()
        )
        if not in_use:
            DataKey.objects.filter(pk=row.pk, retired_at__isnull=True).update(retired_at=timezone.now())
            retired.append(row.version)
    if retired:
        key_ring_refresh()
    return retired


class _Stopped(Exception):
    """``keys_rotate``'s should_stop said so."""


@dataclass(frozen=True)
class Rotation:
    rotated: int  # values re-encrypted
    retired: list[int]  # DEK versions no value is under any more
    finished: bool = True  # False when should_stop ended the run: values may be left on other versions


def keys_rotate(
    *,
    batch_size: int = 500,
    on_batch: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    new_dek: bool = False,
    actor: Actor = SYSTEM,
) -> Rotation:
    """Re-encrypt every encrypted column (card numbers, network token numbers, cards awaiting an async request,
    webhook secrets, destination credentials, idempotent answers) under the active DEK, then retire the versions no
    value is left under (``key_versions_retire``). With ``new_dek``, start a new DEK first (``dek_create``).

    Works in batches of ``batch_size`` rows, each its own transaction holding row locks only on its batch, so the
    API keeps serving and an interrupted run loses nothing: a rerun picks up the rows still on other versions.
    ``should_stop`` is asked after each batch: once it says so, the run ends there (``Rotation.finished`` False),
    as an interrupted one would. Versions that hold nothing are retired first too. One audit row per run:
    ``keys.rotate.finish``, or ``keys.rotate.stop`` (with the rows moved) for a run stopped, interrupted or failed.
    Raises KeyRingMismatch, having
    changed nothing, while the keys do not match the data, KeysUnreachable while the KEK provider cannot unwrap a key
    it needs, and KeyVersionUnavailable for a value under a version no key is stored for.
    """
    if new_dek:
        dek_create(actor=actor, reason="started by rotate_keys --new-dek")
    ring = key_ring()
    active = ring.active_version
    retired = key_versions_retire(active=active)
    rotated = 0
    try:
        for model in encrypted_models():
            field_name = model.encrypted_field
            last_pk = 0
            while True:
                with transaction.atomic():
                    batch = list(
                        model.objects.select_for_update(of=("self",))
                        .filter(pk__gt=last_pk, **{f"{field_name}__isnull": False})
                        .exclude(key_version=active)
                        .order_by("pk")[:batch_size]
                    )
                    for row in batch:
                        aad = row.associated_data()
                        plain = ring.decrypt(row.key_version, getattr(row, field_name), associated_data=aad)
                        row.key_version, ciphertext = ring.encrypt(plain, associated_data=aad)
                        setattr(row, field_name, ciphertext)
                    model.objects.bulk_update(batch, ["key_version", field_name])
                if not batch:
                    break
                last_pk = batch[-1].pk
                rotated += len(batch)
                if on_batch:
                    on_batch(len(batch))
                if should_stop and should_stop():
                    raise _Stopped
    except BaseException as stop:
        # One audit row per run: a run stopped, by should_stop or by anything else (an interrupt, a failure), says
        # how far it went; a rerun goes on from there.
        with contextlib.suppress(DatabaseError):
            audit_record(actor=actor, action="keys.rotate.stop", detail={"to_version": active, "rows": rotated})
        if isinstance(stop, _Stopped):
            return Rotation(rotated=rotated, retired=retired, finished=False)
        raise
    retired += key_versions_retire(active=active)
    audit_record(
        actor=actor,
        action="keys.rotate.finish",
        detail={"to_version": active, "rows": rotated, "retired_versions": retired},
    )
    return Rotation(rotated=rotated, retired=retired)


def values_on_other_versions(active: int) -> int:
    """How many encrypted values are under another DEK version than ``active`` (what keys_rotate has to move)."""
    return sum(
        model.objects.filter(**{f"{model.encrypted_field}__isnull": False}).exclude(key_version=active).count()
        for model in encrypted_models()
    )


# ------------------------------------------------------------------------------------------------------------
# The KEK: re-wrapping under a new one
# ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KekRotation:
    to_kek: str
    rewrapped: list[str] = field(default_factory=list)  # the keys re-wrapped, by name
    from_keks: list[str] = field(default_factory=list)  # the KEKs no key is wrapped under any more


def kek_rotate(*, actor: Actor = SYSTEM) -> KekRotation:
    """Re-wrap every stored key (DEKs, retired ones included, and the fingerprint key) that is wrapped under another
    KEK than the provider's current one, under the current one. Touches the keys' rows only, never an encrypted
    value: seconds, whatever the number of cards. Each key is checked against its check value before it is stored
    again, and each row is updated only if it is still as it was read (two runs at once re-wrap it once).
    Idempotent. Audited (``keys.kek.rotate``).

    Raises KeysUnreachable when the provider cannot unwrap or wrap now, KeyRingMismatch when a key does not unwrap
    (its KEK is not among the provider's) or unwraps to another key than the data's: the keys re-wrapped until then
    stay re-wrapped, and a rerun does the rest.
    """
    provider = kek_provider()
    current = provider.current_kek_id()
    rewrapped, from_keks = [], set()
    for row in DataKey.objects.filter(wrapped_key__isnull=False).exclude(kek_id=current).order_by("pk"):
        try:
            key = _key_of(row)
        except _Mismatch as mismatch:
            raise KeyRingMismatch([mismatch.problem]) from None
        try:
            kek_id, wrapped = provider.wrap(key)
        except KekUnavailable as exc:
            raise KeysUnreachable(str(exc)) from None
        if DataKey.objects.filter(pk=row.pk, kek_id=row.kek_id).update(kek_id=kek_id, wrapped_key=wrapped):
            rewrapped.append(str(row))
            from_keks.add(row.kek_id)
    rotation = KekRotation(to_kek=current, rewrapped=rewrapped, from_keks=sorted(from_keks))
    audit_record(
        actor=actor,
        action="keys.kek.rotate",
        detail={"to_kek": current, "from_keks": rotation.from_keks, "keys": len(rewrapped)},
    )
    return rotation


def keks_in_use() -> list[str]:
    """The KEKs stored keys are wrapped under (a KEK may be destroyed once it is none of these, and no backup that
    must still be restorable holds keys wrapped under it)."""
    return sorted(set(DataKey.objects.filter(wrapped_key__isnull=False).values_list("kek_id", flat=True)))
