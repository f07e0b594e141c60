"""Merchants and API keys move to the merchants app, the audit log to core (their migrations 0001): the vault's
foreign keys point there, and the vault's state forgets the three models. Their tables stay as they are."""

import django.db.models.deletion
from django.db import migrations, models


def _merchant(on_delete, related_name):
    return models.ForeignKey(on_delete=on_delete, related_name=related_name, to="merchants.merchant")


class Migration(migrations.Migration):

    dependencies = [
        ("core", "0001_initial"),
        ("merchants", "0001_initial"),
        ("networks", "0009_merchants_app"),
        ("notifications", "0007_merchants_app"),
        ("vault", "0005_keycheck"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(model_name="namespace", name="merchant",
                                      field=_merchant(django.db.models.deletion.CASCADE, "namespaces")),
                migrations.AlterField(model_name="token", name="merchant",
                                      field=_merchant(django.db.models.deletion.PROTECT, "tokens")),
                migrations.DeleteModel(name="AuditLog"),
                migrations.DeleteModel(name="ApiKey"),
                migrations.DeleteModel(name="Merchant"),
            ],
        ),
    ]
