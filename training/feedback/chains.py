"""Supervised Constitutional AI: critique → revision chains, stored as responses with full provenance.

For each prompt: take its first existing response (or generate one), then for k rounds sample a principle of the
constitution version, ask the model for a critique with the principle's critique request and for a revision
with its revision request. Every critique and every revision is a `Response` with origin `revision`, `parent`
= the response it critiques or revises, and metadata {cai: critique|revision, principle, constitution version,
round, feedback job} (a revision also names its critique). Each round is committed on its own and keyed by
(job, round), so a retried or resumed job continues where it stopped and never duplicates a row.
"""

from __future__ import annotations

import re

from django.db import transaction

from annotation.models import Prompt, Response, ResponseOrigin
from annotation.services import response_create
from annotation.services.exports import snapshot_from_rows

from ..backends.base import Sampling, storable_text
from .labels import pick_principle
from .prompts import critique_conversation, revision_conversation

CRITIQUE_SAMPLING = {"max_new_tokens": 96, "temperature": 0.0, "repetition_penalty": 1.2}
REVISION_SAMPLING = {"max_new_tokens": 160, "temperature": 0.0, "repetition_penalty": 1.2}  # greedy small models loop without it
_LEADS = re.compile(r"^\s*(revision|revised response|critique)\s*:\s*", re.IGNORECASE)


def _clean(text: str) -> str:
    return _LEADS.sub("", storable_text(text)).strip()


def _key(job_id: int, round_: int, step: str) -> str:
    return f"cai:{job_id}:{round_}:{step}"


def _base_response(prompt: Prompt, job_id: int) -> Response | None:
    return (
        Response.objects.filter(prompt=prompt)
        .exclude(origin=ResponseOrigin.REVISION)
        .order_by("id")
        .first()
    )


def chains_run_batch(*, backend, job, prompts: list[Prompt], principles, constitution) -> dict:
    """Run every remaining round for these prompts. Returns {critiques, revisions, failures: [{item, error}]}."""
    params = job.parameters or {}
    rounds = int(params.get("rounds", 1))
    seed = params.get("seed", job.pk)
    critique_sampling = Sampling.from_dict({**CRITIQUE_SAMPLING, **(params.get("critique_sampling") or {})})
    revision_sampling = Sampling.from_dict({**REVISION_SAMPLING, **(params.get("revision_sampling") or {})})
    counts = {"critiques": 0, "revisions": 0, "generated_bases": 0, "failures": []}

    current: dict[int, Response] = {}
    need_base = []
    for prompt in prompts:
        base = _base_response(prompt, job.pk)
        if base is None:
            need_base.append(prompt)
        else:
            current[prompt.pk] = base
    if need_base:
        completions = backend.generate([p.messages for p in need_base], 1, revision_sampling)
        with transaction.atomic():
            for prompt, (completion,) in zip(need_base, completions):
                current[prompt.pk] = response_create(
                    prompt=prompt, content=storable_text(completion.text), origin=ResponseOrigin.GENERATED,
                    model_name=job.model.name, dedupe_key=f"cai:{job.pk}:base",
                    generation={"sampling": revision_sampling.as_dict(), "finish_reason": completion.finish_reason},
                    metadata={"feedback_job": job.pk},
                )
                counts["generated_bases"] += 1

    # Rounds already written by an earlier attempt are reused, not generated again.
    done = {
        (r.prompt_id, r.dedupe_key): r
        for r in Response.objects.filter(prompt__in=prompts, dedupe_key__startswith=f"cai:{job.pk}:")
    }
    active = list(prompts)
    for round_ in range(1, rounds + 1):
        todo = []
        for prompt in active:
            revision = done.get((prompt.pk, _key(job.pk, round_, "revision")))
            if revision is not None:
                current[prompt.pk] = revision
            else:
                todo.append(prompt)
        if not todo:
            continue
        chosen = {p.pk: pick_principle(principles, seed=seed, item=p.pk, round=round_) for p in todo}
        critiques = backend.generate(
            [critique_conversation(p.messages, current[p.pk].content, chosen[p.pk].critique_request) for p in todo],
            1, critique_sampling,
        )
        critique_texts = [_clean(c[0].text) for c in critiques]
        revisions = backend.generate(
            [
                revision_conversation(p.messages, current[p.pk].content, chosen[p.pk].critique_request, text,
                                      chosen[p.pk].revision_request)
                for p, text in zip(todo, critique_texts)
            ],
            1, revision_sampling,
        )
        still = []
        with transaction.atomic():
            for prompt, critique_text, (revision,) in zip(todo, critique_texts, revisions):
                principle = chosen[prompt.pk]
                revision_text = _clean(revision.text)
                if not revision_text:
                    counts["failures"].append({"item": prompt.pk, "error": f"round {round_}: the revision came back empty"})
                    continue
                provenance = {
                    "principle": principle.key,
                    "constitution_version": constitution.number,
                    "constitution_version_id": constitution.pk,
                    "round": round_,
                    "feedback_job": job.pk,
                }
                critique = response_create(
                    prompt=prompt, content=critique_text, origin=ResponseOrigin.REVISION, model_name=job.model.name,
                    parent=current[prompt.pk], dedupe_key=_key(job.pk, round_, "critique"),
                    generation={"sampling": critique_sampling.as_dict(), "finish_reason": critiques[todo.index(prompt)][0].finish_reason},
                    metadata={"cai": "critique", **provenance}, steps=[],
                )
                current[prompt.pk] = response_create(
                    prompt=prompt, content=revision_text, origin=ResponseOrigin.REVISION, model_name=job.model.name,
                    parent=current[prompt.pk], dedupe_key=_key(job.pk, round_, "revision"),
                    generation={"sampling": revision_sampling.as_dict(), "finish_reason": revision.finish_reason},
                    metadata={"cai": "revision", "critique_id": critique.pk, **provenance},
                )
                counts["critiques"] += 1
                counts["revisions"] += 1
                still.append(prompt)
        active = [p for p in active if p not in todo or p in still]
    return counts


def final_revisions(*, job) -> list[tuple[Prompt, Response, Response]]:
    """(prompt, original, final revision) per prompt of the job that has at least one revision."""
    revisions = (
        Response.objects.filter(prompt_id__in=job.item_ids, dedupe_key__startswith=f"cai:{job.pk}:", metadata__cai="revision")
        .select_related("prompt")
        .order_by("prompt_id", "id")
    )
    last: dict[int, Response] = {}
    for r in revisions:
        if r.prompt_id not in last or r.metadata.get("round", 0) >= last[r.prompt_id].metadata.get("round", 0):
            last[r.prompt_id] = r
    out = []
    for prompt_id in job.item_ids:
        final = last.get(prompt_id)
        if final is None:
            continue
        original = final
        while original.parent_id is not None and original.origin == ResponseOrigin.REVISION:
            original = original.parent
        out.append((final.prompt, original, final))
    return out


def chains_export(*, job, pairs: bool = False, created_by=None) -> dict:
    """The final revisions as an SFT snapshot ({messages}); with `pairs`, (final revision over original)
    preference rows too. Returns {"sft_snapshot": id, "pairs_snapshot": id?}."""
    finals = final_revisions(job=job)
    constitution = job.constitution
    spec = {
        "source": "critique-revision",
        "feedback_job": job.pk,
        "model": job.model.name,
        "constitution_version": constitution.number,
        "rounds": (job.parameters or {}).get("rounds", 1),
    }
    sft = snapshot_from_rows(
        project=job.project, format="sft", created_by=created_by,
        rows=({"messages": [*p.messages, {"role": "assistant", "content": final.content}]} for p, _, final in finals),
        spec={**spec, "labels": "the final revision of each prompt's critique-revision chain as the assistant turn"},
    )
    result = {"sft_snapshot": sft.pk, "sft_rows": sft.row_count}
    if pairs:
        pref = snapshot_from_rows(
            project=job.project, format="preference", created_by=created_by,
            rows=(
                {"prompt": p.messages, "chosen": [{"role": "assistant", "content": final.content}],
                 "rejected": [{"role": "assistant", "content": original.content}]}
                for p, original, final in finals if original.content != final.content
            ),
            spec={**spec, "labels": "chosen = the final revision, rejected = the response the chain started from"},
        )
        result.update(pairs_snapshot=pref.pk, pairs_rows=pref.row_count)
    return result
