"""Asynchronous requests live in the database until they end: when each is due, and the leases of its message and
of the worker attempting it, so a sweeper can queue again what a lost message or a killed worker left behind.

Requests still PENDING are due now: the first sweep after the upgrade takes up those an earlier version lost. The
operators may retry a stuck request from the admin (the request's change permission).
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations, models
from django.utils import timezone


def due_now(apps, schema_editor):
    ProvisioningRequest = apps.get_model("networks", "ProvisioningRequest")
    ProvisioningRequest.objects.filter(status="PENDING").update(next_attempt_at=timezone.now())


def let_operators_retry(apps, schema_editor):
    app_config = apps.get_app_config("networks")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="operators")
    group.permissions.add(Permission.objects.get(content_type__app_label="networks",
                                                 codename="change_provisioningrequest"))


def forbid_operators_retry(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group in Group.objects.filter(name="operators"):
        group.permissions.remove(*Permission.objects.filter(content_type__app_label="networks",
                                                            codename="change_provisioningrequest"))


class Migration(migrations.Migration):

    dependencies = [
        ('networks', '0007_issuers_per_bin_and_pending_activation'),
        ('vault', '0004_tokenconflict_scheme_transaction_reference'),
    ]

    operations = [
        migrations.AddField(
            model_name='provisioningrequest',
            name='claim',
            field=models.CharField(blank=True, editable=False, max_length=32),
        ),
        migrations.AddField(
            model_name='provisioningrequest',
            name='claimed_until',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='provisioningrequest',
            name='next_attempt_at',
            field=models.DateTimeField(blank=True, help_text='When a PENDING request is due.', null=True),
        ),
        migrations.AddField(
            model_name='provisioningrequest',
            name='queued_until',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(due_now, migrations.RunPython.noop),
        migrations.RunPython(let_operators_retry, forbid_operators_retry),
        migrations.AddIndex(
            model_name='provisioningrequest',
            index=models.Index(condition=models.Q(('status', 'PENDING')), fields=['next_attempt_at'], name='request_pending_due'),
        ),
        migrations.AddConstraint(
            model_name='provisioningrequest',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('status', 'PENDING'), _negated=True), ('next_attempt_at__isnull', False), _connector='OR'), name='request_pending_has_next_attempt'),
        ),
    ]
