"""The audit log comes to ``core`` from the vault (whose first migration made its table, kept as it is): a move of
Django's state only, and of the content type, so the groups' permissions on it stay."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


def move_content_type(app_from: str, app_to: str, models_moved: tuple[str, ...]):
    def move(apps, schema_editor):
        ContentType = apps.get_model("contenttypes", "ContentType")
        ContentType.objects.using(schema_editor.connection.alias).filter(
            app_label=app_from, model__in=models_moved
        ).update(app_label=app_to)

    return move


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("merchants", "0001_initial"),
        ("vault", "0005_keycheck"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AuditLog",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                                   verbose_name="ID")),
                        ("actor", models.CharField(max_length=120)),
                        ("action", models.CharField(db_index=True, max_length=60)),
                        ("object_type", models.CharField(blank=True, max_length=40)),
                        ("object_id", models.CharField(blank=True, db_index=True, max_length=64)),
                        ("result", models.CharField(choices=[("success", "success"), ("failure", "failure")],
                                                    max_length=10)),
                        ("origin", models.CharField(blank=True, max_length=64)),
                        ("detail", models.JSONField(blank=True, default=dict)),
                        ("created_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now,
                                                            editable=False)),
                        ("merchant", models.ForeignKey(blank=True, null=True,
                                                       on_delete=django.db.models.deletion.SET_NULL,
                                                       to="merchants.merchant")),
                    ],
                    options={
                        "verbose_name": "audit log entry",
                        "verbose_name_plural": "audit log",
                        "ordering": ["-created_at"],
                        "db_table": "vault_auditlog",
                    },
                ),
            ],
        ),
        migrations.RunPython(move_content_type("vault", "core", ("auditlog",)),
                             move_content_type("core", "vault", ("auditlog",))),
    ]
