"""Check values of the keys the data was written under, stored with the data (vault.models.KeyCheck).

An installation made before this table has data under key versions nobody recorded: they are looked up here, once
(a scan of each encrypted table, at migrate time rather than in a request), and recorded without a check value.
The first process with such a version in its ring records its value; until then a version missing from the ring is
reported like any other.
"""

import django.utils.timezone
from django.db import migrations, models

# Every encrypted column at the time of this migration, with its table's key version column beside it.
ENCRYPTED = [("vault", "Token", "pan_ciphertext"), ("networks", "NetworkToken", "dpan_ciphertext"),
             ("networks", "ProvisioningRequest", "card_ciphertext")]


def record_versions_holding_data(apps, schema_editor):
    KeyCheck = apps.get_model("vault", "KeyCheck")
    versions = set()
    for app_label, model_name, field in ENCRYPTED:
        model = apps.get_model(app_label, model_name)
        versions |= set(
            model.objects.filter(**{f"{field}__isnull": False}).values_list("key_version", flat=True).distinct()
        )
    KeyCheck.objects.bulk_create(
        [KeyCheck(purpose="encryption", version=version, check_value="") for version in sorted(versions)]
    )


class Migration(migrations.Migration):

    dependencies = [
        ('vault', '0004_tokenconflict_scheme_transaction_reference'),
        ('networks', '0007_issuers_per_bin_and_pending_activation'),
    ]

    operations = [
        migrations.CreateModel(
            name='KeyCheck',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('purpose', models.CharField(choices=[('encryption', 'encryption'), ('fingerprint', 'fingerprint')], max_length=12)),
                ('version', models.PositiveSmallIntegerField(blank=True, null=True)),
                ('check_value', models.CharField(blank=True, max_length=16)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ('retired_at', models.DateTimeField(blank=True, null=True)),
            ],
            options={
                'ordering': ['purpose', 'version'],
                'constraints': [
                    models.UniqueConstraint(condition=models.Q(('purpose', 'encryption')), fields=('version',), name='keycheck_one_per_encryption_version'),
                    models.UniqueConstraint(condition=models.Q(('purpose', 'fingerprint')), fields=('purpose',), name='keycheck_one_fingerprint_key'),
                    models.CheckConstraint(condition=models.Q(models.Q(('purpose', 'encryption'), ('version__isnull', False)), models.Q(('purpose', 'fingerprint'), ('version__isnull', True)), _connector='OR'), name='keycheck_version_for_encryption_keys_only'),
                ],
            },
        ),
        migrations.RunPython(record_versions_holding_data, migrations.RunPython.noop),
    ]
