"""Imported preference annotations whose record stated neither a margin nor both scores were stored with
strength 1; their strength is now null (not stated), so a preference export gives them no margin."""

from django.db import migrations


def forwards(apps, schema_editor):
    Annotation = apps.get_model("annotation", "Annotation")
    imported = Annotation.objects.filter(kind="pairwise", details__import__format="preference").only("payload", "details")
    changed = []
    for annotation in imported.iterator(chunk_size=2000):
        stated = annotation.details["import"]
        if "margin" in stated or ("score_chosen" in stated and "score_rejected" in stated):
            continue
        if annotation.payload.get("choice") in ("A", "B") and annotation.payload.get("strength") == 1:
            annotation.payload = {**annotation.payload, "strength": None}
            changed.append(annotation)
        if len(changed) >= 2000:
            Annotation.objects.bulk_update(changed, ["payload"])
            changed = []
    Annotation.objects.bulk_update(changed, ["payload"])


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0004_delivery_reason_not_answer"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
