"""The form that runs rounds from the web UI."""

from django import forms

from ..models import Model, ModelRole
from .models import LabelMode


def _with_role(role: str):
    return [m for m in Model.objects.filter(is_active=True).order_by("name") if role in (m.roles or [])]


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
        none = [("", "—")]
        self.fields["policy"].choices = none + [(m.name, m.name) for m in _with_role(ModelRole.POLICY) if m.path]
        self.fields["judge"].choices = none + [(m.name, m.name) for m in _with_role(ModelRole.JUDGE)]
        self.fields["reward_model"].choices = none + [(m.name, m.name) for m in _with_role(ModelRole.REWARD) if m.path]

    def service_kwargs(self) -> dict:
        d = self.cleaned_data
        by_name = lambda name: Model.objects.filter(name=name).first() if name else None  # noqa: E731
        config = {"prompts_per_round": d["prompts_per_round"]} if d.get("prompts_per_round") else {}
        return {"rounds": d["rounds"], "label_mode": d["label_mode"], "human_quota": d.get("human_quota"),
                "policy": by_name(d.get("policy")), "judge": by_name(d.get("judge")),
                "reward_model": by_name(d.get("reward_model")), "config": config}
