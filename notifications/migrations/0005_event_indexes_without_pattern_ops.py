"""Event indexes that queries use, and no others.

CharField(unique=True / db_index=True) gets a second index on PostgreSQL, with varchar_pattern_ops, for LIKE
queries; nothing searches events by prefix (the API and the admin match the id and the type exactly), and every
event insert (one per token change, thousands per import batch) paid for both. public_id becomes a unique
constraint and type a Meta index, which have none. As for the tokens (vault 0003), this rebuilds the two indexes on
a locked table: on a large outbox, run it in a maintenance window.
"""

import notifications.models
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('notifications', '0004_delivery_claim'),
    ]

    operations = [
        migrations.AlterField(
            model_name='event',
            name='public_id',
            field=models.CharField(default=notifications.models.new_event_id, editable=False, max_length=40),
        ),
        migrations.AlterField(
            model_name='event',
            name='type',
            field=models.CharField(choices=[('token.created', 'token.created'), ('token.updated', 'token.updated'), ('token.deleted', 'token.deleted'), ('token.expiry_extended', 'token.expiry_extended'), ('network_token.created', 'network_token.created'), ('network_token.failed', 'network_token.failed'), ('network_token.updated', 'network_token.updated')], max_length=40),
        ),
        migrations.AddIndex(
            model_name='event',
            index=models.Index(fields=['type'], name='event_type'),
        ),
        migrations.AddConstraint(
            model_name='event',
            constraint=models.UniqueConstraint(fields=('public_id',), name='event_public_id_unique'),
        ),
    ]
