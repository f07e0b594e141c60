"""The ``back-office`` group (0002) sees forward destinations and may disable or enable one (the change permission,
through the admin's actions, which go through ``vault.forwarding``), and reads the log of forwards. Credentials are
never shown to anyone, their names only."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "back-office"
PERMISSIONS = {"forwarddestination": ["view", "change"], "forward": ["view"]}


def grant_forwarding(apps, schema_editor):
    alias = schema_editor.connection.alias
    # As 0002: make the permissions now, on the historical models, since post_migrate comes after every migration.
    app_config = apps.get_app_config("vault")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0, using=alias)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    wanted = {f"{action}_{model}" for model, actions in PERMISSIONS.items() for action in actions}
    found = list(Permission.objects.using(alias).filter(content_type__app_label="vault", codename__in=wanted))
    missing = wanted - {p.codename for p in found}
    if missing:
        raise RuntimeError(f"vault permissions missing: {sorted(missing)}")
    group, _ = Group.objects.using(alias).get_or_create(name=GROUP)
    group.permissions.add(*found)


class Migration(migrations.Migration):
    dependencies = [("vault", "0008_forwarding")]

    operations = [
        # Backwards leaves the group alone, as 0002 does: its members were chosen by people.
        migrations.RunPython(grant_forwarding, migrations.RunPython.noop),
    ]
