"""Merchants now live in their own app (merchants 0001): the foreign keys point there, on the same table."""

import django.db.models.deletion
from django.db import migrations, models


def _merchant(on_delete, related_name):
    return models.ForeignKey(on_delete=on_delete, related_name=related_name, to="merchants.merchant")


class Migration(migrations.Migration):

    dependencies = [
        ("merchants", "0001_initial"),
        ("notifications", "0006_heartbeat"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(model_name="event", name="merchant",
                                      field=_merchant(django.db.models.deletion.CASCADE, "events")),
                migrations.AlterField(model_name="webhookendpoint", name="merchant",
                                      field=_merchant(django.db.models.deletion.CASCADE, "webhook_endpoints")),
            ],
        ),
    ]
