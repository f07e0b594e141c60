"""Merchants now live in their own app (merchants 0001): the foreign keys point there, on the same table."""

import django.db.models.deletion
from django.db import migrations, models


def _merchant(on_delete, related_name):
    return models.ForeignKey(on_delete=on_delete, related_name=related_name, to="merchants.merchant")


class Migration(migrations.Migration):

    dependencies = [
        ("merchants", "0001_initial"),
        ("networks", "0008_requests_live_in_the_database"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(model_name="networktoken", name="merchant",
                                      field=_merchant(django.db.models.deletion.PROTECT, "network_tokens")),
                migrations.AlterField(model_name="provisioningrequest", name="merchant",
                                      field=_merchant(django.db.models.deletion.CASCADE, "network_token_requests")),
                migrations.AlterField(model_name="batch", name="merchant",
                                      field=_merchant(django.db.models.deletion.CASCADE, "network_token_batches")),
            ],
        ),
    ]
