"""A project's quality report as JSON-ready dicts: agreement per kind, aspect, annotator, guideline
version and source, reliability-weighted aggregation, gold accuracy and the model leaderboard.

Every figure comes with a percentile bootstrap interval {"estimate", "low", "high", ...}; NaN
(undefined, e.g. too few overlapping ratings) is reported as null.
"""

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from django.utils import timezone

from ..models import Project, TaskKind
from ..payloads import PAIRWISE_CHOICES
from . import agreement as ag
from . import bradley_terry as bt
from .bootstrap import DEFAULT_LEVEL, DEFAULT_RESAMPLES, Interval, interval
from .dawid_skene import dawid_skene
from .selectors import (
    ALL_SOURCES,
    NO_VERSION,
    PAIRWISE_CODE,
    LabelTable,
    Raters,
    demonstration_count,
    gold_answers,
    model_votes,
    pairwise_table,
    ranking_table,
    rating_table,
    steps_tables,
)


@dataclass(frozen=True)
class Options:
    sources: tuple[str, ...] = ALL_SOURCES
    n_resamples: int = DEFAULT_RESAMPLES
    level: float = DEFAULT_LEVEL
    seed: int = 0
    # Cohen's kappa is listed for annotator pairs who share at least this many items.
    min_pair_items: int = 3


def _num(x) -> float | int | None:
    if x is None:
        return None
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)
    return x if np.isfinite(x) else None


def _ci(estimator, opts: Options, salt: int = 0) -> dict:
    return interval(estimator, n_resamples=opts.n_resamples, level=opts.level, seed=opts.seed + salt).as_dict()


def _counts(r: ag.Ratings) -> dict:
    per_item = np.bincount(r.items, minlength=r.n_items) if len(r) else np.zeros(0, dtype=np.int64)
    known = np.unique(r.raters[r.raters >= 0])
    return {
        "ratings": len(r),
        "items": int((per_item > 0).sum()),
        "items_with_overlap": int((per_item >= 2).sum()),
        "annotators": int(known.size),
    }


def _agreement(r: ag.Ratings, levels: tuple[str, ...], opts: Options) -> dict:
    """Alpha at each level, Fleiss' kappa and percent agreement, with intervals."""
    out = _counts(r)
    out["alpha"] = {level: _ci(ag.alpha_estimator(r, level), opts, i) for i, level in enumerate(levels)}
    out["fleiss_kappa"] = _ci(ag.fleiss_kappa_estimator(r), opts, 11)
    out["percent_agreement"] = _ci(ag.percent_agreement_estimator(r), opts, 12)
    return out


def _pairs(r: ag.Ratings, raters: Raters, weights: str | None, opts: Options) -> dict:
    pairs, kappas = ag.cohen_kappa_all_pairs(r, weights=weights, min_items=opts.min_pair_items)
    low, high, method = ag.kappa_intervals(
        pairs.tables, pairs.categories, weights=weights, n_resamples=opts.n_resamples, level=opts.level, seed=opts.seed
    )
    order = np.argsort(-pairs.n_items, kind="stable")
    return {
        "weights": weights,
        "min_items": opts.min_pair_items,
        "interval": method,
        "pairs": [
            {
                "a": raters.names[pairs.a[p]],
                "b": raters.names[pairs.b[p]],
                "items": _num(pairs.n_items[p]),
                "kappa": Interval(
                    float(kappas[p]), low[p], high[p], opts.level, opts.n_resamples, int(pairs.n_items[p])
                ).as_dict(),
            }
            for p in order
        ],
    }


def _annotators(r: ag.Ratings, raters: Raters, extra: dict[str, np.ndarray] | None = None) -> list[dict]:
    stats = ag.per_rater_agreement(r)
    extra = extra or {}
    rows = []
    for j in np.flatnonzero(stats["ratings"] > 0):
        row = {
            "annotator": raters.names[j],
            "key": raters.keys[j],
            "source": raters.sources[j],
            "ratings": _num(stats["ratings"][j]),
            "pair_agreement": _num(stats["pair_agreement"][j]),
            "majority_agreement": _num(stats["majority_agreement"][j]),
        }
        for name, values in extra.items():
            row[name] = _num(values[j]) if j < len(values) else None
        rows.append(row)
    return rows


def _slices(table: LabelTable, name: str, levels: tuple[str, ...], opts: Options) -> dict:
    """The same agreement figures within each guideline version and within each source."""
    values = table.values[name]
    by_version = {}
    for version in np.unique(table.versions):
        label = "none" if version == NO_VERSION else str(int(version))
        by_version[label] = _agreement(table.ratings(name, table.versions == version), levels, opts)
    out = {"by_guideline_version": by_version}
    present = [s for s in opts.sources if (table.sources[~np.isnan(values)] == s).any()]
    if len(present) > 1:
        out["by_source"] = {s: _agreement(table.ratings(name, table.sources == s), levels, opts) for s in present}
    return out


def _reliability(r: ag.Ratings, raters: Raters, class_names: list[str] | None = None) -> tuple[dict, np.ndarray]:
    """Dawid-Skene over a categorical variable: summary and per-rater reliability."""
    categories, codes = ag.categories_of(r)
    if len(r) == 0 or len(categories) < 2:
        return {"model": "dawid_skene", "fitted": False}, np.full(len(raters), np.nan)
    n_raters = len(raters)
    # Raters without an identity are pooled into one extra "unknown" rater.
    rater_idx = np.where(r.raters >= 0, r.raters, n_raters)
    result = dawid_skene(r.items, rater_idx, codes, n_classes=len(categories), n_items=r.n_items, n_raters=n_raters + 1)
    majority, _ = ag.majority_labels(r, seed=0)
    overlap = np.bincount(r.items, minlength=r.n_items) >= 2
    names = [class_names[int(c)] if class_names else _num(c) for c in categories]
    changed = (result.labels != majority) & overlap
    return (
        {
            "model": "dawid_skene",
            "fitted": True,
            "classes": names,
            "priors": {str(n): _num(p) for n, p in zip(names, result.priors)},
            "iterations": result.iterations,
            "converged": result.converged,
            "items_relabelled_vs_majority": _num(changed.sum()),
        },
        result.reliability[:n_raters],
    )


def _gold_scores(table: LabelTable, name: str, gold_by_task: dict[int, float], n_raters: int) -> dict[str, np.ndarray]:
    """Per rater: gold items answered and the share answered as the gold says."""
    if not gold_by_task:
        return {}
    gold_items = np.array([gold_by_task.get(int(t), np.nan) for t in table.item_tasks], dtype=np.float64)
    values = table.values[name]
    judged = ~np.isnan(gold_items[table.items]) & ~np.isnan(values) & (table.raters >= 0)
    hit = judged & (values == gold_items[table.items])
    n = np.bincount(table.raters[judged], minlength=n_raters)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"gold_items": n, "gold_accuracy": np.bincount(table.raters[hit], minlength=n_raters) / n}


def _categorical(
    table: LabelTable,
    name: str,
    raters: Raters,
    opts: Options,
    *,
    levels: tuple[str, ...] = ("nominal",),
    weights: str | None = None,
    class_names: list[str] | None = None,
    gold: dict[int, float] | None = None,
    aggregate: bool = False,
) -> dict:
    r = table.ratings(name)
    block = _agreement(r, levels, opts)
    block["cohen_kappa"] = _pairs(r, raters, weights, opts)
    extra = _gold_scores(table, name, gold or {}, len(raters))
    if aggregate:
        block["aggregation"], extra["reliability"] = _reliability(r, raters, class_names)
    block["annotators"] = _annotators(r, raters, extra)
    block.update(_slices(table, name, levels, opts))
    return block


# --- Per kind ---------------------------------------------------------------------------------


def _pairwise(project: Project, raters: Raters, opts: Options) -> dict:
    table = pairwise_table(project=project, sources=opts.sources, raters=raters)
    gold = {
        t: float(PAIRWISE_CODE[g["choice"]])
        for t, g in gold_answers(project=project, kind=TaskKind.PAIRWISE).items()
        if g.get("choice") in PAIRWISE_CODE
    }
    return {
        "choice": _categorical(table, "choice", raters, opts, class_names=list(PAIRWISE_CHOICES), gold=gold, aggregate=True),
        # How strongly: +strength for A, -strength for B, 0 for tie and both_bad.
        "preference": _categorical(table, "preference", raters, opts, levels=("ordinal", "interval"), weights="quadratic"),
    }


def _rating(project: Project, raters: Raters, opts: Options) -> dict:
    table = rating_table(project=project, sources=opts.sources, raters=raters)
    gold = {
        t: 1.0 if g["thumb"] == "up" else 0.0
        for t, g in gold_answers(project=project, kind=TaskKind.RATING).items()
        if g.get("thumb") in ("up", "down")
    }
    out: dict = {}
    if (~np.isnan(table.values["thumb"])).any():
        out["thumb"] = _categorical(table, "thumb", raters, opts, class_names=["down", "up"], gold=gold, aggregate=True)
    out["aspects"] = {
        aspect: _categorical(table, f"likert:{aspect}", raters, opts, levels=("ordinal", "interval"), weights="quadratic")
        for aspect in table.extra["aspects"]
        if (~np.isnan(table.values[f"likert:{aspect}"])).any()
    }
    return out


def _steps(project: Project, raters: Raters, opts: Options) -> dict:
    step_table, first_table = steps_tables(project=project, sources=opts.sources, raters=raters)
    gold = {}
    for t, g in gold_answers(project=project, kind=TaskKind.STEPS).items():
        if "first_error" in g:
            gold[t] = -1.0 if g["first_error"] is None else float(g["first_error"])
        elif isinstance(g.get("labels"), list):
            gold[t] = float(next((i for i, x in enumerate(g["labels"]) if x == -1), -1))
    first = first_table.ratings("first_error")
    first_error = _counts(first)
    first_error["agreement"] = _ci(ag.first_error_agreement_estimator(first), opts, 21)
    first_error["alpha"] = {"nominal": _ci(ag.alpha_estimator(first, "nominal"), opts, 22)}
    extra = _gold_scores(first_table, "first_error", gold, len(raters))
    first_error["annotators"] = _annotators(first, raters, extra)
    return {
        "labels": _categorical(step_table, "label", raters, opts, levels=("nominal", "ordinal")),
        "first_error": first_error,
    }


def _ranking_groups(table: LabelTable, mask: np.ndarray | None = None):
    """Per task rated twice or more with rankings of one length: (m, k) ranks and the m raters."""
    ranks = table.extra["ranks"]
    keep = np.ones(len(table), dtype=bool) if mask is None else mask
    by_item: dict[int, list[int]] = {}
    for n in np.flatnonzero(keep):
        by_item.setdefault(int(table.items[n]), []).append(int(n))
    stacks, who = [], []
    for rows in by_item.values():
        k = len(ranks[rows[0]])
        rows = [n for n in rows if len(ranks[n]) == k]
        if len(rows) >= 2 and k >= 2:
            stacks.append(np.array([ranks[n] for n in rows], dtype=np.float64))
            who.append(table.raters[rows])
    return stacks, who


def _ranking_figures(table: LabelTable, opts: Options, mask: np.ndarray | None = None) -> dict:
    stacks, _ = _ranking_groups(table, mask)
    return {
        "ratings": int(len(table) if mask is None else mask.sum()),
        "tasks_with_overlap": len(stacks),
        "kendall_w": _ci(ag.kendall_w_estimator(stacks), opts, 31),
        "kendall_tau_b": _ci(ag.kendall_tau_estimator(stacks), opts, 32),
    }


def _ranking(project: Project, raters: Raters, opts: Options) -> dict:
    table = ranking_table(project=project, sources=opts.sources, raters=raters)
    out = _ranking_figures(table, opts)
    # Ranks as ordinal labels of (task, position) units: alpha on where each response was placed.
    k_max = max((len(x) for x in table.extra["ranks"]), default=0)
    if k_max:
        lengths = np.array([len(x) for x in table.extra["ranks"]])
        flat = np.concatenate([np.asarray(x, dtype=np.float64) for x in table.extra["ranks"]])
        positions = np.concatenate([np.arange(n) for n in lengths])
        units = ag.Ratings(
            np.repeat(table.items, lengths) * k_max + positions,
            np.repeat(table.raters, lengths),
            flat,
            table.n_items * k_max,
            table.n_raters,
        )
        out["rank_alpha"] = {"ordinal": _ci(ag.alpha_estimator(units, "ordinal"), opts, 33)}
    stacks, who = _ranking_groups(table)
    pairs, tau = ag.per_rater_tau(stacks, who, len(raters))
    gold = {
        t: g["ranks"]
        for t, g in gold_answers(project=project, kind=TaskKind.RANKING).items()
        if isinstance(g.get("ranks"), list)
    }
    gold_n, gold_tau = np.zeros(len(raters)), np.zeros(len(raters))
    for n, task in enumerate(table.item_tasks[table.items]):
        g, mine, j = gold.get(int(task)), table.extra["ranks"][n], table.raters[n]
        if g is not None and j >= 0 and len(g) == len(mine):
            t = ag.kendall_tau_b_matrix(np.array([g, mine], dtype=np.float64))[0, 1]
            if np.isfinite(t):
                gold_n[j] += 1
                gold_tau[j] += t
    rated = np.bincount(table.raters[table.raters >= 0], minlength=len(raters))
    out["annotators"] = [
        {
            "annotator": raters.names[j],
            "key": raters.keys[j],
            "source": raters.sources[j],
            "ratings": _num(rated[j]),
            "pairs": _num(pairs[j]),
            "mean_tau_b": _num(tau[j]),
            **(
                {"gold_items": _num(gold_n[j]), "gold_tau_b": _num(gold_tau[j] / gold_n[j]) if gold_n[j] else None}
                if gold
                else {}
            ),
        }
        for j in np.flatnonzero(rated > 0)
    ]
    out["by_guideline_version"] = {
        ("none" if v == NO_VERSION else str(int(v))): _ranking_figures(table, opts, table.versions == v)
        for v in np.unique(table.versions)
    }
    return out


def quality_report(
    *,
    project: Project,
    sources: Iterable[str] = ALL_SOURCES,
    n_resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
    min_pair_items: int = 3,
    leaderboard: bool = True,
) -> dict:
    """The whole quality report of a project (JSON-ready)."""
    opts = Options(tuple(sources), n_resamples, level, seed, min_pair_items)
    raters = Raters()
    kinds = {
        TaskKind.PAIRWISE.value: _pairwise(project, raters, opts),
        TaskKind.RANKING.value: _ranking(project, raters, opts),
        TaskKind.RATING.value: _rating(project, raters, opts),
        TaskKind.STEPS.value: _steps(project, raters, opts),
        TaskKind.DEMONSTRATION.value: {"ratings": demonstration_count(project=project, sources=opts.sources)},
    }
    report = {
        "project": project.slug,
        "generated_at": timezone.now().isoformat(),
        "sources": list(opts.sources),
        "bootstrap": {"n_resamples": n_resamples, "level": level, "seed": seed, "unit": "item"},
        "annotators": [{"key": k, "name": n, "source": s} for k, n, s in zip(raters.keys, raters.names, raters.sources)],
        "kinds": kinds,
    }
    if leaderboard:
        report["leaderboard"] = leaderboard_report(
            project=project, sources=opts.sources, n_resamples=n_resamples, level=level, seed=seed
        )
    return report


# --- Leaderboard ------------------------------------------------------------------------------


def _matrix(m: np.ndarray, digits: int = 4) -> list[list]:
    return [[None if not np.isfinite(x) else round(float(x), digits) for x in row] for row in m]


def leaderboard_report(
    *,
    project: Project,
    sources: Iterable[str] = ALL_SOURCES,
    anchor: str | None = None,
    anchor_rating: float = bt.ELO_ANCHOR,
    n_resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> dict:
    """Bradley-Terry ratings of the models whose responses were judged (pairwise votes and the
    pairs implied by rankings), Elo-scaled, with bootstrap intervals and win-rate matrices."""
    votes = model_votes(project=project, sources=sources)
    header = {
        "sources": list(sources),
        "votes": int(len(votes.a)),
        "votes_from_pairwise": votes.from_pairwise,
        "votes_from_ranking": votes.from_ranking,
        "scale": bt.ELO_SCALE,
        "base": bt.ELO_BASE,
        "anchor": {"model": anchor, "rating": anchor_rating},
        "bootstrap": {"n_resamples": n_resamples, "level": level, "seed": seed, "unit": "vote"},
    }
    seen = np.unique(np.concatenate([votes.a, votes.b])) if len(votes.a) else np.zeros(0, dtype=np.int64)
    if seen.size < 2:
        return {**header, "models": [], "win_rates": None}
    names = [votes.models[i] for i in seen]
    remap = np.full(len(votes.models), -1)
    remap[seen] = np.arange(seen.size)
    anchor_index = names.index(anchor) if anchor in names else None
    if anchor is not None and anchor_index is None:
        header["anchor"] = {"model": None, "rating": anchor_rating, "missing": anchor}
    board = bt.leaderboard(
        remap[votes.a],
        remap[votes.b],
        votes.outcome,
        len(names),
        anchor=anchor_index,
        anchor_rating=anchor_rating,
        n_resamples=n_resamples,
        level=level,
        seed=seed,
    )
    c = board.cells
    wins = c[:, :, 0].sum(1) + c[:, :, 1].sum(0)
    losses = c[:, :, 1].sum(1) + c[:, :, 0].sum(0)
    ties = c[:, :, 2].sum(1) + c[:, :, 2].sum(0)
    order = np.argsort(-board.ratings, kind="stable")
    games = board.wins + board.wins.T
    return {
        **header,
        "regularized": board.l2 > 0,
        "l2": board.l2,
        "models": [
            {
                "rank": rank,
                "model": names[i],
                "rating": round(float(board.ratings[i]), 2),
                "low": _num(round(float(board.low[i]), 2)),
                "high": _num(round(float(board.high[i]), 2)),
                "strength": round(float(board.theta[i]), 6),
                "games": int(wins[i] + losses[i] + ties[i]),
                "wins": int(wins[i]),
                "losses": int(losses[i]),
                "ties": int(ties[i]),
            }
            for rank, i in enumerate(order, start=1)
        ],
        "win_rates": {
            "models": [names[i] for i in order],
            "observed": _matrix(bt.observed_win_rates(board.wins)[np.ix_(order, order)]),
            "predicted": _matrix(bt.predicted_win_rates(board.theta)[np.ix_(order, order)]),
            "games": _matrix(games[np.ix_(order, order)], 1),
        },
    }
