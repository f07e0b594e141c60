"""Rate limits per merchant, and the cache table that every server process counts each key's calls in.

The table is the one settings.CACHES names when the cache is the database (the default; Redis in production needs
none): made here, so that every installation that migrates has it, the embedded run and a fresh production database
alike. ``createcachetable`` leaves a table that exists alone, and Django's test runner calls it too.
"""

from django.core.management import call_command
from django.db import migrations, models

import merchants.models


def create_cache_tables(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):

    dependencies = [
        ('merchants', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='merchant',
            name='api_rate_limit',
            field=models.CharField(blank=True, help_text='Calls per API key.', max_length=20, validators=[merchants.models.validate_rate], verbose_name='rate limit'),
        ),
        migrations.AddField(
            model_name='merchant',
            name='card_data_rate_limit',
            field=models.CharField(blank=True, help_text='Calls per API key that release card data (detokenize, cryptograms with the token number).', max_length=20, validators=[merchants.models.validate_rate], verbose_name='card data rate limit'),
        ),
        # Nothing to undo: the table holds only counts that expire, and Django's own command made it.
        migrations.RunPython(create_cache_tables, migrations.RunPython.noop),
    ]
