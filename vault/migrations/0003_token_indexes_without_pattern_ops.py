"""Token indexes that queries use, and no others.

CharField(unique=True / db_index=True) gets a second index on PostgreSQL, with varchar_pattern_ops, for LIKE
queries; nothing searches tokens by prefix, and each of those five indexes cost every insert (a quarter of an
import's COPY). The unique columns become unique constraints and the indexed ones Meta.indexes, which have none.
deleted_at's index keeps tombstones only. On a large vault this migration drops those indexes and builds new ones
(minutes of a locked table for tens of millions of tokens): run it in a maintenance window.
"""

import vault.models
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('vault', '0002_back_office_group'),
    ]

    operations = [
        migrations.AlterField(
            model_name='token',
            name='bin',
            field=models.CharField(editable=False, max_length=6),
        ),
        migrations.AlterField(
            model_name='token',
            name='brand',
            field=models.CharField(editable=False, max_length=12),
        ),
        migrations.AlterField(
            model_name='token',
            name='deleted_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='token',
            name='last_four',
            field=models.CharField(editable=False, max_length=4),
        ),
        migrations.AlterField(
            model_name='token',
            name='reference',
            field=models.CharField(default=vault.models.new_token_reference, editable=False, max_length=32),
        ),
        migrations.AlterField(
            model_name='token',
            name='token_id',
            field=models.CharField(default=vault.models.new_token_id, editable=False, max_length=19),
        ),
        migrations.AddIndex(
            model_name='token',
            index=models.Index(fields=['bin'], name='token_bin'),
        ),
        migrations.AddIndex(
            model_name='token',
            index=models.Index(fields=['last_four'], name='token_last_four'),
        ),
        migrations.AddIndex(
            model_name='token',
            index=models.Index(fields=['brand'], name='token_brand'),
        ),
        migrations.AddIndex(
            model_name='token',
            index=models.Index(condition=models.Q(('deleted_at__isnull', False)), fields=['deleted_at'], name='token_deleted_at'),
        ),
        migrations.AddConstraint(
            model_name='token',
            constraint=models.UniqueConstraint(fields=('token_id',), name='token_token_id_unique'),
        ),
        migrations.AddConstraint(
            model_name='token',
            constraint=models.UniqueConstraint(fields=('reference',), name='token_reference_unique'),
        ),
    ]
