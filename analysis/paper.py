# The paper's own gap, from its two numbers alone: one run per arm, accuracies 0.9762 (baseline) and
# 0.9788 (GAIN) on the same 756 test images. What can those numbers support?
#   python -m analysis.paper            readable table and verdict
#   python -m analysis.paper --json     the same numbers as JSON
#   python -m analysis.paper --n 1000 --acc-a 0.90 --acc-b 0.92   another paper's numbers
#   python -m analysis.paper --margin 0.5   equivalence within +-0.5 pp (default +-1 pp)
from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.power import NormalIndPower, normal_power_het
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportion_effectsize,
    proportions_ztest,
    tost_proportions_2indep,
)

from analysis.power import images_needed, seeds_needed, smallest_n
from analysis.sequential import DEFAULT_MARGIN_PP, margin_problem

PAPER_N = 756
PAPER_SPLIT = (839, 226, 378)  # the paper's images per class: train/val/test (2 x 378 = PAPER_N)
PAPER_ACC_A = 0.9762  # without GAIN
PAPER_ACC_B = 0.9788  # with GAIN
SEED_SDS = (0.002, 0.005, 0.01)

# What each kind of extra data buys: printed with every sample-size figure.
IMAGES_BUY = (
    "More test images narrow the test-sampling interval: they tell two trained models apart on new images, "
    "but one run per arm still mixes the method with the luck of one training run."
)
SEEDS_BUY = (
    "More seeds, scored on one fixed test set, average out training randomness (initialisation, data order): "
    "they tell the training procedures apart on these test images, but cannot narrow the test-sampling interval."
)
BOTH_NEEDED = "A claim about the method on new images needs both: enough seeds and enough test images."
# Equivalence of two counts on independent test images: the TOST and the 90 % interval of one method, Agresti-Caffo
# (a Wald interval on counts with one success and one failure added per arm): its test and interval agree
# exactly (tests/test_paper.py), it stays defined at 0 and 100 %, and statsmodels' score interval fails to
# bracket its root on some counts.
EQUIVALENCE_METHOD = "agresti-caffo"


@dataclass(frozen=True)
class Equivalence:
    margin: float  # fraction (0.01 = 1 pp)
    equivalent_within_margin: bool  # both one-sided tests reject at level: the 90 % interval lies inside +-margin
    interval90: tuple[float, float]  # B - A, the interval the decision was taken on
    p_value: float  # TOST: the larger one-sided p (statsmodels tost_proportions_2indep)
    power_at_n: float  # P(showing equivalence) with n images per arm if the reported accuracies were the truth
    images_per_arm: int | None  # images per arm for target power; None: the gap is not inside the margin
    sentence: str
    method: str = ("TOST of two independent proportions (statsmodels tost_proportions_2indep, Agresti-Caffo) at 0.05 "
                   "per side, with its 90% interval; power: normal approximation (statsmodels normal_power_het per "
                   "side, unpooled variance at the reported accuracies)")


@dataclass(frozen=True)
class SeedsNeeded:
    seed_sd: float
    independent_per_arm: int | None  # two-sample t (TTestIndPower), effect = gap / seed_sd; None: > 10^7
    paired: int | None  # paired t (TTestPower), if the sd of the paired differences were seed_sd


@dataclass(frozen=True)
class PaperGap:
    n: int
    acc_a: float
    acc_b: float
    correct_a: int
    correct_b: int
    gap_images: int  # correct_b - correct_a
    gap: float  # acc_b - acc_a as given
    wilson_a: tuple[float, float]
    wilson_b: tuple[float, float]
    newcombe_diff: tuple[float, float]  # acc_b - acc_a, Newcombe hybrid score interval
    ztest_p: float  # two-proportion z-test (statsmodels proportions_ztest), pooled variance
    fisher_p: float  # Fisher's exact test on the 2x2 table of correct / wrong counts
    best_mcnemar_table: tuple[tuple[int, int], tuple[int, int]]  # rows A correct/wrong, cols B correct/wrong
    best_mcnemar_p: float  # a bound, not a test: the pairing is unknown
    cohens_h: float
    power_single_run: float  # one run per arm, two-proportion z-test at n images each
    images_per_arm_for_80: int | None  # None: more than 10^7
    seeds: tuple[SeedsNeeded, ...]
    significant: bool  # Fisher's exact p < level (the test that uses what the paper reports)
    verdict: str
    assumptions: tuple[str, ...]
    equivalence: Equivalence | None = None
    images_buy: str = IMAGES_BUY
    seeds_buy: str = SEEDS_BUY
    level: float = 0.05
    target_power: float = 0.8
    note: str = ""


def implied_count(acc: float, n: int) -> int:
    return int(round(acc * n))


def _count_text(k: int | None) -> str:
    return f"{k:,}" if k is not None else "more than 10,000,000"


def paper_gap(
    n: int = PAPER_N,
    acc_a: float = PAPER_ACC_A,
    acc_b: float = PAPER_ACC_B,
    *,
    seed_sds: tuple[float, ...] = SEED_SDS,
    level: float = 0.05,
    target_power: float = 0.8,
    margin_pp: float = DEFAULT_MARGIN_PP,
) -> PaperGap:
    problem = margin_problem(margin_pp)
    if problem:
        raise ValueError(f"--margin {problem}")
    for name, acc in (("acc-a", acc_a), ("acc-b", acc_b)):
        if not 0.0 < acc < 1.0:
            raise ValueError(f"--{name} {acc} is not an accuracy strictly between 0 and 1: pass a fraction such as 0.9762")
    if n < 2:
        raise ValueError(f"--n {n} is not a test-set size: pass the number of test images, e.g. 756")
    if acc_a == acc_b:
        raise ValueError(f"--acc-a and --acc-b are both {acc_a}: there is no gap to analyse")
    k_a, k_b = implied_count(acc_a, n), implied_count(acc_b, n)
    note = ""
    # A reported accuracy rounded to 4 decimals pins the count only when 1/n > 1e-4; say so when the
    # counts do not reproduce the reported numbers.
    for acc, k in ((acc_a, k_a), (acc_b, k_b)):
        if abs(k / n - acc) > 0.5 / n:
            note += f"{acc} is not k/{n} for any whole k; nearest count {k} used. "
    g = k_b - k_a
    wa = proportion_confint(k_a, n, alpha=level, method="wilson")
    wb = proportion_confint(k_b, n, alpha=level, method="wilson")
    nd = confint_proportions_2indep(k_b, n, k_a, n, method="newcomb", compare="diff", alpha=level)
    # What the paper reports is two counts of correct images; the per-image pairing is unknown, so the
    # tests that use the data's actual information compare two proportions. (When both are 0 or n,
    # z is undefined: there is no variance, and no evidence of a gap, so p = 1.)
    if k_a == k_b:
        z_p = 1.0
    else:
        z_p = float(proportions_ztest([k_b, k_a], [n, n])[1])
    fisher_p = float(sps.fisher_exact([[k_b, n - k_b], [k_a, n - k_a]]).pvalue)

    # The most favourable paired arrangement for the better arm: every discordant image goes its way.
    # Rows: A correct / wrong; columns: B correct / wrong.
    if g >= 0:
        table = ((k_a, 0), (g, n - k_b))
    else:
        table = ((k_b, -g), (0, n - k_a))
    best_p = float(mcnemar(np.array(table), exact=True).pvalue)

    h = float(proportion_effectsize(acc_b, acc_a))
    power1 = float(NormalIndPower().power(effect_size=abs(h), nobs1=n, alpha=level, ratio=1.0, alternative="two-sided"))
    images = images_needed(h, level, target_power)

    gap = round(acc_b - acc_a, 12)  # drop float noise: 0.9788 - 0.9762 is 0.0026, not 0.00260000000000005
    seeds = tuple(
        SeedsNeeded(
            seed_sd=s,
            independent_per_arm=seeds_needed(abs(gap) / s, level, target_power, paired=False),
            paired=seeds_needed(abs(gap) / s, level, target_power, paired=True),
        )
        for s in seed_sds
    )
    assumptions = (
        "Tests: the paper gives two counts of correct images, not per-image predictions, so the tests compare two "
        "proportions (Fisher's exact test decides 'significant'; two-proportion z and the Newcombe interval agree "
        "or are shown beside it). The best-case McNemar p is a bound on what a paired test could reach, not a test.",
        f"Power of one run per arm: two-sided two-proportion z-test (statsmodels NormalIndPower, Cohen's h = {h:.4f}), "
        f"level {level}, true accuracies equal to the reported ones, test images independent, training randomness ignored.",
        f"Test images per arm: the same z-test at {target_power:.0%} power, one run per arm.",
        f"Seeds: two-sided t-tests at level {level} and {target_power:.0%} power for a true gap of {100 * abs(gap):.2f} pp, "
        f"with the seed-to-seed sd assumed (the paper measured none): {', '.join(f'{100 * s:g} pp' for s in seed_sds)}; "
        "paired = both arms on the same seeds (TTestPower, sd of the paired differences), independent = separate seeds "
        "per arm (TTestIndPower, sd of one arm); one comparison, no multiplicity correction.",
    )
    significant = bool(fisher_p < level)
    better, worse = ("B", "A") if g >= 0 else ("A", "B")
    tests = (
        f"Fisher's exact p = {fisher_p:.3g}, two-proportion z-test p = {z_p:.3g}, 95% Newcombe interval of B - A "
        f"[{100 * nd[0]:+.2f}, {100 * nd[1]:+.2f}] percentage points"
    )
    more = (
        f"For {target_power:.0%} power: about {_count_text(images)} test images per arm with one run each; or "
        f"{_count_text(seeds[0].paired)}-{_count_text(seeds[-1].paired)} paired seeds (paired-difference sd "
        f"{100 * seeds[0].seed_sd:g}-{100 * seeds[-1].seed_sd:g} pp). These buy different things: {IMAGES_BUY} {SEEDS_BUY} {BOTH_NEEDED}"
    )
    if significant:
        verdict = (
            f"Significant: {better} got {abs(g)} more test image(s) right than {worse}, out of {n}; {tests}. "
            f"This compares two trained models on these test images; one run per arm cannot say whether the method "
            f"or one training run's luck made the gap. One run per arm had {power1:.0%} power to detect a gap this size."
        )
        if nd[0] <= 0 <= nd[1]:
            verdict += " (The Newcombe interval includes 0: borderline.)"
    else:
        verdict = (
            f"Not significant. {better} got {abs(g)} more test image(s) right than {worse}, out of {n}; {tests}. "
            f"Even if every image on which the two runs disagreed had gone {better}'s way, exact McNemar p = {best_p:.3g} "
            f"(a bound, not a test: the per-image predictions were not published). "
            f"One run per arm had {power1:.0%} power to detect a gap this size. {more}"
        )
    equivalence = _equivalence(n, k_a, k_b, margin_pp / 100, level, target_power)
    return PaperGap(
        n=n,
        acc_a=acc_a,
        acc_b=acc_b,
        correct_a=k_a,
        correct_b=k_b,
        gap_images=g,
        gap=gap,
        wilson_a=(float(wa[0]), float(wa[1])),
        wilson_b=(float(wb[0]), float(wb[1])),
        newcombe_diff=(float(nd[0]), float(nd[1])),
        ztest_p=z_p,
        fisher_p=fisher_p,
        best_mcnemar_table=table,
        best_mcnemar_p=best_p,
        cohens_h=h,
        power_single_run=power1,
        images_per_arm_for_80=images,
        seeds=seeds,
        significant=significant,
        verdict=verdict,
        assumptions=assumptions,
        level=level,
        target_power=target_power,
        note=note.strip(),
        equivalence=equivalence,
    )


def _equivalence_power(p_a: float, p_b: float, n: int, margin: float, level: float) -> float:
    # Both one-sided tests reject: P(lower) + P(upper) - 1 when the two rejection regions overlap (normal
    # approximation, each side by statsmodels' normal_power_het), 0 when they do not.
    gap = p_b - p_a
    sd = math.sqrt(p_a * (1 - p_a) + p_b * (1 - p_b))  # of one image pair; the difference's se is sd / sqrt(n)
    if not abs(gap) < margin or sd == 0:
        return float(sd == 0 and abs(gap) < margin)
    lower = normal_power_het(margin + gap, n, level, std_null=sd, alternative="larger")
    upper = normal_power_het(margin - gap, n, level, std_null=sd, alternative="larger")
    return float(max(0.0, lower + upper - 1.0))


def _equivalence(n: int, k_a: int, k_b: int, margin: float, level: float, target: float) -> Equivalence:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # statsmodels' odds ratio at 0 or 100 % (not used here)
        r = tost_proportions_2indep(k_b, n, k_a, n, -margin, margin, method=EQUIVALENCE_METHOD)
        low, high = confint_proportions_2indep(k_b, n, k_a, n, method=EQUIVALENCE_METHOD, compare="diff",
                                               alpha=2 * level)
    low, high = max(float(low), -1.0), min(float(high), 1.0)
    shown = bool(r.pvalue < level)
    p_a, p_b = k_a / n, k_b / n
    power = _equivalence_power(p_a, p_b, n, margin, level)
    needed = (smallest_n(lambda m: _equivalence_power(p_a, p_b, m, margin, level), target)
              if abs(p_b - p_a) < margin else None)
    band = f"±{100 * margin:g} pp"
    iv = f"the 90% interval of B - A, [{100 * low:+.2f}, {100 * high:+.2f}] pp"
    if shown:
        sentence = f"Equivalent within {band}: {iv}, lies inside it (TOST p = {r.pvalue:.3g})."
    else:
        sentence = (f"Equivalence within {band} is not shown with {n} test images per arm: {iv}, is not inside it "
                    f"(TOST p = {r.pvalue:.3g}).")
    if needed is not None:
        half = sps.norm.isf(level) * math.sqrt(p_a * (1 - p_a) + p_b * (1 - p_b)) / math.sqrt(n)
        now = (f"{n} give {power:.0%}" if power > 0 else
               f"with {n}, the 90% interval at these accuracies reaches {100 * half:.2f} pp either side of its "
               "centre, beyond the margin, so even equal accuracies could not show it")
        sentence += (f" If the reported accuracies were the true ones, one run per arm would show it with "
                     f"{target:.0%} power on about {needed:,} test images per arm ({now}).")
    else:
        sentence += f" The reported gap is not inside {band}: no number of test images would show equivalence."
    return Equivalence(margin, shown, (low, high), float(r.pvalue), power, needed, sentence)


def gap_rows(r: PaperGap) -> list[tuple[str, str]]:
    # (quantity, value) rows shared by the CLI table and the report.
    rows = [
        ("test images per arm", f"{r.n}"),
        ("A (baseline) accuracy -> correct images", f"{r.acc_a} -> {r.correct_a}/{r.n}"),
        ("B (GAIN) accuracy -> correct images", f"{r.acc_b} -> {r.correct_b}/{r.n}"),
        ("gap B - A", f"{r.gap:+.4f} ({100 * r.gap:+.2f} pp) = {r.gap_images:+d} image(s)"),
        ("A 95% Wilson interval", f"[{r.wilson_a[0]:.4f}, {r.wilson_a[1]:.4f}]"),
        ("B 95% Wilson interval", f"[{r.wilson_b[0]:.4f}, {r.wilson_b[1]:.4f}]"),
        ("B - A 95% Newcombe interval", f"[{r.newcombe_diff[0]:+.4f}, {r.newcombe_diff[1]:+.4f}]"),
        ("Fisher's exact p (decides 'significant')", f"{r.fisher_p:.4g}"),
        ("two-proportion z-test p", f"{r.ztest_p:.4g}"),
        ("best possible exact McNemar p (a bound: all discordant images favour the better arm)", f"{r.best_mcnemar_p:.4g}"),
        ("Cohen's h", f"{r.cohens_h:.4f}"),
        ("power of one run per arm (two-sided, level 0.05)", f"{r.power_single_run:.3f}"),
        (f"test images per arm for {r.target_power:.0%} power (narrows test sampling)", _count_text(r.images_per_arm_for_80)),
    ]
    for s in r.seeds:
        rows.append(
            (f"seeds for {r.target_power:.0%} power at seed sd {100 * s.seed_sd:g} pp (averages training randomness)",
             f"{_count_text(s.paired)} paired seeds (paired-difference sd {100 * s.seed_sd:g} pp); "
             f"{_count_text(s.independent_per_arm)} per arm if unpaired")
        )
    return rows


def format_table(r: PaperGap) -> str:
    rows = gap_rows(r)
    width = max(len(k) for k, _ in rows)
    lines = ["The paper's gap, from its own numbers (A = without GAIN, B = with GAIN)", ""]
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    if r.note:
        lines += ["", f"Note: {r.note}"]
    lines += ["", "What more data buys:", f"  images: {r.images_buy}", f"  seeds:  {r.seeds_buy}"]
    lines += ["", "Assumptions:"] + [f"  - {a}" for a in r.assumptions]
    lines += ["", f"Verdict: {r.verdict}"]
    if r.equivalence is not None:
        lines += ["", f"Equivalence: {r.equivalence.sentence}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.paper", description="What one run per arm on one test set can support.")
    ap.add_argument("--n", type=int, default=PAPER_N, help="test images per arm (default: the paper's 756)")
    ap.add_argument("--acc-a", type=float, default=PAPER_ACC_A, help="accuracy of arm A, the baseline (default 0.9762)")
    ap.add_argument("--acc-b", type=float, default=PAPER_ACC_B, help="accuracy of arm B, the method (default 0.9788)")
    ap.add_argument("--margin", type=float, default=DEFAULT_MARGIN_PP, metavar="PP",
                    help=f"equivalence margin in percentage points of accuracy (default {DEFAULT_MARGIN_PP:g})")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    try:
        r = paper_gap(args.n, args.acc_a, args.acc_b, margin_pp=args.margin)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(r), indent=2) if args.json else format_table(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
