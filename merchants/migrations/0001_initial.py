"""Merchants and API keys come to their own app from the vault (whose first migration made their tables, kept as
they are): a move of Django's state only, and of the content types, so the groups' permissions on them stay."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

import merchants.models


def move_content_types(app_from: str, app_to: str):
    def move(apps, schema_editor):
        ContentType = apps.get_model("contenttypes", "ContentType")
        ContentType.objects.using(schema_editor.connection.alias).filter(
            app_label=app_from, model__in=("merchant", "apikey")
        ).update(app_label=app_to)

    return move


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("vault", "0005_keycheck"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Merchant",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                                   verbose_name="ID")),
                        ("public_id", models.CharField(default=merchants.models.new_merchant_id, editable=False,
                                                       max_length=24, unique=True)),
                        ("name", models.CharField(max_length=200)),
                        ("is_active", models.BooleanField(default=True)),
                        ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                    ],
                    options={"ordering": ["name"], "db_table": "vault_merchant"},
                ),
                migrations.CreateModel(
                    name="ApiKey",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                                   verbose_name="ID")),
                        ("name", models.CharField(default="default", max_length=100)),
                        ("prefix", models.CharField(editable=False, help_text="First characters, to recognise the key.",
                                                    max_length=12)),
                        ("key_hash", models.CharField(editable=False, max_length=64, unique=True)),
                        ("scopes", models.JSONField(default=list)),
                        ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                        ("revoked_at", models.DateTimeField(blank=True, null=True)),
                        ("merchant", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE,
                                                       related_name="api_keys", to="merchants.merchant")),
                    ],
                    options={"verbose_name": "API key", "db_table": "vault_apikey"},
                ),
            ],
        ),
        migrations.RunPython(move_content_types("vault", "merchants"), move_content_types("merchants", "vault")),
    ]
