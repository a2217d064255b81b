"""The launch form of the feedback page."""

from django import forms

from ..models import FeedbackKind, Model


class FeedbackJobForm(forms.Form):
    kind = forms.ChoiceField(choices=FeedbackKind.choices, initial=FeedbackKind.JUDGE, label="Job")
    model = forms.ModelChoiceField(queryset=Model.objects.none(), to_field_name="name", empty_label=None,
                                   label="Model (judge / reviser)")
    limit = forms.IntegerField(min_value=1, required=False, help_text="At most this many prompts or tasks.")
    with_human_labels = forms.BooleanField(required=False, initial=True, label="Only tasks people labelled")
    rounds = forms.IntegerField(min_value=1, max_value=8, initial=1, help_text="Critique → revision rounds.")
    cot = forms.BooleanField(required=False, label="Chain of thought (clamped to 0.4–0.6)")
    counts_toward_overlap = forms.BooleanField(required=False, label="AI labels take queue slots")
    export_pairs = forms.BooleanField(required=False, label="Also export (revision ≻ original) pairs")
    principles = forms.CharField(required=False, max_length=1000, help_text="Principle keys, comma-separated (empty: all).")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        ids = [m.pk for m in Model.objects.filter(is_active=True) if {"policy", "judge"} & set(m.roles or [])]
        self.fields["model"].queryset = Model.objects.filter(pk__in=ids).order_by("name")

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        scope = {}
        if data.get("limit"):
            scope["limit"] = data["limit"]
        if data["kind"] == FeedbackKind.JUDGE and data.get("with_human_labels") and not data.get("counts_toward_overlap"):
            scope["with_human_labels"] = True
        return {
            "kind": data["kind"],
            "model": data["model"],
            "scope": scope,
            "rounds": data.get("rounds") or 1,
            "cot": bool(data.get("cot")),
            "counts_toward_overlap": bool(data.get("counts_toward_overlap")),
            "export_pairs": bool(data.get("export_pairs")),
            "principles": [p.strip() for p in (data.get("principles") or "").split(",") if p.strip()],
        }
