# The paper's own gap, from its two numbers alone: one run per arm, accuracies 0.9762 (baseline) and
# 0.9788 (GAIN) on the same 756 test images. What can those numbers support?
#   python -m analysis.paper            readable table and verdict
#   python -m analysis.paper --json     the same numbers as JSON
#   python -m analysis.paper --n 1000 --acc-a 0.90 --acc-b 0.92   another paper's numbers
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass

import numpy as np
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.power import NormalIndPower, TTestIndPower, TTestPower
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint, proportion_effectsize

from analysis.power import seeds_needed

PAPER_N = 756
PAPER_ACC_A = 0.9762  # without GAIN
PAPER_ACC_B = 0.9788  # with GAIN
SEED_SDS = (0.002, 0.005, 0.01)


@dataclass(frozen=True)
class SeedsNeeded:
    seed_sd: float
    independent_per_arm: int  # TTestIndPower, effect = gap / seed_sd
    paired: int  # TTestPower, if the sd of the paired differences were seed_sd


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
    best_mcnemar_table: tuple[tuple[int, int], tuple[int, int]]  # rows A correct/wrong, cols B correct/wrong
    best_mcnemar_p: float
    cohens_h: float
    power_single_run: float  # one run per arm, independent-proportions z-test at n images each
    images_per_arm_for_80: int
    seeds: tuple[SeedsNeeded, ...]
    significant: bool
    verdict: str
    level: float = 0.05
    target_power: float = 0.8
    note: str = ""


def implied_count(acc: float, n: int) -> int:
    return int(round(acc * n))


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

    # The most favourable paired arrangement for the better arm: every discordant image goes its way.
    # Rows: A correct / wrong; columns: B correct / wrong.
    if g >= 0:
        table = ((k_a, 0), (g, n - k_b))
    else:
        table = ((k_b, -g), (0, n - k_a))
    best_p = float(mcnemar(np.array(table), exact=True).pvalue)

    h = float(proportion_effectsize(acc_b, acc_a))
    ind = NormalIndPower()
    power1 = float(ind.power(effect_size=h, nobs1=n, alpha=level, ratio=1.0, alternative="two-sided"))
    images = int(math.ceil(ind.solve_power(effect_size=h, nobs1=None, alpha=level, power=target_power, ratio=1.0)))

    gap = round(acc_b - acc_a, 12)  # drop float noise: 0.9788 - 0.9762 is 0.0026, not 0.00260000000000005
    seeds = tuple(
        SeedsNeeded(
            seed_sd=s,
            independent_per_arm=seeds_needed(TTestIndPower(), abs(gap) / s, level, target_power),
            paired=seeds_needed(TTestPower(), abs(gap) / s, level, target_power),
        )
        for s in seed_sds
    )
    significant = bool(best_p < level or nd[0] > 0 or nd[1] < 0)
    better, worse = ("B", "A") if g >= 0 else ("A", "B")
    if significant:
        verdict = (
            f"The gap of {abs(g)} image(s) out of {n} could be significant under a favourable paired arrangement "
            f"(best McNemar p = {best_p:.3g}); the paper's numbers alone cannot confirm it without the per-image predictions."
        )
    else:
        verdict = (
            f"Not significant. {better} got {abs(g)} more test image(s) right than {worse}, out of {n}. Even if every "
            f"image on which the two runs disagreed had gone {better}'s way, exact McNemar p = {best_p:.3g} "
            f"(>= {level}); the 95% interval of the difference, [{100 * nd[0]:+.2f}, {100 * nd[1]:+.2f}] percentage points, "
            f"includes 0. One run per arm had {power1:.0%} power to detect a gap this size; "
            f"about {images:,} test images per arm, or {seeds[0].independent_per_arm}-{seeds[-1].independent_per_arm} "
            f"independent seeds per arm (seed sd {seeds[0].seed_sd}-{seeds[-1].seed_sd}), would be needed for {target_power:.0%}."
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
        best_mcnemar_table=table,
        best_mcnemar_p=best_p,
        cohens_h=h,
        power_single_run=power1,
        images_per_arm_for_80=images,
        seeds=seeds,
        significant=significant,
        verdict=verdict,
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
        ("best possible exact McNemar p (all discordant images favour the better arm)", f"{r.best_mcnemar_p:.4g}"),
        ("Cohen's h", f"{r.cohens_h:.4f}"),
        ("power of one run per arm (two-sided, level 0.05)", f"{r.power_single_run:.3f}"),
        (f"test images per arm for {r.target_power:.0%} power", f"{r.images_per_arm_for_80:,}"),
    ]
    for s in r.seeds:
        rows.append(
            (f"seeds for {r.target_power:.0%} power at seed sd {s.seed_sd}", f"{s.independent_per_arm} per arm (independent); {s.paired} paired seeds at paired-difference sd {s.seed_sd}")
        )
    return rows


def format_table(r: PaperGap) -> str:
    rows = gap_rows(r)
    width = max(len(k) for k, _ in rows)
    lines = ["The paper's gap, from its own numbers (A = without GAIN, B = with GAIN)", ""]
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    if r.note:
        lines += ["", f"Note: {r.note}"]
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
