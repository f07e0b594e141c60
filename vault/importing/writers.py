"""Storage strategies: many new rows of a model in one statement. ``Copy`` (PostgreSQL's ``COPY … FROM STDIN``) on
PostgreSQL, ``BulkCreate`` (the ORM's multi-row insert) elsewhere.

Both write every concrete field of the model but an automatic primary key, from the instances' values (after
``pre_save`` where saving sets a value, as the ORM's own inserts): a column added to a model is written with nothing
to change here. Neither returns primary keys; the import needs none.

``Copy`` hands the values to the driver in COPY's binary format, each column typed from its field's database type,
so the driver's C code adapts them: preparing each value through its field (``get_db_prep_save``), as the ORM
does, cost the import four fifths of its time. Values the driver cannot take as they are (a kind of field other than
text, numbers, booleans, date-times, bytes and JSON) are still prepared by their field.
"""

import functools
import operator
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import DateField, Field
from django.db.models.fields import AutoFieldMixin
from psycopg.copy import FileWriter

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
    def write(self, model, objects: list) -> None:
        if objects:
            model.objects.bulk_create(objects)


class Copy:
    """One binary ``COPY`` per call, on this thread's connection."""

    def __init__(self):
        self._layouts: dict[type, _Layout] = {}

    def write(self, model, objects: list) -> None:
        if not objects:
            return
        connection, layout = self._layout(model)
        # The driver's cursor (Django's has no COPY), so its errors are wrapped by hand: a duplicate card must be an
        # IntegrityError, which the import retries.
        with (
            connection.cursor() as cursor,
            connection.wrap_database_errors,
            cursor.cursor.copy(layout.statement) as copy,
        ):
            copy.set_types(layout.types)
            layout.write_rows(copy, objects)

    @contextmanager
    def dump(self, model, file) -> Iterator[Callable[[list], None]]:
        """Write to ``file`` (binary) what ``write`` would send, for a later ``COPY`` (``statement``) that needs no
        preparing (the benchmark's storage floor): yields a function to call with each list of objects."""
        connection, layout = self._layout(model)
        with connection.cursor() as cursor, psycopg.Copy(cursor.cursor, binary=True, writer=FileWriter(file)) as copy:
            copy.set_types(layout.types)
            yield functools.partial(layout.write_rows, copy)

    def statement(self, model) -> str:
        return self._layout(model)[1].statement

    def _layout(self, model):
        connection = connections[DEFAULT_DB_ALIAS]  # this thread's
        layout = self._layouts.get(model) or self._layouts.setdefault(model, _Layout(model, connection))
        return connection, layout


class _Layout:
    """A model's columns for ``COPY``: the statement, their database types, and an instance's values."""

    def __init__(self, model, connection):
        fields = [field for field in model._meta.concrete_fields if not isinstance(field, AutoFieldMixin)]
        quote = connection.ops.quote_name
        columns = ", ".join(quote(field.column) for field in fields)
        self.statement = f"COPY {quote(model._meta.db_table)} ({columns}) FROM STDIN (FORMAT BINARY)"
        self.types = [field.db_type(connection).split("(")[0] for field in fields]  # varchar(19): varchar
        self._read = operator.attrgetter(*(field.attname for field in fields))
        # By position, the fields whose value is not the instance's as it is: set on save, or prepared by the field.
        self._prepared = [(index, field) for index, field in enumerate(fields) if not _as_it_is(field)]
        self._connection = connection

    def write_rows(self, copy, objects: list) -> None:
        values = self.values
        for obj in objects:
            copy.write_row(values(obj))

    def values(self, obj) -> tuple | list:
        values = self._read(obj)
        if self._prepared:
            values = list(values)
            for index, field in self._prepared:
                values[index] = field.get_db_prep_save(field.pre_save(obj, True), self._connection)
        return values


def _as_it_is(field) -> bool:
    """Whether ``field``'s value is written as the instance holds it."""
    if isinstance(field, DateField):
        if field.auto_now or field.auto_now_add:
            return False
    elif type(field).pre_save is not Field.pre_save:
        return False
    kind = (field.target_field if field.is_relation else field).get_internal_type()
    if kind == "JSONField":
        return field.encoder is None
    return kind in _AS_THEY_ARE or kind.endswith(("IntegerField", "AutoField"))


def for_this_database() -> BulkCreate | Copy:
    """The strategy for the default database."""
    return Copy() if connections[DEFAULT_DB_ALIAS].vendor == "postgresql" else BulkCreate()
