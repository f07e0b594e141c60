"""Batch items get correlation ids, requests and items can wait for a token's activation, and a BIN outside the
registry gets an issuer of its own instead of its network's catch-all.

Items already stored take their batch's id as correlation id, as their tokens and events had it. The catch-all
issuers made before (every BIN, "Other <network> issuers") stay, for the tokens that point at them, but leave the
registry: no new card is given to them.
"""

from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def forwards(apps, schema_editor):
    Batch = apps.get_model("networks", "Batch")
    BatchItem = apps.get_model("networks", "BatchItem")
    Issuer = apps.get_model("networks", "Issuer")
    BatchItem.objects.update(correlation_id=Subquery(Batch.objects.filter(pk=OuterRef("batch_id")).values("public_id")))
    Issuer.objects.filter(bin_low="000000", bin_high="999999").update(registered=False)


def backwards(apps, schema_editor):
    Issuer = apps.get_model("networks", "Issuer")
    Issuer.objects.filter(bin_low="000000", bin_high="999999").update(registered=True)


class Migration(migrations.Migration):

    dependencies = [
        ('networks', '0006_batchitem_abandoned'),
    ]

    operations = [
        migrations.AddField(
            model_name='batchitem',
            name='correlation_id',
            field=models.CharField(default='', help_text="The item's own, or else its batch's id.", max_length=36),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name='issuer',
            name='registered',
            field=models.BooleanField(default=True, help_text='In the issuer registry. Unregistered issuers were made for a BIN outside every registered range.'),
        ),
        migrations.AlterField(
            model_name='batchitem',
            name='status',
            field=models.CharField(choices=[('PENDING', 'PENDING'), ('QUEUED', 'QUEUED'), ('RUNNING', 'RUNNING'), ('PENDING_ACTIVATION', 'PENDING_ACTIVATION'), ('SUCCEEDED', 'SUCCEEDED'), ('FAILED', 'FAILED')], default='PENDING', max_length=20),
        ),
        migrations.AlterField(
            model_name='provisioningrequest',
            name='status',
            field=models.CharField(choices=[('PENDING', 'PENDING'), ('PENDING_ACTIVATION', 'PENDING_ACTIVATION'), ('SUCCEEDED', 'SUCCEEDED'), ('FAILED', 'FAILED')], db_index=True, default='PENDING', max_length=20),
        ),
        migrations.RunPython(forwards, backwards),
        migrations.AddConstraint(
            model_name='issuer',
            constraint=models.UniqueConstraint(condition=models.Q(('registered', False)), fields=('network', 'bin_low', 'bin_high'), name='issuer_one_unregistered_per_bin'),
        ),
    ]
