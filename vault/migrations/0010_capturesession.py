"""Capture sessions (``vault.capture``): one card typed in a shopper's browser. The ``back-office`` group (0002) reads
them, as it reads the log of forwards (0009)."""

import django.db.models.deletion
import django.utils.timezone
from django.contrib.auth.management import create_permissions
from django.db import migrations, models

import vault.models

GROUP = "back-office"


def grant_capture_sessions(apps, schema_editor):
    alias = schema_editor.connection.alias
    # As 0002 and 0009: make the permissions now, on the historical models, since post_migrate comes after every
    # migration.
    app_config = apps.get_app_config("vault")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0, using=alias)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permission = Permission.objects.using(alias).get(content_type__app_label="vault", codename="view_capturesession")
    group, _ = Group.objects.using(alias).get_or_create(name=GROUP)
    group.permissions.add(permission)


class Migration(migrations.Migration):
    dependencies = [
        ("merchants", "0003_api_key_last_used"),
        ("vault", "0009_forwarding_back_office_permissions"),
    ]

    operations = [
        migrations.CreateModel(
            name='CaptureSession',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('public_id', models.CharField(default=vault.models.new_capture_session_id, editable=False, max_length=40)),
                ('origin', models.CharField(max_length=300)),
                ('namespace', models.CharField(blank=True, max_length=64, null=True)),
                ('description', models.CharField(blank=True, max_length=255, null=True)),
                ('client_secret_hash', models.CharField(editable=False, max_length=64)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ('expires_at', models.DateTimeField()),
                ('failed_submissions', models.PositiveSmallIntegerField(default=0)),
                ('outcome', models.CharField(blank=True, choices=[('created', 'created'), ('matched', 'matched'), ('conflict', 'conflict')], max_length=8, null=True)),
                ('completed_at', models.DateTimeField(blank=True, null=True)),
                ('merchant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='capture_sessions', to='merchants.merchant')),
                ('token', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='capture_sessions', to='vault.token')),
            ],
            options={
                'verbose_name': 'capture session',
                'ordering': ['-created_at', '-pk'],
                'constraints': [models.UniqueConstraint(fields=('public_id',), name='capturesession_public_id_unique'), models.CheckConstraint(condition=models.Q(('failed_submissions__lte', 5)), name='capturesession_failed_submissions_at_most_five'), models.CheckConstraint(condition=models.Q(models.Q(('completed_at__isnull', True), ('outcome__isnull', True), ('token__isnull', True)), models.Q(('completed_at__isnull', False), ('outcome__in', ('created', 'matched', 'conflict')), ('outcome__isnull', False), ('token__isnull', False)), _connector='OR'), name='capturesession_completed_has_one_card')],
            },
        ),
        # Backwards leaves the group alone, as 0002 does: its members were chosen by people.
        migrations.RunPython(grant_capture_sessions, migrations.RunPython.noop),
    ]
