"""The ``operators`` group: webhook operations in the admin, and nothing of the vault.

Operators look at endpoints, events, deliveries and attempts, and run the webhook actions (enable, disable, rotate
a secret, retry, replay), which the admin lets through on the model's change permission. Events and attempts are
history: view only. No delete permission anywhere: an endpoint is disabled, never dropped, by an operator.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "operators"
PERMISSIONS = {
    "webhookendpoint": ["change", "view"],
    "event": ["view"],
    "delivery": ["change", "view"],
    "deliveryattempt": ["view"],
}


def create_operators_group(apps, schema_editor):
    # Permissions are normally made by post_migrate, after every migration has run: make this app's now, on the
    # historical models, so the group can hold them on a fresh database.
    app_config = apps.get_app_config("notifications")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    wanted = {(model, f"{action}_{model}") for model, actions in PERMISSIONS.items() for action in actions}
    permissions = list(
        Permission.objects.using(schema_editor.connection.alias).filter(
            content_type__app_label="notifications", codename__in=[codename for _, codename in wanted]
        )
    )
    found = {(p.content_type.model, p.codename) for p in permissions}
    if found != wanted:
        raise RuntimeError(f"notifications permissions missing: {sorted(c for _, c in wanted - found)}")
    group, _ = Group.objects.using(schema_editor.connection.alias).get_or_create(name=GROUP)
    group.permissions.add(*permissions)


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        # Backwards leaves the group alone: its members were chosen by people, and forwards again finds it.
        migrations.RunPython(create_operators_group, migrations.RunPython.noop),
    ]
