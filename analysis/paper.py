# The paper's own gap, from its two numbers alone: one run per arm, accuracies 0.9762 (baseline) and
# 0.9788 (GAIN) on the same 756 test images. What can those numbers support?
#   python -m analysis.paper            readable table and verdict
#   python -m analysis.paper --json     the same numbers as JSON
#   python -m analysis.paper --n 1000 --acc-a 0.90 --acc-b 0.92   another paper's numbers
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportion_effectsize,
    proportions_ztest,
)

from analysis.power import images_needed, seeds_needed

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
) -> PaperGap:
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
    )


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
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.paper", description="What one run per arm on one test set can support.")
    ap.add_argument("--n", type=int, default=PAPER_N, help="test images per arm (default: the paper's 756)")
    ap.add_argument("--acc-a", type=float, default=PAPER_ACC_A, help="accuracy of arm A, the baseline (default 0.9762)")
    ap.add_argument("--acc-b", type=float, default=PAPER_ACC_B, help="accuracy of arm B, the method (default 0.9788)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    try:
        r = paper_gap(args.n, args.acc_a, args.acc_b)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(r), indent=2) if args.json else format_table(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
