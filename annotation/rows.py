"""Plain SQL for the few hot paths that skip the ORM's compile: prepared statements on PostgreSQL,
and model instances built from their rows."""

import json
from functools import partial

from django.db import DEFAULT_DB_ALIAS, connection


def fetch_one(sql: str, params) -> tuple | None:
    """Run one statement and return its first row. On PostgreSQL the statement is bound on the server
    and prepared once per connection, so later runs skip parsing and planning (Django's own cursors
    bind on the client and cannot be prepared). Errors are the driver's own on that path."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    import psycopg

    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:

        def execute(sql, params, many, context):
            return cursor.execute(sql, params, prepare=True)

        # Through the connection's execute wrappers (`connection.execute_wrapper`), as Django's cursors do.
        for wrapper in reversed(connection.execute_wrappers):
            execute = partial(wrapper, execute)
        execute(sql, params, False, {"connection": connection, "cursor": cursor})
        return cursor.fetchone()


def instance(model, values: dict):
    """An instance of `model` with the given field values (by attname), as if loaded from the
    database; fields not given are deferred and load on first access."""
    return model.from_db(
        DEFAULT_DB_ALIAS, tuple(values), [values[f.attname] for f in model._meta.concrete_fields if f.attname in values]
    )


def json_value(value):
    """A JSON column read through a plain cursor: text on SQLite and (as Django loads jsonb) on PostgreSQL."""
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def id_set(ids) -> "RawSQL":
    """`pk__in=id_set(ids)`: any number of ids as one bound JSON parameter (SQLite refuses more than 32,766
    parameters in a statement, and a long IN list costs PostgreSQL a parse and plan of every one)."""
    from django.db.models.expressions import RawSQL

    text = json.dumps([int(i) for i in ids])
    if connection.vendor == "postgresql":
        return RawSQL("SELECT jsonb_array_elements_text(%s::jsonb)::bigint", [text])
    return RawSQL("SELECT value FROM json_each(%s)", [text])
