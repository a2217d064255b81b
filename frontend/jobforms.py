"""The forms that launch jobs from the web UI: generation jobs, feedback jobs and rounds."""

from django import forms

from training.models import CandidateTasks, FeedbackKind, Model, ModelRole
from training.rounds.models import LabelMode
from training.selectors import models_with_role


def _queryset(models: list[Model]):
    return Model.objects.filter(pk__in=[m.pk for m in models]).order_by("name")


def _choices(models: list[Model]) -> list[tuple[str, str]]:
    return [("", "—")] + [(m.name, m.name) for m in models]


class GenerationJobForm(forms.Form):
    model = forms.ModelChoiceField(queryset=Model.objects.none(), to_field_name="name", empty_label=None)
    limit = forms.IntegerField(min_value=1, required=False, help_text="At most this many prompts (oldest first).")
    tags = forms.CharField(required=False, max_length=500, help_text="Only prompts with any of these tags (comma-separated).")
    new_only = forms.BooleanField(required=False, initial=True, label="Skip prompts this model already answered")
    n = forms.IntegerField(min_value=1, max_value=16, initial=2, label="Samples per prompt")
    temperature = forms.FloatField(min_value=0, max_value=2, required=False, help_text="Empty: the model's default.")
    max_new_tokens = forms.IntegerField(min_value=1, max_value=4096, required=False, label="Max new tokens")
    task_kind = forms.ChoiceField(choices=CandidateTasks.choices, initial=CandidateTasks.PAIRWISE, label="Tasks")
    group_size = forms.IntegerField(min_value=2, max_value=16, required=False, label="Ranking group size")
    priority = forms.IntegerField(initial=0, required=False, help_text="Higher comes first in the queue.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model"].queryset = _queryset(models_with_role(ModelRole.POLICY))

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        prompt_filter = {}
        if data.get("limit"):
            prompt_filter["limit"] = data["limit"]
        tags = [t.strip() for t in (data.get("tags") or "").split(",") if t.strip()]
        if tags:
            prompt_filter["tags"] = tags
        if data.get("new_only"):
            prompt_filter["without_model_responses"] = True
        sampling = {}
        if data.get("temperature") is not None:
            sampling["temperature"] = data["temperature"]
        if data.get("max_new_tokens"):
            sampling["max_new_tokens"] = data["max_new_tokens"]
        return {
            "model": data["model"],
            "prompt_filter": prompt_filter,
            "n": data["n"],
            "sampling": sampling,
            "task_kind": data["task_kind"],
            "group_size": data.get("group_size"),
            "task_priority": data.get("priority") or 0,
        }


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
        self.fields["model"].queryset = _queryset(models_with_role(ModelRole.POLICY, ModelRole.JUDGE))

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


class RoundForm(forms.Form):
    rounds = forms.IntegerField(min_value=1, max_value=100, initial=1)
    label_mode = forms.ChoiceField(choices=LabelMode.choices, initial=LabelMode.AI)
    human_quota = forms.IntegerField(min_value=0, required=False, help_text="Empty: one human label per task.")
    policy = forms.ChoiceField(required=False, help_text="Empty: the last round's model.")
    judge = forms.ChoiceField(required=False)
    reward_model = forms.ChoiceField(required=False)
    prompts_per_round = forms.IntegerField(min_value=1, max_value=10_000, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["policy"].choices = _choices(models_with_role(ModelRole.POLICY, local_only=True))
        self.fields["judge"].choices = _choices(models_with_role(ModelRole.JUDGE))
        self.fields["reward_model"].choices = _choices(models_with_role(ModelRole.REWARD, local_only=True))

    def service_kwargs(self) -> dict:
        d = self.cleaned_data
        by_name = lambda name: Model.objects.filter(name=name).first() if name else None  # noqa: E731
        config = {"prompts_per_round": d["prompts_per_round"]} if d.get("prompts_per_round") else {}
        return {"rounds": d["rounds"], "label_mode": d["label_mode"], "human_quota": d.get("human_quota"),
                "policy": by_name(d.get("policy")), "judge": by_name(d.get("judge")),
                "reward_model": by_name(d.get("reward_model")), "config": config}
