"""The ``operators`` group (notifications 0002) gets the network tokens: they trigger the lifecycle in the admin.

Operators suspend, resume and delete network tokens and record reissued cards, actions the admin lets through on
the network token's change permission. Lifecycle events, issuers, asynchronous requests, batches and their items
they only look at: issuers are edited by whoever holds their change permission (superusers unless given), the rest
is written by the services alone. No add or delete permission: a network token is deleted through its lifecycle,
never dropped.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "operators"
PERMISSIONS = {
    "networktoken": ["change", "view"],
    "lifecycleevent": ["view"],
    "issuer": ["view"],
    "provisioningrequest": ["view"],
    "batch": ["view"],
    "batchitem": ["view"],
}


def grant_network_tokens(apps, schema_editor):
    # Permissions are normally made by post_migrate, after every migration has run: make this app's now, on the
    # historical models, so the group can hold them on a fresh database.
    app_config = apps.get_app_config("networks")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    wanted = {(model, f"{action}_{model}") for model, actions in PERMISSIONS.items() for action in actions}
    permissions = list(
        Permission.objects.using(schema_editor.connection.alias).filter(
            content_type__app_label="networks", codename__in=[codename for _, codename in wanted]
        )
    )
    found = {(p.content_type.model, p.codename) for p in permissions}
    if found != wanted:
        raise RuntimeError(f"networks permissions missing: {sorted(c for _, c in wanted - found)}")
    group, _ = Group.objects.using(schema_editor.connection.alias).get_or_create(name=GROUP)
    group.permissions.add(*permissions)


class Migration(migrations.Migration):
    dependencies = [
        ("networks", "0002_seed_issuers"),
        ("notifications", "0002_operators_group"),
    ]

    operations = [
        # Backwards leaves the group alone, as notifications 0002 does: forwards again only adds what is missing.
        migrations.RunPython(grant_network_tokens, migrations.RunPython.noop),
    ]
