"""Audit rows name the request that wrote them (``X-Request-Id``, core.request_id); older rows keep a blank one.

The column alone: on PostgreSQL 11 and later adding it with a constant default rewrites nothing. Its index is
built by the next migration, without locking the table.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0002_idempotent_request"),
    ]

    operations = [
        migrations.AddField(
            model_name="auditlog",
            name="request_id",
            field=models.CharField(blank=True, default="", max_length=128),
            preserve_default=False,
        ),
    ]
