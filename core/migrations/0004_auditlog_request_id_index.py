"""The audit log's index on request_id, built on PostgreSQL with CREATE INDEX CONCURRENTLY.

The audit table is the vault's largest and every tokenize, detokenize and admin action writes to it: a plain
CREATE INDEX would hold off those writes for as long as the build takes (minutes on a large vault). Built
concurrently it takes longer and waits for transactions already open, but the vault keeps serving. Other databases
build it the ordinary way. Not atomic: PostgreSQL refuses a concurrent build inside a transaction; if it is
interrupted, an invalid index is left behind: drop ``auditlog_request_id`` and migrate again.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models
from django.db.migrations.operations import AddIndex


class AddIndexConcurrentlyOnPostgreSQL(AddIndexConcurrently):
    """``AddIndexConcurrently`` where the database is PostgreSQL, ``AddIndex`` on any other."""

    def describe(self):
        fields = ", ".join(self.index.fields)
        return f"Create index {self.index.name} on field(s) {fields} of model {self.model_name}, concurrently on PostgreSQL"

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        operation = AddIndexConcurrently if schema_editor.connection.vendor == "postgresql" else AddIndex
        operation.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        operation = AddIndexConcurrently if schema_editor.connection.vendor == "postgresql" else AddIndex
        operation.database_backwards(self, app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("core", "0003_auditlog_request_id"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="auditlog",
            index=models.Index(fields=["request_id"], name="auditlog_request_id"),
        ),
    ]
