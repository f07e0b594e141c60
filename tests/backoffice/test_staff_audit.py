"""Staff permission and group changes are audit rows: who changed whose groups, permissions and staff flags, and
which groups and permissions, whether the change came through the admin or through code.

admin_client is a superuser ("admin", pytest-django) who edits other staff in the admin, from the test client's
address 127.0.0.1. olive is an operator (staff, in the ``operators`` group only, tests/conftest.py) whose access is
changed; the ``back-office`` and ``operators`` groups are made by the migrations. A change made by code (a shell, a
command, a migration's data) has no staff user behind it: its actor is ``system``.
"""

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from core.models import AuditLog

PASSWORD = "a passphrase no one guesses"


def permission(name: str) -> Permission:
    """``"vault.view_token"``: the permission as the audit rows name it."""
    app_label, codename = name.split(".")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def rows(*, since: int = 0) -> list[tuple]:
    """The staff audit rows written after the row ``since``, oldest first, as (actor, action, object, detail)."""
    return [
        (row.actor, row.action, f"{row.object_type}:{row.object_id}", row.detail)
        for row in AuditLog.objects.filter(pk__gt=since, action__startswith="staff.").order_by("pk")
    ]


def last_row() -> int:
    return AuditLog.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def user_form(user, **changes) -> dict:
    """The admin's change form for ``user`` as the browser posts it, with ``changes``; unticked boxes are left out."""
    data = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_active": user.is_active,
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
        "groups": [group.pk for group in user.groups.all()],
        "user_permissions": [p.pk for p in user.user_permissions.all()],
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        **changes,
    }
    return {key: "on" if value is True else value for key, value in data.items() if value is not False}


# ------------------------------------------------------------------------------------------------------------
# Through the admin: the staff user who made the change
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.pci("10.2.1.5")
@pytest.mark.pci("10.2.2")
def test_a_superuser_changing_a_users_groups_permissions_and_flags_in_the_admin_is_audited_as_them(admin_client, olive):
    since = last_row()
    back_office = Group.objects.get(name="back-office")

    response = admin_client.post(
        reverse("admin:auth_user_change", args=[olive.pk]),
        user_form(
            olive,
            groups=[back_office.pk],
            user_permissions=[permission("core.view_auditlog").pk, permission("vault.view_token").pk],
            is_superuser=True,
        ),
    )

    assert response.status_code == 302 and response.url == reverse("admin:auth_user_changelist")
    assert rows(since=since) == [
        ("admin:admin", "staff.user.flags_changed", "user:olive", {"is_superuser": {"before": False, "after": True}}),
        ("admin:admin", "staff.user.groups_removed", "user:olive", {"groups": ["operators"]}),
        ("admin:admin", "staff.user.groups_added", "user:olive", {"groups": ["back-office"]}),
        (
            "admin:admin",
            "staff.user.permissions_added",
            "user:olive",
            {"permissions": ["core.view_auditlog", "vault.view_token"]},
        ),
    ]
    row = AuditLog.objects.get(pk__gt=since, action="staff.user.groups_added")
    assert (row.result, row.origin, row.merchant) == (AuditLog.SUCCESS, "127.0.0.1", None)


@pytest.mark.pci("10.2.1.5")
def test_switching_a_user_off_and_taking_their_staff_status_in_the_admin_is_audited(admin_client, olive):
    since = last_row()

    admin_client.post(
        reverse("admin:auth_user_change", args=[olive.pk]), user_form(olive, is_active=False, is_staff=False)
    )

    assert rows(since=since) == [
        (
            "admin:admin",
            "staff.user.flags_changed",
            "user:olive",
            {"is_active": {"before": True, "after": False}, "is_staff": {"before": True, "after": False}},
        )
    ]


@pytest.mark.pci("10.2.1.5")
def test_saving_a_user_in_the_admin_without_changing_their_access_writes_no_row(admin_client, olive):
    since = last_row()

    response = admin_client.post(
        reverse("admin:auth_user_change", args=[olive.pk]), user_form(olive, first_name="Olive")
    )

    assert response.status_code == 302
    assert rows(since=since) == []


@pytest.mark.pci("10.2.1.5")
def test_a_user_added_and_deleted_in_the_admin_is_audited_as_the_superuser(admin_client, django_user_model):
    since = last_row()

    response = admin_client.post(
        reverse("admin:auth_user_add"),
        {"username": "newcomer", "password1": PASSWORD, "password2": PASSWORD, "usable_password": "true"},
    )
    newcomer = django_user_model.objects.get(username="newcomer")
    admin_client.post(reverse("admin:auth_user_delete", args=[newcomer.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert rows(since=since) == [
        (
            "admin:admin",
            "staff.user.created",
            "user:newcomer",
            {"is_active": True, "is_staff": False, "is_superuser": False},
        ),
        ("admin:admin", "staff.user.deleted", "user:newcomer", {}),
    ]
    assert not any(PASSWORD in str(detail) or "pbkdf2" in str(detail) for *_, detail in rows())


@pytest.mark.pci("10.2.1.5")
def test_a_group_created_changed_and_deleted_in_the_admin_is_audited_as_the_superuser(admin_client):
    since = last_row()

    admin_client.post(
        reverse("admin:auth_group_add"),
        {"name": "auditors", "permissions": [permission("core.view_auditlog").pk, permission("vault.view_token").pk]},
    )
    auditors = Group.objects.get(name="auditors")
    admin_client.post(
        reverse("admin:auth_group_change", args=[auditors.pk]),
        {
            "name": "auditors",
            "permissions": [permission("core.view_auditlog").pk, permission("vault.view_namespace").pk],
        },
    )
    admin_client.post(reverse("admin:auth_group_delete", args=[auditors.pk]), {"post": "yes"})

    assert rows(since=since) == [
        ("admin:admin", "staff.group.created", "group:auditors", {}),
        (
            "admin:admin",
            "staff.group.permissions_added",
            "group:auditors",
            {"permissions": ["core.view_auditlog", "vault.view_token"]},
        ),
        ("admin:admin", "staff.group.permissions_removed", "group:auditors", {"permissions": ["vault.view_token"]}),
        ("admin:admin", "staff.group.permissions_added", "group:auditors", {"permissions": ["vault.view_namespace"]}),
        ("admin:admin", "staff.group.deleted", "group:auditors", {}),
    ]


@pytest.mark.pci("10.2.1.5")
def test_users_deleted_by_the_admins_delete_action_are_audited_as_the_superuser(admin_client, django_user_model):
    users = [django_user_model.objects.create_user(name, is_staff=True) for name in ("temp-1", "temp-2")]
    since = last_row()

    admin_client.post(
        reverse("admin:auth_user_changelist"),
        {"action": "delete_selected", "_selected_action": [user.pk for user in users], "post": "yes"},
    )

    assert sorted(rows(since=since)) == [
        ("admin:admin", "staff.user.deleted", "user:temp-1", {}),
        ("admin:admin", "staff.user.deleted", "user:temp-2", {}),
    ]


# ------------------------------------------------------------------------------------------------------------
# Through code: the system
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.pci("10.2.1.5")
def test_group_and_permission_changes_made_by_code_are_audited_as_the_system(olive):
    since = last_row()
    back_office, operators = Group.objects.get(name="back-office"), Group.objects.get(name="operators")

    olive.groups.add(back_office)
    olive.groups.remove(operators)
    olive.user_permissions.add(permission("vault.view_token"))
    operators.permissions.remove(permission("notifications.view_event"))
    olive.groups.clear()

    assert rows(since=since) == [
        ("system", "staff.user.groups_added", "user:olive", {"groups": ["back-office"]}),
        ("system", "staff.user.groups_removed", "user:olive", {"groups": ["operators"]}),
        ("system", "staff.user.permissions_added", "user:olive", {"permissions": ["vault.view_token"]}),
        ("system", "staff.group.permissions_removed", "group:operators", {"permissions": ["notifications.view_event"]}),
        ("system", "staff.user.groups_removed", "user:olive", {"groups": ["back-office"]}),
    ]


@pytest.mark.pci("10.2.1.5")
def test_changes_made_from_the_other_side_of_a_relation_are_audited_on_each_user_and_group(olive, django_user_model):
    beth = django_user_model.objects.create_user("beth", is_staff=True)
    back_office = Group.objects.get(name="back-office")
    view_token = permission("vault.view_token")
    since = last_row()

    back_office.user_set.add(olive, beth)
    view_token.group_set.remove(back_office)
    view_token.user_set.add(beth)
    back_office.user_set.clear()

    assert rows(since=since) == [
        ("system", "staff.user.groups_added", "user:beth", {"groups": ["back-office"]}),
        ("system", "staff.user.groups_added", "user:olive", {"groups": ["back-office"]}),
        ("system", "staff.group.permissions_removed", "group:back-office", {"permissions": ["vault.view_token"]}),
        ("system", "staff.user.permissions_added", "user:beth", {"permissions": ["vault.view_token"]}),
        ("system", "staff.user.groups_removed", "user:beth", {"groups": ["back-office"]}),
        ("system", "staff.user.groups_removed", "user:olive", {"groups": ["back-office"]}),
    ]


@pytest.mark.pci("10.2.1.5")
def test_staff_flags_and_accounts_changed_by_code_are_audited_as_the_system(django_user_model):
    since = last_row()

    user = django_user_model.objects.create_user("ops", password=PASSWORD)
    user.is_staff = user.is_superuser = True
    user.save()
    user.set_password(PASSWORD + "!")
    user.first_name = "Ops"
    user.save()  # neither the password nor the name is the audit log's business here
    django_user_model.objects.create_superuser("root", password=PASSWORD)
    Group.objects.create(name="auditors").delete()
    user.delete()

    assert rows(since=since) == [
        ("system", "staff.user.created", "user:ops", {"is_active": True, "is_staff": False, "is_superuser": False}),
        (
            "system",
            "staff.user.flags_changed",
            "user:ops",
            {"is_staff": {"before": False, "after": True}, "is_superuser": {"before": False, "after": True}},
        ),
        ("system", "staff.user.created", "user:root", {"is_active": True, "is_staff": True, "is_superuser": True}),
        ("system", "staff.group.created", "group:auditors", {}),
        ("system", "staff.group.deleted", "group:auditors", {}),
        ("system", "staff.user.deleted", "user:ops", {}),
    ]


def test_a_sign_in_writes_no_staff_change(client, django_user_model):
    django_user_model.objects.create_user("ops", password=PASSWORD, is_staff=True)
    since = last_row()

    client.force_login(django_user_model.objects.get(username="ops"))  # saves last_login, nothing else

    assert rows(since=since) == []


def test_after_an_admin_request_code_acts_as_the_system_again(admin_client, olive):
    admin_client.post(reverse("admin:auth_user_change", args=[olive.pk]), user_form(olive, is_superuser=True))
    since = last_row()

    olive.groups.clear()

    assert rows(since=since) == [("system", "staff.user.groups_removed", "user:olive", {"groups": ["operators"]})]
