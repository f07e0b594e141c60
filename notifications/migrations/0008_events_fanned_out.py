"""Events are fanned out to their endpoints by the dispatcher now (``services.events_fan_out``), not by the request
that writes them. The events there are already have their deliveries: they are marked fanned out; new ones are not."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("notifications", "0007_merchants_app"),
    ]

    operations = [
        migrations.AddField(
            model_name="event",
            name="fanned_out",
            field=models.BooleanField(default=True),
        ),
        migrations.AlterField(
            model_name="event",
            name="fanned_out",
            field=models.BooleanField(default=False),
        ),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(condition=models.Q(("fanned_out", False)), fields=["id"], name="event_not_fanned_out"),
        ),
    ]
