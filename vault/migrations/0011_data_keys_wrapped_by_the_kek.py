"""Key custody: the check values of the keys (KeyCheck) grow into the keys themselves (DataKey), each stored wrapped
by the key encryption key, beside the KEK's id and the start of its cryptoperiod.

The table keeps its name and its rows: each is a key from before key custody whose check value alone is stored, until
``manage.py migrate_keys_to_kek`` wraps the key of VAULT_KEYS (or VAULT_FINGERPRINT_KEY) under the KEK, with the same
version and check value, so that no encrypted row changes. The new columns are NULL or have a database default, so a
process of the previous release, still serving while the upgrade rolls out, reads and writes the table as it did.
"""

from django.db import migrations, models


def rename_permissions(apps, schema_editor):
    """The model's permissions follow its new name (its content type does by itself), rather than staying behind
    under the old one beside a second set: superusers alone see the keys, and nobody holds these."""
    Permission = apps.get_model("auth", "Permission")
    alias = schema_editor.connection.alias
    for permission in Permission.objects.using(alias).filter(
        content_type__app_label="vault", codename__endswith="_keycheck"
    ):
        action = permission.codename.removesuffix("_keycheck")
        permission.codename, permission.name = f"{action}_datakey", f"Can {action} key"
        permission.save(update_fields=["codename", "name"])


class Migration(migrations.Migration):

    # Before the webhook secrets are first encrypted (an installation upgrading from before both): the key ring that
    # migration asks for reads the keys' table as this one leaves it.
    run_before = [("notifications", "0009_endpoint_secrets_encrypted")]

    dependencies = [
        ("vault", "0010_capturesession"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        # The table's name, vault_keycheck, made explicit first, so that the rename below leaves it as it is.
        migrations.AlterModelTable(name="keycheck", table="vault_keycheck"),
        migrations.RenameModel(old_name="KeyCheck", new_name="DataKey"),
        migrations.AlterModelOptions(name="datakey", options={"ordering": ["purpose", "version"], "verbose_name": "key"}),
        migrations.AddField(
            model_name="datakey",
            name="wrapped_key",
            field=models.BinaryField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name="datakey",
            name="kek_id",
            field=models.CharField(blank=True, db_default="", default="", max_length=200, verbose_name="KEK"),
        ),
        migrations.AddField(
            model_name="datakey",
            name="period_started_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="datakey",
            name="token_pk_at_start",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddConstraint(
            model_name="datakey",
            constraint=models.CheckConstraint(
                condition=models.Q(models.Q(("kek_id", ""), ("wrapped_key__isnull", True)), models.Q(("wrapped_key__isnull", False), models.Q(("kek_id", ""), _negated=True), models.Q(("check_value", ""), _negated=True)), _connector="OR"),
                name="datakey_wrapped_names_its_kek",
            ),
        ),
        migrations.RunPython(rename_permissions, migrations.RunPython.noop),
    ]
