"""Model instances from the rows of plain SQL, for the few hot paths that skip the ORM's compile."""

import json

from django.db import DEFAULT_DB_ALIAS


def instance(model, values: dict):
    """An instance of `model` with the given field values (by attname), as if loaded from the
    database; fields not given are deferred and load on first access."""
    return model.from_db(
        DEFAULT_DB_ALIAS, tuple(values), [values[f.attname] for f in model._meta.concrete_fields if f.attname in values]
    )


def json_value(value):
    """A JSON column read through a plain cursor: text on SQLite and (as Django loads jsonb) on PostgreSQL."""
    return json.loads(value) if isinstance(value, (str, bytes)) else value
