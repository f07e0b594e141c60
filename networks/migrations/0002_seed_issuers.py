"""Default issuers for the public test card ranges, so a fresh vault can provision network tokens at once.

Operators edit them (names, card art, rate limits) in the admin; cards outside every range go to a per-network
catch-all issuer created on first use.
"""

from django.db import migrations

ISSUERS = [
    # name, network, first BIN, last BIN, card art ids, calls per second
    ("Baker Street Bank", "VISA", "444433", "444433", ["art-bsb-classic", "art-bsb-gold"], 50),
    ("Visa Test Issuer", "VISA", "400000", "411111", ["art-vti-blue"], 50),
    ("Northern Lights Credit Union", "VISA", "411112", "499999", ["art-nlcu"], 50),
    ("Maple Mutual", "MASTERCARD", "555555", "555555", ["art-maple-world"], 50),
    ("Mastercard Test Issuer", "MASTERCARD", "510000", "555554", ["art-mti"], 50),
    ("Two Series Trust", "MASTERCARD", "222100", "272099", ["art-tst"], 50),
    ("Centurion Test Issuer", "AMEX", "340000", "379999", ["art-amex-green", "art-amex-platinum"], 50),
]


def seed(apps, schema_editor):
    Issuer = apps.get_model("networks", "Issuer")
    for name, network, low, high, art, rate in ISSUERS:
        Issuer.objects.get_or_create(
            name=name, network=network, bin_low=low, bin_high=high,
            defaults={"card_art_ids": art, "rate_limit_per_second": rate},
        )


def unseed(apps, schema_editor):
    Issuer = apps.get_model("networks", "Issuer")
    for name, network, low, high, _, _ in ISSUERS:
        Issuer.objects.filter(name=name, network=network, bin_low=low, bin_high=high).delete()


class Migration(migrations.Migration):
    dependencies = [("networks", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
