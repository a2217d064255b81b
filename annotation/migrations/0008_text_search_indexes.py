# The task browser's text filter (icontains: UPPER(text) LIKE UPPER('%words%')) scans every prompt and response.
# On PostgreSQL, trigram indexes on the same expressions let it read only the rows that can match. pg_trgm ships
# with PostgreSQL and is a trusted extension (the database owner may create it); where it cannot be created the
# indexes are left out and the filter scans, as on SQLite.

from django.db import migrations

INDEXES = {
    "annotation_prompt_text_trgm": "annotation_prompt USING gin (UPPER((messages)::text) gin_trgm_ops)",
    "annotation_response_text_trgm": "annotation_response USING gin (UPPER(content) gin_trgm_ops)",
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        if cursor.fetchone() is None:
            cursor.execute("SAVEPOINT quorum_trgm")
            try:
                cursor.execute("CREATE EXTENSION pg_trgm")
            except Exception:  # not allowed here: the filter scans instead
                cursor.execute("ROLLBACK TO SAVEPOINT quorum_trgm")
                return
        for name, target in INDEXES.items():
            cursor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for name in INDEXES:
            cursor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0007_task_browser_suggestions"),
    ]

    operations = [migrations.RunPython(create, drop)]
