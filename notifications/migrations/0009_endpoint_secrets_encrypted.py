"""Webhook signing secrets are encrypted at rest under the vault's key ring (``core.crypto``), the current and the
previous one together, bound to their endpoint (``WebhookEndpoint.associated_data``); the clear columns go."""

import json

from django.db import migrations, models

from core import crypto


def _associated_data(endpoint) -> bytes:
    return f"webhook-endpoint:{endpoint.public_id}".encode()  # as WebhookEndpoint.associated_data


def encrypt_secrets(apps, schema_editor):
    Endpoint = apps.get_model("notifications", "WebhookEndpoint")
    endpoints = list(Endpoint.objects.all())
    if not endpoints:
        return  # a new installation: no key ring needed
    ring = crypto.key_ring()
    for endpoint in endpoints:
        plain = json.dumps([endpoint.secret, endpoint.previous_secret])
        endpoint.key_version, endpoint.secrets_ciphertext = ring.encrypt(
            plain, associated_data=_associated_data(endpoint)
        )
    Endpoint.objects.bulk_update(endpoints, ["key_version", "secrets_ciphertext"])


def decrypt_secrets(apps, schema_editor):
    Endpoint = apps.get_model("notifications", "WebhookEndpoint")
    endpoints = list(Endpoint.objects.all())
    if not endpoints:
        return
    ring = crypto.key_ring()
    for endpoint in endpoints:
        plain = ring.decrypt(
            endpoint.key_version, bytes(endpoint.secrets_ciphertext), associated_data=_associated_data(endpoint)
        )
        endpoint.secret, endpoint.previous_secret = json.loads(plain)
    Endpoint.objects.bulk_update(endpoints, ["secret", "previous_secret"])


class Migration(migrations.Migration):

    dependencies = [
        ("notifications", "0008_events_fanned_out"),
    ]

    operations = [
        migrations.AddField(
            model_name="webhookendpoint",
            name="secrets_ciphertext",
            field=models.BinaryField(default=b"", editable=False),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="webhookendpoint",
            name="key_version",
            field=models.PositiveIntegerField(editable=False, null=True),
        ),
        migrations.AlterField(
            model_name="webhookendpoint",
            name="secret",
            field=models.CharField(blank=True, editable=False, max_length=80),
        ),
        migrations.RunPython(encrypt_secrets, decrypt_secrets),
        migrations.AlterField(
            model_name="webhookendpoint",
            name="key_version",
            field=models.PositiveIntegerField(editable=False),
        ),
        migrations.RemoveField(model_name="webhookendpoint", name="secret"),
        migrations.RemoveField(model_name="webhookendpoint", name="previous_secret"),
    ]
