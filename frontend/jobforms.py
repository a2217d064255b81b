"""Forms of the training pages."""

from django import forms

from training.models import CandidateTasks, Model, ModelRole


def policy_models():
    ids = [m.pk for m in Model.objects.filter(is_active=True) if ModelRole.POLICY in (m.roles or [])]
    return Model.objects.filter(pk__in=ids).order_by("name")


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
        self.fields["model"].queryset = policy_models()

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
