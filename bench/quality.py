"""Quality benchmark: agreement over 1,000,000 annotations and a Bradley-Terry leaderboard over
1,000,000 votes among 50 models; prints time and peak memory of each step against the targets.

Synthetic data: pairwise choices (A / B / tie / both_bad) on 333,334 items, three of 100
annotators per item (some answer at random); votes between 50 models drawn from known strengths.
With --baseline (default on), the reference libraries run on a 100,000-row slice in the same
process for scale. Run: `.venv/bin/python bench/quality.py [--annotations N] [--votes N] [--no-baseline]`.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or ".") == _HERE:
    sys.path[0] = os.path.dirname(_HERE)

import argparse  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from contextlib import contextmanager  # noqa: E402

import numpy as np  # noqa: E402

from annotation.quality import agreement as ag  # noqa: E402
from annotation.quality import bradley_terry as bt  # noqa: E402
from annotation.quality.bootstrap import interval  # noqa: E402
from annotation.quality.dawid_skene import dawid_skene  # noqa: E402

TARGET_AGREEMENT_S, TARGET_BT_S = 10.0, 5.0
RESAMPLES = 1000
rows: list[tuple[str, float, float]] = []


@contextmanager
def step(name: str):
    """Time a step and record its peak traced allocation (numpy reports its buffers to tracemalloc)."""
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    peak = (tracemalloc.get_traced_memory()[1] - base) / 2**20
    rows.append((name, elapsed, peak))
    print(f"  {name:<58} {elapsed:7.2f} s  {peak:8.1f} MiB", flush=True)


def make_annotations(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_items, n_raters, k = -(-n // 3), 100, 4
    truth = rng.choice(k, size=n_items, p=[0.42, 0.42, 0.1, 0.06])
    accuracy = rng.uniform(0.55, 0.95, size=n_raters)
    random_raters = rng.choice(n_raters, size=5, replace=False)
    accuracy[random_raters] = 1.0 / k
    r0 = rng.integers(0, n_raters, size=n_items)
    k1 = rng.integers(1, n_raters, size=n_items)
    k2 = rng.integers(1, n_raters - 1, size=n_items)
    k2 += k2 >= k1
    raters = np.stack([r0, (r0 + k1) % n_raters, (r0 + k2) % n_raters], axis=1).reshape(-1)[:n]
    items = np.repeat(np.arange(n_items), 3)[:n]
    right = rng.random(n) < accuracy[raters]
    wrong = (truth[items] + rng.integers(1, k, size=n)) % k
    labels = np.where(right, truth[items], wrong)
    labels = np.where(accuracy[raters] == 1.0 / k, rng.integers(0, k, size=n), labels)
    strength = rng.integers(1, 4, size=n)
    signed = np.where(labels == 0, strength, np.where(labels == 1, -strength, 0)).astype(np.float64)
    return items, raters, labels, signed, truth, random_raters, n_raters


def make_votes(n: int, models: int = 50, seed: int = 1):
    rng = np.random.default_rng(seed)
    strength = rng.normal(scale=0.8, size=models)
    a = rng.integers(0, models, size=n)
    b = (a + rng.integers(1, models, size=n)) % models
    p = 1.0 / (1.0 + np.exp(strength[b] - strength[a]))
    outcome = (rng.random(n) < p).astype(np.float64)
    outcome[rng.random(n) < 0.1] = 0.5
    return a, b, outcome, strength


def bench_agreement(n: int) -> float:
    items, raters, labels, signed, truth, random_raters, n_raters = make_annotations(n)
    print(f"agreement: {len(items):,} annotations, {items.max() + 1:,} items, {n_raters} annotators, {RESAMPLES} resamples")
    start = len(rows)
    with step("load (long-form arrays)"):
        choice = ag.Ratings.from_arrays(items, raters, labels.astype(np.float64), n_raters=n_raters)
        preference = ag.Ratings.from_arrays(items, raters, signed, n_raters=n_raters)
    with step("Krippendorff alpha nominal + CI"):
        alpha = interval(ag.alpha_estimator(choice, "nominal"), n_resamples=RESAMPLES)
    with step("Krippendorff alpha ordinal (signed strength) + CI"):
        alpha_o = interval(ag.alpha_estimator(preference, "ordinal"), n_resamples=RESAMPLES)
    with step("Krippendorff alpha interval (signed strength) + CI"):
        alpha_i = interval(ag.alpha_estimator(preference, "interval"), n_resamples=RESAMPLES)
    with step("Fleiss kappa + CI, percent agreement + CI"):
        fleiss = interval(ag.fleiss_kappa_estimator(choice), n_resamples=RESAMPLES)
        percent = interval(ag.percent_agreement_estimator(choice), n_resamples=RESAMPLES)
    with step("Cohen kappa, every annotator pair + CI"):
        pairs, kappas = ag.cohen_kappa_all_pairs(choice, min_items=3)
        low, high, kappa_ci = ag.kappa_intervals(pairs.tables, pairs.categories, n_resamples=RESAMPLES)
    with step("per-annotator pair and majority agreement"):
        per = ag.per_rater_agreement(choice)
    total = sum(r[1] for r in rows[start:])
    with step("Dawid-Skene (EM), reliability-weighted labels"):
        ds = dawid_skene(items, raters, labels, n_classes=4, n_items=items.max() + 1, n_raters=n_raters)
    ds_s = rows[-1][1]
    majority, _ = ag.majority_labels(choice)
    lowest = set(np.argsort(ds.reliability)[: len(random_raters)].tolist())
    print(
        f"  figures: alpha nominal {alpha.estimate:.4f} [{alpha.low:.4f}, {alpha.high:.4f}], ordinal {alpha_o.estimate:.4f}, "
        f"interval {alpha_i.estimate:.4f}, Fleiss {fleiss.estimate:.4f}, agreement {percent.estimate:.4f}"
    )
    print(
        f"  {len(pairs.a):,} annotator pairs, median kappa {np.nanmedian(kappas):.3f}, median CI width "
        f"{np.nanmedian(high - low):.3f} ({kappa_ci}); median pair agreement {np.nanmedian(per['pair_agreement']):.3f}"
    )
    print(
        f"  Dawid-Skene: {ds.iterations} iterations, accuracy vs truth {(ds.labels == truth).mean():.4f} "
        f"(majority vote {(majority == truth).mean():.4f}); the 5 random annotators are the 5 least reliable: "
        f"{lowest == set(random_raters.tolist())}"
    )
    print(
        f"  TOTAL agreement {total:.2f} s (target <= {TARGET_AGREEMENT_S:.0f} s); with Dawid-Skene "
        f"{total + ds_s:.2f} s"
    )
    return total, ds_s


def bench_bradley_terry(n: int, models: int = 50) -> float:
    a, b, outcome, strength = make_votes(n, models)
    print(f"Bradley-Terry: {n:,} votes among {models} models (10% ties), {RESAMPLES} bootstrap fits")
    start = len(rows)
    with step("count votes into pair x outcome cells"):
        cells = bt.vote_cells(a, b, outcome, models)
        wins = bt.cells_to_wins(cells)
    with step("fit (Newton) + Elo scale"):
        theta = bt.fit(wins)
        ratings = bt.to_elo(theta)
    with step("leaderboard with bootstrap 95% intervals"):
        board = bt.leaderboard(a, b, outcome, models, n_resamples=RESAMPLES)
    with step("win-rate matrices (observed, predicted)"):
        bt.observed_win_rates(board.wins)
        bt.predicted_win_rates(board.theta)
    total = sum(r[1] for r in rows[start:])
    decisive = outcome != 0.5
    exact = bt.fit(bt.win_matrix(a[decisive], b[decisive], outcome[decisive], models))
    truth = strength - strength.mean()
    print(
        f"  figures: max |theta - true strength| {np.abs(exact - truth).max():.4f} on the decisive votes "
        f"(random ties shrink the full fit: correlation {np.corrcoef(theta, truth)[0, 1]:.5f}); "
        f"ratings {ratings.min():.0f}..{ratings.max():.0f}; "
        f"median 95% interval width {np.median(board.high - board.low):.1f} Elo points"
    )
    print(f"  TOTAL Bradley-Terry {total:.2f} s (target <= {TARGET_BT_S:.0f} s)")
    return total


def bench_baseline(n: int = 100_000) -> None:
    try:
        import choix
        import krippendorff
    except ImportError:
        print("baseline: reference libraries not installed (pip install '.[test]'); skipped")
        return
    items, raters, labels, *_, n_raters = make_annotations(n)
    print(f"baseline on {n:,} rows (reference libraries, point estimates only):")
    matrix = np.full((n_raters, items.max() + 1), np.nan)
    matrix[raters, items] = labels
    with step("ours: alpha nominal (no CI)"):
        ours = ag.krippendorff_alpha(ag.Ratings.from_arrays(items, raters, labels.astype(float), n_raters=n_raters))
    with step("krippendorff package: alpha nominal"):
        ref = krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
    print(f"  alpha ours {ours:.8f} vs krippendorff {ref:.8f}")
    a, b, outcome, _ = make_votes(n)
    decisive = outcome != 0.5
    pairs = [(int(x), int(y)) if o == 1 else (int(y), int(x)) for x, y, o in zip(a[decisive], b[decisive], outcome[decisive])]
    with step("ours: Bradley-Terry fit (no bootstrap)"):
        theta = bt.fit(bt.win_matrix(a[decisive], b[decisive], outcome[decisive], 50))
    with step("choix.ilsr_pairwise"):
        ref_theta = choix.ilsr_pairwise(50, pairs, tol=1e-10)
    print(f"  max |theta ours - choix| {np.abs(theta - (ref_theta - ref_theta.mean())).max():.2e}")


def main() -> None:
    global RESAMPLES
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", type=int, default=1_000_000)
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--resamples", type=int, default=RESAMPLES)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    RESAMPLES = args.resamples
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} (other jobs share it)")
    tracemalloc.start()
    agreement_s, ds_s = bench_agreement(args.annotations)
    bt_s = bench_bradley_terry(args.votes)
    if not args.no_baseline:
        bench_baseline()
    tracemalloc.stop()
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    def verdict(seconds: float, target: float) -> str:
        return f"{seconds:.2f} s ({'ok' if seconds <= target else 'OVER'} <= {target:.0f} s)"

    print(
        f"summary: agreement {verdict(agreement_s, TARGET_AGREEMENT_S)}, "
        f"with Dawid-Skene {verdict(agreement_s + ds_s, TARGET_AGREEMENT_S)}, "
        f"Bradley-Terry {verdict(bt_s, TARGET_BT_S)}, "
        f"peak step allocation {max(r[2] for r in rows):.0f} MiB, process peak RSS {peak_rss:.0f} MiB"
    )


if __name__ == "__main__":
    main()
