"""Staff permission and group changes in the audit log (DESIGN.md "Security model"; PCI DSS 10.2.1.5).

Who may do what in the admin lives in Django's ``auth`` tables: each user's groups, permissions and flags
(``is_active``, ``is_staff``, ``is_superuser``), and each group's permissions. They change through the admin, a
shell, a management command or code, with no service of ours in between, so the changes are caught where all of
these meet: the model signals, connected by ``connect`` (``BackofficeConfig.ready``). Each change is one row naming
the user (``user``, their username) or the group (``group``, its name) and what changed: group names, permissions as
``app_label.codename``, flags before and after; never a password.

- ``staff.user.created`` (its flags), ``staff.user.deleted``, ``staff.user.flags_changed``
- ``staff.user.groups_added`` / ``staff.user.groups_removed``, ``staff.user.permissions_added`` / ``…_removed``
- ``staff.group.created``, ``staff.group.deleted``, ``staff.group.permissions_added`` / ``…_removed``

A change made from the other side of a relation (``group.user_set.add(…)``, ``permission.group_set.remove(…)``) is
the same change and is written on each user or group it touches. Only what changed is written: a membership added
twice or removed where there was none writes nothing, and a save that leaves the flags as they were writes no row.

The actor is the one ``acting`` names around the change: the admin's user and group pages name the staff user of the
request (backoffice/admin.py); any other change is the ``SYSTEM``'s. Rows loaded raw (``loaddata``, the test runner
restoring a database) are copies of rows, not changes: neither they nor the memberships loaded with them are written.
"""

import functools
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save

from core.audit import SYSTEM, Actor, audit_record

FLAGS = ("is_active", "is_staff", "is_superuser")
_actor: ContextVar[Actor] = ContextVar("staff_audit_actor", default=SYSTEM)

# Set on an instance between the pre_ and post_ signals of one change (and on a row loaded raw): never stored.
_FLAGS_BEFORE = "_staff_audit_flags_before"
_REMOVING = "_staff_audit_removing"
_LOADED = "_staff_audit_loaded"


@contextmanager
def acting(actor: Actor) -> Iterator[None]:
    """Changes made inside the block are audited as ``actor``'s (a staff user of the admin)."""
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


@dataclass(frozen=True)
class _Relation:
    """A many-to-many table of ``auth``: its owner (the user or group whose access it is) and its members."""

    action: str  # "staff.user.groups": "_added" or "_removed" follows
    owner: type
    member: type
    owner_field: str  # the through model's foreign key to the owner
    member_field: str


def connect() -> None:
    """Connect the receivers (once: a second call changes nothing)."""
    user = get_user_model()
    pre_save.connect(_user_before_save, sender=user, dispatch_uid="staff_audit.user.pre_save")
    post_save.connect(_user_saved, sender=user, dispatch_uid="staff_audit.user.post_save")
    post_delete.connect(_user_deleted, sender=user, dispatch_uid="staff_audit.user.post_delete")
    post_save.connect(_group_saved, sender=Group, dispatch_uid="staff_audit.group.post_save")
    post_delete.connect(_group_deleted, sender=Group, dispatch_uid="staff_audit.group.post_delete")
    for through in _relations():
        m2m_changed.connect(_relation_changed, sender=through, dispatch_uid=f"staff_audit.{through._meta.label}")


@functools.cache
def _relations() -> dict[type, _Relation]:
    user = get_user_model()
    return {
        user.groups.through: _Relation("staff.user.groups", user, Group, "user", "group"),
        user.user_permissions.through: _Relation("staff.user.permissions", user, Permission, "user", "permission"),
        Group.permissions.through: _Relation("staff.group.permissions", Group, Permission, "group", "permission"),
    }


# ------------------------------------------------------------------------------------------------------------
# Users and groups
# ------------------------------------------------------------------------------------------------------------
def _user_before_save(sender, instance, raw, update_fields, **kwargs):
    if raw or instance.pk is None or not _saved_flags(update_fields):
        return
    setattr(instance, _FLAGS_BEFORE, sender.objects.filter(pk=instance.pk).values(*FLAGS).first())


def _user_saved(sender, instance, created, raw, update_fields, **kwargs):
    if raw:
        setattr(instance, _LOADED, True)
        return
    before = instance.__dict__.pop(_FLAGS_BEFORE, None)
    if created:
        _record("staff.user.created", instance, {flag: bool(getattr(instance, flag)) for flag in FLAGS})
        return
    if before is None:
        return
    changed = {
        flag: {"before": before[flag], "after": bool(getattr(instance, flag))}
        for flag in _saved_flags(update_fields)
        if before[flag] != bool(getattr(instance, flag))
    }
    if changed:
        _record("staff.user.flags_changed", instance, changed)


def _saved_flags(update_fields) -> list[str]:
    return [flag for flag in FLAGS if update_fields is None or flag in update_fields]


def _user_deleted(sender, instance, **kwargs):
    _record("staff.user.deleted", instance)


def _group_saved(sender, instance, created, raw, **kwargs):
    if raw:
        setattr(instance, _LOADED, True)
    elif created:
        _record("staff.group.created", instance)


def _group_deleted(sender, instance, **kwargs):
    _record("staff.group.deleted", instance)


# ------------------------------------------------------------------------------------------------------------
# Memberships: a user's groups and permissions, a group's permissions
# ------------------------------------------------------------------------------------------------------------
def _relation_changed(sender, instance, action, reverse, pk_set, **kwargs):
    relation = _relations()[sender]
    if not reverse and getattr(instance, _LOADED, False):
        return
    # Removals are read before they happen: what ``remove`` is given may hold pairs that are not there, and
    # ``clear`` says nothing of what it takes away.
    if action in ("pre_remove", "pre_clear"):
        setattr(instance, _REMOVING, _existing_pairs(relation, sender, instance, reverse, pk_set))
    elif action in ("post_remove", "post_clear"):
        _record_pairs(relation, "removed", instance.__dict__.pop(_REMOVING, []))
    elif action == "post_add":  # Django gives only the pairs it added
        _record_pairs(relation, "added", [(instance.pk, pk) if not reverse else (pk, instance.pk) for pk in pk_set])


def _existing_pairs(relation: _Relation, through, instance, reverse: bool, pk_set) -> list[tuple]:
    """(owner pk, member pk) of the rows of ``through`` that ``instance`` is in, among ``pk_set`` on the other side
    (all of them when None)."""
    this, other = (
        (relation.member_field, relation.owner_field) if reverse else (relation.owner_field, relation.member_field)
    )
    rows = through.objects.filter(**{this: instance.pk})
    if pk_set is not None:
        rows = rows.filter(**{f"{other}__in": pk_set})
    return list(rows.values_list(f"{relation.owner_field}_id", f"{relation.member_field}_id"))


def _record_pairs(relation: _Relation, verb: str, pairs: list[tuple]) -> None:
    """One row per owner, naming the members it gained or lost."""
    if not pairs:
        return
    members_of = defaultdict(set)
    for owner_pk, member_pk in pairs:
        members_of[owner_pk].add(member_pk)
    owners = relation.owner.objects.in_bulk(list(members_of))
    members = relation.member.objects.all()
    if relation.member is Permission:
        members = members.select_related("content_type")
    members = members.in_bulk({pk for pks in members_of.values() for pk in pks})
    noun = relation.action.rsplit(".", 1)[1]
    for owner in sorted(owners.values(), key=_name):
        names = sorted(_name(members[pk]) for pk in members_of[owner.pk] if pk in members)
        _record(f"{relation.action}_{verb}", owner, {noun: names})


def _name(obj) -> str:
    if isinstance(obj, Permission):
        return f"{obj.content_type.app_label}.{obj.codename}"
    if isinstance(obj, Group):
        return obj.name
    return obj.get_username()


def _record(action: str, obj, detail: dict | None = None) -> None:
    audit_record(
        actor=_actor.get(),
        action=action,
        object_type="group" if isinstance(obj, Group) else "user",
        object_id=_name(obj)[:64],
        detail=detail,
    )
