"""The ``back-office`` group: the vault and the network tokens in the admin, nothing of the webhooks.

Back-office staff look at merchants, tokens (masked), conflicts, namespaces, expiry extensions, network tokens with
their requests and batches, and the audit log. They act on the vault only through the admin's actions, which go
through ``vault.services``: the token's change permission extends an expiry, its delete permission destroys the card
data and keeps a tombstone (never a dropped row), the conflict's change permission applies or dismisses it. Issuers
are "read-mostly": they may correct one (name, range, card art, rate limit), each edit audited. The network tokens'
lifecycle (change permission on the network token) and the whole webhook console belong to the ``operators``
group (notifications 0002, networks 0003); API keys stay with superusers.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "back-office"
PERMISSIONS = {
    "vault": {
        "merchant": ["view"],
        "token": ["view", "change", "delete"],
        "tokenconflict": ["view", "change"],
        "namespace": ["view"],
        "expiryextension": ["view"],
        "auditlog": ["view"],
    },
    "networks": {
        "networktoken": ["view"],
        "lifecycleevent": ["view"],
        "issuer": ["view", "change"],
        "provisioningrequest": ["view"],
        "batch": ["view"],
        "batchitem": ["view"],
    },
}


def create_back_office_group(apps, schema_editor):
    alias = schema_editor.connection.alias
    # Permissions are normally made by post_migrate, after every migration has run: make them now, on the
    # historical models, so the group can hold them on a fresh database (networks 0003 made the networks ones
    # already; making them again only adds what is missing).
    for label in PERMISSIONS:
        app_config = apps.get_app_config(label)
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0, using=alias)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permissions = []
    for label, models in PERMISSIONS.items():
        wanted = {f"{action}_{model}" for model, actions in models.items() for action in actions}
        found = list(Permission.objects.using(alias).filter(content_type__app_label=label, codename__in=wanted))
        missing = wanted - {p.codename for p in found}
        if missing:
            raise RuntimeError(f"{label} permissions missing: {sorted(missing)}")
        permissions += found
    group, _ = Group.objects.using(alias).get_or_create(name=GROUP)
    group.permissions.add(*permissions)


class Migration(migrations.Migration):
    dependencies = [
        ("vault", "0001_initial"),
        ("networks", "0003_operators_permissions"),
        ("notifications", "0002_operators_group"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        # Backwards leaves the group alone, as the operators' migrations do: its members were chosen by people.
        migrations.RunPython(create_back_office_group, migrations.RunPython.noop),
    ]
