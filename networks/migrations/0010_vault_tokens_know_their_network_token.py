"""The vault's tokens keep their newest network token's tokenId (vault 0007): fill it in for the tokens there are."""

from django.db import migrations


def fill_links(apps, schema_editor):
    NetworkToken = apps.get_model("networks", "NetworkToken")
    Token = apps.get_model("vault", "Token")
    alias = schema_editor.connection.alias
    newest = {}
    rows = (NetworkToken.objects.using(alias).filter(vault_token__isnull=False).exclude(status="DELETED")
            .order_by("created_at", "pk").values_list("vault_token_id", "token_id").iterator(chunk_size=2000))
    for vault_token_id, token_id in rows:
        newest[vault_token_id] = token_id
    for vault_token_id, token_id in newest.items():
        Token.objects.using(alias).filter(pk=vault_token_id).update(network_token_id=token_id)


class Migration(migrations.Migration):

    dependencies = [
        ("networks", "0009_merchants_app"),
        ("vault", "0007_token_network_token_id"),
    ]

    operations = [migrations.RunPython(fill_links, migrations.RunPython.noop)]
