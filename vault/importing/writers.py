"""Storage strategies: many new rows of a model in one statement. ``Copy`` (PostgreSQL's ``COPY … FROM STDIN``) on
PostgreSQL, ``BulkCreate`` (the ORM's multi-row insert) elsewhere.

A row is a dict of column values by attname (``vault.services.tokenize.token_columns``,
``notifications.services.event_rows``): making a model instance of each cost a third of the import's time in the
thread that reads and prepares the file. Both write every concrete field of the model but an automatic primary key,
a column a row leaves out taking its field's default: a column added to a model is written with nothing to change
here. Neither returns primary keys; the import needs none.

``Copy`` hands the values to the driver in COPY's binary format, each column typed from its field's database type,
so the driver's C code adapts them: preparing each value through its field (``get_db_prep_save``), as the ORM
does, cost the import four fifths of its time. Values the driver cannot take as they are (a kind of field other than
text, numbers, booleans, date-times, bytes and JSON) are still prepared by their field. JSON (a token's billing
address, an event's payload) is encoded by orjson rather than the standard library: half of a row's COPY time went
to ``json.dumps`` (19 -> 10 us of CPU a row, measured on the import's own rows); the column is jsonb, which keeps no
spacing, so the stored values are the same.
"""

import functools
import operator
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import orjson
import psycopg
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import DateField, Field
from django.db.models.fields import AutoFieldMixin
from psycopg.copy import FileWriter
from psycopg.types.json import set_json_dumps

# Field kinds whose values the driver adapts as they are (JSON, when its field has no encoder of its own).
_AS_THEY_ARE = (
    "CharField",
    "TextField",
    "SlugField",
    "EmailField",
    "URLField",
    "BooleanField",
    "DateTimeField",
    "BinaryField",
)


class BulkCreate:
    def write(self, model, rows: list[dict]) -> None:
        if rows:
            model.objects.bulk_create([model(**row) for row in rows])


class Copy:
    """One binary ``COPY`` per call, on this thread's connection."""

    def __init__(self):
        self._layouts: dict[type, _Layout] = {}

    def write(self, model, rows: list[dict]) -> None:
        if not rows:
            return
        connection, layout = self._layout(model)
        # The driver's cursor (Django's has no COPY), so its errors are wrapped by hand: a duplicate card must be an
        # IntegrityError, which the import retries.
        with (
            connection.cursor() as cursor,
            connection.wrap_database_errors,
            _json_by_orjson(cursor.cursor).copy(layout.statement) as copy,
        ):
            copy.set_types(layout.types)
            layout.write_rows(copy, rows)

    @contextmanager
    def dump(self, model, file) -> Iterator[Callable[[list], None]]:
        """Write to ``file`` (binary) what ``write`` would send, for a later ``COPY`` (``statement``) that needs no
        preparing (the benchmark's storage floor): yields a function to call with each list of rows."""
        connection, layout = self._layout(model)
        with (
            connection.cursor() as cursor,
            psycopg.Copy(_json_by_orjson(cursor.cursor), binary=True, writer=FileWriter(file)) as copy,
        ):
            copy.set_types(layout.types)
            yield functools.partial(layout.write_rows, copy)

    def statement(self, model) -> str:
        return self._layout(model)[1].statement

    def _layout(self, model):
        connection = connections[DEFAULT_DB_ALIAS]  # this thread's
        layout = self._layouts.get(model) or self._layouts.setdefault(model, _Layout(model, connection))
        return connection, layout


class _Layout:
    """A model's columns for ``COPY``: the statement, their database types, and a row's values."""

    def __init__(self, model, connection):
        fields = [field for field in model._meta.concrete_fields if not isinstance(field, AutoFieldMixin)]
        quote = connection.ops.quote_name
        columns = ", ".join(quote(field.column) for field in fields)
        self.statement = f"COPY {quote(model._meta.db_table)} ({columns}) FROM STDIN (FORMAT BINARY)"
        self.types = [field.db_type(connection).split("(")[0] for field in fields]  # varchar(19): varchar
        self._read = operator.itemgetter(*(field.attname for field in fields))
        for field in fields:
            if _set_on_save(field):
                raise TypeError(f"{field} is set when saved, which a row of values cannot say")
        # The columns a row may leave out: their defaults, made once when they are constants, for each row otherwise.
        self._defaults = {field.attname: field.get_default() for field in fields if not callable(field.default)}
        self._made = [(field.attname, field) for field in fields if callable(field.default)]
        # By position, the fields whose value the driver cannot take as it is: prepared by the field.
        self._prepared = [(index, field) for index, field in enumerate(fields) if not _as_it_is(field)]
        self._connection = connection

    def write_rows(self, copy, rows: list[dict]) -> None:
        values = self.values
        for row in rows:
            copy.write_row(values(row))

    def values(self, row: dict) -> tuple | list:
        row = {**self._defaults, **row}
        for name, field in self._made:
            if name not in row:
                row[name] = field.get_default()
        values = self._read(row)
        if self._prepared:
            values = list(values)
            for index, field in self._prepared:
                values[index] = field.get_db_prep_save(values[index], self._connection)
        return values


def _set_on_save(field) -> bool:
    """Whether saving sets ``field``'s value (``auto_now`` and the like)."""
    if isinstance(field, DateField):
        return field.auto_now or field.auto_now_add
    return type(field).pre_save is not Field.pre_save


def _as_it_is(field) -> bool:
    """Whether the driver takes ``field``'s value as a row holds it."""
    kind = (field.target_field if field.is_relation else field).get_internal_type()
    if kind == "JSONField":
        return field.encoder is None
    return kind in _AS_THEY_ARE or kind.endswith(("IntegerField", "AutoField"))


def _json_by_orjson(cursor: psycopg.Cursor) -> psycopg.Cursor:
    """``cursor``, its JSON values encoded by orjson (for this cursor only)."""
    set_json_dumps(orjson.dumps, context=cursor)
    return cursor


def for_this_database() -> BulkCreate | Copy:
    """The strategy for the default database."""
    return Copy() if connections[DEFAULT_DB_ALIAS].vendor == "postgresql" else BulkCreate()
