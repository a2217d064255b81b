"""Forms for the admin pages: field checks here, every write in annotation.services."""

import re

from django import forms

from annotation.models import Role, SnapshotFormat, TaskKind
from annotation.services.exports import TASK_FORMATS
from training.models import ModelRole
from training.selectors import models_with_role


class ProjectSettingsForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    required_annotations = forms.IntegerField(
        min_value=1, max_value=50, label="Overlap", help_text="Annotations wanted per task."
    )
    lease_minutes = forms.IntegerField(
        min_value=1,
        max_value=7 * 24 * 60,
        label="Lease (minutes)",
        help_text="How long a task stays reserved for the person who opened it.",
    )
    task_kinds = forms.MultipleChoiceField(
        choices=[(k, k.capitalize()) for k in TaskKind.values],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="The kinds of task this project collects.",
    )
    aspects = forms.CharField(
        required=False,
        max_length=500,
        help_text="Aspects rated on a 1–7 scale, separated by commas. Empty: helpful, honest, harmless.",
    )
    review_max_confidence = forms.FloatField(
        required=False,
        min_value=0.0,
        max_value=1.0,
        label="Review threshold",
        help_text="Tasks whose aggregated label is at most this probable (0–1) head the review page. Empty: 0.8.",
    )
    suggestion_percent = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=100,
        label="AI suggestions (% of leases)",
        help_text="Show the AI judge's verdict, pre-filled, on this share of pairwise tasks that have one; the "
        "others are the comparison on the dashboard. Empty or 0: off.",
    )

    def clean_aspects(self) -> list[str]:
        raw = [a.strip().lower() for a in self.cleaned_data["aspects"].split(",")]
        aspects = [a for a in raw if a]
        for a in aspects:
            if not re.fullmatch(r"[a-z][a-z0-9_-]{0,39}", a):
                raise forms.ValidationError(f"“{a}” is not a valid aspect name (letters, digits, - and _).")
        if len(set(aspects)) != len(aspects):
            raise forms.ValidationError("Each aspect once.")
        if len(aspects) > 9:
            raise forms.ValidationError("At most 9 aspects.")
        return aspects


SAMPLING_FIELDS = {  # form field suffix -> (sampling key, field); bounds as the generation backends check them
    "temperature": ("temperature", lambda: forms.FloatField(required=False, min_value=0.0, max_value=5.0,
                                                            label="temperature")),
    "top_p": ("top_p", lambda: forms.FloatField(required=False, min_value=0.0, max_value=1.0, label="top_p")),
    "max_new_tokens": ("max_new_tokens", lambda: forms.IntegerField(required=False, min_value=1, max_value=32768,
                                                                    label="max_new_tokens")),
}
SIDES = {"a": "sampling", "b": "sampling_b"}  # form prefix -> key of the `chat` project setting


class ChatSettingsForm(forms.Form):
    """The `chat` project setting: the registered policy models chat draws from, and each side's sampling.

    Keys set elsewhere (through the API: a seed, stop strings) are kept; an empty field falls back to the
    model's own default (side A) or to side A (side B).
    """

    models = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label="Chat models",
        help_text="Registered policy models. One: compare samples it twice, with sampling A and B. Two or more: "
        "compare and arena each draw two of them (arena needs two); red team talks to one.",
    )

    def __init__(self, *args, chat: dict | None = None, **kwargs):
        self.chat = dict(chat or {})
        initial = {"models": self.chat.get("models") or []}
        for prefix, key in SIDES.items():
            sampling = self.chat.get(key) or {}
            initial.update({f"{prefix}_{name}": sampling.get(k) for name, (k, _) in SAMPLING_FIELDS.items()})
        super().__init__(*args, initial=initial, **kwargs)
        self.fields["models"].choices = [(m.name, m.name) for m in models_with_role(ModelRole.POLICY)]
        for prefix in SIDES:
            for name, (_, field) in SAMPLING_FIELDS.items():
                self.fields[f"{prefix}_{name}"] = field()

    def sides(self) -> list[tuple[str, list]]:
        """(side, its bound fields) for the template."""
        return [(prefix.upper(), [self[f"{prefix}_{name}"] for name in SAMPLING_FIELDS]) for prefix in SIDES]

    def clean(self):
        data = super().clean()
        for prefix in SIDES:
            top_p = data.get(f"{prefix}_top_p")
            if top_p is not None and top_p <= 0:
                self.add_error(f"{prefix}_top_p", "top_p must be above 0 (and at most 1).")
        return data

    def setting(self) -> dict:
        """The new `chat` setting: this form's fields over what was there."""
        chat = {**self.chat, "models": list(self.cleaned_data["models"])}
        for prefix, key in SIDES.items():
            sampling = dict(chat.get(key) or {})
            for name, (k, _) in SAMPLING_FIELDS.items():
                value = self.cleaned_data.get(f"{prefix}_{name}")
                if value is None:
                    sampling.pop(k, None)
                else:
                    sampling[k] = value
            chat[key] = sampling
        return chat


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices)


class GuidelineForm(forms.Form):
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 24}), strip=False)
    note = forms.CharField(max_length=300, required=False)


class SnapshotForm(forms.Form):
    format = forms.ChoiceField(choices=SnapshotFormat.choices)
    file_format = forms.ChoiceField(choices=[("jsonl", "JSON lines"), ("parquet", "Parquet")])
    style = forms.ChoiceField(
        choices=[("conversational", "Conversational (messages)"), ("standard", "Standard (text)")],
        help_text="How prompts and responses are written: message lists or plain strings.",
    )
    sources = forms.MultipleChoiceField(
        choices=[("human", "Human"), ("ai", "AI")],
        initial=["human", "ai"],
        widget=forms.CheckboxSelectMultiple,
        help_text="Whose annotations go in.",
    )
    aggregation = forms.ChoiceField(
        choices=[("majority", "Majority vote"), ("dawid_skene", "Reliability-weighted (Dawid-Skene)")],
        initial="majority",
        required=False,
        help_text="How pairwise labels are combined; a reviewer's correction always decides its task.",
    )

    def clean_aggregation(self):
        return self.cleaned_data.get("aggregation") or "majority"


class TaskActionForm(forms.Form):
    """A bulk action of the task browser on the checked tasks (`task` ids, checked by the service), or on every
    task matching the filter."""

    action = forms.ChoiceField(choices=[
        ("requeue", "Requeue for more labels"), ("set_priority", "Set priority"), ("mark_gold", "Mark gold (majority label)"),
        ("unmark_gold", "Unmark gold"), ("export", "Export as a dataset snapshot"),
    ])
    scope = forms.ChoiceField(choices=[("checked", "Checked tasks"), ("matching", "Every matching task")], initial="checked")
    extra = forms.IntegerField(min_value=1, max_value=50, initial=1, required=False, label="More labels per task")
    priority = forms.IntegerField(min_value=-1_000_000, max_value=1_000_000, required=False)
    format = forms.ChoiceField(choices=[c for c in SnapshotFormat.choices if c[0] in TASK_FORMATS],
                               initial=SnapshotFormat.PREFERENCE, required=False)
