# A delivery's last_error was the exception text or "HTTP <code>: <the first 500 characters of the answer>";
# it is now a short fixed reason, and what a receiver answered is no longer kept: earlier rows are rewritten.

from django.db import migrations, models


def reason(code, text: str) -> str:
    if not text:
        return ""
    if code is not None and text.startswith("HTTP "):
        return f"HTTP {code}"
    if text == "the webhook was disabled":
        return text
    lowered = text.lower()
    if "timeout" in lowered or "timed out" in lowered:
        return "timed out"
    if "refused" in lowered:
        return "connection refused"
    if "ssl" in lowered or "certificate" in lowered:
        return "TLS error"
    if text.startswith("ConnectError"):
        return "could not connect"
    return "request failed"


def forget_answers(apps, schema_editor):
    Delivery = apps.get_model("annotation", "WebhookDelivery")
    last = 0
    while True:
        rows = list(
            Delivery.objects.filter(pk__gt=last).exclude(last_error="").order_by("pk")
            .values_list("pk", "response_code", "last_error")[:2000]
        )
        if not rows:
            return
        for pk, code, text in rows:
            Delivery.objects.filter(pk=pk).update(last_error=reason(code, text))
        last = rows[-1][0]


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0003_ai_raters"),
    ]

    operations = [
        migrations.RunPython(forget_answers, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="last_error",
            field=models.CharField(
                blank=True, help_text="why the last attempt failed, in a few words (never what the receiver answered)",
                max_length=100,
            ),
        ),
    ]
