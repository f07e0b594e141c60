"""A pending conflict may hold a scheme transaction reference: a request bringing one different from the token's is
a conflict like the other fields (DESIGN.md "Card tokens"). A nullable column: adding it rewrites no row."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('vault', '0003_token_indexes_without_pattern_ops'),
    ]

    operations = [
        migrations.AddField(
            model_name='tokenconflict',
            name='scheme_transaction_reference',
            field=models.CharField(blank=True, max_length=56, null=True),
        ),
    ]
